"""HTTP probes against real aiohttp targets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from pydantic import ValidationError

from sloexporter import names
from sloexporter.sources.http_probe import (
    HTTPProbeConfig,
    HTTPProber,
    ProbeAnnotationError,
    service_probe_urls,
)
from sloexporter.sources.prober import Prober
from tests.promtext import samples, series, value

BUCKET = f"{names.PROBE_DURATION}_bucket"
COUNT = f"{names.PROBE_DURATION}_count"
SUM = f"{names.PROBE_DURATION}_sum"
LES = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "0.75", "1.0", "2.5", "5.0",
       "10.0", "+Inf"]


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _fail(request: web.Request) -> web.Response:
    return web.Response(status=500, text="boom")


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(10)
    return web.Response(text="late")


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ok")


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/ok", _ok)
    app.router.add_get("/fail", _fail)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/redirect", _redirect)
    # handler_cancellation: /slow stops when the prober gives up, so cleanup is quick.
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def probe(targets: list, rounds: int = 1, **cfg: object) -> bytes:
    prober = HTTPProber(HTTPProbeConfig(targets=targets, **cfg))
    try:
        for _ in range(rounds):
            await prober.probe_round()
        return prober.render()
    finally:
        await prober.aclose()


async def test_ok_target_counts_its_code_and_fills_the_histogram(base_url):
    url = f"{base_url}/ok"
    text = await probe([url])
    assert value(text, names.PROBE_REQUESTS, target=url, code="200") == 1
    assert value(text, names.PROBE_SUCCESS, target=url) == 1
    assert [s["le"] for s in series(text, BUCKET, target=url)] == LES
    assert value(text, BUCKET, target=url, le="+Inf") == 1
    assert value(text, COUNT, target=url) == 1
    assert 0 < value(text, SUM, target=url) < 1


async def test_bucket_bounds_are_written_like_prometheus_client(base_url):
    text = (await probe([f"{base_url}/ok"])).decode()
    assert 'le="1.0"' in text and 'le="0.005"' in text and 'le="+Inf"' in text
    assert "# TYPE sloexporter_probe_duration_seconds histogram" in text
    assert "# TYPE sloexporter_probe_requests_total counter" in text


async def test_server_error_is_counted_by_its_code_and_fails(base_url):
    url = f"{base_url}/fail"
    text = await probe([url])
    assert value(text, names.PROBE_REQUESTS, target=url, code="500") == 1
    assert value(text, names.PROBE_SUCCESS, target=url) == 0


async def test_expected_codes_decide_success(base_url):
    text = await probe([{"name": "fail", "url": f"{base_url}/fail", "expected_codes": [500]}])
    assert value(text, names.PROBE_SUCCESS, target="fail") == 1


async def test_slow_response_times_out_as_code_error_within_the_bound(base_url):
    url = f"{base_url}/slow"
    started = time.monotonic()
    text = await probe([{"url": url, "timeout": 0.3}])
    assert time.monotonic() - started < 2
    assert value(text, names.PROBE_REQUESTS, target=url, code=names.PROBE_ERROR_CODE) == 1
    assert value(text, names.PROBE_SUCCESS, target=url) == 0
    # The timed-out attempt is observed for the time until the timeout.
    assert value(text, BUCKET, target=url, le="0.25") == 0
    assert value(text, BUCKET, target=url, le="0.5") == 1
    assert value(text, COUNT, target=url) == 1


async def test_refused_connection_is_code_error(base_url):
    text = await probe(["http://127.0.0.1:1/"])
    assert value(text, names.PROBE_REQUESTS, target="http://127.0.0.1:1/", code="error") == 1


async def test_counter_and_histogram_accumulate_over_rounds(base_url):
    ok, fail = f"{base_url}/ok", f"{base_url}/fail"
    text = await probe([ok, fail], rounds=3)
    assert value(text, names.PROBE_REQUESTS, target=ok, code="200") == 3
    assert value(text, names.PROBE_REQUESTS, target=fail, code="500") == 3
    assert value(text, COUNT, target=ok) == 3
    assert value(text, BUCKET, target=ok, le="+Inf") == 3


async def test_redirects_are_not_followed(base_url):
    url = f"{base_url}/redirect"
    text = await probe([url])
    assert value(text, names.PROBE_REQUESTS, target=url, code="302") == 1
    assert value(text, names.PROBE_SUCCESS, target=url) == 1


async def test_credentials_in_a_url_stay_out_of_the_target_label(base_url):
    host = base_url.removeprefix("http://")
    text = await probe([f"http://user:s3cret@{host}/ok"])
    assert value(text, names.PROBE_REQUESTS, target=f"http://{host}/ok", code="200") == 1
    assert b"s3cret" not in text


async def test_a_token_in_the_query_stays_out_of_the_target_label(base_url):
    text = await probe([f"{base_url}/ok?token=s3cret&x=1#frag"])
    # the request carries the query (the target answers 200); the label does not
    assert value(text, names.PROBE_REQUESTS, target=f"{base_url}/ok", code="200") == 1
    assert b"s3cret" not in text and b"token" not in text and b"frag" not in text


async def test_head_method(base_url):
    text = await probe([{"name": "h", "url": f"{base_url}/ok", "method": "HEAD"}])
    assert value(text, names.PROBE_REQUESTS, target="h", code="200") == 1


async def test_discovered_service_urls_are_probed_and_dropped_with_their_series(base_url):
    prober = HTTPProber(HTTPProbeConfig(timeout=2))
    try:
        url = f"{base_url}/ok"
        prober.set_discovered_targets("service/shop/web", [url, "not a url", "ftp://x/"])
        assert [t.label for t in prober.targets()] == [url, "not a url", "ftp://x/"]
        await prober.probe_round()
        assert value(prober.render(), names.PROBE_REQUESTS, target=url, code="200") == 1
        # unusable URLs are not requested but fail visibly, with code="error"
        assert value(prober.render(), names.PROBE_SUCCESS, target="ftp://x/") == 0
        assert value(prober.render(), names.PROBE_REQUESTS, target="not a url",
                     code="error") == 1
        prober.set_discovered_targets("service/shop/web", [])
        await prober.probe_round()
        assert samples(prober.render()) == {}
    finally:
        await prober.aclose()


async def test_hostile_target_names_are_escaped(base_url):
    weird = 'x"y\\z\nw'
    text = await probe([{"name": weird, "url": f"{base_url}/ok"}])
    assert value(text, names.PROBE_REQUESTS, target=weird, code="200") == 1


async def test_run_becomes_ready_and_cancels_cleanly(base_url):
    prober = HTTPProber(HTTPProbeConfig(targets=[f"{base_url}/ok"], interval=0.1))
    assert isinstance(prober, Prober) and prober.name == "http_probe"
    task = asyncio.create_task(prober.run())
    async with asyncio.timeout(5):
        while value(prober.render(), COUNT, target=f"{base_url}/ok") != 2:
            await asyncio.sleep(0.01)  # ready after one round; a second round follows
    assert prober.ready() and prober.up()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert prober._session is None  # run() closed its HTTP session on the way out


def _service(annotations: dict, ports: list | None = None, name: str = "web",
             namespace: str = "shop") -> dict:
    return {"metadata": {"name": name, "namespace": namespace, "annotations": annotations},
            "spec": {"ports": ports if ports is not None else
                     [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}]}}


@pytest.mark.parametrize("annotations, expected", [
    ({"sloexporter.dev/probe": "true"}, ["http://web.shop.svc:8080/"]),
    ({"sloexporter.dev/probe": "True", "sloexporter.dev/probe-path": "/healthz"},
     ["http://web.shop.svc:8080/healthz"]),
    ({"sloexporter.dev/probe": "true", "sloexporter.dev/probe-port": "metrics"},
     ["http://web.shop.svc:9090/"]),
    ({"sloexporter.dev/probe": "true", "sloexporter.dev/probe-port": "8443",
      "sloexporter.dev/probe-scheme": "https"}, ["https://web.shop.svc:8443/"]),
    ({}, []),
    ({"sloexporter.dev/probe": "false"}, []),
    ({"sloexporter.dev/probe": " FALSE "}, []),
    ({"sloexporter.dev/probe-path": "/healthz"}, []),  # no opt-in: the path alone is nothing
])
def test_service_probe_urls_from_annotations(annotations, expected):
    assert service_probe_urls(_service(annotations)) == expected


#: a Service that opted in (or said something other than true/false) but cannot be probed:
#: an error saying why, never a silent nothing
@pytest.mark.parametrize("annotations, why", [
    ({"sloexporter.dev/probe": "yes"}, "must be \"true\" or \"false\""),
    ({"sloexporter.dev/probe": "1"}, "must be \"true\" or \"false\""),
    ({"sloexporter.dev/probe": ""}, "must be \"true\" or \"false\""),
    ({"sloexporter.dev/probe": "true", "sloexporter.dev/probe-port": "nope"}, "no port 'nope'"),
    ({"sloexporter.dev/probe": "true", "sloexporter.dev/probe-port": "70000"}, "no port"),
    ({"sloexporter.dev/probe": "true", "sloexporter.dev/probe-path": "/a b"}, "absolute path"),
    ({"sloexporter.dev/probe": "true", "sloexporter.dev/probe-path": "healthz"}, "absolute path"),
    ({"sloexporter.dev/probe": "true", "sloexporter.dev/probe-path": "x\n"}, "absolute path"),
    ({"sloexporter.dev/probe": "true", "sloexporter.dev/probe-path": "/" + "a" * 600},
     "absolute path"),
    ({"sloexporter.dev/probe": "true", "sloexporter.dev/probe-scheme": "gopher"},
     "http or https"),
])
def test_an_opted_in_service_that_cannot_be_probed_says_why(annotations, why):
    with pytest.raises(ProbeAnnotationError, match=re.escape(why)):
        service_probe_urls(_service(annotations))


@pytest.mark.parametrize("obj", [
    {},
    {"metadata": None},
    {"metadata": {"annotations": "x"}},
])
def test_service_probe_urls_ignore_objects_without_the_annotation(obj):
    assert service_probe_urls(obj) == []


@pytest.mark.parametrize("obj", [
    _service({"sloexporter.dev/probe": "true"}, ports=[]),
    _service({"sloexporter.dev/probe": "true"}, ports=[{"port": "80"}]),
    _service({"sloexporter.dev/probe": "true"}, name="Bad_Name"),
    _service({"sloexporter.dev/probe": "true"}, namespace="a.b"),
    _service({"sloexporter.dev/probe": "true"}, name="web\n"),
])
def test_an_opted_in_odd_service_is_an_error_not_a_bad_url(obj):
    with pytest.raises(ProbeAnnotationError):
        service_probe_urls(obj)


def test_a_service_that_cannot_be_probed_is_counted_logged_once_and_its_old_url_dropped(
        caplog):
    from sloexporter.sources.discovery import SERVICES, DiscoverySource
    from sloexporter.sources.informer import SelfMetrics

    prober = HTTPProber(HTTPProbeConfig())
    metrics = SelfMetrics()
    source = DiscoverySource(metrics, http=prober)
    good = _service({"sloexporter.dev/probe": "true"})
    good["metadata"]["uid"] = "svc-1"
    source.apply(SERVICES, "ADDED", good)
    assert [t.label for t in prober.targets()] == ["http://web.shop.svc:8080/"]
    typo = _service({"sloexporter.dev/probe": "true", "sloexporter.dev/probe-port": "htp"})
    typo["metadata"]["uid"] = "svc-1"
    caplog.set_level(logging.WARNING, "sloexporter")
    for _ in range(3):  # the same bad object in three re-lists: counted thrice, logged once
        source.apply(SERVICES, "MODIFIED", typo)
    assert prober.targets() == []  # the URL it had is not probed on
    assert metrics.skipped == {("discovery", "invalid_probe_annotation"): 3}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "shop/web" in lines[0] and "no port 'htp'" in lines[0], lines


def test_service_probe_urls_with_a_cluster_domain():
    assert service_probe_urls(_service({"sloexporter.dev/probe": "true"}),
                              cluster_domain="cluster.local") == [
        "http://web.shop.svc.cluster.local:8080/"]


def test_config_accepts_strings_mappings_and_durations():
    cfg = HTTPProbeConfig.model_validate({
        "targets": ["http://a.example/healthz",
                    {"name": "b", "url": "https://b.example/", "expected_codes": [200, 204],
                     "timeout": "2s"}],
        "interval": "1m", "concurrency": 3})
    assert [t.label for t in cfg.targets] == ["http://a.example/healthz", "b"]
    assert cfg.targets[1].timeout == 2 and cfg.interval == 60


@pytest.mark.parametrize("bad", [
    {"targets": ["ftp://a.example/"]},
    {"targets": ["/relative"]},
    {"targets": [{"url": "http://a/", "method": "POST"}]},
    {"targets": [{"url": "http://a/", "expected_codes": [99]}]},
    {"targets": [{"url": "http://a/", "expected_codes": []}]},
    {"targets": ["http://a/", {"url": "http://a/"}]},
    {"targets": [{"url": "http://a/", "headers": {}}]},
    {"targets": ["http://a.example/" + "x" * 1000]},
    {"targets": [{"url": "http://a/", "name": "n" * 201}]},
    {"timeout": -1},
])
def test_config_rejects_bad_input(bad):
    with pytest.raises(ValidationError):
        HTTPProbeConfig.model_validate(bad)
