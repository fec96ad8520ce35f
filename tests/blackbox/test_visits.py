"""The visits service against a real redis-server and PostgreSQL on loopback (stores.py).

The contract (seed 003: /visits, /resetcounter, the HTML sentence), /health and /metrics, each
failure mode (Redis down, PostgreSQL down, both, a store that never answers, stores not up at
start), the flush on SIGTERM, the loss bound of a SIGKILL, and the exact count under a storm of
faults: the durable count equals the number of 200 answers the clients received.
"""

import json
import signal
import threading
import time

import pytest

from bbenv import TF
from promtext import promtool_check, sample, samples
from rawhttp import Conn, get
from stores import free_port


def visit(port, **kw):
    r = get(port, "/visits", **kw)
    assert r.status == 200, r
    return json.loads(r.body)["visits"]


def durable(pg):
    return int(pg.psql("SELECT n FROM visits_counter").strip())


def metrics(v):
    r = get(v.port, "/metrics")
    assert r.status == 200
    return samples(r.body.decode())


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout * TF
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timeout waiting for " + what)


def wait_up(v, redis=True, pg=True, timeout=10):
    def ok():
        h = json.loads(get(v.port, "/health").body)
        return (h["redis"] == "up") == redis and (h["postgres"] == "up") == pg
    wait_for(ok, timeout, "stores redis=%s postgres=%s" % (redis, pg))


def flushed(v):
    m = metrics(v)
    return sample(m, "visits_backlog") == 0


# ------------------------------------------------------------------ the contract

