"""Grouped SLOs (`group_by`, issue 13): one SLO per label combination, proven on promtool.

Each SLI kind is fed two groups through real promtool 2.x and 3.x: one group's total
outage pages that group alone, every recorded series has exactly one series per group
(no duplicates, no group-less leftovers), and a vanished good series pages its own group.
Sloth (`sum by` queries) and Pyrra (`grouping`) input become the same grouped SLOs.
"""

from __future__ import annotations

import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from sloexporter import promql, testgen
from sloexporter.dashboards import build_all, dashboard_queries, expand
from sloexporter.model import SLO, Service
from sloexporter.output import render_rules, to_yaml
from sloexporter.rules import slo_groups
from sloexporter.specs import load_paths
from tests.conftest import on_both, run_cli
from tests.tools import doc_section, require_tool

W = "{{window}}"
#: one grouped SLO of every SLI kind whose inputs promtool can feed
SPEC = f"""\
apiVersion: sloexporter.dev/v1
kind: ServiceLevels
service: shop
labels: {{team: payments}}
group_by: [cluster, route]
slos:
  - name: errors
    objective: 99.9
    sli:
      events:
        errors: sum by (cluster, route) (rate(http_requests_total{{code=~"5.."}}[{W}]))
        total: sum by (cluster, route, code) (rate(http_requests_total[{W}]))
  - name: good
    objective: 99
    sli:
      events:
        good: sum by (cluster, route) (rate(rpc_total{{result="ok"}}[{W}]))
        total: sum without (instance, result) (rate(rpc_total[{W}]))
  - name: latency
    objective: 99
    group_by: [cluster]
    sli:
      latency: {{metric: http_request_duration_seconds, selector: '{{job="web"}}',
                threshold: 0.25}}
  - name: http
    objective: 99.5
    group_by: [cluster]
    sli:
      http: {{convention: requests_total, selector: '{{job="web"}}'}}
  - name: ratio
    objective: 99
    group_by: [cluster]
    sli:
      ratio:
        query: >-
          sum by (cluster) (rate(jobs_failed_total[{W}]))
          / sum by (cluster) (rate(jobs_total[{W}]))
  - name: lag
    objective: 99
    group_by: [cluster]
    sli:
      threshold: {{query: 'max by (cluster, partition) (consumer_lag_seconds)', op: "<",
                  value: 30s}}
"""

OPENSLO = """\
apiVersion: openslo/v1
kind: SLO
metadata: {name: checkout}
spec:
  service: store
  budgetingMethod: Occurrences
  timeWindow: [{duration: 28d, isRolling: true}]
  objectives: [{target: 0.99}]
  indicator:
    metadata: {name: checkout-requests}
    spec:
      ratioMetric:
        counter: true
        good: {metricSource: {type: Prometheus,
                              spec: {query: 'sum by (cluster) (checkout_total{outcome="ok"})'}}}
        total: {metricSource: {type: Prometheus,
                               spec: {query: 'sum by (cluster) (checkout_total)'}}}
"""

SLOTH = """\
version: prometheus/v1
service: myservice
slos:
  - name: requests
    objective: 99.9
    sli:
      events:
        error_query: sum by (cluster) (rate(http_requests_total{job="my",code=~"5.."}[{{.window}}]))
        total_query: sum by (cluster) (rate(http_requests_total{job="my"}[{{.window}}]))
    alerting: {name: MyHighErrorRate, page_alert: {labels: {tier: "1"}},
               ticket_alert: {labels: {tier: "2"}}}
"""

PYRRA = """\
apiVersion: pyrra.dev/v1alpha1
kind: ServiceLevelObjective
metadata: {name: api-errors, namespace: monitoring}
spec:
  target: "99"
  window: 2w
  indicator:
    ratio:
      errors: {metric: 'http_requests_total{job="api",code=~"5.."}'}
      total: {metric: 'http_requests_total{job="api"}'}
      grouping: [handler]
"""

