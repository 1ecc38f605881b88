"""`sloexporter convert --to openslo`: valid OpenSLO out, the same rules back in."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from sloexporter import rules
from sloexporter.convert import rfc1123
from sloexporter.specs import load_paths
from sloexporter.specs.openslo_schema import RFC1123
from tests.conftest import run_cli
from tests.tools import ROOT

EXAMPLES = ROOT / "examples" / "slos"

CUSTOM = """\
apiVersion: sloexporter.dev/v1
kind: ServiceLevels
service: Shop_API
labels: {team: web}
slos:
  - name: Checkout.Success
    objective: 99.95
    period: 7d
    labels: {tier: "1"}
    sli:
      ratio:
        query: 1 - avg_over_time(up{job="shop"}[{{window}}])
    alerting:
      name: ShopBurn
      labels: {owner: web}
      page: {labels: {severity: critical}, for: 2m}
      ticket: {disabled: true}
  - name: latency
    objective: 99
    sli:
      latency: {metric: http_request_duration_seconds, selector: '{job="shop"}', threshold: 0.3}
    alerting:
      tiers:
        - {severity: page, long_window: 1h, short_window: 5m, budget_consumed: 2}
        - {severity: ticket, long_window: 1d, short_window: 2h, budget_consumed: 10}
"""


def _groups(paths: list[Path]) -> list[object]:
    services, errors = load_paths([str(p) for p in paths])
    assert not errors, [str(e) for e in errors]
    return [g for s in sorted(services, key=lambda s: s.name) for g in rules.service_groups(s)]


def _round_trip(source: Path, out: Path) -> None:
    result = run_cli("convert", str(source), "--to", "openslo", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert _groups(sorted(out.glob("*.yaml"))) == _groups([source])


def test_converting_the_examples_back_gives_the_same_rules(tmp_path: Path) -> None:
    _round_trip(EXAMPLES, tmp_path / "openslo")


def test_names_labels_alerting_and_tiers_survive_the_round_trip(tmp_path: Path) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(CUSTOM, encoding="utf-8")
    _round_trip(spec, tmp_path / "openslo")


def test_converted_objects_are_standard_openslo(tmp_path: Path) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(CUSTOM, encoding="utf-8")
    assert run_cli("convert", str(spec), "--to", "openslo", "-o", str(tmp_path)).returncode == 0
    docs = list(yaml.safe_load_all((tmp_path / "Shop_API.openslo.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["Service", "SLO", "SLO"]
    assert all(d["apiVersion"] == "openslo/v1" and RFC1123.match(d["metadata"]["name"])
               for d in docs)
    slo, latency = docs[1]["spec"], docs[2]["spec"]
    assert slo["objectives"] == [{"displayName": "Checkout.Success", "target": 0.9995}]
    assert slo["indicator"]["spec"]["ratioMetric"]["rawType"] == "failure"
    assert slo["timeWindow"] == [{"duration": "7d", "isRolling": True}]
    # the ticket is disabled, so only the page tiers become burn-rate conditions
    conditions = slo["alertPolicies"][0]["spec"]["conditions"]
    assert [c["spec"]["severity"] for c in conditions] == ["page", "page"]
    assert latency["indicator"]["spec"]["thresholdMetric"]["metricSource"]["spec"]["query"] \
        == 'http_request_duration_seconds_bucket{job="shop"}'


def test_output_is_deterministic(tmp_path: Path) -> None:
    for out in ("a", "b"):
        assert run_cli("convert", str(EXAMPLES), "--to", "openslo",
                       "-o", str(tmp_path / out)).returncode == 0
    diff = subprocess.run(["diff", "-r", str(tmp_path / "a"), str(tmp_path / "b")],
                          capture_output=True, text=True)
    assert diff.returncode == 0, diff.stdout


def test_convert_reads_native_specs_only(tmp_path: Path) -> None:
    other = tmp_path / "pyrra.yaml"
    other.write_text("apiVersion: pyrra.dev/v1alpha1\nkind: ServiceLevelObjective\n")
    result = run_cli("convert", str(other), "--to", "openslo", "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    assert f"{other}:1: convert reads native specs" in result.stderr


def test_rfc1123_names() -> None:
    assert rfc1123("Checkout.Success") == "checkout-success"
    assert rfc1123("__") == "slo"


def test_convert_checks_specs_like_generate(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(CUSTOM.replace("[{{window}}]", "[5m]"), encoding="utf-8")
    result = run_cli("convert", str(spec), "--to", "openslo", "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    assert f"{spec}:12: slos[0].sli.ratio.query: query has no {{{{window}}}}" in result.stderr
    assert not (tmp_path / "out").exists()
