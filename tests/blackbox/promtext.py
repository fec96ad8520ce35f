"""Prometheus text exposition for the black-box tests: find a sidecar's metrics port, scrape
it, parse the samples, and check the text with promtool (Debian's prometheus package) when it
is installed."""

import http.client
import os
import re
import shutil
import subprocess

import pytest

from bbenv import TF


def metrics_port(sidecar):
    """The port of a sidecar's metrics listener, from its LISTEN line."""
    line = sidecar.wait_event("LISTEN")
    return int(re.search(r"addr=\S+:(\d+)", line.raw).group(1))


def scrape(port, path="/metrics", method="GET"):
    """(status, headers, body) of one request to 127.0.0.1:port."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5 * TF)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode()
    finally:
        c.close()


def scrape_text(port):
    """The body of GET /metrics, which must answer 200."""
    status, _, body = scrape(port)
    assert status == 200, (status, body)
    return body


def samples(text):
    """{(name, frozenset(labels)): value} of the exposition text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        assert m, "malformed sample line: %r" % line
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def sample(m, name, **labels):
    """The value of one sample (KeyError with the candidates when it is missing)."""
    key = (name, frozenset(labels.items()))
    if key not in m:
        near = sorted(str(dict(k[1])) for k in m if k[0] == name)
        raise KeyError("%s%r not in metrics; have: %s" % (name, labels, near))
    return m[key]


def promtool_check(text):
    """`promtool check metrics` accepts the text. Without promtool: a failure where the
    binaries are required (scripts/test.sh), otherwise no check."""
    if not shutil.which("promtool") and os.environ.get("STACK_REQUIRE_BINARIES"):
        pytest.fail("promtool is not installed (Debian package prometheus)")
    if shutil.which("promtool"):
        p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 0, p.stdout + p.stderr + "\n" + text
