"""Black-box tests of hello's "playground" features: the X-Served-By header on
every answer, /status (JSON and HTML), the chaos routes /poison, /antidote and
/die (and --chaos off), the Prometheus /metrics endpoint (checked with
promtool) and the `hello --healthcheck [URL]` client mode.

Everything on the wire goes over rawhttp's raw sockets so that the asserted
bytes are exactly what a client receives. Every wait is bounded.
"""

import json
import os
import re
import signal
import socket
import threading
import time

import pytest

from answers import (assert_common_headers, assert_error_answer, assert_json_answer,
                     assert_only_error)
from bbenv import TF, WAIT
from bbproc import run_to_completion, sanitizer_report
from promtext import Metrics, promtool_check
from rawhttp import Conn, build, get
from waits import wait_until

VERSION = "0.1.0"
STATUS_KEYS = ["instance", "state", "uptime_s", "requests", "version"]
STATUS_CODE = {"healthy": 200, "poisoned": 410, "draining": 503}
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
ROUTES = {"root", "name", "health", "status", "chaos", "metrics", "other"}
CHAOS_PATHS = ("/poison", "/antidote", "/die")


# ------------------------------------------------------------------ helpers

def assert_served_by(r, iid):
    """Exactly one X-Served-By header carrying the instance id."""
    assert r.headers_named("X-Served-By") == [iid], \
        "want one `X-Served-By: %s`, got %r in %r" % (iid, r.headers_named("X-Served-By"), r.raw)


def json_status(port, headers=None):
    r = get(port, "/status", headers=headers)
    return r, json.loads(r.body.decode("utf-8"))


def check_status_json(r, iid, state):
    """A JSON /status answer: code for the state, exact key order, types."""
    assert r.version == "HTTP/1.1", r.raw
    assert r.status == STATUS_CODE[state], "state %s: want %d, got %r" % (
        state, STATUS_CODE[state], r.raw)
    assert_common_headers(r)  # Content-Type: application/json, Content-Length, Date
    assert_served_by(r, iid)
    d = json.loads(r.body.decode("utf-8"))
    assert list(d) == STATUS_KEYS, r.raw
    assert d["instance"] == iid, r.raw
    assert d["state"] == state, r.raw
    assert isinstance(d["uptime_s"], (int, float)) and not isinstance(d["uptime_s"], bool), r.raw
    assert d["uptime_s"] >= 0, r.raw
    assert isinstance(d["requests"], int) and not isinstance(d["requests"], bool), r.raw
    assert d["requests"] >= 0, r.raw
    assert d["version"] == VERSION, r.raw
    return d


def check_status_html(r, iid, state):
    assert r.version == "HTTP/1.1", r.raw
    assert r.status == STATUS_CODE[state], r.raw
    assert r.headers_named("Content-Type") == ["text/html; charset=utf-8"], r.raw
    cls = r.headers_named("Content-Length")
    assert len(cls) == 1 and int(cls[0]) == len(r.body), r.raw
    assert len(r.headers_named("Date")) == 1, r.raw
    assert_served_by(r, iid)
    text = r.body.decode("utf-8")
    assert "<html" in text.lower(), r.raw
    for fact in (iid, state, VERSION):
        assert fact in text, "%r missing from the HTML status page:\n%s" % (fact, text)
    return text


def chaos(port, path, method="GET", iid=None, state=None):
    """/poison or /antidote: 200 with {"instance":..,"state":..}."""
    r = get(port, path, method=method)
    assert_json_answer(r, 200)
    if iid is not None:
        assert_served_by(r, iid)
        assert r.body == ('{"instance":"%s","state":"%s"}' % (iid, state)).encode(), r.raw
    return r




# -- Prometheus text

def scrape(port, iid=None):
    r = get(port, "/metrics")
    assert r.status == 200, r.raw
    ct = r.headers_named("Content-Type")
    assert len(ct) == 1 and ct[0].startswith("text/plain; version=0.0.4"), r.raw[:400]
    cls = r.headers_named("Content-Length")
    assert len(cls) == 1 and int(cls[0]) == len(r.body), r.raw[:400]
    if iid is not None:
        assert_served_by(r, iid)
    return Metrics(r.body.decode("utf-8"))


# -- small TCP servers for --healthcheck

