"""Graceful drain of `hello` on SIGTERM, seen from clients: idle keep-alive
connections closed at once, requests in flight finished with
`Connection: close`, listener closed, the drain deadline, a second signal,
and the drain delay during which /health answers 503.
"""

import json
import signal
import socket
import time

import pytest

from answers import assert_common_headers, assert_open
from bbenv import TF, WAIT
from rawhttp import Conn, build

STALLED = b"GET /stalled HTTP/1.1\r\nHost: x\r\nX-Half: "  # never completed


def connect_refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    return False


def signal_and_wait_drain(h, sig=signal.SIGTERM):
    n0 = h.index()
    t0 = time.monotonic()
    h.send_signal(sig)
    h.wait_event("DRAIN", start=n0)
    return t0


def assert_exit(h, code, within):
    t0 = time.monotonic()
    rc = h.wait(WAIT + within)
    took = time.monotonic() - t0
    assert rc == code, "exit status %r, want %d\n%s" % (rc, code, h.dump())
    assert took <= within, "exit took %.2fs more, want <= %.2fs\n%s" % (took, within, h.dump())
    if code == 0:
        assert h.lines()[-1].event == "EXIT" and h.lines()[-1].fields.get("code") == "0", h.dump()
    h.assert_clean()


def test_idle_keep_alive_closed_within_100ms(start_hello):
    h = start_hello()
    with Conn(h.port) as c, Conn(h.port) as c2:
        assert c.request("GET", "/baz").status == 200
        assert c2.request("GET", "/", "HTTP/1.0", {"Connection": "keep-alive"}).status == 200
        t0 = time.monotonic()
        h.send_signal(signal.SIGTERM)
        assert c.closed_by_peer(1.0 * TF), "idle keep-alive connection not closed on SIGTERM"
        took = time.monotonic() - t0
        assert c.buf == b"", "bytes sent to an idle connection on drain: %r" % c.buf
        assert c2.closed_by_peer(1.0 * TF) and c2.buf == b""
    print("drain: idle connection closed %.1f ms after SIGTERM" % (took * 1000))
    assert took <= 0.1 * TF, "idle connection closed %.0f ms after SIGTERM" % (took * 1000)
    assert_exit(h, 0, 0.5 * TF)


def test_request_in_flight_finished_with_connection_close(start_hello):
    h = start_hello()
    with Conn(h.port) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
        time.sleep(0.1)
        signal_and_wait_drain(h)
        assert c.pending(0.2) == b"", "answered before the body was complete"
        assert h.running(), "exited with a request in flight\n" + h.dump()
        c.send(b"56789")
        r = c.read_response()
        assert r.status == 405, r.raw
        assert r.headers_named("Allow") == ["GET, HEAD"], r.raw
        assert_common_headers(r)
        assert r.headers_named("Connection") == ["close"], \
            "answer during drain does not announce Connection: close: %r" % r.raw
        assert c.closed_by_peer(1.0 * TF)
        assert c.buf == b""
    assert_exit(h, 0, 1.0 * TF)


