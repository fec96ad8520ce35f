"""Black-box tests of the sidecar's Prometheus endpoint (README: sidecar, SIDECAR_METRICS_LISTEN):
the real binary against the fake target, scraped over HTTP, checked with promtool."""

import os
import signal
import socket
import subprocess
import time

import pytest

from bbenv import TF
from bbproc import Sidecar
from waits import wait_until
from promtext import metrics_port, promtool_check, samples, scrape, scrape_text




def test_metrics_pass_promtool_and_count_probes(start_sidecar, fake_target):
    fake_target.set_healthy(latency=0.25)
    s = start_sidecar("--target", fake_target.url, "--interval", "100ms", "--window", "500ms")
    port = metrics_port(s)
    s.wait_event("REPORT")
    status, headers, text = scrape(port)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    promtool_check(text)
    m = samples(text)
    t = ("target", fake_target.url)
    # An IP-literal target is one replica, labelled with the URL's host:port.
    r = ("replica", "127.0.0.1:%d" % fake_target.port)
    assert m[("probe_success", frozenset([t, r]))] == 1
    assert m[("probe_http_status_code", frozenset([t, r]))] == 200
    assert m[("sidecar_reported_latency_seconds", frozenset([t, r]))] == 0.25
    assert m[("sidecar_target_state", frozenset([t, ("state", "healthy")]))] == 1
    assert m[("sidecar_target_state", frozenset([t, ("state", "down")]))] == 0
    probes = m[("sidecar_probes_total", frozenset([t, r]))]
    assert probes >= 3
    assert m[("sidecar_probe_round_trip_seconds_count", frozenset([t, r]))] == probes
    inf = m[("sidecar_probe_round_trip_seconds_bucket", frozenset([t, r, ("le", "+Inf")]))]
    assert inf == probes
    assert m[("sidecar_window_latency_seconds", frozenset([t, r, ("window", "500ms"), ("stat", "avg")]))] == 0.25
    # Counters only grow.
    time.sleep(0.3 * TF)
    later = samples(scrape(port)[2])
    assert later[("sidecar_probes_total", frozenset([t, r]))] >= probes


def test_failures_by_reason_and_state(start_sidecar, fake_target):
    fake_target.set_status(503)
    s = start_sidecar("--target", fake_target.url, "--interval", "100ms", "--window", "1s")
    port = metrics_port(s)
    s.wait_event("ALERT", reason="status")
    t = ("target", fake_target.url)
    # An IP-literal target is one replica, labelled with the URL's host:port.
    r = ("replica", "127.0.0.1:%d" % fake_target.port)

    def failed_twice():
        m = samples(scrape(port)[2])
        return m if m[("sidecar_probe_failures_total", frozenset([t, r, ("reason", "status")]))] >= 2 else None

    m = wait_until(failed_twice, 5 * TF)
    assert m[("probe_success", frozenset([t, r]))] == 0
    assert m[("probe_http_status_code", frozenset([t, r]))] == 503
    assert m[("probe_failure_info", frozenset([t, r, ("reason", "status")]))] == 1
    assert m[("sidecar_target_state", frozenset([t, ("state", "down")]))] == 1
    assert m[("sidecar_probe_failures_total", frozenset([t, r, ("reason", "timeout")]))] == 0


def test_only_metrics_path_and_get(start_sidecar, fake_target):
    fake_target.set_healthy()
    s = start_sidecar("--target", fake_target.url, "--interval", "200ms", "--window", "1s")
    port = metrics_port(s)
    assert scrape(port, "/nope")[0] == 404
    status, headers, _ = scrape(port, "/metrics", "POST")
    assert status == 405 and headers.get("Allow") == "GET, HEAD"


def test_metrics_off_opens_no_listener(start_sidecar, fake_target):
    fake_target.set_healthy()
    s = start_sidecar("--target", fake_target.url, "--interval", "200ms", "--window", "1s",
                      "--metrics-listen", "off")
    time.sleep(0.3 * TF)
    assert not s.events("LISTEN")


@pytest.mark.parametrize("value", ["nonsense", "1.2.3.4:99999", "localhost:9100"])
def test_bad_metrics_listen_exits_2(sidecar_bin, value):
    p = subprocess.run([sidecar_bin, "--metrics-listen", value], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 2
    assert p.stderr.startswith("sidecar: error: --metrics-listen/SIDECAR_METRICS_LISTEN")
    assert p.stderr.count("\n") == 1


def test_stalled_scrape_does_not_hold_up_shutdown(start_sidecar, fake_target):
    import signal
    import socket
    fake_target.set_healthy()
    s = start_sidecar("--target", fake_target.url, "--interval", "200ms", "--window", "1s")
    port = metrics_port(s)
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # no blank line: stalled
        time.sleep(0.1)
        t0 = time.monotonic()
        s.assert_clean_exit(signal.SIGTERM, timeout=3 * TF)
        took = time.monotonic() - t0
        assert took <= 1.0 * TF, "SIGTERM with a stalled scrape took %.2fs" % took
    finally:
        c.close()


def test_default_listen_is_port_9100(fake_target):
    """Without --metrics-listen or SIDECAR_METRICS_LISTEN the sidecar serves :9100 (all
    addresses), as the README says and Prometheus' convention for exporters has it."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.bind(("0.0.0.0", 9100))
    except OSError:
        pytest.skip("port 9100 is in use on this machine")
    finally:
        probe.close()
    fake_target.set_healthy()
    env = {k: v for k, v in os.environ.items() if k != "SIDECAR_METRICS_LISTEN"}
    s = Sidecar(["--target", fake_target.url, "--interval", "200ms", "--window", "1s"], env=env)
    try:
        s.wait_event("START")
        listen = s.wait_event("LISTEN", timeout=1.0 * TF)
        assert listen.rest == "addr=0.0.0.0:9100 path=/metrics", listen.raw
        wait_until(lambda: "sidecar_probes_total" in scrape_text(9100), 2.0 * TF)
    finally:
        s.assert_clean_exit(signal.SIGTERM)
