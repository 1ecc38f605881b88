"""Live TLS endpoints: handshake, verify, and export the leaf certificate's dates.

Each probe is one TCP connect + TLS handshake with SNI, verified against the system trust
store (or `ca_file`) with hostname checking, all under one timeout. When verification
fails, a second handshake without verification (under the same deadline) fetches the
certificates the server presents, so the leaf's dates are exported anyway and the
failure reason can be refined.

Expired intermediates: OpenSSL reports "certificate has expired" for any certificate in
the path, and Python 3.11 exposes neither the error depth nor (publicly) the chain. We
reason it out from the second handshake: an expired leaf is `expired`; a valid leaf means
the expired certificate is above it. Where the interpreter's `_ssl` object offers
`get_unverified_chain()` (CPython >= 3.10, public from 3.13) the presented chain is parsed
with `cryptography`: an expired presented intermediate gives `expired_intermediate`, and
none gives `expired_root` (the trust anchor from the store has expired). Without that
API a valid leaf gives `expired_intermediate` by elimination.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, FilePath, ValidationError, model_validator

from sloexporter import names
from sloexporter.exposition import family_header, sample_line
from sloexporter.sources.probing import (
    InvalidTarget,
    LabelName,
    ProbeLoop,
    Seconds,
    check_unique_labels,
    string_shorthand,
)
from sloexporter.x509 import CertInfo, X509Error, parse_der

log = logging.getLogger(__name__)

SOURCE = "tls_probe"
DEFAULT_PORT = 443
# RFC 1123 names: at most 253 characters, labels of 1-63 (IDNA would refuse longer ones
# at connect time, every round)
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                       r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$")

# OpenSSL X509_V_ERR_* codes (stable across OpenSSL 1.1 and 3.x) -> our reasons.
_VERIFY_REASONS = {
    2: "unknown_ca",  # unable to get issuer certificate
    9: "not_yet_valid",
    10: "expired",  # refined to expired_intermediate or expired_root by _refine
    18: "self_signed",  # depth zero self-signed
    19: "unknown_ca",  # self-signed root in the presented chain, not trusted
    20: "unknown_ca",  # unable to get local issuer certificate
    21: "unknown_ca",  # unable to verify the first certificate
    62: "hostname_mismatch",
    64: "hostname_mismatch",  # IP address mismatch
}
VERIFY_FAILED = "verify_failed"  # any other verification error

_DER = getattr(ssl, "_ssl").ENCODING_DER  # noqa: B009 - private module, read once


def parse_host_port(address: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` -> (host, port); ValueError if unusable."""
    text = address.strip()
    port_text = ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid address {address!r}")
        port_text = rest[1:]
        ipaddress.IPv6Address(host)  # raises ValueError
    else:
        host, _, port_text = text.partition(":") if text.count(":") == 1 else (text, "", "")
        if not _HOSTNAME.fullmatch(host):
            raise ValueError("invalid host name: dot-separated labels of 1-63 letters, digits "
                             "or hyphens, 253 characters at most (wildcards cannot be probed)")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"invalid port in {address!r}")
        return host, int(port_text)
    return host, default_port


