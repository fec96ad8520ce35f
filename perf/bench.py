#!/usr/bin/env python3
"""The engine of perf/run (see perf/README.md); perf/run installs and builds, then runs this.

Starts hello, a single-worker nginx and Node's http server on free 127.0.0.1 ports, checks that
each answers GET / correctly, loads them with wrk in interleaved rounds (keep-alive, then
pipelined), and writes perf/results.md, perf/latency.png and perf/out/*.json. Every server is
stopped at the end, also on an error, Ctrl-C, SIGTERM or SIGHUP.

Environment (perf/run sets the first two):
  HELLO_BIN            the hello binary to measure
  PERF_SHORT=1         CI smoke mode: 1 round of 2 s, no warm-up, no plot, results only under
                       perf/out/; exit status non-zero if any server answered wrongly
  PERF_ROUNDS          interleaved rounds (default 2; short 1)
  PERF_DURATION        length of one wrk run, wrk syntax (default 10s; short 2s)
  PERF_WARMUP          unrecorded warm-up run per server and mode before round 1 (default 2s;
                       short 0 = none)
  PERF_CONNECTIONS     wrk -c (default 50)
  PERF_PIPELINE_DEPTH  requests per pipelined batch (default 16)
  PERF_PIN             1 (default): servers on CPU 1, wrk on CPU 0 (taskset); 0: unpinned
  PERF_INVOCATION      the command line to print as the one that was run
"""

import ctypes
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PERF_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(PERF_DIR)
OUT_DIR = os.path.join(PERF_DIR, "out")
BODY = b'{"msg":"Hello, World!"}'
SERVERS = ("hello", "nginx", "node")
MODES = ("keepalive", "pipelined")
MODE_TITLE = {"keepalive": "keep-alive", "pipelined": "pipelined"}
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


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
    """A wrk duration ("10s", "2m", "500ms" is not wrk syntax) -> (text, seconds)."""
    text = os.environ.get(name, "").strip() or default
    m = re.fullmatch(r"(\d+)([smh]?)", text)
    if not m:
        sys.exit("perf: %s must look like 10s, 2m or 10 (seconds), got %r" % (name, text))
    seconds = int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    return (text if m.group(2) else text + "s"), seconds


# ---------------------------------------------------------------- processes


def _die_with_parent():
    """preexec_fn: the child gets SIGTERM if this process dies (even by SIGKILL)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # best effort: the finally-cleanup is the main guarantee
        pass


def proc_children(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid:
            kids.append(int(entry))
    return kids


def proc_tree(pid):
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(proc_children(p))
    return tree


def proc_status_kib(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def proc_cpu_seconds(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def can_connect(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


class Server:
    """One server under test, started in its own session (its pid is its process group)."""

    def __init__(self, name, argv, logpath, port=None, listen_re=None, cwd=None):
        self.name, self.argv, self.logpath = name, argv, logpath
        self.port, self.cwd = port, cwd
        self.listen_re = re.compile(listen_re) if listen_re else None
        self.proc = None
        self.exit_code = None

    def start(self):
        logf = open(self.logpath, "wb")
        try:
            self.proc = subprocess.Popen(
                PIN_SERVER + self.argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                cwd=self.cwd, start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            logf.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with status %s while starting:\n%s"
                                   % (self.name, self.proc.returncode, self.log_tail()))
            if self.port is None and self.listen_re:
                m = self.listen_re.search(self.read_log())
                if m:
                    self.port = int(m.group(1))
            if self.port is not None and can_connect(self.port):
                return
            time.sleep(0.05)
        raise RuntimeError("%s did not start listening within %gs:\n%s"
                           % (self.name, START_TIMEOUT, self.log_tail()))

    def read_log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines=15):
        return "\n".join("    " + line for line in self.read_log().splitlines()[-lines:])

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def pids(self):
        return proc_tree(self.pid) if self.alive() else []

    def memory(self):
        """{'rss_kib': total VmRSS of the process tree, 'hwm_kib': sum of VmHWM, 'procs': [...]}"""
        procs = []
        for p in self.pids():
            rss, hwm = proc_status_kib(p, "VmRSS"), proc_status_kib(p, "VmHWM")
            if rss is not None:
                procs.append({"pid": p, "rss_kib": rss, "hwm_kib": hwm})
        return {"rss_kib": sum(p["rss_kib"] for p in procs),
                "hwm_kib": sum(p["hwm_kib"] or 0 for p in procs), "procs": procs}

    def cpu_seconds(self):
        return sum(proc_cpu_seconds(p) for p in self.pids())

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            tree = self.pids()
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log("%s (pid %d) ignored SIGTERM for %gs; killing its process group"
                    % (self.name, self.proc.pid, STOP_TIMEOUT))
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
            for p in tree[1:]:  # e.g. an nginx worker left behind by its master
                try:
                    os.kill(p, 0)
                    os.kill(p, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        self.exit_code = self.proc.returncode


def nginx_conf(tmp, port, nginx_bin):
    """A single-worker nginx answering GET / like hello; every path under tmp."""
    try:
        built = subprocess.run([nginx_bin, "-V"], capture_output=True, text=True, timeout=10).stderr
    except (OSError, subprocess.SubprocessError):
        built = ""
    temp_paths = ["    client_body_temp_path %s/client_body;" % tmp]
    for module in ("proxy", "fastcgi", "uwsgi", "scgi"):
        if "--without-http_%s_module" % module not in built:
            temp_paths.append("    %s_temp_path %s/%s;" % (module, tmp, module))
    return """worker_processes 1;
