#!/usr/bin/env bash
# Build and run the whole stack: nginx on ${HTTP_PORT:-80} -> hello:8080, plus the sidecar.
#
#   scripts/up.sh          # foreground; Ctrl-C stops the stack
#   scripts/up.sh -d       # detached; extra arguments go to `compose up`
#
# Works from any directory: it runs in the repository root, so COMPOSE_FILE paths (e.g.
# COMPOSE_FILE=docker-compose.yml:tests/e2e/compose.override.yml) are relative to it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

scripts/base-images.sh
exec scripts/compose up --build "$@"
