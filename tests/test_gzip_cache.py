"""The gzip path's per-chunk cache: right bytes under any churn, and no chunk kept alive.

Real stores, real ISA-L and zlib (each test runs with both), decoded with the standard
library's gzip: what a scraper reads.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import platform
import sys
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sloexporter import endpoints
from sloexporter.endpoints import GzipCache
from sloexporter.sources.store import BUCKET_TARGET, MIN_BUCKETS, PACKED, Family, Store

FAMILIES = (Family("demo_up", "Up.", "gauge"), Family("demo_age_seconds", "Age.", "gauge"))
#: where pyproject.toml installs isal (wheels); elsewhere the gzip path uses zlib
ISAL_MACHINES = ("x86_64", "AMD64", "aarch64", "arm64")


@pytest.fixture(autouse=True, params=["isal", "zlib"])
def deflate_lib(request, monkeypatch):
    """Each test with ISA-L's deflate (where it is installed) and with zlib's."""
    if request.param == "zlib":
        monkeypatch.setattr(endpoints, "deflate_lib", zlib)
    elif platform.machine() not in ISAL_MACHINES:
        pytest.skip("isal has no wheel for this machine: the zlib run covers it")
    return endpoints.deflate_lib


def test_isal_is_used_where_it_is_installed(request):
    """The isal runs above test ISA-L, not zlib twice: where pyproject.toml installs it,
    the gzip path uses it."""
    if request.node.callspec.params["deflate_lib"] == "isal":
        from isal import isal_zlib
        assert endpoints.deflate_lib is isal_zlib


def test_pieces_of_either_library_make_one_stream():
    """A full-flushed raw deflate piece needs nothing before it: pieces from ISA-L and
    zlib, in any order, with zlib's final block, are one valid stream."""
    if platform.machine() not in ISAL_MACHINES:
        pytest.skip("isal has no wheel for this machine")
    from isal import isal_zlib
    data = [b"demo_up{key=\"%d\"} 1\n" % i * 50 for i in range(6)]
    pieces = []
    for n, chunk in enumerate(data):
        lib = isal_zlib if n % 2 else zlib
        z = lib.compressobj(1, lib.DEFLATED, -15)
        pieces.append(z.compress(chunk) + z.flush(lib.Z_FULL_FLUSH))
    stream = b"".join(pieces) + endpoints._FINAL_BLOCK
    assert zlib.decompress(stream, -15) == b"".join(data)


def put(store: Store, key: str, value: int) -> None:
    store.put(key, {"demo_up": [({"key": key}, value % 2)],
                    "demo_age_seconds": [({"key": key, "kind": "x" * (value % 7)}, value)]})


def change(store: Store, op: str, key: int, value: int) -> bool:
    """Apply a "put" or "delete" op; False for any other op."""
    if op == "put":
        put(store, f"k{key}", value)
    elif op == "delete":
        store.delete(f"k{key}")
    return op in ("put", "delete")


def body(store: Store) -> tuple[list[bytes], bytes]:
    chunks = store.render()
    return chunks, b"".join(chunks)


async def settled(cache: GzipCache) -> None:
    """Wait for the pieces a scrape left to be made after its response."""
    while (task := getattr(cache, "_warming", None)) is not None and not task.done():
        await task


def compressed(cache: GzipCache, chunks: list[bytes]) -> bytes:
    async def scrape() -> list[bytes]:
        out = await cache.compress(chunks)
        await settled(cache)
        return out
    return b"".join(asyncio.run(scrape()))


def one_member(body: bytes) -> bytes:
    """The body decoded as ONE gzip member: some clients read only the first."""
    d = zlib.decompressobj(31)
    out = d.decompress(body)
    assert d.eof and d.unused_data == b""
    return out


OPS = st.lists(st.tuples(st.sampled_from(["put", "delete", "scrape", "gzip"]),
                         st.integers(0, 300), st.integers(0, 50)), max_size=80)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_gzip_body_is_the_plain_body_under_any_churn(ops):
    store, cache = Store(FAMILIES), GzipCache()
    for op, key, value in ops:
        if change(store, op, key, value):
            continue
        if op == "gzip":
            chunks, plain = body(store)
            assert one_member(compressed(cache, chunks)) == plain
            # a second scrape with nothing changed is served from the cache, and still right
            hits = cache.stats["hit"]
            assert one_member(compressed(cache, chunks)) == plain
            assert cache.stats["hit"] - hits == len(chunks)
        else:
            body(store)


def test_a_chunk_the_store_lets_go_is_not_kept_by_the_gzip_cache():
    store, cache = Store(FAMILIES), GzipCache()
    keys = [f"k{i}" for i in range(MIN_BUCKETS * BUCKET_TARGET)]  # every bucket, no growth
    for key in keys:
        put(store, key, 1)
    chunks, _ = body(store)
    compressed(cache, chunks)
    assert all(PACKED[id(c)] is not None for c in chunks)  # each piece kept beside its chunk
    old = next(c for c in chunks if not c.startswith(b"#"))  # a bucket's lines, no header
    del chunks
    for key in keys:  # the churn changes every line
        put(store, key, 2)
    body(store)
    # only this test's name holds the old chunk now (getrefcount adds its argument)
    assert sys.getrefcount(old) == 2
    assert id(old) not in PACKED


