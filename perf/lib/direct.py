"""Section 1, hello direct: hello against single-worker nginx (`return 200`), Node's http
server and the seed's Flask app (Flask's development server as the seed runs it, and gunicorn),
with wrk, keep-alive and pipelined, in interleaved rounds; medians and per-round ratios."""

from . import peers
from .common import (fmt_mib, fmt_ms, fmt_pct, fmt_ratio, fmt_rps, log, md_table, median_of,
                     met, ratio, shell_line, untmp)
from .http_check import verify
from .wrk import MODE_TITLE, MODES, run_wrk

CORE = ("hello", "nginx", "node")  # must answer correctly, keep alive and pipeline
TARGETS = {"nginx": 1.0, "node": 2.5}  # hello/peer req/s, both modes; p99 <= nginx's


def start(cfg, tmp):
    servers = {"hello": peers.start_hello(tmp, cfg["hello"]),
               "nginx": peers.start_nginx(tmp, cfg["nginx"]),
               "node": peers.start_node(tmp, cfg["node"])}
    if cfg.get("flask_python"):
        servers["flask"] = peers.start_flask(tmp, cfg["flask_python"])
    if cfg.get("gunicorn"):
        servers["gunicorn"] = peers.start_gunicorn(tmp, cfg["gunicorn"], cfg["gunicorn_workers"])
    return servers


def run(cfg, tmp):
    data = {"failures": [], "runs": [], "not_pipelined": {}}
    servers = start(cfg, tmp)
    try:
        measure(cfg, data, servers)
    finally:
        for name in reversed(list(servers)):
            servers[name].stop()
            if name in data.get("servers", {}):
                data["servers"][name]["exit_code"] = servers[name].exit_code
    data["summary"] = summarize(data["runs"], data["order"])
    return data


def measure(cfg, data, servers):
    names = list(servers)
    data["order"] = names
    data["servers"] = {n: {"command": s.command, "port": s.port, "pid": s.pid}
                       for n, s in servers.items()}
    data["servers"]["nginx"]["conf"] = servers["nginx"].conf_text
    modes_of = {}
    for name in names:
        problems, caps = verify(servers[name].port, cfg["depth"], must_keep_alive=name in CORE)
        data["servers"][name].update(caps=caps, rss_idle_kib=servers[name].memory()["rss_kib"])
        data["failures"] += ["%s answers GET / wrongly: %s" % (name, p) for p in problems]
        modes_of[name] = [m for m in MODES if m == "keepalive" or caps["pipelining"]]
        if "pipelined" not in modes_of[name]:
            why = "no keep-alive" if not caps["keepalive"] else "no pipelining"
            data["not_pipelined"][name] = ("closes the connection after every answer (%s), so a "
                                           "pipelined batch gets one answer" % why)
        log("%-8s port %-5d pid %-7d %s%s" % (
            name, servers[name].port, servers[name].pid,
            "answers correctly" if not problems else "WRONG: " + "; ".join(problems),
            "" if caps["keepalive"] else " (no keep-alive: one answer per connection)"))
    if data["failures"]:
        return

    if cfg["warmup_s"]:
        for mode in MODES:
            for name in names:
                if mode not in modes_of[name]:
                    continue
                log("warm-up %s %s %s" % (cfg["warmup"], MODE_TITLE[mode], name))
                w = run_wrk(cfg, servers[name], mode, cfg["warmup"], cfg["warmup_s"], "warmup",
                            tolerant=name not in CORE)
                if w["problems"] and not servers[name].alive():
                    data["failures"].append("%s died during warm-up" % name)
                    return

    for rnd in range(1, cfg["rounds"] + 1):
        for mode in MODES:
            for name in names:
                if mode not in modes_of[name]:
                    continue
                r = run_wrk(cfg, servers[name], mode, cfg["duration"], cfg["duration_s"],
                            "r%d" % rnd, tolerant=name not in CORE)
                data["runs"].append(r)
                msg = "round %d/%d %-10s %-8s " % (rnd, cfg["rounds"], MODE_TITLE[mode], name)
                if "rps" in r:
                    msg += "%10s req/s  p50 %s ms  p99 %s ms  p99.9 %s ms  RSS %s MiB" % (
                        fmt_rps(r["rps"]), fmt_ms(r["p50_us"]), fmt_ms(r["p99_us"]),
                        fmt_ms(r["p999_us"]), fmt_mib(r.get("rss_kib")))
                if r["problems"] or r["warnings"]:
                    msg += "  FLAGGED: " + "; ".join(r["problems"] + r["warnings"])
                log(msg)
                if r["problems"]:
                    data["failures"].append("%s %s %s: %s" % (r["tag"], MODE_TITLE[mode], name,
                                                              "; ".join(r["problems"])))
                if not servers[name].alive():
                    return
    for name in names:  # one more correctness check after the load
        problems, _ = verify(servers[name].port, cfg["depth"], must_keep_alive=name in CORE)
        data["failures"] += ["%s answers GET / wrongly after the load: %s" % (name, p)
                             for p in problems]


