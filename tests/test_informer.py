"""The informer against kmock, a real Kubernetes API server on 127.0.0.1, over HTTP.

Scripted streams show: a BOOKMARK moving the watch's resourceVersion, a 410 inside a
watch and an HTTP 410 on a list both causing a re-LIST that replaces state, a 500 that
makes the source down while it keeps its last known state, and a dropped connection.
kmock cannot show: resourceVersion continuity on the server (it has none), a server-side
`timeoutSeconds` ending a stream (ignored), server-side selector filtering (ignored), or a
stream that hangs silently (the watchdog is exercised with a short limit on a stream
kmock keeps open with no events).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import kmock as km
import pytest

from sloexporter.sources.informer import Informer, Resource, SelfMetrics, WatchSettings
from tests.kube_fixtures import register

#: the kmock fixtures (watch=True normalised, an ApiClient on kmock)
pytest_plugins = ["tests.kube_fixtures"]

APPS = Resource("argoproj.io", "v1alpha1", "applications", "Application")
KEY = "argoproj.io/v1alpha1/applications"
FAST = WatchSettings(page_size=1, timeout_seconds=5, connect_timeout=2.0,
                     watchdog_seconds=5.0, backoff_base=0.01, backoff_max=0.05)
WAIT = 10.0


class Recorder:
    """A Handler that keeps the current objects by name, like a source's store."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, str]] = []
        self.prunes = 0

    def key_of(self, obj: dict[str, Any]) -> str:
        return str(obj["metadata"]["name"])

    def apply(self, resource: Resource, event: str, obj: dict[str, Any]) -> None:
        self.events.append((event, self.key_of(obj)))
        if event == "DELETED":
            self.objects.pop(self.key_of(obj), None)
        else:
            self.objects[self.key_of(obj)] = obj

    def prune(self, resource: Resource, scope: str, seen: set[str]) -> None:
        self.prunes += 1
        for key in set(self.objects) - seen:
            del self.objects[key]


def app(name: str, rv: str = "") -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "namespace": "argocd"}
    if rv:
        m["resourceVersion"] = rv
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": m}


async def until(cond: Callable[[], bool], what: str) -> None:
    """Poll a condition with a bounded wait."""
    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.01)
    try:
        await asyncio.wait_for(poll(), WAIT)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@pytest.fixture
def seeded(kmock: Any) -> Any:
    register(kmock, "argoproj.io", "v1alpha1", "applications", "Application")
    for name in ("a1", "a2", "a3"):
        kmock.objects[KEY, "argocd", name] = app(name)
    return kmock


@contextlib.asynccontextmanager
async def running(api: Any, settings: WatchSettings = FAST
                  ) -> AsyncIterator[tuple[Informer, Recorder, SelfMetrics]]:
    rec, metrics = Recorder(), SelfMetrics()
    inf = Informer(api, APPS, rec, "argocd", metrics, settings)
    task = asyncio.create_task(inf.run())
    try:
        yield inf, rec, metrics
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT)


def requests(kmock: Any, action: Any) -> list[dict[str, str]]:
    return [dict(r.params) for r in kmock[action]]


async def test_paginated_list_then_watch_with_bookmarks_and_timeouts(seeded, api_client):
    async with running(api_client) as (inf, rec, metrics):
        await asyncio.wait_for(inf.listed.wait(), WAIT)
        assert set(rec.objects) == {"a1", "a2", "a3"} and inf.up
        await until(lambda: len(seeded[km.action.WATCH]) >= 1, "a watch request")
    lists = requests(seeded, km.action.LIST)
    assert lists[0]["limit"] == "1"
    watch = requests(seeded, km.action.WATCH)[0]
    assert watch["watch"] == "true" and watch["allowWatchBookmarks"] == "true"
    assert watch["timeoutSeconds"] == "5"


