"""Where every SLO stands, from a few batched Prometheus queries.

One refresh sends a bounded number of queries whatever the number of SLOs: one per
recorded series (all SLOs at once) and per distinct range (each rolling period, the
calendar period). Everything after the queries is pure: `assemble` turns the numbers
into the API's items, and the tests check it against hand-computed values.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sloexporter import model, promql
from sloexporter.model import format_duration, parse_duration
from sloexporter.status import calendar
from sloexporter.status.calendar import Window
from sloexporter.status.catalog import (
    Key,
    SLODef,
    dedupe,
    from_info,
    from_pyrra,
    from_sloth,
    native_key,
    objective_str,
    pyrra_key,
    sloth_key,
)
from sloexporter.status.client import PrometheusClient, Sample
from sloexporter.status.config import StatusConfig

STATUSES = ("OK", "WARNING", "BREACHED", "NO_DATA")
ALERT_STATES = ("firing", "pending", "inactive")
#: queries sent at once; more only queue up in Prometheus
CONCURRENCY = 4


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


class Querier:
    """Instant queries at one evaluation time, at most CONCURRENCY at once, counted."""

    def __init__(self, client: PrometheusClient, at: float) -> None:
        self.client, self.at = client, at
        self.sent = 0
        self._gate = asyncio.Semaphore(CONCURRENCY)

    async def __call__(self, expr: str, at: float | None = None) -> list[Sample]:
        async with self._gate:
            self.sent += 1
            return await self.client.query(expr, self.at if at is None else at)


@dataclass
class Measured:
    """Per key: a mean errors rate, a mean total rate, or a mean error ratio."""

    errors: dict[Key, float] = field(default_factory=dict)
    totals: dict[Key, float] = field(default_factory=dict)
    ratios: dict[Key, float] = field(default_factory=dict)


def _add(target: dict[Key, float], key: Key | None, value: float, how: str) -> None:
    """Several series of one SLO (grouped SLOs, extra labels): rates add up, ratios
    take the worst."""
    if key is None or not math.isfinite(value):
        return
    if key in target:
        target[key] = target[key] + value if how == "sum" else max(target[key], value)
    else:
        target[key] = value


async def measure_window(q: Querier, window: Window, need: set[str]) -> Measured:
    """The mean rates and ratios of every SLO over `window`, one query per series."""
    out = Measured()
    s, at = window.seconds, window.end
    jobs: list[tuple[str, str, Callable[[Any], Key | None], dict[Key, float], str]] = []
    if "native" in need:
        jobs += [(promql.ERRORS_RATE5M, "errors", native_key, out.errors, "sum"),
                 (promql.TOTAL_RATE5M, "totals", native_key, out.totals, "sum")]
    if "ratio" in need:
        jobs.append((promql.ERROR_RATIO_5M, "ratio", _ratio_key, out.ratios, "max"))
    if "pyrra" in need:
        jobs += [(promql.PYRRA_ERRORS_RATE5M, "errors", pyrra_key, out.errors, "sum"),
                 (promql.PYRRA_REQUESTS_RATE5M, "totals", pyrra_key, out.totals, "sum")]
    results = await asyncio.gather(*(q(promql.average_over(m, s), at) for m, *_ in jobs))
    for (_, _, key_of, target, how), samples in zip(jobs, results, strict=True):
        for sample in samples:
            _add(target, key_of(sample.labels), sample.value, how)
    return out


def _ratio_key(labels: dict[str, str]) -> Key | None:
    return sloth_key(labels) if "sloth_id" in labels else native_key(labels)


@dataclass
class Raw:
    """Everything one refresh read from Prometheus."""

    at: float
    slos: list[SLODef]
    windows: dict[str, Window]
    measured: dict[str, Measured]
    burn_ratios: dict[Key, dict[str, float]]
    alerts: dict[Key, dict[str, str]]
    queries: int = 0


async def discover(q: Querier, specs: list[SLODef], cfg: StatusConfig) -> list[SLODef]:
    """The spec SLOs plus every SLO whose rules are in Prometheus."""
    info, sloth, pyrra = await asyncio.gather(
        q(promql.INFO),
        q(promql.SLOTH_INFO) if cfg.discover_sloth else _nothing(),
        q(promql.PYRRA_OBJECTIVE) if cfg.discover_pyrra else _nothing())
    days: dict[Key, float] = {}
    windows: dict[Key, float] = {}
    if sloth:
        for s in await q(promql.SLOTH_PERIOD_DAYS):
            _add(days, sloth_key(s.labels), s.value, "max")
    if pyrra:
        for s in await q(promql.PYRRA_WINDOW):
            _add(windows, pyrra_key(s.labels), s.value, "max")
    found: list[SLODef] = []
    for sample in info:
        d = from_info(sample)
        if d is not None:
            found.append(d)
    for sample in sloth:
        key = sloth_key(sample.labels)
        d = from_sloth(sample, days.get(key) if key else None)
        if d is not None:
            found.append(d)
    for sample in pyrra:
        key = pyrra_key(sample.labels)
        d = from_pyrra(sample, windows.get(key) if key else None)
        if d is not None:
            found.append(d)
    return dedupe(specs, found)


async def _nothing() -> list[Sample]:
    return []


def windows_for(slos: Iterable[SLODef], cfg: StatusConfig, now: float) -> dict[str, Window]:
    """One window per distinct rolling period, plus the current calendar period."""
    out: dict[str, Window] = {}
    for slo in slos:
        name = f"rolling:{slo.period_str}"
        out.setdefault(name, Window(slo.period_str, now - slo.period, now, "rolling"))
    if cfg.calendar is not None:
        tz = ZoneInfo(cfg.calendar.timezone)
        out["calendar"] = calendar.containing(cfg.calendar.period, now, tz).clipped(now)
    return out


def needs(slos: Iterable[SLODef]) -> set[str]:
    need: set[str] = set()
    for slo in slos:
        if slo.origin == "pyrra":
            need.add("pyrra")
        elif slo.origin == "sloth" or not slo.weighted:
            need.add("ratio")
        else:
            need.add("native")
    return need


async def read_all(client: PrometheusClient, specs: list[SLODef], cfg: StatusConfig,
                   now: float) -> Raw:
    q = Querier(client, now)
    slos = await discover(q, specs, cfg)
    windows = windows_for(slos, cfg, now)
    need = needs(slos)

    async def window_job(name: str, window: Window) -> tuple[str, Measured]:
        period = parse_duration(window.label) if window.kind == "rolling" else None
        members = [s for s in slos if period is None or s.period == period]
        return name, await measure_window(q, window, needs(members))

    jobs: list[Awaitable[Any]] = [q(promql.error_ratios_every_window()), q(promql.slo_alerts())]
    if "pyrra" in need:
        jobs.append(q(promql.pyrra_burnrates_every_window()))
    jobs += [window_job(n, w) for n, w in windows.items()]
    results = await asyncio.gather(*jobs)
    ratios, alerts = results[0], results[1]
    pyrra_burn = results[2] if "pyrra" in need else []
    measured = dict(results[3 if "pyrra" in need else 2:])
    burn = _burn_ratios(ratios, pyrra_burn, slos)
    return Raw(now, slos, windows, measured, burn, _alert_states(alerts, slos), q.sent)


def _burn_ratios(ratios: list[Sample], pyrra: list[Sample],
                 slos: list[SLODef]) -> dict[Key, dict[str, float]]:
    """Per SLO, the error ratio of every recorded window (the worst of several series)."""
    out: dict[Key, dict[str, float]] = {}

    def put(key: Key, window: str, value: float) -> None:
        if math.isfinite(value):
            windows = out.setdefault(key, {})
            windows[window] = max(windows.get(window, value), value)

    for sample in ratios:
        window = promql.error_ratio_window(sample.labels.get("__name__", ""))
        key = _ratio_key(sample.labels)
        if window and key:
            put(key, window, sample.value)
    by_key = {s.key: s for s in slos}
    for sample in pyrra:
        parsed = promql.pyrra_burnrate_window(sample.labels.get("__name__", ""))
        key = pyrra_key(sample.labels)
        if parsed and key and key in by_key and by_key[key].origin == "pyrra":
            by_key[key].pyrra_metric = parsed[0]
            put(key, parsed[1], sample.value)
    return out


def _severity(slo: SLODef, labels: dict[str, str]) -> str | None:
    if slo.origin == "sloth":
        return labels.get("sloth_severity")
    sev = labels.get("severity", "")
    if sev in slo.page_severities:
        return "page"
    if sev in slo.ticket_severities:
        return "ticket"
    return None


def _alert_states(samples: list[Sample], slos: list[SLODef]) -> dict[Key, dict[str, str]]:
    by_key = {s.key: s for s in slos}
    out: dict[Key, dict[str, str]] = {}
    rank = {s: i for i, s in enumerate(ALERT_STATES)}
    for sample in samples:
        labels = sample.labels
        if "sloth_slo" in labels:
            key = sloth_key(labels)
        elif "service" in labels and "long_window" in labels:
            key = native_key(labels)
        else:
            key = pyrra_key(labels)
        slo = by_key.get(key) if key else None
        if slo is None or (slo.alert_name and labels.get("alertname") != slo.alert_name):
            continue
        severity = _severity(slo, labels)
        state = labels.get("alertstate", "")
        if severity not in ("page", "ticket") or state not in rank:
            continue
        states = out.setdefault(slo.key, {})
        if rank[state] < rank[states.get(severity, "inactive")]:
            states[severity] = state
    return out


# --- From numbers to the API's items (pure) -------------------------------------------------

def window_view(slo: SLODef, m: Measured | None, window: Window) -> dict[str, Any]:
    """SLI and error budget of one SLO over one window; `reason` says why a value is None."""
    view: dict[str, Any] = {"label": window.label, "start": window.start, "end": window.end,
                            "sli": None, "error_budget_remaining": None,
                            "error_budget": None, "reason": None}
    if m is None:
        view["reason"] = "not measured"
        return view
    key = slo.key
    ratio: float | None
    events = bad = None
    if slo.origin == "pyrra" or (slo.origin == "native" and slo.weighted):
        errors, total = finite(m.errors.get(key)), finite(m.totals.get(key))
        if total is None or errors is None:
            missing = "errors" if total is not None else "total"
            view["reason"] = f"no {missing} series in the window"
            return view
        if total <= 0:
            view["reason"] = "no events in the window"
            return view
        ratio = errors / total
        events, bad = total * window.seconds, errors * window.seconds
    else:
        ratio = finite(m.ratios.get(key))
        if ratio is None:
            view["reason"] = "no error-ratio series in the window"
            return view
    ratio = min(max(ratio, 0.0), 1.0)
    budget = slo.budget
    remaining = model.budget_remaining(ratio, budget)
    view["sli"] = 1 - ratio
    view["error_budget_remaining"] = remaining
    if slo.unit == "requests" and events is not None and bad is not None:
        allowed = budget * events
        view["error_budget"] = {"unit": "requests", "allowed": allowed, "consumed": bad,
                                "remaining": allowed - bad, "events": events}
    elif slo.unit == "minutes":
        minutes = window.seconds / 60
        view["error_budget"] = {"unit": "minutes", "allowed": budget * minutes,
                                "consumed": ratio * minutes,
                                "remaining": (budget - ratio) * minutes}
    return view


def status_of(view: dict[str, Any], alerts: dict[str, str], warning: float) -> str:
    remaining = view.get("error_budget_remaining")
    if remaining is None:
        return "NO_DATA"
    if remaining <= 0:
        return "BREACHED"
    if remaining < warning or "firing" in alerts.values():
        return "WARNING"
    return "OK"


def _burn_window(slo: SLODef, burn: dict[str, float], preferred: str) -> float | None:
    if preferred in burn:
        return burn[preferred]
    target = parse_duration(preferred)
    above = sorted((parse_duration(w), v) for w, v in burn.items() if parse_duration(w) >= target)
    return above[0][1] if above else None


def assemble(raw: Raw, cfg: StatusConfig) -> list[dict[str, Any]]:
    items = []
    for slo in raw.slos:
        items.append(assemble_one(slo, raw, cfg))
    return items


def assemble_one(slo: SLODef, raw: Raw, cfg: StatusConfig) -> dict[str, Any]:
    rolling_name = f"rolling:{slo.period_str}"
    rolling = window_view(slo, raw.measured.get(rolling_name), raw.windows[rolling_name])
    ratios = raw.burn_ratios.get(slo.key, {})
    burn = {w: finite(model.burn_rate_of(v, slo.budget)) for w, v in
            sorted(ratios.items(), key=lambda kv: parse_duration(kv[0]))}
    alerts = {"page": "inactive", "ticket": "inactive"}
    alerts.update(raw.alerts.get(slo.key, {}))
    warning = cfg.thresholds.warning_budget
    status = status_of(rolling, alerts, warning)
    current = _burn_window(slo, {w: v for w, v in burn.items() if v is not None},
                           cfg.thresholds.exhaustion_window)
    item: dict[str, Any] = {
        "service": slo.service, "slo": slo.slo, "objective": slo.objective,
        "period": slo.period_str, "sli": rolling["sli"],
        "error_budget_remaining": rolling["error_budget_remaining"],
        "error_budget": rolling["error_budget"],
        "burn_rates": burn, "alerts": alerts, "status": status, "labels": slo.labels,
        "origin": slo.origin, "description": slo.description, "team": slo.team,
        "time_to_exhaustion_seconds": model.exhaustion_seconds(
            rolling["error_budget_remaining"], slo.period, current),
        "tiers": [{"severity": t.severity, "long_window": t.long_window,
                   "short_window": t.short_window, "threshold": t.factor,
                   "burn_rate_long": burn.get(t.long_window),
                   "burn_rate_short": burn.get(t.short_window),
                   "firing": (finite(burn.get(t.long_window)) or 0) > t.factor
                   and (finite(burn.get(t.short_window)) or 0) > t.factor}
                  for t in slo.tiers],
        "unknown": slo.unknown,
        "reason": rolling["reason"],
    }
    if "calendar" in raw.windows:
        view = window_view(slo, raw.measured.get("calendar"), raw.windows["calendar"])
        view["status"] = status_of(view, {}, warning)
        item["calendar"] = view
    return item


def objective_text(item: dict[str, Any]) -> str:
    return objective_str(item["objective"])


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds <= 0:
        return "exhausted"
    return format_duration(max(60, int(seconds) // 60 * 60))
