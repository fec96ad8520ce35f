#!/bin/sh
# nginx's entry point: render the config for the chosen balancing strategy and every replica
# of the upstream, start nginx in the foreground, and follow replicas as they come and go
# (re-resolve every NGINX_RESOLVE_INTERVAL seconds; on a change, re-render and reload
# gracefully). nginx is exec'd last, so it is PID 1 and gets the stop signal itself.
set -eu

# The image runs as 65532. Where a platform cannot give that user its writable mounts (a Swarm
# tmpfs has no uid option), start the container as root with CHOWN, SETUID and SETGID only:
# this hands the writable directories to 65532 and re-executes itself as that user, so nginx
# never runs as root (the kernel clears the capabilities with the change of user).
if [ "$(id -u)" = 0 ]; then
  # nginx logs by opening /dev/stdout and /dev/stderr again: the pipes Docker made for root.
  chown 65532:65532 /etc/nginx/conf.d /run /var/lib/nginx /proc/self/fd/1 /proc/self/fd/2
  exec setpriv --reuid=65532 --regid=65532 --clear-groups -- "$0" "$@"
fi

upstream_host=${NGINX_UPSTREAM_HOST:-hello}
upstream_port=${NGINX_UPSTREAM_PORT:-8080}
strategy=${NGINX_LB_STRATEGY:-round_robin}
interval=${NGINX_RESOLVE_INTERVAL:-2}
template=/etc/nginx/templates/default.conf.template
conf=/etc/nginx/conf.d/default.conf
retry_upstreams=/etc/nginx/conf.d/hello-retry-upstreams.conf  # http level (*.conf)
retry_locations=/etc/nginx/conf.d/hello-retry.locations        # included by the server

case "$strategy" in
  round_robin) directive="# round robin (nginx's default)" ;;
  random) directive="random;" ;;
  least_conn) directive="least_conn;" ;;
  *)
    echo "nginx-entrypoint: error: NGINX_LB_STRATEGY '$strategy': expected round_robin, random or least_conn" >&2
    exit 2
    ;;
esac
case "$interval" in
  '' | *[!0-9]* | 0)
    echo "nginx-entrypoint: error: NGINX_RESOLVE_INTERVAL '$interval': expected whole seconds >= 1" >&2
    exit 2
    ;;
esac

addresses() {
  getent ahostsv4 "$upstream_host" 2>/dev/null | awk '{print $1}' | sort -u | tr '\n' ' '
}

render() {
  servers=""
  for a in $1; do
    servers="${servers}server ${a}:${upstream_port} max_fails=2 fail_timeout=5s; "
  done
  sed -e "s|@STRATEGY@|${directive}|" -e "s|@SERVERS@|${servers}|" "$template" > "$conf.tmp"
  render_retries "$1"
  mv "$retry_upstreams.tmp" "$retry_upstreams"
  mv "$retry_locations.tmp" "$retry_locations"
  mv "$conf.tmp" "$conf"
}

# A 410 (a poisoned replica's /status) cannot be retried by proxy_next_upstream, so location /
# hands it to @retry1, which asks replica 1 alone, then @retry2 replica 2, and so on: every
# replica is asked once (at most 9: nginx allows 10 internal redirects), and the client sees a
# 410 only when all of them are poisoned. A refused or failed try moves on the same way.
render_retries() {
  n=0
  : > "$retry_upstreams.tmp"
  : > "$retry_locations.tmp"
  for a in $1; do
    [ "$n" -lt 9 ] || break
    n=$((n + 1))
    printf 'upstream hello_retry%d { server %s:%s; keepalive 4; }\n' "$n" "$a" "$upstream_port" \
      >> "$retry_upstreams.tmp"
  done
  i=1
  while [ "$i" -le "$n" ]; do
    {
      printf 'location @retry%d {\n    proxy_pass http://hello_retry%d;\n' "$i" "$i"
      printf '    include /etc/nginx/hello/proxy.conf;\n'
      if [ "$i" -lt "$n" ]; then
        printf '    proxy_intercept_errors on;\n    recursive_error_pages on;\n'
        printf '    error_page 410 502 503 504 = @retry%d;\n' $((i + 1))
      fi
      printf '}\n'
    } >> "$retry_locations.tmp"
    i=$((i + 1))
  done
}

# Wait (bounded) for the first replica: compose starts nginx once hello is healthy, but a
# name can take a moment to appear in Docker's DNS.
tries=0
current=$(addresses)
while [ -z "$current" ]; do
  tries=$((tries + 1))
  if [ "$tries" -gt 60 ]; then
    echo "nginx-entrypoint: error: '$upstream_host' does not resolve" >&2
    exit 1
  fi
  sleep 0.5
  current=$(addresses)
done
render "$current"
echo "nginx-entrypoint: strategy=$strategy upstream=$upstream_host:$upstream_port replicas: $current"
nginx -t -q

# The watcher: a background loop that outlives the exec below (nginx becomes its parent).
(
  while sleep "$interval"; do
    now=$(addresses)
    if [ -n "$now" ] && [ "$now" != "$current" ]; then
      render "$now"
      if nginx -t -q 2>/dev/null; then
        echo "nginx-entrypoint: replicas changed: $now; reloading"
        nginx -s reload
        current=$now
      fi
    fi
  done
) &

exec nginx -g 'daemon off; worker_shutdown_timeout 5s;'
