"""HTTP/1.1 core behaviour of `hello` (core/http_server.cpp) seen on the wire:
pipelining, persistence, HEAD, 405, bodies on GET, Expect, Host, framing errors
and request smuggling, Upgrade/CONNECT/HTTP-2 preface, empty connections,
and the name rules of the greeting route.
"""

import json
import socket

import pytest

from answers import (FOLLOW_UP, assert_common_headers, assert_error_answer, assert_json_answer,
                     assert_only_error, assert_open)
from bbenv import TF
from rawhttp import Conn, build

HELLO_BAZ = b'{"msg":"Hello, Baz!"}'


def greeting(name):
    return ('{"msg":"Hello, %s!"}' % name).encode()


# ------------------------------------------------------------------ pipelining

def test_pipelined_requests_answered_in_order(hello):
    names = ["p%d" % i for i in range(20)]
    with Conn(hello.port) as c:
        c.send(b"".join(build("GET", "/" + n) for n in names))
        for n in names:
            r = c.read_response()
            assert_json_answer(r, 200, greeting(n.capitalize()))
            assert r.header("Connection") is None, r.raw
        assert c.pending(0.2) == b""
        assert_open(c)


def test_pipelining_stops_at_connection_close(hello):
    with Conn(hello.port) as c:
        c.send(build("GET", "/one")
               + build("GET", "/two", headers={"Connection": "close"})
               + build("GET", "/three") + build("GET", "/four"))
        answers, closed = c.responses_until_close(2.0 * TF)
    assert [r.body for r in answers] == [greeting("One"), greeting("Two")], answers
    assert answers[0].header("Connection") is None, answers[0].raw
    assert answers[1].headers_named("Connection") == ["close"], answers[1].raw
    assert closed, "connection not closed after `Connection: close`"


