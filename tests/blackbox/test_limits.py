"""Limits and timeouts of `hello` on the wire: request-target (414), header
block (431), header count (431), body (413), header read timeout (408,
slowloris), idle keep-alive timeout, and the connection cap (503), both with
the default values and with small configured ones.
"""

import socket
import time

import pytest

from answers import assert_error_answer, assert_json_answer, assert_only_error, assert_open
from bbenv import TF, WAIT
from bbproc import run_to_completion
from rawhttp import Conn, build

HELLO_BAZ = b'{"msg":"Hello, Baz!"}'
KiB = 1024
MiB = 1024 * KiB


def target_of(n):
    """A request-target of exactly n bytes that routes to / (the query is ignored)."""
    assert n >= 2
    return "/?" + "q" * (n - 2)


def fill_header(total):
    """Host plus one X-Fill field whose field lines (`name: value` CRLF) total `total` bytes."""
    host = len("Host: x\r\n")
    pad = total - host - len("X-Fill: \r\n")
    assert pad >= 1
    return {"Host": "x", "X-Fill": "v" * pad}


def many_headers(n):
    """n header fields in all, Host included."""
    h = {"Host": "x"}
    for i in range(n - 1):
        h["X-H%d" % i] = "v"
    return h


def ok_on_fresh_connection(port, raw, body=b'{"msg":"Hello, World!"}'):
    with Conn(port) as c:
        c.send(raw)
        r = c.read_response()
        assert_json_answer(r, 200, body)
        assert_open(c)


# ------------------------------------------------------------------ default limits

def test_default_target_limit_8k(hello):
    ok_on_fresh_connection(hello.port, build("GET", target_of(8 * KiB)))
    r = assert_only_error(hello.port, build("GET", target_of(8 * KiB + 1)), 414)
    assert r.status_line == "HTTP/1.1 414 URI Too Long", r.raw
    assert_only_error(hello.port, build("GET", target_of(64 * KiB)), 414)


def test_default_header_block_limit_16k(hello):
    ok_on_fresh_connection(hello.port, build("GET", "/", headers=fill_header(16 * KiB)))
    r = assert_only_error(hello.port, build("GET", "/", headers=fill_header(16 * KiB + 1)), 431)
    assert r.status_line == "HTTP/1.1 431 Request Header Fields Too Large", r.raw
    # spread over many fields
    h = {"Host": "x", **{"X-F%d" % i: "v" * 400 for i in range(45)}}
    assert_only_error(hello.port, build("GET", "/", headers=h), 431)


def test_default_header_count_limit_100(hello):
    ok_on_fresh_connection(hello.port, build("GET", "/", headers=many_headers(100)))
    r = assert_only_error(hello.port, build("GET", "/", headers=many_headers(101)), 431)
    assert r.status_line == "HTTP/1.1 431 Request Header Fields Too Large", r.raw


def test_default_body_limit_content_length(hello):
    with Conn(hello.port) as c:
        c.send(build("GET", "/", headers={"Content-Length": str(MiB)}) + b"b" * MiB)
        assert_json_answer(c.read_response(), 200, b'{"msg":"Hello, World!"}')
        assert_open(c)
    # rejected as soon as the header block is read: the body is never sent
    with Conn(hello.port) as c:
        c.send(build("GET", "/", headers={"Content-Length": str(MiB + 1)}))
        answers, closed = c.responses_until_close(2.0 * TF)
    assert len(answers) == 1, answers
    assert_error_answer(answers[0], 413)
    assert answers[0].status_line == "HTTP/1.1 413 Content Too Large", answers[0].raw  # RFC 9110
    assert closed


def _chunked(total, chunk=64 * KiB):
    out = []
    left = total
    while left > 0:
        n = min(chunk, left)
        out.append(b"%x\r\n" % n + b"c" * n + b"\r\n")
        left -= n
    return out


def test_default_body_limit_chunked(hello):
    with Conn(hello.port) as c:
        c.send(build("GET", "/", headers={"Transfer-Encoding": "chunked"}) + b"".join(_chunked(MiB))
               + b"0\r\n\r\n")
        assert_json_answer(c.read_response(), 200, b'{"msg":"Hello, World!"}')
        assert_open(c)
    # streaming past the limit: the 413 comes while the body is still arriving
    with Conn(hello.port) as c:
        c.send(build("GET", "/", headers={"Transfer-Encoding": "chunked"}))
        try:
            for piece in _chunked(MiB + 128 * KiB):
                c.send(piece)
        except OSError:
            pass  # the server may stop reading once it has answered
        answers, closed = c.responses_until_close(2.0 * TF)
    assert len(answers) == 1, answers
    assert_error_answer(answers[0], 413)
    assert closed


# ------------------------------------------------------------------ configured limits

SMALL = ("--max-target", "64", "--max-header-bytes", "256", "--max-headers", "5", "--max-body", "16")
SMALL_ENV = {"HELLO_MAX_TARGET": "64", "HELLO_MAX_HEADER_BYTES": "256", "HELLO_MAX_HEADERS": "5",
             "HELLO_MAX_BODY": "16"}


