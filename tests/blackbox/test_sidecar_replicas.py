"""Black-box tests of the sidecar's replicas (--replicas, --max-replicas, --dns-server).

The target URL names a host that a FakeDNS (fake_dns.py) resolves to several
loopback addresses (Linux routes all of 127/8 to lo), each served by a
FakeTarget bound to that address and one shared port (or by real hello
processes). The sidecar is pointed at the fake DNS with --dns-server, so the
addresses can change under it between polls.
"""

import re
import signal
import socket
import time

import pytest

from bbenv import TF, WAIT
from promtext import metrics_port, promtool_check, sample, samples, scrape_text
from bbproc import run_to_completion
from fake_dns import FakeDNS, build_query, parse_response, TYPE_A, TYPE_AAAA, TYPE_NAMES
from sidecar_lines import (ALERT_KEYS, REPLICA_KEYS, START_KEYS, check_alert, check_recovered,
                           parse_report)
from fake_target import FakeTarget
from waits import wait_until

NAME = "hello.bb.test"
FAST = ("--interval", "200ms", "--window", "1s", "--timeout", "150ms")
INTERVAL = 0.2
WINDOW = 1.0
#: long enough for a window's REPORT to be printed, whatever happened before
REPORT_WAIT = WINDOW + 2.0 * TF


# ------------------------------------------------------------------ helpers

class AddrTarget(FakeTarget):
    """A FakeTarget listening on a given loopback address (IPv4 or IPv6) and port."""

    def __init__(self, ip, port=0):
        super().__init__()
        self.lsock.close()
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((ip, port))
            s.listen(64)
        except OSError:
            s.close()
            raise
        s.settimeout(0.2)
        self.lsock = s
        self.ip = ip
        self.port = s.getsockname()[1]
        #: how the sidecar labels this address: 127.0.0.2:PORT or [::1]:PORT
        self.replica = ("[%s]:%d" if family == socket.AF_INET6 else "%s:%d") % (ip, self.port)
        self.url = "http://%s/health" % self.replica


def name_url(port, name=NAME):
    return "http://%s:%d/health" % (name, port)


def replica_reports_before(s, total):
    """The per-replica REPORT lines printed just before the total REPORT line `total`."""
    lines = s.lines()
    i = next(k for k, l in enumerate(lines) if l is total)
    out = []
    k = i - 1
    while k >= 0 and lines[k].event == "REPORT" and "replica" in lines[k].fields:
        out.append(lines[k])
        k -= 1
    out.reverse()
    return out


def wait_total(s, url, start=0, timeout=REPORT_WAIT, **fields):
    """The next total REPORT (the one with replicas=N) of url, optionally with given fields."""
    def pred(l):
        if l.event != "REPORT" or l.fields.get("target") != url or "replicas" not in l.fields:
            return False
        return all(str(l.fields.get(k)) == str(v) for k, v in fields.items())
    return s.wait_for(pred, timeout, start, what="total REPORT of %s %r" % (url, fields))


def alerts_for(s, replica):
    return [l for l in s.events("ALERT") if l.fields.get("replica") == replica]


def replicas_in_metrics(m, url):
    """Replica labels of url's probe_success series."""
    return sorted(dict(k[1])["replica"] for k in m
                  if k[0] == "probe_success" and dict(k[1]).get("target") == url)




def wait_metrics(port, pred, timeout=WAIT, what="metrics condition"):
    """Scrape until pred(samples) is true; return those samples."""
    last = {}

    def once():
        last["m"] = samples(scrape_text(port))
        return last["m"] if pred(last["m"]) else None
    try:
        return wait_until(once, timeout, what)
    except AssertionError as e:
        raise AssertionError("%s; last scrape: %r" % (e, sorted(
            (k[0], sorted(k[1]), v) for k, v in last.get("m", {}).items()
            if k[0] in ("probe_success", "sidecar_target_replicas", "sidecar_target_state"))))


def hosts_file_name():
    """A name /etc/hosts maps to an IPv4 address (not localhost), or None."""
    try:
        with open("/etc/hosts") as f:
            for line in f:
                parts = line.split("#", 1)[0].split()
                if len(parts) < 2 or ":" in parts[0]:
                    continue
                for name in parts[1:]:
                    if name != "localhost" and re.match(r"^[A-Za-z0-9.-]+$", name):
                        return name, parts[0]
    except OSError:
        pass
    return None


@pytest.fixture
def dns():
    d = FakeDNS()
    d.start()
    yield d
    d.stop()


@pytest.fixture
def dns_pair():
    """Two fake DNS servers, for --dns-server A,B."""
    pair = (FakeDNS().start(), FakeDNS().start())
    yield pair
    for d in pair:
        d.stop()


@pytest.fixture
def replica_targets():
    """replica_targets([ip, ...]) -> [AddrTarget] all on one port, started, healthy(0.1)."""
    made = []

    def make(ips, port=0):
        for _ in range(10):
            group = []
            try:
                p = port
                for ip in ips:
                    t = AddrTarget(ip, p)
                    group.append(t)
                    p = t.port
            except OSError:
                for t in group:
                    t.lsock.close()
                if port:
                    raise
                continue  # the port picked on the first address is taken on another one
            for t in group:
                t.start()
                made.append(t)
            return group
        raise AssertionError("no common free port on %r" % (ips,))

    yield make
    for t in made:
        t.stop()


@pytest.fixture
def refusing_port():
    """refusing_port([ip, ...]) -> one port bound (not listening) on each ip: connect is refused."""
    socks = []

    def make(ips):
        for _ in range(10):
            group = []
            try:
                p = 0
                for ip in ips:
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    group.append(s)
                    s.bind((ip, p))
                    p = s.getsockname()[1]
            except OSError:
                for s in group:
                    s.close()
                continue
            socks.extend(group)
            return p
        raise AssertionError("no common free port on %r" % (ips,))

    yield make
    for s in socks:
        s.close()


# ------------------------------------------------------------------ the fake DNS itself

