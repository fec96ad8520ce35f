"""Black-box tests of the `sidecar` binary (README.md, section sidecar).

The sidecar polls a FakeTarget (fake_target.py) whose answers each test
chooses; short durations keep the suite fast.
"""

import math
import os
import re
import signal
import socket
import time

import pytest

from bbenv import SANITIZED, TF, WAIT
from bbproc import rss_kib, run_to_completion, sanitizer_report
from sidecar_lines import (ALERT_KEYS, DUR_RE, REASONS, RTT_KEYS, START_KEYS, check_alert,
                           check_recovered, check_report, dur, parse_report)
from fake_target import Action, health_body

FAST = ("--interval", "200ms", "--window", "1s", "--timeout", "100ms")
INTERVAL = 0.2
WINDOW = 1.0

def alerts_and_recoveries(s):
    return [l for l in s.lines() if l.event in ("ALERT", "RECOVERED")]


def fits_served(rep, served, tol=1.5e-6):
    """Is there a run of `samples` consecutive served latencies giving best/worst/avg?"""
    n = rep["samples"]
    for i in range(0, len(served) - n + 1):
        run = served[i:i + n]
        if (abs(min(run) - rep["best"]) <= tol and abs(max(run) - rep["worst"]) <= tol
                and abs(sum(run) / n - rep["avg"]) <= tol):
            return True
    return False


def nearest_rank(values, q):
    """The smallest value with at least a fraction q of the values at or below it."""
    v = sorted(values)
    return v[max(0, math.ceil(q * len(v)) - 1)]


def version_of(sidecar_bin):
    p = run_to_completion([sidecar_bin, "--version"])
    return p.lines()[0].raw.split()[-1]


# ------------------------------------------------------------------ START and polling

def test_start_line_echoes_configuration(start_sidecar, fake_target, sidecar_bin):
    s = start_sidecar("--target", fake_target.url, *FAST)
    start = s.events("START")[0]
    assert list(start.fields) == START_KEYS, start.raw
    assert start.fields.get("version") == version_of(sidecar_bin), start.raw
    assert start.fields.get("target") == fake_target.url, start.raw
    assert dur(start.fields.get("interval")) == 0.2, start.raw
    assert dur(start.fields.get("window")) == 1.0, start.raw
    assert dur(start.fields.get("timeout")) == 0.1, start.raw
    assert start.fields.get("fail_after") == "1", start.raw
    assert start.fields.get("recover_after") == "1", start.raw
    # the ring holds at least one window of polls (1s / 200ms)
    assert start.fields.get("ring", "").isdigit() and int(start.fields["ring"]) >= 5, start.raw
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
    """The contract prints the defaults as `START version=0.1.0 target=http://hello:8080/health
    interval=10s window=60s timeout=5s fail_after=1 recover_after=1 ring=N`."""
    s = start_sidecar()
    start = s.events("START")[0]
    assert re.search(r" START version=\S+ target=http://hello:8080/health interval=10s window=60s "
                     r"timeout=5s fail_after=1 recover_after=1 ring=\d+ replicas=on probes=0$",
                     start.raw), start.raw
    assert start.fields["version"] == "0.1.0", start.raw
    assert int(start.fields["ring"]) >= 6, start.raw


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
           "SIDECAR_WINDOW": "1s", "SIDECAR_TIMEOUT": "100ms", "SIDECAR_FAIL_AFTER": "3",
           "SIDECAR_RECOVER_AFTER": "2", "SIDECAR_JITTER": "50ms", "SIDECAR_SLOW": "80ms",
           "SIDECAR_LOG_FORMAT": "text"}
    s = start_sidecar(env=env)
    start = s.events("START")[0]
    assert start.fields.get("target") == fake_target.url
    assert (dur(start.fields["interval"]), dur(start.fields["window"]),
            dur(start.fields["timeout"])) == (0.2, 1.0, 0.1), start.raw
    assert (start.fields["fail_after"], start.fields["recover_after"]) == ("3", "2"), start.raw
    fake_target.wait_requests(1, 1.0 * TF)


def test_flag_beats_env(start_sidecar, fake_target):
    env = {"SIDECAR_TARGET": "http://127.0.0.1:1/nowhere", "SIDECAR_INTERVAL": "5s",
           "SIDECAR_WINDOW": "1m", "SIDECAR_TIMEOUT": "2s", "SIDECAR_FAIL_AFTER": "5",
           "SIDECAR_RECOVER_AFTER": "5", "SIDECAR_LOG_FORMAT": "json",
           "SIDECAR_JITTER": "4s", "SIDECAR_SLOW": "bogus"}
    # --log-format text beats the env's json: the helper expects text lines and
    # fails the test (malformed lines) otherwise; a bad SIDECAR_SLOW is never read.
    s = start_sidecar("--target=" + fake_target.url, "--interval=200ms", "--window=1s",
                      "--timeout=100ms", "--fail-after=2", "--recover-after", "3",
                      "--log-format", "text", "--jitter=0ms", "--slow", "0ms", env=env)
    start = s.events("START")[0]
    assert start.fields.get("target") == fake_target.url, start.raw
    assert (dur(start.fields["interval"]), dur(start.fields["window"]),
            dur(start.fields["timeout"])) == (0.2, 1.0, 0.1), start.raw
    assert (start.fields["fail_after"], start.fields["recover_after"]) == ("2", "3"), start.raw
    # --jitter 0ms beats SIDECAR_JITTER=4s (which would be invalid with a 200ms interval anyway)
    t_start = start.t
    req = fake_target.wait_requests(1, 1.0 * TF)[0]
    assert req.t - t_start < 0.15 * TF + 0.05, "first poll %.3fs after START" % (req.t - t_start)


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


