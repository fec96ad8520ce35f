#!/usr/bin/env python3
"""Asserts the hardening and zero-downtime properties of a rendered hello-stack chart.

Usage: check_rendered.py RENDERED.yaml...   (the output of `helm template`)

The Kubernetes schemas say a manifest is well formed; this says it is the deployment we
want: every container non-root, read-only, with no capabilities and no privilege escalation,
seccomp RuntimeDefault and resource limits; no service-account token; every Deployment rolls
with maxUnavailable 0; hello is gated on /status, stops through a shell-free preStop, and gets
a grace period longer than preStop + drain delay + drain timeout; a PodDisruptionBudget
covers hello. visits, when rendered: ready on /health but alive on /metrics (a store outage
restarts nothing), a grace period longer than preStop + drain timeout, its PostgreSQL password
a file from a Secret (never a value in the manifest), a PodDisruptionBudget. accounts, when
rendered: ready and alive on anything but /health (a PostgreSQL outage must not take /auth
away), a grace period longer than preStop + drain timeout, its database password and its
signing key files from Secrets, a PodDisruptionBudget, and, with NetworkPolicies on, one that
admits only named peers and restricts egress; nginx pointed at its Service and, with
NGINX_API_AUTH jwt, never without it. Prints one line per file; exits 1 with one line per
problem.
"""

import re
import sys

import yaml

HELLO_DEFAULTS = {"HELLO_DRAIN_DELAY": "0s", "HELLO_DRAIN_TIMEOUT": "8s"}  # hello --help
VISITS_DEFAULTS = {"VISITS_DRAIN_TIMEOUT": "8s"}  # visits --help
ACCOUNTS_DEFAULTS = {  # accounts --help
    "ACCOUNTS_DRAIN_TIMEOUT": "8s",
    "ACCOUNTS_KEYS_DIR": "/run/secrets/accounts-keys",
}
NGINX_DEFAULTS = {"NGINX_API_AUTH": "jwt", "NGINX_ACCOUNTS_HOST": "accounts"}  # nginx/entrypoint.sh
SHELLS = {"sh", "/bin/sh", "bash", "/bin/bash", "ash", "dash"}


