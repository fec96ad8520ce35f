"""What the sidecar's lines carry, in the order it prints them (README, "Reading its output"):
one definition for every sidecar test module, with the one parser of REPORT lines and the one
check of ALERT and RECOVERED lines. A helper module: it imports no test module."""

import re

#: START's fields, in order
START_KEYS = ["version", "target", "interval", "window", "timeout", "fail_after",
              "recover_after", "ring", "replicas", "probes"]
#: REPLICA's fields
REPLICA_KEYS = ["target", "replica", "change", "replicas"]
#: ALERT's fields
ALERT_KEYS = ["reason", "target", "replica", "state", "consecutive", "detail"]
#: RECOVERED's fields
RECOVERED_KEYS = ["target", "replica", "state", "after", "failures"]
#: a replica's or target's states
STATES = {"unknown", "healthy", "degraded", "down"}
#: an ALERT's (and a bad state's) reasons
REASONS = {"status", "unhealthy", "slow", "timeout", "connect", "dns", "body"}

DUR_RE = re.compile(r"^(\d+)(ms|s|m)$")
RTT_KEYS = ("rtt_p50", "rtt_p95", "rtt_p99", "rtt_max")
SECONDS3_RE = re.compile(r"^\d+\.\d{3}s$")

# target (replica|replicas) window state [reason] (samples|polls) failures [best worst avg]
# [rtt_p50 rtt_p95 rtt_p99 rtt_max] [no-samples note]; a probe's REPORT has polls, no latency
REPORT_RE = re.compile(
    r"^target=(?P<target>\S+) (?:replica=(?P<replica>\S+)|replicas=(?P<replicas>\d+)) "
    r"window=(?P<window>\S+) state=(?P<state>[a-z]+)(?: reason=(?P<reason>[a-z]+))? "
    r"(?:samples=(?P<samples>\d+)|polls=(?P<polls>\d+)) failures=(?P<failures>\d+)"
    r"(?: best=(?P<best>\d+\.\d{6})s worst=(?P<worst>\d+\.\d{6})s avg=(?P<avg>\d+\.\d{6})s)?"
    r"(?: rtt_p50=(?P<rtt_p50>\d+\.\d{3})ms rtt_p95=(?P<rtt_p95>\d+\.\d{3})ms"
    r" rtt_p99=(?P<rtt_p99>\d+\.\d{3})ms rtt_max=(?P<rtt_max>\d+\.\d{3})ms)?"
    r"(?: no latency samples in the past (?P<past>\S+))?$"
)


def dur(text):
    """'250ms' / '10s' / '1m' -> seconds (float)."""
    m = DUR_RE.match(text or "")
    assert m, "not a DUR: %r" % text
    n = int(m.group(1))
    return n / 1000.0 if m.group(2) == "ms" else n * (60 if m.group(2) == "m" else 1)


def check_report(rep, raw):
    """Invariants every REPORT keeps, text or JSON (rep as parse_report returns it)."""
    assert rep["state"] in STATES, raw
    assert (rep["reason"] is not None) == (rep["state"] in ("degraded", "down")), \
        "a degraded or down REPORT says why, a healthy one does not: " + raw
    assert rep["reason"] is None or rep["reason"] in REASONS, raw
    if rep["polls"] is not None:  # an external probe: up/down and round trips only
        assert rep["samples"] is None and rep["best"] is None and rep["note"] is None, raw
        assert rep["failures"] <= rep["polls"], raw
    elif rep["samples"] > 0:
        assert rep["best"] is not None, "samples > 0 without best/worst/avg: " + raw
        assert rep["best"] <= rep["avg"] <= rep["worst"], raw
        assert rep["note"] is None, "samples > 0 with the no-samples note: " + raw
    else:
        assert rep["best"] is None, "samples=0 with best/worst/avg: " + raw
        assert rep["note"] == "no latency samples in the past %s" % rep["window"], raw
    if rep["rtt"] is not None:
        r = rep["rtt"]
        assert 0 <= r["rtt_p50"] <= r["rtt_p95"] <= r["rtt_p99"] <= r["rtt_max"], \
            "rtt percentiles out of order: " + raw


def parse_report(line):
    """A text REPORT (a replica's, a target's total, or a probe's) -> {target, replica,
    replicas, window ('1s'), window_s (seconds), state, reason, samples, polls, failures, best,
    worst, avg, rtt ({rtt_p50..rtt_max} in ms, or None), note}; absent ones are None."""
    m = REPORT_RE.match(line.rest)
    assert m, "REPORT line not in contract form: %r" % line.raw
    d = m.groupdict()
    num = lambda k, f=int: f(d[k]) if d[k] is not None else None  # noqa: E731
    rep = {"target": d["target"], "replica": d["replica"], "replicas": num("replicas"),
           "window": d["window"], "window_s": dur(d["window"]), "state": d["state"],
           "reason": d["reason"], "samples": num("samples"), "polls": num("polls"),
           "failures": int(d["failures"]), "best": num("best", float),
           "worst": num("worst", float), "avg": num("avg", float), "rtt": None, "note": None}
    if d["rtt_p50"] is not None:
        rep["rtt"] = {k: float(d[k]) for k in RTT_KEYS}
    if d["past"] is not None:
        rep["note"] = "no latency samples in the past %s" % d["past"]
    check_report(rep, line.raw)
    return rep


def check_alert(line, url=None, replica=None, reason=None):
    """Field order and value shapes of a text ALERT (and its target, replica and reason when
    given); the state follows the reason. Returns consecutive (int)."""
    assert list(line.fields) == ALERT_KEYS, line.raw
    f = line.fields
    assert f["reason"] in REASONS, line.raw
    want_state = "degraded" if f["reason"] in ("unhealthy", "slow") else "down"
    assert f["state"] == want_state, "reason=%s wants state=%s: %s" % (f["reason"], want_state,
                                                                       line.raw)
    assert f["consecutive"].isdigit() and int(f["consecutive"]) >= 1, line.raw
    assert re.search(r' detail="(?:[^"\\]|\\.)+"$', line.raw), line.raw
    for key, want in (("target", url), ("replica", replica), ("reason", reason)):
        if want is not None:
            assert f[key] == want, "want %s=%s: %s" % (key, want, line.raw)
    return int(f["consecutive"])


def check_recovered(line, url=None, replica=None):
    """Field order and value shapes of a text RECOVERED (and its target and replica when
    given). Returns (after in seconds, failures)."""
    assert list(line.fields) == RECOVERED_KEYS, line.raw
    f = line.fields
    assert f["state"] == "healthy", line.raw
    assert SECONDS3_RE.match(f["after"]), line.raw
    assert f["failures"].isdigit(), line.raw
    for key, want in (("target", url), ("replica", replica)):
        if want is not None:
            assert f[key] == want, "want %s=%s: %s" % (key, want, line.raw)
    return float(f["after"][:-1]), int(f["failures"])
