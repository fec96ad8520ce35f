"""Black-box tests of the sidecar's external probes (--probes, SIDECAR_PROBES).

Probes are plain http/https URLs polled on the main target's schedule: up when
the final status (after at most 5 redirects) is 2xx. The pages they hit come
from PageServer below (http.server, optionally TLS with a self-signed
certificate made by `openssl` at test time); the main /health target is a
FakeTarget.
"""

import http.client
import http.server
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from bbenv import TF
from promtext import metrics_port, promtool_check, sample, samples, scrape_text
from bbproc import run_to_completion
from fake_dns import FakeDNS
from sidecar_lines import ALERT_KEYS, RECOVERED_KEYS, START_KEYS, check_alert, parse_report
from fake_target import FakeTarget

FAST = ("--interval", "200ms", "--window", "1s", "--timeout", "150ms")
WINDOW = 1.0
REPORT_WAIT = WINDOW + 2.0 * TF


# ------------------------------------------------------------------ a page server

class PageServer:
    """HTTP/1.1 (keep-alive) server on 127.0.0.1:0 answering from a table
    path -> (status, {header: value}, body); unknown paths get 404. With
    tls=(certfile, keyfile) it speaks HTTPS (handshake in the connection's
    thread). Counts connections, TLS handshake failures and requests per path.
    """

    def __init__(self, routes=None, tls=None):
        self._lock = threading.Lock()
        self.routes = dict(routes or {})
        self.hits = {}             # path -> [headers dict]
        self.connections = 0
        self.tls_errors = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                with owner._lock:
                    owner.connections += 1
                if isinstance(self.request, ssl.SSLSocket):
                    self.request.settimeout(5)
                    try:
                        self.request.do_handshake()
                    except (ssl.SSLError, OSError) as e:
                        with owner._lock:
                            owner.tls_errors.append(str(e))
                        raise
                super().setup()

            def do_GET(self):
                path = self.path
                with owner._lock:
                    owner.hits.setdefault(path, []).append(
                        {k.lower(): v for k, v in self.headers.items()})
                    status, headers, body = owner.routes.get(
                        path, (404, {"Content-Type": "text/plain"}, b"not found"))
                if isinstance(body, str):
                    body = body.encode()
                head = "HTTP/1.1 %d %s\r\n" % (status, self.responses.get(status, ("X",))[0])
                for k, v in headers.items():
                    head += "%s: %s\r\n" % (k, v)
                head += "Content-Length: %d\r\n\r\n" % len(body)
                # one write: no Nagle / delayed-ACK stall between head and body
                self.wfile.write(head.encode("latin-1") + body)
                self.wfile.flush()

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # TLS failures and resets are expected here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True,
                                                 do_handshake_on_connect=False)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={
            "poll_interval": 0.1}, daemon=True)

    def url(self, path, host="127.0.0.1"):
        return "%s://%s:%d%s" % (self.scheme, host, self.port, path)

    def set_route(self, path, status, body=b"ok", headers=None):
        with self._lock:
            self.routes[path] = (status, dict(headers or {"Content-Type": "text/plain"}), body)

    def redirect(self, path, location, status=302):
        self.set_route(path, status, b"", {"Location": location})

    def hit_count(self, path):
        with self._lock:
            return len(self.hits.get(path, []))

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=2.0)


@pytest.fixture
def pages():
    """pages(tls=None) -> a started PageServer (stopped at teardown)."""
    made = []

    def make(tls=None):
        p = PageServer(tls=tls).start()
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


# ------------------------------------------------------------------ helpers

def hp_of(url):
    m = re.match(r"^https?://([^/]+)", url)
    return m.group(1)


def wait_report(s, url, start=0, timeout=REPORT_WAIT):
    return s.wait_event("REPORT", start=start, timeout=timeout, target=url)


def alerts_of(s, url):
    return [l for l in s.events("ALERT") if l.fields.get("target") == url]


def make_self_signed(tmp_path, san="DNS:localhost,IP:127.0.0.1"):
    """(certfile, keyfile) of a self-signed certificate (CN=localhost) for these names."""
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    p = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=" + san],
        capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        pytest.skip("openssl req failed: %s" % p.stderr.strip()[-300:])
    return str(cert), str(key)


# ------------------------------------------------------------------ up and down

