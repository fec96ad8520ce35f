"""Section 7, visits: the page-hit counter (seed 003) against hello's GET / and against the
seed's own Flask app, all three with real Redis and PostgreSQL from Debian's packages.

  hello          GET /, the reference: the same core, HTTP and loop, no store at all
  visits         GET /visits: one INCRBY per loop turn for every visit that arrived in it,
                 PostgreSQL written behind once per flush interval (issue 14)
  seed           perf/baselines/flask/visits.py under gunicorn, the seed's way: on every hit
                 INCR in Redis, then a new PostgreSQL connection for one UPDATE
  seed-kept      the same app keeping one PostgreSQL connection per worker: how much of the
                 seed's cost is its connect per hit

Placement (PERF_PIN=1, PERF_VISITS_STORES=server, the default): the system under test on CPU 1,
the load generator alone on CPU 0. For hello that is hello; for visits and the seed's app it is
the service with its Redis and PostgreSQL, because what the stores spend is part of what each
design costs (visits sends Redis one command per batch and PostgreSQL a statement per flush;
the seed a command and a whole PostgreSQL connection per hit), and because wrk must be the same
client for every server: with the stores on its core it would be slowed by each server's stores
differently. gunicorn gets its docs' worker count for that one core, as in section 1.
PERF_VISITS_STORES=client puts the stores on CPU 0 with wrk instead (the service alone on CPU 1):
the service's own cost, with the stores' work taken off its core. Both are reported per run:
server, stores and wrk CPU.

Redis and PostgreSQL come from tests/blackbox/stores.py (the black-box tests' own servers:
loopback, free ports, temp dirs, PostgreSQL initdb'd as `nobody`, scram-sha-256 over TCP),
started once for the section and shared by visits and both baselines (their keys and tables
differ); stores.py's preexec hook pins them and ties them to perf/run's life.

Correctness, per run: visits' durable count (PostgreSQL's visits_counter.n, once the backlog is
flushed) grows by exactly the 200s visits answered to /visits during the run (its own
visits_http_requests_total), and by no fewer than the 200s wrk read; the seed's app answers 200s
only (its socket errors and timeouts are results, as in section 1), and Redis's count grows by
at least the answers wrk read. Before and after the load each server answers two requests
correctly (visits: consecutive numbers on one keep-alive connection).
"""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time

from . import peers
from .common import (PERF_DIR, PIN, ROOT, fmt_ms, fmt_num, fmt_pct, fmt_ratio, fmt_rps, log,
                     md_table, median_of, met, ratio, shell_line)
from .http_check import verify
from .procs import REGISTRY, Server, die_with_parent, proc_cpu_seconds, proc_tree
from .wrk import run_wrk

sys.path.insert(0, os.path.join(ROOT, "tests", "blackbox"))
import stores  # noqa: E402  (tests/blackbox/stores.py: one way to run Redis and PostgreSQL)

TARGET_HELLO = 0.7  # visits/hello req/s, issue 14
TARGET_COMMANDS = 1.0  # Redis commands per visit, at most
PATHS = {"hello": "/", "visits": "/visits", "seed": "/", "seed-kept": "/"}
SEED_RE = re.compile(rb"^Hello Linode! This page has been viewed (\d+) time\(s\)\.$")
SEED_INIT = os.path.join(PERF_DIR, "baselines", "flask", "visits_init.sql")
# How long the durable count may take to catch up after a run: visits flushes every second
# (its --flush-interval default), plus a statement's round trip on a busy machine.
FLUSH_WAIT_S = 10.0


# ---------------------------------------------------------------- the stores


def _store_child(side, death_signal):
    """stores.py's preexec hook: the CPU of side ("server" or "client", PERF_VISITS_STORES;
    inherited by PostgreSQL's backends and Redis's threads), and death_signal when perf/run
    dies, as procs.Server's children get."""
    def preexec():
        if PIN["cpus"][side]:
            os.sched_setaffinity(0, PIN["cpus"][side])
        die_with_parent(death_signal)
    return preexec


