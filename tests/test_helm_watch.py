"""The chart's watch-related objects with the real helm: RBAC verbs, NetworkPolicy, image.tag.

The RBAC is also exercised on a real kube-apiserver: tests/kube_real.py binds the chart's
rendered ClusterRole to the exporter's user, which every real-cluster test uses.
"""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.helm_util import K8S, helm_path, one, render, template
from tests.kube_real import KubeCluster

pytest_plugins = ["tests.kube_real"]

helm = pytest.fixture(scope="module", name="helm")(helm_path)


def rules(docs: list[dict]) -> list[dict]:
    return [r for d in docs if d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]


SECRETS_ON = {"config": {"sources": {"certificates": {"tls_secrets": True}}}}


@pytest.mark.parametrize("values", [SECRETS_ON, {**SECRETS_ON, "namespaces": ["team-a"]},
                                    {"config": {"sources": {"certificates": {
                                        "tls_secrets": True,
                                        "secret_namespaces": ["ingress-certs"]}}}}])
def test_rbac_is_list_and_watch_only_secrets_included(helm, values):
    found = rules(render(helm, values))
    assert found and all(r["verbs"] == ["list", "watch"] for r in found), found
    assert any("secrets" in r["resources"] for r in found)


def test_the_exporter_user_may_list_secrets_but_not_get_one(kube_cluster: KubeCluster):
    """On the real server, with the chart's rendered ClusterRole bound."""
    c = kube_cluster
    c.ensure_namespace("rbac-check")
    c.create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": "s", "namespace": "rbac-check"}, "data": {"x": "eA=="}},
             ok=(201, 409))
    assert c.request("GET", "/api/v1/namespaces/rbac-check/secrets", user="exporter")[0] == 200
    status, body = c.request("GET", "/api/v1/namespaces/rbac-check/secrets/s", user="exporter")
    assert status == 403 and 'cannot get resource "secrets"' in body["message"]
    assert c.request("GET", "/api/v1/secrets?watch=true&timeoutSeconds=1",
                     user="exporter")[0] == 200


def test_network_policy_limits_ingress_to_prometheus_and_egress_to_api_dns_probes(helm):
    values = {"networkPolicy": {
        "enabled": True,
        "prometheusSelector": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}},
        "apiServerCIDRs": ["10.0.0.1/32"]}}
    policy = one(render(helm, values), "NetworkPolicy")
    kubernetes_validate.validate(policy, K8S, strict=True)
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = spec["ingress"]
    assert ingress["from"] == [values["networkPolicy"]["prometheusSelector"]]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    dns, api, tls, in_cluster = spec["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert api == {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}],
                   "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]}
    assert tls == {"ports": [{"port": 443, "protocol": "TCP"}]}
    assert in_cluster == {"to": [{"namespaceSelector": {}}]}


def test_network_policy_defaults_and_open_variants(helm):
    policy = one(render(helm, {"networkPolicy": {"enabled": True}}), "NetworkPolicy")
    kubernetes_validate.validate(policy, K8S, strict=True)
    assert policy["spec"]["ingress"][0]["from"] == [{
        "namespaceSelector": {},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    assert "to" not in policy["spec"]["egress"][1]  # no CIDRs: any address, API ports only
    open_ = one(render(helm, {"networkPolicy": {
        "enabled": True, "prometheusSelector": None, "restrictEgress": False}}),
        "NetworkPolicy")
    assert "from" not in open_["spec"]["ingress"][0] and "egress" not in open_["spec"]
    assert open_["spec"]["policyTypes"] == ["Ingress"]
    assert not [d for d in render(helm, {}) if d["kind"] == "NetworkPolicy"]


@pytest.mark.parametrize("tag", ["v1.2.3", "0.1.0-rc.1", "latest", "sha-0a1b2c_d"])
def test_a_valid_image_tag_renders(helm, tag):
    res = template(helm, {"image": {"tag": tag}})
    assert res.returncode == 0, res.stderr
    assert f"sloexporter:{tag}" in res.stdout


@pytest.mark.parametrize("tag", ["my tag", "-x", ".x", "v1\nimage: evil", "a" * 129,
                                 "v1@sha256:abc", "v1:2"])
def test_a_bad_image_tag_fails_with_its_path(helm, tag):
    res = template(helm, {"image": {"tag": tag}})
    assert res.returncode != 0
    assert "image.tag: Does not match pattern" in res.stderr, res.stderr
