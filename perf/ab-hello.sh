#!/usr/bin/env bash
# A/B of two hello binaries (e.g. before and after a change in core/): the same route, the
# same client, the same core, alternating rounds, so the machine's noise hits both alike.
# Prints req/s, wrk's mean latency and the server's CPU time per answer (utime+stime from
# /proc, which a saturated or shared client does not distort) for each round.
#   perf/ab-hello.sh OLD_BINARY NEW_BINARY [ROUNDS] [SECONDS]
set -euo pipefail
old=${1:?usage: perf/ab-hello.sh OLD_BINARY NEW_BINARY [ROUNDS] [SECONDS]}
new=${2:?usage: perf/ab-hello.sh OLD_BINARY NEW_BINARY [ROUNDS] [SECONDS]}
rounds=${3:-4}
secs=${4:-4}
port=18090
ticks=$(getconf CLK_TCK)
for round in $(seq "$rounds"); do
  for which in old new; do
    bin=${!which}
    taskset -c 1 "$bin" --listen 127.0.0.1:$port --access-log off >/dev/null 2>&1 &
    pid=$!
    sleep 0.3
    t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
    out=$(taskset -c 0 wrk -t1 -c50 -d"${secs}s" "http://127.0.0.1:$port/baz" 2>&1)
    t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    reqs=$(awk '/requests in/{print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
    lat=$(awk '/Latency/{print $2}' <<<"$out")
    cpu=$(awk -v a="$t0" -v b="$t1" -v n="$reqs" -v hz="$ticks" \
      'BEGIN{printf "%.2f", (b-a)/hz*1e6/n}')
    echo "round=$round binary=$which req_s=$rps mean_latency=$lat cpu_us_per_answer=$cpu"
  done
done
