"""Pre-rendered exposition, kept per object, and sharding.

Each watch event re-renders only the lines of the object it concerns, as bytes, keyed
by the object's UID (kube-state-metrics' metrics store). The keys of a family are spread
over buckets, each kept as its joined bytes, so a scrape concatenates a few chunks per
family instead of walking objects or lines (docs/benchmarks.md says why). The key may
also name an aggregate (e.g. the Jobs of one CronJob), so sharding by key keeps every
series in exactly one shard.
"""

from __future__ import annotations

import hashlib
from array import array
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
    """One family's lines: key -> bytes, spread over buckets, each held as one chunk.

    A bucket keeps its joined bytes, its keys in order and each line's length; a changed
    line is copied into a new chunk between the bytes around it (a few KB, in C). A
    scrape hands out the chunks as they are, the same bytes objects for buckets that did
    not change, so the gzip cache (server side) recompresses only the chunks that changed.

    Each key's line is in its chunk only. Keeping it also as its own bytes, to re-join a
    changed bucket at the next scrape, held every line twice (about 7 MB per 10,000
    objects); walking offsets in Python at each scrape instead cost about 30 us a bucket.
    """

    __slots__ = ("chunks", "keys", "lengths", "mask", "size")

    def __init__(self, buckets: int) -> None:
        self.mask = buckets - 1
        self.keys: list[list[str]] = [[] for _ in range(buckets)]
        self.lengths: list[array[int]] = [array("I") for _ in range(buckets)]
        self.chunks: list[bytes] = [b""] * buckets
        self.size = 0

    def _replace(self, i: int, chunk: bytes) -> None:
        _release(self.chunks[i])
        self.chunks[i] = chunk
        _hold(chunk)

    def _find(self, i: int, key: str) -> tuple[int, int] | None:
        """(index, offset) of `key`'s line in bucket `i`, or None."""
        try:
            at = self.keys[i].index(key)
        except ValueError:
            return None
        return at, sum(self.lengths[i][:at])

    def set(self, key: str, line: bytes) -> None:
        i = hash(key) & self.mask
        found = self._find(i, key)
        chunk = self.chunks[i]
        if found is None:
            self.keys[i].append(key)
            self.lengths[i].append(len(line))
            self.size += 1
            self._replace(i, chunk + line)
            return
        at, start = found
        lengths = self.lengths[i]
        end = start + lengths[at]
        if lengths[at] == len(line) and chunk.startswith(line, start):
            return  # an unchanged object (a re-list, a status-only update) costs nothing
        lengths[at] = len(line)
        view = memoryview(chunk)
        self._replace(i, b"".join((view[:start], line, view[end:])))

    def pop(self, key: str) -> None:
        i = hash(key) & self.mask
        found = self._find(i, key)
        if found is None:
            return
        at, start = found
        end = start + self.lengths[i].pop(at)
        del self.keys[i][at]
        self.size -= 1
        view = memoryview(self.chunks[i])
        self._replace(i, b"".join((view[:start], view[end:])))

    def render(self) -> list[bytes]:
        return [c for c in self.chunks if c]

    def release(self) -> None:
        """Let the chunks go before this is dropped (its lines moved elsewhere, where a
        one-line bucket's chunk may be the same object, held anew)."""
        for chunk in self.chunks:
            _release(chunk)
        self.chunks = []

    def __del__(self, _drop: Callable[..., object] = PACKED.pop) -> None:
        # bound at definition: at interpreter exit the module's names may be gone first
        for chunk in self.chunks:
            _drop(id(chunk), None)

    def items(self) -> Iterable[tuple[str, bytes]]:
        for keys, lengths, chunk in zip(self.keys, self.lengths, self.chunks, strict=True):
            start = 0
            for key, length in zip(keys, lengths, strict=True):
                yield key, chunk[start:start + length]
                start += length


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
        if lines.size <= len(lines.keys) * BUCKET_TARGET:
            return lines
        bigger = _FamilyLines(len(lines.keys) * 4)  # amortised: a handful of times
        moved = list(lines.items())
        lines.release()
        for key, line in moved:
            bigger.set(key, line)
        return bigger

    def _set(self, name: str, key: str, text: str) -> None:
        lines = self._lines[name]
        if text:
            lines.set(key, text.encode())
            if lines.size > len(lines.keys) * BUCKET_TARGET:
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
