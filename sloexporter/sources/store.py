"""Pre-rendered exposition, kept per object, and sharding.

Each watch event re-renders only the lines of the object it concerns, as bytes, keyed
by the object's UID (kube-state-metrics' metrics store). The keys of a family are spread
over buckets whose joined bytes are cached, so a scrape concatenates a few cached chunks
per family instead of walking objects or lines (docs/benchmarks.md says why). The key may
also name an aggregate (e.g. the Jobs of one CronJob), so sharding by key keeps every
series in exactly one shard.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sloexporter.exposition import family_header, sample_line

Labels = Mapping[str, str] | Iterable[tuple[str, str]]
Sample = tuple[Labels, float]
Obj = dict[str, Any]


@dataclass(frozen=True)
class Family:
    """One metric family of a source's table: what it is and how an object yields it.

    `samples` is a pure function from an object to its samples; it may be None for
    families a source fills from state across objects (counters, aggregates).
    """

    name: str
    help: str
    type: Literal["gauge", "counter"]
    samples: Callable[[Obj], Iterable[Sample]] | None = None

    def header(self, openmetrics: bool = False) -> bytes:
        name = self.name
        if openmetrics and self.type == "counter" and name.endswith("_total"):
            name = name[: -len("_total")]  # OpenMetrics names the family without _total
        return family_header(name, self.help, self.type).encode()


def jump_hash(key: str, buckets: int) -> int:
    """Jump consistent hash (Lamping & Veach) of `key`, as kube-state-metrics shards."""
    k = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    b, j = -1, 0
    while j < buckets:
        b = j
        k = (k * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (float(1 << 31) / float((k >> 33) + 1)))
    return b


@dataclass
class Shard:
    index: int = 0
    total: int = 1

    def owns(self, key: str) -> bool:
        return self.total <= 1 or jump_hash(key, self.total) == self.index


#: keys per bucket before the buckets are split; a bucket's joined bytes are one chunk
BUCKET_TARGET = 64
MIN_BUCKETS = 16

#: id() of every chunk and header a store holds now -> its deflate piece once the gzip
#: path has made one (sloexporter.endpoints). A store adds a chunk when it makes it and
#: removes it when it lets the chunk go, so an entry never outlives its chunk (its id()
#: cannot be reused while it is here) and the gzip path keeps no chunk alive: holding
#: the last gzip scrape's chunks, it kept a second copy of each one the churn had changed.
PACKED: dict[int, bytes | None] = {}


def _hold(chunk: bytes) -> None:
    if chunk:  # b"" is a shared singleton: never cached
        PACKED[id(chunk)] = None


def _release(chunk: bytes) -> None:
    PACKED.pop(id(chunk), None)


class _FamilyLines:
    """One family's lines: key -> bytes, spread over buckets, each cached as one chunk.

    A watch event dirties one bucket; a scrape re-joins only the dirty buckets and hands
    out the same bytes objects for the others, so a scrape of 100,000 objects under
    churn joins a few hundred small buckets instead of half a million lines, and the
    gzip cache (server side) recompresses only the chunks that changed.

    Each key keeps its own bytes, so re-joining a bucket is one `bytes.join` over the
    dict's values, in C (about 2 us for 64 lines). Keeping only offsets into the joined
    chunk instead halves this memory, but re-joining then walks every key in Python
    (about 30 us a bucket): at 1,000 events/s that was most of a scrape's time.
    """

    __slots__ = ("buckets", "chunks", "dirty", "mask", "size")

    def __init__(self, buckets: int) -> None:
        self.mask = buckets - 1
        self.buckets: list[dict[str, bytes]] = [{} for _ in range(buckets)]
        self.chunks: list[bytes] = [b""] * buckets
        self.dirty: set[int] = set()
        self.size = 0

    def set(self, key: str, line: bytes) -> None:
        i = hash(key) & self.mask
        bucket = self.buckets[i]
        old = bucket.get(key)
        if old is None:
            self.size += 1
        elif old == line:
            return  # an unchanged object (a re-list, a status-only update) costs nothing
        bucket[key] = line
        self.dirty.add(i)

    def pop(self, key: str) -> None:
        i = hash(key) & self.mask
        if self.buckets[i].pop(key, None) is not None:
            self.size -= 1
            self.dirty.add(i)

    def render(self) -> list[bytes]:
        chunks, buckets, join, drop = self.chunks, self.buckets, b"".join, PACKED.pop
        for i in self.dirty:  # _release and _hold inlined: this loop is most of a scrape
            drop(id(chunks[i]), None)
            chunk = chunks[i] = join(buckets[i].values())
            if chunk:
                PACKED[id(chunk)] = None
        self.dirty.clear()
        return [c for c in chunks if c]

    def release(self) -> None:
        """Let the cached chunks go before this is dropped (its lines moved elsewhere, where
        a one-line bucket's chunk may be the same object, held anew)."""
        for chunk in self.chunks:
            _release(chunk)
        self.chunks = []

    def __del__(self, _drop: Callable[..., object] = PACKED.pop) -> None:
        # bound at definition: at interpreter exit the module's names may be gone first
        for chunk in self.chunks:
            _drop(id(chunk), None)

    def items(self) -> Iterable[tuple[str, bytes]]:
        for bucket in self.buckets:
            yield from bucket.items()


@dataclass
class Store:
    """Rendered lines per family, per key, in the order of the families' table."""

    families: tuple[Family, ...]
    shard: Shard = field(default_factory=Shard)
    _lines: dict[str, _FamilyLines] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lines = {f.name: _FamilyLines(MIN_BUCKETS) for f in self.families}
        self._headers = {f.name: (f.header(), f.header(True)) for f in self.families}
        for pair in self._headers.values():
            for header in pair:
                _hold(header)

    def __del__(self, _drop: Callable[..., object] = PACKED.pop) -> None:
        for pair in getattr(self, "_headers", {}).values():
            for header in pair:
                _drop(id(header), None)

    def _grow(self, lines: _FamilyLines) -> _FamilyLines:
        if lines.size <= len(lines.buckets) * BUCKET_TARGET:
            return lines
        bigger = _FamilyLines(len(lines.buckets) * 4)  # amortised: a handful of times
        for key, line in lines.items():
            bigger.set(key, line)
        lines.release()
        return bigger

    def _set(self, name: str, key: str, text: str) -> None:
        lines = self._lines[name]
        if text:
            lines.set(key, text.encode())
            if lines.size > len(lines.buckets) * BUCKET_TARGET:
                self._lines[name] = self._grow(lines)
        else:
            lines.pop(key)

    def put(self, key: str, rows: Mapping[str, Iterable[Sample]]) -> None:
        """Replace every line of `key` with `rows` (family name -> samples)."""
        for name, lines in self._lines.items():
            samples = rows.get(name)
            if samples is None:
                lines.pop(key)
                continue
            self._set(name, key, "".join(sample_line(name, labels, value)
                                         for labels, value in samples))

    def put_family(self, name: str, key: str, samples: Iterable[Sample]) -> None:
        self._set(name, key, "".join(sample_line(name, labels, value)
                                     for labels, value in samples))

    def delete(self, key: str) -> None:
        for lines in self._lines.values():
            lines.pop(key)

    def keys(self) -> set[str]:
        return {k for lines in self._lines.values() for k, _ in lines.items()}

    def render(self, openmetrics: bool = False,
               extra: Mapping[str, bytes] | None = None) -> list[bytes]:
        """Every family with lines: one header, then its chunks (cached between scrapes).

        `extra` adds sample lines rendered elsewhere (e.g. the TLS prober's certificates)
        under the same header, so a family is never split in two.
        """
        out: list[bytes] = []
        for family in self.families:
            lines = self._lines[family.name]
            more = extra.get(family.name) if extra else None
            if lines.size or more:
                out.append(self._headers[family.name][openmetrics])
                out.extend(lines.render())
                if more:
                    out.append(more)
        return out


def rows_of(families: Iterable[Family], obj: Obj) -> dict[str, list[Sample]]:
    """Evaluate the pure families of a table on one object."""
    return {f.name: list(f.samples(obj)) for f in families if f.samples is not None}
