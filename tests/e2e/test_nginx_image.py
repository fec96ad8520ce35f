"""The nginx image on its own (Dockerfile.multi target nginx, FROM scratch): what it holds and
how it runs, with plain `docker run` next to a hello container on a private network.

    /usr/bin/python3 -m pytest -q tests/e2e/test_nginx_image.py

It builds the nginx and hello targets under tags of its own (E2E_PROJECT-image/...: the
layers are shared with compose's builds), so nothing another run or engineer uses is touched;
every container and the network it makes carry the project's name and are removed at the end.

Environment: E2E_PROJECT (default hellostack-e2e), E2E_UP_TIMEOUT (seconds for the builds,
default 1800).
"""

import json
import os
import re
import time
import uuid

import pytest
import requests

import e2e_common
from e2e_common import REPO, wait_for

PROJECT = os.environ.get("E2E_PROJECT", "hellostack-e2e")
BUILD_TIMEOUT = float(os.environ.get("E2E_UP_TIMEOUT", "1800"))
NGINX_IMAGE = "%s-image/nginx:test" % PROJECT
HELLO_IMAGE = "%s-image/hello:test" % PROJECT

MB = 1000 * 1000
NGINX_SIZE_LIMIT = 20 * MB  # issue 17; the official nginx:alpine is larger (README, "Images")

# Every command nginx/entrypoint.sh runs, and where it must come from in the image: busybox
# applets (linked in /bin), and the two dynamically linked programs busybox cannot replace.
ENTRYPOINT_APPLETS = ("sh", "id", "chown", "awk", "sort", "tr", "sed", "mv", "sleep", "cat")
# Each program with arguments that make it run and exit 0 (so its libraries load).
ENTRYPOINT_PROGRAMS = {"/usr/bin/setpriv": ["--version"],
                       "/usr/bin/getent": ["hosts", "localhost"],  # NSS files, /etc/hosts
                       "/usr/sbin/nginx": ["-v"]}

