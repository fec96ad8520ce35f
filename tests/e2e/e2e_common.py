"""Helpers shared by the end-to-end test modules: bounded commands, polling, ports."""

import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def tail(*outs, n=60):
    text = "\n".join(o.decode() if isinstance(o, bytes) else (o or "") for o in outs)
    return "\n".join(text.splitlines()[-n:])


def run(cmd, timeout, check=True, cwd=REPO, env=None):
    """Run a command with a hard time bound; return the CompletedProcess."""
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail("timed out after %ss: %s\n%s"
                    % (timeout, " ".join(cmd), tail(e.stdout, e.stderr)))
    if check and p.returncode != 0:
        pytest.fail("exit %d: %s\n%s" % (p.returncode, " ".join(cmd), tail(p.stdout, p.stderr)))
    return p


def wait_for(what, predicate, timeout, interval=0.25):
    """Poll predicate() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - keep polling, report the last error
            last_exc = e
        time.sleep(interval)
    pytest.fail("timed out after %ss waiting for %s (last error: %r)" % (timeout, what, last_exc))


def port_open(host, port, timeout=1.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