#: Pyrra groups by labels sloexporter sets itself too (its own connect-go example groups
#: by `service`): that one is carried as `exported_service`
PYRRA_OWN_LABEL = PYRRA.replace("api-errors", "rpc-errors").replace(
    "grouping: [handler]", "grouping: [service, method]")


def load(tmp: Path, name: str, text: str) -> list[SLO]:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    services, errors = load_paths([str(path)])
    assert not errors, errors
    return [slo for service in services for slo in service.slos]


def recorded_names(slo: SLO) -> list[str]:
    return sorted({r["record"] for g in slo_groups(slo) for r in g["rules"] if "record" in r
                   and r["record"] not in (promql.CONDITION_GOOD,)})


def one_per_group(slo: SLO, at: int, groups: list[dict[str, str]]) -> list[dict[str, Any]]:
    """For every series the SLO records: exactly one series per group, none without."""
    by = ", ".join(slo.group_by)
    samples = [{"labels": "{" + ",".join(f'{k}="{v}"' for k, v in g.items()) + "}",
                "value": 1} for g in groups]
    return [{"expr": f"count by ({by}) ({promql.slo_selector(name, slo)})",
             "eval_time": f"{at}s", "exp_samples": samples} for name in recorded_names(slo)]


def run(promtool: str, tmp: Path, slos: list[SLO], tests: list[dict[str, Any]]) -> None:
    rules = tmp / "rules.yaml"
    rules.write_text(render_rules(Service(slos[0].service, tuple(slos))))
    (tmp / "test.yaml").write_text(to_yaml(testgen.promtool_test_file("rules.yaml", tests)))
    res = subprocess.run([promtool, "test", "rules", "test.yaml"], cwd=tmp,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]


LEAD, STEPS = 10, 30  # the slowest first page here (99%, 1h at 14.4x) takes 9m
END = (LEAD + STEPS - 1) * 60


def grouped_case(slo: SLO) -> dict[str, Any]:
    """Group a breaks after 10 minutes, group b stays healthy; at the end a pages alone
    and every recorded series has one series per group."""
    broken, healthy = testgen.group_values(slo)
    lead, steps, end = LEAD, STEPS, END
    series = (testgen.input_series(slo, [testgen.Segment(lead, Decimal(0)),
                                         testgen.Segment(steps, Decimal(1))], 60, broken)
              + testgen.input_series(slo, [testgen.Segment(lead + steps, Decimal(0))], 60,
                                     healthy))
    return {"name": f"{slo.name}: group a pages alone", "interval": "60s",
            "input_series": series,
            "promql_expr_test": [
                testgen.expect(testgen.count_alerts(slo, None, "page", broken), end, 1),
                testgen.expect(testgen.count_alerts(slo, end, None, healthy), end, 0),
                *one_per_group(slo, end, [broken, healthy])]}


def dashboard_case(slos: list[SLO]) -> dict[str, Any]:
    """Every dashboard query runs on grouped data without a matching error (a
    many-to-many join fails the test), and the overview table has a row per group."""
    case = grouped_case(slos[0])
    data = build_all([Service(slos[0].service, tuple(slos))])
    values = {"service": slos[0].service, "slo": slos[0].name}
    checks = [testgen.expect(f"count({q.expr}) * 0 + 1 or vector(1)", END, 1)
              for name in ("slo-overview", "slo-detail")
              for q in dashboard_queries(data[name], values)]
    (table,) = [p for p in data["slo-overview"]["panels"] if p.get("title") == "SLOs"]
    checks += [testgen.expect(f"count({expand(t['expr'], values)})", END, 2)
               for t in table["targets"]]
    return dict(case, name="dashboards", promql_expr_test=checks)


