"""List-then-watch, layered by what each layer guarantees (after kopf's watching.py).

- `Informer.run` survives everything: every failure (of a LIST, a watch, a 410 that
  repeats, a watch that closes at once) backs off exponentially with jitter, and it never
  returns until cancelled.
- `_list_then_watch` lists (paginated, each page handed on and dropped), then watches from
  the list's resourceVersion, re-watching on a normal end and re-listing on 410.
- `_watch_stream` is one WATCH request: bookmarks, a server-side timeout, client read
  timeouts, and a heartbeat: when the stream has been quiet for `heartbeat_seconds` the
  API server's /readyz is asked, with a short timeout. A frozen server (SIGSTOP, a dead
  peer) is therefore noticed within `heartbeat_seconds + heartbeat_timeout`; the stream is
  dropped and the source is down until a new list and watch succeed.

Restart reasons (`sloexporter_watch_restarts_total{reason}`), one per kind of cause:
`timeout` (the server ended the watch after timeoutSeconds: normal, not a failure),
`expired` (410 Gone: re-list), `closed` (the watch ended early, at once), `forbidden`
(401/403), `throttled` (429), `unavailable` (5xx), `http` (any other status),
`connection` (refused, reset, TLS), `unresponsive` (no answer within the read timeout or
heartbeat), `decode` (a body or event that is not the Kubernetes JSON we expect),
`error` (anything else).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from sloexporter import names
from sloexporter.aio import LOOP_SHARE
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

    @functools.cached_property  # one string, not a new one per object held
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
    #: longest wait for the next bytes of a LIST page
    list_timeout: float = 30.0
    #: a watch quiet this long makes us ask the server whether it still answers
    heartbeat_seconds: float = 10.0
    heartbeat_timeout: float = 5.0
    #: a stream silent for longer than this is dead even if the server answers (a proxy
    #: that lost the stream); bookmarks arrive about every minute
    watchdog_seconds: float = 330.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0


#: a watch that ends sooner than this after it started is a flap, and is not healthy yet
FLAP_SECONDS = 5.0
#: one watch event line may not exceed this (etcd's object limit is about 1.5 MB)
MAX_LINE = 16 << 20
#: resource not served (CRD not installed): look again after this
NOT_SERVED_RETRY = 60.0

#: the watch event types Kubernetes sends; the `type` label of watch_events_total
EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})

REASONS = ("timeout", "expired", "closed", "forbidden", "throttled", "unavailable", "http",
           "connection", "unresponsive", "decode", "error")


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
        self.detail = detail


def status_reason(code: int) -> str:
    if code in (401, 403):
        return "forbidden"
    if code == 429:
        return "throttled"
    if code >= 500:
        return "unavailable"
    return "http"


def status_message(body: bytes) -> str:
    """The apiserver's own message from a Status body (it names resource, verb, user)."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return data["message"][:300]
    return body[:200].decode("utf-8", "replace").strip()


_WS = re.compile(r"[ \t\n\r]*")
_DECODE = json.JSONDecoder().raw_decode


def list_items(text: str, rest: dict[str, Any]) -> Iterator[Any]:
    """The elements of a LIST body's `items` array, parsed one at a time; its other members
    go into `rest`. ValueError where `text` is not JSON, WatchFailed where it is no object
    or has two `items` members.

    Parsing a page of 500 Applications at once held all their dicts and strings together,
    and the pools they left half-used among the rendered lines stayed in the RSS.
    """
    ws = _WS.match

    def after(i: int, allowed: str) -> tuple[str, int]:
        """The separator at `i` (one of `allowed`) and where the next token starts."""
        sep = text[i:i + 1]
        if not sep or sep not in allowed:
            raise ValueError(f"one of {allowed!r} expected at {i}")
        return sep, ws(text, i + 1).end()

    i = ws(text).end()
    if text[i:i + 1] != "{":
        raise WatchFailed("decode", "list body is not an object")
    sep, i = after(i, "{")
    if text[i:i + 1] == "}":
        sep, i = after(i, "}")
    while sep != "}":
        key, i = _DECODE(text, i)
        if not isinstance(key, str):
            raise ValueError("a member name is not a string")
        _, i = after(ws(text, i).end(), ":")
        if key == "items" and key in rest:
            # json.loads would keep the last array, but the first one's objects are
            # applied already: a body no API server sends, failed as undecodable
            raise WatchFailed("decode", "the list body has two items members")
        if key == "items" and text[i:i + 1] == "[":  # else a null or wrong type, checked later
            rest[key] = []
            sep, i = after(i, "[")
            if text[i:i + 1] == "]":
                sep, i = after(i, "]")
            while sep != "]":
                item, i = _DECODE(text, i)
                yield item
                sep, i = after(ws(text, i).end(), ",]")
        else:
            rest[key], i = _DECODE(text, i)
        sep, i = after(ws(text, i).end(), ",}")
    if i != len(text):
        raise ValueError("extra data after the list")


