"""visits (the page-hit counter of seed 003) in the whole stack, started as the README says
(scripts/up.sh -d), through nginx's port 80 only: the contract, the reset and its log line,
what must stay hidden, the hardening of redis, postgres and visits, a Redis crash under load
costing no request and no visit, and `docker kill --signal=SIGINT` on visits flushing.

    E2E_PROJECT=hellostack-mine /usr/bin/python3 -m pytest -q tests/e2e/test_visits_stack.py

Its own compose project (E2E_PROJECT-visits) on a free loopback port and a temporary
SECRETS_DIR (up.sh writes the PostgreSQL password there), so it never meets another run or the
repository's .secrets/; everything, the volume included, is removed at the end.

The tests share one stack and run in file order; the last one stops visits.
"""

import http.client
import json
import os
import re
import threading
import time

import pytest

import e2e_common
from e2e_common import tail, wait_for

PROJECT = os.environ.get("E2E_PROJECT", "hellostack-e2e") + "-visits"
UP_TIMEOUT = float(os.environ.get("E2E_UP_TIMEOUT", "1800"))
HOST = "127.0.0.1"
DATA_SERVICES = ("redis", "postgres", "visits")


class Stack(e2e_common.ComposeStack):
    def __init__(self):
        super().__init__(PROJECT, "visits-secrets-")

    def durable_count(self):
        """PostgreSQL's count, read with psql inside the postgres container (the socket, peer
        authentication as the superuser: no password involved)."""
        p = self.run(["docker", "exec", self.container("postgres"), "psql", "-X", "-At",
                      "-U", "postgres", "-d", "visits", "-c",
                      "SELECT n FROM visits_counter WHERE id = 1"])
        return int(p.stdout.strip())


@pytest.fixture(scope="module")
def stack():
    s = Stack()
    try:
        s.up(UP_TIMEOUT)
        wait_for("GET /visits through nginx", lambda: s.get("/visits", timeout=2).status_code == 200,
                 timeout=60)
        yield s
    finally:
        print(s.compose("logs", "--no-color", "--tail", "80", timeout=60, check=False).stdout)
        s.remove()


def visits_of(r):
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers["Content-Type"] == "application/json", r.headers
    body = r.json()
    assert set(body) == {"visits"} and isinstance(body["visits"], int), body
    return body["visits"]


# ------------------------------------------------------------------ the contract, port 80

def test_password_secret_written_by_up(stack):
    pw = os.path.join(stack.secrets, "postgres_password")
    st = os.stat(pw)
    assert (st.st_uid, st.st_mode & 0o777) == (65532, 0o400), (st.st_uid, oct(st.st_mode))
    value = open(pw).read().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", value), "not 32 random bytes in hex"
    assert "wrote a random PostgreSQL password" in stack.up_output
    # Never in the configuration or an environment: only the file, mounted as a secret.
    config = stack.compose("config").stdout
    assert value not in config
    for service in ("postgres", "visits"):
        c = stack.inspect(stack.container(service))
        assert value not in json.dumps(c["Config"]), service
        mounts = {m["Destination"]: m for m in c["Mounts"]}
        assert "/run/secrets/postgres_password" in mounts, (service, sorted(mounts))


def test_visits_count_up_by_one(stack):
    first = visits_of(stack.get("/visits"))
    seen = [first] + [visits_of(stack.get("/visits")) for _ in range(4)]
    assert seen == list(range(first, first + 5)), seen


def test_browser_gets_the_seed_sentence(stack):
    n = visits_of(stack.get("/visits"))
    r = stack.get("/visits", headers={"Accept": "text/html"})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html"), r.headers
    assert "This page has been viewed %d time(s)." % (n + 1) in r.text, r.text


def test_resetcounter_zeroes_and_logs_one_line(stack):
    visits_of(stack.get("/visits"))
    before = len(re.findall(r" visits RESET ", stack.logs("visits")))
    r = stack.get("/resetcounter")
    assert r.status_code == 200
    assert r.json() == {"visits": 0}
    assert visits_of(stack.get("/visits")) == 1
    lines = re.findall(r"^\S+ visits RESET visits=0 redis=up postgres=up$", stack.logs("visits"),
                       re.M)
    assert len(lines) == before + 1, lines
    # `docker compose logs visits`, as the seed reads it, shows the same line.
    out = stack.compose("logs", "--no-color", "visits").stdout
    assert re.search(r"visits_1\s+\| \S+ visits RESET visits=0 ", out), tail(out)


