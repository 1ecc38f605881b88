"""`sloexporter serve`: the sources, their feeds, and the process around them.

/metrics concatenates pre-rendered bytes (Prometheus text, or OpenMetrics when asked,
gzip when asked); /healthz says the process lives; /readyz is 200 only once every
enabled source has completed its first list (or probe round), and names those that have
not. SIGTERM stops within 2 s; SIGHUP reloads the config (see docs/serve.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from sloexporter import __version__, names
from sloexporter.aio import in_thread, supervise
from sloexporter.config import Config, load_config, parse_listen
from sloexporter.endpoints import LANDING, SERVING, Serving, build_app, runner_for
from sloexporter.exposition import family_header, sample_line
from sloexporter.logs import setup_logging
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
from sloexporter.specs.errors import SpecErrors, print_startup_error

__all__ = ["LANDING", "SERVING", "Exporter", "build_app", "run_serve", "serve"]

log = logging.getLogger("sloexporter")

_COUNTER = re.compile(rb"^# TYPE (\S+)_total counter$", re.M)
#: SIGTERM to exit: each of the stop steps below gets a share of the README's 2 s
STOP_GRACE = 0.5
#: SIGTERM to exit at the latest, whatever is still running (the README says 2 s)
EXIT_DEADLINE = 1.6
#: a reloaded config replaces the running one once it is ready, or after this at most
RELOAD_READY_TIMEOUT = 30.0
#: the startup summary says which sources are still not ready after this
SUMMARY_AFTER = 30.0


def openmetrics_headers(text: bytes) -> bytes:
    """Rename counter families in HELP/TYPE lines: OpenMetrics drops the `_total`."""
    for name in set(_COUNTER.findall(text)):
        text = text.replace(b"# HELP " + name + b"_total ", b"# HELP " + name + b" ")
        text = text.replace(b"# TYPE " + name + b"_total counter", b"# TYPE " + name + b" counter")
    return text


def build_info() -> bytes:
    labels = {"version": __version__, "python_version": platform.python_version(),
              "python_implementation": platform.python_implementation()}
    return (family_header(names.BUILD_INFO, "Always 1; the labels say what is running.", "gauge")
            + sample_line(names.BUILD_INFO, labels, 1)).encode()


class ProcessMetrics:
    """prometheus_client's standard process_* families (CPU, memory, fds, start time)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, ProcessCollector

        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)

    def render(self, openmetrics: bool) -> bytes:
        if openmetrics:
            from prometheus_client.openmetrics.exposition import generate_latest

            return generate_latest(self.registry).removesuffix(b"# EOF\n")
        from prometheus_client import generate_latest as generate_text

        return generate_text(self.registry)


