"""Section 3, connection scaling: what an idle keep-alive connection costs in resident memory
(1k and 10k connections, each having done one request), and how req/s changes from 10 to 100
to 1000 concurrent connections; hello, single-worker nginx and Node, fresh instances."""

import os
import socket
import time

from . import peers
from .common import (fmt_num, fmt_ratio, fmt_rps, log, md_table, median_of, ratio, shell_line)
from .http_check import read_response
from .procs import raise_nofile
from .wrk import run_wrk

NAMES = ("hello", "nginx", "node")
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
RSS_TARGET_BYTES = 1024  # tests/blackbox/test_resources.py asserts this for hello


def fd_count(server):
    n = 0
    for pid in server.pids():
        try:
            n += len(os.listdir("/proc/%d/fd" % pid))
        except OSError:
            pass
    return n


def open_idle(port, count, batch=500):
    """count connections to port, each having sent one GET / and read its answer."""
    conns = []
    try:
        for start in range(0, count, batch):
            new = []
            for _ in range(min(batch, count - start)):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                new.append(s)
                conns.append(s)
            for s in new:
                s.sendall(REQUEST)
            for s in new:
                st, _, _ = read_response(s.makefile("rb"))
                if st != 200:
                    raise ValueError("status %d" % st)
    except BaseException:
        close_all(conns)
        raise
    return conns


def close_all(conns):
    for s in conns:
        try:
            s.close()
        except OSError:
            pass
    del conns[:]


def settle_rss(server, wait=0.5):
    time.sleep(wait)
    return server.memory()["rss_kib"]


