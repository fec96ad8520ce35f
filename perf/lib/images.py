"""Section 6, images: the size of each final image of the stack (hello, sidecar, nginx), built
from Dockerfile.multi, and of the Flask baseline image (perf/baselines/flask/Dockerfile: the
seed's app on debian:bookworm-slim with Debian's python3-flask and gunicorn), as
`docker image inspect` reports them. Needs Docker and the local base image; otherwise the
section says why it measured nothing. Short mode builds them too (with Docker's cache, the e2e
tier's images cost nothing more), so CI checks that this section works."""

import subprocess
import time

from .common import ROOT, log, md_table

BASE_IMAGE = "debian:bookworm-slim"
TAG = "hello-stack-perf/%s:latest"
TARGETS = ("hello", "sidecar", "nginx")
LIMITS_MB = {"hello": 5, "sidecar": 10}  # tests/e2e asserts these
MB = 1000 * 1000


def docker(*args, timeout=60):
    return subprocess.run(["docker"] + list(args), capture_output=True, text=True, timeout=timeout)


def unavailable_reason(cfg):
    if not cfg.get("docker"):
        return "no docker command on this machine"
    try:
        p = docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return "docker info failed: %s" % e
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["?"])[-1]
        return "the Docker engine does not answer (%s)" % last
    if docker("image", "inspect", BASE_IMAGE).returncode != 0:
        return "base image %s is missing (scripts/base-images.sh makes it)" % BASE_IMAGE
    return None


def size_of(tag):
    p = docker("image", "inspect", "--format", "{{.Size}}", tag)
    return int(p.stdout.strip()) if p.returncode == 0 and p.stdout.strip().isdigit() else None


def build(cmd, cwd, timeout):
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "build took longer than %d s (PERF_IMAGE_BUILD_TIMEOUT)" % timeout, None
    took = time.monotonic() - t0
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        return None, "docker build failed: %s" % " / ".join(tail), took
    return True, None, took


def run(cfg, tmp):
    data = {"failures": [], "images": {}}
    why = unavailable_reason(cfg)
    if why:
        data["skipped"] = why
        log("images: not measured: %s" % why)
        return data
    jobs = [(t, ["docker", "build", "-f", "Dockerfile.multi", "--target", t, "-t", TAG % t, "."],
             ROOT) for t in TARGETS]
    jobs.append(("flask baseline", ["docker", "build", "-t", TAG % "flask-baseline",
                                    "perf/baselines/flask"], ROOT))
    data["commands"] = [" ".join(c) for _, c, _ in jobs]
    for name, cmd, cwd in jobs:
        log("images: %s" % " ".join(cmd))
        ok, err, took = build(cmd, cwd, cfg["image_build_timeout"])
        tag = cmd[cmd.index("-t") + 1]
        entry = {"tag": tag, "build_s": took}
        if ok:
            entry["bytes"] = size_of(tag)
            if entry["bytes"] is None:
                entry["error"] = "docker image inspect gave no size"
        else:
            entry["error"] = err
        data["images"][name] = entry
        log("images: %s: %s" % (name, "%.2f MB" % (entry["bytes"] / MB) if entry.get("bytes")
                                else "not measured: " + entry["error"]))
    return data


def verdict(data):
    if data.get("skipped"):
        return "- **images**: not measured: %s" % data["skipped"]
    parts = []
    for t, limit in LIMITS_MB.items():
        b = data["images"].get(t, {}).get("bytes")
        if b:
            parts.append("%s %.2f MB (target < %d MB, as tests/e2e asserts: %s)"
                         % (t, b / MB, limit, "met" if b < limit * MB else "NOT met"))
    fl, h = (data["images"].get("flask baseline", {}).get("bytes"),
             data["images"].get("hello", {}).get("bytes"))
    if fl and h:
        parts.append("the Flask baseline image is %.0fx hello's" % (fl / h))
    return "- **images**: " + ("; ".join(parts) or "no data")


def markdown(cfg, data):
    L = ["## 6. Images", ""]
    if data.get("skipped"):
        return L + ["Not measured: %s." % data["skipped"], ""]
    L += ["Built with the commands below (the layer cache makes a rebuild quick), sizes as "
          "`docker image inspect --format '{{.Size}}'` reports them (MB = 10^6 bytes, as in "
          "the README). `perf/baselines/flask/Dockerfile` is the seed's deployment: the Flask "
          "app on `%s` with Debian's python3-flask and gunicorn, `python3 -m flask run` on "
          "8080." % BASE_IMAGE, ""]
    L += ["```"] + data["commands"] + ["```", "", verdict(data), ""]
    rows = []
    h = data["images"].get("hello", {}).get("bytes")
    for name, e in data["images"].items():
        rows.append([name, e["tag"], "%.2f" % (e["bytes"] / MB) if e.get("bytes") else
                     "not measured: " + e.get("error", "?"),
                     "%.1fx" % (e["bytes"] / h) if e.get("bytes") and h else "—",
                     "%.0f" % e["build_s"] if e.get("build_s") is not None else "—"])
    L += md_table(["image", "tag", "size MB", "vs hello", "build s"], rows, "llrrr") + [""]
    return L


def headline(data):
    out = []
    for name, e in data.get("images", {}).items():
        if e.get("bytes"):
            out.append(("image %s MB" % name, e["bytes"] / MB))
    return out