@pytest.mark.parametrize("status", [200, 201, 204])
def test_probe_2xx_is_up(start_sidecar, fake_target, pages, status):
    """A 2xx page (any body: not a /health answer) is up: PROBE at start, REPORT with
    polls= and no samples/latency, no ALERT."""
    p = pages()
    p.set_route("/page", status, b"" if status == 204 else b"<html><p>hi</p></html>",
                {"Content-Type": "text/html"})
    probe = p.url("/page")
    s = start_sidecar("--target", fake_target.url, *FAST, "--probes", probe)
    start = s.events("START")[0]
    assert list(start.fields) == START_KEYS, start.raw
    assert start.fields["probes"] == "1", start.raw
    rep_line = wait_report(s, probe)
    probes = s.events("PROBE")
    assert [l.fields for l in probes] == [{"target": probe}], s.dump()
    lines = s.lines()
    assert lines.index(probes[0]) < lines.index(rep_line), s.dump()
    rep = parse_report(rep_line)
    assert (rep["window"], rep["state"], rep["failures"]) == ("1s", "healthy", 0), rep_line.raw
    assert 3 <= rep["polls"] <= 7 and rep["rtt"], rep_line.raw
    for k in ("samples", "best", "worst", "avg"):
        assert k not in rep_line.fields, rep_line.raw
    assert not alerts_of(s, probe), s.dump()
    # the main target's REPORT of that window still has its /health samples
    main = [l for l in s.events("REPORT") if l.fields.get("target") == fake_target.url]
    assert main and "samples" in main[0].fields and "polls" not in main[0].fields, s.dump()
    assert p.hit_count("/page") >= 3
    assert p.hits["/page"][0].get("host") == "127.0.0.1:%d" % p.port


@pytest.mark.parametrize("status", [404, 503])
def test_probe_error_status_alerts_then_recovers(start_sidecar, fake_target, pages, status):
    p = pages()
    p.set_route("/x", status, b"nope")
    probe = p.url("/x")
    s = start_sidecar("--target", fake_target.url, *FAST, "--probes", probe)
    port = metrics_port(s)
    first = s.wait_event("ALERT", target=probe, timeout=1.0 * TF)
    check_alert(first, probe, hp_of(probe), "status")
    assert (first.fields["consecutive"], first.fields["detail"]) == ("1", "HTTP %d" % status), \
        first.raw
    rep = parse_report(wait_report(s, probe))
    assert rep["state"] == "down" and rep["failures"] == rep["polls"] >= 3, s.dump()
    assert rep["rtt"], "HTTP answers came back: their round trips count\n" + s.dump()
    m = samples(scrape_text(port))
    hp = hp_of(probe)
    assert sample(m, "probe_success", target=probe, replica=hp) == 0
    assert sample(m, "probe_http_status_code", target=probe, replica=hp) == status
    assert sample(m, "probe_failure_info", target=probe, replica=hp, reason="status") == 1
    assert sample(m, "sidecar_target_state", target=probe, state="down") == 1
    assert sample(m, "sidecar_probe_failures_total", target=probe, replica=hp,
                  reason="status") >= 3
    assert sample(m, "sidecar_http_pending_answers") == 0
    assert sample(m, "probe_success", target=fake_target.url,
                  replica=hp_of(fake_target.url)) == 1

    k = s.index()
    p.set_route("/x", 200, b"fine")
    rec = s.wait_event("RECOVERED", start=k, target=probe, timeout=1.0 * TF)
    assert list(rec.fields) == RECOVERED_KEYS, rec.raw
    assert (rec.fields["replica"], rec.fields["state"]) == (hp, "healthy"), rec.raw
    alerts = alerts_of(s, probe)
    assert [check_alert(l, probe, hp_of(probe), "status") for l in alerts] == \
        list(range(1, len(alerts) + 1)), s.dump()
    assert int(rec.fields["failures"]) == len(alerts), s.dump()
    assert not alerts_of(s, fake_target.url), s.dump()


