"""What every section shares: paths, logging, settings from the environment, CPU pinning,
formatting, and the facts about the machine, the build and the tools that results.md prints."""

import os
import platform
import re
import shutil
import statistics
import subprocess
import sys

PERF_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(PERF_DIR)
OUT_DIR = os.path.join(PERF_DIR, "out")
BODY = b'{"msg":"Hello, World!"}'


def log(msg):
    print("perf: " + msg, flush=True)


def env_int(name, default, minimum=1):
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        sys.exit("perf: %s must be an integer, got %r" % (name, text))
    if value < minimum:
        sys.exit("perf: %s must be at least %d, got %d" % (name, minimum, value))
    return value


def env_duration(name, default):
    """A wrk duration ("10s", "2m"; "500ms" is not wrk syntax) -> (text, seconds)."""
    text = os.environ.get(name, "").strip() or default
    m = re.fullmatch(r"(\d+)([smh]?)", text)
    if not m:
        sys.exit("perf: %s must look like 10s, 2m or 10 (seconds), got %r" % (name, text))
    seconds = int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    return (text if m.group(2) else text + "s"), seconds


def env_list(name, default):
    text = os.environ.get(name, "").strip()
    return [w for w in re.split(r"[,\s]+", text) if w] if text else list(default)


# On a 2-core machine an unpinned server and wrk keep landing on the same core, which shows up
# as tail latency of whichever server sleeps most often. Every server gets CPU 1 and wrk (and
# the other load clients) CPU 0; PERF_PIN=0 turns this off. The same for every peer, so ratios
# stay fair.
# PIN["cpus"] is the same choice as CPU sets, for processes perf/run does not start through
# taskset (the visits section's Redis and PostgreSQL, see visits_bench.py).
PIN = {"server": [], "client": [], "cpus": {"server": None, "client": None}}


def set_pinning(enabled):
    if enabled and (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        PIN["server"], PIN["client"] = ["taskset", "-c", "1"], ["taskset", "-c", "0"]
        PIN["cpus"] = {"server": {1}, "client": {0}}
    else:
        PIN["server"], PIN["client"] = [], []
        PIN["cpus"] = {"server": None, "client": None}
    return bool(PIN["server"])


# ---------------------------------------------------------------- formatting


def fmt_ms(us, digits=3):
    return "—" if us is None else "%.*f" % (digits, us / 1000.0)


def fmt_rps(rps):
    return "—" if rps is None else "{:,.0f}".format(rps)


def fmt_mib(kib):
    return "—" if kib is None else "%.1f" % (kib / 1024.0)


def fmt_pct(x):
    return "—" if x is None else "%.0f%%" % x


def fmt_ratio(x):
    return "—" if x is None else "%.2fx" % x


def fmt_num(x, fmt="%.1f"):
    return "—" if x is None else fmt % x


def ratio(a, b):
    return a / b if a is not None and b else None


def median_of(items, key=None):
    vals = [(i.get(key) if key else i) for i in items]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def met(ok):
    return "met" if ok else "NOT met"


def rel(path):
    return os.path.relpath(path, ROOT) if str(path).startswith(ROOT + os.sep) else str(path)


# perf/run's temp dir (configs, logs, pid files), shown as $TMP in the command lines printed.
TMP = {"dir": None}


def untmp(text):
    return text.replace(TMP["dir"], "$TMP") if TMP["dir"] else text


def shell_line(argv):
    def word(a):
        a = rel(a) if str(a).startswith(ROOT + os.sep) else str(a)
        if TMP["dir"]:
            a = a.replace(TMP["dir"], "$TMP")
        return "'%s'" % a if " " in a or ";" in a else a

    return " ".join(word(a) for a in argv)


def md_table(header, rows, align=None):
    """header: list of column titles; align: string of 'l'/'r' per column (default: first l)."""
    align = align or "l" + "r" * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


# ---------------------------------------------------------------- machine, build, tools


def machine_info():
    info = {"nproc": len(os.sched_getaffinity(0)), "kernel": platform.release(),
            "arch": platform.machine(), "cpu": "unknown", "os": "unknown"}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    info["os"] = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            info["mem_total_kib"] = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return info


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def git_info():
    def git(*args, strip=True):
        try:
            p = subprocess.run(["git", "-C", ROOT] + list(args), capture_output=True, text=True,
                               timeout=20)
            if p.returncode != 0:
                return None
            return p.stdout.strip() if strip else p.stdout
        except (OSError, subprocess.SubprocessError):
            return None

    # "XY path" lines; the top-level directory (or file) of each changed path
    status = git("status", "--porcelain", strip=False) or ""
    changed = sorted({line[3:].split(" -> ")[-1].strip('"').split("/")[0]
                      for line in status.splitlines() if len(line) > 3})
    return {"commit": git("rev-parse", "HEAD"), "subject": git("log", "-1", "--format=%s"),
            "branch": git("rev-parse", "--abbrev-ref", "HEAD"), "uncommitted": changed}


def first_line(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        text = (p.stdout + p.stderr).strip()
        return text.splitlines()[0].split(" Copyright")[0] if text else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def build_info(binary):
    build_type = compiler = "?"
    cache = os.path.join(os.path.dirname(os.path.dirname(binary)), "CMakeCache.txt")
    try:
        with open(cache) as f:
            for line in f:
                if line.startswith("CMAKE_BUILD_TYPE:"):
                    build_type = line.split("=", 1)[1].strip()
                elif line.startswith("CMAKE_CXX_COMPILER:"):
                    compiler = line.split("=", 1)[1].strip()
    except OSError:
        pass
    return "%s (CMAKE_BUILD_TYPE=%s, %s)" % (rel(binary), build_type, compiler)


def find_tool(names):
    return next((shutil.which(n) for n in names if shutil.which(n)), None)
