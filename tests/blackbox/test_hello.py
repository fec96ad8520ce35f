"""Black-box tests of the `hello` binary (README.md, section hello).

Every HTTP check goes over a raw socket so that what is asserted is exactly
what a client receives.
"""

import json
import re
import signal
import socket
import time
from datetime import datetime, timezone

import pytest

from bbenv import TF, WAIT
from bbproc import run_to_completion, sanitizer_report
from answers import assert_common_headers, assert_json_answer
from rawhttp import Conn, build, get

# ------------------------------------------------------------------ routes

def test_root_exact_answer(hello):
    r = get(hello.port, "/")
    assert r.status_line == "HTTP/1.1 200 OK", r.raw
    assert_json_answer(r, 200, b'{"msg":"Hello, World!"}')
    assert r.header("Content-Length") == "23"


def test_baz_exact_answer(hello):
    r = get(hello.port, "/baz")
    assert r.status_line == "HTTP/1.1 200 OK", r.raw
    assert_json_answer(r, 200, b'{"msg":"Hello, Baz!"}')
    assert r.header("Content-Length") == "21"


@pytest.mark.parametrize("target,name", [
    ("/baz", "Baz"),
    ("/bAZ", "Baz"),
    ("/BAZ", "Baz"),
    ("/b", "B"),
    ("/123abc", "123abc"),
    ("/123ABC", "123abc"),
    ("/_x-Y.z~", "_x-y.z~"),
    ("/%C3%A9", "\u00c9"),            # é -> É: all of Unicode, as Python does
    ("/%C3%A9t%C3%A9", "\u00c9t\u00e9"),  # été -> Été (the seed's Flask answer)
    ("/%C3%89T", "\u00c9t"),
    ("/%C3%A9COLE", "\u00c9cole"),
    ("/%E2%9C%93ok", "\u2713ok"),    # 3-byte UTF-8
    ("/%F0%9F%98%80X", "\U0001F600x"),  # 4-byte UTF-8
    ("/hello%20world", "Hello world"),
    ("/HELLO%20WORLD", "Hello world"),
    ("/%61bc", "Abc"),                # decoded before capitalising
    ("/%4a%4F", "Jo"),                # lower- and upper-case hex digits
    ("/a+b", "A+b"),                  # '+' is not a space in a path
])
def test_name_capitalised(hello, target, name):
    r = get(hello.port, target)
    parsed = assert_json_answer(r, 200)
    assert parsed == {"msg": "Hello, %s!" % name}, r.raw
    assert name == name.capitalize()  # self-check of the expectation


