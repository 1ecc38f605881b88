#!/usr/bin/env bash
# The test command: install everything the tests need, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

phase "installing the tools the tests need (scripts/install-tools.sh)" \
  "about 25 minutes the first time: apt packages, helm, and Go builds; seconds after"
bash scripts/install-tools.sh
export PATH="$PWD/.tools/bin:$PATH"
# Tests that need a tool fail, rather than skip, when it is missing.
export SLOEXPORTER_REQUIRE_TOOLS=1

phase "ruff check" "a few seconds"
.venv/bin/ruff check .

phase "the test suite (pytest)" "about 35 minutes on 2 cores"
set +e
.venv/bin/python -m pytest -q "$@"
status=$?
set -e
phase_done
exit $status