def test_fake_dns_answers_as_documented(dns):
    """The test double first: A/AAAA by family, NODATA, NXDOMAIN, case, drop, counts."""
    dns.set_answers("Multi.BB.test.", ["127.0.0.2", "127.0.0.3", "::1"])
    dns.set_answers("v4only.bb.test", ["127.0.0.9"])
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(2.0)
    try:
        def ask(name, qtype, qid=7):
            c.sendto(build_query(name, qtype, qid), ("127.0.0.1", dns.port))
            return parse_response(c.recvfrom(4096)[0])

        r = ask("multi.bb.test", TYPE_A, 11)
        assert (r["id"], r["rcode"], r["qname"], r["qtype"]) == (11, 0, "multi.bb.test", TYPE_A)
        assert r["flags"] & 0x8000, r  # a response
        assert r["answers"] == [(TYPE_A, 0, "127.0.0.2"), (TYPE_A, 0, "127.0.0.3")], r
        r = ask("MULTI.bb.TEST", TYPE_AAAA)
        assert r["qname"] == "MULTI.bb.TEST", r  # the question comes back as asked
        assert (r["rcode"], r["answers"]) == (0, [(TYPE_AAAA, 0, "::1")]), r
        r = ask("v4only.bb.test", TYPE_AAAA)
        assert (r["rcode"], r["answers"]) == (0, []), r  # NODATA
        r = ask("nope.bb.test", TYPE_A)
        assert (r["rcode"], r["answers"]) == (3, []), r  # NXDOMAIN
        dns.set_answers("v4only.bb.test", ["127.0.0.10"])
        assert ask("v4only.bb.test", TYPE_A)["answers"] == [(TYPE_A, 0, "127.0.0.10")]
        dns.remove("v4only.bb.test")
        assert ask("v4only.bb.test", TYPE_A)["rcode"] == 3
        dns.set_drop(True)
        c.settimeout(0.3)
        c.sendto(build_query("multi.bb.test", TYPE_A), ("127.0.0.1", dns.port))
        with pytest.raises(socket.timeout):
            c.recvfrom(4096)
        dns.set_drop(False)
        c.settimeout(2.0)
        assert ask("multi.bb.test", TYPE_A)["rcode"] == 0
        # a truncated question is a FORMERR, not a crash
        c.sendto(build_query("multi.bb.test", TYPE_A)[:-3], ("127.0.0.1", dns.port))
        assert parse_response(c.recvfrom(4096)[0])["rcode"] == 1
    finally:
        c.close()
    # A, AAAA, the dropped one, A again (the broken question has no name to count)
    assert dns.query_count("multi.bb.test") == 4
    assert dns.query_count("nope.bb.test") == 1
    assert TYPE_NAMES[TYPE_AAAA] == "AAAA"


# ------------------------------------------------------------------ replicas followed