class StartError(Exception):
    """serve cannot start as configured; the message says what to do instead."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Exporter:
    """Sources, probers and how they are fed: from a cluster or from manifests."""

    def __init__(self, config: Config, shard: Shard, manifests: Path | None = None,
                 controller: Any = None) -> None:
        self.config = config
        self.controller_settings = controller  # ControllerSettings: serve --controller
        self.controller: Any = None
        self.manifests = manifests
        self.metrics = SelfMetrics()
        src = config.sources
        self.tls = TLSProber(config.tls_probe or TLSProbeConfig()) \
            if config.tls_probe or (src.certificates.enabled and src.certificates.ingresses) \
            else None
        self.http = HTTPProber(config.http_probe or HTTPProbeConfig()) \
            if config.http_probe or src.services.enabled else None
        self.sources: list[Source] = []
        self.certificates: CertificatesSource | None = None
        if src.argocd.enabled:
            self.sources.append(ArgoCDSource(self.metrics, shard))
        if src.backups.enabled:
            self.sources.append(BackupsSource(self.metrics, shard, velero=src.backups.velero))
        if src.certificates.enabled:
            self.certificates = CertificatesSource(
                self.metrics, shard, cert_manager=src.certificates.cert_manager,
                tls_secrets=src.certificates.tls_secrets,
                probe_samples=self.tls.certificate_samples if self.tls else None)
            self.sources.append(self.certificates)
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
        self._process = ProcessMetrics()
        self._build_info = build_info()

    @property
    def probers(self) -> list[Prober]:
        return [p for p in (self.tls, self.http) if p is not None]

    def _scope(self, source: Source) -> Any:
        return getattr(self.config.sources, "services" if source.name == "discovery"
                       else source.name)

    async def connect(self) -> None:
        """Find the cluster (unless fed from manifests); StartError with advice if none."""
        if self.manifests is None and self.config.cluster.mode != "none" and self._api is None:
            self._api = await connect(self.config)

    async def start(self) -> None:
        """Connect if not done yet, then start the feeds and probers, supervised."""
        await self.connect()
        if self.manifests is not None:
            self.feed = ManifestFeed(self.manifests, self.sources, self.metrics)
            self._spawn("manifests", self.feed.run)
            # the probers' first round waits for the first load, so it has its targets
            self._spawn("probers", self._probe_after_load)
            return
        if self._api is not None:
            self._start_informers()
            if self.controller_settings is not None:
                from sloexporter.controller import Controller

                self.controller = Controller(self._api, self.controller_settings, self.metrics)
                self._spawn("controller", self.controller.run)
        for prober in self.probers:
            self._spawn(prober.name, prober.run)

    async def _probe_after_load(self) -> None:
        assert self.feed is not None
        await self.feed.loaded.wait()
        await asyncio.gather(*(supervise(p.name, p.run) for p in self.probers))

    def _spawn(self, name: str, factory: Any) -> None:
        self._tasks.append(asyncio.create_task(supervise(name, factory), name=name))

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
                        watchdog_seconds=w.watchdog_seconds, list_timeout=w.list_timeout,
                        heartbeat_seconds=w.heartbeat_seconds,
                        heartbeat_timeout=w.heartbeat_timeout, backoff_max=w.backoff_max)
                    informer = Informer(self._api, resource, source, source.name,
                                        self.metrics, settings)
                    self.informers[source.name].append(informer)
                    self._spawn(f"watch {resource.name} {ns or ''}".strip(), informer.run)

    async def stop(self, grace: float = STOP_GRACE) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)
        closes = [c() for p in self.probers if (c := getattr(p, "aclose", None)) is not None]
        if self._api is not None:
            closes.append(self._api.close())
        if closes:
            done = asyncio.gather(*closes, return_exceptions=True)
            try:
                await asyncio.wait_for(done, grace)
            except TimeoutError:
                log.warning("stopping: a client did not close within %.1fs", grace)

    def not_ready(self) -> list[str]:
        """The sources and probers that are not ready, each `name` or `name (why)`: a
        first list or probe round not done yet, or no healthy watch now."""
        out: list[str] = []
        if self.feed is not None:
            if not self.feed.loaded.is_set():
                out.append("manifests")
            elif not self.feed.available:
                out.append("manifests (folder gone)")
        else:
            for source in self.sources:
                why = watch_problems(self.informers[source.name])
                if why:
                    out.append(f"{source.name} ({'; '.join(why)})")
            if self.controller_settings is not None:
                # the controller's watches (and its Lease) count: a replica that cannot
                # see its objects cannot take over; a healthy follower is ready
                why = watch_problems(self.controller.informers) + \
                    self.controller.lease_problems() if self.controller is not None and \
                    self.controller.informers else ["starting"]
                if why:
                    out.append(f"controller ({'; '.join(why)})")
        return out + [p.name for p in self.probers if not p.ready()]

    def ready(self) -> bool:
        return not self.not_ready()

    def up(self) -> dict[str, bool]:
        fed = self.feed is None or self.feed.available  # a manifests folder that is gone
        status = {s.name: fed and all(i.up for i in self.informers[s.name])
                  for s in self.sources}
        if self.controller is not None:
            status["controller"] = bool(self.controller.informers) and \
                all(i.up for i in self.controller.informers)
        status.update({p.name: p.up() for p in self.probers})
        return status

    def summary(self) -> list[str]:
        """One line per source: objects held and readiness (logged once serve is ready)."""
        waiting = {w.partition(" (")[0] for w in self.not_ready()}
        lines = []
        for source in self.sources:
            kinds = ", ".join(r.name for r in source.resources)
            lines.append(f"source {source.name}: {source.object_count()} objects "
                         f"({kinds}), {'not ready' if source.name in waiting else 'ready'}")
        for p in self.probers:
            lines.append(f"source {p.name}: {len(p.targets())} targets, "  # type: ignore[attr-defined]
                         f"{'not ready' if p.name in waiting else 'ready'}")
        return lines

    def render(self, openmetrics: bool = False) -> bytes:
        return b"".join(self.render_chunks(openmetrics))

    def render_chunks(self, openmetrics: bool = False) -> list[bytes]:
        """The exposition as chunks; unchanged chunks are the same bytes objects as in
        the previous scrape, which is what the gzip cache keys on."""
        parts: list[bytes] = []
        for source in self.sources:
            parts.extend(source.render(openmetrics))
        # the TLS prober's certificate lines go under the certificates source's headers
        # when it runs; without it the prober renders those families itself
        tail = b"".join(p.render_probe_families()  # type: ignore[attr-defined]
                        if p is self.tls and self.certificates is not None else p.render()
                        for p in self.probers)
        tail += self.metrics.render(self.up()).encode() + self._build_info
        if self.controller is not None:
            tail += self.controller.render().encode()
        if openmetrics:
            parts.append(openmetrics_headers(tail))
            parts.append(self._process.render(True))
            parts.append(b"# EOF\n")
        else:
            parts.append(tail)
            parts.append(self._process.render(False))
        return parts


def watch_problems(informers: list[Informer]) -> list[str]:
    """`where: why` for each watch that has not listed yet or is down now."""
    return [f"{i.where}: " + ("waiting for the first list" + (
        f", {i.down_reason}" if i.down_reason not in (None, "starting") else "")
        if not i.listed.is_set() else str(i.down_reason))
        for i in informers if not i.listed.is_set() or not i.up]


def kubeconfig_paths(config: Config) -> list[str]:
    """Where the kubeconfig is looked for, in kubectl's order."""
    if config.cluster.kubeconfig:
        return [config.cluster.kubeconfig]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [p for p in env.split(os.pathsep) if p]
    return [os.path.expanduser("~/.kube/config")]


