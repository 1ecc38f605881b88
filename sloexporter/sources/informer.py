"""List-then-watch, layered by what each layer guarantees (after kopf's watching.py).

- `Informer.run` survives everything: errors back off with jitter, and it never returns
  until cancelled.
- `_list_then_watch` lists (paginated, each page handed on and dropped), then watches from
  the list's resourceVersion, re-watching on a normal end and returning to re-list on 410.
- `_watch_stream` is one WATCH request: bookmarks, a server-side timeout, a client
  (connect, sock_read) timeout and a watchdog for streams that hang (kubernetes-asyncio
  #360).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from sloexporter import names
from sloexporter.exposition import family_header, sample_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def name(self) -> str:
        """`applications.argoproj.io`, `secrets`: the label value in self-metrics."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace and self.namespaced:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"


@dataclass(frozen=True)
class WatchSettings:
    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None
    page_size: int = 500
    #: the API server ends each watch after this; we then re-watch without re-listing
    timeout_seconds: int = 300
    connect_timeout: float = 10.0
    #: a stream silent for longer than this is dead (bookmarks arrive about every minute)
    watchdog_seconds: float = 330.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0


#: a watch that ends normally sooner than this after it started is a flap
FLAP_SECONDS = 5.0


class Handler(Protocol):
    def apply(self, resource: Resource, event: str, obj: dict[str, Any]) -> None: ...

    def prune(self, resource: Resource, scope: str, seen: set[str]) -> None: ...

    def key_of(self, obj: dict[str, Any]) -> str: ...


class Expired(Exception):
    """410 Gone: our resourceVersion is too old; re-list."""


