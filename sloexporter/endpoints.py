"""The HTTP side of `serve`: /metrics, /healthz, /readyz and the landing page at `/`.

The handlers read whatever exporter `Serving.exporter` holds right now, so a config reload
(SIGHUP) swaps the exporter under them without a restart. `/` answers through
`app[LANDING]`, a handler another feature (the status UI) may replace before the app
starts.

Connections are bounded: a client must send its request headers within `idle_timeout` of
connecting or of its previous response (aiohttp's keep-alive timer covers both), an idle
keep-alive connection is closed after the same time, and a response that the client does
not read within `write_timeout` is abandoned with its connection.
"""

from __future__ import annotations

import asyncio
import gzip
import html
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from sloexporter.aio import in_thread

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_CODING = re.compile(r"^\s*([A-Za-z0-9*_-]+)\s*(?:;\s*q\s*=\s*([0-9.]+))?")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Exposing(Protocol):
    def render(self, openmetrics: bool = False) -> bytes: ...

    def not_ready(self) -> list[str]: ...


@dataclass
class Serving:
    """What the handlers serve: the current exporter, and whether we are stopping."""

    exporter: Exposing
    write_timeout: float = 60.0
    stopping: bool = False
    #: gzip hits/misses since start, for benchmarks and the curious
    gzip_stats: dict[str, int] = field(default_factory=lambda: {"hit": 0, "miss": 0})


LANDING = web.AppKey("landing", Callable[[web.Request], Awaitable[web.StreamResponse]])
SERVING = web.AppKey("serving", Serving)


def accepts_gzip(header: str) -> bool:
    """True when Accept-Encoding allows gzip (RFC 9110: `q=0` means "not acceptable")."""
    gzip_q: float | None = None
    star_q: float | None = None
    for part in header.split(","):
        match = _CODING.match(part)
        if not match:
            continue
        try:
            q = float(match[2]) if match[2] is not None else 1.0
        except ValueError:
            q = 0.0
        coding = match[1].lower()
        if coding in ("gzip", "x-gzip"):
            gzip_q = q if gzip_q is None else max(gzip_q, q)
        elif coding == "*":
            star_q = q
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


def wants_openmetrics(header: str) -> bool:
    for part in header.split(","):
        media, _, params = part.partition(";")
        if media.strip().lower() == "application/openmetrics-text":
            q = re.search(r"q\s*=\s*([0-9.]+)", params)
            try:
                return q is None or float(q[1]) > 0
            except ValueError:
                return False
    return False


class GzipCache:
    """The last compressed body per format: a scrape of an unchanged store is a hit.

    Comparing bytes costs a memcmp; compressing 10 MB costs tens of ms, done off the loop
    so watch events keep flowing meanwhile.
    """

    def __init__(self, stats: dict[str, int] | None = None) -> None:
        self._last: dict[bool, tuple[bytes, bytes]] = {}
        self.stats = stats if stats is not None else {"hit": 0, "miss": 0}

    async def compress(self, body: bytes, openmetrics: bool) -> bytes:
        last = self._last.get(openmetrics)
        if last is not None and last[0] == body:
            self.stats["hit"] += 1
            return last[1]
        self.stats["miss"] += 1
        packed = await in_thread(gzip.compress, body, 1)
        self._last[openmetrics] = (body, packed)
        return packed


def landing_page(links: list[tuple[str, str]]) -> Handler:
    """A small HTML page linking `links` (path, what it is)."""
    items = "".join(f'<li><a href="{html.escape(p)}">{html.escape(p)}</a> {html.escape(d)}</li>'
                    for p, d in links)
    page = ("<!doctype html><html><head><meta charset=\"utf-8\"><title>sloexporter</title>"
            "</head><body><h1>sloexporter</h1><ul>" + items + "</ul></body></html>\n")

    async def handler(_: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")
    return handler


DEFAULT_LINKS = [("/metrics", "Prometheus metrics"), ("/healthz", "liveness"),
                 ("/readyz", "readiness: 200 once every source has listed")]


def build_app(serving: Serving) -> web.Application:
    cache = GzipCache(serving.gzip_stats)

    async def metrics(request: web.Request) -> web.StreamResponse:
        if serving.stopping:  # SIGTERM: do not start rendering for a scraper we will drop
            return web.Response(status=503, text="stopping\n")
        openmetrics = wants_openmetrics(request.headers.get("Accept", ""))
        body = serving.exporter.render(openmetrics)
        resp = web.StreamResponse(headers={"Content-Type": OPENMETRICS if openmetrics
                                           else TEXT, "Vary": "Accept, Accept-Encoding"})
        if accepts_gzip(request.headers.get("Accept-Encoding", "")):
            body = await cache.compress(body, openmetrics)
            resp.headers["Content-Encoding"] = "gzip"
        resp.content_length = len(body)
        try:
            async with asyncio.timeout(serving.write_timeout):
                await resp.prepare(request)
                await resp.write(body)
                await resp.write_eof()
        except TimeoutError:
            # a client that does not read its scrape must not hold 10 MB and a socket
            if request.transport is not None:
                request.transport.abort()
        return resp

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        waiting = serving.exporter.not_ready()
        if not waiting:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready: waiting for the first list or "
                            "probe round of: " + ", ".join(waiting) + "\n")

    async def index(request: web.Request) -> web.StreamResponse:
        return await request.app[LANDING](request)

    app = web.Application()
    app[SERVING] = serving
    app[LANDING] = landing_page(DEFAULT_LINKS)
    app.router.add_get("/", index)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def runner_for(app: web.Application, idle_timeout: float, shutdown_timeout: float,
               **kwargs: Any) -> web.AppRunner:
    """An AppRunner whose connections obey `idle_timeout` (headers and keep-alive)."""
    return web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout,
                         keepalive_timeout=idle_timeout, handle_signals=False, **kwargs)
