#!/usr/bin/env bash
# Through nginx: GET /api/ with a token against GET / unprotected, as ratios measured in one run
# (issue 15: /api/ at least 0.7x the req/s of /). /api/ costs nginx an auth_request subrequest
# to accounts' /auth per request on top of proxying to hello; / is the proxying alone.
#
# nginx is Debian's (/usr/sbin/nginx) with the repository's config rendered as the image's entry
# point renders it (perf/lib/peers.py: nginx/default.conf.template, edge-plain.conf, routes.conf,
# accounts-routes.conf, api-jwt.conf, inside Debian's stock nginx.conf; one worker, loopback).
# hello is the pool, accounts the auth service (no database: /auth needs none, it is pointed at
# a closed port), both with the compose file's settings (access logs on, as nginx's). nginx,
# hello and accounts on CPU 1, wrk on CPU 0 (PERF_PIN=0: unpinned). Every request of the /api/
# runs carries one token, as a client reuses its token (accounts' cache of verified tokens
# answers after the first).
#
# Per run: req/s; CPU per request (utime + stime of nginx's master and worker, hello and
# accounts over the run, over the answers wrk read); the busy share of CPU 0 (wrk's: near 100%,
# the client may have been the limit) and CPU 1 (the servers': what else ran there), from
# /proc/stat; accounts' connections from nginx: open in the middle of the run, and TIME-WAIT
# sockets on accounts' port made by the run (connections closed, a lower bound; 0 when nginx
# keeps and reuses them all). Rounds alternate the order (/ first, then /api/ first). The verdict is on the
# median over rounds of the per-round ratio of req/s; the ratio of requests per CPU second (what
# the req/s ratio would be if CPU 1 were the only limit) gets one too: on this shared machine
# the servers rarely have CPU 1 to themselves, and then req/s measures the other load as well.
#
#   perf/api-vs-root.sh      PERF_ROUNDS (4), PERF_DURATION (5s), PERF_CONNECTIONS (50),
#                            PERF_WARMUP (2s; 0 = none), PERF_ACCESS_LOG (on: hello's and
#                            accounts'; nginx's is on as in the image), PERF_NGINX
#                            (/usr/sbin/nginx)
# Needs wrk, openssl, curl, ss, Debian's nginx and a Release build in PERF_BUILD_DIR.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
PERF_ROUNDS=${PERF_ROUNDS:-4}
source "$root/perf/lib/accounts-bench.sh"
nginx_bin=${PERF_NGINX:-/usr/sbin/nginx}
warmup=${PERF_WARMUP:-2s}
access_log=${PERF_ACCESS_LOG:-on}
require_built "$build/hello/hello" "$build/accounts/accounts" "$nginx_bin"

make_key
make_tokens 1
token=$(cat "$tmp/one-token")

hp=$(free_port); ap=$(free_port); np=$(free_port)
start hello "$hp" "$build/hello/hello" --access-log "$access_log" --chaos on
hello_pid=${pids[-1]}
start accounts "$ap" "$build/accounts/accounts" "${accounts_no_db[@]}" --access-log "$access_log"
accounts_pid=${pids[-1]}

# The repository's nginx config, rendered by perf/lib/peers.py (the compose path's renderer).
# Its /var/lib/nginx (the cache of /auth answers) must be reachable by nginx's workers, which
# run as nobody when the script runs as root: $tmp is made traversable (not listable) for that.
ndir=$tmp/nginx
mkdir -p "$ndir/conf.d" "$tmp/var"
chmod 0711 "$tmp"
chmod 0755 "$tmp/var"
python3 - "$root" "$ndir" "$nginx_bin" "$hp" "$ap" "$np" "$tmp/var" <<'PY'
import os, sys
root, ndir, nginx_bin = sys.argv[1:4]
hp, ap, np = map(int, sys.argv[4:7])
var_dir = sys.argv[7]
sys.path.insert(0, os.path.join(root, "perf"))
from lib import peers  # perf/lib (`import perf` would be Debian's module)
with open(os.path.join(ndir, "nginx.conf"), "w") as f:
    f.write(peers.proxy_conf(ndir, nginx_bin))
site = peers.render_template(hp, np, os.path.join(ndir, "conf.d"), accounts_port=ap,
                             api_auth="jwt", var_dir=var_dir)
