#!/bin/sh
# PostgreSQL's entry point: on an empty data directory (a new volume) make the cluster once,
# then the application's role and database with the password from a Docker secret; then exec
# postgres, so it is PID 1 and gets the stop signal itself.
#
#   PGDATA                   the cluster (default /var/lib/postgresql/data/pgdata: a directory
#                            inside the volume, so a mount point's own files, such as
#                            lost+found, never upset initdb)
#   POSTGRES_PASSWORD_FILE   the application role's password (default
#                            /run/secrets/postgres_password); read at the first start only:
#                            change it later with ALTER ROLE (docs/DEPLOYMENT.md, "visits")
#   POSTGRES_APP_USER, POSTGRES_APP_DB   the role and its database (default visits, visits)
#
# Runs on the image's static busybox (sh, id, cat, sed, grep, mkdir, chmod): a command added
# here needs its applet linked in Dockerfile.multi (tests/e2e/test_data_images.py checks).
set -eu

PGDATA=${PGDATA:-/var/lib/postgresql/data/pgdata}
pwfile=${POSTGRES_PASSWORD_FILE:-/run/secrets/postgres_password}
app_user=${POSTGRES_APP_USER:-visits}
app_db=${POSTGRES_APP_DB:-visits}
conf=/etc/postgresql/postgresql.conf
export PGDATA

die() {
  echo "postgres-entrypoint: error: $*" >&2
  exit 2
}

# Names go into SQL as identifiers: plain lower-case ones only, so nothing needs quoting.
for name in "$app_user" "$app_db"; do
  case "$name" in
    '' | [!a-z_]* | *[!a-z0-9_]*) die "'$name': a role or database name must match [a-z_][a-z0-9_]*" ;;
  esac
done

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  [ -f "$pwfile" ] && [ -r "$pwfile" ] ||
    die "no password file $pwfile readable by uid $(id -u) (a new cluster needs the application's password)"
  password=$(cat "$pwfile")  # without its trailing newlines
  [ -n "$password" ] || die "the password file $pwfile is empty"
  case "$password" in
    *"
"*) die "the password in $pwfile spans several lines" ;;
  esac

  echo "postgres-entrypoint: empty data directory $PGDATA: initdb"
  mkdir -p "$PGDATA"
  chmod 0700 "$PGDATA"
  # The C locale with UTF-8 (the image has no locale files); SCRAM on the network, peer on
  # the socket, as in the image's pg_hba.conf (which the server reads instead of initdb's).
  # (initdb runs `locale -a`, which the image lacks: "sh: locale: not found" and a warning
  # that no system locales were found are expected; the C locale needs none.)
  initdb --username=postgres --no-locale --encoding=UTF8 \
    --auth-local=peer --auth-host=scram-sha-256 --no-instructions >/dev/null

  # The role and its database, in single-user mode: no server listens while a password is set.
  # The password is an SQL literal (quotes doubled; standard_conforming_strings is on, so
  # backslashes are plain), stored as a SCRAM verifier; a failing statement is not echoed
  # (log_min_error_statement), and the output is checked for errors instead of shown.
  literal=$(printf '%s' "$password" | sed "s/'/''/g")
  if ! out=$(printf "CREATE ROLE %s LOGIN PASSWORD '%s'\nCREATE DATABASE %s OWNER %s\n" \
    "$app_user" "$literal" "$app_db" "$app_user" |
    postgres --single -c config_file="$conf" -c log_min_messages=warning postgres 2>&1 >/dev/null); then
    echo "$out" >&2
    die "single-user set-up failed"
  fi
  if echo "$out" | grep -q -e 'ERROR:' -e 'FATAL:'; then
    echo "$out" >&2
    die "creating role $app_user and database $app_db failed"
  fi
  unset password literal
  echo "postgres-entrypoint: created role $app_user and database $app_db (password from $pwfile)"
fi

exec postgres -c config_file="$conf" "$@"
