"""Wires the status service into serve's aiohttp app: API, pages, static files."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from sloexporter.endpoints import LANDING, Exposing, Serving, build_app
from sloexporter.status import api, ui
from sloexporter.status.client import PrometheusError
from sloexporter.status.config import StatusConfig
from sloexporter.status.platform import read_platform
from sloexporter.status.service import StatusService

STATIC = Path(__file__).parent / "static"
HTML = "text/html"


def status_from_args(cfg: StatusConfig, url: str | None,
                     slo_paths: list[str]) -> StatusService | None:
    """The status service `serve` runs, or None without a Prometheus URL.

    Raises SpecErrors for invalid specs and ValueError for a bad URL.
    """
    if url:
        cfg = cfg.model_copy(update={"prometheus": cfg.prometheus.model_copy(
            update={"url": url})})
    if not cfg.prometheus.url:
        if slo_paths:
            raise ValueError("--slos needs --prometheus-url (or status.prometheus.url)")
        return None
    if not cfg.prometheus.url.startswith(("http://", "https://")):
        raise ValueError(f"Prometheus URL {cfg.prometheus.url!r} must start with http:// "
                         "or https://")
    from sloexporter.specs import load_paths
    from sloexporter.specs.errors import SpecErrors

    paths = [*cfg.slos, *slo_paths]
    services, errors = load_paths(paths) if paths else ([], [])
    if errors:
        raise SpecErrors(errors)
    return StatusService(cfg, [slo for s in services for slo in s.slos])


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, content_type=HTML, status=status)


def attach_status(app: web.Application, serving: Serving, svc: StatusService) -> None:
    """Add the API and UI to serve's app, and the status self-metrics to /metrics."""
    add_status_routes(app, svc)
    serving.extra_metrics.append(svc.render_metrics)


def build_status_app(exporter: Exposing, svc: StatusService) -> web.Application:
    """serve's app with the status service, for embedding, tests and benchmarks."""
    serving = Serving(exporter)
    app = build_app(serving)
    attach_status(app, serving, svc)
    return app


def add_status_routes(app: web.Application, svc: StatusService) -> None:
    app[api.SERVICE_KEY] = svc
    api.add_routes(app)

    def view_state() -> tuple[str | None, float | None, bool]:
        reason = svc.unavailable()
        return reason, svc.data_age(), svc.error is not None or svc.snapshot is None

    async def list_view(request: web.Request) -> web.Response:
        reason, age, error = view_state()
        every = svc.snapshot.items if svc.snapshot else []
        query = {k: request.query.get(k, "") for k in ("service", "team", "status", "label",
                                                        "sort")}
        try:
            f = api.parse_filters(request.query)
        except api.BadFilter as exc:
            return _html(ui.page("Bad filter", f"<p>{ui.escape(str(exc))}</p>"), 400)
        snap = svc.snapshot
        key = ("page", request.query_string)
        if reason is None and snap is not None and key in snap.rendered:
            return web.Response(body=snap.rendered[key], content_type=HTML, charset="utf-8")
        items = [i for i in every if api.matches(i, f)]
        cal = snap.raw.windows.get("calendar") if snap else None
        text = ui.list_page(items, every, query, cal.label if cal else None, reason, age, error)
        if reason is None and snap is not None:  # no banner: the page depends on the data only
            snap.remember(key, text.encode())
        return _html(text)

    async def detail_view(request: web.Request) -> web.Response:
        reason, age, error = view_state()
        found = svc.find(request.match_info["service"], request.match_info["slo"])
        if found is None:
            body = "<h1>No such SLO</h1>" if svc.snapshot else "<h1>No data yet</h1>"
            return _html(ui.page("Not found", body, ui.banner(reason, age, error)),
                         404 if svc.snapshot else 503)
        slo, item = found
        item = dict(item)
        try:
            item["graphs"] = await svc.graphs(slo)
            item["calendar_history"] = await svc.history(slo)
        except (PrometheusError, TimeoutError) as exc:
            reason, error = f"Prometheus query failed: {exc}", True
        return _html(ui.detail_page(item, svc.cfg.grafana_url, reason, age, error))

    async def platform_view(_: web.Request) -> web.Response:
        days = svc.cfg.platform.certificate_days
        data = svc.cache.get(("platform", days))
        if data is None:
            try:
                data = await read_platform(svc.client, svc.clock(), days)
            except (PrometheusError, TimeoutError) as exc:
                return _html(ui.platform_page(None, f"Prometheus query failed: {exc}"), 503)
            data["computed_at"] = svc.clock()
            svc.cache.put(("platform", days), data)
        return _html(ui.platform_page(data, None))

    app[LANDING] = list_view  # `/` is the SLO list
    app.router.add_get("/slo/{service}/{slo}", detail_view)
    app.router.add_get("/platform", platform_view)
    app.router.add_static("/static", STATIC)
