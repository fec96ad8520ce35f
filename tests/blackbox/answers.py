"""Shared assertions on hello's answers for the protocol, limit, drain and
resource tests (test_http_core.py, test_limits.py, test_drain.py,
test_resources.py). Everything goes over rawhttp's raw sockets.
"""

import json

from bbenv import TF
from rawhttp import Conn, build
from test_hello import assert_common_headers

#: a valid request pipelined after a bad one: it must never be answered
FOLLOW_UP = build("GET", "/never")


def assert_error_answer(r, status):
    """One error answer: status, JSON error body, Connection: close."""
    assert r.version == "HTTP/1.1", r.raw
    assert r.status == status, "want %d, got %r" % (status, r.raw)
    assert_common_headers(r)
    assert r.headers_named("Connection") == ["close"], r.raw
    body = json.loads(r.body.decode("utf-8"))
    assert list(body) == ["error"] and isinstance(body["error"], str), r.raw


def assert_only_error(port, raw, status=400, follow=FOLLOW_UP, timeout=None):
    """Send raw (then a valid request in the same write): exactly one answer,
    `status` with Connection: close, nothing after it, then the server closes.
    Returns the answer."""
    timeout = 2.0 * TF if timeout is None else timeout
    with Conn(port) as c:
        c.send(raw + follow)
        answers, closed = c.responses_until_close(timeout)
    assert answers, "no answer at all to %r (closed=%r)" % (raw[:200], closed)
    assert len(answers) == 1, "want exactly one %d to %r, got %r" % (
        status, raw[:200], [a.status_line for a in answers])
    assert_error_answer(answers[0], status)
    assert closed, "connection left open after %d to %r" % (status, raw[:200])
    return answers[0]


def assert_open(c, target="/baz", body=b'{"msg":"Hello, Baz!"}'):
    """The connection still answers a request, and stays open."""
    r = c.request("GET", target)
    assert r.status == 200 and r.body == body, r.raw
    assert r.header("Connection") is None, r.raw
    return r