def test_internal_endpoints_of_visits_hidden(stack):
    for path in ("/metrics", "/metrics/", "/%6detrics", "/visits/metrics"):
        r = stack.get(path)
        assert r.status_code == 404, (path, r.status_code)
        assert "visits_" not in r.text, path
    # ... but visits' /metrics answers on the internal network (scrapers use visits:8080).
    p = stack.run(["docker", "exec", stack.container("visits"), "/visits", "--healthcheck",
                   "http://127.0.0.1:8080/metrics"], check=False)
    assert p.returncode == 0, p.stdout + p.stderr


def test_data_services_hardened_and_internal(stack, capsys):
    for service in DATA_SERVICES:
        c = stack.inspect(stack.container(service))
        hc, cfg = c["HostConfig"], c["Config"]
        what = service + ": "
        assert cfg["User"] == "65532:65532", what + cfg["User"]
        with open("/proc/%d/status" % c["State"]["Pid"]) as f:
            uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", f.read(), re.M).groups()
        assert uids == ("65532", "65532"), what + str(uids)
        assert hc["ReadonlyRootfs"] is True, what
        assert hc["CapDrop"] == ["ALL"] and not hc.get("CapAdd"), what
        assert any(o.startswith("no-new-privileges") for o in hc["SecurityOpt"] or []), what
        assert hc["Memory"] > 0 and (hc.get("PidsLimit") or 0) > 0, what
        assert hc["RestartPolicy"]["Name"] == "unless-stopped", what
        assert not any((c["NetworkSettings"]["Ports"] or {}).values()), what + "published"
        assert sorted(c["NetworkSettings"]["Networks"]) == [PROJECT + "_backend"], what
        assert c["State"]["Health"]["Status"] == "healthy", what
        with capsys.disabled():
            print("\n[e2e] %s: 65532, read-only, cap_drop ALL, no-new-privileges, memory %d MiB, "
                  "pids %d, backend only, healthy" % (service, hc["Memory"] >> 20,
                                                       hc["PidsLimit"]), end="")
    pg = stack.inspect(stack.container("postgres"))
    volumes = [m for m in pg["Mounts"] if m["Type"] == "volume"]
    assert [(m["Name"], m["Destination"]) for m in volumes] == [
        (PROJECT + "_postgres-data", "/var/lib/postgresql/data")], volumes
    assert sorted(pg["HostConfig"]["Tmpfs"]) == ["/run/postgresql"]
    redis = stack.inspect(stack.container("redis"))
    assert not [m for m in redis["Mounts"] if m["Type"] == "volume"], redis["Mounts"]


# ------------------------------------------------------------------ faults

class Clients:
    """`n` client threads, each on its own keep-alive connection, sending GET /visits through
    nginx as fast as answers come; every answer is recorded (200 with its number, or the
    failure), so the durable count can be compared with the 200s exactly."""

    def __init__(self, port, n=4):
        self.port, self.n = port, n
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.numbers = [[] for _ in range(n)]
        self.failures = []
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True)
                        for i in range(n)]

    def _client(self, i):
        conn = None
        while not self.stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
            try:
                conn.request("GET", "/visits")
                r = conn.getresponse()
                body = r.read()
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.failures.append((time.time(), repr(e)))
                conn.close()
                conn = None
                continue
            if r.status == 200:
                self.numbers[i].append(json.loads(body)["visits"])
            else:
                with self.lock:
                    self.failures.append((time.time(), r.status, body[:200]))
            if r.will_close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(20)
        assert not any(t.is_alive() for t in self.threads)
        return self

    def ok(self):
        return sum(len(n) for n in self.numbers)


def wait_flushed(stack, expected):
    """The durable count reaches `expected` within a few flush intervals (1 s each)."""
    return wait_for("PostgreSQL's count to reach %d" % expected,
                    lambda: stack.durable_count() == expected, timeout=20, interval=0.5)


