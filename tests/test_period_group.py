"""The period series run in their own slower rule group (`rules.period_interval`), and
everything that reads them has what it needs before that group first runs: a new SLO's
metadata is recorded with its SLI series, and a page's budget annotation falls back to
computing the budget from the 5m series."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from sloexporter import promql, testgen
from sloexporter.model import SLO, parse_duration
from sloexporter.output import to_yaml
from sloexporter.rules import BUDGET_EXHAUSTED_ALERT, group_name, period_interval, slo_groups
from sloexporter.specs import load_paths
from tests.conftest import on_both, run_cli
from tests.tools import ROOT, require_tool

W = "{{window}}"
SPEC = f"""\
apiVersion: sloexporter.dev/v1
kind: ServiceLevels
service: shop
slos:
  - name: errors
    objective: 99
    group_by: [cluster]
    sli:
      events:
        errors: sum by (cluster) (rate(http_requests_total{{code=~"5.."}}[{W}]))
        total: sum by (cluster) (rate(http_requests_total[{W}]))
  - name: plain
    objective: 99
    sli:
      events:
        good: sum(rate(rpc_total{{result="ok"}}[{W}]))
        total: sum(rate(rpc_total[{W}]))
    alerting:
      budget_exhausted: {{}}
"""

#: (SLO, group, error ratio): the period ratios give exact budgets in binary floating
#: point (1 - ratio / 0.01), so the annotations below are exact strings
CASES = [("errors", {"cluster": "a"}, Decimal(1), "-9900%"),
         ("errors", {"cluster": "b"}, Decimal("0.5"), "-4900%"),
         # a cluster value with a quote and a backslash reaches the query through `%q`
         ("errors", {"cluster": 'e"u\\1'}, Decimal("0.25"), "-2400%"),
         ("plain", {}, Decimal("0.5"), "-4900%")]
MINUTES, AT = 40, 30 * 60


def load(tmp: Path) -> dict[str, SLO]:
    path = tmp / "shop.yaml"
    path.write_text(SPEC, encoding="utf-8")
    services, errors = load_paths([str(path)])
    assert not errors, errors
    return {slo.name: slo for service in services for slo in service.slos}


def _generated_groups(out: Path) -> list[dict[str, Any]]:
    return [g for path in sorted((out / "rules").glob("*.yaml"))
            for g in yaml.safe_load(path.read_text())["groups"]]


def example_intervals() -> dict[str, str | None]:
    """Each example SLO's period group name -> its expected interval."""
    services, errors = load_paths(["examples/slos"])
    assert not errors, errors
    return {group_name(slo, "period"): period_interval(slo)
            for service in services for slo in service.slos}


@pytest.mark.parametrize(("period", "interval"), [
    ("30d", "2m30s"), ("28d", "2m20s"), ("14d", "1m10s"), ("90d", "2m30s"),
    ("60d", "2m30s"), ("7d", None), ("2d", None), ("1d", None)])
def test_the_period_interval_scales_with_the_period(tmp_path, period, interval):
    """period / 17280 (2m30s at 30d), never above 2m30s so an instant query's 5m lookback
    always finds the last value; below 1m the group inherits the evaluation interval."""
    path = tmp_path / "s.yaml"
    path.write_text(SPEC.replace("objective: 99\n", f"objective: 99\n    period: {period}\n"))
    services, errors = load_paths([str(path)])
    assert not errors, errors
    for slo in services[0].slos:
        assert slo.period == parse_duration(period)
        assert period_interval(slo) == interval
        group = slo_groups(slo)[1]
        assert group["name"].endswith("-period") and group.get("interval") == interval
        assert list(group) == (["name", "interval", "rules"] if interval else ["name", "rules"])


def generate(tmp: Path, *extra: str) -> Path:
    out = tmp / "out"
    result = run_cli("generate", "examples/slos", "-o", str(out), *extra)
    assert result.returncode == 0, result.stderr
    return out


def test_only_the_period_series_run_in_the_slower_group(tmp_path):
    """The sums over the period (most of an SLO's rule cost) and what follows from them
    are evaluated every period_interval; every window, alert and metadata series stays at
    the evaluation interval, so a new SLO is visible from the first evaluation."""
    intervals = example_intervals()
    assert None in intervals.values() and "2m30s" in intervals.values()
    period_records = {promql.PERIOD_ERROR, promql.PERIOD_BURN, promql.BUDGET_REMAINING,
                      promql.BUDGET_EXHAUSTION}
    seen = set()
    for extra in ((), ("--max-rules-per-group", "4")):
        for group in _generated_groups(generate(tmp_path / str(len(extra)), *extra)):
            slow = re.search(r"-period(-\d+)?$", group["name"]) is not None
            base = re.sub(r"-\d+$", "", group["name"])
            assert group.get("interval") == (intervals[base] if slow else None), group["name"]
            for rule in group["rules"]:
                if "alert" in rule:
                    assert slow == (rule["alert"] == BUDGET_EXHAUSTED_ALERT), rule
                    continue
                reads_period = re.search(r"_over_time\([^\[]*\[(30d|28d|4w|7d|1w)\]",
                                         rule["expr"]) is not None
                assert slow == (rule["record"] in period_records), rule
                assert not reads_period or slow, rule
                seen.add((slow, rule["record"]))
    assert {(True, promql.PERIOD_ERROR), (False, promql.INFO), (False, promql.OBJECTIVE),
            (False, promql.ERROR_BUDGET)} <= seen


