#!/usr/bin/env bash
# Installs what building and testing the stack needs on Debian 12 (bookworm), only what is
# missing. Idempotent: a machine that has everything runs no apt-get at all.
# Docker itself (engine + docker compose or docker-compose) is expected to be installed.
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config libuv1-dev libcurl4-openssl-dev libc-ares-dev
  libutf8proc-dev node-llhttp rapidjson-dev
  libgtest-dev libgmock-dev clang clang-format libclang-rt-14-dev
  # the store clients (core_stores): hiredis with its libuv adapter, libpq
  libhiredis-dev libpq-dev
  # accounts: argon2id, Ed25519 (JWT EdDSA), base64url
  libsodium-dev
  # tests (unicode-data: the Unicode files scripts/gen-case-tables.py reads)
  python3 python3-pytest unicode-data python3-requests python3-venv curl ca-certificates
  # the rules tier: promtool (prometheus) and amtool (prometheus-alertmanager); PyYAML for the
  # observability e2e test, which writes its short-`for:` copy of the rules
  prometheus prometheus-alertmanager python3-yaml
  # scripts/up.sh --self-signed, and the TLS checks of tests/e2e
  openssl
  # real stores for the client and service tests (started by the tests on loopback)
  redis-server postgresql
  # e2e: the load through deployments (Go's HTTP client, as real clients retry)
  hey
  # the accounts page in a real browser (tests/lib/browser_flow.py): headless Chromium, its
  # WebDriver and Selenium 4
  chromium chromium-driver python3-selenium
  # base images when no registry can be reached
  mmdebstrap
  # perf/: load generator, the peers hello is measured against (nginx, the seed's Flask app
  # under flask run and gunicorn), the plot, and seed 003's counter (Redis and PostgreSQL
  # clients) that visits is measured against
  wrk nginx-light python3-matplotlib python3-flask gunicorn python3-redis python3-psycopg2
)
command -v node >/dev/null 2>&1 || packages+=(nodejs)
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
  packages+=(docker-compose)
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q >/dev/null
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
