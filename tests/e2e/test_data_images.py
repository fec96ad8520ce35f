"""The images of the visits counter on their own (Dockerfile.multi targets redis, postgres and
visits, all FROM scratch): what they hold and how they run, with plain `docker run`, hardened
as compose runs them (read-only root, no capabilities, no-new-privileges).

    E2E_PROJECT=hellostack-mine /usr/bin/python3 -m pytest -q tests/e2e/test_data_images.py

Images are built under tags of the project's own (E2E_PROJECT-image/...: the layers are shared
with compose's builds); every container, volume and temporary file it makes carries the
project's name and is removed at the end.

Environment: E2E_PROJECT (default hellostack-e2e), E2E_UP_TIMEOUT (seconds for the builds,
default 1800).
"""

import json
import os
import re
import shutil
import tarfile
import tempfile
import time
import uuid

import pytest

import e2e_common
from e2e_common import REPO, wait_for

PROJECT = os.environ.get("E2E_PROJECT", "hellostack-e2e")
BUILD_TIMEOUT = float(os.environ.get("E2E_UP_TIMEOUT", "1800"))
IMAGES = {t: "%s-image/%s:test" % (PROJECT, t) for t in ("redis", "postgres", "visits")}

MB = 1000 * 1000
# Issue 17 (redis, postgres) and issue 14 (visits); the official alpine images they are
# compared with are in README, "Images".
SIZE_LIMITS = {"redis": 20 * MB, "postgres": 120 * MB, "visits": 8 * MB}
STOP_SIGNALS = {"redis": "SIGTERM", "postgres": "SIGINT"}
# The packages each image must name in its list (and carry the copyright file of).
PACKAGES = {"redis": ("redis-server", "redis-tools", "libc6", "libssl3", "libjemalloc2"),
            "postgres": ("postgresql-15", "postgresql-client-15", "libpq5", "libc6", "libicu72",
                         "tzdata", "busybox-static")}
# Every command postgres/entrypoint.sh runs that busybox provides (initdb's popen needs sh).
POSTGRES_APPLETS = ("sh", "id", "cat", "sed", "grep", "mkdir", "chmod")

HARDENED = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
PG_TMPFS = ["--tmpfs", "/run/postgresql:size=1m,uid=65532,gid=65532,mode=0700"]


def run(cmd, timeout=60, check=True):
    return e2e_common.run(cmd, timeout, check=check)


def inspect(obj):
    return json.loads(run(["docker", "inspect", obj]).stdout)[0]


@pytest.fixture(scope="module")
def images():
    run([str(REPO / "scripts" / "base-images.sh")], timeout=BUILD_TIMEOUT)
    for target, tag in IMAGES.items():
        run(["docker", "build", "-q", "-f", "Dockerfile.multi", "--target", target, "-t", tag,
             "."], timeout=BUILD_TIMEOUT)
    return {t: inspect(tag) for t, tag in IMAGES.items()}


@pytest.fixture(scope="module")
def made():
    """Containers and volumes to remove at the end, and a private directory for secrets."""
    things = {"containers": [], "volumes": [], "dir": tempfile.mkdtemp(prefix="data-images-")}
    try:
        yield things
    finally:
        for c in things["containers"]:
            run(["docker", "rm", "-f", c], check=False)
        for v in things["volumes"]:
            run(["docker", "volume", "rm", "-f", v], check=False)
        shutil.rmtree(things["dir"], ignore_errors=True)


def name(what):
    return "%s-image-%s-%s" % (PROJECT, what, uuid.uuid4().hex[:8])


def start(made, image, *args):
    cid = run(["docker", "run", "-d", "--name", name("c"), "--network", "none", *args,
               IMAGES[image]]).stdout.strip()
    made["containers"].append(cid)
    return cid


def process_uids(cid):
    """Real and effective uid of every process in the container, read from the host's /proc."""
    uids = set()
    for pid in run(["docker", "top", cid, "-o", "pid"]).stdout.split()[1:]:
        try:
            with open("/proc/%s/status" % pid) as f:
                m = re.search(r"^Uid:\s+(\d+)\s+(\d+)", f.read(), re.M)
        except FileNotFoundError:
            continue
        uids.add((int(m.group(1)), int(m.group(2))))
    return uids


