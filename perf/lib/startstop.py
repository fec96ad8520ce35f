"""Section 4, start and stop. Start: from exec to the first answered GET / (a 200 with the
body), every server, interleaved, best and median of N. Stop: from SIGTERM to the process's
exit, with 100 idle keep-alive connections open (each did one request) and with 100 busy ones
(wrk -c100 running), for the keep-alive servers; nginx also with SIGQUIT, the graceful stop
signal its image uses."""

import os
import signal
import socket
import subprocess
import time

from . import peers
from .common import fmt_num, log, md_table, median_of, shell_line
from .procs import REGISTRY, Server, die_with_parent, free_port
from .scaling import close_all, open_idle
from .wrk import wrk_command

START_TARGET_MS = 10.0  # tests/blackbox/test_resources.py: best of 5 under 10 ms for hello
STOP_CONNS = 100
ANSWER = b'{"msg":"Hello, World!"}'


def spawn(cfg, tmp, name, port, pin):
    """A server of kind `name` on a fixed port, spawned (not waited for)."""
    logpath = os.path.join(tmp, "startstop-%s.log" % name)
    if name == "hello":
        s = Server(name, [cfg["hello"], "--listen", "127.0.0.1:%d" % port, "--access-log", "off"],
                   logpath, port=port, pin=pin)
    elif name.startswith("nginx"):
        ndir = os.path.join(tmp, "startstop-nginx")
        os.makedirs(ndir, exist_ok=True)
        conf = os.path.join(ndir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(peers.nginx_static_conf(ndir, port, cfg["nginx"]))
        s = Server(name, [cfg["nginx"], "-p", ndir + "/", "-c", conf, "-e",
                          os.path.join(ndir, "error.log")], logpath, port=port, pin=pin)
    elif name == "node":
        s = Server(name, [cfg["node"], os.path.join(peers.PERF_DIR, "baselines", "node_hello.js"),
                          "127.0.0.1:%d" % port], logpath, port=port, pin=pin)
    elif name == "flask":
        s = Server(name, peers.flask_argv(cfg["flask_python"], port), logpath, port=port,
                   cwd=peers.FLASK_DIR, env={"FLASK_APP": "hello.py"}, pin=pin)
    elif name == "gunicorn":
        s = Server(name, peers.gunicorn_argv(cfg["gunicorn"], port, cfg["gunicorn_workers"]),
                   logpath, port=port, cwd=peers.FLASK_DIR, pin=pin)
    else:
        raise ValueError(name)
    REGISTRY.add(s)
    s.spawn()
    return s


def first_answer(s, timeout=20.0):
    """Seconds from exec to a complete 200 answer to GET /, polling every 0.2 ms."""
    deadline = s.started_at + timeout
    while time.monotonic() < deadline:
        if s.proc.poll() is not None:
            raise RuntimeError("%s exited with %s while starting:\n%s"
                               % (s.name, s.proc.returncode, s.log_tail()))
        sock = socket.socket()
        try:
            sock.connect(("127.0.0.1", s.port))
        except OSError:
            sock.close()
            time.sleep(0.0002)
            continue
        try:
            sock.settimeout(timeout)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = b""
            while not data.endswith(ANSWER):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            data = b""
        finally:
            sock.close()
        if data.startswith(b"HTTP/1.") and b" 200 " in data[:16] and data.endswith(ANSWER):
            return time.monotonic() - s.started_at
        time.sleep(0.0002)
    raise RuntimeError("%s: no answer within %gs of exec" % (s.name, timeout))


def wait_exit(proc, timeout):
    """Seconds until proc exits (polled every 0.5 ms), or None after timeout."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            return time.monotonic() - t0
        time.sleep(0.0005)
    return None


def measure_stop(cfg, tmp, name, load, sig):
    """One start, 100 idle or busy connections, signal, time to exit -> dict."""
    s = spawn(cfg, tmp, name, free_port(), pin=True)
    out = {"server": name, "load": load, "signal": signal.Signals(sig).name}
    conns, wrk = [], None
    try:
        first_answer(s)
        if load == "idle":
            conns = open_idle(s.port, STOP_CONNS, batch=STOP_CONNS)
            time.sleep(0.2)
        else:
            cmd = wrk_command(cfg["wrk"], "keepalive", s.port, "%ds" % 8, STOP_CONNS)
            out["wrk"] = shell_line(cmd).replace(":%d/" % s.port, ":PORT/")
            wrk = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   cwd=peers.PERF_DIR, preexec_fn=die_with_parent)
            time.sleep(1.0)
        os.kill(s.pid, sig)
        took = wait_exit(s.proc, 15.0)
        out["ms"] = None if took is None else took * 1000.0
        out["exit_code"] = s.proc.returncode
    finally:
        if wrk is not None and wrk.poll() is None:
            wrk.terminate()
            try:
                wrk.wait(5)
            except subprocess.TimeoutExpired:
                wrk.kill()
                wrk.wait()
        close_all(conns)
        s.stop()
    return out


def run(cfg, tmp):
    data = {"failures": [], "start": [], "stop": []}
    start_names = ["hello", "nginx", "node"]
    start_names += ["flask"] if cfg.get("flask_python") else []
    start_names += ["gunicorn"] if cfg.get("gunicorn") else []
    data["start_names"] = start_names
    for i in range(cfg["start_reps"]):
        for name in start_names:
            s = spawn(cfg, tmp, name, free_port(), pin=False)
            try:
                took = first_answer(s)
                data["start"].append({"server": name, "ms": took * 1000.0})
            except RuntimeError as e:
                data["failures"].append("start %s: %s" % (name, e))
            finally:
                s.stop()
            if i == 0:
                data.setdefault("start_commands", {})[name] = shell_line(s.command)
    for name in start_names:
        ms = [r["ms"] for r in data["start"] if r["server"] == name]
        if ms:
            log("start %-8s exec -> first answer: best %.2f ms, median %.2f ms of %d"
                % (name, min(ms), median_of(ms), len(ms)))
    cases = [(n, signal.SIGTERM) for n in ("hello", "nginx", "node")] + [("nginx", signal.SIGQUIT)]
    for i in range(cfg["stop_reps"]):
        for load in ("idle", "busy"):
            for name, sig in cases:
                try:
                    r = measure_stop(cfg, tmp, name, load, sig)
                except (RuntimeError, OSError, ValueError) as e:
                    data["failures"].append("stop %s %s: %s" % (name, load, e))
                    continue
                data["stop"].append(r)
                if r["ms"] is None:
                    data["failures"].append("%s did not exit within 15 s of %s with %d %s "
                                            "connections" % (name, r["signal"], STOP_CONNS, load))
                if name == "hello" and r["exit_code"] != 0:
                    data["failures"].append("hello exited with status %s on SIGTERM (%s)"
                                            % (r["exit_code"], load))
    for load in ("idle", "busy"):
        for name, sig in cases:
            ms = [r["ms"] for r in data["stop"] if r["server"] == name and r["load"] == load and
                  r["signal"] == sig.name and r["ms"] is not None]
            if ms:
                log("stop  %-6s %-7s with %d %s connections -> exit: best %.2f ms, median "
                    "%.2f ms" % (name, sig.name, STOP_CONNS, load, min(ms), median_of(ms)))
    data["summary"] = summarize(data)
    return data


def summarize(data):
    start = {}
    for name in data["start_names"]:
        ms = [r["ms"] for r in data["start"] if r["server"] == name]
        start[name] = {"best": min(ms) if ms else None, "median": median_of(ms), "n": len(ms)}
    stop = {}
    for r in data["stop"]:
        key = "%s %s %s" % (r["server"], r["signal"], r["load"])
        stop.setdefault(key, []).append(r)
    stop = {k: {"best": min((r["ms"] for r in v if r["ms"] is not None), default=None),
                "median": median_of(v, "ms"), "n": len(v),
                "exit_codes": sorted({str(r["exit_code"]) for r in v})} for k, v in stop.items()}
    return {"start": start, "stop": stop}


def verdict(data):
    s = data["summary"]["start"].get("hello", {})
    parts = []
    if s.get("best") is not None:
        parts.append("hello's first answer %.2f ms after exec (best of %d; target < %.0f ms, as "
                     "tests/blackbox/test_resources.py asserts: %s)"
                     % (s["best"], s["n"], START_TARGET_MS,
                        "met" if s["best"] < START_TARGET_MS else "NOT met"))
    for load in ("idle", "busy"):
        st = data["summary"]["stop"].get("hello SIGTERM %s" % load)
        if st and st["median"] is not None:
            parts.append("SIGTERM -> exit %.1f ms with %d %s connections (median)"
                         % (st["median"], STOP_CONNS, load))
    return "- **start and stop**: " + ("; ".join(parts) or "no data")


def markdown(cfg, data):
    L = ["## 4. Start and stop", ""]
    L += ["**Start**: perf/run forks and execs the server (unpinned, so no taskset exec in "
          "between) and, from the moment before the fork, tries every 0.2 ms to connect and "
          "GET /; the time is when a complete 200 with the JSON body has been read. %d "
          "interleaved repetitions per server. **Stop**: the server (pinned to CPU 1) first "
          "answers, then gets %d connections that each did one request and stay idle, or "
          "`wrk -c%d` running for 1 s (pinned to CPU 0); then the signal, and the time until "
          "the process has exited (waitpid polled every 0.5 ms). %d repetitions each. hello, "
          "Node: SIGTERM is their graceful stop; nginx: SIGTERM is its fast stop, SIGQUIT its "
          "graceful one (the project's image stops nginx with SIGQUIT). The Flask servers close "
          "every connection after one answer, so they have no idle connections to stop with."
          % (cfg["start_reps"], STOP_CONNS, STOP_CONNS, cfg["stop_reps"]), ""]
    L += ["```"] + ["%s   # start" % c for c in data.get("start_commands", {}).values()]
    busy = [r.get("wrk") for r in data["stop"] if r.get("wrk")]
    if busy:
        L.append(busy[0] + "   # busy stop")
    L += ["```", "", verdict(data), ""]
    rows = []
    for name in data["start_names"]:
        s = data["summary"]["start"][name]
        rows.append([name, fmt_num(s["best"], "%.2f"), fmt_num(s["median"], "%.2f"), s["n"]])
    L += md_table(["server", "exec -> first answer, best ms", "median ms", "runs"], rows) + [""]
    rows = []
    for key, s in data["summary"]["stop"].items():
        name, sig, load = key.split()
        rows.append([name, sig, "%d %s" % (STOP_CONNS, load), fmt_num(s["best"], "%.2f"),
                     fmt_num(s["median"], "%.2f"), s["n"], ", ".join(s["exit_codes"])])
    L += md_table(["server", "signal", "connections", "signal -> exit, best ms", "median ms",
                   "runs", "exit status"], rows, "lllrrrl") + [""]
    return L


def headline(data):
    out = []
    s = data["summary"]["start"]
    for name in data["start_names"]:
        if s[name]["best"] is not None:
            out.append(("%s exec -> first answer best ms" % name, s[name]["best"]))
    return out
