#!/usr/bin/env bash
# The monitoring configuration, tested like code (scripts/test.sh, tier rules):
#   1. promtool check config prometheus/prometheus.yml (and the rule files it names)
#   2. promtool check rules prometheus/rules/*.yml
#   3. promtool test rules prometheus/tests/*.yml: every alert fires on a series that should
#      fire it, at the right time, and stays silent on one that must not
#   4. amtool check-config prometheus/alertmanager.yml
#   5. the checks can fail: a rule file with one alert's `for:` changed must fail its tests
# promtool comes with Debian's prometheus package, amtool with prometheus-alertmanager
# (scripts/install-deps.sh installs both). Exit status non-zero on the first failure.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

die() {
  echo "check-rules: FAIL: $*" >&2
  exit 1
}
step() { echo "check-rules: $*"; }

for tool in promtool amtool; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found (scripts/install-deps.sh installs it)"
done

promtool check config prometheus/prometheus.yml || die "promtool check config prometheus/prometheus.yml"
promtool check rules prometheus/rules/*.yml || die "promtool check rules prometheus/rules/*.yml"
promtool test rules prometheus/tests/*.yml || die "promtool test rules prometheus/tests/*.yml"
amtool check-config prometheus/alertmanager.yml || die "amtool check-config prometheus/alertmanager.yml"

# Negative check: the same tests against rules where HelloReplicaPoisoned waits 3m instead of
# 1m must fail (its test expects it firing at 4m), so the tests really pin the timing.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/rules" "$tmp/tests"
cp prometheus/rules/*.yml "$tmp/rules/"
cp prometheus/tests/*.yml "$tmp/tests/"
awk '/alert: HelloReplicaPoisoned/ { hit = 1 }
     hit && /for: 1m/ { sub(/for: 1m/, "for: 3m"); hit = 0 }
     { print }' prometheus/rules/alerts.yml >"$tmp/rules/alerts.yml"
! cmp -s prometheus/rules/alerts.yml "$tmp/rules/alerts.yml" ||
  die "could not write the broken rules (HelloReplicaPoisoned has no 'for: 1m'?)"
if promtool test rules "$tmp/tests/alerts_test.yml" >"$tmp/neg.log" 2>&1; then
  die "promtool test rules passed with HelloReplicaPoisoned's 'for:' changed"
fi
grep -q "alertname: HelloReplicaPoisoned" "$tmp/neg.log" ||
  die "the broken rules failed for another reason: $(cat "$tmp/neg.log")"
step "negative check ok: a changed 'for:' fails the unit tests"
step "all checks passed"