def stop_with(cid, signal, timeout=10):
    """Send the image's stop signal; return (exit code, seconds it took)."""
    t0 = time.monotonic()
    run(["docker", "kill", "-s", signal, cid])
    wait_for("the container to exit on %s" % signal, lambda: not inspect(cid)["State"]["Running"],
             timeout=timeout, interval=0.05)
    return inspect(cid)["State"]["ExitCode"], time.monotonic() - t0


def exported(image, workdir):
    """The files of a container of the image (docker export: one flat tree, no layers)."""
    out = os.path.join(str(workdir), image + ".tar")
    cid = run(["docker", "create", IMAGES[image]]).stdout.strip()
    try:
        run(["docker", "export", "-o", out, cid], timeout=120)
    finally:
        run(["docker", "rm", cid], check=False)
    return tarfile.open(out)


def in_image(image, entrypoint, *argv):
    return run(["docker", "run", "--rm", "--network", "none", "--entrypoint", entrypoint,
                IMAGES[image], *argv], check=False)


# ------------------------------------------------------------------ what the images hold

@pytest.mark.parametrize("image", ["redis", "postgres", "visits"])
def test_size_within_limit(images, image, capsys):
    size = images[image]["Size"]
    with capsys.disabled():
        print("\n[e2e] image %s (%s): %d bytes = %.2f MB (limit %.0f MB)"
              % (image, images[image]["Id"][7:19], size, size / MB, SIZE_LIMITS[image] / MB))
    assert size <= SIZE_LIMITS[image]


@pytest.mark.parametrize("image", ["redis", "postgres", "visits"])
def test_config_user_signal_healthcheck(images, image):
    cfg = images[image]["Config"]
    assert cfg["User"] == "65532:65532", cfg["User"]
    assert cfg.get("StopSignal") == STOP_SIGNALS.get(image), cfg.get("StopSignal")
    assert cfg["Healthcheck"]["Test"][0] == "CMD", cfg["Healthcheck"]
    if image != "visits":
        assert cfg["Labels"].get("hello-stack.packages") == "/usr/share/doc/image-packages.txt"


def test_visits_is_one_static_binary(images, tmp_path):
    """Nothing but /visits in the image, and no ELF interpreter in it (fully static)."""
    with exported("visits", tmp_path) as tf:
        files = [m.name for m in tf.getmembers() if m.isfile()]
        data = tf.extractfile("visits").read()
    # docker export adds the runtime's own files (/.dockerenv, /etc/hosts, /dev/console ...).
    assert [f for f in files if not f.startswith((".dockerenv", "etc/", "dev/"))] == ["visits"], files
    assert data[:4] == b"\x7fELF"
    e_phoff = int.from_bytes(data[32:40], "little")
    e_phentsize = int.from_bytes(data[54:56], "little")
    e_phnum = int.from_bytes(data[56:58], "little")
    types = [int.from_bytes(data[e_phoff + i * e_phentsize:e_phoff + i * e_phentsize + 4],
                            "little") for i in range(e_phnum)]
    assert 3 not in types, "/visits has a PT_INTERP (3): dynamically linked"


@pytest.mark.parametrize("image", ["redis", "postgres"])
def test_no_package_manager_and_a_package_list(images, image, tmp_path):
    # Redis's image has no shell: its files are read from `docker export`.
    with exported(image, tmp_path) as tf:
        names = tf.getnames()
        listing = tf.extractfile("usr/share/doc/image-packages.txt").read().decode()
    assert not [n for n in names if re.search(r"(^|/)(apt|dpkg)[^/]*$", n)], "apt/dpkg files"
    assert not [n for n in names if n.startswith(("var/lib/dpkg", "var/cache/apt"))]
    packages = dict(line.split(" ", 1) for line in listing.splitlines()
                    if line and not line.startswith("#"))
    assert all(re.match(r"^(\d+:)?\d[\w.+~:-]*$", v) for v in packages.values()), packages
    for package in PACKAGES[image]:
        assert package in packages, (package, listing)
        assert "usr/share/doc/%s/copyright" % package in names, package


