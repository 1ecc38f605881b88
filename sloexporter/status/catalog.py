"""Which SLOs exist: native specs, sloexporter rules found in Prometheus, Sloth and Pyrra.

Each becomes an `SLODef` keyed by (service, slo), so the API and UI show one list
whatever made the SLO. What a foreign tool's series do not say is listed in `unknown`
(documented in docs/status.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from sloexporter.model import (
    SLO,
    WORKBOOK_TIERS,
    Tier,
    burn_factor,
    decimal_str,
    error_budget,
    format_duration,
    parse_duration,
    resolve_tiers,
)
from sloexporter.status.client import Labels, Sample

Key = tuple[str, str]
#: SLI kinds whose budget is time (minutes), not events
TIME_KINDS = frozenset({"ratio", "backup", "certificate", "threshold"})
#: labels that say what made a series, not what it is about
_INTERNAL = frozenset({"__name__", "objective", "period", "sli_kind", "sloth_id",
                       "sloth_service", "sloth_slo", "sloth_objective", "sloth_mode",
                       "sloth_spec", "sloth_version", "sloth_window", "service", "slo"})


@dataclass(frozen=True)
class TierInfo:
    severity: str
    long_window: str
    short_window: str
    factor: float


@dataclass
class SLODef:
    service: str
    slo: str
    objective: float  # percent
    period: int  # seconds
    origin: str  # native, sloth, pyrra
    labels: dict[str, str] = field(default_factory=dict)
    description: str = ""
    sli_kind: str = ""
    #: events SLIs are weighted by traffic; ratio SLIs average 5m ratios over time
    weighted: bool = True
    unit: str = "requests"
    tiers: list[TierInfo] = field(default_factory=list)
    #: `severity` label values of page and ticket alerts
    page_severities: frozenset[str] = frozenset({"page"})
    ticket_severities: frozenset[str] = frozenset({"ticket"})
    alert_name: str | None = None
    #: what this origin's series do not tell (see docs/status.md)
    unknown: list[str] = field(default_factory=list)
    #: Pyrra: the recorded metric behind `<metric>:burnrate<window>`
    pyrra_metric: str | None = None

    @property
    def key(self) -> Key:
        return self.service, self.slo

    @property
    def budget(self) -> float:
        return float(error_budget(Decimal(repr(self.objective))))

    @property
    def period_str(self) -> str:
        return format_duration(self.period)

    @property
    def team(self) -> str:
        return self.labels.get("team", "")


def _tiers(tiers: Iterable[Tier]) -> list[TierInfo]:
    return [TierInfo(t.severity, t.long, t.short, float(t.factor)) for t in tiers]


def _public(labels: Labels) -> dict[str, str]:
    return {k: v for k, v in sorted(labels.items()) if k not in _INTERNAL}


def from_model(slo: SLO) -> SLODef:
    """A native SLO from its spec: everything is known."""
    from sloexporter.rules import severity_label

    time_based = slo.sli.ratio is not None or bool(slo.sli.records)
    return SLODef(slo.service, slo.name, float(slo.objective), slo.period, "native",
                  labels=dict(slo.labels), description=slo.description, sli_kind=slo.sli.kind,
                  weighted=slo.sli.ratio is None, unit="minutes" if time_based else "requests",
                  tiers=_tiers(slo.tiers),
                  page_severities=frozenset({severity_label(slo, "page")}),
                  ticket_severities=frozenset({severity_label(slo, "ticket")}),
                  alert_name=slo.alerting.name)


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def native_key(labels: Labels) -> Key | None:
    if "sloth_id" in labels:
        return None
    service, slo = labels.get("service"), labels.get("slo")
    return (service, slo) if service and slo else None


def sloth_key(labels: Labels) -> Key | None:
    service, slo = labels.get("sloth_service"), labels.get("sloth_slo")
    return (service, slo) if service and slo else None


def pyrra_key(labels: Labels) -> Key | None:
    slo = labels.get("slo")
    return (labels.get("namespace") or "pyrra", slo) if slo else None


def from_info(sample: Sample) -> SLODef | None:
    """An SLO of sloexporter's rules found through `slo:info` but not in --slos."""
    labels = sample.labels
    key = native_key(labels)
    objective = _number(labels.get("objective"))
    try:
        period = parse_duration(labels.get("period", ""))
    except ValueError:
        period = 0
    if key is None or objective is None or not 0 < objective < 100 or period <= 0:
        return None
    kind = labels.get("sli_kind", "")
    return SLODef(key[0], key[1], objective, period, "native", labels=_public(labels),
                  sli_kind=kind, weighted=kind != "ratio",
                  unit="minutes" if kind in TIME_KINDS else "requests",
                  tiers=_tiers(resolve_tiers(period)),
                  unknown=["description", "custom alert tiers (default tiers assumed)"])


