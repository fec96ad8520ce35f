#!/usr/bin/env python3
"""The engine of perf/run (see perf/README.md); perf/run installs and builds, then runs this.

One run measures, each section against its peers on this machine (perf/lib/<section>.py):
  1 direct     hello vs single-worker nginx, Node and the seed's Flask app (flask run, gunicorn):
               wrk keep-alive and pipelined, interleaved rounds, medians and ratios
  2 compose    wrk -> nginx with the project's proxy config -> hello, vs the same proxy in front
               of an nginx upstream (target: >= 0.9x), on loopback
  2b stack     the same through the compose stack itself: its published port and containers,
               hello's vs an nginx container as the upstream (target: >= 0.9x; Docker only)
  3 scaling    RSS per idle keep-alive connection at 1k and 10k; req/s at -c 10, 100, 1000
  4 startstop  exec -> first answer; SIGTERM -> exit with 100 idle and 100 busy connections
  5 sidecar    RSS, CPU seconds per 1,000 polls, allocation calls per poll (LD_PRELOAD shim)
  6 images     docker image sizes of the stack and of a Flask baseline image (Docker only)
  7 visits     the page-hit counter vs hello's GET / (target: >= 0.7x) and vs the seed's Flask
               app (INCR + a PostgreSQL write per hit), real Redis and PostgreSQL; Redis
               commands per visit, PostgreSQL statements per second
and writes perf/results.md, perf/latency.png and perf/out/results.json (short mode: only
perf/out/results-short.md and perf/out/short.json). Everything it starts is stopped at the end,
also on an error, Ctrl-C, SIGTERM or SIGHUP; servers listen on 127.0.0.1 only.

Environment (perf/run sets the first ones; perf/README.md lists them all):
  HELLO_BIN, SIDECAR_BIN, VISITS_BIN   the binaries to measure
  PERF_SHORT=1             CI smoke mode: tiny runs, output under perf/out/ only
  PERF_SECTIONS            which sections (default: all, in the order above)
  PERF_INVOCATION          the command line to print as the one that was run
"""

import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib import (compose_path, compose_stack, direct, images, report, scaling,  # noqa: E402
                 sidecar_bench, startstop, visits_bench)
from lib.common import (OUT_DIR, PERF_DIR, ROOT, TMP, build_info, env_duration, env_int,  # noqa: E402
                        env_list, find_tool, first_line, git_info, loadavg, log, machine_info,
                        rel, set_pinning)
from lib.procs import REGISTRY  # noqa: E402

SECTIONS = [("direct", direct), ("compose", compose_path), ("stack", compose_stack),
            ("scaling", scaling),
            ("startstop", startstop), ("sidecar", sidecar_bench), ("images", images),
            ("visits", visits_bench)]


