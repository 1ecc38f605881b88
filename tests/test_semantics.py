"""What the recorded series mean, checked by evaluating the real rules in promtool."""

from __future__ import annotations

import pytest

from tests.conftest import PROMTOOLS
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


def _spec(**slo):
    from sloexporter.specs.build import build_service
    from sloexporter.specs.errors import Document
    from sloexporter.specs.native import ServiceLevels
    data = {"apiVersion": "sloexporter.dev/v1", "kind": "ServiceLevels", "service": "api",
            "slos": [{"name": "availability", "objective": "99", "period": "28d", "sli": {
                "events": {
                    "errors": 'sum(rate(http_requests_total{job="api",code=~"5.."}'
                              '[{{window}}]))',
                    "total": 'sum(rate(http_requests_total{job="api"}[{{window}}]))'}},
                **slo}]}
    return build_service(Document("inline.yaml", data), ServiceLevels.model_validate(data))


PAGES = ('clamp_max(count(ALERTS{service="api",slo="availability",severity="page",'
         'alertstate="firing"}), 1) or vector(0)')


def _outage(per_minute: int) -> list[dict]:
    """Healthy for an hour, then every request fails for an hour, at `per_minute`."""
    return [{"series": 'http_requests_total{job="api",code="200"}',
             "values": f"0+{per_minute}x60 {per_minute * 60}x60"},
            {"series": 'http_requests_total{job="api",code="500"}',
             "values": f"0x60 {per_minute}+{per_minute}x59"}]


@pytest.mark.parametrize("promtool", PROMTOOLS, indirect=True)
def test_min_events_holds_pages_below_the_minimum_and_not_above(tmp_path, promtool):
    """min_events 1000: an outage at 6 req/min (360/h) pages no tier; at 60 req/min
    (3600/h) the 1h tier pages as without the guard."""
    guarded = _spec(min_events=1000)
    run_promtool(promtool, tmp_path, guarded, _doc(_test(_outage(6), [
        (PAGES, "1h30m", 0), (PAGES, "2h", 0),
        (f"slo:sli_error:ratio_rate5m{SEL}", "1h30m", 1)])))
    run_promtool(promtool, tmp_path, guarded, _doc(_test(_outage(60), [
        (PAGES, "55m", 0), (PAGES, "1h20m", 1)])))
    # without the guard the quiet outage pages: the check above is not vacuous
    run_promtool(promtool, tmp_path, _spec(), _doc(_test(_outage(6), [(PAGES, "1h20m", 1)])))


@pytest.mark.parametrize("promtool", PROMTOOLS, indirect=True)
def test_min_events_per_tier_overrides_the_slo(tmp_path, promtool):
    """A custom tier's own minimum wins over the SLO's."""
    service = _spec(min_events=1000, alerting={"tiers": [
        {"severity": "page", "long_window": "1h", "short_window": "5m",
         "budget_consumed": 2, "min_events": 100}]})
    assert [t.min_events for t in service.slos[0].tiers] == [100]
    run_promtool(promtool, tmp_path, service, _doc(_test(_outage(6), [(PAGES, "1h30m", 1)])))


@pytest.mark.parametrize("promtool", PROMTOOLS, indirect=True)
def test_budget_exhausted_alert_and_time_to_exhaustion(tmp_path, promtool):
    """99% over 1d: 1% of a day's requests may fail. At 0.5x burn the budget lasts two
    periods, so half of it remains and lasts one more day; after a healthy day, a 100%
    outage spends it in about 15 minutes and fires SLOBudgetExhausted."""
    data = _spec(period="1d", alerting={"budget_exhausted": {}})
    assert data.slos[0].period == 86400
    exhausted = ('clamp_max(count(ALERTS{alertname="SLOBudgetExhausted",service="api",'
                 'slo="availability",alertstate="firing"}), 1) or vector(0)')
    half = [{"series": 'http_requests_total{job="api",code="200"}', "values": "0+5970x240"},
            {"series": 'http_requests_total{job="api",code="500"}', "values": "0+30x240"}]
    run_promtool(promtool, tmp_path, data, _doc(_test(half, [
        (f"round(slo:error_budget_exhaustion:seconds{SEL} / 600)", "4h", 144),
        (f"round(slo:error_budget_remaining:ratio{SEL}, 0.01)", "4h", 0.5),
        (exhausted, "4h", 0)])))
    outage = [{"series": 'http_requests_total{job="api",code="200"}',
               "values": "0+6000x1440 8640000x60"},
              {"series": 'http_requests_total{job="api",code="500"}',
               "values": "0x1440 6000+6000x59"}]
    run_promtool(promtool, tmp_path, data, _doc(_test(outage, [
        (exhausted, "24h", 0), (exhausted, "24h10m", 0), (exhausted, "24h40m", 1),
        (f"slo:error_budget_exhaustion:seconds{SEL}", "24h40m", 0)])))


def test_no_opt_ins_no_extra_series():
    """min_events and budget_exhausted are opt-in: by default nothing changes."""
    from sloexporter.rules import service_groups
    rules = [r for g in service_groups(_spec()) for r in g["rules"]]
    assert not any(r.get("alert") == "SLOBudgetExhausted" for r in rules)
    assert not any(r.get("record") == "slo:error_budget_exhaustion:seconds" for r in rules)
    assert not any(">=" in r.get("expr", "") for r in rules if "alert" in r)
