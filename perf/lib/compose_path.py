"""Section 2, the compose path: wrk -> nginx with the project's proxy config -> hello, against
the same nginx config in front of an nginx upstream that returns the same JSON. hello must not
be the bottleneck: req/s through the proxy at least 0.9x what the nginx upstream gives.

Loopback, not containers (perf/README.md says why): Debian's nginx, the image's package, runs
Debian's stock nginx.conf with nginx/default.conf.template rendered as nginx/entrypoint.sh
renders it; hello runs with the compose file's settings (access log on, chaos on), and the
nginx upstream logs every request too. Proxy and upstream share CPU 1, wrk has CPU 0."""

import os
import re
import time

from . import peers
from .common import (ROOT, fmt_ms, fmt_pct, fmt_ratio, fmt_rps, log, md_table, median_of,
                     met, ratio, shell_line, untmp)
from .http_check import verify
from .wrk import run_wrk

TARGET = 0.9
PATHS = ("via-hello", "via-nginx")


def upstream_keepalive():
    """The `keepalive N;` of the template's upstream block: idle upstream connections kept."""
    with open(os.path.join(ROOT, "nginx", "default.conf.template")) as f:
        m = re.search(r"^\s*keepalive\s+(\d+);", f.read(), re.M)
    return int(m.group(1)) if m else None


def run(cfg, tmp):
    # Two loads: as many connections as the proxy keeps idle upstream connections (each
    # client request reuses one), and perf/run's usual -c, where the excess opens and closes
    # an upstream connection per request.
    pool = upstream_keepalive()
    data = {"failures": [], "runs": [], "pool": pool,
            "levels": sorted({c for c in (pool, cfg["connections"]) if c})}
    up_hello = peers.start_hello(tmp, cfg["hello"], name="upstream-hello", args=())
    up_nginx = peers.start_nginx(tmp, cfg["nginx"], name="upstream-nginx",
                                 access_log="access.log")
    proxies = {"via-hello": peers.start_proxy(tmp, cfg["nginx"], up_hello.port, "proxy-hello"),
               "via-nginx": peers.start_proxy(tmp, cfg["nginx"], up_nginx.port, "proxy-nginx")}
    upstream = {"via-hello": up_hello, "via-nginx": up_nginx}
    everything = [up_hello, up_nginx] + list(proxies.values())
    try:
        data["commands"] = {s.name: s.command for s in everything}
        data["proxy_conf"] = proxies["via-hello"].conf_text
        data["proxy_main_conf"] = proxies["via-hello"].main_conf_text
        data["upstream_conf"] = up_nginx.conf_text
        for path in PATHS:
            problems, _ = verify(proxies[path].port, cfg["depth"])
            data["failures"] += ["%s answers GET / wrongly: %s" % (path, p) for p in problems]
            log("compose path %s: proxy port %d -> upstream port %d: %s"
                % (path, proxies[path].port, upstream[path].port,
                   "answers correctly" if not problems else "WRONG: " + "; ".join(problems)))
        if data["failures"]:
            return data
        if cfg["warmup_s"]:
            for path in PATHS:
                log("warm-up %s compose path %s" % (cfg["warmup"], path))
                run_wrk(cfg, proxies[path], "keepalive", cfg["warmup"], cfg["warmup_s"],
                        "warmup", section="compose")
        for rnd in range(1, cfg["rounds"] + 1):
            for conns in data["levels"]:
                for path in PATHS:
                    up_cpu0, t0 = upstream[path].cpu_seconds(), time.monotonic()
                    r = run_wrk(cfg, proxies[path], "keepalive", cfg["duration"],
                                cfg["duration_s"], "r%d" % rnd, connections=conns,
                                section="compose")
                    wall = time.monotonic() - t0
                    r["path"] = path
                    data.setdefault("wrk_command", shell_line(r["command"]).replace(
                        ":%d/" % proxies[path].port, ":PORT/"))
                    r["upstream_cpu_pct"] = 100.0 * (upstream[path].cpu_seconds() - up_cpu0) / wall
                    r["upstream_rss_kib"] = upstream[path].memory()["rss_kib"]
                    data["runs"].append(r)
                    log("round %d/%d compose path -c%-3d %s %10s req/s  p99 %s ms  proxy CPU %s  "
                        "upstream CPU %s%s" % (
                            rnd, cfg["rounds"], conns, path, fmt_rps(r.get("rps")),
                            fmt_ms(r.get("p99_us")), fmt_pct(r.get("server_cpu_pct")),
                            fmt_pct(r["upstream_cpu_pct"]),
                            ("  FLAGGED: " + "; ".join(r["problems"] + r["warnings"]))
                            if r["problems"] or r["warnings"] else ""))
                    if r["problems"]:
                        data["failures"].append("compose path -c%d %s %s: %s" % (
                            conns, path, r["tag"], "; ".join(r["problems"])))
                    if not (proxies[path].alive() and upstream[path].alive()):
                        data["failures"].append("compose path %s: a server died" % path)
                        return data
        for path in PATHS:
            problems, _ = verify(proxies[path].port, cfg["depth"])
            data["failures"] += ["%s answers GET / wrongly after the load: %s" % (path, p)
                                 for p in problems]
    finally:
        for s in reversed(everything):
            s.stop()
        data["summary"] = summarize(data["runs"], data["levels"])
    return data


