"""`serve --manifests DIR`: Kubernetes objects from YAML files instead of an API server.

The files are read into the same sources a cluster feeds, and read again when any of
them changes. A string that is exactly `now`, `now-26h` or `now+10d` becomes that time in
RFC 3339, so a demo cluster's ages (an overdue backup, a certificate near expiry) stay
true whenever it is loaded.

The folder is untrusted input. Files are parsed in a daemon thread, never on the event
loop, so a slow parse neither stalls /metrics nor holds up SIGTERM; and before a file is
turned into objects its YAML events are scanned without recursion against limits (size,
nesting depth, nodes after alias expansion), so a 5,000-deep document or an alias bomb is
one skipped file, counted and logged once, never a crash or a frozen process. Only files
that changed since the last load are parsed again.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from sloexporter.aio import in_thread
from sloexporter.model import parse_duration
from sloexporter.sources.base import Source, object_key
from sloexporter.sources.informer import Resource, SelfMetrics

log = logging.getLogger(__name__)

_RELATIVE = re.compile(r"^now(?:([+-])(\d+[smhdw]))?$")
SUFFIXES = (".yaml", ".yml", ".json")
SOURCE = "manifests"
#: limits per file; a kubectl dump of tens of thousands of objects stays well inside them
MAX_FILE_BYTES = 64 << 20
MAX_DEPTH = 64
#: nodes that aliases may add: YAML anchors are rare in manifests, alias bombs are not
MAX_ALIAS_NODES = 100_000
#: objects applied between two yields to the event loop, so scrapes interleave with a load
APPLY_BATCH = 500
_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Rejected(Exception):
    """A manifest file over a limit or unreadable; `reason` is the skip-counter label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


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


def check_limits(text: str, max_depth: int = MAX_DEPTH,
                 max_alias_nodes: int = MAX_ALIAS_NODES) -> None:
    """Scan the YAML events of `text` (no recursion) and raise Rejected over a limit."""
    depth = 0
    expanded = 0  # nodes once aliases are expanded
    aliased = 0  # of which aliases added
    starts: list[tuple[str | None, int]] = []  # open collections: (anchor, expanded at start)
    sizes: dict[str, int] = {}  # anchor -> nodes it expands to
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > max_depth:
                    raise Rejected("too_deep", f"nested deeper than {max_depth} levels")
                starts.append((event.anchor, expanded))
                expanded += 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
                anchor, began = starts.pop()
                if anchor:
                    sizes[anchor] = expanded - began
            elif isinstance(event, yaml.ScalarEvent):
                expanded += 1
                if event.anchor:
                    sizes[event.anchor] = 1
            elif isinstance(event, yaml.AliasEvent):
                added = sizes.get(event.anchor or "", 1)
                expanded += added
                aliased += added
                if aliased > max_alias_nodes:
                    raise Rejected("alias_expansion", f"aliases expand to more than "
                                   f"{max_alias_nodes} nodes")
    except yaml.YAMLError as exc:
        detail = _yaml_error(exc)
        # libyaml has its own nesting limit (1,000): the same refusal as ours
        raise Rejected("too_deep" if "nesting depth" in detail else "unparsable_yaml",
                       detail) from None


def _yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return f"{where}{problem}"[:200]


def parse_file(path: Path, now: datetime) -> list[dict[str, Any]]:
    """The objects of one file (List kinds unpacked); Rejected when it cannot be used."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise Rejected("too_large", f"{size} bytes, over the {MAX_FILE_BYTES} byte limit")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Rejected("unreadable", str(exc)[:200]) from None
    check_limits(text)
    try:
        docs = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise Rejected("unparsable_yaml", _yaml_error(exc)) from None
    except (RecursionError, MemoryError):  # the scan above should have caught it
        raise Rejected("too_deep", "too deeply nested to load") from None
    objects: list[dict[str, Any]] = []
    for doc in docs:
        items = doc.get("items") if isinstance(doc, dict) and \
            str(doc.get("kind", "")).endswith("List") else [doc]
        if not isinstance(items, list):
            continue
        objects += [resolve_times(o, now) for o in items if isinstance(o, dict)]
    return objects


def manifest_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in SUFFIXES and p.is_file())


def read_objects(folder: Path, now: datetime | None = None) -> tuple[list[dict[str, Any]], int]:
    """Every object in the folder's YAML files (List kinds unpacked); and bad files."""
    now = now or datetime.now(UTC)
    objects: list[dict[str, Any]] = []
    bad = 0
    for path in manifest_files(folder):
        try:
            objects += parse_file(path, now)
        except Rejected as exc:
            log.warning("skipped manifest %s (%s): %s", path, exc.reason, exc)
            bad += 1
    return objects, bad