class TLSTarget(BaseModel):
    """A TLS endpoint. In YAML either a string `host[:port]` or a mapping."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = Field(description="host[:port]; the port defaults to 443")
    server_name: str | None = Field(
        default=None, description="SNI and verified name; default: host")
    name: LabelName | None = Field(
        default=None, description="the `target` label; default: host:port")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return string_shorthand(value, "address")

    @model_validator(mode="after")
    def _check(self) -> Self:
        parse_host_port(self.address)
        if self.server_name is not None and not _HOSTNAME.fullmatch(self.server_name):
            raise ValueError(f"invalid server_name {self.server_name!r}")
        return self

    @property
    def host(self) -> str:
        return parse_host_port(self.address)[0]

    @property
    def port(self) -> int:
        return parse_host_port(self.address)[1]

    @property
    def sni(self) -> str:
        return self.server_name or self.host

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class TLSProbeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    targets: list[TLSTarget] = Field(default_factory=list)
    interval: Seconds = 60.0
    timeout: Seconds = Field(default=10.0, description="bounds connect + handshake(s) of one probe")
    concurrency: int = Field(default=10, ge=1, le=1000)
    ca_file: FilePath | None = Field(default=None, description="PEM CAs; replaces the system store")

    @model_validator(mode="after")
    def _unique_labels(self) -> Self:
        check_unique_labels(self.targets, "TLS")
        return self


@dataclass(frozen=True, slots=True)
class TLSResult:
    success: bool
    duration: float  # connect + verified handshake, seconds
    reason: str | None  # None on success
    leaf: CertInfo | None  # None when no certificate was obtained


@dataclass(frozen=True, slots=True)
class _Presented:
    leaf: CertInfo | None
    intermediates: list[CertInfo]
    chain_visible: bool  # False when the interpreter offers no presented-chain API


class TLSProber(ProbeLoop[TLSTarget, TLSResult]):
    name = SOURCE

    def __init__(self, config: TLSProbeConfig) -> None:
        self.config = config
        self._probe_bytes = b""
        self._cert_samples: dict[str, bytes] = {}
        self._verify_ctx: ssl.SSLContext | None = None
        self._fetch_ctx: ssl.SSLContext | None = None
        super().__init__(static=config.targets, interval=config.interval,
                         concurrency=config.concurrency)

    def _prepare_round(self) -> None:
        # Rebuilt every round so a rotated ca_file is picked up; a bad one marks us down.
        cafile = str(self.config.ca_file) if self.config.ca_file else None
        self._verify_ctx = ssl.create_default_context(cafile=cafile)
        fetch = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        fetch.check_hostname = False
        fetch.verify_mode = ssl.CERT_NONE
        self._fetch_ctx = fetch

    def _discovered_target(self, raw: str) -> TLSTarget | None:
        if raw.startswith("*."):
            return None  # a wildcard names no endpoint: nothing to probe, nothing wrong
        try:
            return TLSTarget(address=raw)
        except ValidationError as exc:
            raise ValueError(str(exc.errors()[0].get("msg", "invalid address"))
                             .removeprefix("Value error, ")) from None

    def _invalid(self, target: InvalidTarget) -> TLSResult:
        return TLSResult(False, 0.0, target.reason, None)

    async def _probe(self, target: TLSTarget) -> TLSResult:
        assert self._verify_ctx is not None and self._fetch_ctx is not None
        start = time.monotonic()
        duration: float | None = None
        reason: str | None = None
        leaf: CertInfo | None = None
        try:
            async with asyncio.timeout(self.config.timeout):
                try:
                    presented = await _handshake(target, self._verify_ctx, self.config.timeout,
                                                 chain=False)
                    return TLSResult(True, time.monotonic() - start, None, presented.leaf)
                except ssl.SSLCertVerificationError as exc:
                    duration = time.monotonic() - start
                    reason = _VERIFY_REASONS.get(exc.verify_code, VERIFY_FAILED)
                    presented = await _handshake(target, self._fetch_ctx, self.config.timeout,
                                                 chain=True)
                    leaf = presented.leaf
                    reason = _refine(reason, presented, time.time())
        except TimeoutError:
            reason = reason or "timeout"  # a timed-out fetch keeps the verify reason
        except ConnectionRefusedError:
            reason = reason or "connection_refused"
        except socket.gaierror:
            reason = reason or "dns_error"
        except ssl.SSLError:
            reason = reason or "handshake_error"
        except (OSError, EOFError):
            reason = reason or "connection_error"
        except ValueError:  # e.g. IDNA refusing a name the checks above let through
            reason = reason or "invalid_target"
        log.debug("tls probe %s failed: %s", target.label, reason)
        elapsed = duration if duration is not None else time.monotonic() - start
        return TLSResult(False, elapsed, reason, leaf)

    def _render_round(self, results: list[tuple[TLSTarget | InvalidTarget, TLSResult]]
                      ) -> bytes:
        self._probe_bytes = _render_probe_families(results)
        self._cert_samples = _certificate_samples(results)
        return self._probe_bytes + b"".join(
            family_header(f, CERT_HELP[f], "gauge").encode() + lines
            for f, lines in self._cert_samples.items())

    def render_probe_families(self) -> bytes:
        """Only the tls_probe_* families: for a server that merges certificate families."""
        return self._probe_bytes

    def certificate_samples(self) -> dict[str, bytes]:
        """Sample lines (no HELP/TYPE) of the certificate families, by family name.

        `sloexporter_certificate_*` is also exported by the certificates source; a server
        that prints each family's header once puts these lines under its own header.
        """
        return dict(self._cert_samples)


async def _handshake(target: TLSTarget, ctx: ssl.SSLContext, timeout: float, *,
                     chain: bool) -> _Presented:
    """Connect, handshake with SNI, read the presented certificates, drop the connection."""
    # The caller's asyncio.timeout bounds this; the handshake timeout is a second guard.
    _, writer = await asyncio.open_connection(
        target.host, target.port, ssl=ctx, server_hostname=target.sni,
        ssl_handshake_timeout=timeout)
    try:
        sslobj = writer.get_extra_info("ssl_object")
        return _presented(sslobj, chain)
    finally:
        # abort(): no close_notify round trip, which a silent server could stall.
        writer.transport.abort()


def _presented(sslobj: ssl.SSLObject | None, chain: bool) -> _Presented:
    """The leaf and, when `chain` is asked for and readable, the presented intermediates."""
    if sslobj is None:
        return _Presented(None, [], chain_visible=False)
    leaf = _parse_or_none(sslobj.getpeercert(binary_form=True))
    ders = _presented_chain_der(sslobj) if chain else None
    if ders is None:
        return _Presented(leaf, [], chain_visible=False)
    intermediates = [i for d in ders[1:] if (i := _parse_or_none(d)) is not None]
    return _Presented(leaf, intermediates, chain_visible=True)


def _presented_chain_der(sslobj: ssl.SSLObject) -> list[bytes] | None:
    """DER of every certificate the peer presented, leaf first; None if unreadable."""
    public = getattr(sslobj, "get_unverified_chain", None)  # Python >= 3.13: DER bytes
    private = getattr(getattr(sslobj, "_sslobj", None), "get_unverified_chain", None)
    try:
        if public is not None:
            return [bytes(d) for d in public() or []]
        if private is not None:  # Python 3.10-3.12: _ssl.Certificate objects
            return [c.public_bytes(_DER) for c in private() or []]
    except (AttributeError, TypeError, ValueError, ssl.SSLError):
        pass  # the API changed shape: fall back to reasoning from the leaf alone
    return None


def _parse_or_none(der: bytes | None) -> CertInfo | None:
    if not der:
        return None
    try:
        return parse_der(der)
    except X509Error as exc:
        log.debug("unparsable peer certificate: %s", exc)
        return None


def _refine(reason: str, presented: _Presented, now: float) -> str:
    """Tell an expired leaf from an expired certificate above it (see module docstring)."""
    leaf = presented.leaf
    if reason != "expired" or leaf is None or leaf.expired(now):
        return reason  # an expired leaf is reported as such even if more has expired
    if presented.chain_visible and not any(c.expired(now) for c in presented.intermediates):
        return "expired_root"  # nothing presented has expired: a CA from the trust store has
    # The leaf is valid, so the expired certificate is above it: an intermediate, seen in
    # the presented chain or (without the chain API) inferred by elimination.
    return "expired_intermediate"


_FAMILIES = (
    (names.TLS_PROBE_SUCCESS, "1 if the TLS handshake and verification succeeded."),
    (names.TLS_PROBE_DURATION, "Seconds spent on TCP connect and verified TLS handshake."),
    (names.TLS_PROBE_FAILURE_INFO, "1 for a failing TLS probe, with the failure reason."),
)
CERT_HELP = {
    names.CERT_NOT_AFTER: "Certificate notAfter, unix seconds.",
    names.CERT_NOT_BEFORE: "Certificate notBefore, unix seconds.",
}


def _render_probe_families(results: list[tuple[TLSTarget | InvalidTarget, TLSResult]]) -> bytes:
    parts: list[str] = []
    for family, help_text in _FAMILIES:
        parts.append(family_header(family, help_text, "gauge"))
        for target, result in results:
            labels = {"target": target.label}
            if family == names.TLS_PROBE_SUCCESS:
                parts.append(sample_line(family, labels, 1 if result.success else 0))
            elif family == names.TLS_PROBE_DURATION:
                parts.append(sample_line(family, labels, result.duration))
            elif result.reason is not None:
                parts.append(sample_line(family, {**labels, "reason": result.reason}, 1))
    return "".join(parts).encode()


def _certificate_samples(results: list[tuple[TLSTarget | InvalidTarget, TLSResult]]
                         ) -> dict[str, bytes]:
    out = {family: bytearray() for family in CERT_HELP}
    for target, result in results:
        leaf = result.leaf
        if leaf is None:
            continue
        labels = {"source": SOURCE, "namespace": "", "name": target.label,
                  "subject_cn": leaf.subject_cn, "issuer_cn": leaf.issuer_cn,
                  "serial": leaf.serial}
        out[names.CERT_NOT_AFTER] += sample_line(names.CERT_NOT_AFTER, labels,
                                                 leaf.not_after).encode()
        out[names.CERT_NOT_BEFORE] += sample_line(names.CERT_NOT_BEFORE, labels,
                                                  leaf.not_before).encode()
    return {family: bytes(lines) for family, lines in out.items()}
