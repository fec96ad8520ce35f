"""Section 2b, the compose stack itself: wrk -> the published port of a running compose stack
(docker-compose.yml: the nginx container with the project's image and config) -> hello's
container, against the same stack with hello's container replaced by an nginx container that
answers the same JSON (perf/compose/nginx-upstream.yml, perf/compose/upstream.conf). Section 2
measures the upstream's cost on loopback, where nothing else dilutes it; this one measures what
a user of `docker compose up` gets: Docker's published port, bridge network, container limits,
and hello's access log through Docker's log driver (the stand-in logs every request to stdout
too). hello must not be the bottleneck: req/s at least 0.9x. Only nginx and the upstream run
(no sidecar); with pinning both containers get CPU 1 (perf/compose/pin.yml), wrk CPU 0. Needs
Docker; the two stacks are separate compose projects on free ports, removed at the end."""

import json
import os
import subprocess
import time

from .common import (PIN, ROOT, fmt_ms, fmt_pct, fmt_ratio, fmt_rps, log, md_table, median_of,
                     met, ratio, shell_line)
from .http_check import verify
from .images import unavailable_reason
from .procs import free_port, memory_of, proc_cpu_seconds
from .wrk import run_wrk

TARGET = 0.9
STACKS = ("stack-hello", "stack-nginx")
COMPOSE = os.path.join(ROOT, "scripts", "compose")
FILES = {"stack-hello": ["docker-compose.yml"],
         "stack-nginx": ["docker-compose.yml", "perf/compose/nginx-upstream.yml"]}
PROJECT = {"stack-hello": "hellostack-perf-hello", "stack-nginx": "hellostack-perf-nginx"}


class _Exited:
    returncode = "exited"


