"""The normalised SLO that every input format becomes, and the burn-rate math.

This module is the one place where windows, burn factors and detection times are
computed. Rules, dashboards, reports and generated tests all call it, so they can never
disagree. Arithmetic is done in Decimal so factors print as `14.4`, not
`14.399999999999999`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Literal

Severity = Literal["page", "ticket"]

_DURATION_RE = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))

MIN_PERIOD = 86400
MAX_PERIOD = 90 * 86400
#: Periods shorter than this scale the workbook windows down with the period.
WINDOW_REFERENCE_PERIOD = 28 * 86400
MIN_WINDOW = 300
FACTOR_QUANTUM = Decimal("0.001")


def parse_duration(text: str) -> int:
    """Parse a Prometheus-style duration such as `30d`, `1h30m` or `90s` into seconds."""
    match = _DURATION_RE.match(text.strip()) if isinstance(text, str) else None
    if not match or not text.strip():
        raise ValueError(f"invalid duration {text!r}: use units w, d, h, m, s as in 30d or 1h30m")
    seconds = sum(int(n) * mult for n, (_, mult) in zip(match.groups(), _UNITS, strict=True) if n)
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return seconds


@functools.lru_cache(maxsize=4096)
def format_duration(seconds: int) -> str:
    """The shortest Prometheus duration for `seconds`: 2592000 -> `30d`, 5400 -> `1h30m`."""
    out = ""
    rest = seconds
    for unit, mult in _UNITS:
        if unit == "w":
            continue  # `28d` reads better than `4w` and both parse everywhere
        if rest >= mult:
            out += f"{rest // mult}{unit}"
            rest %= mult
    return out or "0s"


def decimal_str(value: Decimal) -> str:
    """An exact, short decimal: 14.40 -> `14.4`, 6.0 -> `6`, 0.001 -> `0.001`."""
    return format(value.normalize(), "f")


@dataclass(frozen=True)
class TierSpec:
    """One multiwindow tier: alert when `budget_percent` of the budget burns in `long_window`."""

    severity: Severity
    long_window: int
    short_window: int
    budget_percent: Decimal
    #: fire only when the long window saw at least this many events (None: no minimum)
    min_events: int | None = None


#: The SRE workbook's tiers for a 30-day period (chapter 5, table 5-8).
WORKBOOK_TIERS: tuple[TierSpec, ...] = (
    TierSpec("page", 3600, 300, Decimal(2)),
    TierSpec("page", 6 * 3600, 1800, Decimal(5)),
    TierSpec("ticket", 86400, 2 * 3600, Decimal(10)),
    TierSpec("ticket", 3 * 86400, 6 * 3600, Decimal(10)),
)


@dataclass(frozen=True)
class Tier:
    """A tier resolved for one period: concrete windows and the burn factor."""

    severity: Severity
    long_window: int
    short_window: int
    budget_percent: Decimal
    factor: Decimal
    min_events: int | None = None

    @property
    def long(self) -> str:
        return format_duration(self.long_window)

    @property
    def short(self) -> str:
        return format_duration(self.short_window)


def burn_factor(budget_percent: Decimal, period: int, long_window: int) -> Decimal:
    """The workbook formula: budget % consumed x period / 100 / long window.

    Rounded to three decimals (28d gives 0.933 for the 3d tier), which is what a human
    would write into a rule and what the tests compare against.
    """
    raw = budget_percent * Decimal(period) / Decimal(100) / Decimal(long_window)
    return raw.quantize(FACTOR_QUANTUM, rounding=ROUND_HALF_EVEN).normalize()


def _scale_window(seconds: int, period: int) -> int:
    if period >= WINDOW_REFERENCE_PERIOD:
        return seconds
    scaled = seconds * period // WINDOW_REFERENCE_PERIOD
    return max(MIN_WINDOW, scaled // 60 * 60)


@functools.lru_cache(maxsize=1 << 10)  # a few periods and tier sets serve every SLO
def resolve_tiers(period: int, custom: tuple[TierSpec, ...] | None = None) -> tuple[Tier, ...]:
    """Tiers for `period`.

    Periods of 28 days or more keep the workbook windows, so the factors scale with the
    period (30d: 14.4/6/3/1; 28d: 13.44/5.6/2.8/0.933). Shorter periods scale the windows
    down by period/28d instead, so a 7d SLO keeps the 28d factors: a 3d window on a 7d
    period would otherwise need a factor below 1 and fire while the budget is still safe.
    Custom tiers are used as written.
    """
    specs = custom if custom is not None else WORKBOOK_TIERS
    tiers = []
    for spec in specs:
        long_w, short_w = spec.long_window, spec.short_window
        if custom is None:
            long_w, short_w = _scale_window(long_w, period), _scale_window(short_w, period)
            short_w = min(short_w, long_w)
        tiers.append(Tier(spec.severity, long_w, short_w, spec.budget_percent,
                          burn_factor(spec.budget_percent, period, long_w),
                          spec.min_events))
    return tuple(tiers)


def error_budget(objective_percent: Decimal) -> Decimal:
    """The allowed error ratio: 99.9 -> 0.001."""
    return (Decimal(100) - objective_percent) / Decimal(100)


def burn_rate_of(error_ratio: float, budget: float) -> float:
    """The burn rate of a measured error ratio: error ratio / error budget (the same
    division `promql.burn_rate` writes into rules)."""
    return error_ratio / budget


def budget_remaining(error_ratio: float, budget: float) -> float:
    """The share of the error budget left after `error_ratio` (negative once overspent):
    1 - burn rate over the period, as `slo:error_budget_remaining:ratio` records it."""
    return 1 - burn_rate_of(error_ratio, budget)


def exhaustion_seconds(remaining: float | None, period: float,
                       burn: float | None) -> float | None:
    """Seconds until the budget is spent at burn rate `burn`; 0 once it is spent, None
    while nothing burns. At burn rate b the whole budget lasts period / b, so the share
    r left lasts r x period / b (`promql.budget_exhaustion_seconds` in PromQL)."""
    if remaining is None:
        return None
    if remaining <= 0:
        return 0.0
    if burn is None or burn <= 0:
        return None
    return remaining * period / burn


def detection_seconds(tier: Tier, objective_percent: Decimal, error_ratio: Decimal,
                      period: int) -> Decimal | None:
    """Time from the start of errors at `error_ratio` until `tier` trips, in theory.

    The long window's ratio reaches factor x budget after factor x budget / ratio of the
    window; the short window, being shorter, trips earlier. None if it never trips.
    """
    threshold = tier.factor * error_budget(objective_percent)
    if error_ratio <= threshold:
        return None
    return threshold / error_ratio * Decimal(tier.long_window)


#: `lowest_firing_objective` reports objectives in steps of this size
OBJECTIVE_STEP = Decimal("0.01")


def tier_can_fire(tier: Tier, objective_percent: Decimal) -> bool:
    """Whether any error ratio trips `tier`: its threshold, factor x budget, must stay
    below 100% errors (the condition is a strict `>`, so exactly 100% never trips)."""
    return tier.factor * error_budget(objective_percent) < 1


def lowest_firing_objective(tier: Tier) -> Decimal:
    """The lowest objective, in steps of 0.01, at which `tier` can fire at all."""
    if tier.factor <= 1:
        return OBJECTIVE_STEP  # fires at some error ratio for every valid objective
    bound = Decimal(100) - Decimal(100) / tier.factor
    floor = (bound / OBJECTIVE_STEP).to_integral_value(ROUND_FLOOR) * OBJECTIVE_STEP
    return (floor + OBJECTIVE_STEP).normalize()


@dataclass(frozen=True)
class AlertSettings:
    """How one severity (page or ticket) is routed, labelled and held before it fires."""

    disabled: bool = False
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    for_: int = 0
    #: the tiers of this severity fire only after this many events in the long window
    min_events: int | None = None


@dataclass(frozen=True)
class Alerting:
    """An SLO's burn-rate alerts: their name, tiers and settings per severity."""

    name: str = "ErrorBudgetBurn"
    page: AlertSettings = AlertSettings()
    ticket: AlertSettings = AlertSettings()
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    runbook_url: str | None = None
    dashboard_url: str | None = None
    custom_tiers: tuple[TierSpec, ...] | None = None
    #: opt-in: an alert once the period's budget is spent (and a time-to-exhaustion series)
    budget_exhausted: AlertSettings | None = None

    def settings(self, severity: Severity) -> AlertSettings:
        return self.page if severity == "page" else self.ticket


