from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# test modules import these helpers before naming them as plugins; rewrite their asserts too
pytest.register_assert_rewrite("tests.kube_fixtures", "tests.stack", "tests.kube_real")

from tests.tools import ROOT, require_tool  # noqa: E402

# slack_webhook and smtp_inbox: notification stand-ins any test can ask for
pytest_plugins = ["tests.stack"]


#: Debian's Prometheus 2.42 and the 3.x that install-tools builds: rule semantics changed
#: between them (left-open ranges, `le` normalisation), so rule tests run on both.
PROMTOOLS = ("promtool", "promtool3")
#: a test run once on each promtool (the `promtool` fixture)
on_both = pytest.mark.parametrize("promtool", PROMTOOLS, indirect=True)


@pytest.fixture
def promtool(request: pytest.FixtureRequest) -> str:
    """promtool 2.x; a module parametrizes it over PROMTOOLS (indirect) to test both."""
    return require_tool(getattr(request, "param", "promtool"))


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the real `sloexporter` command line in a child process."""
    return subprocess.run([sys.executable, "-m", "sloexporter.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def history(tmp_path_factory: pytest.TempPathFactory):
    """One Prometheus 2.42 with 36 days of backfilled, known history (tests/status_history.py),
    built once for every status test."""
    from tests import status_history

    prometheus, promtool = require_tool("prometheus"), require_tool("promtool")
    sloth = require_tool("sloth")
    built = status_history.build(tmp_path_factory.mktemp("history"), prometheus, promtool,
                                 sloth)
    try:
        yield built
    finally:
        built.stop()
