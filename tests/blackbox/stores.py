"""Real Redis and PostgreSQL servers for black-box tests (visits, accounts).

Each server runs from Debian's packages in its own temporary directory on a
free loopback port, in its own session, and is stopped at teardown.
PostgreSQL refuses to run as root: when the tests run as root, the cluster
belongs to `nobody` and the server processes drop to it. A cluster is made by
initdb once per session and copied per test (seconds -> milliseconds).

    RedisServer(password=None)   .url  .port  .password_file  .ping()
    PostgresServer(template)     .conninfo (no password)  .url  .password
                                 .password_file  .port  .psql(sql)
    both: start() stop() kill(sig=SIGKILL) restart() pause() resume()
          running()  log_tail()
    SilentListener()             .port .url .conninfo: accepts, never answers

pause()/resume() are SIGSTOP/SIGCONT of the server and its children: the port
still accepts TCP connections but nothing answers (the "server that never
answers" case). kill() is SIGKILL of all of them (a crash); stop() is a clean
shutdown.
"""

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

NOBODY = 65534
AS_ROOT = os.geteuid() == 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bindir():
    env = os.environ.get("STACK_PG_BINDIR")
    if env:
        return env
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(p.split("/")[4].split(".")[0]))
    return os.path.dirname(found[-1]) if found else None


