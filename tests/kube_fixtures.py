"""kmock 0.8 as a Kubernetes API server on 127.0.0.1, for the informer and `serve` tests.

- `kube`: kmock with every resource the exporter watches registered for discovery.
- `seed(kmock, objects)`: put objects on the server (silently: no watch event).
- `write_kubeconfig(url, path)` / `kubeconfig`: how a `serve` process finds the server.
- `api_client`: a kubernetes-asyncio ApiClient on kmock over real HTTP.

kubernetes-asyncio's own watch helper sends `?watch=True`; kmock only recognises
`watch=true` and would answer with a LIST body. The informer sends `watch=true` itself, but
the fixture normalises it so any client works (notes/tooling.md).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import kmock as km
import pytest
from kmock._internal import parsing
from kubernetes_asyncio import client

#: every resource a source watches: kmock's key ("group/version/plural") -> kind
RESOURCES: dict[str, str] = {
    "argoproj.io/v1alpha1/applications": "Application",
    "batch/v1/cronjobs": "CronJob",
    "batch/v1/jobs": "Job",
    "velero.io/v1/backups": "Backup",
    "velero.io/v1/schedules": "Schedule",
    "cert-manager.io/v1/certificates": "Certificate",
    "v1/secrets": "Secret",
    "networking.k8s.io/v1/ingresses": "Ingress",
    "v1/services": "Service",
}


@pytest.fixture(autouse=True)
def watch_true_normalised(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Lower-case the `watch` query value before kmock classifies the request."""
    original = parsing.guess_k8s

    def guess_k8s(k8s: Any, method: Any, query: dict[str, str]) -> Any:
        if "watch" in query:
            query = {**query, "watch": str(query["watch"]).lower()}
        return original(k8s, method, query)

    monkeypatch.setattr(parsing, "guess_k8s", guess_k8s)
    yield


def register(kmock: Any, group: str, version: str, plural: str, kind: str) -> str:
    """Register a namespaced resource for discovery; returns kmock's resource key."""
    key = f"{group}/{version}/{plural}".lstrip("/")
    kmock.resources[key] = km.ResourceInfo(kind=kind, namespaced=True)
    return key


def resource_key(obj: dict[str, Any]) -> str:
    """kmock's key for an object, from its apiVersion and kind."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    for key, known in RESOURCES.items():
        if known == kind and key.rsplit("/", 1)[0] == api_version:
            return key
    raise KeyError(f"{api_version} {kind} is not in RESOURCES")


def seed(kmock: Any, objects: Iterable[dict[str, Any]]) -> int:
    """Store objects on the server; returns how many. No watcher sees this (kmock limit)."""
    n = 0
    for obj in objects:
        m = obj["metadata"]
        kmock.objects[resource_key(obj), m.get("namespace"), m["name"]] = obj
        n += 1
    return n


@pytest.fixture
def kube(kmock: Any) -> Any:
    """kmock serving every resource in RESOURCES."""
    for key, kind in RESOURCES.items():
        kmock.resources[key] = km.ResourceInfo(kind=kind, namespaced=True)
    return kmock


def server_url(kmock: Any) -> str:
    return str(kmock.url).rstrip("/")


def write_kubeconfig(url: str, path: Path) -> Path:
    """A kubeconfig (JSON is YAML) with one context on `url` and a dummy token."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": url}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test"}}],
        "users": [{"name": "test", "user": {"token": "test"}}]}))
    return path


@pytest.fixture
def kubeconfig(kube: Any, tmp_path: Path) -> Path:
    return write_kubeconfig(server_url(kube), tmp_path / "kubeconfig")


@pytest.fixture
async def api_client(kmock: Any) -> AsyncIterator[client.ApiClient]:
    """A kubernetes-asyncio ApiClient pointed at kmock over real HTTP."""
    config = client.Configuration(host=server_url(kmock))
    async with client.ApiClient(config) as api:
        yield api