async def connect(config: Config) -> Any:
    """A kubernetes_asyncio ApiClient for the configured cluster, or StartError."""
    from kubernetes_asyncio import client
    from kubernetes_asyncio import config as kconfig

    cfg = client.Configuration()
    mode = config.cluster.mode
    in_pod = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    advice = ("Use --manifests DIR to serve Kubernetes objects from YAML files without a "
              "cluster, or set cluster.kubeconfig (or cluster.mode: none) in --config")
    try:
        if mode == "in-cluster" or (mode == "auto" and in_pod):
            kconfig.load_incluster_config(client_configuration=cfg)
        else:
            paths = kubeconfig_paths(config)
            found = [p for p in paths if os.path.isfile(p)]
            if not found:
                where = " or ".join(paths)
                raise StartError(
                    f"no Kubernetes cluster found: not running in a pod "
                    f"(KUBERNETES_SERVICE_HOST is unset) and no kubeconfig at {where}. "
                    f"{advice}.", exit_code=2)
            await kconfig.load_kube_config(config_file=found[0],
                                           context=config.cluster.context,
                                           client_configuration=cfg)
    except StartError:
        raise
    except Exception as exc:  # noqa: BLE001 - a kubeconfig not YAML, empty, or misshapen
        what = "in-cluster config" if mode == "in-cluster" or (mode == "auto" and in_pod) \
            else f"kubeconfig {kubeconfig_paths(config)[0]}"
        detail = str(exc) if isinstance(exc, kconfig.ConfigException) else \
            f"not a usable kubeconfig ({type(exc).__name__}: {exc})"
        raise StartError(f"cannot use the {what}: {' '.join(detail.split())[:400]}. "
                         f"{advice}.") from None
    return client.ApiClient(cfg)


