"""A small, controllable DNS server (UDP) standing in for Docker's / Swarm's DNS.

Bound to 127.0.0.1:0 in a thread; point the sidecar at it with
`--dns-server 127.0.0.1:<port>` (see `FakeDNS.server`). Stdlib only.

It parses the question of each query (RFC 1035 section 4.1: header, one
question, names with or without compression pointers; anything after the
question, such as an EDNS OPT record, is ignored) and answers from a table
name -> list of addresses that a test may change at any time
(`set_answers`, thread-safe):

  A / AAAA for a known name   NOERROR with one record per address of that
                              family (TTL 0, so nothing is cached); none of
                              that family: NOERROR with no answer (NODATA)
  other types, known name     NOERROR, no answer
  unknown name                NXDOMAIN (rcode 3)
  opcode other than QUERY     NOTIMP (rcode 4)
  not exactly one question,   FORMERR (rcode 1) when the header could be read,
  or a broken question        else no answer at all
  class other than IN         REFUSED (rcode 5)
  drop mode (`set_drop`)      no answer at all: the client times out

Names are matched case-insensitively, without the trailing dot. Every query
is counted per name (also the dropped ones) and logged with its type.
TCP is not served: c-ares only uses it for truncated answers, and these
answers are far below 512 bytes.
"""

import ipaddress
import socket
import struct
import threading
import time

TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5

TYPE_NAMES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT",
              28: "AAAA", 33: "SRV", 255: "ANY"}


class DNSFormatError(ValueError):
    pass


def _norm(name):
    return name.rstrip(".").lower()


def parse_name(msg, off):
    """Read a (possibly compressed) domain name at off -> (dotted name, offset after it)."""
    labels = []
    end = None          # where the name ends in the message (before the first pointer)
    jumps = 0
    total = 0
    while True:
        if off >= len(msg):
            raise DNSFormatError("name runs past the end of the message")
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(msg):
                raise DNSFormatError("truncated compression pointer")
            if end is None:
                end = off + 2
            jumps += 1
            if jumps > 32:
                raise DNSFormatError("compression loop")
            off = ((n & 0x3F) << 8) | msg[off + 1]
            continue
        if n & 0xC0:
            raise DNSFormatError("reserved label type 0x%02x" % n)
        off += 1
        if n == 0:
            break
        if off + n > len(msg):
            raise DNSFormatError("label runs past the end of the message")
        labels.append(msg[off:off + n].decode("latin-1"))
        total += n + 1
        if total > 255:
            raise DNSFormatError("name longer than 255 bytes")
        off += n
    return ".".join(labels), (end if end is not None else off)


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split(".") if name.strip(".") else []:
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError("bad label in %r" % name)
        out += bytes([len(raw)]) + raw
    return out + b"\x00"


def build_query(name, qtype, qid=0x1234, rd=True):
    """A query message (for self-tests of this server)."""
    flags = 0x0100 if rd else 0
    return struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 0) + encode_name(name) + \
        struct.pack("!HH", qtype, CLASS_IN)


def parse_response(msg):
    """A response -> {id, flags, rcode, qname, qtype, answers: [(type, ttl, address)]}."""
    qid, flags, qd, an, _ns, _ar = struct.unpack("!HHHHHH", msg[:12])
    off = 12
    qname, qtype = None, None
    for _ in range(qd):
        qname, off = parse_name(msg, off)
        qtype, _qclass = struct.unpack("!HH", msg[off:off + 4])
        off += 4
    answers = []
    for _ in range(an):
        _name, off = parse_name(msg, off)
        rtype, _rclass, ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        rdata = msg[off:off + rdlen]
        off += rdlen
        if rtype == TYPE_A:
            answers.append((rtype, ttl, socket.inet_ntop(socket.AF_INET, rdata)))
        elif rtype == TYPE_AAAA:
            answers.append((rtype, ttl, socket.inet_ntop(socket.AF_INET6, rdata)))
        else:
            answers.append((rtype, ttl, rdata))
    return {"id": qid, "flags": flags, "rcode": flags & 0xF, "qname": qname, "qtype": qtype,
            "answers": answers}


