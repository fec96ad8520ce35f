"""Black-box tests of the `sidecar` binary (README.md, section sidecar).

The sidecar polls a FakeTarget (fake_target.py) whose answers each test
chooses; short durations keep the suite fast.
"""

import re
import signal
import socket
import time

import pytest

from bbenv import TF, WAIT
from bbproc import run_to_completion, sanitizer_report
from fake_target import Action, health_body

FAST = ("--interval", "200ms", "--window", "1s", "--timeout", "100ms")
INTERVAL = 0.2
WINDOW = 1.0

DUR_RE = re.compile(r"^(\d+)(ms|s|m)$")
REPORT_RE = re.compile(
    r"^window=(?P<window>\S+) samples=(?P<samples>\d+) failures=(?P<failures>\d+) "
    r"best=(?P<best>\d+\.\d{6})s worst=(?P<worst>\d+\.\d{6})s avg=(?P<avg>\d+\.\d{6})s$"
)
REPORT_EMPTY_RE = re.compile(
    r"^window=(?P<window>\S+) samples=0 failures=(?P<failures>\d+) "
    r"no latency samples in the past (?P<past>\S+)$"
)
REASONS = {"status", "unhealthy", "timeout", "connect", "dns", "body"}


def dur(text):
    """'250ms' / '10s' / '1m' -> seconds (float)."""
    m = DUR_RE.match(text or "")
    assert m, "not a DUR: %r" % text
    n = int(m.group(1))
    return n / 1000.0 if m.group(2) == "ms" else n * (60 if m.group(2) == "m" else 1)


def parse_report(line):
    m = REPORT_RE.match(line.rest)
    if m:
        d = m.groupdict()
        return {"window": dur(d["window"]), "samples": int(d["samples"]),
                "failures": int(d["failures"]), "best": float(d["best"]),
                "worst": float(d["worst"]), "avg": float(d["avg"])}
    m = REPORT_EMPTY_RE.match(line.rest)
    assert m, "REPORT line not in contract form: %r" % line.raw
    assert dur(m.group("past")) == dur(m.group("window")), line.raw
    return {"window": dur(m.group("window")), "samples": 0, "failures": int(m.group("failures"))}


def fits_served(rep, served, tol=1.5e-6):
    """Is there a run of `samples` consecutive served latencies giving best/worst/avg?"""
    n = rep["samples"]
    for i in range(0, len(served) - n + 1):
        run = served[i:i + n]
        if (abs(min(run) - rep["best"]) <= tol and abs(max(run) - rep["worst"]) <= tol
                and abs(sum(run) / n - rep["avg"]) <= tol):
            return True
    return False


