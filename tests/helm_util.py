"""Render the Helm chart with the real helm, for the chart tests."""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.tools import ROOT, require_tool

CHART = ROOT / "helm" / "sloexporter"
CRDS = ROOT.parent / "shared" / "crds" / "prometheus-operator"
K8S = "1.30"
MONITORING = "monitoring.coreos.com"
OPERATOR_APIS = (f"{MONITORING}/v1", f"{MONITORING}/v1alpha1")
VERBS = ["list", "watch"]  # all an informer does; no get
SOURCES = ("argocd", "backups", "certificates", "services")


def only(source: str) -> dict[str, Any]:
    """Values with every source off but `source`."""
    return {"config": {"sources": {s: {"enabled": s == source} for s in SOURCES}}}


EVERYTHING = {
    "sharding": {"enabled": True, "replicas": 3},
    "config": {"sources": {
        "backups": {"velero": True},
        "certificates": {"tls_secrets": True, "secret_namespaces": ["ingress-certs"]},
    }, "tls_probe": {"targets": [{"address": "example.org:443"}]},
        "watch": {"page_size": 200}},
    "serviceMonitor": {"enabled": False},  # the PodMonitor scrapes instead
    "podMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"labels": {"release": "kube-prometheus-stack"}},
    "dashboards": {"label": "grafana_dashboard", "annotations": {"grafana_folder": "SLOs"}},
    "alertmanagerConfig": {
        "enabled": True,
        "route": {"receiver": "slack", "groupBy": ["service", "slo"],
                  "matchers": [{"name": "severity", "value": "page|ticket",
                                "matchType": "=~"}]},
        "receivers": [{"name": "slack", "slackConfigs": [{
            "apiURL": {"name": "slack-webhook", "key": "url"}, "channel": "#slo"}]}],
    },
    "networkPolicy": {
        "enabled": True,
        "from": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "monitoring"}}}],
        "egress": [{"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443,
                                                                  "protocol": "TCP"}]}],
    },
    "podDisruptionBudget": {"enabled": True},
}

#: name -> (values, whether the cluster serves the prometheus-operator APIs)
COMBOS: dict[str, tuple[dict[str, Any], bool]] = {
    "defaults": ({}, True),
    "argocd-only": (only("argocd"), True),
    "backups-only": (only("backups"), True),
    "certificates-only": (only("certificates"), True),
    "services-only": (only("services"), True),
    "sharding": ({"sharding": {"enabled": True, "replicas": 3}}, True),
    "namespaces-only": ({"namespaces": ["team-a", "team-b"]}, True),
    "no-prometheus-operator-crds": ({"alertmanagerConfig": {"enabled": True}}, False),
    "everything-on": (EVERYTHING, True),
    "controller": ({"controller": {"enabled": True, "namespaces": ["team-a", "team-b"],
                                   "ruleLabels": {"release": "kube-prometheus-stack"}}}, True),
}



def helm_path() -> str:
    return require_tool("helm")


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=60)


def template(helm: str, values: dict[str, Any], crds: bool = True,
             *extra: str) -> subprocess.CompletedProcess[str]:
    apis = [arg for api in OPERATOR_APIS for arg in ("--api-versions", api)] if crds else []
    # values travel as JSON on stdin: JSON is YAML, and no temp file is needed
    return subprocess.run(
        [helm, "template", "slo", str(CHART), "--namespace", "monitoring",
         "--kube-version", K8S, "-f", "-", *apis, *extra],
        input=json.dumps(values), capture_output=True, text=True, timeout=60)


@cache
def _render(helm: str, combo: str) -> tuple[dict[str, Any], ...]:
    values, crds = COMBOS[combo]
    out = template(helm, values, crds)
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def render(helm: str, combo: str | dict[str, Any]) -> list[dict[str, Any]]:
    if isinstance(combo, str):
        return list(_render(helm, combo))
    out = template(helm, combo)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}s"
    return found[0]


def serve_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [cm] = [d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d["data"]]
    return yaml.safe_load(cm["data"]["config.yaml"])


def workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [w] = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    return w



def promtool_check(docs: list[dict[str, Any]], tmp_path: Path) -> int:
    """`promtool check rules` on the groups of every PrometheusRule; returns how many."""
    promtool = require_tool("promtool")
    files = []
    for doc in (d for d in docs if d["kind"] == "PrometheusRule"):
        path = tmp_path / f"{doc['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump({"groups": doc["spec"]["groups"]}))
        files.append(str(path))
    out = subprocess.run([promtool, "check", "rules", *files], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return len(files)


