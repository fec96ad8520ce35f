"""A tiny raw-socket HTTP/1.x client that keeps the bytes on the wire visible.

Every socket gets a timeout; nothing here can block forever.
"""

import socket
import time

from bbenv import TF

SOCK_TIMEOUT = 5.0 * TF


class Response:
    def __init__(self, version, status, reason, headers, body, raw):
        self.version = version      # "HTTP/1.1"
        self.status = status        # int
        self.reason = reason        # "OK"
        self.header_list = headers  # [(name, value)] in wire order
        self.body = body            # bytes
        self.raw = raw              # status line + headers + body, as received

    @property
    def status_line(self):
        return "%s %d %s" % (self.version, self.status, self.reason)

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.header_list:
            if k.lower() == name:
                return v
        return default

    def headers_named(self, name):
        name = name.lower()
        return [v for k, v in self.header_list if k.lower() == name]

    def __repr__(self):
        return "Response(%r)" % self.raw[:400]


class Conn:
    """One client connection with a receive buffer (for pipelined answers)."""

    def __init__(self, port, host="127.0.0.1", timeout=SOCK_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by server; buffered=%r" % self.buf)
        self.buf += chunk

    def read_response(self, head=False):
        """Read exactly one response; head=True: the request was HEAD (no body)."""
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise AssertionError("response head too large: %r" % self.buf[:300])
            self._fill()
        head_bytes, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        assert len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit(), \
            "bad status line %r" % lines[0]
        version, status = parts[0], int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        for l in lines[1:]:
            assert ":" in l, "bad header line %r in %r" % (l, head_bytes)
            k, _, v = l.partition(":")
            assert k == k.strip() and k, "bad header name in %r" % l
            headers.append((k, v.strip()))
        self.buf = rest
        cl = None
        for k, v in headers:
            if k.lower() == "content-length":
                cl = int(v)
        no_body = head or status in (204, 304) or 100 <= status < 200
        if no_body:
            body = b""
        elif cl is not None:
            while len(self.buf) < cl:
                self._fill()
            body, self.buf = self.buf[:cl], self.buf[cl:]
        else:
            # no length: body runs to the end of the connection
            try:
                while True:
                    self._fill()
            except ConnectionError:
                pass
            body, self.buf = self.buf, b""
        return Response(version, status, reason, headers, body, head_bytes + b"\r\n\r\n" + body)

    def request(self, method="GET", target="/", version="HTTP/1.1", headers=None, body=b""):
        self.send(build(method, target, version, headers, body))
        return self.read_response(head=(method == "HEAD"))

    def closed_by_peer(self, timeout=1.0):
        """True if the server closes (EOF/RST) within timeout with no more bytes.

        Extra bytes received before the close are kept in self.buf.
        """
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        finally:
            self.sock.settimeout(SOCK_TIMEOUT)

    def responses_until_close(self, timeout=2.0, head=False):
        """Read until the server closes (or timeout); return (responses, closed).

        Every byte received is parsed as a sequence of complete responses.
        """
        closed = self.closed_by_peer(timeout)
        out = []
        while self.buf:
            out.append(self.read_response(head=head))
        return out, closed

    def pending(self, wait=0.2):
        """Bytes that arrive within `wait` seconds without sending anything."""
        self.closed_by_peer(wait)
        data, self.buf = self.buf, b""
        return data


def build(method="GET", target="/", version="HTTP/1.1", headers=None, body=b""):
    if headers is None:
        headers = {}
    h = dict(headers)
    if version == "HTTP/1.1" and not any(k.lower() == "host" for k in h):
        h = {"Host": "127.0.0.1", **h}
    if body and not any(k.lower() == "content-length" for k in h):
        h["Content-Length"] = str(len(body))
    out = "%s %s %s\r\n" % (method, target, version)
    for k, v in h.items():
        out += "%s: %s\r\n" % (k, v)
    out += "\r\n"
    if isinstance(body, str):
        body = body.encode()
    return out.encode("latin-1") + body


def get(port, target="/", method="GET", version="HTTP/1.1", headers=None, body=b""):
    """One request on a fresh connection; returns the Response."""
    with Conn(port) as c:
        return c.request(method, target, version, headers, body)