def idle_rss(cfg, server, levels):
    """RSS per idle keep-alive connection at each level (cumulative: 1k, then 9k more)."""
    out = {"levels": {}}
    warm = open_idle(server.port, 20)  # pools and buffers exist before the baseline
    close_all(warm)
    time.sleep(0.3)
    fd0 = fd_count(server)
    rss0 = settle_rss(server)
    out["rss0_kib"] = rss0
    conns = []
    try:
        for level in levels:
            conns += open_idle(server.port, level - len(conns))
            rss = settle_rss(server)
            held = fd_count(server) - fd0
            out["levels"][level] = {"rss_kib": rss, "fds_held": held,
                                    "bytes_per_conn": (rss - rss0) * 1024.0 / level}
            log("scaling %-6s %6d idle connections: RSS %d -> %d KiB = %.0f bytes each "
                "(server holds %d more descriptors)"
                % (server.name, level, rss0, rss, out["levels"][level]["bytes_per_conn"], held))
            if held < level:
                out.setdefault("problems", []).append(
                    "%d connections open but the server holds only %d more descriptors"
                    % (level, held))
        for s in conns[::max(1, len(conns) // 10)]:  # still alive and served
            s.sendall(REQUEST)
            st, _, _ = read_response(s.makefile("rb"))
            if st != 200:
                out.setdefault("problems", []).append("an idle connection got status %d" % st)
                break
    finally:
        close_all(conns)
    return out


def run(cfg, tmp):
    data = {"failures": [], "rss": {}, "runs": [], "levels": cfg["idle_levels"],
            "concurrency": cfg["concurrency"]}
    top = max(cfg["idle_levels"] + cfg["concurrency"])
    limit = raise_nofile(top + 1000)
    if limit < top + 100:
        data["failures"].append("RLIMIT_NOFILE is %d, too low for %d connections" % (limit, top))
        return data
    data["nofile"] = limit
    servers = {
        # hello's default --max-connections is 10000; 10k idle plus the probes needs more.
        "hello": peers.start_hello(tmp, cfg["hello"], name="hello",
                                   args=("--access-log", "off", "--max-connections",
                                         str(top + 1000))),
        "nginx": peers.start_nginx(tmp, cfg["nginx"], name="nginx",
                                   worker_connections=top + 1000),
        "node": peers.start_node(tmp, cfg["node"], name="node"),
    }
    try:
        data["commands"] = {n: servers[n].command for n in NAMES}
        data["nginx_conf"] = servers["nginx"].conf_text
        for name in NAMES:
            try:
                r = idle_rss(cfg, servers[name], cfg["idle_levels"])
            except (OSError, ValueError) as e:
                data["failures"].append("idle connections to %s: %s: %s"
                                        % (name, type(e).__name__, e))
                continue
            data["rss"][name] = r
            data["failures"] += ["idle connections to %s: %s" % (name, p)
                                 for p in r.get("problems", [])]
        for rnd in range(1, cfg["scaling_rounds"] + 1):
            for c in cfg["concurrency"]:
                for name in NAMES:
                    r = run_wrk(cfg, servers[name], "keepalive", cfg["scaling_duration"],
                                cfg["scaling_duration_s"], "r%d" % rnd, connections=c,
                                section="scaling")
                    data["runs"].append(r)
                    data.setdefault("wrk_command", shell_line(r["command"]).replace(
                        ":%d/" % servers[name].port, ":PORT/"))
                    log("round %d/%d scaling -c%-5d %-6s %10s req/s%s" % (
                        rnd, cfg["scaling_rounds"], c, name, fmt_rps(r.get("rps")),
                        ("  FLAGGED: " + "; ".join(r["problems"] + r["warnings"]))
                        if r["problems"] or r["warnings"] else ""))
                    if r["problems"]:
                        data["failures"].append("scaling -c%d %s %s: %s" % (
                            c, name, r["tag"], "; ".join(r["problems"])))
                    if not servers[name].alive():
                        return data
    finally:
        for name in reversed(NAMES):
            servers[name].stop()
        data["summary"] = summarize(data)
    return data


def summarize(data):
    rps = {}
    for name in NAMES:
        rps[name] = {c: median_of([r for r in data["runs"] if r["server"] == name and
                                   r["connections"] == c and "rps" in r], "rps")
                     for c in data["concurrency"]}
    ratios = {peer: {c: ratio(rps["hello"][c], rps[peer][c]) for c in data["concurrency"]}
              for peer in ("nginx", "node")}
    lo, hi = min(data["concurrency"]), max(data["concurrency"])
    growth = {name: ratio(rps[name][hi], rps[name][lo]) for name in NAMES}
    per_conn = {name: {lvl: data["rss"].get(name, {}).get("levels", {}).get(lvl, {})
                       .get("bytes_per_conn") for lvl in data["levels"]} for name in NAMES}
    return {"rps": rps, "ratios": ratios, "growth": growth, "bytes_per_conn": per_conn}


def verdict(data):
    s = data["summary"]
    top = max(data["levels"])
    b = s["bytes_per_conn"]["hello"].get(top)
    parts = []
    if b is not None:
        parts.append("hello %.0f bytes of RSS per idle keep-alive connection at %d (target <= "
                     "%d, as tests/blackbox/test_resources.py asserts: %s)"
                     % (b, top, RSS_TARGET_BYTES, "met" if b <= RSS_TARGET_BYTES else "NOT met"))
        for peer in ("nginx", "node"):
            pb = s["bytes_per_conn"][peer].get(top)
            if pb:
                parts.append("%s %.0f bytes (hello/%s %.2fx)" % (peer, pb, peer, b / pb))
    hi = max(data["concurrency"])
    for peer in ("nginx", "node"):
        r = s["ratios"][peer].get(hi)
        if r is not None:
            parts.append("hello/%s req/s at -c%d %.2fx" % (peer, hi, r))
    return "- **connection scaling**: " + ("; ".join(parts) or "no data")


def markdown(cfg, data):
    L = ["## 3. Connection scaling", ""]
    L += ["Fresh hello, nginx (one worker, `worker_connections` raised) and Node; "
          "RLIMIT_NOFILE raised to %s for perf/run and its children. **Idle connections**: after "
          "20 warm-up connections are closed, perf/run opens connections in batches of 500, each "
          "sends one GET / and reads the answer, then stays open and idle; VmRSS of the "
          "server's processes 0.5 s later, minus the baseline, over the number of connections "
          "(cumulative: the 10k figure includes the first 1k). One measurement per server "
          "(RSS is not noisy the way req/s is). **Concurrency**: wrk keep-alive at each -c, "
          "%d interleaved round(s) of %s per server and level, medians."
          % (data.get("nofile", "?"), cfg["scaling_rounds"], cfg["scaling_duration"]), ""]
    L += ["```"] + [shell_line(c) for c in data.get("commands", {}).values()]
    if data.get("wrk_command"):
        L.append(data["wrk_command"] + "   # -c: " + ", ".join(str(c) for c in data["concurrency"]))
    L += ["```", "", verdict(data), ""]
    s = data["summary"]
    rows = []
    for name in NAMES:
        r = data["rss"].get(name, {})
        row = [name, "%.1f" % (r["rss0_kib"] / 1024.0) if r.get("rss0_kib") else "—"]
        for lvl in data["levels"]:
            lv = r.get("levels", {}).get(lvl, {})
            row += ["%.1f" % (lv["rss_kib"] / 1024.0) if lv.get("rss_kib") else "—",
                    fmt_num(lv.get("bytes_per_conn"), "%.0f")]
        rows.append(row)
    hdr = ["server", "RSS idle MiB"]
    for lvl in data["levels"]:
        hdr += ["RSS MiB at %s" % fmt_rps(lvl), "bytes per conn at %s" % fmt_rps(lvl)]
    L += md_table(hdr, rows) + [""]
    rows = []
    for name in NAMES:
        rows.append([name] + [fmt_rps(s["rps"][name][c]) for c in data["concurrency"]] +
                    [fmt_ratio(s["growth"][name])])
    for peer in ("nginx", "node"):
        rows.append(["hello / " + peer] + [fmt_ratio(s["ratios"][peer][c])
                                           for c in data["concurrency"]] + [""])
    L += md_table(["req/s"] + ["-c%d" % c for c in data["concurrency"]] +
                  ["-c%d / -c%d" % (max(data["concurrency"]), min(data["concurrency"]))], rows)
    L += [""]
    flagged = [r for r in data["runs"] if r["problems"] or r["warnings"]]
    if flagged:
        L += ["Flagged runs: " + "; ".join("%s -c%d %s: %s" % (
            r["server"], r["connections"], r["tag"], "; ".join(r["problems"] + r["warnings"]))
            for r in flagged), ""]
    return L


def headline(data):
    out = []
    top = max(data["levels"])
    for name in NAMES:
        b = data["summary"]["bytes_per_conn"][name].get(top)
        if b is not None:
            out.append(("%s bytes per idle connection at %d" % (name, top), b))
    return out