class StoreProcess:
    """A stores.py server as procs.REGISTRY sees one (name, pid, stop), so bench.py's clean-up
    stops it with the rest whatever happens."""

    def __init__(self, name, store, template=None):
        self.name, self.store, self.template = name, store, template

    @property
    def pid(self):
        return self.store.proc.pid if self.store.proc else None

    def alive(self):
        return self.store.running()

    def cpu_seconds(self):
        """The server and its children, finished ones included (the seed's per-hit backends)."""
        if not self.alive():
            return 0.0
        return sum(proc_cpu_seconds(p, reaped=True) for p in proc_tree(self.pid))

    def stop(self):
        if self.store.proc is not None:
            self.store.stop()
        self.store.cleanup()
        if self.template:
            self.template.cleanup()
            self.template = None


def start_stores(side):
    template = stores.PostgresTemplate()
    pg = stores.PostgresServer(template)
    # SIGINT is PostgreSQL's fast shutdown; its default SIGTERM would wait for every client.
    pg.preexec = _store_child(side, signal.SIGINT)
    pgp = REGISTRY.add(StoreProcess("postgres", pg, template))
    pg.start()
    redis = stores.RedisServer()
    redis.preexec = _store_child(side, signal.SIGTERM)
    rp = REGISTRY.add(StoreProcess("redis", redis))
    redis.start()
    return rp, pgp


def redis_int(redis, command):
    """An integer answer (:N or a $len bulk string) to one inline command; None if the key is
    missing or the answer is not a number."""
    answer = redis.command(command).split(b"\r\n")
    head = answer[0] if answer else b""
    if head.startswith(b":"):
        return int(head[1:])
    if head.startswith(b"$") and head != b"$-1" and len(answer) > 1:
        return int(answer[1])
    return None


def redis_commands_processed(redis):
    """Redis's own count of the commands it ran (INFO stats; the INFO itself included)."""
    m = re.search(rb"total_commands_processed:(\d+)", redis.command(b"INFO stats"))
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------- the servers


def start_visits(tmp, visits_bin, redis, pg):
    argv = [visits_bin, "--listen", "127.0.0.1:0", "--redis", redis.url, "--database",
            pg.conninfo, "--database-password-file", pg.password_file, "--access-log", "off"]
    s = Server("visits", argv, os.path.join(tmp, "visits.log"), listen_re=peers.LISTEN_RE)
    return REGISTRY.add(s).start()


def seed_env(redis, pg, connection):
    return {"SEED_REDIS_URL": redis.url, "SEED_DATABASE": pg.conninfo,
            "SEED_DATABASE_PASSWORD_FILE": pg.password_file, "SEED_PG_CONNECTION": connection}


