"""End-to-end test of the Swarm deployment (deploy/swarm/stack.yml): zero-downtime updates.

    /usr/bin/python3 -m pytest -s tests/e2e/test_swarm.py

Makes this node a single-node swarm if it is not in one yet (and leaves it again at the end),
builds the images under test tags, deploys the stack with nginx on port 18080 (so it can run
beside the compose e2e on port 80; the PostgreSQL passwords and accounts' Ed25519 signing key
Swarm secrets from a temporary SECRETS_DIR), waits for 4/4 healthy hello replicas, for visits
counting through nginx and for 2 healthy accounts tasks, then:

  0. signs up and logs in through nginx and gets /api/baz with the token (200) and without it,
     or with a forged one (401), with logins in parallel on the argon2id pool meanwhile; then
     rotates accounts' signing key in the three deploys docs/DEPLOYMENT.md gives (add k2, sign
     with k2, drop k1) while a client keeps logging in and using every token it holds: no
     token is refused before its key is dropped;
  1. rolls hello to a new image under constant keep-alive load through nginx and counts every
     answer: no non-2xx, no failed request, every task on the new spec, and for every old
     replica nginx stopped sending before its listener closed;
  2. starts an update whose replicas never get healthy: Swarm rolls it back by itself and the
     old replicas never stop;
  3. poisons one replica (its /health answers 503): Docker marks it unhealthy, Swarm stops it and
     starts a replacement in the same slot, and the service answers throughout;
  4. removes the stack (waiting for its networks to go) and its PostgreSQL volume, and leaves
     the swarm if it made it, also when something failed.

Every part prints what it measured and how long it took.

Environment: SWARM_HTTP_PORT (published port, default 18080), SWARM_STACK (stack name, default
hello-e2e), SWARM_PUBLISH_MODE (ingress or host; default ingress when the kernel has IPVS, which
Swarm's routing mesh needs, else host), SWARM_LOAD_CONNECTIONS (default 8), E2E_UP_TIMEOUT
(seconds allowed for building the images, default 1800), STACK_SWARM_E2E=0 skips the module.

The tests share one stack and run in file order.
"""

import base64
import collections
import contextlib
import http.client
import json
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
import yaml

from e2e_common import REPO, HeyLoad, Load, check_load, port_open, run, tail, wait_for

STACK_FILE = REPO / "deploy" / "swarm" / "stack.yml"
STACK = os.environ.get("SWARM_STACK", "hello-e2e")
HOST = "127.0.0.1"
HTTP_PORT = int(os.environ.get("SWARM_HTTP_PORT") or "18080")
UP_TIMEOUT = float(os.environ.get("E2E_UP_TIMEOUT", "1800"))
LOAD_CONNECTIONS = int(os.environ.get("SWARM_LOAD_CONNECTIONS") or "8")
TAG_OLD, TAG_NEW = "e2e-swarm-a", "e2e-swarm-b"
IMAGE_TARGETS = ("hello", "sidecar", "nginx", "visits", "accounts", "redis", "postgres")
# The Swarm secrets the stack reads from SECRETS_DIR: postgres_password, accounts_db_password
# and accounts-keys/k1.pem.
SECRETS_DIR = tempfile.mkdtemp(prefix="swarm-e2e-secrets-")
REPLICAS = 4
ACCOUNTS_REPLICAS = 2
HELLO = STACK + "_hello"
NGINX = STACK + "_nginx"
ACCOUNTS = STACK + "_accounts"
# Every path answers 2xx through nginx while a replica drains: /health and /status answer 503
# there, which nginx retries on another replica (proxy_next_upstream skips the tried ones).
LOAD_PATHS = ("/", "/swarm", "/health", "/status")
# While a replica is poisoned, its /status answers 410, which nginx intercepts and asks every
# replica in turn (@retry1.. rendered by nginx/entrypoint.sh), so it stays in the load too.
POISONED_LOAD_PATHS = LOAD_PATHS

pytestmark = [
    pytest.mark.skipif(shutil.which("docker") is None, reason="docker is not installed"),
    pytest.mark.skipif(os.environ.get("STACK_SWARM_E2E") == "0", reason="STACK_SWARM_E2E=0"),
]


# ------------------------------------------------------------------ helpers

def docker(*args, timeout=60, check=True, env=None):
    return run(["docker", *args], timeout=timeout, check=check, env=env)


def inspect(*objs):
    return json.loads(docker("inspect", *objs, timeout=30).stdout)


