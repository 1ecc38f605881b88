"""The benchmarks still run: each one, tiny, end to end (their figures are not checked)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.tools import ROOT, require_tool

RUNS = [
    ["bench/generate.py", "--slos", "20", "--repeat", "1"],
    ["bench/sizing.py", "--objects", "20", "--kinds", "applications,cronjobs"],
    # one scrape per encoding: percentiles of a single sample must not crash
    ["bench/exporter.py", "--sizes", "100", "--churn", "100", "--churn-seconds", "1",
     "--scrape-seconds", "1", "--scrapes", "1"],
    ["bench/status.py", "--slos", "20", "--requests", "5"],
]


@pytest.mark.parametrize("argv", RUNS, ids=[r[0] for r in RUNS])
def test_benchmark_runs(argv: list[str]) -> None:
    if argv[0] == "bench/generate.py":  # it runs Sloth itself beside ours
        argv = [*argv, "--sloth", require_tool("sloth")]
    res = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert res.stdout.strip(), "a benchmark prints its figures"


def test_rule_cost_runs() -> None:
    """bench/rule_cost.py, tiny: three real Prometheus processes, our rules and Sloth's."""
    for name in ("promtool", "prometheus", "sloth"):
        require_tool(name)
    res = subprocess.run([sys.executable, "bench/rule_cost.py", "--slos", "4", "--history-days",
                          "0.1", "--scrape", "5", "--eval", "5", "--warmup", "5", "--measure",
                          "10", "--compact-settle", "5"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "CPU ratio ours/sloth:" in res.stdout
    assert "costliest rules, ours" in res.stdout and "costliest rules, sloth" in res.stdout
    # every Prometheus recorded its rules' series (the baseline none)
    recorded = next(line for line in res.stdout.splitlines() if line.startswith("recorded"))
    ours, sloth, none = (int(v) for v in recorded.split()[3:6])
    assert ours > 0 and sloth > 0 and none == 0
    # and evaluated them: the measured processes run with their rules (not, say, with the
    # configuration of the compaction step)
    timed = next(line for line in res.stdout.splitlines() if line.startswith("rule groups"))
    ours_ms, sloth_ms, none_ms = (float(v) for v in timed.split()[5:8])
    assert ours_ms > 0 and sloth_ms > 0 and none_ms == 0
