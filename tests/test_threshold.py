"""The `threshold` SLI kind: spec checks, and its rules under promtool 2.x and 3.x.

The SLI is the share of (series x evaluations) in which `query op value` fails. Missing
data is never good: no series at all is one bad object, and a series that vanished
counts as bad until `forget_after`.
"""

from __future__ import annotations

import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from sloexporter.output import render_rules, to_yaml
from sloexporter.specs import load_paths
from sloexporter.testgen import render_tests
from tests.compat.peers import peer
from tests.conftest import run_cli
from tests.tools import require_tool

SPEC = """\
apiVersion: sloexporter.dev/v1
kind: ServiceLevels
service: db
labels: {{team: data}}
slos:
  - name: lag
    objective: 99
    sli:
      threshold:
        query: {query}
        op: "{op}"
        value: {value}
        forget_after: {forget}
"""
LAG = 'pg_replication_lag_seconds{job="pg"}'
RATIO = 'slo:sli_error:ratio_rate5m{service="db",slo="lag",team="data"}'
PAGE = 'clamp_max(count(ALERTS{alertstate="firing",severity="page"}), 1) or vector(0)'


def load(tmp_path: Path, text: str):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return load_paths([str(path)])


def generated_tests(svc) -> str:
    """The generated promtool tests of `svc`, which must have every SLO's tests."""
    text, skipped = render_tests(svc, "rules.yaml")
    assert text is not None and not skipped, skipped
    return text


def service(tmp_path: Path, query: str = LAG, op: str = "<", value: str = "900",
            forget: str = "10m"):
    services, errors = load(tmp_path, SPEC.format(query=query, op=op, value=value,
                                                  forget=forget))
    assert not errors, errors
    return services[0]


# ---- the spec --------------------------------------------------------------------------

@pytest.mark.parametrize("op,normal", [("lt", "<"), ("lte", "<="), ("gt", ">"), ("gte", ">="),
                                       (">=", ">="), ("eq", "=="), ("!=", "!=")])
def test_op_takes_symbols_and_openslo_names(tmp_path, op, normal):
    assert service(tmp_path, op=op).slos[0].sli.condition.op == normal


@pytest.mark.parametrize("value,seconds", [("15m", 900), ("1h30m", 5400), ("900", 900),
                                           ("0.9", "0.9")])
def test_value_takes_a_number_or_a_duration_in_seconds(tmp_path, value, seconds):
    assert service(tmp_path, value=value).slos[0].sli.condition.value == Decimal(seconds)


@pytest.mark.parametrize("body,message", [
    ("query: x\n        op: '=~'\n        value: 1", "must be one of <, <=, >, >="),
    # a bare > in YAML starts a folded block: the op arrives empty
    ("query: x\n        op: >\n        value: 1", "quote it in YAML"),
    ("query: rate(x[{{window}}])\n        op: '<'\n        value: 1", "takes no {{window}}"),
    ("query: x[5m]\n        op: '<'\n        value: 1", "returns a range vector"),
    ("query: '42'\n        op: '<'\n        value: 1", "is a constant"),
    ("query: time()\n        op: '<'\n        value: 1", "reads no metric"),
    ("query: max(x\n        op: '<'\n        value: 1", "invalid PromQL"),
    ("query: x\n        op: '<'\n        value: .nan", "value"),
    # Prometheus refuses to load a rule with `< bool 1e400`: validate must say so
    ("query: x\n        op: '<'\n        value: 1e400", "out of range for PromQL"),
    ("query: x\n        op: '>'\n        value: -2e308", "out of range for PromQL"),
    ("query: x\n        op: '<'", "value"),
    ("query: x\n        op: '<'\n        value: 1\n        forget_after: soon", "forget_after"),
])
def test_bad_threshold_specs_name_the_field(tmp_path, body, message):
    text = ("apiVersion: sloexporter.dev/v1\nkind: ServiceLevels\nservice: db\nslos:\n"
            "  - name: lag\n    objective: 99\n    sli:\n      threshold:\n        " + body + "\n")
    services, errors = load(tmp_path, text)
    assert not services
    assert any(message in str(e) and "threshold" in str(e) for e in errors), errors


