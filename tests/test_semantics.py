"""What the recorded series mean, checked by evaluating the real rules in promtool."""

from __future__ import annotations

from tests.test_detection import make_service, run_promtool


def _test(series: list[dict], checks: list[tuple[str, str, float]], interval: str = "1m"):
    return {"interval": interval, "input_series": series, "promql_expr_test": [
        {"expr": f"sum({expr})", "eval_time": at, "exp_samples": [{"labels": "{}", "value": value}]}
        for expr, at, value in checks]}


def _doc(*tests, evaluation_interval: str = "1m"):
    return {"rule_files": ["rules.yaml"], "evaluation_interval": evaluation_interval,
            "tests": list(tests)}


SEL = '{service="api",slo="availability"}'


def test_no_traffic_spends_no_budget_and_raises_no_alert(tmp_path, promtool):
    """Counters that stop moving give ratio 0 and a full budget, never NaN."""
    service = make_service("99.9", "1d")
    idle = [{"series": 'http_requests_total{job="api",code="200"}', "values": "100x300"}]
    nan_count = "count({0} != {0}) or vector(0)"
    run_promtool(promtool, tmp_path, service, _doc(_test(idle, [
        (f"slo:sli_error:ratio_rate5m{SEL}", "4h", 0),
        (f"slo:sli_error:ratio_rate12m{SEL}", "4h", 0),
        (f"slo:error_budget_remaining:ratio{SEL}", "4h", 1),
        (f"slo:period_burn:rate{SEL}", "4h", 0),
        (nan_count.format(f"slo:error_budget_remaining:ratio{SEL}"), "4h", 0),
        (nan_count.format(f"slo:sli_error:ratio_rate12m{SEL}"), "4h", 0),
        (f"count(ALERTS{SEL}) or vector(0)", "4h", 0),
    ])))


def test_period_ratio_is_weighted_by_traffic(tmp_path, promtool):
    """12h at 1000 req/s without errors, then 12h at 10 req/s with half failing.

    Errors / requests over the day is 216000 / 43632000 = 0.00495; an average of 5m
    ratios (Sloth #241) would say about 0.25.
    """
    service = make_service("99", "1d")
    ok = 'http_requests_total{job="api",code="200"}'
    bad = 'http_requests_total{job="api",code="500"}'
    series = [
        {"series": ok, "values": "0+60000x720 43200600+300x720"},
        {"series": bad, "values": "0x720 300+300x720"},
    ]
    ratio = f"slo:period_error:ratio{SEL}"
    run_promtool(promtool, tmp_path, service, _doc(_test(series, [
        (f"count({ratio} > 0.0047 < 0.0052)", "24h", 1),
        (f"count(slo:error_budget_remaining:ratio{SEL} > 0.48 < 0.53)", "24h", 1),
        (f"count(slo:period_burn:rate{SEL} > 0.47 < 0.52)", "24h", 1),
    ])))


def test_metadata_series(tmp_path, promtool):
    service = make_service("99.9", "28d")
    series = [{"series": 'http_requests_total{job="api",code="200"}', "values": "0+60x10"}]
    run_promtool(promtool, tmp_path, service, _doc(_test(series, [
        (f"slo:objective:ratio{SEL}", "5m", 0.999),
        (f"slo:error_budget:ratio{SEL}", "5m", 0.001),
        ('count(slo:info{service="api",slo="availability",objective="99.9",period="28d",'
         'sli_kind="events"})', "5m", 1),
    ])))


def test_missing_error_series_counts_as_zero_errors(tmp_path, promtool):
    """No 5xx series has ever existed: the SLO still reports, with ratio 0."""
    service = make_service("99.9", "7d")
    series = [{"series": 'http_requests_total{job="api",code="200"}', "values": "0+60x120"}]
    run_promtool(promtool, tmp_path, service, _doc(_test(series, [
        (f"slo:sli_errors:rate5m{SEL}", "1h", 0),
        (f"slo:sli_total:rate5m{SEL}", "1h", 1),
        (f"slo:period_error:ratio{SEL}", "1h", 0),
    ])))
