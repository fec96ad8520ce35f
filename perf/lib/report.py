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


# Each section's part of results.md, and its lines in the targets list, sit between HTML
# comments (invisible when rendered): a run of some sections only (PERF_SECTIONS) replaces
# those and keeps the rest (bench.py's splice_markdown).
def section_begin(name, kind="section"):
    return "<!-- perf %s %s -->" % (kind, name)


def section_end(name, kind="section"):
    return "<!-- /perf %s %s -->" % (kind, name)


def section_targets(data, name, mod):
    sec = data["sections"][name]
    L = [section_begin(name, "targets")]
    if sec.get("error"):
        L.append("- **%s**: FAILED: %s" % (name, sec["error"]))
    elif sec.get("skipped") and not hasattr(mod, "verdict"):
        L.append("- **%s**: not measured: %s" % (name, sec["skipped"]))
    elif hasattr(mod, "verdicts"):
        L += mod.verdicts(sec)
    else:
        L.append(mod.verdict(sec))
    return L + [section_end(name, "targets")]


def targets(data, sections):
    L = ["## Targets and headline ratios", ""]
    for name, mod in sections:
        if name in data["sections"]:
            L += section_targets(data, name, mod)
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


def _replace_marked(text, name, kind, new):
    """text with the marked block of (kind, name) replaced by new; None if it has none."""
    begin, end = section_begin(name, kind), section_end(name, kind)
    i = text.find(begin)
    j = text.find(end, i)
    if i < 0 or j < 0:
        return None
    return text[:i] + new + text[j + len(end):]


def splice(text, name, part, target_lines):
    """results.md's text with one section's part and target lines replaced (or added: the
    part before "## Files", the lines at the end of the targets list) -> the new text, or None
    when the old text has the section's heading without markers."""
    out = _replace_marked(text, name, "section", part.rstrip("\n"))
    if out is None:
        heading = next(line for line in part.splitlines() if line.startswith("## "))
        if heading in text.splitlines():
            return None
        tail = text.find("\n## Files")
        tail = len(text) if tail < 0 else tail + 1
        out = text[:tail] + part.rstrip("\n") + "\n\n" + text[tail:]
    text = out
    out = _replace_marked(text, name, "targets", target_lines)
    if out is None:
        start = text.find("## Targets and headline ratios")
        if start < 0:
            return None
        # The list ends where the next part begins: the failures or the first section.
        ends = [k for k in (text.find("\n**Failures**", start), text.find("\n<!-- perf section",
                                                                          start),
                            text.find("\n## ", start + 3)) if k >= 0]
        end = min(ends) if ends else len(text)
        head = text[:end].rstrip("\n")
        out = head + "\n" + target_lines + "\n" + text[end:]
    return out