# ---- rules under promtool --------------------------------------------------------------

PROMTOOLS = ["promtool", "promtool3"]


def run(promtool: str, tmp_path: Path, svc, tests: list[dict[str, Any]]) -> None:
    (tmp_path / "rules.yaml").write_text(render_rules(svc))
    doc = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "test.yaml").write_text(to_yaml(doc))
    result = subprocess.run([require_tool(promtool), "test", "rules", "test.yaml"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def at(minute: int, expr: str, value: float | None, labels: str = "{}") -> dict[str, Any]:
    samples = [] if value is None else [{"labels": labels, "value": value}]
    return {"expr": expr, "eval_time": f"{minute}m", "exp_samples": samples}


def ratio(minute: int, value: float) -> dict[str, Any]:
    return at(minute, RATIO, value, RATIO)


def case(series: dict[str, str], *checks: dict[str, Any]) -> dict[str, Any]:
    return {"interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "promql_expr_test": list(checks)}


@pytest.mark.parametrize("promtool", PROMTOOLS)
def test_lag_over_the_value_pages_and_under_it_is_silent(tmp_path, promtool):
    svc = service(tmp_path, query=f"max({LAG})")
    run(promtool, tmp_path, svc, [case(
        {LAG: "30x60 1000x20"},
        ratio(60, 0), at(60, PAGE, 0),
        ratio(66, 1), at(66, PAGE, 1),
    )])


@pytest.mark.parametrize("promtool", PROMTOOLS)
def test_a_gauge_never_seen_is_bad_not_good(tmp_path, promtool):
    svc = service(tmp_path)
    run(promtool, tmp_path, svc, [case(
        {"unrelated": "1x30"},
        ratio(5, 1), at(5, PAGE, 1),
        at(5, 'slo:sli_objects:count{service="db"}', 1,
           'slo:sli_objects:count{service="db",slo="lag",team="data"}'),
    )])


@pytest.mark.parametrize("promtool", PROMTOOLS)
def test_a_gauge_that_goes_stale_turns_bad(tmp_path, promtool):
    svc = service(tmp_path)
    run(promtool, tmp_path, svc, [case(
        {LAG: "30x60 stale"},
        ratio(60, 0),
        # the gauge stopped: every evaluation since is bad
        ratio(66, 1), at(66, PAGE, 1),
    )])


@pytest.mark.parametrize("promtool", PROMTOOLS)
def test_partial_data_counts_the_missing_series_until_forgotten(tmp_path, promtool):
    """Two standbys; one stops reporting. It is bad (half the objects) for forget_after
    (10m), then forgotten; the other one alone is good."""
    a = 'pg_replication_lag_seconds{job="pg",instance="a"}'
    b = 'pg_replication_lag_seconds{job="pg",instance="b"}'
    svc = service(tmp_path)
    run(promtool, tmp_path, svc, [case(
        {a: "30x40", b: "30x20 stale"},
        ratio(20, 0),
        ratio(26, 0.5),  # a good, b missing: half the series-evaluations are bad
        at(26, 'slo:sli_objects:count{service="db"}', 2,
           'slo:sli_objects:count{service="db",slo="lag",team="data"}'),
        at(36, 'slo:sli_objects:count{service="db"}', 1,
           'slo:sli_objects:count{service="db",slo="lag",team="data"}'),
        ratio(37, 0),  # b forgotten 10m after its last sample; the 5m window is clean again
    )])


SIGNAL = 'slo:sli_signal:missing{service="db",slo="lag"}'
SIGNAL_ALERT = ('clamp_max(count(ALERTS{alertname="SLOSignalMissing",alertstate="firing",'
                'service="db",severity="ticket"}), 1) or vector(0)')


@pytest.mark.parametrize("promtool", PROMTOOLS)
def test_missing_gauges_show_on_the_sli_health_signal(tmp_path, promtool):
    """No series at all, or one of two gone: slo:sli_signal:missing is 1 and
    SLOSignalMissing tickets after 15 minutes; with every series reporting it is 0."""
    a = 'pg_replication_lag_seconds{job="pg",instance="a"}'
    b = 'pg_replication_lag_seconds{job="pg",instance="b"}'
    health = 'slo:sli_signal:missing{service="db",slo="lag",team="data"}'
    svc = service(tmp_path, forget="1h")
    run(promtool, tmp_path, svc, [
        case({"unrelated": "1x30"}, at(10, SIGNAL, 1, health), at(20, SIGNAL_ALERT, 1)),
        case({a: "30x60", b: "30x20 stale"},
             at(19, SIGNAL, 0, health), at(19, SIGNAL_ALERT, 0),
             at(25, SIGNAL, 1, health), at(40, SIGNAL_ALERT, 1)),
    ])


@pytest.mark.parametrize("promtool", PROMTOOLS)
def test_nan_is_bad(tmp_path, promtool):
    svc = service(tmp_path)
    run(promtool, tmp_path, svc, [case({LAG: " ".join(["NaN"] * 20)}, ratio(10, 1))])


@pytest.mark.parametrize("promtool", PROMTOOLS)
def test_the_boundary_belongs_to_the_op(tmp_path, promtool):
    up = 'redis_up{job="redis"}'
    svc = service(tmp_path, query=up, op=">=", value="1")
    run(promtool, tmp_path, svc, [case({up: "1x20"}, ratio(10, 0))])
    svc = service(tmp_path, query=up, op=">", value="1")
    run(promtool, tmp_path, svc, [case({up: "1x20"}, ratio(10, 1))])


@pytest.mark.parametrize("promtool", PROMTOOLS)
@pytest.mark.parametrize("op", ["==", "!="])
def test_equality_ops_generate_tests_that_pass(tmp_path, promtool, op):
    svc = service(tmp_path, query='min(redis_up{job="redis"})', op=op, value="1")
    (tmp_path / "rules.yaml").write_text(render_rules(svc))
    (tmp_path / "t.yaml").write_text(generated_tests(svc))
    ok = subprocess.run([require_tool(promtool), "test", "rules", "t.yaml"], cwd=tmp_path,
                        capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stdout + ok.stderr


@pytest.mark.parametrize("promtool", PROMTOOLS)
def test_series_that_carry_the_slo_labels_stay_apart(tmp_path, promtool):
    """The query's own service/slo/team labels would be overwritten by the rule's; they
    move to exported_* instead, so two series never collide into one."""
    one = 'queue_age_seconds{service="orders",team="a"}'
    two = 'queue_age_seconds{service="billing",team="a"}'
    svc = service(tmp_path, query="queue_age_seconds", value="60")
    run(promtool, tmp_path, svc, [case(
        {one: "10x20", two: "100x20"},
        ratio(10, 0.5),
        at(10, 'count(slo:sli_condition_good:bool{exported_service=~"orders|billing"})', 2),
    )])


@pytest.mark.parametrize("promtool", PROMTOOLS)
def test_generated_tests_pass_and_catch_an_inverted_condition(tmp_path, promtool):
    svc = service(tmp_path, query=f"time() - max({LAG})", op="<", value="3600")
    (tmp_path / "rules.yaml").write_text(render_rules(svc))
    (tmp_path / "t.yaml").write_text(generated_tests(svc))
    names = [t["name"] for t in yaml.safe_load((tmp_path / "t.yaml").read_text())["tests"]]
    assert any("no data" in n for n in names) and any("condition holds" in n for n in names)
    tool = require_tool(promtool)
    ok = subprocess.run([tool, "test", "rules", "t.yaml"], cwd=tmp_path, capture_output=True,
                        text=True, timeout=600)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules.read_text().replace("< bool 3600", ">= bool 3600"))
    broken = subprocess.run([tool, "test", "rules", "t.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert broken.returncode == 1, broken.stdout + broken.stderr


# ---- OpenSLO's threshold and timeslice forms --------------------------------------------

OPENSLO = """\
apiVersion: openslo/v1
kind: SLO
metadata: {{name: lag}}
spec:
  service: web
  indicator:
    metadata: {{name: lag-sli}}
    spec:
      thresholdMetric:
        metricSource:
          type: Prometheus
          spec: {{query: 'sum(kafka_consumergroup_lag{{consumergroup="annotator"}})'}}
  timeWindow: [{{duration: 28d, isRolling: true}}]
  budgetingMethod: {method}
  objectives:
    - {{displayName: Good, op: lt, value: 1000, target: 0.995{slices}}}
"""


def openslo(tmp_path: Path, method: str, slices: str = ""):
    services, errors = load(tmp_path, OPENSLO.format(method=method, slices=slices))
    assert not errors, errors
    return services[0]


def test_openslo_threshold_occurrences_is_a_threshold_sli(tmp_path):
    sli = openslo(tmp_path, "Occurrences").slos[0].sli
    assert sli.kind == "threshold"
    assert (sli.condition.query, sli.condition.op, sli.condition.value) == (
        'sum(kafka_consumergroup_lag{consumergroup="annotator"})', "<", 1000)


def test_openslo_ratio_timeslices_of_a_threshold_is_the_plain_share(tmp_path):
    sli = openslo(tmp_path, "RatioTimeslices", ", timeSliceWindow: 5m").slos[0].sli
    assert sli.condition.op == "<" and "avg_over_time" not in sli.condition.query


def test_openslo_timeslices_of_a_threshold_judge_each_slice(tmp_path, promtool):
    svc = openslo(tmp_path, "Timeslices", ", timeSliceTarget: 0.95, timeSliceWindow: 5m")
    cond = svc.slos[0].sli.condition
    assert cond.op == ">=" and cond.value == Decimal("0.95")
    assert cond.query.startswith("avg_over_time(((sum(") and cond.query.endswith("[5m:])")
    (tmp_path / "rules.yaml").write_text(render_rules(svc))
    (tmp_path / "t.yaml").write_text(generated_tests(svc))
    ok = subprocess.run([promtool, "test", "rules", "t.yaml"], cwd=tmp_path,
                        capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_the_openslo_sdk_timeslice_example_is_a_threshold_sli(tmp_path):
    doc = yaml.safe_load(peer("openslo", "go-sdk", "pkg", "openslosdk", "test_data", "export",
                              "inputs", "v1_slo.yaml").read_text())[0]
    doc["spec"].pop("alertPolicies")
    doc["spec"]["indicator"]["spec"]["thresholdMetric"]["metricSource"].pop("metricSourceRef")
    doc["spec"]["timeWindow"] = [{"duration": "1w", "isRolling": True}]
    services, errors = load(tmp_path, yaml.safe_dump(doc))
    assert not errors, errors
    cond = services[0].slos[0].sli.condition
    assert "kafka_consumergroup_lag" in cond.query and "> bool 1" in cond.query
    assert (cond.op, cond.value) == (">=", Decimal("0.95"))


def test_convert_writes_a_threshold_sli_as_an_openslo_threshold_metric(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC.format(query=LAG, op="<=", value="900",
                                                    forget="1h"))
    out = tmp_path / "out"
    result = run_cli("convert", str(tmp_path / "spec.yaml"), "--to", "openslo", "-o", str(out))
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all((out / "db.openslo.yaml").read_text()))
    slo = next(d for d in docs if d["kind"] == "SLO")
    assert slo["spec"]["indicator"]["spec"]["thresholdMetric"]["metricSource"]["spec"][
        "query"] == LAG
    assert slo["spec"]["objectives"][0]["op"] == "lte"
    assert slo["spec"]["objectives"][0]["value"] == 900
    back, errors = load_paths([str(out / "db.openslo.yaml")])
    assert not errors, errors
    assert back[0].slos[0].sli.condition.op == "<="


def test_a_query_tests_cannot_drive_is_skipped_with_a_warning(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC.format(query="sum(rate(x_total[5m]))", op="<",
                                                    value="5", forget="1h"))
    result = run_cli("generate", str(tmp_path / "spec.yaml"), "-o", str(tmp_path / "out"),
                     "--with-tests")
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "lag" in result.stderr
    assert "cannot derive gauge values" in result.stderr