class WatchFailed(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class SelfMetrics:
    """sloexporter_watch_* and sloexporter_source_* for every informer and source."""

    events: dict[tuple[str, str], int] = field(default_factory=dict)
    restarts: dict[tuple[str, str], int] = field(default_factory=dict)
    last_event: dict[str, float] = field(default_factory=dict)
    skipped: dict[tuple[str, str], int] = field(default_factory=dict)

    def event(self, source: str, resource: str, kind: str) -> None:
        self.events[(resource, kind)] = self.events.get((resource, kind), 0) + 1
        self.last_event[source] = time.time()

    def restart(self, resource: str, reason: str) -> None:
        self.restarts[(resource, reason)] = self.restarts.get((resource, reason), 0) + 1

    def skip(self, source: str, reason: str) -> None:
        self.skipped[(source, reason)] = self.skipped.get((source, reason), 0) + 1

    def render(self, up: dict[str, bool]) -> str:
        out = [family_header(names.SOURCE_UP, "1 when every watch of the source works.",
                             "gauge")]
        out += [sample_line(names.SOURCE_UP, {"source": s}, int(v)) for s, v in sorted(up.items())]
        for name, help_text, data, labels in (
            (names.WATCH_EVENTS, "Watch events received.", self.events, ("resource", "type")),
            (names.WATCH_RESTARTS, "Watch restarts by reason.", self.restarts,
             ("resource", "reason")),
            (names.SKIPPED_OBJECTS, "Objects skipped as bad input.", self.skipped,
             ("source", "reason")),
        ):
            if data:
                out.append(family_header(name, help_text, "counter"))
                out += [sample_line(name, dict(zip(labels, k, strict=True)), v)
                        for k, v in sorted(data.items())]
        if self.last_event:
            out.append(family_header(names.SOURCE_LAST_EVENT, "Time of the last event.",
                                     "gauge"))
            out += [sample_line(names.SOURCE_LAST_EVENT, {"source": s}, t)
                    for s, t in sorted(self.last_event.items())]
        return "".join(out)


class Informer:
    """Keeps a handler in step with one resource in one scope (a namespace or all)."""

    def __init__(self, api: Any, resource: Resource, handler: Handler, source: str,
                 metrics: SelfMetrics, settings: WatchSettings | None = None) -> None:
        self.api = api  # a kubernetes_asyncio ApiClient
        self.resource = resource
        self.handler = handler
        self.source = source
        self.metrics = metrics
        self.settings = settings or WatchSettings()
        self.listed = asyncio.Event()
        self.up = False
        self._failures = 0

    @property
    def scope(self) -> str:
        return self.settings.namespace or ""

    async def run(self) -> None:
        """Forever: list and watch; on any failure back off with jitter and start over."""
        while True:
            try:
                await self._list_then_watch()
            except asyncio.CancelledError:
                raise
            except WatchFailed as exc:
                self._failed(exc.reason, str(exc))
            except Exception as exc:  # noqa: BLE001 - a source must never die
                self._failed("error", repr(exc))
            delay = min(self.settings.backoff_max,
                        self.settings.backoff_base * 2 ** min(self._failures, 10))
            await asyncio.sleep(random.uniform(0, delay))

    def _failed(self, reason: str, detail: str) -> None:
        self.up = False
        self._failures += 1
        self.metrics.restart(self.resource.name, reason)
        log.warning("watch of %s failed (%s); keeping last known state", self.resource.name,
                    detail[:300])

    async def _list_then_watch(self) -> None:
        while True:
            try:
                version = await self._list()
            except Expired:
                self.metrics.restart(self.resource.name, "expired")
                continue
            self.up = True
            self._failures = 0
            self.listed.set()
            if version is None:  # resource not served (CRD not installed): look again later
                await asyncio.sleep(60)
                continue
            try:
                flaps = 0
                while True:
                    started = time.monotonic()
                    async for event in self._watch_stream(version):
                        version = self._dispatch(event) or version
                    self.metrics.restart(self.resource.name, "closed")
                    # a watch the server ends at once, again and again (a proxy, a broken
                    # server), must not become a busy loop against the API: back off
                    flaps = flaps + 1 if time.monotonic() - started < FLAP_SECONDS else 0
                    if flaps:
                        await asyncio.sleep(random.uniform(0, min(
                            self.settings.backoff_max,
                            self.settings.backoff_base * 2 ** min(flaps, 10))))
            except Expired:
                self.metrics.restart(self.resource.name, "expired")

    def _dispatch(self, event: dict[str, Any]) -> str | None:
        kind = str(event.get("type", ""))
        obj = event.get("object")
        if not isinstance(obj, dict):
            raise WatchFailed("error", f"malformed watch event {kind}")
        self.metrics.event(self.source, self.resource.name, kind)
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Expired()
            raise WatchFailed("error", str(obj.get("message", obj))[:200])
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            self.handler.apply(self.resource, kind, obj)
        return version if isinstance(version, str) and version else None

    async def _get(self, query: list[tuple[str, str]], read_timeout: float) -> Any:
        return await self.api.call_api(
            self.resource.path(self.settings.namespace), "GET", query_params=query,
            auth_settings=["BearerToken"], _preload_content=False,
            _request_timeout=(self.settings.connect_timeout, read_timeout))

    def _selectors(self) -> list[tuple[str, str]]:
        query = []
        if self.settings.label_selector:
            query.append(("labelSelector", self.settings.label_selector))
        if self.settings.field_selector:
            query.append(("fieldSelector", self.settings.field_selector))
        return query

    async def _list(self) -> str | None:
        """LIST page by page, handing objects on; prune what was not seen.

        Returns the list's resourceVersion, or None when the API does not serve it.
        """
        seen: set[str] = set()
        token = ""
        while True:
            query = self._selectors() + [("limit", str(self.settings.page_size))]
            if token:
                query.append(("continue", token))
            resp = await self._get(query, self.settings.watchdog_seconds)
            try:
                if resp.status == 410:
                    raise Expired()
                if resp.status == 404 and not token:
                    log.info("%s is not served by the API; will look again", self.resource.name)
                    self.handler.prune(self.resource, self.scope, set())
                    return None
                if resp.status != 200:
                    raise WatchFailed("error", f"list returned HTTP {resp.status}")
                async with asyncio.timeout(self.settings.watchdog_seconds):
                    page = await resp.json(content_type=None)
            finally:
                resp.release()
            for obj in page.get("items") or ():
                if isinstance(obj, dict):
                    obj.setdefault("apiVersion", self.resource.api_version)
                    obj.setdefault("kind", self.resource.kind)
                    self.handler.apply(self.resource, "ADDED", obj)
                    seen.add(self.handler.key_of(obj))
            meta = page.get("metadata") or {}
            token = meta.get("continue") or ""
            if not token:
                self.handler.prune(self.resource, self.scope, seen)
                return str(meta.get("resourceVersion") or "")

    async def _watch_stream(self, version: str) -> AsyncIterator[dict[str, Any]]:
        query = self._selectors() + [
            ("watch", "true"), ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(self.settings.timeout_seconds))]
        if version:
            query.append(("resourceVersion", version))
        resp = await self._get(query, self.settings.watchdog_seconds)
        try:
            if resp.status == 410:
                raise Expired()
            if resp.status != 200:
                raise WatchFailed("error", f"watch returned HTTP {resp.status}")
            while True:
                try:
                    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
                    # cancellation that races a line arriving, and shutdown would hang
                    async with asyncio.timeout(self.settings.watchdog_seconds):
                        line = await resp.content.readline()
                except TimeoutError:
                    raise WatchFailed("watchdog", "stream silent too long") from None
                if not line:
                    return
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    raise WatchFailed("error", "malformed JSON in watch stream") from None
                if isinstance(event, dict):
                    yield event
        finally:
            resp.release()
