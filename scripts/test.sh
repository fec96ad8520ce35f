#!/usr/bin/env bash
# THE test command (README, .ci/run): installs what is missing, builds, and runs every tier the
# machine supports, in this order:
#   format    clang-format --dry-run on every C/C++ file
#   unit      ctest (GoogleTest) on the Release build
#   blackbox  pytest tests/blackbox: the real binaries on loopback
#   sanitize  unit + blackbox again on an ASan/UBSan build
#   fuzz      libFuzzer (clang, ASan+UBSan) on the HTTP connection state machine, 60 s
#   perf      perf/run --short: the benchmark suite still works (speed is not judged here)
#   rules     scripts/check-rules.sh: promtool check config/rules, promtool test rules (every
#             alert fires when it should and not when it should not), amtool check-config
#   deploy    scripts/validate-deploy.sh: Helm chart lint, render, schema and hardening checks
#   e2e       pytest tests/e2e: the stack under docker compose, through port 80
# Every tier runs even if an earlier one failed; the exit status is non-zero if any failed.
# STACK_TIERS="unit blackbox" runs a subset.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1

tiers=${STACK_TIERS:-"format unit blackbox sanitize fuzz perf rules deploy e2e"}
jobs=$(nproc 2>/dev/null || echo 2)
declare -a names=() results=() times=()

run_tier() {
  local name=$1
  shift
  case " $tiers " in *" $name "*) ;; *) return 0 ;; esac
  echo
  echo "==== tier: $name"
  local start=$SECONDS
  if "$@"; then
    results+=(passed)
  else
    results+=(FAILED)
  fi
  names+=("$name")
  times+=($((SECONDS - start)))
}

build() {  # build DIR [cmake args...]
  local dir=$1
  shift
  local gen=()
  [[ -f $dir/CMakeCache.txt ]] || gen=(-G Ninja)
  cmake -S . -B "$dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null &&
    cmake --build "$dir" -j "$jobs"
}

tier_format() {
  local bad=()
  while IFS= read -r f; do
    clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
  done < <(git ls-files '*.cpp' '*.hpp' '*.c' '*.h' 2>/dev/null || find core hello sidecar tests -name '*.[ch]pp')
  if ((${#bad[@]})); then
    echo "not clang-formatted: ${bad[*]}"
    return 1
  fi
  echo "all C++ files clang-formatted"
}

tier_unit() {
  build build && (cd build && ctest --output-on-failure -j "$jobs")
}

tier_blackbox() {
  [[ -x build/hello/hello ]] || build build || return 1
  STACK_BUILD_DIR="$root/build" STACK_REQUIRE_BINARIES=1 python3 -m pytest -q tests/blackbox
}

tier_sanitize() {
  build build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTACK_ASAN=ON -DSTACK_UBSAN=ON || return 1
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  (cd build-asan && ctest --output-on-failure -j "$jobs") &&
    STACK_BUILD_DIR="$root/build-asan" STACK_SANITIZED=1 STACK_REQUIRE_BINARIES=1 python3 -m pytest -q tests/blackbox
}

tier_fuzz() {
  CC=clang CXX=clang++ build build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTACK_FUZZ=ON \
    -DBUILD_TESTING=OFF || return 1
  # New inputs go to a scratch corpus; the committed seeds stay as they are.
  local scratch
  scratch=$(mktemp -d)
  (cd "$scratch" && "$root/build-fuzz/fuzz/http_fuzz" -max_total_time="${STACK_FUZZ_SECONDS:-60}" \
    -timeout=10 -rss_limit_mb=2048 -dict="$root/fuzz/http.dict" -print_final_stats=1 \
    "$scratch" "$root/fuzz/corpus" 2>&1 | grep -E "^(Done|stat::number_of_executed_units|==|SUMMARY|invariant)|ERROR" )
  local rc=${PIPESTATUS[0]}
  rm -rf "$scratch"
  return "$rc"
}

tier_perf() {
  # The images section needs the base image (made offline when it cannot be pulled).
  if docker info >/dev/null 2>&1; then scripts/base-images.sh >/dev/null || return 1; fi
  PERF_BUILD_DIR="$root/build" perf/run --short
}

tier_rules() {
  scripts/check-rules.sh
}

tier_deploy() {
  scripts/validate-deploy.sh
}

tier_e2e() {
  if ! command -v docker >/dev/null 2>&1; then
    echo "e2e: docker is not installed on this machine; tier skipped"
    return 0
  fi
  python3 -m pytest -q tests/e2e
}

# Debian's pytest lives with Debian's python3; prefer it over any other python3 on PATH.
python3() { if [[ -x /usr/bin/python3 ]]; then /usr/bin/python3 "$@"; else command python3 "$@"; fi; }

echo "==== dependencies"
scripts/install-deps.sh || exit 1

run_tier format tier_format
run_tier unit tier_unit
run_tier blackbox tier_blackbox
run_tier sanitize tier_sanitize
run_tier fuzz tier_fuzz
run_tier perf tier_perf
run_tier rules tier_rules
run_tier deploy tier_deploy
run_tier e2e tier_e2e

echo
echo "==== summary"
passed=0
failed=0
for i in "${!names[@]}"; do
  printf '  %-9s %-7s %4ss\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"
  if [[ ${results[$i]} == passed ]]; then ((passed++)); else ((failed++)); fi
done
echo "tiers: $passed passed, $failed failed"
((failed == 0))
