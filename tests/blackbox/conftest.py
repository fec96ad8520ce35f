"""Fixtures for the black-box tests of the real `hello` and `sidecar` binaries.

Everything here is time-bounded: every wait has a timeout, every socket has
a timeout, every child process is killed (by its own pid) at teardown, and a
per-test alarm aborts a test that would otherwise hang.

Environment:
  STACK_BUILD_DIR         build tree holding hello/hello and sidecar/sidecar
                          (default <repo>/build; relative paths are taken
                          relative to the repo root)
  STACK_SANITIZED         "1": sanitizer build (timings 3x lenient); also
                          assumed when the build dir name contains "san"
  STACK_TIMING_FACTOR     multiply every timing bound by this (overrides the
                          above; default 1)
  STACK_REQUIRE_BINARIES  "1": a missing binary fails the tests instead of
                          skipping them
"""

import os
import signal
import socket
import sys
import threading

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
# tests/lib: helpers shared with tests/e2e (tokens.py, browser_flow.py).
for _path in (HERE, os.path.join(os.path.dirname(HERE), "lib")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from bbenv import (ACCOUNTS_BIN, ALERT_SINK_BIN, BUILD_DIR, HELLO_BIN, LATER_BIN,  # noqa: E402
                   SIDECAR_BIN, TF, VISITS_BIN, WAIT)
from bbproc import _ALL_PROCS, Accounts, AlertSink, Hello, LaterServer, Sidecar, Visits  # noqa: E402


def _require(path):
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        msg = "binary not built: %s (set STACK_BUILD_DIR)" % path
        if os.environ.get("STACK_REQUIRE_BINARIES") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


# ---------------------------------------------------------------- hello

@pytest.fixture
def hello_bin():
    _require(HELLO_BIN)
    return HELLO_BIN


def _stop_all(procs):
    """Teardown of the start_* fixtures: every process still running gets SIGTERM and must
    exit 0 with `EXIT code=0`; one that already ended must have ended cleanly."""
    errors = []
    for p in procs:
        try:
            if p.running():
                p.assert_clean_exit(signal.SIGTERM, timeout=WAIT)
            else:
                p.wait(1.0)
                p.assert_clean()
        except AssertionError as e:
            errors.append(str(e))
        finally:
            p.kill()
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture
def start_hello(hello_bin):
    """start_hello(*flags, env={...}, listen=True) -> running Hello with .port.

    Unless listen=False, `--listen 127.0.0.1:0` is added (first) and the
    fixture waits for the LISTEN line. At teardown every instance still
    running is stopped with SIGTERM and must exit 0 with `EXIT code=0`.
    """
    procs = []

    def start(*flags, env=None, listen=True):
        args = list(flags)
        if listen:
            args = ["--listen", "127.0.0.1:0"] + args
        h = Hello(args, env=env)
        procs.append(h)
        if listen:
            h.wait_listening()
        return h

    yield start
    _stop_all(procs)


@pytest.fixture
def hello(start_hello):
    """A hello on 127.0.0.1:<random port> with default settings."""
    return start_hello()


# ---------------------------------------------------------------- later_server

@pytest.fixture
def start_later():
    """start_later(*flags) -> running LaterServer (core's deferred answers, bodies)."""
    _require(LATER_BIN)
    procs = []

    def start(*flags, env=None):
        p = LaterServer(list(flags), env=env)
        procs.append(p)
        return p.wait_listening()

    yield start
    _stop_all(procs)


@pytest.fixture
def start_alert_sink():
    """start_alert_sink(*flags) -> running AlertSink (alertsink/, Alertmanager's webhook)."""
    _require(ALERT_SINK_BIN)
    procs = []

    def start(*flags, env=None):
        p = AlertSink(list(flags), env=env)
        procs.append(p)
        return p.wait_listening()

    yield start
    _stop_all(procs)


# ---------------------------------------------------------------- sidecar

@pytest.fixture
def sidecar_bin():
    _require(SIDECAR_BIN)
    return SIDECAR_BIN


@pytest.fixture
def start_sidecar(sidecar_bin):
    """start_sidecar(*flags, env={...}) -> running Sidecar (START line seen)."""
    procs = []

    def start(*flags, env=None, wait_start=True):
        # The metrics listener defaults to :9100; tests get a free loopback port instead,
        # unless they choose one (flag or SIDECAR_METRICS_LISTEN).
        if not any(str(f).startswith("--metrics-listen") for f in flags) and \
                "SIDECAR_METRICS_LISTEN" not in (env or {}):
            flags = ("--metrics-listen", "127.0.0.1:0") + tuple(flags)
        s = Sidecar(flags, env=env)
        procs.append(s)
        if wait_start:
            s.wait_event("START")
        return s

    yield start
    _stop_all(procs)


@pytest.fixture
def closed_port():
    """A loopback port that is bound but not listening: connect -> refused."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    yield s.getsockname()[1]
    s.close()


@pytest.fixture
def fake_target():
    from fake_target import FakeTarget
    t = FakeTarget()
    t.start()
    yield t
    t.stop()


# ---------------------------------------------------------------- stores

def _require_store(binary):
    import shutil
    from stores import pg_bindir
    found = pg_bindir() if binary == "postgres" else shutil.which(binary)
    if not found:
        msg = "%s not installed (scripts/install-deps.sh)" % binary
        if os.environ.get("STACK_REQUIRE_BINARIES") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture
def make_redis_server():
    """make_redis_server(password=None) -> a started stores.RedisServer (cleaned up after)."""
    from stores import RedisServer
    _require_store("redis-server")
    servers = []

    def make(password=None):
        s = RedisServer(password=password)
        servers.append(s)
        return s.start()

    yield make
    for s in servers:
        s.cleanup()


@pytest.fixture
def redis_server(make_redis_server):
    """A redis-server on 127.0.0.1:<free port>: .url, start/stop/kill/restart/pause/resume."""
    return make_redis_server()


@pytest.fixture
def silent_listener():
    """A loopback port that accepts connections and never answers (.port, .url, .conninfo)."""
    from stores import SilentListener
    s = SilentListener()
    yield s
    s.close()


@pytest.fixture(scope="session")
def postgres_template():
    from stores import PostgresTemplate
    _require_store("postgres")
    t = PostgresTemplate()
    yield t
    t.cleanup()


@pytest.fixture
def postgres_server(postgres_template):
    """A PostgreSQL on 127.0.0.1:<free port>, a fresh copy of one initdb per session:
    .conninfo (no password), .password_file, .psql(sql), start/stop/kill/restart/pause/resume."""
    from stores import PostgresServer
    s = PostgresServer(postgres_template)
    try:
        s.start()
        yield s
    finally:
        s.cleanup()


# ---------------------------------------------------------------- visits

@pytest.fixture
def start_visits():
    """start_visits(redis_url, pg, *flags) -> running Visits on 127.0.0.1:<random port>.

    pg is a stores.PostgresServer (its conninfo and password file are passed) or a conninfo
    string. Short store timeouts and a 200 ms flush interval unless flags say otherwise.
    """
    _require(VISITS_BIN)
    procs = []

    def start(redis_url, pg, *flags, env=None, wait=True):
        args = ["--listen", "127.0.0.1:0", "--redis", redis_url]
        if isinstance(pg, str):
            args += ["--database", pg]
        else:
            args += ["--database", pg.conninfo, "--database-password-file", pg.password_file]
        defaults = {"--flush-interval": "200ms", "--store-timeout": "500ms",
                    "--connect-timeout": "1s", "--access-log": "off"}
        for k, v in defaults.items():
            if k not in flags:
                args += [k, v]
        v = Visits(args + list(flags), env=env)
        procs.append(v)
        if wait:
            v.wait_listening()
        return v

    yield start
    _stop_all(procs)


# ---------------------------------------------------------------- accounts

from tokens import make_ed25519_key  # noqa: E402  (tests/lib)


@pytest.fixture
def accounts_keys(tmp_path):
    """A keys directory with one Ed25519 key, kid "k1" (.dir, .path(kid), .add(kid))."""
    import shutil
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")

    class Keys:
        dir = str(tmp_path / "keys")

        def path(self, kid):
            return os.path.join(self.dir, kid + ".pem")

        def add(self, kid):
            return make_ed25519_key(self.dir, kid)

    os.mkdir(Keys.dir)
    k = Keys()
    k.add("k1")
    return k


@pytest.fixture
def start_accounts():
    """start_accounts(pg, keys_dir, *flags, signing_key="k1") -> running Accounts on
    127.0.0.1:<random port>, after its PostgreSQL schema is up (unless wait=False).

    Small argon2id parameters (8 MiB, t=1) unless flags say otherwise, so tests run fast;
    the production defaults are covered by their own test.
    """
    _require(ACCOUNTS_BIN)
    procs = []

    def start(pg, keys_dir, *flags, signing_key="k1", env=None, wait=True):
        args = ["--listen", "127.0.0.1:0", "--keys-dir", keys_dir, "--signing-key", signing_key]
        if isinstance(pg, str):
            args += ["--database", pg]
        else:
            args += ["--database", pg.conninfo, "--database-password-file", pg.password_file]
        defaults = {"--store-timeout": "2s", "--connect-timeout": "2s", "--access-log": "off",
                    "--hash-memory": "8MiB", "--hash-iterations": "1",
                    "--issuer": "test-issuer", "--audience": "test-audience"}
        for k, v in defaults.items():
            if k not in flags:
                args += [k, v]
        a = Accounts(args + list(flags), env=env)
        procs.append(a)
        if wait:
            a.wait_listening()
            a.wait_event("STORE", state="up")
        return a

    yield start
    _stop_all(procs)


# ---------------------------------------------------------------- guards

class HangGuard(BaseException):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Abort any single test that runs longer than a generous bound."""
    limit = 30.0 * TF
    marker = item.get_closest_marker("time_limit")
    if marker:
        limit = float(marker.args[0]) * TF
    use_alarm = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    if use_alarm:
        def on_alarm(signum, frame):
            raise HangGuard("test exceeded its %.0fs time limit" % limit)
        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)


def pytest_configure(config):
    config.addinivalue_line("markers", "time_limit(seconds): per-test time bound (scaled by STACK_TIMING_FACTOR)")


def pytest_sessionfinish(session, exitstatus):
    for p in _ALL_PROCS:
        p.kill()


def pytest_report_header(config):
    return "blackbox: build dir %s, timing factor %g" % (BUILD_DIR, TF)
