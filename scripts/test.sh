#!/usr/bin/env bash
# The test command: install everything the tests need, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-tools.sh
export PATH="$PWD/.tools/bin:$PATH"
# Tests that need a tool fail, rather than skip, when it is missing.
export SLOEXPORTER_REQUIRE_TOOLS=1
.venv/bin/ruff check .
.venv/bin/python -m pytest -q "$@"