def test_postgres_entrypoint_commands_exist(images):
    script = (REPO / "postgres" / "entrypoint.sh").read_text()
    for applet in POSTGRES_APPLETS:
        if applet != "sh":
            assert re.search(r"\b%s\b" % applet, script), "%s is no longer used" % applet
    p = in_image("postgres", "/bin/busybox", "--list")
    missing = set(POSTGRES_APPLETS) - set(p.stdout.split())
    assert not missing, missing
    for program, args in (("/usr/bin/postgres", ["--version"]), ("/usr/bin/initdb", ["--version"]),
                          ("/usr/bin/psql", ["--version"]), ("/usr/bin/pg_dump", ["--version"]),
                          ("/usr/bin/pg_isready", ["--version"])):
        p = in_image("postgres", program, *args)
        assert p.returncode == 0 and "15." in p.stdout, (program, p.stdout, p.stderr)
    for program, args in (("/usr/bin/redis-server", ["--version"]),
                          ("/usr/bin/redis-cli", ["--version"])):
        p = in_image("redis", program, *args)
        assert p.returncode == 0 and re.search(r"\b7\.\d+\.\d+", p.stdout), (program, p.stdout)


# ------------------------------------------------------------------ how they run

def redis_cli(cid, *args):
    return run(["docker", "exec", cid, "redis-cli", *args]).stdout.strip()


def test_redis_serves_persists_nothing_stops_on_sigterm(images, made, capsys):
    cid = start(made, "redis", *HARDENED)
    wait_for("redis to answer PING", lambda: redis_cli(cid, "ping") == "PONG", timeout=30)
    assert redis_cli(cid, "config", "get", "save") == "save"  # and an empty value: no save point
    assert redis_cli(cid, "config", "get", "appendonly").splitlines() == ["appendonly", "no"]
    assert redis_cli(cid, "set", "visits:test", "41") == "OK"
    assert redis_cli(cid, "incr", "visits:test") == "42"
    assert inspect(cid)["HostConfig"]["ReadonlyRootfs"] is True
    assert process_uids(cid) == {(65532, 65532)}
    wait_for("Docker to call redis healthy",
             lambda: inspect(cid)["State"]["Health"]["Status"] == "healthy", timeout=30)

    code, took = stop_with(cid, "SIGTERM")
    logs = run(["docker", "logs", cid])
    out = logs.stdout + logs.stderr
    with capsys.disabled():
        print("\n[e2e] redis image: SIGTERM -> exit %d in %.2f s" % (code, took))
    assert code == 0, out
    assert took < 5
    # No snapshot on the way out (no save point) and nothing tried on the read-only root.
    assert not re.search(r"Saving|DB saved|Can't save|Failed opening", out), out

    # The same container again: its (read-only) filesystem kept nothing, the key is gone.
    run(["docker", "start", cid])
    wait_for("redis to answer PING again", lambda: redis_cli(cid, "ping") == "PONG", timeout=30)
    assert redis_cli(cid, "exists", "visits:test") == "0"


def postgres_volume(made):
    volume = name("pgdata")
    run(["docker", "volume", "create", volume])
    made["volumes"].append(volume)
    return volume


def password_file(made, value):
    path = os.path.join(made["dir"], uuid.uuid4().hex)
    with open(path, "w") as f:
        f.write(value + "\n")
    os.chown(path, 65532, 65532)
    os.chmod(path, 0o400)
    return path


def pg_ready(cid):
    return run(["docker", "exec", cid, "pg_isready", "-q", "-h", "127.0.0.1"],
               check=False).returncode == 0


def psql(cid, sql, password=None):
    """As the application role over TCP with a password, or as the superuser over the socket
    (peer authentication)."""
    if password is None:
        cmd = ["docker", "exec", cid, "psql", "-X", "-At", "-U", "postgres", "-d", "visits"]
    else:
        cmd = ["docker", "exec", "-e", "PGPASSWORD=" + password, cid, "psql", "-X", "-At",
               "-h", "127.0.0.1", "-U", "visits", "-d", "visits"]
    return run(cmd + ["-c", sql], check=False)