def test_redis_crash_under_load_costs_nothing(stack, capsys):
    """Redis dies (SIGKILL) while 4 clients count through port 80: visits counts through
    PostgreSQL meanwhile, re-seeds Redis when the restart policy brings it back, and the
    durable count equals the 200 answers exactly; each client's numbers strictly increase.

    The SIGKILL is sent to the container's process from the host, as a crash or the kernel's
    OOM killer would: `docker kill` (SIGKILL included) counts for Docker as a manual stop, after
    which no restart policy restarts the container."""
    assert stack.get("/resetcounter").json() == {"visits": 0}
    wait_flushed(stack, 0)
    cid = stack.container("redis")
    before = stack.inspect(cid)
    since = time.time()
    clients = Clients(stack.port).start()
    time.sleep(2)
    os.kill(before["State"]["Pid"], 9)
    time.sleep(5)
    clients.finish()
    took = time.time() - since

    after = wait_for("the restart policy to bring redis back, healthy", lambda: (
        lambda c: c["RestartCount"] > before["RestartCount"] and c["State"]["Running"]
        and c["State"]["Health"]["Status"] == "healthy" and c)(stack.inspect(cid)),
        timeout=60, interval=0.5)
    ok = clients.ok()
    with capsys.disabled():
        print("\n[e2e] redis SIGKILLed under load: %d answers 200 in %.1f s over %d clients, "
              "%d failed; redis restarted by its policy (RestartCount %d -> %d)" % (
                  ok, took, clients.n, len(clients.failures), before["RestartCount"],
                  after["RestartCount"]))
    assert not clients.failures, clients.failures[:10]
    assert ok >= 100, ok
    for numbers in clients.numbers:
        assert all(a < b for a, b in zip(numbers, numbers[1:])), "a client saw its number drop"
    # No number handed out twice (numbers may skip some, never repeat: ARCHITECTURE.md).
    every = [n for ns in clients.numbers for n in ns]
    assert len(set(every)) == ok, "a number was handed out twice"
    wait_flushed(stack, ok)

    out = stack.logs("visits")
    assert re.search(r" visits STORE store=redis state=down", out), tail(out)
    # Re-seeded after the restart: the next number continues from the durable count.
    wait_for("visits to re-seed the restarted Redis",
             lambda: re.findall(r" visits COUNTER redis=seeded floor=(\d+)", stack.logs("visits")),
             timeout=30)
    assert visits_of(stack.get("/visits")) > max(every)
    wait_flushed(stack, ok + 1)


def test_sigint_stops_visits_gracefully_having_flushed(stack, capsys):
    """Seed 003's "quick to stop": `docker kill --signal=SIGINT` on visits drains, flushes what
    Redis counted to PostgreSQL and exits 0; nothing counted is lost."""
    cid = stack.container("visits")
    start = visits_of(stack.get("/visits"))
    for _ in range(20):
        last = visits_of(stack.get("/visits"))
    assert last == start + 20
    t0 = time.monotonic()
    stack.run(["docker", "kill", "--signal=SIGINT", cid])
    wait_for("visits to exit", lambda: not stack.inspect(cid)["State"]["Running"], timeout=15,
             interval=0.05)
    took = time.monotonic() - t0
    state = stack.inspect(cid)
    out = stack.logs("visits")
    with capsys.disabled():
        print("\n[e2e] visits: SIGINT -> exit %d in %.2f s" % (state["State"]["ExitCode"], took))
    assert state["State"]["ExitCode"] == 0, tail(out)
    assert re.search(r"^\S+ visits SIGNAL name=SIGINT action=drain$", out, re.M), tail(out)
    assert re.search(r"^\S+ visits COUNTER flushed=yes seq=\d+$", out, re.M), tail(out)
    assert re.search(r"^\S+ visits EXIT code=0$", out, re.M), tail(out)
    assert stack.durable_count() == last
    time.sleep(1)
    assert not stack.inspect(cid)["State"]["Running"], "restarted after a manual stop"
    # nginx is up, visits is not: 502 (refused, or the name is gone) or 504 (its cached address
    # no longer answers: proxy_connect_timeout), nginx's own answer either way.
    assert stack.get("/visits").status_code in (502, 504)
    assert stack.get("/baz").status_code == 200     # and hello still answers
