"""What every watched source shares: keys, sharding, pruning and bad-input handling."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar

from sloexporter.sources.informer import Resource, SelfMetrics
from sloexporter.sources.store import Family, Obj, Shard, Store

log = logging.getLogger(__name__)


class BadInput(Exception):
    """An object we cannot read; it is skipped and counted, never fatal."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def meta(obj: Obj) -> dict[str, Any]:
    value = obj.get("metadata")
    return value if isinstance(value, dict) else {}


def field(obj: Obj, *path: str) -> Any:
    """obj[a][b]... or None when any step is missing or not a mapping."""
    cur: Any = obj
    for part in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def timestamp(value: Any) -> float | None:
    """RFC 3339 (`2026-11-22T03:00:00Z`) to Unix seconds; None when absent or odd."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


#: an annotation that marks an object as broken on purpose (the demo's bad inputs)
DELIBERATE_ANNOTATION = "sloexporter.dev/deliberately-broken"


def deliberate(obj: Obj) -> str:
    """` (deliberate: why)` for an object annotated as broken on purpose, else ``."""
    annotations = meta(obj).get("annotations")
    why = annotations.get(DELIBERATE_ANNOTATION) if isinstance(annotations, dict) else None
    return f" (deliberate: {str(why)[:200]})" if why else ""


def object_key(obj: Obj) -> str:
    """The object's UID; kind/namespace/name where the server gave none."""
    m = meta(obj)
    uid = m.get("uid")
    if isinstance(uid, str) and uid:
        return uid
    return f"{obj.get('kind', '')}/{m.get('namespace', '')}/{m.get('name', '')}"


#: Kubernetes: object names are DNS subdomains (253), namespaces DNS labels (63)
MAX_NAME = 253
MAX_NAMESPACE = 63


def _str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def check_shape(obj: Obj) -> None:
    """The skeleton every Kubernetes object has, with the right types, or BadInput.

    A real API server guarantees it; manifests and broken proxies do not, and a field of
    the wrong type must be a counted skip, not an exception deep inside a source.
    """
    m = obj.get("metadata")
    if not isinstance(m, dict):
        raise BadInput("malformed")
    name, namespace = m.get("name"), m.get("namespace")
    if not isinstance(name, str) or not name:
        raise BadInput("no_name")
    if namespace is not None and not isinstance(namespace, str):
        raise BadInput("malformed")
    # the API server's limits: longer names (from manifests) would be cut in the label
    # value, and two objects could then share one series
    if len(name) > MAX_NAME or (namespace and len(namespace) > MAX_NAMESPACE):
        raise BadInput("malformed")
    for key in ("labels", "annotations"):
        if m.get(key) is not None and not _str_map(m[key]):
            raise BadInput("malformed")
    refs = m.get("ownerReferences")
    if refs is not None and not (isinstance(refs, list) and all(
            isinstance(r, dict) and all(isinstance(r.get(f, ""), str)
                                        for f in ("kind", "name", "uid")) for r in refs)):
        raise BadInput("malformed")
    for key in ("spec", "status"):
        if obj.get(key) is not None and not isinstance(obj[key], dict):
            raise BadInput("malformed")


def identity(resource: Resource, obj: Obj) -> tuple[str, str, str]:
    """What names an object to users (resource, namespace, name): a UID may change under it."""
    m = meta(obj)
    # a few namespaces are shared by many objects: one string each (a cluster's names are
    # bounded, 63 characters at most, checked before this is kept)
    return resource.name, sys.intern(str(m.get("namespace") or "")), str(m.get("name") or "")


