"""Generated promtool tests: query shapes, skipped SLOs, `tests: false`, histogram ladders."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from sloexporter.rules import SIGNAL_MISSING_ALERT
from sloexporter.specs import load_paths
from sloexporter.testgen import SynthesisError, input_series, outage_test
from tests.conftest import run_cli
from tests.tools import promtool_test_rules

EVENTS = {"events": {
    "errors": 'sum(rate(http_requests_total{job="a",code=~"5.."}[{{window}}]))',
    "total": 'sum(rate(http_requests_total{job="a"}[{{window}}]))'}}

SHAPES = {
    "errors-same-metric": EVENTS,
    "errors-other-metric": {"events": {
        "errors": 'sum(rate(app_failures_total{job="a"}[{{window}}]))',
        "total": 'sum(rate(app_requests_total{job="a"}[{{window}}]))'}},
    "good-total": {"events": {
        "good": 'sum(rate(jobs_total{queue="q",result="ok"}[{{.window}}]))',
        "total": 'sum(rate(jobs_total{queue="q"}[{{.window}}]))'}},
    "negative-matcher": {"events": {
        "errors": 'sum(rate(grpc_server_handled_total{grpc_code!="OK"}[{{window}}]))',
        "total": 'sum(rate(grpc_server_handled_total[{{window}}]))'}},
    "raw-ratio": {"ratio": {"query": (
        'sum(rate(http_requests_total{job="a",code=~"5.."}[{{window}}])) / '
        'sum(rate(http_requests_total{job="a"}[{{window}}]))')}},
    # latency written as _count minus a _bucket (Sloth's kubernetes-apiserver)
    "count-minus-bucket": {"events": {
        "errors": ('sum(rate(rpc_seconds_count{verb!="WATCH"}[{{window}}])) - '
                   'sum(rate(rpc_seconds_bucket{le="0.4",verb!="WATCH"}[{{window}}]))'),
        "total": 'sum(rate(rpc_seconds_count{verb!="WATCH"}[{{window}}]))'}},
    # `up == 0` style: targets down, over all target samples
    "up-down-share": {"ratio": {"query": (
        'sum(count_over_time((up{job="api"} == 0)[{{window}}:])) / '
        'sum(count_over_time(up{job="api"}[{{window}}]))')}},
    "up-average": {"ratio": {"query": '1 - avg(avg_over_time(up{job="api"}[{{window}}]))'}},
    # a gauge that is itself the good share (Sloth's raw-home-wifi)
    "satisfaction": {"ratio": {"query": (
        '1 - (sum(sum_over_time(wifi_satisfaction_ratio{site="home"}[{{window}}])) / '
        'sum(count_over_time(wifi_satisfaction_ratio{site="home"}[{{window}}])))')}},
    "latency": {"latency": {"metric": "rpc_duration_seconds", "selector": '{svc="x"}',
                            "threshold": 1}},
    "http-otel": {"http": {"convention": "otel", "selector": '{service_name="x"}'}},
    "http-fastapi": {"http": {"convention": "requests_total", "status_label": "status"}},
    "probe-latency": {"probe": {"signal": "latency", "threshold": 0.25}},
    "argocd-sync": {"argocd": {"signal": "sync_success"}},
    "certificate": {"certificate": {"selector": '{namespace="web"}', "min_days_left": 21}},
}


def spec(name: str, sli: dict, objective: float = 99.5, period: str = "28d",
         **extra: object) -> str:
    return yaml.safe_dump({"apiVersion": "sloexporter.dev/v1", "kind": "ServiceLevels",
                           "service": name, "slos": [{"name": "s", "objective": objective,
                                                      "period": period, "sli": sli,
                                                      **extra}]})


def generate(tmp_path: Path, *specs: str) -> subprocess.CompletedProcess[str]:
    for n, text in enumerate(specs):
        (tmp_path / "specs").mkdir(exist_ok=True)
        (tmp_path / "specs" / f"{n}.yaml").write_text(text)
    return run_cli("generate", str(tmp_path / "specs"), "-o", str(tmp_path / "out"),
                   "--with-tests")


def test_generated_tests_pass_for_each_query_shape(tmp_path):
    result = generate(tmp_path, *(spec(name, sli) for name, sli in SHAPES.items()))
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "out" / "tests").glob("*.test.yaml"))
    assert sorted(f.name for f in files) == sorted(f"{n}.test.yaml" for n in SHAPES)
    # derived inputs that read a gauge share or `up` get the outage test, and the steady
    # one when a gauge value can carry the share
    warned = set(re.findall(r"SLO ([\w-]+)/s: no steady-errors test", result.stderr))
    assert warned == {"up-down-share"}, result.stderr
    promtool_test_rules(files)


def test_an_unsynthesisable_slo_is_skipped_with_one_warning_and_a_summary(tmp_path, promtool):
    doc = yaml.safe_load(spec("mixed", EVENTS, 99.9, "30d"))
    doc["slos"] += [
        # each window reads another series: no single input can feed them all
        {"name": "precomputed", "objective": 99.9,
         "sli": {"ratio": {"query": 'max(slo_error_ratio{window="{{window}}"})'}}},
        # the same, but the author opted out: no warning
        {"name": "opted-out", "objective": 99.9, "tests": False,
         "sli": {"ratio": {"query": 'max(slo_error_ratio{window="{{window}}"})'}}},
    ]
    only_skipped = spec("allskipped", {"ratio": {"query": 'max(r{w="{{window}}"})'}})
    result = generate(tmp_path, yaml.safe_dump(doc), only_skipped)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3, result.stderr
    # services in name order, as their files are written
    assert re.match(r"warning: .*1\.yaml:5: SLO allskipped/s: no promtool tests: ",
                    warnings[0]), warnings
    assert re.match(r"warning: .*0\.yaml:\d+: SLO mixed/precomputed: no promtool tests: "
                    r"a label matcher holds \{\{window\}\}", warnings[1]), warnings
    assert warnings[2] == ("warning: no promtool tests for 2 of 4 SLOs whose inputs cannot be "
                           "synthesised; 1 with `tests: false` (see the warnings above; "
                           "`tests: false` silences one)"), warnings
    out = tmp_path / "out"
    # everything else is written: every SLO's rules, the other SLO's tests
    rules = (out / "rules" / "mixed.yaml").read_text()
    assert all(f"slo: {n}" in rules for n in ("s", "precomputed", "opted-out"))
    assert (out / "rules" / "allskipped.yaml").exists()
    assert not (out / "tests" / "allskipped.test.yaml").exists()
    tests = yaml.safe_load((out / "tests" / "mixed.test.yaml").read_text())["tests"]
    assert [t["name"].split(":")[0] for t in tests] == ["s", "s"]
    run = subprocess.run([promtool, "test", "rules", "mixed.test.yaml"], cwd=out / "tests",
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_tests_false_leaves_one_slo_out_and_must_be_a_boolean(tmp_path):
    doc = yaml.safe_load(spec("quiet", EVENTS, 99.9, "30d", tests=False))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    result = run_cli("generate", str(tmp_path / "s.yaml"), "-o", str(tmp_path / "out"),
                     "--with-tests")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "out" / "tests" / "quiet.test.yaml").exists()
    assert (tmp_path / "out" / "rules" / "quiet.yaml").exists()
    assert result.stderr.splitlines() == ["warning: 1 with `tests: false`"], result.stderr
    doc["slos"][0]["tests"] = "sometimes"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    result = run_cli("validate", str(tmp_path / "s.yaml"))
    assert result.returncode == 1
    assert re.match(r".*s\.yaml:\d+: slos\[0\]\.tests: ", result.stderr), result.stderr


def test_a_run_without_tests_does_not_talk_about_tests(tmp_path):
    (tmp_path / "s.yaml").write_text(spec("plain", {"ratio": {"query": 'max(r{w="{{window}}"})'}}))
    result = run_cli("generate", str(tmp_path / "s.yaml"), "-o", str(tmp_path / "out"))
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_latency_tests_feed_a_whole_bucket_ladder(tmp_path):
    """Not only the threshold's own `le`: a rule reading the wrong bucket must fail."""
    (tmp_path / "s.yaml").write_text(spec("lat", SHAPES["latency"]))
    services, errors = load_paths([str(tmp_path / "s.yaml")])
    assert not errors
    slo = services[0].slos[0]
    series = [s["series"] for s in outage_test(slo)["input_series"]]
    les = [m.group(1) for s in series if (m := re.search(r'le="([^"]+)"', s))]
    assert "+Inf" in les and "1" in les and len(les) >= 10, series
    assert {"0.5", "2.5"} <= set(les), les


