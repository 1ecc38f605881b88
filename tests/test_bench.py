"""The benchmarks still run: each one, tiny, end to end (their figures are not checked)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.tools import ROOT

RUNS = [
    ["bench/generate.py", "--slos", "20", "--repeat", "1"],
    ["bench/sizing.py", "--objects", "20", "--kinds", "applications,cronjobs"],
    ["bench/exporter.py", "--apps", "20", "--secrets", "20", "--cronjobs", "5", "--events",
     "50", "--scrapes", "2", "--baseline-scrapes", "2"],
]


@pytest.mark.parametrize("argv", RUNS, ids=[r[0] for r in RUNS])
def test_benchmark_runs(argv: list[str]) -> None:
    res = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert res.stdout.strip(), "a benchmark prints its figures"