@pytest.mark.parametrize("raw_target,name", [
    (b"/\xc3\xa9", "\u00c9"),          # raw (not percent-encoded) UTF-8
    (b"/\xc3\xa9COLE", "\u00c9cole"),
])
def test_raw_utf8_target(hello, raw_target, name):
    with Conn(hello.port) as c:
        c.send(b"GET " + raw_target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
    assert json.loads(assert_json_answer(r, 200) and r.body) == {"msg": "Hello, %s!" % name}, r.raw


@pytest.mark.parametrize("target,name", [
    ("/%22", '"'),
    ("/a%22b", 'A"b'),
    ("/%5C", "\\"),
    ("/x%5Cy%5C", "X\\y\\"),
    ("/%01", "\x01"),
    ("/a%01%1Fb", "A\x01\x1fb"),
    ("/%0A%0D%09", "\n\r\t"),
    ("/%08%0C", "\b\f"),
    ("/%7F", "\x7f"),
    ("/a%00b", "A\x00b"),             # NUL must not truncate the name
    ("/%3Cscript%3E", "<script>"),
    ("/%22%7D%2C%22x%22%3A%22", '"},"x":"'),  # JSON injection attempt
])
def test_name_json_escaped(hello, target, name):
    r = get(hello.port, target)
    assert r.status == 200, r.raw
    assert_common_headers(r)
    # json.loads is strict: raw control characters inside strings are rejected
    parsed = json.loads(r.body.decode("utf-8"))
    assert parsed == {"msg": "Hello, %s!" % name.capitalize()}, r.raw
    assert list(parsed) == ["msg"]


@pytest.mark.parametrize("target", ["/baz?x=1", "/baz?", "/baz?x=%zz&y=/a/b", "/BAZ?q=%FF"])
def test_query_string_ignored(hello, target):
    r = get(hello.port, target)
    assert_json_answer(r, 200, b'{"msg":"Hello, Baz!"}')


def test_root_with_query(hello):
    r = get(hello.port, "/?name=x")
    assert_json_answer(r, 200, b'{"msg":"Hello, World!"}')


@pytest.mark.parametrize("target", ["/%zz", "/%", "/abc%", "/abc%2", "/%g1", "/%2", "/a%%20"])
def test_bad_percent_encoding_400(hello, target):
    r = get(hello.port, target)
    assert r.status == 400, r.raw
    assert_common_headers(r)
    json.loads(r.body.decode("utf-8"))


@pytest.mark.parametrize("target", [
    "/%ff",
    "/%FF%FE",
    "/%C3",          # truncated 2-byte sequence
    "/%C3%28",       # bad continuation byte
    "/%80",          # lone continuation byte
    "/%C0%AF",       # overlong encoding of '/'
    "/%ED%A0%80",    # UTF-16 surrogate
    "/%F4%90%80%80", # above U+10FFFF
])
def test_invalid_utf8_400(hello, target):
    r = get(hello.port, target)
    assert r.status == 400, r.raw
    assert_common_headers(r)
    json.loads(r.body.decode("utf-8"))


@pytest.mark.parametrize("target", ["/a/b", "/baz/", "/a/b/c", "/health/", "//", "/a//", "//a"])
def test_unknown_path_404(hello, target):
    r = get(hello.port, target)
    assert r.status_line.startswith("HTTP/1.1 404"), r.raw
    assert_json_answer(r, 404, b'{"error":"not found"}')


# ------------------------------------------------------------------ /health

def _health_calls(port, n):
    out = []
    with Conn(port) as c:
        for _ in range(n):
            r = c.request("GET", "/health")
            assert r.status == 200, r.raw
            assert_common_headers(r)
            d = json.loads(r.body)
            assert set(d) == {"healthy", "latency"}, r.raw
            assert isinstance(d["healthy"], bool), r.raw
            lat = d["latency"]
            assert isinstance(lat, float), "latency is not a JSON float: %r" % r.body
            assert 0.0 <= lat < 1.0, r.raw
            out.append((d["healthy"], lat, r.body))
    return out


def test_health_shape_and_threshold(start_hello):
    h = start_hello("--access-log", "off", env={"HELLO_HEALTH_THRESHOLD": "0.5"})
    calls = _health_calls(h.port, 200)
    for healthy, lat, body in calls:
        assert healthy == (lat < 0.5), body
    assert any(c[0] for c in calls) and not all(c[0] for c in calls), \
        "200 calls all gave healthy=%r" % calls[0][0]
    assert len({c[1] for c in calls}) > 150, "latency does not look random"


def test_health_default_threshold_is_0_9(start_hello):
    h = start_hello("--access-log", "off")
    calls = _health_calls(h.port, 200)
    for healthy, lat, body in calls:
        assert healthy == (lat < 0.9), body


def test_health_body_field_order(hello):
    r = get(hello.port, "/health")
    assert re.match(rb'^\{"healthy":(true|false),"latency":[0-9.eE+-]+\}$', r.body), r.raw


@pytest.mark.parametrize("args,env,expect", [
    (["--health-threshold", "0"], None, False),
    (["--health-threshold", "1"], None, True),
    (["--health-threshold=0"], None, False),
    (["--health-threshold=1.0"], None, True),
    ([], {"HELLO_HEALTH_THRESHOLD": "0"}, False),
    ([], {"HELLO_HEALTH_THRESHOLD": "1"}, True),
    (["--health-threshold", "1"], {"HELLO_HEALTH_THRESHOLD": "0"}, True),   # flag beats env
    (["--health-threshold", "0"], {"HELLO_HEALTH_THRESHOLD": "1"}, False),
])
def test_health_threshold_extremes(start_hello, args, env, expect):
    h = start_hello("--access-log", "off", *args, env=env)
    calls = _health_calls(h.port, 50)
    assert all(c[0] is expect for c in calls), [c[2] for c in calls if c[0] is not expect][:3]


# ------------------------------------------------------------------ methods

def test_head_has_headers_but_no_body(hello):
    with Conn(hello.port) as c:
        r = c.request("HEAD", "/")
        assert r.status_line == "HTTP/1.1 200 OK", r.raw
        assert_common_headers(r, body_expected=False)
        assert r.header("Content-Length") == "23", r.raw
        # nothing follows the head ...
        assert c.pending(0.3) == b"", "HEAD answer carried a body"
        # ... and the next answer starts right where the head ended
        r2 = c.request("GET", "/baz")
        assert_json_answer(r2, 200, b'{"msg":"Hello, Baz!"}')


@pytest.mark.parametrize("target,length", [("/baz", 21), ("/health", None), ("/a/b", 21)])
def test_head_other_routes(hello, target, length):
    with Conn(hello.port) as c:
        r = c.request("HEAD", target)
        g = c.request("GET", target)
        assert r.status == g.status, (r.raw, g.raw)
        assert_common_headers(r, body_expected=False)
        if length is not None:
            assert r.header("Content-Length") == str(length), r.raw
        assert r.body == b""


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_405(hello, method):
    r = get(hello.port, "/", method=method)
    assert r.status_line.startswith("HTTP/1.1 405"), r.raw
    assert r.headers_named("Allow") == ["GET, HEAD"], r.raw
    assert_common_headers(r)
    json.loads(r.body)


def test_post_with_body_405_then_connection_usable(hello):
    with Conn(hello.port) as c:
        c.send(build("POST", "/baz", body=b'{"some":"payload"}'))
        r = c.read_response()
        assert r.status == 405, r.raw
        assert r.headers_named("Allow") == ["GET, HEAD"], r.raw
        if (r.header("Connection") or "").lower() == "close":
            assert c.closed_by_peer(2.0 * TF)
            return
        r2 = c.request("GET", "/baz")
        assert_json_answer(r2, 200, b'{"msg":"Hello, Baz!"}')


def test_405_for_health_and_unknown(hello):
    for target in ("/health", "/x"):
        r = get(hello.port, target, method="POST")
        assert r.status == 405, r.raw
        assert r.header("Allow") == "GET, HEAD"


# ------------------------------------------------------------------ connections

def test_keep_alive_several_requests(hello):
    with Conn(hello.port) as c:
        for i, name in enumerate(["a", "bb", "CCC", "", "health", "x/y", "d"]):
            r = c.request("GET", "/" + name)
            assert (r.header("Connection") or "").lower() != "close", r.raw
            if name == "":
                assert r.body == b'{"msg":"Hello, World!"}'
            elif name == "health":
                assert b'"healthy"' in r.body
            elif name == "x/y":
                assert r.status == 404
            else:
                assert json.loads(r.body) == {"msg": "Hello, %s!" % name.capitalize()}
        assert not c.closed_by_peer(0.3), "server closed an HTTP/1.1 keep-alive connection"


def test_http10_closes_after_answer(hello):
    with Conn(hello.port) as c:
        c.send(b"GET /baz HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r.raw
        assert r.version in ("HTTP/1.0", "HTTP/1.1"), r.raw
        assert r.body == b'{"msg":"Hello, Baz!"}'
        assert_common_headers(r)
        assert c.closed_by_peer(2.0 * TF), "HTTP/1.0 connection left open"
        assert c.buf == b"", "extra bytes after the answer: %r" % c.buf


def test_http10_keep_alive(hello):
    with Conn(hello.port) as c:
        for name in ("one", "two", "three"):
            c.send(("GET /%s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % name).encode())
            r = c.read_response()
            assert r.status == 200, r.raw
            assert (r.header("Connection") or "").lower() == "keep-alive", r.raw
            assert json.loads(r.body) == {"msg": "Hello, %s!" % name.capitalize()}
        assert not c.closed_by_peer(0.3), "HTTP/1.0 keep-alive connection was closed"
        # the last one without keep-alive: answered, then closed
        c.send(b"GET /last HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.body == b'{"msg":"Hello, Last!"}'
        assert c.closed_by_peer(2.0 * TF)


def test_connection_close_answered_then_closed(hello):
    with Conn(hello.port) as c:
        c.send(b"GET /baz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        r = c.read_response()
        assert_json_answer(r, 200, b'{"msg":"Hello, Baz!"}')
        assert c.closed_by_peer(2.0 * TF), "Connection: close not honoured"
        assert c.buf == b""


def test_pipelining_in_order(hello):
    with Conn(hello.port) as c:
        c.send(b"".join(build("GET", "/" + n) for n in ("a", "b", "c")))
        for n in ("A", "B", "C"):
            r = c.read_response()
            assert_json_answer(r, 200, ('{"msg":"Hello, %s!"}' % n).encode())
        assert c.pending(0.2) == b""


def test_pipelining_mixed(hello):
    with Conn(hello.port) as c:
        c.send(build("GET", "/one") + build("HEAD", "/two") + build("GET", "/x/y")
               + build("POST", "/p", body=b"12345") + build("GET", "/three", headers={"Connection": "close"}))
        r1 = c.read_response()
        r2 = c.read_response(head=True)
        r3 = c.read_response()
        r4 = c.read_response()
        assert r1.body == b'{"msg":"Hello, One!"}', r1.raw
        assert r2.status == 200 and r2.header("Content-Length") == "21", r2.raw
        assert r3.status == 404, r3.raw
        assert r4.status == 405, r4.raw
        if (r4.header("Connection") or "").lower() != "close":
            r5 = c.read_response()
            assert r5.body == b'{"msg":"Hello, Three!"}', r5.raw
        assert c.closed_by_peer(2.0 * TF)


def test_request_split_across_packets(hello):
    with Conn(hello.port) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in (b"GE", b"T /b", b"az HT", b"TP/1.1\r\nHo", b"st: x\r", b"\n\r", b"\n"):
            c.send(piece)
            time.sleep(0.03)
        r = c.read_response()
        assert_json_answer(r, 200, b'{"msg":"Hello, Baz!"}')


@pytest.mark.parametrize("raw", [
    b"GET / HTTP/1.1\r\nHost: x\r\nThis is not a header\r\n\r\n",
    b"\x00\x01\x02garbage\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GET /baz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
])
def test_malformed_request_400_and_close(hello, raw):
    with Conn(hello.port) as c:
        c.send(raw)
        r = c.read_response()
        assert r.status == 400, r.raw
        assert_common_headers(r)
        assert c.closed_by_peer(2.0 * TF), "connection kept open after a 400 parse error"


def test_malformed_after_good_request(hello):
    """A valid answer first, then the garbage gets a 400 and the close."""
    with Conn(hello.port) as c:
        c.send(build("GET", "/ok") + b"BLAH\x01 / HTTP/1.1\r\n\r\n")
        r = c.read_response()
        assert r.body == b'{"msg":"Hello, Ok!"}', r.raw
        r2 = c.read_response()
        assert r2.status == 400, r2.raw
        assert c.closed_by_peer(2.0 * TF)


def test_many_concurrent_connections(hello):
    conns = [Conn(hello.port) for _ in range(50)]
    try:
        for i, c in enumerate(conns):
            c.send(build("GET", "/n%d" % i))
        for i, c in enumerate(conns):
            r = c.read_response()
            assert json.loads(r.body) == {"msg": "Hello, N%d!" % i}
    finally:
        for c in conns:
            c.close()
    # still serving afterwards
    assert get(hello.port, "/").status == 200


def test_client_disconnect_mid_request_is_harmless(hello):
    for _ in range(5):
        c = Conn(hello.port)
        c.send(b"GET /baz HTTP/1.1\r\nHo")
        c.close()
    c = Conn(hello.port)
    c.send(build("GET", "/") * 20)
    c.sock.close()  # close without reading the answers (server may get RST)
    time.sleep(0.1)
    assert get(hello.port, "/baz").body == b'{"msg":"Hello, Baz!"}'


# ------------------------------------------------------------------ logging

def test_start_and_listen_lines(hello):
    lines = hello.lines()
    start = [l for l in lines if l.event == "START"]
    assert len(start) == 1, hello.dump()
    assert start[0].fields.get("version"), start[0].raw
    assert start[0].fields.get("listen") == "127.0.0.1:0", start[0].raw
    listen = [l for l in lines if l.event == "LISTEN"]
    assert len(listen) == 1 and listen[0].fields["addr"] == "127.0.0.1:%d" % hello.port
    assert lines.index(start[0]) < lines.index(listen[0])
    hello.assert_clean()


def test_access_log_lines(hello):
    n0 = hello.index()
    r = get(hello.port, "/baz")
    line = hello.wait_event("ACCESS", start=n0)
    assert line.fields.get("method") == "GET", line.raw
    assert line.fields.get("target") == "/baz", line.raw
    assert 'target="/baz"' in line.raw, line.raw
    assert line.fields.get("status") == "200", line.raw
    assert int(line.fields["bytes"]) in (len(r.body), len(r.raw)), line.raw

    n1 = hello.index()
    get(hello.port, "/a/b?q=1")
    line = hello.wait_event("ACCESS", start=n1)
    assert line.fields.get("status") == "404", line.raw
    assert line.fields.get("target", "").startswith("/a/b"), line.raw

    n2 = hello.index()
    get(hello.port, "/", method="DELETE")
    line = hello.wait_event("ACCESS", start=n2)
    assert line.fields.get("method") == "DELETE" and line.fields.get("status") == "405", line.raw


def test_access_log_one_line_per_request(hello):
    n0 = hello.index()
    with Conn(hello.port) as c:
        c.send(b"".join(build("GET", "/p%d" % i) for i in range(10)))
        for _ in range(10):
            c.read_response()
    hello.wait_for(lambda l: l.event == "ACCESS" and l.fields.get("target") == "/p9", start=n0)
    time.sleep(0.2)
    acc = [l for l in hello.lines()[n0:] if l.event == "ACCESS"]
    assert [l.fields.get("target") for l in acc] == ["/p%d" % i for i in range(10)]


def test_access_log_quotes_odd_target(hello):
    n0 = hello.index()
    get(hello.port, "/%22x%20y")
    line = hello.wait_event("ACCESS", start=n0)
    # the line stays one well-formed line and the target is quoted
    assert line.ok and line.fields.get("target") == "/%22x%20y", line.raw


def test_access_log_escapes_quote_in_target(hello):
    n0 = hello.index()
    with Conn(hello.port) as c:
        c.send(b'GET /a"b HTTP/1.1\r\nHost: x\r\n\r\n')
        r = c.read_response()
    assert r.status in (200, 400), r.raw
    line = hello.wait_event("ACCESS", start=n0)
    assert line.ok, line.raw
    assert line.fields.get("target") == '/a"b', line.raw
    assert line.fields.get("status") == str(r.status), line.raw


@pytest.mark.parametrize("args,env", [
    (["--access-log", "off"], None),
    (["--access-log=off"], None),
    ([], {"HELLO_ACCESS_LOG": "off"}),
    (["--access-log", "off"], {"HELLO_ACCESS_LOG": "on"}),  # flag beats env
])
def test_access_log_off(start_hello, args, env):
    h = start_hello(*args, env=env)
    with Conn(h.port) as c:
        for t in ("/", "/baz", "/health", "/a/b"):
            c.request("GET", t)
    get(h.port, "/x", method="POST")
    time.sleep(0.3 * TF)
    assert not h.events("ACCESS"), h.dump()


def test_access_log_on_explicit(start_hello):
    h = start_hello("--access-log", "on", env={"HELLO_ACCESS_LOG": "off"})
    n0 = h.index()
    get(h.port, "/baz")
    h.wait_event("ACCESS", start=n0, target="/baz", status="200")


# ------------------------------------------------------------------ configuration

def test_listen_from_env(start_hello):
    h = start_hello(listen=False, env={"HELLO_LISTEN": "127.0.0.1:0"})
    h.wait_listening()
    assert get(h.port, "/").status == 200


def test_listen_equals_form(start_hello):
    h = start_hello("--listen=127.0.0.1:0", listen=False)
    h.wait_listening()
    assert h.addr.startswith("127.0.0.1:")
    assert get(h.port, "/baz").body == b'{"msg":"Hello, Baz!"}'


def test_listen_flag_beats_env(start_hello):
    h = start_hello(env={"HELLO_LISTEN": "127.0.0.2:0"})
    assert h.host == "127.0.0.1", h.dump()
    assert get(h.port, "/").status == 200


@pytest.mark.parametrize("args,env", [
    (["--listen", "nonsense"], None),
    (["--listen", "127.0.0.1"], None),
    (["--listen", "127.0.0.1:99999"], None),
    (["--listen"], None),
    (["--health-threshold", "2"], None),
    (["--health-threshold", "-0.1"], None),
    (["--health-threshold", "abc"], None),
    (["--health-threshold", "0.5x"], None),
    (["--access-log", "maybe"], None),
    (["--no-such-flag"], None),
    (["--no-such-flag", "1"], None),
    (["stray-argument"], None),
    ([], {"HELLO_HEALTH_THRESHOLD": "2"}),
    ([], {"HELLO_LISTEN": "nonsense"}),
    ([], {"HELLO_ACCESS_LOG": "maybe"}),
])
def test_bad_configuration_exits_2(hello_bin, args, env):
    p = run_to_completion([hello_bin] + args, env=env)
    assert p.p.returncode == 2, p.dump()
    err = [l for l in p.err if l.strip()]
    assert len(err) == 1, "want exactly one stderr line\n" + p.dump()
    assert err[0].startswith("hello: error: "), p.dump()
    assert len(err[0]) > len("hello: error: "), p.dump()
    assert not p.events("LISTEN"), p.dump()
    p.assert_clean()


def test_help(hello_bin):
    p = run_to_completion([hello_bin, "--help"])
    assert p.p.returncode == 0, p.dump()
    text = "\n".join(l.raw for l in p.lines())
    for word in ("--listen", "--health-threshold", "--access-log",
                 "HELLO_LISTEN", "HELLO_HEALTH_THRESHOLD", "HELLO_ACCESS_LOG",
                 "0.0.0.0:8080", "0.9"):
        assert word in text, "%r missing from --help output\n%s" % (word, p.dump())
    assert sanitizer_free(p)


def test_version_matches_start_line(hello_bin, hello):
    p = run_to_completion([hello_bin, "--version"])
    assert p.p.returncode == 0, p.dump()
    text = "\n".join(l.raw for l in p.lines()).strip()
    assert text, p.dump()
    version = hello.events("START")[0].fields["version"]
    assert version in text, (version, text)
    assert sanitizer_free(p)


def sanitizer_free(p):
    rep = sanitizer_report(p.stderr_text())
    assert rep is None, rep
    return True


def test_port_in_use_fails(start_hello, hello_bin):
    h = start_hello()
    p = run_to_completion([hello_bin, "--listen", "127.0.0.1:%d" % h.port])
    assert p.p.returncode != 0, p.dump()
    assert p.err, "no error message on stderr\n" + p.dump()
    assert sanitizer_free(p)


# ------------------------------------------------------------------ signals

@pytest.mark.parametrize("sig,name", [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")])
def test_signal_exits_0(start_hello, sig, name):
    h = start_hello()
    assert get(h.port, "/").status == 200
    rc, took = h.stop(sig, timeout=WAIT)
    assert rc == 0, h.dump()
    assert took < 1.0 * TF, "took %.2fs to exit" % took
    lines = h.lines()
    sig_lines = [l for l in lines if l.event == "SIGNAL"]
    assert len(sig_lines) == 1, h.dump()
    assert sig_lines[0].fields.get("name") == name, h.dump()
    assert sig_lines[0].fields.get("action") == "drain", h.dump()
    assert lines[-1].event == "EXIT" and lines[-1].fields.get("code") == "0", h.dump()
    h.assert_clean()


def test_idle_keep_alive_does_not_block_exit(start_hello):
    h = start_hello()
    conns = []
    try:
        for _ in range(3):
            c = Conn(h.port)
            r = c.request("GET", "/baz")
            assert r.status == 200
            conns.append(c)
        conns.append(Conn(h.port))  # connected, never sent anything
        time.sleep(0.05)
        rc, took = h.stop(signal.SIGTERM, timeout=WAIT)
        assert rc == 0, h.dump()
        assert took < 1.0 * TF, "exit took %.2fs with idle keep-alive connections" % took
        assert h.lines()[-1].raw.endswith("EXIT code=0"), h.dump()
        for c in conns:
            assert c.closed_by_peer(1.0), "idle connection not closed on exit"
    finally:
        for c in conns:
            c.close()
    h.assert_clean()


def test_drain_finishes_request_in_progress(start_hello):
    """SIGTERM while a request is half-received: it is still answered, then exit."""
    h = start_hello()
    with Conn(h.port) as c:
        c.send(b"GET /half HTTP/1.1\r\nHost")
        time.sleep(0.1)
        n0 = h.index()
        h.send_signal(signal.SIGTERM)
        h.wait_event("SIGNAL", start=n0)
        time.sleep(0.1)
        c.send(b": x\r\n\r\n")
        r = c.read_response()
        assert_json_answer(r, 200, b'{"msg":"Hello, Half!"}')
        assert (r.header("Connection") or "").lower() == "close", \
            "answer during drain does not announce Connection: close: %r" % r.raw
        assert c.closed_by_peer(1.0 * TF)
    t0 = time.monotonic()
    rc = h.wait(WAIT)
    assert rc == 0, h.dump()
    assert time.monotonic() - t0 < 1.0 * TF, h.dump()
    h.assert_clean()


def test_no_new_connections_after_exit(start_hello):
    h = start_hello()
    port = h.port
    rc, _ = h.stop(signal.SIGTERM)
    assert rc == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()


def test_all_output_lines_well_formed(start_hello):
    h = start_hello()
    with Conn(h.port) as c:
        for t in ("/", "/baz", "/%22q%22", "/health", "/a/b", "/%zz"):
            c.request("GET", t)
    h.assert_clean_exit(signal.SIGTERM)
    for l in h.lines():
        assert l.ok and l.service == "hello", l.raw
        ts = datetime.strptime(l.ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        assert abs((datetime.now(timezone.utc) - ts).total_seconds()) < 120, l.raw
    events = [l.event for l in h.lines()]
    assert events[0] == "START" and events[-1] == "EXIT", events
