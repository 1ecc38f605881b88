"""The status service fed answers a real Prometheus never sends on purpose.

A stand-in HTTP server answers the Prometheus API with malformed JSON, wrong types,
duplicate series, NaN and oversized bodies: the service must say why in the API, keep
its last good data and keep refreshing, never crash its refresh loop. Real-Prometheus
behaviour (numbers, timeouts, errors) is in test_status.py and test_status_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from sloexporter import promql
from sloexporter.config import Config
from sloexporter.server import Exporter
from sloexporter.sources.store import Shard
from sloexporter.specs import load_paths
from sloexporter.status.config import StatusConfig
from sloexporter.status.service import RENDERED_MAX, StatusService
from sloexporter.status.web import build_status_app

SPEC = """\
apiVersion: sloexporter.dev/v1
kind: ServiceLevels
service: shop
labels: {team: web}
slos:
  - name: orders
    objective: 99
    period: 7d
    sli:
      events:
        errors: sum(rate(orders_total{code=~"5.."}[{{window}}]))
        total: sum(rate(orders_total[{{window}}]))
"""
KEY = {"service": "shop", "slo": "orders"}


def vector(*series: tuple[dict[str, str], str]) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": m, "value": [1.0, v]} for m, v in series]}}


class StandIn:
    """Answers each query with the first body whose key is in the query text."""

    def __init__(self) -> None:
        self.bodies: dict[str, Any] = {}
        self.default: Any = vector()

    async def handle(self, request: web.Request) -> web.Response:
        query = (await request.post()).get("query", "")
        body = next((b for k, b in self.bodies.items() if k in str(query)), self.default)
        if isinstance(body, bytes):
            return web.Response(body=body, content_type="application/json")
        return web.json_response(body)


@pytest.fixture
async def stand_in(tmp_path: Path) -> AsyncIterator[tuple[StandIn, Any]]:
    fake = StandIn()
    app = web.Application()
    app.router.add_route("*", "/api/v1/{tail:.*}", fake.handle)
    server = TestServer(app)
    await server.start_server()
    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC)
    services, errors = load_paths([str(spec)])
    assert not errors
    opened: list[tuple[TestClient, StatusService]] = []

    async def make(**status: Any) -> tuple[TestClient, StatusService]:
        cfg = StatusConfig.model_validate(
            {"prometheus": {"url": str(server.make_url("")), "query_timeout": 5}, **status})
        svc = StatusService(cfg, [s for svc in services for s in svc.slos])
        client = TestClient(TestServer(build_status_app(Exporter(Config(), Shard(0, 1)), svc)))
        await client.start_server()
        opened.append((client, svc))
        return client, svc

    yield fake, make
    for client, svc in opened:
        await svc.stop()
        await client.close()
    await server.close()


MALFORMED = {
    "not json": b"{\"status\": \"success\", \"data\": ",
    "a list": b"[1, 2, 3]",
    "items not objects": {"status": "success", "data": {"resultType": "vector",
                                                        "result": [1, "x", None]}},
    "result not a list": {"status": "success", "data": {"resultType": "vector",
                                                        "result": {"a": 1}}},
    "value not a pair": {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": KEY, "value": "7"}, {"metric": KEY, "value": [1]}]}},
    "labels not strings": {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"service": 5, "slo": ["orders"]}, "value": [1, "1"]}]}},
    "scalar without a value": {"status": "success",
                               "data": {"resultType": "scalar", "result": None}},
    "a string result": {"status": "success", "data": {"resultType": "string",
                                                      "result": [1, "x"]}},
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_malformed_answers_never_crash_and_are_named(stand_in, name):
    fake, make = stand_in
    fake.default = MALFORMED[name]
    client, svc = await make()
    await svc.refresh()  # must not raise
    resp = await client.get("/api/v1/slos")
    body = await resp.json()
    if resp.status == 503:
        assert body["error"], name
    else:  # a malformed series is dropped: the SLO shows without data, never made-up data
        item = body["slos"][0]
        assert item["status"] == "NO_DATA" and item["sli"] is None, (name, item)
    page = await client.get("/")
    assert page.status == 200
    assert (await client.get("/metrics")).status == 200


async def test_refresh_loop_survives_a_bad_answer_and_recovers(stand_in):
    """The background loop, not one refresh: after a garbage answer it keeps going."""
    fake, make = stand_in
    fake.default = b"<html>not the API</html>"
    client, svc = await make(refresh_interval=1)
    await svc.start()
    deadline = time.monotonic() + 30
    while svc.refreshes["failure"] == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert svc.error and "not a Prometheus API answer" in svc.error
    fake.default = vector()
    fake.bodies = {promql.ERRORS_RATE5M: vector((KEY, "0.5")),
                   promql.TOTAL_RATE5M: vector((KEY, "100"))}
    while svc.refreshes["success"] == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert svc.refreshes["success"] >= 1, svc.error
    item = (await (await client.get("/api/v1/slos")).json())["slos"][0]
    assert item["sli"] == pytest.approx(0.995)
    assert item["error_budget_remaining"] == pytest.approx(0.5)


@pytest.mark.parametrize("twin", [{}, {"prometheus_replica": "prometheus-k8s-1"},
                                  {"replica": "b"}])
async def test_duplicate_series_are_counted_once(stand_in, twin):
    """A fan-out layer answering one series twice (or once per HA replica) must not
    double the events."""
    fake, make = stand_in
    first = {**KEY, **dict.fromkeys(twin, "a")}
    fake.bodies = {promql.ERRORS_RATE5M: vector((first, "2"), ({**KEY, **twin}, "2")),
                   promql.TOTAL_RATE5M: vector((first, "100"), ({**KEY, **twin}, "100"))}
    client, svc = await make()
    await svc.refresh()
    assert svc.error is None, svc.error
    item = (await (await client.get("/api/v1/slos")).json())["slos"][0]
    assert item["sli"] == pytest.approx(0.98)
    assert item["error_budget"]["events"] == pytest.approx(100 * 7 * 86400)
    assert item["error_budget"]["consumed"] == pytest.approx(2 * 7 * 86400)


@pytest.mark.parametrize("errors,total", [("NaN", "100"), ("+Inf", "100"), ("1", "NaN"),
                                          ("1", "0"), ("-1", "-5")])
async def test_nan_infinite_and_zero_give_no_data_not_numbers(stand_in, errors, total):
    fake, make = stand_in
    fake.bodies = {promql.ERRORS_RATE5M: vector((KEY, errors)),
                   promql.TOTAL_RATE5M: vector((KEY, total))}
    client, svc = await make()
    await svc.refresh()
    text = await (await client.get("/api/v1/slos")).text()
    assert "NaN" not in text and "Infinity" not in text
    item = json.loads(text)["slos"][0]
    assert item["status"] == "NO_DATA" and item["sli"] is None and item["reason"]
    gate = await client.get("/api/v1/gate?service=shop")
    assert gate.status == 200  # the default policy lets an SLO without data pass
    blocked = await make(gate={"default": {"no_data": "block"}})
    await blocked[1].refresh()
    resp = await blocked[0].get("/api/v1/gate?service=shop")
    assert resp.status == 423 and "no data" in (await resp.json())["reason"]


async def test_an_oversized_answer_is_refused_not_buffered(stand_in):
    fake, make = stand_in
    big = vector(*(({"service": "s", "slo": f"x{i}"}, "1") for i in range(5000)))
    fake.default = big
    client, svc = await make()
    svc.client.max_body = 64 * 1024
    await svc.refresh()
    assert svc.error and "byte limit" in svc.error
    assert (await client.get("/api/v1/slos")).status == 503


async def test_filtered_answers_kept_per_refresh_are_bounded(stand_in):
    """Each distinct query string is rendered once, but a client cycling through
    query strings cannot grow the cache without bound."""
    _, make = stand_in
    client, svc = await make()
    await svc.refresh()
    for i in range(RENDERED_MAX + 40):
        assert (await client.get(f"/api/v1/slos?label=x={i}")).status == 200
        assert (await client.get(f"/?label=x={i}")).status == 200
    assert svc.snapshot is not None
    assert len(svc.snapshot.rendered) <= RENDERED_MAX
    body = await (await client.get("/api/v1/slos?service=shop")).json()
    assert [i["slo"] for i in body["slos"]] == ["orders"]


async def test_empty_slo_set_lists_nothing_and_the_gate_says_why(stand_in):
    _, make = stand_in
    cfg_client, svc = await make()
    svc.specs = []
    await svc.refresh()
    body = await (await cfg_client.get("/api/v1/slos")).json()
    assert body["slos"] == []
    resp = await cfg_client.get("/api/v1/gate?service=shop")
    assert resp.status == 404 and "no SLO" in (await resp.json())["reason"]
    assert (await cfg_client.get("/")).status == 200


async def test_start_logs_one_summary_line_without_credentials(stand_in, caplog):
    import logging
    _, make = stand_in
    _, svc = await make()
    port = svc.cfg.prometheus.url.rsplit(":", 1)[1].strip("/")
    secret_url = f"http://slo:hunter2@127.0.0.1:{port}/prom?token=abc"
    svc.cfg = svc.cfg.model_copy(update={"prometheus": svc.cfg.prometheus.model_copy(
        update={"url": secret_url})})
    with caplog.at_level(logging.INFO, logger="sloexporter.status"):
        await svc.start()
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("status:")]
    assert "1 SLOs from specs" in line and "Sloth, Pyrra" in line
    assert f"http://127.0.0.1:{port}/prom every 30s" in line
    assert "hunter2" not in line and "token" not in line and "slo:" not in line


async def test_a_label_filter_given_twice_must_hold_both_times(stand_in):
    _, make = stand_in
    client, svc = await make()
    await svc.refresh()

    async def names(query: str) -> list[str]:
        body = await (await client.get("/api/v1/slos?" + query)).json()
        return [i["slo"] for i in body["slos"]]

    assert await names("label=team=web") == ["orders"]
    assert await names("label=team=web&label=team=web") == ["orders"]
    assert await names("label=team=web&label=team=other") == []
    assert await names("label=team=other&label=team=web") == []
    assert (await client.get("/?label=team=web&label=team=other")).status == 200
