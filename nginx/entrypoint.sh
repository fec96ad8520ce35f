#!/bin/sh
# nginx's entry point: render the config for the chosen balancing strategy and every replica
# of the upstream, start nginx in the foreground, and follow replicas as they come and go
# (re-resolve every NGINX_RESOLVE_INTERVAL seconds; on a change, re-render and reload
# gracefully). nginx is exec'd last, so it is PID 1 and gets the stop signal itself.
#
# TLS: when a certificate and its key are mounted (NGINX_TLS_CERT, NGINX_TLS_KEY; by default
# the Docker secrets tls_cert and tls_key), nginx also serves HTTPS on 443 with HTTP/2, and port
# 80 redirects to it all but the assignment's plain routes (edge-tls.conf.template); the
# redirects name NGINX_HTTPS_PORT (the port clients reach HTTPS on, default 443). Without them,
# port 80 alone, as before.
#
# visits: /visits and /resetcounter go to NGINX_VISITS_HOST:NGINX_VISITS_PORT (default
# visits:8080), looked up per request through NGINX_RESOLVER (default: resolv.conf's servers).
#
# accounts: /account, /login, /logout, /accounts_page, the JWKS and the /auth subrequest go to
# NGINX_ACCOUNTS_HOST:NGINX_ACCOUNTS_PORT (default accounts:8080), followed like hello's
# replicas. NGINX_API_AUTH: jwt (default: /api/ only with a token accounts accepts) or off
# (/api/ open); nginx/accounts-routes.conf, api-jwt.conf, api-off.conf.
#
# Runs on the image's static busybox (sh, id, chown, awk, sort, tr, sed, mv, sleep, cat),
# util-linux's setpriv and glibc's getent: a command added here needs its applet linked in
# Dockerfile.multi (and named in tests/e2e/test_nginx_image.py).
set -eu

# The image runs as 65532. Where a platform cannot give that user its writable mounts (a Swarm
# tmpfs has no uid option), start the container as root with CHOWN, SETUID and SETGID only:
# this hands the writable directories to 65532 and re-executes itself as that user, so nginx
# never runs as root (the kernel clears the capabilities with the change of user).
if [ "$(id -u)" = 0 ]; then
  # nginx logs by opening /dev/stdout and /dev/stderr again: the pipes Docker made for root.
  chown 65532:65532 /etc/nginx/conf.d /run /var/lib/nginx /proc/self/fd/1 /proc/self/fd/2
  # By its full path: the image's busybox sh runs its own setpriv applet (which has no --reuid)
  # for a bare name, whatever PATH says.
  exec /usr/bin/setpriv --reuid=65532 --regid=65532 --clear-groups -- "$0" "$@"
fi

upstream_host=${NGINX_UPSTREAM_HOST:-hello}
upstream_port=${NGINX_UPSTREAM_PORT:-8080}
strategy=${NGINX_LB_STRATEGY:-round_robin}
interval=${NGINX_RESOLVE_INTERVAL:-2}
tls_cert=${NGINX_TLS_CERT:-/run/secrets/tls_cert}
tls_key=${NGINX_TLS_KEY:-/run/secrets/tls_key}
https_port=${NGINX_HTTPS_PORT:-443}
visits_host=${NGINX_VISITS_HOST:-visits}
visits_port=${NGINX_VISITS_PORT:-8080}
accounts_host=${NGINX_ACCOUNTS_HOST:-accounts}
accounts_port=${NGINX_ACCOUNTS_PORT:-8080}
api_auth=${NGINX_API_AUTH:-jwt}
api_locations=/etc/nginx/conf.d/api.locations  # included by accounts-routes.conf
template=/etc/nginx/templates/default.conf.template
conf=/etc/nginx/conf.d/default.conf
edge=/etc/nginx/conf.d/edge.servers  # the public server blocks, included by $conf
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

check_host() {  # NAME VALUE
  case "$2" in
    '' | *[!A-Za-z0-9.-]*)
      echo "nginx-entrypoint: error: $1 '$2': expected a host name" >&2
      exit 2
      ;;
  esac
}
check_port() {  # NAME VALUE
  case "$2" in
    '' | *[!0-9]* | 0*)
      echo "nginx-entrypoint: error: $1 '$2': expected a port number 1-65535" >&2
      exit 2
      ;;
  esac
  if [ "$2" -gt 65535 ]; then
    echo "nginx-entrypoint: error: $1 '$2': expected a port number 1-65535" >&2
    exit 2
  fi
}
check_port NGINX_HTTPS_PORT "$https_port"
check_host NGINX_VISITS_HOST "$visits_host"
check_port NGINX_VISITS_PORT "$visits_port"
check_host NGINX_ACCOUNTS_HOST "$accounts_host"
check_port NGINX_ACCOUNTS_PORT "$accounts_port"
case "$api_auth" in
  jwt | off) ;;
  *)
    echo "nginx-entrypoint: error: NGINX_API_AUTH '$api_auth': expected jwt or off" >&2
    exit 2
    ;;
esac

# The nameservers nginx asks for visits (per request): NGINX_RESOLVER, else resolv.conf's, an
# IPv6 address in brackets as nginx wants it.
resolver=${NGINX_RESOLVER:-$(awk '$1 == "nameserver" { a = $2; if (a ~ /:/) a = "[" a "]"; printf "%s ", a }' /etc/resolv.conf 2>/dev/null)}
case "$resolver" in
  *[!\ ]*) ;;
  *)
    echo "nginx-entrypoint: error: no nameserver in /etc/resolv.conf (set NGINX_RESOLVER)" >&2
    exit 2
    ;;
