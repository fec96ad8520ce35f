"""Prometheus text exposition for the black-box tests (hello's and the sidecar's /metrics):
find a sidecar's metrics port, scrape it, parse the text (one parser, Metrics), and check it
with promtool (Debian's prometheus package) when it is installed."""

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


_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: -?\d+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Metrics:
    """The samples and family types of an exposition text; a malformed line or a sample given
    twice fails."""

    def __init__(self, text):
        self.text = text
        self.types = {}    # family name -> type
        self.samples = {}  # (name, frozenset(labels)) -> value
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                parts = line.split(" ")
                assert len(parts) == 4, "bad TYPE line %r" % line
                self.types[parts[2]] = parts[3]
                continue
            if not line.strip() or line.startswith("#"):
                continue
            m = _SAMPLE_RE.match(line)
            assert m, "malformed sample line %r" % line
            labels = frozenset(_LABEL_RE.findall(m.group(2) or ""))
            key = (m.group(1), labels)
            assert key not in self.samples, "duplicate sample %r" % line
            self.samples[key] = float(m.group(3))

    def named(self, name):
        """[(labels dict, value)] of every sample called name."""
        return [(dict(l), v) for (n, l), v in self.samples.items() if n == name]

    def one(self, name, **labels):
        want = frozenset(labels.items())
        hits = [v for (n, l), v in self.samples.items() if n == name and want <= l]
        assert len(hits) == 1, "want one %s%r sample, got %r\n%s" % (name, labels, hits, self.text)
        return hits[0]

    def value(self, name, default=0.0, **labels):
        return self.samples.get((name, frozenset(labels.items())), default)

    def type_of(self, family):
        return self.types.get(family)


def samples(text):
    """{(name, frozenset(labels)): value} of the exposition text."""
    return Metrics(text).samples


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