def cpu_us_per_request(run):
    """The server's CPU time per answer, microseconds (None without the figures)."""
    if not run or not run.get("rps") or run.get("server_cpu_pct") is None:
        return None
    return run["server_cpu_pct"] / 100.0 / run["rps"] * 1e6


def summarize(runs, names):
    summary = {}
    for mode in MODES:
        per = {}
        for name in names:
            rs = [r for r in runs if r["mode"] == mode and r["server"] == name]
            if not rs:
                continue
            ok = [r for r in rs if "rps" in r]
            per[name] = {
                "runs": len(rs),
                "flagged": sum(1 for r in rs if r["problems"] or r["warnings"]),
                "rps": median_of(ok, "rps"),
                "p50_us": median_of(ok, "p50_us"),
                "p99_us": median_of(ok, "p99_us"),
                "p999_us": median_of(ok, "p999_us"),
                "rss_kib": max((r["rss_kib"] for r in ok if r.get("rss_kib")), default=None),
                "cpu_pct": median_of(ok, "server_cpu_pct"),
                "cpu_us_per_req": median_of([{"x": cpu_us_per_request(r)} for r in ok
                                             if cpu_us_per_request(r) is not None], "x"),
                "wrk_cpu_pct": median_of(ok, "wrk_cpu_pct"),
                "socket_errors": sum(r.get("socket_errors", 0) for r in ok),
                "timeouts": sum(r.get("errors_timeout", 0) for r in ok),
            }
        ratios, paired = {}, {}
        h = per.get("hello", {})
        for peer in per:
            if peer == "hello":
                continue
            o = per[peer]
            # Paired per-round ratios: each round ran the servers back to back, so a drift of
            # the machine's load that lasts longer than a round cancels out of its ratio; the
            # median over rounds then drops a round where a burst hit one server only. These
            # medians are the headline ratios; the ratios of the medians are shown beside them.
            per_round = {"rps": [], "p99_us": [], "p999_us": [], "cpu": []}
            for tag in sorted({r["tag"] for r in runs if r["mode"] == mode}):
                by = {r["server"]: r for r in runs if r["mode"] == mode and r["tag"] == tag}
                for key in ("rps", "p99_us", "p999_us"):
                    x = ratio(by.get("hello", {}).get(key), by.get(peer, {}).get(key))
                    if x is not None:
                        per_round[key].append(x)
                # CPU per request, peer's over hello's: how many times cheaper hello is.
                x = ratio(cpu_us_per_request(by.get(peer, {})), cpu_us_per_request(by.get("hello", {})))
                if x is not None:
                    per_round["cpu"].append(x)
            paired[peer] = per_round["rps"]
            ratios[peer] = {"rps": median_of(per_round["rps"]),
                            "p99": median_of(per_round["p99_us"]),
                            "p999": median_of(per_round["p999_us"]),
                            "cpu": median_of(per_round["cpu"]),
                            "rps_of_medians": ratio(h.get("rps"), o["rps"]),
                            "p99_of_medians": ratio(h.get("p99_us"), o["p99_us"])}
        summary[mode] = {"servers": per, "ratios": ratios, "paired_rps_ratios": paired}
    return summary


