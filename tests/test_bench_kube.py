"""The real-apiserver benchmarks run, tiny, end to end (their figures are not checked, but
each exits 1 unless /metrics ends exactly equal to the API state)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.kube_real import KubeCluster
from tests.tools import ROOT, require_tool

RUNS = [
    ["bench/exporter.py", "--real-apiserver", "--writes", "200"],
    ["bench/soak.py", "--duration", "30", "--rate", "200", "--objects", "40",
     "--restart-every", "12", "--compact-every", "7", "--watch-timeout", "4"],
]


@pytest.mark.parametrize("argv", RUNS, ids=[r[0] for r in RUNS])
def test_real_apiserver_benchmark_runs(argv: list[str]) -> None:
    for tool in KubeCluster.missing_tools():
        require_tool(tool)
    res = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "exact" in res.stdout
