"""`sloexporter validate`: every mistake is one `FILE:LINE: field.path: message` line."""

from __future__ import annotations

import re

import pytest

from tests.conftest import run_cli

VALID = """\
apiVersion: sloexporter.dev/v1
kind: ServiceLevels
service: checkout
labels: {team: payments}
slos:
  - name: availability
    objective: 99.9
    period: 30d
    description: Checkout API requests succeed
    sli:
      events:
        errors: sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{window}}]))
        total: sum(rate(http_requests_total{job="checkout"}[{{window}}]))
    alerting:
      page: {labels: {}, annotations: {}}
      ticket: {labels: {}, annotations: {}}
  - name: latency
    objective: 99
    sli:
      latency:
        metric: http_request_duration_seconds
        selector: '{job="checkout"}'
        threshold: 0.5
"""

# (name, text to replace, replacement, expected line, expected path, message pattern)
MISTAKES = [
    ("typo in a field", "    objective: 99.9\n", "    objectve: 99.9\n", 7,
     "slos[0].objectve", "unknown field 'objectve'"),
    ("objective of 100", "objective: 99.9", "objective: 100", 7, "slos[0].objective",
     "greater than 0 and less than 100"),
    ("objective of 0", "objective: 99.9", "objective: 0", 7, "slos[0].objective",
     "greater than 0"),
    ("objective as a word", "objective: 99.9", "objective: high", 7, "slos[0].objective",
     "must be a percentage like 99.9, not 'high'"),
    ("period in hours", "period: 30d", "period: 720h", 8, "slos[0].period",
     "whole days or weeks"),
    ("period too long", "period: 30d", "period: 91d", 8, "slos[0].period", "between 1d and 90d"),
    ("duplicate SLO name", "  - name: latency", "  - name: availability", 17,
     "slos[1].name", "duplicate SLO name 'availability'"),
    ("PromQL syntax error", 'code=~"5.."}[{{window}}]))', 'code=~"5.."}[{{window}}])', 12,
     "slos[0].sli.events.errors", "invalid PromQL"),
    ("missing window placeholder", 'job="checkout"}[{{window}}]))\n    alerting',
     'job="checkout"}[5m]))\n    alerting', 13, "slos[0].sli.events.total", "no {{window}}"),
    ("two SLI kinds", "      latency:\n", "      ratio: {query: x}\n      latency:\n", 19,
     "slos[1].sli", "exactly one of"),
    ("no SLI kind", "      latency:\n        metric: http_request_duration_seconds\n"
     "        selector: '{job=\"checkout\"}'\n        threshold: 0.5\n", "      {}\n", 19,
     "slos[1].sli", "exactly one of"),
    ("threshold not a bucket", "threshold: 0.5", "threshold: 0.3\n        buckets: [0.1, 0.5, 1]",
     23, "slos[1].sli.latency.threshold", "not a bucket boundary"),
    ("histogram suffix in metric", "metric: http_request_duration_seconds",
     "metric: http_request_duration_seconds_bucket", 21, "slos[1].sli.latency.metric",
     "without '_bucket'"),
    ("bad selector", "selector: '{job=\"checkout\"}'", "selector: 'job=checkout'", 22,
     "slos[1].sli.latency.selector", "matcher list"),
    ("reserved label", "labels: {team: payments}", "labels: {slo: payments}", 4, "labels",
     "cannot be overridden"),
    ("bad label name", "labels: {team: payments}", "labels: {team-name: payments}", 4,
     "labels", "invalid label name"),
    ("wrong apiVersion", "apiVersion: sloexporter.dev/v1", "apiVersion: sloexporter.dev/v2", 1,
     "", "unknown spec format"),
    ("events with errors and good", "        total: sum(rate(http_requests_total{job=\"checkout\"}"
     "[{{window}}]))", "        good: x{a=\"[{{window}}]\"}\n        total: sum(rate("
     "http_requests_total{job=\"checkout\"}[{{window}}]))", 11, "slos[0].sli.events",
     "exactly one of 'errors' or 'good'"),
    ("page disabled is not a bool", "page: {labels: {}, annotations: {}}",
     "page: {disabled: maybe}", 15, "slos[0].alerting.page.disabled", "must be true or false"),
    ("bad for duration", "page: {labels: {}, annotations: {}}", "page: {for: soon}", 15,
     "slos[0].alerting.page.for", "invalid duration"),
    ("bad service name", "service: checkout", "service: check out!", 3, "service",
     "must be 1-63 characters"),
    ("invalid YAML", "labels: {team: payments}", "labels: {team: payments", 5, "",
     "invalid YAML"),
    ("ArgoCD app name not a Kubernetes name", "labels: {team: payments}",
     "labels: {team: payments}\nargocd_apps: [Checkout_API]", 5, "argocd_apps",
     "must be a Kubernetes name"),
    ("ArgoCD app listed twice", "labels: {team: payments}",
     "labels: {team: payments}\nargocd_apps: [checkout, checkout]", 5, "argocd_apps",
     "listed twice"),
    ("custom tier short longer than long", "    alerting:\n      page:",
     "    alerting:\n      tiers: [{severity: page, long_window: 5m, short_window: 1h, "
     "budget_consumed: 2}]\n      page:", 15, "slos[0].alerting.tiers[0]",
     "short_window must not be longer"),
]


