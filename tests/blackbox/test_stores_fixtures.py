"""The store fixtures themselves: what the visits/accounts tests will rely on (start, crash,
restart, pause, a fresh cluster per test, the password file)."""

import os
import signal
import socket
import time

import pytest


def test_redis_server_lifecycle(redis_server):
    assert redis_server.ping().startswith(b"+PONG")
    assert redis_server.command(b"INCR k") == b":1\r\n"
    redis_server.pause()
    assert redis_server.ping(timeout=0.3) == b""  # accepted, never answered
    redis_server.resume()
    assert redis_server.ping().startswith(b"+PONG")
    redis_server.kill(signal.SIGKILL)
    assert not redis_server.running()
    assert redis_server.ping(timeout=0.3) == b""
    redis_server.restart()
    assert redis_server.command(b"INCR k") == b":1\r\n"  # same port, empty again


def test_redis_server_password(make_redis_server):
    s = make_redis_server(password="pw")
    assert s.command(b"INCR k") == b":1\r\n"  # command() authenticates
    with open(s.password_file) as f:
        assert f.read() == "pw\n"
    with socket.create_connection(("127.0.0.1", s.port), timeout=1) as c:
        c.sendall(b"INCR k\r\n")
        assert c.recv(64).startswith(b"-NOAUTH")


@pytest.mark.time_limit(90)
def test_postgres_server_lifecycle(postgres_server):
    pg = postgres_server
    assert pg.psql("SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host' LIMIT 1") \
        .strip() == "scram-sha-256"
    pg.psql("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
    pg.kill(signal.SIGKILL)
    assert not pg.running()
    t0 = time.monotonic()
    pg.restart()  # crash recovery
    assert pg.psql("SELECT sum(n) FROM t").strip() == "1"
    pg.stop()
    pg.start()
    assert pg.psql("SELECT count(*) FROM t").strip() == "1"
    assert time.monotonic() - t0 < 30
    with open(pg.password_file) as f:
        assert f.read().rstrip("\n") == pg.password


@pytest.mark.time_limit(60)
def test_postgres_server_is_fresh_per_test(postgres_server):
    assert postgres_server.psql("SELECT to_regclass('t') IS NULL").strip() == "t"


@pytest.mark.time_limit(60)
def test_postgres_pause_stalls_open_connections_too(postgres_server):
    """pause() reaches the backends (own sessions), not just the postmaster."""
    import subprocess
    pg = postgres_server
    psql = [os.path.join(pg.bindir, "psql"), "-h", "127.0.0.1", "-p", str(pg.port),
            "-U", "postgres", "-d", "postgres", "-X", "-q", "-A", "-t", "-f", "-"]
    env = dict(os.environ, PGPASSWORD=pg.password, PGCONNECT_TIMEOUT="5")
    p = subprocess.Popen(psql, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    p.stdin.write("SELECT 1;\n")
    p.stdin.flush()
    assert p.stdout.readline().strip() == "1"  # connected, a backend serves it
    pg.pause()
    p.stdin.write("SELECT 2;\n")
    p.stdin.flush()
    time.sleep(0.5)
    assert p.poll() is None
    import select
    assert select.select([p.stdout], [], [], 0.5)[0] == []  # no answer while paused
    pg.resume()
    assert p.stdout.readline().strip() == "2"
    p.stdin.close()
    p.wait(timeout=10)


def test_silent_listener_accepts_and_never_answers(silent_listener):
    with socket.create_connection(("127.0.0.1", silent_listener.port), timeout=1) as c:
        c.sendall(b"PING\r\n")
        c.settimeout(0.3)
        with pytest.raises(socket.timeout):
            c.recv(16)
