"""The native spec, `apiVersion: sloexporter.dev/v1`, `kind: ServiceLevels`."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from sloexporter.model import MAX_PERIOD, MIN_PERIOD, format_duration, parse_duration
from sloexporter.promql import WINDOW_PLACEHOLDER

API_VERSION = "sloexporter.dev/v1"
KIND = "ServiceLevels"

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
SLO_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
RESERVED_LABELS = {"service", "slo", "severity", "long_window", "short_window", "alertname",
                   "__name__"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def _check_labels(labels: dict[str, str], reserved: set[str] = RESERVED_LABELS) -> dict[str, str]:
    for name in labels:
        if not LABEL_NAME.match(name):
            raise ValueError(f"invalid label name {name!r}: use letters, digits and '_', "
                             "not starting with a digit")
        if name in reserved:
            raise ValueError(f"label {name!r} is set by sloexporter and cannot be overridden")
    return labels


#: labels a group cannot be split by: our own series' and alerts' labels, the histogram
#: bucket label, and the `window` label the dashboards add
GROUP_RESERVED = RESERVED_LABELS | {"le", "quantile", "objective", "period", "sli_kind",
                                    "window", "alertstate"}


def _each_once(values: list[str], what: str, check: Callable[[str], None]) -> None:
    """`check` each value, and refuse one listed twice."""
    seen: set[str] = set()
    for value in values:
        check(value)
        if value in seen:
            raise ValueError(f"{what} {value!r} is listed twice")
        seen.add(value)


def _group_label(name: str) -> None:
    if not LABEL_NAME.match(name) or name.startswith("__"):
        raise ValueError(f"invalid label name {name!r} in group_by: use letters, digits "
                         "and '_', not starting with a digit or '__'")
    if name in GROUP_RESERVED:
        raise ValueError(f"group_by cannot use {name!r}: sloexporter sets that label "
                         "on its own series and alerts")


def check_group_by(labels: list[str]) -> list[str]:
    """A group_by list: label names, none of ours, each once, at least one."""
    if not labels:
        raise ValueError("group_by needs at least one label; leave it out for one SLO "
                         "over every series")
    _each_once(labels, "group_by label", _group_label)
    return labels


#: `group_by`: one SLO per combination of these labels' values (Pyrra's `grouping`)
GroupBy = Annotated[list[str] | None, AfterValidator(
    lambda v: None if v is None else check_group_by(v))]


def _check_name(value: str, what: str) -> str:
    if not SLO_NAME.match(value):
        raise ValueError(f"{what} must be 1-63 characters of letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit")
    return value


def _check_alert_labels(labels: dict[str, str]) -> dict[str, str]:
    return _check_labels(labels, RESERVED_LABELS - {"severity"})


APP_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def _app_name(app: str) -> None:
    if not APP_NAME.match(app):
        raise ValueError(f"ArgoCD application name {app!r} must be a Kubernetes name: "
                         "lowercase letters, digits, '-' and '.'")


def _check_apps(apps: list[str] | None) -> list[str] | None:
    _each_once(list(apps or ()), "ArgoCD application", _app_name)
    return apps


#: significant digits a 64-bit float keeps exactly; more would change in the rules
MAX_DIGITS = 15
MAX_EXPONENT = 30


def _number(value: Decimal) -> Decimal:
    """A number that survives as a Prometheus float: finite, at most 15 significant
    digits, and within 1e-30..1e30 in size (a 5,000-digit objective is refused here)."""
    if not value.is_finite():
        raise ValueError(f"must be a finite number, not {value}")
    if value.is_zero():
        return value
    # not normalize(): it rounds to the context's 28 digits first
    digits = len("".join(map(str, value.as_tuple().digits)).strip("0"))
    if digits > MAX_DIGITS:
        raise ValueError(f"{digits} significant digits is more than the {MAX_DIGITS} a "
                         "Prometheus float keeps; round it")
    if abs(value.adjusted()) > MAX_EXPONENT:
        raise ValueError(f"{value:.3e} is out of range (1e-{MAX_EXPONENT} to "
                         f"1e{MAX_EXPONENT})")
    return value


Number = Annotated[Decimal, AfterValidator(_number)]


def _check_annotation_names(annotations: dict[str, str]) -> dict[str, str]:
    for name in annotations:
        if not LABEL_NAME.match(name):
            raise ValueError(f"invalid annotation name {name!r}: use letters, digits and "
                             "'_', not starting with a digit")
    return annotations


def _check_label_name(name: str | None) -> str | None:
    if name is not None and not LABEL_NAME.match(name):
        raise ValueError(f"{name!r} is not a label name: use letters, digits and '_', not "
                         "starting with a digit")
    return name


LabelName = Annotated[str, AfterValidator(_check_label_name)]


def _check_query_size(query: str) -> str:
    from sloexporter.specs.promcheck import too_big  # promcheck imports nothing of ours

    problem = too_big(query)
    if problem is not None:
        raise ValueError(problem)
    return query


#: a PromQL query: bounded in length, nesting and operators before anything parses it
Query = Annotated[str, AfterValidator(_check_query_size)]


def _duration(value: str) -> str:
    parse_duration(value)
    return value


Labels = Annotated[dict[str, str], AfterValidator(_check_labels), Field(default_factory=dict)]
AlertLabels = Annotated[dict[str, str], AfterValidator(_check_alert_labels),
                        Field(default_factory=dict)]
Annotations = Annotated[dict[str, str], AfterValidator(_check_annotation_names),
                        Field(default_factory=dict)]
Duration = Annotated[str, AfterValidator(_duration)]


class EventsSLI(Strict):
    errors: Query | None = None
    good: Query | None = None
    total: Query

    @model_validator(mode="after")
    def _one_of(self) -> EventsSLI:
        if (self.errors is None) == (self.good is None):
            raise ValueError("events needs exactly one of 'errors' or 'good', plus 'total'")
        return self


class RatioSLI(Strict):
    query: Query


class LatencySLI(Strict):
    metric: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    selector: str = "{}"
    threshold: Number = Field(gt=0)
    #: the histogram's bucket boundaries, when known; the threshold must be one of them
    buckets: list[Number] | None = None
    #: a native histogram (one series, `histogram_fraction`) instead of `_bucket`/`_count`
    native: bool = False

    @model_validator(mode="after")
    def _native_has_no_buckets(self) -> LatencySLI:
        if self.native and self.buckets is not None:
            raise ValueError("a native histogram has no fixed buckets; drop 'buckets' or "
                             "'native'")
        return self

    @field_validator("metric")
    @classmethod
    def _no_suffix(cls, v: str) -> str:
        for suffix in ("_bucket", "_count", "_sum"):
            if v.endswith(suffix):
                raise ValueError(f"give the histogram's base name, without {suffix!r}")
        return v


class HTTPSLI(Strict):
    convention: Literal["otel", "prometheus", "requests_total"]
    selector: str = "{}"
    signal: Literal["availability", "latency"] = "availability"
    threshold: Number | None = Field(default=None, gt=0)
    #: the status label of `requests_total`: `code` (Go, express) or `status` (FastAPI)
    status_label: Annotated[str | None, AfterValidator(_check_label_name)] = None
    buckets: list[Number] | None = None

    @model_validator(mode="after")
    def _latency_needs(self) -> HTTPSLI:
        if self.signal == "latency":
            if self.threshold is None:
                raise ValueError("signal latency needs 'threshold' in seconds")
            if self.convention == "requests_total":
                raise ValueError("the requests_total convention has no latency histogram; "
                                 "use convention otel or prometheus")
        elif self.threshold is not None:
            raise ValueError("'threshold' applies only to signal latency")
        return self


class ArgoCDSLI(Strict):
    selector: str = "{}"
    signal: Literal["availability", "sync_success"] = "availability"


class BackupSLI(Strict):
    selector: str = "{}"
    #: extra time past the expected interval before a backup counts as late
    grace: Duration = "15m"


class CertificateSLI(Strict):
    selector: str = "{}"
    min_days_left: int = Field(default=14, ge=1, le=365)


class ProbeSLI(Strict):
    selector: str = "{}"
    signal: Literal["availability", "latency"] = "availability"
    threshold: Number | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _latency_needs(self) -> ProbeSLI:
        if self.signal == "latency" and self.threshold is None:
            raise ValueError("signal latency needs 'threshold' in seconds")
        if self.signal == "availability" and self.threshold is not None:
            raise ValueError("'threshold' applies only to signal latency")
        return self


OP_ALIASES = {"lt": "<", "lte": "<=", "le": "<=", "gt": ">", "gte": ">=", "ge": ">=",
              "eq": "==", "ne": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=",
              "==": "==", "!=": "!="}


FLOAT64_MAX = Decimal(sys.float_info.max)


class ThresholdSLI(Strict):
    """The share of time a gauge condition holds: `query op value`, per series.

    `query` is an instant PromQL expression (no `{{window}}`); each series it returns is
    one object, good while the condition holds. A series that stops reporting counts as
    bad until `forget_after` has passed, and no series at all is one bad object.
    """

    query: Query = Field(min_length=1)
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    #: a number, or a duration such as 15m for a query in seconds (lag, age)
    value: Decimal = Field(allow_inf_nan=False)
    #: how long a series that vanished still counts as bad before it is forgotten
    forget_after: Duration = "1h"

    @field_validator("op", mode="before")
    @classmethod
    def _op(cls, v: object) -> object:
        if isinstance(v, str):
            v = OP_ALIASES.get(v.strip().lower(), v.strip())
            if v not in OP_ALIASES.values():
                raise ValueError(f"op {v!r} must be one of <, <=, >, >=, ==, != (or lt, lte, "
                                 "gt, gte, eq, ne); "
                                 "quote it in YAML, as in op: \">=\", since a bare > starts "
                                 "a folded block")
        return v

    @field_validator("value", mode="before")
    @classmethod
    def _seconds(cls, v: object) -> object:
        if isinstance(v, str) and re.fullmatch(r"\s*\d+[wdhms].*", v):
            return parse_duration(v.strip())
        return v

    @field_validator("value")
    @classmethod
    def _float64(cls, v: Decimal) -> Decimal:
        # PromQL numbers are float64: Prometheus refuses to load `x < bool 1e400`
        if abs(v) > FLOAT64_MAX:
            raise ValueError(f"value {v} is out of range for PromQL (at most about 1.8e308)")
        return v

    @field_validator("query")
    @classmethod
    def _instant(cls, v: str) -> str:
        if WINDOW_PLACEHOLDER.search(v):
            raise ValueError("a threshold query is an instant expression over gauges; it takes "
                             "no {{window}} (the SLI averages it over each window itself)")
        return v


SLI_KINDS = ("events", "ratio", "latency", "http", "argocd", "backup", "certificate", "probe",
             "threshold")


class SLISpec(Strict):
    events: EventsSLI | None = None
    ratio: RatioSLI | None = None
    latency: LatencySLI | None = None
    http: HTTPSLI | None = None
    argocd: ArgoCDSLI | None = None
    backup: BackupSLI | None = None
    certificate: CertificateSLI | None = None
    probe: ProbeSLI | None = None
    threshold: ThresholdSLI | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SLISpec:
        chosen = [k for k in SLI_KINDS if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError(f"sli needs exactly one of {', '.join(SLI_KINDS)}; "
                             f"got {', '.join(chosen) or 'none'}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in SLI_KINDS if getattr(self, k) is not None)


MinEvents = Annotated[int | None, Field(default=None, ge=1)]


class SeverityAlert(Strict):
    disabled: bool = False
    labels: AlertLabels
    annotations: Annotations
    for_: Duration | None = Field(default=None, alias="for")
    #: the tiers of this severity fire only after this many events in their long window
    min_events: MinEvents = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


class CustomTier(Strict):
    severity: Literal["page", "ticket"]
    long_window: Duration
    short_window: Duration
    budget_consumed: Number = Field(gt=0, le=100, description="percent of the budget")
    min_events: MinEvents = None

    @model_validator(mode="after")
    def _short_shorter(self) -> CustomTier:
        if parse_duration(self.short_window) > parse_duration(self.long_window):
            raise ValueError("short_window must not be longer than long_window")
        return self


class AlertingSpec(Strict):
    name: str = Field(default="ErrorBudgetBurn", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    labels: Labels
    annotations: Annotations
    page: SeverityAlert = Field(default_factory=SeverityAlert)
    ticket: SeverityAlert = Field(default_factory=SeverityAlert)
    runbook_url: str | None = None
    dashboard_url: str | None = None
    tiers: list[CustomTier] | None = Field(default=None, min_length=1)
    #: opt-in: a ticket (by default) once the period's error budget is spent
    budget_exhausted: SeverityAlert | None = None


class SLOSpec(Strict):
    name: Annotated[str, AfterValidator(lambda v: _check_name(v, "SLO name"))]
    objective: Number
    period: str = "30d"
    description: str = ""
    labels: Labels
    sli: SLISpec
    alerting: AlertingSpec = Field(default_factory=AlertingSpec)
    #: false: `generate --with-tests` writes no promtool tests for this SLO
    tests: bool = True
    #: opt-in low-traffic guard: a tier fires only when its long window saw this many events
    min_events: MinEvents = None
    #: one SLO per combination of these labels' values; overrides the service's group_by
    group_by: GroupBy = None

    @field_validator("objective")
    @classmethod
    def _objective(cls, v: Decimal) -> Decimal:
        if not Decimal(0) < v < Decimal(100):
            raise ValueError(f"objective {v} must be a percentage greater than 0 and less "
                             "than 100, e.g. 99.9")
        return v

    @field_validator("period")
    @classmethod
    def _period(cls, v: str) -> str:
        if not re.fullmatch(r"\d+[dw]", v):
            raise ValueError(f"period {v!r} must be whole days or weeks, like 7d, 28d, 30d or 4w")
        seconds = parse_duration(v)
        if not MIN_PERIOD <= seconds <= MAX_PERIOD:
            raise ValueError(f"period {v!r} must be between 1d and 90d")
        return format_duration(seconds)


class ServiceLevels(Strict):
    api_version: Literal["sloexporter.dev/v1"] = Field(alias="apiVersion")
    kind: Literal["ServiceLevels"]
    service: Annotated[str, AfterValidator(lambda v: _check_name(v, "service"))]
    labels: Labels
    #: the ArgoCD Applications that deploy the service (default: one named like it); their
    #: syncs are drawn on the SLO detail dashboard. An empty list turns that off.
    argocd_apps: Annotated[list[str] | None, AfterValidator(_check_apps)] = None
    #: the default group_by of every SLO of the service
    group_by: GroupBy = None
    slos: list[SLOSpec] = Field(min_length=1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)
