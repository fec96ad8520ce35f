"""Observability end to end: the stack started with `scripts/up.sh --obs -d --scale hello=2`
(compose profile obs: Prometheus, Alertmanager, alert-sink and the nginx, Redis and PostgreSQL
exporters, with visits and its stores), checked through
Prometheus' and Alertmanager's HTTP APIs on their loopback ports and the sink's log.

    /usr/bin/python3 -m pytest -q tests/e2e/test_observability.py

Its own compose project (E2E_PROJECT-obs) on free loopback ports, with
tests/e2e/compose.override.yml on top (fast sidecar, external probe of http://nginx/) and a
copy of prometheus/ (PROMETHEUS_CONFIG_DIR) where only the timing differs: scrapes and rule
evaluation every 2 s, every alert's `for:` 5 s, Alertmanager grouping in 1-2 s. The rules and
their expressions are the committed ones. Removed at the end, volumes included.
"""

import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml

import e2e_common
from e2e_common import REPO, wait_for

PROJECT = os.environ.get("E2E_PROJECT", "hellostack-e2e") + "-obs"
UP_TIMEOUT = float(os.environ.get("E2E_UP_TIMEOUT", "1800"))
COMPOSE = str(REPO / "scripts" / "compose")
MB = 1000 * 1000
# FROM scratch images: Debian's binary, its libraries (glibc), busybox for the health check
# and the package list. Measured sizes are printed; these limits leave some room.
IMAGES = {
    "prometheus": ("prometheus", 70 * MB),
    "alertmanager": ("prometheus-alertmanager", 60 * MB),  # amtool is half of it
    "nginx-exporter": ("prometheus-nginx-exporter", 20 * MB),
    "redis-exporter": ("prometheus-redis-exporter", 20 * MB),
    "postgres-exporter": ("prometheus-postgres-exporter", 20 * MB),
}
OBS_SERVICES = ("prometheus", "alertmanager", "alert-sink", "nginx-exporter", "redis-exporter",
                "postgres-exporter")