def config():
    short = os.environ.get("PERF_SHORT", "0") not in ("", "0")
    cfg = {"short": short, "invocation": os.environ.get("PERF_INVOCATION", "perf/bench.py")}
    settings = []

    def setting(key, name, value):
        cfg[key] = value
        settings.append((name, value if not isinstance(value, list)
                         else ",".join(str(v) for v in value)))

    setting("rounds", "PERF_ROUNDS", env_int("PERF_ROUNDS", 1 if short else 3))
    cfg["duration"], cfg["duration_s"] = env_duration("PERF_DURATION", "2s" if short else "10s")
    settings.append(("PERF_DURATION", cfg["duration"]))
    warm = os.environ.get("PERF_WARMUP", "").strip() or ("0" if short else "2s")
    if warm in ("0", "0s"):
        cfg["warmup"], cfg["warmup_s"] = None, 0
    else:
        os.environ["PERF_WARMUP"] = warm
        cfg["warmup"], cfg["warmup_s"] = env_duration("PERF_WARMUP", "2s")
    settings.append(("PERF_WARMUP", cfg["warmup"] or "0"))
    setting("connections", "PERF_CONNECTIONS", env_int("PERF_CONNECTIONS", 50))
    setting("depth", "PERF_PIPELINE_DEPTH", env_int("PERF_PIPELINE_DEPTH", 16))
    setting("pin", "PERF_PIN", int(os.environ.get("PERF_PIN", "1") not in ("", "0")))
    setting("idle_levels", "PERF_IDLE_CONNS",
            sorted({int(x) for x in env_list("PERF_IDLE_CONNS",
                                             [100, 1000] if short else [1000, 10000])}))
    setting("concurrency", "PERF_CONCURRENCY",
            sorted({int(x) for x in env_list("PERF_CONCURRENCY", [10, 100, 1000])}))
    setting("scaling_rounds", "PERF_SCALING_ROUNDS",
            env_int("PERF_SCALING_ROUNDS", 1 if short else 2))
    cfg["scaling_duration"], cfg["scaling_duration_s"] = env_duration(
        "PERF_SCALING_DURATION", "1s" if short else "5s")
    settings.append(("PERF_SCALING_DURATION", cfg["scaling_duration"]))
    setting("start_reps", "PERF_START_REPS", env_int("PERF_START_REPS", 2 if short else 10))
    setting("stop_reps", "PERF_STOP_REPS", env_int("PERF_STOP_REPS", 1 if short else 5))
    setting("sidecar_polls", "PERF_SIDECAR_POLLS",
            env_int("PERF_SIDECAR_POLLS", 100 if short else 1000, minimum=10))
    setting("sidecar_interval_ms", "PERF_SIDECAR_INTERVAL_MS",
            env_int("PERF_SIDECAR_INTERVAL_MS", 10, minimum=2))
    setting("image_build_timeout", "PERF_IMAGE_BUILD_TIMEOUT",
            env_int("PERF_IMAGE_BUILD_TIMEOUT", 1200))
    stores_side = os.environ.get("PERF_VISITS_STORES", "").strip() or "server"
    if stores_side not in ("server", "client"):
        sys.exit("perf: PERF_VISITS_STORES must be server or client, got %r" % stores_side)
    setting("visits_stores", "PERF_VISITS_STORES", stores_side)
    pinned = set_pinning(cfg["pin"])
    # gunicorn's docs: (2 x $num_cores) + 1 workers; the servers get one core when pinned.
    cores = 1 if pinned else (os.cpu_count() or 1)
    setting("gunicorn_workers", "PERF_GUNICORN_WORKERS",
            env_int("PERF_GUNICORN_WORKERS", 2 * cores + 1))
    names = [n for n, _ in SECTIONS]
    cfg["sections"] = env_list("PERF_SECTIONS", names)
    bad = [s for s in cfg["sections"] if s not in names]
    if bad:
        sys.exit("perf: PERF_SECTIONS: unknown %s (known: %s)" % (", ".join(bad), " ".join(names)))
    settings.append(("PERF_SECTIONS", ",".join(cfg["sections"])))
    cfg["settings"] = settings

    for tool, cands in (("wrk", ["wrk"]), ("nginx", ["nginx", "/usr/sbin/nginx"]),
                        ("node", ["node", "nodejs"])):
        cfg[tool] = find_tool(cands)
        if not cfg[tool]:
            sys.exit("perf: %s not found (perf/run installs it)" % tool)
    cfg["hello"] = os.environ.get("HELLO_BIN") or os.path.join(ROOT, "build", "hello", "hello")
    if not os.access(cfg["hello"], os.X_OK):
        sys.exit("perf: hello binary %s not found (perf/run builds it)" % cfg["hello"])
    cfg["sidecar"] = os.environ.get("SIDECAR_BIN") or os.path.join(ROOT, "build", "sidecar",
                                                                   "sidecar")
    cfg["visits"] = os.environ.get("VISITS_BIN") or os.path.join(ROOT, "build", "visits",
                                                                 "visits")
    cfg["cc"] = find_tool(["cc", "gcc", "clang"])
    cfg["docker"] = find_tool(["docker"])
    # The Flask baselines need Debian's python3-flask (for this interpreter) and gunicorn.
    py = sys.executable
    ok = subprocess.run([py, "-c", "import flask"], capture_output=True).returncode == 0
    cfg["flask_python"] = py if ok else None
    cfg["gunicorn"] = find_tool(["gunicorn", "gunicorn3"]) if ok else None
    # The seed's counter (visits section) also needs Debian's python3-redis and python3-psycopg2.
    if "visits" in cfg["sections"]:
        missing = [m for m in ("flask", "redis", "psycopg2")
                   if subprocess.run([py, "-c", "import " + m], capture_output=True).returncode]
        cfg["seed_python_ok"] = not missing
        cfg["seed_missing"] = "%s cannot import %s (perf/run installs them)" % (
            py, ", ".join(missing)) if missing else None
        cfg["redis_version"], cfg["pg_version"] = visits_bench.versions()
    cfg["logs"] = "logs-short" if short else "logs"
    return cfg