@on_both
def test_each_sli_kind_pages_per_group_with_one_series_per_group(tmp_path, promtool):
    slos = load(tmp_path, "shop.yaml", SPEC)
    assert [s.group_by for s in slos] == [("cluster", "route")] * 2 + [("cluster",)] * 4
    run(promtool, tmp_path, slos, [grouped_case(slo) for slo in slos] + [dashboard_case(slos)])


@on_both
def test_openslo_sloth_and_pyrra_grouping_page_per_group(tmp_path, promtool):
    slos = (load(tmp_path, "openslo.yaml", OPENSLO) + load(tmp_path, "sloth.yaml", SLOTH)
            + load(tmp_path, "pyrra.yaml", PYRRA)
            + load(tmp_path, "pyrra-own-label.yaml", PYRRA_OWN_LABEL))
    assert [s.group_by for s in slos] == [("cluster",), ("cluster",), ("handler",),
                                          ("exported_service", "method")]
    for slo in slos:
        (tmp_path / slo.name).mkdir()
        run(promtool, tmp_path / slo.name, [slo], [grouped_case(slo)])


@on_both
def test_a_vanished_good_series_pages_its_own_group_only(tmp_path, promtool):
    """Group a loses its good series (a renamed label): it counts as all bad, pages,
    and SLOSignalMissing fires for a alone; b, healthy, raises nothing."""
    (slo,) = [s for s in load(tmp_path, "shop.yaml", SPEC) if s.name == "good"]
    series = [
        {"series": 'rpc_total{cluster="a",route="r",result="ok",instance="1"}',
         "values": "0+600x30 _x60"},
        {"series": 'rpc_total{cluster="a",route="r",result="fail",instance="1"}',
         "values": "0+0x30 0+600x60"},  # after 30m: every request, but no good series
        {"series": 'rpc_total{cluster="b",route="r",result="ok",instance="1"}',
         "values": "0+600x90"},
    ]
    missing = 'ALERTS{alertname="SLOSignalMissing",service="shop",slo="good",' \
              'alertstate="firing",cluster="%s"}'
    exprs = [(testgen.count_alerts(slo, None, "page", {"cluster": "a", "route": "r"}), 1),
             (testgen.count_alerts(slo, 5400, None, {"cluster": "b", "route": "r"}), 0),
             (f"clamp_max(count({missing % 'a'}), 1) or vector(0)", 1)]
    run(promtool, tmp_path, [slo], [{
        "interval": "60s", "input_series": series,
        "promql_expr_test": [testgen.expect(e, 5400, v) for e, v in exprs]}])


def test_generated_tests_break_one_group_and_keep_the_other_quiet(tmp_path):
    (tmp_path / "shop.yaml").write_text(SPEC)
    res = run_cli("generate", "--with-tests", "-o", str(tmp_path / "out"),
                  str(tmp_path / "shop.yaml"))
    assert res.returncode == 0, res.stderr
    tests = yaml.safe_load((tmp_path / "out/tests/shop.test.yaml").read_text())["tests"]
    outages = [t for t in tests if "stays quiet" in t["name"]]
    assert len(outages) == 6, [t["name"] for t in tests]
    for test in outages:
        quiet = test["promql_expr_test"][-1]["expr"]
        assert 'cluster="b"' in quiet and test["promql_expr_test"][-1]["exp_samples"][0][
            "value"] == 0
    # the dashboards filter by each group label, and Alertmanager notifies per group
    for name in ("slo-overview", "slo-detail"):
        dash = yaml.safe_load((tmp_path / f"out/dashboards/{name}.json").read_text())
        assert {"cluster", "route"} <= {v["name"] for v in dash["templating"]["list"]}
    am = yaml.safe_load((tmp_path / "out/alertmanager/alertmanager.yaml").read_text())
    route = am["route"]["routes"][0]
    assert route["group_by"] == ["service", "slo", "cluster", "route"]
    assert am["inhibit_rules"][0]["equal"] == ["service", "slo", "cluster", "route"]


