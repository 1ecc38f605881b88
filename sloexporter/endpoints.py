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
import html
import re
import struct
import zlib
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from sloexporter import names
from sloexporter.aio import LOOP_SHARE
from sloexporter.exposition import family_header, sample_line
from sloexporter.sources.store import PACKED

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
#: a weight as clients write it: digits and a dot (RFC 9110 allows 0 to 1, 3 decimals)
_QVALUE = re.compile(r"^[0-9]*\.?[0-9]+$|^[0-9]+\.$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Exposing(Protocol):
    def render_chunks(self, openmetrics: bool = False) -> list[bytes]: ...

    def not_ready(self) -> list[str]: ...


@dataclass
class Serving:
    """What the handlers serve: the current exporter, and whether we are stopping."""

    exporter: Exposing
    write_timeout: float = 60.0
    stopping: bool = False
    #: gzip hits/misses since start, for benchmarks and the curious
    gzip_stats: dict[str, int] = field(default_factory=lambda: {"hit": 0, "miss": 0})
    #: more families rendered from memory on each scrape (the status service's);
    #: called with `openmetrics`, never waiting on anything
    extra_metrics: list[Callable[[bool], str]] = field(default_factory=list)


LANDING = web.AppKey("landing", Callable[[web.Request], Awaitable[web.StreamResponse]])
SERVING = web.AppKey("serving", Serving)


def _weighted(header: str) -> list[tuple[str, float]]:
    """(lower-cased item, weight) per element of an Accept or Accept-Encoding header.

    RFC 9110: parameter names are case-insensitive (`Q=0` is `q=0`), the weight may follow
    other parameters, and a weight that is not a number from 0 to 1 (`q=nan`, `q=-1`,
    `q=2`) makes its element unacceptable: in doubt we send plain, uncompressed text.
    """
    out = []
    for part in header.split(","):
        item, *params = part.split(";")
        item = item.strip().lower()
        if not item:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                value = value.strip().strip('"')
                q = float(value) if _QVALUE.match(value) and float(value) <= 1 else 0.0
        out.append((item, q))
    return out


def accepts_gzip(header: str) -> bool:
    """True when Accept-Encoding allows gzip (RFC 9110: `q=0` means "not acceptable")."""
    gzip_q: float | None = None
    star_q: float | None = None
    for coding, q in _weighted(header):
        if coding in ("gzip", "x-gzip"):
            # listed twice: the lower weight wins (a refusal is never overridden)
            gzip_q = q if gzip_q is None else min(gzip_q, q)
        elif coding == "*":
            star_q = q if star_q is None else min(star_q, q)
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


def wants_openmetrics(header: str) -> bool:
    return any(media == "application/openmetrics-text" and q > 0
               for media, q in _weighted(header))


try:  # ISA-L's deflate: at level 1 twice zlib's speed for the same size, and a CRC-32
    # three times as fast (wheels for x86-64 and arm64, see pyproject.toml; zlib elsewhere)
    from isal import isal_zlib as deflate_lib
except ImportError:  # tests/test_gzip_cache.py runs both
    deflate_lib = zlib

_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime
#: the last, empty deflate block that ends the stream
_FINAL_BLOCK = zlib.compressobj(1, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)


def _deflate(chunks: list[bytes]) -> list[bytes]:
    """Each chunk as raw deflate blocks that need nothing before them (a full flush).

    Such pieces concatenate into one valid deflate stream (pigz does the same), so a
    chunk compressed for one scrape is reused by the next as long as it is unchanged.
    """
    return _deflate_runs([[chunk] for chunk in chunks])


#: misses next to each other from this many on are deflated as one piece, not cached, and
#: their own pieces are made after the response. A piece costs about 9 us however small
#: (ISA-L level 1: a block and its Huffman codes each), so a scrape that misses every chunk
#: (the first under churn: 1,407 chunks, 6.4 MB at 10,000 objects) spent 14 ms in deflate,
#: 3 ms as one piece; that one scrape made the benchmark's gzip p99 at 50 scrapes.
RUN_MIN = 8
#: chunks per trip to the thread when pieces are made after a response: a scrape that
#: comes meanwhile waits for one trip at most
WARM_BATCH = 32
#: a run's chunks go to its compressor joined this many bytes at a time: not one copy of
#: the whole body
RUN_JOIN = 256 << 10


def _deflate_runs(runs: list[list[bytes]]) -> list[bytes]:
    """Each run of chunks as raw deflate blocks that need nothing before them."""
    lib, out = deflate_lib, []
    for run in runs:
        z = lib.compressobj(1, lib.DEFLATED, -15)
        parts = [z.compress(joined) for joined in _joined(run, RUN_JOIN)]
        parts.append(z.flush(lib.Z_FULL_FLUSH))
        out.append(b"".join(parts))
    return out


def _joined(chunks: list[bytes], size: int) -> Iterator[bytes]:
    """`chunks` joined about `size` bytes at a time (a single chunk is not copied)."""
    group: list[bytes] = []
    held = 0
    for chunk in chunks:
        group.append(chunk)
        held += len(chunk)
        if held >= size:
            yield b"".join(group)
            group, held = [], 0
    if group:
        yield b"".join(group)


def _gzip(chunks: list[bytes], misses: list[bytes],
          runs: list[list[bytes]]) -> tuple[list[bytes], list[bytes], int]:
    """(pieces of `misses`, pieces of `runs`, CRC-32 of every chunk): one trip to a thread."""
    crc, crc32 = 0, deflate_lib.crc32
    for chunk in chunks:
        crc = crc32(chunk, crc)
    return _deflate(misses), _deflate_runs(runs), crc


class GzipCache:
    """Gzip built from per-chunk deflate pieces: only chunks that changed are compressed.

    Under watch churn nearly every scrape differs from the last somewhere, so caching the
    whole compressed body hit almost never; chunks of the store change a few at a time.
    A piece is kept beside its chunk for as long as a store holds the chunk
    (`store.PACKED`); chunks made for one scrape only are compressed each time.
    Compression and the CRC run in a thread: zlib and ISA-L release the GIL.
    """

    def __init__(self, stats: dict[str, int] | None = None) -> None:
        self.stats = stats if stats is not None else {"hit": 0, "miss": 0}
        #: one long-lived thread: a new thread per scrape got a malloc arena of its own
        #: for zlib's buffers, and the arenas' free memory stayed in the RSS
        self._thread: ThreadPoolExecutor | None = None
        #: id -> chunk that a scrape deflated in a run: its own piece is made later
        self._unpacked: dict[int, bytes] = {}
        self._warming: asyncio.Task[None] | None = None

    async def compress(self, chunks: list[bytes]) -> list[bytes]:
        """The gzip body as pieces to write one after the other."""
        # the pieces are taken now: while this awaits the thread, another scrape's render
        # may let chunks go
        get = PACKED.get
        pieces = [get(id(chunk)) for chunk in chunks]
        missed = [i for i, piece in enumerate(pieces) if piece is None]
        self.stats["hit"] += len(chunks) - len(missed)
        self.stats["miss"] += len(missed)
        own: list[int] = []
        runs: list[list[int]] = []
        for run in _neighbours(missed):
            if len(run) >= RUN_MIN:
                runs.append(run)
            else:
                own += run
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="gzip")
        packed, run_packed, crc = await asyncio.get_running_loop().run_in_executor(
            self._thread, _gzip, chunks, [chunks[i] for i in own],
            [[chunks[i] for i in run] for run in runs])
        # `chunks` holds every chunk until the end, so no id() here can be reused
        for i, piece in zip(own, packed, strict=True):
            pieces[i] = piece
            _keep(chunks[i], piece)
        for run, piece in zip(runs, run_packed, strict=True):
            pieces[run[0]] = piece
            for i in run[1:]:
                pieces[i] = b""
            self._unpacked.update((id(chunks[i]), chunks[i]) for i in run)
        if self._unpacked and (self._warming is None or self._warming.done()):
            self._warming = asyncio.get_running_loop().create_task(self._warm())
        size = sum(len(c) for c in chunks)
        return [_GZIP_HEADER, *pieces, _FINAL_BLOCK, struct.pack("<II", crc, size & 0xFFFFFFFF)]

    async def _warm(self) -> None:
        """Make the pieces of the chunks scrapes deflated in runs, a batch per trip."""
        assert self._thread is not None
        loop = asyncio.get_running_loop()
        try:
            while batch := _unpacked_batch(self._unpacked):
                packed = await loop.run_in_executor(self._thread, _deflate, batch)
                for chunk, piece in zip(batch, packed, strict=True):
                    _keep(chunk, piece)
        except asyncio.CancelledError:  # the loop is closing: hold no chunk past it
            self._unpacked.clear()
            raise


