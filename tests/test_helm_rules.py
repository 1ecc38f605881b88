"""The chart's generated PrometheusRules and dashboards: fresh, valid, shard-safe."""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from tests.helm_util import (
    CHART,
    helm_path,
    promtool_check,
    render,
    template,
)
from tests.tools import ROOT

pytestmark = pytest.mark.helm

helm = pytest.fixture(scope="module", name="helm")(helm_path)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_chart_files_match_a_fresh_generation(tmp_path):
    """files/ is what `python helm/generate.py` writes now: rules and dashboards."""
    subprocess.run([sys.executable, str(ROOT / "helm" / "generate.py"), "--out",
                    str(tmp_path)], check=True, capture_output=True, timeout=120)
    for folder in ("rules", "dashboards"):
        fresh, shipped = tmp_path / folder, CHART / "files" / folder
        # git keeps no empty folder: a missing one holds no files
        assert _names(fresh) == _names(shipped), folder
        _, mismatch, errors = filecmp.cmpfiles(fresh, shipped, [p.name for p in
                                                                 fresh.iterdir()],
                                               shallow=False)
        assert not mismatch and not errors, f"stale: {mismatch}; run `bash scripts/regenerate.sh`"


def test_shipped_rules_are_the_generator_output_with_release_metadata(helm):
    docs = {d["metadata"]["name"]: d for d in render(helm, "defaults")
            if d["kind"] == "PrometheusRule"}
    for path in sorted((CHART / "files" / "rules").glob("*.yaml")):
        generated = yaml.safe_load(path.read_text())
        assert docs[f"slo-sloexporter-{path.stem}"]["spec"] == generated["spec"]


def test_extra_rules_come_from_sloexporter_generate(helm, tmp_path):
    """A user's `sloexporter generate --format prometheus-operator` file, via --set-file."""
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "sloexporter.cli", "generate",
                    str(ROOT / "examples" / "slos" / "checkout-api.yaml"), "-o", str(out),
                    "--format", "prometheus-operator"], check=True, timeout=120,
                   capture_output=True)
    [path] = (out / "rules").glob("*.yaml")
    res = template(helm, {"prometheusRule": {"platformRules": False}}, True,
                   "--set-file", f"prometheusRule.extra.checkout={path}")
    assert res.returncode == 0, res.stderr
    [doc] = [d for d in yaml.safe_load_all(res.stdout) if d and d["kind"] == "PrometheusRule"]
    assert doc["metadata"]["name"] == "slo-sloexporter-checkout"
    assert doc["spec"] == yaml.safe_load(path.read_text())["spec"]
    assert promtool_check([doc], tmp_path) == 1


def test_extra_rules_that_are_not_a_prometheus_rule_fail_clearly(helm):
    res = template(helm, {"prometheusRule": {"extra": {"oops": "groups: []"}}})
    assert res.returncode != 0
    assert '"oops" is not a PrometheusRule written by `sloexporter generate' in res.stderr


def sloexporter_selectors(node: Any, aggregated: bool = False) -> Iterator[tuple[str, bool]]:
    """(metric, under an aggregation that drops pod/instance) for each selector."""
    if isinstance(node, list):
        for item in node:
            yield from sloexporter_selectors(item, aggregated)
        return
    if isinstance(node, promql_parser.AggregateExpr):
        modifier = node.modifier
        keeps_shard = modifier is not None and (
            modifier.type == promql_parser.AggModifierType.Without
            or {"pod", "instance"} & set(modifier.labels))
        aggregated = aggregated or not keeps_shard
    if isinstance(node, promql_parser.VectorSelector):
        if node.name and node.name.startswith("sloexporter_"):
            yield node.name, aggregated
        return
    for attr in ("expr", "lhs", "rhs", "args", "vector_selector"):
        child = getattr(node, attr, None)
        if child is not None:
            yield from sloexporter_selectors(child, aggregated)


def test_every_slo_query_on_exporter_metrics_aggregates_across_shards(helm):
    """A series lives in one shard only: each query must sum/count/max over the pods."""
    docs = [d for d in render(helm, "defaults") if d["kind"] == "PrometheusRule"]
    seen = set()
    for doc in docs:
        for group in doc["spec"]["groups"]:
            for r in group["rules"]:
                for metric, aggregated in sloexporter_selectors(promql_parser.parse(r["expr"])):
                    assert aggregated, f"{r.get('record') or r.get('alert')}: {metric}"
                    seen.add(metric)
    # the platform SLOs read every family the SLIs are built on
    assert {"sloexporter_argocd_app_synced", "sloexporter_argocd_app_healthy",
            "sloexporter_argocd_app_sync_operations_total",
            "sloexporter_backup_last_success_timestamp_seconds",
            "sloexporter_certificate_not_after_timestamp_seconds"} <= seen


def test_the_aggregation_check_catches_a_per_pod_query():
    bad = promql_parser.parse('sum by (instance) (sloexporter_argocd_app_synced) '
                              '+ on() group_left sloexporter_backup_runs_total')
    assert [a for _, a in sloexporter_selectors(bad)] == [False, False]


def test_dashboards_are_configmaps_labelled_for_the_sidecar(helm):
    files = sorted((CHART / "files" / "dashboards").glob("*.json"))
    docs = render(helm, {"dashboards": {"label": "my_dashboard", "labelValue": "yes"}})
    maps = [d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" not in d["data"]]
    assert len(maps) == len(files)
    for cm in maps:
        assert cm["metadata"]["labels"]["my_dashboard"] == "yes"
        [(name, text)] = cm["data"].items()
        assert json.loads(text) == json.loads((CHART / "files" / "dashboards" / name)
                                              .read_text())


