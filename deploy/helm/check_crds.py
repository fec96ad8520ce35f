#!/usr/bin/env python3
"""Validates the Prometheus Operator objects of rendered charts against schemas/ (offline).

Usage: check_crds.py RENDERED.yaml...   (the output of `helm template`)

kubernetes-validate knows Kubernetes' own kinds only and skips custom resources with a
warning; this checks every monitoring.coreos.com object against its JSON schema in schemas/
(schemas/README.md says where they come from) and fails on one it has no schema for. Prints
one line per file; exits 1 with one line per problem.
"""

import json
import sys
from pathlib import Path

import jsonschema
import yaml

SCHEMAS = Path(__file__).resolve().parent / "schemas"


def schema_for(doc):
    group_version = doc.get("apiVersion", "")
    group, _, version = group_version.partition("/")
    path = SCHEMAS / ("%s-%s-%s.json" % (doc.get("kind", "").lower(), group, version))
    return json.loads(path.read_text()) if path.exists() else None


def main(paths):
    problems = []
    for path in paths:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        checked = []
        for d in docs:
            if not d.get("apiVersion", "").startswith("monitoring.coreos.com/"):
                continue
            where = "%s: %s %s" % (path, d.get("kind"), (d.get("metadata") or {}).get("name"))
            schema = schema_for(d)
            if schema is None:
                problems.append("%s: no schema in %s" % (where, SCHEMAS))
                continue
            v = jsonschema.Draft7Validator(schema)
            errors = sorted(v.iter_errors(d), key=lambda e: list(e.absolute_path))
            for e in errors:
                at = "/".join(str(p) for p in e.absolute_path)
                problems.append("%s: %s: %s" % (where, at or "(top)", e.message))
            checked.append(d["kind"])
        print("check_crds: %s: %d custom resources checked (%s)"
              % (path, len(checked), ", ".join(sorted(checked)) or "none"))
    for p in problems:
        print("check_crds: " + p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
