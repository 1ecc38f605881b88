"""What each foreign format carries over, and errors that point at the original file."""

from __future__ import annotations

import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

from sloexporter import rules
from sloexporter.model import Service
from sloexporter.output import write_all
from sloexporter.promql import le_matcher
from sloexporter.specs import load_paths
from sloexporter.specs.openslo_queries import rate_selectors
from tests.compat.peers import our_groups, peer, promtool_test


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def load_ok(*paths: Path) -> list[Service]:
    services, errors = load_paths([str(p) for p in paths])
    assert not errors, [str(e) for e in errors]
    return services


def errors_of(*paths: Path) -> list[str]:
    _, errors = load_paths([str(p) for p in paths])
    assert errors
    return [str(e) for e in errors]


def alerts(service: Service) -> list[dict[str, Any]]:
    """The burn-rate alerts (not the SLI-health alert every SLO also gets)."""
    return [r for g in rules.service_groups(service) for r in g["rules"]
            if "alert" in r and r["alert"] != rules.SIGNAL_MISSING_ALERT]


# ---- Sloth -------------------------------------------------------------------------------

SLOTH = """\
version: prometheus/v1
service: shop
labels: {owner: web}
slos:
  - name: requests
    objective: 99.5
    sli:
      events:
        error_query: sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total[{{.window}}]))
    alerting:
      name: ShopErrors
      labels: {category: availability}
      annotations: {summary: shop is failing}
      page_alert: {labels: {severity: critical, routing_key: web}}
      ticket_alert: {disable: true}
"""


def test_sloth_window_template_names_labels_and_page_ticket_carry_over(tmp_path: Path) -> None:
    (service,) = load_ok(write(tmp_path, "s.yml", SLOTH))
    found = alerts(service)
    assert {a["alert"] for a in found} == {"ShopErrors"}
    assert {a["labels"]["severity"] for a in found} == {"critical"}  # ticket disabled
    assert all(a["labels"]["routing_key"] == "web" and a["labels"]["category"] == "availability"
               and a["labels"]["owner"] == "web" and a["annotations"]["summary"] ==
               "shop is failing" for a in found)
    sli = [r for g in rules.service_groups(service) for r in g["rules"]
           if r.get("record") == "slo:sli_error:ratio_rate1h"]
    assert "[1h]" in sli[0]["expr"] and "{{" not in sli[0]["expr"]


def test_sloth_without_alerting_gets_the_default_page_and_ticket(tmp_path: Path) -> None:
    bare = SLOTH[:SLOTH.index("    alerting:")]
    (service,) = load_ok(write(tmp_path, "s.yml", bare))
    assert {(a["alert"], a["labels"]["severity"], a["labels"]["service"], a["labels"]["slo"])
            for a in alerts(service)} == {("ErrorBudgetBurn", "page", "shop", "requests"),
                                           ("ErrorBudgetBurn", "ticket", "shop", "requests")}


def test_sloth_alert_windows_set_the_period_and_tiers(tmp_path: Path) -> None:
    (service,) = load_ok(write(tmp_path, "s.yml", SLOTH), peer("sloth", "examples", "windows",
                                                              "7d.yaml"))
    (slo,) = service.slos
    assert slo.period_str == "7d"
    # 8% of a 7d budget in 1h, as Sloth computes it: 8 x 168h / 100 / 1h
    assert slo.tiers[0].factor == Decimal("13.44")


def test_sloth_errors_point_at_the_sloth_file(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yml", SLOTH.replace("error_query", "error_querry"))
    assert errors_of(path) == [
        f"{path}:9: slos[0].sli.events.error_querry: unknown field 'error_querry'; "
        "did you mean 'error_query'?"]
    # checks of the native model are reported at the Sloth file's own paths and lines
    objective = write(tmp_path, "o.yml", SLOTH.replace("99.5", "101"))
    assert errors_of(objective) == [
        f"{objective}:6: slos[0].objective: objective 101 must be a percentage greater than 0 "
        "and less than 100, e.g. 99.9"]
    window = write(tmp_path, "w.yml", SLOTH.replace(
        '[{{.window}}]))\n        total', '[5m]))\n        total'))
    assert errors_of(window) == [
        f"{window}:9: slos[0].sli.events.error_query: query has no {{{{window}}}} "
        "placeholder, so every alert window would see the same range"]


def test_sloth_sli_plugin_is_an_error_not_a_skip(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yml", SLOTH.replace(
        "      events:\n        error_query: sum(rate(http_requests_total{code=~\"5..\"}"
        "[{{.window}}]))\n        total_query: sum(rate(http_requests_total[{{.window}}]))\n",
        "      plugin: {id: sloth-common/availability, options: {}}\n"))
    assert errors_of(path) == [f"{path}:8: slos[0].sli.plugin.id: unsupported: SLI plugin "
                               "sloth-common/availability"]