esac
case "$resolver" in
  *[!0-9A-Za-z.:\[\]\ -]*)
    echo "nginx-entrypoint: error: NGINX_RESOLVER '$resolver': expected addresses or names" >&2
    exit 2
    ;;
esac

# The public servers: plain when neither file exists; TLS when both do and are readable (as
# 65532: nginx reads them after the switch of user); an error for anything in between, so a
# half-mounted secret never silently serves plain HTTP only.
render_edge() {
  if [ ! -e "$tls_cert" ] && [ ! -e "$tls_key" ]; then
    cat /etc/nginx/templates/edge-plain.conf > "$edge"
    echo "nginx-entrypoint: tls=off (no certificate at $tls_cert): http on :80"
    return 0
  fi
  for f in "$tls_cert" "$tls_key"; do
    case "$f" in
      /*) ;;
      *)
        echo "nginx-entrypoint: error: TLS file '$f': expected an absolute path" >&2
        exit 2
        ;;
    esac
    case "$f" in
      *[!A-Za-z0-9._/-]*)
        echo "nginx-entrypoint: error: TLS file '$f': only letters, digits and . _ / - allowed" >&2
        exit 2
        ;;
    esac
    if [ ! -f "$f" ] || [ ! -r "$f" ]; then
      echo "nginx-entrypoint: error: TLS file $f is missing or not readable by uid $(id -u) (both $tls_cert and $tls_key are needed)" >&2
      exit 2
    fi
  done
  authority=""
  [ "$https_port" = 443 ] || authority=":$https_port"
  sed -e "s|@TLS_CERT@|$tls_cert|" -e "s|@TLS_KEY@|$tls_key|" -e "s|@HTTPS_AUTHORITY@|$authority|g" \
    /etc/nginx/templates/edge-tls.conf.template > "$edge"
  echo "nginx-entrypoint: tls=on certificate=$tls_cert: https on :443 (http2), redirects to port $https_port"
}

addresses() {  # HOST
  getent ahostsv4 "$1" 2>/dev/null | awk '{print $1}' | sort -u | tr '\n' ' '
}

# render HELLO_ADDRESSES ACCOUNTS_ADDRESSES
render() {
  servers=""
  for a in $1; do
    servers="${servers}server ${a}:${upstream_port} max_fails=2 fail_timeout=5s; "
  done
  # accounts may be missing (not started, or a stack without it): a server marked down keeps
  # the config valid, and its routes answer 502 (/api/ 503) until the name resolves.
  accounts_servers="server 127.0.0.1:${accounts_port} down; "
  if [ -n "$2" ]; then
    accounts_servers=""
    for a in $2; do
      accounts_servers="${accounts_servers}server ${a}:${accounts_port} max_fails=2 fail_timeout=5s; "
    done
  fi
  sed -e "s|@STRATEGY@|${directive}|" -e "s|@SERVERS@|${servers}|" -e "s|@RESOLVER@|${resolver}|" \
    -e "s|@VISITS@|${visits_host}:${visits_port}|" -e "s|@ACCOUNTS_SERVERS@|${accounts_servers}|" \
    "$template" > "$conf.tmp"
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

render_edge
cat "/etc/nginx/templates/api-$api_auth.conf" > "$api_locations"

# Wait (bounded) for the first replica: compose starts nginx once hello is healthy, but a
# name can take a moment to appear in Docker's DNS.
tries=0
current=$(addresses "$upstream_host")
while [ -z "$current" ]; do
  tries=$((tries + 1))
  if [ "$tries" -gt 60 ]; then
    echo "nginx-entrypoint: error: '$upstream_host' does not resolve" >&2
    exit 1
  fi
  sleep 0.5
  current=$(addresses "$upstream_host")
done
current_accounts=$(addresses "$accounts_host")
render "$current" "$current_accounts"
echo "nginx-entrypoint: strategy=$strategy upstream=$upstream_host:$upstream_port replicas: $current"
echo "nginx-entrypoint: visits=$visits_host:$visits_port resolver=$resolver"
echo "nginx-entrypoint: accounts=$accounts_host:$accounts_port at: ${current_accounts:-(not resolved yet)} api_auth=$api_auth"
nginx -t -q

# The watcher: a background loop that outlives the exec below (nginx becomes its parent).
(
  while sleep "$interval"; do
    now=$(addresses "$upstream_host")
    now_accounts=$(addresses "$accounts_host")
    # A lookup that finds nothing keeps what was rendered (a moment without DNS is not a
    # reason to drop every server).
    [ -n "$now" ] || now=$current
    [ -n "$now_accounts" ] || now_accounts=$current_accounts
    if [ "$now" != "$current" ] || [ "$now_accounts" != "$current_accounts" ]; then
      render "$now" "$now_accounts"
      if nginx -t -q 2>/dev/null; then
        [ "$now_accounts" = "$current_accounts" ] ||
          echo "nginx-entrypoint: accounts moved: $now_accounts"
        if [ "$now" != "$current" ]; then
          echo "nginx-entrypoint: replicas changed: $now; reloading"
        else
          echo "nginx-entrypoint: reloading"
        fi
        nginx -s reload
        current=$now
        current_accounts=$now_accounts
      fi
    fi
  done
) &

exec nginx -g 'daemon off; worker_shutdown_timeout 5s;'
