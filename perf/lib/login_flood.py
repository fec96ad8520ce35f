"""perf/login-flood.sh's engine: accounts with a real PostgreSQL under a login flood far beyond
its hashing queue, while /health of the same process is polled (issue 15: /health p99 under
5 ms; the excess logins get 503 + Retry-After fast; none times out).

    python3 perf/lib/login_flood.py TMP BUILD      (settings from the environment, see the .sh)

PostgreSQL is tests/blackbox/stores.py's (initdb'd as `nobody` when root, scram-sha-256 over
TCP, fsync=off as in the tests), accounts build/accounts/accounts with its shipped hashing
settings (argon2id 19 MiB, t=2, UV_THREADPOOL_SIZE 4, --hash-queue 64 unless PERF_HASH_QUEUE),
both on CPU 1. On CPU 0: the flood, PERF_FLOOD_CLIENTS asyncio clients in this process, each
sending POST /login with a correct password (8 accounts in turn) back to back on its own
keep-alive connection for PERF_FLOOD_DURATION, in two modes per round (order alternating):
polite clients wait a 503's Retry-After before asking again (more users than the pool can
hash), abusive ones ask again at once; and the /health poller, a process of its own (`nice -n
-10`: its figures are the server's, not its wait for CPU 0 behind the flood), one keep-alive
connection, a poll every 1/PERF_HEALTH_RATE s on a fixed schedule, from 2 s before the flood
(the idle figures: this machine's noise floor) until 1 s after it. A login with no answer
within PERF_LOGIN_TIMEOUT counts as timed out. Latencies are measured by the clients: a 503's
includes the flood client's own event loop (hundreds of coroutines on one core), so it is an
upper bound. CPU per round: accounts' loop thread, its pool threads (hashing) and PostgreSQL,
as shares of one core over the flood.

PERF_HASH_NICE (a nice value, or "idle" for SCHED_IDLE) and PERF_RETRY_JITTER (seconds of
random extra wait for polite clients) are for diagnosis: what lowering the hashing threads'
priority, or clients that do not come back all at once, would change.
"""

import asyncio
import ctypes
import json
import os
import random
import signal
import subprocess
import sys
import time

PERF_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(PERF_DIR)
sys.path.insert(0, os.path.join(ROOT, "tests", "blackbox"))
import stores  # noqa: E402  (tests/blackbox/stores.py: the tests' real PostgreSQL)


def env_int(name, default):
    return int(os.environ.get(name, "") or default)


def env_float(name, default):
    return float(os.environ.get(name, "") or default)


PIN = os.environ.get("PERF_PIN", "1") != "0" and (os.cpu_count() or 1) >= 2
ROUNDS = env_int("PERF_ROUNDS", 2)
CLIENTS = env_int("PERF_FLOOD_CLIENTS", 256)
DURATION = env_float("PERF_FLOOD_DURATION", 10)
HASH_QUEUE = env_int("PERF_HASH_QUEUE", 64)
HEALTH_RATE = env_float("PERF_HEALTH_RATE", 50)
LOGIN_TIMEOUT = env_float("PERF_LOGIN_TIMEOUT", 10)
# Diagnosis only: polite clients wait Retry-After plus up to this many seconds (uniform), so they
# do not all come back in the same millisecond.
RETRY_JITTER = env_float("PERF_RETRY_JITTER", 0)
# Diagnosis only: accounts' pool threads reniced to this after start (the loop thread stays at 0).
# ("idle": SCHED_IDLE, which any normal thread preempts at once).
HASH_NICE = os.environ.get("PERF_HASH_NICE") or None
# polite: clients wait a 503's Retry-After before asking again (many users, more logins than
# the pool can hash); abusive: they ask again at once (a flood that ignores Retry-After).
MODES = [m for m in os.environ.get("PERF_FLOOD_MODES", "polite abusive").split() if m]
assert MODES and set(MODES) <= {"polite", "abusive"}, "PERF_FLOOD_MODES: polite and/or abusive"
ACCOUNTS = 8  # the flood's clients log in as these in turn
IDLE_S = 2.0

# One keep-alive connection, a GET /health every 1/rate s on a fixed schedule (a late poll goes
# out at once; the schedule is not shifted). Prints "sent_at:latency:status" per poll
# (CLOCK_MONOTONIC, shared with the parent).
HEALTH_POLLER = r"""
import socket, sys, time
port, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
req = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
out = []
start = time.monotonic()
k = 0
while True:
    due = start + k / rate
    if due > start + seconds:
        break
    now = time.monotonic()
    if due > now:
        time.sleep(due - now)
    at = time.monotonic()
    t0 = time.perf_counter()
    s.sendall(req)
    buf = b""
    while True:
        head, sep, rest = buf.partition(b"\r\n\r\n")
        if sep:
            n = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    n = int(value)
            if len(rest) >= n:
                break
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("the server closed the /health connection")
        buf += chunk
    out.append("%.6f:%.6f:%s" % (at, time.perf_counter() - t0, buf[9:12].decode()))
    k += 1
print(" ".join(out))
"""