def test_counts_and_answers_json_and_html(redis_server, postgres_server, start_visits):
    v = start_visits(redis_server.url, postgres_server)
    wait_up(v)
    assert [visit(v.port) for _ in range(5)] == [1, 2, 3, 4, 5]
    r = get(v.port, "/visits", headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.status == 200
    assert r.header("Content-Type") == "text/html; charset=utf-8"
    assert b"This page has been viewed 6 time(s)." in r.body
    r = get(v.port, "/visits", method="HEAD")
    assert r.status == 405 and r.header("Allow") == "GET"
    wait_for(lambda: durable(postgres_server) == 6, 3, "the flush")
    assert visit(v.port) == 7
    # Redis holds the numbers, PostgreSQL the durable count.
    assert redis_server.command(b"GET visits:count").strip().endswith(b"7")


def test_resetcounter_get_and_post(redis_server, postgres_server, start_visits):
    v = start_visits(redis_server.url, postgres_server)
    wait_up(v)
    for _ in range(3):
        visit(v.port)
    n0 = v.index()
    r = get(v.port, "/resetcounter")
    assert r.status == 200 and json.loads(r.body) == {"visits": 0}
    v.wait_event("RESET", start=n0, visits="0")
    assert visit(v.port) == 1
    r = get(v.port, "/resetcounter", method="POST")
    assert json.loads(r.body) == {"visits": 0}
    assert visit(v.port) == 1
    wait_for(lambda: durable(postgres_server) == 1, 3, "durable 1 after the reset")
    assert get(v.port, "/resetcounter", method="DELETE").status == 405


def test_reset_switched_off(redis_server, postgres_server, start_visits):
    v = start_visits(redis_server.url, postgres_server, "--reset", "off")
    wait_up(v)
    visit(v.port)
    assert get(v.port, "/resetcounter").status == 404
    assert visit(v.port) == 2


def test_health_and_metrics(redis_server, postgres_server, start_visits):
    v = start_visits(redis_server.url, postgres_server)
    wait_up(v)
    for _ in range(4):
        visit(v.port)
    h = get(v.port, "/health")
    assert h.status == 200
    assert json.loads(h.body) == {"status": "ok", "redis": "up", "postgres": "up"}
    r = get(v.port, "/metrics")
    text = r.body.decode()
    promtool_check(text)
    m = samples(text)
    assert sample(m, "visits_counted_total", store="redis") == 4
    assert sample(m, "visits_store_up", store="redis") == 1
    assert sample(m, "visits_store_up", store="postgres") == 1
    assert sample(m, "visits_http_pending_answers") == 0
    assert sample(m, "visits_http_requests_total", route="visits", code="2xx") == 4
    # At most one Redis command per visit (a batch per loop turn; fewer under load).
    assert sample(m, "visits_store_commands_total", store="redis") <= 4 + 1  # + the seed


def test_bad_settings_exit_2(start_visits, tmp_path):
    import subprocess
    from bbenv import VISITS_BIN
    for args, needle in [(["--redis", "http://x"], "--redis"),
                         (["--database", "host=x bogus=1"], "--database"),
                         (["--database-password-file", str(tmp_path / "missing")],
                          "--database-password-file"),
                         (["--flush-interval", "0s"], "--flush-interval"),
                         (["--reset", "maybe"], "--reset")]:
        p = subprocess.run([VISITS_BIN] + args, capture_output=True, text=True, timeout=10)
        assert p.returncode == 2, (args, p.stderr)
        assert needle in p.stderr and p.stderr.count("\n") == 1, p.stderr


# ------------------------------------------------------------------ failure modes

def test_redis_down_counts_in_postgres_and_redis_is_reseeded(redis_server, postgres_server,
                                                             start_visits):
    v = start_visits(redis_server.url, postgres_server)
    wait_up(v)
    assert [visit(v.port) for _ in range(3)] == [1, 2, 3]
    redis_server.kill()
    got = [visit(v.port) for _ in range(3)]  # no error: PostgreSQL counts them
    assert got == [4, 5, 6], got
    assert durable(postgres_server) == 6  # counted there directly
    m = metrics(v)
    assert sample(m, "visits_counted_total", store="postgres") == 3
    # Redis comes back empty: it is seeded, the numbers go on.
    redis_server.start()
    wait_up(v)
    assert visit(v.port) == 7
    assert sample(metrics(v), "visits_counted_total", store="redis") == 4


def test_postgres_down_counts_in_redis_and_flushes_the_backlog(redis_server, postgres_server,
                                                               start_visits):
    v = start_visits(redis_server.url, postgres_server)
    wait_up(v)
    visit(v.port)
    wait_for(lambda: durable(postgres_server) == 1, 3, "first flush")
    postgres_server.stop()
    wait_up(v, pg=False)
    assert [visit(v.port) for _ in range(20)] == list(range(2, 22))
    m = metrics(v)
    assert sample(m, "visits_backlog") == 20
    assert sample(m, "visits_flush_lag_seconds") > 0
    assert get(v.port, "/health").status == 200
    assert json.loads(get(v.port, "/health").body)["status"] == "degraded"
    postgres_server.start()
    wait_for(lambda: flushed(v), 10, "the backlog flushed")
    assert durable(postgres_server) == 21
    assert sample(metrics(v), "visits_flush_lag_seconds") == 0


def test_both_down_answers_503_at_once_and_counts_nothing(redis_server, postgres_server,
                                                         start_visits):
    v = start_visits(redis_server.url, postgres_server)
    wait_up(v)
    assert visit(v.port) == 1
    wait_for(lambda: durable(postgres_server) == 1, 3, "first flush")
    redis_server.kill()
    postgres_server.kill()
    wait_up(v, redis=False, pg=False)
    t0 = time.monotonic()
    r = get(v.port, "/visits")
    assert time.monotonic() - t0 < 0.2 * TF
    assert r.status == 503 and "not counted" in json.loads(r.body)["error"]
    h = get(v.port, "/health")
    assert h.status == 503 and json.loads(h.body)["status"] == "down"
    postgres_server.start()
    redis_server.start()
    wait_up(v)
    assert visit(v.port) == 2
    wait_for(lambda: durable(postgres_server) == 2, 3, "flush")


def test_starts_and_serves_before_the_stores_are_up(postgres_server, start_visits):
    from stores import RedisServer
    redis = RedisServer()
    try:
        v = start_visits(redis.url, postgres_server)
        # Redis is not there yet: PostgreSQL counts.
        wait_up(v, redis=False, pg=True)
        assert visit(v.port) == 1
        redis.start()
        wait_up(v)
        assert visit(v.port) == 2
        assert sample(metrics(v), "visits_counted_total", store="redis") == 1
        v.stop()
    finally:
        redis.cleanup()


def test_a_store_that_never_answers_does_not_stall(silent_listener, postgres_server,
                                                  start_visits):
    # Redis "accepts and hangs": the connect times out again and again (with backoff), and
    # meanwhile every visit is counted in PostgreSQL without waiting for it.
    v = start_visits(silent_listener.url, postgres_server, "--connect-timeout", "300ms")
    wait_up(v, redis=False)
    t0 = time.monotonic()
    assert [visit(v.port) for _ in range(20)] == list(range(1, 21))
    assert time.monotonic() - t0 < 2.0 * TF
    v.wait_event("STORE", store="redis", state="down", timeout=3)


def test_redis_hangs_mid_way_commands_time_out_and_postgres_counts(redis_server, postgres_server,
                                                                   start_visits):
    v = start_visits(redis_server.url, postgres_server, "--store-timeout", "300ms")
    wait_up(v)
    assert visit(v.port) == 1
    redis_server.pause()  # SIGSTOP: the connection stays open, nothing answers
    try:
        t0 = time.monotonic()
        assert visit(v.port) == 2  # INCRBY times out after 300 ms, PostgreSQL counts it
        assert time.monotonic() - t0 < 1.5 * TF
        m = metrics(v)
        assert sample(m, "visits_store_errors_total", store="redis", kind="timeout") >= 1
    finally:
        redis_server.resume()
    wait_up(v)
    assert visit(v.port) == 3


def test_reconnects_with_backoff(redis_server, postgres_server, start_visits):
    v = start_visits(redis_server.url, postgres_server)
    wait_up(v)
    redis_server.kill()
    time.sleep(1.5)
    tries = [l for l in v.events("STORE") if l.fields.get("store") == "redis" and
             l.fields.get("state") == "connecting"]
    # 100 ms doubling (with jitter) over 1.5 s: a handful of attempts, not hundreds.
    assert 2 <= len(tries) <= 8, len(tries)
    redis_server.start()
    wait_up(v)


# ------------------------------------------------------------------ stopping

def test_sigterm_flushes_before_exit(redis_server, postgres_server, start_visits):
    v = start_visits(redis_server.url, postgres_server, "--flush-interval", "60s")
    wait_up(v)
    for _ in range(25):
        visit(v.port)
    assert durable(postgres_server) == 0  # nothing flushed yet (60 s interval)
    v.stop(signal.SIGTERM)
    v.wait_event("COUNTER", flushed="yes")
    assert durable(postgres_server) == 25


def test_sigint_stops_gracefully_too(redis_server, postgres_server, start_visits):
    v = start_visits(redis_server.url, postgres_server, "--flush-interval", "60s")
    wait_up(v)
    for _ in range(3):
        visit(v.port)
    v.stop(signal.SIGINT)
    assert durable(postgres_server) == 3


@pytest.mark.time_limit(60)
def test_sigkill_loses_at_most_one_flush_interval(redis_server, postgres_server, start_visits):
    port = free_port()
    v = start_visits(redis_server.url, postgres_server, "--listen", "127.0.0.1:%d" % port,
                     "--flush-interval", "500ms")
    wait_up(v)
    ok = 0
    t0 = time.monotonic()
    with Conn(v.port) as c:
        while time.monotonic() - t0 < 2.0:
            assert c.request("GET", "/visits").status == 200
            ok += 1
    rate = ok / (time.monotonic() - t0)
    v.kill()
    lost = ok - durable(postgres_server)
    print("SIGKILL after %d visits at %.0f/s: %d not in PostgreSQL (one 500 ms interval: %.0f)"
          % (ok, rate, lost, rate * 0.5))
    assert 0 <= lost <= rate * 0.5 * 1.5 + 5


# ------------------------------------------------------------------ the exact count

class Client(threading.Thread):
    """Keep-alive GET /visits in a loop; records every 200's number, reconnects when the
    service restarts. Numbers one client sees must strictly increase."""

    def __init__(self, port, stop):
        super().__init__(daemon=True)
        self.port = port
        self.stop_flag = stop
        self.numbers = []
        self.other = {}
        self.errors = 0

    def run(self):
        c = None
        while not self.stop_flag.is_set():
            try:
                if c is None:
                    c = Conn(self.port, timeout=10)
                r = c.request("GET", "/visits")
                if r.status == 200:
                    self.numbers.append(json.loads(r.body)["visits"])
                else:
                    self.other[r.status] = self.other.get(r.status, 0) + 1
                if r.header("Connection") == "close":
                    c.close()
                    c = None
            except (OSError, ConnectionError, AssertionError):
                self.errors += 1
                if c is not None:
                    c.close()
                c = None
                time.sleep(0.02)
        if c is not None:
            c.close()


@pytest.mark.time_limit(180)
def test_exact_count_under_a_storm_of_faults(redis_server, postgres_server, start_visits):
    port = free_port()
    flags = ("--listen", "127.0.0.1:%d" % port, "--answer-timeout", "8s")
    v = start_visits(redis_server.url, postgres_server, *flags)
    instances = [v]
    wait_up(v)
    stop = threading.Event()
    clients = [Client(port, stop) for _ in range(4)]
    for c in clients:
        c.start()

    def pause(s):
        time.sleep(s)

    try:
        pause(1.0)
        for round_ in range(2):
            redis_server.kill()           # Redis SIGKILL: PostgreSQL counts
            pause(0.8)
            redis_server.start()          # back empty: re-seeded
            pause(0.8)
            postgres_server.kill()        # PostgreSQL SIGKILL: Redis counts, backlog waits
            pause(0.8)
            postgres_server.start()       # recovery; the backlog is flushed
            pause(0.8)
            v.stop(signal.SIGTERM, timeout=12 * TF)  # visits SIGTERM: drains and flushes
            v = start_visits(redis_server.url, postgres_server, *flags)
            instances.append(v)
            pause(0.8)
            redis_server.kill()           # both stores at once
            postgres_server.kill()
            pause(0.5)
            postgres_server.start()
            redis_server.start()
            pause(1.0)
            postgres_server.stop()        # fast shutdown and back, under load
            postgres_server.start()
            pause(0.8)
    finally:
        stop.set()
        for c in clients:
            c.join(timeout=30)
    wait_up(v, timeout=20)
    wait_for(lambda: flushed(v), 20, "the backlog flushed")
    v.stop(signal.SIGTERM, timeout=12 * TF)
    ok = sum(len(c.numbers) for c in clients)
    counted = durable(postgres_server)
    others = {}
    for c in clients:
        for k, n in c.other.items():
            others[k] = others.get(k, 0) + n
    print("storm: %d answers of 200, durable count %d, other answers %r, connection errors %d"
          % (ok, counted, others, sum(c.errors for c in clients)))
    assert ok > 500, "too little load to mean anything"
    if counted != ok:
        for i in instances:
            print("--- instance rc=%r" % (i.p.poll(),))
            for l in i.lines():
                if l.event != "ACCESS":
                    print(l.raw)
            print(i.stderr_text()[-2000:])
    assert counted == ok
    for c in clients:
        back = [i for i in range(1, len(c.numbers)) if c.numbers[i] <= c.numbers[i - 1]]
        assert not back, "a client's numbers went backwards %d times; first at %d: %r" % (
            len(back), back[0], c.numbers[max(0, back[0] - 5):back[0] + 5])