class FakeServer:
    """Listens on 127.0.0.1:port (0: any free port).

    mode "answer": read the request head, record it, send `reply`, close.
    mode "hang":   accept and never answer (connections kept open).
    mode "partial": read the head, send `reply` (incomplete), then hang.
    """

    def __init__(self, mode="answer", reply=b"", port=0):
        self.mode = mode
        self.reply = reply
        self.heads = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind(("127.0.0.1", port))
        except OSError:
            self.sock.close()
            raise
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d/health" % self.port
        self._held = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(2.0)
            if self.mode == "hang":
                self._held.append(c)
                continue
            head = b""
            try:
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                self.heads.append(head)
                c.sendall(self.reply)
            except OSError:
                pass
            if self.mode == "partial":
                self._held.append(c)
            else:
                c.close()

    def close(self):
        self._stop.set()
        self._thread.join(2.0)
        for c in self._held:
            c.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def http_reply(status, reason, body=b"ok"):
    return (b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % (status, reason, len(body))) + body


def healthcheck(hello_bin, *args, timeout=None):
    """Run `hello --healthcheck [args]`; return (proc, seconds, output lines)."""
    t0 = time.monotonic()
    p = run_to_completion([hello_bin, "--healthcheck"] + list(args),
                          timeout=timeout if timeout is not None else WAIT)
    took = time.monotonic() - t0
    rep = sanitizer_report(p.stderr_text())
    assert rep is None, rep
    lines = [l.raw for l in p.lines() if l.raw.strip()] + [e for e in p.err if e.strip()]
    return p, took, lines


def assert_healthcheck(p, lines, code):
    assert p.p.returncode == code, "healthcheck exit %r, want %d\n%s" % (p.p.returncode, code, p.dump())
    assert len(lines) == 1, "want exactly one output line\n" + p.dump()
    return lines[0]


# ------------------------------------------------------------------ X-Served-By

def test_default_instance_id_is_hostname(hello):
    iid = socket.gethostname()
    for target in ("/", "/baz", "/health", "/a/b"):
        assert_served_by(get(hello.port, target), iid)
    assert_served_by(get(hello.port, "/", method="DELETE"), iid)
    r, _ = json_status(hello.port)
    check_status_json(r, iid, "healthy")


@pytest.mark.parametrize("args,env,iid", [
    (["--instance-id", "web-7"], None, "web-7"),
    (["--instance-id=web-8"], None, "web-8"),
    ([], {"HELLO_INSTANCE_ID": "from-env"}, "from-env"),
    (["--instance-id", "flag-wins"], {"HELLO_INSTANCE_ID": "env-loses"}, "flag-wins"),
])
def test_instance_id_configured(start_hello, args, env, iid):
    h = start_hello(*args, env=env)
    assert_served_by(get(h.port, "/"), iid)
    r, _ = json_status(h.port)
    check_status_json(r, iid, "healthy")
    check_status_html(get(h.port, "/status", headers={"Accept": BROWSER_ACCEPT}), iid, "healthy")


