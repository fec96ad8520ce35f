"""Shared assertions on hello's answers (common headers, JSON answers, one error answer
then close, a connection still usable), for every hello test module. Everything goes over
rawhttp's raw sockets. A helper module: it imports no test module.
"""

import email.utils
import json
import re
from datetime import datetime, timezone

from bbenv import TF
from rawhttp import Conn, build

DATE_RE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d\d:\d\d:\d\d GMT$"
)


def assert_common_headers(r, body_expected=True):
    """Content-Type: application/json, Content-Length (matching), one Date."""
    assert r.headers_named("Content-Type") == ["application/json"], r.raw
    cls = r.headers_named("Content-Length")
    assert len(cls) == 1 and cls[0].isdigit(), r.raw
    if body_expected:
        assert int(cls[0]) == len(r.body), r.raw
    dates = r.headers_named("Date")
    assert len(dates) == 1, r.raw
    assert DATE_RE.match(dates[0]), "Date not an IMF-fixdate: %r" % dates[0]
    d = email.utils.parsedate_to_datetime(dates[0])
    skew = abs((datetime.now(timezone.utc) - d).total_seconds())
    assert skew < 120, "Date %r is %ds off" % (dates[0], skew)


def assert_json_answer(r, status, body=None):
    assert r.version == "HTTP/1.1", r.raw
    assert r.status == status, r.raw
    assert_common_headers(r)
    parsed = json.loads(r.body.decode("utf-8"))  # strict: no raw control chars
    if body is not None:
        assert r.body == body, r.raw
    return parsed


#: a valid request pipelined after a bad one: it must never be answered
FOLLOW_UP = build("GET", "/never")


def assert_error_answer(r, status):
    """One error answer of the server's own: status, JSON body {"error": <reason phrase>,
    "detail": <what exactly>} (detail when there is one), Connection: close."""
    assert r.version == "HTTP/1.1", r.raw
    assert r.status == status, "want %d, got %r" % (status, r.raw)
    assert_common_headers(r)
    assert r.headers_named("Connection") == ["close"], r.raw
    body = json.loads(r.body.decode("utf-8"))
    assert list(body) in (["error"], ["error", "detail"]), r.raw
    assert all(isinstance(v, str) and v for v in body.values()), r.raw


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
