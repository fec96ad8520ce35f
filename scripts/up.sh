#!/usr/bin/env bash
# Build and run the whole stack: nginx on ${HTTP_PORT:-80} -> hello:8080 and visits:8080 (with
# redis and postgres behind it), plus the sidecar.
#
#   scripts/up.sh                  # foreground; Ctrl-C stops the stack
#   scripts/up.sh -d               # detached; extra arguments go to `compose up`
#   scripts/up.sh --tls -d         # HTTPS too, on ${HTTPS_PORT:-443}, with the certificate
#                                  # chain and key in $TLS_DIR/cert.pem and key.pem
#   scripts/up.sh --self-signed -d # same, first making a self-signed pair for localhost in
#                                  # $TLS_DIR if none is there (or it expires within a day)
#   scripts/up.sh --obs -d         # with observability: Prometheus (UI on
#                                  # 127.0.0.1:${PROMETHEUS_PORT:-9090}), Alertmanager (API on
#                                  # 127.0.0.1:${ALERTMANAGER_PORT:-9093}), the alert log sink and
#                                  # the nginx, Redis, PostgreSQL exporters (profile obs, added to
#                                  # COMPOSE_PROFILES; README "Observability")
#
# Secrets live in $SECRETS_DIR (default .secrets/, git- and docker-ignored), each made when missing:
#   postgres_password      visits' PostgreSQL password (a random one)
#   accounts_db_password   accounts' PostgreSQL password (a random one)
#   accounts-keys/k1.pem   accounts' token signing key (Ed25519, openssl genpkey)
# A password is set when its role is created only (an existing volume keeps its own;
# docs/DEPLOYMENT.md).
#
# TLS_DIR defaults to .tls/ in the repository (git- and docker-ignored: keys are never
# committed nor sent to the image build). --tls adds docker-compose.tls.yml to COMPOSE_FILE.
# Works from any directory: it runs in the repository root, so COMPOSE_FILE paths (e.g.
# COMPOSE_FILE=docker-compose.yml:tests/e2e/compose.override.yml) are relative to it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

die() { echo "up: error: $*" >&2; exit 2; }

tls=0
self_signed=0
obs=0
while [ "$#" -gt 0 ]; do
    case "$1" in
        --tls) tls=1 ;;
        --self-signed) tls=1; self_signed=1 ;;
        --obs) obs=1 ;;
        *) break ;;
    esac
    shift
done

export TLS_DIR=${TLS_DIR:-$root/.tls}
cert=$TLS_DIR/cert.pem
key=$TLS_DIR/key.pem

# A throwaway pair for local use: ECDSA P-256 (Mozilla's intermediate profile prefers ECDSA),
# 30 days, for localhost and the loopback addresses. The key goes to uid 65532, nginx's user,
# since compose mounts a file secret with the file's own owner and mode.
make_self_signed() {
    command -v openssl >/dev/null 2>&1 || die "openssl is not installed (apt-get install openssl)"
    if [ -f "$cert" ] && [ -f "$key" ] && openssl x509 -in "$cert" -noout -checkend 86400 >/dev/null 2>&1; then
        echo "up: using the certificate in $cert"
        return 0
    fi
    mkdir -p "$TLS_DIR"
    chmod 0700 "$TLS_DIR"
    (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -days 30 -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
        -keyout "$key.tmp" -out "$cert.tmp" 2>/dev/null) || die "openssl could not make a self-signed pair in $TLS_DIR"
    chmod 0644 "$cert.tmp"
    if [ "$(id -u)" -eq 0 ]; then
        chown 65532:65532 "$key.tmp"
        chmod 0400 "$key.tmp"
    else
        # Without root the key cannot be given to 65532: readable by all, which is acceptable
        # for this local, self-signed, 30-day key only; never do this with a real one.
        chmod 0644 "$key.tmp"
        echo "up: warning: not root, so $key is world-readable (fine for a local self-signed key only)" >&2
    fi
    mv "$key.tmp" "$key"
    mv "$cert.tmp" "$cert"
    echo "up: made a self-signed certificate for localhost in $cert (30 days)"
}

