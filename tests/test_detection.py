"""Alerts fire when they should and stay quiet when they should, proven with promtool.

Objectives 99, 99.5, 99.9 and 99.95 over periods 7d, 28d and 30d:
- a total outage pages by the theoretical detection time plus two evaluations, and
  nothing fires before the outage starts;
- 2x burn after a healthy day raises a ticket and never a page;
- 0.5x burn fires nothing over 3 days.
"""

from __future__ import annotations

import math
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from sloexporter.output import render_rules, to_yaml
from sloexporter.specs.build import build_service
from sloexporter.specs.errors import Document
from sloexporter.specs.native import ServiceLevels
from sloexporter.testgen import (
    Segment,
    count_alerts,
    expect,
    input_series,
    outage_test,
    promtool_test_file,
)
from tests.conftest import PROMTOOLS

DAY = 86400
SLOW_EVAL = 300
SLOW_INTERVAL = 150


def make_service(objective: str, period: str):
    data = {
        "apiVersion": "sloexporter.dev/v1", "kind": "ServiceLevels", "service": "api",
        "slos": [{"name": "availability", "objective": objective, "period": period, "sli": {
            "events": {
                "errors": 'sum(rate(http_requests_total{job="api",code=~"5.."}[{{window}}]))',
                "total": 'sum(rate(http_requests_total{job="api"}[{{window}}]))'}}}],
    }
    doc = Document("inline.yaml", data)
    return build_service(doc, ServiceLevels.model_validate(data))


def run_promtool(promtool: str, tmp: Path, service, doc: dict) -> None:
    (tmp / "rules.yaml").write_text(render_rules(service))
    (tmp / "test.yaml").write_text(to_yaml(doc))
    result = subprocess.run([promtool, "test", "rules", "test.yaml"], cwd=tmp,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


CASES = [(o, p) for o in ("99", "99.5", "99.9", "99.95") for p in ("7d", "28d", "30d")]
#: Prometheus 3 changed range selection (left-open) and `le` normalisation: every outage
#: case runs on both; the 3-day burn cases (the slow ones) on 3.x for one objective per
#: period, which covers each window layout.
BOTH = [pytest.param(o, p, tool, id=f"{o}-{p}-{tool}") for o, p in CASES for tool in PROMTOOLS]
SLOW_BOTH = [pytest.param(o, p, "promtool", id=f"{o}-{p}-promtool") for o, p in CASES] + [
    pytest.param(o, p, "promtool3", id=f"{o}-{p}-promtool3")
    for o, p in (("99", "7d"), ("99.5", "28d"), ("99.9", "30d"))]


@pytest.mark.parametrize("objective,period,promtool", BOTH, indirect=["promtool"])
def test_total_outage_pages_within_theory_plus_two_evaluations(tmp_path, promtool,
                                                               objective, period):
    service = make_service(objective, period)
    slo = service.slos[0]
    test = outage_test(slo)
    # theory, independent of the windows: 2% of the period's budget at an error ratio of 1
    period_s = int(period[:-1]) * DAY
    theory = 0.02 * period_s * (1 - float(objective) / 100)
    lead = test["promql_expr_test"][0]["eval_time"]
    fires_by = test["promql_expr_test"][1]["eval_time"]
    assert int(fires_by[:-1]) - int(lead[:-1]) == math.ceil(theory / 60) * 60 + 2 * 60
    run_promtool(promtool, tmp_path, service, promtool_test_file("rules.yaml", [test]))


@pytest.mark.parametrize("objective,period,promtool", SLOW_BOTH, indirect=["promtool"])
def test_2x_burn_tickets_without_paging_and_half_burn_is_silent(tmp_path, promtool,
                                                                objective, period):
    service = make_service(objective, period)
    slo = service.slos[0]
    steps_day = DAY // SLOW_INTERVAL
    end = 3 * DAY
    double = {
        "name": "2x burn after a healthy day",
        "interval": f"{SLOW_INTERVAL}s",
        "input_series": input_series(slo, [Segment(steps_day + 1, Decimal(0)),
                                           Segment(2 * steps_day, slo.budget * 2)],
                                     SLOW_INTERVAL),
        "promql_expr_test": [
            expect(count_alerts(slo, None, "ticket"), end, 1),
            expect(count_alerts(slo, end, "page"), end, 0),
        ],
    }
    half = {
        "name": "0.5x burn for 3 days",
        "interval": f"{SLOW_INTERVAL}s",
        "input_series": input_series(slo, [Segment(3 * steps_day + 1, slo.budget / 2)],
                                     SLOW_INTERVAL),
        "promql_expr_test": [expect(count_alerts(slo, end), end, 0)],
    }
    doc = promtool_test_file("rules.yaml", [double, half])
    doc["evaluation_interval"] = f"{SLOW_EVAL}s"
    run_promtool(promtool, tmp_path, service, doc)


@pytest.mark.parametrize("promtool", PROMTOOLS, indirect=True)
def test_half_burn_check_can_fail(tmp_path, promtool):
    """The silence check is not vacuous: at 20x burn the same assertion fails."""
    service = make_service("99.9", "30d")
    slo = service.slos[0]
    steps = DAY // SLOW_INTERVAL
    loud = {"interval": f"{SLOW_INTERVAL}s",
            "input_series": input_series(slo, [Segment(steps + 1, slo.budget * 20)],
                                         SLOW_INTERVAL),
            "promql_expr_test": [expect(count_alerts(slo, DAY), DAY, 0)]}
    doc = promtool_test_file("rules.yaml", [loud])
    doc["evaluation_interval"] = f"{SLOW_EVAL}s"
    with pytest.raises(AssertionError, match="got"):
        run_promtool(promtool, tmp_path, service, doc)
    assert yaml.safe_load((tmp_path / "test.yaml").read_text())["tests"]
