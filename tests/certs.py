"""Certificates generated in the test process, for TLS servers and TLS Secret test data.

`make_ca` / `make_leaf` build a chain with chosen validity windows; `Issued` carries the
certificate, its key and PEM encodings. EC P-256 keys keep generation fast.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DAY = dt.timedelta(days=1)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def not_after(self) -> float:
        return self.cert.not_valid_after_utc.timestamp()

    @property
    def not_before(self) -> float:
        return self.cert.not_valid_before_utc.timestamp()

    @property
    def serial_hex(self) -> str:
        return format(self.cert.serial_number, "x")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _window(not_before: dt.datetime | None,
            not_after: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    start = not_before if not_before is not None else now() - DAY
    return start, not_after if not_after is not None else now() + 90 * DAY


def make_ca(cn: str = "Test Root CA", *, issuer: Issued | None = None,
            not_before: dt.datetime | None = None,
            not_after: dt.datetime | None = None) -> Issued:
    """A CA certificate: self-signed root, or an intermediate when `issuer` is given."""
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _window(not_before, not_after)
    signer = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True,
            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False)
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def make_leaf(issuer: Issued | None, cn: str = "localhost", *,
              dns_names: tuple[str, ...] = ("localhost",),
              ip_addresses: tuple[str, ...] = ("127.0.0.1",),
              not_before: dt.datetime | None = None,
              not_after: dt.datetime | None = None) -> Issued:
    """A server certificate signed by `issuer`, or self-signed when `issuer` is None."""
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _window(not_before, not_after)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False)
    return Issued(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


def write_chain(directory: Path, name: str, leaf: Issued,
                *intermediates: Issued) -> tuple[Path, Path]:
    """Write `name.crt` (leaf then intermediates) and `name.key`; return both paths."""
    crt = directory / f"{name}.crt"
    key = directory / f"{name}.key"
    crt.write_bytes(leaf.cert_pem + b"".join(i.cert_pem for i in intermediates))
    key.write_bytes(leaf.key_pem)
    return crt, key


def tls_secret(namespace: str, name: str, leaf: Issued, *chain: Issued) -> dict:
    """A kubernetes.io/tls Secret object (as a watch event's dict) holding this chain."""
    crt = leaf.cert_pem + b"".join(c.cert_pem for c in chain)
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"namespace": namespace, "name": name, "uid": f"uid-{namespace}-{name}"},
        "data": {"tls.crt": base64.b64encode(crt).decode(),
                 "tls.key": base64.b64encode(leaf.key_pem).decode()},
    }