def verdicts(data):
    lines = []
    for mode in MODES:
        r = data["summary"][mode]["ratios"]
        parts = []
        if r.get("nginx", {}).get("rps") is not None:
            parts.append("hello/nginx req/s %.2fx (target >= 1.0x: %s)"
                         % (r["nginx"]["rps"], met(r["nginx"]["rps"] >= TARGETS["nginx"])))
        if r.get("nginx", {}).get("p99") is not None:
            parts.append("p99 %.2fx nginx's (target <= 1.0x: %s)"
                         % (r["nginx"]["p99"], met(r["nginx"]["p99"] <= 1.0)))
        if r.get("node", {}).get("rps") is not None:
            parts.append("hello/node req/s %.2fx (target >= 2.5x: %s)"
                         % (r["node"]["rps"], met(r["node"]["rps"] >= TARGETS["node"])))
        for peer in ("flask", "gunicorn"):
            if r.get(peer, {}).get("rps") is not None:
                parts.append("hello/%s req/s %.0fx (no target)" % (peer, r[peer]["rps"]))
        lines.append("- **%s**: %s" % (MODE_TITLE[mode], "; ".join(parts) or "no data"))
        servers = data["summary"][mode]["servers"]
        busy = [n for n in ("hello", "nginx") if (servers.get(n, {}).get("wrk_cpu_pct") or 0) >= 95]
        if busy and r.get("node", {}).get("cpu") is not None:
            lines.append(
                "  - wrk used %s of its core against %s: there the client, not the server, "
                "sets req/s. Server CPU per answer does not depend on the client: nginx "
                "spends %.2fx and Node %.2fx of hello's."
                % ("/".join(fmt_pct(servers[n]["wrk_cpu_pct"]) for n in busy), " and ".join(busy),
                   r.get("nginx", {}).get("cpu") or float("nan"), r["node"]["cpu"]))
    return lines


def commands(cfg, data):
    L = ["# servers (ports picked at start; each in its own session):"]
    for name in data["order"]:
        L.append(shell_line(data["servers"][name]["command"]))
    L.append("# load, one run per server and mode in every round (%s):" % ", ".join(data["order"]))
    for mode in MODES:
        ex = [r for r in data["runs"] if r["mode"] == mode and r["server"] == "hello"]
        if ex:
            L.append(shell_line(ex[0]["command"]).replace(
                ":%d/" % data["servers"]["hello"]["port"], ":PORT/"))
    return L


def markdown(cfg, data):
    L = ["## 1. hello direct: hello vs nginx, Node and the seed's Flask app", ""]
    L += ["Every server alone on CPU 1, wrk on CPU 0, %d interleaved round(s) of %s per server "
          "and mode (and a %s warm-up each); the tables give each server's medians, and the "
          "ratios are the median over rounds of each round's ratio. The Flask app is "
          "`perf/baselines/flask/hello.py` (the seed's routes and JSON); `flask` runs it as the "
          "seed does (`python3 -m flask run`: Werkzeug's threaded development server, debug "
          "off, a log line per request on stderr), `gunicorn` under gunicorn with %d sync "
          "workers (gunicorn's documented `2 x cores + 1` for the one core the servers get; "
          "sync is its default worker class)."
          % (cfg["rounds"], cfg["duration"], cfg["warmup"] or "no", cfg["gunicorn_workers"]), ""]
    L += ["```"] + [cfg["invocation"]] + commands(cfg, data) + ["```", ""]
    L += ["<details><summary>nginx.conf (peer)</summary>", "", "```nginx",
          untmp(data["servers"]["nginx"]["conf"]).rstrip(), "```", "</details>", ""]
    if data["not_pipelined"]:
        L += ["Not run pipelined: " + "; ".join("**%s** %s" % (n, why)
                                                for n, why in data["not_pipelined"].items()) +
              ". In keep-alive mode wrk reconnects after every answer of such a server, so "
              "its figures include a TCP connect per request, which is what its clients get.", ""]
    L += ["Targets:", ""] + verdicts(data) + [""]
    for mode in MODES:
        s = data["summary"][mode]
        if mode == "keepalive":
            what = ("%d connections, one request in flight on each. Latency per request as "
                    "wrk's --latency prints it (wrk's coordinated-omission correction "
                    "included)" % cfg["connections"])
        else:
            what = ("%d connections, batches of %d pipelined GET /; req/s counts every answer. "
                    "Latency per batch (write the batch -> read its last answer), from the "
                    "measured samples: wrk's own percentiles are wrong with pipelining "
                    "(perf/README.md)" % (cfg["connections"], cfg["depth"]))
        L += ["### %s" % MODE_TITLE[mode], "", what + ".", ""]
        rows = []
        for name, p in s["servers"].items():
            flags = []
            if p["flagged"]:
                flags.append("%d of %d runs flagged" % (p["flagged"], p["runs"]))
            if p["socket_errors"]:
                flags.append("%d socket errors (%d timeouts)" % (p["socket_errors"],
                                                                 p["timeouts"]))
            cpu = p.get("cpu_us_per_req")
            rows.append([name, fmt_rps(p["rps"]), fmt_ms(p["p50_us"]), fmt_ms(p["p99_us"]),
                         fmt_ms(p["p999_us"]), fmt_mib(p["rss_kib"]), fmt_pct(p["cpu_pct"]),
                         "%.2f" % cpu if cpu is not None else "—",
                         fmt_pct(p["wrk_cpu_pct"]), "; ".join(flags)])
        L += md_table(["server", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "RSS MiB",
                       "server CPU", "server CPU µs per answer", "wrk CPU", "flags"], rows,
                      "lrrrrrrrrl") + [""]
        rows = []
        for peer, r in s["ratios"].items():
            rows.append(["hello / " + peer, fmt_ratio(r["rps"]), fmt_ratio(r["p99"]),
                         fmt_ratio(r["p999"]), fmt_ratio(r.get("cpu")),
                         ", ".join("%.2fx" % x for x in s["paired_rps_ratios"][peer]) or "—",
                         "%s / %s" % (fmt_ratio(r["rps_of_medians"]),
                                      fmt_ratio(r["p99_of_medians"]))])
        L += md_table(["hello / peer", "req/s (higher is better)", "p99 (lower is better)",
                       "p99.9 (lower is better)", "CPU per answer, peer's / hello's (higher: "
                       "hello cheaper)", "req/s per round",
                       "req/s / p99 from the medians above"], rows, "lrrrrlr") + [""]
    L += ["<details><summary>Every run of this section</summary>", ""]
    L += ["In the order they ran. `!` marks a flagged run (socket errors, answers >= 400, a "
          "server that died, wrk failing, wrk timeouts); server and wrk CPU are their CPU time "
          "over the run's wall time (100% = one core busy); RSS is VmRSS of the server's "
          "processes after the run (nginx: master + worker; gunicorn: master + workers).", ""]
    L += run_table(data["runs"])
    L += ["", "</details>", ""]
    return L