def sloth_tiers(period: int) -> list[TierInfo]:
    """Sloth's default (`google`) windows are the workbook's, kept whatever the period;
    the factors follow the workbook formula for the period."""
    return [TierInfo(t.severity, format_duration(t.long_window),
                     format_duration(t.short_window),
                     float(burn_factor(t.budget_percent, period, t.long_window)))
            for t in WORKBOOK_TIERS]


def from_sloth(info: Sample, days: float | None) -> SLODef | None:
    labels = info.labels
    key = sloth_key(labels)
    objective = _number(labels.get("sloth_objective"))
    if key is None or objective is None or not 0 < objective < 100:
        return None
    period = int(days * 86400) if days and days > 0 else 30 * 86400
    unknown = ["description", "sli_kind", "absolute budget (Sloth records ratios only)",
               "alert thresholds (Sloth's default windows assumed)"]
    if not days:
        unknown.append("period (30d assumed: slo:time_period:days is missing)")
    return SLODef(key[0], key[1], objective, period, "sloth", labels=_public(labels),
                  weighted=False, unit="minutes", tiers=sloth_tiers(period),
                  page_severities=frozenset({"page"}), ticket_severities=frozenset({"ticket"}),
                  unknown=unknown)


def pyrra_tiers(period: int) -> list[TierInfo]:
    """Pyrra's windows scale with the period from its 28-day layout; factors are fixed."""
    base = ((1, "page", 3600, 300, 14.0), (2, "page", 21600, 1800, 7.0),
            (3, "ticket", 86400, 7200, 2.0), (4, "ticket", 4 * 86400, 21600, 1.0))
    scale = period / (28 * 86400)
    return [TierInfo(sev, format_duration(max(60, int(lw * scale) // 60 * 60)),
                     format_duration(max(60, int(sw * scale) // 60 * 60)), f)
            for _, sev, lw, sw, f in base]


def from_pyrra(objective: Sample, window: float | None) -> SLODef | None:
    labels = objective.labels
    key = pyrra_key(labels)
    ratio = objective.value
    if key is None or not math.isfinite(ratio) or not 0 < ratio < 1:
        return None
    period = int(window) if window and window > 0 else 28 * 86400
    unknown = ["sli_kind", "alert thresholds (Pyrra's default windows assumed)"]
    if not window:
        unknown.append("period (28d assumed: pyrra_window is missing)")
    public = _public(labels)
    public.pop("namespace", None)
    return SLODef(key[0], key[1], round(ratio * 100, 6), period, "pyrra", labels=public,
                  description=labels.get("description", ""), weighted=True,
                  tiers=pyrra_tiers(period), page_severities=frozenset({"critical"}),
                  ticket_severities=frozenset({"warning"}), unknown=unknown)


def objective_str(value: float) -> str:
    return decimal_str(Decimal(repr(value)))


def dedupe(*groups: Iterable[SLODef]) -> list[SLODef]:
    """One SLODef per key: specs first, then what Prometheus shows, in that order."""
    seen: dict[Key, SLODef] = {}
    for group in groups:
        for slo in group:
            seen.setdefault(slo.key, slo)
    return sorted(seen.values(), key=lambda s: s.key)

