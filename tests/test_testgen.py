"""Generated promtool tests for hand-written queries of many shapes."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.conftest import run_cli

SHAPES = {
    "errors-same-metric": {"events": {
        "errors": 'sum(rate(http_requests_total{job="a",code=~"5.."}[{{window}}]))',
        "total": 'sum(rate(http_requests_total{job="a"}[{{window}}]))'}},
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
    "latency": {"latency": {"metric": "rpc_duration_seconds", "selector": '{svc="x"}',
                            "threshold": 1}},
    "http-otel": {"http": {"convention": "otel", "selector": '{service_name="x"}'}},
    "http-fastapi": {"http": {"convention": "requests_total", "status_label": "status"}},
    "probe-latency": {"probe": {"signal": "latency", "threshold": 0.25}},
    "argocd-sync": {"argocd": {"signal": "sync_success"}},
    "certificate": {"certificate": {"selector": '{namespace="web"}', "min_days_left": 21}},
}


def spec(name: str, sli: dict, objective: float = 99.5, period: str = "28d") -> str:
    return yaml.safe_dump({"apiVersion": "sloexporter.dev/v1", "kind": "ServiceLevels",
                           "service": name, "slos": [{"name": "s", "objective": objective,
                                                      "period": period, "sli": sli}]})


@pytest.mark.parametrize("shape", SHAPES)
def test_generated_tests_pass_for_each_query_shape(tmp_path, promtool, shape):
    (tmp_path / "spec.yaml").write_text(spec(shape, SHAPES[shape]))
    result = run_cli("generate", str(tmp_path / "spec.yaml"), "-o", str(tmp_path / "out"),
                     "--with-tests")
    assert result.returncode == 0, result.stderr
    run = subprocess.run([promtool, "test", "rules", f"{shape}.test.yaml"],
                         cwd=tmp_path / "out" / "tests", capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_underivable_inputs_are_a_clear_error(tmp_path):
    sli = {"ratio": {"query": 'max(slo_error_ratio{window="{{window}}"})'}}
    (tmp_path / "spec.yaml").write_text(spec("odd", sli))
    result = run_cli("generate", str(tmp_path / "spec.yaml"), "-o", str(tmp_path / "out"),
                     "--with-tests")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "cannot generate promtool tests" in result.stderr
    assert "errors / total" in result.stderr


def test_paging_disabled_tests_the_ticket(tmp_path, promtool):
    sli = SHAPES["errors-same-metric"]
    doc = yaml.safe_load(spec("quiet", sli, 99.9, "30d"))
    doc["slos"][0]["alerting"] = {"page": {"disabled": True}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    assert run_cli("generate", str(tmp_path / "spec.yaml"), "-o", str(out),
                   "--with-tests").returncode == 0
    rules = (out / "rules" / "quiet.yaml").read_text()
    assert "severity: page" not in rules and "severity: ticket" in rules
    tests = (out / "tests" / "quiet.test.yaml").read_text()
    assert "fires ticket" in tests
    run = subprocess.run([promtool, "test", "rules", "quiet.test.yaml"], cwd=out / "tests",
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_custom_tiers_replace_the_workbook_tiers(tmp_path, promtool):
    doc = yaml.safe_load(spec("custom", SHAPES["errors-same-metric"], 99.9, "30d"))
    doc["slos"][0]["alerting"] = {"tiers": [
        {"severity": "page", "long_window": "30m", "short_window": "5m", "budget_consumed": 1},
        {"severity": "ticket", "long_window": "12h", "short_window": "1h",
         "budget_consumed": 5}]}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    assert run_cli("generate", str(tmp_path / "spec.yaml"), "-o", str(out),
                   "--with-tests").returncode == 0
    rules = yaml.safe_load((out / "rules" / "custom.yaml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert [(a["labels"]["long_window"], a["labels"]["short_window"],
             a["annotations"]["burn_rate_threshold"]) for a in alerts] == [
        ("30m", "5m", "14.4"), ("12h", "1h", "3")]
    run = subprocess.run([promtool, "test", "rules", "custom.test.yaml"], cwd=out / "tests",
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
