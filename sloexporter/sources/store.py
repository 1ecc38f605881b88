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
import itertools
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
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


#: changed lines a bucket keeps aside before they are copied into its chunk (a scrape
#: copies them in sooner): bounds both the copying per event and the lines held twice
PENDING_MAX = 8


class _FamilyLines:
    """One family's lines: key -> bytes, spread over buckets, each held as one chunk.

    A bucket keeps its joined bytes, where each key's line is in it (key -> index, in
    the order of the lines) and each line's length. A changed or new line waits beside
    its bucket until the next scrape, or until PENDING_MAX of them wait; then the bucket
    is re-joined once, if any of them changed, from the slices of the old chunk between
    them and the new lines, in one `bytes.join`. A scrape hands out the same bytes
    objects for buckets that did not change, so the gzip cache (server side) recompresses
    only the chunks that changed.

    Each key's line is held once, in its chunk. Keeping every line also as its own bytes,
    to re-join a changed bucket from them, held every line twice (about 7 MB per 10,000
    objects); copying each change into the chunk at once took a few KB of copying per
    line, 10 to 15 us more per event.
    """

    __slots__ = ("chunks", "index", "lengths", "mask", "pending", "size")

    def __init__(self, buckets: int) -> None:
        self.mask = buckets - 1
        self.index: list[dict[str, int]] = [{} for _ in range(buckets)]
        self.lengths: list[array[int]] = [array("I") for _ in range(buckets)]
        self.chunks: list[bytes] = [b""] * buckets
        #: bucket -> {index of a key in it: its new line}
        self.pending: dict[int, dict[int, bytes]] = {}
        self.size = 0

    def _replace(self, i: int, chunk: bytes) -> None:
        _release(self.chunks[i])
        self.chunks[i] = chunk
        _hold(chunk)

    def _join(self, i: int) -> None:
        """Copy bucket `i`'s pending lines into its chunk: a new chunk only if one of them
        differs from the line it replaces (a re-list or a status-only update costs none,
        and the gzip cache keeps the chunk's piece)."""
        pending = self.pending.pop(i, None)
        if not pending:
            return
        lengths, chunk = self.lengths[i], self.chunks[i]
        view = memoryview(chunk)
        pieces: list[bytes | memoryview] = []
        # the keys before index `done` end at `offset` in the old chunk, whose bytes from
        # `kept` on are not in `pieces` yet
        done = offset = kept = 0
        for at in sorted(pending):
            start = offset + sum(lengths[done:at])
            line, length = pending[at], lengths[at]
            offset, done = start + length, at + 1
            if length == len(line) and chunk.startswith(line, start):
                continue
            pieces += (view[kept:start], line)
            kept = offset
            lengths[at] = len(line)
        if pieces:
            pieces.append(view[kept:])
            self._replace(i, b"".join(pieces))

    def set(self, key: str, line: bytes) -> None:
        i = hash(key) & self.mask
        index = self.index[i]
        at = index.get(key)
        if at is None:
            at = index[key] = len(index)
            self.lengths[i].append(0)  # nothing in the chunk yet: the line is pending
            self.size += 1
        pending = self.pending.get(i)
        if pending is None:
            pending = self.pending[i] = {}
        pending[at] = line
        if len(pending) >= PENDING_MAX:
            self._join(i)

    def pop(self, key: str) -> None:
        i = hash(key) & self.mask
        index = self.index[i]
        at = index.pop(key, None)
        if at is None:
            return
        self._join(i)  # the keys after it move up: their pending lines go in first
        for later in itertools.islice(index, at, None):
            index[later] -= 1
        lengths, view = self.lengths[i], memoryview(self.chunks[i])
        start = sum(lengths[:at])
        end = start + lengths.pop(at)
        self.size -= 1
        self._replace(i, b"".join((view[:start], view[end:])))

    def render(self) -> list[bytes]:
        for i in list(self.pending):
            self._join(i)
        return [c for c in self.chunks if c]

    def move_to(self, other: _FamilyLines) -> None:
        """Every line into `other`, a bucket at a time, each chunk let go once its lines
        are out (a one-line bucket's chunk may be the very object `other` then holds)."""
        for i in range(len(self.chunks)):
            moved = list(self._bucket(i))
            self._replace(i, b"")
            for key, line in moved:
                other.set(key, line)
        self.chunks = []

    def __del__(self, _drop: Callable[..., object] = PACKED.pop) -> None:
        # bound at definition: at interpreter exit the module's names may be gone first
        for chunk in self.chunks:
            _drop(id(chunk), None)

    def _bucket(self, i: int) -> Iterator[tuple[str, bytes]]:
        self._join(i)
        start, chunk = 0, self.chunks[i]
        for key, length in zip(self.index[i], self.lengths[i], strict=True):
            yield key, chunk[start:start + length]
            start += length

    def items(self) -> Iterable[tuple[str, bytes]]:
        for i in range(len(self.chunks)):
            yield from self._bucket(i)


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
        if lines.size <= len(lines.index) * BUCKET_TARGET:
            return lines
        bigger = _FamilyLines(len(lines.index) * 4)  # amortised: a handful of times
        lines.move_to(bigger)
        return bigger

    def _set(self, name: str, key: str, text: str) -> None:
        lines = self._lines[name]
        if text:
            lines.set(key, text.encode())
            if lines.size > len(lines.index) * BUCKET_TARGET:
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