def drain_fits_grace(problems, where, spec, container, name, defaults, drain_var):
    """A store-backed service's stop: a preStop sleep (endpoints drop the pod first), then its
    drain timeout, both within terminationGracePeriodSeconds. Returns its env (the chart's
    values over the binary's defaults), or None when the drain timeout cannot be read."""
    pre_stop = ((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep")
    if not pre_stop:
        problems.append(f"{where}: {name} has no preStop sleep")
    env = dict(defaults)
    env.update({e["name"]: e.get("value") for e in container.get("env") or []})
    try:
        timeout = seconds(env[drain_var])
    except ValueError as e:
        problems.append(f"{where}: {e}")
        return None
    needed = (pre_stop or {}).get("seconds", 0) + timeout
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if not grace > needed:
        problems.append(f"{where}: terminationGracePeriodSeconds {grace} is not above preStop + "
                        f"drain timeout = {needed}s")
    return env


def seconds(duration):
    """hello's duration syntax: a whole number with ms, s or m."""
    m = re.fullmatch(r"(\d+)(ms|s|m)", str(duration))
    if not m:
        raise ValueError(f"bad duration {duration!r}")
    n = int(m.group(1))
    return {"ms": n / 1000, "s": n, "m": n * 60}[m.group(2)]


def check_container(where, c, pod_sc, problems):
    sc = c.get("securityContext") or {}

    def setting(key):
        return sc.get(key, pod_sc.get(key))

    if setting("runAsNonRoot") is not True:
        problems.append(f"{where}: runAsNonRoot is not true")
    if setting("runAsUser") in (None, 0):
        problems.append(f"{where}: runAsUser is unset or 0")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    if sc.get("privileged"):
        problems.append(f"{where}: privileged")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        problems.append(f"{where}: capabilities do not drop ALL")
    if caps.get("add"):
        problems.append(f"{where}: capabilities added: {caps['add']}")
    if (setting("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append(f"{where}: seccompProfile is not RuntimeDefault")
    limits = (c.get("resources") or {}).get("limits") or {}
    requests = (c.get("resources") or {}).get("requests") or {}
    for r in ("cpu", "memory"):
        if not limits.get(r):
            problems.append(f"{where}: no {r} limit")
        if not requests.get(r):
            problems.append(f"{where}: no {r} request")
    exec_cmd = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command")
    if exec_cmd and exec_cmd[0] in SHELLS:
        problems.append(f"{where}: preStop runs a shell ({exec_cmd[0]})")


def check_hello(where, dep, problems):
    spec = dep["spec"]["template"]["spec"]
    hello = next((c for c in spec["containers"] if c["name"] == "hello"), None)
    if hello is None:
        problems.append(f"{where}: no container named hello")
        return
    ready = (hello.get("readinessProbe") or {}).get("httpGet") or {}
    if ready.get("path") != "/status":
        problems.append(f"{where}: readinessProbe is not an httpGet of /status")
    if not hello.get("livenessProbe"):
        problems.append(f"{where}: no livenessProbe")
    pre_stop = (hello.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in pre_stop:
        pre_stop_s = pre_stop["sleep"]["seconds"]
    elif "exec" in pre_stop:
        pre_stop_s = 0  # bounded by the grace period itself; only the sleep is counted
    else:
        problems.append(f"{where}: hello has no preStop sleep or exec hook")
        pre_stop_s = 0
    env = dict(HELLO_DEFAULTS)
    env.update({e["name"]: e["value"] for e in hello.get("env") or [] if "value" in e})
    try:
        delay = seconds(env["HELLO_DRAIN_DELAY"])
        timeout = seconds(env["HELLO_DRAIN_TIMEOUT"])
    except ValueError as e:
        problems.append(f"{where}: {e}")
        return
    grace = spec.get("terminationGracePeriodSeconds", 30)
    needed = pre_stop_s + delay + timeout
    if not grace > needed:
        problems.append(
            f"{where}: terminationGracePeriodSeconds {grace} is not above preStop {pre_stop_s}s"
            f" + drain delay {delay}s + drain timeout {timeout}s = {needed}s"
        )


def check_visits(where, dep, docs, problems):
    spec = dep["spec"]["template"]["spec"]
    visits = next((c for c in spec["containers"] if c["name"] == "visits"), None)
    if visits is None:
        problems.append(f"{where}: no container named visits")
        return
    if ((visits.get("readinessProbe") or {}).get("httpGet") or {}).get("path") != "/health":
        problems.append(f"{where}: readinessProbe is not an httpGet of /health")
    live = (visits.get("livenessProbe") or {}).get("httpGet") or {}
    if not visits.get("livenessProbe") or live.get("path") == "/health":
        problems.append(f"{where}: livenessProbe missing or on /health (a store outage would "
                        "restart every pod)")
    env = drain_fits_grace(problems, where, spec, visits, "visits", VISITS_DEFAULTS,
                           "VISITS_DRAIN_TIMEOUT")
    if env is None:
        return
    for name in env:
        if "PASSWORD" in name and not name.endswith("_FILE"):
            problems.append(f"{where}: {name} in the environment (passwords come as files)")
    pw = env.get("VISITS_DATABASE_PASSWORD_FILE")
    mounts = {m["mountPath"]: m["name"] for m in visits.get("volumeMounts") or []}
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    mount = next((p for p in mounts if pw and pw.startswith(p.rstrip("/") + "/")), None)
    sources = ((volumes.get(mounts.get(mount)) or {}).get("projected") or {}).get("sources") or []
    if not any((s.get("secret") or {}).get("name") for s in sources):
        problems.append(f"{where}: VISITS_DATABASE_PASSWORD_FILE is not a file from a Secret")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    if not any(p.get("kind") == "PodDisruptionBudget" and selects(p["spec"].get("selector"), labels)
               for p in docs):
        problems.append(f"no PodDisruptionBudget selects {dep['metadata']['name']}'s pods")


def secret_file(path, container, spec):
    """The Secret a file path inside the container comes from (its projected or secret
    volume, mounted above it), or None: a password or key there is never in the manifest."""
    if not path:
        return None
    mounts = [m for m in container.get("volumeMounts") or []
              if path.startswith(m["mountPath"].rstrip("/") + "/")]
    if not mounts:
        return None
    mount = max(mounts, key=lambda m: len(m["mountPath"]))  # the innermost mount wins
    inside = path[len(mount["mountPath"].rstrip("/")) + 1:]
    volume = next((v for v in spec.get("volumes") or [] if v["name"] == mount["name"]), {})
    if "secret" in volume:
        sources = [{"secret": {"name": volume["secret"].get("secretName"),
                               "items": volume["secret"].get("items")}}]
    else:
        sources = (volume.get("projected") or {}).get("sources") or []
    for src in sources:
        sec = src.get("secret") or {}
        items = sec.get("items")
        if sec.get("name") and (items is None or any(i["path"] == inside for i in items)):
            return sec["name"]
    return None


def check_accounts(where, dep, docs, problems):
    spec = dep["spec"]["template"]["spec"]
    acc = next((c for c in spec["containers"] if c["name"] == "accounts"), None)
    if acc is None:
        problems.append(f"{where}: no container named accounts")
        return
    for probe in ("readinessProbe", "livenessProbe"):
        path = ((acc.get(probe) or {}).get("httpGet") or {}).get("path")
        if not acc.get(probe) or path == "/health":
            problems.append(f"{where}: {probe} missing or on /health (a PostgreSQL outage would "
                            "take /auth, and so every /api request, away)")
    env = drain_fits_grace(problems, where, spec, acc, "accounts", ACCOUNTS_DEFAULTS,
                           "ACCOUNTS_DRAIN_TIMEOUT")
    if env is None:
        return
    for e in acc.get("env") or []:
        if "PASSWORD" in e["name"] and not e["name"].endswith("_FILE"):
            problems.append(f"{where}: {e['name']} in the environment (passwords come as files)")
        if "PRIVATE KEY" in str(e.get("value", "")):
            problems.append(f"{where}: {e['name']} holds a private key (keys come as files)")
    if not secret_file(env.get("ACCOUNTS_DATABASE_PASSWORD_FILE"), acc, spec):
        problems.append(f"{where}: ACCOUNTS_DATABASE_PASSWORD_FILE is not a file from a Secret")
    kid = env.get("ACCOUNTS_SIGNING_KEY")
    if not kid:
        problems.append(f"{where}: no ACCOUNTS_SIGNING_KEY (accounts refuses to start)")
    elif not secret_file(f"{env['ACCOUNTS_KEYS_DIR'].rstrip('/')}/{kid}.pem", acc, spec):
        problems.append(f"{where}: the signing key {kid}.pem is not a file from a Secret in "
                        "ACCOUNTS_KEYS_DIR")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    if not any(p.get("kind") == "PodDisruptionBudget" and selects(p["spec"].get("selector"), labels)
               for p in docs):
        problems.append(f"no PodDisruptionBudget selects {dep['metadata']['name']}'s pods")
    policies = [p for p in docs if p.get("kind") == "NetworkPolicy"]
    mine = [p for p in policies if selects(p["spec"].get("podSelector"), labels)]
    if policies and not mine:
        problems.append("no NetworkPolicy selects accounts")
    for p in mine:
        name = p["metadata"]["name"]
        if "Egress" not in (p["spec"].get("policyTypes") or []):
            problems.append(f"NetworkPolicy {name}: accounts' egress is not restricted")
        for rule in p["spec"].get("ingress") or []:
            if not rule.get("from"):
                problems.append(f"NetworkPolicy {name}: an ingress rule admits every peer")
        for rule in p["spec"].get("egress") or []:
            if not rule.get("ports"):
                problems.append(f"NetworkPolicy {name}: an egress rule allows every port")


def check_nginx_accounts(nginx, docs, problems):
    """nginx sends accounts' routes to accounts' Service, and with NGINX_API_AUTH jwt (its
    default) asks accounts about every /api request: accounts must then be rendered."""
    name = nginx["metadata"]["name"]
    c = next((c for c in nginx["spec"]["template"]["spec"]["containers"] if c["name"] == "nginx"),
             None)
    if c is None:
        problems.append(f"Deployment {name}: no container named nginx")
        return
    env = dict(NGINX_DEFAULTS)
    env.update({e["name"]: e.get("value") for e in c.get("env") or []})
    if env["NGINX_API_AUTH"] not in ("jwt", "off"):
        problems.append(f"Deployment {name}: NGINX_API_AUTH {env['NGINX_API_AUTH']!r}")
    services = {
        d["metadata"]["name"]
        for d in docs
        if d.get("kind") == "Service"
        and (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "accounts"
    }
    if env["NGINX_API_AUTH"] == "jwt" and not services:
        problems.append(f"Deployment {name}: NGINX_API_AUTH jwt without an accounts Service "
                        "(every /api request would fail)")
    if services and env["NGINX_ACCOUNTS_HOST"].split(".")[0] not in services:
        problems.append(f"Deployment {name}: NGINX_ACCOUNTS_HOST {env['NGINX_ACCOUNTS_HOST']!r} "
                        f"is not the accounts Service {sorted(services)}")
    if services and ".svc." not in env["NGINX_ACCOUNTS_HOST"]:
        problems.append(f"Deployment {name}: NGINX_ACCOUNTS_HOST {env['NGINX_ACCOUNTS_HOST']!r} "
                        "is not a full name (nginx's resolver applies no search domains)")


def selects(selector, labels):
    match = (selector or {}).get("matchLabels") or {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def check_file(path):
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    problems = []
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    hello = [
        d
        for d in deployments
        if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        == "hello"
    ]
    if len(hello) != 1:
        problems.append(f"expected one hello Deployment, found {len(hello)}")
    if not any(d.get("kind") == "Service" for d in docs):
        problems.append("no Service")
    for d in deployments:
        name = d["metadata"]["name"]
        strategy = d["spec"].get("strategy") or {}
        if strategy.get("type") != "RollingUpdate":
            problems.append(f"Deployment {name}: strategy is not RollingUpdate")
        if (strategy.get("rollingUpdate") or {}).get("maxUnavailable") not in (0, "0", "0%"):
            problems.append(f"Deployment {name}: maxUnavailable is not 0")
        pod = d["spec"]["template"]["spec"]
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"Deployment {name}: automountServiceAccountToken is not false")
        if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
            problems.append(f"Deployment {name}: shares a host namespace")
        pod_sc = pod.get("securityContext") or {}
        containers = pod.get("containers", []) + pod.get("initContainers", [])
        for c in containers:
            check_container(f"Deployment {name} container {c['name']}", c, pod_sc, problems)
    for d in hello:
        check_hello(f"Deployment {d['metadata']['name']}", d, problems)
        labels = d["spec"]["template"]["metadata"]["labels"]
        pdbs = [
            p
            for p in docs
            if p.get("kind") == "PodDisruptionBudget" and selects(p["spec"].get("selector"), labels)
        ]
        if not pdbs:
            problems.append(f"no PodDisruptionBudget selects {d['metadata']['name']}'s pods")
        hpas = [p for p in docs if p.get("kind") == "HorizontalPodAutoscaler"]
        for h in hpas:
            if h["apiVersion"] != "autoscaling/v2":
                problems.append(f"HPA {h['metadata']['name']}: not autoscaling/v2")
            if h["spec"]["scaleTargetRef"]["name"] != d["metadata"]["name"]:
                problems.append(f"HPA {h['metadata']['name']}: does not target hello")
            if "replicas" in d["spec"]:
                problems.append("hello Deployment sets replicas although an HPA owns them")
        policies = [p for p in docs if p.get("kind") == "NetworkPolicy"]
        if policies and not any(selects(n["spec"].get("podSelector"), labels) for n in policies):
            problems.append("no NetworkPolicy selects hello")
    for d in deployments:
        component = d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        if component == "visits":
            check_visits(f"Deployment {d['metadata']['name']}", d, docs, problems)
        elif component == "accounts":
            check_accounts(f"Deployment {d['metadata']['name']}", d, docs, problems)
        elif component == "nginx":
            check_nginx_accounts(d, docs, problems)
    return docs, problems


def main(paths):
    failed = False
    for path in paths:
        docs, problems = check_file(path)
        if problems:
            failed = True
            for p in problems:
                print(f"check_rendered: FAIL {path}: {p}")
        else:
            kinds = sorted({d["kind"] for d in docs})
            print(f"check_rendered: ok {path}: {len(docs)} objects ({', '.join(kinds)})")
    return 1 if failed or not paths else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
