"""Child processes of the black-box tests: start, read stdout/stderr lines in
background threads, wait (always with a timeout), signal, check for sanitizer
reports. Used by conftest.py (fixtures) and the test modules.
"""

import json
import os
import re
import signal
import subprocess
import threading
import time

from bbenv import ACCOUNTS_BIN, ALERT_SINK_BIN, HELLO_BIN, LATER_BIN, SIDECAR_BIN, VISITS_BIN, WAIT

# One ISO-8601 UTC timestamp with milliseconds, service, EVENT, then fields.
LOG_LINE_RE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) "
    r"(?P<service>[a-z][a-z-]*) (?P<event>[A-Z]+)(?: (?P<rest>.*))?$"
)

# key=value or key="quoted value" (with \" and \\ escapes inside quotes)
_KV_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)')

SANITIZER_RE = re.compile(
    r"(==\d+==\s*ERROR: |runtime error: |SUMMARY: \w*Sanitizer|"
    r"WARNING: \w*Sanitizer|LeakSanitizer|AddressSanitizer|"
    r"UndefinedBehaviorSanitizer|ThreadSanitizer)"
)


def parse_fields(rest):
    """Parse `key=value key="quoted value"` into a dict (quotes removed)."""
    out = {}
    for m in _KV_RE.finditer(rest or ""):
        v = m.group(2)
        if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        out[m.group(1)] = v
    return out


TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
_JSON_HEAD = ["time", "service", "event"]


class DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise DuplicateKey("duplicate key %r" % k)
        obj[k] = v
    return obj


def _not_json(name):
    raise ValueError("%s is not JSON" % name)


def parse_json_line(raw):
    """One JSON log line -> dict (keys in order), or None if it is not a valid one.

    Valid: a single JSON object without duplicate keys whose first keys are
    "time" (ISO-8601 UTC with milliseconds), "service" and "event" (strings).
    NaN and Infinity (which Python would accept) are not JSON.
    """
    try:
        obj = json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_not_json)
    except ValueError:
        return None
    if not isinstance(obj, dict) or list(obj)[:3] != _JSON_HEAD:
        return None
    if not all(isinstance(obj[k], str) for k in _JSON_HEAD):
        return None
    if not TS_RE.match(obj["time"]) or not re.match(r"^[A-Z]+$", obj["event"]):
        return None
    return obj


class LogLine:
    """One stdout line: `TS service EVENT fields` or, in JSON mode, one JSON object.

    In JSON mode `obj` is the parsed object and `fields` holds its keys other
    than time/service/event with their JSON types; a free-form event
    ({"message": "k=v ..."} only) gets the message's k=v pairs as well.
    """

    def __init__(self, raw, t, json_mode=False):
        self.raw = raw
        self.t = t  # time.monotonic() when our reader saw it
        self.json_mode = json_mode
        self.obj = None
        if json_mode:
            obj = parse_json_line(raw)
            self.ok = obj is not None
            self.obj = obj
            self.ts = obj["time"] if obj else None
            self.service = obj["service"] if obj else None
            self.event = obj["event"] if obj else None
            self.rest = ""
            self.fields = {k: v for k, v in obj.items() if k not in _JSON_HEAD} if obj else {}
            if list(self.fields) == ["message"] and isinstance(self.fields["message"], str):
                self.fields.update(parse_fields(self.fields["message"]))
            return
        m = LOG_LINE_RE.match(raw)
        self.ok = m is not None
        self.ts = m.group("ts") if m else None
        self.service = m.group("service") if m else None
        self.event = m.group("event") if m else None
        self.rest = (m.group("rest") or "") if m else ""
        self.fields = parse_fields(self.rest) if m else {}

    def __repr__(self):
        return "LogLine(%r)" % self.raw


def _field_is(got, want):
    """A wait_event filter: text fields compare as strings, JSON numbers as numbers."""
    if isinstance(got, str):
        return got == str(want)
    return got == want


_ALL_PROCS = []


