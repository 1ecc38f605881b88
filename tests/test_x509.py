from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from sloexporter.x509 import CertInfo, X509Error, parse_der, parse_pem_chain
from tests.certs import DAY, make_ca, make_leaf, now, tls_secret


def test_parses_every_certificate_of_a_bundle_in_order():
    root = make_ca("Root")
    inter = make_ca("Intermediate", issuer=root)
    leaf = make_leaf(inter, "app.example.com", dns_names=("app.example.com",))
    infos = parse_pem_chain(leaf.cert_pem + inter.cert_pem + root.cert_pem)
    assert [i.subject_cn for i in infos] == ["app.example.com", "Intermediate", "Root"]
    assert [i.issuer_cn for i in infos] == ["Intermediate", "Root", "Root"]
    assert [i.is_ca for i in infos] == [False, True, True]
    assert [i.self_signed for i in infos] == [False, False, True]
    assert infos[0].dns_names == ("app.example.com",)


def test_dates_are_unix_seconds_and_serial_is_lower_hex():
    end = now() + 10 * DAY
    leaf = make_leaf(make_ca(), not_after=end)
    (info,) = parse_pem_chain(leaf.cert_pem)
    assert info.not_after == end.timestamp()
    assert info.not_before == leaf.not_before
    assert info.serial == format(leaf.cert.serial_number, "x")
    assert info.serial == info.serial.lower()
    assert not info.expired(now().timestamp())


def test_expired_and_not_yet_valid_are_judged_against_the_given_time():
    info = parse_der(make_leaf(None, not_before=now() - 10 * DAY,
                               not_after=now() - DAY).cert_der)
    assert info.expired(now().timestamp())
    future = parse_der(make_leaf(None, not_before=now() + DAY).cert_der)
    assert future.not_yet_valid(now().timestamp())


def test_der_and_pem_give_the_same_facts():
    leaf = make_leaf(make_ca())
    assert parse_der(leaf.cert_der) == parse_pem_chain(leaf.cert_pem)[0]
    assert isinstance(parse_der(leaf.cert_der), CertInfo)


def test_private_key_blocks_are_skipped_without_decoding():
    leaf = make_leaf(make_ca())
    # A key block whose body is not even base64: decoding it would fail.
    garbage_key = b"-----BEGIN PRIVATE KEY-----\n!!!not base64!!!\n-----END PRIVATE KEY-----\n"
    infos = parse_pem_chain(garbage_key + leaf.cert_pem + leaf.key_pem)
    assert [i.subject_cn for i in infos] == ["localhost"]


def test_tls_secret_crt_round_trips():
    root = make_ca()
    leaf = make_leaf(root)
    secret = tls_secret("web", "tls", leaf, root)
    infos = parse_pem_chain(base64.b64decode(secret["data"]["tls.crt"]))
    assert len(infos) == 2


@pytest.mark.parametrize("data, reason", [
    (b"", "no PEM certificate"),
    (b"hello world", "no PEM certificate"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "certificate 1"),
    (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "no PEM certificate"),
])
def test_unparsable_pem_raises_x509error_with_a_short_reason(data: bytes, reason: str):
    with pytest.raises(X509Error, match=reason):
        parse_pem_chain(data)


def test_one_bad_block_fails_the_bundle():
    good = make_leaf(None).cert_pem
    bad = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    with pytest.raises(X509Error, match="certificate 2"):
        parse_pem_chain(good + bad)


def test_garbage_der_raises_x509error():
    with pytest.raises(X509Error):
        parse_der(b"\x30\x03\x02\x01\x00")


def test_oversized_bundle_is_refused():
    pem = make_leaf(None).cert_pem
    with pytest.raises(X509Error, match="more than"):
        parse_pem_chain(pem * 40)


def test_certificate_without_common_name_has_empty_cn():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Org")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
            .not_valid_after(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
            .sign(key, hashes.SHA256()))
    info = parse_der(cert.public_bytes(Encoding.DER))
    assert (info.subject_cn, info.issuer_cn, info.serial) == ("", "", "1")
    assert info.not_after == dt.datetime(2030, 1, 1, tzinfo=dt.UTC).timestamp()