def test_pipelined_http10_without_keep_alive_stops(hello):
    with Conn(hello.port) as c:
        c.send(b"GET /one HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
               b"GET /two HTTP/1.0\r\n\r\n"
               b"GET /three HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        answers, closed = c.responses_until_close(2.0 * TF)
    assert [r.body for r in answers] == [greeting("One"), greeting("Two")], answers
    assert answers[0].headers_named("Connection") == ["keep-alive"], answers[0].raw
    assert answers[1].headers_named("Connection") == ["close"], answers[1].raw
    assert closed


# ------------------------------------------------------------------ persistence

@pytest.mark.parametrize("version,connection,answer_header,stays_open", [
    ("HTTP/1.1", None, None, True),
    ("HTTP/1.1", "keep-alive", None, True),
    ("HTTP/1.1", "close", "close", False),
    ("HTTP/1.1", "Close", "close", False),
    ("HTTP/1.1", "keep-alive, close", "close", False),
    ("HTTP/1.0", None, "close", False),
    ("HTTP/1.0", "close", "close", False),
    ("HTTP/1.0", "keep-alive", "keep-alive", True),
    ("HTTP/1.0", "Keep-Alive", "keep-alive", True),
])
def test_persistence(hello, version, connection, answer_header, stays_open):
    headers = {"Connection": connection} if connection else {}
    with Conn(hello.port) as c:
        c.send(build("GET", "/baz", version, headers))
        r = c.read_response()
        assert_json_answer(r, 200, HELLO_BAZ)
        want = [answer_header] if answer_header else []
        assert r.headers_named("Connection") == want, r.raw
        if stays_open:
            assert not c.closed_by_peer(0.3), "%s connection closed (Connection: %s)" % (version, connection)
            c.send(build("GET", "/again", version, headers))
            assert c.read_response().body == greeting("Again")
        else:
            assert c.closed_by_peer(2.0 * TF), "%s connection left open" % version
            assert c.buf == b""


# ------------------------------------------------------------------ HEAD

@pytest.mark.parametrize("target", ["/", "/baz", "/x%20y", "/health", "/a/b", "/%zz"])
def test_head_same_headers_as_get(hello, target):
    with Conn(hello.port) as c:
        g = c.request("GET", target)
        h = c.request("HEAD", target)
        assert c.pending(0.2) == b"", "HEAD answer carried a body"
        assert h.status_line == g.status_line, (g.raw, h.raw)
        assert_common_headers(h, body_expected=False)
        assert h.body == b""
        names = lambda r: [k.lower() for k, _ in r.header_list]  # noqa: E731
        assert names(h) == names(g), (g.raw, h.raw)
        for (k, gv), (_, hv) in zip(g.header_list, h.header_list):
            if k.lower() == "date":
                continue
            if k.lower() == "content-length" and target == "/health":
                continue  # the latency in the body varies in length
            assert gv == hv, (k, g.raw, h.raw)
        assert_open(c)


# ------------------------------------------------------------------ 405

@pytest.mark.parametrize("target", ["/", "/baz", "/health"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_write_methods_405_keep_connection(hello, method, target):
    with Conn(hello.port) as c:
        for body in (b"", b"a=1&b=2"):
            r = c.request(method, target, body=body)
            assert r.status_line == "HTTP/1.1 405 Method Not Allowed", r.raw
            assert r.headers_named("Allow") == ["GET, HEAD"], r.raw
            assert_common_headers(r)
            assert json.loads(r.body) == {"error": "method not allowed"}, r.raw
            assert r.header("Connection") is None, r.raw
        assert_open(c)


# ------------------------------------------------------------------ bodies on GET

@pytest.mark.parametrize("size", [1, 1000, 100_000])
def test_get_with_content_length_body_is_discarded(hello, size):
    body = bytes((i * 7) % 251 for i in range(size))
    with Conn(hello.port) as c:
        c.send(build("GET", "/baz", body=body) + build("GET", "/next"))
        assert_json_answer(c.read_response(), 200, HELLO_BAZ)
        assert_json_answer(c.read_response(), 200, greeting("Next"))
        assert_open(c)


def test_get_with_chunked_body_is_discarded(hello):
    chunked = (b"5\r\nhello\r\n"
               b"1a;ext=1\r\n" + b"GET /smuggled HTTP/1.1\r\n\r\n" + b"\r\n"
               b"10\r\n" + b"x" * 16 + b"\r\n"
               b"0\r\nTrailer-Field: y\r\n\r\n")
    with Conn(hello.port) as c:
        c.send(build("GET", "/baz", headers={"Transfer-Encoding": "chunked"}) + chunked
               + build("GET", "/next"))
        assert_json_answer(c.read_response(), 200, HELLO_BAZ)
        assert_json_answer(c.read_response(), 200, greeting("Next"))
        assert c.pending(0.2) == b"", "the body was parsed as a request"
        assert_open(c)


def test_get_with_body_split_across_writes(hello):
    with Conn(hello.port) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.send(build("GET", "/baz", headers={"Content-Length": "10"}))
        assert c.pending(0.1) == b"", "answered before the body arrived"
        c.send(b"01234")
        assert c.pending(0.1) == b"", "answered before the whole body arrived"
        c.send(b"56789")
        assert_json_answer(c.read_response(), 200, HELLO_BAZ)
        assert_open(c)


# ------------------------------------------------------------------ Expect

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _recv_exactly(c, n):
    while len(c.buf) < n:
        c._fill()
    data, c.buf = c.buf[:n], c.buf[n:]
    return data


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_expect_100_continue_before_body(hello, framing):
    if framing == "length":
        headers, body = {"Content-Length": "11"}, b"hello world"
    else:
        headers, body = {"Transfer-Encoding": "chunked"}, b"b\r\nhello world\r\n0\r\n\r\n"
    with Conn(hello.port) as c:
        c.send(build("GET", "/baz", headers={"Expect": "100-continue", **headers}))
        # nothing but the interim answer arrives while the body is withheld
        assert _recv_exactly(c, len(CONTINUE)) == CONTINUE
        assert c.pending(0.2) == b"", "final answer sent before the body"
        c.send(body)
        r = c.read_response()
        assert_json_answer(r, 200, HELLO_BAZ)
        assert r.header("Connection") is None, r.raw
        assert_open(c)


def test_expect_100_continue_case_insensitive(hello):
    with Conn(hello.port) as c:
        c.send(build("GET", "/baz", headers={"Expect": "100-Continue", "Content-Length": "3"}))
        assert _recv_exactly(c, len(CONTINUE)) == CONTINUE
        c.send(b"abc")
        assert_json_answer(c.read_response(), 200, HELLO_BAZ)


def test_expect_100_continue_without_body_no_interim(hello):
    with Conn(hello.port) as c:
        for headers in ({"Expect": "100-continue"},
                        {"Expect": "100-continue", "Content-Length": "0"}):
            c.send(build("GET", "/baz", headers=headers))
            r = c.read_response()
            assert r.status == 200, "want the final answer only, got %r" % r.raw
        assert c.pending(0.2) == b""


@pytest.mark.parametrize("headers", [
    {"Expect": "something-else"},
    {"Expect": "something-else", "Content-Length": "3"},
    {"Expect": "100-continue, foo", "Content-Length": "3"},
    {"Expect": "101-continue", "Content-Length": "3"},
])
def test_other_expectation_417(hello, headers):
    with Conn(hello.port) as c:
        c.send(build("GET", "/baz", headers=headers))  # the body is never sent
        answers, closed = c.responses_until_close(2.0 * TF)
    assert len(answers) == 1, answers
    assert_error_answer(answers[0], 417)
    assert answers[0].status_line == "HTTP/1.1 417 Expectation Failed", answers[0].raw
    assert closed


def test_two_expect_fields_417(hello):
    raw = (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nExpect: 100-continue\r\n"
           b"Content-Length: 3\r\n\r\nabc")
    assert_only_error(hello.port, raw, 417)


@pytest.mark.parametrize("expect", ["100-continue", "something-else"])
def test_expect_ignored_on_http10(hello, expect):
    with Conn(hello.port) as c:
        c.send(build("GET", "/baz", "HTTP/1.0",
                     {"Expect": expect, "Content-Length": "3", "Connection": "keep-alive"}))
        assert c.pending(0.3) == b"", "HTTP/1.0 got an answer to its Expect"
        c.send(b"abc")
        r = c.read_response()
        assert_json_answer(r, 200, HELLO_BAZ)
        assert r.headers_named("Connection") == ["keep-alive"], r.raw


# ------------------------------------------------------------------ Host

@pytest.mark.parametrize("raw", [
    b"GET /baz HTTP/1.1\r\n\r\n",
    b"GET /baz HTTP/1.1\r\nX-Host: x\r\n\r\n",
    b"GET /baz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET /baz HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
    b"GET /baz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET /baz HTTP/1.0\r\nHost: a\r\nHOST: a\r\nConnection: keep-alive\r\n\r\n",
], ids=["1.1-no-host", "1.1-only-x-host", "1.1-two-hosts", "1.1-same-host-twice",
        "1.0-two-hosts", "1.0-two-hosts-keep-alive"])
def test_host_rules_400(hello, raw):
    assert_only_error(hello.port, raw, 400)


def test_http10_without_host_is_fine(hello):
    with Conn(hello.port) as c:
        c.send(b"GET /baz HTTP/1.0\r\n\r\n")
        assert_json_answer(c.read_response(), 200, HELLO_BAZ)


# ------------------------------------------------------------------ framing errors / smuggling

H = b"GET /baz HTTP/1.1\r\nHost: x\r\n"

FRAMING_ERRORS = [
    ("cl-and-te", H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("te-and-cl", H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
    ("dup-cl-different", H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    ("dup-cl-same", H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
    ("cl-list", H + b"Content-Length: 5, 5\r\n\r\nhello"),
    ("cl-non-numeric", H + b"Content-Length: abc\r\n\r\n"),
    ("cl-hex", H + b"Content-Length: 0x5\r\n\r\nhello"),
    ("cl-negative", H + b"Content-Length: -1\r\n\r\n"),
    ("cl-plus", H + b"Content-Length: +5\r\n\r\nhello"),
    ("cl-empty", H + b"Content-Length: \r\n\r\n"),
    ("cl-overflow", H + b"Content-Length: 99999999999999999999999\r\n\r\n"),
    ("te-chunked-gzip", H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
    ("te-gzip", H + b"Transfer-Encoding: gzip\r\n\r\n"),
    ("te-identity", H + b"Transfer-Encoding: identity\r\n\r\n"),
    ("te-chunked-twice", H + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"),
    ("bad-chunk-size", H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"),
    ("bare-lf-everywhere", b"GET /baz HTTP/1.1\nHost: x\n\n"),
    ("bare-lf-header", H + b"X-A: y\n\r\n"),
    ("bare-cr-header-value", H + b"X-A: a\rb\r\n\r\n"),
    ("bare-cr-header-name", H + b"X\r: ab\r\n\r\n"),
    ("bare-cr-request-line", b"GET /baz HTTP/1.1\rHost: x\r\n\r\n"),
    ("header-name-space", H + b"Bad Name: y\r\n\r\n"),
    ("header-name-space-before-colon", H + b"X-A : y\r\n\r\n"),
    ("header-name-empty", H + b": y\r\n\r\n"),
    ("header-name-at", H + b"X@Y: z\r\n\r\n"),
    ("header-name-slash", H + b"X/Y: z\r\n\r\n"),
    ("header-no-colon", H + b"NoColonHere\r\n\r\n"),
    ("header-leading-space", b"GET /baz HTTP/1.1\r\n Host: x\r\n\r\n"),
    ("obs-fold-space", H + b"X-A: a\r\n b\r\n\r\n"),
    ("obs-fold-tab", H + b"X-A: a\r\n\tb\r\n\r\n"),
    ("method-bad-char", b"G@T /baz HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("method-lower-case", b"get /baz HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("method-unknown", b"FOO /baz HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("nul-header-value", H + b"X-A: a\x00b\r\n\r\n"),
    ("nul-header-name", H + b"X\x00A: ab\r\n\r\n"),
    ("nul-target", b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("ctl-header-value", H + b"X-A: a\x01b\r\n\r\n"),
    ("space-in-target", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("version-1.2", b"GET /baz HTTP/1.2\r\nHost: x\r\n\r\n"),
    ("version-lower-case", b"GET /baz http/1.1\r\nHost: x\r\n\r\n"),
    ("garbage", b"\x00\x01\x02garbage\r\n\r\n"),
]


@pytest.mark.parametrize("raw", [r for _, r in FRAMING_ERRORS], ids=[i for i, _ in FRAMING_ERRORS])
def test_framing_error_single_400_then_close(hello, raw):
    n0 = hello.index()
    assert_only_error(hello.port, raw, 400)
    # the handler never ran: no ACCESS line with a real method, one REJECT line
    hello.wait_event("REJECT", start=n0, status="400")
    assert not [l for l in hello.lines()[n0:] if l.event == "ACCESS" and l.fields.get("method") != "-"], \
        hello.dump()


def test_framing_error_after_good_requests(hello):
    with Conn(hello.port) as c:
        c.send(build("GET", "/one") + build("GET", "/two")
               + H + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab" + FOLLOW_UP)
        answers, closed = c.responses_until_close(2.0 * TF)
    assert [r.status for r in answers] == [200, 200, 400], answers
    assert_error_answer(answers[2], 400)
    assert closed


def test_te_gzip_chunked_is_valid_framing(hello):
    """`gzip, chunked` ends in chunked: the body is framed and discarded."""
    with Conn(hello.port) as c:
        c.send(H + b"Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + build("GET", "/next"))
        assert_json_answer(c.read_response(), 200, HELLO_BAZ)
        assert_json_answer(c.read_response(), 200, greeting("Next"))


# ------------------------------------------------------------------ Upgrade, CONNECT, HTTP/2

@pytest.mark.parametrize("headers", [
    {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
     "Sec-WebSocket-Version": "13"},
    {"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c", "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA"},
], ids=["websocket", "h2c"])
def test_upgrade_answered_as_plain_http(hello, headers):
    with Conn(hello.port) as c:
        c.send(build("GET", "/", headers=headers) + build("GET", "/baz"))
        r1 = c.read_response()
        assert r1.status_line == "HTTP/1.1 200 OK", "want a plain 200, got %r" % r1.raw
        assert_json_answer(r1, 200, b'{"msg":"Hello, World!"}')
        assert r1.header("Upgrade") is None, r1.raw
        assert_json_answer(c.read_response(), 200, HELLO_BAZ)
        # and later, on its own write
        r3 = c.request("GET", "/", headers=headers)
        assert r3.status == 200, r3.raw
        assert_open(c)


def test_connect_501(hello):
    raw = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    r = assert_only_error(hello.port, raw, 501)
    assert r.status_line == "HTTP/1.1 501 Not Implemented", r.raw


def test_http2_preface_505(hello):
    raw = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    r = assert_only_error(hello.port, raw, 505, follow=b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    assert r.status_line == "HTTP/1.1 505 HTTP Version Not Supported", r.raw


# ------------------------------------------------------------------ empty connections

def test_empty_connection_closed_silently(hello):
    with Conn(hello.port) as c:
        c.sock.shutdown(socket.SHUT_WR)
        assert c.closed_by_peer(2.0 * TF), "server kept an empty, half-closed connection"
        assert c.buf == b"", "bytes sent on an empty connection: %r" % c.buf


@pytest.mark.parametrize("data", [b"\r\n", b"\r\n\r\n"])
def test_lone_crlf_closed_silently(hello, data):
    with Conn(hello.port) as c:
        c.send(data)
        c.sock.shutdown(socket.SHUT_WR)
        assert c.closed_by_peer(2.0 * TF)
        assert c.buf == b"", "bytes sent after a lone CRLF: %r" % c.buf


def test_leading_crlf_before_request_ignored(hello):
    with Conn(hello.port) as c:
        c.send(b"\r\n" + build("GET", "/baz"))
        assert_json_answer(c.read_response(), 200, HELLO_BAZ)
        assert c.pending(0.2) == b""


# ------------------------------------------------------------------ names

def test_name_of_1024_bytes_ok_1025_is_414(hello):
    with Conn(hello.port) as c:
        for target, name in [
            ("/" + "a" * 1024, "A" + "a" * 1023),
            ("/" + "%62" * 1024, "B" + "b" * 1023),
            ("/" + "%C3%A9" * 512, "\u00c9" + "\u00e9" * 511),     # 1024 bytes of UTF-8
            ("/" + "x" * 1022 + "%C3%A9", "X" + "x" * 1021 + "\u00e9"),
        ]:
            r = c.request("GET", target)
            assert assert_json_answer(r, 200) == {"msg": "Hello, %s!" % name}, r.raw[:200]
        for target in ["/" + "a" * 1025, "/" + "%62" * 1025, "/" + "x" * 1023 + "%C3%A9",
                       "/" + "a" * 4000]:
            r = c.request("GET", target)
            assert r.status_line == "HTTP/1.1 414 URI Too Long", r.raw
            assert_common_headers(r)
            assert json.loads(r.body) == {"error": "name too long"}, r.raw
        assert_open(c)


def test_every_byte_as_escaped_name(hello):
    """%01..%FF alone: 400 exactly when the byte is not UTF-8 on its own,
    otherwise a greeting that json.loads back to the decoded character."""
    with Conn(hello.port) as c:
        c.send(b"".join(build("GET", "/%%%02X" % b) for b in range(1, 256)))
        for b in range(1, 256):
            r = c.read_response()
            if b >= 0x80:
                assert r.status == 400, (b, r.raw)
                assert json.loads(r.body) == {"error": "path is not valid UTF-8"}, (b, r.raw)
            elif b == 0x2F:  # "/%2F" decodes to "//": no such route
                assert r.status == 404, (b, r.raw)
            else:
                assert r.status == 200, (b, r.raw)
                assert json.loads(r.body.decode("utf-8")) == \
                    {"msg": "Hello, %s!" % chr(b).capitalize()}, (b, r.raw)
            assert_common_headers(r)
        assert_open(c)
