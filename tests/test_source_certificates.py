"""Certificates: cert-manager status, TLS Secret chains; key material is never exported."""

from __future__ import annotations

import base64
import copy

from sloexporter import names
from sloexporter.sources.certificates import CERTIFICATES, SECRETS, CertificatesSource
from tests.certs import make_ca, make_leaf, tls_secret
from tests.promtext import samples, series, value
from tests.sources_util import feed, metrics, text

CERT = {
    "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
    "metadata": {"name": "shop-tls", "namespace": "shop", "uid": "c1"},
    "spec": {"secretName": "shop-tls", "dnsNames": ["shop.example.com"],
             "issuerRef": {"name": "letsencrypt-prod", "kind": "ClusterIssuer"}},
    "status": {"notBefore": "2026-10-01T00:00:00Z", "notAfter": "2026-12-30T00:00:00Z",
               "conditions": [{"type": "Ready", "status": "True"}]},
}
CM = {"source": "certificate", "namespace": "shop", "name": "shop-tls"}


def test_cert_manager_certificate():
    src = CertificatesSource(metrics())
    feed(src, CERTIFICATES, CERT)
    out = text(src)
    full = {**CM, "subject_cn": "shop.example.com", "issuer_cn": "letsencrypt-prod", "serial": ""}
    assert value(out, names.CERT_NOT_AFTER, **full) == 1798588800
    assert value(out, names.CERT_NOT_BEFORE, **full) == 1790812800
    assert value(out, names.CERT_READY, **CM) == 1


def test_not_ready_and_unissued_certificate():
    src = CertificatesSource(metrics())
    pending = copy.deepcopy(CERT)
    pending["status"] = {"conditions": [{"type": "Ready", "status": "False"}]}
    feed(src, CERTIFICATES, pending)
    out = text(src)
    assert value(out, names.CERT_READY, **CM) == 0
    assert series(out, names.CERT_NOT_AFTER) == []  # absent, never 0


def test_tls_secret_whole_chain_and_no_key_material():
    ca = make_ca("Root")
    inter = make_ca("Intermediate", issuer=ca)
    leaf = make_leaf(inter, "shop.example.com", dns_names=("shop.example.com",))
    secret = tls_secret("shop", "shop-tls", leaf, inter)
    src = CertificatesSource(metrics())
    feed(src, SECRETS, secret)
    out = text(src)
    got = series(out, names.CERT_NOT_AFTER, source="secret")
    assert {s["subject_cn"] for s in got} == {"shop.example.com", "Intermediate"}
    leaf_labels = next(s for s in got if s["subject_cn"] == "shop.example.com")
    assert leaf_labels["issuer_cn"] == "Intermediate"
    assert leaf_labels["serial"] == leaf.serial_hex
    assert value(out, names.CERT_NOT_AFTER, **leaf_labels) == leaf.not_after
    key_b64 = secret["data"]["tls.key"]
    key_body = leaf.key_pem.decode().splitlines()[1]
    assert key_b64 not in out and key_body not in out and "PRIVATE" not in out


def test_a_certificate_listed_twice_in_a_chain_is_one_series():
    """fullchain.pem with chain.pem appended lists the intermediate twice: two identical
    series, which Prometheus rejects as duplicates."""
    ca = make_ca("Root")
    inter = make_ca("Intermediate", issuer=ca)
    leaf = make_leaf(inter, "shop.example.com", dns_names=("shop.example.com",))
    src = CertificatesSource(metrics())
    feed(src, SECRETS, tls_secret("shop", "shop-tls", leaf, inter, inter, leaf))
    got = series(text(src), names.CERT_NOT_AFTER, source="secret")  # parses: no duplicate
    assert sorted(s["subject_cn"] for s in got) == ["Intermediate", "shop.example.com"]
    assert src.metrics.skipped == {}


def test_secret_with_unparsable_pem_is_skipped_and_counted():
    m = metrics()
    src = CertificatesSource(m)
    bad = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
           "metadata": {"name": "bad", "namespace": "x", "uid": "s9"},
           "data": {"tls.crt": base64.b64encode(b"-----BEGIN CERTIFICATE-----\nnope\n"
                                                b"-----END CERTIFICATE-----\n").decode()}}
    no_crt = {**bad, "metadata": {"name": "empty", "namespace": "x", "uid": "s8"}, "data": {}}
    not_b64 = {**bad, "metadata": {"name": "b64", "namespace": "x", "uid": "s7"},
               "data": {"tls.crt": "%%%"}}
    feed(src, SECRETS, bad, no_crt, not_b64)
    assert m.skipped == {("certificates", "unparsable_pem"): 2,
                         ("certificates", "no_tls_crt"): 1}
    assert text(src) == ""


def test_a_secret_that_turns_bad_drops_its_old_series():
    leaf = make_leaf(make_ca(), "a.example")
    secret = tls_secret("x", "a", leaf)
    src = CertificatesSource(metrics())
    feed(src, SECRETS, secret)
    assert series(text(src), names.CERT_NOT_AFTER)
    broken = copy.deepcopy(secret)
    broken["data"]["tls.crt"] = base64.b64encode(b"garbage").decode()
    feed(src, SECRETS, broken, event="MODIFIED")
    assert series(text(src), names.CERT_NOT_AFTER) == []


def test_probe_lines_share_the_family_header():
    line = (f'{names.CERT_NOT_AFTER}{{source="tls_probe",namespace="",name="h:443",'
            'subject_cn="h",issuer_cn="i",serial="1"} 5\n').encode()
    src = CertificatesSource(metrics(), probe_samples=lambda: {names.CERT_NOT_AFTER: line})
    feed(src, CERTIFICATES, CERT)
    out = text(src)
    assert out.count(f"# TYPE {names.CERT_NOT_AFTER} gauge") == 1
    assert len(series(out, names.CERT_NOT_AFTER)) == 2
    samples(out)