# ---- Pyrra -------------------------------------------------------------------------------

PYRRA = """\
apiVersion: pyrra.dev/v1alpha1
kind: ServiceLevelObjective
metadata:
  name: api-latency
  labels: {pyrra.dev/team: web, prometheus: k8s}
spec:
  target: "99"
  window: 2w
  indicator:
    latency:
      success:
        metric: http_request_duration_seconds_bucket{job="api",le="1"}
      total:
        metric: http_request_duration_seconds_count{job="api"}
"""


def test_pyrra_latency_becomes_a_histogram_sli_that_works_on_prometheus_3(tmp_path: Path) -> None:
    (service,) = load_ok(write(tmp_path, "p.yaml", PYRRA))
    (slo,) = service.slos
    assert slo.sli.kind == "latency" and slo.period_str == "14d"
    # every spelling of 1: `1` (Prometheus 2), `1.0` (Prometheus 3), `1e+00`, ...
    assert le_matcher(Decimal(1)) in (slo.sli.errors or "")
    assert dict(slo.labels) == {"team": "web"}  # only pyrra.dev/ labels reach the series


def test_pyrra_grouping_keeps_one_ratio_per_group(tmp_path: Path) -> None:
    spec = PYRRA.replace("""    latency:
      success:
        metric: http_request_duration_seconds_bucket{job="api",le="1"}
      total:
        metric: http_request_duration_seconds_count{job="api"}""", """    ratio:
      errors:
        metric: http_requests_total{job="api",code=~"5.."}
      total:
        metric: http_requests_total{job="api"}
      grouping: [handler]""")
    (service,) = load_ok(write(tmp_path, "p.yaml", spec))
    assert (service.slos[0].sli.total or "").startswith("sum by (handler) (rate(")


def test_pyrra_grouped_latency_also_matches_prometheus_3_buckets(tmp_path: Path) -> None:
    spec = PYRRA + "      grouping: [handler]\n"
    (service,) = load_ok(write(tmp_path, "p.yaml", spec))
    sli = service.slos[0].sli
    assert sli.kind == "events" and (sli.total or "").startswith("sum by (handler) (rate(")
    assert f'http_request_duration_seconds_bucket{{job="api",{le_matcher(Decimal(1))}}}' in \
        (sli.good or "")


def test_pyrra_without_alerting_gets_the_default_page_and_ticket(tmp_path: Path) -> None:
    (service,) = load_ok(write(tmp_path, "p.yaml", PYRRA))
    assert {(a["labels"]["severity"], a["labels"]["service"], a["labels"]["slo"])
            for a in alerts(service)} == {("page", "api-latency", "api-latency"),
                                           ("ticket", "api-latency", "api-latency")}