BAD = [
    ("group_by: [cluster]", "group_by: [\"1x\"]", 4,
     "group_by: invalid label name '1x' in group_by: use letters, digits and "
     "'_', not starting with a digit or '__'"),
    ("group_by: [cluster]", "group_by: [le]", 4,
     "group_by: group_by cannot use 'le': sloexporter sets that label on its "
     "own series and alerts"),
    ("group_by: [cluster]", "group_by: [slo]", 4,
     "group_by: group_by cannot use 'slo': sloexporter sets that label on its "
     "own series and alerts"),
    ("group_by: [cluster]", "group_by: [cluster, cluster]", 4,
     "group_by: group_by label 'cluster' is listed twice"),
    ("group_by: [cluster]", "group_by: []", 4,
     "group_by: group_by needs at least one label; leave it out for one SLO "
     "over every series"),
    ("group_by: [cluster]", "group_by: [cluster]\nlabels: {cluster: eu}", 4,
     "group_by: group_by label 'cluster' is also a constant label of the SLO; every group "
     "would get the same value"),
    ("sum by (cluster) (rate(x_total[{{window}}]))", "sum(rate(x_total[{{window}}]))", 11,
     "slos[0].sli.events.total: cannot group by cluster: it aggregates 'cluster' away (its "
     "result has no labels); aggregate it `by (cluster)`"),
    ("events:\n        errors: sum by (cluster) (rate(x_errors_total[{{window}}]))\n"
     "        total: sum by (cluster) (rate(x_total[{{window}}]))",
     "ratio:\n        query: sum by (job) (rate(x_errors_total[{{window}}]))"
     " / sum by (job) (rate(x_total[{{window}}]))", 10,
     "slos[0].sli.ratio.query: a grouped ratio query must have exactly the group_by labels "
     "(cluster) on every series: a ratio cannot be summed per group afterwards; write it as "
     "sum by (cluster) (...) / sum by (cluster) (...), or use an events SLI"),
]

GOOD = """\
apiVersion: sloexporter.dev/v1
kind: ServiceLevels
service: api
group_by: [cluster]
slos:
  - name: s
    objective: 99
    sli:
      events:
        errors: sum by (cluster) (rate(x_errors_total[{{window}}]))
        total: sum by (cluster) (rate(x_total[{{window}}]))
"""


@pytest.mark.parametrize(("old", "new", "line", "message"), BAD)
def test_bad_group_by_is_refused_with_file_line_and_path(tmp_path, old, new, line, message):
    assert GOOD.count(old) == 1
    path = tmp_path / "api.yaml"
    path.write_text(GOOD.replace(old, new), encoding="utf-8")
    res = run_cli("validate", str(path))
    assert res.returncode != 0
    # one error, no follow-on errors about the queries of an invalid group
    assert res.stderr.splitlines() == [f"{path}:{line}: {message}"], res.stdout + res.stderr


def test_without_group_by_nothing_changes(tmp_path):
    """An ungrouped SLO keeps vector() metadata and per-SLO Alertmanager groups."""
    (slo,) = load(tmp_path, "api.yaml", GOOD.replace("group_by: [cluster]\n", ""))
    assert slo.group_by == ()
    meta = {r["record"]: r["expr"] for r in slo_groups(slo)[0]["rules"] if "record" in r}
    assert meta[promql.OBJECTIVE] == "vector(0.99)" and meta[promql.INFO] == "vector(1)"


def test_the_documented_grouped_spec_validates_and_groups(tmp_path):
    section = doc_section("many-clusters", "## Grouped SLOs")
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    slos = load(tmp_path, "checkout.yaml", block)
    assert [s.group_by for s in slos] == [("cluster", "route"), ("cluster",)]
    # the preset aggregates by the group label itself
    assert (slos[1].sli.total or "").startswith("sum by (cluster) (rate(")


