#!/bin/sh
# PostgreSQL's entry point: on an empty data directory (a new volume) make the cluster once;
# at every start make each application's role and database that does not exist yet, with the
# password from that application's Docker secret; then exec postgres, so it is PID 1 and gets
# the stop signal itself.
#
#   PGDATA          the cluster (default /var/lib/postgresql/data/pgdata: a directory inside
#                   the volume, so a mount point's own files, such as lost+found, never upset
#                   initdb)
#   POSTGRES_APPS   the applications, space-separated NAME:PASSWORD_FILE (NAME is both the role
#                   and its database), e.g. "visits:/run/secrets/postgres_password
#                   accounts:/run/secrets/accounts_db_password". A password is read only when
#                   its role is created: change it later with ALTER ROLE (docs/DEPLOYMENT.md).
#                   Checked at every start, so an application added to an existing cluster
#                   gets its role and database on the next restart.
#   POSTGRES_APP_USER, POSTGRES_APP_DB, POSTGRES_PASSWORD_FILE   when POSTGRES_APPS is unset:
#                   one application (default visits, visits, /run/secrets/postgres_password);
#                   role and database must then share the name
#
# Runs on the image's static busybox (sh, id, cat, sed, grep, mkdir, chmod): a command added
# here needs its applet linked in Dockerfile.multi (tests/e2e/test_data_images.py checks).
set -eu

PGDATA=${PGDATA:-/var/lib/postgresql/data/pgdata}
conf=/etc/postgresql/postgresql.conf
export PGDATA

die() {
  echo "postgres-entrypoint: error: $*" >&2
  exit 2
}

if [ -z "${POSTGRES_APPS:-}" ]; then
  app_user=${POSTGRES_APP_USER:-visits}
  app_db=${POSTGRES_APP_DB:-$app_user}
  [ "$app_user" = "$app_db" ] ||
    die "POSTGRES_APP_USER '$app_user' and POSTGRES_APP_DB '$app_db' differ (use POSTGRES_APPS=NAME:FILE)"
  POSTGRES_APPS="$app_user:${POSTGRES_PASSWORD_FILE:-/run/secrets/postgres_password}"
fi

# Names go into SQL as identifiers: plain lower-case ones only, so nothing needs quoting. A
# file is an absolute path without spaces or colons (the list's separators).
for app in $POSTGRES_APPS; do
  name=${app%%:*}
  file=${app#*:}
  [ "$name" != "$app" ] || die "POSTGRES_APPS entry '$app': expected NAME:PASSWORD_FILE"
  case "$name" in
    '' | [!a-z_]* | *[!a-z0-9_]*) die "POSTGRES_APPS entry '$app': a role or database name must match [a-z_][a-z0-9_]*" ;;
  esac
  case "$file" in
    /*) ;;
    *) die "POSTGRES_APPS entry '$app': the password file must be an absolute path" ;;
  esac
  case "$file" in *:*) die "POSTGRES_APPS entry '$app': one colon only" ;; esac
done

# One statement per line through the single-user server (no server listens meanwhile, so no
# client ever sees a half-made role). Its output is checked for errors instead of shown: a
# failing statement is not echoed (log_min_error_statement), so a password never reaches a log.
single_user() {
  if ! out=$(postgres --single -c config_file="$conf" -c log_min_messages=warning postgres 2>&1); then
    echo "$out" >&2
    die "$1 failed"
  fi
  if echo "$out" | grep -q -e 'ERROR:' -e 'FATAL:'; then
    echo "$out" >&2
    die "$1 failed"
  fi
  printf '%s\n' "$out"
}

# A SQL literal of the first line of a password file (quotes doubled; standard_conforming_strings
# is on, so backslashes are plain).
password_literal() {
  [ -f "$1" ] && [ -r "$1" ] ||
    die "no password file $1 readable by uid $(id -u) (role $2 is new and needs its password)"
  password=$(cat "$1")  # without its trailing newlines
  [ -n "$password" ] || die "the password file $1 is empty"
  case "$password" in
    *"
"*) die "the password in $1 spans several lines" ;;
  esac
  printf '%s' "$password" | sed "s/'/''/g"
  unset password
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "postgres-entrypoint: empty data directory $PGDATA: initdb"
  mkdir -p "$PGDATA"
  chmod 0700 "$PGDATA"
  # The C locale with UTF-8 (the image has no locale files); SCRAM on the network, peer on
  # the socket, as in the image's pg_hba.conf (which the server reads instead of initdb's).
  # (initdb runs `locale -a`, which the image lacks: "sh: locale: not found" and a warning
  # that no system locales were found are expected; the C locale needs none.)
  initdb --username=postgres --no-locale --encoding=UTF8 \
    --auth-local=peer --auth-host=scram-sha-256 --no-instructions >/dev/null
fi

# What exists already, one tuple a line ( 1:  = "role:visits" ...).
existing=$(echo "SELECT 'role:' || rolname FROM pg_roles UNION ALL SELECT 'db:' || datname FROM pg_database" |
  single_user "listing roles and databases")
has() { echo "$existing" | grep -q -F "= \"$1\""; }

# The missing roles with their passwords (stored as SCRAM verifiers), then their databases.
script=""
made=""
for app in $POSTGRES_APPS; do
  name=${app%%:*}
  file=${app#*:}
  if ! has "role:$name"; then
    literal=$(password_literal "$file" "$name") || exit 2
    script="${script}CREATE ROLE $name LOGIN PASSWORD '$literal'
"
    unset literal
    made="$made role $name (password from $file),"
  fi
  if ! has "db:$name"; then
    # Its owner's alone: no other application's role may connect to it (PUBLIC may by default).
    script="${script}CREATE DATABASE $name OWNER $name
REVOKE CONNECT, TEMPORARY ON DATABASE $name FROM PUBLIC
"
    made="$made database $name,"
  fi
done
if [ -n "$script" ]; then
  printf '%s' "$script" | single_user "creating$made" >/dev/null
  unset script
  echo "postgres-entrypoint: created${made%,}"
fi

exec postgres -c config_file="$conf" "$@"