def test_pyrra_errors_point_at_the_pyrra_file(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", PYRRA.replace('"99"', '"abc"').replace("2w", "2x"))
    assert errors_of(path) == [
        f"{path}:7: spec.target: target must be a ratio like 0.999, not 'abc'",
        f"{path}:8: spec.window: invalid duration '2x': use units w, d, h, m, s as in 30d or 1h30m"]


# ---- OpenSLO -----------------------------------------------------------------------------

OPENSLO_SLO = """\
apiVersion: openslo/v1
kind: SLO
metadata: {name: checkout}
spec:
  service: shop
  indicatorRef: checkout-requests
  timeWindow: [{duration: 1M, isRolling: false,
                calendar: {startTime: "2024-01-01 00:00:00", timeZone: UTC}}]
  budgetingMethod: Occurrences
  objectives: [{target: 0.999}]
  alertPolicies: [{alertPolicyRef: fast-burn}]
"""
OPENSLO_REFS = """\
- apiVersion: openslo/v1
  kind: SLI
  metadata: {name: checkout-requests}
  spec:
    ratioMetric:
      counter: true
      good:
        metricSource:
          type: Prometheus
          spec: {query: 'sum(http_requests_total{code!~"5.."})'}
      total:
        metricSource: {type: Prometheus, spec: {query: sum(http_requests_total)}}
- apiVersion: openslo/v1
  kind: AlertPolicy
  metadata: {name: fast-burn}
  spec:
    conditions: [{conditionRef: burn-14x}]
    notificationTargets: [{targetRef: oncall}]
- apiVersion: openslo/v1
  kind: AlertCondition
  metadata: {name: burn-14x}
  spec:
    severity: critical
    condition: {kind: burnrate, op: gt, threshold: 14.4, lookbackWindow: 1h, alertAfter: 2m}
- apiVersion: openslo/v1
  kind: AlertNotificationTarget
  metadata: {name: oncall}
  spec: {target: pagerduty}
"""


def test_openslo_references_across_files_and_burn_rate_conditions(tmp_path: Path) -> None:
    (service,) = load_ok(write(tmp_path, "slo.yaml", OPENSLO_SLO),
                         write(tmp_path, "refs.yaml", OPENSLO_REFS))
    (slo,) = service.slos
    assert slo.period_str == "30d"  # a calendar month is read as a rolling 30d
    (tier,) = slo.tiers
    assert (tier.severity, tier.long, tier.short, tier.factor) == ("page", "1h", "5m",
                                                                   Decimal("14.4"))
    (alert,) = alerts(service)
    assert alert["labels"]["severity"] == "critical" and alert["for"] == "2m"
    assert alert["annotations"]["notification_targets"] == "oncall (pagerduty)"
    # a counter query without a window placeholder gets rate() around each selector
    assert "sum(rate(http_requests_total{code!~\"5..\"}[1h]))" in alert["expr"] or \
        "rate(http_requests_total" in (slo.sli.total or "")


def test_openslo_slos_of_one_service_in_two_files_make_one_service(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", OPENSLO_SLO)
    second = write(tmp_path, "b.yaml", OPENSLO_SLO.replace("name: checkout}",
                                                           "name: checkout-2}"))
    (service,) = load_ok(first, second, write(tmp_path, "refs.yaml", OPENSLO_REFS))
    assert [s.name for s in service.slos] == ["checkout", "checkout-2"]


def test_openslo_slo_names_are_unique_within_a_service(tmp_path: Path) -> None:
    refs = write(tmp_path, "refs.yaml", OPENSLO_REFS)
    first, second = write(tmp_path, "a.yaml", OPENSLO_SLO), write(tmp_path, "b.yaml",
                                                                  OPENSLO_SLO)
    assert errors_of(first, second, refs) == [
        f"{second}:10: SLO 'checkout' of service 'shop' is also defined at "
        f"{first}:10"]


def test_openslo_threshold_on_a_histogram_is_a_latency_sli(tmp_path: Path) -> None:
    spec = OPENSLO_SLO.replace("  indicatorRef: checkout-requests\n", """\
  indicator:
    metadata: {name: fast}
    spec:
      thresholdMetric:
        metricSource: {type: Prometheus, spec: {query: 'rpc_seconds_bucket{job="a"}'}}
""").replace("[{target: 0.999}]", "[{op: lte, value: 0.25, target: 0.99}]") \
        .replace("  alertPolicies: [{alertPolicyRef: fast-burn}]\n", "")
    (service,) = load_ok(write(tmp_path, "slo.yaml", spec))
    assert service.slos[0].sli.kind == "latency"
    assert f'rpc_seconds_bucket{{job="a",{le_matcher(Decimal("0.25"))}}}' in \
        (service.slos[0].sli.errors or "")


def test_openslo_timeslices_count_bad_slices(tmp_path: Path) -> None:
    spec = OPENSLO_SLO.replace("Occurrences", "Timeslices").replace(
        "[{target: 0.999}]", "[{target: 0.99, timeSliceTarget: 0.95, timeSliceWindow: 5m}]")
    (service,) = load_ok(write(tmp_path, "slo.yaml", spec),
                         write(tmp_path, "refs.yaml", OPENSLO_REFS))
    errors = service.slos[0].sli.errors or ""
    assert "> bool 0.05)[{{window}}:5m]" in errors and "[5m]" in errors


def test_openslo_errors_point_at_the_openslo_file(tmp_path: Path) -> None:
    path = write(tmp_path, "slo.yaml", OPENSLO_SLO.replace("0.999", "1.5"))
    found = errors_of(path, write(tmp_path, "refs.yaml", OPENSLO_REFS))
    assert found == [f"{path}:10: spec.objectives[0].target: target must be less than 1, not 1.5"]
    missing = write(tmp_path, "slo.yaml", OPENSLO_SLO)
    assert errors_of(missing) == [
        f"{missing}:11: spec.alertPolicies[0].alertPolicyRef: AlertPolicy 'fast-burn' does "
        "not exist in any file of this run"]


def test_openslo_slos_can_use_the_upstream_sli_objects(tmp_path: Path, promtool: str) -> None:
    """The OpenSLO SDK's example SLIs, referenced from another file, make valid rules."""
    slis = peer("openslo", "go-sdk", "pkg", "openslo", "v1", "examples", "slis.yaml")
    slos = "---\n".join(OPENSLO_SLO.replace("name: checkout}", f"name: {sli}}}")
                        .replace("checkout-requests", sli).replace(extra, "")
                        for sli, extra in (
                            ("wifi-client-satisfaction", "  alertPolicies: [{alertPolicyRef: "
                                                         "fast-burn}]\n"),
                            ("annotator-throughput", "")))
    slos = slos.replace("[{target: 0.999}]\n  alertPolicies: [{alertPolicyRef: fast-burn}]",
                        "[{op: lt, value: 100, target: 0.99}]")
    services = load_ok(write(tmp_path, "slos.yaml", slos), slis)
    (service,) = services
    # annotator-throughput is a thresholdMetric: the threshold kind (absent data is bad)
    assert [s.sli.kind for s in service.slos] == ["ratio", "threshold"]
    written = [p for p in write_all(services, tmp_path / "out") if "/rules/" in str(p)]
    proc = subprocess.run([promtool, "check", "rules", *map(str, written)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_openslo_counter_queries_get_a_rate_around_each_selector() -> None:
    assert rate_selectors('sum(x{a="b"}) / sum(y offset 5m)') == \
        'sum(rate(x{a="b"}[{{window}}])) / sum(rate(y[{{window}}] offset 5m))'
    # label values and existing ranges are left alone
    assert rate_selectors('label_replace(x, "d", "$1", "s", "x")') == \
        'label_replace(rate(x[{{window}}]), "d", "$1", "s", "x")'
    assert rate_selectors("sum(rate(x[5m]))") == "sum(rate(x[5m]))"


def test_openslo_timeslices_error_ratio_is_the_share_of_bad_slices(tmp_path: Path,
                                                                    promtool: str) -> None:
    """One bad minute in ten (every request fails) spends a tenth of the slices."""
    spec = OPENSLO_SLO.replace("Occurrences", "Timeslices").replace(
        "[{target: 0.999}]", "[{target: 0.99, timeSliceTarget: 0.95, timeSliceWindow: 1m}]")
    services = load_ok(write(tmp_path, "slo.yaml", spec), write(tmp_path, "refs.yaml",
                                                                OPENSLO_REFS))
    steps = 2 * 70  # 70 minutes of 30s samples
    good = [0] * (steps + 1)
    for i in range(1, steps + 1):  # minute m is bad when m % 10 == 9
        good[i] = good[i - 1] + (0 if (i - 1) // 2 % 10 == 9 else 30)
    series = [{"series": 'http_requests_total{code="200"}',
               "values": " ".join(map(str, good))},
              {"series": 'http_requests_total{code="500"}',
               "values": " ".join(str(i * 30 - g) for i, g in enumerate(good))}]
    ratio = 'slo:sli_error:ratio_rate1h{service="shop",slo="checkout"}'
    test = {"name": "timeslices", "interval": "30s", "input_series": series,
            "promql_expr_test": [{"expr": f"count({ratio} > 0.08 < 0.12)", "eval_time": "70m",
                                  "exp_samples": [{"labels": "{}", "value": 1}]}]}
    failure = promtool_test(promtool, tmp_path / "run", {"rules.yaml": our_groups(services)},
                            [test], interval="30s")
    assert failure is None, failure