daemon off;
pid %(tmp)s/nginx.pid;
error_log %(tmp)s/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
%(temp_paths)s
    server_tokens off;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:%(port)d;
        location / {
            default_type application/json;
            return 200 '{"msg":"Hello, World!"}';
        }
    }
}
""" % {"tmp": tmp, "port": port, "temp_paths": "\n".join(temp_paths)}


def start_servers(tmp, hello_bin, nginx_bin, node_bin):
    servers = {}
    s = Server("hello", [hello_bin, "--listen", "127.0.0.1:0", "--access-log", "off"],
               os.path.join(tmp, "hello.log"), listen_re=r"LISTEN addr=127\.0\.0\.1:(\d+)")
    servers["hello"] = s
    s.start()

    ndir = os.path.join(tmp, "nginx")
    os.makedirs(ndir)
    conf = os.path.join(ndir, "nginx.conf")
    last_error = None
    for _ in range(5):  # the free port may be taken between probing and nginx binding it
        port = free_port()
        with open(conf, "w") as f:
            f.write(nginx_conf(ndir, port, nginx_bin))
        s = Server("nginx", [nginx_bin, "-p", ndir + "/", "-c", conf, "-e",
                             os.path.join(ndir, "error.log")],
                   os.path.join(tmp, "nginx.log"), port=port)
        servers["nginx"] = s
        try:
            s.start()
            break
        except RuntimeError as e:
            last_error = e
            s.stop()
    else:
        raise last_error
    servers["nginx"].conf_text = open(conf).read()

    s = Server("node", [node_bin, os.path.join(PERF_DIR, "baselines", "node_hello.js"),
                        "127.0.0.1:0"],
               os.path.join(tmp, "node.log"), listen_re=r"LISTEN addr=127\.0\.0\.1:(\d+)")
    servers["node"] = s
    s.start()
    return servers


# ---------------------------------------------------------------- correctness


def read_response(sock_file):
    """One HTTP/1.1 response from a buffered socket file -> (status, headers, body)."""
    status_line = sock_file.readline(65536)
    if not status_line:
        raise ValueError("connection closed before a response")
    parts = status_line.decode("latin-1").split(" ", 2)
    status = int(parts[1])
    headers = {}
    while True:
        line = sock_file.readline(65536)
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    body = sock_file.read(length)
    return status, headers, body


def check_answer(status, headers, body):
    problems = []
    if status != 200:
        problems.append("status %d, want 200" % status)
    if body != BODY:
        problems.append("body %r, want %r" % (body[:80], BODY))
    ctype = headers.get("content-type", "")
    if ctype.split(";")[0].strip().lower() != "application/json":
        problems.append("Content-Type %r, want application/json" % ctype)
    return problems


def verify(server, depth):
    """GET / twice on one connection, then `depth` pipelined GETs; [] or a list of problems."""
    problems = []
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        for i in range(2):
            conn.request("GET", "/")
            r = conn.getresponse()
            body = r.read()
            headers = {k.lower(): v for k, v in r.getheaders()}
            bad = check_answer(r.status, headers, body)
            if bad:
                problems.append("request %d: %s" % (i + 1, "; ".join(bad)))
                break
            if i == 0 and r.will_close:
                problems.append("the connection is not kept alive")
                break
        conn.close()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * depth)
            f = s.makefile("rb")
            for i in range(depth):
                st, hd, bd = read_response(f)
                bad = check_answer(st, hd, bd)
                if bad:  # the first wrong answer says enough
                    problems.append("pipelined answer %d/%d: %s" % (i + 1, depth, "; ".join(bad)))
                    break
    except (OSError, ValueError, http.client.HTTPException) as e:
        problems.append("%s: %s" % (type(e).__name__, e))
    return problems


# ---------------------------------------------------------------- wrk


# On a 2-core machine an unpinned server and wrk keep landing on the same core, which shows up
# as tail latency of whichever server sleeps most often. Every server gets CPU 1 and wrk CPU 0
# (PERF_PIN=0 turns this off); the same for all three peers, so ratios stay fair.
PIN_SERVER = []
PIN_WRK = []


def set_pinning(enabled):
    global PIN_SERVER, PIN_WRK
    if enabled and (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        PIN_SERVER, PIN_WRK = ["taskset", "-c", "1"], ["taskset", "-c", "0"]
    else:
        PIN_SERVER, PIN_WRK = [], []


def wrk_command(cfg, mode, port, duration):
    script = "report.lua" if mode == "keepalive" else "pipeline.lua"
    cmd = PIN_WRK + [cfg["wrk"], "-t1", "-c%d" % cfg["connections"], "-d" + duration, "--latency",
           "-s", os.path.join(PERF_DIR, script), "http://127.0.0.1:%d/" % port]
    cmd.append("--")
    if mode == "pipelined":
        cmd.append("depth=%d" % cfg["depth"])
    cmd.append("connections=%d" % cfg["connections"])
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
    r["p50_us"] = r["curve"].get("50")
    r["p99_us"] = r["curve"].get("99")
    r["p999_us"] = r["curve"].get("99.9")
    r["socket_errors"] = sum(r.get("errors_" + k, 0) for k in ("connect", "read", "write", "timeout"))
    r["non2xx"] = r.get("errors_status", 0)
    return r


def run_wrk(cfg, server, mode, duration, seconds, tag):
    cmd = wrk_command(cfg, mode, server.port, duration)
    run = {"server": server.name, "mode": mode, "tag": tag, "command": cmd, "problems": []}
    if not server.alive():
        run["problems"].append("server not running before the run")
        return run
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                           cwd=PERF_DIR, preexec_fn=_die_with_parent)
    except subprocess.TimeoutExpired:
        run["problems"].append("wrk did not finish within %ds" % (seconds + 60))
        return run
    wall = time.monotonic() - t0
    cpu = server.cpu_seconds() - cpu0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk is the only child reaped meanwhile
    wrk_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    logname = "%s-%s-%s.txt" % (tag, mode, server.name)
    with open(os.path.join(OUT_DIR, cfg["logs"], logname), "w") as f:
        f.write("$ %s\n%s%s" % (" ".join(cmd), p.stdout, p.stderr))
    run["log"] = os.path.join("perf", "out", cfg["logs"], logname)
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
    if not server.alive():
        run["problems"].append("server exited during the run (status %s)" % server.proc.returncode)
    if run["requests"] == 0:
        run["problems"].append("no request completed")
    if run["non2xx"]:
        run["problems"].append("%d answers with status >= 400" % run["non2xx"])
    if run.get("errors_connect", 0) + run.get("errors_read", 0) + run.get("errors_write", 0):
        run["problems"].append("socket errors: connect %d, read %d, write %d"
                               % (run.get("errors_connect", 0), run.get("errors_read", 0),
                                  run.get("errors_write", 0)))
    run["warnings"] = list(run.pop("notes", []))
    if mode == "pipelined" and run.get("p99_us") is None:
        run["warnings"].append("no measured latency samples: pipelined percentiles unavailable")
    if run.get("errors_timeout", 0):
        run["warnings"].append("%d wrk timeouts (no answer within 2 s)" % run["errors_timeout"])
    return run


# ---------------------------------------------------------------- report


def fmt_ms(us):
    return "—" if us is None else "%.3f" % (us / 1000.0)


def fmt_rps(rps):
    return "—" if rps is None else "{:,.0f}".format(rps)


def fmt_mib(kib):
    return "—" if kib is None else "%.1f" % (kib / 1024.0)


def fmt_pct(x):
    return "—" if x is None else "%.0f%%" % x


def fmt_ratio(x):
    return "—" if x is None else "%.2fx" % x


def median_of(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarize(runs):
    summary = {}
    for mode in MODES:
        per = {}
        for name in SERVERS:
            rs = [r for r in runs if r["mode"] == mode and r["server"] == name]
            ok = [r for r in rs if "rps" in r]
            per[name] = {
                "runs": len(rs),
                "flagged": sum(1 for r in rs if r["problems"] or r.get("warnings")),
                "rps": median_of(ok, "rps"),
                "p50_us": median_of(ok, "p50_us"),
                "p99_us": median_of(ok, "p99_us"),
                "p999_us": median_of(ok, "p999_us"),
                "rss_kib": max((r["rss_kib"] for r in ok if r.get("rss_kib")), default=None),
                "cpu_pct": median_of(ok, "server_cpu_pct"),
                "wrk_cpu_pct": median_of(ok, "wrk_cpu_pct"),
            }
        ratios = {}
        h = per["hello"]
        for peer in ("nginx", "node"):
            o = per[peer]
            ratios[peer] = {
                "rps": h["rps"] / o["rps"] if h["rps"] and o["rps"] else None,
                "p99": h["p99_us"] / o["p99_us"] if h["p99_us"] and o["p99_us"] else None,
            }
        # Paired per-round ratios: each round ran the three servers back to back.
        paired = {"nginx": [], "node": []}
        for tag in sorted({r["tag"] for r in runs if r["mode"] == mode}):
            by = {r["server"]: r for r in runs if r["mode"] == mode and r["tag"] == tag}
            for peer in paired:
                if by.get("hello", {}).get("rps") and by.get(peer, {}).get("rps"):
                    paired[peer].append(by["hello"]["rps"] / by[peer]["rps"])
        summary[mode] = {"servers": per, "ratios": ratios, "paired_rps_ratios": paired}
    return summary


def target_verdicts(summary):
    lines = []
    for mode in MODES:
        r = summary[mode]["ratios"]
        n, d = r["nginx"], r["node"]
        parts = []
        if n["rps"] is not None:
            parts.append("hello/nginx req/s %.2fx (target >= 1.0x: %s)"
                         % (n["rps"], "met" if n["rps"] >= 1.0 else "NOT met"))
        if n["p99"] is not None:
            parts.append("p99 %.2fx nginx's (target <= 1.0x: %s)"
                         % (n["p99"], "met" if n["p99"] <= 1.0 else "NOT met"))
        if d["rps"] is not None:
            parts.append("hello/node req/s %.2fx (target >= 2.5x: %s)"
                         % (d["rps"], "met" if d["rps"] >= 2.5 else "NOT met"))
        lines.append("- **%s**: %s" % (MODE_TITLE[mode], "; ".join(parts) or "no data"))
    return lines


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


def tool_versions(cfg):
    def first_line(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            text = (p.stdout + p.stderr).strip()
            return text.splitlines()[0].split(" Copyright")[0] if text else "?"
        except (OSError, subprocess.SubprocessError):
            return "?"

    build_type = compiler = "?"
    cache = os.path.join(os.path.dirname(os.path.dirname(cfg["hello"])), "CMakeCache.txt")
    try:
        with open(cache) as f:
            for line in f:
                if line.startswith("CMAKE_BUILD_TYPE:"):
                    build_type = line.split("=", 1)[1].strip()
                elif line.startswith("CMAKE_CXX_COMPILER:"):
                    compiler = line.split("=", 1)[1].strip()
    except OSError:
        pass
    return {"wrk": first_line([cfg["wrk"], "-v"]), "nginx": first_line([cfg["nginx"], "-v"]),
            "node": first_line([cfg["node"], "-v"]),
            "hello": "%s (CMAKE_BUILD_TYPE=%s, %s)" % (rel(cfg["hello"]), build_type, compiler)}


def rel(path):
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def shell_line(argv):
    return " ".join(rel(a) if a.startswith(ROOT + os.sep) else a for a in argv)


def write_markdown(path, data):
    cfg, summary, runs = data["config"], data["summary"], data["runs"]
    m, g, v = data["machine"], data["git"], data["versions"]
    L = []
    L.append("# perf results%s" % (" (short mode: a smoke check, not a measurement)"
                                   if cfg["short"] else ""))
    L.append("")
    L.append("Written by `%s`; perf/README.md says how to read it. Medians over %d interleaved "
             "round(s) of %s per server and mode; lower latency is better. The machine is "
             "shared, so only the ratios of servers measured side by side mean much."
             % (cfg["invocation"], cfg["rounds"], cfg["duration"]))
    L.append("")
    L.append("## Machine and build")
    L.append("")
    L.append("- date: %s (UTC), suite took %ds" % (data["started"], data["elapsed_s"]))
    L.append("- machine: %d CPUs (nproc), %s, %s, kernel %s, %s RAM"
             % (m["nproc"], m["cpu"], m["arch"], m["kernel"],
                "%.1f GiB" % (m["mem_total_kib"] / 1048576.0) if m.get("mem_total_kib") else "?"))
    L.append("- os: %s; load average before/after: %s / %s"
             % (m["os"], data["load_before"], data["load_after"]))
    commit = g["commit"] or "unknown"
    L.append("- git: %s (%s) \"%s\"%s" % (
        commit, g["branch"], g["subject"],
        "; uncommitted changes in: " + ", ".join(g["uncommitted"]) if g["uncommitted"] else ""))
    L.append("- hello: %s" % v["hello"])
    L.append("- peers: %s; node %s; load generator: %s" % (v["nginx"], v["node"], v["wrk"]))
    L.append("")
    L.append("## Commands")
    L.append("")
    L.append("```")
    L.append("%s" % cfg["invocation"])
    L.append("# settings: PERF_ROUNDS=%d PERF_DURATION=%s PERF_WARMUP=%s PERF_CONNECTIONS=%d "
             "PERF_PIPELINE_DEPTH=%d PERF_PIN=%d" % (cfg["rounds"], cfg["duration"], cfg["warmup"] or "0",
                                         cfg["connections"], cfg["depth"], cfg["pin"]))
    L.append("# servers (ports picked at start; each in its own session):")
    for name in SERVERS:
        L.append(shell_line(data["servers"][name]["command"]))
    L.append("# load, one run per server and mode in every round (%s):"
             % ", ".join(SERVERS))
    for mode in MODES:
        ex = [r for r in runs if r["mode"] == mode and r["server"] == "hello"]
        if ex:
            L.append(shell_line(ex[0]["command"]).replace(
                ":%d/" % data["servers"]["hello"]["port"], ":PORT/"))
    L.append("```")
    L.append("")
    L.append("Ports this time: " + ", ".join("%s %d" % (n, data["servers"][n]["port"])
                                              for n in SERVERS) + ".")
    L.append("")
    L.append("<details><summary>nginx.conf</summary>")
    L.append("")
    L.append("```nginx")
    L.append(data["servers"]["nginx"]["conf"].rstrip())
    L.append("```")
    L.append("</details>")
    L.append("")

    L.append("## Results")
    L.append("")
    L.append("Targets (hello vs the peers measured in the same rounds):")
    L.append("")
    L += target_verdicts(summary)
    L.append("")
    for mode in MODES:
        s = summary[mode]
        title = MODE_TITLE[mode]
        if mode == "keepalive":
            what = ("%d keep-alive connections, one request in flight on each. Latency per "
                    "request as wrk's --latency prints it (wrk's coordinated-omission "
                    "correction included)" % cfg["connections"])
        else:
            what = ("%d connections, batches of %d pipelined GET /; req/s counts every answer. "
                    "Latency per batch (write the batch -> read its last answer), from the "
                    "measured samples: wrk's own percentiles are wrong with pipelining "
                    "(perf/README.md)" % (cfg["connections"], cfg["depth"]))
        L.append("### %s" % title)
        L.append("")
        L.append(what + ".")
        L.append("")
        L.append("| server | req/s | p50 ms | p99 ms | p99.9 ms | RSS MiB | server CPU | wrk CPU "
                 "| flags |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for name in SERVERS:
            p = s["servers"][name]
            flags = "%d of %d runs flagged" % (p["flagged"], p["runs"]) if p["flagged"] else ""
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                name, fmt_rps(p["rps"]), fmt_ms(p["p50_us"]), fmt_ms(p["p99_us"]),
                fmt_ms(p["p999_us"]), fmt_mib(p["rss_kib"]), fmt_pct(p["cpu_pct"]),
                fmt_pct(p["wrk_cpu_pct"]), flags))
        L.append("")
        r = s["ratios"]
        pr = s["paired_rps_ratios"]
        L.append("| hello / peer | req/s (higher is better) | p99 (lower is better) | "
                 "req/s per round |")
        L.append("|---|---:|---:|---|")
        for peer in ("nginx", "node"):
            L.append("| hello / %s | %s | %s | %s |" % (
                peer, fmt_ratio(r[peer]["rps"]), fmt_ratio(r[peer]["p99"]),
                ", ".join("%.2fx" % x for x in pr[peer]) or "—"))
        L.append("")

    L.append("## Every run")
    L.append("")
    L.append("In the order they ran. `!` marks a flagged run (socket errors, answers >= 400, a "
             "server that died, wrk failing); server and wrk CPU are their CPU time over the "
             "run's wall time (100% = one core busy); RSS is VmRSS of the server's processes after "
             "the run (nginx: master + worker).")
    L.append("")
    L.append("| round | mode | server | req/s | p50 ms | p99 ms | p99.9 ms | max ms | "
             "p99 ms wrk / measured | socket errors | >= 400 | server CPU | wrk CPU | RSS MiB | |")
    L.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in runs:
        note = "; ".join(r["problems"] + r.get("warnings", []))
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s | %s | %s | %s | %s | %s |" % (
            r["tag"], MODE_TITLE[r["mode"]], r["server"], fmt_rps(r.get("rps")),
            fmt_ms(r.get("p50_us")), fmt_ms(r.get("p99_us")), fmt_ms(r.get("p999_us")),
            fmt_ms(r.get("latency_max_us")), fmt_ms(r.get("wrk_p99_us")),
            fmt_ms(r.get("measured_p99_us")), r.get("socket_errors", "—"), r.get("non2xx", "—"),
            fmt_pct(r.get("server_cpu_pct")), fmt_pct(r.get("wrk_cpu_pct")),
            fmt_mib(r.get("rss_kib")), ("! " + note) if note else ""))
    L.append("")
    if data.get("plot"):
        L.append("Latency distributions: [latency.png](latency.png). Raw data: "
                 "perf/out/%s, wrk's own output: perf/out/%s/ (both git-ignored)."
                 % (os.path.basename(data["json"]), cfg["logs"]))
    else:
        L.append("Raw data: perf/out/%s, wrk's own output: perf/out/%s/ (both git-ignored)."
                 % (os.path.basename(data["json"]), cfg["logs"]))
    L.append("")
    with open(path, "w") as f:
        f.write("\n".join(L))


def write_plot(path, data):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import math

    colors = {"hello": "tab:blue", "nginx": "tab:green", "node": "tab:orange"}
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(1, len(MODES), figsize=(13, 5.2))
    ticks = [0, 1, 2, 3, 4, 5]
    tick_labels = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
    for ax, mode in zip(axes, MODES):
        tags = []
        for r in data["runs"]:
            if r["mode"] != mode or not r.get("curve"):
                continue
            if r["tag"] not in tags:
                tags.append(r["tag"])
            pts = sorted((float(p), us) for p, us in r["curve"].items() if float(p) < 100)
            xs = [-math.log10(1 - p / 100.0) for p, _ in pts]
            ys = [max(us, 1) / 1000.0 for _, us in pts]
            first = tags.index(r["tag"]) == 0
            ax.plot(xs, ys, styles[tags.index(r["tag"]) % len(styles)], color=colors[r["server"]],
                    label=r["server"] if first else None, linewidth=1.6 if first else 1.1)
        ax.set_yscale("log")
        ax.set_xticks(ticks)
        ax.set_xticklabels(tick_labels)
        ax.set_xlim(0, 5)
        ax.set_xlabel("percentile")
        ax.set_ylabel("per-batch latency, measured samples (ms, log)" if mode == "pipelined"
                      else "latency as wrk reports it (ms, log)")
        title = "keep-alive, -c%d" % data["config"]["connections"]
        if mode == "pipelined":
            title = "pipelined depth %d, -c%d" % (data["config"]["depth"],
                                                   data["config"]["connections"])
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(title="rounds: " + " ".join(
            "%s=%s" % (t, styles[i % len(styles)]) for i, t in enumerate(tags)), fontsize=9,
            title_fontsize=8)
    fig.suptitle("GET / latency distribution (wrk -t1, %s runs), %s"
                 % (data["config"]["duration"], data["started"]))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- main


def main():
    short = os.environ.get("PERF_SHORT", "0") not in ("", "0")
    cfg = {
        "short": short,
        "rounds": env_int("PERF_ROUNDS", 1 if short else 2),
        "connections": env_int("PERF_CONNECTIONS", 50),
        "depth": env_int("PERF_PIPELINE_DEPTH", 16),
        "invocation": os.environ.get("PERF_INVOCATION", "perf/bench.py"),
        "pin": os.environ.get("PERF_PIN", "1") not in ("", "0"),
    }
    set_pinning(cfg["pin"])
    cfg["duration"], seconds = env_duration("PERF_DURATION", "2s" if short else "10s")
    warm_text = os.environ.get("PERF_WARMUP", "").strip() or ("0" if short else "2s")
    if warm_text in ("0", "0s"):
        cfg["warmup"], warm_seconds = None, 0
    else:
        os.environ["PERF_WARMUP"] = warm_text
        cfg["warmup"], warm_seconds = env_duration("PERF_WARMUP", "2s")
    for tool, names in (("wrk", ["wrk"]), ("nginx", ["nginx", "/usr/sbin/nginx"]),
                        ("node", ["node", "nodejs"])):
        found = next((shutil.which(n) for n in names if shutil.which(n)), None)
        if not found:
            sys.exit("perf: %s not found (perf/run installs it)" % tool)
        cfg[tool] = found
    cfg["hello"] = os.environ.get("HELLO_BIN") or os.path.join(ROOT, "build", "hello", "hello")
    if not os.access(cfg["hello"], os.X_OK):
        sys.exit("perf: hello binary %s not found (perf/run builds it)" % cfg["hello"])

    cfg["logs"] = "logs-short" if short else "logs"  # a short run keeps the full run's logs
    os.makedirs(os.path.join(OUT_DIR, cfg["logs"]), exist_ok=True)
    for old in os.listdir(os.path.join(OUT_DIR, cfg["logs"])):
        if old.endswith(".txt"):
            os.unlink(os.path.join(OUT_DIR, cfg["logs"], old))

    started = datetime.datetime.now(datetime.timezone.utc)
    data = {"started": started.strftime("%Y-%m-%d %H:%M:%S"), "config": cfg,
            "machine": machine_info(), "git": git_info(), "versions": tool_versions(cfg),
            "load_before": loadavg()}
    tmp = tempfile.mkdtemp(prefix="hello-perf-")
    servers = {}
    failures = []
    runs = []
    try:
        log("starting hello, nginx, node on 127.0.0.1 (temp dir %s)" % tmp)
        servers = start_servers(tmp, cfg["hello"], cfg["nginx"], cfg["node"])
        data["servers"] = {n: {"command": PIN_SERVER + s.argv, "port": s.port, "pid": s.pid}
                           for n, s in servers.items()}
        data["servers"]["nginx"]["conf"] = servers["nginx"].conf_text
        for name in SERVERS:
            problems = verify(servers[name], cfg["depth"])
            mem = servers[name].memory()
            data["servers"][name]["rss_idle_kib"] = mem["rss_kib"]
            if problems:
                failures += ["%s answers GET / wrongly: %s" % (name, p) for p in problems]
            log("%-5s port %-5d pid %-7d %s" % (name, servers[name].port, servers[name].pid,
                                                "answers correctly" if not problems
                                                else "WRONG: " + "; ".join(problems)))
        if failures:
            raise SystemExit(1)

        if warm_seconds:
            for mode in MODES:
                for name in SERVERS:
                    log("warm-up %s %s %s" % (cfg["warmup"], MODE_TITLE[mode], name))
                    w = run_wrk(cfg, servers[name], mode, cfg["warmup"], warm_seconds, "warmup")
                    if w["problems"] and not servers[name].alive():
                        failures.append("%s died during warm-up" % name)
                        raise SystemExit(1)

        for rnd in range(1, cfg["rounds"] + 1):
            for mode in MODES:
                for name in SERVERS:
                    r = run_wrk(cfg, servers[name], mode, cfg["duration"], seconds, "r%d" % rnd)
                    runs.append(r)
                    msg = "round %d/%d %-10s %-5s " % (rnd, cfg["rounds"], MODE_TITLE[mode], name)
                    if "rps" in r:
                        msg += "%10s req/s  p50 %s ms  p99 %s ms  p99.9 %s ms  RSS %s MiB" % (
                            fmt_rps(r["rps"]), fmt_ms(r["p50_us"]), fmt_ms(r["p99_us"]),
                            fmt_ms(r["p999_us"]), fmt_mib(r.get("rss_kib")))
                    if r["problems"] or r.get("warnings"):
                        msg += "  FLAGGED: " + "; ".join(r["problems"] + r.get("warnings", []))
                    log(msg)
                    if r["problems"]:
                        failures.append("%s %s %s: %s" % (r["tag"], MODE_TITLE[mode], name,
                                                          "; ".join(r["problems"])))
                    if not servers[name].alive():
                        raise SystemExit(1)
        # One more correctness check after the load.
        for name in SERVERS:
            problems = verify(servers[name], cfg["depth"])
            failures += ["%s answers GET / wrongly after the load: %s" % (name, p)
                         for p in problems]
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for name in reversed(list(servers)):
            try:
                servers[name].stop()
            except Exception as e:  # keep stopping the others
                log("could not stop %s (pid %s): %s" % (name, servers[name].pid, e))
        if "servers" in data:
            for name, s in servers.items():
                data["servers"][name]["exit_code"] = s.exit_code
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _exit_on_signal)
        if failures:
            log("FAILED:\n  " + "\n  ".join(failures))
        if runs:
            log("all servers stopped")

    if servers.get("hello") and servers["hello"].exit_code not in (0, None):
        log("warning: hello exited with status %s on SIGTERM (expected 0)"
            % servers["hello"].exit_code)

    data["load_after"] = loadavg()
    data["elapsed_s"] = int((datetime.datetime.now(datetime.timezone.utc) - started)
                            .total_seconds())
    data["runs"] = runs
    data["summary"] = summarize(runs)
    data["failures"] = failures
    data["json"] = os.path.join(OUT_DIR, "short.json" if short else "results.json")
    md = os.path.join(OUT_DIR, "results-short.md") if short else os.path.join(PERF_DIR,
                                                                               "results.md")
    if not short:
        try:
            write_plot(os.path.join(PERF_DIR, "latency.png"), data)
            data["plot"] = "perf/latency.png"
        except ImportError:
            log("matplotlib is missing: no perf/latency.png (perf/run installs "
                "python3-matplotlib)")
    with open(data["json"], "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    write_markdown(md, data)
    log("wrote %s, %s%s" % (rel(md), rel(data["json"]),
                            ", perf/latency.png" if data.get("plot") else ""))
    for mode in MODES:
        s = data["summary"][mode]
        log("%-10s %s" % (MODE_TITLE[mode], "   ".join(
            "%s %s req/s p99 %s ms" % (n, fmt_rps(s["servers"][n]["rps"]),
                                       fmt_ms(s["servers"][n]["p99_us"])) for n in SERVERS)))
        r = s["ratios"]
        log("%-10s hello/nginx req/s %s p99 %s   hello/node req/s %s p99 %s" % (
            "", fmt_ratio(r["nginx"]["rps"]), fmt_ratio(r["nginx"]["p99"]),
            fmt_ratio(r["node"]["rps"]), fmt_ratio(r["node"]["p99"])))
    if short:
        log("short mode checks only that every server answered correctly under load; "
            "the numbers above are not a measurement")
    return 1 if failures else 0


def _exit_on_signal(signum, _frame):
    log("got %s; stopping" % signal.Signals(signum).name)
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; servers stopped")
        sys.exit(130)