def scrape(port):
    """visits' /metrics -> {name or name{labels}: value} for the samples this section uses."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    out = {}
    for line in text.splitlines():
        if line.startswith(("visits_store_commands_total", "visits_batches_total",
                            "visits_counted_total", "visits_backlog",
                            'visits_http_requests_total{route="visits",code="2xx"}',
                            "visits_store_errors_total", "visits_flushes_total")):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def durable(pg):
    return int(pg.psql("SELECT n FROM visits_counter").strip())


def check_visits(port):
    """Two visits on one keep-alive connection -> (problems, the second number)."""
    problems, numbers = [], []
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for _ in range(2):
            conn.request("GET", "/visits")
            r = conn.getresponse()
            body = r.read()
            ctype = (r.getheader("Content-Type") or "").split(";")[0].strip()
            if r.status != 200 or ctype != "application/json":
                problems.append("GET /visits: status %d, Content-Type %r, body %r"
                                % (r.status, ctype, body[:80]))
                break
            numbers.append(json.loads(body)["visits"])
        conn.close()
    except (OSError, ValueError, KeyError, http.client.HTTPException) as e:
        problems.append("%s: %s" % (type(e).__name__, e))
    if len(numbers) == 2 and numbers[1] != numbers[0] + 1:
        problems.append("numbers %d then %d on one connection, want consecutive" % tuple(numbers))
    return problems, numbers[-1] if numbers else None


def check_seed(port):
    """Two hits, a connection each (the app keeps none) -> (problems, the second count)."""
    counts = []
    for _ in range(2):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/")
            r = conn.getresponse()
            body = r.read()
            conn.close()
        except (OSError, http.client.HTTPException) as e:
            return ["%s: %s" % (type(e).__name__, e)], None
        m = SEED_RE.match(body.strip())
        if r.status != 200 or not m:
            return ["GET /: status %d, body %r" % (r.status, body[:80])], None
        counts.append(int(m.group(1)))
    if counts[1] <= counts[0]:
        return ["counts %d then %d, want increasing" % tuple(counts)], None
    return [], counts[1]


def check(cfg, name, server):
    if name == "hello":
        return verify(server.port, cfg["depth"])[0]
    if name == "visits":
        return check_visits(server.port)[0]
    return check_seed(server.port)[0]


# ---------------------------------------------------------------- measuring


def run(cfg, tmp):
    data = {"failures": [], "runs": [], "notes": []}
    redis_p, pg_p = start_stores(cfg["visits_stores"])
    redis, pg = redis_p.store, pg_p.store
    data["stores"] = {"redis": {"argv": "redis-server --port P --bind 127.0.0.1 --save '' "
                                        "--appendonly no (tests/blackbox/stores.py)",
                                "cpus": _cpus(redis_p.pid)},
                      "postgres": {"argv": "postgres -c listen_addresses=127.0.0.1 -c fsync=off "
                                           "-c full_page_writes=off -c max_connections=60 "
                                           "-c shared_buffers=16MB (tests/blackbox/stores.py)",
                                   "cpus": _cpus(pg_p.pid)},
                      # stores.py's random temp dirs, shown as names in the command lines
                      "dirs": {pg_p.store.dir: "$PGDIR", pg_p.template.dir: "$PGTEMPLATE",
                               redis_p.store.dir: "$REDISDIR"}}
    servers = {"hello": peers.start_hello(tmp, cfg["hello"]),
               "visits": start_visits(tmp, cfg["visits"], redis, pg)}
    if cfg.get("seed_python_ok") and cfg.get("gunicorn"):
        pg.psql(open(SEED_INIT).read())
        for name, how in (("seed", "per-request"), ("seed-kept", "per-worker")):
            servers[name] = peers.start_gunicorn(tmp, cfg["gunicorn"], cfg["gunicorn_workers"],
                                                 name=name, app="visits:app",
                                                 env=seed_env(redis, pg, how))
    else:
        data["notes"].append("the seed's Flask app was not measured: %s"
                             % cfg.get("seed_missing", "gunicorn is missing"))
    data["order"] = list(servers)
    data["servers"] = {n: {"command": s.command, "port": s.port,
                           "env": {k: v for k, v in (s.env or {}).items()}}
                       for n, s in servers.items()}
    try:
        measure(cfg, data, servers, redis_p, pg_p)
    finally:
        for name in reversed(list(servers)):
            servers[name].stop()
            data["servers"][name]["exit_code"] = servers[name].exit_code
        if data["servers"]["visits"]["exit_code"] not in (0, None):
            data["failures"].append("visits exited with status %s on SIGTERM"
                                    % data["servers"]["visits"]["exit_code"])
        try:
            data["durable_final"] = durable(pg)  # after visits' flush on SIGTERM
        except RuntimeError as e:
            data["failures"].append("reading the durable count at the end: %s" % e)
        redis_p.stop()
        pg_p.stop()
    data["summary"] = summarize(data)
    return data


def _cpus(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("Cpus_allowed_list:"):
                    return line.split()[1]
    except OSError:
        pass
    return "?"


def wait_flushed(port):
    deadline = time.monotonic() + FLUSH_WAIT_S
    while time.monotonic() < deadline:
        if scrape(port).get("visits_backlog") == 0:
            return True
        time.sleep(0.05)
    return False


def measure(cfg, data, servers, redis_p, pg_p):
    names = data["order"]
    for name in names:
        problems = check(cfg, name, servers[name])
        data["failures"] += ["%s answers wrongly before the load: %s" % (name, p)
                             for p in problems]
        log("%-9s port %-5d pid %-7d %s" % (name, servers[name].port, servers[name].pid,
                                            "answers correctly" if not problems
                                            else "WRONG: " + "; ".join(problems)))
    log("redis pid %d and postgres pid %d on CPU %s / %s (the %s's side)"
        % (redis_p.pid, pg_p.pid, data["stores"]["redis"]["cpus"],
           data["stores"]["postgres"]["cpus"], cfg["visits_stores"]))
    if data["failures"]:
        return
    if cfg["warmup_s"]:
        for name in names:
            log("warm-up %s %s" % (cfg["warmup"], name))
            run_wrk(cfg, servers[name], "keepalive", cfg["warmup"], cfg["warmup_s"], "warmup",
                    tolerant=name.startswith("seed"), section="visits", path=PATHS[name])
    for rnd in range(1, cfg["rounds"] + 1):
        for name in names:
            r = one_run(cfg, data, name, servers[name], "r%d" % rnd, redis_p, pg_p)
            data["runs"].append(r)
            msg = "round %d/%d %-9s " % (rnd, cfg["rounds"], name)
            if "rps" in r:
                msg += "%10s req/s  p50 %s ms  p99 %s ms  wrk CPU %s  stores CPU %s" % (
                    fmt_rps(r["rps"]), fmt_ms(r["p50_us"]), fmt_ms(r["p99_us"]),
                    fmt_pct(r.get("wrk_cpu_pct")), fmt_pct(r.get("stores_cpu_pct")))
            if "redis_per_visit" in r:
                msg += "  Redis cmds/visit %.3f  PG stmts/s %.1f  visits/batch %.1f" % (
                    r["redis_per_visit"], r["pg_per_s"], r["visits_per_batch"])
            if r["problems"] or r["warnings"]:
                msg += "  FLAGGED: " + "; ".join(r["problems"] + r["warnings"])
            log(msg)
            data["failures"] += ["%s %s: %s" % (r["tag"], name, p) for p in r["problems"]]
            if not servers[name].alive():
                return
    for name in names:
        problems = check(cfg, name, servers[name])
        data["failures"] += ["%s answers wrongly after the load: %s" % (name, p)
                             for p in problems]


def one_run(cfg, data, name, server, tag, redis_p, pg_p):
    """One wrk run with the stores' figures around it: scrapes (visits' /metrics, Redis's INFO,
    the durable count or the seed's row) before and after, and the correctness check."""
    redis, pg = redis_p.store, pg_p.store
    before = {"redis_total": redis_commands_processed(redis),
              "stores_cpu": redis_p.cpu_seconds() + pg_p.cpu_seconds()}
    if name == "visits":
        before["metrics"] = scrape(server.port)
        before["durable"] = durable(pg)
    elif name.startswith("seed"):
        before["count"] = redis_int(redis, b"GET visitor_count") or 0
    t0 = time.monotonic()
    r = run_wrk(cfg, server, "keepalive", cfg["duration"], cfg["duration_s"], tag,
                tolerant=name.startswith("seed"), section="visits", path=PATHS[name])
    wall = time.monotonic() - t0
    after = {"stores_cpu": redis_p.cpu_seconds() + pg_p.cpu_seconds()}
    if name == "visits":
        after["metrics"] = scrape(server.port)
    after["redis_total"] = redis_commands_processed(redis)
    r["stores_cpu_pct"] = 100.0 * (after["stores_cpu"] - before["stores_cpu"]) / wall
    if "rps" not in r:
        return r
    if r.get("server_cpu_pct") is not None and r["rps"]:
        # What one answer cost the server side, the stores included: unlike req/s, it does not
        # depend on how much of its core the machine's other load left the server.
        r["cpu_us_per_answer"] = ((r["server_cpu_pct"] + r["stores_cpu_pct"]) / 100.0
                                  / r["rps"] * 1e6)
    answered = r["requests"] - r["non2xx"]  # the 200s wrk read
    if before["redis_total"] is not None and after["redis_total"] is not None and answered:
        # Every command Redis ran in the span: the service's, and this section's few scrapes.
        r["redis_info_per_answer"] = (after["redis_total"] - before["redis_total"]) / answered
    if name == "visits":
        m0, m1 = before["metrics"], after["metrics"]

        def d(key):
            return m1.get(key, 0) - m0.get(key, 0)

        ok = int(d('visits_http_requests_total{route="visits",code="2xx"}'))
        r["visits_ok"] = ok
        r["redis_commands"] = int(d('visits_store_commands_total{store="redis"}'))
        r["pg_statements"] = int(d('visits_store_commands_total{store="postgres"}'))
        r["batches"] = int(d("visits_batches_total"))
        r["counted"] = {s: int(d('visits_counted_total{store="%s"}' % s))
                        for s in ("redis", "postgres", "none")}
        r["store_errors"] = int(sum(m1[k] - m0.get(k, 0) for k in m1
                                    if k.startswith("visits_store_errors_total")))
        r["redis_per_visit"] = r["redis_commands"] / ok if ok else None
        r["visits_per_batch"] = ok / r["batches"] if r["batches"] else None
        r["pg_per_s"] = r["pg_statements"] / wall
        r["flushes"] = int(d("visits_flushes_total"))
        if not wait_flushed(server.port):
            r["problems"].append("backlog not flushed to PostgreSQL within %.0f s"
                                 % FLUSH_WAIT_S)
        grown = durable(pg) - before["durable"]
        r["durable_grown"] = grown
        if grown != ok:
            r["problems"].append("the durable count grew by %d, visits answered %d 200s"
                                 % (grown, ok))
        if not answered <= ok <= answered + r["connections"]:
            r["problems"].append("visits answered %d 200s, wrk read %d (at most %d may be in "
                                 "flight when wrk stops)" % (ok, answered, r["connections"]))
    elif name.startswith("seed"):
        count, row = seed_settled(redis, pg)
        r["seed_incrs"] = count - before["count"]
        r["seed_row_behind"] = count - row  # the race: a later UPDATE wrote an older value
        if r["seed_incrs"] < answered:
            r["problems"].append("Redis counted %d hits, wrk read %d answers"
                                 % (r["seed_incrs"], answered))
        if answered == 0:
            r["problems"].append("no 200 answer")
    return r