def prerequisites(cfg, name):
    """None, or why section `name` cannot run on this machine."""
    if name == "sidecar":
        if not os.access(cfg["sidecar"], os.X_OK):
            return "sidecar binary %s not found (perf/run builds it)" % cfg["sidecar"]
        if not cfg["cc"]:
            return "no C compiler for perf/malloc_count.c"
    if name == "visits":
        return visits_bench.prerequisites(cfg)
    return None


def versions(cfg):
    def flask_version():
        if not cfg["flask_python"]:
            return "not installed"
        p = subprocess.run([cfg["flask_python"], "-c",
                            "import importlib.metadata as m; print(m.version('flask'), "
                            "m.version('werkzeug'))"], capture_output=True, text=True)
        return "%s (Werkzeug %s)" % tuple(p.stdout.split()[:2]) if p.returncode == 0 else "?"

    return {"wrk": first_line([cfg["wrk"], "-v"]), "nginx": first_line([cfg["nginx"], "-v"]),
            "node": first_line([cfg["node"], "-v"]), "hello": build_info(cfg["hello"]),
            "sidecar": build_info(cfg["sidecar"]) if os.path.exists(cfg["sidecar"]) else "missing",
            "flask": flask_version(),
            "gunicorn": ("gunicorn " + first_line([cfg["gunicorn"], "--version"]).split()[-1]
                         .strip("()")
                         if cfg["gunicorn"] else "gunicorn not installed")}


def main():
    cfg = config()
    os.makedirs(os.path.join(OUT_DIR, cfg["logs"]), exist_ok=True)
    for old in os.listdir(os.path.join(OUT_DIR, cfg["logs"])):
        if old.endswith(".txt"):
            os.unlink(os.path.join(OUT_DIR, cfg["logs"], old))
    if not cfg["flask_python"]:
        log("python3-flask is missing for %s: no Flask baselines (perf/run installs it)"
            % sys.executable)
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    data = {"started": started.strftime("%Y-%m-%d %H:%M:%S"), "config": cfg,
            "machine": machine_info(), "git": git_info(), "versions": versions(cfg),
            "load_before": loadavg(), "sections": {}, "failures": []}
    # Configs, pid files and the servers' logs (hello's access log in the compose path, nginx's
    # access logs) go to tmpfs when there is one: a log write that waits for a disk other jobs
    # are busy with stalls whichever server made it, for hundreds of ms (seen here).
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    tmp = tempfile.mkdtemp(prefix="hello-perf-", dir=shm)
    TMP["dir"] = tmp
    try:
        for name, mod in SECTIONS:
            if name not in cfg["sections"]:
                continue
            why = prerequisites(cfg, name)
            if why:
                log("section %s: not measured: %s" % (name, why))
                data["sections"][name] = {"skipped": why, "failures": []}
                continue
            log("---- section %s (%s)" % (name, time.strftime("%H:%M:%S")))
            s0 = time.monotonic()
            try:
                sec = mod.run(cfg, tmp)
            except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as e:
                sec = {"error": "%s: %s" % (type(e).__name__, e), "failures": []}
                sec["failures"].append("section %s failed: %s" % (name, sec["error"]))
            finally:
                REGISTRY.stop_all()  # whatever the section left running
            sec["elapsed_s"] = time.monotonic() - s0
            data["sections"][name] = sec
            data["failures"] += sec.get("failures", [])
            failed = "; FAILED: " + "; ".join(sec["failures"]) if sec.get("failures") else ""
            log("section %s took %.0f s%s" % (name, sec["elapsed_s"], failed))
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        REGISTRY.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _exit_on_signal)

    data["load_after"] = loadavg()
    data["elapsed_s"] = int(time.monotonic() - t0)
    short = cfg["short"]
    data["json"] = os.path.join(OUT_DIR, "short.json" if short else "results.json")
    md = (os.path.join(OUT_DIR, "results-short.md") if short
          else os.path.join(PERF_DIR, "results.md"))
    # Short mode draws its plot too (under perf/out/), so CI exercises the plotting code.
    plot = os.path.join(OUT_DIR, "latency-short.png") if short else os.path.join(PERF_DIR,
                                                                                 "latency.png")
    try:
        if report.write_plot(plot, data):
            data["plot"] = rel(plot)
    except ImportError:
        log("matplotlib is missing: no %s (perf/run installs python3-matplotlib)" % rel(plot))
    with open(data["json"], "w") as f:
        json.dump(data, f, indent=1, sort_keys=True, default=str)
    partial = not short and [n for n, _ in SECTIONS if n not in cfg["sections"]]
    if partial and os.path.exists(md):
        md = splice_markdown(md, data)
    else:
        write_markdown(md, data)
    log("wrote %s, %s%s" % (rel(md), rel(data["json"]),
                            ", " + data["plot"] if data.get("plot") else ""))
    log("headline figures:")
    for name, mod in SECTIONS:
        sec = data["sections"].get(name)
        if sec and not sec.get("error") and not sec.get("skipped") and hasattr(mod, "headline"):
            for label, value in mod.headline(sec):
                log("  %-48s %s" % (label, "—" if value is None else "%.2f" % value))
    log("took %d s" % data["elapsed_s"])
    if data["failures"]:
        log("FAILED:\n  " + "\n  ".join(data["failures"]))
    if short:
        log("short mode checks only that the suite works and every server answered correctly; "
            "the numbers are not a measurement")
    return 1 if data["failures"] else 0


