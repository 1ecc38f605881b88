"""`serve --manifests DIR`: Kubernetes objects from YAML files instead of an API server.

The files are read into the same sources a cluster feeds, and read again when any of
them changes. A string that is exactly `now`, `now-26h` or `now+10d` becomes that time in
RFC 3339, so a demo cluster's ages (an overdue backup, a certificate near expiry) stay
true whenever it is loaded.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from sloexporter.model import parse_duration
from sloexporter.sources.base import Source, object_key
from sloexporter.sources.informer import Resource, SelfMetrics

log = logging.getLogger(__name__)

_RELATIVE = re.compile(r"^now(?:([+-])(\d+[smhdw]))?$")
SUFFIXES = (".yaml", ".yml", ".json")


def resolve_times(value: Any, now: datetime) -> Any:
    if isinstance(value, dict):
        return {k: resolve_times(v, now) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_times(v, now) for v in value]
    if isinstance(value, str):
        match = _RELATIVE.match(value)
        if match:
            delta = timedelta(seconds=parse_duration(match[2])) if match[2] else timedelta()
            when = now + delta if match[1] == "+" else now - delta
            return when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def read_objects(folder: Path, now: datetime | None = None) -> tuple[list[dict[str, Any]], int]:
    """Every object in the folder's YAML files (List kinds unpacked); and bad files."""
    now = now or datetime.now(UTC)
    objects: list[dict[str, Any]] = []
    bad = 0
    for path in sorted(p for p in folder.rglob("*") if p.suffix in SUFFIXES and p.is_file()):
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            log.warning("skipped manifest %s: %s", path, str(exc)[:200])
            bad += 1
            continue
        for doc in docs:
            items = doc.get("items") if isinstance(doc, dict) and \
                str(doc.get("kind", "")).endswith("List") else [doc]
            objects += [resolve_times(o, now) for o in items or () if isinstance(o, dict)]
    return objects, bad


class ManifestFeed:
    """Feeds sources from a folder, polling it for changes."""

    def __init__(self, folder: Path, sources: Iterable[Source], metrics: SelfMetrics,
                 interval: float = 1.0) -> None:
        self.folder = folder
        self.sources = list(sources)
        self.metrics = metrics
        self.interval = interval
        self.loaded = asyncio.Event()
        self._signature: tuple[tuple[str, int, int], ...] | None = None

    def signature(self) -> tuple[tuple[str, int, int], ...]:
        out = []
        for p in sorted(self.folder.rglob("*")):
            if p.suffix in SUFFIXES and p.is_file():
                st = p.stat()
                out.append((str(p), st.st_mtime_ns, st.st_size))
        return tuple(out)

    def prime(self) -> None:
        """Load the folder now, on the calling (event loop) thread."""
        self._signature = self.signature()
        self.load()

    def load(self) -> None:
        self.apply_all(*read_objects(self.folder))

    def apply_all(self, objects: list[dict[str, Any]], bad: int) -> None:
        """Runs on the event loop: sources are not thread-safe, scrapes read them."""
        for _ in range(bad):
            self.metrics.skip("manifests", "unparsable_yaml")
        by_kind: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for obj in objects:
            by_kind.setdefault((str(obj.get("apiVersion")), str(obj.get("kind"))), []).append(obj)
        for source in self.sources:
            for resource in source.resources:
                self._feed(source, resource, by_kind.get((resource.api_version, resource.kind), []))
        self.loaded.set()

    def _feed(self, source: Source, resource: Resource, objs: list[dict[str, Any]]) -> None:
        seen = set()
        for obj in objs:
            self.metrics.event(source.name, resource.name, "ADDED")
            source.apply(resource, "ADDED", obj)
            seen.add(source.key_of(obj) if obj.get("metadata") else object_key(obj))
        source.prune(resource, "", seen)

    async def run(self) -> None:
        while True:
            try:
                sig = await asyncio.to_thread(self.signature)
                if sig != self._signature:
                    self._signature = sig
                    started = time.monotonic()
                    self.apply_all(*await asyncio.to_thread(read_objects, self.folder))
                    log.info("loaded manifests from %s in %.2fs", self.folder,
                             time.monotonic() - started)
            except OSError as exc:
                log.warning("cannot read manifests in %s: %s", self.folder, exc)
            await asyncio.sleep(self.interval)