def seed_settled(redis, pg):
    """(Redis's count, the PostgreSQL row) once the seed's app is quiet: when wrk stops, the
    workers still serve the requests already queued (from connections wrk has closed), so
    both move for a while after the run."""
    deadline = time.monotonic() + FLUSH_WAIT_S
    last = None
    while True:
        now = (redis_int(redis, b"GET visitor_count") or 0,
               int(pg.psql("SELECT visitor_count FROM seed_visitors WHERE site_id = 1").strip()))
        if now == last or time.monotonic() > deadline:
            return now
        last = now
        time.sleep(0.3)


# ---------------------------------------------------------------- summary and report


def summarize(data):
    runs = [r for r in data["runs"] if "rps" in r]
    per = {}
    for name in data["order"]:
        rs = [r for r in runs if r["server"] == name]
        if not rs:
            continue
        per[name] = {k: median_of(rs, k) for k in
                     ("rps", "p50_us", "p99_us", "p999_us", "server_cpu_pct", "wrk_cpu_pct",
                      "cpu_us_per_answer",
                      "stores_cpu_pct", "redis_per_visit", "visits_per_batch", "pg_per_s",
                      "redis_info_per_answer")}
        per[name]["runs"] = len(rs)
        per[name]["socket_errors"] = sum(r.get("socket_errors", 0) for r in rs)
        per[name]["timeouts"] = sum(r.get("errors_timeout", 0) for r in rs)
        per[name]["non2xx"] = sum(r.get("non2xx", 0) for r in rs)
    ratios = {}
    for peer in data["order"]:
        if peer == "visits":
            continue
        rounds = {"rps": [], "p99": [], "cpu": []}
        for tag in sorted({r["tag"] for r in runs}):
            by = {r["server"]: r for r in runs if r["tag"] == tag}
            v, o = by.get("visits", {}), by.get(peer, {})
            for key, field in (("rps", "rps"), ("p99", "p99_us")):
                x = ratio(v.get(field), o.get(field))
                if x is not None:
                    rounds[key].append(x)
            # CPU per answer, the peer's over visits': the req/s ratio if CPU were the limit.
            x = ratio(o.get("cpu_us_per_answer"), v.get("cpu_us_per_answer"))
            if x is not None:
                rounds["cpu"].append(x)
        ratios[peer] = {"rps": median_of(rounds["rps"]), "p99": median_of(rounds["p99"]),
                        "cpu": median_of(rounds["cpu"]),
                        "rps_rounds": rounds["rps"]}
    return {"servers": per, "ratios": ratios}


