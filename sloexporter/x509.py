"""Certificate facts the exporter needs, read with `cryptography`.

Used for TLS Secrets (a PEM bundle in `tls.crt`) and for live TLS probes (DER from the
handshake). Only blocks labelled CERTIFICATE are ever decoded: private-key blocks in a
bundle are skipped by their label, so key material is never base64-decoded or parsed.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

# Only the label decides what a block is; the body is matched lazily up to its own END.
_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL
)
_CERT_LABEL = b"CERTIFICATE"
# A hostile Secret could hold megabytes of PEM; no real chain has more certificates.
MAX_CHAIN_LENGTH = 32


class X509Error(Exception):
    """Input that is not a usable certificate; the message is a short reason."""


@dataclass(frozen=True, slots=True)
class CertInfo:
    not_before: float  # unix seconds
    not_after: float  # unix seconds
    subject_cn: str
    issuer_cn: str
    serial: str  # lower-case hex, no leading zeros
    is_ca: bool
    self_signed: bool  # subject == issuer (an issuer-name check, not a signature check)
    dns_names: tuple[str, ...]
    fingerprint_sha256: str  # lower-case hex

    def expired(self, now: float) -> bool:
        return now > self.not_after

    def not_yet_valid(self, now: float) -> bool:
        return now < self.not_before


def parse_pem_chain(data: bytes) -> list[CertInfo]:
    """Every certificate of a PEM bundle, in bundle order.

    Raises X509Error when there is no certificate or one certificate block is unusable.
    """
    return [cert_info(c) for c in load_pem_certificates(data)]


def parse_der(data: bytes) -> CertInfo:
    """One DER-encoded certificate (as `getpeercert(binary_form=True)` returns it)."""
    return cert_info(load_der_certificate(data))


def load_pem_certificates(data: bytes) -> list[x509.Certificate]:
    """The `cryptography` certificates of a PEM bundle; non-certificate blocks are skipped."""
    certs: list[x509.Certificate] = []
    for match in _PEM_BLOCK.finditer(data):
        if match.group(1) != _CERT_LABEL:
            continue  # a key or parameters block: skipped without decoding
        if len(certs) >= MAX_CHAIN_LENGTH:
            raise X509Error(f"more than {MAX_CHAIN_LENGTH} certificates in bundle")
        try:
            der = base64.b64decode(match.group(2), validate=False)
        except (binascii.Error, ValueError) as exc:
            raise X509Error(f"certificate {len(certs) + 1}: bad base64") from exc
        certs.append(_load_der(der, f"certificate {len(certs) + 1}"))
    if not certs:
        raise X509Error("no PEM certificate found")
    return certs


def load_der_certificate(data: bytes) -> x509.Certificate:
    return _load_der(data, "certificate")


def _load_der(der: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise X509Error(f"{what}: not a valid X.509 DER structure") from exc


def cert_info(cert: x509.Certificate) -> CertInfo:
    """Facts of one parsed certificate; X509Error if a field cannot be decoded."""
    # cryptography decodes some fields lazily, so a malformed one fails here, not at load.
    try:
        return CertInfo(
            not_before=_timestamp(cert.not_valid_before_utc),
            not_after=_timestamp(cert.not_valid_after_utc),
            subject_cn=_common_name(cert.subject),
            issuer_cn=_common_name(cert.issuer),
            serial=format(cert.serial_number, "x"),
            is_ca=_is_ca(cert),
            self_signed=cert.subject == cert.issuer,
            dns_names=_dns_names(cert),
            fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        )
    except (ValueError, TypeError, x509.DuplicateExtension,
            x509.UnsupportedGeneralNameType) as exc:
        raise X509Error(f"undecodable certificate field: {type(exc).__name__}") from exc


def _timestamp(value: datetime) -> float:
    return value.timestamp()


def _common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return ""
    value = attrs[0].value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        ext = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return bool(ext.value.ca)


def _dns_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(ext.value.get_values_for_type(x509.DNSName))
