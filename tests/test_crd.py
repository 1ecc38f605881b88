"""The ServiceLevels CRD: generated from the model, structural, and accepted by a real
kube-apiserver, which takes valid specs and refuses malformed ones."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from sloexporter import crd
from tests.kube_real import KubeCluster
from tests.tools import ROOT

pytest_plugins = ["tests.kube_real"]

CRD_FILE = ROOT / "helm" / "sloexporter" / "crds" / "servicelevels.yaml"
NS = "crd-test"


def test_crd_file_is_generated_from_the_model() -> None:
    assert CRD_FILE.read_text(encoding="utf-8") == crd.render(), \
        "helm/sloexporter/crds/servicelevels.yaml differs from the model: run scripts/gen-crd.py"
    check = subprocess.run([sys.executable, "scripts/gen-crd.py", "--check"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr


def test_gen_crd_check_notices_a_stale_file(tmp_path: Path) -> None:
    # a copy of the repository layout whose CRD lacks a field the model has
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "gen-crd.py").write_text(
        (ROOT / "scripts" / "gen-crd.py").read_text())
    (tmp_path / "sloexporter").symlink_to(ROOT / "sloexporter")
    target = tmp_path / "helm" / "sloexporter" / "crds" / "servicelevels.yaml"
    target.parent.mkdir(parents=True)
    target.write_text(crd.render().replace("argocd_apps", "argocd_app"))
    check = subprocess.run([sys.executable, "scripts/gen-crd.py", "--check"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 1 and "run scripts/gen-crd.py" in check.stderr
    subprocess.run([sys.executable, "scripts/gen-crd.py"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=60)
    assert target.read_text() == crd.render()


def _nodes(node: Any, path: str = "") -> Any:
    yield path, node
    for key, child in (node.get("properties") or {}).items():
        yield from _nodes(child, f"{path}.{key}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from _nodes(node[key], f"{path}[{key}]")


def test_schema_is_structural() -> None:
    doc = yaml.safe_load(CRD_FILE.read_text())
    root = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    text = CRD_FILE.read_text()
    for word in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "const:", "title:"):
        assert word not in text, word
    for path, node in _nodes(root):
        untyped = node.get("x-kubernetes-preserve-unknown-fields") or \
            node.get("x-kubernetes-int-or-string")
        assert "type" in node or untyped, f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        assert "default" not in node, f"{path}: a default would rewrite the user's spec"
        assert not isinstance(node.get("exclusiveMinimum"), int | float) or \
            isinstance(node.get("exclusiveMinimum"), bool), path
    spec = root["properties"]["spec"]
    # the spec is the native one without apiVersion/kind; every model field is there
    from sloexporter.specs.native import ServiceLevels
    expected = {f.alias or n for n, f in ServiceLevels.model_fields.items()} - {"apiVersion",
                                                                                "kind"}
    assert set(spec["properties"]) == expected
    assert set(spec["required"]) == {"service", "slos"}
    slo = spec["properties"]["slos"]["items"]
    assert set(slo["properties"]["sli"]["properties"]) >= {"events", "ratio", "latency",
                                                           "threshold"}
    assert doc["spec"]["versions"][0]["subresources"] == {"status": {}}
    assert doc["spec"]["scope"] == "Namespaced" and doc["metadata"]["name"] == \
        "servicelevels.sloexporter.dev"


def native_to_object(path: Path, name: str, namespace: str = NS) -> dict[str, Any]:
    """A native spec file as a ServiceLevels object (the spec without apiVersion/kind)."""
    spec = yaml.safe_load(path.read_text())
    spec.pop("apiVersion"), spec.pop("kind")
    return {"apiVersion": "sloexporter.dev/v1", "kind": "ServiceLevels",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def install_crd(cluster: KubeCluster) -> None:
    """Apply the chart's CRD and wait until the apiserver serves it."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    deadline = time.monotonic() + 60
    while True:
        got = cluster.api("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                                 f"{crd.NAME}")
        conditions = {c["type"]: c for c in (got.get("status") or {}).get("conditions") or ()}
        assert "NonStructuralSchema" not in conditions, conditions["NonStructuralSchema"]
        if conditions.get("Established", {}).get("status") == "True":
            break
        assert time.monotonic() < deadline, conditions
        time.sleep(0.1)
    # a new CRD's storage can answer 404/429 for a moment after Established
    while cluster.request("GET", f"/apis/{crd.GROUP}/{crd.VERSION}/{crd.PLURAL}")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


@pytest.fixture
def cluster(kube_cluster: KubeCluster) -> KubeCluster:
    install_crd(kube_cluster)
    kube_cluster.ensure_namespace(NS)
    return kube_cluster


def _create(cluster: KubeCluster, obj: dict[str, Any]) -> tuple[int, Any]:
    path = f"/apis/sloexporter.dev/v1/namespaces/{obj['metadata']['namespace']}/servicelevels"
    return cluster.request("POST", path + "?fieldValidation=Strict", obj)


def test_real_apiserver_accepts_every_example(cluster: KubeCluster) -> None:
    files = sorted((ROOT / "examples" / "slos").glob("*.yaml"))
    files += sorted((ROOT / "examples" / "platforms").rglob("*.yaml"))
    created = 0
    for i, path in enumerate(files):
        docs = list(yaml.safe_load_all(path.read_text()))
        if not (len(docs) == 1 and isinstance(docs[0], dict)
                and docs[0].get("apiVersion") == "sloexporter.dev/v1"):
            continue
        obj = native_to_object(path, f"example-{i}")
        status, body = _create(cluster, obj)
        assert status == 201, (path, body)
        # stored as written: no defaults added, nothing pruned
        assert body["spec"] == obj["spec"], path
        created += 1
    assert created >= 5
    cluster.api("DELETE", f"/apis/sloexporter.dev/v1/namespaces/{NS}/servicelevels",
                ok=(200,))


@pytest.mark.parametrize(("mutate", "words"), [
    (lambda s: s.pop("service"), ["spec.service", "Required"]),
    (lambda s: s.update(slos=[]), ["spec.slos", "at least 1"]),
    (lambda s: s.update(labels={"team": 3}), ["spec.labels.team", "string"]),
    (lambda s: s["slos"][0].update(objectiv=99), ["unknown field", "objectiv"]),
    (lambda s: s["slos"][0]["sli"].update(http={"convention": "grpc"}),
     ["convention", "Unsupported value"]),
    (lambda s: s["slos"][0].update(sli="events"), ["spec.slos[0].sli", "object"]),
])
def test_real_apiserver_refuses_malformed_objects(cluster: KubeCluster, mutate: Any,
                                                  words: list[str]) -> None:
    obj = native_to_object(ROOT / "examples" / "slos" / "checkout-api.yaml", "bad")
    mutate(obj["spec"])
    status, body = _create(cluster, obj)
    assert status in (400, 422), body  # 400: strict field validation
    for word in words:
        assert word in body["message"], body["message"]


def test_status_subresource_takes_a_ready_condition(cluster: KubeCluster) -> None:
    obj = native_to_object(ROOT / "examples" / "slos" / "auth.yaml", "auth-status")
    _create(cluster, obj)
    path = f"/apis/sloexporter.dev/v1/namespaces/{NS}/servicelevels/auth-status"
    status = {"observedGeneration": 1, "slos": 2,
              "generated": [{"apiVersion": "monitoring.coreos.com/v1",
                             "kind": "PrometheusRule", "name": "sloexporter-auth"}],
              "conditions": [{"type": "Ready", "status": "True", "reason": "Generated",
                              "message": "ok", "observedGeneration": 1,
                              "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    got = cluster.api("PATCH", path + "/status", {"status": status},
                      content_type="application/merge-patch+json")
    assert got["status"] == status
    # a write to the main resource cannot change the status
    got = cluster.api("PATCH", path, {"status": {"slos": 9}},
                      content_type="application/merge-patch+json")
    assert got["status"]["slos"] == 2
    table = cluster.kubectl("get", "servicelevels", "-n", NS, "auth-status")
    assert "auth" in table and "True" in table and "Generated" in table
    cluster.api("DELETE", path)