def pin(cpu):
    if PIN:
        os.sched_setaffinity(0, {cpu})


LIBC = ctypes.CDLL(None, use_errno=True)


def die_with_parent(sig):
    LIBC.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG


def server_child(sig):
    def preexec():
        pin(1)
        die_with_parent(sig)
    return preexec


async def read_response(reader):
    """(status, headers dict with lower-case names, body) of one HTTP/1.1 answer."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def request(method, path, body=b"", ctype="application/json"):
    return (("%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
             % (method, path, ctype, len(body))).encode() + body)


async def one_request(port, method, path, body):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request(method, path, body))
    answer = await read_response(reader)
    writer.close()
    return answer


def login_body(i):
    return json.dumps({"email": "flood%d@example.com" % (i % ACCOUNTS),
                       "password": "flood-password-%d" % (i % ACCOUNTS)}).encode()


async def flood(port, results, end, polite):
    """CLIENTS connections, each logging in back to back until end (time.monotonic); polite
    clients wait the Retry-After of a 503 before asking again (not past end)."""
    async def client(i):
        req = request("POST", "/login", login_body(i))
        reader = writer = None
        while time.monotonic() < end:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            t0 = time.perf_counter()
            writer.write(req)
            try:
                status, headers, body = await asyncio.wait_for(read_response(reader),
                                                               LOGIN_TIMEOUT)
            except asyncio.TimeoutError:
                results.append(("timeout", time.perf_counter() - t0, None, b""))
                writer.close()
                writer = None
                continue
            except (asyncio.IncompleteReadError, ConnectionError) as e:
                results.append(("closed", time.perf_counter() - t0, None, str(e).encode()))
                writer.close()
                writer = None
                continue
            results.append((status, time.perf_counter() - t0, headers.get("retry-after"), body))
            if headers.get("connection", "").lower() == "close":
                writer.close()
                writer = None
            wait = headers.get("retry-after", "")
            if polite and status == 503 and wait.isdigit():
                pause = int(wait) + random.uniform(0, RETRY_JITTER)
                await asyncio.sleep(max(0.0, min(pause, end - time.monotonic())))
        if writer is not None:
            writer.close()

    await asyncio.gather(*(client(i) for i in range(CLIENTS)))


def cpu_seconds(pid, reaped=False):
    """utime + stime of one process or thread (and its waited-for children with reaped)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_split(accounts_pid, pg):
    """CPU seconds so far: accounts' loop thread, its other threads (libuv's pool: hashing),
    PostgreSQL (the postmaster, its backends, finished ones included)."""
    tids = [int(t) for t in os.listdir("/proc/%d/task" % accounts_pid)]
    with open("/proc/%d/task/%d/stat" % (accounts_pid, accounts_pid)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    loop = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    pool = 0.0
    for t in tids:
        if t != accounts_pid:
            with open("/proc/%d/task/%d/stat" % (accounts_pid, t)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            pool += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    pgs = sum(cpu_seconds(p, reaped=(p == pg.proc.pid))
              for p in [pg.proc.pid] + stores._children(pg.proc.pid))
    return loop, pool, pgs


def pct(xs, q):
    """The q-th percentile (nearest rank) of xs, sorted here."""
    xs = sorted(xs)
    return xs[max(0, min(len(xs) - 1, int(round(q / 100.0 * len(xs) + 0.5)) - 1))]


def ms(x):
    return "%.2f" % (x * 1e3)


def metrics(port):
    status, _, body = asyncio.run(one_request(port, "GET", "/metrics", b""))
    assert status == 200, status
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def one_round(port, rnd, mode, accounts_pid, pg):
    m0 = metrics(port)
    c0 = cpu_split(accounts_pid, pg)
    seconds = IDLE_S + DURATION + 1.0
    poller = subprocess.Popen((["taskset", "-c", "0"] if PIN else []) +
                              ["nice", "-n", "-10", sys.executable, "-c", HEALTH_POLLER,
                               str(port), str(HEALTH_RATE), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    t_start = time.monotonic()
    flood_start = t_start + IDLE_S
    time.sleep(max(0.0, flood_start - time.monotonic()))
    flood_start = time.monotonic()
    results = []
    asyncio.run(flood(port, results, flood_start + DURATION, mode == "polite"))
    flood_end = time.monotonic()
    c1 = cpu_split(accounts_pid, pg)
    out, _ = poller.communicate(timeout=seconds + 60)
    if poller.returncode != 0:
        sys.exit("the /health poller failed (status %d)" % poller.returncode)
    m1 = metrics(port)
    polls = [x.split(":") for x in out.split()]
    polls = [(float(a), float(b), c) for a, b, c in polls]
    during = [p for p in polls if flood_start <= p[0] <= flood_end]
    idle = [p for p in polls if p[0] < flood_start]
    ok, busy, other = [], [], []
    for r in results:
        if r[0] == 200:
            ok.append(r)
        elif r[0] == 503 and b"busy" in r[3]:
            busy.append(r)
        else:
            other.append(r)
    bad_ok = [r for r in ok if b"access_token" not in r[3]]
    with_retry = [r for r in busy if r[2] is not None and r[2].isdigit() and int(r[2]) >= 1]

    def d(name, **labels):
        key = name + ("{" + ",".join('%s="%s"' % kv for kv in labels.items()) + "}"
                      if labels else "")
        return m1.get(key, 0) - m0.get(key, 0)

    r = {
        "mode": mode, "cpu": [(b - a) / (flood_end - flood_start) for a, b in zip(c0, c1)],
        "round": rnd, "wall": flood_end - flood_start, "logins": len(results),
        "ok": len(ok), "busy": len(busy), "retry_after": len(with_retry),
        "other": sorted(set(str(x[0]) for x in other)), "n_other": len(other),
        "timeouts": sum(1 for x in results if x[0] == "timeout"), "bad_ok": len(bad_ok),
        "ok_lat": [x[1] for x in ok], "busy_lat": [x[1] for x in busy],
        "health": [p[1] for p in during], "health_bad": sum(1 for p in during if p[2] != "200"),
        "idle": [p[1] for p in idle],
        "srv_ok": d("accounts_logins_total", outcome="success"),
        "srv_busy": d("accounts_logins_total", outcome="overloaded"),
        "srv_refused": d("accounts_hash_refused_total"),
        "capacity": m1.get("accounts_hash_queue_capacity"),
        "depth_after": m1.get("accounts_hash_queue_depth"),
    }
    print("round %d, %s: %d logins in %.1f s: %d 200, %d 503 busy (%d with Retry-After), %d other "
          "%s, %d timed out; /health p99 %s ms over %d polls (max %s ms)"
          % (rnd, mode, r["logins"], r["wall"], r["ok"], r["busy"], r["retry_after"], r["n_other"],
             r["other"], r["timeouts"], ms(pct(r["health"], 99)), len(r["health"]),
             ms(max(r["health"]))), file=sys.stderr, flush=True)
    return r


def main():
    tmp, build = sys.argv[1], sys.argv[2]
    template = stores.PostgresTemplate()
    pg = stores.PostgresServer(template)
    # SIGINT is PostgreSQL's fast shutdown.
    pg.preexec = server_child(signal.SIGINT)
    accounts = None
    try:
        pg.start()
        log = open(os.path.join(tmp, "accounts.log"), "wb")
        argv = [os.path.join(build, "accounts", "accounts"), "--listen", "127.0.0.1:0",
                "--database", pg.conninfo, "--database-password-file", pg.password_file,
                "--keys-dir", os.path.join(tmp, "keys"), "--signing-key", "k1",
                "--hash-queue", str(HASH_QUEUE), "--access-log", "off"]
        accounts = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL,
                                    preexec_fn=server_child(signal.SIGTERM))
        pin(0)  # this process is the flood: on the clients' CPU
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            time.sleep(0.05)
            with open(os.path.join(tmp, "accounts.log")) as f:
                for line in f:
                    if "LISTEN" in line and "addr=127.0.0.1:" in line:
                        port = int(line.split("addr=127.0.0.1:")[1].split()[0])
            if accounts.poll() is not None:
                sys.exit("accounts exited:\n" + open(os.path.join(tmp, "accounts.log")).read())
        while time.monotonic() < deadline:
            status, _, _ = asyncio.run(one_request(port, "GET", "/health", b""))
            if status == 200:
                break
            time.sleep(0.1)
        else:
            sys.exit("accounts' /health never answered 200")
        for i in range(ACCOUNTS):
            body = json.dumps({"username": "flood%d" % i, "email": "flood%d@example.com" % i,
                               "password": "flood-password-%d" % i}).encode()
            status, _, answer = asyncio.run(one_request(port, "POST", "/account", body))
            if status != 201:
                sys.exit("sign-up answered %d: %r" % (status, answer))
            status, _, answer = asyncio.run(one_request(port, "POST", "/login", login_body(i)))
            if status != 200:
                sys.exit("login answered %d: %r" % (status, answer))
        if HASH_NICE is not None:
            # Diagnosis: accounts' other threads (libuv's pool: the hashers, started by the
            # sign-ups above) at a lower priority than its loop thread.
            for tid in os.listdir("/proc/%d/task" % accounts.pid):
                if int(tid) == accounts.pid:
                    continue
                if HASH_NICE == "idle":
                    os.sched_setscheduler(int(tid), os.SCHED_IDLE, os.sched_param(0))
                else:
                    os.setpriority(os.PRIO_PROCESS, int(tid), int(HASH_NICE))
        print("accounts %s (argon2id 19 MiB t=2, UV_THREADPOOL_SIZE %s, --hash-queue %d), "
              "PostgreSQL %s; pinned: %s%s" % (" ".join(argv[:1]), os.environ.get(
                  "UV_THREADPOOL_SIZE", "4 (libuv's default)"), HASH_QUEUE, pg.bindir,
                  "servers CPU 1, clients CPU 0" if PIN else "no",
                  ("; pool threads reniced to %s" % HASH_NICE if HASH_NICE is not None else "")
                  + ("; polite clients' retries jittered by up to %g s" % RETRY_JITTER
                     if RETRY_JITTER else "")),
              flush=True)
        rounds = []
        for i in range(ROUNDS):
            for mode in (MODES if i % 2 == 0 else MODES[::-1]):
                rounds.append(one_round(port, i + 1, mode, accounts.pid, pg))
        report(rounds)
        failed = any(r["timeouts"] or r["n_other"] or r["bad_ok"] or r["health_bad"]
                     for r in rounds)
        return 1 if failed else 0
    finally:
        if accounts is not None:
            accounts.terminate()
            accounts.wait(20)
        pg.stop()
        pg.cleanup()
        template.cleanup()


def report(rounds):
    print("\n%d clients x %.0f s of POST /login (correct passwords; polite: a 503's Retry-After "
          "is waited, abusive: ignored), /health polled %.0f/s\n"
          % (CLIENTS, DURATION, HEALTH_RATE))
    print("| round | clients | logins | 200 | 503 busy (with Retry-After) | other | timed out "
          "| 200 p50 / p99 ms | 503 p50 / p99 / max ms "
          "| /health idle p50 / p99 ms | /health in flood p50 / p99 / max ms (polls) "
          "| CPU loop / pool / PostgreSQL |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rounds:
        print("| %d | %s | %d | %d | %d (%d) | %d | %d | %s / %s | %s / %s / %s | %s / %s "
              "| %s / %s / %s (%d) | %.0f%% / %.0f%% / %.0f%% |"
              % (r["round"], r["mode"], r["logins"], r["ok"], r["busy"], r["retry_after"],
                 r["n_other"], r["timeouts"], ms(pct(r["ok_lat"], 50)), ms(pct(r["ok_lat"], 99)),
                 ms(pct(r["busy_lat"], 50)), ms(pct(r["busy_lat"], 99)), ms(max(r["busy_lat"])),
                 ms(pct(r["idle"], 50)), ms(pct(r["idle"], 99)),
                 ms(pct(r["health"], 50)), ms(pct(r["health"], 99)), ms(max(r["health"])),
                 len(r["health"]), *(100 * x for x in r["cpu"])))
    print()
    for r in rounds:
        print("round %d, %s: accounts' own counters: logins success %+.0f, overloaded %+.0f, "
              "hash refused %+.0f; queue capacity %.0f, depth after %.0f"
              % (r["round"], r["mode"], r["srv_ok"], r["srv_busy"], r["srv_refused"],
                 r["capacity"], r["depth_after"]))
    print()
    for mode in MODES:
        rs = [r for r in rounds if r["mode"] == mode]
        p99s = [pct(r["health"], 99) for r in rs]
        timeouts = sum(r["timeouts"] + r["n_other"] for r in rs)
        busy_p99 = max(pct(r["busy_lat"], 99) for r in rs)
        print("verdict, %s: /health p99 under the flood %s ms (rounds: %s; goal < 5 ms): %s; "
              "%d logins timed out or failed otherwise (goal 0): %s; the excess got 503 + "
              "Retry-After, p99 %s ms at worst"
              % (mode, ms(max(p99s)), " ".join(ms(x) for x in p99s),
                 "met" if max(p99s) < 0.005 else "NOT met", timeouts,
                 "met" if timeouts == 0 else "NOT met", ms(busy_p99)))


if __name__ == "__main__":
    sys.exit(main())
