"""Helpers shared by the end-to-end test modules: bounded commands, polling, ports, and the
two load generators that measure "no request lost" (Load, in-process with per-request detail,
and HeyLoad, the hey tool)."""

import collections
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def tail(*outs, n=60):
    text = "\n".join(o.decode() if isinstance(o, bytes) else (o or "") for o in outs)
    return "\n".join(text.splitlines()[-n:])


def run(cmd, timeout, check=True, cwd=REPO, env=None):
    """Run a command with a hard time bound; return the CompletedProcess."""
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail("timed out after %ss: %s\n%s"
                    % (timeout, " ".join(cmd), tail(e.stdout, e.stderr)))
    if check and p.returncode != 0:
        pytest.fail("exit %d: %s\n%s" % (p.returncode, " ".join(cmd), tail(p.stdout, p.stderr)))
    return p


def wait_for(what, predicate, timeout, interval=0.25):
    """Poll predicate() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - keep polling, report the last error
            last_exc = e
        time.sleep(interval)
    pytest.fail("timed out after %ss waiting for %s (last error: %r)" % (timeout, what, last_exc))


def port_open(host, port, timeout=1.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ComposeStack:
    """One compose project of docker-compose.yml alone, as `scripts/up.sh -d` starts it, on a
    free loopback port and a temporary SECRETS_DIR (up.sh writes the secrets there, never to
    the repository's .secrets/), so it meets no other run. `env` adds to the environment of
    every command (compose reads its settings from there)."""

    def __init__(self, project, secrets_prefix, **env):
        self.project = project
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.secrets = tempfile.mkdtemp(prefix=secrets_prefix)
        self.env = dict(os.environ, COMPOSE_PROJECT_NAME=project, HTTP_PORT=str(self.port),
                        SECRETS_DIR=self.secrets, COMPOSE_FILE="docker-compose.yml",
                        COMPOSE_PATH_SEPARATOR=":", **env)

    def run(self, cmd, timeout=60, check=True):
        return run(cmd, timeout, check=check, env=self.env)

    def compose(self, *args, timeout=120, check=True):
        return self.run([str(REPO / "scripts" / "compose"), *args], timeout=timeout, check=check)

    def container(self, service):
        p = self.run(["docker", "ps", "-a", "-q", "--no-trunc",
                      "--filter", "label=com.docker.compose.project=" + self.project,
                      "--filter", "label=com.docker.compose.service=" + service])
        ids = p.stdout.split()
        assert len(ids) == 1, "expected one %s container, got %r" % (service, ids)
        return ids[0]

    def inspect(self, obj):
        return json.loads(self.run(["docker", "inspect", obj]).stdout)[0]

    def logs(self, service):
        """What `docker compose logs SERVICE` shows, without its prefixes."""
        p = self.run(["docker", "logs", self.container(service)])
        return p.stdout + p.stderr

    def get(self, path, timeout=5, **kw):
        import requests
        return requests.get(self.base + path, timeout=timeout, **kw)

    def up(self, timeout):
        """Whatever an earlier run left of this project removed, then `scripts/up.sh -d` from
        another directory (as a user would run it); its output in .up_output."""
        self.compose("down", "-v", "--remove-orphans", "--timeout", "5", timeout=180,
                     check=False)
        with tempfile.TemporaryDirectory() as elsewhere:
            p = run([str(REPO / "scripts" / "up.sh"), "-d"], timeout, cwd=elsewhere,
                    env=self.env)
        self.up_output = p.stdout + p.stderr

    def remove(self):
        """compose down with the volumes, and the secrets directory."""
        self.compose("down", "-v", "--remove-orphans", "--timeout", "10", timeout=180,
                     check=False)
        shutil.rmtree(self.secrets, ignore_errors=True)


# ------------------------------------------------------------------ load

class Load:
    """Constant load through nginx: `connections` threads, each with its own keep-alive
    connection, cycling over the paths with a short pause between requests.

    Every request ends in exactly one of: a 2xx (ok), another status (non2xx), or an error
    (refused, reset or timed out on a fresh connection, cut mid-answer, or a retry that failed).
    One case is retried, once, on a new connection, and counted apart as `stale`: the request
    went out on a keep-alive connection that had already served an answer, and the connection
    closed before any byte of an answer came back. That is how nginx's graceful reload looks to
    a client (the old workers close their idle keep-alive connections; the request was never
    read), and RFC 9112 section 9.3.1 lets clients retry it; browsers do.
    """

    def __init__(self, host, port, connections=8, pause=0.005, paths=("/",)):
        self.host, self.port = host, port
        self.connections, self.pause, self.paths = connections, pause, paths
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.stale = []    # times
        self.non2xx = []   # (time, path, status, served by)
        self.errors = []   # (time, path, what)
        self.served = collections.Counter()
        self.threads = []
        self.started = self.seconds = None

    def _worker(self, index):
        conn, used, ok, served = None, 0, 0, collections.Counter()
        n = index
        while not self.stop.is_set():
            path = self.paths[n % len(self.paths)]
            n += 1
            retried = False
            while True:
                if conn is None:
                    conn, used = http.client.HTTPConnection(self.host, self.port, timeout=5), 0
                try:
                    conn.request("GET", path)
                    r = conn.getresponse()
                except (ConnectionError, http.client.BadStatusLine) as e:
                    conn.close()
                    conn = None
                    if used and not retried:
                        retried = True
                        with self.lock:
                            self.stale.append(time.time())
                        continue
                    with self.lock:
                        self.errors.append((time.time(), path, repr(e)))
                    break
                except OSError as e:  # timeouts and the like: never retried
                    conn.close()
                    conn = None
                    with self.lock:
                        self.errors.append((time.time(), path, repr(e)))
                    break
                try:
                    r.read()
                except OSError as e:
                    conn.close()
                    conn = None
                    with self.lock:
                        self.errors.append((time.time(), path, "mid-answer " + repr(e)))
                    break
                used += 1
                by = r.getheader("X-Served-By", "-")
                if 200 <= r.status < 300:
                    ok += 1
                    served[by] += 1
                else:
                    with self.lock:
                        self.non2xx.append((time.time(), path, r.status, by))
                if r.will_close:
                    conn.close()
                    conn = None
                break
            if self.pause:
                time.sleep(self.pause)
        if conn is not None:
            conn.close()
        with self.lock:
            self.ok += ok
            self.served.update(served)

    def start(self):
        self.threads = [threading.Thread(target=self._worker, args=(i,), daemon=True)
                        for i in range(self.connections)]
        self.started = time.time()
        for t in self.threads:
            t.start()
        return self

    def finish(self):
        if self.seconds is not None:
            return self
        self.stop.set()
        for t in self.threads:
            t.join(15)
        assert not any(t.is_alive() for t in self.threads), "load threads did not stop"
        self.seconds = time.time() - self.started
        return self

    def total(self):
        return self.ok + len(self.non2xx) + len(self.errors)

    def summary(self):
        return ("%d requests in %.1f s (%.0f/s) over %d keep-alive connections: %d 2xx, "
                "%d non-2xx, %d errors; %d stale keep-alive connections closed by nginx "
                "reloads, retried once" % (
                    self.total(), self.seconds, self.total() / self.seconds, self.connections,
                    self.ok, len(self.non2xx), len(self.errors), len(self.stale)))


def check_load(load, reloads, least=1000):
    """0 non-2xx, 0 errors, and no more stale-connection retries than `reloads` nginx reloads
    can explain (each closes every client connection at most once)."""
    assert load.total() >= least, load.summary()
    assert not load.non2xx, "non-2xx answers (time, path, status, served by): %r\n%s" % (
        load.non2xx[:20], load.summary())
    assert not load.errors, "failed requests (time, path, error): %r\n%s" % (
        load.errors[:20], load.summary())
    # A reload can close each client connection at most once.
    assert len(load.stale) <= load.connections * reloads, (load.summary(), reloads)


class HeyLoad:
    """A constant load from hey (Debian package hey; Go's net/http client): `connections`
    workers at `rate` requests per second each, for at most `max_seconds` (hey's own bound),
    stopped earlier by finish() (SIGINT, after which hey prints its report).

    Go's client is what real clients are: it retries a GET once on a new connection when a
    reused keep-alive connection closes before any byte of the answer (RFC 9112 section
    9.3.1), and never otherwise. So an nginx reload's closed idle connections cost nothing,
    while a refused, reset or cut answer, a timeout (10 s) or a non-2xx is counted."""

    STATUS_RE = re.compile(r"^\s*\[(\d{3})\]\s+(\d+) responses$")
    ERROR_RE = re.compile(r"^\s*\[(\d+)\]\s+(.+)$")

    def __init__(self, url, connections=4, rate=100, max_seconds=600):
        if not shutil.which("hey"):
            pytest.fail("hey is not installed (scripts/install-deps.sh installs it)")
        self.url, self.connections, self.rate = url, connections, rate
        self.argv = ["hey", "-z", "%ds" % max_seconds, "-c", str(connections), "-q", str(rate),
                     "-t", "10", "-disable-compression", url]
        self.p = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        self.started = time.time()
        self.statuses, self.errors, self.seconds, self.output = {}, [], None, ""

    def finish(self):
        if self.seconds is not None:
            return self
        self.p.send_signal(signal.SIGINT)
        try:
            self.output, _ = self.p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.output, _ = self.p.communicate()
            pytest.fail("hey did not stop on SIGINT: %s" % " ".join(self.argv))
        self.seconds = time.time() - self.started
        section = None
        for line in self.output.splitlines():
            if line.startswith("Status code distribution:"):
                section = "status"
            elif line.startswith("Error distribution:"):
                section = "errors"
            elif section == "status" and self.STATUS_RE.match(line):
                code, n = self.STATUS_RE.match(line).groups()
                self.statuses[int(code)] = int(n)
            elif section == "errors" and self.ERROR_RE.match(line):
                n, what = self.ERROR_RE.match(line).groups()
                self.errors.append((int(n), what))
        return self

    def total(self):
        return sum(self.statuses.values()) + sum(n for n, _ in self.errors)

    def summary(self):
        return "hey: %d requests in %.1f s (%d connections at %d/s each), statuses %s, " \
               "errors %d %s" % (self.total(), self.seconds, self.connections, self.rate,
                                self.statuses, sum(n for n, _ in self.errors), self.errors[:5])

    def check(self, least=100):
        assert self.p.returncode == 0, "hey exited %s\n%s" % (self.p.returncode, self.output)
        assert self.total() >= least, self.summary() + "\n" + self.output
        bad = {c: n for c, n in self.statuses.items() if not 200 <= c < 300}
        assert not bad and not self.errors, self.summary()