class Stack:
    """One compose project (nginx + upstream) as run_wrk's server: port, alive(), CPU seconds
    and memory of the containers' processes (found with docker top)."""

    def __init__(self, name, port, pin, build_timeout):
        self.name, self.port, self.build_timeout = name, port, build_timeout
        files = FILES[name] + (["perf/compose/pin.yml"] if pin else [])
        self.env = dict(os.environ, COMPOSE_PROJECT_NAME=PROJECT[name],
                        COMPOSE_FILE=":".join(files), COMPOSE_PATH_SEPARATOR=":",
                        HTTP_PORT="127.0.0.1:%d" % port)  # published on loopback only
        # --no-deps: the section measures nginx and hello; visits and its stores (which nginx
        # otherwise waits for) are not part of the path measured.
        self.command = ("COMPOSE_FILE=%s HTTP_PORT=127.0.0.1:%d scripts/compose up -d --build "
                        "--no-deps nginx hello" % (":".join(files), port))
        self.proc = _Exited()
        self._pids = []

    def compose(self, *args, timeout=120):
        return subprocess.run([COMPOSE] + list(args), cwd=ROOT, env=self.env, text=True,
                              capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def up(self):
        self.down()
        p = self.compose("up", "-d", "--build", "--no-deps", "nginx", "hello",
                         timeout=self.build_timeout)
        if p.returncode != 0:
            raise RuntimeError("%s: compose up failed: %s" % (
                self.name, (p.stderr or p.stdout).strip().splitlines()[-3:]))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if not verify(self.port, 1)[0]:
                self._pids = self.find_pids()
                return
            time.sleep(0.5)
        raise RuntimeError("%s: GET / on port %d never answered correctly: %s"
                           % (self.name, self.port, verify(self.port, 1)[0]))

    def down(self):
        self.compose("down", "-v", "--remove-orphans", "--timeout", "10", timeout=180)

    def containers(self):
        p = subprocess.run(["docker", "ps", "-q", "--filter",
                            "label=com.docker.compose.project=" + PROJECT[self.name]],
                           capture_output=True, text=True, timeout=30)
        return p.stdout.split()

    def find_pids(self):
        pids = []
        for cid in self.containers():
            p = subprocess.run(["docker", "top", cid, "-eo", "pid"], capture_output=True,
                               text=True, timeout=30)
            pids += [int(w) for w in p.stdout.split()[1:] if w.isdigit()]
        return pids

    def alive(self):
        ids = self.containers()
        if len(ids) != 2:
            return False
        p = subprocess.run(["docker", "inspect"] + ids, capture_output=True, text=True,
                           timeout=30)
        return p.returncode == 0 and all(c["State"]["Running"] for c in json.loads(p.stdout))

    def cpu_seconds(self):
        return sum(proc_cpu_seconds(p) for p in self._pids)

    def memory(self):
        return memory_of(self._pids)


def run(cfg, tmp):
    data = {"failures": [], "runs": []}
    why = unavailable_reason(cfg)
    if why:
        data["skipped"] = why
        log("compose stack: not measured: %s" % why)
        return data
    pin = bool(PIN["server"])
    stacks = {name: Stack(name, free_port(), pin, cfg["image_build_timeout"]) for name in STACKS}
    data["commands"] = [s.command for s in stacks.values()]
    try:
        for s in stacks.values():
            log("compose stack %s: %s" % (s.name, s.command))
            s.up()
            log("compose stack %s: answering on port %d, %d container processes"
                % (s.name, s.port, len(s._pids)))
        if cfg["warmup_s"]:
            for s in stacks.values():
                run_wrk(cfg, s, "keepalive", cfg["warmup"], cfg["warmup_s"], "warmup",
                        section="stack")
        for rnd in range(1, cfg["rounds"] + 1):
            for s in stacks.values():
                r = run_wrk(cfg, s, "keepalive", cfg["duration"], cfg["duration_s"],
                            "r%d" % rnd, section="stack")
                r["stack"] = s.name
                data.setdefault("wrk_command", shell_line(r["command"]).replace(
                    ":%d/" % s.port, ":PORT/"))
                data["runs"].append(r)
                log("round %d/%d compose stack %-12s %10s req/s  p99 %s ms  containers' CPU %s%s"
                    % (rnd, cfg["rounds"], s.name, fmt_rps(r.get("rps")), fmt_ms(r.get("p99_us")),
                       fmt_pct(r.get("server_cpu_pct")),
                       ("  FLAGGED: " + "; ".join(r["problems"] + r["warnings"]))
                       if r["problems"] or r["warnings"] else ""))
                if r["problems"]:
                    data["failures"].append("compose stack %s %s: %s" % (
                        s.name, r["tag"], "; ".join(r["problems"])))
                    return data
        for s in stacks.values():
            problems, _ = verify(s.port, cfg["depth"])
            data["failures"] += ["%s answers GET / wrongly after the load: %s" % (s.name, p)
                                 for p in problems]
    finally:
        for s in stacks.values():
            s.down()
        data["summary"] = summarize(data["runs"])
    return data


def summarize(runs):
    per = {}
    for name in STACKS:
        rs = [r for r in runs if r.get("stack") == name and "rps" in r]
        per[name] = {k: median_of(rs, k) for k in ("rps", "p50_us", "p99_us", "p999_us",
                                                    "server_cpu_pct", "wrk_cpu_pct")}
    paired = {"rps": [], "p99_us": []}
    for tag in sorted({r["tag"] for r in runs}):
        by = {r.get("stack"): r for r in runs if r["tag"] == tag}
        for key in paired:
            x = ratio(by.get("stack-hello", {}).get(key), by.get("stack-nginx", {}).get(key))
            if x is not None:
                paired[key].append(x)
    return {"stacks": per, "paired": paired["rps"], "rps_ratio": median_of(paired["rps"]),
            "p99_ratio": median_of(paired["p99_us"])}


def verdict(data):
    if data.get("skipped"):
        return "- **compose stack** (port 80 path, containers): not measured: %s" % data["skipped"]
    s = data.get("summary") or {}
    r = s.get("rps_ratio")
    if r is None:
        return "- **compose stack** (port 80 path, containers): no data"
    return ("- **compose stack** (the published port, containers): hello/nginx-upstream req/s "
            "%.2fx (target >= %.1fx: %s), p99 %s" % (r, TARGET, met(r >= TARGET),
                                                    fmt_ratio(s.get("p99_ratio"))))


def markdown(cfg, data):
    L = ["## 2b. The compose stack itself: the published port, containers", ""]
    if data.get("skipped"):
        return L + ["Not measured: %s." % data["skipped"], ""]
    L += ["wrk -> the published port of `docker compose` running docker-compose.yml's nginx and "
          "hello containers (images from Dockerfile.multi, the compose file's settings, limits "
          "and networks; no sidecar) -> upstream. **stack-hello** is that stack; **stack-nginx** "
          "is the same stack with hello's container replaced by the stack's own nginx image "
          "answering the same JSON and logging every request to stdout, as hello does "
          "(perf/compose/nginx-upstream.yml). %s%d interleaved round(s) of %s; the ratio is the "
          "median over rounds of each round's ratio. Server CPU is every process of the two "
          "containers (not Docker's own log and proxy processes)."
          % ("Both containers on CPU 1 (perf/compose/pin.yml), wrk on CPU 0; "
             if PIN["server"] else "", cfg["rounds"], cfg["duration"]), ""]
    L += ["```"] + data.get("commands", [])
    if data.get("wrk_command"):
        L.append(data["wrk_command"] + "   # PORT: each stack's published port in turn")
    L += ["```", "", verdict(data), ""]
    s = data.get("summary") or {}
    rows = []
    for name in STACKS:
        p = (s.get("stacks") or {}).get(name) or {}
        rows.append([name, fmt_rps(p.get("rps")), fmt_ms(p.get("p50_us")), fmt_ms(p.get("p99_us")),
                     fmt_ms(p.get("p999_us")), fmt_pct(p.get("server_cpu_pct")),
                     fmt_pct(p.get("wrk_cpu_pct"))])
    L += md_table(["stack", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "containers' CPU",
                   "wrk CPU"], rows, "lrrrrrr") + [""]
    L += ["stack-hello / stack-nginx: req/s %s (rounds %s), p99 %s." % (
        fmt_ratio(s.get("rps_ratio")), ", ".join("%.2fx" % x for x in s.get("paired", [])) or "—",
        fmt_ratio(s.get("p99_ratio"))), ""]
    return L


def headline(data):
    s = data.get("summary") or {}
    return [("compose stack hello/nginx-upstream req/s", s.get("rps_ratio"))]