def test_pipelined_requests_in_flight_during_drain(start_hello):
    """The request being read is answered with close; nothing after it."""
    h = start_hello()
    with Conn(h.port) as c:
        c.send(b"GET /one HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.1)
        signal_and_wait_drain(h)
        c.send(b"\r\n" + build("GET", "/two"))
        answers, closed = c.responses_until_close(2.0 * TF)
    assert [a.body for a in answers] == [b'{"msg":"Hello, One!"}'], answers
    assert answers[0].headers_named("Connection") == ["close"], answers[0].raw
    assert closed
    assert_exit(h, 0, 1.0 * TF)


def test_listener_closed_once_draining(start_hello):
    h = start_hello()
    port = h.port
    with Conn(port) as c:
        c.send(STALLED)
        time.sleep(0.05)
        signal_and_wait_drain(h)
        assert h.running()
        assert connect_refused(port), "a new connection was accepted while draining"
        c.send(b"x\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.headers_named("Connection") == ["close"], r.raw
        assert c.closed_by_peer(1.0 * TF)
    assert_exit(h, 0, 1.0 * TF)


@pytest.mark.parametrize("args,env", [
    (["--drain-timeout", "1s"], None),
    ([], {"HELLO_DRAIN_TIMEOUT": "1s"}),
])
def test_drain_timeout_cuts_stalled_request(start_hello, args, env):
    h = start_hello(*args, env=env)
    with Conn(h.port) as stalled, Conn(h.port) as body_stalled:
        stalled.send(STALLED)
        body_stalled.send(build("GET", "/", headers={"Content-Length": "100"}) + b"x" * 10)
        time.sleep(0.05)
        t0 = signal_and_wait_drain(h)
        rc = h.wait(WAIT)
        took = time.monotonic() - t0
        assert rc == 0, h.dump()
        assert 0.95 <= took <= 1.0 + 0.5 * TF, "exited %.2fs after SIGTERM, want about 1s" % took
        for c in (stalled, body_stalled):
            assert c.closed_by_peer(1.0), "stalled connection still open after exit"
            assert b"200 OK" not in c.buf, c.buf
    h.wait_event("DRAIN", deadline="reached", cut_connections="2")
    assert h.lines()[-1].raw.endswith("EXIT code=0"), h.dump()
    h.assert_clean()


@pytest.mark.parametrize("second,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_second_signal_exits_at_once(start_hello, second, code):
    h = start_hello()
    with Conn(h.port) as c:
        c.send(STALLED)
        time.sleep(0.05)
        signal_and_wait_drain(h)
        time.sleep(0.05)
        assert h.running(), h.dump()
        t0 = time.monotonic()
        h.send_signal(second)
        rc = h.wait(WAIT)
        took = time.monotonic() - t0
        assert rc == code, "second signal: exit status %r, want %d\n%s" % (rc, code, h.dump())
        assert took <= 0.2 * TF, "second signal: exit took %.2fs" % took
        assert c.closed_by_peer(1.0)
    h.wait_event("SIGNAL", action="exit", code=str(code))
    h.assert_clean()


def test_drain_delay_health_503_then_listener_closes(start_hello):
    h = start_hello("--drain-delay", "1s")
    port = h.port
    ka = Conn(port)  # keep-alive connection from before the signal
    try:
        assert ka.request("GET", "/baz").status == 200
        n0 = h.index()
        t0 = time.monotonic()
        h.send_signal(signal.SIGTERM)
        h.wait_event("SIGNAL", start=n0, action="drain")
        served = 0
        t_refused = None
        while time.monotonic() - t0 < 3.0 * TF:
            try:
                c = Conn(port)
            except ConnectionRefusedError:
                t_refused = time.monotonic() - t0
                break
            with c:
                try:
                    c.send(build("GET", "/health") + build("GET", "/"))
                    health = c.read_response()
                    root = c.read_response()
                except (ConnectionError, OSError):
                    continue  # the drain started while this connection was new
                t = time.monotonic() - t0
            assert t < 1.0 + 0.5 * TF, "still serving %.2fs after SIGTERM" % t
            assert health.status_line == "HTTP/1.1 503 Service Unavailable", health.raw
            assert_common_headers(health)
            d = json.loads(health.body)
            assert d.get("draining") is True and d.get("healthy") is False, health.raw
            assert isinstance(d.get("latency"), float), health.raw
            assert root.status == 200 and root.body == b'{"msg":"Hello, World!"}', root.raw
            served += 1
            if served % 4 == 0 and ka.buf == b"":
                assert_open(ka)  # the old connection is served during the delay too
            time.sleep(0.05)
        assert t_refused is not None, "listener still open %.1fs after SIGTERM" % (3.0 * TF)
        assert 0.95 <= t_refused <= 1.0 + 0.5 * TF, "listener closed %.2fs after SIGTERM" % t_refused
        assert served >= 5, "only %d connections served during the 1s delay" % served
        assert ka.closed_by_peer(1.0 * TF), "idle keep-alive connection outlived the drain"
    finally:
        ka.close()
    print("drain delay: %d connections served, listener closed at %.2fs" % (served, t_refused))
    assert_exit(h, 0, 1.0 * TF)