def test_served_by_on_every_kind_of_answer(start_hello):
    iid = "node-a"
    h = start_hello("--instance-id", iid, "--max-target", "64", "--max-header-bytes", "256",
                    "--max-body", "16")
    port = h.port
    with Conn(port) as c:
        for method, target, status in [
            ("GET", "/", 200), ("GET", "/baz", 200), ("GET", "/health", 200),
            ("GET", "/status", 200), ("GET", "/metrics", 200),
            ("GET", "/a/b", 404), ("POST", "/", 405), ("DELETE", "/baz", 405),
        ]:
            r = c.request(method, target)
            assert r.status == status, (method, target, r.raw)
            assert_served_by(r, iid)
        r = c.request("HEAD", "/")
        assert r.status == 200 and r.body == b"", r.raw
        assert_served_by(r, iid)
    for method, target, status in [("PUT", "/poison", 405), ("GET", "/%zz", 400),
                                   ("GET", "/%ff", 400)]:
        r = get(port, target, method=method)
        assert r.status == status, (method, target, r.raw)
        assert_served_by(r, iid)
    # pipelined answers each carry it
    with Conn(port) as c:
        c.send(build("GET", "/one") + build("GET", "/x/y") + build("GET", "/three"))
        for want in (200, 404, 200):
            r = c.read_response()
            assert r.status == want, r.raw
            assert_served_by(r, iid)
    # HTTP/1.0
    with Conn(port) as c:
        c.send(b"GET /baz HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r.raw
        assert_served_by(r, iid)
    # the server's own rejections: framing errors and limits
    for raw, status in [
        (b"\x00\x01\x02garbage\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nThis is not a header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
        (build("GET", "/?" + "q" * 100), 414),
        (build("GET", "/", headers={"Host": "x", "X-Fill": "v" * 400}), 431),
        (build("POST", "/", body=b"x" * 17), 413),
    ]:
        r = assert_only_error(port, raw, status)
        assert_served_by(r, iid)


def test_served_by_on_408(start_hello):
    h = start_hello("--instance-id", "slow-node", "--header-timeout", "300ms")
    with Conn(h.port) as c:
        c.send(b"GET /half HTTP/1.1\r\nHo")
        answers, closed = c.responses_until_close(1.0 + 2.0 * TF)
    assert closed and len(answers) == 1, answers
    assert_error_answer(answers[0], 408)
    assert_served_by(answers[0], "slow-node")


def test_served_by_on_503_too_many_connections(start_hello):
    h = start_hello("--instance-id", "full-node", "--max-connections", "1")
    with Conn(h.port) as first:
        r = first.request("GET", "/baz")
        assert r.status == 200, r.raw
        assert_served_by(r, "full-node")
        with Conn(h.port) as extra:
            answers, closed = extra.responses_until_close(2.0 * TF)
        assert closed and len(answers) == 1, answers
        assert_error_answer(answers[0], 503)
        assert_served_by(answers[0], "full-node")


@pytest.mark.parametrize("iid", ['x<y>&"z\'', "a\r\nSet-Cookie: evil=1", "tab\there"])
def test_odd_instance_id_rejected_or_escaped(start_hello, iid):
    """An id that needs escaping is either refused at start (exit 2, one stderr line) or
    kept out of trouble: one X-Served-By header, no injected header, valid JSON, escaped HTML."""
    h = start_hello("--listen", "127.0.0.1:0", env={"HELLO_INSTANCE_ID": iid}, listen=False)
    try:
        h.wait_listening()
    except AssertionError:
        rc = h.wait(WAIT)
        assert rc == 2, h.dump()
        err = [l for l in h.err if l.strip()]
        assert len(err) == 1 and err[0].startswith("hello: error: "), h.dump()
        return
    with Conn(h.port) as c:
        c.send(build("GET", "/status"))
        r = c.read_response()
        assert r.status == 200, r.raw
        assert r.header("Set-Cookie") is None, "header injected through the instance id: %r" % r.raw
        assert len(r.headers_named("X-Served-By")) == 1, r.raw
        assert json.loads(r.body.decode("utf-8"))["instance"] == iid, r.raw
        r = c.request("GET", "/status", headers={"Accept": "text/html"})
        assert r.status == 200, r.raw
        text = r.body.decode("utf-8")
        if "<" in iid:
            assert iid not in text and "<y>" not in text, "instance id not HTML-escaped:\n" + text


# ------------------------------------------------------------------ /status

def test_status_json_healthy(start_hello):
    h = start_hello("--instance-id", "s1")
    version = h.events("START")[0].fields.get("version")
    assert version == VERSION, h.dump()
    since_spawn = time.monotonic() - h.t_start
    r, d = json_status(h.port)
    assert r.status_line == "HTTP/1.1 200 OK", r.raw
    check_status_json(r, "s1", "healthy")
    assert d["uptime_s"] <= time.monotonic() - h.t_start + 0.05, (d, since_spawn)


def test_status_uptime_grows(start_hello):
    h = start_hello("--instance-id", "s2")
    _, d1 = json_status(h.port)
    time.sleep(0.4)
    _, d2 = json_status(h.port)
    grew = d2["uptime_s"] - d1["uptime_s"]
    assert 0.35 <= grew <= 0.4 + 1.0 * TF, (d1, d2)


def test_status_counts_requests(start_hello):
    h = start_hello("--instance-id", "s3")
    r1, d1 = json_status(h.port)
    with Conn(h.port) as c:
        for _ in range(5):
            assert c.request("GET", "/baz").status == 200
    r2, d2 = json_status(h.port)
    # whether or not a /status answer counts itself, the difference is the 5 GETs + 1 /status
    assert d2["requests"] - d1["requests"] == 6, (d1, d2)
    # HTML shows the same count (one more than the last JSON answer)
    r3 = get(h.port, "/status", headers={"Accept": "text/html"})
    text = check_status_html(r3, "s3", "healthy")
    assert re.search(r"(?<![0-9.])%d(?![0-9])" % (d2["requests"] + 1), text), \
        "request count %d not on the HTML page:\n%s" % (d2["requests"] + 1, text)


@pytest.mark.parametrize("accept,html", [
    (None, False),
    ("application/json", False),
    ("*/*", False),
    ("text/plain", False),
    ("text/html", True),
    (BROWSER_ACCEPT, True),
    ("application/json, text/html;q=0.5", True),
])
def test_status_content_negotiation(start_hello, accept, html):
    h = start_hello("--instance-id", "neg")
    headers = {"Accept": accept} if accept is not None else None
    r = get(h.port, "/status", headers=headers)
    if html:
        check_status_html(r, "neg", "healthy")
    else:
        check_status_json(r, "neg", "healthy")


def test_status_head(start_hello):
    h = start_hello("--instance-id", "hd")
    with Conn(h.port) as c:
        r = c.request("HEAD", "/status")
        assert r.status == 200, r.raw
        assert_served_by(r, "hd")
        assert c.pending(0.2) == b"", "HEAD /status answer carried a body"
        g = c.request("GET", "/status")
        assert g.status == 200 and g.header("Content-Type") == r.header("Content-Type"), (r.raw, g.raw)


def test_status_503_while_draining(start_hello):
    iid = "drainer"
    h = start_hello("--instance-id", iid, "--drain-delay", "2s")
    n0 = h.index()
    t0 = time.monotonic()
    h.send_signal(signal.SIGTERM)
    h.wait_event("SIGNAL", start=n0, action="drain")
    r, _ = json_status(h.port)
    assert r.status_line == "HTTP/1.1 503 Service Unavailable", r.raw
    check_status_json(r, iid, "draining")
    check_status_html(get(h.port, "/status", headers={"Accept": BROWSER_ACCEPT}), iid, "draining")
    m = scrape(h.port, iid)
    assert m.one("hello_draining") == 1, m.text
    health = get(h.port, "/health")
    assert health.status == 503, health.raw
    assert_served_by(health, iid)
    assert time.monotonic() - t0 < 2.0, "checks ran past the drain delay; results unreliable"
    rc = h.wait(WAIT + 2.0)
    assert rc == 0, h.dump()
    h.assert_clean()


# ------------------------------------------------------------------ /poison, /antidote

@pytest.mark.parametrize("method", ["GET", "POST"])
def test_poison_and_antidote(start_hello, method):
    iid = "p-%s" % method.lower()
    h = start_hello("--instance-id", iid, "--health-threshold", "1")  # /health healthy unless poisoned
    r = get(h.port, "/health")
    assert r.status == 200 and json.loads(r.body)["healthy"] is True, r.raw

    for _ in range(2):  # idempotent
        chaos(h.port, "/poison", method, iid, "poisoned")
        r, _ = json_status(h.port)
        assert r.status_line.startswith("HTTP/1.1 410 "), r.raw
        check_status_json(r, iid, "poisoned")
        check_status_html(get(h.port, "/status", headers={"Accept": "text/html"}), iid, "poisoned")
        r = get(h.port, "/health")
        assert r.status_line == "HTTP/1.1 503 Service Unavailable", r.raw
        assert_common_headers(r)
        assert_served_by(r, iid)
        assert json.loads(r.body)["healthy"] is False, r.raw
        # the service itself keeps answering
        assert get(h.port, "/baz").body == b'{"msg":"Hello, Baz!"}'

    for _ in range(2):
        chaos(h.port, "/antidote", method, iid, "healthy")
        r, _ = json_status(h.port)
        check_status_json(r, iid, "healthy")
        r = get(h.port, "/health")
        assert r.status == 200 and json.loads(r.body)["healthy"] is True, r.raw


def test_chaos_with_body_and_keep_alive(start_hello):
    """POST with a body, on one keep-alive connection, mixed GET/POST."""
    iid = "ka"
    h = start_hello("--instance-id", iid)
    with Conn(h.port) as c:
        r = c.request("POST", "/poison", body=b'{"why":"test"}')
        assert r.status == 200 and r.body == b'{"instance":"ka","state":"poisoned"}', r.raw
        r = c.request("GET", "/status")
        check_status_json(r, iid, "poisoned")
        r = c.request("GET", "/poison")
        assert r.status == 200 and r.body == b'{"instance":"ka","state":"poisoned"}', r.raw
        r = c.request("POST", "/antidote", body=b"x" * 100)
        assert r.status == 200 and r.body == b'{"instance":"ka","state":"healthy"}', r.raw
        r = c.request("GET", "/status")
        check_status_json(r, iid, "healthy")
        assert (r.header("Connection") or "").lower() != "close", r.raw


@pytest.mark.parametrize("path", CHAOS_PATHS)
@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
def test_chaos_other_methods_405(start_hello, path, method):
    iid = "m405"
    h = start_hello("--instance-id", iid)
    with Conn(h.port) as c:
        r = c.request(method, path)
        assert r.status_line.startswith("HTTP/1.1 405"), r.raw
        assert r.headers_named("Allow") == ["GET, POST"], r.raw
        assert_common_headers(r, body_expected=(method != "HEAD"))
        assert_served_by(r, iid)
        if method != "HEAD":
            json.loads(r.body)
        if (r.header("Connection") or "").lower() != "close":
            # nothing changed
            r2 = c.request("GET", "/status")
            check_status_json(r2, iid, "healthy")
    assert h.running(), "a %s %s killed the process\n%s" % (method, path, h.dump())
    check_status_json(get(h.port, "/status"), iid, "healthy")


# ------------------------------------------------------------------ /die

def _die(h, method, iid):
    port = h.port
    n0 = h.index()
    with Conn(port) as c:
        r = c.request(method, "/die")
        t0 = time.monotonic()
        assert r.status_line == "HTTP/1.1 200 OK", r.raw
        assert_common_headers(r)
        assert_served_by(r, iid)
        assert r.body == ('{"instance":"%s","state":"dying"}' % iid).encode(), r.raw
        rc = h.wait(WAIT)
        took = time.monotonic() - t0
        assert c.closed_by_peer(1.0), "connection open after the process exited"
    assert rc == 3, "exit status %r after /die, want 3\n%s" % (rc, h.dump())
    assert took <= 1.0 + 0.5 * TF, "exited %.2fs after the /die answer" % took
    h.wait_event("DIE", start=n0, timeout=0.5)
    h.assert_clean()  # no sanitizer report, every stdout line well-formed
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    return took


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_die_exits_3(start_hello, method):
    # the fixture's teardown only checks a process that already exited for cleanliness
    h = start_hello("--instance-id", "doomed")
    took = _die(h, method, "doomed")
    print("die: exited %.0f ms after the answer" % (took * 1000))


def test_die_while_poisoned_and_other_connections_open(start_hello):
    h = start_hello("--instance-id", "doomed2")
    idle = Conn(h.port)
    try:
        assert idle.request("GET", "/baz").status == 200
        chaos(h.port, "/poison", "POST", "doomed2", "poisoned")
        _die(h, "POST", "doomed2")
        assert idle.closed_by_peer(1.0), "idle keep-alive connection survived the exit"
    finally:
        idle.close()


# ------------------------------------------------------------------ --chaos off

@pytest.mark.parametrize("args,env", [
    (["--chaos", "off"], None),
    (["--chaos=off"], None),
    ([], {"HELLO_CHAOS": "off"}),
    (["--chaos", "off"], {"HELLO_CHAOS": "on"}),  # flag beats env
])
def test_chaos_off_routes_404(start_hello, args, env):
    iid = "calm"
    h = start_hello("--instance-id", iid, "--health-threshold", "1", *args, env=env)
    with Conn(h.port) as c:
        for method in ("GET", "POST"):
            for path in ("/poison", "/die", "/antidote", "/poison"):
                r = c.request(method, path)
                assert r.status_line.startswith("HTTP/1.1 404"), (method, path, r.raw)
                assert_common_headers(r)
                assert_served_by(r, iid)
                assert list(json.loads(r.body)) == ["error"], r.raw
    time.sleep(0.3 * TF)  # a /die that slipped through would have exited by now
    assert h.running(), "--chaos off: /die still killed the process\n" + h.dump()
    assert not h.events("DIE"), h.dump()
    check_status_json(get(h.port, "/status"), iid, "healthy")
    r = get(h.port, "/health")
    assert r.status == 200 and json.loads(r.body)["healthy"] is True, r.raw
    m = scrape(h.port, iid)
    assert m.one("hello_poisoned") == 0, m.text


@pytest.mark.parametrize("args,env", [
    (["--chaos", "on"], {"HELLO_CHAOS": "off"}),
    ([], {"HELLO_CHAOS": "on"}),
    ([], None),
])
def test_chaos_on(start_hello, args, env):
    h = start_hello("--instance-id", "wild", *args, env=env)
    chaos(h.port, "/poison", "GET", "wild", "poisoned")
    check_status_json(get(h.port, "/status"), "wild", "poisoned")
    chaos(h.port, "/antidote", "GET", "wild", "healthy")


@pytest.mark.parametrize("args,env", [
    (["--chaos", "maybe"], None),
    (["--chaos"], None),
    (["--chaos="], None),
    ([], {"HELLO_CHAOS": "maybe"}),
    (["--instance-id"], None),
])
def test_bad_chaos_config_exits_2(hello_bin, args, env):
    p = run_to_completion([hello_bin, "--listen", "127.0.0.1:0"] + args, env=env)
    assert p.p.returncode == 2, p.dump()
    err = [l for l in p.err if l.strip()]
    assert len(err) == 1 and err[0].startswith("hello: error: "), p.dump()
    assert not p.events("LISTEN"), p.dump()
    p.assert_clean()


def test_help_mentions_new_options(hello_bin):
    p = run_to_completion([hello_bin, "--help"])
    assert p.p.returncode == 0, p.dump()
    text = "\n".join(l.raw for l in p.lines()) + "\n" + p.stderr_text()
    for word in ("--instance-id", "HELLO_INSTANCE_ID", "--chaos", "HELLO_CHAOS", "--healthcheck"):
        assert word in text, "%r missing from --help\n%s" % (word, text)


# ------------------------------------------------------------------ /metrics

def test_metrics_promtool_and_families(start_hello):
    iid = "prom"
    h = start_hello("--instance-id", iid)
    with Conn(h.port) as c:
        for t in ("/", "/baz", "/health", "/status", "/a/b", "/metrics"):
            c.request("GET", t)
    m = scrape(h.port, iid)
    promtool_check(m.text)

    assert m.type_of("hello_http_requests_total") == "counter" or \
        m.type_of("hello_http_requests") == "counter", m.text
    assert m.type_of("hello_http_request_duration_seconds") == "histogram", m.text
    for g in ("hello_http_connections_open", "hello_http_requests_in_flight",
              "hello_http_pending_answers", "hello_poisoned",
              "hello_draining", "hello_build_info", "process_resident_memory_bytes",
              "process_open_fds", "process_start_time_seconds"):
        assert m.type_of(g) == "gauge", "%s: TYPE %r\n%s" % (g, m.type_of(g), m.text)
    assert m.type_of("process_cpu_seconds_total") == "counter" or \
        m.type_of("process_cpu_seconds") == "counter", m.text

    reqs = m.named("hello_http_requests_total")
    assert reqs, m.text
    for labels, v in reqs:
        assert set(labels) == {"route", "code"}, labels
        assert labels["route"] in ROUTES, labels
        assert re.match(r"^[1-5]xx$", labels["code"]), labels
        assert v >= 0 and v == int(v), (labels, v)
    seen = {(l["route"], l["code"]) for l, v in reqs if v > 0}
    for want in [("root", "2xx"), ("name", "2xx"), ("health", "2xx"), ("status", "2xx"),
                 ("other", "4xx"), ("metrics", "2xx")]:
        assert want in seen, "no %r in hello_http_requests_total\n%s" % (want, m.text)

    # histogram: cumulative buckets ending in +Inf == _count, for every label set
    buckets = {}
    for labels, v in m.named("hello_http_request_duration_seconds_bucket"):
        le = labels.pop("le")
        buckets.setdefault(frozenset(labels.items()), []).append(
            (float("inf") if le == "+Inf" else float(le), v))
    assert buckets, m.text
    total = 0
    for key, bs in buckets.items():
        bs.sort()
        assert bs[-1][0] == float("inf"), (key, bs)
        counts = [v for _, v in bs]
        assert counts == sorted(counts), "buckets not cumulative: %r" % bs
        assert m.value("hello_http_request_duration_seconds_count", None, **dict(key)) == counts[-1]
        assert m.value("hello_http_request_duration_seconds_sum", None, **dict(key)) >= 0
        total += counts[-1]
    assert total >= 6, "duration histogram counted %d requests, want >= 6" % total

    assert m.one("hello_poisoned") == 0
    assert m.one("hello_draining") == 0
    assert m.one("hello_http_connections_open") >= 1  # the scrape's own connection
    assert m.one("hello_http_requests_in_flight") >= 0
    assert m.one("hello_http_pending_answers") == 0  # hello answers at once
    bi = m.named("hello_build_info")
    assert len(bi) == 1 and bi[0][0].get("version") == VERSION and bi[0][1] == 1, bi


def test_metrics_process_figures(start_hello):
    h = start_hello("--instance-id", "proc")
    spawn_epoch = time.time() - (time.monotonic() - h.t_start)
    m = scrape(h.port)
    with open("/proc/%d/status" % h.pid) as f:
        rss_kib = int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))
    fds = len(os.listdir("/proc/%d/fd" % h.pid))
    rss = m.one("process_resident_memory_bytes")
    assert 0.5 * rss_kib * 1024 <= rss <= 2.0 * rss_kib * 1024, (rss, rss_kib)
    assert abs(m.one("process_open_fds") - fds) <= 4, (m.one("process_open_fds"), fds)
    start = m.one("process_start_time_seconds")
    assert abs(start - spawn_epoch) <= 3.0, (start, spawn_epoch)
    cpu1 = m.one("process_cpu_seconds_total")
    assert 0 <= cpu1 <= (time.monotonic() - h.t_start) * 2 + 1, cpu1
    with Conn(h.port) as c:
        for _ in range(200):
            c.request("GET", "/baz")
    cpu2 = scrape(h.port).one("process_cpu_seconds_total")
    assert cpu2 >= cpu1, (cpu1, cpu2)


