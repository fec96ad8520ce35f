#!/usr/bin/env bash
# Copy programs, exactly the shared libraries they load, and data files out of a Debian build
# stage into a root filesystem for a `FROM scratch` image, and write down the Debian packages
# (name and version) every copied file came from, so users can check the image against
# security advisories. Used by Dockerfile.multi (nginx today; Redis, PostgreSQL, Prometheus
# are meant to be built the same way):
#
#   image-rootfs.sh DEST PATH...
#
#   DEST   the root filesystem to fill (created if missing)
#   PATH   an absolute path in this (build) system: a file, a symlink or a directory (copied
#          whole). Each is copied to the same path under DEST. For each dynamically linked ELF
#          program or library among them, the dynamic loader's list of what it loads (ldd: the
#          whole dependency tree and the loader itself) is copied too, each library under the
#          path the loader resolved, as a regular file.
#
# Writes DEST/usr/share/doc/image-packages.txt ("package version", one per line, sorted, found
# with dpkg-query -S and -W) and each of those packages' copyright file (the licences travel
# with the binaries). Files that no package owns are listed as comments. Fails with one line
# on stderr when a path is missing or a library cannot be resolved.
#
# ldd runs the loader on the files: only use it on the build stage's own (Debian's) binaries.
# Libraries opened with dlopen at run time (plugins, NSS modules other than glibc's built-in
# files and dns, OpenSSL engines) are not seen by ldd: name them as PATHs.
set -euo pipefail

die() { echo "image-rootfs: error: $*" >&2; exit 1; }

[ "$#" -ge 2 ] || die "usage: image-rootfs.sh DEST PATH..."
dest=$1
shift
command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: run this in a Debian build stage"
command -v ldd >/dev/null 2>&1 || die "ldd not found (package libc-bin)"
mkdir -p "$dest"

declare -A copied=()   # source path -> 1: every path copied, for the package lookup

# copy_path PATH [deref]: PATH to the same place under DEST; with deref, a symlink is replaced
# by the file it points to (libraries: the loader's path must hold the file itself, whatever
# symlinks lead to it on the build system).
copy_path() {
    local p=$1 how=${2:-}
    [ -e "$p" ] || [ -L "$p" ] || die "$p does not exist"
    [ -z "${copied[$p]:-}" ] || return 0
    if [ "$how" = deref ]; then
        cp -L --parents "$p" "$dest"
    else
        cp -a --parents "$p" "$dest"
    fi
    copied[$p]=1
}

# is_dynamic_elf FILE: an ELF file the loader can list (a static one, a script or data: no).
is_dynamic_elf() {
    [ -f "$1" ] && [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ] || return 1
    ldd "$1" >/dev/null 2>&1
}

# copy_libraries FILE: everything the loader maps for FILE. ldd's lines are
# "name => /path (addr)", "/path/to/ld-linux.so (addr)", "linux-vdso.so.1 (addr)" (in the
# kernel, no file) or "name => not found" (fatal here).
copy_libraries() {
    local f=$1 line lib
    while IFS= read -r line; do
        case "$line" in
            *"=> not found"*) die "$f: ${line%% =>*} not found by the loader" ;;
            *"=> /"*) lib=${line#*=> }; lib=${lib%% (*} ;;
            /*) lib=${line%% (*} ;;
            *) continue ;;
        esac
        copy_path "$(printf '%s' "$lib" | tr -d '[:space:]')" deref
    done < <(ldd "$f" | sed 's/^[[:space:]]*//')
}

for p in "$@"; do
    case "$p" in /*) ;; *) die "$p: expected an absolute path" ;; esac
    copy_path "$p"
    if [ -d "$p" ] && [ ! -L "$p" ]; then
        while IFS= read -r -d '' f; do
            copied[$f]=1
            if is_dynamic_elf "$f"; then copy_libraries "$f"; fi
        done < <(find "$p" -type f -print0)
    elif is_dynamic_elf "$(readlink -f "$p")"; then
        # a symlink to a program: its target as well, and what the target loads
        [ ! -L "$p" ] || copy_path "$(readlink -f "$p")"
        copy_libraries "$(readlink -f "$p")"
    fi
done

# The owning package of a path. On merged-/usr systems (bookworm) dpkg knows some files under
# /lib and others under /usr/lib, while the loader may name either: try the path, its other
# spelling, then the file it resolves to. Prints nothing for a file no package owns.
owner_of() {
    local p=$1 alt candidates=() c out
    case "$p" in
        /usr/*) alt=${p#/usr} ;;
        *) alt=/usr$p ;;
    esac
    candidates=("$p" "$alt" "$(readlink -f "$p")")
    for c in "${candidates[@]}"; do
        # "pkg[:arch][, pkg2...]: /path", for this exact path; "diversion by ..." lines are
        # not owners (dpkg-query -S also matches patterns, hence the exact comparison).
        out=$(dpkg-query -S "$c" 2>/dev/null |
            awk -F': ' -v p="$c" '$NF == p && !/^diversion by/ { print $1; exit }') || true
        if [ -n "$out" ]; then
            printf '%s\n' "$out" | tr ',' '\n' | sed -e 's/^ *//' -e 's/:.*$//'
            return 0
        fi
    done
}

declare -A packages=()
unowned=()
for p in "${!copied[@]}"; do
    [ -d "$p" ] && [ ! -L "$p" ] && continue
    owners=$(owner_of "$p")
    if [ -z "$owners" ]; then
        unowned+=("$p")
        continue
    fi
    while IFS= read -r pkg; do packages[$pkg]=1; done <<<"$owners"
done
[ "${#packages[@]}" -gt 0 ] || die "no copied file belongs to a Debian package"

doc=$dest/usr/share/doc
list=$doc/image-packages.txt
mkdir -p "$doc"
{
    echo "# Debian packages the files of this image come from (package version), written at"
    echo "# build time by scripts/image-rootfs.sh with dpkg-query; check them against"
    echo "# https://security-tracker.debian.org/ (e.g. debsecan or the tracker's JSON)."
    dpkg-query -W -f='${Package} ${Version}\n' "${!packages[@]}" | sort -u
    if [ "${#unowned[@]}" -gt 0 ]; then
        echo "# files copied that belong to no package:"
        printf '#   %s\n' "${unowned[@]}" | sort
    fi
} >"$list"
for pkg in "${!packages[@]}"; do
    if [ -f "/usr/share/doc/$pkg/copyright" ]; then
        mkdir -p "$doc/$pkg"
        cp -L "/usr/share/doc/$pkg/copyright" "$doc/$pkg/copyright"
    fi
done
echo "image-rootfs: ${#copied[@]} paths from ${#packages[@]} packages into $dest ($(du -sh "$dest" | cut -f1)):"
grep -v '^#' "$list" | sed 's/^/image-rootfs:   /'
