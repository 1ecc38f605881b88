"""An SLI that cannot measure an outage must not read healthy (issue 9).

Each case feeds real rules to real promtool (2.x and 3.x): a total outage whose good
series is missing, misspelled or unmatched must page, and SLOSignalMissing must say why.
The healthy twin of each case proves the check is not vacuous.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sloexporter.output import render_rules, to_yaml
from sloexporter.specs import load_paths
from tests.conftest import on_both, run_cli

#: run on promtool 2.x and 3.x
SEL = '{service="api",slo="s"}'
PAGE = 'clamp_max(count(ALERTS{service="api",slo="s",severity="page",alertstate="firing"}), 1)' \
       ' or vector(0)'
MISSING = 'clamp_max(count(ALERTS{alertname="SLOSignalMissing",service="api",slo="s",' \
          'alertstate="firing"}), 1) or vector(0)'


def native(sli: dict[str, Any], **slo: Any) -> dict[str, Any]:
    return {"apiVersion": "sloexporter.dev/v1", "kind": "ServiceLevels", "service": "api",
            "slos": [{"name": "s", "objective": 99, "period": "28d", "sli": sli, **slo}]}


def rules_of(tmp: Path, *docs: dict[str, Any] | list[dict[str, Any]]) -> Path:
    paths = []
    for i, doc in enumerate(docs):
        path = tmp / f"spec{i}.yaml"
        path.write_text(yaml.safe_dump_all(doc) if isinstance(doc, list) else
                        yaml.safe_dump(doc))
        paths.append(str(path))
    services, errors = load_paths(paths)
    assert not errors, errors
    (service,) = services
    out = tmp / "rules.yaml"
    out.write_text(render_rules(service))
    return out


def check(promtool: str, rules: Path, series: dict[str, str],
          expect: list[tuple[str, str, float]], interval: str = "1m") -> None:
    test = {"rule_files": [rules.name], "evaluation_interval": "1m", "tests": [{
        "interval": interval,
        "input_series": [{"series": s, "values": v} for s, v in series.items()],
        "promql_expr_test": [{"expr": e, "eval_time": at,
                              "exp_samples": [{"labels": "{}", "value": value}]}
                             for e, at, value in expect]}]}
    (rules.parent / "test.yaml").write_text(to_yaml(test))
    res = subprocess.run([promtool, "test", "rules", "test.yaml"], cwd=rules.parent,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


def ratio(window: str) -> str:
    return f"sum(slo:sli_error:ratio_rate{window}{SEL})"


# ---- finding 1: the threshold's bucket is spelled differently, or does not exist -----

LATENCY = {"latency": {"metric": "rpc_seconds", "selector": '{job="api"}', "threshold": 0.5}}
SPELLINGS = ["0.5", "0.50", "5e-01", "5.0e-01", ".5", "5.000000e-01"]


@on_both
@pytest.mark.parametrize("le", SPELLINGS)
def test_latency_bucket_spelled_any_way_measures_slow_and_fast(tmp_path, promtool, le):
    """All slow from 30m: the bucket stops growing, whatever its spelling."""
    rules = rules_of(tmp_path, native(LATENCY))
    series = {f'rpc_seconds_bucket{{job="api",le="{le}"}}': "0+600x30 18000x90",
              'rpc_seconds_count{job="api"}': "0+600x120"}
    check(promtool, rules, series, [
        (ratio("5m"), "25m", 0), (ratio("5m"), "1h", 1), (ratio("1h"), "2h", 1),
        (PAGE, "1h", 1), (MISSING, "2h", 0)])


@pytest.mark.parametrize("threshold,le", [(1, "1.0"), (1, "1e+00"), (2.5, "2.50"),
                                          (10, "1e+01")])
@on_both
def test_latency_integer_and_exponent_thresholds(tmp_path, promtool, threshold, le):
    rules = rules_of(tmp_path, native({"latency": {**LATENCY["latency"],
                                                   "threshold": threshold}}))
    series = {f'rpc_seconds_bucket{{job="api",le="{le}"}}': "0+540x120",
              'rpc_seconds_count{job="api"}': "0+600x120"}
    check(promtool, rules, series, [(f"round({ratio('1h')}, 0.001)", "2h", 0.1)])


@on_both
def test_threshold_between_buckets_reads_as_failing_and_says_so(tmp_path, promtool):
    """0.3 lies between 0.25 and 0.5 and the spec gives no buckets: no good series."""
    rules = rules_of(tmp_path, native({"latency": {**LATENCY["latency"], "threshold": 0.3}}))
    series = {'rpc_seconds_bucket{job="api",le="0.25"}': "0+590x120",
              'rpc_seconds_bucket{job="api",le="0.5"}': "0+600x120",
              'rpc_seconds_count{job="api"}': "0+600x120"}
    check(promtool, rules, series, [
        (ratio("1h"), "2h", 1), (PAGE, "30m", 1), (MISSING, "10m", 0), (MISSING, "30m", 1),
        (f"sum(slo:sli_signal:missing{SEL})", "5m", 1)])


def test_threshold_outside_declared_buckets_is_refused_naming_the_nearest(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(native({"latency": {**LATENCY["latency"],
                                                       "threshold": 0.3,
                                                       "buckets": [0.1, 0.25, 0.5, 1]}})))
    res = run_cli("validate", str(spec))
    assert res.returncode == 1
    assert "threshold 0.3 is not a bucket boundary" in res.stdout + res.stderr
    assert "nearest bucket 0.25 or 0.5" in res.stdout + res.stderr


# ---- finding 2: the good series disappears in a crash loop ----------------------------

GOOD_TOTAL = {"events": {
    "good": 'sum(rate(http_requests_total{job="api",code="200"}[{{window}}]))',
    "total": 'sum(rate(http_requests_total{job="api"}[{{window}}]))'}}


@on_both
def test_good_series_gone_in_a_crash_loop_keeps_paging(tmp_path, promtool):
    """From 1h the app restarts into answering only 5xx: code="200" is gone for good."""
    rules = rules_of(tmp_path, native(GOOD_TOTAL))
    series = {'http_requests_total{job="api",code="200"}': "0+600x60",
              'http_requests_total{job="api",code="500"}': "_x60 0+600x120"}
    check(promtool, rules, series, [
        (PAGE, "55m", 0), (PAGE, "1h20m", 1), (PAGE, "1h50m", 1), (PAGE, "3h", 1),
        (ratio("5m"), "3h", 1), (ratio("1h"), "3h", 1), (MISSING, "3h", 1)])


@on_both
def test_good_side_present_but_zero_is_measured(tmp_path, promtool):
    """The healthy twin: a good series that exists but stops growing is no signal loss."""
    rules = rules_of(tmp_path, native(GOOD_TOTAL))
    series = {'http_requests_total{job="api",code="200"}': "0+600x60 36000x60",
              'http_requests_total{job="api",code="500"}': "0x60 0+600x60"}
    check(promtool, rules, series, [(PAGE, "1h30m", 1), (MISSING, "2h", 0),
                                    (ratio("5m"), "50m", 0)])


# ---- finding 3: OpenSLO raw counter selectors ------------------------------------------

def openslo(good: str, total: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "openslo/v1", "kind": "SLO", "metadata": {"name": "s"},
         "spec": {"service": "api", "indicatorRef": "reqs", "budgetingMethod": "Occurrences",
                  "timeWindow": [{"duration": "28d", "isRolling": True}],
                  "objectives": [{"target": 0.99}]}},
        {"apiVersion": "openslo/v1", "kind": "SLI", "metadata": {"name": "reqs"},
         "spec": {"ratioMetric": {"counter": True,
                                  "good": {"metricSource": {"type": "Prometheus",
                                                            "spec": {"query": good}}},
                                  "total": {"metricSource": {"type": "Prometheus",
                                                             "spec": {"query": total}}}}}},
    ]


@on_both
def test_openslo_raw_counter_selectors_are_aggregated(tmp_path, promtool):
    rules = rules_of(tmp_path, openslo('http_requests_total{job="x",code="200"}',
                                       'http_requests_total{job="x"}'))
    series = {'http_requests_total{job="x",code="200",instance="a"}': "0+300x30 9000x90",
              'http_requests_total{job="x",code="200",instance="b"}': "0+300x30 9000x90",
              'http_requests_total{job="x",code="500",instance="a"}': "0x30 0+600x90"}
    check(promtool, rules, series, [(ratio("5m"), "25m", 0), (ratio("1h"), "2h", 1),
                                    (PAGE, "1h", 1), (MISSING, "2h", 0)])


# ---- errors that cannot be attributed to the total's groups ----------------------------

@on_both
def test_errors_without_the_totals_grouping_raise_signal_missing(tmp_path, promtool):
    rules = rules_of(tmp_path, native({"events": {
        "errors": 'sum(rate(http_requests_total{job="api",code=~"5.."}[{{window}}]))',
        "total": 'sum by (route) (rate(http_requests_total{job="api"}[{{window}}]))'}}))
    series = {'http_requests_total{job="api",code="200",route="/a"}': "0+600x60",
              'http_requests_total{job="api",code="500",route="/a"}': "0+60x60"}
    check(promtool, rules, series, [(MISSING, "10m", 0), (MISSING, "50m", 1)])


@on_both
def test_grouped_events_page_per_group(tmp_path, promtool):
    """Pyrra-style grouping: errors and totals by route; only /b fails."""
    rules = rules_of(tmp_path, native({"events": {
        "errors": 'sum by (route) (rate(http_requests_total{job="api",code=~"5.."}'
                  '[{{window}}]))',
        "total": 'sum by (route) (rate(http_requests_total{job="api"}[{{window}}]))'}}))
    series = {'http_requests_total{job="api",code="200",route="/a"}': "0+600x90",
              'http_requests_total{job="api",code="200",route="/b"}': "0+600x90",
              'http_requests_total{job="api",code="500",route="/b"}': "0+600x90"}
    page_b = 'clamp_max(count(ALERTS{alertstate="firing",severity="page",route="/b"}), 1) ' \
             'or vector(0)'
    page_a = 'count(ALERTS{alertstate="firing",severity="page",route="/a"}) or vector(0)'
    check(promtool, rules, series, [(page_b, "1h", 1), (page_a, "1h", 0),
                                    (MISSING, "1h", 0),
                                    ('sum(slo:sli_error:ratio_rate1h{route="/b"})', "1h",
                                     0.5)])


# ---- native histograms (promtool 3: its test files have a native histogram notation) ---

def _native(fast: int, slow: int, steps: int, start: tuple[int, int] = (0, 0)) -> str:
    """A schema-0 histogram: `fast` requests/min in (0.25, 0.5], `slow` in (1, 2]."""
    def h(f: int, s: int) -> str:
        return f"{{{{schema:0 sum:{f * 0.4 + s * 1.5:g} count:{f + s} " \
               f"buckets:[{f} 0 {s}] offset:-1}}}}"
    return f"{h(*start)}+{h(fast, slow)}x{steps}"


@pytest.mark.parametrize("promtool", ["promtool3"], indirect=True)
def test_native_histogram_latency(tmp_path, promtool):
    """Fast for 30m, then every request slow: histogram_fraction sees both."""
    rules = rules_of(tmp_path, native({"latency": {"metric": "rpc_seconds", "native": True,
                                                   "selector": '{job="api"}',
                                                   "threshold": 0.5}}))
    values = f"{_native(60, 0, 30)} {_native(0, 60, 60, (1860, 0))}"
    check(promtool, rules, {'rpc_seconds{job="api"}': values}, [
        (ratio("5m"), "25m", 0), (ratio("5m"), "1h", 1), (PAGE, "25m", 0), (PAGE, "1h", 1),
        (MISSING, "1h", 0)])