def test_metrics_counters_grow_by_route_and_code(start_hello):
    iid = "count"
    h = start_hello("--instance-id", iid)
    m1 = scrape(h.port, iid)
    with Conn(h.port) as c:
        for _ in range(5):
            assert c.request("GET", "/baz").status == 200
        for method, target, status in [
            ("GET", "/", 200), ("GET", "/health", 200), ("GET", "/status", 200),
            ("GET", "/a/b", 404), ("POST", "/poison", 200), ("GET", "/health", 503),
            ("GET", "/status", 410), ("GET", "/antidote", 200),
        ]:
            r = c.request(method, target)
            assert r.status == status, (target, r.raw)
    m2 = scrape(h.port, iid)
    promtool_check(m2.text)

    def grew(route, code):
        name = "hello_http_requests_total"
        return m2.value(name, route=route, code=code) - m1.value(name, route=route, code=code)

    for route, code, n in [("name", "2xx", 5), ("root", "2xx", 1), ("health", "2xx", 1),
                           ("health", "5xx", 1), ("status", "2xx", 1), ("status", "4xx", 1),
                           ("chaos", "2xx", 2), ("other", "4xx", 1), ("metrics", "2xx", 1)]:
        assert grew(route, code) >= n, "%s/%s grew by %g, want >= %d\nbefore:\n%s\nafter:\n%s" % (
            route, code, grew(route, code), n, m1.text, m2.text)

    def hist_total(m):
        return sum(v for _, v in m.named("hello_http_request_duration_seconds_count"))
    assert hist_total(m2) - hist_total(m1) >= 14, (hist_total(m1), hist_total(m2))
    # counters never go down
    for (name, labels), v in m1.samples.items():
        if name == "hello_http_requests_total" or name.endswith("_count"):
            assert m2.samples.get((name, labels), -1) >= v, (name, labels)


