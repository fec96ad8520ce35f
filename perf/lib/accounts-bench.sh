# Sourced by perf/auth-vs-hello.sh, perf/api-vs-root.sh and perf/login-flood.sh: settings, the
# temp dir and its clean-up, an Ed25519 key and tokens as accounts makes them, starting the
# servers pinned, wrk runs, medians. Expects `root` (the repository) to be set; sets build,
# rounds, duration, conns, srv/cli (taskset prefixes), tmp, pids.
build=${PERF_BUILD_DIR:-$root/build}
rounds=${PERF_ROUNDS:-3}
duration=${PERF_DURATION:-5s}
conns=${PERF_CONNECTIONS:-50}
# The servers on CPU 1, the clients on CPU 0 (PERF_PIN=0: unpinned). PERF_CLIENT_CPU=1 puts
# the clients on the servers' CPU: on this VM a wake-up of a process on the other CPU (an
# inter-processor interrupt) is expensive and is charged to the sender's system time, so the
# per-CPU-second figures of a server answering one request per wake-up are partly the VM's
# (perf/README.md, "accounts"); on one CPU the wake-ups are local.
srv=(taskset -c 1)
cli=(taskset -c "${PERF_CLIENT_CPU:-0}")
if [[ ${PERF_PIN:-1} == 0 ]]; then srv=(); cli=(); fi
hz=$(getconf CLK_TCK)

require_built() {  # binaries...
  local b
  for b in "$@"; do
    [[ -x $b ]] || { echo "not built: $b" >&2; exit 1; }
  done
}

tmp=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# $tmp/keys/k1.pem, the signing key accounts is given (--keys-dir "$tmp/keys" --signing-key k1).
make_key() {
  mkdir "$tmp/keys"
  openssl genpkey -algorithm ed25519 -out "$tmp/keys/k1.pem" 2>/dev/null
}

# $tmp/tokens: n distinct tokens as the service makes them (same header, claims and sizes),
# signed by openssl with k1; $tmp/one-token: the first of them.
make_tokens() {  # n
  python3 - "$tmp" "$1" <<'PY'
import base64, json, subprocess, sys, time
tmp, n = sys.argv[1], int(sys.argv[2])
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
head = b64(json.dumps({"alg": "EdDSA", "typ": "JWT", "kid": "k1"}, separators=(",", ":")).encode())
with open(tmp + "/tokens", "w") as out:
    for i in range(n):
        claims = {"sub": str(i + 1), "name": "user%d" % i, "iat": now, "nbf": now,
                  "exp": now + 3600, "iss": "accounts", "aud": "stack", "jti": b64(i.to_bytes(16, "big"))}
        si = head + "." + b64(json.dumps(claims, separators=(",", ":")).encode())
        with open(tmp + "/msg", "wb") as m:
            m.write(si.encode())
        sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", tmp + "/keys/k1.pem",
                              "-rawin", "-in", tmp + "/msg"], capture_output=True,
                             check=True).stdout
        out.write(si + "." + b64(sig) + "\n")
PY
  head -n 1 "$tmp/tokens" > "$tmp/one-token"
}

cpu_ticks() {  # pids... -> the sum of their utime + stime, in clock ticks
  local p sum=0 t
  for p in "$@"; do
    # Fields after the command name (which may hold spaces): utime and stime are 12th and 13th.
    t=$(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')
    sum=$((sum + t))
  done
  echo "$sum"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts a core service (hello, accounts) on the servers' CPU, listening on 127.0.0.1:port, its
# output in $tmp/<name>.log; returns once it logs LISTEN. Its pid is ${pids[-1]}.
start() {  # name port argv...
  local name=$1 port=$2
  shift 2
  "${srv[@]}" "$@" --listen "127.0.0.1:$port" > "$tmp/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do
    grep -q LISTEN "$tmp/$name.log" && return 0
    sleep 0.1
  done
  echo "$name did not start" >&2
  cat "$tmp/$name.log" >&2
  exit 1
}

# accounts without a database: /auth never needs one, so it is pointed at a closed port.
accounts_no_db=(--keys-dir "$tmp/keys" --signing-key k1 --database "host=127.0.0.1 port=1 dbname=x user=x")

# One wrk run on the clients' CPU; its whole output in $wrk_out. Fails on any socket error or
# non-2xx answer.
wrk_run() {  # wrk args...
  wrk_out=$("${cli[@]}" wrk -t1 -c"$conns" -d"$duration" "$@")
  if grep -qE "Non-2xx|Socket errors" <<<"$wrk_out"; then echo "$wrk_out" >&2; return 1; fi
}
wrk_rps() { awk '/^Requests\/sec:/ {print $2}' <<<"$wrk_out"; }
wrk_requests() { awk '/requests in/ {print $1}' <<<"$wrk_out"; }
rate() {  # wrk args... -> req/s
  wrk_run "$@" || return 1
  wrk_rps
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
minimum() { printf '%s\n' "$@" | sort -g | head -n 1; }
maximum() { printf '%s\n' "$@" | sort -g | tail -n 1; }
