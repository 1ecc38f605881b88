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

from sloexporter import yamlsafe
from sloexporter.aio import in_thread, short_switch_interval
from sloexporter.model import parse_duration
from sloexporter.sources.base import Source, identity, object_key
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
#: the project's one YAML loader, with the manifest limits (its kinds of refusal are the
#: skip reasons: too_large, too_deep, alias_expansion, unparsable_yaml)
LIMITS = yamlsafe.Limits(max_bytes=MAX_FILE_BYTES, max_depth=MAX_DEPTH,
                         max_alias_nodes=MAX_ALIAS_NODES)


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


def parse_file(path: Path, now: datetime) -> list[Any]:
    """The entries of one file (List kinds unpacked): objects, and whatever stands where
    an object should (see not_objects); Rejected when the file cannot be used."""
    try:
        # bounded read: a file that grows past the limit after a stat is still refused
        text = yamlsafe.read_text(path, limits=LIMITS)
    except OSError as exc:
        raise Rejected("unreadable", str(exc)[:200]) from None
    except yamlsafe.YAMLProblem as exc:  # too large, or not UTF-8 text
        reason = "too_large" if exc.kind == "too_large" else "unreadable"
        raise Rejected(reason, exc.message[:200]) from None
    try:
        docs = [d.data for d in yamlsafe.load_all(text, str(path), limits=LIMITS, lines=False)]
    except yamlsafe.YAMLProblem as exc:
        raise Rejected(exc.kind, f"line {exc.line}: {exc.message}"[:200]) from None
    objects: list[Any] = []
    for doc in docs:
        items = doc.get("items") if isinstance(doc, dict) and \
            str(doc.get("kind", "")).endswith("List") else [doc]
        if not isinstance(items, list):
            items = [items]  # a List whose items are no list: one malformed entry
        # an empty document (a trailing ---) is nothing; a string or a list where an
        # object should be is kept as it is, so the caller counts it as malformed
        objects += [resolve_times(o, now) if isinstance(o, dict) else o
                    for o in items if o is not None]
    return objects


#: seconds the parsing thread holds the GIL while the event loop waits for it
PARSE_SWITCH_INTERVAL = 0.001


async def _parse_beside_the_loop(path: Path, now: datetime) -> list[Any]:
    """parse_file in a thread. The event loop waits for the GIL each time it comes back
    from the network, by default up to 5 ms behind the parse: a scrape during an 11 MB
    file's parse took up to a second; 1 ms a time while the parse runs, 0.2 s."""
    with short_switch_interval(PARSE_SWITCH_INTERVAL):
        return await in_thread(parse_file, path, now)


def not_objects(path: Path, objects: list[Any]) -> tuple[list[dict[str, Any]], int]:
    """The mappings of a parsed file, and how many entries were something else."""
    kept = [o for o in objects if isinstance(o, dict)]
    odd = len(objects) - len(kept)
    if odd:
        log.warning("skipped %d entries of manifest %s that are not Kubernetes objects "
                    "(a mapping with apiVersion and kind)", odd, path)
    return kept, odd


def manifest_files(folder: Path) -> list[Path]:
    """The YAML and JSON files under `folder`, hidden ones (any part starting with a dot)
    left out: a ConfigMap volume holds each file twice, as `name.yaml` and under a
    timestamped `..2026_12_02_...` folder (an old one lingers during an update), and
    editors leave `.name.yaml.swp`-like copies; reading those would apply stale twins."""
    return sorted(p for p in folder.rglob("*")
                  if p.suffix in SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def read_objects(folder: Path, now: datetime | None = None) -> tuple[list[dict[str, Any]], int]:
    """Every object in the folder's YAML files (List kinds unpacked); and bad files."""
    now = now or datetime.now(UTC)
    objects: list[dict[str, Any]] = []
    bad = 0
    for path in manifest_files(folder):
        try:
            objects += not_objects(path, parse_file(path, now))[0]
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
        #: False while the folder is gone (a dangling symlink mid-swap, an unmounted
        #: volume): the last state is kept and the sources say they are down
        self.available = True
        self._state = _Folder()

    async def run(self) -> None:
        """Load now, then again whenever a file changes; never returns."""
        while True:
            try:
                if not await in_thread(self.folder.is_dir):
                    # an empty scan would prune every object: keep what we have instead
                    if self.available:
                        log.warning("manifests folder %s is gone; keeping the last state "
                                    "until it returns", self.folder)
                    self.available = False
                    await asyncio.sleep(self.interval)
                    continue
                if not self.available:
                    log.info("manifests folder %s is back", self.folder)
                    self.available = True
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
                kept, odd = not_objects(path, await _parse_beside_the_loop(path, now))
                for _ in range(odd):
                    self.metrics.skip(SOURCE, "malformed")
                files[path] = (sig, kept)
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
        owners: dict[str, tuple[str, str, str]] = {}  # key (UID) -> the object that has it
        for i, obj in enumerate(objs):
            if i and i % APPLY_BATCH == 0:
                await asyncio.sleep(0)
            self.metrics.event(source.name, resource.name, "ADDED")
            # a hand-written manifest copied from another keeps its `uid`: the API server
            # never gives two objects one UID, and the second would silently replace the
            # first one's series; the same object listed twice (same name) is harmless
            key, ident = source.key_of(obj), identity(resource, obj)
            first = owners.setdefault(key, ident)
            if first != ident:
                self.metrics.skip(source.name, "duplicate_uid")
                log.warning("skipped %s %s/%s from manifests: uid %s is already %s/%s's",
                            resource.kind, ident[1][:100], ident[2][:100], key[:100],
                            first[1][:100], first[2][:100])
                continue
            try:
                source.apply(resource, "ADDED", obj)
                seen.add(source.key_of(obj))
            except Exception as exc:  # noqa: BLE001 - one object never stops a load
                self.metrics.skip(source.name, "malformed")
                log.warning("skipped %s from manifests: %s: %s", resource.kind,
                            type(exc).__name__, str(exc)[:200])
                seen.add(object_key(obj))
        source.prune(resource, "", seen)