Signature = tuple[int, int]  # mtime_ns, size


@dataclass
class _Folder:
    """What the last load read: per file, its signature and its objects (or None: bad)."""

    files: dict[Path, tuple[Signature, list[dict[str, Any]] | None]] = field(
        default_factory=dict)


def scan(folder: Path) -> dict[Path, Signature]:
    out: dict[Path, Signature] = {}
    for path in manifest_files(folder):
        try:
            st = path.stat()
        except OSError:
            continue  # removed between listing and stat
        out[path] = (st.st_mtime_ns, st.st_size)
    return out


class ManifestFeed:
    """Feeds sources from a folder, polling it for changes; run it under supervision."""

    def __init__(self, folder: Path, sources: Iterable[Source], metrics: SelfMetrics,
                 interval: float = 1.0) -> None:
        self.folder = folder
        self.sources = list(sources)
        self.metrics = metrics
        self.interval = interval
        self.loaded = asyncio.Event()
        self.objects = 0
        self._state = _Folder()

    async def run(self) -> None:
        """Load now, then again whenever a file changes; never returns."""
        while True:
            try:
                signatures = await in_thread(scan, self.folder)
                if {p: s for p, (s, _) in self._state.files.items()} != signatures \
                        or not self.loaded.is_set():
                    await self.load(signatures)
            except OSError as exc:
                log.warning("cannot read manifests in %s: %s", self.folder, exc)
            await asyncio.sleep(self.interval)

    async def load(self, signatures: dict[Path, Signature]) -> None:
        started = time.monotonic()
        now = datetime.now(UTC)
        files: dict[Path, tuple[Signature, list[dict[str, Any]] | None]] = {}
        for path, sig in signatures.items():
            old = self._state.files.get(path)
            if old is not None and old[0] == sig:
                files[path] = old  # unchanged: neither parsed nor reported again
                continue
            try:
                files[path] = (sig, await in_thread(parse_file, path, now))
            except Rejected as exc:
                log.warning("skipped manifest %s (%s): %s", path, exc.reason, exc)
                self.metrics.skip(SOURCE, exc.reason)
                files[path] = (sig, None)
        self._state = _Folder(files)
        objects = [o for _, objs in files.values() for o in objs or ()]
        await self.apply_all(objects)
        self.objects = len(objects)
        log.info("loaded %d objects from %d manifest files in %s in %.2fs", len(objects),
                 len(files), self.folder, time.monotonic() - started)

    async def apply_all(self, objects: list[dict[str, Any]]) -> None:
        """On the event loop (sources are not thread-safe), yielding between batches."""
        by_kind: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for obj in objects:
            by_kind.setdefault((str(obj.get("apiVersion")), str(obj.get("kind"))), []).append(obj)
        for source in self.sources:
            for resource in source.resources:
                await self._feed(source, resource,
                                 by_kind.get((resource.api_version, resource.kind), []))
        self.loaded.set()

    async def _feed(self, source: Source, resource: Resource, objs: list[dict[str, Any]]) -> None:
        seen = set()
        for i, obj in enumerate(objs):
            if i and i % APPLY_BATCH == 0:
                await asyncio.sleep(0)
            self.metrics.event(source.name, resource.name, "ADDED")
            try:
                source.apply(resource, "ADDED", obj)
                seen.add(source.key_of(obj))
            except Exception as exc:  # noqa: BLE001 - one object never stops a load
                self.metrics.skip(source.name, "malformed")
                log.warning("skipped %s from manifests: %s: %s", resource.kind,
                            type(exc).__name__, str(exc)[:200])
                seen.add(object_key(obj))
        source.prune(resource, "", seen)