def test_schedule_does_not_drift_with_slow_answers(start_sidecar, fake_target):
    """Every answer takes 180 ms of a 300 ms interval: poll k still starts at t0 + k * 300 ms
    (a schedule that waited for the answer would drift by 180 ms a poll)."""
    fake_target.set_healthy(0.1, delay=0.18)
    s = start_sidecar("--target", fake_target.url, "--interval", "300ms", "--window", "3s",
                      "--timeout", "250ms")
    reqs = fake_target.wait_requests(8, 3.0 + 1.0 * TF)
    t0 = reqs[0].t
    late = [(k, round(r.t - t0 - k * 0.3, 3)) for k, r in enumerate(reqs[:8])]
    assert all(abs(d) < 0.06 * TF for _, d in late), "poll k starts at t0 + k*300ms: %r" % late
    assert not s.events("ALERT") and not s.events("WARN"), s.dump()


def test_stalled_loop_skips_missed_polls(start_sidecar, fake_target):
    """A sidecar stopped for 1 s (SIGSTOP) misses 5 polls and 1 report: on SIGCONT it says so
    once and polls once, at the latest slot, instead of firing the missed ones back to back."""
    fake_target.set_healthy(0.1)
    s = start_sidecar("--target", fake_target.url, *FAST)
    fake_target.wait_requests(2, 1.0 * TF)
    os.kill(s.pid, signal.SIGSTOP)
    time.sleep(1.3)
    n = fake_target.request_count()
    k = s.index()
    os.kill(s.pid, signal.SIGCONT)
    warn = s.wait_event("WARN", start=k, timeout=1.0 * TF)
    assert re.fullmatch(r"loop stalled: skipped=[4-7] polls", warn.rest), warn.raw
    time.sleep(0.12)
    after = fake_target.snapshot()[n:]
    # the latest slot at once, and perhaps the next one of the grid: never the 5 missed ones
    assert len(after) <= 2, "%d polls within 120 ms of SIGCONT (a burst)" % len(after)
    time.sleep(0.6)
    after = fake_target.snapshot()[n:]
    gaps = [b.t - a.t for a, b in zip(after[1:], after[2:])]
    assert len(gaps) >= 2 and all(g == pytest.approx(INTERVAL, abs=0.06 * TF) for g in gaps), \
        "polls after the stall off the schedule: %r" % gaps
    assert len([l for l in s.events("WARN") if l.rest.endswith(" polls")]) == 1, s.dump()
    s.assert_clean_exit(signal.SIGTERM)


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
        assert rep["window_s"] == WINDOW
        assert rep["state"] == "healthy", rep
        assert rep["rtt"] is not None, rep
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
    assert re.search(r" REPORT target=\S+ replicas=1 window=1s state=healthy samples=\d+ failures=0 best=0\.123456s "
                     r"worst=0\.123456s avg=0\.123456s rtt_p50=\d+\.\d{3}ms rtt_p95=\d+\.\d{3}ms "
                     r"rtt_p99=\d+\.\d{3}ms rtt_max=\d+\.\d{3}ms$", line.raw), line.raw


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


RTT_TEXT = r"rtt_p50=\d+\.\d{3}ms rtt_p95=\d+\.\d{3}ms rtt_p99=\d+\.\d{3}ms rtt_max=\d+\.\d{3}ms "