async def test_bookmark_moves_the_resource_version_and_is_not_an_object(seeded, api_client):
    seeded["watch", km.resource(KEY)][:1] << (
        {"type": "ADDED", "object": app("a4", "11")},
        {"type": "BOOKMARK", "object": {"kind": "Application",
                                        "metadata": {"resourceVersion": "42"}}})
    async with running(api_client) as (inf, rec, metrics):
        await until(lambda: len(seeded[km.action.WATCH]) >= 2, "a second watch")
        assert "a4" in rec.objects
        assert ("BOOKMARK", "") not in rec.events
        assert metrics.events[(APPS.name, "BOOKMARK")] == 1
    # the stream ended normally: re-watch from the bookmark without re-listing
    assert requests(seeded, km.action.WATCH)[1].get("resourceVersion") == "42"
    assert metrics.restarts[(APPS.name, "closed")] >= 1
    assert len({tuple(r.items()) for r in requests(seeded, km.action.LIST)}) >= 1


async def test_410_in_a_watch_relists_and_replaces_state(seeded, api_client):
    seeded["watch", km.resource(KEY)][:1] << (
        {"type": "DELETED", "object": app("a1", "5")},
        {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}})
    async with running(api_client) as (inf, rec, metrics):
        await until(lambda: metrics.restarts.get((APPS.name, "expired"), 0) >= 1, "expiry")
        await until(lambda: rec.prunes >= 2, "the re-list")
        # the re-list brings a1 back (it is still on the server), with no duplicates
        assert set(rec.objects) == {"a1", "a2", "a3"}
        assert inf.up


async def test_410_on_list_relists(seeded, api_client):
    seeded["list", km.resource(KEY)][:1] << 410 << {
        "kind": "Status", "code": 410, "reason": "Expired"}
    async with running(api_client) as (inf, rec, metrics):
        await asyncio.wait_for(inf.listed.wait(), WAIT)
        assert set(rec.objects) == {"a1", "a2", "a3"}
        assert metrics.restarts[(APPS.name, "expired")] == 1


async def test_500_marks_the_source_down_and_keeps_last_state(seeded, api_client):
    # first list fine; the watch fails with 500, and so does the next list
    seeded["watch", km.resource(KEY)][:1] << 500 << {"kind": "Status", "code": 500}
    seeded["list", km.resource(KEY)][1:2] << 500 << {"kind": "Status", "code": 500}
    slow = WatchSettings(**{**FAST.__dict__, "backoff_base": 0.5, "backoff_max": 0.5})
    async with running(api_client, slow) as (inf, rec, metrics):
        await until(lambda: metrics.restarts.get((APPS.name, "error"), 0) >= 1, "the 500")
        assert not inf.up
        assert set(rec.objects) == {"a1", "a2", "a3"}  # last known state is kept
        assert 'sloexporter_source_up{source="argocd"} 0' in metrics.render(
            {"argocd": inf.up})
        await until(lambda: inf.up, "recovery after backoff")


async def test_dropped_connection_backs_off_and_recovers(seeded, api_client):
    seeded["watch", km.resource(KEY)][:1] << (
        {"type": "MODIFIED", "object": app("a2", "7")}, ConnectionResetError)
    async with running(api_client) as (inf, rec, metrics):
        await until(lambda: len(seeded[km.action.WATCH]) >= 2, "a new watch")
        assert ("MODIFIED", "a2") in rec.events
        assert sum(metrics.restarts.values()) >= 1
        await until(lambda: inf.up, "recovery")
        assert set(rec.objects) == {"a1", "a2", "a3"}


async def test_watchdog_ends_a_silent_stream(seeded, api_client):
    quick = WatchSettings(**{**FAST.__dict__, "watchdog_seconds": 0.3})
    async with running(api_client, quick) as (inf, rec, metrics):
        await until(lambda: metrics.restarts.get((APPS.name, "watchdog"), 0) >= 1,
                    "the watchdog")
        await until(lambda: inf.up, "recovery")