# Every job and its number of targets.
PRESENT_JOBS = {"hello": 2, "sidecar": 1, "nginx": 1, "alertmanager": 1, "prometheus": 1,
                "visits": 1, "accounts": 1, "redis": 1, "postgres": 1}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fast_config(dest):
    """prometheus/ copied to dest with only the timing changed (see the module docstring)."""
    shutil.copytree(REPO / "prometheus", dest)
    prom = yaml.safe_load((dest / "prometheus.yml").read_text())
    prom["global"].update(scrape_interval="2s", evaluation_interval="2s", scrape_timeout="1s")
    (dest / "prometheus.yml").write_text(yaml.safe_dump(prom))
    for f in (dest / "rules").glob("*.yml"):
        rules = yaml.safe_load(f.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = "5s"
        f.write_text(yaml.safe_dump(rules))
    am = yaml.safe_load((dest / "alertmanager.yml").read_text())
    am["route"].update(group_wait="1s", group_interval="2s", repeat_interval="1h")
    (dest / "alertmanager.yml").write_text(yaml.safe_dump(am))
    # Read by uid 65532 inside the containers.
    for p in [dest, *dest.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


@pytest.fixture(scope="module")
def obs():
    tmp = tempfile.mkdtemp(prefix="obs-e2e-")
    os.chmod(tmp, 0o755)
    config = Path(tmp) / "prometheus"
    fast_config(config)
    ports = {"http": free_port(), "prometheus": free_port(), "alertmanager": free_port()}
    env = dict(os.environ, COMPOSE_PROJECT_NAME=PROJECT, COMPOSE_PATH_SEPARATOR=":",
               COMPOSE_FILE="docker-compose.yml:tests/e2e/compose.override.yml",
               COMPOSE_PROFILES="obs", PROMETHEUS_CONFIG_DIR=str(config),
               HTTP_PORT=str(ports["http"]), PROMETHEUS_PORT=str(ports["prometheus"]),
               ALERTMANAGER_PORT=str(ports["alertmanager"]))
    info = {"env": env, "ports": ports,
            "prom": "http://127.0.0.1:%d" % ports["prometheus"],
            "am": "http://127.0.0.1:%d" % ports["alertmanager"],
            "http": "http://127.0.0.1:%d" % ports["http"]}
    run(info, [COMPOSE, "down", "-v", "--remove-orphans", "--timeout", "5"], 180, check=False)
    try:
        # `--obs` is what the README says; COMPOSE_PROFILES is set as well so that the compose
        # commands below see the same services.
        run(info, [str(REPO / "scripts" / "up.sh"), "--obs", "-d", "--scale", "hello=2"],
            UP_TIMEOUT)
        wait_for("Prometheus to be ready",
                 lambda: requests.get(info["prom"] + "/-/ready", timeout=2).ok, timeout=90)
        wait_for("Alertmanager to be ready",
                 lambda: requests.get(info["am"] + "/-/ready", timeout=2).ok, timeout=90)
        yield info
    finally:
        p = run(info, [COMPOSE, "logs", "--no-color", "--tail", "60", *OBS_SERVICES], 60,
                check=False)
        print(p.stdout + p.stderr)
        run(info, [COMPOSE, "down", "-v", "--remove-orphans", "--timeout", "10"], 180,
            check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def run(info, cmd, timeout, check=True):
    return e2e_common.run(cmd, timeout, check=check, env=info["env"])


def container_ids(info, service):
    p = run(info, ["docker", "ps", "-q", "--no-trunc",
                   "--filter", "label=com.docker.compose.project=" + PROJECT,
                   "--filter", "label=com.docker.compose.service=" + service], 30)
    return p.stdout.split()


def inspect(info, obj):
    return json.loads(run(info, ["docker", "inspect", obj], 30).stdout)[0]


def query(info, expr):
    r = requests.get(info["prom"] + "/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    return r.json()["data"]["result"]


def prom_alerts(info, name):
    r = requests.get(info["prom"] + "/api/v1/alerts", timeout=5)
    r.raise_for_status()
    return [a for a in r.json()["data"]["alerts"] if a["labels"]["alertname"] == name]


def am_alerts(info, name):
    r = requests.get(info["am"] + "/api/v2/alerts", timeout=5)
    r.raise_for_status()
    return [a for a in r.json() if a["labels"]["alertname"] == name]


def sink_log(info):
    p = run(info, ["docker", "logs", container_ids(info, "alert-sink")[0]], 30)
    return p.stdout + p.stderr


# ------------------------------------------------------------------ targets

def test_every_present_target_is_up(obs):
    """Every hello replica (found by DNS), the sidecar, visits, accounts, the nginx, Redis and
    PostgreSQL exporters, Alertmanager and Prometheus: scraped and up, and nothing else."""
    def all_up():
        r = requests.get(obs["prom"] + "/api/v1/targets", timeout=5).json()["data"]
        by_job = {}
        for t in r["activeTargets"]:
            by_job.setdefault(t["labels"]["job"], []).append(t["health"])
        ok = all(by_job.get(job, []) == ["up"] * n for job, n in PRESENT_JOBS.items())
        return (ok and by_job) or None

    by_job = wait_for("every present target up", all_up, timeout=90)
    assert set(by_job) == set(PRESENT_JOBS), by_job
    ups = {(s["metric"]["job"], s["metric"]["instance"]): s["value"][1] for s in query(obs, "up")}
    assert len(ups) == sum(PRESENT_JOBS.values()), ups
    assert set(ups.values()) == {"1"}, ups
    # The hello targets are the replicas' own addresses (the sidecar's `replica` label).
    ips = sorted("%s:8080" % inspect(obs, c)["NetworkSettings"]["Networks"][PROJECT + "_backend"]
                 ["IPAddress"] for c in container_ids(obs, "hello"))
    assert sorted(i for j, i in ups if j == "hello") == ips


def test_stores_are_seen_through_their_exporters(obs):
    """The exporters reach the stores (not only answer themselves), and visits says both are up."""
    for expr in ("redis_up == 1", "pg_up == 1", 'visits_store_up{store="redis"} == 1',
                 'visits_store_up{store="postgres"} == 1', "accounts_store_up == 1"):
        wait_for(expr, lambda e=expr: query(obs, e), timeout=90)


def test_nginx_stub_status_is_scraped_and_not_public(obs):
    wait_for("nginx_up == 1", lambda: query(obs, "nginx_up == 1"), timeout=60)
    nginx = inspect(obs, container_ids(obs, "nginx")[0])
    published = {p for p, b in (nginx["NetworkSettings"]["Ports"] or {}).items() if b}
    assert published == {"80/tcp"}, published
    # On the public port the path is just a name for hello to greet, never nginx's counters.
    r = requests.get(obs["http"] + "/stub_status", timeout=5)
    assert "Active connections" not in r.text, r.text
    for path in ("/metrics", "/poison", "/antidote", "/die"):
        assert requests.get(obs["http"] + path, timeout=5).status_code == 404, path


def test_recording_rules_evaluate(obs):
    """The sidecar's polls are traffic: hello's SLIs have values."""
    for expr in ('job:http_requests:rate5m{job="hello"} > 0',
                 'job:slo_errors_per_request:ratio_rate5m{job="hello"} >= 0',
                 'job:http_request_duration_seconds:p99_rate5m{job="hello"} > 0',
                 'job:sli_availability:ratio_rate5m{job="hello"} > 0',
                 'job:nginx_http_requests:rate5m{job="nginx"} > 0',
                 "slo:availability_objective:ratio == 0.999"):
        wait_for(expr, lambda e=expr: query(obs, e), timeout=90)


# ------------------------------------------------------------------ alerts

def hello_get(info, cid, path):
    """GET on one replica from inside its own container (the port 80 hides the chaos routes;
    the scratch image's binary does one GET with --healthcheck)."""
    return run(info, ["docker", "exec", cid, "/hello", "--healthcheck",
                      "http://127.0.0.1:8080" + path], 30, check=False)


def test_poisoned_replica_fires_reaches_the_sink_is_silenced_and_resolves(obs, capsys):
    cid = container_ids(obs, "hello")[0]
    ip = inspect(obs, cid)["NetworkSettings"]["Networks"][PROJECT + "_backend"]["IPAddress"]
    instance = "%s:8080" % ip
    assert not prom_alerts(obs, "HelloReplicaPoisoned")
    started = time.monotonic()
    try:
        hello_get(obs, cid, "/poison")
        firing = wait_for("HelloReplicaPoisoned firing in Prometheus", lambda: [
            a for a in prom_alerts(obs, "HelloReplicaPoisoned")
            if a["state"] == "firing" and a["labels"]["instance"] == instance], timeout=60)
        fired_after = time.monotonic() - started
        assert firing[0]["labels"]["severity"] == "warning"
        wait_for("the alert in Alertmanager", lambda: [
            a for a in am_alerts(obs, "HelloReplicaPoisoned")
            if a["labels"]["instance"] == instance and a["status"]["state"] == "active"],
            timeout=60)
        line = wait_for("the alert-sink's ALERT status=firing line", lambda: re.search(
            r"^\S+ alert-sink ALERT status=firing alertname=HelloReplicaPoisoned "
            r"severity=warning where=\"%s\" .*$" % re.escape(instance), sink_log(obs), re.M),
            timeout=60)
        # The sidecar sees it too (its /health answers 503: down).
        wait_for("SidecarReplicaDown for the same replica", lambda: [
            a for a in prom_alerts(obs, "SidecarReplicaDown")
            if a["labels"]["replica"] == instance and a["state"] == "firing"], timeout=60)

        # Silenced with amtool (inside the Alertmanager image): Alertmanager marks it.
        am = container_ids(obs, "alertmanager")[0]
        p = run(obs, ["docker", "exec", am, "amtool", "--alertmanager.url=http://127.0.0.1:9093",
                      "silence", "add", "alertname=HelloReplicaPoisoned", "instance=" + instance,
                      "--duration=10m", "--author=e2e", "--comment=test silence"], 30)
        silence_id = p.stdout.strip()
        assert re.fullmatch(r"[0-9a-f-]{36}", silence_id), p.stdout
        wait_for("the alert suppressed by the silence", lambda: [
            a for a in am_alerts(obs, "HelloReplicaPoisoned")
            if a["labels"]["instance"] == instance
            and a["status"]["state"] == "suppressed"
            and silence_id in a["status"]["silencedBy"]], timeout=30)
        run(obs, ["docker", "exec", am, "amtool", "--alertmanager.url=http://127.0.0.1:9093",
                  "silence", "expire", silence_id], 30)
    finally:
        antidote = time.monotonic()
        hello_get(obs, cid, "/antidote")
    wait_for("HelloReplicaPoisoned gone from Prometheus", lambda: not [
        a for a in prom_alerts(obs, "HelloReplicaPoisoned")
        if a["labels"]["instance"] == instance], timeout=60)
    resolved_after = time.monotonic() - antidote
    wait_for("the alert-sink's ALERT status=resolved line", lambda: re.search(
        r"^\S+ alert-sink ALERT status=resolved alertname=HelloReplicaPoisoned "
        r"severity=warning where=\"%s\" " % re.escape(instance), sink_log(obs), re.M),
        timeout=60)
    with capsys.disabled():
        print("\n[e2e] poisoned %s: firing in Prometheus after %.1f s, resolved %.1f s after "
              "/antidote; sink: %s" % (instance, fired_after, resolved_after, line.group(0)))


# ------------------------------------------------------------------ containers and images

def test_obs_containers_are_hardened(obs):
    for service in OBS_SERVICES:
        c = inspect(obs, container_ids(obs, service)[0])
        hc, cfg, what = c["HostConfig"], c["Config"], service + ": "
        user = cfg.get("User") or ""
        assert user.split(":")[0].isdigit() and user.split(":")[0] != "0", what + user
        with open("/proc/%d/status" % c["State"]["Pid"]) as f:
            uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", f.read(), re.M)
        assert uids.group(1) == uids.group(2) == "65532", what + str(uids.groups())
        assert hc["ReadonlyRootfs"] is True, what
        assert "ALL" in (hc.get("CapDrop") or []) and not hc.get("CapAdd"), what
        assert any(o.startswith("no-new-privileges") for o in hc.get("SecurityOpt") or []), what
        assert hc.get("Memory", 0) > 0 and (hc.get("PidsLimit") or 0) > 0, what
        wait_for(service + " healthy", lambda c=c: inspect(obs, c["Id"])["State"]
                 .get("Health", {}).get("Status") == "healthy", timeout=60)
        bindings = {p: b for p, b in (c["NetworkSettings"]["Ports"] or {}).items() if b}
        if service in ("prometheus", "alertmanager"):
            port = {"prometheus": "9090/tcp", "alertmanager": "9093/tcp"}[service]
            assert set(bindings) == {port}, what + str(bindings)
            assert {b["HostIp"] for b in bindings[port]} == {"127.0.0.1"}, what + str(bindings)
        else:
            assert not bindings, what + str(bindings)
    # The TSDB and Alertmanager's state are on named volumes.
    mounts = {m["Destination"]: m for m in
              inspect(obs, container_ids(obs, "prometheus")[0])["Mounts"]}
    assert mounts["/prometheus"]["Type"] == "volume", mounts
    assert mounts["/etc/prometheus"]["RW"] is False, mounts


@pytest.fixture(scope="module")
def images(obs):
    """The images of every observability target, built (from the layer cache) under tags of
    this test's own, removed at the end."""
    built = {}
    for target in IMAGES:
        tag = "%s-images/%s:test" % (PROJECT, target)
        run(obs, ["docker", "build", "-q", "-f", "Dockerfile.multi", "--target", target,
                  "-t", tag, "."], UP_TIMEOUT)
        built[target] = tag
    yield built
    for tag in built.values():
        run(obs, ["docker", "rmi", tag], 60, check=False)


@pytest.mark.parametrize("target", sorted(IMAGES))
def test_images_scratch_small_with_package_list(obs, images, target, capsys):
    package, limit = IMAGES[target]
    image = inspect(obs, images[target])
    size = image["Size"]
    with capsys.disabled():
        print("\n[e2e] image %s: %d bytes = %.2f MB (limit %.0f MB)"
              % (target, size, size / MB, limit / MB))
    assert size <= limit
    assert image["Config"]["User"] == "65532:65532"
    assert image["Config"]["Labels"]["hello-stack.packages"] == "/usr/share/doc/image-packages.txt"
    assert image["Config"].get("Healthcheck", {}).get("Test"), "no HEALTHCHECK"
    p = run(obs, ["docker", "run", "--rm", "--entrypoint", "/bin/busybox", images[target],
                  "cat", "/usr/share/doc/image-packages.txt"], 60)
    names = {line.split()[0] for line in p.stdout.splitlines() if line and line[0] != "#"}
    assert {package, "libc6", "busybox-static"} <= names, p.stdout
    for line in p.stdout.splitlines():
        if line and line[0] != "#":
            assert re.fullmatch(r"[a-z0-9][a-z0-9+.-]+ [0-9A-Za-z.+~:-]+", line), line
    # Nothing of apt or dpkg, and no shell: only busybox itself, with no applet linked.
    p = run(obs, ["docker", "run", "--rm", "--entrypoint", "/bin/busybox", images[target],
                  "find", "/", "-xdev", "-name", "dpkg*", "-o", "-xdev", "-name", "apt*",
                  "-o", "-xdev", "-name", "sh"], 60, check=False)
    assert p.stdout.strip() == "", p.stdout