@pytest.fixture
def closed_port():
    """A loopback port that is bound but not listening: connect -> refused."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    yield s.getsockname()[1]
    s.close()


# ------------------------------------------------------------------ START and polling

def test_start_line_echoes_configuration(start_sidecar, fake_target):
    s = start_sidecar("--target", fake_target.url, *FAST)
    start = s.events("START")[0]
    assert start.fields.get("target") == fake_target.url, start.raw
    assert dur(start.fields.get("interval")) == 0.2, start.raw
    assert dur(start.fields.get("window")) == 1.0, start.raw
    assert dur(start.fields.get("timeout")) == 0.1, start.raw
    assert s.lines()[0].event == "START", s.dump()


def test_start_line_defaults(start_sidecar):
    """No flag and no env: the defaults; stop again before any 10 s poll matters."""
    s = start_sidecar()
    start = s.events("START")[0]
    assert start.fields.get("target") == "http://hello:8080/health", start.raw
    assert dur(start.fields.get("interval")) == 10, start.raw
    assert dur(start.fields.get("window")) == 60, start.raw
    assert dur(start.fields.get("timeout")) == 5, start.raw
    rc, took = s.stop(signal.SIGTERM)
    assert rc == 0, s.dump()
    assert took < 1.0 * TF, "exit took %.2fs" % took


def test_start_line_defaults_literal(start_sidecar):
    """The contract prints the defaults as `interval=10s window=60s timeout=5s`."""
    s = start_sidecar()
    start = s.events("START")[0]
    got = {k: start.fields.get(k) for k in ("target", "interval", "window", "timeout")}
    assert got == {"target": "http://hello:8080/health", "interval": "10s",
                   "window": "60s", "timeout": "5s"}, start.raw


@pytest.mark.parametrize("args,timeout", [
    (("--interval", "4s"), 2.0),
    (("--interval", "250ms"), 0.125),
    (("--interval", "30s"), 5.0),
    (("--interval", "1m", "--window", "5m"), 5.0),
])
def test_default_timeout_is_min_5s_half_interval(start_sidecar, fake_target, args, timeout):
    s = start_sidecar("--target", fake_target.url, *args)
    start = s.events("START")[0]
    assert dur(start.fields.get("timeout")) == timeout, start.raw


def test_configuration_from_env(start_sidecar, fake_target):
    env = {"SIDECAR_TARGET": fake_target.url, "SIDECAR_INTERVAL": "200ms",
           "SIDECAR_WINDOW": "1s", "SIDECAR_TIMEOUT": "100ms"}
    s = start_sidecar(env=env)
    start = s.events("START")[0]
    assert start.fields.get("target") == fake_target.url
    assert (dur(start.fields["interval"]), dur(start.fields["window"]),
            dur(start.fields["timeout"])) == (0.2, 1.0, 0.1), start.raw
    fake_target.wait_requests(1, 1.0 * TF)


def test_flag_beats_env(start_sidecar, fake_target):
    env = {"SIDECAR_TARGET": "http://127.0.0.1:1/nowhere", "SIDECAR_INTERVAL": "5s",
           "SIDECAR_WINDOW": "1m", "SIDECAR_TIMEOUT": "2s"}
    s = start_sidecar("--target=" + fake_target.url, "--interval=200ms", "--window=1s",
                      "--timeout=100ms", env=env)
    start = s.events("START")[0]
    assert start.fields.get("target") == fake_target.url, start.raw
    assert (dur(start.fields["interval"]), dur(start.fields["window"]),
            dur(start.fields["timeout"])) == (0.2, 1.0, 0.1), start.raw


def test_first_poll_at_start_then_every_interval(start_sidecar, fake_target):
    fake_target.set_healthy(0.1)
    s = start_sidecar("--target", fake_target.url, *FAST)
    t_start = s.events("START")[0].t
    reqs = fake_target.wait_requests(1, 1.0 * TF)
    assert reqs[0].t - t_start < 0.15 * TF + 0.05, "first poll %.3fs after START" % (reqs[0].t - t_start)
    time.sleep(1.0)
    reqs = fake_target.snapshot()
    span = reqs[-1].t - reqs[0].t
    n = len(reqs)
    # polls at 0, .2, .4, ... -> about 6 in the first second
    assert 4 <= n <= 8, "%d polls in ~1s at a 200ms interval" % n
    gaps = [b.t - a.t for a, b in zip(reqs, reqs[1:])]
    assert min(gaps) > 0.1, "polls too close: %r" % gaps
    assert span / (n - 1) == pytest.approx(INTERVAL, abs=0.06 * TF), gaps


def test_poll_request_shape(start_sidecar, fake_target):
    s = start_sidecar("--target", "http://127.0.0.1:%d/custom/path?x=1" % fake_target.port, *FAST)
    req = fake_target.wait_requests(1, 1.0 * TF)[0]
    assert req.request_line == "GET /custom/path?x=1 HTTP/1.1", req.request_line
    assert req.headers.get("host") == "127.0.0.1:%d" % fake_target.port, req.headers
    assert not s.events("ALERT"), s.dump()


# ------------------------------------------------------------------ REPORT

def test_report_matches_served_latencies(start_sidecar, fake_target):
    fake_target.set_latencies([0.1, 0.2, 0.3])
    s = start_sidecar("--target", fake_target.url, *FAST)
    reports = []
    n = 0
    for _ in range(2):
        line = s.wait_event("REPORT", timeout=2.0 * TF, start=n)
        n = s.lines().index(line) + 1
        reports.append(parse_report(line))
    served = [r.latency for r in fake_target.snapshot()]
    for rep in reports:
        assert rep["window"] == WINDOW
        assert rep["failures"] == 0, rep
        assert 3 <= rep["samples"] <= 7, rep
        for k in ("best", "worst"):
            assert rep[k] in (0.1, 0.2, 0.3), rep
        assert rep["best"] <= rep["avg"] <= rep["worst"], rep
        assert rep["best"] == 0.1 and rep["worst"] == 0.3, rep  # >= 3 samples in turn cover all
        assert fits_served(rep, served), "REPORT %r does not fit served sequence %r" % (rep, served)
    assert not s.events("ALERT"), s.dump()


def test_report_constant_latency_exact(start_sidecar, fake_target):
    fake_target.set_healthy(0.123456)
    s = start_sidecar("--target", fake_target.url, *FAST)
    line = s.wait_event("REPORT", timeout=2.0 * TF)
    assert re.search(r" REPORT window=1s samples=\d+ failures=0 best=0\.123456s worst=0\.123456s "
                     r"avg=0\.123456s$", line.raw), line.raw


def test_report_six_decimals(start_sidecar, fake_target):
    fake_target.set_latencies([0.0000004, 0.98765449])
    s = start_sidecar("--target", fake_target.url, *FAST)
    rep = parse_report(s.wait_event("REPORT", timeout=2.0 * TF))
    assert rep["best"] == 0.0 and rep["worst"] == 0.987654, rep


def test_report_every_window(start_sidecar, fake_target):
    fake_target.set_healthy(0.2)
    s = start_sidecar("--target", fake_target.url, *FAST)
    t0 = s.events("START")[0].t
    r1 = s.wait_event("REPORT", timeout=2.0 * TF)
    r2 = s.wait_event("REPORT", timeout=2.0 * TF, start=s.lines().index(r1) + 1)
    assert 0.8 < r1.t - t0 < 1.0 + 0.3 * TF, "first REPORT %.2fs after START" % (r1.t - t0)
    assert 0.8 < r2.t - r1.t < 1.0 + 0.3 * TF, "REPORTs %.2fs apart" % (r2.t - r1.t)


def test_report_without_samples(start_sidecar, fake_target):
    fake_target.set_status(503)
    s = start_sidecar("--target", fake_target.url, *FAST)
    line = s.wait_event("REPORT", timeout=2.0 * TF)
    assert re.search(r" REPORT window=1s samples=0 failures=\d+ no latency samples in the past 1s$",
                     line.raw), line.raw
    rep = parse_report(line)
    assert 3 <= rep["failures"] <= 7, line.raw


def test_report_mixed_success_and_failure(start_sidecar, fake_target):
    fake_target.set_script([
        Action("respond", 200, health_body(True, 0.2), 0.2),
        Action("respond", 503, b'{"error":"x"}'),
        Action("respond", 200, health_body(True, 0.4), 0.4),
        Action("respond", 200, b"not json"),
    ])
    s = start_sidecar("--target", fake_target.url, *FAST)
    line = s.wait_event("REPORT", timeout=2.0 * TF)
    rep = parse_report(line)
    assert rep["samples"] >= 1 and rep["failures"] >= 1, line.raw
    assert 4 <= rep["samples"] + rep["failures"] <= 7, line.raw
    assert abs(rep["samples"] - rep["failures"]) <= 1, line.raw  # they alternate
    assert rep["best"] in (0.2, 0.4) and rep["worst"] in (0.2, 0.4), line.raw
    alerts = [l for l in s.lines()[:s.lines().index(line)] if l.event == "ALERT"]
    assert {a.fields.get("reason") for a in alerts} == {"status", "body"}, s.dump()


def test_report_window_forgets_old_samples(start_sidecar, fake_target):
    """After the target goes bad, the next-but-one REPORT has no samples."""
    fake_target.set_healthy(0.3)
    s = start_sidecar("--target", fake_target.url, *FAST)
    r1 = s.wait_event("REPORT", timeout=2.0 * TF)
    assert parse_report(r1)["samples"] >= 3
    fake_target.set_status(500)
    r2 = s.wait_event("REPORT", timeout=2.0 * TF, start=s.lines().index(r1) + 1)
    r3 = s.wait_event("REPORT", timeout=2.0 * TF, start=s.lines().index(r2) + 1)
    rep3 = parse_report(r3)
    assert rep3["samples"] == 0 and rep3["failures"] >= 3, r3.raw


# ------------------------------------------------------------------ ALERT

ALERT_CASES = {
    "status": lambda f: f.set_status(503),
    "status500": lambda f: f.set_status(500, b'{"healthy":true,"latency":0.1}'),
    "unhealthy": lambda f: f.set_unhealthy(0.95),
    "timeout": lambda f: f.set_hang(),
    "body": lambda f: f.set_body(b"this is not json"),
    "body_no_latency": lambda f: f.set_body(b'{"healthy":true}'),
    "body_latency_not_number": lambda f: f.set_body(b'{"healthy":true,"latency":"fast"}'),
    "body_empty": lambda f: f.set_body(b""),
    "body_truncated_json": lambda f: f.set_body(b'{"healthy":true,"latency":0.1'),
}
EXPECTED_REASON = {"status500": "status", "body_no_latency": "body",
                   "body_latency_not_number": "body", "body_empty": "body",
                   "body_truncated_json": "body"}


@pytest.mark.parametrize("case", list(ALERT_CASES))
def test_alert_per_failure_kind(start_sidecar, fake_target, case):
    ALERT_CASES[case](fake_target)
    reason = EXPECTED_REASON.get(case, case)
    # long window: an ALERT must not wait for the REPORT
    s = start_sidecar("--target", fake_target.url, "--interval", "200ms", "--window", "10s",
                      "--timeout", "100ms")
    alert = s.wait_event("ALERT", timeout=1.0 * TF)
    assert alert.fields.get("reason") == reason, alert.raw
    assert alert.fields.get("target") == fake_target.url, alert.raw
    assert re.search(r' detail="(?:[^"\\]|\\.)+"$', alert.raw), alert.raw
    first_req = fake_target.snapshot()[0]
    budget = (0.1 if reason == "timeout" else 0.0) + 0.25 * TF
    assert alert.t - first_req.t < budget, \
        "ALERT %.3fs after the failed poll" % (alert.t - first_req.t)
    # one ALERT per failed poll
    time.sleep(0.9)
    s.stop(signal.SIGTERM)
    alerts = s.events("ALERT")
    polls = fake_target.request_count()
    assert polls - 1 <= len(alerts) <= polls, "%d ALERTs for %d failed polls\n%s" % (
        len(alerts), polls, s.dump())
    assert 4 <= polls <= 8, polls
    assert all(a.fields.get("reason") == reason for a in alerts), s.dump()
    assert not s.events("REPORT"), s.dump()


def test_alert_connect(start_sidecar, closed_port):
    url = "http://127.0.0.1:%d/health" % closed_port
    s = start_sidecar("--target", url, "--interval", "200ms", "--window", "10s", "--timeout", "100ms")
    t0 = s.events("START")[0].t
    alert = s.wait_event("ALERT", timeout=1.0 * TF)
    assert alert.fields.get("reason") == "connect", alert.raw
    assert alert.fields.get("target") == url, alert.raw
    assert re.search(r' detail="(?:[^"\\]|\\.)+"$', alert.raw), alert.raw
    assert alert.t - t0 < 0.25 * TF, "first ALERT %.3fs after START" % (alert.t - t0)
    time.sleep(0.9)
    n = len(s.events("ALERT"))
    assert 4 <= n <= 8, s.dump()


def _resolver_fails_fast(name):
    t0 = time.monotonic()
    try:
        socket.getaddrinfo(name, 8080)
    except socket.gaierror:
        return time.monotonic() - t0 < 0.3
    return False


def test_alert_dns(start_sidecar):
    host = "no-such-host.invalid"
    if not _resolver_fails_fast(host):
        pytest.skip("resolver here does not fail fast for %s" % host)
    url = "http://%s:8080/health" % host
    s = start_sidecar("--target", url, "--interval", "500ms", "--window", "10s", "--timeout", "400ms")
    alert = s.wait_event("ALERT", timeout=1.5 * TF)
    assert alert.fields.get("reason") == "dns", alert.raw
    assert alert.fields.get("target") == url, alert.raw


def test_alert_on_connection_closed_mid_answer(start_sidecar, fake_target):
    fake_target.set_close_mid()
    s = start_sidecar("--target", fake_target.url, "--interval", "200ms", "--window", "10s",
                      "--timeout", "100ms")
    alert = s.wait_event("ALERT", timeout=1.0 * TF)
    assert alert.fields.get("reason") in REASONS, alert.raw
    assert alert.fields.get("reason") in ("body", "connect"), alert.raw


def test_alert_stops_when_target_recovers(start_sidecar, fake_target):
    fake_target.set_status(503)
    s = start_sidecar("--target", fake_target.url, "--interval", "200ms", "--window", "10s",
                      "--timeout", "100ms")
    s.wait_event("ALERT", timeout=1.0 * TF)
    fake_target.set_healthy(0.1)
    n = fake_target.request_count()
    fake_target.wait_requests(n + 1, 1.0 * TF)
    time.sleep(0.1)
    k = len(s.events("ALERT"))
    time.sleep(0.6)
    assert len(s.events("ALERT")) == k, s.dump()


def test_slow_but_in_time_answer_is_no_alert(start_sidecar, fake_target):
    """A target answering within the timeout is fine (the fake answers at once)."""
    fake_target.set_healthy(0.5)
    s = start_sidecar("--target", fake_target.url, "--interval", "200ms", "--window", "10s",
                      "--timeout", "150ms")
    fake_target.wait_requests(4, 2.0 * TF)
    assert not s.events("ALERT"), s.dump()


# ------------------------------------------------------------------ configuration errors

@pytest.mark.parametrize("args,env", [
    (["--interval", "5x"], None),
    (["--interval", "10"], None),
    (["--interval", "1.5s"], None),
    (["--interval", "-1s"], None),
    (["--interval", ""], None),
    (["--interval", "1h"], None),
    (["--interval", "0ms"], None),
    (["--interval", "1s", "--window", "1s"], None),
    (["--interval", "2s", "--window", "1s"], None),
    (["--interval", "2m"], None),                        # >= default window 60s
    (["--interval", "200ms", "--timeout", "200ms"], None),
    (["--interval", "200ms", "--timeout", "300ms"], None),
    (["--target", "notaurl"], None),
    (["--target", ""], None),
    (["--window", "soon"], None),
    (["--timeout", "5"], None),
    (["--interval"], None),
    (["--no-such-flag"], None),
    ([], {"SIDECAR_INTERVAL": "5x"}),
    ([], {"SIDECAR_TARGET": "notaurl"}),
    ([], {"SIDECAR_WINDOW": "5s"}),                      # < default interval 10s
])
def test_bad_configuration_exits_2(sidecar_bin, args, env):
    p = run_to_completion([sidecar_bin] + args, env=env)
    assert p.p.returncode == 2, p.dump()
    err = [l for l in p.err if l.strip()]
    assert len(err) == 1, "want exactly one stderr line\n" + p.dump()
    assert err[0].startswith("sidecar: error: "), p.dump()
    assert len(err[0]) > len("sidecar: error: "), p.dump()
    assert not p.events("START"), p.dump()
    p.assert_clean()


def test_help(sidecar_bin):
    p = run_to_completion([sidecar_bin, "--help"])
    assert p.p.returncode == 0, p.dump()
    text = "\n".join(l.raw for l in p.lines())
    for word in ("--target", "--interval", "--window", "--timeout",
                 "SIDECAR_TARGET", "SIDECAR_INTERVAL", "SIDECAR_WINDOW", "SIDECAR_TIMEOUT",
                 "http://hello:8080/health", "10s", "60s"):
        assert word in text, "%r missing from --help output\n%s" % (word, p.dump())
    assert sanitizer_report(p.stderr_text()) is None, p.dump()


def test_version(sidecar_bin):
    p = run_to_completion([sidecar_bin, "--version"])
    assert p.p.returncode == 0, p.dump()
    assert "\n".join(l.raw for l in p.lines()).strip(), p.dump()
    assert sanitizer_report(p.stderr_text()) is None, p.dump()


# ------------------------------------------------------------------ signals

@pytest.mark.parametrize("sig,name", [(signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")])
def test_signal_mid_request_exits_promptly(start_sidecar, fake_target, sig, name):
    fake_target.set_hang()
    s = start_sidecar("--target", fake_target.url, "--interval", "10s", "--window", "1m",
                      "--timeout", "5s")
    fake_target.wait_requests(1, 1.0 * TF)
    time.sleep(0.1)
    rc, took = s.stop(sig, timeout=WAIT)
    assert rc == 0, s.dump()
    assert took < 1.0 * TF, "exit took %.2fs with a request in flight" % took
    lines = s.lines()
    sig_lines = [l for l in lines if l.event == "SIGNAL"]
    assert len(sig_lines) == 1, s.dump()
    assert sig_lines[0].fields == {"name": name, "action": "stop"}, sig_lines[0].raw
    assert lines[-1].event == "EXIT" and lines[-1].fields.get("code") == "0", s.dump()
    s.assert_clean()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_between_polls_exits_promptly(start_sidecar, fake_target, sig):
    fake_target.set_healthy(0.1)
    s = start_sidecar("--target", fake_target.url, "--interval", "10s", "--window", "1m")
    fake_target.wait_requests(1, 1.0 * TF)
    time.sleep(0.2)
    rc, took = s.stop(sig, timeout=WAIT)
    assert rc == 0, s.dump()
    assert took < 1.0 * TF, "exit took %.2fs" % took
    assert s.lines()[-1].raw.endswith("EXIT code=0"), s.dump()
    s.assert_clean()


def test_signal_while_fast_polling(start_sidecar, fake_target):
    fake_target.set_latencies([0.1, 0.2])
    s = start_sidecar("--target", fake_target.url, "--interval", "10ms", "--window", "100ms",
                      "--timeout", "5ms")
    fake_target.wait_requests(10, 2.0 * TF)
    rc, took = s.stop(signal.SIGTERM, timeout=WAIT)
    assert rc == 0 and took < 1.0 * TF, s.dump()
    s.assert_clean()


def test_all_output_lines_well_formed(start_sidecar, fake_target):
    fake_target.set_script([
        Action("respond", 200, health_body(True, 0.25), 0.25),
        Action("respond", 503, b"{}"),
    ])
    s = start_sidecar("--target", fake_target.url, *FAST)
    s.wait_event("REPORT", timeout=2.0 * TF)
    s.assert_clean_exit(signal.SIGTERM)
    events = [l.event for l in s.lines()]
    assert events[0] == "START" and events[-1] == "EXIT", events
    assert set(events) <= {"START", "ALERT", "REPORT", "SIGNAL", "EXIT"}, events