export SECRETS_DIR=${SECRETS_DIR:-$root/.secrets}

# Compose mounts a file secret with the file's own owner and mode, and every reader runs as uid
# 65532: secrets go to 65532 with mode 0400 (directories 0500), as the TLS key does.
give_to_services() {  # PATH MODE
    if [ "$(id -u)" -eq 0 ]; then
        chown 65532:65532 "$1"
        chmod "$2" "$1"
    else
        # Without root a file cannot be given to 65532: readable by all, acceptable for a
        # local stack only; on a shared machine run this as root (or chown it yourself).
        chmod a+rX "$1"
        echo "up: warning: not root, so $1 is world-readable (local use only)" >&2
    fi
}

# 32 random bytes as 64 hex digits: no character needs quoting anywhere it travels.
make_password() {  # FILE WHAT
    [ ! -s "$1" ] || return 0
    mkdir -p "$SECRETS_DIR"
    chmod 0700 "$SECRETS_DIR"
    (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$1.tmp" && echo >> "$1.tmp")
    [ "$(wc -c < "$1.tmp")" -eq 65 ] || die "could not write a random password to $1.tmp"
    give_to_services "$1.tmp" 0400
    mv "$1.tmp" "$1"
    echo "up: wrote a random $2 to $1"
}
make_password "$SECRETS_DIR/postgres_password" "PostgreSQL password (visits)"
make_password "$SECRETS_DIR/accounts_db_password" "PostgreSQL password (accounts)"

# accounts' token signing keys: one Ed25519 key per file, <kid>.pem. With none there, k1 is
# made; rotation (a new key signs, the old one still verifies) is README "accounts".
keys_dir=$SECRETS_DIR/accounts-keys
make_signing_key() {
    if [ -d "$keys_dir" ] && [ -n "$(find "$keys_dir" -maxdepth 1 -name '*.pem' -print -quit)" ]; then
        return 0
    fi
    command -v openssl >/dev/null 2>&1 || die "openssl is not installed (apt-get install openssl)"
    mkdir -p "$keys_dir"
    (umask 077 && openssl genpkey -algorithm ed25519 -out "$keys_dir/k1.pem.tmp" 2>/dev/null) ||
        die "openssl could not make an Ed25519 key in $keys_dir"
    give_to_services "$keys_dir/k1.pem.tmp" 0400
    mv "$keys_dir/k1.pem.tmp" "$keys_dir/k1.pem"
    give_to_services "$keys_dir" 0500
    echo "up: made the token signing key $keys_dir/k1.pem (kid k1)"
}
make_signing_key

if [ "$tls" -eq 1 ]; then
    [ "$self_signed" -eq 0 ] || make_self_signed
    [ -f "$cert" ] || die "no certificate at $cert (use --self-signed for a local one, or set TLS_DIR)"
    [ -f "$key" ] || die "no key at $key (use --self-signed for a local one, or set TLS_DIR)"
    export COMPOSE_PATH_SEPARATOR=${COMPOSE_PATH_SEPARATOR:-:}
    export COMPOSE_FILE="${COMPOSE_FILE:-docker-compose.yml}${COMPOSE_PATH_SEPARATOR}docker-compose.tls.yml"
fi

# The profile is named in COMPOSE_PROFILES (not --profile) so that later `scripts/compose`
# commands in the same environment (logs, down) see the same services.
if [ "$obs" -eq 1 ]; then
    case ",${COMPOSE_PROFILES:-}," in
        *,obs,*) ;;
        *) export COMPOSE_PROFILES="${COMPOSE_PROFILES:+$COMPOSE_PROFILES,}obs" ;;
    esac
fi

scripts/base-images.sh
exec scripts/compose up --build "$@"
