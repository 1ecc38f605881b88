"""Find the external tools a test needs.

The test command sets SLOEXPORTER_REQUIRE_TOOLS=1: then a missing tool fails the test.
Run without it (plain `pytest`), a missing tool skips the test with the reason.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCAL_TOOLS = ROOT / ".tools" / "bin"


def require_tool(name: str) -> str:
    """The path of tool `name`, or fail/skip as the test command asked."""
    path = shutil.which(name) or shutil.which(name, path=str(LOCAL_TOOLS))
    if path:
        return path
    message = f"{name} is not installed; run scripts/install-tools.sh"
    if os.environ.get("SLOEXPORTER_REQUIRE_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)
