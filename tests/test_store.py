"""The pre-rendered store: what a scrape reads is every key's current lines, once each."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sloexporter.exposition import sample_line
from sloexporter.sources.store import BUCKET_TARGET, MIN_BUCKETS, Family, Store

FAMILIES = (Family("demo_up", "Up.", "gauge"), Family("demo_age_seconds", "Age.", "gauge"))


def rows(key: str, value: int) -> dict[str, list]:
    """Lines whose length changes with the value, and a family that comes and goes."""
    out = {"demo_up": [({"key": key, "pad": "x" * (value % 5)}, value % 2)]}
    if value % 3:
        out["demo_age_seconds"] = [({"key": key}, value), ({"key": key, "n": "2"}, value)]
    return out


def expected(model: dict[str, int]) -> bytes:
    """The exposition of `model` (key -> value), lines sorted within each family."""
    out = []
    for family in FAMILIES:
        lines = sorted(sample_line(family.name, labels, v).encode()
                       for key, value in model.items()
                       for labels, v in rows(key, value).get(family.name, ()))
        if lines:
            out.append(family.header() + b"".join(lines))
    return b"".join(out)


def sorted_body(store: Store) -> bytes:
    """The store's exposition with the lines of each family sorted (bucket order is a hash's)."""
    out, lines = [], []
    for line in b"".join(store.render()).splitlines(keepends=True):
        if line.startswith(b"# HELP"):
            out.append(b"".join(sorted(lines)))
            lines = []
            out.append(line)
        elif line.startswith(b"#"):
            out.append(line)
        else:
            lines.append(line)
    out.append(b"".join(sorted(lines)))
    return b"".join(out)


#: a few hundred keys over MIN_BUCKETS buckets: changes pile up in a bucket between scrapes
OPS = st.lists(st.tuples(st.sampled_from(["put", "put", "delete", "scrape"]),
                         st.integers(0, 300), st.integers(0, 30)), max_size=400)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_a_scrape_reads_every_current_line_once_under_any_churn(ops):
    store, model = Store(FAMILIES), {}
    for op, key, value in ops:
        if op == "put":
            store.put(f"k{key}", rows(f"k{key}", value))
            model[f"k{key}"] = value
        elif op == "delete":
            store.delete(f"k{key}")
            model.pop(f"k{key}", None)
        else:
            assert sorted_body(store) == expected(model)
    assert sorted_body(store) == expected(model)
    assert store.keys() == set(model)


def test_growing_past_the_buckets_keeps_every_line():
    store = Store(FAMILIES)
    model = {f"k{i}": i for i in range(MIN_BUCKETS * BUCKET_TARGET * 5)}
    for key, value in model.items():
        store.put(key, rows(key, value))
    for key in list(model)[::3]:  # changed after the split
        model[key] += 1
        store.put(key, rows(key, model[key]))
    assert sorted_body(store) == expected(model)


def test_an_object_put_again_unchanged_keeps_every_chunk():
    """A re-list or a status-only update makes no new chunk: the gzip cache keeps its piece."""
    store = Store(FAMILIES)
    for i in range(300):
        store.put(f"k{i}", rows(f"k{i}", i))
    before = store.render()
    for i in range(300):
        store.put(f"k{i}", rows(f"k{i}", i))
    after = store.render()
    assert len(after) == len(before) and all(a is b for a, b in zip(after, before, strict=True))
    store.put("k7", rows("k7", 8))
    assert sum(a is not b for a, b in zip(store.render(), before, strict=True)) == 2  # k7's
