"""The status service: refreshes in the background, serves from its last snapshot.

Requests never wait on Prometheus for the list: they read the snapshot of the last
refresh. A refresh that fails keeps the old snapshot and records why, so the API can
answer 503 with the reason and the UI can show how old its data is. /metrics reads only
counters kept here, never Prometheus.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from sloexporter import names, promql
from sloexporter.exposition import family_header, sample_line
from sloexporter.model import SLO
from sloexporter.status import calendar, compute
from sloexporter.status.catalog import SLODef, from_model
from sloexporter.status.client import PrometheusClient, PrometheusError, Series
from sloexporter.status.config import StatusConfig

log = logging.getLogger("sloexporter.status")


#: rendered answers kept per snapshot (the unfiltered list and common filters)
RENDERED_MAX = 64


@dataclass
class Snapshot:
    at: float
    items: list[dict[str, Any]]
    raw: compute.Raw
    by_key: dict[tuple[str, str], dict[str, Any]]
    #: rendered answers (JSON, pages) per query string: a snapshot never changes, so
    #: the API and the list page serialise 1,000 SLOs once per refresh, not per request
    rendered: dict[tuple[str, str], bytes] = field(default_factory=dict)

    def remember(self, key: tuple[str, str], body: bytes) -> bytes:
        """Keep a rendered answer, up to RENDERED_MAX: query strings are the client's
        choice, and each answer can be megabytes."""
        if len(self.rendered) < RENDERED_MAX:
            self.rendered[key] = body
        return body


class TTLCache:
    """Answers of slower on-demand queries (graphs, history), kept for `ttl` seconds."""

    def __init__(self, ttl: float, size: int = 256) -> None:
        self.ttl, self.size = ttl, size
        self._data: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any:
        hit = self._data.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        return None

    def put(self, key: Any, value: Any) -> None:
        if len(self._data) >= self.size:
            self._data.pop(next(iter(self._data)))
        self._data[key] = (time.monotonic(), value)


class StatusService:
    def __init__(self, cfg: StatusConfig, slos: list[SLO],
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.client = PrometheusClient(cfg.prometheus)
        self.slo_models = slos
        self.specs: list[SLODef] = [from_model(s) for s in slos]
        self.clock = clock
        self.snapshot: Snapshot | None = None
        self.error: str | None = None
        self.last_attempt: float | None = None
        self.refreshes = {"success": 0, "failure": 0}
        self.refresh_queries = 0
        self.refresh_duration = 0.0
        self.cache = TTLCache(max(cfg.refresh_interval, 10))
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        from sloexporter.status.delivery import Scheduler

        self.scheduler = Scheduler(cfg, self.client, slos, clock) if cfg.delivery else None

    # --- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        origins = [o for o, on in (("Sloth", self.cfg.discover_sloth),
                                   ("Pyrra", self.cfg.discover_pyrra)) if on]
        log.info("status: %d SLOs from specs, plus those whose rules are in Prometheus "
                 "(sloexporter%s); reading %s every %gs%s", len(self.specs),
                 "".join(f", {o}" for o in origins), public_url(self.cfg.prometheus.url or ""),
                 self.cfg.refresh_interval,
                 f"; {len(self.cfg.delivery)} report deliveries" if self.cfg.delivery else "")
        self._task = asyncio.create_task(self._loop())
        if self.scheduler is not None:
            self.scheduler.start()

    async def stop(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=1.0)
        await self.client.close()

    async def _loop(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.cfg.refresh_interval)

    @property
    def refresh_timeout(self) -> float:
        return max(self.cfg.prometheus.query_timeout * 3, 5.0)

    async def refresh(self) -> None:
        """One refresh; on failure the old snapshot stays and `error` says why."""
        async with self._lock:
            start = time.monotonic()
            now = self.clock()
            self.last_attempt = now
            before = self.client.queries
            try:
                raw = await asyncio.wait_for(
                    compute.read_all(self.client, self.specs, self.cfg, now),
                    self.refresh_timeout)
                # in a thread: 1,000 SLOs take a while, and /metrics must not wait
                items = await asyncio.to_thread(compute.assemble, raw, self.cfg)
                snapshot = Snapshot(now, items, raw,
                                    {(i["service"], i["slo"]): i for i in items})
                snapshot.rendered[("api", "")] = await asyncio.to_thread(json_bytes, items)
            except (PrometheusError, TimeoutError) as exc:
                reason = str(exc) or f"refresh took longer than {self.refresh_timeout:g}s"
                self._failed(f"Prometheus query failed: {reason}")
            except Exception as exc:  # noqa: BLE001 - a bad answer must not end the loop
                log.exception("status refresh failed on an unexpected answer")
                self._failed(f"cannot use the Prometheus answers: {exc.__class__.__name__}")
            else:
                self.snapshot = snapshot
                self.error = None
                self.refreshes["success"] += 1
            finally:
                self.refresh_queries = self.client.queries - before
                self.refresh_duration = time.monotonic() - start

    def _failed(self, reason: str) -> None:
        """Keep the old snapshot; the API and UI say why it is old."""
        self.error = reason
        self.refreshes["failure"] += 1
        log.warning("status refresh failed: %s", reason)

    # --- health ------------------------------------------------------------------------
    def data_age(self) -> float | None:
        return None if self.snapshot is None else max(self.clock() - self.snapshot.at, 0.0)

    def unavailable(self) -> str | None:
        """Why the API cannot answer from fresh data, or None when it can."""
        if self.snapshot is None:
            return self.error or "no data yet: the first refresh has not finished"
        age = self.data_age() or 0.0
        if self.error is not None:
            return f"{self.error} (data is {age:.0f}s old)"
        if age > self.cfg.stale_after:
            return f"data is {age:.0f}s old (stale after {self.cfg.stale_after:g}s)"
        return None

    def render_metrics(self, openmetrics: bool = False) -> str:
        """Self-metrics in the text format: only numbers kept here, never a query."""
        snap = self.snapshot

        def family(name: str, help_text: str, kind: str,
                   samples: list[tuple[dict[str, str], float]]) -> str:
            head = name.removesuffix("_total") if openmetrics and kind == "counter" else name
            return family_header(head, help_text, kind) + "".join(
                sample_line(name, labels, value) for labels, value in samples)

        out = [
            family(names.STATUS_REFRESH_QUERIES, "Prometheus queries the last status "
                   "refresh sent, whatever the number of SLOs.", "gauge",
                   [({}, self.refresh_queries)]),
            family(names.STATUS_QUERIES, "Prometheus queries the status "
                   "service sent.", "counter", [({}, self.client.queries)]),
            family(names.STATUS_REFRESHES, "Status refreshes by result.",
                   "counter", [({"result": r}, n) for r, n in sorted(self.refreshes.items())]),
            family(names.STATUS_REFRESH_DURATION, "Duration of the last "
                   "status refresh.", "gauge", [({}, self.refresh_duration)]),
            family(names.STATUS_UP, "1 when the last status refresh from Prometheus "
                   "succeeded.", "gauge", [({}, 0 if self.error or snap is None else 1)]),
        ]
        if snap is not None:
            counts: dict[tuple[str, str], int] = {}
            for item in snap.items:
                k = (item["origin"], item["status"])
                counts[k] = counts.get(k, 0) + 1
            out += [
                family(names.STATUS_LAST_SUCCESS, "When the status "
                       "data was read from Prometheus.", "gauge", [({}, snap.at)]),
                family(names.STATUS_SLOS, "SLOs known to the status service, by "
                       "origin and status.", "gauge",
                       [({"origin": o, "status": st}, n) for (o, st), n in
                        sorted(counts.items())]),
            ]
        return "".join(out)

    # --- queries on demand ------------------------------------------------------------
    def find(self, service: str, slo: str) -> tuple[SLODef, dict[str, Any]] | None:
        if self.snapshot is None:
            return None
        item = self.snapshot.by_key.get((service, slo))
        if item is None:
            return None
        slo_def = next(s for s in self.snapshot.raw.slos if s.key == (service, slo))
        return slo_def, item

    def selector_labels(self, slo: SLODef) -> dict[str, str]:
        if slo.origin == "sloth":
            return {"sloth_service": slo.service, "sloth_slo": slo.slo}
        if slo.origin == "pyrra":
            labels = {"slo": slo.slo}
            if slo.service != "pyrra":
                labels["namespace"] = slo.service
            return labels
        return {"service": slo.service, "slo": slo.slo}

    async def graphs(self, slo: SLODef) -> dict[str, list[list[float]]]:
        """Budget remaining, SLI and 5m error ratio over the period, at most N points."""
        key = ("graphs", slo.key)
        cached = self.cache.get(key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        now = self.clock()
        points = self.cfg.graph_points
        step = max(60, math.ceil(slo.period / (points - 1) / 60) * 60)
        start = now - step * (points - 1)
        labels = self.selector_labels(slo)
        period, errors = await asyncio.gather(
            self.client.query_range(promql.mean_error_ratio(labels, slo.origin, slo.weighted,
                                                            slo.period), start, now, step),
            self.client.query_range(promql.error_ratio_5m(labels, slo.origin, slo.pyrra_metric),
                                    start, now, step))
        ratio = _points(period)
        out = {
            "error_budget_remaining": downsample([(t, 1 - r / slo.budget) for t, r in ratio],
                                                 points),
            "sli": downsample([(t, 1 - r) for t, r in ratio], points),
            "error_rate": downsample(_points(errors), points),
        }
        self.cache.put(key, out)
        return out

    async def history(self, slo: SLODef) -> list[dict[str, Any]]:
        """The current calendar period and the completed ones before it."""
        if self.cfg.calendar is None:
            return []
        cal = self.cfg.calendar
        windows = calendar.history(cal.period, self.clock(), ZoneInfo(cal.timezone),
                                   cal.history)
        key = ("history", windows[0].label, windows[-1].label)
        measured = self.cache.get(key)
        if measured is None:
            q = compute.Querier(self.client, self.clock())
            everyone = self.snapshot.raw.slos if self.snapshot else [slo]
            need = compute.needs(everyone)
            measured = await asyncio.gather(*(compute.measure_window(q, w, need)
                                              for w in windows))
            self.cache.put(key, measured)
        out = []
        for window, m in zip(windows, measured, strict=True):
            view = compute.window_view(slo, m, window)
            view["status"] = compute.status_of(view, {}, self.cfg.thresholds.warning_budget)
            out.append(view)
        return out


def public_url(url: str) -> str:
    """A URL fit for a log line: no user or password, no query (a token may ride there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def clean(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def json_bytes(value: Any) -> bytes:
    return json.dumps(clean(value)).encode()


def _points(series: list[Series]) -> list[tuple[float, float]]:
    """The finite points of a one-series answer (the queries aggregate to one series)."""
    merged: dict[float, float] = {}
    for s in series:
        for t, v in s.points:
            if math.isfinite(v):
                merged[t] = max(merged.get(t, v), v)
    return sorted(merged.items())


def downsample(points: list[tuple[float, float]], limit: int) -> list[list[float]]:
    """At most `limit` points, keeping the first and last and evenly spaced ones between."""
    if len(points) <= limit:
        return [[t, v] for t, v in points]
    stride = (len(points) - 1) / (limit - 1)
    return [[*points[round(i * stride)]] for i in range(limit)]