@on_both
def test_the_global_period_ratio_runs_in_its_own_group(tmp_path, promtool):
    """--global splits the same way: the sums, windows and alerts at the evaluation
    interval, the period ratio (read by nothing in the set) in `-global-period`."""
    out = generate(tmp_path, "--global")
    files = sorted((out / "global").glob("*.yaml"))
    groups = [g for path in files for g in yaml.safe_load(path.read_text())["groups"]]
    intervals = {name.replace("-period", "-global-period"): interval
                 for name, interval in example_intervals().items()}
    slow = [g for g in groups if g["name"].endswith("-global-period")]
    assert slow and len(slow) * 2 == len(groups)
    for group in groups:
        records = [r.get("record") for r in group["rules"]]
        reads_period = any(re.search(r"_over_time\([^\[]*\[(30d|28d|7d)\]", r["expr"])
                           for r in group["rules"])
        if group in slow:
            assert records == [promql.GLOBAL_PERIOD_ERROR], group
            assert group.get("interval") == intervals[group["name"]], group["name"]
        else:
            assert "interval" not in group and not reads_period, group["name"]
            assert promql.GLOBAL_PERIOD_ERROR not in records
    assert None in {g.get("interval") for g in slow} and "2m30s" in {g.get("interval")
                                                                      for g in slow}
    res = subprocess.run([promtool, "check", "rules", *map(str, files)], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def test_prometheus_evaluates_the_period_group_at_its_interval(tmp_path):
    """A real Prometheus loads each -period group with the slower interval, the rest with
    its own evaluation interval."""
    from tests.status_history import PromProcess

    out = generate(tmp_path)
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"evaluation_interval": "20s"},
        "rule_files": [str(p) for p in sorted((out / "rules").glob("*.yaml"))]}))
    prom = PromProcess(require_tool("prometheus"), tmp_path)
    prom.start(config)
    try:
        with urllib.request.urlopen(prom.url + "/api/v1/rules", timeout=30) as resp:
            groups = json.load(resp)["data"]["groups"]
    finally:
        prom.stop()
    intervals = {g["name"]: g["interval"] for g in groups}
    assert len(intervals) == len(_generated_groups(out)) > 0
    expected = example_intervals()
    for name, interval in intervals.items():
        own = expected.get(name)
        assert interval == (parse_duration(own) if own else 20), name


def _rules_for_test(slos: dict[str, SLO], with_period: bool) -> dict[str, Any]:
    """The SLOs' groups with only the first page tier's alert, annotated only with the
    budget left (promtool compares every annotation); without the period group, as
    Prometheus has them before that group first runs."""
    groups = []
    for slo in slos.values():
        for group in slo_groups(slo):
            if group["name"].endswith("-period") and not with_period:
                continue
            rules = []
            for rule in group["rules"]:
                if rule.get("alert") == slo.alerting.name:
                    if rule["labels"]["long_window"] != "1h":
                        continue
                    rule = dict(rule, annotations={
                        "budget_remaining": rule["annotations"]["budget_remaining"]})
                rules.append(rule)
            groups.append(dict(group, rules=rules))
    return {"groups": groups}


def _page(slo: SLO) -> dict[str, Any]:
    [rule] = [r for r in slo_groups(slo)[0]["rules"]
              if r.get("alert") == slo.alerting.name and r["labels"]["long_window"] == "1h"]
    return rule


@on_both
@pytest.mark.parametrize("with_period", [True, False], ids=["recorded", "before-period"])
def test_a_page_names_its_groups_budget_before_and_after_the_period_group_runs(
        tmp_path, promtool, with_period):
    """The budget annotation of a page reads the recorded series, or computes the same
    figure from the 5m series while the period group has not run: the same exact
    percentage, per group (a query that ignored the group would give one group's budget
    to both). The metadata of a grouped SLO has one series per group either way."""
    slos = load(tmp_path)
    series, alerts = [], {}
    for name, group, ratio, budget in CASES:
        slo = slos[name]
        series += testgen.input_series(slo, [testgen.Segment(MINUTES, ratio)], 60,
                                       group or None)
        page = _page(slo)
        alerts.setdefault(page["alert"], []).append(
            {"exp_labels": {**page["labels"], **group},
             "exp_annotations": {"budget_remaining": budget}})
    grouped = slos["errors"]
    checks = [testgen.expect(f'count({promql.slo_selector(metric, grouped)}'
                             f'{{cluster="{c}"}}) or vector(0)'.replace("}{", ","), AT, 1)
              for metric in (promql.OBJECTIVE, promql.ERROR_BUDGET, promql.INFO)
              for c in "ab"]
    (tmp_path / "rules.yaml").write_text(to_yaml(_rules_for_test(slos, with_period)))
    test = {"name": "budget annotations", "interval": "60s", "input_series": series,
            "alert_rule_test": [{"eval_time": f"{AT}s", "alertname": alertname,
                                 "exp_alerts": exp} for alertname, exp in alerts.items()],
            "promql_expr_test": checks}
    (tmp_path / "test.yaml").write_text(
        to_yaml(testgen.promtool_test_file("rules.yaml", [test])))
    res = subprocess.run([promtool, "test", "rules", "test.yaml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]


def test_the_example_rules_name_the_period_interval():
    """The committed example rules are what `generate` writes: each SLO's period group
    carries its interval."""
    intervals = example_intervals()
    for path in sorted((ROOT / "alerts" / "rules").glob("*.yaml")):
        groups = yaml.safe_load(path.read_text())["groups"]
        period = [g for g in groups if g["name"].endswith("-period")]
        assert period and all(g.get("interval") == intervals[g["name"]] for g in period), path