def test_probe_follows_redirects(start_sidecar, fake_target, pages):
    """302 to a 200 page is up; so is a chain of 5 redirects (301/302/303/307/308); a
    redirect to a 404 is down with the final status; 6 redirects are too many: down."""
    p = pages()
    p.set_route("/ok", 200, b"landed")
    p.redirect("/r", "/ok", 302)
    codes = [301, 302, 303, 307, 308]
    for i, code in enumerate(codes):  # /c0 -> /c1 -> ... -> /c4 -> /ok: 5 redirects
        p.redirect("/c%d" % i, "/c%d" % (i + 1) if i + 1 < len(codes) else "/ok", code)
    for i in range(6):                # /d0 -> ... -> /d5 -> /ok: 6 redirects
        p.redirect("/d%d" % i, "/d%d" % (i + 1) if i < 5 else "/ok", 302)
    p.redirect("/to404", p.url("/missing"), 302)  # absolute Location
    up = [p.url("/r"), p.url("/c0")]
    to404, six = p.url("/to404"), p.url("/d0")
    s = start_sidecar("--target", fake_target.url, *FAST, "--probes", ",".join(up + [to404, six]))
    last = wait_report(s, six)
    reports = {l.fields["target"]: parse_report(l) for l in s.events("REPORT")
               if l.fields.get("target") in up + [to404, six]}
    assert len(reports) == 4, s.dump()
    for u in up:
        assert reports[u]["state"] == "healthy" and reports[u]["failures"] == 0, s.dump()
        assert not alerts_of(s, u), s.dump()
    assert p.hit_count("/ok") >= 2 * reports[up[0]]["polls"], p.hits.keys()
    assert p.hit_count("/c4") >= reports[up[1]]["polls"]
    a404 = alerts_of(s, to404)
    assert a404, s.dump()
    check_alert(a404[0], to404, hp_of(to404), "status")
    assert a404[0].fields["detail"] == "HTTP 404", a404[0].raw
    assert reports[to404]["state"] == "down", s.dump()
    assert p.hit_count("/missing") >= 1
    # six redirects: curl stops after the fifth; the probe is down whatever the reason
    assert reports[six]["state"] == "down" and reports[six]["failures"] >= 1, last.raw
    a6 = alerts_of(s, six)
    assert a6 and a6[0].fields["state"] == "down", s.dump()
    assert p.hit_count("/d5") >= 1 and p.hit_count("/ok") >= 1
    assert p.hit_count("/d0") >= 1


def test_probe_connection_refused(start_sidecar, fake_target, closed_port):
    probe = "http://127.0.0.1:%d/" % closed_port
    s = start_sidecar("--target", fake_target.url, *FAST, "--probes", probe)
    port = metrics_port(s)
    first = s.wait_event("ALERT", target=probe, timeout=1.0 * TF)
    check_alert(first, probe, hp_of(probe), "connect")
    rep_line = wait_report(s, probe)
    rep = parse_report(rep_line)
    assert rep["state"] == "down" and rep["failures"] == rep["polls"] >= 3, rep_line.raw
    assert not rep["rtt"], "no HTTP answer, yet round trips: " + rep_line.raw
    m = samples(scrape_text(port))
    hp = hp_of(probe)
    assert sample(m, "probe_http_status_code", target=probe, replica=hp) == 0
    assert sample(m, "probe_failure_info", target=probe, replica=hp, reason="connect") == 1


def test_probe_timeout(start_sidecar, fake_target):
    with FakeTarget() as hang:
        hang.set_hang()
        probe = "http://127.0.0.1:%d/slow" % hang.port
        s = start_sidecar("--target", fake_target.url, *FAST, "--probes", probe)
        first = s.wait_event("ALERT", target=probe, timeout=1.0 * TF)
        check_alert(first, probe, hp_of(probe), "timeout")
        assert first.fields["detail"] == "no answer within 150ms", first.raw
        assert hang.snapshot()[0].request_line == "GET /slow HTTP/1.1"
        s.assert_clean_exit(signal.SIGTERM)


def _resolver_fails_fast(name):
    t0 = time.monotonic()
    try:
        socket.getaddrinfo(name, 80)
    except socket.gaierror:
        return time.monotonic() - t0 < 0.3
    return False


def test_probe_unresolvable_name(start_sidecar, fake_target):
    host = "no-such-host.invalid"
    if not _resolver_fails_fast(host):
        pytest.skip("resolver here does not fail fast for %s" % host)
    probe = "http://%s/" % host
    s = start_sidecar("--target", fake_target.url, "--interval", "500ms", "--window", "2s",
                      "--timeout", "400ms", "--probes", probe)
    alert = s.wait_event("ALERT", target=probe, timeout=1.5 * TF)
    assert list(alert.fields) == ALERT_KEYS, alert.raw
    assert (alert.fields["reason"], alert.fields["replica"], alert.fields["state"]) == \
        ("dns", "%s:80" % host, "down"), alert.raw