def test_paging_disabled_tests_the_ticket(tmp_path, promtool):
    doc = yaml.safe_load(spec("quiet", EVENTS, 99.9, "30d"))
    doc["slos"][0]["alerting"] = {"page": {"disabled": True}}
    result = generate(tmp_path, yaml.safe_dump(doc))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    rules = (out / "rules" / "quiet.yaml").read_text()
    assert "severity: page" not in rules and "severity: ticket" in rules
    tests = (out / "tests" / "quiet.test.yaml").read_text()
    assert "fires ticket" in tests
    run = subprocess.run([promtool, "test", "rules", "quiet.test.yaml"], cwd=out / "tests",
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_custom_tiers_replace_the_workbook_tiers(tmp_path, promtool):
    doc = yaml.safe_load(spec("custom", EVENTS, 99.9, "30d"))
    doc["slos"][0]["alerting"] = {"tiers": [
        {"severity": "page", "long_window": "30m", "short_window": "5m", "budget_consumed": 1},
        {"severity": "ticket", "long_window": "12h", "short_window": "1h",
         "budget_consumed": 5}]}
    result = generate(tmp_path, yaml.safe_dump(doc))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    rules = yaml.safe_load((out / "rules" / "custom.yaml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"]
              if r.get("alert") not in (None, SIGNAL_MISSING_ALERT)]
    assert [(a["labels"]["long_window"], a["labels"]["short_window"],
             a["annotations"]["burn_rate_threshold"]) for a in alerts] == [
        ("30m", "5m", "14.4"), ("12h", "1h", "3")]
    run = subprocess.run([promtool, "test", "rules", "custom.test.yaml"], cwd=out / "tests",
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("query", [
    # the error side selects exactly the total's series: no label tells them apart
    'sum(rate(x_total{job="a"}[{{window}}])) / sum(rate(x_total{job="a"}[{{window}}]))',
    # a ratio that is filtered away: no input makes it visible
    '(sum(rate(x_total{code=~"5.."}[{{window}}])) / sum(rate(x_total[{{window}}]))) > 2',
])
def test_inputs_that_would_fail_are_never_written(tmp_path, query):
    """The inputs are checked against the query first; a layout that does not give the
    error ratio the tests expect is skipped, never written as a failing test."""
    (tmp_path / "s.yaml").write_text(spec("odd", {"ratio": {"query": query}}))
    services, errors = load_paths([str(tmp_path / "s.yaml")])
    assert not errors, errors
    with pytest.raises(SynthesisError):
        input_series(services[0].slos[0], [], 60)
