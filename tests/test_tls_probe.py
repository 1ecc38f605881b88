"""TLS probes against real TLS servers on 127.0.0.1 with certificates made in the test."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
from pydantic import ValidationError

from sloexporter import names
from sloexporter.sources.prober import Prober
from sloexporter.sources.tls_probe import (
    TLSProbeConfig,
    TLSProber,
    TLSTarget,
    _Presented,
    _refine,
)
from sloexporter.x509 import parse_der
from tests.certs import DAY, Issued, make_ca, make_leaf, now, write_chain
from tests.promtext import samples, series, value

TIMEOUT = 2.0

ServerFactory = Callable[..., AbstractAsyncContextManager[int]]


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serve(handler: Handler, ssl_ctx: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """A server on 127.0.0.1 running `handler` per connection; yields its port."""
    running: set[asyncio.Task[None]] = set()

    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        running.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handler(reader, writer)
        except (OSError, ssl.SSLError):
            pass  # the prober aborts its connections; that is expected
        except asyncio.CancelledError:
            pass  # Python 3.11 logs a cancelled connection callback as an error
        finally:
            writer.close()
            running.discard(asyncio.current_task())  # type: ignore[arg-type]

    server = await asyncio.start_server(wrapped, "127.0.0.1", 0, ssl=ssl_ctx)
    async with server:
        yield server.sockets[0].getsockname()[1]
        # Handlers end once the prober's connections are gone; wait, bounded.
        async with asyncio.timeout(5):
            while running:
                await asyncio.sleep(0.01)


async def _drain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()


@pytest.fixture
def tls_server(tmp_path: Path) -> ServerFactory:
    """Start a TLS server presenting `leaf` + `chain`; yields its port."""

    @asynccontextmanager
    async def start(leaf: Issued, *chain: Issued) -> AsyncIterator[int]:
        crt, key = write_chain(tmp_path, f"srv{id(leaf)}", leaf, *chain)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        async with serve(_drain, ctx) as port:
            yield port

    return start


@pytest.fixture
def root() -> Issued:
    return make_ca("Test Root CA")


@pytest.fixture
def ca_file(tmp_path: Path, root: Issued) -> Path:
    path = tmp_path / "ca.pem"
    path.write_bytes(root.cert_pem)
    return path


def prober_for(port: int, ca_file: Path | None, *, server_name: str = "localhost",
               timeout: float = TIMEOUT, **extra: object) -> TLSProber:
    target = {"address": f"127.0.0.1:{port}", "server_name": server_name}
    return TLSProber(TLSProbeConfig(targets=[target], timeout=timeout, ca_file=ca_file,
                                    **extra))


async def probe_once(port: int, ca_file: Path | None, **kw: object) -> bytes:
    prober = prober_for(port, ca_file, **kw)
    await prober.probe_round()
    return prober.render()


def failure_reasons(text: bytes) -> list[str]:
    return [s["reason"] for s in series(text, names.TLS_PROBE_FAILURE_INFO)]


def leaf_series(text: bytes) -> list[dict[str, str]]:
    return series(text, names.CERT_NOT_AFTER, source="tls_probe")


async def test_trusted_certificate_succeeds_and_exports_the_leaf(tls_server, root, ca_file):
    leaf = make_leaf(root)
    async with tls_server(leaf) as port:
        text = await probe_once(port, ca_file)
    target = f"127.0.0.1:{port}"
    assert value(text, names.TLS_PROBE_SUCCESS, target=target) == 1
    assert 0 < value(text, names.TLS_PROBE_DURATION, target=target) < TIMEOUT
    assert failure_reasons(text) == []
    labels = {"source": "tls_probe", "namespace": "", "name": target,
              "subject_cn": "localhost", "issuer_cn": "Test Root CA",
              "serial": leaf.serial_hex}
    assert value(text, names.CERT_NOT_AFTER, **labels) == leaf.not_after
    assert value(text, names.CERT_NOT_BEFORE, **labels) == leaf.not_before


async def test_server_name_is_sent_as_sni(tmp_path, root, ca_file):
    seen: list[str | None] = []
    crt, key = write_chain(tmp_path, "sni", make_leaf(root, dns_names=("api.example.com",)))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    ctx.sni_callback = lambda sslobj, name, c: seen.append(name)  # type: ignore[assignment]
    async with serve(_drain, ctx) as port:
        text = await probe_once(port, ca_file, server_name="api.example.com")
    assert seen == ["api.example.com"]
    assert value(text, names.TLS_PROBE_SUCCESS, target=f"127.0.0.1:{port}") == 1


async def test_leaf_near_expiry_still_succeeds_and_shows_its_not_after(tls_server, root,
                                                                       ca_file):
    leaf = make_leaf(root, not_after=now() + 2 * DAY)
    async with tls_server(leaf) as port:
        text = await probe_once(port, ca_file)
    assert value(text, names.TLS_PROBE_SUCCESS, target=f"127.0.0.1:{port}") == 1
    (labels,) = leaf_series(text)
    days_left = (value(text, names.CERT_NOT_AFTER, **labels) - time.time()) / 86400
    assert 1.9 < days_left <= 2


@pytest.mark.parametrize("make, reason", [
    (lambda root: make_leaf(root, not_before=now() - 30 * DAY, not_after=now() - DAY),
     "expired"),
    (lambda root: make_leaf(root, not_before=now() + DAY), "not_yet_valid"),
    (lambda root: make_leaf(root, dns_names=("other.example",), ip_addresses=()),
     "hostname_mismatch"),
    (lambda root: make_leaf(None), "self_signed"),
    (lambda root: make_leaf(make_ca("Some Other CA")), "unknown_ca"),
])
async def test_verification_failure_reports_reason_and_still_exports_leaf(
        tls_server, root, ca_file, make, reason):
    leaf = make(root)
    async with tls_server(leaf) as port:
        text = await probe_once(port, ca_file)
    assert value(text, names.TLS_PROBE_SUCCESS, target=f"127.0.0.1:{port}") == 0
    assert failure_reasons(text) == [reason]
    (labels,) = leaf_series(text)
    assert labels["serial"] == leaf.serial_hex
    assert value(text, names.CERT_NOT_AFTER, **labels) == leaf.not_after


async def test_other_verification_errors_are_verify_failed(tls_server, root, ca_file):
    not_a_ca = make_leaf(root, cn="not a CA")
    async with tls_server(make_leaf(not_a_ca), not_a_ca) as port:
        text = await probe_once(port, ca_file)
    assert failure_reasons(text) == ["verify_failed"]
    assert len(leaf_series(text)) == 1


async def test_expired_intermediate_is_reported_as_such(tls_server, root, ca_file):
    inter = make_ca("Old Intermediate", issuer=root, not_before=now() - 400 * DAY,
                    not_after=now() - DAY)
    leaf = make_leaf(inter)  # the leaf itself is valid
    async with tls_server(leaf, inter) as port:
        text = await probe_once(port, ca_file)
    assert failure_reasons(text) == ["expired_intermediate"]
    (labels,) = leaf_series(text)
    assert labels["issuer_cn"] == "Old Intermediate"


async def test_expired_trust_anchor_is_reported_as_expired_root(tls_server, tmp_path):
    old_root = make_ca("Old Root", not_before=now() - 400 * DAY, not_after=now() - DAY)
    (tmp_path / "old.pem").write_bytes(old_root.cert_pem)
    async with tls_server(make_leaf(old_root)) as port:
        text = await probe_once(port, tmp_path / "old.pem")
    assert failure_reasons(text) == ["expired_root"]


async def test_system_trust_store_rejects_a_test_ca(tls_server, root):
    async with tls_server(make_leaf(root)) as port:
        text = await probe_once(port, None)
    assert failure_reasons(text) == ["unknown_ca"]


@asynccontextmanager
async def silent_server(open_now: list[int], peak: list[int]) -> AsyncIterator[int]:
    """Accepts TCP and never answers; records how many connections are open at once."""
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_now[0] += 1
        peak[0] = max(peak[0], open_now[0])
        try:
            await reader.read()  # until the prober gives up and closes
        finally:
            open_now[0] -= 1

    async with serve(hold) as port:
        yield port


async def test_silent_server_times_out_within_the_bound():
    async with silent_server([0], [0]) as port:
        prober = prober_for(port, None, timeout=0.5)
        started = time.monotonic()
        await prober.probe_round()
        elapsed = time.monotonic() - started
    text = prober.render()
    assert failure_reasons(text) == ["timeout"]
    assert elapsed < 1.5
    assert 0.45 <= value(text, names.TLS_PROBE_DURATION, target=f"127.0.0.1:{port}") < 1.5
    assert leaf_series(text) == []


async def test_concurrency_bound_limits_open_connections():
    open_now, peak = [0], [0]
    async with silent_server(open_now, peak) as port:
        targets = [{"address": f"127.0.0.1:{port}", "name": f"t{i}"} for i in range(5)]
        prober = TLSProber(TLSProbeConfig(targets=targets, timeout=0.3, concurrency=2))
        started = time.monotonic()
        await prober.probe_round()
        elapsed = time.monotonic() - started
    assert peak[0] == 2
    assert failure_reasons(prober.render()) == ["timeout"] * 5
    assert 0.85 <= elapsed < 2.5  # three waves of 0.3 s


async def test_closed_port_is_connection_refused():
    async with serve(_drain) as port:
        pass
    text = await probe_once(port, None)
    assert failure_reasons(text) == ["connection_refused"]


async def test_unresolvable_host_is_dns_error():
    prober = TLSProber(TLSProbeConfig(targets=["no-such-host.invalid:443"], timeout=5))
    await prober.probe_round()
    assert failure_reasons(prober.render()) == ["dns_error"]


async def test_plain_tcp_server_that_closes_is_a_handshake_error():
    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    async with serve(close_at_once) as port:
        text = await probe_once(port, None)
    assert failure_reasons(text) == ["handshake_error"]


async def test_discovered_ingress_hosts_are_probed_and_replaced(tls_server, root, ca_file):
    async with tls_server(make_leaf(root)) as port:
        prober = TLSProber(TLSProbeConfig(ca_file=ca_file, timeout=TIMEOUT))
        prober.set_discovered_targets(
            "ingress/web/shop", [f"localhost:{port}", "*.wildcard.example", "bad host"])
        await prober.probe_round()
        assert value(prober.render(), names.TLS_PROBE_SUCCESS, target=f"localhost:{port}") == 1
        # a wildcard is passed over; an unusable host fails with its own series
        assert value(prober.render(), names.TLS_PROBE_SUCCESS, target="bad host") == 0
        assert value(prober.render(), names.TLS_PROBE_FAILURE_INFO, target="bad host",
                     reason="invalid_target") == 1
        assert len(samples(prober.render())) == 7  # success, duration, 2 cert dates; 3
        prober.set_discovered_targets("ingress/web/shop", [])
        await prober.probe_round()
    assert series(prober.render(), names.TLS_PROBE_SUCCESS) == []


async def test_static_target_wins_over_a_discovered_duplicate(tls_server, root, ca_file):
    async with tls_server(make_leaf(root)) as port:
        prober = TLSProber(TLSProbeConfig(
            targets=[f"localhost:{port}"], ca_file=ca_file, timeout=TIMEOUT))
        prober.set_discovered_targets("ingress/a/b", [f"localhost:{port}"])
        assert len(prober.targets()) == 1


async def test_hostile_names_are_escaped(tls_server, root, ca_file):
    weird = 'a"b\\c\nd'
    async with tls_server(make_leaf(root, cn=weird)) as port:
        prober = TLSProber(TLSProbeConfig(
            targets=[{"address": f"127.0.0.1:{port}", "server_name": "localhost",
                      "name": weird}], ca_file=ca_file, timeout=TIMEOUT))
        await prober.probe_round()
    text = prober.render()
    assert value(text, names.TLS_PROBE_SUCCESS, target=weird) == 1
    (labels,) = leaf_series(text)
    assert labels["subject_cn"] == weird and labels["name"] == weird


async def test_run_becomes_ready_after_the_first_round_and_cancels_cleanly(
        tls_server, root, ca_file):
    async with tls_server(make_leaf(root)) as port:
        prober = prober_for(port, ca_file, interval=0.2)
        assert isinstance(prober, Prober) and prober.name == "tls_probe"
        assert not prober.ready()
        task = asyncio.create_task(prober.run())
        async with asyncio.timeout(5):
            while not prober.ready():
                await asyncio.sleep(0.01)
        assert prober.up()
        assert value(prober.render(), names.TLS_PROBE_SUCCESS,
                     target=f"127.0.0.1:{port}") == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_unusable_ca_file_marks_the_prober_down_without_raising(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    prober = TLSProber(TLSProbeConfig(targets=["127.0.0.1:1"], ca_file=bad))
    await prober.probe_round()
    assert not prober.up()
    assert not prober.ready()


def test_certificate_samples_are_available_without_headers():
    prober = TLSProber(TLSProbeConfig())
    assert prober.render_probe_families().count(b"# TYPE") == 3
    assert set(prober.certificate_samples()) == {names.CERT_NOT_AFTER, names.CERT_NOT_BEFORE}
    assert samples(prober.render()) == {}


def test_config_accepts_strings_mappings_and_durations():
    cfg = TLSProbeConfig.model_validate({
        "targets": ["example.com", "example.org:8443", "[::1]:9443",
                    {"address": "10.0.0.1", "server_name": "api.example.com"}],
        "interval": "1m", "timeout": 2.5, "concurrency": 4})
    assert [t.label for t in cfg.targets] == [
        "example.com:443", "example.org:8443", "[::1]:9443", "10.0.0.1:443"]
    assert cfg.targets[3].sni == "api.example.com"
    assert (cfg.interval, cfg.timeout) == (60, 2.5)


@pytest.mark.parametrize("bad", [
    {"targets": ["a.example", "a.example:443"]},  # same label twice
    {"targets": ["*.example.com"]},
    {"targets": ["host:99999"]},
    {"targets": ["bad host"]},
    {"targets": ["host\n.example"]},
    {"targets": [{"address": "a.example", "server_name": "b.example\n"}]},
    {"targets": [{"address": "a.example", "sni": "x"}]},
    {"interval": 0},
    {"warn": "30d"},
])
def test_config_rejects_bad_input(bad):
    with pytest.raises(ValidationError):
        TLSProbeConfig.model_validate(bad)


def test_target_label_defaults_to_host_and_port():
    assert TLSTarget.model_validate("example.com").label == "example.com:443"
    assert TLSTarget.model_validate(" example.com:8443\n").label == "example.com:8443"


def test_without_a_chain_api_a_valid_leaf_means_an_expired_intermediate():
    # Pure reasoning step used when the interpreter cannot show the presented chain.
    valid = parse_der(make_leaf(None).cert_der)
    expired = parse_der(make_leaf(None, not_before=now() - 9 * DAY,
                                  not_after=now() - DAY).cert_der)
    t = time.time()
    assert _refine("expired", _Presented(valid, [], chain_visible=False), t) == \
        "expired_intermediate"
    assert _refine("expired", _Presented(expired, [], chain_visible=False), t) == "expired"
    assert _refine("expired", _Presented(None, [], chain_visible=False), t) == "expired"
    assert _refine("unknown_ca", _Presented(valid, [], chain_visible=True), t) == "unknown_ca"


@pytest.mark.parametrize("certificates", [False, True])
async def test_probe_certificate_dates_do_not_depend_on_the_certificates_source(
        tls_server, root, ca_file, certificates):
    """The whole exporter's /metrics body, with the certificates source off and on."""
    from sloexporter.config import Config
    from sloexporter.server import Exporter
    from sloexporter.sources.store import Shard

    leaf = make_leaf(root)
    async with tls_server(leaf) as port:
        config = Config.model_validate({
            "cluster": {"mode": "none"},
            "sources": {"certificates": {"enabled": certificates}},
            "tls_probe": {"targets": [{"address": f"127.0.0.1:{port}",
                                       "server_name": "localhost"}],
                          "ca_file": str(ca_file), "timeout": TIMEOUT}})
        exporter = Exporter(config, Shard())
        assert exporter.tls is not None
        await exporter.tls.probe_round()
        body = exporter.render()
    target = f"127.0.0.1:{port}"
    assert value(body, names.TLS_PROBE_SUCCESS, target=target) == 1
    dates = series(body, names.CERT_NOT_AFTER, source="tls_probe", name=target)
    assert [d["serial"] for d in dates] == [leaf.serial_hex]
    assert body.count(f"# TYPE {names.CERT_NOT_AFTER} ".encode()) == 1  # one header