class FakeDNS:
    def __init__(self, host="127.0.0.1"):
        self._lock = threading.Condition()
        self._table = {}             # normalised name -> [ipaddress objects]
        self._drop_all = False
        self._drop_names = set()
        self._delay = 0.0            # seconds each answer is held back
        self._counts = {}            # normalised name -> queries seen
        self.log = []                # (time.monotonic(), name, type name, answered)
        self._stop = threading.Event()
        self._thread = None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.1)
        self.host = host
        self.port = self.sock.getsockname()[1]
        #: the value for --dns-server / SIDECAR_DNS_SERVER
        self.server = "%s:%d" % (host, self.port)

    # ---------------------------------------------------------- control
    def set_answers(self, name, addresses):
        """name answers these IPv4/IPv6 addresses from now on ([] = known name, no address)."""
        parsed = [ipaddress.ip_address(a) for a in addresses]
        with self._lock:
            self._table[_norm(name)] = parsed

    def remove(self, name):
        """name is unknown from now on (NXDOMAIN)."""
        with self._lock:
            self._table.pop(_norm(name), None)

    def answers(self, name):
        with self._lock:
            return [str(a) for a in self._table.get(_norm(name), [])]

    def set_drop(self, on=True, names=None):
        """Stop answering (every name, or only `names`); on=False answers again."""
        with self._lock:
            if names is None:
                self._drop_all = on
                if not on:
                    self._drop_names.clear()
            else:
                for n in names:
                    if on:
                        self._drop_names.add(_norm(n))
                    else:
                        self._drop_names.discard(_norm(n))

    def set_delay(self, seconds):
        """Hold every answer back this long (0: answer at once)."""
        with self._lock:
            self._delay = seconds

    # --------------------------------------------------------- inspection
    def query_count(self, name=None):
        """Queries seen for name (every type), or for all names."""
        with self._lock:
            if name is None:
                return sum(self._counts.values())
            return self._counts.get(_norm(name), 0)

    def wait_queries(self, name, n, timeout):
        """Wait until at least n queries for name were seen; return the count."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._counts.get(_norm(name), 0) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("fake DNS saw %d queries for %s, wanted %d within %.1fs"
                                         % (self._counts.get(_norm(name), 0), name, n, timeout))
                self._lock.wait(min(left, 0.1))
            return self._counts[_norm(name)]

    # --------------------------------------------------------- lifecycle
    def start(self):
        self._thread = threading.Thread(target=self._serve, name="fake-dns", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --------------------------------------------------------- internals
    def _serve(self):
        while not self._stop.is_set():
            try:
                msg, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                reply = self.handle(msg)
            except Exception:  # a broken query must not end the server
                reply = None
            if reply is not None:
                with self._lock:
                    delay = self._delay
                if delay > 0:
                    threading.Timer(delay, self._send, args=(reply, peer)).start()
                else:
                    self._send(reply, peer)

    def _send(self, reply, peer):
        if self._stop.is_set():
            return
        try:
            self.sock.sendto(reply, peer)
        except OSError:
            pass

    def handle(self, msg):
        """One query message -> the reply bytes, or None for no reply."""
        if len(msg) < 12:
            return None
        qid, flags, qdcount, _an, _ns, _ar = struct.unpack("!HHHHHH", msg[:12])
        if flags & 0x8000:
            return None  # a response, not a query
        opcode = (flags >> 11) & 0xF
        rd = flags & 0x0100

        def reply(rcode, question=b"", answers=()):
            rflags = 0x8000 | (opcode << 11) | 0x0400 | rd | 0x0080 | rcode  # QR AA RD RA
            head = struct.pack("!HHHHHH", qid, rflags, 1 if question else 0, len(answers), 0, 0)
            return head + question + b"".join(answers)

        if opcode != 0:
            return reply(RCODE_NOTIMP)
        if qdcount != 1:
            return reply(RCODE_FORMERR)
        try:
            qname, off = parse_name(msg, 12)
            if off + 4 > len(msg):
                raise DNSFormatError("question without type and class")
            qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
        except DNSFormatError:
            return reply(RCODE_FORMERR)
        # The question goes back as asked (same bytes, same letter case).
        question = msg[12:off + 4]
        key = _norm(qname)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            drop = self._drop_all or key in self._drop_names
            known = key in self._table
            addrs = list(self._table.get(key, []))
            self.log.append((time.monotonic(), key, TYPE_NAMES.get(qtype, str(qtype)), not drop))
            self._lock.notify_all()
        if drop:
            return None
        if qclass != CLASS_IN:
            return reply(RCODE_REFUSED, question)
        if not known:
            return reply(RCODE_NXDOMAIN, question)
        records = []
        for a in addrs:
            if qtype == TYPE_A and a.version == 4:
                rtype = TYPE_A
            elif qtype == TYPE_AAAA and a.version == 6:
                rtype = TYPE_AAAA
            else:
                continue
            # name: pointer to the question's name at offset 12; TTL 0
            records.append(struct.pack("!HHHIH", 0xC00C, rtype, CLASS_IN, 0, len(a.packed))
                           + a.packed)
        return reply(RCODE_NOERROR, question, records)
