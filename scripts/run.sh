#!/usr/bin/env bash
# The run command: set up, generate rules/tests/dashboards/routes from examples/slos into
# ./out, then serve the demo cluster in examples/cluster on /metrics. No cluster needed.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3 python3-venv >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e . 2>&1 | grep -v "^\[notice\]" || true
.venv/bin/sloexporter generate examples/slos -o out --with-tests
LISTEN="${SLOEXPORTER_LISTEN:-127.0.0.1:9469}"
echo "serving the demo cluster on http://$LISTEN/metrics (Ctrl-C stops)"
exec .venv/bin/sloexporter serve --manifests examples/cluster --listen "$LISTEN"