def sanitizer_report(text):
    m = SANITIZER_RE.search(text)
    if not m:
        return None
    start = max(0, m.start() - 200)
    return text[start:start + 3000]


class Proc:
    """A child process whose stdout/stderr are read line by line in threads."""

    def __init__(self, argv, env=None, name=None, json_lines=False):
        self.argv = list(argv)
        self.name = name or os.path.basename(argv[0])
        self.json_lines = json_lines  # stdout is JSON lines, not `TS service EVENT ...`
        full_env = dict(os.environ)
        # Make sure nothing from the caller's environment leaks in.
        for k in list(full_env):
            if k.startswith("HELLO_") or k.startswith("SIDECAR_"):
                del full_env[k]
        full_env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        if env:
            full_env.update(env)
        self._cond = threading.Condition()
        self.out = []  # list[LogLine]
        self.err = []  # list[str]
        self._eof = {"out": False, "err": False}
        self.t_start = time.monotonic()
        self.p = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            start_new_session=True,  # terminal ^C must not reach it
        )
        _ALL_PROCS.append(self)
        self._threads = [
            threading.Thread(target=self._reader, args=(self.p.stdout, "out"), daemon=True),
            threading.Thread(target=self._reader, args=(self.p.stderr, "err"), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _reader(self, stream, which):
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self._cond:
                    if which == "out":
                        self.out.append(LogLine(line, time.monotonic(), self.json_lines))
                    else:
                        self.err.append(line)
                    self._cond.notify_all()
        finally:
            # The pipe is done with: close it now (the Proc stays referenced in _ALL_PROCS for
            # the session, and its two pipes would otherwise stay open until exit: hundreds of
            # servers per run would take the test process past select()'s 1024 descriptors).
            try:
                stream.close()
            except OSError:
                pass
            with self._cond:
                self._eof[which] = True
                self._cond.notify_all()

    # -- inspection -------------------------------------------------------
    @property
    def pid(self):
        return self.p.pid

    def lines(self):
        with self._cond:
            return list(self.out)

    def stderr_text(self):
        with self._cond:
            return "\n".join(self.err)

    def events(self, event):
        return [l for l in self.lines() if l.event == event]

    def dump(self):
        out = "\n".join(l.raw for l in self.lines())
        return "--- %s argv=%r rc=%r\n--- stdout:\n%s\n--- stderr:\n%s" % (
            self.name, self.argv, self.p.poll(), out, self.stderr_text())

    def wait_for(self, pred, timeout=None, start=0, what=None):
        """Wait until a stdout line (index >= start) satisfies pred; return it."""
        timeout = WAIT if timeout is None else timeout
        deadline = time.monotonic() + timeout
        i = start
        with self._cond:
            while True:
                while i < len(self.out):
                    if pred(self.out[i]):
                        return self.out[i]
                    i += 1
                if self._eof["out"]:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
        raise AssertionError("timeout (%.1fs) waiting for %s\n%s" % (
            timeout, what or "a matching line", self.dump()))

    def wait_event(self, event, timeout=None, start=0, **fields):
        def pred(l):
            if l.event != event:
                return False
            return all(_field_is(l.fields.get(k), v) for k, v in fields.items())
        return self.wait_for(pred, timeout, start, what="%s %r" % (event, fields))

    def index(self):
        """Number of stdout lines seen so far (use as `start` for waits)."""
        with self._cond:
            return len(self.out)

    # -- lifecycle ---------------------------------------------------------
    def send_signal(self, sig):
        if self.p.poll() is None:
            os.kill(self.p.pid, sig)

    def wait(self, timeout=None):
        """Wait for exit (and for the output readers); return the exit code."""
        timeout = WAIT if timeout is None else timeout
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("%s did not exit within %.1fs\n%s" % (
                self.name, timeout, self.dump()))
        for t in self._threads:
            t.join(timeout=2.0)
        return rc

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Send sig, wait for exit; return (exit code, seconds it took)."""
        t0 = time.monotonic()
        self.send_signal(sig)
        rc = self.wait(timeout)
        return rc, time.monotonic() - t0

    def kill(self):
        if self.p.poll() is None:
            try:
                os.kill(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def running(self):
        return self.p.poll() is None

    def assert_clean(self):
        """No sanitizer report on stderr, every stdout line well-formed."""
        rep = sanitizer_report(self.stderr_text())
        assert rep is None, "sanitizer report from %s:\n%s" % (self.name, rep)
        bad = [l.raw for l in self.lines() if not l.ok]
        assert not bad, "malformed stdout lines from %s: %r\n%s" % (self.name, bad, self.dump())
        wrong = [l.raw for l in self.lines() if l.service != self.name]
        assert not wrong, "lines with wrong service name: %r" % wrong

    def assert_clean_exit(self, sig=signal.SIGTERM, timeout=None):
        """Stop with sig; exit status 0, an `EXIT code=0` line, no sanitizer noise."""
        if self.running():
            rc, _ = self.stop(sig, timeout)
        else:
            rc = self.wait(1.0)
        assert rc == 0, "%s exited with %r\n%s" % (self.name, rc, self.dump())
        assert any(l.event == "EXIT" and l.fields.get("code") == "0" for l in self.lines()), \
            "no `EXIT code=0` line\n" + self.dump()
        self.assert_clean()


def rss_kib(pid):
    """VmRSS of a process, in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def run_to_completion(argv, env=None, timeout=None):
    """Run a command that should exit by itself; return the Proc after exit."""
    p = Proc(argv, env=env)
    p.wait(timeout if timeout is not None else WAIT)
    return p



class Listener(Proc):
    """A server that prints "LISTEN addr=HOST:PORT" once it accepts connections."""

    def __init__(self, argv, env=None, name=None):
        super().__init__(argv, env=env, name=name)
        self.port = None
        self.addr = None

    def wait_listening(self, timeout=None):
        line = self.wait_event("LISTEN", timeout=timeout)
        addr = line.fields.get("addr", "")
        host, _, port = addr.rpartition(":")
        assert host and port.isdigit() and int(port) > 0, "bad LISTEN line: " + line.raw
        self.addr = addr
        self.host = host
        self.port = int(port)
        return self


class Hello(Listener):
    def __init__(self, args=(), env=None):
        super().__init__([HELLO_BIN] + list(args), env=env, name="hello")


class Visits(Listener):
    """The visits service (Redis numbers, PostgreSQL durable count)."""

    def __init__(self, args=(), env=None):
        super().__init__([VISITS_BIN] + list(args), env=env, name="visits")


class AlertSink(Listener):
    """alertsink/alert-sink: Alertmanager's webhook, one ALERT line per alert."""

    def __init__(self, args=(), env=None):
        super().__init__([ALERT_SINK_BIN, "--listen", "127.0.0.1:0"] + list(args), env=env,
                         name="alert-sink")


class Accounts(Listener):
    """The accounts service (sign-up, login, JWTs, /auth; PostgreSQL)."""

    def __init__(self, args=(), env=None):
        super().__init__([ACCOUNTS_BIN] + list(args), env=env, name="accounts")


class LaterServer(Listener):
    """tests/tools/later_server: a core::http_server whose handler answers on uv timers."""

    def __init__(self, args=(), env=None):
        super().__init__([LATER_BIN, "--listen", "127.0.0.1:0"] + list(args), env=env,
                         name="later")


def sidecar_log_format(args, env):
    """The log format a sidecar started with these flags and env is expected to use."""
    fmt = (env or {}).get("SIDECAR_LOG_FORMAT", "text")
    args = list(args)
    for i, a in enumerate(args):
        if a == "--log-format" and i + 1 < len(args):
            fmt = args[i + 1]
        elif a.startswith("--log-format="):
            fmt = a.split("=", 1)[1]
    return fmt


class Sidecar(Proc):
    def __init__(self, args=(), env=None):
        super().__init__([SIDECAR_BIN] + list(args), env=env, name="sidecar",
                         json_lines=sidecar_log_format(args, env) == "json")