def verdicts(data):
    s = data.get("summary") or {}
    v = s.get("servers", {}).get("visits")
    r = s.get("ratios", {})
    if not v:
        return ["- **visits**: no data"]
    parts = []
    h = r.get("hello", {})
    if h.get("rps") is not None:
        parts.append("visits/hello req/s %.2fx (target >= %.1fx: %s)"
                     % (h["rps"], TARGET_HELLO, met(h["rps"] >= TARGET_HELLO)))
        if h.get("cpu") is not None:
            parts.append("CPU per answer hello's / visits' (service + stores) %.2fx"
                         % h["cpu"])
        parts.append("p99 %s ms vs hello's %s ms (%.2fx; no target)"
                     % (fmt_ms(v["p99_us"]), fmt_ms(s["servers"]["hello"]["p99_us"]), h["p99"]))
    if v.get("redis_per_visit") is not None:
        parts.append("%.3f Redis commands per visit (target <= 1: %s; %.1f visits per INCRBY)"
                     % (v["redis_per_visit"], met(v["redis_per_visit"] <= TARGET_COMMANDS),
                        v["visits_per_batch"]))
        parts.append("%.1f PostgreSQL statements/s (no target)" % v["pg_per_s"])
    for peer in ("seed", "seed-kept"):
        if r.get(peer, {}).get("rps") is not None:
            parts.append("visits/%s req/s %.0fx (no target)" % (peer, r[peer]["rps"]))
    return ["- **visits** (page-hit counter, Redis + PostgreSQL): " + "; ".join(parts)]