@dataclass(frozen=True)
class SynthSeries:
    """A series a generated promtool test feeds, as a function of the error share r.

    Counters grow per second by (1 - r) x rate for `good`, r x rate for `bad` and rate
    for `total`. Gauges take the value a + b x t + c x r at time t (seconds). A `state`
    gauge stands for a population of objects each either good (value a) or bad (a + c);
    the test feeds as many copies as the share r needs, a share r of them bad.
    `selector` is the user's matcher list; the test generator picks concrete labels
    that satisfy it.
    """

    metric: str
    role: Literal["good", "bad", "total", "gauge", "state"]
    selector: str = "{}"
    labels: tuple[tuple[str, str], ...] = ()
    a: Decimal = Decimal(0)
    b: Decimal = Decimal(0)
    c: Decimal = Decimal(0)


@dataclass(frozen=True)
class Traffic:
    """The request metrics behind an HTTP-style SLI, kept for golden-signal dashboards.

    `requests` counts requests (a counter or a histogram's `_count`); an error is a
    request whose `status_label` matches `errors_regex`. `duration` is the latency
    histogram's base name and `in_flight` a gauge of requests in progress, when the
    convention has them.
    """

    convention: str
    requests: str
    selector: str
    status_label: str
    errors_regex: str
    duration: str | None = None
    in_flight: str | None = None


