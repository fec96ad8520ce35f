"""Is a server answering GET / like hello? One request, a second on the same keep-alive
connection, then a batch of pipelined requests; what a server does not support (the Flask
baselines close every connection after one answer) is recorded, and only a failure for servers
that must support it."""

import http.client
import socket

from .common import BODY


def read_response(sock_file):
    """One HTTP/1.1 response from a buffered socket file -> (status, headers, body)."""
    status_line = sock_file.readline(65536)
    if not status_line:
        raise ValueError("connection closed before a response")
    parts = status_line.decode("latin-1").split(" ", 2)
    status = int(parts[1])
    headers = {}
    while True:
        line = sock_file.readline(65536)
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    body = sock_file.read(length)
    return status, headers, body


def check_answer(status, headers, body):
    problems = []
    if status != 200:
        problems.append("status %d, want 200" % status)
    if body != BODY:
        problems.append("body %r, want %r" % (body[:80], BODY))
    ctype = headers.get("content-type", "")
    if ctype.split(";")[0].strip().lower() != "application/json":
        problems.append("Content-Type %r, want application/json" % ctype)
    return problems


def verify(port, depth, must_keep_alive=True):
    """-> (problems, capabilities). capabilities: {'keepalive': bool, 'pipelining': bool}."""
    problems = []
    caps = {"keepalive": False, "pipelining": False}
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/")
        r = conn.getresponse()
        body = r.read()
        bad = check_answer(r.status, {k.lower(): v for k, v in r.getheaders()}, body)
        if bad:
            return ["request 1: " + "; ".join(bad)], caps
        caps["keepalive"] = not r.will_close
        if caps["keepalive"]:
            conn.request("GET", "/")
            r = conn.getresponse()
            body = r.read()
            bad = check_answer(r.status, {k.lower(): v for k, v in r.getheaders()}, body)
            if bad:
                problems.append("request 2 on the same connection: " + "; ".join(bad))
        elif must_keep_alive:
            problems.append("the connection is not kept alive")
        conn.close()
        if not caps["keepalive"]:
            return problems, caps
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * depth)
            f = s.makefile("rb")
            for i in range(depth):
                st, hd, bd = read_response(f)
                bad = check_answer(st, hd, bd)
                if bad:  # the first wrong answer says enough
                    problems.append("pipelined answer %d/%d: %s" % (i + 1, depth, "; ".join(bad)))
                    break
            else:
                caps["pipelining"] = True
    except (OSError, ValueError, http.client.HTTPException) as e:
        problems.append("%s: %s" % (type(e).__name__, e))
    return problems, caps


def get_once(port, path="/", timeout=5.0):
    """One GET on a fresh connection -> (status, body) or raises OSError/ValueError."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                  % path.encode())
        st, _, body = read_response(s.makefile("rb"))
        return st, body
