#!/usr/bin/env bash
# accounts under a login flood with a real PostgreSQL (issue 15): far more logins than its
# thread pool can hash, while /health of the same process is polled. Goals: /health p99 under
# 5 ms; the excess logins get 503 + Retry-After at once; none times out. The engine and what
# exactly is measured: perf/lib/login_flood.py. Needs PostgreSQL's server package (as the
# black-box tests: tests/blackbox/stores.py), openssl and a Release build in PERF_BUILD_DIR.
#
#   perf/login-flood.sh      PERF_ROUNDS (2, each a polite and an abusive flood),
#                            PERF_FLOOD_CLIENTS (256 connections),
#                            PERF_FLOOD_DURATION (10 s), PERF_HASH_QUEUE (64, accounts'
#                            default), PERF_HEALTH_RATE (50 polls/s), PERF_LOGIN_TIMEOUT (10 s),
#                            PERF_FLOOD_MODES ("polite abusive"), UV_THREADPOOL_SIZE (libuv's
#                            default 4: the hashing threads),
#                            PERF_PIN (1: accounts and PostgreSQL on CPU 1, clients on CPU 0)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
PERF_ROUNDS=${PERF_ROUNDS:-2}
source "$root/perf/lib/accounts-bench.sh"
export PERF_ROUNDS PERF_PIN=${PERF_PIN:-1}
require_built "$build/accounts/accounts"
make_key
python3 "$root/perf/lib/login_flood.py" "$tmp" "$build"