@dataclass(frozen=True)
class Condition:
    """A threshold SLI's gauge condition: a series is good while `query op value`."""

    query: str
    op: str
    value: Decimal


@dataclass(frozen=True)
class SLI:
    """An SLI compiled to PromQL templates with a `{{window}}` placeholder.

    Either `errors` and `total` (events; the ratio is errors/total) or `ratio` (a raw
    error-ratio query) is set. `records` are extra recording rules the templates read,
    used by time-share SLIs over gauges. `synth` describes the series a generated
    promtool test must feed; None means it is derived from the queries.
    """

    kind: str
    errors: str | None = None
    total: str | None = None
    ratio: str | None = None
    #: for SLIs written as good/total: the good query (errors is total - good)
    good: str | None = None
    records: tuple[tuple[str, str], ...] = ()
    synth: tuple[SynthSeries, ...] | None = None
    #: the request metrics of `http` and `probe` SLIs, for dashboards
    traffic: Traffic | None = None
    #: the gauge condition of a `threshold` SLI, for test synthesis and docs
    condition: Condition | None = None
    #: the SLI-health signal (1 while part of the SLI is unmeasurable, else 0) when the
    #: SLI defines its own; None: derived from the errors and total
    missing: str | None = None

    def __post_init__(self) -> None:
        if (self.ratio is None) == (self.errors is None or self.total is None):
            raise ValueError("an SLI has either errors and total, or ratio")


@dataclass(frozen=True)
class SLO:
    """One SLO of a service, from any input format: what every generator reads."""

    service: str
    name: str
    objective: Decimal
    period: int
    sli: SLI
    description: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    alerting: Alerting = field(default_factory=Alerting)
    #: where the SLO was written, for error messages from later stages
    origin: str = ""
    #: whether `generate --with-tests` writes promtool tests for this SLO
    tests: bool = True
    #: opt-in low-traffic guard for every tier: see `Tier.min_events`
    min_events: int | None = None
    #: `group_by`: one SLO per combination of these labels' values, at evaluation time
    group_by: tuple[str, ...] = ()

    @property
    def budget(self) -> Decimal:
        return error_budget(self.objective)

    @property
    def period_str(self) -> str:
        return format_duration(self.period)

    @functools.cached_property
    def tiers(self) -> tuple[Tier, ...]:
        tiers = resolve_tiers(self.period, self.alerting.custom_tiers)
        out = []
        for t in tiers:
            settings = self.alerting.settings(t.severity)
            if settings.disabled:
                continue
            if t.min_events is None:  # a custom tier's own minimum wins
                minimum = settings.min_events if settings.min_events is not None \
                    else self.min_events
                t = replace(t, min_events=minimum)
            out.append(t)
        return tuple(out)

    @functools.cached_property
    def windows(self) -> tuple[int, ...]:
        """Every window an alert needs, plus 5m, shortest first."""
        wins = {300}
        for tier in self.tiers:
            wins.update((tier.long_window, tier.short_window))
        return tuple(sorted(wins))

    @property
    def identity(self) -> tuple[tuple[str, str], ...]:
        """The labels every series and alert of this SLO carries."""
        merged = dict(self.labels)
        merged.update(service=self.service, slo=self.name)
        return tuple(sorted(merged.items()))


@dataclass(frozen=True)
class Service:
    """A service and its SLOs: one rules file, one dashboard."""

    name: str
    slos: tuple[SLO, ...]
    labels: tuple[tuple[str, str], ...] = ()
    origin: str = ""
    #: the ArgoCD Applications that deploy the service; None means one named like it
    argocd_apps: tuple[str, ...] | None = None
    #: the names of `generate --external-labels` (cluster=...), already in each SLO's
    #: labels: Alertmanager keeps one cluster's alerts apart from another's by them
    external_labels: tuple[str, ...] = ()

    @property
    def apps(self) -> tuple[str, ...]:
        """The ArgoCD Application names whose syncs are marked on the SLO dashboards."""
        return self.argocd_apps if self.argocd_apps is not None else (self.name,)