@pytest.mark.parametrize("how", ["flags", "env"])
def test_configured_small_limits(start_hello, how):
    h = start_hello(*SMALL) if how == "flags" else start_hello(env=SMALL_ENV)
    port = h.port
    ok_on_fresh_connection(port, build("GET", target_of(64)))
    assert_only_error(port, build("GET", target_of(65)), 414)

    ok_on_fresh_connection(port, build("GET", "/", headers=fill_header(256)))
    assert_only_error(port, build("GET", "/", headers=fill_header(257)), 431)

    ok_on_fresh_connection(port, build("GET", "/", headers=many_headers(5)))
    assert_only_error(port, build("GET", "/", headers=many_headers(6)), 431)

    ok_on_fresh_connection(port, build("GET", "/", body=b"x" * 16))
    assert_only_error(port, build("GET", "/", body=b"x" * 17), 413)
    ok_on_fresh_connection(port, build("GET", "/", headers={"Transfer-Encoding": "chunked"})
                           + b"a\r\n0123456789\r\n6\r\n012345\r\n0\r\n\r\n")
    assert_only_error(port, build("GET", "/", headers={"Transfer-Encoding": "chunked"})
                      + b"a\r\n0123456789\r\n7\r\n0123456\r\n0\r\n\r\n", 413)


def test_limit_error_after_good_request_on_same_connection(start_hello):
    h = start_hello("--max-target", "64")
    with Conn(h.port) as c:
        c.send(build("GET", "/baz") + build("GET", target_of(100)) + build("GET", "/never"))
        answers, closed = c.responses_until_close(2.0 * TF)
    assert [a.status for a in answers] == [200, 414], answers
    assert_error_answer(answers[1], 414)
    assert closed


# ------------------------------------------------------------------ header read timeout

def _trickle_until_answer(c, data, interval, deadline):
    """Send data one byte per `interval` s until something arrives or the
    server closes; return (time of the first byte sent, time of the answer or
    None)."""
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t_first = time.monotonic()
    for i in range(len(data)):
        try:
            c.send(data[i:i + 1])
        except OSError:
            break
        if i == 0:
            t_first = time.monotonic()
        end = min(time.monotonic() + interval, deadline)
        while time.monotonic() < end:
            if c.closed_by_peer(end - time.monotonic()) or c.buf:
                return t_first, time.monotonic()
        if time.monotonic() >= deadline:
            break
    return t_first, None


SLOW_REQUEST = b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100 + b"\r\n\r\n"


def _read_408(c):
    answers, closed = c.responses_until_close(3.0 * TF)
    assert len(answers) == 1, answers
    assert_error_answer(answers[0], 408)
    assert answers[0].status_line == "HTTP/1.1 408 Request Timeout", answers[0].raw
    assert closed


def _trickle_408(c, interval, limit):
    t_first, t_answer = _trickle_until_answer(c, SLOW_REQUEST, interval, time.monotonic() + limit)
    assert t_answer is not None, "no answer to a trickled request within %.1fs" % limit
    _read_408(c)
    return t_answer - t_first


@pytest.mark.time_limit(40)
def test_slowloris_default_header_timeout_10s(hello):
    silent = Conn(hello.port)  # never sends a byte
    t_silent = time.monotonic()
    try:
        with Conn(hello.port) as c:
            took = _trickle_408(c, 1.0, 10 + 3.0 * TF)
        print("slowloris: 408 after %.2fs" % took)
        assert 9.5 <= took <= 10 + 2.0 * TF, "408 after %.2fs, want about 10s" % took
        assert silent.closed_by_peer(max(0.1, t_silent + 10 + 2.0 * TF - time.monotonic())), \
            "a silent connection outlived the header timeout"
        t_closed = time.monotonic() - t_silent
        assert 9.5 <= t_closed <= 10 + 2.0 * TF, "silent connection closed after %.2fs" % t_closed
        assert silent.buf == b"", "bytes sent on a silent connection: %r" % silent.buf
    finally:
        silent.close()


def test_slowloris_configured_header_timeout_1s(start_hello):
    h = start_hello("--header-timeout", "1s")
    n0 = h.index()
    with Conn(h.port) as c:
        took = _trickle_408(c, 0.1, 1 + 3.0 * TF)
    assert 0.95 <= took <= 1.0 + 0.5 * TF, "408 after %.2fs, want about 1s" % took
    h.wait_event("ACCESS", start=n0, status="408")


@pytest.mark.time_limit(40)
def test_lingering_close_is_bounded_for_a_client_that_keeps_trickling(start_hello):
    """After its 408 a slowloris client keeps sending a byte every 0.3 s (for up to a minute);
    every byte used to push the linger deadline back, so it held the socket for as long as it
    trickled. The whole linger is now bounded (--linger-max, default 5 s), like nginx's
    lingering_time."""
    h = start_hello("--header-timeout", "1s")
    with Conn(h.port) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _trickle_until_answer(c, SLOW_REQUEST, 0.1, time.monotonic() + 1 + 3.0 * TF)
        assert c.buf.startswith(b"HTTP/1.1 408 "), c.buf
        t_answer = time.monotonic()
        t_closed = None
        c.sock.setblocking(False)
        while time.monotonic() - t_answer < 60:
            try:
                c.sock.send(b"x")
                time.sleep(0.3)
                c.sock.recv(65536)  # b"" after our FIN; an error once the server closed
            except BlockingIOError:
                pass
            except OSError:  # ECONNRESET / EPIPE: the server closed the socket
                t_closed = time.monotonic()
                break
    assert t_closed is not None, "still open after trickling for 60 s"
    held = t_closed - t_answer
    print("trickling client held the socket %.2fs after its 408" % held)
    assert held <= 5.0 + 1.0 * TF, "lingering close took %.2fs, want at most ~5s" % held