def test_metrics_label_the_route_that_served(start_hello):
    """The handler tags the route it served: an absolute-form target and a percent-encoded
    path count under their route (before, the metrics guessed from the raw target and counted
    `GET http://host/health` as "other"); the server's own rejections count as "other"."""
    iid = "tags"
    h = start_hello("--instance-id", iid)
    m1 = scrape(h.port, iid)
    with Conn(h.port) as c:
        assert c.request("GET", "http://example.test/health").status == 200
        assert c.request("GET", "HTTP://example.test/").status == 200
        assert c.request("GET", "/%68ealth").status == 200   # /health, encoded
        assert c.request("GET", "/%62az").status == 200      # a name
    m2 = scrape(h.port, iid)

    def grew(route, code):
        name = "hello_http_requests_total"
        return m2.value(name, route=route, code=code) - m1.value(name, route=route, code=code)

    assert grew("health", "2xx") == 2, m2.text
    assert grew("root", "2xx") == 1, m2.text
    assert grew("name", "2xx") == 1, m2.text
    assert grew("other", "2xx") == 0, m2.text


def test_metrics_poisoned_gauge(start_hello):
    h = start_hello("--instance-id", "pg")
    assert scrape(h.port).one("hello_poisoned") == 0
    chaos(h.port, "/poison", "POST", "pg", "poisoned")
    assert scrape(h.port).one("hello_poisoned") == 1
    chaos(h.port, "/poison", "GET", "pg", "poisoned")
    assert scrape(h.port).one("hello_poisoned") == 1
    chaos(h.port, "/antidote", "GET", "pg", "healthy")
    assert scrape(h.port).one("hello_poisoned") == 0


