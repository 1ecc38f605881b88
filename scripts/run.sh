#!/usr/bin/env bash
# The run command: set up, generate rules/tests/dashboards/routes from examples/slos into
# ./out, then serve the demo cluster in examples/cluster on /metrics. No cluster needed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

if python_needs_apt; then
  phase "installing Python 3.11 and venv with apt" "about 1 minute"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3 python3-venv >/dev/null
fi

phase "virtualenv .venv with the package" "about 2 minutes the first time, seconds after"
ensure_venv ""

phase "generating rules, promtool tests, dashboards and routes from examples/slos into out/" \
  "a few seconds"
.venv/bin/sloexporter generate examples/slos -o out --with-tests
phase_done

LISTEN="${SLOEXPORTER_LISTEN:-127.0.0.1:9469}"
cat >&2 <<MSG

To use the sloexporter command in your shell, run:  . .venv/bin/activate
Then, for example:  sloexporter init myservice --job myservice
                    sloexporter validate examples/slos
(The README's "Your first SLO in five minutes" goes on from there.)

MSG
echo "==> serving the demo cluster on http://$LISTEN/metrics (Ctrl-C stops)" >&2
exec .venv/bin/sloexporter serve --manifests examples/cluster --listen "$LISTEN"