def _proc_stat(pid):
    """(state, ppid, pgrp) of a process, or None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[2])


def _children(pid):
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        child = int(stat.split("/")[2])
        st = _proc_stat(child)
        if st is not None and st[1] == pid:
            out.append(child)
    return out


def _alive(pid):
    st = _proc_stat(pid)
    return st is not None and st[0] != "Z"


class SilentListener:
    """A loopback port that accepts TCP connections (the kernel's backlog) and never reads or
    answers: a store that "accepts and hangs". .port, .url (redis://), .conninfo; close()."""

    def __init__(self, backlog=128):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    @property
    def conninfo(self):
        return "host=127.0.0.1 port=%d user=postgres dbname=postgres" % self.port

    def close(self):
        self.sock.close()


class _Server:
    name = "server"
    # A function run in the child just before exec (subprocess's preexec_fn, after the switch
    # to `nobody`), or None. The tests leave it unset; perf/ pins the stores to a CPU with it
    # and ties their life to its own (PR_SET_PDEATHSIG). Children the server forks later
    # (PostgreSQL's backends, Redis's threads) inherit what it sets.
    preexec = None

    def __init__(self, as_nobody=False):
        self.as_nobody = as_nobody and AS_ROOT
        self.dir = tempfile.mkdtemp(prefix="stores-%s-" % self.name)
        if self.as_nobody:
            os.chown(self.dir, NOBODY, NOBODY)
        self.port = free_port()
        self.proc = None
        self._log = os.path.join(self.dir, "server.log")

    def _spawn(self, argv):
        log = open(self._log, "ab")
        kwargs = {}
        if self.as_nobody:
            kwargs = dict(user=NOBODY, group=NOBODY, extra_groups=[])
        if self.preexec is not None:
            kwargs["preexec_fn"] = self.preexec
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True, **kwargs)
        finally:
            log.close()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n=3000):
        try:
            with open(self._log, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def _family(self):
        """The server and its children: PostgreSQL's backends call setsid(), so they are not
        in the postmaster's process group and a crash must reach them by pid."""
        return [self.proc.pid] + _children(self.proc.pid)

    def _signal(self, pids, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def kill(self, sig=signal.SIGKILL, timeout=20.0):
        """Signal the server and its children and wait until all of them are gone."""
        if self.proc is None:
            return
        pids = self._family()
        self._signal(pids, sig)
        self._signal(pids, signal.SIGCONT)  # a paused server acts on SIGTERM only when resumed
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._signal(pids, signal.SIGKILL)
            self.proc.wait(timeout=5)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids[1:]) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.proc = None

    def pause(self):
        """SIGSTOP to the server and its children: connections are accepted (the kernel's
        backlog), nothing answers."""
        if self.proc is not None:
            self._signal(self._family(), signal.SIGSTOP)

    def resume(self):
        if self.proc is not None:
            self._signal(self._family(), signal.SIGCONT)

    def restart(self):
        if self.running():
            self.stop()
        self.start()

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer(_Server):
    name = "redis"

    def __init__(self, password=None):
        super().__init__()
        self.password = password
        self.password_file = None
        if password is not None:
            self.password_file = os.path.join(self.dir, "password")
            with open(self.password_file, "w") as f:
                f.write(password + "\n")

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self, timeout=10.0):
        if self.running():
            return self
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
                "--loglevel", "warning"]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        self._spawn(argv)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.ping(0.2)
            if answer.startswith(b"+PONG") or answer.startswith(b"-NOAUTH"):
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited:\n" + self.log_tail())
            time.sleep(0.01)
        raise RuntimeError("redis-server not ready in %.0fs:\n%s" % (timeout, self.log_tail()))

    def stop(self, timeout=10.0):
        self.kill(signal.SIGTERM, timeout)

    def ping(self, timeout=1.0):
        """The first bytes answered to an inline PING, b"" if none."""
        return self.command(b"PING", timeout)

    def command(self, line, timeout=1.0):
        """Sends one inline command (AUTH first if a password is set); returns the raw answer."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
                if self.password is not None and not line.startswith(b"PING"):
                    s.sendall(b"AUTH " + self.password.encode() + b"\r\n")
                    s.recv(64)
                s.sendall(line + b"\r\n")
                return s.recv(4096)
        except OSError:
            return b""


class PostgresServer(_Server):
    """A cluster (superuser `postgres`, password in .password_file, scram-sha-256 over TCP,
    trust over the unix socket in .dir) copied from an initdb'd template directory."""

    name = "postgres"
    PASSWORD = "s3cret 'quoted' \"pass\" word"

    def __init__(self, template):
        super().__init__(as_nobody=True)
        self.bindir = template.bindir
        self.password = self.PASSWORD
        self.password_file = template.password_file
        self.data = os.path.join(self.dir, "data")
        shutil.copytree(template.data, self.data, symlinks=True)
        if self.as_nobody:
            for root, dirs, files in os.walk(self.data):
                for n in dirs + files:
                    os.lchown(os.path.join(root, n), NOBODY, NOBODY)
            os.chown(self.data, NOBODY, NOBODY)
        os.chmod(self.data, 0o700)

    @property
    def conninfo(self):
        return "host=127.0.0.1 port=%d user=postgres dbname=postgres" % self.port

    @property
    def url(self):
        return "postgresql://postgres@127.0.0.1:%d/postgres" % self.port

    def start(self, timeout=60.0):
        if self.running():
            return self
        # fsync=off and full_page_writes=off only matter if the machine crashes; a commit is
        # still in the WAL (page cache) before it is answered, so a SIGKILL loses nothing
        # committed (synchronous_commit stays on: visits' exact counts depend on it).
        # After a SIGKILL the lock file names a dead postmaster: the group is gone, it is stale.
        try:
            os.remove(os.path.join(self.data, "postmaster.pid"))
        except FileNotFoundError:
            pass
        self._spawn([os.path.join(self.bindir, "postgres"), "-D", self.data,
                     "-p", str(self.port), "-k", self.dir,
                     "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                     "-c", "full_page_writes=off",
                     "-c", "max_connections=60", "-c", "shared_buffers=16MB",
                     "-c", "log_min_messages=warning"])
        deadline = time.monotonic() + timeout
        pidfile = os.path.join(self.data, "postmaster.pid")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited:\n" + self.log_tail())
            try:
                with open(pidfile) as f:
                    lines = f.read().splitlines()
                # Line 8: the postmaster's status, "ready" once it accepts connections.
                if len(lines) >= 8 and "ready" in lines[7]:
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("postgres not ready in %.0fs:\n%s" % (timeout, self.log_tail()))

    def stop(self, timeout=30.0):
        """Fast shutdown (SIGINT): open transactions roll back, the data is consistent."""
        self.kill(signal.SIGINT, timeout)

    def psql(self, sql):
        """Runs SQL through the unix socket (trusted); returns stdout (unaligned, no headers)."""
        kwargs = dict(user=NOBODY, group=NOBODY, extra_groups=[]) if self.as_nobody else {}
        out = subprocess.run([os.path.join(self.bindir, "psql"), "-h", self.dir,
                              "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                              "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                             capture_output=True, text=True, timeout=30, cwd="/", **kwargs)
        if out.returncode != 0:
            raise RuntimeError("psql failed: " + out.stderr)
        return out.stdout


class PostgresTemplate:
    """initdb once; PostgresServer copies the result."""

    def __init__(self):
        self.bindir = pg_bindir()
        if self.bindir is None:
            raise RuntimeError("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
        self.dir = tempfile.mkdtemp(prefix="stores-pgtemplate-")
        os.chmod(self.dir, 0o755)
        self.password_file = os.path.join(self.dir, "password")
        with open(self.password_file, "w") as f:
            f.write(PostgresServer.PASSWORD + "\n")
        os.chmod(self.password_file, 0o644)  # read by nobody's initdb and by the services
        self.data = os.path.join(self.dir, "data")
        kwargs = {}
        if AS_ROOT:
            os.chown(self.dir, NOBODY, NOBODY)
            kwargs = dict(user=NOBODY, group=NOBODY, extra_groups=[])
        out = subprocess.run([os.path.join(self.bindir, "initdb"), "-D", self.data,
                              "-U", "postgres", "--pwfile=" + self.password_file,
                              "--auth-local=trust", "--auth-host=scram-sha-256",
                              "-E", "UTF8", "--locale=C", "--no-sync"],
                             capture_output=True, text=True, timeout=180, cwd="/", **kwargs)
        if out.returncode != 0:
            raise RuntimeError("initdb failed:\n" + out.stdout + out.stderr)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)