def commands(cfg, data):
    L = ["# Redis and PostgreSQL (tests/blackbox/stores.py, in temp dirs $REDISDIR, $PGDIR; "
         "the cluster initdb'd in $PGTEMPLATE), on CPU %s / %s:"
         % (data["stores"]["redis"]["cpus"], data["stores"]["postgres"]["cpus"]),
         "#   " + data["stores"]["redis"]["argv"], "#   " + data["stores"]["postgres"]["argv"],
         "# servers (ports picked at start; each in its own session):"]
    for name in data["order"]:
        s = data["servers"][name]
        env = " ".join("%s=%s" % (k, "'%s'" % v if " " in v else v)
                       for k, v in sorted(s["env"].items()))
        line = shell_line(s["command"])
        if name.startswith("seed"):
            line = "(cd perf/baselines/flask && %s%s)" % (env + " " if env else "", line)
        for path, alias in data["stores"]["dirs"].items():
            line = line.replace(path, alias)
        L.append(line)
    L.append("# load, one run per server in every round (%s):" % ", ".join(data["order"]))
    for name in data["order"]:
        ex = [r for r in data["runs"] if r["server"] == name]
        if ex:
            L.append(shell_line(ex[0]["command"]).replace(
                ":%d/" % data["servers"][name]["port"], ":PORT/"))
    return L