def test_https_probe_untrusted_certificate(start_sidecar, fake_target, pages, tmp_path):
    """A self-signed certificate is not trusted without --ca-file (system bundle): the probe
    is down with reason=connect and curl's certificate complaint; no request gets through."""
    p = pages(tls=make_self_signed(tmp_path))
    p.set_route("/ok", 200, b"secret")
    probe = p.url("/ok")
    assert probe.startswith("https://127.0.0.1:")
    # TLS set-up (loading the CA bundle) takes tens of ms: roomier timings than FAST
    s = start_sidecar("--target", fake_target.url, "--interval", "500ms", "--window", "2s",
                      "--timeout", "400ms", "--probes", probe)
    port = metrics_port(s)
    first = s.wait_event("ALERT", target=probe, timeout=2.0 * TF)
    check_alert(first, probe, hp_of(probe), "connect")
    detail = first.fields["detail"]
    assert "certificate" in detail.lower(), first.raw
    assert re.search(r"self.signed", detail), first.raw
    assert p.connections >= 1, "the TLS server was never contacted"
    assert p.hit_count("/ok") == 0, "a request passed an untrusted certificate"
    s.wait_event("ALERT", target=probe, consecutive=2, timeout=2.0 * TF)
    m = samples(scrape_text(port))
    hp = hp_of(probe)
    assert sample(m, "probe_success", target=probe, replica=hp) == 0
    assert sample(m, "probe_http_status_code", target=probe, replica=hp) == 0
    assert sample(m, "probe_failure_info", target=probe, replica=hp, reason="connect") == 1
    assert sample(m, "sidecar_target_info", target=probe, kind="http", replicas="off") == 1


def test_https_with_ca_file_checks_the_url_name(start_sidecar, pages, tmp_path):
    """--ca-file trusts a private CA (here the self-signed certificate itself, issued for
    hello.bb.test only). The /health target by name, pinned to 127.0.0.1 as a replica, is
    verified against its name: healthy. A probe of https://127.0.0.1/ (not in the
    certificate) is refused on the name: down, reason=connect."""
    name = "hello.bb.test"
    cert, key = make_self_signed(tmp_path, san="DNS:" + name)
    p = pages(tls=(cert, key))
    p.set_route("/health", 200, b'{"healthy":true,"latency":0.25}')
    p.set_route("/ok", 200, b"ok")
    target = "https://%s:%d/health" % (name, p.port)
    by_ip = p.url("/ok")
    dns = FakeDNS().start()
    try:
        dns.set_answers(name, ["127.0.0.1"])
        s = start_sidecar("--target", target, "--interval", "500ms", "--window", "2s",
                          "--timeout", "400ms", "--dns-server", dns.server, "--probes", by_ip,
                          env={"SIDECAR_CA_FILE": cert})
        s.wait_event("REPLICA", replica="127.0.0.1:%d" % p.port, change="joined",
                     timeout=1.0 * TF)
        alert = s.wait_event("ALERT", target=by_ip, timeout=2.0 * TF)
        check_alert(alert, by_ip, hp_of(by_ip), "connect")
        assert re.search(r"name|match", alert.fields["detail"]), alert.raw
        total = s.wait_event("REPORT", target=target, timeout=2.0 + 2.0 * TF)
        assert (total.fields["replicas"], total.fields["state"]) == ("1", "healthy"), s.dump()
        assert total.fields["best"] == "0.250000s", total.raw
        assert not alerts_of(s, target), s.dump()
        assert p.hit_count("/health") >= 2 and p.hit_count("/ok") == 0
        assert p.hits["/health"][0].get("host") == "%s:%d" % (name, p.port)
        s.assert_clean_exit(signal.SIGTERM)
    finally:
        dns.stop()