with open(os.path.join(ndir, "conf.d", "default.conf"), "w") as f:
    f.write(site)
PY
# nginx/entrypoint.sh: exec nginx -g 'daemon off; worker_shutdown_timeout 5s;'
"${srv[@]}" "$nginx_bin" -p "$ndir/" -c "$ndir/nginx.conf" -e "$ndir/error.log" \
  -g 'daemon off; worker_shutdown_timeout 5s;' > "$tmp/nginx.log" 2>&1 &
pids+=($!)
nginx_pid=$!
for _ in $(seq 50); do
  curl -s -o /dev/null "http://127.0.0.1:$np/" && break
  sleep 0.1
done
nginx_procs() { echo "$nginx_pid" $(ps -o pid= --ppid "$nginx_pid"); }

# What each path answers, before any load: hello's JSON through both; /api/ without a token 401.
expect() {  # status url [curl args...]
  local want=$1 url=$2 got
  shift 2
  got=$(curl -s -o "$tmp/body" -w '%{http_code}' "$@" "$url") || true
  if [[ $got != "$want" ]] || { [[ $want == 200 ]] && [[ $(cat "$tmp/body") != '{"msg":"Hello, World!"}' ]]; }; then
    echo "$url answered $got, not $want: $(head -c 300 "$tmp/body")" >&2
    cat "$ndir/error.log" >&2
    exit 1
  fi
}
expect 200 "http://127.0.0.1:$np/"
expect 200 "http://127.0.0.1:$np/api/" -H "Authorization: Bearer $token"
expect 401 "http://127.0.0.1:$np/api/"

# busy and total ticks of CPU 0 and CPU 1 (user nice system irq softirq steal; + idle iowait)
cpu_busy_ticks() {
  awk '$1 == "cpu0" || $1 == "cpu1" {printf "%d %d ", $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat
}
# Connections to accounts (nginx's, in the runs): established ones counted at accounts' end;
# TIME-WAIT sockets at either end (the side that closed first keeps one per connection for
# 60 s), as a sorted list of address pairs: the run's closed connections are the pairs listed
# after it and not before (a count's difference would miss those that expire meanwhile). A
# lower bound: on loopback Linux lets a new connection take over a pair in TIME-WAIT
# (net.ipv4.tcp_tw_reuse=2, the default), so the more pairs are waiting, the more it misses;
# 0 is exact (no connection was closed).
accounts_open() { ss -Htan state established "( sport = :$ap )" | wc -l; }
accounts_closed() {  # file
  ss -Htan state time-wait "( sport = :$ap or dport = :$ap )" | awk '{print $3, $4}' | sort > "$1"
}

# One measured run of wrk against a path through nginx; appends to the arrays of that path.
declare -A rps cpu_us tw open busy
run() {  # name url [wrk args...]
  local name=$1 url=$2
  shift 2
  local -a c0 c1
  local h0 a0 n0 h1 a1 n1 n
  accounts_closed "$tmp/tw0"
  read -r -a c0 <<<"$(cpu_busy_ticks)"
  n0=$(cpu_ticks $(nginx_procs)); h0=$(cpu_ticks "$hello_pid"); a0=$(cpu_ticks "$accounts_pid")
  (sleep "$(awk -v d="${duration%s}" 'BEGIN {print d / 2}')"; accounts_open > "$tmp/open") &
  wrk_run "$@" "$url"
  wait $!
  n1=$(cpu_ticks $(nginx_procs)); h1=$(cpu_ticks "$hello_pid"); a1=$(cpu_ticks "$accounts_pid")
  read -r -a c1 <<<"$(cpu_busy_ticks)"
  accounts_closed "$tmp/tw1"
  n=$(wrk_requests)
  rps[$name]+=" $(wrk_rps)"
  # CPU µs per request: nginx, hello, accounts, total
  cpu_us[$name]+=" $(awk -v n="$n" -v hz="$hz" -v a="$((n1 - n0))" -v b="$((h1 - h0))" -v c="$((a1 - a0))" \
    'BEGIN {k = 1e6 / hz / n; printf "%.2f/%.2f/%.2f/%.2f", a * k, b * k, c * k, (a + b + c) * k}')"
  busy[$name]+=" $(awk -v b0="$((c1[0] - c0[0]))" -v t0="$((c1[1] - c0[1]))" \
    -v b1="$((c1[2] - c0[2]))" -v t1="$((c1[3] - c0[3]))" \
    'BEGIN {printf "%.0f%%/%.0f%%", 100 * b0 / t0, 100 * b1 / t1}')"
  tw[$name]+=" $(comm -13 "$tmp/tw0" "$tmp/tw1" | wc -l)"
  open[$name]+=" $(cat "$tmp/open")"
}

