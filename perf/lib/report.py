"""results.md's head (machine, build, tools, settings, the targets in one list) and the plot of
the latency distributions; each section writes its own part (its module's markdown())."""

import math
import os

from .common import OUT_DIR, rel

COLORS = {"hello": "tab:blue", "nginx": "tab:green", "node": "tab:orange", "flask": "tab:red",
          "gunicorn": "tab:purple"}
# The compose path, "via-hello -cN" / "via-nginx -cN": a colour per path and connection level.
PATH_COLORS = {"via-hello": ["tab:blue", "tab:cyan", "navy"],
               "via-nginx": ["tab:green", "tab:olive", "darkgreen"]}


def color_of(name, names):
    if name in COLORS:
        return COLORS[name]
    path, _, level = name.partition(" -c")
    if path in PATH_COLORS and level.isdigit():
        levels = sorted({int(n.partition(" -c")[2]) for n in names
                         if n.partition(" -c")[2].isdigit()})
        shades = PATH_COLORS[path]
        return shades[levels.index(int(level)) % len(shades)]
    return "gray"
STYLES = ["-", "--", ":", "-."]


def head(data):
    cfg, m, g, v = data["config"], data["machine"], data["git"], data["versions"]
    L = ["# perf results%s" % (" (short mode: a smoke check, not a measurement)"
                               if cfg["short"] else ""), ""]
    L += ["Written by `%s`; perf/README.md says how to read it. Every figure below comes from "
          "this one run on this machine, servers measured side by side, interleaved; the "
          "machine is shared and noisy, so the ratios mean much more than the absolute "
          "numbers. Lower latency is better." % cfg["invocation"], ""]
    L += ["## Machine and build", ""]
    L.append("- date: %s (UTC), suite took %ds" % (data["started"], data["elapsed_s"]))
    L.append("- machine: %d CPUs (nproc), %s, %s, kernel %s, %s RAM"
             % (m["nproc"], m["cpu"], m["arch"], m["kernel"],
                "%.1f GiB" % (m["mem_total_kib"] / 1048576.0) if m.get("mem_total_kib") else "?"))
    L.append("- os: %s; load average before/after: %s / %s"
             % (m["os"], data["load_before"], data["load_after"]))
    L.append("- git: %s (%s) \"%s\"%s" % (
        g["commit"] or "unknown", g["branch"], g["subject"],
        "; uncommitted changes in: " + ", ".join(g["uncommitted"]) if g["uncommitted"] else ""))
    L.append("- hello: %s; sidecar: %s" % (v["hello"], v["sidecar"]))
    L.append("- peers: %s; node %s; Flask %s, %s; load generator: %s"
             % (v["nginx"], v["node"], v["flask"], v["gunicorn"], v["wrk"]))
    L.append("- pinning: %s" % ("servers on CPU 1 (`taskset -c 1`), wrk and other clients on "
                                "CPU 0 (`taskset -c 0`)" if cfg["pin"] else "none"))
    L += ["", "Settings: `%s`" % " ".join("%s=%s" % kv for kv in cfg["settings"]), ""]
    return L


def targets(data, sections):
    L = ["## Targets and headline ratios", ""]
    for name, mod in sections:
        sec = data["sections"].get(name)
        if sec is None:
            continue
        if sec.get("error"):
            L.append("- **%s**: FAILED: %s" % (name, sec["error"]))
        elif sec.get("skipped") and not hasattr(mod, "verdict"):
            L.append("- **%s**: not measured: %s" % (name, sec["skipped"]))
        elif hasattr(mod, "verdicts"):
            L += mod.verdicts(sec)
        else:
            L.append(mod.verdict(sec))
    L.append("")
    failures = data.get("failures") or []
    if failures:
        L += ["**Failures** (perf/run exits 1):", ""] + ["- " + f for f in failures] + [""]
    return L


def _curve_axes(ax, series, ylabel, title):
    ticks = [0, 1, 2, 3, 4, 5]
    tags = []
    for name, tag, curve in series:
        if tag not in tags:
            tags.append(tag)
    seen = set()
    names = [name for name, _, _ in series]
    for name, tag, curve in series:
        pts = sorted((float(p), us) for p, us in curve.items() if float(p) < 100)
        xs = [-math.log10(1 - p / 100.0) for p, _ in pts]
        ys = [max(us, 1) / 1000.0 for _, us in pts]
        first = name not in seen
        seen.add(name)
        ax.plot(xs, ys, STYLES[tags.index(tag) % len(STYLES)], color=color_of(name, names),
                label=name if first else None, linewidth=1.6 if first else 1.1)
    ax.set_yscale("log")
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"])
    ax.set_xlim(0, 5)
    ax.set_xlabel("percentile")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="rounds: " + " ".join("%s=%s" % (t, STYLES[i % len(STYLES)])
                                          for i, t in enumerate(tags)),
              fontsize=8, title_fontsize=7)


def write_plot(path, data):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = data["config"]
    panels = []
    direct = data["sections"].get("direct") or {}
    for mode in ("keepalive", "pipelined"):
        series = [(r["server"], r["tag"], r["curve"]) for r in direct.get("runs", [])
                  if r["mode"] == mode and r.get("curve")]
        if series:
            title = ("hello direct, keep-alive, -c%d" % cfg["connections"] if mode == "keepalive"
                     else "hello direct, pipelined depth %d, -c%d" % (cfg["depth"],
                                                                       cfg["connections"]))
            panels.append((series, "per-batch latency, measured (ms, log)" if mode == "pipelined"
                           else "latency as wrk reports it (ms, log)", title))
    compose = data["sections"].get("compose") or {}
    series = [("%s -c%d" % (r["path"], r["connections"]), r["tag"], r["curve"])
              for r in compose.get("runs", []) if r.get("curve")]
    if series:
        panels.append((series, "latency as wrk reports it (ms, log)",
                       "compose path: wrk -> nginx (project config) -> upstream"))
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 5.4), squeeze=False)
    for ax, (series, ylabel, title) in zip(axes[0], panels):
        _curve_axes(ax, series, ylabel, title)
    fig.suptitle("GET / latency distributions (wrk -t1, %s runs), %s UTC"
                 % (cfg["duration"], data["started"]))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def tail(data):
    return ["## Files", "",
            "Latency distributions: [latency.png](latency.png). Raw data: %s, wrk's own output "
            "of every run: %s/ (both git-ignored)."
            % (rel(data["json"]), rel(os.path.join(OUT_DIR, data["config"]["logs"]))), ""]
