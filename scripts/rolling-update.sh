#!/usr/bin/env bash
# scripts/rolling-update.sh: replace every running hello container by one made from the current
# image and configuration, one at a time, start-first, while nginx keeps serving.
#
#   scripts/compose build hello        # (or edit docker-compose.yml / the environment)
#   scripts/rolling-update.sh          # hello, as many replicas as are running now
#
# For each old container: start one new container beside it (compose up --scale N+1
# --no-recreate), wait until Docker reports it healthy (the image's HEALTHCHECK), give nginx
# time to see it (it re-resolves the name every NGINX_RESOLVE_INTERVAL seconds), then stop the
# old one with SIGTERM: hello stops accepting, answers what is in flight and exits 0 within its
# drain timeout; nginx retries a refused or reset connection on another replica
# (proxy_next_upstream). If a new container does not become healthy in time it is removed,
# the old ones keep serving, and the script exits 1 ("rolled back").
#
# Uses the same compose project as scripts/up.sh (COMPOSE_PROJECT_NAME, COMPOSE_FILE and the
# current directory work as for compose itself). Environment:
#   ROLLOUT_SERVICE         service to update (default hello; also the first argument)
#   ROLLOUT_HEALTH_TIMEOUT  seconds a new container may take to become healthy (default 60)
#   ROLLOUT_SETTLE          seconds between a new container being healthy and stopping an old
#                           one, so the proxy has picked it up (default 3)
#   ROLLOUT_STOP_TIMEOUT    seconds Docker waits after SIGTERM before SIGKILL (default 15)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
compose=$here/compose
service=${1:-${ROLLOUT_SERVICE:-hello}}
health_timeout=${ROLLOUT_HEALTH_TIMEOUT:-60}
settle=${ROLLOUT_SETTLE:-3}
stop_timeout=${ROLLOUT_STOP_TIMEOUT:-15}

say() { echo "rolling-update: $*"; }
die() {
  echo "rolling-update: error: $*" >&2
  exit "${2:-2}"
}
for v in health_timeout settle stop_timeout; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be whole seconds, got '${!v}'"
done

running() { "$compose" ps -q "$service" 2>/dev/null | sort; }
health() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$1" 2>/dev/null || echo gone; }
short() { echo "${1:0:12}"; }

mapfile -t old < <(running)
n=${#old[@]}
((n > 0)) || die "no running '$service' container (start the stack first: scripts/up.sh -d)"
say "$service: replacing $n container(s), one at a time, start-first"
t0=$SECONDS

for ((i = 0; i < n; i++)); do
  before=$(running)
  "$compose" up -d --no-deps --no-recreate --no-build --scale "$service=$((n + 1))" "$service" \
    >/dev/null 2>&1 || die "compose up --scale $service=$((n + 1)) failed" 1
  new=$(comm -13 <(echo "$before") <(running) | head -n 1)
  [[ -n $new ]] || die "compose did not start a new '$service' container" 1
  say "started $(short "$new"); waiting until it is healthy (at most ${health_timeout}s)"
  deadline=$((SECONDS + health_timeout))
  while :; do
    h=$(health "$new")
    [[ $h == healthy || $h == none ]] && break
    if [[ $h == unhealthy || $h == gone || $SECONDS -ge $deadline ]]; then
      say "$(short "$new") is $h after $((SECONDS - deadline + health_timeout))s: rolling back"
      docker rm -f "$new" >/dev/null 2>&1 || true
      die "new '$service' container did not become healthy; the old ones keep serving" 1
    fi
    sleep 0.5
  done
  sleep "$settle"
  victim=${old[$i]}
  say "$(short "$new") healthy; stopping $(short "$victim") (SIGTERM, drain)"
  docker stop -t "$stop_timeout" "$victim" >/dev/null
  code=$(docker inspect -f '{{.State.ExitCode}}' "$victim")
  docker rm "$victim" >/dev/null
  say "$(short "$victim") exited $code and was removed"
done
say "done: $n container(s) replaced in $((SECONDS - t0))s"