def test_header_timeout_covers_a_stalled_body(start_hello):
    h = start_hello("--header-timeout", "1s")
    with Conn(h.port) as c:
        c.send(build("GET", "/", headers={"Content-Length": "10"}) + b"01234")
        t0 = time.monotonic()
        assert c.closed_by_peer(3.0 * TF)
        took = time.monotonic() - t0
        _read_408(c)
    assert 0.9 <= took <= 1.0 + 0.5 * TF, took


def test_silent_connection_closed_at_header_timeout(start_hello):
    h = start_hello("--header-timeout", "1s")
    with Conn(h.port) as c:
        t0 = time.monotonic()
        assert c.closed_by_peer(3.0 * TF), "silent connection not closed"
        took = time.monotonic() - t0
        assert c.buf == b"", "bytes sent on a silent connection: %r" % c.buf
    assert 0.95 <= took <= 1.0 + 0.5 * TF, took


def test_keep_alive_connection_gets_idle_not_header_timeout(start_hello):
    h = start_hello("--header-timeout", "1s")
    with Conn(h.port) as c:
        assert c.request("GET", "/baz").status == 200
        assert not c.closed_by_peer(1.8), "idle keep-alive connection closed by the header timeout"
        assert_open(c)
        # a new request that then stalls does get the header timeout
        c.send(b"GET /again HTTP/1.1\r\nHo")
        t0 = time.monotonic()
        assert c.closed_by_peer(3.0 * TF)
        took = time.monotonic() - t0
        _read_408(c)
    assert 0.9 <= took <= 1.0 + 0.5 * TF, took


# ------------------------------------------------------------------ idle timeout

def test_idle_timeout_closes_silently(start_hello):
    h = start_hello("--idle-timeout", "1s")
    with Conn(h.port) as c:
        for _ in range(3):  # activity resets the clock
            assert c.request("GET", "/baz").status == 200
            time.sleep(0.5)
        assert c.request("GET", "/baz").status == 200
        t0 = time.monotonic()
        assert c.closed_by_peer(3.0 * TF), "idle keep-alive connection not closed"
        took = time.monotonic() - t0
        assert c.buf == b"", "bytes sent when closing an idle connection: %r" % c.buf
    assert 0.95 <= took <= 1.0 + 0.5 * TF, "closed after %.2fs, want 1-1.5s" % took


def test_timeout_defaults_in_help(hello_bin):
    p = run_to_completion([hello_bin, "--help"])
    text = "\n".join(l.raw for l in p.lines())
    for flag, default in [("--idle-timeout", "75s"), ("--header-timeout", "10s"),
                          ("--max-connections", "10000"), ("--max-target", "8KiB"),
                          ("--max-header-bytes", "16KiB"), ("--max-headers", "100"),
                          ("--max-body", "1MiB"), ("--drain-timeout", "8s"), ("--drain-delay", "0s")]:
        i = text.find(flag)
        assert i >= 0, "%s missing from --help\n%s" % (flag, text)
        assert "default %s" % default in text[i:i + 200], "%s: default %s not shown\n%s" % (flag, default, text)


# ------------------------------------------------------------------ max connections

def test_max_connections(start_hello):
    h = start_hello("--max-connections", "10")
    conns = []
    try:
        for i in range(10):
            c = Conn(h.port)
            conns.append(c)
            assert c.request("GET", "/c%d" % i).status == 200
        with Conn(h.port) as extra:
            answers, closed = extra.responses_until_close(2.0 * TF)
        assert len(answers) == 1, answers
        assert_error_answer(answers[0], 503)
        assert answers[0].status_line == "HTTP/1.1 503 Service Unavailable", answers[0].raw
        assert closed
        # the first ten are still served
        for c in conns:
            assert_open(c)
        # free three: new connections are served again (the server notices the closes)
        for c in conns[:3]:
            c.close()
        conns = conns[3:]
        deadline = time.monotonic() + WAIT
        while True:
            c = Conn(h.port)
            c.send(build("GET", "/baz"))
            r = c.read_response()
            if r.status == 200:
                conns.append(c)
                break
            c.close()
            assert time.monotonic() < deadline, "still 503 after closing connections"
            time.sleep(0.02)
        for _ in range(2):
            c = Conn(h.port)
            conns.append(c)
            assert_open(c)
        with Conn(h.port) as extra:
            answers, closed = extra.responses_until_close(2.0 * TF)
        assert [a.status for a in answers] == [503] and closed, answers
    finally:
        for c in conns:
            c.close()