def test_https_probe_up_with_ca_file(start_sidecar, fake_target, pages, tmp_path):
    """An https probe behind a private CA (--ca-file): up, redirects followed over TLS, and
    exported like any probe (probe_success 1, status 200)."""
    cert, key = make_self_signed(tmp_path)
    p = pages(tls=(cert, key))
    p.set_route("/ok", 200, b"<html>ok</html>", {"Content-Type": "text/html"})
    p.redirect("/old", "/ok")
    probes = [p.url("/ok"), p.url("/old")]
    assert all(u.startswith("https://127.0.0.1:") for u in probes), probes
    s = start_sidecar("--target", fake_target.url, *FAST, "--probes", ",".join(probes),
                      "--ca-file", cert)
    for probe in probes:
        rep = parse_report(wait_report(s, probe))
        assert (rep["state"], rep["failures"], rep["reason"]) == ("healthy", 0, None), s.dump()
        assert rep["polls"] >= 3 and rep["rtt"], s.dump()
        assert not alerts_of(s, probe), s.dump()
    m = samples(scrape_text(metrics_port(s)))
    for probe in probes:
        hp = hp_of(probe)
        assert sample(m, "probe_success", target=probe, replica=hp) == 1
        assert sample(m, "probe_http_status_code", target=probe, replica=hp) == 200
    assert p.hit_count("/old") >= 3 and p.hit_count("/ok") >= 6
    s.assert_clean_exit(signal.SIGTERM)


def test_ca_file_missing_exits_2(sidecar_bin, tmp_path):
    missing = str(tmp_path / "no-such-ca.pem")
    p = run_to_completion([sidecar_bin, "--metrics-listen", "off", "--ca-file", missing])
    assert p.p.returncode == 2, p.dump()
    err = [l for l in p.err if l.strip()]
    assert len(err) == 1 and err[0].startswith("sidecar: error: "), p.dump()
    assert "--ca-file" in err[0] and "SIDECAR_CA_FILE" in err[0], p.dump()


# ------------------------------------------------------------------ probes with the target

def test_probes_and_target_metrics(start_sidecar, fake_target, pages):
    """The /health target and two probes (one by name): a REPORT each per window,
    sidecar_target_info with the right kind, per-probe series labelled host:port."""
    p = pages()
    p.set_route("/up", 200, b"up")
    p.set_route("/down", 503, b"down")
    up, down = p.url("/up", host="localhost"), p.url("/down")
    s = start_sidecar("--target", fake_target.url, *FAST, "--probes", "%s, %s" % (up, down))
    port = metrics_port(s)
    assert s.events("START")[0].fields["probes"] == "2", s.dump()
    assert [l.fields["target"] for l in s.events("PROBE")] == [up, down], s.dump()
    wait_report(s, down)
    time.sleep(0.05)
    window = [l for l in s.events("REPORT")]
    assert [l.fields["target"] for l in window] == [fake_target.url, up, down], s.dump()
    assert "samples" in window[0].fields and window[0].fields["replicas"] == "1", s.dump()
    assert parse_report(window[1])["state"] == "healthy", s.dump()
    assert parse_report(window[2])["state"] == "down", s.dump()

    text = scrape_text(port)
    promtool_check(text)
    m = samples(text)
    assert sample(m, "sidecar_target_info", target=fake_target.url, kind="health",
                  replicas="off") == 1
    assert sample(m, "sidecar_target_info", target=up, kind="http", replicas="off") == 1
    assert sample(m, "sidecar_target_info", target=down, kind="http", replicas="off") == 1
    assert len([k for k in m if k[0] == "sidecar_target_info"]) == 3
    for u in (fake_target.url, up, down):
        assert sample(m, "sidecar_target_replicas", target=u) == 1
        assert sample(m, "sidecar_dns_failures_total", target=u) == 0
    assert hp_of(up) == "localhost:%d" % p.port
    assert sample(m, "probe_success", target=up, replica=hp_of(up)) == 1
    assert sample(m, "probe_success", target=down, replica=hp_of(down)) == 0
    assert sample(m, "sidecar_target_state", target=up, state="healthy") == 1
    assert sample(m, "sidecar_target_state", target=down, state="down") == 1
    n = sample(m, "sidecar_probes_total", target=up, replica=hp_of(up))
    assert n >= 3
    assert sample(m, "sidecar_probe_round_trip_seconds_count", target=up,
                  replica=hp_of(up)) == n
    assert sample(m, "sidecar_window_failures", target=down, replica=hp_of(down),
                  window="1s") >= 3
    # no /health latency for a probe
    assert not [k for k in m if k[0] == "sidecar_reported_latency_seconds"
                and dict(k[1])["target"] in (up, down)]
    assert not [k for k in m if k[0] == "sidecar_window_latency_seconds"
                and dict(k[1])["target"] in (up, down)]