@pytest.mark.parametrize("case", ["status", "body", "timeout"])
def test_report_without_samples(start_sidecar, fake_target, case):
    """No latency in the window: the note instead of best/worst/avg; the rtt_* fields
    only if some poll got an HTTP answer (a 503 or an invalid 200 did, a timeout did not)."""
    {"status": lambda: fake_target.set_status(503),
     "body": lambda: fake_target.set_body(b"not json"),
     "timeout": fake_target.set_hang}[case]()
    s = start_sidecar("--target", fake_target.url, *FAST)
    line = s.wait_event("REPORT", timeout=2.0 * TF)
    rtt = "" if case == "timeout" else RTT_TEXT
    assert re.search(r" REPORT target=\S+ replicas=1 window=1s state=down reason=%s samples=0 "
                     r"failures=\d+ " % case + rtt + r"no latency samples in the past 1s$",
                     line.raw), line.raw
    rep = parse_report(line)
    assert 2 <= rep["failures"] <= 7, line.raw


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
    # ~5 polls a window; a loaded machine may complete one fewer or time one out
    assert 3 <= rep["samples"] + rep["failures"] <= 7, line.raw
    assert abs(rep["samples"] - rep["failures"]) <= 2, line.raw  # they alternate
    assert rep["best"] in (0.2, 0.4) and rep["worst"] in (0.2, 0.4), line.raw
    assert rep["rtt"] is not None, line.raw  # every poll got an HTTP answer
    before = s.lines()[:s.lines().index(line)]
    alerts = [l for l in before if l.event == "ALERT"]
    assert {a.fields.get("reason") for a in alerts} == {"status", "body"}, s.dump()
    assert all(check_alert(a, fake_target.url) == 1 for a in alerts), s.dump()
    # every failure is a bad run of one, ended by the next (good) poll
    events = [l for l in before if l.event in ("ALERT", "RECOVERED")]
    assert [l.event for l in events[:2]] == ["ALERT", "RECOVERED"], s.dump()
    for a, b in zip(events, events[1:]):
        assert a.event != b.event, "ALERT and RECOVERED should alternate\n" + s.dump()
    for r in (l for l in events if l.event == "RECOVERED"):
        after, failures = check_recovered(r)
        assert failures == 1, r.raw
        assert INTERVAL - 0.05 * TF <= after <= INTERVAL + 0.05 * TF, r.raw
    # the state in the REPORT is the one the last ALERT / RECOVERED announced
    want = events[-1].fields["state"]
    assert rep["state"] == want, "REPORT state=%s after %s\n%s" % (rep["state"], events[-1].raw,
                                                                   s.dump())


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
    assert rep3["state"] == "down" and rep3["rtt"] is not None, r3.raw


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
    assert check_alert(alert, fake_target.url) == 1, alert.raw
    assert alert.fields["state"] == ("degraded" if reason == "unhealthy" else "down"), alert.raw
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
    # K counts the failures in a row: 1, 2, 3, ...
    assert [check_alert(a, fake_target.url) for a in alerts] == list(range(1, len(alerts) + 1)), \
        s.dump()
    assert not s.events("REPORT"), s.dump()
    assert not s.events("RECOVERED"), s.dump()


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
    alerts = s.events("ALERT")
    assert 4 <= len(alerts) <= 8, s.dump()
    assert [check_alert(a, url) for a in alerts] == list(range(1, len(alerts) + 1)), s.dump()


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


@pytest.mark.parametrize("size", [16 * 1024 + 1, 10 * 1024 * 1024])
def test_oversized_body_is_cut_at_16k(start_sidecar, fake_target, size):
    """A /health body over 16 KiB (one byte over, or 10 MB) is not read to the end: ALERT
    reason=body at once, every poll, and memory stays flat (the transfer is aborted, not
    buffered)."""
    body = b'{"healthy":true,"latency":0.1,"pad":"' + b"x" * size + b'"}'
    fake_target.set_body(body)
    s = start_sidecar("--target", fake_target.url, *FAST)
    first = s.wait_event("ALERT", timeout=1.0 * TF)
    check_alert(first, fake_target.url)
    assert (first.fields["reason"], first.fields["detail"]) == \
        ("body", "body larger than 16384 bytes"), first.raw
    s.wait_event("ALERT", consecutive=3, timeout=1.0 + 1.0 * TF)
    rss0 = rss_kib(s.pid)
    s.wait_event("ALERT", consecutive=10, timeout=2.0 + 1.0 * TF)
    rss1 = rss_kib(s.pid)
    if not SANITIZED:  # ASan's quarantine keeps freed memory resident
        assert rss1 - rss0 < 256, "RSS grew %d KiB over 7 polls of a %d-byte body" % (
            rss1 - rss0, len(body))
    rep = parse_report(s.wait_event("REPORT", timeout=WINDOW + 1.0 * TF))
    assert (rep["state"], rep["reason"], rep["samples"]) == ("down", "body", 0), s.dump()
    s.assert_clean_exit(signal.SIGTERM)


def test_trickling_target_times_out(start_sidecar, fake_target):
    """An answer trickled a byte every 20 ms never completes within the 100 ms timeout:
    ALERT reason=timeout at the timeout, every poll, on schedule."""
    fake_target.set_trickle(0.02)
    s = start_sidecar("--target", fake_target.url, *FAST)
    reqs = fake_target.wait_requests(1, 1.0 * TF)
    first = s.wait_event("ALERT", timeout=1.0 * TF)
    check_alert(first, fake_target.url)
    assert (first.fields["reason"], first.fields["detail"]) == \
        ("timeout", "no answer within 100ms"), first.raw
    third = s.wait_event("ALERT", consecutive=3, timeout=1.0 + 1.0 * TF)
    assert third.t - first.t == pytest.approx(2 * INTERVAL, abs=0.08 * TF), s.dump()
    reqs = fake_target.snapshot()
    gaps = [b.t - a.t for a, b in zip(reqs, reqs[1:])]
    assert all(g == pytest.approx(INTERVAL, abs=0.08 * TF) for g in gaps), gaps
    assert not s.events("WARN"), s.dump()


