"""The JSON API, `/api/v1/...` (documented in docs/status.md with examples)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from sloexporter.status.client import PrometheusError
from sloexporter.status.compute import STATUSES
from sloexporter.status.platform import read_platform
from sloexporter.status.service import StatusService, clean, json_bytes

SERVICE_KEY: web.AppKey[StatusService] = web.AppKey("status_service", StatusService)


def json_response(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(clean(body), status=status)


def unavailable(svc: StatusService) -> web.Response | None:
    reason = svc.unavailable()
    if reason is None:
        return None
    return json_response({"error": reason, "data_age_seconds": svc.data_age()}, 503)


class BadFilter(ValueError):
    pass


def parse_filters(query: Any) -> dict[str, Any]:
    """service, team, status and label=k=v (repeatable) from the query string."""
    labels: list[tuple[str, str]] = []  # every one must hold, even on the same name
    for raw in query.getall("label", []):
        name, sep, value = raw.partition("=")
        if not sep or not name:
            raise BadFilter(f"label filter {raw!r} must be name=value")
        labels.append((name, value))
    status = query.get("status", "")
    statuses = {s.strip().upper() for s in status.split(",") if s.strip()}
    unknown = statuses - set(STATUSES)
    if unknown:
        raise BadFilter(f"unknown status {', '.join(sorted(unknown))}; use "
                        f"{', '.join(STATUSES)}")
    return {"service": query.get("service") or None, "team": query.get("team") or None,
            "statuses": statuses, "labels": labels}


def matches(item: dict[str, Any], f: dict[str, Any]) -> bool:
    if f["service"] and item["service"] != f["service"]:
        return False
    if f["team"] and item["team"] != f["team"]:
        return False
    if f["statuses"] and item["status"] not in f["statuses"]:
        return False
    return all(item["labels"].get(k) == v for k, v in f["labels"])


def _bad_request(message: str) -> web.Response:
    return json_response({"error": message}, 400)


async def list_slos(request: web.Request) -> web.Response:
    svc = request.app[SERVICE_KEY]
    if (resp := unavailable(svc)) is not None:
        return resp
    try:
        f = parse_filters(request.query)
    except BadFilter as exc:
        return _bad_request(str(exc))
    snap = svc.snapshot
    assert snap is not None
    key = ("api", request.query_string)
    slos = snap.rendered.get(key)
    if slos is None:
        slos = snap.remember(key, json_bytes([i for i in snap.items if matches(i, f)]))
    tail = json.dumps({"computed_at": snap.at, "data_age_seconds": svc.data_age()})
    return web.Response(body=b'{"slos": ' + slos + b", " + tail[1:].encode(),
                        content_type="application/json")


async def slo_detail(request: web.Request) -> web.Response:
    svc = request.app[SERVICE_KEY]
    if (resp := unavailable(svc)) is not None:
        return resp
    found = svc.find(request.match_info["service"], request.match_info["slo"])
    if found is None:
        return json_response({"error": "no such SLO"}, 404)
    slo, item = found
    try:
        graphs = await svc.graphs(slo)
        history = await svc.history(slo)
    except (PrometheusError, TimeoutError) as exc:
        return json_response({"error": f"Prometheus query failed: {exc}",
                              "data_age_seconds": svc.data_age()}, 503)
    return json_response(dict(item, graphs=graphs, calendar_history=history,
                              computed_at=svc.snapshot.at if svc.snapshot else None))


async def platform(request: web.Request) -> web.Response:
    svc = request.app[SERVICE_KEY]
    try:
        days = int(request.query.get("days", svc.cfg.platform.certificate_days))
        if not 1 <= days <= 3650:
            raise ValueError
    except ValueError:
        return _bad_request("days must be a whole number of days between 1 and 3650")
    key = ("platform", days)
    body = svc.cache.get(key)
    if body is None:
        try:
            body = await read_platform(svc.client, svc.clock(), days)
        except (PrometheusError, TimeoutError) as exc:
            return json_response({"error": f"Prometheus query failed: {exc}"}, 503)
        body["computed_at"] = svc.clock()
        svc.cache.put(key, body)
    return json_response(body)


def gate_decision(svc: StatusService, service: str, slo: str | None) -> tuple[int, dict[str, Any]]:
    """200 when every selected SLO keeps more budget than its policy asks, else 423."""
    assert svc.snapshot is not None
    chosen = [i for i in svc.snapshot.items
              if i["service"] == service and (slo is None or i["slo"] == slo)]
    if not chosen:
        what = f"{service}/{slo}" if slo else f"service {service}"
        return 404, {"allowed": False, "reason": f"no SLO found for {what}"}
    blocking, checked = [], []
    for item in chosen:
        rule = svc.cfg.gate.rule_for(item["service"], item["slo"])
        remaining = item["error_budget_remaining"]
        entry = {"service": item["service"], "slo": item["slo"], "status": item["status"],
                 "error_budget_remaining": remaining,
                 "min_budget_remaining": rule.min_budget_remaining}
        checked.append(entry)
        if remaining is None:
            if rule.no_data == "block":
                blocking.append(dict(entry, reason="no data, and the policy blocks on no data"))
        elif remaining <= rule.min_budget_remaining:
            blocking.append(dict(entry, reason=f"error budget remaining {remaining:.2%} is not "
                                               f"above {rule.min_budget_remaining:.2%}"))
        elif rule.block_on_page and item["alerts"].get("page") == "firing":
            blocking.append(dict(entry, reason="a page alert is firing"))
    if blocking:
        first = blocking[0]
        return 423, {"allowed": False,
                     "reason": f"{first['service']}/{first['slo']}: {first['reason']}",
                     "blocking": blocking, "checked": checked}
    return 200, {"allowed": True, "reason": f"{len(checked)} SLOs have budget left",
                 "checked": checked}


async def gate(request: web.Request) -> web.Response:
    svc = request.app[SERVICE_KEY]
    service = request.query.get("service", "")
    if not service:
        return _bad_request("give ?service=NAME (and optionally &slo=NAME)")
    if (resp := unavailable(svc)) is not None:
        return resp
    status, body = gate_decision(svc, service, request.query.get("slo") or None)
    return json_response(body, status)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/slos", list_slos)
    app.router.add_get("/api/v1/slos/{service}/{slo}", slo_detail)
    app.router.add_get("/api/v1/platform", platform)
    app.router.add_get("/api/v1/gate", gate)
