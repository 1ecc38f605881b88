"""Our alerts fire no later than Pyrra's, on Pyrra's own golden rules.

Pyrra's expected burn-rate groups (`golden/slo/rules_test/burnrates.yaml`) are replayed
with their input objectives (`fixtures.yaml`), loaded by our Pyrra reader. One
`promtool test rules` run per case feeds both rule sets a full outage after 15 healthy
minutes; our page must fire no later than Pyrra's `critical` alert, and our ticket no
later than Pyrra's `warning`.

Why we are earlier (see docs/compat.md): Pyrra holds each alert `for` a while (2m to
1h30m by tier) before it fires, and rounds its factors (14, 7, 2, 1) where we use the
exact workbook budget shares (28d: 13.44, 5.6, 2.8, 0.933).
"""

from __future__ import annotations

import functools
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from sloexporter import promql
from sloexporter.model import SLO
from sloexporter.testgen import Segment, input_series
from tests.compat.peers import first_fire, load, our_groups, peer, promtool_test, run_all

STEP = 60
LEAD, OUTAGE = 16, 80  # Pyrra's slowest warning for the 4w window holds for 1h

#: cases we cannot replay, and why
NOT_REPLAYED = {
    "http-latency-native": "native histograms cannot be written as promtool 2.42 input series",
}


def cases() -> list[dict[str, Any]]:
    data = yaml.safe_load(peer("pyrra", "golden", "slo", "rules_test", "burnrates.yaml")
                          .read_text(encoding="utf-8"))
    return [c for c in data["cases"] if "expected_error" not in c]


def fixtures() -> dict[str, Any]:
    return yaml.safe_load(peer("pyrra", "golden", "slo", "rules_test", "fixtures.yaml")
                          .read_text(encoding="utf-8"))


def _outage(slo: SLO) -> list[dict[str, str]]:
    segs = [Segment(LEAD, Decimal(0)), Segment(OUTAGE, Decimal(1))]
    if slo.sli.kind == "events" and "count_over_time" in (slo.sli.total or ""):
        # bool_gauge: one target that is up (1), then down (0)
        metric = "up" if "up" in (slo.sli.total or "") else ""
        assert metric, slo.sli.total
        return [{"series": 'up{instance="10.0.0.1:9090",job="node"}',
                 "values": f"1+0x{LEAD - 1} 0+0x{OUTAGE - 1}"}]
    return input_series(slo, segs, STEP)


def no_later(ours: str, theirs: str, over: int) -> str:
    """1 when ours fires, and no later than theirs (or theirs never fires); else 0."""
    o, t = first_fire(ours, over), first_fire(theirs, over)
    return f"({o} <= bool {t}) or ((count({o}) > bool 0) unless on() {t}) or vector(0)"


def replay(case: dict[str, Any], slo: SLO) -> list[dict[str, Any]]:
    end = (LEAD + OUTAGE - 1) * STEP
    checks = []
    for ours_sev, pyrra_sev in (("page", "critical"), ("ticket", "warning")):
        ours = promql.alerts_selector(slo, ours_sev)
        theirs = promql.selector("ALERTS", [("slo", slo.name), ("severity", pyrra_sev),
                                            ("alertstate", "firing")])
        theirs = theirs[:-1] + ',exhaustion!=""}'  # Pyrra's alerts only
        checks.append({"expr": no_later(ours, theirs, end), "eval_time": f"{end}s",
                       "exp_samples": [{"labels": "{}", "value": 1}]})
    return [{"name": f"{case['name']}: outage", "interval": f"{STEP}s",
             "input_series": _outage(slo), "promql_expr_test": checks}]


def test_our_alerts_fire_no_later_than_pyrras(promtool: str, tmp_path: Path) -> None:
    objects = fixtures()
    jobs = []
    for n, case in enumerate(cases()):
        if case["name"] in NOT_REPLAYED:
            continue
        spec = tmp_path / f"{n}.slo.yaml"
        spec.write_text(yaml.safe_dump(objects[case["objective"]]["object"]), encoding="utf-8")
        (slo,) = load(spec)[0].slos
        alerts = [r for r in case["expected"]["rules"] if "alert" in r]
        if not alerts:
            assert not slo.tiers, f"{case['name']}: Pyrra has alerting disabled, so must we"
            continue
        jobs.append(functools.partial(
            promtool_test, promtool, tmp_path / case["name"],
            {"pyrra.yaml": [case["expected"]], "ours.yaml": our_groups(load(spec))},
            replay(case, slo)))
    assert len(jobs) >= 15
    run_all(jobs)


def test_every_golden_case_is_replayed_or_named() -> None:
    names = {c["name"] for c in cases()}
    assert set(NOT_REPLAYED) <= names


@pytest.mark.parametrize("name", ["objectiveHTTPRatio", "objectiveUpTargets",
                                  "objectiveHTTPLatency"])
def test_pyrra_target_and_window_carry_over(name: str, tmp_path: Path) -> None:
    obj = fixtures()[name]
    spec = tmp_path / "slo.yaml"
    spec.write_text(yaml.safe_dump(obj["object"]), encoding="utf-8")
    (slo,) = load(spec)[0].slos
    assert slo.objective / 100 == Decimal(str(obj["internal_target"]))
    assert slo.period_str == "28d"  # 4w
