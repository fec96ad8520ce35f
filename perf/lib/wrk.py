"""wrk runs: the command line, one bounded run against one server, and parsing the PERF lines
perf/report.lua prints (perf/README.md, "Latency: what the numbers are")."""

import os
import re
import resource
import subprocess
import time

from .common import OUT_DIR, PERF_DIR, PIN
from .procs import die_with_parent

MODES = ("keepalive", "pipelined")
MODE_TITLE = {"keepalive": "keep-alive", "pipelined": "pipelined"}


def wrk_command(wrk, mode, port, duration, connections, depth=16, path="/"):
    script = "report.lua" if mode == "keepalive" else "pipeline.lua"
    cmd = PIN["client"] + [wrk, "-t1", "-c%d" % connections, "-d" + duration, "--latency",
                           "-s", os.path.join(PERF_DIR, script),
                           "http://127.0.0.1:%d%s" % (port, path)]
    cmd.append("--")
    if mode == "pipelined":
        cmd.append("depth=%d" % depth)
    cmd.append("connections=%d" % connections)
    return cmd


def parse_wrk(stdout, mode):
    """The PERF lines of report.lua -> dict. The headline latencies (p50_us, p99_us, p999_us,
    curve) are wrk's own (coordinated-omission corrected) distribution in keep-alive mode and
    the measured per-batch samples in pipelined mode, where wrk's correction is wrong."""
    r = {"pct": {}, "upct": {}, "notes": []}
    for line in stdout.splitlines():
        f = line.split()
        if len(f) < 3 or f[0] != "PERF":
            continue
        if f[1] in ("pct", "upct") and len(f) == 4:
            r[f[1]][f[2]] = int(float(f[3]))
        elif f[1] == "note":
            r["notes"].append(" ".join(f[2:]))
        else:
            try:
                r[f[1]] = float(f[2]) if "." in f[2] else int(f[2])
            except ValueError:
                r[f[1]] = " ".join(f[2:])
    m = re.search(r"Requests/sec:\s+([\d.]+)", stdout)
    if m:
        r["wrk_text_rps"] = float(m.group(1))
    if "requests" not in r or "duration_us" not in r:
        raise ValueError("no PERF lines in wrk's output")
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
    r["wrk_p99_us"] = r["pct"].get("99")
    r["measured_p99_us"] = r["upct"].get("99")
    if mode == "keepalive":
        r["curve"], r["latency_kind"] = r["pct"], "wrk"
    else:
        r["curve"], r["latency_kind"] = r["upct"], "measured"
    if not r["curve"].get("99"):  # no samples at all (e.g. every connection closed mid-batch)
        r["curve"] = {}
    r["p50_us"] = r["curve"].get("50")
    r["p99_us"] = r["curve"].get("99")
    r["p999_us"] = r["curve"].get("99.9")
    r["socket_errors"] = sum(r.get("errors_" + k, 0)
                             for k in ("connect", "read", "write", "timeout"))
    r["non2xx"] = r.get("errors_status", 0)
    return r


def run_wrk(cfg, server, mode, duration, seconds, tag, connections=None, logs=None,
            tolerant=False, section="direct", path="/"):
    """One wrk run against server (GET path) -> a run dict. 'problems' fail the suite;
    'warnings' are only shown. tolerant=True (the Flask baselines) turns socket errors and
    answers >= 400 into warnings: for a baseline they are part of the result, not a broken
    suite."""
    connections = connections or cfg["connections"]
    cmd = wrk_command(cfg["wrk"], mode, server.port, duration, connections, cfg["depth"], path)
    run = {"server": server.name, "mode": mode, "tag": tag, "command": cmd, "problems": [],
           "warnings": [], "connections": connections}
    if not server.alive():
        run["problems"].append("server not running before the run")
        return run
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                           cwd=PERF_DIR, preexec_fn=die_with_parent)
    except subprocess.TimeoutExpired:
        run["problems"].append("wrk did not finish within %ds" % (seconds + 60))
        return run
    wall = time.monotonic() - t0
    cpu = server.cpu_seconds() - cpu0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk is the only child reaped meanwhile
    wrk_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    logdir = os.path.join(OUT_DIR, logs or cfg["logs"])
    os.makedirs(logdir, exist_ok=True)
    logname = "%s-%s-%s-%s-c%d.txt" % (section, tag, mode, server.name, connections)
    with open(os.path.join(logdir, logname), "w") as f:
        f.write("$ %s\n%s%s" % (" ".join(cmd), p.stdout, p.stderr))
    run["log"] = os.path.join("perf", "out", logs or cfg["logs"], logname)
    if p.returncode != 0:
        run["problems"].append("wrk exited with status %d: %s"
                               % (p.returncode, (p.stderr or p.stdout).strip()[-300:]))
        return run
    try:
        run.update(parse_wrk(p.stdout, mode))
    except ValueError as e:
        run["problems"].append(str(e))
        return run
    run["server_cpu_pct"] = 100.0 * cpu / wall if wall > 0 else None
    run["wrk_cpu_pct"] = 100.0 * wrk_cpu / wall if wall > 0 else None
    mem = server.memory()
    run["rss_kib"], run["hwm_kib"], run["rss_procs"] = mem["rss_kib"], mem["hwm_kib"], mem["procs"]
    bad = run["warnings"] if tolerant else run["problems"]
    if not server.alive():
        run["problems"].append("server exited during the run (status %s)" % server.proc.returncode)
    if run["requests"] == 0:
        run["problems"].append("no request completed")
    if run["non2xx"]:
        bad.append("%d answers with status >= 400" % run["non2xx"])
    if run.get("errors_connect", 0) + run.get("errors_read", 0) + run.get("errors_write", 0):
        bad.append("socket errors: connect %d, read %d, write %d"
                   % (run.get("errors_connect", 0), run.get("errors_read", 0),
                      run.get("errors_write", 0)))
    run["warnings"] += list(run.pop("notes", []))
    if mode == "pipelined" and run.get("p99_us") is None:
        run["warnings"].append("no measured latency samples: pipelined percentiles unavailable")
    if run.get("errors_timeout", 0):
        run["warnings"].append("%d wrk timeouts (no answer within 2 s)" % run["errors_timeout"])
    return run


def raise_wrk_nofile(connections):
    """wrk needs a descriptor per connection; children inherit this process's soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + 64
    if want > soft and (hard == resource.RLIM_INFINITY or want <= hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
