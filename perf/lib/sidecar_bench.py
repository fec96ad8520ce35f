"""Section 5, the sidecar: its RSS, CPU seconds per 1,000 polls and allocation calls per poll,
polling a local hello's /health at a short interval. Allocations are counted by
perf/malloc_count.c, compiled here and LD_PRELOADed into the (dynamically linked) build-dir
sidecar: every malloc/calloc/realloc/memalign call in the process, libcurl's included.
tests/unit/sidecar/poll_alloc_test.cpp already proves zero allocations outside libcurl."""

import http.client
import os
import re
import signal
import subprocess
import time

from . import peers
from .common import PERF_DIR, PIN, log, md_table, shell_line
from .procs import REGISTRY, Server, proc_cpu_seconds, proc_status_kib

COUNT_RE = re.compile(r"allocs=(\d+) frees=(\d+) malloc=(\d+) calloc=(\d+) realloc=(\d+) "
                      r"memalign=(\d+)")


def build_shim(cfg, tmp):
    so = os.path.join(tmp, "malloc_count.so")
    cmd = [cfg["cc"], "-O2", "-shared", "-fPIC", "-o", so,
           os.path.join(PERF_DIR, "malloc_count.c")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError("compiling perf/malloc_count.c failed: %s" % p.stderr.strip()[-400:])
    return so, cmd


def scrape(port):
    """sidecar /metrics -> (probes_total, {reason: failures})"""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    probes, failures = None, {}
    for line in text.splitlines():
        if line.startswith("sidecar_probes_total{"):
            probes = int(float(line.split()[-1]))
        elif line.startswith("sidecar_probe_failures_total{"):
            m = re.search(r'reason="(\w+)"\}\s+(\S+)', line)
            if m:
                failures[m.group(1)] = int(float(m.group(2)))
    if probes is None:
        raise ValueError("no sidecar_probes_total in /metrics")
    return probes, failures


def snapshot(sidecar, counts_path, metrics_port):
    """Counts, CPU and polls at one moment: SIGUSR2 makes the shim append its counts."""
    before = 0
    if os.path.exists(counts_path):
        with open(counts_path) as f:
            before = len(f.read().splitlines())
    os.kill(sidecar.pid, signal.SIGUSR2)
    deadline = time.monotonic() + 2
    lines = []
    while time.monotonic() < deadline:
        with open(counts_path) as f:
            lines = f.read().splitlines()
        if len(lines) > before:
            break
        time.sleep(0.005)
    if len(lines) <= before:
        raise RuntimeError("the malloc counting shim did not answer SIGUSR2")
    m = COUNT_RE.search(lines[-1])
    probes, failures = scrape(metrics_port)
    return {"allocs": int(m.group(1)), "frees": int(m.group(2)), "malloc": int(m.group(3)),
            "calloc": int(m.group(4)), "realloc": int(m.group(5)), "memalign": int(m.group(6)),
            "cpu_s": proc_cpu_seconds(sidecar.pid), "probes": probes, "failures": failures,
            "t": time.monotonic()}


def run(cfg, tmp):
    data = {"failures": [], "polls_wanted": cfg["sidecar_polls"],
            "interval_ms": cfg["sidecar_interval_ms"]}
    so, data["shim_command"] = build_shim(cfg, tmp)
    target = peers.start_hello(tmp, cfg["hello"], name="sidecar-target")
    counts = os.path.join(tmp, "malloc-counts.txt")
    interval = cfg["sidecar_interval_ms"]
    argv = [cfg["sidecar"], "--target", "http://127.0.0.1:%d/health" % target.port,
            "--interval", "%dms" % interval, "--timeout", "%dms" % max(1, interval * 4 // 5),
            "--window", "2s", "--metrics-listen", "127.0.0.1:0"]
    sidecar = REGISTRY.add(Server("sidecar", argv, os.path.join(tmp, "sidecar.log"),
                                  listen_re=peers.LISTEN_RE,
                                  env={"LD_PRELOAD": so, "PERF_MALLOC_COUNT_OUT": counts},
                                  pin=False))
    sidecar.prefix = list(PIN["client"])  # the client side of the machine, away from hello
    data["command"] = "PERF_MALLOC_COUNT_OUT=counts.txt LD_PRELOAD=malloc_count.so " + \
        shell_line(sidecar.command).replace(":%d/" % target.port, ":PORT/")
    data["target_command"] = shell_line(target.command)
    try:
        sidecar.start()
        metrics = sidecar.port
        warm = max(20, cfg["sidecar_polls"] // 10)
        deadline = time.monotonic() + 30
        while scrape(metrics)[0] < warm:  # connection set up, first report, pools warm
            if time.monotonic() > deadline or not sidecar.alive():
                raise RuntimeError("sidecar did not complete %d polls:\n%s"
                                   % (warm, sidecar.log_tail()))
            time.sleep(0.1)
        a = snapshot(sidecar, counts, metrics)
        time.sleep(cfg["sidecar_polls"] * interval / 1000.0)
        deadline = time.monotonic() + 30
        while scrape(metrics)[0] < a["probes"] + cfg["sidecar_polls"]:
            if time.monotonic() > deadline or not sidecar.alive():
                raise RuntimeError("sidecar polls stalled:\n%s" % sidecar.log_tail())
            time.sleep(0.02)
        b = snapshot(sidecar, counts, metrics)
        rss, hwm = proc_status_kib(sidecar.pid, "VmRSS"), proc_status_kib(sidecar.pid, "VmHWM")
    finally:
        sidecar.stop()
        target.stop()
    polls = b["probes"] - a["probes"]
    data.update({
        "polls": polls, "seconds": b["t"] - a["t"], "rss_kib": rss, "hwm_kib": hwm,
        "cpu_s_per_1000": (b["cpu_s"] - a["cpu_s"]) * 1000.0 / polls,
        "allocs_per_poll": (b["allocs"] - a["allocs"]) / polls,
        "frees_per_poll": (b["frees"] - a["frees"]) / polls,
        "by_call": {k: (b[k] - a[k]) / polls for k in ("malloc", "calloc", "realloc", "memalign")},
        "failures_in_span": {k: b["failures"].get(k, 0) - a["failures"].get(k, 0)
                             for k in b["failures"] if b["failures"].get(k, 0) -
                             a["failures"].get(k, 0)},
        "startup_allocs": a["allocs"], "startup_polls": a["probes"],
        "exit_code": sidecar.exit_code,
    })
    if sidecar.exit_code != 0:
        data["failures"].append("sidecar exited with status %s on SIGTERM" % sidecar.exit_code)
    log("sidecar: %d polls in %.1f s: RSS %d KiB, %.3f CPU s per 1,000 polls, %.1f allocation "
        "calls per poll (%.1f frees)" % (polls, data["seconds"], rss, data["cpu_s_per_1000"],
                                         data["allocs_per_poll"], data["frees_per_poll"]))
    return data


def verdict(data):
    if "polls" not in data:
        return "- **sidecar**: no data"
    return ("- **sidecar**: RSS %.1f MiB; %.3f CPU seconds per 1,000 polls; %.1f allocation "
            "calls per poll, all of them libcurl's and libc's (no target: the project's "
            "zero-allocation promise excludes libcurl and is proven by poll_alloc_test)"
            % (data["rss_kib"] / 1024.0, data["cpu_s_per_1000"], data["allocs_per_poll"]))


def markdown(cfg, data):
    L = ["## 5. sidecar", ""]
    L += ["The build-dir sidecar (dynamically linked, so LD_PRELOAD works) polls a local hello "
          "(`--access-log` off, default health threshold, so about one poll in ten is an "
          "`unhealthy` alert as in production) every %d ms, pinned to CPU 0 (hello on CPU 1). "
          "After %d warm-up polls, the span measured is %d polls: the shim's counts "
          "(perf/malloc_count.c, read through SIGUSR2) and utime + stime from /proc/PID/stat "
          "at both ends, polls from the sidecar's own `sidecar_probes_total` (two scrapes of "
          "its /metrics, included in the counts). RSS is VmRSS at the end (VmHWM: peak)."
          % (data["interval_ms"], max(20, data["polls_wanted"] // 10), data["polls_wanted"]), ""]
    L += ["```", shell_line(data["shim_command"]), data.get("target_command", ""),
          data["command"], "```", "", verdict(data), ""]
    if "polls" in data:
        L += md_table(["polls", "seconds", "RSS MiB", "peak RSS MiB", "CPU s per 1,000 polls",
                       "allocation calls per poll", "frees per poll", "failed polls in the span"],
                      [[data["polls"], "%.1f" % data["seconds"],
                        "%.1f" % (data["rss_kib"] / 1024.0),
                        "%.1f" % (data["hwm_kib"] / 1024.0), "%.3f" % data["cpu_s_per_1000"],
                        "%.1f (malloc %.1f, calloc %.1f, realloc %.1f, memalign %.1f)" % (
                            data["allocs_per_poll"], data["by_call"]["malloc"],
                            data["by_call"]["calloc"], data["by_call"]["realloc"],
                            data["by_call"]["memalign"]),
                        "%.1f" % data["frees_per_poll"],
                        ", ".join("%s %d" % kv for kv in data["failures_in_span"].items())
                        or "0"]], "rrrrrlrl")
        L += ["", "Start-up (before the span): %d allocation calls over the first %d polls."
              % (data["startup_allocs"], data["startup_polls"]), ""]
    return L


def headline(data):
    if "polls" not in data:
        return []
    return [("sidecar allocation calls per poll", data["allocs_per_poll"]),
            ("sidecar CPU s per 1000 polls", data["cpu_s_per_1000"]),
            ("sidecar RSS MiB", data["rss_kib"] / 1024.0)]