def markdown(cfg, data):
    L = ["## 7. visits: the page-hit counter vs hello and the seed's Flask app", ""]
    where = ("**Placement** (`PERF_VISITS_STORES=server`): the system under test on CPU 1, wrk "
             "alone on CPU 0. For hello that is hello; for visits and the seed's app it is the "
             "service with its Redis and PostgreSQL: what the stores spend is part of what each "
             "design costs (visits sends Redis one INCRBY per batch and PostgreSQL a statement "
             "per flush, the seed a command and a whole PostgreSQL connection per hit), and wrk "
             "stays the same client for every server (on its core, the stores would slow it "
             "differently for each)" if cfg["visits_stores"] == "server" else
             "**Placement** (`PERF_VISITS_STORES=client`): the service alone on CPU 1, Redis, "
             "PostgreSQL and wrk on CPU 0: the service's own cost, the stores' work taken off "
             "its core (and put on the client's)")
    L += ["Real Redis (%s) and PostgreSQL (%s) from Debian's packages, started by "
          "tests/blackbox/stores.py (loopback, temp dirs, PostgreSQL as `nobody` with "
          "scram-sha-256 over TCP) and shared by every server here. %s; the stores are pinned "
          "by stores.py's preexec hook, so PostgreSQL's backends inherit the CPU. The columns "
          "*server*, *stores* and *wrk CPU* show what each spent (100%% = one core). %d "
          "interleaved round(s) of %s per server (warm-up run: %s), `wrk -t1 -c%d` keep-alive; "
          "medians, and ratios as the median over rounds of each round's ratio."
          % (cfg.get("redis_version", "?"), cfg.get("pg_version", "?"), where, cfg["rounds"],
             cfg["duration"], cfg["warmup"] or "none", cfg["connections"]), ""]
    L += ["- **hello**: GET /, the reference (no store).",
          "- **visits**: GET /visits with `--access-log off` and its defaults (flush interval "
          "1 s): every visit that arrives in one loop turn is counted by one INCRBY; "
          "PostgreSQL gets the backlog once per flush interval.",
          "- **seed**: `perf/baselines/flask/visits.py` (the seed's app written as the seed "
          "does it: on every hit INCR in Redis, then a new PostgreSQL connection for one "
          "UPDATE of the value) under gunicorn with %d sync workers (its docs' `2 x cores + 1` "
          "for the one core; table from `visits_init.sql`, as the seed's database image makes "
          "it). Like section 1's gunicorn it closes every connection, so wrk reconnects per "
          "request."
          % cfg["gunicorn_workers"],
          "- **seed-kept**: the same app with one PostgreSQL connection kept per worker "
          "(`SEED_PG_CONNECTION=per-worker`): not the seed's code, it shows how much of the "
          "seed's cost is its connection per hit.", ""]
    L += ["```"] + [cfg["invocation"]] + commands(cfg, data) + ["```", ""]
    L += ["Figures per visits run, from visits' own /metrics scraped before and after the "
          "run: Redis commands per visit = Δ`visits_store_commands_total{store=\"redis\"}` / "
          "Δ200s of /visits; visits per batch = Δ200s / Δ`visits_batches_total`; PostgreSQL "
          "statements/s = Δ`visits_store_commands_total{store=\"postgres\"}` / the run's wall "
          "time. *Redis cmds per answer (INFO)* is Redis's own `total_commands_processed` over "
          "the span / the 200s wrk read, for every server (it includes this section's INFO and "
          "GET scrapes, 2 to 3 per run). Correctness: after each visits run the durable count "
          "(PostgreSQL, once the backlog is flushed) grew by exactly the 200s visits answered; "
          "for the seed, only 200s, and Redis counted at least as many hits as wrk read.", ""]
    for note in data.get("notes", []):
        L += ["Note: %s." % note, ""]
    L += ["Targets:", ""] + verdicts(data) + [""]
    s = data.get("summary", {})
    rows = []
    for name in [n for n in data["order"] if n in s.get("servers", {})]:
        p = s["servers"][name]
        flags = []
        if p["socket_errors"]:
            flags.append("%d socket errors (%d timeouts)" % (p["socket_errors"], p["timeouts"]))
        if p["non2xx"]:
            flags.append("%d answers >= 400" % p["non2xx"])
        rows.append([name, fmt_rps(p["rps"]), fmt_ms(p["p50_us"]), fmt_ms(p["p99_us"]),
                     fmt_ms(p["p999_us"]), fmt_pct(p["server_cpu_pct"]),
                     fmt_pct(p["wrk_cpu_pct"]), fmt_pct(p["stores_cpu_pct"]),
                     fmt_num(p["cpu_us_per_answer"], "%.2f"),
                     fmt_num(p["redis_per_visit"], "%.3f"), fmt_num(p["visits_per_batch"]),
                     fmt_num(p["pg_per_s"]), fmt_num(p["redis_info_per_answer"], "%.2f"),
                     "; ".join(flags)])
    L += md_table(["server", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "server CPU",
                   "wrk CPU", "stores CPU", "server + stores CPU µs per answer",
                   "Redis cmds per visit", "visits per batch", "PG statements/s",
                   "Redis cmds per answer (INFO)", "flags"], rows,
                  "lrrrrrrrrrrrrl") + [""]
    rows = []
    for peer in [n for n in data["order"] if n in s.get("ratios", {})]:
        r = s["ratios"][peer]
        rows.append(["visits / " + peer, fmt_ratio(r["rps"]), fmt_ratio(r["p99"]),
                     fmt_ratio(r["cpu"]),
                     ", ".join("%.2fx" % x for x in r["rps_rounds"]) or "—"])
    L += md_table(["visits / peer", "req/s (higher is better)", "p99 (lower is better)",
                   "CPU per answer, peer's / visits' (the req/s ratio if CPU were the limit)",
                   "req/s per round"], rows, "lrrrl") + [""]
    L += ["*Server + stores CPU per answer* is the server's and its stores' CPU time over the "
          "answers wrk read (hello has no store): unlike req/s it does not depend on how much "
          "of its core the machine's other load left a server, so with req/s well below what "
          "one core allows (server CPU far below 100%) it is the steadier comparison.", ""]
    L += ["<details><summary>Every run of this section</summary>", ""]
    L += ["In the order they ran. Latency as wrk's --latency prints it; CPU is CPU time over the "
          "run's wall time (100% = one core; stores = Redis + PostgreSQL with its backends, "
          "finished ones included). *durable +* is the growth of visits' durable count, *200s* "
          "what visits answered to /visits; for the seed, *INCRs* is Redis's count's growth and "
          "*row behind* how far the PostgreSQL row ended below Redis's count (two workers "
          "writing their values in the other order).", ""]
    rows = []
    for r in data["runs"]:
        note = "; ".join(r["problems"] + r.get("warnings", []))
        if r["server"] == "visits" and "visits_ok" in r:
            extra = "200s %d, durable +%d, %d INCRBY, %d batches, %d PG statements (%d " \
                    "flushes), store errors %d" % (r["visits_ok"], r["durable_grown"],
                                                   r["redis_commands"], r["batches"],
                                                   r["pg_statements"], r["flushes"],
                                                   r["store_errors"])
        elif "seed_incrs" in r:
            extra = "INCRs %d, row behind %d" % (r["seed_incrs"], r["seed_row_behind"])
        else:
            extra = ""
        rows.append([r["tag"], r["server"], fmt_rps(r.get("rps")), fmt_ms(r.get("p50_us")),
                     fmt_ms(r.get("p99_us")), fmt_ms(r.get("latency_max_us")),
                     r.get("socket_errors", "—"), r.get("non2xx", "—"),
                     fmt_pct(r.get("server_cpu_pct")), fmt_pct(r.get("wrk_cpu_pct")),
                     fmt_pct(r.get("stores_cpu_pct")), extra, ("! " + note) if note else ""])
    L += md_table(["round", "server", "req/s", "p50 ms", "p99 ms", "max ms", "socket errors",
                   ">= 400", "server CPU", "wrk CPU", "stores CPU", "counts", ""], rows,
                  "llrrrrrrrrrll")
    L += ["", "</details>", ""]
    if data.get("durable_final") is not None:
        L += ["After visits' SIGTERM (it flushes before exiting) the durable count was %d."
              % data["durable_final"], ""]
    return L


