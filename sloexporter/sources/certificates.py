"""Certificates: cert-manager Certificates and TLS Secrets.

A Secret's `tls.key` is never read: only `tls.crt` is taken from the object, and the
object itself is not kept. Live endpoints are the TLS prober's (`tls_probe.py`); its
certificate lines are rendered under this source's family headers.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any

from sloexporter import names
from sloexporter.sources.base import BadInput, Source, field, meta, timestamp
from sloexporter.sources.informer import Resource
from sloexporter.sources.store import Family, Obj, Sample
from sloexporter.x509 import X509Error, parse_pem_chain

CERTIFICATES = Resource("cert-manager.io", "v1", "certificates", "Certificate")
SECRETS = Resource("", "v1", "secrets", "Secret")
TLS_SECRET_SELECTOR = "type=kubernetes.io/tls"
#: a Secret over this size is not a certificate chain anyone means to export
MAX_CRT_BYTES = 1 << 20


def _cert_labels(cert: Obj) -> dict[str, str]:
    m = meta(cert)
    spec = cert.get("spec") or {}
    dns = spec.get("dnsNames") or []
    return {"source": "certificate", "namespace": str(m.get("namespace", "")),
            "name": str(m.get("name", "")),
            "subject_cn": str(spec.get("commonName") or (dns[0] if dns else "")),
            "issuer_cn": str(field(spec, "issuerRef", "name") or ""), "serial": ""}


def cert_not_after(cert: Obj) -> Iterable[Sample]:
    value = timestamp(field(cert, "status", "notAfter"))
    if value is not None:
        yield _cert_labels(cert), value


def cert_not_before(cert: Obj) -> Iterable[Sample]:
    value = timestamp(field(cert, "status", "notBefore"))
    if value is not None:
        yield _cert_labels(cert), value


def cert_ready(cert: Obj) -> Iterable[Sample]:
    for cond in field(cert, "status", "conditions") or ():
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            m = meta(cert)
            yield ({"source": "certificate", "namespace": str(m.get("namespace", "")),
                    "name": str(m.get("name", ""))}, int(cond.get("status") == "True"))
            return


FAMILIES = (
    Family(names.CERT_NOT_AFTER, "Certificate notAfter.", "gauge"),
    Family(names.CERT_NOT_BEFORE, "Certificate notBefore.", "gauge"),
    Family(names.CERT_READY, "1 when cert-manager's Ready condition is True.", "gauge",
           cert_ready),
)


def secret_certificates(secret: Obj) -> dict[str, list[Sample]]:
    """Rows for every certificate in the Secret's `tls.crt`; `tls.key` is not touched."""
    raw = field(secret, "data", "tls.crt")
    if not isinstance(raw, str) or not raw:
        raise BadInput("no_tls_crt")
    if len(raw) > MAX_CRT_BYTES:
        raise BadInput("too_large")
    try:
        chain = parse_pem_chain(base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError, X509Error):
        raise BadInput("unparsable_pem") from None
    m = meta(secret)
    # a certificate listed twice (fullchain.pem with chain.pem appended) is one series;
    # two that share subject, issuer and serial keep the one that expires first
    unique: dict[tuple[str, str, str], Any] = {}
    for cert in chain:
        ident = (cert.subject_cn, cert.issuer_cn, cert.serial)
        if ident not in unique or cert.not_after < unique[ident].not_after:
            unique[ident] = cert
    rows: dict[str, list[Sample]] = {names.CERT_NOT_AFTER: [], names.CERT_NOT_BEFORE: []}
    for cert in unique.values():
        labels = {"source": "secret", "namespace": str(m.get("namespace", "")),
                  "name": str(m.get("name", "")), "subject_cn": cert.subject_cn,
                  "issuer_cn": cert.issuer_cn, "serial": cert.serial}
        rows[names.CERT_NOT_AFTER].append((labels, cert.not_after))
        rows[names.CERT_NOT_BEFORE].append((labels, cert.not_before))
    return rows


class CertificatesSource(Source):
    name = "certificates"
    families = FAMILIES

    def __init__(self, *args: Any, cert_manager: bool = True, tls_secrets: bool = True,
                 probe_samples: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cert_manager = cert_manager
        self.tls_secrets = tls_secrets
        #: callable returning the TLS prober's certificate lines, merged at render time
        self.probe_samples = probe_samples

    @property
    def resources(self) -> tuple[Resource, ...]:
        return tuple(r for r, on in ((CERTIFICATES, self.cert_manager),
                                     (SECRETS, self.tls_secrets)) if on)

    def update(self, resource: Resource, key: str, obj: Obj) -> None:
        if resource == SECRETS:
            if obj.get("type") not in (None, "kubernetes.io/tls"):
                return  # field selectors are advisory on some servers; filter again
            self.store.put(key, secret_certificates(obj))
            return
        self.store.put(key, {names.CERT_NOT_AFTER: list(cert_not_after(obj)),
                             names.CERT_NOT_BEFORE: list(cert_not_before(obj)),
                             names.CERT_READY: list(cert_ready(obj))})

    def render(self, openmetrics: bool = False) -> Iterable[bytes]:
        extra: Mapping[str, bytes] | None = self.probe_samples() if self.probe_samples else None
        return self.store.render(openmetrics, extra)
