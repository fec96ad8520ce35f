"""A small, controllable HTTP/1.1 server standing in for hello's /health.

Threaded, bound to 127.0.0.1:0. What it does with each request is switched
per test with one of the `set_*` methods (or `set_script` for a sequence).
It records every request it gets (time, request line, headers, action).

Behaviours:
  healthy(latency)        200 {"healthy":true,"latency":<latency>}
  latencies([a, b, c])    like healthy(), cycling through the values in turn
  status(code, body)      that status with the given (JSON) body
  unhealthy(latency)      200 {"healthy":false,"latency":<latency>}
  body(raw, status=200)   exactly these body bytes (e.g. invalid JSON)
  hang()                  read the request, never answer (until stop())
  close_mid()             send the head and part of the body, then close
  trickle(gap)            a healthy answer sent one byte every `gap` seconds
  delays([a, b], latency) healthy answers, each held back a, b, ... seconds in turn

Any Action can carry `delay` (seconds to wait before answering), so a script
can make some answers slow on the wire.

It is written from scratch on raw sockets so the bytes it sends are exactly
the ones a test asks for.
"""

import json
import socket
import threading
import time


class Action:
    def __init__(self, kind, status=200, body=b"", latency=None, delay=0.0):
        self.kind = kind          # "respond" | "hang" | "close_mid" | "trickle"
        self.status = status
        self.body = body if isinstance(body, bytes) else body.encode()
        self.latency = latency    # the latency value served, if any
        self.delay = delay        # seconds between reading the request and answering

    def __repr__(self):
        return "Action(%s, %d, %r, delay=%g)" % (self.kind, self.status, self.body[:60], self.delay)


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable"}


def health_body(healthy, latency):
    return json.dumps({"healthy": healthy, "latency": latency}, separators=(",", ":"))


class Request:
    def __init__(self, t, request_line, headers, action, conn_id):
        self.t = t                    # time.monotonic() when the head was complete
        self.request_line = request_line
        self.headers = headers        # {lower-case name: value}
        self.action = action
        self.conn_id = conn_id

    @property
    def latency(self):
        return self.action.latency


class FakeTarget:
    def __init__(self):
        self._lock = threading.Condition()
        self._script = [Action("respond", 200, health_body(True, 0.1), 0.1)]
        self._cycle = True
        self._pos = 0
        self.requests = []
        self._stop = threading.Event()
        self._socks = set()
        self._threads = []
        self._conn_seq = 0
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.url = "http://127.0.0.1:%d/health" % self.port

    # ---------------------------------------------------------- control
    def set_script(self, actions, cycle=True):
        """Serve actions in turn; when exhausted, cycle (or repeat the last)."""
        with self._lock:
            self._script = list(actions)
            self._cycle = cycle
            self._pos = 0

    def set_healthy(self, latency=0.1, delay=0.0):
        self.set_script([Action("respond", 200, health_body(True, latency), latency, delay)])

    def set_delays(self, delays, latency=0.1):
        """Healthy answers, held back by each of `delays` (seconds) in turn."""
        self.set_script([Action("respond", 200, health_body(True, latency), latency, d)
                         for d in delays])

    def set_latencies(self, values):
        self.set_script([Action("respond", 200, health_body(True, v), v) for v in values])

    def set_unhealthy(self, latency=0.95):
        self.set_script([Action("respond", 200, health_body(False, latency), latency)])

    def set_status(self, status, body=b'{"error":"unavailable"}'):
        self.set_script([Action("respond", status, body)])

    def set_body(self, raw, status=200):
        self.set_script([Action("respond", status, raw)])

    def set_hang(self):
        self.set_script([Action("hang")])

    def set_close_mid(self):
        self.set_script([Action("close_mid", 200, health_body(True, 0.1))])

    def set_trickle(self, gap=0.05):
        a = Action("trickle", 200, health_body(True, 0.1), 0.1)
        a.gap = gap
        self.set_script([a])

    # --------------------------------------------------------- inspection
    def request_count(self):
        with self._lock:
            return len(self.requests)

    def snapshot(self):
        with self._lock:
            return list(self.requests)

    def wait_requests(self, n, timeout):
        """Wait until at least n requests were received; return them."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("fake target got %d request(s), wanted %d within %.1fs"
                                         % (len(self.requests), n, timeout))
                self._lock.wait(min(left, 0.2))
            return list(self.requests)

    # --------------------------------------------------------- lifecycle
    def start(self):
        t = threading.Thread(target=self._accept_loop, name="fake-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        with self._lock:
            socks = list(self._socks)
            self._lock.notify_all()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=2.0)
        try:
            self.lsock.close()
        except OSError:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --------------------------------------------------------- internals
    def _next_action(self):
        with self._lock:
            if self._pos < len(self._script):
                a = self._script[self._pos]
            else:
                a = self._script[-1]
            self._pos += 1
            if self._cycle and self._pos >= len(self._script):
                self._pos = 0
            return a

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self._conn_seq += 1
                cid = self._conn_seq
                self._socks.add(s)
            t = threading.Thread(target=self._serve, args=(s, cid), name="fake-conn", daemon=True)
            t.start()
            self._threads.append(t)

    def _read_head(self, s, buf):
        while b"\r\n\r\n" not in buf:
            if self._stop.is_set():
                return None, buf
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return None, buf
            if not chunk:
                return None, buf
            buf += chunk
            if len(buf) > 1 << 16:
                return None, buf
        head, _, rest = buf.partition(b"\r\n\r\n")
        return head, rest

    def _serve(self, s, cid):
        buf = b""
        try:
            s.settimeout(0.2)
            while not self._stop.is_set():
                head, buf = self._read_head(s, buf)
                if head is None:
                    return
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for l in lines[1:]:
                    k, _, v = l.partition(":")
                    headers[k.strip().lower()] = v.strip()
                # drop any request body
                cl = int(headers.get("content-length", "0") or 0)
                while len(buf) < cl:
                    try:
                        chunk = s.recv(65536)
                    except socket.timeout:
                        if self._stop.is_set():
                            return
                        continue
                    if not chunk:
                        return
                    buf += chunk
                buf = buf[cl:]
                action = self._next_action()
                with self._lock:
                    self.requests.append(Request(time.monotonic(), lines[0], headers, action, cid))
                    self._lock.notify_all()
                if action.delay > 0 and self._stop.wait(action.delay):
                    return
                if action.kind == "hang":
                    # never answer; keep the connection open until stop()
                    while not self._stop.wait(0.1):
                        pass
                    return
                reason = REASONS.get(action.status, "Status")
                resp_head = ("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                             "Content-Length: %d\r\n\r\n" % (action.status, reason, len(action.body)))
                if action.kind == "close_mid":
                    s.sendall(resp_head.encode() + action.body[: max(1, len(action.body) // 2)])
                    return
                if action.kind == "trickle":
                    for i in range(len(resp_head)):
                        s.sendall(resp_head[i].encode("latin-1"))
                        if self._stop.wait(action.gap):
                            return
                    for i in range(len(action.body)):
                        s.sendall(action.body[i:i + 1])
                        if self._stop.wait(action.gap):
                            return
                    continue
                s.sendall(resp_head.encode() + action.body)
                if headers.get("connection", "").lower() == "close":
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._socks.discard(s)
            try:
                s.close()
            except OSError:
                pass


def closed_port():
    """A loopback port with nothing listening on it (connect -> refused)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