def headline(data):
    s = data.get("summary") or {}
    out = []
    for peer in ("hello", "seed", "seed-kept"):
        x = s.get("ratios", {}).get(peer, {}).get("rps")
        if x is not None:
            out.append(("visits/%s req/s" % peer, x))
    v = s.get("servers", {}).get("visits", {})
    if v.get("p99_us") is not None:
        out.append(("visits p99 ms", v["p99_us"] / 1000.0))
    if s.get("servers", {}).get("hello", {}).get("p99_us") is not None:
        out.append(("hello p99 ms (visits section)", s["servers"]["hello"]["p99_us"] / 1000.0))
    x = s.get("ratios", {}).get("hello", {}).get("cpu")
    if x is not None:
        out.append(("CPU per answer hello/visits (service + stores)", x))
    if v.get("redis_per_visit") is not None:
        out.append(("visits Redis commands per visit", v["redis_per_visit"]))
        out.append(("visits PostgreSQL statements/s", v["pg_per_s"]))
    return out


def versions():
    """Redis's and PostgreSQL's versions, for the section's text."""
    def first(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return "?"

    redis = first(["redis-server", "--version"])
    m = re.search(r"v=(\S+)", redis)
    bindir = stores.pg_bindir()
    pgv = first([os.path.join(bindir, "postgres"), "--version"]) if bindir else "?"
    return ("redis-server " + m.group(1)) if m else redis, pgv


def prerequisites(cfg):
    """None, or why this section cannot run here."""
    if not os.access(cfg["visits"], os.X_OK):
        return "visits binary %s not found (perf/run builds it)" % cfg["visits"]
    if not subprocess.run(["sh", "-c", "command -v redis-server"],
                          capture_output=True).returncode == 0:
        return "no redis-server (perf/run installs Debian's redis-server)"
    if not stores.pg_bindir():
        return "no PostgreSQL server binaries (perf/run installs Debian's postgresql)"
    return None