auth=(-H "Authorization: Bearer $token")
if [[ $warmup != 0 && $warmup != 0s ]]; then
  duration_saved=$duration; duration=$warmup
  wrk_run "http://127.0.0.1:$np/"; wrk_run "${auth[@]}" "http://127.0.0.1:$np/api/"
  duration=$duration_saved
fi
for ((i = 1; i <= rounds; i++)); do
  if ((i % 2)); then
    run root "http://127.0.0.1:$np/"; run api "http://127.0.0.1:$np/api/" "${auth[@]}"
  else
    run api "http://127.0.0.1:$np/api/" "${auth[@]}"; run root "http://127.0.0.1:$np/"
  fi
  echo "round $i done" >&2
done
expect 200 "http://127.0.0.1:$np/api/" -H "Authorization: Bearer $token"
expect 401 "http://127.0.0.1:$np/api/"

# The table: one line per run, then per-round ratios, medians and the verdict.
python3 - "$rounds" "${rps[root]}" "${rps[api]}" "${cpu_us[root]}" "${cpu_us[api]}" \
  "${busy[root]}" "${busy[api]}" "${tw[root]}" "${tw[api]}" "${open[root]}" "${open[api]}" \
  "$conns" "$duration" <<'PY'
import statistics, sys
a = sys.argv[1:]
rounds = int(a[0])
col = lambda s: s.split()
rps = {"root": list(map(float, col(a[1]))), "api": list(map(float, col(a[2])))}
cpu = {"root": [list(map(float, x.split("/"))) for x in col(a[3])],
       "api": [list(map(float, x.split("/"))) for x in col(a[4])]}
busy = {"root": col(a[5]), "api": col(a[6])}
tw = {"root": col(a[7]), "api": col(a[8])}
open_ = {"root": col(a[9]), "api": col(a[10])}
print("wrk -t1 -c%s -d%s through nginx (1 worker) -> hello, auth_request -> accounts; "
      "servers on CPU 1" % (a[11], a[12]))
print()
print("| round | path | req/s | CPU µs/req nginx | hello | accounts | total | CPU 0/1 busy "
      "| accounts conns open | conns closed (>=) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for i in range(rounds):
    for p, label in (("root", "/"), ("api", "/api/ + token")):
        c = cpu[p][i]
        print("| %d | %s | %s | %.1f | %.1f | %.1f | %.1f | %s | %s | %s |"
              % (i + 1, label, "{:,.0f}".format(rps[p][i]), c[0], c[1], c[2], c[3],
                 busy[p][i], open_[p][i], tw[p][i]))
r = [rps["api"][i] / rps["root"][i] for i in range(rounds)]
e = [cpu["root"][i][3] / cpu["api"][i][3] for i in range(rounds)]
print()
print("| ratio /api/ / / | per round | median | spread (min-max) |")
print("|---|---|---|---|")
print("| req/s | %s | **%.2fx** | %.2f-%.2f |" % (" ".join("%.2f" % x for x in r),
                                               statistics.median(r), min(r), max(r)))
print("| requests per CPU second | %s | %.2fx | %.2f-%.2f |"
      % (" ".join("%.2f" % x for x in e), statistics.median(e), min(e), max(e)))
med = statistics.median(r)
print()
print("medians: / %s req/s, /api/ %s req/s; CPU per request / %.1f µs, /api/ %.1f µs"
      % ("{:,.0f}".format(statistics.median(rps["root"])),
         "{:,.0f}".format(statistics.median(rps["api"])),
         statistics.median(c[3] for c in cpu["root"]), statistics.median(c[3] for c in cpu["api"])))
print("verdict: /api/ with a token %.2fx the req/s of / (goal >= 0.7x): %s"
      % (med, "met" if med >= 0.7 else "NOT met"))
mede = statistics.median(e)
print("         %.2fx the requests per CPU second of / (the same goal, CPU 1 the only limit): %s"
      % (mede, "met" if mede >= 0.7 else "NOT met"))
PY
