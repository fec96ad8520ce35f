"""Resource use of `hello` measured from outside (/proc/PID): no growth of RSS
or open descriptors across many rejected requests, the memory cost of an idle
keep-alive connection, and the time from exec to the first answer.
"""

import os
import resource
import socket
import time

import pytest

from answers import assert_error_answer
from bbenv import SANITIZED, TF, WAIT
from bbproc import rss_kib
from rawhttp import Conn, build

KiB = 1024


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def wait_fd_count(pid, want, timeout=None):
    """Wait until the process has `want` open descriptors; return the last count."""
    deadline = time.monotonic() + (WAIT if timeout is None else timeout)
    n = fd_count(pid)
    while n != want and time.monotonic() < deadline:
        time.sleep(0.02)
        n = fd_count(pid)
    return n


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip("RLIMIT_NOFILE hard limit %d < %d" % (hard, need))
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return soft, hard


# ------------------------------------------------------------------ no leak

REJECTED = [
    (400, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"),
    (413, build("GET", "/", headers={"Content-Length": str(2 * 1024 * 1024)})),
    (414, build("GET", "/?" + "q" * (9 * KiB))),
    (431, build("GET", "/", headers={"Host": "x", **{"X-H%d" % i: "v" for i in range(120)}})),
]


def _rejected_round(port, rounds):
    for _ in range(rounds):
        for status, raw in REJECTED:
            with Conn(port) as c:
                c.send(raw)
                answers, closed = c.responses_until_close(2.0 * TF)
            assert len(answers) == 1 and closed, (status, answers)
            assert_error_answer(answers[0], status)


@pytest.mark.time_limit(60)
def test_no_leak_after_1000_rejected_requests(start_hello):
    h = start_hello("--access-log", "off")
    fd0 = fd_count(h.pid)
    _rejected_round(h.port, 50)  # warm-up: 200 requests, fills the block pool
    assert wait_fd_count(h.pid, fd0) == fd0, "descriptors not back after the warm-up"
    rss0 = rss_kib(h.pid)
    _rejected_round(h.port, 250)  # 1000 requests
    fd1 = wait_fd_count(h.pid, fd0)
    time.sleep(0.1)
    rss1 = rss_kib(h.pid)
    print("no-leak: RSS %d KiB -> %d KiB after 1000 rejected requests (%+d KiB), fds %d -> %d"
          % (rss0, rss1, rss1 - rss0, fd0, fd1))
    assert fd1 == fd0, "open descriptors %d, baseline %d" % (fd1, fd0)
    if not SANITIZED:  # the sanitizer's quarantine holds freed memory on purpose
        assert rss1 - rss0 <= 512, "RSS grew by %d KiB over 1000 rejected requests" % (rss1 - rss0)
    assert h.events("REJECT") and len(h.events("REJECT")) == 1200, len(h.events("REJECT"))


# ------------------------------------------------------------------ idle connection cost

IDLE_CONNS = 10_000


@pytest.mark.skipif(SANITIZED, reason="sanitizers inflate memory")
@pytest.mark.time_limit(90)
def test_rss_per_idle_keep_alive_connection(start_hello):
    raise_nofile(IDLE_CONNS + 500)
    h = start_hello("--access-log", "off")
    pid = h.pid
    fd0 = fd_count(pid)
    # warm-up on a few connections so that pools and buffers exist before the baseline
    for _ in range(5):
        with Conn(h.port) as c:
            c.send(build("GET", "/warm") * 50)
            for _ in range(50):
                assert c.read_response().status == 200
    assert wait_fd_count(pid, fd0) == fd0, "descriptors not back after the warm-up"
    time.sleep(0.2)
    rss0 = rss_kib(pid)
    conns = []
    try:
        batch = 500
        request = build("GET", "/baz")
        for start in range(0, IDLE_CONNS, batch):
            new = [Conn(h.port) for _ in range(batch)]
            conns.extend(new)
            for c in new:
                c.send(request)
            for c in new:
                r = c.read_response()
                assert r.status == 200, r.raw
        assert wait_fd_count(pid, fd0 + IDLE_CONNS) == fd0 + IDLE_CONNS, \
            "hello holds %d descriptors, want %d" % (fd_count(pid), fd0 + IDLE_CONNS)
        time.sleep(0.2)
        rss1 = rss_kib(pid)
        per_conn = (rss1 - rss0) * 1024.0 / IDLE_CONNS
        print("idle connections: RSS %d KiB -> %d KiB for %d connections = %.0f bytes each"
              % (rss0, rss1, IDLE_CONNS, per_conn))
        assert per_conn <= 1024, "%.0f bytes of RSS per idle keep-alive connection" % per_conn
        # they are all still alive and served
        for c in conns[::1000]:
            assert c.request("GET", "/baz").status == 200
    finally:
        for c in conns:
            c.close()
    assert wait_fd_count(pid, fd0, timeout=10 * TF) == fd0, "descriptors not released"


# ------------------------------------------------------------------ start-up

def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _first_answer_after_exec(start_hello):
    port = _free_port()
    request = build("GET", "/")
    t0 = time.monotonic()
    h = start_hello("--listen", "127.0.0.1:%d" % port, "--access-log", "off", listen=False)
    deadline = t0 + WAIT
    while True:
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            s.close()
            assert time.monotonic() < deadline, "hello not listening after %.1fs\n%s" % (WAIT, h.dump())
            assert h.running(), h.dump()
            time.sleep(0.0002)
            continue
        try:
            s.settimeout(WAIT)
            s.sendall(request)
            data = b""
            while not data.endswith(b'{"msg":"Hello, World!"}'):
                chunk = s.recv(4096)
                assert chunk, "closed before the answer: %r" % data
                data += chunk
        finally:
            s.close()
        took = time.monotonic() - t0
        assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data
        h.assert_clean_exit()
        return took


@pytest.mark.skipif(SANITIZED, reason="sanitizers slow the start-up")
def test_first_answer_within_10ms_of_exec(start_hello):
    times = [_first_answer_after_exec(start_hello) for _ in range(5)]
    best = min(times)
    print("first answer after exec: best %.2f ms of %s" % (
        best * 1000, ", ".join("%.2f" % (t * 1000) for t in times)))
    assert best < 0.010, "first answer %.2f ms after exec (best of 5)" % (best * 1000)
