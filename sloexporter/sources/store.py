"""Pre-rendered exposition, kept per object, and sharding.

Each watch event re-renders only the lines of the object it concerns, as bytes, keyed
by the object's UID (kube-state-metrics' metrics store). A scrape then concatenates
bytes instead of walking objects. The key may also name an aggregate (e.g. the Jobs of
one CronJob), so sharding by key keeps every series in exactly one shard.
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


@dataclass
class Store:
    """Rendered lines per family, per key, in the order of the families' table."""

    families: tuple[Family, ...]
    shard: Shard = field(default_factory=Shard)
    _lines: dict[str, dict[str, bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lines = {f.name: {} for f in self.families}
        self._headers = {f.name: (f.header(), f.header(True)) for f in self.families}

    def put(self, key: str, rows: Mapping[str, Iterable[Sample]]) -> None:
        """Replace every line of `key` with `rows` (family name -> samples)."""
        for name, per_key in self._lines.items():
            samples = rows.get(name)
            if samples is None:
                per_key.pop(key, None)
                continue
            text = "".join(sample_line(name, labels, value) for labels, value in samples)
            if text:
                per_key[key] = text.encode()
            else:
                per_key.pop(key, None)

    def put_family(self, name: str, key: str, samples: Iterable[Sample]) -> None:
        text = "".join(sample_line(name, labels, value) for labels, value in samples)
        if text:
            self._lines[name][key] = text.encode()
        else:
            self._lines[name].pop(key, None)

    def delete(self, key: str) -> None:
        for per_key in self._lines.values():
            per_key.pop(key, None)

    def keys(self) -> set[str]:
        return {k for per_key in self._lines.values() for k in per_key}

    def render(self, openmetrics: bool = False,
               extra: Mapping[str, bytes] | None = None) -> list[bytes]:
        """Every family with lines: one header, then the bytes of each key.

        `extra` adds sample lines rendered elsewhere (e.g. the TLS prober's certificates)
        under the same header, so a family is never split in two.
        """
        out: list[bytes] = []
        for family in self.families:
            per_key = self._lines[family.name]
            more = extra.get(family.name) if extra else None
            if per_key or more:
                out.append(self._headers[family.name][openmetrics])
                out.extend(per_key.values())
                if more:
                    out.append(more)
        return out


def rows_of(families: Iterable[Family], obj: Obj) -> dict[str, list[Sample]]:
    """Evaluate the pure families of a table on one object."""
    return {f.name: list(f.samples(obj)) for f in families if f.samples is not None}
