"""The informer against kmock, a real Kubernetes API server on 127.0.0.1, over HTTP.

Nothing of ours is patched: the informer talks to kmock through a kubernetes-asyncio
ApiClient, and changes reach it through the API (create/patch/delete) or through kmock's
scripted responses (BOOKMARK, 410 in a watch, HTTP 410 on a list, a dropped connection,
HTTP 500, a paginated LIST).

kmock 0.8 cannot show (see tests/kube_fixtures.py and notes/tooling.md):
- resourceVersion continuity on the server: it has none, so a watch "from" a version is
  only checked as the request parameter we send;
- a server-side `timeoutSeconds` ending a stream: ignored, streams stay open; a stream
  end is scripted instead;
- server-side filtering by label/field selector: ignored; the tests assert that we send
  them;
- LIST pagination: it ignores `limit` and never returns `continue`; pages are scripted;
- a watch that resumes where it left off: every reconnect replays all objects as ADDED;
- a stream that hangs mid-event: the watchdog is shown on an open stream with no events.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import kmock as km
import pytest
from kubernetes_asyncio import client

from sloexporter import names
from sloexporter.config import Config
from sloexporter.server import Exporter
from sloexporter.sources.argocd import ArgoCDSource
from sloexporter.sources.informer import (
    Informer,
    Resource,
    SelfMetrics,
    WatchFailed,
    WatchSettings,
    list_items,
)
from sloexporter.sources.store import Shard
from tests.kube_fixtures import register, seed
from tests.promtext import samples, value

#: the kmock fixtures (watch=True normalised, every resource registered, an ApiClient)
pytest_plugins = ["tests.kube_fixtures"]

APPS = Resource("argoproj.io", "v1alpha1", "applications", "Application")
KEY = "argoproj.io/v1alpha1/applications"
FAST = WatchSettings(page_size=1, timeout_seconds=5, connect_timeout=2.0,
                     watchdog_seconds=5.0, heartbeat_seconds=2.0, heartbeat_timeout=2.0,
                     backoff_base=0.01, backoff_max=0.05)
WAIT = 10.0
EXPIRED = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}


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


def app(name: str, rv: str = "", sync: str = "Synced", op_started: str = "") -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "namespace": "argocd"}
    if rv:
        m["resourceVersion"] = rv
    obj: dict[str, Any] = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                           "metadata": m, "spec": {"project": "default"},
                           "status": {"sync": {"status": sync},
                                      "health": {"status": "Healthy"}}}
    if op_started:
        obj["status"]["operationState"] = {"phase": "Succeeded", "startedAt": op_started,
                                           "finishedAt": op_started}
    return obj


async def until(cond: Callable[[], bool], what: str, wait: float = WAIT) -> None:
    """Poll a condition with a bounded wait."""
    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.01)
    try:
        await asyncio.wait_for(poll(), wait)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@pytest.fixture
def seeded(kmock: Any) -> Any:
    register(kmock, "argoproj.io", "v1alpha1", "applications", "Application")
    for name in ("a1", "a2", "a3"):
        kmock.objects[KEY, "argocd", name] = app(name)
    return kmock


@contextlib.asynccontextmanager
async def running(api: Any, settings: WatchSettings = FAST, handler: Any = None,
                  metrics: SelfMetrics | None = None, resource: Resource = APPS
                  ) -> AsyncIterator[tuple[Informer, Any, SelfMetrics]]:
    rec = handler if handler is not None else Recorder()
    metrics = metrics or SelfMetrics()
    inf = Informer(api, resource, rec, "argocd", metrics, settings)
    task = asyncio.create_task(inf.run())
    try:
        yield inf, rec, metrics
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT)


def requests(kmock: Any, action: Any) -> list[dict[str, str]]:
    return [dict(r.params) for r in kmock[action]]


def watch_events(metrics: SelfMetrics, kind: str) -> int:
    return metrics.events.get((APPS.name, kind), 0)


async def test_paginated_list_then_watch_with_bookmarks_and_timeouts(seeded, api_client):
    async with running(api_client) as (inf, rec, metrics):
        await asyncio.wait_for(inf.listed.wait(), WAIT)
        assert set(rec.objects) == {"a1", "a2", "a3"}
        await until(lambda: inf.up, "the watch to open")
        await until(lambda: len(seeded[km.action.WATCH]) >= 1, "a watch request")
    lists = requests(seeded, km.action.LIST)
    assert lists[0]["limit"] == "1"
    watch = requests(seeded, km.action.WATCH)[0]
    assert watch["watch"] == "true" and watch["allowWatchBookmarks"] == "true"
    assert watch["timeoutSeconds"] == "5"


async def test_pagination_follows_continue_and_prunes_once_after_the_last_page(
        seeded, api_client):
    # kmock ignores `limit` and never sets `continue`: script two pages for the first list
    seeded["list", km.resource(KEY), km.params("continue=p2")] << {
        "kind": "ApplicationList", "metadata": {"resourceVersion": "77"},
        "items": [app("a3")]}
    seeded["list", km.resource(KEY)][:1] << {
        "kind": "ApplicationList", "metadata": {"continue": "p2", "resourceVersion": "76"},
        "items": [app("a1"), app("a2")]}
    async with running(api_client) as (inf, rec, metrics):
        await asyncio.wait_for(inf.listed.wait(), WAIT)
        # prune runs once, after the last page: page 1's objects were not dropped
        assert set(rec.objects) == {"a1", "a2", "a3"} and rec.prunes == 1
        await until(lambda: len(seeded[km.action.WATCH]) >= 1, "a watch request")
    first, second = requests(seeded, km.action.LIST)[:2]
    assert "continue" not in first and second["continue"] == "p2"
    assert first["limit"] == second["limit"] == "1"
    # the watch starts from the version of the *last* page
    assert requests(seeded, km.action.WATCH)[0]["resourceVersion"] == "77"


async def test_selectors_and_namespace_are_sent_on_list_and_watch(seeded, api_client):
    scoped = dataclasses.replace(FAST, namespace="argocd", label_selector="team=payments",
                                 field_selector="metadata.name!=a9")
    async with running(api_client, scoped) as (inf, rec, metrics):
        await asyncio.wait_for(inf.listed.wait(), WAIT)
        await until(lambda: len(seeded[km.action.WATCH]) >= 1, "a watch request")
    for req in (seeded[km.action.LIST][0], seeded[km.action.WATCH][0]):
        assert req.namespace == "argocd"
        assert req.url.path == "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications"
        assert req.params["labelSelector"] == "team=payments"
        assert req.params["fieldSelector"] == "metadata.name!=a9"
    # kmock ignores selectors (a limit): all three come back; filtering is the server's job
    assert set(rec.objects) == {"a1", "a2", "a3"}


async def test_create_patch_delete_through_the_api_reach_the_handler(seeded, api_client):
    custom = client.CustomObjectsApi(api_client)
    where = ("argoproj.io", "v1alpha1", "argocd", "applications")
    async with running(api_client) as (inf, rec, metrics):
        await asyncio.wait_for(inf.listed.wait(), WAIT)
        # kmock replays every object as ADDED when a watch starts; once that arrives, the
        # watch is subscribed and no later change can be missed
        await until(lambda: watch_events(metrics, "ADDED") >= 3, "the watch to start")
        await custom.create_namespaced_custom_object(*where, app("a4"))
        await until(lambda: ("ADDED", "a4") in rec.events[-3:], "ADDED a4")
        await custom.patch_namespaced_custom_object(
            *where, "a1", {"status": {"sync": {"status": "OutOfSync"}}})
        await until(lambda: rec.objects["a1"]["status"]["sync"]["status"] == "OutOfSync",
                    "MODIFIED a1")
        assert ("MODIFIED", "a1") in rec.events
        await custom.delete_namespaced_custom_object(*where, "a2")
        await until(lambda: "a2" not in rec.objects, "DELETED a2")
        assert ("DELETED", "a2") in rec.events
        assert set(rec.objects) == {"a1", "a3", "a4"}
        assert watch_events(metrics, "MODIFIED") >= 1 and watch_events(metrics, "DELETED") == 1
        assert inf.up and not metrics.restarts


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
    assert len(seeded[km.action.LIST]) == 1


async def test_410_in_a_watch_relists_and_replaces_state_with_nothing_lost_or_doubled(
        seeded, api_client):
    """A real source (ArgoCD) through a 410: the store is the server's state, once.

    The first list is scripted as an *older* state (a2's earlier sync, and a5 that has
    since been deleted); the server holds the newer one. The watch delivers a2's new sync
    and then expires, so a5's deletion is never seen as an event: only the re-list can
    drop it. a2's operation was counted from the watch and must not be counted again.
    """
    seeded.objects[KEY, "argocd", "a2"] = app("a2", op_started="2026-11-22T10:00:00Z")
    seeded["list", km.resource(KEY)][:1] << {
        "kind": "ApplicationList", "metadata": {"resourceVersion": "5"},
        "items": [app("a1"), app("a2", op_started="2026-11-22T09:00:00Z"), app("a3"),
                  app("a5")]}
    seeded["watch", km.resource(KEY)][:1] << (
        {"type": "MODIFIED", "object": app("a2", "6", op_started="2026-11-22T10:00:00Z")},
        EXPIRED)
    metrics = SelfMetrics()
    source = ArgoCDSource(metrics, Shard())
    async with running(api_client, handler=source, metrics=metrics) as (inf, _, _m):
        await until(lambda: metrics.restarts.get((APPS.name, "expired"), 0) >= 1, "expiry")
        await until(lambda: len(seeded[km.action.LIST]) >= 2 and inf.up, "the re-list")
        # and the replay of the next watch (kmock: all objects as ADDED) changes nothing
        await until(lambda: len(seeded[km.action.WATCH]) >= 2, "the next watch")
        await until(lambda: watch_events(metrics, "ADDED") >= 3, "the replay")
        series = samples(b"".join(source.render()))  # also fails on a duplicate series
    info = sorted(dict(labels)["name"] for name, labels in series
                  if name == names.ARGOCD_APP_INFO)
    assert info == ["a1", "a2", "a3"]  # a5 dropped, nothing doubled
    ops = {dict(labels)["name"]: v for (name, labels), v in series.items()
           if name == names.ARGOCD_APP_SYNC_OPERATIONS and ("phase", "Succeeded") in labels}
    assert ops == {"a1": 0, "a2": 1, "a3": 0}  # counted once: from the watch, not the re-list
    assert metrics.restarts[(APPS.name, "expired")] == 1


async def test_http_410_on_list_relists(seeded, api_client):
    seeded["list", km.resource(KEY)][:1] << 410 << {
        "kind": "Status", "code": 410, "reason": "Expired"}
    async with running(api_client) as (inf, rec, metrics):
        await asyncio.wait_for(inf.listed.wait(), WAIT)
        assert set(rec.objects) == {"a1", "a2", "a3"}
        assert metrics.restarts[(APPS.name, "expired")] == 1
    assert len(seeded[km.action.LIST]) >= 2


async def test_500_marks_the_source_down_keeps_last_state_and_recovers(seeded, api_client):
    # first list fine; the watch fails with 500, and so does the next list
    seeded["watch", km.resource(KEY)][:1] << 500 << {"kind": "Status", "code": 500}
    seeded["list", km.resource(KEY)][1:2] << 500 << {"kind": "Status", "code": 500}
    slow = dataclasses.replace(FAST, backoff_base=0.5, backoff_max=0.5)
    async with running(api_client, slow) as (inf, rec, metrics):
        await until(lambda: metrics.restarts.get((APPS.name, "unavailable"), 0) >= 1, "the 500")
        assert not inf.up
        assert set(rec.objects) == {"a1", "a2", "a3"}  # last known state is kept
        assert 'sloexporter_source_up{source="argocd"} 0' in metrics.render(
            {"argocd": inf.up})
        await until(lambda: inf.up, "recovery after backoff")
        # the watch 500 and the list 500: two restarts, each after a backoff
        assert metrics.restarts[(APPS.name, "unavailable")] == 2
        assert len(seeded[km.action.LIST]) == 3


async def test_dropped_connection_rewatches_and_recovers(seeded, api_client):
    seeded["watch", km.resource(KEY)][:1] << (
        {"type": "MODIFIED", "object": app("a2", "7", sync="OutOfSync")}, ConnectionResetError)
    async with running(api_client) as (inf, rec, metrics):
        await until(lambda: len(seeded[km.action.WATCH]) >= 2, "a new watch")
        assert ("MODIFIED", "a2") in rec.events
        assert sum(metrics.restarts.values()) >= 1
        await until(lambda: inf.up, "recovery")
        assert set(rec.objects) == {"a1", "a2", "a3"}


async def test_a_watch_the_server_ends_at_once_backs_off_instead_of_spinning(
        seeded, api_client):
    # every watch ends right after one bookmark: without a backoff the informer re-watches
    # in a busy loop (about 140 requests a second against kmock, more on a fast server)
    seeded["watch", km.resource(KEY)] << (
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}},)
    flappy = dataclasses.replace(FAST, backoff_base=0.05, backoff_max=0.2)
    async with running(api_client, flappy) as (inf, rec, metrics):
        await asyncio.wait_for(inf.listed.wait(), WAIT)
        t0 = asyncio.get_running_loop().time()
        await until(lambda: metrics.restarts.get((APPS.name, "closed"), 0) >= 3, "flaps")
        await asyncio.sleep(1.0)  # a fixed window to count requests in, not a wait
        elapsed = asyncio.get_running_loop().time() - t0
        watches = len(seeded[km.action.WATCH])
        # a watch that ends at once is no healthy watch: the source is down, and says why
        assert not inf.up and inf.down_reason == "closed"
        assert len(seeded[km.action.LIST]) == 1
        assert not metrics.restarts.get((APPS.name, "timeout"))
    # backoff of up to 0.2 s (mean 0.1 s) per flap: about 10 a second, never hundreds
    assert watches <= 30 * elapsed


async def test_watchdog_ends_a_silent_stream(seeded, api_client):
    # kmock keeps a watch open with no events after the replay: a silent stream
    quick = dataclasses.replace(FAST, watchdog_seconds=0.3)
    async with running(api_client, quick) as (inf, rec, metrics):
        await until(lambda: metrics.restarts.get((APPS.name, "unresponsive"), 0) >= 1,
                    "the watchdog")
        await until(lambda: len(seeded[km.action.WATCH]) >= 2, "a new watch")
        await until(lambda: inf.up, "recovery")


async def test_a_resource_the_api_does_not_serve_counts_as_listed(kmock, api_client):
    # no CRD for Velero here: LIST answers 404, and readiness must not wait for it forever
    velero = Resource("velero.io", "v1", "backups", "Backup")
    async with running(api_client, resource=velero) as (inf, rec, metrics):
        await asyncio.wait_for(inf.listed.wait(), WAIT)
        assert inf.up and rec.objects == {} and rec.prunes == 1


async def test_a_failing_source_keeps_serving_its_last_state_with_source_up_0(
        kube, kubeconfig: Path):
    """The whole exporter (Exporter, as `serve` builds it) on kmock via a kubeconfig."""
    seed(kube, [app(f"a{i}") for i in range(1, 4)])
    # the first watch stays open until `broken` is set, then ends; every later watch and
    # list fails with 500 (an API server gone bad while we were watching)
    broken = asyncio.Event()

    async def hold() -> None:
        await broken.wait()

    kube["watch", km.resource(KEY)][:1] << (
        {"type": "BOOKMARK", "object": {"kind": "Application",
                                        "metadata": {"resourceVersion": "9"}}}, hold)
    kube["watch", km.resource(KEY)][1:] << 500 << {"kind": "Status", "code": 500}
    kube["list", km.resource(KEY)][1:] << 500 << {"kind": "Status", "code": 500}
    config = Config.model_validate({
        "cluster": {"mode": "kubeconfig", "kubeconfig": str(kubeconfig)},
        "sources": {"backups": {"enabled": False}, "certificates": {"enabled": False},
                    "services": {"enabled": False}}})
    exporter = Exporter(config, Shard())
    await exporter.start()
    try:
        await until(exporter.ready, "the first list")
        healthy = exporter.render()
        assert value(healthy, names.SOURCE_UP, source="argocd") == 1
        broken.set()
        await until(lambda: not exporter.up()["argocd"] and exporter.metrics.restarts.get(
            (APPS.name, "unavailable")), "the source to fail")
        body = exporter.render()
        for openmetrics in (False, True):  # the scrape itself never fails
            assert exporter.render(openmetrics)
    finally:
        await asyncio.wait_for(exporter.stop(), WAIT)
    assert value(body, names.SOURCE_UP, source="argocd") == 0
    assert (value(body, names.WATCH_RESTARTS, resource=APPS.name, reason="unavailable")
            or 0) >= 1
    objects = {k: v for k, v in samples(body).items() if k[0].startswith("sloexporter_argocd")}
    assert objects == {k: v for k, v in samples(healthy).items()
                       if k[0].startswith("sloexporter_argocd")}
    assert len([k for k in objects if k[0] == names.ARGOCD_APP_INFO]) == 3
    # /readyz says which source is not ready and why
    assert exporter.not_ready() == [f"argocd ({APPS.name} (all namespaces): unavailable)"]


# --- hostile responses a real API server never sends (kmock) --------------------------------

BACKOFF = dataclasses.replace(FAST, backoff_base=0.05, backoff_max=0.4)


async def lists_per_second(kmock: Any, metrics: SelfMetrics) -> float:
    """After four 410s: LIST requests per second over a fixed one-second window."""
    await until(lambda: metrics.restarts.get((APPS.name, "expired"), 0) >= 4, "410s")
    t0 = asyncio.get_running_loop().time()
    n0 = len(kmock[km.action.LIST])
    await asyncio.sleep(1.0)  # a fixed window to count requests in, not a wait
    return (len(kmock[km.action.LIST]) - n0) / (asyncio.get_running_loop().time() - t0)


async def test_410_on_every_list_backs_off_marks_down_and_logs_once(seeded, api_client, caplog):
    """Defect 5: a 410 on LIST was a hot loop (6,400 LISTs in 12 s), source_up stayed 1."""
    seeded["list", km.resource(KEY)] << 410 << {"kind": "Status", "code": 410}
    caplog.set_level(logging.DEBUG, "sloexporter")
    async with running(api_client, BACKOFF) as (inf, rec, metrics):
        rate = await lists_per_second(seeded, metrics)
        assert not inf.up and inf.down_reason == "expired"
    assert rate <= 15  # backoff of 0.2-0.4 s once capped: a handful a second, not thousands
    downs = [r for r in caplog.records if "is down" in r.getMessage()]
    assert len(downs) == 1 and r"410" in downs[0].getMessage()


async def test_410_on_every_watch_relists_with_backoff(seeded, api_client):
    seeded["watch", km.resource(KEY)] << (EXPIRED,)
    async with running(api_client, BACKOFF) as (inf, rec, metrics):
        rate = await lists_per_second(seeded, metrics)
        assert not inf.up
        assert set(rec.objects) == {"a1", "a2", "a3"}
    assert rate <= 15  # was 142 re-lists in 12 s with no backoff at all


async def test_a_watch_that_opens_then_fails_at_once_backs_off_exponentially(seeded, api_client):
    """The watch answers 200 and then an ERROR 500 event, every time: opening it must not
    count as recovery (that reset the backoff to its base delay on every retry)."""
    seeded["watch", km.resource(KEY)] << ({"type": "ERROR", "object": {
        "kind": "Status", "code": 500, "message": "etcdserver: leader changed"}},)
    async with running(api_client, BACKOFF) as (inf, rec, metrics):
        await until(lambda: metrics.restarts.get((APPS.name, "unavailable"), 0) >= 6,
                    "six failed watches")
        assert not inf.up and inf._failures >= 6
        assert set(rec.objects) == {"a1", "a2", "a3"}


@pytest.mark.parametrize("body, reason", [
    (b"<html>502 Bad Gateway</html>", "decode"),
    (b'["not", "a", "list"]', "decode"),
    (b'{"items": "nope", "metadata": {}}', "decode"),
])
async def test_a_garbage_list_body_is_a_decode_failure(seeded, api_client, body, reason):
    seeded["list", km.resource(KEY)][:2] << body
    async with running(api_client) as (inf, rec, metrics):
        await until(lambda: metrics.restarts.get((APPS.name, reason), 0) >= 2, "two failures")
        await until(lambda: inf.up, "recovery")
        assert set(rec.objects) == {"a1", "a2", "a3"}


LIST_BODIES = [
    '{}', ' { } ', '{"items": []}', '{"items":[ ]}', '{"items": null}', '{"items": 5}',
    '{"kind": "List", "metadata": {"continue": "x"}, "items": [{"a": 1}, {"b": [1, 2]}, 3]}',
    '{"items": [{"x": "\\u00e9 \\"]}"}], "metadata": {"resourceVersion": "7"}}\n',
    '{"items": [1, 2,]}', '{"items": [1 2]}', '{"items": [1, 2]', '{"items": []} x',
    '{"a": 1,}', '{,}', '{"a" 1}', '{1: 2}', '{"a": tru}',
]


@pytest.mark.parametrize("text", LIST_BODIES)
def test_a_list_body_parsed_item_by_item_is_what_json_reads(text):
    try:
        expected = json.loads(text)
    except ValueError:
        expected = ValueError
    rest: dict[str, Any] = {}
    try:
        items = list(list_items(text, rest))
    except ValueError:
        assert expected is ValueError
        return
    if rest.get("items") == []:
        rest["items"] = items
    assert rest == expected


@pytest.mark.parametrize("text", ['[{"a": 1}]', "null", '"items"', ""])
def test_a_list_body_that_is_no_object_is_refused_before_any_item(text):
    with pytest.raises(WatchFailed, match="not an object"):
        next(list_items(text, {}))


@pytest.mark.parametrize("text", ['{"items": [{"a": 1}], "items": [{"b": 2}]}',
                                  '{"items": null, "metadata": {}, "items": [{"b": 2}]}',
                                  '{"items": [], "items": []}'])
def test_a_list_body_with_two_items_members_is_refused(text):
    """json.loads keeps the last array; items of the first are applied as they are read,
    so such a body (no API server sends one) fails the LIST instead of mixing both."""
    with pytest.raises(WatchFailed, match="two items members"):
        list(list_items(text, {}))


async def test_a_list_with_two_items_members_fails_and_is_retried(seeded, api_client):
    body = (b'{"kind": "List", "metadata": {"resourceVersion": "5"}, '
            b'"items": [], "items": []}')
    seeded["list", km.resource(KEY)][:1] << 200 << body
    async with running(api_client) as (inf, rec, metrics):
        await until(lambda: metrics.restarts.get((APPS.name, "decode"), 0) >= 1, "decode")
        await until(lambda: inf.up, "recovery")


async def test_garbage_in_the_watch_stream_is_a_decode_failure_not_a_crash(seeded, api_client):
    seeded["watch", km.resource(KEY)][:1] << b'{"type": "ADDED", "object": {tru\n'
    seeded["watch", km.resource(KEY)][1:2] << ({"type": "ADDED", "object": "a string"},)
    async with running(api_client) as (inf, rec, metrics):
        await until(lambda: metrics.restarts.get((APPS.name, "decode"), 0) >= 2, "decodes")
        await until(lambda: inf.up, "recovery")


async def test_an_outage_logs_one_line_down_and_one_line_up(seeded, api_client, caplog):
    """Defect 8/7: 40 warning lines for one outage; now: down (reason), then up again."""
    seeded["watch", km.resource(KEY)][:1] << 503 << {"kind": "Status", "code": 503,
                                                     "message": "etcd is sad"}
    seeded["list", km.resource(KEY)][1:12] << 503 << {"kind": "Status", "code": 503,
                                                      "message": "etcd is sad"}
    caplog.set_level(logging.DEBUG, "sloexporter")
    async with running(api_client) as (inf, rec, metrics):
        await until(lambda: metrics.restarts.get((APPS.name, "unavailable"), 0) >= 12,
                    "twelve failures")
        await until(lambda: inf.up, "recovery")
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    downs = [m for m in lines if "is down" in m]
    ups = [m for m in lines if "is up again" in m]
    assert len(downs) == 1 and "unavailable" in downs[0] and "etcd is sad" in downs[0]
    assert len(ups) == 1 and "after 12 retries" in ups[0], ups
    assert all(len(m) < 400 for m in lines)


async def test_a_malformed_object_in_a_list_or_a_watch_is_skipped_and_counted(
        kube, api_client):
    """Defect 2 through the API: one bad object made the LIST fail forever."""
    from sloexporter.sources.backups import JOBS, VELERO_BACKUPS, BackupsSource

    good = {"apiVersion": "velero.io/v1", "kind": "Backup",
            "metadata": {"name": "ok", "namespace": "velero", "uid": "b1"},
            "status": {"phase": "Completed", "startTimestamp": "2026-11-22T03:00:00Z",
                       "completionTimestamp": "2026-11-22T03:10:00Z"}}
    bad = {"apiVersion": "velero.io/v1", "kind": "Backup",
           "metadata": {"name": "bad", "namespace": "velero", "uid": "b2", "labels": "x"}}
    worse = {"apiVersion": "velero.io/v1", "kind": "Backup", "metadata": "nope"}
    seed(kube, [good, bad])
    kube["list", km.resource("velero.io/v1/backups")][:1] << {
        "kind": "BackupList", "metadata": {"resourceVersion": "5"},
        "items": [good, bad, worse, 7]}
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "j", "namespace": "db", "uid": "j1", "ownerReferences": 5}}
    kube["watch", km.resource("batch/v1/jobs")][:1] << (
        {"type": "ADDED", "object": job},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}})
    metrics = SelfMetrics()
    source = BackupsSource(metrics, Shard())
    async with running(api_client, handler=source, metrics=metrics,
                       resource=VELERO_BACKUPS) as (inf, _, _m):
        await until(lambda: inf.up, "the list")
        async with running(api_client, handler=source, metrics=metrics,
                           resource=JOBS) as (jobs, _, _m2):
            await until(lambda: metrics.events.get((JOBS.name, "BOOKMARK")), "the job event")
            assert jobs.up or jobs.down_reason == "closed"
        body = b"".join(source.render()).decode()
        assert 'name="ok"' in body and inf.up
    assert sum(metrics.skipped.values()) >= 4  # labels "x", metadata "nope", 7, ownerRefs 5
    assert not [k for k in metrics.restarts if k[1] not in ("timeout", "closed")]


async def test_403_429_and_5xx_are_separate_restart_reasons(seeded, api_client):
    """Defect 7: `reason="error"` mixed 403, 429, 503 and a refused connection."""
    for i, code in enumerate((403, 429, 503, 500)):
        seeded["list", km.resource(KEY)][i:i + 1] << code << {
            "kind": "Status", "code": code, "message": f"scripted {code}"}
    async with running(api_client) as (inf, rec, metrics):
        await until(lambda: inf.up, "the list after four failures")
        mine = {reason: n for (res, reason), n in metrics.restarts.items() if res == APPS.name}
    assert mine == {"forbidden": 1, "throttled": 1, "unavailable": 2}


async def test_a_continue_token_that_repeats_is_a_decode_failure_not_an_endless_list(
        seeded, api_client):
    """A broken server or proxy that hands back the same continue token pages forever:
    the list would never end, and the source never get ready."""
    loop = {"kind": "ApplicationList", "metadata": {"continue": "again", "resourceVersion": "5"},
            "items": [app("a1")]}
    seeded["list", km.resource(KEY), km.params("continue=again")][:3] << loop
    seeded["list", km.resource(KEY)][:1] << loop
    async with running(api_client) as (inf, rec, metrics):
        await until(lambda: metrics.restarts.get((APPS.name, "decode"), 0) >= 1, "the loop")
        await until(lambda: inf.up, "a clean list after the backoff")
        assert set(rec.objects) == {"a1", "a2", "a3"}
    looped = [r for r in requests(seeded, km.action.LIST) if r.get("continue") == "again"]
    assert len(looped) == 1


async def test_unknown_event_types_are_decode_failures_and_never_a_label(seeded, api_client):
    """A hostile stream of made-up event types: each is a decode failure with backoff, and
    none becomes a value of watch_events_total's `type` label (that would grow forever)."""
    for i in range(3):
        seeded["watch", km.resource(KEY)][i:i + 1] << (
            {"type": f"MADE-UP-{i}-" + "x" * 2000, "object": app("a1")},)
    async with running(api_client) as (inf, rec, metrics):
        await until(lambda: metrics.restarts.get((APPS.name, "decode"), 0) >= 3, "decodes")
        await until(lambda: inf.up, "recovery")
    assert {kind for (_, kind) in metrics.events} <= {"ADDED", "MODIFIED", "DELETED",
                                                      "BOOKMARK", "ERROR"}
