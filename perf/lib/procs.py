"""Processes under test: start in their own session, wait until they listen, read their memory
and CPU time from /proc, stop them (SIGTERM, then SIGKILL of the group), and make sure none
outlives perf/run: every child gets PR_SET_PDEATHSIG, and bench.py stops the rest on exit."""

import ctypes
import os
import re
import resource
import signal
import socket
import subprocess
import time

from .common import PIN, log

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


def die_with_parent(sig=signal.SIGTERM):
    """preexec_fn: the child gets sig (SIGTERM) if this process dies (even by SIGKILL)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # best effort: the finally-cleanup is the main guarantee
        pass


def raise_nofile(want):
    """Raise this process's soft RLIMIT_NOFILE (children inherit it) -> the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def proc_children(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid:
            kids.append(int(entry))
    return kids


def proc_tree(pid):
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(proc_children(p))
    return tree


def proc_status_kib(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def proc_cpu_seconds(pid, reaped=False):
    """utime + stime of one process, from /proc/PID/stat; reaped=True adds its children that
    have exited and been waited for (cutime + cstime: PostgreSQL's finished backends)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def memory_of(pids):
    """{'rss_kib': total VmRSS of these processes, 'hwm_kib': sum of VmHWM, 'procs': [...]}"""
    procs = []
    for p in pids:
        rss, hwm = proc_status_kib(p, "VmRSS"), proc_status_kib(p, "VmHWM")
        if rss is not None:
            procs.append({"pid": p, "rss_kib": rss, "hwm_kib": hwm})
    return {"rss_kib": sum(p["rss_kib"] for p in procs),
            "hwm_kib": sum(p["hwm_kib"] or 0 for p in procs), "procs": procs}


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def can_connect(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


class Server:
    """One server under test, started in its own session (its pid is its process group)."""

    def __init__(self, name, argv, logpath, port=None, listen_re=None, cwd=None, env=None,
                 pin=True):
        self.name, self.argv, self.logpath = name, argv, logpath
        self.port, self.cwd, self.env = port, cwd, env
        self.listen_re = re.compile(listen_re) if listen_re else None
        self.prefix = list(PIN["server"]) if pin else []
        self.proc = None
        self.exit_code = None
        self.started_at = None
        self.conf_text = None

    @property
    def command(self):
        return self.prefix + self.argv

    def spawn(self):
        """Start the process without waiting for it to listen."""
        # Logs are appended (a server restarted under the same name keeps one file); only
        # this start's part is read back.
        logf = open(self.logpath, "ab")
        self.log_offset = logf.tell()
        try:
            env = None
            if self.env:
                env = dict(os.environ)
                env.update(self.env)
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                cwd=self.cwd, env=env, start_new_session=True, preexec_fn=die_with_parent)
        finally:
            logf.close()

    def start(self, timeout=START_TIMEOUT):
        self.spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with status %s while starting:\n%s"
                                   % (self.name, self.proc.returncode, self.log_tail()))
            if self.port is None and self.listen_re:
                m = self.listen_re.search(self.read_log())
                if m:
                    self.port = int(m.group(1))
            if self.port is not None and can_connect(self.port):
                return self
            time.sleep(0.05)
        raise RuntimeError("%s did not start listening within %gs:\n%s"
                           % (self.name, timeout, self.log_tail()))

    def read_log(self):
        try:
            with open(self.logpath, "rb") as f:
                f.seek(getattr(self, "log_offset", 0))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines=15):
        return "\n".join("    " + line for line in self.read_log().splitlines()[-lines:])

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def pids(self):
        return proc_tree(self.pid) if self.alive() else []

    def memory(self):
        """{'rss_kib': total VmRSS of the process tree, 'hwm_kib': sum of VmHWM, 'procs': [...]}"""
        return memory_of(self.pids())

    def cpu_seconds(self):
        return sum(proc_cpu_seconds(p) for p in self.pids())

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            tree = self.pids()
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log("%s (pid %d) ignored %s for %gs; killing its process group"
                    % (self.name, self.proc.pid, signal.Signals(sig).name, timeout))
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
            for p in tree[1:]:  # e.g. an nginx worker left behind by its master
                try:
                    os.kill(p, 0)
                    os.kill(p, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        self.exit_code = self.proc.returncode


class Registry:
    """Every server any section started, so bench.py can stop what is still running on the
    way out (an error, Ctrl-C, SIGTERM) whatever section was running."""

    def __init__(self):
        self.servers = []

    def add(self, server):
        self.servers.append(server)
        return server

    def stop_all(self):
        for s in reversed(self.servers):
            try:
                s.stop()
            except Exception as e:  # keep stopping the others
                log("could not stop %s (pid %s): %s" % (s.name, s.pid, e))


REGISTRY = Registry()