def classify(exc: BaseException) -> tuple[str, str]:
    """(reason, short detail) for an exception out of a LIST or a watch."""
    if isinstance(exc, WatchFailed):
        return exc.reason, exc.detail
    if isinstance(exc, TimeoutError):  # aiohttp's ServerTimeoutError is one too
        return "unresponsive", "no answer within the read timeout"
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ContentTypeError | ValueError):
        return "decode", type(exc).__name__
    if isinstance(exc, aiohttp.ClientError | OSError):
        return "connection", (str(exc) or type(exc).__name__)[:200]
    return "error", repr(exc)[:200]


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
            (names.WATCH_RESTARTS, "Watch restarts by reason; reason=timeout is the server's "
             "normal end of a watch.", self.restarts, ("resource", "reason")),
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


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Exponential backoff with equal jitter: half fixed, half random, capped."""
    delay = min(cap, base * 2 ** min(max(failures - 1, 0), 16))
    return delay / 2 + random.uniform(0, delay / 2)


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
        #: why the informer is down (a restart reason), or None while it is healthy
        self.down_reason: str | None = "starting"
        self._failures = 0  # consecutive failures since the informer was last up
        self._down_since = time.monotonic()
        self._watch_was_healthy = False  # the last watch delivered events or lasted
        #: (pages, objects) of the last complete LIST
        self.last_list = (0, 0)

    @property
    def scope(self) -> str:
        return self.settings.namespace or ""

    @property
    def where(self) -> str:
        return f"{self.resource.name} in namespace {self.scope}" if self.scope else \
            f"{self.resource.name} (all namespaces)"

    @property
    def _settled(self) -> float:
        """A watch open this long is no flap (shorter with a short server timeout or
        watchdog, which would end a sound watch before FLAP_SECONDS)."""
        s = self.settings
        return min(FLAP_SECONDS, 0.9 * s.timeout_seconds, 0.9 * s.watchdog_seconds)

    @property
    def up(self) -> bool:
        """Listed, and a watch is open and not flapping (or the resource is not served)."""
        return self.down_reason is None

    # --- state changes: one log line each ---

    def _mark_up(self) -> None:
        if self.down_reason is None:
            return
        if self.down_reason != "starting":
            log.info("watch of %s is up again after %d retries (%.0fs down)", self.where,
                     self._failures, time.monotonic() - self._down_since)
        self.down_reason = None
        self._failures = 0

    def _failed(self, reason: str, detail: str, counted: bool = False) -> float:
        """Count a failure, log a state change, and return how long to back off."""
        if not counted:
            self.metrics.restart(self.resource.name, reason)
        self._failures += 1
        if self.down_reason != reason:
            if self.down_reason is None:
                self._down_since = time.monotonic()
            log.warning("watch of %s is down (%s%s); keeping the last known state, "
                        "retrying with backoff (retry %d)", self.where, reason,
                        f": {detail}" if detail else "", self._failures)
        else:
            log.debug("watch of %s still down (%s), retry %d", self.where, reason,
                      self._failures)
        self.down_reason = reason
        return backoff_delay(self._failures, self.settings.backoff_base,
                             self.settings.backoff_max)

    async def run(self) -> None:
        """Forever: list and watch; on any failure back off with jitter and start over."""
        while True:
            try:
                await self._list_then_watch()
                delay = 0.0  # not reached: _list_then_watch only returns by raising
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a source must never die
                delay = self._failed(*classify(exc))
            await asyncio.sleep(delay)

    async def _list_then_watch(self) -> None:
        expired = 0  # 410s in a row with no healthy watch between them
        relisting = False
        while True:
            if expired > 1:
                # the server expires every list or watch at once: do not hammer it
                await asyncio.sleep(self._failed("expired", "410 Gone again at once",
                                                 counted=True))
            started = time.monotonic()
            try:
                version, count = await self._list()
            except Expired:
                # a continue token outlived by compaction: start the list again
                expired += 1
                self.metrics.restart(self.resource.name, "expired")
                continue
            if relisting:
                log.info("watch of %s expired (410 Gone); re-listed %d objects in %.1fs",
                         self.where, count, time.monotonic() - started)
            self.listed.set()
            if version is None:  # resource not served (CRD not installed): look again later
                self._mark_up()
                await asyncio.sleep(NOT_SERVED_RETRY)
                continue
            self._watch_was_healthy = False
            try:
                await self._watch_forever(version)
            except Expired:
                self.metrics.restart(self.resource.name, "expired")
                expired = 1 if self._watch_was_healthy else expired + 1
                relisting = True

    async def _watch_forever(self, version: str) -> None:
        """Watch from `version`, re-watching after each normal end, until 410 or failure."""
        # after a failure the watch must stay open a while before the informer counts as
        # up: marking up on open reset the backoff, so a server that opens every watch and
        # fails it at once was retried at the base delay forever
        prove = self.down_reason not in (None, "starting")
        while True:
            started = time.monotonic()
            try:
                async for event in self._watch_stream(version, prove):
                    version = self._dispatch(event) or version
                    if LOOP_SHARE.due():
                        # a backlog of buffered events never waits on the network, so
                        # without this a burst would hold off every scrape until drained
                        await LOOP_SHARE.take_turn()
            except Expired:
                if time.monotonic() - started >= self._settled:
                    self._watch_was_healthy = True
                raise
            lasted = time.monotonic() - started
            if lasted >= self._settled:
                # the server's normal end of a watch (timeoutSeconds): not a failure
                self.metrics.restart(self.resource.name, "timeout")
                self._watch_was_healthy = True
                self._mark_up()
                prove = False
                continue
            # a watch the server ends at once (a proxy, a broken server) is not a healthy
            # watch: the source is down, we back off instead of spinning, and the next
            # watch counts as up only once it has stayed open FLAP_SECONDS
            prove = True
            await asyncio.sleep(self._failed("closed", f"watch ended after {lasted:.1f}s"))

    def _dispatch(self, event: dict[str, Any]) -> str | None:
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(kind, str) or not isinstance(obj, dict):
            raise WatchFailed("decode", "watch event without a type or an object")
        if kind not in EVENT_TYPES:
            # not counted: a hostile stream would grow the `type` label without bound
            raise WatchFailed("decode", f"unknown watch event type {kind[:40]!r}")
        self.metrics.event(self.source, self.resource.name, kind)
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise Expired()
            code = code if isinstance(code, int) else 500
            raise WatchFailed(status_reason(code),
                              f"HTTP {code} in the watch: {str(obj.get('message', ''))[:300]}")
        metadata = obj.get("metadata")
        version = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
        if kind != "BOOKMARK":
            self._apply(kind, obj)
            self._watch_was_healthy = True
        return version if isinstance(version, str) and version else None

    def _apply(self, kind: str, obj: dict[str, Any]) -> str | None:
        """Hand one object on; a handler error skips the object, never the source."""
        try:
            self.handler.apply(self.resource, kind, obj)
            return self.handler.key_of(obj)
        except Exception as exc:  # noqa: BLE001 - one bad object must not stop a source
            self.metrics.skip(self.source, "malformed")
            log.warning("skipped a %s: %s", self.resource.kind, repr(exc)[:200])
            return None

    async def _get(self, query: list[tuple[str, str]], read_timeout: float) -> Any:
        return await self.api.call_api(
            self.resource.path(self.settings.namespace), "GET", query_params=query,
            auth_settings=["BearerToken"], _preload_content=False,
            _request_timeout=aiohttp.ClientTimeout(
                connect=self.settings.connect_timeout, sock_connect=self.settings.connect_timeout,
                sock_read=read_timeout))

    def _selectors(self) -> list[tuple[str, str]]:
        query = []
        if self.settings.label_selector:
            query.append(("labelSelector", self.settings.label_selector))
        if self.settings.field_selector:
            query.append(("fieldSelector", self.settings.field_selector))
        return query

    async def _check_status(self, resp: Any, verb: str) -> None:
        if resp.status == 410:
            raise Expired()
        if resp.status != 200:
            body = await asyncio.wait_for(resp.content.read(64 << 10),
                                          self.settings.heartbeat_timeout)
            raise WatchFailed(status_reason(resp.status),
                              f"{verb} returned HTTP {resp.status}: {status_message(body)}")

    async def _list(self) -> tuple[str | None, int]:
        """LIST page by page, handing objects on; prune what was not seen.

        Returns the list's resourceVersion (None when the API does not serve the resource)
        and how many objects it had.
        """
        seen: set[str] = set()
        token = ""
        tokens: set[str] = set()  # a server that hands back a token twice pages forever
        count = pages = 0
        while True:
            pages += 1
            query = self._selectors() + [("limit", str(self.settings.page_size))]
            if token:
                query.append(("continue", token))
            resp = await self._get(query, self.settings.list_timeout)
            try:
                if resp.status == 404 and not token:
                    log.info("%s is not served by the API; will look again", self.resource.name)
                    self.handler.prune(self.resource, self.scope, set())
                    return None, 0
                await self._check_status(resp, "list")
                async with asyncio.timeout(self.settings.list_timeout * 4):
                    # read, not resp.json(): the response would keep its body while the
                    # next page is fetched
                    text = (await resp.content.read()).decode()
            finally:
                resp.release()
            page: dict[str, Any] = {}
            for obj in list_items(text, page):
                if not isinstance(obj, dict):
                    self.metrics.skip(self.source, "malformed")
                    continue
                obj.setdefault("apiVersion", self.resource.api_version)
                obj.setdefault("kind", self.resource.kind)
                key = self._apply("ADDED", obj)
                count += 1
                if key is not None:
                    seen.add(key)
                if LOOP_SHARE.due():  # a page of 500 large objects is tens of ms
                    await LOOP_SHARE.take_turn()
            del text  # the next page is fetched and parsed without this one held
            items, meta = page.get("items"), page.get("metadata")
            if not isinstance(items, list | None) or not isinstance(meta, dict | None):
                raise WatchFailed("decode", "list items or metadata of the wrong type")
            meta = meta or {}
            token = meta.get("continue") or ""
            if not isinstance(token, str):
                raise WatchFailed("decode", "list continue token is not a string")
            if token in tokens:
                raise WatchFailed("decode", "the list's continue token repeats (pages in a loop)")
            tokens.add(token)
            if not token:
                self.handler.prune(self.resource, self.scope, seen)
                self.last_list = (pages, count)
                version = meta.get("resourceVersion")
                return (version if isinstance(version, str) else ""), count

    async def _heartbeat(self) -> None:
        """Ask the server whether it still answers; raise if it does not in time."""
        try:
            resp = await self.api.call_api(
                "/readyz", "GET", auth_settings=["BearerToken"], _preload_content=False,
                _request_timeout=aiohttp.ClientTimeout(total=self.settings.heartbeat_timeout))
        except TimeoutError:
            raise WatchFailed("unresponsive", "the API server did not answer a heartbeat "
                              f"within {self.settings.heartbeat_timeout:g}s") from None
        try:
            if resp.status >= 500:
                raise WatchFailed("unavailable", f"the API server's /readyz is {resp.status}")
        finally:
            resp.release()

    async def _watch_stream(self, version: str, prove: bool = False
                            ) -> AsyncIterator[dict[str, Any]]:
        """One WATCH. `prove`: mark the informer up only once the stream has stayed open
        a while (after a watch that closed at once), not as soon as it opens."""
        s = self.settings
        query = self._selectors() + [
            ("watch", "true"), ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(s.timeout_seconds))]
        if version:
            query.append(("resourceVersion", version))
        resp = await self._get(query, s.watchdog_seconds)
        try:
            await self._check_status(resp, "watch")
            opened = last_data = time.monotonic()
            if not prove:
                self._mark_up()
            buffer = b""
            while True:
                wait = min(s.heartbeat_seconds, s.watchdog_seconds)
                if prove:
                    wait = min(wait, max(0.05, opened + self._settled - time.monotonic()))
                try:
                    # readany gives whatever has arrived and is safe to cancel (readline
                    # is not: it drops a partial line); lines are split here
                    async with asyncio.timeout(wait):
                        chunk = await resp.content.readany()
                except TimeoutError:
                    chunk = None
                now = time.monotonic()
                if prove and now - opened >= self._settled:
                    prove = False
                    self._watch_was_healthy = True
                    self._mark_up()
                if chunk is None:
                    if now - last_data >= s.watchdog_seconds:
                        raise WatchFailed("unresponsive", "watch stream silent too long")
                    if now - last_data >= s.heartbeat_seconds:
                        await self._heartbeat()
                    continue
                if not chunk:
                    if buffer.strip():
                        raise WatchFailed("decode", "watch stream ended inside an event")
                    return
                last_data = now
                buffer += chunk
                if len(buffer) > MAX_LINE and b"\n" not in chunk:
                    raise WatchFailed("decode", "watch event larger than 16 MiB")
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError:
                        raise WatchFailed("decode", "malformed JSON in the watch stream") \
                            from None
                    if not isinstance(event, dict):
                        raise WatchFailed("decode", "watch event is not an object")
                    yield event
        finally:
            resp.release()