def test_metrics_connections_open_gauge(start_hello):
    h = start_hello("--instance-id", "conns")
    base = scrape(h.port).one("hello_http_connections_open")
    conns = [Conn(h.port) for _ in range(4)]
    try:
        for c in conns:
            assert c.request("GET", "/baz").status == 200
        with_four = scrape(h.port).one("hello_http_connections_open")
        assert with_four >= base + 4 - 1, (base, with_four)  # base may count a closing scrape
        assert with_four >= 5, with_four
    finally:
        for c in conns:
            c.close()
    wait_until(lambda: scrape(h.port).one("hello_http_connections_open") <= max(1, with_four - 4),
               2.0 * TF, "connections_open back down after closing 4 connections")


# ------------------------------------------------------------------ --healthcheck

def test_healthcheck_against_hello(start_hello, hello_bin):
    h = start_hello("--instance-id", "hc")
    url = "http://127.0.0.1:%d/health" % h.port
    n0 = h.index()
    p, took, lines = healthcheck(hello_bin, url)
    assert_healthcheck(p, lines, 0)
    assert took < 2.0 * TF, took
    h.wait_event("ACCESS", start=n0, target="/health", status="200")

    chaos(h.port, "/poison", "POST", "hc", "poisoned")
    p, _, lines = healthcheck(hello_bin, url)
    line = assert_healthcheck(p, lines, 1)
    assert "503" in line, "the reason line does not give the status: %r" % line

    chaos(h.port, "/antidote", "POST", "hc", "healthy")
    p, _, lines = healthcheck(hello_bin, url)
    assert_healthcheck(p, lines, 0)


