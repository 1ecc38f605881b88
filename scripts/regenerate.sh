#!/usr/bin/env bash
# Rewrite every committed generated file from examples/slos after a change to the generator:
#   alerts/{rules,tests,alertmanager}  dashboards/  helm/sloexporter/files/
# The drift tests (test_generate, test_dashboards, test_helm_rules) fail until this is run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
$PY -m sloexporter.cli generate examples/slos -o "$out" --with-tests
for part in rules tests alertmanager; do
  rm -rf "alerts/$part" && cp -r "$out/$part" "alerts/$part"
done
rm -rf dashboards && cp -r "$out/dashboards" dashboards
$PY helm/generate.py