def test_postgres_serves_restarts_on_its_volume_stops_on_sigint(images, made, capsys):
    # A password that needs quoting in SQL, to show the entry point's literal is right.
    secret = "it's a p\\ss %s" % uuid.uuid4().hex
    volume = postgres_volume(made)
    args = [*HARDENED, *PG_TMPFS, "-v", volume + ":/var/lib/postgresql/data",
            "-v", password_file(made, secret) + ":/run/secrets/postgres_password:ro"]
    cid = start(made, "postgres", *args)
    wait_for("postgres to accept connections", lambda: pg_ready(cid), timeout=60)
    out = run(["docker", "logs", cid]).stdout
    assert ("postgres-entrypoint: created role visits (password from "
            "/run/secrets/postgres_password), database visits") in out, out
    assert secret not in out and "it''s" not in out

    p = psql(cid, "CREATE TABLE t (x int); INSERT INTO t VALUES (42); SELECT current_user",
             password=secret)
    assert p.returncode == 0 and p.stdout.split("\n")[-2] == "visits", (p.stdout, p.stderr)
    bad = psql(cid, "SELECT 1", password="wrong")
    assert bad.returncode != 0 and "password authentication failed" in bad.stderr, bad.stderr
    nopw = run(["docker", "exec", cid, "psql", "-X", "-w", "-h", "127.0.0.1", "-U", "postgres",
                "-d", "visits", "-c", "SELECT 1"], check=False)
    assert nopw.returncode != 0, "the superuser logged in over TCP without a password"
    assert psql(cid, "SHOW server_encoding").stdout.strip() == "UTF8"
    assert inspect(cid)["HostConfig"]["ReadonlyRootfs"] is True
    assert process_uids(cid) == {(65532, 65532)}
    wait_for("Docker to call postgres healthy",
             lambda: inspect(cid)["State"]["Health"]["Status"] == "healthy", timeout=60)

    code, took = stop_with(cid, "SIGINT")
    logs = run(["docker", "logs", cid])
    with capsys.disabled():
        print("\n[e2e] postgres image: SIGINT (fast shutdown) -> exit %d in %.2f s"
              % (code, took))
    assert code == 0, logs.stderr[-2000:]
    assert "database system is shut down" in logs.stderr, logs.stderr[-2000:]

    # A new container on the same volume: no initdb, the data and the password are there.
    cid2 = start(made, "postgres", *args)
    wait_for("postgres on the old volume", lambda: pg_ready(cid2), timeout=60)
    p = psql(cid2, "SELECT x FROM t", password=secret)
    assert p.returncode == 0 and p.stdout.strip() == "42", (p.stdout, p.stderr)
    logs = run(["docker", "logs", cid2])
    assert "initdb" not in logs.stdout, logs.stdout
    assert "created" not in logs.stdout, logs.stdout  # everything was there
    assert "database system was shut down at" in logs.stderr  # clean, no crash recovery

    # The cluster of an older stack meets a new application (accounts): at the next start its
    # role and database are made, with its own password; visits' data and password stay.
    code, _ = stop_with(cid2, "SIGINT")
    assert code == 0
    other = "accounts-" + uuid.uuid4().hex
    cid3 = start(made, "postgres", *args,
                 "-v", password_file(made, other) + ":/run/secrets/accounts_db_password:ro",
                 "-e", "POSTGRES_APPS=visits:/run/secrets/postgres_password "
                 "accounts:/run/secrets/accounts_db_password")
    wait_for("postgres with a new application", lambda: pg_ready(cid3), timeout=60)
    out = run(["docker", "logs", cid3]).stdout
    assert ("postgres-entrypoint: created role accounts (password from "
            "/run/secrets/accounts_db_password), database accounts") in out, out
    assert "role visits" not in out and other not in out, out
    p = psql(cid3, "SELECT x FROM t", password=secret)
    assert p.returncode == 0 and p.stdout.strip() == "42", (p.stdout, p.stderr)
    p = run(["docker", "exec", "-e", "PGPASSWORD=" + other, cid3, "psql", "-X", "-At", "-h",
             "127.0.0.1", "-U", "accounts", "-d", "accounts", "-c", "SELECT current_user"],
            check=False)
    assert p.returncode == 0 and p.stdout.strip() == "accounts", (p.stdout, p.stderr)
    # Its own database only: accounts may not even connect to visits' (the entry point revokes
    # PUBLIC's CONNECT on each application's database).
    p = run(["docker", "exec", "-e", "PGPASSWORD=" + other, cid3, "psql", "-X", "-At", "-h",
             "127.0.0.1", "-U", "accounts", "-d", "visits", "-c", "SELECT x FROM t"],
            check=False)
    assert p.returncode != 0 and "permission denied for database" in p.stderr, p.stderr


def test_postgres_refuses_a_new_cluster_without_password(images, made):
    cid = start(made, "postgres", *HARDENED, *PG_TMPFS,
                "-v", postgres_volume(made) + ":/var/lib/postgresql/data")
    wait_for("the entry point to give up", lambda: not inspect(cid)["State"]["Running"],
             timeout=30)
    logs = run(["docker", "logs", cid])
    assert inspect(cid)["State"]["ExitCode"] == 2, logs.stderr
    assert "no password file /run/secrets/postgres_password" in logs.stderr, logs.stderr