def test_healthcheck_connection_refused(hello_bin):
    s = socket.socket()  # bound, never listening: connections are refused
    s.bind(("127.0.0.1", 0))
    try:
        port = s.getsockname()[1]
        p, took, lines = healthcheck(hello_bin, "http://127.0.0.1:%d/health" % port)
    finally:
        s.close()
    line = assert_healthcheck(p, lines, 1)
    assert took < 1.0 * TF, "refused connection took %.2fs" % took
    assert "refused" in line.lower(), line


@pytest.mark.parametrize("mode,reply", [
    ("hang", b""),                                              # accepted, never answered
    ("partial", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n"),  # head never finished
    ("partial", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),  # body never finished
])
def test_healthcheck_times_out_within_2s(hello_bin, mode, reply):
    with FakeServer(mode, reply) as srv:
        p, took, lines = healthcheck(hello_bin, srv.url, timeout=2.0 + WAIT)
    head_complete = b"\r\n\r\n" in reply
    if head_complete:
        # a complete 200 head: deciding on it at once or timing out on the body are both fine
        assert p.p.returncode in (0, 1), p.dump()
        assert len(lines) == 1, p.dump()
        assert took <= 2.0 + 0.5 * TF, took
        return
    line = assert_healthcheck(p, lines, 1)
    print("healthcheck gave up after %.2fs: %s" % (took, line))
    assert 0.5 <= took <= 2.0 + 0.5 * TF, "gave up after %.2fs, want a ~2s timeout" % took
    assert re.search(r"time", line, re.I), "reason does not mention the timeout: %r" % line


@pytest.mark.parametrize("reply,code", [
    (http_reply(200, b"OK"), 0),
    (http_reply(200, b"OK", b""), 0),
    (b"HTTP/1.0 200 OK\r\n\r\n{}", 0),                     # body delimited by the close
    (http_reply(503, b"Service Unavailable"), 1),
    (http_reply(500, b"Internal Server Error"), 1),
    (http_reply(404, b"Not Found"), 1),
    (http_reply(301, b"Moved Permanently"), 1),
    (http_reply(201, b"Created"), 1),
    (http_reply(204, b"No Content", b""), 1),
    (b"this is not HTTP\r\n\r\n", 1),
    (b"", 1),                                               # closed without an answer
])
def test_healthcheck_status_decides(hello_bin, reply, code):
    with FakeServer("answer", reply) as srv:
        p, took, lines = healthcheck(hello_bin, srv.url)
    assert_healthcheck(p, lines, code)
    assert took < 2.0 + 0.5 * TF, took


def test_healthcheck_request_uses_url(hello_bin):
    with FakeServer("answer", http_reply(200, b"OK")) as srv:
        url = "http://127.0.0.1:%d/custom/path?x=1" % srv.port
        p, _, lines = healthcheck(hello_bin, url)
        heads = list(srv.heads)
    assert_healthcheck(p, lines, 0)
    assert len(heads) == 1, heads
    head = heads[0].decode("latin-1")
    first = head.split("\r\n")[0]
    assert re.match(r"^GET /custom/path\?x=1 HTTP/1\.[01]$", first), head
    if first.endswith("1.1"):
        hosts = re.findall(r"(?im)^host:\s*(\S+)\s*$", head)
        assert hosts == ["127.0.0.1:%d" % srv.port], head


def test_healthcheck_default_url(hello_bin):
    try:
        srv = FakeServer("answer", http_reply(200, b"OK"), port=8080)
    except OSError:
        pytest.skip("127.0.0.1:8080 is in use")
    with srv:
        p, _, lines = healthcheck(hello_bin)
        heads = list(srv.heads)
    assert_healthcheck(p, lines, 0)
    assert len(heads) == 1 and heads[0].startswith(b"GET /health HTTP/1."), heads


@pytest.mark.parametrize("url", [
    "https://127.0.0.1:8443/health",
    "http:///health",
    "http://:8080/health",
    "http://127.0.0.1:/health",
    "http://127.0.0.1:99999/health",
    "http://127.0.0.1:abc/health",
    "ftp://127.0.0.1:21/health",
    "127.0.0.1:8080/health",
    "not a url",
    "",
])
def test_healthcheck_bad_url_exits_2(hello_bin, url):
    p, took, _ = healthcheck(hello_bin, url)
    assert p.p.returncode == 2, "url %r: exit %r, want 2\n%s" % (url, p.p.returncode, p.dump())
    err = [l for l in p.err if l.strip()]
    assert len(err) == 1, "want one stderr line\n" + p.dump()
    assert not [l for l in p.lines() if l.raw.strip()], "output on stdout too\n" + p.dump()
    assert took < 1.0 * TF, took