def test_alert_stops_when_target_recovers(start_sidecar, fake_target):
    fake_target.set_status(503)
    s = start_sidecar("--target", fake_target.url, "--interval", "200ms", "--window", "10s",
                      "--timeout", "100ms")
    s.wait_event("ALERT", timeout=1.0 * TF)
    fake_target.set_healthy(0.1)
    n = fake_target.request_count()
    fake_target.wait_requests(n + 1, 1.0 * TF)
    s.wait_event("RECOVERED", timeout=1.0 * TF)
    k = len(s.events("ALERT"))
    time.sleep(0.6)
    assert len(s.events("ALERT")) == k, s.dump()
    rec = s.events("RECOVERED")
    assert len(rec) == 1, s.dump()
    _, failures = check_recovered(rec[0])
    assert failures == k, "RECOVERED failures=%d after %d ALERTs\n%s" % (failures, k, s.dump())
    assert alerts_and_recoveries(s)[-1].event == "RECOVERED", s.dump()


def test_slow_but_in_time_answer_is_no_alert(start_sidecar, fake_target):
    """A target answering within the timeout is fine: a high reported latency and a
    60 ms round trip alert nobody while --slow is off (the default)."""
    fake_target.set_healthy(0.5, delay=0.06)
    s = start_sidecar("--target", fake_target.url, "--interval", "200ms", "--window", "10s",
                      "--timeout", "150ms")
    fake_target.wait_requests(4, 2.0 * TF)
    time.sleep(0.1)
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
    # --fail-after / --recover-after: a whole number from 1
    (["--fail-after", "0"], None),
    (["--fail-after", "-1"], None),
    (["--fail-after", "1.5"], None),
    (["--fail-after", "three"], None),
    (["--fail-after", ""], None),
    (["--fail-after", "3x"], None),
    (["--fail-after"], None),
    (["--recover-after", "0"], None),
    (["--recover-after", "x"], None),
    (["--recover-after", "-2"], None),
    ([], {"SIDECAR_FAIL_AFTER": "0"}),
    ([], {"SIDECAR_RECOVER_AFTER": "zero"}),
    # --slow: a DURATION
    (["--slow", "5x"], None),
    (["--slow", "20"], None),
    (["--slow", "-5ms"], None),
    (["--slow", "1.5s"], None),
    ([], {"SIDECAR_SLOW": "fast"}),
    # --log-format: text or json
    (["--log-format", "xml"], None),
    (["--log-format", ""], None),
    (["--log-format", "jsonl"], None),
    (["--log-format"], None),
    ([], {"SIDECAR_LOG_FORMAT": "xml"}),
    (["--log-format", "json", "--fail-after", "0"], None),
    # --jitter: a DURATION below the interval
    (["--interval", "200ms", "--jitter", "200ms"], None),
    (["--interval", "200ms", "--jitter", "1s"], None),
    (["--jitter", "10s"], None),                         # == default interval 10s
    (["--jitter", "5x"], None),
    (["--jitter", "100"], None),
    (["--jitter", "-1ms"], None),
    ([], {"SIDECAR_JITTER": "10s"}),
    ([], {"SIDECAR_JITTER": "soon"}),
    (["--interval", "1s"], {"SIDECAR_JITTER": "2s"}),
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
    for word in ("--target", "--interval", "--window", "--timeout", "--jitter", "--fail-after",
                 "--recover-after", "--slow", "--log-format",
                 "SIDECAR_TARGET", "SIDECAR_INTERVAL", "SIDECAR_WINDOW", "SIDECAR_TIMEOUT",
                 "SIDECAR_JITTER", "SIDECAR_FAIL_AFTER", "SIDECAR_RECOVER_AFTER", "SIDECAR_SLOW",
                 "SIDECAR_LOG_FORMAT", "text|json",
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
    # LISTEN (the metrics listener's address) and DRAIN (its shutdown) come from the
    # /metrics endpoint, on by default
    assert set(events) <= {"START", "LISTEN", "ALERT", "RECOVERED", "REPORT", "SIGNAL", "DRAIN",
                           "EXIT"}, events
    assert {"ALERT", "RECOVERED", "REPORT"} <= set(events), events
    for l in s.lines():
        if l.event == "REPORT":
            parse_report(l)
        elif l.event == "ALERT":
            check_alert(l, fake_target.url)
        elif l.event == "RECOVERED":
            check_recovered(l)


# ------------------------------------------------------------------ valid new options

@pytest.mark.parametrize("args", [
    ("--jitter", "0s"),
    ("--jitter", "199ms", "--interval", "200ms", "--window", "1s"),
    ("--jitter", "9s"),                                  # < default interval 10s
    ("--fail-after", "1", "--recover-after", "1"),
    ("--fail-after", "10", "--recover-after", "7"),
    ("--slow", "0ms"),
    ("--slow", "1s"),
    ("--log-format", "text"),
    ("--log-format=json",),
])
def test_new_options_accepted(start_sidecar, args):
    """Valid values start normally (START seen; teardown checks a clean exit)."""
    s = start_sidecar("--target", "http://127.0.0.1:1/health", *args)
    start = s.events("START")[0]
    if "--fail-after" in args:
        want = (args[args.index("--fail-after") + 1], args[args.index("--recover-after") + 1])
        assert (start.fields["fail_after"], start.fields["recover_after"]) == want, start.raw


# ------------------------------------------------------------------ JSON log format

def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


REPORT_JSON_KEYS = ["window", "state", "samples", "failures"]  # after target and replica(s)
REPORT_JSON_LATENCY = ["best_s", "worst_s", "avg_s"]
REPORT_JSON_RTT = ["rtt_p50_ms", "rtt_p95_ms", "rtt_p99_ms", "rtt_max_ms"]


def check_json_event(line):
    """Schema of one JSON line by event; returns the REPORT as parse_report's dict, else None."""
    obj = line.obj
    assert obj is not None, "not a JSON log line: %r" % line.raw
    assert obj["service"] == "sidecar", line.raw
    ev, keys = obj["event"], list(obj)[3:]
    if ev == "START":
        assert keys == START_KEYS, line.raw
        assert all(isinstance(obj[k], str) for k in ("version", "target")), line.raw
        for k in ("interval", "window", "timeout"):
            assert isinstance(obj[k], str) and DUR_RE.match(obj[k]), line.raw
        assert all(is_int(obj[k]) and obj[k] >= 1 for k in ("fail_after", "recover_after", "ring")), \
            line.raw
    elif ev == "ALERT":
        assert keys == ALERT_KEYS, line.raw
        assert obj["reason"] in REASONS and isinstance(obj["target"], str), line.raw
        want_state = "degraded" if obj["reason"] in ("unhealthy", "slow") else "down"
        assert obj["state"] == want_state, line.raw
        assert is_int(obj["consecutive"]) and obj["consecutive"] >= 1, line.raw
        assert isinstance(obj["detail"], str) and obj["detail"], line.raw
    elif ev == "RECOVERED":
        assert keys == ["target", "replica", "state", "after_s", "failures"], line.raw
        assert obj["state"] == "healthy", line.raw
        assert is_num(obj["after_s"]) and obj["after_s"] >= 0, line.raw
        assert is_int(obj["failures"]) and obj["failures"] >= 1, line.raw
    elif ev == "REPORT":
        assert isinstance(obj.get("target"), str), line.raw
        who = "replica" if "replica" in obj else "replicas"
        assert who == "replica" or is_int(obj.get("replicas")), line.raw
        want = ["target", who] + list(REPORT_JSON_KEYS)
        if obj.get("state") in ("degraded", "down"):
            # the reason the state is bad follows it
            want.insert(want.index("state") + 1, "reason")
            assert obj["reason"] in REASONS, line.raw
        if is_int(obj.get("samples")) and obj["samples"] > 0:
            want += REPORT_JSON_LATENCY
        if "rtt_p50_ms" in obj:
            want += REPORT_JSON_RTT
        if obj.get("samples") == 0:
            want += ["note"]
        assert keys == want, "REPORT keys %r, want %r: %s" % (keys, want, line.raw)
        assert isinstance(obj["window"], str) and DUR_RE.match(obj["window"]), line.raw
        assert is_int(obj["samples"]) and is_int(obj["failures"]), line.raw
        assert all(is_num(obj[k]) for k in keys if k.endswith("_s") or k.endswith("_ms")), line.raw
        rep = {"target": obj["target"], "replica": obj.get("replica"),
               "replicas": obj.get("replicas"), "window": obj["window"],
               "window_s": dur(obj["window"]), "state": obj["state"], "reason": obj.get("reason"),
               "samples": obj["samples"], "polls": None, "failures": obj["failures"],
               "best": obj.get("best_s"), "worst": obj.get("worst_s"), "avg": obj.get("avg_s"),
               "rtt": None, "note": obj.get("note")}
        if "rtt_p50_ms" in obj:
            rep["rtt"] = {k: obj[k + "_ms"] for k in RTT_KEYS}
        check_report(rep, line.raw)
        return rep
    elif ev == "REPLICA":
        assert keys == ["target", "replica", "change", "replicas"], line.raw
        assert obj["change"] in ("joined", "left") and is_int(obj["replicas"]), line.raw
    elif ev == "PROBE":
        assert keys == ["target"] and isinstance(obj["target"], str), line.raw
    else:
        # SIGNAL, EXIT and any other free-form event: {"time","service","event","message"}
        assert keys == ["message"] and isinstance(obj["message"], str), line.raw
    return None


def test_json_format_every_line(start_sidecar, fake_target, sidecar_bin):
    ok = Action("respond", 200, health_body(True, 0.25), 0.25)
    bad = Action("respond", 503, b'{"error":"x"}')
    fake_target.set_script([ok, bad, bad, ok], cycle=False)
    s = start_sidecar("--target", fake_target.url, *FAST, "--log-format", "json")
    s.wait_event("REPORT", timeout=2.0 * TF)
    s.assert_clean_exit(signal.SIGINT)  # every line a JSON object with time/service/event

    lines = s.lines()
    events = [l.event for l in lines]
    assert events[0] == "START" and events[-1] == "EXIT", s.dump()
    assert {"START", "ALERT", "RECOVERED", "REPORT", "SIGNAL", "EXIT"} <= set(events), s.dump()
    reports = [check_json_event(l) for l in lines]

    start = lines[0].obj
    assert (start["version"], start["target"]) == (version_of(sidecar_bin), fake_target.url), start
    assert (start["interval"], start["window"], start["timeout"]) == ("200ms", "1s", "100ms"), start
    assert (start["fail_after"], start["recover_after"]) == (1, 1), start

    alerts = [l.obj for l in lines if l.event == "ALERT"]
    assert [(a["reason"], a["state"], a["consecutive"]) for a in alerts] == \
        [("status", "down", 1), ("status", "down", 2)], s.dump()
    assert all(a["target"] == fake_target.url for a in alerts), s.dump()
    rec = [l.obj for l in lines if l.event == "RECOVERED"]
    assert len(rec) == 1 and rec[0]["failures"] == 2, s.dump()
    assert 2 * INTERVAL - 0.05 * TF <= rec[0]["after_s"] <= 2 * INTERVAL + 0.05 * TF, rec[0]

    rep = next(r for r in reports if r is not None)
    assert rep["state"] == "healthy" and rep["failures"] == 2, s.dump()
    assert rep["best"] == rep["worst"] == rep["avg"] == 0.25, s.dump()
    assert rep["rtt"] is not None, s.dump()

    sig = [l.obj for l in lines if l.event == "SIGNAL"]
    assert len(sig) == 1 and sig[0]["message"] == "name=SIGINT action=stop", s.dump()
    assert lines[-1].obj["message"] == "code=0", s.dump()


def test_json_from_env_report_without_samples(start_sidecar, fake_target):
    """SIDECAR_LOG_FORMAT=json; a REPORT without samples carries the sentence as "note"."""
    fake_target.set_status(503)
    s = start_sidecar("--target", fake_target.url, "--interval", "100ms", "--window", "500ms",
                      env={"SIDECAR_LOG_FORMAT": "json"})
    line = s.wait_event("REPORT", timeout=1.0 + 1.0 * TF)
    rep = check_json_event(line)
    assert rep["samples"] == 0 and rep["state"] == "down" and rep["rtt"] is not None, line.raw
    assert rep["failures"] >= 3, line.raw
    assert line.obj["note"] == "no latency samples in the past 500ms", line.raw
    assert not any(k in line.obj for k in ("best_s", "best", "worst", "avg")), line.raw
    s.assert_clean_exit(signal.SIGTERM)
    for l in s.lines():
        check_json_event(l)
    sig = [l.obj for l in s.lines() if l.event == "SIGNAL"]
    assert [o["message"] for o in sig] == ["name=SIGTERM action=stop"], s.dump()


def test_json_escapes_detail(start_sidecar, fake_target):
    """An invalid body with quotes, backslashes and control bytes still gives valid JSON."""
    fake_target.set_body(b'{"a\\"b":"\x01\x7f\xff\\\\')
    s = start_sidecar("--target", fake_target.url, "--interval", "200ms", "--window", "10s",
                      "--timeout", "100ms", "--log-format", "json")
    line = s.wait_event("ALERT", timeout=1.0 * TF)
    check_json_event(line)
    assert line.obj["reason"] == "body", line.raw


# ------------------------------------------------------------------ RECOVERED and thresholds

def _ok(latency=0.1):
    return Action("respond", 200, health_body(True, latency), latency)


def _bad():
    return Action("respond", 503, b'{"error":"x"}')


FASTER = ("--interval", "100ms", "--timeout", "50ms")
FASTER_INTERVAL = 0.1


def _summary(s):
    """[(event, consecutive-or-failures)] for the ALERT and RECOVERED lines so far."""
    out = []
    for l in alerts_and_recoveries(s):
        if l.event == "ALERT":
            out.append(("ALERT", check_alert(l)))
        else:
            out.append(("RECOVERED", check_recovered(l)[1]))
    return out


def test_recovered_after_outage(start_sidecar, fake_target):
    """503 for three polls then healthy: one RECOVERED failures=3 with the outage's length;
    a later bad run (healthy:false) gets its own RECOVERED."""
    unhealthy = Action("respond", 200, health_body(False, 0.9), 0.9)
    fake_target.set_script([_ok(), _ok(), _bad(), _bad(), _bad(), _ok(), _ok(), unhealthy, _ok()],
                           cycle=False)
    s = start_sidecar("--target", fake_target.url, *FASTER, "--window", "10s")
    r1 = s.wait_event("RECOVERED", timeout=0.6 + 1.0 * TF)
    s.wait_event("RECOVERED", timeout=1.0 * TF, start=s.lines().index(r1) + 1)
    time.sleep(0.3)  # healthy from now on: nothing more
    reqs = fake_target.snapshot()
    assert _summary(s) == [("ALERT", 1), ("ALERT", 2), ("ALERT", 3), ("RECOVERED", 3),
                           ("ALERT", 1), ("RECOVERED", 1)], s.dump()
    alerts = s.events("ALERT")
    assert [(a.fields["reason"], a.fields["state"]) for a in alerts] == \
        [("status", "down")] * 3 + [("unhealthy", "degraded")], s.dump()
    rec = s.events("RECOVERED")
    assert all(r.fields["target"] == fake_target.url for r in rec), s.dump()
    assert rec[0].t >= reqs[5].t, "RECOVERED before the first good poll\n" + s.dump()
    # after: from the first failed poll to the recovering one (3 intervals here)
    after1, _ = check_recovered(rec[0])
    assert after1 == pytest.approx(reqs[5].t - reqs[2].t, abs=0.05 * TF), (after1, s.dump())
    assert 3 * FASTER_INTERVAL - 0.03 <= after1 <= 3 * FASTER_INTERVAL + 0.1 * TF, s.dump()
    after2, _ = check_recovered(rec[1])
    assert after2 == pytest.approx(reqs[8].t - reqs[7].t, abs=0.05 * TF), (after2, s.dump())


def test_fail_after_3(start_sidecar, fake_target):
    """Two failures then a success: no ALERT, no RECOVERED. Four in a row: ALERTs with
    consecutive=3 and 4, then RECOVERED failures=4. The REPORT counts all six failures."""
    fake_target.set_script([_ok(), _bad(), _bad(), _ok(), _bad(), _bad(), _bad(), _bad(), _ok()],
                           cycle=False)
    s = start_sidecar("--target", fake_target.url, *FASTER, "--window", "1s", "--fail-after", "3")
    assert s.events("START")[0].fields["fail_after"] == "3", s.dump()
    line = s.wait_event("REPORT", timeout=1.0 + 1.0 * TF)
    reqs = fake_target.snapshot()
    assert _summary(s) == [("ALERT", 3), ("ALERT", 4), ("RECOVERED", 4)], s.dump()
    first_alert = s.events("ALERT")[0]
    assert first_alert.t >= reqs[6].t, "ALERT before the third failure in a row\n" + s.dump()
    after, _ = check_recovered(s.events("RECOVERED")[0])
    assert after == pytest.approx(reqs[8].t - reqs[4].t, abs=0.05 * TF), (after, s.dump())
    rep = parse_report(line)
    # polls 1-7 (t = 0.1 .. 0.7 s) are well inside the 1 s window; 6 of them failed
    assert rep["failures"] == 6, line.raw
    assert 3 <= rep["samples"] <= 5, line.raw
    assert rep["state"] == "healthy", line.raw


def test_recover_after_2(start_sidecar, fake_target):
    """With --recover-after 2 one good poll between failures does not recover; the bad run
    goes on (failures=2, after from its first failure) until two good polls in a row."""
    fake_target.set_script([_bad(), _ok(), _bad(), _ok(), _ok()], cycle=False)
    s = start_sidecar("--target", fake_target.url, *FASTER, "--window", "10s",
                      "--recover-after", "2")
    assert s.events("START")[0].fields["recover_after"] == "2", s.dump()
    rec = s.wait_event("RECOVERED", timeout=0.5 + 1.0 * TF)
    time.sleep(0.3)
    reqs = fake_target.snapshot()
    assert _summary(s) == [("ALERT", 1), ("ALERT", 1), ("RECOVERED", 2)], s.dump()
    assert rec.t >= reqs[4].t, "RECOVERED before the second good poll in a row\n" + s.dump()
    after, _ = check_recovered(rec)
    assert after == pytest.approx(reqs[4].t - reqs[0].t, abs=0.05 * TF), (after, s.dump())


# ------------------------------------------------------------------ --slow

def test_slow_answer_is_degraded(start_sidecar, fake_target):
    fake_target.set_healthy(0.1, delay=0.04)
    # Margins wide enough for a loaded machine: 40 ms holds, 150 ms timeout.
    s = start_sidecar("--target", fake_target.url, "--interval", "200ms", "--window", "1s",
                      "--timeout", "150ms", "--slow", "15ms")
    alert = s.wait_event("ALERT", timeout=1.0 * TF)
    assert check_alert(alert, fake_target.url) == 1, alert.raw
    assert (alert.fields["reason"], alert.fields["state"]) == ("slow", "degraded"), alert.raw
    line = s.wait_event("REPORT", timeout=1.0 + 1.0 * TF)
    rep = parse_report(line)
    assert rep["state"] == "degraded", line.raw
    # a slow answer still carries its latency, and is a failure
    assert rep["samples"] >= 3 and rep["failures"] == rep["samples"], line.raw
    assert rep["best"] == rep["worst"] == 0.1, line.raw
    assert rep["rtt"]["rtt_p50"] >= 39.0, line.raw
    n_alerts = len(s.events("ALERT"))
    assert all(a.fields["reason"] == "slow" for a in s.events("ALERT")), s.dump()
    fake_target.set_healthy(0.1)
    rec = s.wait_event("RECOVERED", timeout=1.0 * TF)
    _, failures = check_recovered(rec)
    assert failures >= n_alerts, s.dump()
    assert failures == len([l for l in s.lines()[:s.lines().index(rec)] if l.event == "ALERT"]), \
        s.dump()


def test_slow_fast_answer_is_no_alert(start_sidecar, fake_target):
    fake_target.set_healthy(0.1)
    s = start_sidecar("--target", fake_target.url, "--interval", "200ms", "--window", "1s",
                      "--timeout", "150ms", "--slow", "120ms")
    line = s.wait_event("REPORT", timeout=1.0 + 1.0 * TF)
    rep = parse_report(line)
    assert not s.events("ALERT"), s.dump()
    assert rep["state"] == "healthy" and rep["failures"] == 0 and rep["samples"] >= 3, line.raw


@pytest.mark.parametrize("case,reason", [("unhealthy", "unhealthy"), ("status", "status")])
def test_slow_judges_only_healthy_answers(start_sidecar, fake_target, case, reason):
    """A slow answer that already fails for another reason alerts with that reason."""
    if case == "unhealthy":
        fake_target.set_script([Action("respond", 200, health_body(False, 0.9), 0.9, delay=0.06)])
    else:
        fake_target.set_script([Action("respond", 503, b"{}", delay=0.06)])
    s = start_sidecar("--target", fake_target.url, "--interval", "200ms", "--window", "10s",
                      "--timeout", "150ms", "--slow", "20ms")
    alert = s.wait_event("ALERT", timeout=1.0 * TF)
    check_alert(alert, fake_target.url)
    assert alert.fields["reason"] == reason, alert.raw


# ------------------------------------------------------------------ state= and rtt_* in REPORT

def test_report_state_follows_target(start_sidecar, fake_target):
    """down during an outage, degraded while /health says healthy:false, healthy after."""
    fake_target.set_status(503)
    s = start_sidecar("--target", fake_target.url, *FASTER, "--window", "300ms")
    states = []
    n = 0
    for then in (lambda: fake_target.set_unhealthy(0.9), lambda: fake_target.set_healthy(0.1),
                 None):
        line = s.wait_event("REPORT", timeout=0.3 + 1.0 * TF, start=n)
        n = s.lines().index(line) + 1
        states.append(parse_report(line)["state"])
        if then:
            then()
    assert states == ["down", "degraded", "healthy"], s.dump()
    assert len(s.events("RECOVERED")) == 1, s.dump()


def _fits_rtt(rep, delays, below=0.001, above=0.03):
    """Is there a run of `samples` consecutive served delays whose nearest-rank p50/p95/p99/max
    match the reported round trips (each one's delay + a little transport)?"""
    n = rep["samples"]
    qs = {"rtt_p50": 0.50, "rtt_p95": 0.95, "rtt_p99": 0.99, "rtt_max": 1.0}
    for i in range(0, len(delays) - n + 1):
        run = delays[i:i + n]
        if all(-below <= rep["rtt"][k] / 1e3 - nearest_rank(run, q) <= above for k, q in qs.items()):
            return True
    return False


def test_report_rtt_percentiles(start_sidecar, fake_target):
    """rtt_* are nearest-rank percentiles of the measured round trips in the window: with
    answers held back 10/50/90 ms in turn they follow those delays."""
    fake_target.set_delays([0.01, 0.05, 0.09], latency=0.1)
    # Generous timeout: on a loaded machine a 90 ms hold plus scheduling must not time out.
    s = start_sidecar("--target", fake_target.url, "--interval", "400ms", "--window", "2s",
                      "--timeout", "350ms")
    line = s.wait_event("REPORT", timeout=2.0 + 1.0 * TF)
    delays = [r.action.delay for r in fake_target.snapshot()]
    rep = parse_report(line)  # checks p50 <= p95 <= p99 <= max
    assert rep["rtt"] is not None and rep["failures"] == 0, line.raw
    assert 3 <= rep["samples"] <= 7, line.raw
    # nearest rank of fewer than 20 values: p95 and p99 are the largest
    assert rep["rtt"]["rtt_p95"] == rep["rtt"]["rtt_p99"] == rep["rtt"]["rtt_max"], line.raw
    assert 90.0 <= rep["rtt"]["rtt_max"] < 350.0, line.raw
    assert _fits_rtt(rep, delays, above=0.1), "REPORT %s does not fit served delays %r" % (
        line.raw, delays)


# ------------------------------------------------------------------ --jitter

def test_jitter_delays_the_first_poll(start_sidecar, fake_target):
    """--jitter 150ms at a 200ms interval: the first poll comes within ~0..150 ms of START
    (not always at once), and the schedule keeps its interval from there."""
    delays = []
    for i in range(6):
        n0 = fake_target.request_count()
        s = start_sidecar("--target", fake_target.url, "--interval", "200ms", "--window", "1s",
                          "--timeout", "100ms", "--jitter", "150ms")
        t0 = s.events("START")[0].t
        reqs = fake_target.wait_requests(n0 + (2 if i == 0 else 1), 1.0 * TF)
        delays.append(reqs[n0].t - t0)
        if i == 0:
            gap = reqs[n0 + 1].t - reqs[n0].t
            assert gap == pytest.approx(INTERVAL, abs=0.06 * TF), "polls %.3fs apart" % gap
        s.assert_clean_exit(signal.SIGTERM)
    assert all(-0.01 <= d <= 0.15 + 0.1 * TF for d in delays), delays
    # P(six uniform offsets below 25 ms out of 150 ms) ~ 2e-5
    assert max(delays) >= 0.025, "first polls never delayed: %r" % delays