def section_markdown(data, name, mod):
    """One section's part of results.md, between markers a partial run finds it by."""
    sec = data["sections"][name]
    L = [report.section_begin(name), ""]
    if sec.get("error"):
        L += ["## %s" % name, "", "FAILED: %s" % sec["error"], ""]
    elif sec.get("skipped") and name not in ("images", "stack"):
        L += ["## %s" % name, "", "Not measured: %s." % sec["skipped"], ""]
    else:
        L += mod.markdown(data["config"], sec)
    if "elapsed_s" in sec:
        L += ["(section took %.0f s)" % sec["elapsed_s"], ""]
    return L + [report.section_end(name), ""]


def write_markdown(path, data):
    L = report.head(data)
    L += report.targets(data, SECTIONS)
    for name, mod in SECTIONS:
        if name in data["sections"]:
            L += section_markdown(data, name, mod)
    L += report.tail(data)
    with open(path, "w") as f:
        f.write("\n".join(L))


def splice_markdown(path, data):
    """A full-mode run of some sections only (PERF_SECTIONS) replaces their parts of
    results.md, and their lines in the targets list, and keeps the rest of the last full run;
    each part it writes says when and at which commit it was measured, as the file's head
    describes the full run. A section whose old part has no markers (written before they
    existed) cannot be cut out safely: then nothing is spliced and the run's own report goes
    to perf/out/results-partial.md. -> the path written."""
    with open(path) as f:
        text = f.read()
    g = data["git"]
    note = ("Measured on its own by `%s` on %s UTC (%d s, load average before/after %s / %s), "
            "git %s (%s)%s, settings `%s`; the head of this file describes the last full run."
            % (data["config"]["invocation"], data["started"], data["elapsed_s"],
               data["load_before"], data["load_after"], (g["commit"] or "unknown")[:12],
               g["branch"], "; uncommitted changes in: " + ", ".join(g["uncommitted"])
               if g["uncommitted"] else "",
               " ".join("%s=%s" % tuple(kv) for kv in data["config"]["settings"])))
    for name, mod in SECTIONS:
        if name not in data["sections"]:
            continue
        part = section_markdown(data, name, mod)
        part[4:4] = [note, ""]  # [marker, "", "## title", "", note, "", the section ...]
        targets = report.section_targets(data, name, mod)
        text = report.splice(text, name, "\n".join(part), "\n".join(targets))
        if text is None:
            out = os.path.join(OUT_DIR, "results-partial.md")
            write_markdown(out, data)
            log("%s has an unmarked part for section %s: not changed; this run's report is %s"
                % (rel(path), name, rel(out)))
            return out
    with open(path, "w") as f:
        f.write(text)
    return path


def _exit_on_signal(signum, _frame):
    log("got %s; stopping" % signal.Signals(signum).name)
    raise SystemExit(128 + signum)


def _hang_up_with_parent():
    """perf/run execs this, so the parent is whoever ran perf/run; when a wrapper runs perf/run
    as a child instead and is killed, the signal reaches only the wrapper. The parent's death is
    a hangup: SIGHUP then stops the servers as Ctrl-C would, unless SIGHUP was ignored when
    perf/run started (nohup), which is respected."""
    import ctypes

    try:
        ctypes.CDLL(None).prctl(1, int(signal.SIGHUP), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # best effort
        pass


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_signal)
    if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _exit_on_signal)
    _hang_up_with_parent()
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        REGISTRY.stop_all()
        log("interrupted; servers stopped")
        sys.exit(130)
