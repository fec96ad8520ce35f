#!/usr/bin/env bash
# Make sure every base image the build needs exists locally.
#
#   scripts/base-images.sh [IMAGE...]
#
# Default images: the `ARG ..._IMAGE=<default>` values of Dockerfile.multi (today only
# debian:bookworm-slim). For each missing image: try `docker pull` (bounded by a short
# timeout), and when that fails build it from Debian packages with mmdebstrap and
# `docker import` it. Idempotent: an image that is present is left alone (fast path).
#
# Environment:
#   BASE_IMAGES_PULL_TIMEOUT  seconds allowed for `docker pull` (default 20; 0 = don't pull)
#   BASE_IMAGES_MIRROR        Debian mirror (default http://deb.debian.org/debian)
#   BASE_IMAGES_SECURITY      security mirror (default http://deb.debian.org/debian-security)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
pull_timeout=${BASE_IMAGES_PULL_TIMEOUT:-20}
mirror=${BASE_IMAGES_MIRROR:-http://deb.debian.org/debian}
security=${BASE_IMAGES_SECURITY:-http://deb.debian.org/debian-security}

say() { echo "base-images: $*"; }
die() { echo "base-images: error: $*" >&2; exit 1; }

command -v docker >/dev/null 2>&1 || die "docker is not installed"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
    else die "need root for: $*"
    fi
}

ensure_mmdebstrap() {
    command -v mmdebstrap >/dev/null 2>&1 && return 0
    command -v apt-get >/dev/null 2>&1 || die "mmdebstrap is missing and apt-get is not available to install it"
    say "installing mmdebstrap with apt-get"
    local log
    log=$(mktemp "${TMPDIR:-/tmp}/base-images.XXXXXX.log")
    if ! { as_root apt-get update -qq \
           && as_root env DEBIAN_FRONTEND=noninteractive \
                  apt-get install -y -qq --no-install-recommends mmdebstrap; } >"$log" 2>&1 \
       || ! command -v mmdebstrap >/dev/null 2>&1; then
        tail -n 30 "$log" >&2
        die "installing mmdebstrap failed (see $log)"
    fi
    rm -f "$log"
}

# Build debian:<suite>[-slim] from Debian packages and import it under that name.
build_debian() {
    local image=$1 tag suite slim=0
    tag=${image#*:}
    [ "$tag" != "$image" ] || tag=latest
    case "$tag" in
        *-slim) suite=${tag%-slim}; slim=1 ;;
        *) suite=$tag ;;
    esac
    case "$suite" in
        latest|stable|testing|unstable|sid|*[!a-z]*|"") die "don't know how to build $image (need debian:<codename>[-slim])" ;;
    esac
    ensure_mmdebstrap

    local opts=(--variant=minbase --format=tar
                --aptopt='Acquire::Languages "none"')
    if [ "$slim" -eq 1 ]; then
        # like the official slim images: no docs, man pages, info or translations
        opts+=(--dpkgopt='path-exclude=/usr/share/doc/*'
               --dpkgopt='path-include=/usr/share/doc/*/copyright'
               --dpkgopt='path-exclude=/usr/share/man/*'
               --dpkgopt='path-exclude=/usr/share/info/*'
               --dpkgopt='path-exclude=/usr/share/locale/*'
               --dpkgopt='path-include=/usr/share/locale/locale.alias'
               --dpkgopt='path-exclude=/usr/share/lintian/*')
    fi
    # Each source line ends up verbatim in the image's /etc/apt/sources.list.
    local sources=("deb $mirror $suite main"
                   "deb $mirror $suite-updates main"
                   "deb $security $suite-security main")

    local log id
    log=$(mktemp "${TMPDIR:-/tmp}/base-images.XXXXXX.log")
    say "building $image with mmdebstrap ($suite, minbase$([ "$slim" -eq 1 ] && echo ', slim'); log: $log)"
    # Imported untagged first: the name is given only once mmdebstrap has succeeded, so a
    # failed bootstrap never leaves a broken image under that name.
    if ! id=$(as_root mmdebstrap "${opts[@]}" "$suite" - "${sources[@]}" 2>>"$log" \
            | docker import \
                --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
                --change 'ENV LANG=C.UTF-8' \
                --change 'CMD ["bash"]' \
                --message "mmdebstrap --variant=minbase $suite (scripts/base-images.sh)" \
                - 2>>"$log"); then
        [ -z "$id" ] || docker rmi "$id" >/dev/null 2>&1 || true
        tail -n 30 "$log" >&2
        die "building $image failed (see $log)"
    fi
    if ! docker run --rm "$id" true >>"$log" 2>&1; then
        docker rmi "$id" >/dev/null 2>&1 || true
        die "the image built for $image does not run (see $log)"
    fi
    docker tag "$id" "$image"
    rm -f "$log"
    say "built $image ($(docker image inspect -f '{{.Id}}' "$image"))"
}

ensure_image() {
    local image=$1
    if docker image inspect "$image" >/dev/null 2>&1; then
        say "$image present"
        return 0
    fi
    if [ "$pull_timeout" != 0 ]; then
        say "$image missing, trying docker pull (timeout ${pull_timeout}s)"
        if timeout --kill-after=5 "$pull_timeout" docker pull -q "$image" >/dev/null 2>&1 \
            && docker image inspect "$image" >/dev/null 2>&1; then
            say "pulled $image"
            return 0
        fi
        say "pull of $image failed"
    fi
    case "$image" in
        debian:*) build_debian "$image" ;;
        *) die "cannot pull $image and don't know how to build it" ;;
    esac
}

images=("$@")
if [ "${#images[@]}" -eq 0 ]; then
    mapfile -t images < <(sed -n 's/^ARG [A-Z_]*IMAGE=\([^[:space:]]*\).*/\1/p' "$root/Dockerfile.multi" | sort -u)
    [ "${#images[@]}" -gt 0 ] || images=(debian:bookworm-slim)
fi
for image in "${images[@]}"; do
    ensure_image "$image"
done