def test_growing_and_dropping_a_store_leave_no_entries():
    store = Store(FAMILIES)
    for i in range(10):
        put(store, f"k{i}", i)
    before, _ = body(store)
    for i in range(10, MIN_BUCKETS * BUCKET_TARGET * 3):  # past the split: new buckets
        put(store, f"k{i}", i)
    after, plain = body(store)
    assert not any(id(c) in PACKED for c in before if not c.startswith(b"#"))
    held = [id(c) for c in after]
    assert all(key in PACKED for key in held)
    assert gzip.decompress(compressed(GzipCache(), after)) == plain
    del store
    gc.collect()
    assert not any(key in PACKED for key in held)  # the headers' entries went too


class Counting:
    """A deflate library that counts its compressors."""

    def __init__(self, lib):
        self.lib, self.compressors = lib, 0

    def __getattr__(self, name):
        return getattr(self.lib, name)

    def compressobj(self, *args):
        self.compressors += 1
        return self.lib.compressobj(*args)


def test_misses_next_to_each_other_are_one_piece_until_theirs_are_made(deflate_lib,
                                                                        monkeypatch):
    """A scrape that misses every chunk (the first one under churn) deflates them as one
    piece, not one each (a piece costs the same ~9 us however small), and makes their own
    pieces after the response: the next scrape hits every one. Both bodies are the plain
    body in one gzip member."""
    lib = Counting(deflate_lib)
    monkeypatch.setattr(endpoints, "deflate_lib", lib)
    store, cache = Store(FAMILIES), GzipCache()
    for i in range(MIN_BUCKETS * BUCKET_TARGET):
        put(store, f"k{i}", i)
    chunks, plain = body(store)
    assert len(chunks) >= 2 * endpoints.RUN_MIN

    async def scrapes() -> None:
        assert one_member(b"".join(await cache.compress(chunks))) == plain
        assert lib.compressors == 1
        assert all(PACKED[id(c)] is None for c in chunks)  # not cached yet
        await settled(cache)
        assert all(PACKED[id(c)] is not None for c in chunks)
        lib.compressors, hits = 0, cache.stats["hit"]
        assert one_member(b"".join(await cache.compress(chunks))) == plain
        assert (lib.compressors, cache.stats["hit"] - hits) == (0, len(chunks))
    asyncio.run(scrapes())


def test_a_few_misses_get_their_own_pieces_at_once(deflate_lib, monkeypatch):
    """The usual scrape under churn: a few changed chunks apart, each deflated and cached
    in the scrape itself (nothing is left for after the response)."""
    store, cache = Store(FAMILIES), GzipCache()
    keys = [f"k{i}" for i in range(MIN_BUCKETS * BUCKET_TARGET)]
    for key in keys:
        put(store, key, 1)
    compressed(cache, body(store)[0])
    lib = Counting(deflate_lib)
    monkeypatch.setattr(endpoints, "deflate_lib", lib)
    changed = keys[:3]
    for key in changed:
        put(store, key, 2)
    chunks, plain = body(store)
    misses = [c for c in chunks if PACKED[id(c)] is None]
    assert 0 < len(misses) < endpoints.RUN_MIN

    async def scrape() -> bytes:
        out = b"".join(await cache.compress(chunks))
        assert not getattr(cache, "_unpacked", {})
        return out
    assert one_member(asyncio.run(scrape())) == plain
    assert lib.compressors == len(misses)
    assert all(PACKED[id(c)] is not None for c in chunks)


CHURN = st.lists(st.tuples(st.sampled_from(["put", "delete", "gzip", "settle"]),
                           st.integers(0, 300), st.integers(0, 50)), max_size=80)


@settings(max_examples=60, deadline=None)
@given(CHURN, st.integers(1, 4))
def test_pieces_made_after_responses_under_churn(ops, run_min):
    """Scrapes on one loop while pieces are made after earlier responses and the store
    lets chunks go meanwhile: every body is the plain body in one member, and once the
    pieces are made the cache holds no chunk."""
    store, cache = Store(FAMILIES), GzipCache()

    async def run() -> None:
        for op, key, value in ops:
            if change(store, op, key, value):
                continue
            if op == "gzip":
                chunks, plain = body(store)
                assert one_member(b"".join(await cache.compress(chunks))) == plain
            else:
                await settled(cache)
        await settled(cache)
        assert not getattr(cache, "_unpacked", {})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(endpoints, "RUN_MIN", run_min)
        asyncio.run(run())


def test_an_empty_body_repeated_chunks_and_huge_ones(monkeypatch):
    """What a scrape's chunk list may hold that churn does not make: nothing at all, one
    chunk object twice (scattered and in a run), and chunks above a run's join size."""
    cache = GzipCache()
    assert one_member(compressed(cache, [])) == b""
    store = Store(FAMILIES)
    for i in range(MIN_BUCKETS * BUCKET_TARGET):
        put(store, f"k{i}", i)
    held, _ = body(store)
    chunk = held[1]
    for chunks in ([chunk, b"# a\n", chunk],  # twice, apart: each its own piece
                   [chunk] * (2 * endpoints.RUN_MIN)):  # twice and more in one run
        assert one_member(compressed(GzipCache(), chunks)) == b"".join(chunks)
    huge = [bytes([65 + n]) * (endpoints.RUN_JOIN + 1000) + b"\n" for n in range(3)]
    monkeypatch.setattr(endpoints, "RUN_MIN", 2)
    assert one_member(compressed(GzipCache(), huge)) == b"".join(huge)
