"""The chart's RBAC: exactly get/list/watch on what the enabled sources read."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sloexporter.config import Config
from sloexporter.server import Exporter
from sloexporter.sources.store import Shard
from tests.helm_util import (
    COMBOS,
    SOURCES,
    VERBS,
    helm_path,
    one,
    only,
    render,
    serve_config,
)

pytestmark = pytest.mark.helm

helm = pytest.fixture(scope="module", name="helm")(helm_path)


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
    # the controller's Roles are checked by running it with them (test_controller.py)
    assert granted([d for d in docs if not d["metadata"]["name"].endswith(
        ("-controller", "-controller-lease"))]) == await watched(config)