def test_the_base_spec_is_valid(tmp_path):
    (tmp_path / "s.yaml").write_text(VALID)
    result = run_cli("validate", str(tmp_path / "s.yaml"))
    assert result.returncode == 0, result.stderr
    assert "ok: 2 SLOs in 1 services" in result.stdout


def test_there_are_at_least_15_distinct_mistakes():
    assert len({m[0] for m in MISTAKES}) >= 15


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_mistake_gives_one_line_error_and_exit_1(tmp_path, mistake):
    _, old, new, line, path, pattern = mistake
    assert old in VALID
    spec = tmp_path / "spec.yaml"
    spec.write_text(VALID.replace(old, new, 1))
    result = run_cli("validate", str(spec))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    where = f"{path}: " if path else ""
    assert re.match(rf"^{re.escape(str(spec))}:{line}: {re.escape(where)}.*", lines[0]), lines[0]
    assert pattern in lines[0]


def test_every_error_in_every_file_is_reported(tmp_path):
    (tmp_path / "a.yaml").write_text(VALID.replace("objective: 99.9", "objective: 120")
                                     .replace("period: 30d", "period: 2h"))
    (tmp_path / "b.yaml").write_text(VALID.replace("service: checkout", "service: cart")
                                     .replace("objective: 99\n", "objective: -1\n"))
    result = run_cli("validate", str(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert [ln.split(": ", 2)[1] for ln in lines] == [
        "slos[0].objective", "slos[0].period", "slos[1].objective"]
    assert lines[0].startswith(f"{tmp_path / 'a.yaml'}:7:")
    assert lines[2].startswith(f"{tmp_path / 'b.yaml'}:18:")


def test_a_service_may_span_files_and_a_duplicate_slo_names_both_places(tmp_path):
    (tmp_path / "a.yaml").write_text(VALID)
    (tmp_path / "b.yaml").write_text(VALID.replace("name: availability", "name: errors"))
    result = run_cli("validate", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"{tmp_path / 'b.yaml'}:17: name: duplicate SLO name 'latency' in service 'checkout': "
        f"also defined at {tmp_path / 'a.yaml'}:17")
    (tmp_path / "b.yaml").write_text(VALID.replace("name: availability", "name: errors")
                                     .replace("name: latency", "name: slow"))
    result = run_cli("validate", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "ok: 4 SLOs in 1 services" in result.stdout


def test_missing_path_is_a_usage_error_with_its_name(tmp_path):
    result = run_cli("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"{tmp_path / 'nope.yaml'}: no such file or folder"


def test_usage_error_exits_2():
    assert run_cli("validate").returncode == 2
    assert run_cli("frobnicate").returncode == 2
    assert run_cli().returncode == 2


def test_version_and_help():
    from sloexporter import __version__

    assert run_cli("--version").stdout.strip() == f"sloexporter {__version__}"
    for command in ("validate", "generate", "serve"):
        result = run_cli(command, "--help")
        assert result.returncode == 0 and "usage: sloexporter" in result.stdout