def test_three_replicas_all_healthy(start_sidecar, dns, replica_targets):
    """Three addresses: three REPLICA joined lines, a REPORT per replica (each with its own
    latency: the probes are pinned to their address) and the total, metrics per replica."""
    ts = replica_targets(["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    latency = {t.replica: lat for t, lat in zip(ts, (0.1, 0.2, 0.3))}
    for t in ts:
        t.set_healthy(latency[t.replica])
    url = name_url(ts[0].port)
    dns.set_answers(NAME, [t.ip for t in ts])
    s = start_sidecar("--target", url, *FAST, "--dns-server", dns.server)
    start = s.events("START")[0]
    assert list(start.fields) == START_KEYS, start.raw
    assert (start.fields["replicas"], start.fields["probes"]) == ("on", "0"), start.raw

    total = wait_total(s, url)
    joined = s.events("REPLICA")
    assert all(list(l.fields) == REPLICA_KEYS for l in joined), s.dump()
    assert sorted(l.fields["replica"] for l in joined) == sorted(latency), s.dump()
    assert [(l.fields["target"], l.fields["change"], l.fields["replicas"]) for l in joined] == \
        [(url, "joined", "1"), (url, "joined", "2"), (url, "joined", "3")], s.dump()

    tot = parse_report(total)
    assert (tot["replicas"], tot["state"], tot["failures"]) == (3, "healthy", 0), total.raw
    per = replica_reports_before(s, total)
    assert sorted(l.fields["replica"] for l in per) == sorted(latency), s.dump()
    for line in per:
        rep = parse_report(line)
        want = latency[rep["replica"]]
        assert (rep["target"], rep["window"], rep["state"]) == (url, "1s", "healthy"), line.raw
        assert rep["samples"] >= 2 and rep["failures"] == 0, line.raw
        assert rep["best"] == rep["worst"] == rep["avg"] == want, \
            "samples of another replica in this replica's REPORT: " + line.raw
        assert rep["rtt"], line.raw
    assert tot["samples"] == sum(parse_report(l)["samples"] for l in per), s.dump()
    assert (tot["best"], tot["worst"]) == (0.1, 0.3), total.raw
    assert not s.events("ALERT"), s.dump()

    # each address got its own GETs, with the name (not the address) in Host
    for t in ts:
        reqs = t.snapshot()
        assert reqs, "replica %s never probed\n%s" % (t.replica, s.dump())
        assert {r.request_line for r in reqs} == {"GET /health HTTP/1.1"}, reqs[0].request_line
        assert {r.headers.get("host") for r in reqs} == {"%s:%d" % (NAME, t.port)}, \
            [r.headers for r in reqs[:1]]
    # the name is looked up every poll (TTL 0), not once
    a_queries = [q for q in dns.log if q[1] == NAME and q[2] == "A"]
    assert len(a_queries) >= 3, dns.log

    port = metrics_port(s)
    text = scrape_text(port)
    promtool_check(text)
    m = samples(text)
    assert sample(m, "sidecar_target_info", target=url, kind="health", replicas="on") == 1
    assert sample(m, "sidecar_target_replicas", target=url) == 3
    assert sample(m, "sidecar_target_state", target=url, state="healthy") == 1
    assert sample(m, "sidecar_target_state", target=url, state="degraded") == 0
    assert sample(m, "sidecar_dns_failures_total", target=url) == 0
    assert replicas_in_metrics(m, url) == sorted(latency)
    for r, lat in latency.items():
        assert sample(m, "probe_success", target=url, replica=r) == 1
        assert sample(m, "probe_http_status_code", target=url, replica=r) == 200
        assert sample(m, "sidecar_reported_latency_seconds", target=url, replica=r) == lat
        assert sample(m, "sidecar_replica_state", target=url, replica=r, state="healthy") == 1
        assert sample(m, "sidecar_replica_state", target=url, replica=r, state="down") == 0
        n = sample(m, "sidecar_probes_total", target=url, replica=r)
        assert n >= 2
        assert sample(m, "sidecar_probe_round_trip_seconds_count", target=url, replica=r) == n
        assert sample(m, "sidecar_probe_failures_total", target=url, replica=r,
                      reason="status") == 0
        assert sample(m, "sidecar_window_latency_seconds", target=url, replica=r, window="1s",
                      stat="avg") == lat
        assert sample(m, "sidecar_window_failures", target=url, replica=r, window="1s") == 0
        assert sample(m, "sidecar_window_samples", target=url, replica=r, window="1s") >= 2
        assert sample(m, "sidecar_window_round_trip_seconds", target=url, replica=r, window="1s",
                      percentile="0.5") > 0


def test_replica_leaves_and_joins(start_sidecar, dns, replica_targets):
    """An address gone from DNS: REPLICA left (no ALERT), no more probes, gone from the
    metrics. A new address: REPLICA joined, probed from then on, in the metrics."""
    a, b, c, e = replica_targets(["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"])
    url = name_url(a.port)
    dns.set_answers(NAME, [a.ip, b.ip, c.ip])
    s = start_sidecar("--target", url, *FAST, "--dns-server", dns.server)
    port = metrics_port(s)
    for t in (a, b, c):
        s.wait_event("REPLICA", replica=t.replica, change="joined")
    wait_metrics(port, lambda m: all(m.get(("probe_success", frozenset(
        [("target", url), ("replica", t.replica)]))) == 1 for t in (a, b, c)),
        what="3 replicas probed")

    i = s.index()
    dns.set_answers(NAME, [a.ip, c.ip])
    left = s.wait_event("REPLICA", start=i, change="left", timeout=1.0 * TF)
    nb = b.request_count()
    assert list(left.fields) == REPLICA_KEYS, left.raw
    assert left.fields == {"target": url, "replica": b.replica, "change": "left",
                           "replicas": "2"}, left.raw
    m = samples(scrape_text(port))
    assert sample(m, "sidecar_target_replicas", target=url) == 2
    assert replicas_in_metrics(m, url) == sorted([a.replica, c.replica]), m
    assert not [k for k in m if ("replica", b.replica) in k[1]], \
        "series of the replica that left are still exported"
    total = wait_total(s, url, start=s.index(), replicas=2)
    per = replica_reports_before(s, total)
    assert sorted(l.fields["replica"] for l in per) == sorted([a.replica, c.replica]), s.dump()
    assert b.request_count() <= nb + 1, "replica still probed after it left\n" + s.dump()
    assert e.request_count() == 0, "an address never in DNS was probed"

    i = s.index()
    dns.set_answers(NAME, [a.ip, c.ip, e.ip])
    joined = s.wait_event("REPLICA", start=i, change="joined", timeout=1.0 * TF)
    assert joined.fields == {"target": url, "replica": e.replica, "change": "joined",
                             "replicas": "3"}, joined.raw
    e.wait_requests(1, 1.0 * TF)
    assert e.snapshot()[0].headers.get("host") == "%s:%d" % (NAME, e.port)
    wait_metrics(port, lambda m: m.get(("probe_success", frozenset(
        [("target", url), ("replica", e.replica)]))) == 1, what="new replica probed")
    m = samples(scrape_text(port))
    assert sample(m, "sidecar_target_replicas", target=url) == 3
    assert replicas_in_metrics(m, url) == sorted([a.replica, c.replica, e.replica])
    assert b.request_count() <= nb + 1, s.dump()
    changes = [(l.fields["replica"], l.fields["change"], l.fields["replicas"])
               for l in s.events("REPLICA")]
    assert changes[3:] == [(b.replica, "left", "2"), (e.replica, "joined", "3")], s.dump()
    assert not s.events("ALERT"), "a replica coming or going is no failure\n" + s.dump()


def test_one_replica_failing_then_recovering(start_sidecar, dns, replica_targets):
    """One replica answers 503: ALERTs for it alone, the target is degraded, the others stay
    healthy; when it answers again, RECOVERED for that replica."""
    a, b, c = replica_targets(["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    url = name_url(a.port)
    dns.set_answers(NAME, [a.ip, b.ip, c.ip])
    s = start_sidecar("--target", url, *FAST, "--dns-server", dns.server)
    port = metrics_port(s)
    wait_total(s, url, replicas=3, state="healthy")

    i = s.index()
    b.set_status(503)
    first = s.wait_event("ALERT", start=i, timeout=1.0 * TF)
    check_alert(first, url, b.replica, "status")
    assert (first.fields["consecutive"], first.fields["detail"]) == ("1", "HTTP 503"), first.raw
    total = wait_total(s, url, start=s.index(), replicas=3)
    assert parse_report(total)["state"] == "degraded", total.raw
    per = {l.fields["replica"]: parse_report(l) for l in replica_reports_before(s, total)}
    assert per[b.replica]["state"] == "down" and per[b.replica]["failures"] >= 1, s.dump()
    for t in (a, c):
        assert per[t.replica]["state"] == "healthy" and per[t.replica]["failures"] == 0, s.dump()
    m = samples(scrape_text(port))
    assert sample(m, "sidecar_target_state", target=url, state="degraded") == 1
    assert sample(m, "probe_success", target=url, replica=b.replica) == 0
    assert sample(m, "probe_http_status_code", target=url, replica=b.replica) == 503
    assert sample(m, "probe_failure_info", target=url, replica=b.replica, reason="status") == 1
    assert sample(m, "sidecar_replica_state", target=url, replica=b.replica, state="down") == 1
    assert sample(m, "sidecar_probe_failures_total", target=url, replica=b.replica,
                  reason="status") >= 1
    for t in (a, c):
        assert sample(m, "probe_success", target=url, replica=t.replica) == 1
        assert sample(m, "sidecar_replica_state", target=url, replica=t.replica,
                      state="healthy") == 1
        assert sample(m, "sidecar_probe_failures_total", target=url, replica=t.replica,
                      reason="status") == 0

    k = s.index()
    b.set_healthy(0.1)
    rec = s.wait_event("RECOVERED", start=k, timeout=1.0 * TF)
    failures = check_recovered(rec, url, b.replica)[1]
    alerts = s.events("ALERT")
    assert all(l.fields["replica"] == b.replica for l in alerts), s.dump()
    assert [check_alert(l, url, b.replica, "status") for l in alerts] == \
        list(range(1, len(alerts) + 1)), s.dump()
    assert failures == len(alerts), s.dump()
    after = wait_total(s, url, start=s.lines().index(rec) + 1, replicas=3)
    assert parse_report(after)["state"] == "healthy", after.raw
    assert len(s.events("RECOVERED")) == 1, s.dump()


def test_hello_replica_stops_and_comes_back(start_sidecar, start_hello, dns):
    """Three real hello processes on one port, three addresses; one stops (connection
    refused): ALERT reason=connect for it alone and a degraded target; started again on
    the same address: RECOVERED for it."""
    flags = ("--health-threshold", "1", "--access-log", "off")
    first = start_hello("--listen", "127.0.0.2:0", *flags, listen=False).wait_listening()
    port = first.port
    hellos = [first] + [start_hello("--listen", "127.0.0.%d:%d" % (n, port), *flags,
                                    listen=False).wait_listening() for n in (3, 4)]
    addrs = [h.addr for h in hellos]
    assert addrs == ["127.0.0.2:%d" % port, "127.0.0.3:%d" % port, "127.0.0.4:%d" % port]
    url = name_url(port)
    dns.set_answers(NAME, ["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    s = start_sidecar("--target", url, *FAST, "--dns-server", dns.server)
    total = wait_total(s, url, replicas=3, state="healthy")
    assert sorted(l.fields["replica"] for l in replica_reports_before(s, total)) == addrs

    i = s.index()
    rc, _ = hellos[1].stop(signal.SIGTERM)
    assert rc == 0, hellos[1].dump()
    alert = s.wait_event("ALERT", start=i, timeout=1.0 * TF)
    check_alert(alert, url, addrs[1], "connect")
    assert parse_report(wait_total(s, url, start=s.index(), replicas=3))["state"] == "degraded"

    start_hello("--listen", addrs[1], *flags, listen=False).wait_listening()
    rec = s.wait_event("RECOVERED", start=i, timeout=1.0 * TF)
    failures = check_recovered(rec, url, addrs[1])[1]
    alerts = s.events("ALERT")
    assert {l.fields["replica"] for l in alerts} == {addrs[1]}, s.dump()
    assert failures == len(alerts), s.dump()


def test_all_replicas_refusing_is_down(start_sidecar, dns, refusing_port):
    """Nothing answers on any address: an ALERT per replica and poll, the target down."""
    port = refusing_port(["127.0.0.2", "127.0.0.3"])
    url = name_url(port)
    dns.set_answers(NAME, ["127.0.0.2", "127.0.0.3"])
    s = start_sidecar("--target", url, *FAST, "--dns-server", dns.server)
    total = wait_total(s, url)
    tot = parse_report(total)
    assert (tot["replicas"], tot["state"], tot["samples"]) == (2, "down", 0), total.raw
    per = replica_reports_before(s, total)
    assert len(per) == 2 and all(parse_report(l)["state"] == "down" for l in per), s.dump()
    assert tot["failures"] == sum(parse_report(l)["failures"] for l in per), s.dump()
    for r in ("127.0.0.2:%d" % port, "127.0.0.3:%d" % port):
        alerts = alerts_for(s, r)
        assert len(alerts) >= 3, s.dump()
        assert [check_alert(l, url, r, "connect") for l in alerts] == \
            list(range(1, len(alerts) + 1)), s.dump()


def test_no_replica_healthy_but_one_answering_is_degraded(start_sidecar, dns, replica_targets):
    """The target's state: down only when every replica is down (no valid 200 anywhere);
    one replica answering healthy:false while the other fails is degraded."""
    a, b = replica_targets(["127.0.0.2", "127.0.0.3"])
    a.set_unhealthy(0.95)
    b.set_status(503)
    url = name_url(a.port)
    dns.set_answers(NAME, [a.ip, b.ip])
    s = start_sidecar("--target", url, *FAST, "--dns-server", dns.server)
    total = wait_total(s, url, replicas=2)
    per = {l.fields["replica"]: parse_report(l)["state"] for l in replica_reports_before(s, total)}
    assert per == {a.replica: "degraded", b.replica: "down"}, s.dump()
    assert parse_report(total)["state"] == "degraded", total.raw
    a.set_status(503)
    wait_total(s, url, start=len(s.lines()), state="down", timeout=4.0 * TF)


# ------------------------------------------------------------------ lookups failing

def test_nxdomain_alerts_dns_and_target_down(start_sidecar, dns, replica_targets):
    """An unknown name: ALERT reason=dns per poll (replica = the name), no replica, the
    target down; once the name resolves: RECOVERED, REPLICA joined, probed."""
    (t,) = replica_targets(["127.0.0.2"])
    url = name_url(t.port)
    hp = "%s:%d" % (NAME, t.port)
    s = start_sidecar("--target", url, *FAST, "--dns-server", dns.server)
    port = metrics_port(s)
    first = s.wait_event("ALERT", timeout=1.0 * TF)
    check_alert(first, url, hp, "dns")
    assert first.fields["consecutive"] == "1", first.raw
    assert re.match(r"^cannot resolve %s: \S" % re.escape(NAME), first.fields["detail"]), \
        first.raw
    total = wait_total(s, url)
    tot = parse_report(total)
    assert (tot["replicas"], tot["state"], tot["samples"]) == (0, "down", 0), total.raw
    assert tot["failures"] >= 3, total.raw
    assert not replica_reports_before(s, total), s.dump()
    assert not s.events("REPLICA"), s.dump()
    assert t.request_count() == 0
    alerts = s.events("ALERT")
    assert [check_alert(l, url, hp, "dns") for l in alerts] == \
        list(range(1, len(alerts) + 1)), s.dump()
    assert len({l.fields["detail"] for l in alerts}) == 1, s.dump()
    assert dns.query_count(NAME) >= 3, "the fake DNS was not asked"

    m = samples(scrape_text(port))
    assert sample(m, "sidecar_dns_failures_total", target=url) >= len(alerts)
    assert sample(m, "sidecar_target_state", target=url, state="down") == 1
    assert sample(m, "sidecar_target_replicas", target=url) == 0
    assert sample(m, "sidecar_target_info", target=url, kind="health", replicas="on") == 1
    assert replicas_in_metrics(m, url) == []

    k = s.index()
    dns.set_answers(NAME, [t.ip])
    rec = s.wait_event("RECOVERED", start=k, timeout=1.0 * TF)
    failures = check_recovered(rec, url, hp)[1]
    assert failures == len(alerts_for(s, hp)), s.dump()
    s.wait_event("REPLICA", start=k, replica=t.replica, change="joined", replicas=1)
    t.wait_requests(1, 1.0 * TF)
    wait_total(s, url, start=k, replicas=1, state="healthy")


def test_lookup_failing_later_stops_probing(start_sidecar, dns, replica_targets):
    """Replicas known, then the lookup fails: the target is down at once, the replicas leave
    (the name no longer says where they are; their series go with them) and none is probed
    while it fails; the name back: RECOVERED (replica = the name), the replicas join again."""
    a, b = replica_targets(["127.0.0.2", "127.0.0.3"])
    url = name_url(a.port)
    hp = "%s:%d" % (NAME, a.port)
    dns.set_answers(NAME, [a.ip, b.ip])
    s = start_sidecar("--target", url, *FAST, "--dns-server", dns.server)
    wait_total(s, url, replicas=2, state="healthy")
    port = metrics_port(s)

    k = s.index()
    dns.remove(NAME)
    first = s.wait_event("ALERT", start=k, timeout=1.0 * TF)
    check_alert(first, url, hp, "dns")
    left = [l for l in s.events("REPLICA")[-2:] if l.fields["change"] == "left"]
    assert sorted(l.fields["replica"] for l in left) == sorted([a.replica, b.replica]), s.dump()
    m = wait_metrics(port, lambda m: sample(m, "sidecar_target_replicas", target=url) == 0,
                     what="no replica while the lookup fails")
    assert replicas_in_metrics(m, url) == [], m
    assert sample(m, "sidecar_target_state", target=url, state="down") == 1
    na, nb = a.request_count(), b.request_count()
    s.wait_event("ALERT", start=k, replica=hp, consecutive=4, timeout=1.0 + 1.0 * TF)
    assert a.request_count() <= na + 1 and b.request_count() <= nb + 1, \
        "replicas probed while the lookup fails\n" + s.dump()
    total = wait_total(s, url, start=s.lines().index(first) + 1)
    assert parse_report(total)["state"] == "down", total.raw
    assert {l.fields["replica"] for l in s.events("ALERT")} == {hp}, s.dump()

    assert parse_report(total)["reason"] == "dns", total.raw

    k = s.index()
    dns.set_answers(NAME, [a.ip, b.ip])
    rec = s.wait_event("RECOVERED", start=k, timeout=1.0 * TF)
    assert check_recovered(rec, url, hp)[1] == len(s.events("ALERT")), s.dump()
    a.wait_requests(na + 3, 1.0 + 1.0 * TF)
    b.wait_requests(nb + 3, 1.0 + 1.0 * TF)
    joined = [l.fields["replica"] for l in s.events("REPLICA")[-2:]
              if l.fields["change"] == "joined"]
    assert sorted(joined) == sorted([a.replica, b.replica]), s.dump()
    wait_metrics(port, lambda m: replicas_in_metrics(m, url) == sorted([a.replica, b.replica]),
                 what="both replicas back in the metrics")


def test_slow_lookup_leaves_the_get_what_is_left(start_sidecar, dns, replica_targets):
    """The lookup takes 200 ms of a 300 ms timeout and the replica 200 ms to answer: the GET
    gets the 100 ms left, so the poll fails with reason=timeout 300 ms after it began (not
    500 ms, past the next poll), on schedule, and no poll is ever skipped."""
    (t,) = replica_targets(["127.0.0.2"])
    url = name_url(t.port)
    dns.set_answers(NAME, [t.ip])
    t.set_healthy(0.1, delay=0.2)
    dns.set_delay(0.2)
    s = start_sidecar("--target", url, "--interval", "400ms", "--window", "2s",
                      "--timeout", "300ms", "--dns-server", dns.server)
    t0 = s.events("START")[0].t
    first = s.wait_event("ALERT", timeout=1.0 * TF)
    check_alert(first, url, t.replica, "timeout")
    assert first.t - t0 == pytest.approx(0.3, abs=0.08 * TF), \
        "first ALERT %.3fs after START" % (first.t - t0)
    fourth = s.wait_event("ALERT", replica=t.replica, consecutive=4, timeout=1.5 + 1.0 * TF)
    assert fourth.t - first.t == pytest.approx(3 * 0.4, abs=0.1 * TF), s.dump()
    assert not s.events("WARN"), s.dump()

    # a faster answer fits in what the lookup leaves: healthy again
    k = s.index()
    t.set_healthy(0.1, delay=0.02)
    s.wait_event("RECOVERED", start=k, timeout=1.0 * TF)


def test_lookup_ends_at_the_timeout_whatever_the_servers(start_sidecar, replica_targets,
                                                          dns_pair):
    """Two DNS servers that never answer: the lookup ends at the poll's timeout (ALERT
    reason=dns), not later, so polls never overlap and none is skipped."""
    (t,) = replica_targets(["127.0.0.2"])
    url = name_url(t.port)
    for d in dns_pair:
        d.set_answers(NAME, [t.ip])
        d.set_drop(True)
    s = start_sidecar("--target", url, "--interval", "400ms", "--window", "2s",
                      "--timeout", "250ms", "--dns-server", ",".join(d.server for d in dns_pair))
    t0 = s.events("START")[0].t
    first = s.wait_event("ALERT", timeout=1.0 * TF)
    check_alert(first, url, "%s:%d" % (NAME, t.port), "dns")
    assert first.t - t0 == pytest.approx(0.25, abs=0.08 * TF), \
        "dns ALERT %.3fs after START" % (first.t - t0)
    s.wait_event("ALERT", consecutive=4, timeout=1.5 + 1.0 * TF)
    assert not s.events("WARN"), s.dump()
    assert t.request_count() == 0


def test_dead_first_dns_server_leaves_time_for_the_next(start_sidecar, replica_targets,
                                                        dns_pair):
    """--dns-server DEAD,GOOD: each server gets an equal share of the 300 ms timeout in turn,
    so the dead one costs 150 ms and the good one answers: the replica is found and healthy,
    every poll."""
    (t,) = replica_targets(["127.0.0.2"])
    url = name_url(t.port)
    dead, good = dns_pair
    for d in dns_pair:
        d.set_answers(NAME, [t.ip])
    dead.set_drop(True)
    s = start_sidecar("--target", url, "--interval", "500ms", "--window", "2s",
                      "--timeout", "300ms", "--dns-server", "%s,%s" % (dead.server, good.server))
    s.wait_event("REPLICA", replica=t.replica, change="joined", timeout=1.0 * TF)
    t.wait_requests(3, 1.5 + 1.0 * TF)
    assert dead.query_count(NAME) >= 1 and good.query_count(NAME) >= 3
    total = parse_report(wait_total(s, url, timeout=2.0 + 2.0 * TF))
    assert total["state"] == "healthy", s.dump()
    assert not s.events("ALERT"), s.dump()


def test_trickling_replica_does_not_hold_up_the_others(start_sidecar, dns, replica_targets):
    """One replica trickles its answer a byte every 20 ms: it times out (reason=timeout) while
    the other is polled on schedule and /metrics answers at once."""
    a, b = replica_targets(["127.0.0.2", "127.0.0.3"])
    url = name_url(a.port)
    dns.set_answers(NAME, [a.ip, b.ip])
    a.set_trickle(0.02)
    s = start_sidecar("--target", url, *FAST, "--dns-server", dns.server)
    alert = s.wait_event("ALERT", replica=a.replica, timeout=1.0 * TF)
    check_alert(alert, url, a.replica, "timeout")
    port = metrics_port(s)
    n = b.request_count()
    for _ in range(5):
        t = time.monotonic()
        text = scrape_text(port)
        took = time.monotonic() - t
        assert took < 0.1 * TF, "a scrape took %.3fs" % took
        promtool_check(text)  # (not timed: promtool is a process of its own to start)
        time.sleep(0.1)
    reqs = b.snapshot()[n:]
    gaps = [y.t - x.t for x, y in zip(reqs, reqs[1:])]
    assert len(reqs) >= 2 and all(g == pytest.approx(INTERVAL, abs=0.08 * TF) for g in gaps), \
        gaps
    assert not alerts_for(s, b.replica), s.dump()
    total = parse_report(wait_total(s, url, replicas=2))
    assert (total["state"], total["reason"]) == ("degraded", "timeout"), total


def test_dns_timeout_alerts_within_poll_timeout(start_sidecar, dns, replica_targets):
    """The DNS server does not answer: ALERT reason=dns within the poll's timeout, every
    poll (lookups do not pile up); answering again: RECOVERED."""
    (t,) = replica_targets(["127.0.0.2"])
    url = name_url(t.port)
    hp = "%s:%d" % (NAME, t.port)
    dns.set_answers(NAME, [t.ip])
    dns.set_drop(True)
    s = start_sidecar("--target", url, "--interval", "200ms", "--window", "1s",
                      "--timeout", "100ms", "--dns-server", dns.server)
    t0 = s.events("START")[0].t
    first = s.wait_event("ALERT", timeout=1.0 * TF)
    check_alert(first, url, hp, "dns")
    assert first.fields["detail"].startswith("cannot resolve %s: " % NAME), first.raw
    assert "timeout" in first.fields["detail"].lower(), first.raw
    assert first.t - t0 < 0.1 + 0.3 * TF, "first dns ALERT %.3fs after START" % (first.t - t0)
    s.wait_event("ALERT", replica=hp, consecutive=4, timeout=1.0 + 1.0 * TF)
    assert not [l for l in s.lines() if l.event == "WARN"], s.dump()
    assert dns.query_count(NAME) >= 4
    assert t.request_count() == 0

    k = s.index()
    dns.set_drop(False)
    rec = s.wait_event("RECOVERED", start=k, timeout=1.0 * TF)
    check_recovered(rec, url, hp)
    s.wait_event("REPLICA", start=k, replica=t.replica, change="joined")
    t.wait_requests(1, 1.0 * TF)


# ------------------------------------------------------------------ limits and modes

def test_max_replicas_caps_and_warns_once(start_sidecar, dns, replica_targets):
    """Three addresses, at most two followed (SIDECAR_MAX_REPLICAS=2): one WARN, two
    replicas; when a followed one leaves, the third takes its place."""
    ts = replica_targets(["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    url = name_url(ts[0].port)
    dns.set_answers(NAME, [t.ip for t in ts])
    s = start_sidecar("--target", url, *FAST,
                      env={"SIDECAR_MAX_REPLICAS": "2", "SIDECAR_DNS_SERVER": dns.server})
    port = metrics_port(s)
    first = wait_total(s, url)
    assert parse_report(first)["replicas"] == 2, first.raw
    wait_total(s, url, start=s.lines().index(first) + 1)  # a second window: still one WARN
    warns = [l for l in s.lines() if l.event == "WARN"]
    assert [l.rest for l in warns] == [
        "target=%s has more addresses than --max-replicas=2; not probed=1" % url], s.dump()
    joined = [l.fields["replica"] for l in s.events("REPLICA")]
    assert len(joined) == 2 and len(set(joined)) == 2, s.dump()
    by_label = {t.replica: t for t in ts}
    (extra,) = [t for t in ts if t.replica not in joined]
    assert extra.request_count() == 0, "an address beyond --max-replicas was probed"
    for r in joined:
        assert by_label[r].request_count() >= 3
    m = samples(scrape_text(port))
    assert sample(m, "sidecar_target_replicas", target=url) == 2
    assert replicas_in_metrics(m, url) == sorted(joined)

    k = s.index()
    gone = by_label[joined[0]]
    dns.set_answers(NAME, [t.ip for t in ts if t is not gone])
    s.wait_event("REPLICA", start=k, replica=gone.replica, change="left", replicas=1)
    s.wait_event("REPLICA", start=k, replica=extra.replica, change="joined", replicas=2)
    extra.wait_requests(1, 1.0 * TF)
    assert len([l for l in s.lines() if l.event == "WARN"]) == 1, s.dump()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_replicas_off_name_is_one_replica(start_sidecar, dns, fake_target, how):
    """--replicas off (or SIDECAR_REPLICAS=off) with a name: curl resolves it itself, one
    replica labelled host:port, no REPLICA lines, the DNS server is never asked."""
    url = "http://localhost:%d/health" % fake_target.port
    hp = "localhost:%d" % fake_target.port
    if how == "flag":
        s = start_sidecar("--target", url, *FAST, "--dns-server", dns.server, "--replicas", "off")
    else:
        s = start_sidecar("--target", url, *FAST, "--dns-server", dns.server,
                          env={"SIDECAR_REPLICAS": "off"})
    assert s.events("START")[0].fields["replicas"] == "off", s.dump()
    port = metrics_port(s)
    total = wait_total(s, url)
    tot = parse_report(total)
    assert (tot["replicas"], tot["state"]) == (1, "healthy"), total.raw
    assert not [l for l in s.events("REPORT") if "replica" in l.fields], s.dump()
    assert fake_target.snapshot()[0].headers.get("host") == hp
    m = samples(scrape_text(port))
    assert sample(m, "sidecar_target_info", target=url, kind="health", replicas="off") == 1
    assert sample(m, "sidecar_target_replicas", target=url) == 1
    assert sample(m, "probe_success", target=url, replica=hp) == 1

    k = s.index()
    fake_target.set_status(503)
    alert = s.wait_event("ALERT", start=k, timeout=1.0 * TF)
    check_alert(alert, url, hp, "status")
    assert not s.events("REPLICA"), s.dump()
    assert dns.query_count() == 0, "replicas off, yet the name was looked up: %r" % dns.log


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_ip_literal_target_is_one_replica(start_sidecar, dns, replica_targets, fake_target,
                                          family):
    """An IP literal: replicas=off in START and the metrics, one replica labelled as in
    the URL, nothing looked up."""
    if family == "ipv4":
        t = fake_target
        hp = "127.0.0.1:%d" % t.port
    else:
        (t,) = replica_targets(["::1"])
        hp = "[::1]:%d" % t.port
    url = "http://%s/health" % hp
    s = start_sidecar("--target", url, *FAST, "--dns-server", dns.server)
    assert s.events("START")[0].fields["replicas"] == "off", s.dump()
    port = metrics_port(s)
    total = wait_total(s, url)
    assert parse_report(total)["replicas"] == 1, total.raw
    assert parse_report(total)["state"] == "healthy", total.raw
    m = samples(scrape_text(port))
    assert sample(m, "sidecar_target_info", target=url, kind="health", replicas="off") == 1
    assert sample(m, "probe_success", target=url, replica=hp) == 1
    k = s.index()
    t.set_status(503)
    check_alert(s.wait_event("ALERT", start=k, timeout=1.0 * TF), url, hp, "status")
    assert not s.events("REPLICA"), s.dump()
    assert dns.query_count() == 0, dns.log


def test_ipv6_replica_label(start_sidecar, dns, replica_targets):
    """An AAAA answer is a replica too, labelled [addr]:port."""
    v4, v6 = replica_targets(["127.0.0.2", "::1"])
    assert v6.replica == "[::1]:%d" % v4.port
    v4.set_healthy(0.1)
    v6.set_healthy(0.6)
    url = name_url(v4.port)
    dns.set_answers(NAME, ["::1", "127.0.0.2"])
    s = start_sidecar("--target", url, *FAST, "--dns-server", dns.server)
    port = metrics_port(s)
    total = wait_total(s, url, replicas=2)
    assert sorted(l.fields["replica"] for l in s.events("REPLICA")) == \
        sorted([v4.replica, v6.replica]), s.dump()
    per = {l.fields["replica"]: parse_report(l) for l in replica_reports_before(s, total)}
    assert per[v6.replica]["avg"] == 0.6 and per[v4.replica]["avg"] == 0.1, s.dump()
    assert v6.snapshot()[0].headers.get("host") == "%s:%d" % (NAME, v6.port)
    m = samples(scrape_text(port))
    assert sample(m, "probe_success", target=url, replica=v6.replica) == 1
    assert sample(m, "sidecar_reported_latency_seconds", target=url, replica=v6.replica) == 0.6


def test_dns_server_skips_hosts_file(start_sidecar, dns, replica_targets):
    """A name in /etc/hosts: without --dns-server the hosts file answers; with it, only the
    given server does (its address, not the hosts file's)."""
    found = hosts_file_name()
    if not found:
        pytest.skip("no non-localhost IPv4 name in /etc/hosts")
    name, hosts_ip = found
    if hosts_ip == "127.0.0.2":
        pytest.skip("/etc/hosts maps %s to 127.0.0.2 already" % name)
    (t,) = replica_targets(["127.0.0.2"])
    url = name_url(t.port, name)
    s1 = start_sidecar("--target", url, *FAST)
    joined = s1.wait_event("REPLICA", timeout=1.0 * TF)
    assert joined.fields["replica"] == "%s:%d" % (hosts_ip, t.port), s1.dump()
    s1.stop(signal.SIGTERM)

    dns.set_answers(name, ["127.0.0.2"])
    s2 = start_sidecar("--target", url, *FAST, "--dns-server", dns.server)
    joined = s2.wait_event("REPLICA", timeout=1.0 * TF)
    assert joined.fields["replica"] == t.replica, s2.dump()
    t.wait_requests(1, 1.0 * TF)
    assert dns.query_count(name) >= 1
    time.sleep(3 * INTERVAL)
    assert [l.fields["replica"] for l in s2.events("REPLICA")] == [t.replica], s2.dump()


@pytest.mark.parametrize("args,env,names", [
    (["--max-replicas", "0"], None, "--max-replicas/SIDECAR_MAX_REPLICAS"),
    (["--max-replicas", "257"], None, "--max-replicas/SIDECAR_MAX_REPLICAS"),
    (["--max-replicas", "two"], None, "--max-replicas/SIDECAR_MAX_REPLICAS"),
    ([], {"SIDECAR_MAX_REPLICAS": "-1"}, "--max-replicas/SIDECAR_MAX_REPLICAS"),
    (["--replicas", "maybe"], None, "--replicas/SIDECAR_REPLICAS"),
    ([], {"SIDECAR_REPLICAS": "auto"}, "--replicas/SIDECAR_REPLICAS"),
    (["--dns-server", "not-an-ip"], None, "--dns-server/SIDECAR_DNS_SERVER"),
    (["--dns-server", "127.0.0.1:99999"], None, "--dns-server/SIDECAR_DNS_SERVER"),
    (["--dns-server", "127.0.0.1,"], None, "--dns-server/SIDECAR_DNS_SERVER"),
    ([], {"SIDECAR_DNS_SERVER": "[::1]:0"}, "--dns-server/SIDECAR_DNS_SERVER"),
], ids=["max0", "max257", "max-word", "max-env-negative", "replicas-maybe", "replicas-env-auto",
        "dns-server-word", "dns-server-port-99999", "dns-server-empty-entry", "dns-server-port-0"])
def test_bad_replica_options_exit_2(sidecar_bin, args, env, names):
    """Bad values: exit 2 with one line on stderr (naming the option where it says which)."""
    p = run_to_completion([sidecar_bin, "--metrics-listen", "off"] + args, env=env,
                          timeout=2.0 * TF)
    assert p.p.returncode == 2, p.dump()
    err = [l for l in p.err if l.strip()]
    assert len(err) == 1 and err[0].startswith("sidecar: error: "), p.dump()
    if names:
        assert names in err[0], p.dump()
    assert not p.events("START"), p.dump()


# ------------------------------------------------------------------ JSON and signals

def test_json_replica_lines(start_sidecar, dns, replica_targets):
    """--log-format json: REPLICA, per-replica REPORT, ALERT and RECOVERED are JSON objects
    with the text format's keys (numbers as numbers, units in the key as elsewhere)."""
    a, b = replica_targets(["127.0.0.2", "127.0.0.3"])
    b.set_status(503)
    url = name_url(a.port)
    dns.set_answers(NAME, [a.ip, b.ip])
    s = start_sidecar("--target", url, *FAST, "--dns-server", dns.server, "--log-format", "json")
    assert list(s.events("START")[0].fields) == START_KEYS, s.dump()
    total = s.wait_event("REPORT", target=url, replicas=2, timeout=REPORT_WAIT)
    assert all(l.ok for l in s.lines()), s.dump()

    rep_lines = s.events("REPLICA")
    assert all(list(l.obj)[3:] == REPLICA_KEYS for l in rep_lines), s.dump()
    assert [l.obj for l in rep_lines] == [
        {"time": l.obj["time"], "service": "sidecar", "event": "REPLICA", "target": url,
         "replica": r, "change": "joined", "replicas": n}
        for l, r, n in zip(rep_lines, [a.replica, b.replica], [1, 2])], s.dump()

    per = replica_reports_before(s, total)
    assert sorted(l.obj["replica"] for l in per) == sorted([a.replica, b.replica]), s.dump()
    for l in per:
        keys = list(l.obj)[3:]
        if l.obj["replica"] == a.replica:
            assert keys == ["target", "replica", "window", "state", "samples", "failures",
                            "best_s", "worst_s", "avg_s", "rtt_p50_ms", "rtt_p95_ms",
                            "rtt_p99_ms", "rtt_max_ms"], l.raw
            assert (l.obj["state"], l.obj["failures"], l.obj["avg_s"]) == ("healthy", 0, 0.1)
        else:
            assert keys == ["target", "replica", "window", "state", "reason", "samples",
                            "failures", "rtt_p50_ms", "rtt_p95_ms", "rtt_p99_ms", "rtt_max_ms",
                            "note"], l.raw
            assert (l.obj["state"], l.obj["reason"], l.obj["samples"]) == ("down", "status", 0), \
                l.raw
            assert l.obj["note"] == "no latency samples in the past 1s", l.raw
        assert isinstance(l.obj["samples"], int) and l.obj["window"] == "1s", l.raw
    assert list(total.obj)[3:10] == ["target", "replicas", "window", "state", "reason",
                                     "samples", "failures"], total.raw
    assert (total.obj["state"], total.obj["reason"]) == ("degraded", "status"), total.raw

    alert = s.events("ALERT")[0]
    assert list(alert.obj)[3:] == ALERT_KEYS, alert.raw
    assert (alert.obj["reason"], alert.obj["replica"], alert.obj["consecutive"],
            alert.obj["detail"]) == ("status", b.replica, 1, "HTTP 503"), alert.raw
    k = s.index()
    b.set_healthy()
    rec = s.wait_event("RECOVERED", start=k, timeout=1.0 * TF)
    assert list(rec.obj)[3:] == ["target", "replica", "state", "after_s", "failures"], rec.raw
    assert (rec.obj["replica"], rec.obj["state"]) == (b.replica, "healthy"), rec.raw
    assert isinstance(rec.obj["failures"], int) and rec.obj["failures"] >= 1, rec.raw


def test_sigint_during_lookup_exits_promptly(start_sidecar, dns):
    """A lookup in flight (the DNS server silent, 2 s timeout): SIGINT still ends the
    sidecar within a second, exit status 0, `EXIT code=0`, no ALERT for the cut lookup."""
    dns.set_answers(NAME, ["127.0.0.2"])
    dns.set_drop(True)
    s = start_sidecar("--target", name_url(8080), "--interval", "4s", "--window", "1m",
                      "--dns-server", dns.server)
    assert s.events("START")[0].fields["timeout"] == "2s", s.dump()
    dns.wait_queries(NAME, 1, 1.0 * TF)
    time.sleep(0.1)
    rc, took = s.stop(signal.SIGINT, timeout=WAIT)
    assert rc == 0, s.dump()
    assert took < 1.0 * TF, "exit took %.2fs with a lookup in flight" % took
    lines = s.lines()
    assert [l.fields for l in lines if l.event == "SIGNAL"] == \
        [{"name": "SIGINT", "action": "stop"}], s.dump()
    assert lines[-1].event == "EXIT" and lines[-1].fields.get("code") == "0", s.dump()
    assert not s.events("ALERT"), s.dump()
    s.assert_clean()