def run_table(runs):
    rows = []
    for r in runs:
        note = "; ".join(r["problems"] + r.get("warnings", []))
        rows.append([r["tag"], MODE_TITLE[r["mode"]], r["server"], r.get("connections", "—"),
                     fmt_rps(r.get("rps")), fmt_ms(r.get("p50_us")), fmt_ms(r.get("p99_us")),
                     fmt_ms(r.get("p999_us")), fmt_ms(r.get("latency_max_us")),
                     "%s / %s" % (fmt_ms(r.get("wrk_p99_us")), fmt_ms(r.get("measured_p99_us"))),
                     r.get("socket_errors", "—"), r.get("errors_timeout", "—"),
                     r.get("non2xx", "—"), fmt_pct(r.get("server_cpu_pct")),
                     fmt_pct(r.get("wrk_cpu_pct")), fmt_mib(r.get("rss_kib")),
                     ("! " + note) if note else ""])
    return md_table(["round", "mode", "server", "conns", "req/s", "p50 ms", "p99 ms", "p99.9 ms",
                     "max ms", "p99 ms wrk / measured", "socket errors", "of them timeouts",
                     ">= 400", "server CPU", "wrk CPU", "RSS MiB", ""], rows,
                    "lllrrrrrrrrrrrrrl")


def headline(data):
    """(label, value) pairs for bench.py's summary and the README."""
    out = []
    for mode in MODES:
        r = data["summary"][mode]["ratios"]
        for peer in ("nginx", "node", "flask", "gunicorn"):
            if peer in r and r[peer]["rps"] is not None:
                out.append(("%s hello/%s req/s" % (MODE_TITLE[mode], peer), r[peer]["rps"]))
        if r.get("nginx", {}).get("p99") is not None:
            out.append(("%s hello/nginx p99" % MODE_TITLE[mode], r["nginx"]["p99"]))
        for peer in ("nginx", "node"):
            if r.get(peer, {}).get("cpu") is not None:
                out.append(("%s CPU per answer %s/hello" % (MODE_TITLE[mode], peer),
                            r[peer]["cpu"]))
    return out
