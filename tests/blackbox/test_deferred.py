"""core's answers that come later, request bodies and JSON, through later_server.

later_server (tests/tools/later_server.cpp) is a core::http_server whose handler defers and
answers on uv timers: /later?ms=N&id=X, /never (only the deadline answers), /big?kb=N.
"""

import json
import socket
import struct
import time

import pytest

from bbenv import TF
from rawhttp import Conn, build, get


def ids(responses):
    return [json.loads(r.body)["id"] for r in responses]


def state(port):
    return json.loads(get(port, "/state").body)


# ------------------------------------------------------------------ deferred answers

def test_pipelined_answers_keep_request_order_when_completed_out_of_order(start_later):
    srv = start_later()
    with Conn(srv.port) as c:
        t0 = time.monotonic()
        c.send(build("GET", "/later?ms=400&id=a") + build("GET", "/later?ms=50&id=b") +
               build("GET", "/now") + build("GET", "/later?ms=10&id=c"))
        r = [c.read_response() for _ in range(4)]
        took = time.monotonic() - t0
    assert [x.status for x in r] == [200] * 4
    assert ids([r[0], r[1], r[3]]) == ["a", "b", "c"]
    assert json.loads(r[2].body) == {"now": True}
    # Completed concurrently (400 ms), not one after the other (460 ms), and not before a.
    assert 0.39 <= took < 0.455 * TF + 0.2, took
    assert state(srv.port)["pending"] == 0


def test_nothing_after_a_connection_close_request_is_answered(start_later):
    srv = start_later()
    with Conn(srv.port) as c:
        c.send(build("GET", "/later?ms=100&id=a") +
               build("GET", "/later?ms=10&id=b", headers={"Connection": "close"}) +
               build("GET", "/later?ms=10&id=never-parsed") + build("GET", "/now"))
        got, closed = c.responses_until_close(timeout=3.0 * TF)
    assert closed
    assert ids(got) == ["a", "b"]
    assert got[1].header("Connection") == "close"
    assert not srv.events("CANCEL")


def _gone_while_pending(srv, reset):
    c = Conn(srv.port)
    c.send(build("GET", "/later?ms=600&id=gone"))
    srv.wait_for(lambda l: False, timeout=0.1) if False else time.sleep(0.1)
    assert state(srv.port)["pending"] == 1
    if reset:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    srv.wait_event("CANCEL", id="gone", timeout=2 * TF)
    time.sleep(0.7)  # past the timer: it was stopped by the cancel, nothing is written
    assert not srv.events("LATE")
    assert state(srv.port) == {"pending": 0, "connections": 1}  # only /state's own


def test_client_gone_while_pending_fin_cancels(start_later):
    _gone_while_pending(start_later(), reset=False)


def test_client_gone_while_pending_reset_cancels(start_later):
    _gone_while_pending(start_later(), reset=True)


def test_client_gone_then_late_answer_is_a_no_op(start_later):
    srv = start_later()
    c = Conn(srv.port)
    c.send(build("GET", "/later?ms=300&id=k&keep=1"))
    time.sleep(0.1)
    c.close()
    srv.wait_event("CANCEL", id="k", timeout=2 * TF)
    srv.wait_event("LATE", id="k", timeout=2 * TF)
    assert get(srv.port, "/now").status == 200


def test_deadline_answers_504_and_ignores_the_late_answer(start_later):
    srv = start_later("--answer-timeout", "300ms")
    with Conn(srv.port) as c:
        t0 = time.monotonic()
        r = c.request("GET", "/later?ms=900&id=slow&keep=1")
        took = time.monotonic() - t0
        assert r.status == 504
        assert r.header("Content-Type") == "application/json"
        assert "did not answer in time" in json.loads(r.body)["error"]
        assert 0.29 <= took <= 0.3 + 0.2 * TF, took
        srv.wait_event("CANCEL", id="slow", timeout=1 * TF)
        # The connection goes on; the late answer never reaches it.
        r2 = c.request("GET", "/later?ms=10&id=next")
        assert ids([r2]) == ["next"]
        srv.wait_event("LATE", id="slow", timeout=2 * TF)
        assert c.pending(wait=0.2) == b""
    srv.wait_event("TIMEOUT")