def test_json_probe_lines(start_sidecar, fake_target, pages):
    p = pages()
    p.set_route("/x", 503, b"")
    probe = p.url("/x")
    s = start_sidecar("--target", fake_target.url, *FAST, "--probes", probe,
                      "--log-format", "json")
    rep = wait_report(s, probe)
    assert all(l.ok for l in s.lines()), s.dump()
    assert list(s.events("START")[0].obj)[3:] == START_KEYS, s.dump()
    assert s.events("START")[0].obj["probes"] == 1, s.dump()
    assert [list(l.obj)[3:] for l in s.events("PROBE")] == [["target"]], s.dump()
    assert list(rep.obj)[3:] == ["target", "replicas", "window", "state", "reason", "polls",
                                 "failures", "rtt_p50_ms", "rtt_p95_ms", "rtt_p99_ms",
                                 "rtt_max_ms"], rep.raw
    assert (rep.obj["state"], rep.obj["reason"]) == ("down", "status"), rep.raw
    assert (rep.obj["replicas"], rep.obj["state"]) == (1, "down"), rep.raw
    assert rep.obj["polls"] == rep.obj["failures"] >= 3, rep.raw
    alert = alerts_of(s, probe)[0]
    assert list(alert.obj)[3:] == ALERT_KEYS, alert.raw
    assert (alert.obj["reason"], alert.obj["replica"], alert.obj["consecutive"]) == \
        ("status", hp_of(probe), 1), alert.raw


# ------------------------------------------------------------------ the list itself

@pytest.mark.parametrize("how", ["flag", "env"])
def test_probe_list_separators(start_sidecar, fake_target, pages, how):
    """Commas, spaces, tabs and newlines separate URLs, in any mix and number."""
    p = pages()
    urls = [p.url("/p%d" % i) for i in range(5)]
    for i in range(5):
        p.set_route("/p%d" % i, 200)
    text = "%s,%s  %s\t%s ,, \n%s\n" % tuple(urls)
    if how == "flag":
        s = start_sidecar("--target", fake_target.url, *FAST, "--probes", text)
    else:
        s = start_sidecar("--target", fake_target.url, *FAST, env={"SIDECAR_PROBES": text})
    assert s.events("START")[0].fields["probes"] == "5", s.dump()
    s.wait_event("LISTEN")  # printed after the PROBE lines
    assert [l.fields["target"] for l in s.events("PROBE")] == urls, s.dump()
    for i in range(5):
        deadline = time.monotonic() + 1.0 * TF
        while p.hit_count("/p%d" % i) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert p.hit_count("/p%d" % i) >= 1, "probe %d never polled\n%s" % (i, s.dump())


@pytest.mark.parametrize("value", ["", " , \t,"])
def test_empty_probe_list(start_sidecar, fake_target, value):
    s = start_sidecar("--target", fake_target.url, *FAST, "--probes", value)
    assert s.events("START")[0].fields["probes"] == "0", s.dump()
    s.wait_event("REPORT", timeout=REPORT_WAIT)
    assert not s.events("PROBE"), s.dump()
    assert [l.fields["target"] for l in s.events("REPORT")] == [fake_target.url], s.dump()


@pytest.mark.parametrize("args,env", [
    (["--probes", "ftp://x"], None),
    (["--probes", "http://ok/ not-a-url"], None),
    (["--probes", "http://127.0.0.1:1/,file:///etc/passwd"], None),
    (["--probes", "http://"], None),
    (["--probes", "127.0.0.1:8080/health"], None),
    ([], {"SIDECAR_PROBES": "ftp://x"}),
    ([], {"SIDECAR_PROBES": "http://ok/ gopher://h/"}),
    # the same URL twice, or the target as a probe: its series would be exported twice
    (["--probes", "http://a.example/,http://b.example/ http://a.example/"], None),
    (["--target", "http://hello:8080/health", "--probes", "http://hello:8080/health"], None),
])
def test_invalid_probes_exit_2(sidecar_bin, args, env):
    p = run_to_completion([sidecar_bin, "--metrics-listen", "off"] + args, env=env)
    assert p.p.returncode == 2, p.dump()
    err = [l for l in p.err if l.strip()]
    assert len(err) == 1, "want exactly one stderr line\n" + p.dump()
    assert err[0].startswith("sidecar: error: "), p.dump()
    assert "--probes" in err[0] and "SIDECAR_PROBES" in err[0], p.dump()
    assert not p.lines(), "stdout should be empty\n" + p.dump()