def get(path, timeout=5):
    """One GET through nginx on a fresh connection: (status, headers, body)."""
    conn = http.client.HTTPConnection(HOST, HTTP_PORT, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def post_json(path, body, timeout=10):
    """One POST of a JSON body through nginx on a fresh connection: (status, headers, body)."""
    conn = http.client.HTTPConnection(HOST, HTTP_PORT, timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(body),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def get_with(path, headers, timeout=5):
    """One GET through nginx with these request headers: (status, headers, body)."""
    conn = http.client.HTTPConnection(HOST, HTTP_PORT, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def base64_url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def served_by(n):
    """X-Served-By counts (the task name) over n GET / through nginx."""
    seen = collections.Counter()
    for _ in range(n):
        status, headers, _ = get("/")
        assert status == 200, status
        seen[headers.get("X-Served-By")] += 1
    return seen


def stamp(text):
    """Seconds since the epoch of an RFC 3339 time as Docker and hello print it (UTC, up to
    nanoseconds, trailing Z)."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", text)
    assert m, text
    t = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return t.timestamp() + (float("0." + m.group(2)) if m.group(2) else 0.0)


def say(capsys, fmt, *args):
    with capsys.disabled():
        print("\n[swarm] " + (fmt % args if args else fmt), flush=True)


# ------------------------------------------------------------------ swarm objects

def tasks(service, desired="running"):
    """The service's tasks (docker inspect objects) with that desired state."""
    ids = docker("service", "ps", "-q", "--no-trunc", "--filter", "desired-state=" + desired,
                 service, timeout=30).stdout.split()
    return inspect(*ids) if ids else []


def task_container(task):
    return ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")


def task_ip(task):
    for att in task.get("NetworksAttachments") or []:
        if att["Network"]["Spec"]["Name"] == STACK + "_backend":
            return att["Addresses"][0].split("/")[0]
    return None


def container_health(cid):
    try:
        c = inspect(cid)[0]
    except Exception:  # noqa: BLE001 - removed meanwhile
        return None, None
    return (c["State"].get("Health") or {}).get("Status"), c["State"]["Status"]


def healthy_replicas():
    """IDs of hello tasks that run with a healthy container, when all REPLICAS of them do."""
    ts = [t for t in tasks(HELLO) if t["Status"]["State"] == "running"]
    if len(ts) != REPLICAS:
        return None
    if any(container_health(task_container(t))[0] != "healthy" for t in ts):
        return None
    return {t["ID"] for t in ts}


def healthy_accounts():
    """The accounts tasks, when all ACCOUNTS_REPLICAS run with a healthy container."""
    ts = [t for t in tasks(ACCOUNTS) if t["Status"]["State"] == "running"]
    if len(ts) != ACCOUNTS_REPLICAS:
        return None
    if any(container_health(task_container(t))[0] != "healthy" for t in ts):
        return None
    return ts


def peak_memory(cid):
    """The container's peak memory use in bytes (cgroup v1's max_usage, v2's memory.peak where
    the kernel has it), or None where this host does not expose it."""
    for path in ("/sys/fs/cgroup/memory/docker/%s/memory.max_usage_in_bytes" % cid,
                 "/sys/fs/cgroup/system.slice/docker-%s.scope/memory.peak" % cid):
        try:
            with open(path) as f:
                return int(f.read())
        except OSError:
            continue
    return None


def nginx_container():
    ids = docker("ps", "-q", "--no-trunc", "--filter",
                 "label=com.docker.swarm.service.name=" + NGINX, timeout=30).stdout.split()
    assert len(ids) == 1, ids
    return ids[0]


def nginx_upstream_changes(since):
    """[(time, [ip, ...])]: the replica sets nginx/entrypoint.sh switched to (graceful reload)
    since the given epoch time, from its log lines with Docker's timestamps."""
    p = docker("logs", "-t", "--since", "%.3f" % since, nginx_container(), timeout=60)
    out = []
    for line in (p.stdout + p.stderr).splitlines():
        m = re.match(r"(\S+) nginx-entrypoint: replicas changed: (.*); reloading$", line)
        if m:
            out.append((stamp(m.group(1)), m.group(2).split()))
    return sorted(out)


def hello_events(cid):
    """{event: (time, rest)} of the first SIGNAL / DRAIN / EXIT lines of a hello container."""
    p = docker("logs", cid, timeout=60)
    events = {}
    for line in (p.stdout + p.stderr).splitlines():
        m = re.match(r"(\S+) hello (SIGNAL|DRAIN|EXIT) ?(.*)$", line)
        if m and m.group(2) not in events:
            events[m.group(2)] = (stamp(m.group(1)), m.group(3))
    return events


# ------------------------------------------------------------------ load

# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def swarm(capsys_module):
    """This node as a swarm manager; a swarm made here is left again at the end."""
    p = docker("info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
               timeout=30, check=False)
    if p.returncode != 0:
        pytest.skip("docker is not usable here: %s" % tail(p.stderr, n=3))
    state, manager = (p.stdout.split() + ["", ""])[:2]
    initialized = False
    # swarm init creates this bridge and swarm leave keeps it: removed again if made here.
    had_gwbridge = docker("network", "inspect", "docker_gwbridge", timeout=30,
                          check=False).returncode == 0
    if state == "inactive":
        t0 = time.monotonic()
        p = docker("swarm", "init", timeout=60, check=False)
        if p.returncode != 0 and "advertise" in p.stderr:
            # Several addresses and none chosen: a single-node swarm can use loopback.
            p = docker("swarm", "init", "--advertise-addr", "127.0.0.1", timeout=60, check=False)
        if p.returncode != 0:
            pytest.fail("docker swarm init failed:\n%s" % tail(p.stdout, p.stderr))
        initialized = True
        say(capsys_module, "docker swarm init: %.1f s (left again at the end)",
            time.monotonic() - t0)
    elif state != "active" or manager != "true":
        pytest.skip("this node is in swarm state %r (manager: %s); need an active manager or none"
                    % (state, manager))
    else:
        say(capsys_module, "this node is already a swarm manager: the test will not leave it")
    try:
        yield initialized
    finally:
        if initialized:
            t0 = time.monotonic()
            docker("swarm", "leave", "--force", timeout=120, check=False)
            if not had_gwbridge:
                docker("network", "rm", "docker_gwbridge", timeout=60, check=False)
            say(capsys_module, "docker swarm leave --force: %.1f s", time.monotonic() - t0)


@pytest.fixture(scope="module")
def capsys_module(request):
    """What capsys.disabled() is to a test, for the module-scoped fixtures: their timings are
    printed even without -s."""
    capman = request.config.pluginmanager.getplugin("capturemanager")

    class _Disabled:
        def disabled(self):
            if capman is None:
                return contextlib.nullcontext()
            return capman.global_and_fixture_disabled()

    return _Disabled()


@pytest.fixture
def start_load():
    """A Load, started by the test; stopped at the end whatever happened."""
    loads = []
    yield lambda **kw: loads.append(Load(HOST, HTTP_PORT, **{
        "connections": LOAD_CONNECTIONS, "paths": LOAD_PATHS, **kw}).start()) or loads[-1]
    for one in loads:
        one.finish()


@pytest.fixture(scope="module")
def images(swarm, capsys_module):
    """hello-stack/{hello,sidecar,nginx,visits,redis,postgres}:TAG_OLD and
    hello-stack/hello:TAG_NEW, a different image (same build, one more label) for the update."""
    t0 = time.monotonic()
    run([str(REPO / "scripts" / "base-images.sh")], timeout=UP_TIMEOUT)
    for target in IMAGE_TARGETS:
        docker("build", "-q", "-f", "Dockerfile.multi", "--target", target,
               "-t", "hello-stack/%s:%s" % (target, TAG_OLD), ".", timeout=UP_TIMEOUT)
    docker("build", "-q", "-f", "Dockerfile.multi", "--target", "hello",
           "--label", "org.opencontainers.image.version=" + TAG_NEW,
           "-t", "hello-stack/hello:" + TAG_NEW, ".", timeout=UP_TIMEOUT)
    ids = {tag: inspect("hello-stack/hello:" + tag)[0]["Id"] for tag in (TAG_OLD, TAG_NEW)}
    assert ids[TAG_OLD] != ids[TAG_NEW], ids
    say(capsys_module, "images built: %.1f s (hello %s = %s, %s = %s)", time.monotonic() - t0,
        TAG_OLD, ids[TAG_OLD][7:19], TAG_NEW, ids[TAG_NEW][7:19])
    try:
        yield ids
    finally:
        tags = ["hello-stack/%s:%s" % (t, TAG_OLD) for t in IMAGE_TARGETS]
        docker("rmi", *tags, "hello-stack/hello:" + TAG_NEW, timeout=120, check=False)


def publish_mode():
    mode = os.environ.get("SWARM_PUBLISH_MODE")
    if mode:
        return mode
    # The routing mesh (ingress) balances with IPVS; without it a published port only works in
    # host mode. Swarm loads the module when it creates the ingress network, if it can.
    return "ingress" if os.path.exists("/proc/net/ip_vs") else "host"


def stack_env():
    env = dict(os.environ)
    mode = publish_mode()
    # Random passwords, and accounts' first signing key as an operator makes one (Swarm reads
    # the files itself when it creates the secrets: their owner does not matter here).
    for name in ("postgres_password", "accounts_db_password"):
        pw = os.path.join(SECRETS_DIR, name)
        if not os.path.exists(pw):
            with open(os.open(pw, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(os.urandom(32).hex() + "\n")
    key = os.path.join(SECRETS_DIR, "accounts-keys", "k1.pem")
    if not os.path.exists(key):
        os.makedirs(os.path.dirname(key), mode=0o700, exist_ok=True)
        run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key], timeout=30)
    env.update(HTTP_PORT=str(HTTP_PORT), STACK_TAG=TAG_OLD, HELLO_CHAOS="on",
               SECRETS_DIR=SECRETS_DIR, VISITS_RESET="on", HTTP_PUBLISH_MODE=mode,
               NGINX_UPDATE_ORDER="start-first" if mode == "ingress" else "stop-first")
    return env


def remove_stack(capsys_module):
    """docker stack rm, then wait until its networks are gone (the last thing to go)."""
    t0 = time.monotonic()
    docker("stack", "rm", STACK, timeout=120, check=False)

    def gone():
        label = "label=com.docker.stack.namespace=" + STACK
        nets = docker("network", "ls", "-q", "--filter", label, timeout=30).stdout.split()
        ctrs = docker("ps", "-aq", "--filter", label, timeout=30).stdout.split()
        return not nets and not ctrs

    wait_for("the stack's containers and networks to be removed", gone, timeout=90, interval=0.5)
    # Its volume (PostgreSQL's data) outlives `stack rm`: a test run leaves nothing behind.
    docker("volume", "rm", "-f", STACK + "_postgres-data", timeout=60, check=False)
    return time.monotonic() - t0


@pytest.fixture(scope="module")
def stack(swarm, images, capsys_module):
    if docker("stack", "ls", "--format", "{{.Name}}", timeout=30).stdout.split().count(STACK):
        remove_stack(capsys_module)
    if port_open(HOST, HTTP_PORT):
        pytest.fail("port %d is already in use; set SWARM_HTTP_PORT to a free port" % HTTP_PORT)
    t0 = time.monotonic()
    try:
        p = docker("stack", "deploy", "--resolve-image", "never", "-c", str(STACK_FILE), STACK,
                   timeout=120, env=stack_env())
        ignored = re.findall(r"Ignoring unsupported options: (.*)", p.stdout + p.stderr)
        say(capsys_module, "docker stack deploy (publish mode %s, port %d); the CLI said: "
            "ignoring unsupported options: %s", publish_mode(), HTTP_PORT,
            ", ".join(ignored) or "none")
        wait_for("%d healthy hello replicas" % REPLICAS, healthy_replicas, timeout=120,
                 interval=0.5)
        wait_for("nginx to answer on port %d" % HTTP_PORT,
                 lambda: get("/", timeout=2)[0] == 200, timeout=60, interval=0.5)
        wait_for("nginx to balance over all %d replicas" % REPLICAS,
                 lambda: len(served_by(4 * REPLICAS)) == REPLICAS, timeout=60, interval=0.5)
        wait_for("visits to count through nginx", lambda: get("/visits", timeout=2)[0] == 200,
                 timeout=120, interval=0.5)
        wait_for("%d healthy accounts tasks" % ACCOUNTS_REPLICAS, healthy_accounts, timeout=60,
                 interval=0.5)
        say(capsys_module, "deployed, %d/%d hello healthy, nginx answering, visits counting, "
            "%d/%d accounts healthy: %.1f s", REPLICAS, REPLICAS, ACCOUNTS_REPLICAS,
            ACCOUNTS_REPLICAS, time.monotonic() - t0)
        yield
    finally:
        # Shown by pytest when something failed.
        print(docker("stack", "ps", "--no-trunc", STACK, timeout=30, check=False).stdout)
        seconds = remove_stack(capsys_module)
        shutil.rmtree(SECRETS_DIR, ignore_errors=True)
        say(capsys_module, "docker stack rm until its networks were gone: %.1f s", seconds)


# ------------------------------------------------------------------ the stack as deployed

def test_deployed_as_specified(stack, capsys):
    spec = inspect(HELLO)[0]["Spec"]
    cs = spec["TaskTemplate"]["ContainerSpec"]
    assert spec["Mode"]["Replicated"]["Replicas"] == REPLICAS
    assert spec["UpdateConfig"]["Order"] == "start-first"
    assert spec["UpdateConfig"]["Parallelism"] == 1
    assert spec["UpdateConfig"]["FailureAction"] == "rollback"
    assert spec["UpdateConfig"]["Monitor"] > 0
    assert spec["RollbackConfig"]["Order"] == "start-first"
    assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "any"
    assert spec["EndpointSpec"]["Mode"] == "dnsrr"
    env = dict(e.split("=", 1) for e in cs["Env"])
    delay = float(env["HELLO_DRAIN_DELAY"].rstrip("s"))
    drain = float(env["HELLO_DRAIN_TIMEOUT"].rstrip("s"))
    assert cs["StopGracePeriod"] / 1e9 > delay + drain, cs["StopGracePeriod"]

    # Hardening, as specified and as a running replica really got it.
    status = check_hardened_task(HELLO, {STACK + "_backend"})
    c = inspect(task_container(tasks(HELLO)[0]))[0]
    net = inspect(STACK + "_backend")[0]
    assert net["Internal"] is True and net["Driver"] == "overlay"
    # security_opt (no-new-privileges) is dropped by `docker stack deploy`: shown, not asserted.
    say(capsys, "hello task as running: read-only root, CapEff=%s, uid 65532, pids limit %d, "
        "memory limit %d MiB, networks %s; NoNewPrivs=%s (security_opt is ignored by Swarm)",
        status["CapEff"].strip(), c["HostConfig"]["PidsLimit"], c["HostConfig"]["Memory"] >> 20,
        sorted(c["NetworkSettings"]["Networks"]), status["NoNewPrivs"].strip())

    # The sidecar: the same hardening as hello, as specified and as running.
    sidecar_status = check_hardened_task(STACK + "_sidecar", {STACK + "_backend"})
    say(capsys, "sidecar task as running: read-only root, CapEff=%s, uid 65532, backend only",
        sidecar_status["CapEff"].strip())

    # visits, accounts, redis and postgres: hardened the same way, on the internal network
    # only; passwords and keys Swarm secrets (files), never in the environment.
    for service in ("visits", "accounts", "redis", "postgres"):
        st = check_hardened_task(STACK + "_" + service, {STACK + "_backend"})
        say(capsys, "%s task as running: read-only root, CapEff=%s, uid 65532, backend only",
            service, st["CapEff"].strip())
    for service, secrets in (("visits", ["postgres_password"]),
                             ("postgres", ["postgres_password", "accounts_db_password"]),
                             ("accounts", ["accounts_db_password",
                                           "/run/secrets/accounts-keys/k1.pem"])):
        cs = inspect(STACK + "_" + service)[0]["Spec"]["TaskTemplate"]["ContainerSpec"]
        files = [x["File"] for x in cs["Secrets"]]
        assert sorted(f["Name"] for f in files) == sorted(secrets), (service, cs["Secrets"])
        assert all((f["UID"], f["GID"], f["Mode"]) == ("65532", "65532", 0o400) for f in files), \
            (service, files)
        assert not [e for e in cs.get("Env", []) if "PASSWORD=" in e], cs["Env"]
    aspec = inspect(ACCOUNTS)[0]["Spec"]
    acs = aspec["TaskTemplate"]["ContainerSpec"]
    aenv = dict(e.split("=", 1) for e in acs["Env"])
    assert aspec["UpdateConfig"]["Order"] == "start-first", aspec["UpdateConfig"]
    assert aspec["EndpointSpec"]["Mode"] == "dnsrr", aspec["EndpointSpec"]
    assert acs["StopGracePeriod"] / 1e9 > float(aenv["ACCOUNTS_DRAIN_TIMEOUT"].rstrip("s"))
    assert aenv["ACCOUNTS_TRUST_REAL_IP"] == "on" and aenv["ACCOUNTS_SIGNING_KEY"] == "k1", aenv
    # Each key is a file of its own inside the keys directory, readable by accounts alone, on a
    # read-only mount: as the running task sees it (its mount table and its root, from here).
    pid = inspect(task_container(tasks(ACCOUNTS)[0]))[0]["State"]["Pid"]
    key_path = "/run/secrets/accounts-keys/k1.pem"
    with open("/proc/%d/mountinfo" % pid) as f:
        mounts = [line.split() for line in f]
    key = [m for m in mounts if m[4] == key_path]  # mount point, then its options
    assert len(key) == 1 and "ro" in key[0][5].split(","), key
    st = os.stat("/proc/%d/root%s" % (pid, key_path))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65532, 65532, 0o400), st
    keys_dir = os.stat("/proc/%d/root/run/secrets/accounts-keys" % pid)
    say(capsys, "accounts' key k1 as running: %s, a read-only mount, uid/gid %d/%d, mode %o; "
        "its directory uid %d, mode %o", key_path, st.st_uid, st.st_gid,
        stat.S_IMODE(st.st_mode), keys_dir.st_uid, stat.S_IMODE(keys_dir.st_mode))

    # Only nginx publishes a port.
    for service in (HELLO, STACK + "_sidecar", STACK + "_visits", ACCOUNTS, STACK + "_redis",
                    STACK + "_postgres"):
        assert not (inspect(service)[0]["Endpoint"].get("Ports") or []), service
    ncs = inspect(NGINX)[0]["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert ncs["ReadOnly"] is True and ncs["CapabilityDrop"] == ["ALL"], ncs
    assert ncs.get("StopSignal") == "SIGQUIT", ncs
    assert {"NGINX_UPSTREAM_HOST=tasks.hello", "NGINX_ACCOUNTS_HOST=tasks.accounts",
            "NGINX_API_AUTH=jwt"} <= set(ncs["Env"]), ncs["Env"]
    ports = inspect(NGINX)[0]["Endpoint"]["Ports"]
    assert [(p["TargetPort"], p["PublishedPort"]) for p in ports] == [(80, HTTP_PORT)], ports
    # nginx's container starts as root to hand its tmpfs mounts to 65532, then its entry point
    # re-executes itself as 65532: the running nginx master is not root and has no capability.
    nc = inspect(nginx_container())[0]
    with open("/proc/%d/status" % nc["State"]["Pid"]) as f:
        nstatus = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
    assert nstatus["Uid"].split()[:2] == ["65532", "65532"], nstatus["Uid"]
    assert int(nstatus["CapEff"], 16) == 0, nstatus["CapEff"]
    # nginx is PID 1 (exec'd last by its entry point) and reaps every child, orphans included
    # (waitpid(-1)), so it needs no init.
    assert nstatus["Name"].strip() == "nginx", nstatus["Name"]
    nlimits = inspect(NGINX)[0]["Spec"]["TaskTemplate"]["Resources"]["Limits"]
    assert nlimits["MemoryBytes"] and nlimits["NanoCPUs"] and nlimits["Pids"], nlimits
    assert nc["HostConfig"]["ReadonlyRootfs"] is True
    assert nc["HostConfig"]["CapDrop"] == ["ALL"]
    assert nc["HostConfig"]["PidsLimit"] == nlimits["Pids"]
    assert nc["HostConfig"]["Memory"] == nlimits["MemoryBytes"]
    assert {STACK + "_frontend", STACK + "_backend"} <= set(nc["NetworkSettings"]["Networks"])
    say(capsys, "nginx task as running: %s as uid 65532, CapEff=%s, read-only root",
        nstatus["Name"].strip(), nstatus["CapEff"].strip())


def check_hardened_task(service, networks):
    """A service spec'd and running as hello is: read-only root, every capability dropped,
    memory, CPU and pids limits, user 65532 with no effective capability, these networks
    only. Returns the /proc status of its running task."""
    spec = inspect(service)[0]["Spec"]
    cs = spec["TaskTemplate"]["ContainerSpec"]
    limits = spec["TaskTemplate"]["Resources"]["Limits"]
    assert cs["ReadOnly"] is True and cs["CapabilityDrop"] == ["ALL"], (service, cs)
    assert cs["User"] == "65532:65532", (service, cs)
    assert limits["MemoryBytes"] and limits["NanoCPUs"] and limits["Pids"], (service, limits)
    c = inspect(task_container(tasks(service)[0]))[0]
    hc = c["HostConfig"]
    assert hc["ReadonlyRootfs"] is True and hc["CapDrop"] == ["ALL"], (service, hc)
    assert (hc["PidsLimit"], hc["Memory"]) == (limits["Pids"], limits["MemoryBytes"]), service
    assert set(c["NetworkSettings"]["Networks"]) == networks, (service, c["NetworkSettings"])
    with open("/proc/%d/status" % c["State"]["Pid"]) as f:
        status = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
    assert status["Uid"].split()[1] == "65532", (service, status["Uid"])
    assert int(status["CapEff"], 16) == 0, (service, status["CapEff"])
    return status


# ------------------------------------------------------------------ 0. accounts

# Parallel logins: 4 per replica (nginx's round robin over 2), one per libuv pool thread, each
# hash holding 19 MiB. Within nginx's limit on /login (burst 10 at once from one address, 5/s
# after), which answers 429 beyond it.
LOGIN_BURST = 8


def test_signup_login_and_api_behind_a_token(stack, capsys):
    """Through nginx only: POST /account, POST /login for a token, /api/baz with it (200, as
    hello's /baz) and without it or with a forged one (401, never reaching hello). Needs the
    nginx routes to accounts and POSTGRES_APPS in the postgres image."""
    user = {"username": "swarm-ada", "email": "swarm-ada@example.com",
            "password": "correct horse battery"}
    t0 = time.monotonic()
    deadline = t0 + 60
    first = []  # each try's status, or the error of a try that got no answer
    while True:
        # accounts may still be connecting to PostgreSQL (503 + Retry-After; 502 while nginx
        # has no accounts task yet). The stack is new (its volume goes with it): a 409 means
        # one of our earlier tries got through without its answer reaching us.
        try:
            status, _, body = post_json("/account", user)
        except OSError as e:
            first.append(repr(e))
        else:
            first.append(status)
            if status == 201 or (status == 409 and any(isinstance(x, str) for x in first)):
                break
            if status not in (502, 503, 504):
                pytest.fail("POST /account through nginx: %d %r (answers so far: %s); nginx "
                            "and postgres need main's accounts routes and POSTGRES_APPS"
                            % (status, body[:200], first))
        if time.monotonic() > deadline:
            pytest.fail("no sign-up through nginx within 60 s: answers %s" % first)
        time.sleep(1)
    body = json.loads(body)
    if "id" in body:
        assert (body["username"], body["email"]) == (user["username"], user["email"]), body
        assert "password" not in body and "password_hash" not in body, body
    t_signup = time.monotonic() - t0

    status, headers, body = post_json("/login", {"email": user["email"],
                                                 "password": user["password"]})
    assert status == 200, (status, body)
    login = json.loads(body)
    assert login["token_type"] == "Bearer" and login["expires_in"] > 0, login
    token = login["access_token"]
    header = json.loads(base64_url(token.split(".")[0]))
    assert header == {"alg": "EdDSA", "typ": "JWT", "kid": "k1"}, header

    status, _, body = get_with("/api/baz", {"Authorization": "Bearer " + token})
    assert (status, json.loads(body)) == (200, {"msg": "Hello, Baz!"}), (status, body)
    status, headers, body = get("/api/baz")
    assert status == 401, (status, body)
    assert b"Hello" not in body, body
    # The same token with one signature byte changed: refused by every replica's /auth.
    head, claims, sig = token.split(".")
    forged = ".".join((head, claims, ("A" if sig[0] != "A" else "B") + sig[1:]))
    status, _, body = get_with("/api/baz", {"Authorization": "Bearer " + forged})
    assert status == 401, (status, body)
    # Both replicas hold k1: the token passes whichever one nginx asks (8 tries over 2).
    for _ in range(8):
        status, _, body = get_with("/api/baz", {"Authorization": "Bearer " + token})
        assert status == 200, (status, body)

    # A burst of logins (argon2id on every pool thread of both replicas at once), then the
    # replicas' peak memory against the stack's limit.
    def one_login(_):
        return post_json("/login", {"email": user["email"], "password": user["password"]},
                         timeout=30)[0]

    t1 = time.monotonic()
    with ThreadPoolExecutor(LOGIN_BURST) as pool:
        statuses = list(pool.map(one_login, range(LOGIN_BURST)))
    burst = time.monotonic() - t1
    assert statuses == [200] * len(statuses), collections.Counter(statuses)
    limit = inspect(ACCOUNTS)[0]["Spec"]["TaskTemplate"]["Resources"]["Limits"]["MemoryBytes"]
    peaks = [peak_memory(task_container(t)) for t in tasks(ACCOUNTS)]
    say(capsys, "accounts through nginx: sign-up answered after %.1f s (%s), login, /api/baz "
        "200 with the token, 401 without and forged; %d logins, %d at a time, in %.1f s, all "
        "200; peak memory per task %s MiB of the %d MiB limit", t_signup,
        " ".join(map(str, first)), len(statuses), LOGIN_BURST, burst,
        ["%.1f" % (p / 2**20) if p else "n/a" for p in peaks], limit >> 20)


def login(email, password):
    status, _, body = post_json("/login", {"email": email, "password": password}, timeout=30)
    assert status == 200, (status, body)
    token = json.loads(body)["access_token"]
    return token, json.loads(base64_url(token.split(".")[0]))["kid"]


def deploy_stack(files, **env):
    """docker stack deploy of these stack files (merged in order) over the running stack."""
    args = ["stack", "deploy", "--resolve-image", "never"]
    for f in files:
        args += ["-c", str(f)]
    docker(*args, STACK, timeout=120, env={**stack_env(), **env})


def wait_accounts_update(since):
    """Until an update of accounts started after `since` (epoch seconds) has completed."""
    def done():
        st = inspect(ACCOUNTS)[0].get("UpdateStatus") or {}
        if not st.get("StartedAt") or stamp(st["StartedAt"][:19] + "Z") < int(since) - 1:
            return None
        if st.get("State") in ("paused", "rollback_started", "rollback_completed"):
            pytest.fail("accounts' update did not go through: %r" % st)
        return st.get("State") == "completed" and st

    return wait_for("accounts' update to complete", done, timeout=180, interval=0.5)


class TokenUser(threading.Thread):
    """A client that logs in every 0.3 s (below nginx's 5/s per address on /login) and right
    away uses the new token and every earlier one on /api/baz, each on a new connection, so
    every replica's /auth sees every token. Counts, per key, the tokens it got and the /api
    answers that were not 200."""

    def __init__(self, email, password, tokens):
        super().__init__(daemon=True)
        self.email, self.password = email, password
        self.tokens = list(tokens)  # (token, kid), earlier logins first
        self.retired = set()  # kids whose tokens the client no longer uses
        self.stop = threading.Event()
        self.logins = collections.Counter()
        self.checks = 0
        self.refused = []  # (kid, status)

    def retire(self, kid):
        """Stop using the tokens this key signed, as when they have expired: a refusal of one
        still in flight is not counted."""
        self.retired.add(kid)

    def run(self):
        while not self.stop.wait(0.3):
            try:
                self.tokens.append(login(self.email, self.password))
                self.logins[self.tokens[-1][1]] += 1
                live = [t for t in self.tokens if t[1] not in self.retired]
                for token, kid in live[-8:] + live[:1]:
                    status, _, _ = get_with("/api/baz", {"Authorization": "Bearer " + token})
                    self.checks += 1
                    if status != 200 and kid not in self.retired:
                        self.refused.append((kid, status))
            except AssertionError as e:
                self.refused.append(("login", str(e)[:120]))
            except OSError as e:
                self.refused.append(("error", repr(e)))

    def finish(self):
        self.stop.set()
        self.join(30)
        return self


def test_key_rotation_logs_nobody_out(stack, capsys):
    """docs/DEPLOYMENT.md's rotation, as an operator runs it: (1) deploy with the new key k2
    added (a second stack file), k1 still signing; (2) deploy with ACCOUNTS_SIGNING_KEY=k2;
    (3) deploy a copy of stack.yml without k1. Each is a start-first rolling update of
    accounts while a client keeps logging in and using every token it got: no token is
    refused until its key is dropped; then k1's tokens are refused and k2's pass."""
    email, password = "swarm-bob@example.com", "another correct horse"
    status, _, body = post_json("/account", {"username": "swarm-bob", "email": email,
                                             "password": password})
    assert status == 201, (status, body)
    first = login(email, password)
    assert first[1] == "k1", first

    key2 = os.path.join(SECRETS_DIR, "accounts-keys", "k2.pem")
    run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key2], timeout=30)
    with_k2 = os.path.join(SECRETS_DIR, "accounts-key-k2.yml")
    with open(with_k2, "w") as f:
        yaml.safe_dump({"version": "3.9", "services": {"accounts": {"secrets": [{
            "source": "accounts_key_k2", "target": "/run/secrets/accounts-keys/k2.pem",
            "uid": "65532", "gid": "65532", "mode": 0o400}]}},
            "secrets": {"accounts_key_k2": {"file": key2}}}, f)
    # Step 3's stack file: the operator's copy of stack.yml with k1 taken out.
    without_k1 = os.path.join(SECRETS_DIR, "stack-without-k1.yml")
    with open(STACK_FILE) as f:
        spec = yaml.safe_load(f)
    acc = spec["services"]["accounts"]
    acc["secrets"] = [x for x in acc["secrets"] if x["source"] != "accounts_key_k1"]
    del spec["secrets"]["accounts_key_k1"]
    with open(without_k1, "w") as f:
        yaml.safe_dump(spec, f)

    steps = (("add k2", [STACK_FILE, with_k2], "k1"),
             ("sign with k2", [STACK_FILE, with_k2], "k2"),
             ("drop k1", [without_k1, with_k2], "k2"))
    user = TokenUser(email, password, [first])
    user.start()
    try:
        for name, files, signing in steps:
            t0 = time.time()
            logins_before, refused_before = sum(user.logins.values()), len(user.refused)
            if name == "drop k1":
                # In production this deploy comes once k1's last token has expired (15 min
                # after step 2); here the client stops using them instead.
                user.retire("k1")
            deploy_stack(files, ACCOUNTS_SIGNING_KEY=signing)
            st = wait_accounts_update(t0)
            say(capsys, "key rotation, %s: accounts updated in %.1f s (%s .. %s); meanwhile %d "
                "logins, refused %s", name, time.time() - t0, st.get("StartedAt"),
                st.get("CompletedAt"), sum(user.logins.values()) - logins_before,
                user.refused[refused_before:] or "none")
            time.sleep(2)  # a few more rounds on the new spec alone
    finally:
        user.finish()
    say(capsys, "key rotation: %d logins (per signing key %s), %d token checks through nginx, "
        "refused %s", sum(user.logins.values()), dict(user.logins), user.checks,
        user.refused or "none")
    assert not user.refused, user.refused
    assert user.logins["k1"] > 0 and user.logins["k2"] > 0, user.logins

    # The end state: k2 alone signs and verifies, k1's tokens are refused.
    token, kid = login(email, password)
    assert kid == "k2", kid
    assert get_with("/api/baz", {"Authorization": "Bearer " + token})[0] == 200
    assert get_with("/api/baz", {"Authorization": "Bearer " + first[0]})[0] == 401
    status, _, body = get("/.well-known/jwks.json")
    assert status == 200 and [k["kid"] for k in json.loads(body)["keys"]] == ["k2"], body
    # `docker stack deploy` leaves the secret no service uses any more (docs/DEPLOYMENT.md:
    # remove it by hand); `docker stack rm` takes it with the stack.
    names = docker("secret", "ls", "--format", "{{.Name}}", timeout=30).stdout.split()
    assert STACK + "_accounts_key_k1" in names, names


# ------------------------------------------------------------------ 1. rolling update

def test_rolling_update_under_load_drops_nothing(stack, images, capsys, start_load):
    old = {t["ID"]: t for t in tasks(HELLO)}
    assert len(old) == REPLICAS
    load = start_load()
    hey = HeyLoad("http://%s:%d/" % (HOST, HTTP_PORT))
    time.sleep(2)
    t0 = time.time()
    docker("service", "update", "--detach", "--no-resolve-image",
           "--image", "hello-stack/hello:" + TAG_NEW, HELLO, timeout=60)

    def update_state():
        s = inspect(HELLO)[0].get("UpdateStatus") or {}
        if s.get("State") in ("paused", "rollback_started", "rollback_paused",
                              "rollback_completed"):
            pytest.fail("the update did not go through: %r" % s)
        return s.get("State") == "completed" and s

    status = wait_for("the update to complete", update_state, timeout=180, interval=0.5)
    assert stamp(status["StartedAt"][:19] + "Z") >= int(t0) - 1, status
    t_completed = time.time()

    # The last replaced replica is still draining: keep the load on until every old one exited.
    def old_exited():
        return all(container_health(task_container(t))[1] in ("exited", None) for t in old.values())

    wait_for("the old replicas to exit", old_exited, timeout=60, interval=0.5)
    t_exited = time.time()
    time.sleep(1)
    load.finish()
    hey.finish()

    changes = nginx_upstream_changes(load.started)
    say(capsys, "rolling update of %d replicas: UpdateStatus completed after %.1f s "
        "(%s .. %s), last old replica exited after %.1f s; nginx reloaded %d times",
        REPLICAS, t_completed - t0, status.get("StartedAt"), status.get("CompletedAt"),
        t_exited - t0, len(changes))
    say(capsys, "load: %s", load.summary())
    say(capsys, "%s", hey.summary())
    hey.check()

    # Every replica runs the new spec, healthy.
    new = wait_for("%d healthy replicas" % REPLICAS, healthy_replicas, timeout=30)
    assert not new & set(old), "some tasks were not replaced"
    for t in tasks(HELLO):
        assert t["Spec"]["ContainerSpec"]["Image"] == "hello-stack/hello:" + TAG_NEW
        assert inspect(task_container(t))[0]["Image"] == images[TAG_NEW]
    per_task = collections.Counter()
    for by, n in load.served.items():
        per_task[by.rsplit(".", 1)[-1]] += n
    say(capsys, "2xx answers per task, old %s -> new %s",
        [per_task[i] for i in old], [per_task[i] for i in new])
    assert all(per_task[i] > 0 for i in new), (dict(per_task), new)

    # For every old replica: nginx had dropped it before its listener closed (DRAIN start).
    margins = []
    for task_id, t in old.items():
        ip = task_ip(t)
        events = hello_events(task_container(t))
        assert "SIGNAL" in events and "DRAIN" in events, (task_id, events)
        assert "EXIT" in events and events["EXIT"][1] == "code=0", (task_id, events)
        dropped = [when for when, ips in changes if ip not in ips]
        assert dropped, "nginx never dropped %s (%s): %r" % (ip, task_id, changes)
        margin = events["DRAIN"][0] - dropped[0]
        margins.append(margin)
        say(capsys, "old replica %s (%s): out of nginx %.2f s before SIGTERM, %.2f s before its "
            "listener closed (DRAIN %s)", task_id[:12], ip, events["SIGNAL"][0] - dropped[0],
            margin, events["DRAIN"][1])
        assert margin > 0.5, "nginx still sent to %s when it closed its listener" % ip
    check_load(load, len(changes))


# ------------------------------------------------------------------ 2. a failing update

def test_failing_update_rolls_back_untouched(stack, capsys, start_load):
    """An update whose replicas never get healthy (hello listens where its HEALTHCHECK does not
    look): with start-first the old replicas are never stopped, the first new one fails, and
    failure_action rollback restores the previous spec on its own."""
    before = wait_for("%d healthy replicas" % REPLICAS, healthy_replicas, timeout=30)
    previous = (inspect(HELLO)[0].get("UpdateStatus") or {}).get("StartedAt")
    load = start_load()
    time.sleep(1)
    t0 = time.time()
    docker("service", "update", "--detach", "--no-resolve-image",
           "--env-add", "HELLO_LISTEN=0.0.0.0:9999", HELLO, timeout=60)

    messages = []

    def rolled_back():
        s = inspect(HELLO)[0].get("UpdateStatus") or {}
        if s.get("StartedAt") == previous:
            return None
        if s.get("Message") and s["Message"] not in messages:
            messages.append(s["Message"])
        if s.get("State") in ("completed", "paused", "rollback_paused"):
            pytest.fail("expected an automatic rollback, got %r" % s)
        return s.get("State") == "rollback_completed" and s

    wait_for("the update to be rolled back", rolled_back, timeout=180, interval=0.5)
    t_rolled_back = time.time()
    time.sleep(1)
    load.finish()

    after = wait_for("%d healthy replicas" % REPLICAS, healthy_replicas, timeout=30)
    spec = inspect(HELLO)[0]["Spec"]["TaskTemplate"]["ContainerSpec"]
    env = dict(e.split("=", 1) for e in spec["Env"])
    failed = [t for t in tasks(HELLO, desired="shutdown") if "HELLO_LISTEN=0.0.0.0:9999" in
              (t["Spec"]["ContainerSpec"].get("Env") or [])]
    say(capsys, "failing update: rolled back after %.1f s (%s); failed new task(s): %s; the %d "
        "old replicas kept running: %s", t_rolled_back - t0, " / ".join(messages),
        ["%s %s %r" % (t["ID"][:12], t["Status"]["State"], t["Status"].get("Err")) for t in failed],
        REPLICAS, after == before)
    say(capsys, "load: %s", load.summary())
    assert env["HELLO_LISTEN"] == "0.0.0.0:8080", env
    assert after == before, "replicas were replaced by a rolled-back update"
    assert failed, "no task of the failing spec was started"
    check_load(load, len(nginx_upstream_changes(load.started)))


# ------------------------------------------------------------------ 3. unhealthy replica

def test_unhealthy_replica_is_replaced(stack, capsys, start_load):
    victim = tasks(HELLO)[0]
    slot, cid = victim["Slot"], task_container(victim)
    load = start_load(paths=POISONED_LOAD_PATHS)
    time.sleep(1)
    t0 = time.time()
    # The scratch image has no shell, but hello --healthcheck does one GET (exit 0 on 200), and
    # /poison answers GET: from inside the replica's own container, on its loopback.
    p = docker("exec", cid, "/hello", "--healthcheck", "http://127.0.0.1:8080/poison", timeout=30)
    assert "status 200" in p.stdout + p.stderr, p.stdout + p.stderr
    wait_for("Docker to mark the poisoned replica unhealthy",
             lambda: container_health(cid)[0] == "unhealthy", timeout=60, interval=0.25)
    t_unhealthy = time.time()

    def replaced():
        current = [t for t in tasks(HELLO) if t["Slot"] == slot]
        return (len(current) == 1 and current[0]["ID"] != victim["ID"]
                and current[0]["Status"]["State"] == "running"
                and container_health(task_container(current[0]))[0] == "healthy" and current[0])

    wait_for("Swarm to stop the poisoned container",
             lambda: container_health(cid)[1] in ("exited", None), timeout=60, interval=0.25)
    t_exited = time.time()
    replacement = wait_for("a healthy replacement in slot %d" % slot, replaced, timeout=90,
                           interval=0.25)
    t_replaced = time.time()
    wait_for("%d healthy replicas" % REPLICAS, healthy_replicas, timeout=60)
    time.sleep(1)
    load.finish()

    gone = inspect(victim["ID"])[0]
    c = inspect(cid)[0]
    failed_probes = [h for h in c["State"]["Health"]["Log"] if h["ExitCode"] != 0]
    say(capsys, "poisoned %s (slot %d): unhealthy after %.1f s, stopped (drained, exit %d) after "
        "%.1f s, replacement %s healthy after %.1f s; old task %s/%s, its container's health %s",
        victim["ID"][:12], slot, t_unhealthy - t0, c["State"]["ExitCode"], t_exited - t0,
        replacement["ID"][:12], t_replaced - t0, gone["DesiredState"], gone["Status"]["State"],
        c["State"]["Health"]["Status"])
    say(capsys, "load: %s", load.summary())
    assert gone["DesiredState"] == "shutdown"
    assert c["State"]["Health"]["Status"] == "unhealthy"
    assert failed_probes and "status 503" in failed_probes[-1]["Output"], failed_probes
    check_load(load, len(nginx_upstream_changes(load.started)))