def test_never_answered_gets_504(start_later):
    srv = start_later("--answer-timeout", "200ms")
    r = get(srv.port, "/never?id=n")
    assert r.status == 504
    srv.wait_event("CANCEL", id="n", timeout=1 * TF)


def test_sweeps_do_not_cut_a_connection_whose_answer_is_pending(start_later):
    # A header timeout far shorter than the answer: the pending exchange keeps the connection.
    srv = start_later("--header-timeout", "100ms", "--answer-timeout", "5s")
    with Conn(srv.port) as c:
        r = c.request("GET", "/later?ms=700&id=p")
        assert ids([r]) == ["p"]


def test_drain_waits_for_pending_answers(start_later):
    srv = start_later()
    with Conn(srv.port) as c:
        c.send(build("GET", "/later?ms=500&id=d"))
        time.sleep(0.1)
        srv.send_signal(15)
        srv.wait_event("DRAIN")
        r = c.read_response()
        assert ids([r]) == ["d"]
        assert r.header("Connection") == "close"
        assert c.closed_by_peer(timeout=2 * TF)
    assert srv.wait(timeout=3 * TF) == 0


def test_drain_deadline_cuts_and_cancels_pending(start_later):
    srv = start_later("--drain-timeout", "300ms")
    c = Conn(srv.port)
    c.send(build("GET", "/never?id=cut"))
    time.sleep(0.1)
    srv.send_signal(15)
    assert c.closed_by_peer(timeout=2 * TF)
    c.close()
    srv.wait_event("CANCEL", id="cut", timeout=1 * TF)
    assert srv.wait(timeout=3 * TF) == 0


def test_queue_limit_holds_input_until_answers_go(start_later):
    srv = start_later("--max-pipelined", "2")
    with Conn(srv.port) as c:
        c.send(b"".join(build("GET", "/later?ms=%d&id=%d" % (50 - i * 5, i)) for i in range(8)))
        got = [c.read_response() for _ in range(8)]
    assert ids(got) == [str(i) for i in range(8)]