# How compose, Swarm and Helm run it: read-only root, tmpfs where it writes, no capabilities.
HARDENED = ["--read-only",
            "--tmpfs", "/run:size=1m,uid=65532,gid=65532",
            "--tmpfs", "/var/lib/nginx:size=16m,uid=65532,gid=65532",
            "--tmpfs", "/etc/nginx/conf.d:size=1m,uid=65532,gid=65532",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--sysctl", "net.ipv4.ip_unprivileged_port_start=80"]


def run(cmd, timeout=60, check=True):
    return e2e_common.run(cmd, timeout, check=check)


def inspect(obj):
    return json.loads(run(["docker", "inspect", obj]).stdout)[0]


def build(target, tag):
    run(["docker", "build", "-q", "-f", "Dockerfile.multi", "--target", target, "-t", tag, "."],
        timeout=BUILD_TIMEOUT)


@pytest.fixture(scope="module")
def images():
    run([str(REPO / "scripts" / "base-images.sh")], timeout=BUILD_TIMEOUT)
    build("nginx", NGINX_IMAGE)
    build("hello", HELLO_IMAGE)
    return inspect(NGINX_IMAGE)


@pytest.fixture(scope="module")
def net(images):
    """A private network with one hello container named hello (nginx's default upstream)."""
    name = "%s-image-%s" % (PROJECT, uuid.uuid4().hex[:8])
    made = []
    run(["docker", "network", "create", name])
    try:
        hello = run(["docker", "run", "-d", "--name", name + "-hello", "--network", name,
                     "--network-alias", "hello", "--read-only", "--cap-drop", "ALL",
                     HELLO_IMAGE]).stdout.strip()
        made.append(hello)
        yield {"name": name, "containers": made}
    finally:
        for c in made:
            run(["docker", "rm", "-f", c], check=False)
        run(["docker", "network", "rm", name], check=False)


def start_nginx(net, *args, user=None):
    """An nginx container on the network, port 80 published on a free loopback port."""
    cmd = ["docker", "run", "-d", "--network", net["name"], "-p", "127.0.0.1::80"]
    if user:
        cmd += ["--user", user]
    cid = run(cmd + list(args) + [NGINX_IMAGE]).stdout.strip()
    net["containers"].append(cid)
    port = int(run(["docker", "port", cid, "80/tcp"]).stdout.split(":")[-1])
    return cid, "http://127.0.0.1:%d" % port


def process_uids(cid):
    """Real and effective uid of every process in the container, read from the host's /proc."""
    pids = run(["docker", "top", cid, "-o", "pid"]).stdout.split()[1:]
    uids = set()
    for pid in pids:
        try:
            with open("/proc/%s/status" % pid) as f:
                m = re.search(r"^Uid:\s+(\d+)\s+(\d+)", f.read(), re.M)
        except FileNotFoundError:
            continue  # exited meanwhile
        uids.add((int(m.group(1)), int(m.group(2))))
    return uids


def image_run(*argv, entrypoint="/bin/busybox"):
    return run(["docker", "run", "--rm", "--network", "none", "--entrypoint", entrypoint,
                NGINX_IMAGE, *argv], check=False)


# ------------------------------------------------------------------ what the image holds

def test_size_within_limit(images, capsys):
    size = images["Size"]
    with capsys.disabled():
        print("\n[e2e] image nginx (%s): %d bytes = %.2f MB (limit %.0f MB)"
              % (images["Id"][7:19], size, size / MB, NGINX_SIZE_LIMIT / MB))
    assert size <= NGINX_SIZE_LIMIT


def test_config_user_signal_entrypoint(images):
    cfg = images["Config"]
    assert cfg["User"] == "65532:65532", cfg["User"]
    assert cfg["StopSignal"] == "SIGQUIT", cfg.get("StopSignal")
    assert cfg["Entrypoint"] == ["/usr/local/bin/nginx-entrypoint"], cfg["Entrypoint"]
    # 8081: stub_status for the metrics exporter (nginx/status.conf), never published.
    assert set(cfg["ExposedPorts"]) == {"80/tcp", "443/tcp", "8081/tcp"}, cfg["ExposedPorts"]
    assert cfg["Labels"].get("hello-stack.packages") == "/usr/share/doc/image-packages.txt"


def test_no_package_manager(images):
    """Nothing of apt or dpkg: no database, no tools (busybox's dpkg applet is not linked)."""
    p = image_run("find", "/", "-xdev", "(", "-name", "apt*", "-o", "-name", "dpkg*", "-o",
                  "-path", "/var/lib/dpkg", "-o", "-path", "/var/cache", ")")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "", p.stdout
    p = image_run("ls", "/bin")
    assert "dpkg" not in p.stdout.split(), p.stdout


def test_package_list_names_nginx(images):
    p = image_run("cat", "/usr/share/doc/image-packages.txt")
    assert p.returncode == 0, p.stderr
    packages = dict(line.split(" ", 1) for line in p.stdout.splitlines()
                    if line and not line.startswith("#"))
    # Debian versions: an optional epoch, then a digit first.
    assert all(re.match(r"^(\d+:)?\d[\w.+~:-]*$", v) for v in packages.values()), packages
    for name in ("nginx", "libc6", "libssl3", "busybox-static"):
        assert name in packages, (name, p.stdout)
    # The licences travel with the binaries.
    p = image_run("ls", "/usr/share/doc/nginx/copyright", "/usr/share/doc/libssl3/copyright")
    assert p.returncode == 0, p.stderr


def test_every_command_of_the_entrypoint_exists(images):
    script = (REPO / "nginx" / "entrypoint.sh").read_text()
    for applet in ENTRYPOINT_APPLETS:
        assert re.search(r"\b%s\b" % applet, script), "%s is no longer used: update the list" % applet
    p = image_run("--list")
    missing = set(ENTRYPOINT_APPLETS) - set(p.stdout.split())
    assert not missing, "busybox lacks %s" % sorted(missing)
    p = image_run("ls", "-l", "/bin")
    linked = {m.group(1) for m in re.finditer(r" (\S+) -> busybox$", p.stdout, re.M)}
    assert set(ENTRYPOINT_APPLETS) <= linked, (sorted(linked), p.stdout)
    # The dynamic programs load: each runs in the image and finds its libraries.
    for program, args in ENTRYPOINT_PROGRAMS.items():
        assert re.search(r"\b%s\b" % os.path.basename(program), script), program
        p = image_run(*args, entrypoint=program)
        assert p.returncode == 0, (program, p.stdout, p.stderr)


# ------------------------------------------------------------------ how it runs

def test_proxies_as_65532_read_only_and_stops_on_sigquit(net, capsys):
    cid, base = start_nginx(net, *HARDENED)
    r = wait_for("nginx to proxy GET / to hello",
                 lambda: (lambda r: r.status_code == 200 and r)(requests.get(base + "/", timeout=2)),
                 timeout=30)
    assert r.content == b'{"msg":"Hello, World!"}'
    assert r.headers.get("X-Served-By")
    assert "Strict-Transport-Security" not in r.headers  # plain HTTP: never HSTS
    assert requests.get(base + "/baz", timeout=5).json() == {"msg": "Hello, Baz!"}
    assert requests.get(base + "/metrics", timeout=5).status_code == 404

    c = inspect(cid)
    assert c["HostConfig"]["ReadonlyRootfs"] is True
    uids = process_uids(cid)
    assert uids == {(65532, 65532)}, uids

    start = time.monotonic()
    run(["docker", "kill", "-s", "SIGQUIT", cid])
    wait_for("nginx to exit on SIGQUIT", lambda: not inspect(cid)["State"]["Running"], timeout=10,
             interval=0.05)
    took = time.monotonic() - start
    state = inspect(cid)["State"]
    with capsys.disabled():
        print("\n[e2e] nginx image: SIGQUIT -> exit %d in %.2f s" % (state["ExitCode"], took))
    assert state["ExitCode"] == 0, run(["docker", "logs", cid]).stderr
    assert took < 5


def test_started_as_root_drops_to_65532(net):
    """The Swarm way (a tmpfs there has no uid option): root with CHOWN, SETUID and SETGID only;
    the entry point hands the mounts to 65532 and re-executes itself with util-linux's setpriv
    (busybox's lacks --reuid), so no process stays root."""
    cid, base = start_nginx(net, "--read-only", "--tmpfs", "/run", "--tmpfs", "/var/lib/nginx",
                            "--tmpfs", "/etc/nginx/conf.d", "--cap-drop", "ALL",
                            "--cap-add", "CHOWN", "--cap-add", "SETUID", "--cap-add", "SETGID",
                            "--sysctl", "net.ipv4.ip_unprivileged_port_start=80", user="0:0")
    wait_for("nginx to proxy GET /baz to hello",
             lambda: requests.get(base + "/baz", timeout=2).status_code == 200, timeout=30)
    uids = process_uids(cid)
    assert uids == {(65532, 65532)}, uids


def test_half_mounted_tls_is_refused(net, tmp_path):
    """A certificate without its key (a secret forgotten) must stop the start, not silently
    serve plain HTTP only."""
    cert = tmp_path / "cert.pem"
    cert.write_text("not used\n")
    cert.chmod(0o644)
    p = run(["docker", "run", "--rm", "--network", net["name"], *HARDENED,
             "-v", "%s:/run/secrets/tls_cert:ro" % cert, NGINX_IMAGE], timeout=60, check=False)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "nginx-entrypoint: error: TLS file /run/secrets/tls_key is missing" in p.stderr, p.stderr


@pytest.mark.parametrize("env,line", [
    ("NGINX_API_AUTH=basic", "NGINX_API_AUTH 'basic': expected jwt or off"),
    ("NGINX_ACCOUNTS_PORT=70000", "NGINX_ACCOUNTS_PORT '70000': expected a port number 1-65535"),
    ("NGINX_ACCOUNTS_HOST=a b", "NGINX_ACCOUNTS_HOST 'a b': expected a host name"),
    ("NGINX_HTTPS_PORT=0443", "NGINX_HTTPS_PORT '0443': expected a port number 1-65535"),
])
def test_bad_settings_end_with_one_line_and_status_2(net, env, line):
    p = run(["docker", "run", "--rm", "--network", net["name"], *HARDENED, "-e", env,
             NGINX_IMAGE], timeout=60, check=False)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert p.stderr == "nginx-entrypoint: error: %s\n" % line, p.stderr


def test_without_accounts_the_rest_still_serves(net):
    """A stack without accounts (or before it is up): nginx starts, / and /baz are served,
    accounts' routes answer 502 and /api/ 503 (never a pass), until the name resolves."""
    cid, base = start_nginx(net, *HARDENED)
    wait_for("nginx to proxy GET /baz to hello",
             lambda: requests.get(base + "/baz", timeout=2).status_code == 200, timeout=30)
    logs = run(["docker", "logs", cid])
    assert "accounts=accounts:8080 at: (not resolved yet) api_auth=jwt" in logs.stdout, logs.stdout
    assert requests.post(base + "/login", json={}, timeout=5).status_code == 502
    r = requests.get(base + "/api/baz", headers={"Authorization": "Bearer x.y.z"}, timeout=5)
    assert r.status_code == 503 and r.json()["error"] == "unavailable", r.text