class Server:
    """The running process: the HTTP site, the current exporter, signals and reloads."""

    def __init__(self, args: argparse.Namespace, config: Config, host: str, port: int,
                 status: Any = None) -> None:
        self.args = args
        self.config = config
        self.host, self.port = host, port
        self.shard = Shard(args.shard, args.total_shards)
        self.manifests = Path(args.manifests) if args.manifests else None
        self.controller = getattr(args, "controller_settings", None)
        self.exporter = Exporter(config, self.shard, self.manifests, self.controller)
        self.serving = Serving(self.exporter, write_timeout=config.server.write_timeout)
        self.app = build_app(self.serving)
        #: the SLO status service (API, UI, reports), with --prometheus-url
        self.status = status
        if status is not None:
            from sloexporter.status.web import attach_status

            attach_status(self.app, self.serving, status)
        self._stop = asyncio.Event()
        self._hup = asyncio.Event()
        self._summary: asyncio.Task[None] | None = None
        self._deadline: threading.Timer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _on_signal(self, signum: int, _frame: Any) -> None:
        """A Python-level handler: it runs between two bytecodes of whatever the loop is
        doing, so a loop flooded with scrapes cannot delay the stop (an asyncio signal
        handler waits for its turn in the queue)."""
        loop = self._loop
        assert loop is not None
        if signum == signal.SIGHUP:
            loop.call_soon_threadsafe(self._hup.set)
            return
        self.serving.stopping = True  # from now on scrapes get a cheap 503
        if self._deadline is None:
            # the promise is 2 s: whatever still runs then (a stuck close) is abandoned
            self._deadline = threading.Timer(EXIT_DEADLINE, _exit_now)
            self._deadline.daemon = True
            self._deadline.start()
        loop.call_soon_threadsafe(self._stop.set)

    async def run(self) -> None:
        await self.exporter.connect()  # before listening: no cluster is a startup error
        runner = runner_for(self.app, self.config.server.idle_timeout, STOP_GRACE)
        await runner.setup()
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        try:
            await web.TCPSite(runner, self.host, self.port).start()
            log.info("listening on %s:%d", self.host, self.port)
            await self.exporter.start()
            if self.status is not None:
                await self.status.start()
            self._summary = asyncio.create_task(startup_summary(self.exporter))
            while not self._stop.is_set():
                hup = asyncio.create_task(self._hup.wait())
                stop = asyncio.create_task(self._stop.wait())
                await asyncio.wait({hup, stop}, return_when=asyncio.FIRST_COMPLETED)
                hup.cancel()
                stop.cancel()
                if self._hup.is_set() and not self._stop.is_set():
                    self._hup.clear()
                    await self.reload()
            log.info("stopping")
        finally:
            self.serving.stopping = True
            if self._summary is not None:
                self._summary.cancel()
            await stop_serving(runner)
            log.debug("stop: connections dropped")
            if self.status is not None:
                await self.status.stop()
            await asyncio.gather(self.exporter.stop(), runner.cleanup())
            log.debug("stop: exporter and runner stopped")

    async def reload(self) -> None:
        """SIGHUP: read the config again; a bad one is refused and the running one kept."""
        path = self.args.config
        if not path:
            log.info("SIGHUP: no --config file to reload; reloading with the defaults")
        try:
            config = await in_thread(load_config, path) if path else Config()
        except SpecErrors as exc:
            log.error("SIGHUP: config %s rejected, keeping the running one: %s", path,
                      "; ".join(str(e) for e in exc.errors)[:1000])
            return
        except OSError as exc:
            log.error("SIGHUP: cannot read config %s, keeping the running one: %s", path, exc)
            return
        if parse_listen(config.listen) != (self.host, self.port) and not self.args.listen:
            log.warning("SIGHUP: listen address changes need a restart; still on %s:%d",
                        self.host, self.port)
        fresh = Exporter(config, self.shard, self.manifests, self.controller)
        try:
            await fresh.connect()
        except StartError as exc:
            log.error("SIGHUP: config %s rejected, keeping the running one: %s", path, exc)
            return
        await fresh.start()
        deadline = time.monotonic() + RELOAD_READY_TIMEOUT
        while fresh.not_ready() and time.monotonic() < deadline and not self._stop.is_set():
            await asyncio.sleep(0.1)
        if self._stop.is_set():
            await fresh.stop()
            return
        old, self.exporter = self.exporter, fresh
        self.serving.exporter = fresh
        self.serving.write_timeout = config.server.write_timeout
        self.config = config
        waiting = fresh.not_ready()
        log.info("SIGHUP: config %s reloaded%s", path or "(defaults)",
                 f"; not ready yet: {', '.join(waiting)}" if waiting else "")
        await old.stop()


async def stop_serving(runner: web.AppRunner) -> None:
    """Stop listening and drop every open connection, in-flight scrapes included.

    A graceful drain of 200 scrapers of a large body takes seconds; Prometheus simply
    counts one failed scrape of a replica that is going away.
    """
    for site in list(runner.sites):
        await site.stop()
    if runner.server is not None:
        for conn in runner.server.connections:
            if conn.transport is not None:
                conn.transport.abort()