def _keep(chunk: bytes, piece: bytes) -> None:
    """`piece` beside `chunk` for later scrapes, while a store holds the chunk (a chunk it
    let go meanwhile gets no entry: the cache never keeps one alive)."""
    if id(chunk) in PACKED:
        PACKED[id(chunk)] = piece


def _neighbours(indices: list[int]) -> list[list[int]]:
    """`indices` (ascending) in runs of consecutive ones."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _unpacked_batch(unpacked: dict[int, bytes]) -> list[bytes]:
    """Up to WARM_BATCH chunks of `unpacked` still held by a store and still without a
    piece; the others are dropped, so the cache does not keep a chunk alive."""
    batch = []
    while unpacked and len(batch) < WARM_BATCH:
        key, chunk = unpacked.popitem()
        if PACKED.get(key, b"") is None:
            batch.append(chunk)
    return batch


#: a response is written in pieces of about this size, joined from the chunks
WRITE_PIECE = 256 << 10


async def write_pieces(resp: web.StreamResponse, chunks: list[bytes]) -> None:
    """Write `chunks` in pieces of about WRITE_PIECE bytes, waiting for each to drain.

    Joining the whole body first held it twice over (the join, and the transport's copy
    of what the socket did not take at once): 130 MB per scrape at 100,000 objects.
    """
    for piece in _joined(chunks, WRITE_PIECE):
        await resp.write(piece)


def gzip_stats(stats: dict[str, int], openmetrics: bool) -> bytes:
    name = names.GZIP_CHUNKS.removesuffix("_total") if openmetrics else names.GZIP_CHUNKS
    return (family_header(name, "Chunks of /metrics gzip-compressed from the cache (hit) "
                          "or anew (miss).", "counter")
            + "".join(sample_line(names.GZIP_CHUNKS, {"result": r}, stats[r])
                      for r in ("hit", "miss"))).encode()


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
        with LOOP_SHARE.serving():  # the watches stand aside while this scrape is served
            return await respond(request)

    async def respond(request: web.Request) -> web.StreamResponse:
        openmetrics = wants_openmetrics(request.headers.get("Accept", ""))
        chunks = serving.exporter.render_chunks(openmetrics)
        stats = gzip_stats(serving.gzip_stats, openmetrics)
        stats += b"".join(render(openmetrics).encode() for render in serving.extra_metrics)
        chunks.insert(len(chunks) - 1 if openmetrics else len(chunks), stats)  # before # EOF
        resp = web.StreamResponse(headers={"Content-Type": OPENMETRICS if openmetrics
                                           else TEXT, "Vary": "Accept, Accept-Encoding"})
        if accepts_gzip(request.headers.get("Accept-Encoding", "")):
            chunks = await cache.compress(chunks)
            resp.headers["Content-Encoding"] = "gzip"
        resp.content_length = sum(len(c) for c in chunks)
        try:
            async with asyncio.timeout(serving.write_timeout):
                await resp.prepare(request)
                await write_pieces(resp, chunks)
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
        return web.Response(status=503, text="not ready (no first list or probe round yet, "
                            "or no healthy watch now):\n" + "".join(
                                f"  {line}\n" for line in waiting))

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