def test_200_kib_deferred_answer_across_a_slow_reader(start_later):
    srv = start_later()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", srv.port))
    s.settimeout(5 * TF)
    s.sendall(build("GET", "/big?kb=200&ms=20") + build("GET", "/later?ms=1&id=after"))
    data = b""
    want = 200 * 1024
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Length: %d" % want in head
    while len(body) < want + 10:
        time.sleep(0.002)
        chunk = s.recv(4096)
        if not chunk:
            break
        body += chunk
        if b"\"after\"" in body:
            break
    s.close()
    expect = bytes((ord("a") + (i * 7 + i // 1024) % 26) for i in range(want))
    assert body[:want] == expect
    assert body[want:].startswith(b"HTTP/1.1 200 ")


# ------------------------------------------------------------------ request bodies

def post(port, target, body, ctype="application/json", headers=None):
    h = {"Content-Type": ctype} if ctype else {}
    h.update(headers or {})
    return get(port, target, method="POST", headers=h, body=body)


def test_json_body_content_length(start_later):
    srv = start_later()
    r = post(srv.port, "/json", b'{"name":"\\u00e9t\\u00e9 \xf0\x9f\x98\x80","n":[1,2.5e3,{"x":null}]}')
    assert r.status == 200, r
    assert json.loads(r.body) == {"members": 2, "name": "été 😀"}


def test_json_body_chunked(start_later):
    srv = start_later()
    with Conn(srv.port) as c:
        c.send(b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json; charset=utf-8\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"nam\r\n8\r\ne\":\"ch\"}\r\n0\r\n\r\n")
        r = c.read_response()
    assert r.status == 200, r
    assert json.loads(r.body) == {"members": 1, "name": "ch"}


def test_body_over_the_route_limit_is_413(start_later):
    srv = start_later("--body-limit", "1KiB")
    ok = b'{"name":"' + b"x" * 1000 + b'"}'
    assert post(srv.port, "/json", ok).status == 200
    r = post(srv.port, "/json", b'{"name":"' + b"x" * 1100 + b'"}')
    assert r.status == 413
    with Conn(srv.port) as c:
        c.send(b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + (b"200\r\n" + b" " * 512 + b"\r\n") * 3)
        r = c.read_response()
    assert r.status == 413


def test_large_body_past_a_pool_block(start_later):
    srv = start_later()  # 64 KiB limit: a 40 KiB body outgrows the 16 KiB block
    body = json.dumps({"name": "y" * 40000}).encode()
    r = post(srv.port, "/json", body)
    assert r.status == 200
    assert json.loads(r.body)["name"] == "y" * 40000


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded",
                                   "application/jsonx"])
def test_wrong_or_missing_content_type_is_415(start_later, ctype):
    srv = start_later()
    r = post(srv.port, "/json", b'{"a":1}', ctype=ctype)
    assert r.status == 415
    err = json.loads(r.body)
    assert err["error"] == "Unsupported Media Type"
    assert "application/json" in err["detail"]


def test_expect_100_continue_on_a_body_route(start_later):
    srv = start_later()
    with Conn(srv.port) as c:
        c.send(b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 12\r\nExpect: 100-continue\r\n\r\n")
        interim = c.read_response()
        assert interim.status == 100
        c.send(b'{"name":"z"}')
        r = c.read_response()
    assert r.status == 200 and json.loads(r.body)["name"] == "z"


def test_form_body(start_later):
    srv = start_later()
    r = post(srv.port, "/form", b"email=a%40b.c&password=p+w%26d&empty=&&flag",
             ctype="application/x-www-form-urlencoded")
    assert r.status == 200
    assert json.loads(r.body) == {"email": "a@b.c", "password": "p w&d", "empty": "", "flag": ""}
    bad = post(srv.port, "/form", b"a=%zz", ctype="application/x-www-form-urlencoded")
    assert bad.status == 400


def test_route_taking_json_or_form(start_later):
    srv = start_later()
    assert json.loads(post(srv.port, "/either", b"{}").body) == {"kind": "json"}
    assert json.loads(post(srv.port, "/either", b"a=1",
                           ctype="application/x-www-form-urlencoded").body) == {"kind": "form"}
    assert post(srv.port, "/either", b"a", ctype="text/plain").status == 415


def test_routes_that_do_not_ask_still_discard_the_body(start_later):
    srv = start_later()
    with Conn(srv.port) as c:
        r = c.request("POST", "/now", body=b"x" * 5000)
        assert r.status == 200
        assert c.request("GET", "/now").status == 200


# ------------------------------------------------------------------ strict JSON

@pytest.mark.parametrize("body,problem", [
    (b'{"a":1,"a":2}', "duplicate key"),
    (b'{"a":"\xff"}', "invalid JSON"),
    (b'{"a":"\xed\xa0\x80"}', "invalid JSON"),          # a surrogate encoded as UTF-8
    (b'{"a":"\\ud800"}', "surrogate"),                  # lone high surrogate
    (b'{"a":"\\udc00x"}', "surrogate"),                 # lone low surrogate
    (b"[" * 40 + b"]" * 40, "nesting deeper than 32"),
    (b'{"n":1e400}', "Number too big"),
    (b'{"n":-1e400}', "Number too big"),
    (b'{"a":1} x', "invalid JSON"),
    (b'{"a":1,}', "invalid JSON"),
    (b"{'a':1}", "invalid JSON"),
    (b'{"a":NaN}', "invalid JSON"),
    (b'{"a":01}', "invalid JSON"),
    (b"", "empty body"),
    (b'{"a":"x\x00"}', "NUL byte"),
    (b'["' + b'",\"'.join([b"v"] * 300) + b'"]', "more than 256 values"),
])
def test_bad_json_is_a_400_naming_the_problem(start_later, body, problem):
    srv = start_later()
    with Conn(srv.port) as c:
        r = c.request("POST", "/json", headers={"Content-Type": "application/json",
                                                "Content-Length": str(len(body))}, body=body)
        assert r.status == 400, r
        err = json.loads(r.body)["error"]
        assert problem in err, err
        # A bad body is not a framing error: the connection goes on.
        assert c.request("GET", "/now").status == 200