class Source:
    """A watched source: a table of families, a store, and per-scope key tracking.

    Keys are UIDs, but two UIDs can carry one name: an object deleted and re-created
    while we were not watching comes back, in a re-list, under a new UID before the list
    ends and the old one is pruned. Both would render the same series (one old, one new).
    So each (resource, namespace, name) maps to one key, and a new key under a known name
    replaces the old one in the same step: a scrape never sees both, nor neither.
    """

    name: ClassVar[str]
    families: ClassVar[tuple[Family, ...]]

    def __init__(self, metrics: SelfMetrics, shard: Shard | None = None) -> None:
        self.metrics = metrics
        self.store = Store(self.families, shard or Shard())
        self._scopes: dict[tuple[str, str], set[str]] = {}
        self._by_name: dict[tuple[str, str, str], str] = {}
        self._names: dict[str, tuple[str, str, str]] = {}
        self._reported: dict[str, str] = {}  # key -> reason of the skip last logged

    @property
    def resources(self) -> tuple[Resource, ...]:
        raise NotImplementedError

    def key_of(self, obj: Obj) -> str:
        return object_key(obj)

    def shard_key(self, resource: Resource, obj: Obj) -> str:
        """The key whose hash picks the shard; aggregates use their owner's."""
        return self.key_of(obj)

    def apply(self, resource: Resource, event: str, obj: Obj) -> None:
        """One object from a list, a watch or a manifest; bad input is skipped and counted.

        Everything that reads the object, the shard key too, runs inside the guard.
        """
        key: str | None = None
        try:
            key = self.key_of(obj)
            if event != "DELETED":
                check_shape(obj)
            ident = identity(resource, obj)
            scope = (resource.name, ident[1])
            if event == "DELETED" or not self.store.shard.owns(self.shard_key(resource, obj)):
                if key in self._scopes.get(scope, ()):
                    self._forget(resource, scope, key, obj)
                return
            old = self._by_name.get(ident)
            if old is not None and old != key:
                self._forget(resource, scope, old, None)
            elif old == key:  # an update: keep the tuple already held, not a second copy
                ident = self._names.get(key, ident)
            self._by_name[ident] = key
            self._names[key] = ident
            self._scopes.setdefault(scope, set()).add(key)
            self.update(resource, key, obj)
            self._reported.pop(key, None)
        except Exception as exc:  # noqa: BLE001 - one object never stops a source
            reason = exc.reason if isinstance(exc, BadInput) else "malformed"
            self.metrics.skip(self.name, reason)
            if key is not None:
                try:
                    self.remove(resource, key, None)
                except Exception:  # noqa: BLE001
                    log.exception("could not drop the series of a skipped object")
            if key is not None and self._reported.get(key) == reason:
                return  # counted again, but one log line per object and reason
            if key is not None:
                self._reported[key] = reason
            m = meta(obj)
            log.warning("skipped %s %s/%s: %s%s", resource.kind,
                        str(m.get("namespace", ""))[:100], str(m.get("name", ""))[:100],
                        str(exc)[:200], deliberate(obj))

    def _forget(self, resource: Resource, scope: tuple[str, str], key: str,
                obj: Obj | None) -> None:
        self._scopes.get(scope, set()).discard(key)
        self._reported.pop(key, None)
        ident = self._names.pop(key, None)
        if ident is not None and self._by_name.get(ident) == key:
            del self._by_name[ident]
        self.remove(resource, key, obj)

    def prune(self, resource: Resource, scope: str, seen: set[str]) -> None:
        """After a (re-)list: forget what the list no longer has."""
        for (res, ns), keys in list(self._scopes.items()):
            if res != resource.name or (scope and ns != scope):
                continue
            for key in list(keys - seen):
                self._forget(resource, (res, ns), key, None)

    def update(self, resource: Resource, key: str, obj: Obj) -> None:
        raise NotImplementedError

    def remove(self, resource: Resource, key: str, obj: Obj | None) -> None:
        self.store.delete(key)

    def render(self, openmetrics: bool = False) -> Iterable[bytes]:
        return self.store.render(openmetrics)

    def object_count(self) -> int:
        """Objects currently held, over every resource and scope."""
        return sum(len(keys) for keys in self._scopes.values())
