"""`sloexporter serve`: the aiohttp app that exposes what the sources see.

/metrics concatenates pre-rendered bytes (Prometheus text, or OpenMetrics when asked,
gzip when asked); /healthz says the process lives; /readyz is 200 only once every
enabled source has completed its first list (or probe round).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from sloexporter.config import Config, load_config, parse_listen
from sloexporter.sources.argocd import ArgoCDSource
from sloexporter.sources.backups import BackupsSource
from sloexporter.sources.base import Source
from sloexporter.sources.certificates import SECRETS, TLS_SECRET_SELECTOR, CertificatesSource
from sloexporter.sources.discovery import DiscoverySource
from sloexporter.sources.http_probe import HTTPProbeConfig, HTTPProber
from sloexporter.sources.informer import Informer, SelfMetrics, WatchSettings
from sloexporter.sources.manifests import ManifestFeed
from sloexporter.sources.prober import Prober
from sloexporter.sources.store import Shard
from sloexporter.sources.tls_probe import TLSProbeConfig, TLSProber
from sloexporter.specs.errors import SpecErrors

log = logging.getLogger("sloexporter")

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_COUNTER = re.compile(rb"^# TYPE (\S+)_total counter$", re.M)
STOP_GRACE = 1.0


def openmetrics_headers(text: bytes) -> bytes:
    """Rename counter families in HELP/TYPE lines: OpenMetrics drops the `_total`."""
    for name in set(_COUNTER.findall(text)):
        text = text.replace(b"# HELP " + name + b"_total ", b"# HELP " + name + b" ")
        text = text.replace(b"# TYPE " + name + b"_total counter", b"# TYPE " + name + b" counter")
    return text


class Exporter:
    """Sources, probers and how they are fed: from a cluster or from manifests."""

    def __init__(self, config: Config, shard: Shard, manifests: Path | None = None) -> None:
        self.config = config
        self.manifests = manifests
        self.metrics = SelfMetrics()
        src = config.sources
        self.tls = TLSProber(config.tls_probe or TLSProbeConfig()) \
            if config.tls_probe or (src.certificates.enabled and src.certificates.ingresses) \
            else None
        self.http = HTTPProber(config.http_probe or HTTPProbeConfig()) \
            if config.http_probe or src.services.enabled else None
        self.sources: list[Source] = []
        if src.argocd.enabled:
            self.sources.append(ArgoCDSource(self.metrics, shard))
        if src.backups.enabled:
            self.sources.append(BackupsSource(self.metrics, shard, velero=src.backups.velero))
        if src.certificates.enabled:
            self.sources.append(CertificatesSource(
                self.metrics, shard, cert_manager=src.certificates.cert_manager,
                tls_secrets=src.certificates.tls_secrets,
                probe_samples=self.tls.certificate_samples if self.tls else None))
        discovery = DiscoverySource(
            self.metrics, shard,
            tls=self.tls if src.certificates.enabled and src.certificates.ingresses else None,
            http=self.http if src.services.enabled else None)
        if discovery.resources:
            self.sources.append(discovery)
        self.informers: dict[str, list[Informer]] = {s.name: [] for s in self.sources}
        self.feed: ManifestFeed | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._api: Any = None

    @property
    def probers(self) -> list[Prober]:
        return [p for p in (self.tls, self.http) if p is not None]

    def _scope(self, source: Source) -> Any:
        return getattr(self.config.sources, "services" if source.name == "discovery"
                       else source.name)

    async def start(self) -> None:
        if self.manifests is not None:
            self.feed = ManifestFeed(self.manifests, self.sources, self.metrics)
            self.feed.prime()  # before the probers start, so their first round has its targets
            self._tasks.append(asyncio.create_task(self.feed.run()))
        elif self.config.cluster.mode != "none":
            self._api = await connect(self.config)
            self._start_informers()
        self._tasks += [asyncio.create_task(p.run()) for p in self.probers]

    def _start_informers(self) -> None:
        w = self.config.watch
        for source in self.sources:
            scope = self._scope(source)
            for resource in source.resources:
                namespaces: list[str] = list(scope.namespaces)
                field_selector = scope.field_selector
                if resource == SECRETS:
                    certs = self.config.sources.certificates
                    namespaces = list(certs.secret_namespaces) or namespaces
                    field_selector = TLS_SECRET_SELECTOR
                for ns in namespaces or [None]:
                    settings = WatchSettings(
                        namespace=ns, label_selector=scope.label_selector,
                        field_selector=field_selector, page_size=w.page_size,
                        timeout_seconds=w.timeout_seconds, connect_timeout=w.connect_timeout,
                        watchdog_seconds=w.watchdog_seconds)
                    informer = Informer(self._api, resource, source, source.name,
                                        self.metrics, settings)
                    self.informers[source.name].append(informer)
                    self._tasks.append(asyncio.create_task(informer.run()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_GRACE)
        for prober in self.probers:
            close = getattr(prober, "aclose", None)
            if close is not None:
                await asyncio.wait_for(close(), STOP_GRACE)
        if self._api is not None:
            await asyncio.wait_for(self._api.close(), STOP_GRACE)

    def ready(self) -> bool:
        if self.feed is not None:
            fed = self.feed.loaded.is_set()
        else:
            fed = all(i.listed.is_set() for group in self.informers.values() for i in group)
        return fed and all(p.ready() for p in self.probers)

    def up(self) -> dict[str, bool]:
        status = {s.name: all(i.up for i in self.informers[s.name]) for s in self.sources}
        status.update({p.name: p.up() for p in self.probers})
        return status

    def render(self, openmetrics: bool = False) -> bytes:
        parts: list[bytes] = []
        for source in self.sources:
            parts.extend(source.render(openmetrics))
        tail = b"".join(p.render_probe_families() if p is self.tls else p.render()
                        for p in self.probers)  # type: ignore[attr-defined]
        tail += self.metrics.render(self.up()).encode()
        if openmetrics:
            parts.append(openmetrics_headers(tail))
            parts.append(b"# EOF\n")
        else:
            parts.append(tail)
        return b"".join(parts)


async def connect(config: Config) -> Any:
    """A kubernetes_asyncio ApiClient for the configured cluster."""
    from kubernetes_asyncio import client
    from kubernetes_asyncio import config as kconfig

    cfg = client.Configuration()
    mode = config.cluster.mode
    if mode == "in-cluster" or (mode == "auto" and os.environ.get("KUBERNETES_SERVICE_HOST")):
        kconfig.load_incluster_config(client_configuration=cfg)
    else:
        await kconfig.load_kube_config(config_file=config.cluster.kubeconfig,
                                       context=config.cluster.context,
                                       client_configuration=cfg)
    return client.ApiClient(cfg)


class GzipCache:
    """The last compressed body per format: most scrapes see an unchanged store.

    Comparing bytes costs a memcmp; compressing 10 MB costs tens of ms, done off the loop
    so watch events keep flowing meanwhile.
    """

    def __init__(self) -> None:
        self._last: dict[bool, tuple[bytes, bytes]] = {}

    async def compress(self, body: bytes, openmetrics: bool) -> bytes:
        last = self._last.get(openmetrics)
        if last is not None and last[0] == body:
            return last[1]
        packed = await asyncio.to_thread(gzip.compress, body, compresslevel=1)
        self._last[openmetrics] = (body, packed)
        return packed


def build_app(exporter: Exporter) -> web.Application:
    cache = GzipCache()

    async def metrics(request: web.Request) -> web.Response:
        openmetrics = "application/openmetrics-text" in request.headers.get("Accept", "")
        body = exporter.render(openmetrics)
        headers = {"Content-Type": OPENMETRICS if openmetrics else TEXT}
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body = await cache.compress(body, openmetrics)
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if exporter.ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="waiting for the first list of every source\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def serve(exporter: Exporter, host: str, port: int) -> None:
    runner = web.AppRunner(build_app(exporter), access_log=None, shutdown_timeout=STOP_GRACE)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("listening on %s:%d", host, port)
        await exporter.start()
        await stop.wait()
        log.info("stopping")
    finally:
        await exporter.stop()
        await runner.cleanup()


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML config (default: every source "
                        "on with its defaults)")
    parser.add_argument("--manifests", metavar="DIR", help="read Kubernetes objects from the "
                        "YAML files in DIR instead of a cluster, reloading on change")
    parser.add_argument("--listen", metavar="HOST:PORT", help="default 0.0.0.0:9469")
    parser.add_argument("--shard", type=int, default=0, help="this replica's shard (0-based)")
    parser.add_argument("--total-shards", type=int, default=1, help="number of shards")
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"))


def run_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config) if args.config else Config()
        host, port = parse_listen(args.listen or config.listen)
    except SpecErrors as exc:
        for err in exc.errors:
            print(err, file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not 0 <= args.shard < max(args.total_shards, 1):
        print("error: --shard must be between 0 and --total-shards - 1", file=sys.stderr)
        return 2
    manifests = Path(args.manifests) if args.manifests else None
    if manifests is not None and not manifests.is_dir():
        print(f"error: --manifests {manifests}: no such folder", file=sys.stderr)
        return 2
    exporter = Exporter(config, Shard(args.shard, args.total_shards), manifests)
    try:
        asyncio.run(serve(exporter, host, port))
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # kubeconfig problems and the like: one clear line
        print(f"error: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0
