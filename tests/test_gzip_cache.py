"""The gzip path's per-chunk cache: right bytes under any churn, and no chunk kept alive.

Real stores, real zlib, decoded with the standard library's gzip: what a scraper reads.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from sloexporter.endpoints import GzipCache
from sloexporter.sources.store import BUCKET_TARGET, MIN_BUCKETS, PACKED, Family, Store

FAMILIES = (Family("demo_up", "Up.", "gauge"), Family("demo_age_seconds", "Age.", "gauge"))


def put(store: Store, key: str, value: int) -> None:
    store.put(key, {"demo_up": [({"key": key}, value % 2)],
                    "demo_age_seconds": [({"key": key, "kind": "x" * (value % 7)}, value)]})


def body(store: Store) -> tuple[list[bytes], bytes]:
    chunks = store.render()
    return chunks, b"".join(chunks)


def compressed(cache: GzipCache, chunks: list[bytes]) -> bytes:
    return b"".join(asyncio.run(cache.compress(chunks)))


OPS = st.lists(st.tuples(st.sampled_from(["put", "delete", "scrape", "gzip"]),
                         st.integers(0, 300), st.integers(0, 50)), max_size=80)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_gzip_body_is_the_plain_body_under_any_churn(ops):
    store, cache = Store(FAMILIES), GzipCache()
    for op, key, value in ops:
        if op == "put":
            put(store, f"k{key}", value)
        elif op == "delete":
            store.delete(f"k{key}")
        elif op == "gzip":
            chunks, plain = body(store)
            assert gzip.decompress(compressed(cache, chunks)) == plain
            # a second scrape with nothing changed is served from the cache, and still right
            hits = cache.stats["hit"]
            assert gzip.decompress(compressed(cache, chunks)) == plain
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