def summarize(runs, levels):
    out = {}
    for conns in levels:
        per = {}
        for path in PATHS:
            rs = [r for r in runs if r["path"] == path and r["connections"] == conns and "rps" in r]
            per[path] = {k: median_of(rs, k) for k in ("rps", "p50_us", "p99_us", "p999_us",
                                                        "server_cpu_pct", "upstream_cpu_pct",
                                                        "wrk_cpu_pct")}
            per[path]["flagged"] = sum(1 for r in runs if r["path"] == path and
                                       r["connections"] == conns and
                                       (r["problems"] or r["warnings"]))
        # Headline: the median over rounds of each round's ratio (as in section 1).
        per_round = {"rps": [], "p99_us": [], "p999_us": []}
        for tag in sorted({r["tag"] for r in runs}):
            by = {r["path"]: r for r in runs if r["tag"] == tag and r["connections"] == conns}
            for key in per_round:
                x = ratio(by.get("via-hello", {}).get(key), by.get("via-nginx", {}).get(key))
                if x is not None:
                    per_round[key].append(x)
        h, n = per["via-hello"], per["via-nginx"]
        out[conns] = {"paths": per, "paired": per_round["rps"],
                      "rps_ratio": median_of(per_round["rps"]),
                      "p99_ratio": median_of(per_round["p99_us"]),
                      "p999_ratio": median_of(per_round["p999_us"]),
                      "rps_of_medians": ratio(h["rps"], n["rps"]),
                      "p99_of_medians": ratio(h["p99_us"], n["p99_us"])}
    return out


def verdict(data):
    parts = []
    for conns, s in data["summary"].items():
        r = s["rps_ratio"]
        if r is not None:
            parts.append("-c%d: hello/nginx-upstream req/s %.2fx (target >= %.1fx: %s), p99 %s"
                         % (conns, r, TARGET, met(r >= TARGET), fmt_ratio(s["p99_ratio"])))
    return "- **compose path** (through the proxy): " + ("; ".join(parts) or "no data")


def markdown(cfg, data):
    L = ["## 2. The compose path: nginx (the project's config) in front of hello", ""]
    L += ["wrk -> nginx with `nginx/default.conf.template` rendered as `nginx/entrypoint.sh` "
          "renders it (one replica, round robin) inside Debian's stock `nginx.conf` (the "
          "image's), on loopback instead of port 80 -> upstream. Two such proxies, identical "
          "but for the upstream address: **via-hello** proxies to hello run with the compose "
          "file's settings (access log on, chaos routes on), **via-nginx** to a single-worker "
          "nginx returning the same JSON (and logging every request, as hello does). Proxy and "
          "upstream share CPU 1, wrk has CPU 0; %d interleaved round(s) of %s; ratios are the "
          "median over rounds of each round's ratio. "
          "Why loopback and not containers: perf/README.md." % (cfg["rounds"], cfg["duration"]),
          ""]
    L += ["```"]
    for name, cmd in data.get("commands", {}).items():
        L.append(shell_line(cmd))
    if data.get("wrk_command"):
        L.append(data["wrk_command"] + "   # PORT: each proxy in turn")
    L += ["```", ""]
    if data.get("proxy_conf"):
        L += ["<details><summary>the proxy's conf.d/default.conf (rendered template) and "
              "nginx.conf</summary>", "", "```nginx", untmp(data["proxy_conf"]).rstrip(), "```", "",
              "```nginx", untmp(data["proxy_main_conf"]).rstrip(), "```", "</details>", ""]
    L += [verdict(data), ""]
    rows, ratios = [], []
    for conns, s in data["summary"].items():
        for path in PATHS:
            p = s["paths"][path]
            rows.append([conns, path, fmt_rps(p["rps"]), fmt_ms(p["p50_us"]), fmt_ms(p["p99_us"]),
                         fmt_ms(p["p999_us"]), fmt_pct(p["server_cpu_pct"]),
                         fmt_pct(p["upstream_cpu_pct"]), fmt_pct(p["wrk_cpu_pct"]),
                         "%d flagged" % p["flagged"] if p["flagged"] else ""])
        ratios.append(["-c%d via-hello / via-nginx" % conns, fmt_ratio(s["rps_ratio"]),
                       fmt_ratio(s["p99_ratio"]), fmt_ratio(s["p999_ratio"]),
                       ", ".join("%.2fx" % x for x in s["paired"]) or "—",
                       "%s / %s" % (fmt_ratio(s["rps_of_medians"]),
                                    fmt_ratio(s["p99_of_medians"]))])
    L += md_table(["conns", "path", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "proxy CPU",
                   "upstream CPU", "wrk CPU", "flags"], rows, "rlrrrrrrrl") + [""]
    L += md_table(["ratio", "req/s (higher is better)", "p99 (lower is better)",
                   "p99.9 (lower is better)", "req/s per round",
                   "req/s / p99 from the medians above"], ratios, "lrrrlr") + [""]
    text = ("Proxy and upstream share one core, so the upstream's CPU per request comes out of "
            "the proxy's: the upstream CPU column is where hello and nginx differ. The template "
            "keeps %d idle upstream connections per worker (`keepalive %d;`): up to -c%d every "
            "client request reuses one of them." % (data["pool"], data["pool"], data["pool"]))
    if cfg["connections"] > data["pool"]:
        text += (" At -c%d the connections above that are opened and closed per request (the "
                 "proxy closes what exceeds the idle pool), which costs both paths a TCP "
                 "handshake and a TIME_WAIT per request and leaves the CPU partly idle: that "
                 "figure measures the config's pool size as much as the upstream."
                 % cfg["connections"])
    L += [text, ""]
    return L


def headline(data):
    return [("compose path -c%d hello/nginx-upstream req/s" % c, s["rps_ratio"])
            for c, s in data["summary"].items() if s["rps_ratio"] is not None]