def _exit_now(deadline: bool = True) -> None:
    if deadline:
        log.warning("stopping took longer than %.1fs; exiting now", EXIT_DEADLINE)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


async def startup_summary(exporter: Exporter) -> None:
    """Once ready: one line per source. If that takes long, say who is holding it up."""
    started = time.monotonic()
    warned = False
    while exporter.not_ready():
        if not warned and time.monotonic() - started > SUMMARY_AFTER:
            warned = True
            log.warning("not ready after %.0fs, waiting for: %s", SUMMARY_AFTER,
                        ", ".join(exporter.not_ready()))
        await asyncio.sleep(0.2)
    log.info("ready in %.1fs", time.monotonic() - started)
    for line in exporter.summary():
        log.info("%s", line)


async def serve(exporter: Exporter, host: str, port: int) -> None:
    """Serve one exporter (no reload): for embedding and tests."""
    serving = Serving(exporter)
    runner = runner_for(build_app(serving), exporter.config.server.idle_timeout, STOP_GRACE)
    await exporter.connect()
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        await exporter.start()
        await asyncio.Event().wait()
    finally:
        serving.stopping = True
        await asyncio.gather(exporter.stop(), runner.cleanup())


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="YAML config: sources, cluster, watch settings, probes (see "
                             "docs/serve.md); default: every source on with its defaults. "
                             "SIGHUP reloads it; a bad file is rejected and the old one kept")
    parser.add_argument("--manifests", metavar="DIR",
                        help="read Kubernetes objects from the YAML files in DIR instead of "
                             "a cluster, reloading on change (the demo: examples/cluster)")
    parser.add_argument("--listen", metavar="HOST:PORT",
                        help="where to serve the endpoints (default: the config's listen, "
                             "else 0.0.0.0:9469)")
    parser.add_argument("--shard", type=int, default=0, metavar="N",
                        help="this replica's shard, 0 to M-1 (default: 0)")
    parser.add_argument("--total-shards", type=int, default=1, metavar="M",
                        help="how many replicas split the objects by UID (default: 1)")
    parser.add_argument("--prometheus-url", metavar="URL", help="serve the SLO status API and "
                        "web UI computed from this Prometheus (or Thanos, Mimir, VictoriaMetrics)")
    parser.add_argument("--slos", metavar="DIR", action="append", default=[],
                        help="SLO spec files or folders for the status service (repeatable); "
                        "SLOs whose rules are already in Prometheus are found without it")
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"),
                        help="the least severe log lines to write to stderr (default: info)")
    parser.add_argument("--log-format", default="text", choices=("text", "json"),
                        help="text (default) or json: one JSON object per line")
    from sloexporter.controller import add_arguments

    add_arguments(parser)


def run_serve(args: argparse.Namespace) -> int:
    setup_logging(args.log_level, args.log_format)
    try:
        config = load_config(args.config) if args.config else Config()
        host, port = parse_listen(args.listen or config.listen)
    except (SpecErrors, ValueError) as exc:
        return print_startup_error(exc)
    if not 0 <= args.shard < max(args.total_shards, 1):
        print("error: --shard must be between 0 and --total-shards - 1", file=sys.stderr)
        return 2
    if args.manifests and not Path(args.manifests).is_dir():
        print(f"error: --manifests {args.manifests}: no such folder", file=sys.stderr)
        return 2
    if args.controller:
        from sloexporter.controller import settings_from_args

        if args.manifests or config.cluster.mode == "none":
            print("error: --controller writes to a cluster; it cannot run with --manifests "
                  "or cluster.mode: none", file=sys.stderr)
            return 2
        try:
            args.controller_settings = settings_from_args(args)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    from sloexporter.status.web import status_from_args

    try:
        status = status_from_args(config.status, args.prometheus_url, args.slos)
    except (SpecErrors, ValueError) as exc:
        return print_startup_error(exc)
    try:
        asyncio.run(Server(args, config, host, port, status).run())
        log.debug("stop: event loop closed")
    except StartError as exc:
        log.error("cannot start: %s", exc)
        return exc.exit_code
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    except Exception as exc:  # noqa: BLE001 - one clear line, not a traceback
        log.error("cannot start: %s: %s", type(exc).__name__, exc)
        return 1
    # Everything is closed; tearing the interpreter down (freeing a large store object by
    # object) can take over a second, which the 2 s SIGTERM promise has no room for.
    _exit_now(deadline=False)
    return 0