@pytest.mark.parametrize("target", ["native", "sloth", "openslo"])
def test_convert_keeps_the_grouping(tmp_path, target):
    """native and OpenSLO carry group_by itself; Sloth carries it as `sum by` queries."""
    spec = yaml.safe_load(SPEC)
    spec["slos"] = [s for s in spec["slos"] if "threshold" not in s["sli"]]  # not events
    (tmp_path / "shop.yaml").write_text(yaml.safe_dump(spec))
    before = load(tmp_path, "shop.yaml", yaml.safe_dump(spec))
    res = run_cli("convert", "--to", target, "-o", str(tmp_path / "out"),
                  str(tmp_path / "shop.yaml"))
    assert res.returncode == 0, res.stderr
    services, errors = load_paths([str(tmp_path / "out")])
    assert not errors, errors
    assert [s.group_by for s in services[0].slos] == [s.group_by for s in before]


def test_a_grouped_alert_links_the_detail_dashboard_of_its_group(tmp_path):
    (tmp_path / "shop.yaml").write_text(SPEC)
    (tmp_path / "am.yaml").write_text("grafana_url: https://grafana.example.com\n")
    res = run_cli("generate", "-o", str(tmp_path / "out"), "--alertmanager-settings",
                  str(tmp_path / "am.yaml"), str(tmp_path / "shop.yaml"))
    assert res.returncode == 0, res.stderr
    groups = yaml.safe_load((tmp_path / "out/rules/shop.yaml").read_text())["groups"]
    links = {(r["labels"]["slo"], r["annotations"]["dashboard_url"])
             for g in groups for r in g["rules"] if "alert" in r}
    base = "https://grafana.example.com/d/sloexporter-slo-detail?var-service=shop"
    assert ("errors", f"{base}&var-slo=errors&var-cluster={{{{ $labels.cluster | urlquery }}}}"
            "&var-route={{ $labels.route | urlquery }}") in links
    assert ("http", f"{base}&var-slo=http&var-cluster={{{{ $labels.cluster | urlquery }}}}"
            ) in links


NATIVE = """\
apiVersion: sloexporter.dev/v1
kind: ServiceLevels
service: rpc
group_by: [cluster]
slos:
  - name: latency
    objective: 99
    sli:
      latency: {metric: rpc_seconds, threshold: 0.25, native: true}
"""
#: native histograms in promtool 3's notation: requests in (0.125, 0.25] (schema 0, bucket
#: -2) are fast, in (0.5, 1] (bucket 0) slow; 600 a minute
FAST = "{{schema:0 count:600 sum:120 offset:-2 buckets:[600]}}"
SLOW = "{{schema:0 count:600 sum:600 buckets:[600]}}"
START = "{{schema:0 count:0 sum:0 offset:-2 buckets:[0]}}"


def test_a_grouped_native_histogram_pages_per_group(tmp_path):
    """promtool 2.42 cannot read native histogram input; promtool 3 can."""
    promtool = require_tool("promtool3")
    (slo,) = load(tmp_path, "rpc.yaml", NATIVE)
    after_lead = FAST.replace("count:600 sum:120", f"count:{600 * LEAD} sum:{120 * LEAD}") \
        .replace("[600]", f"[{600 * LEAD}]")
    series = [{"series": 'rpc_seconds{cluster="a"}',
               "values": f"{START}+{FAST}x{LEAD} {after_lead}+{SLOW}x{STEPS}"},
              {"series": 'rpc_seconds{cluster="b"}', "values": f"{START}+{FAST}x{LEAD + STEPS}"}]
    a, b = {"cluster": "a"}, {"cluster": "b"}
    run(promtool, tmp_path, [slo], [{
        "interval": "60s", "input_series": series, "promql_expr_test": [
            testgen.expect(testgen.count_alerts(slo, None, "page", a), END, 1),
            testgen.expect(testgen.count_alerts(slo, END, None, b), END, 0),
            *one_per_group(slo, END, [a, b])]}])
