"""Pyrra `pyrra.dev/v1alpha1` `ServiceLevelObjective` objects.

Each object is one SLO and becomes one service named after the object (Pyrra has no
service concept). Indicators map onto native SLIs:
- `ratio` -> events (errors/total), grouped with `sum by`.
- `latency` -> a native latency SLI when success and total select the same histogram,
  so the `le` matcher works on Prometheus 2 and 3; else events good/total.
- `latencyNative` -> events over `histogram_count`/`histogram_fraction`.
- `bool_gauge` -> events: samples at 1 are good, all samples are the total.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import promql_parser
from pydantic import Field, field_validator

from sloexporter.model import Service, SynthSeries, parse_duration
from sloexporter.promql import le_matcher, merge_selector
from sloexporter.specs.errors import Document, Path, SpecErrors
from sloexporter.specs.foreign import Foreign, Lenient, NativeBuilder, label_values, validate
from sloexporter.specs.native import GROUP_RESERVED, LabelName, Number
from sloexporter.specs.native import Query as PromQL

API = "pyrra.dev/v1alpha1"
KIND = "ServiceLevelObjective"
TEAM_PREFIX = "pyrra.dev/"
W = "{{window}}"


class Query(Foreign):
    metric: PromQL


class Ratio(Foreign):
    errors: Query
    total: Query
    grouping: list[LabelName] = []


class Latency(Foreign):
    success: Query
    total: Query
    grouping: list[LabelName] = []


class LatencyNative(Foreign):
    latency: str
    total: Query
    grouping: list[LabelName] = []


class BoolGauge(Foreign):
    metric: PromQL
    grouping: list[LabelName] = []


class Indicator(Foreign):
    ratio: Ratio | None = None
    latency: Latency | None = None
    latency_native: LatencyNative | None = Field(default=None, alias="latencyNative")
    bool_gauge: BoolGauge | None = Field(default=None, alias="bool_gauge")


class Severities(Foreign):
    fast_burn: str | None = Field(default=None, alias="fastBurn")
    medium_burn: str | None = Field(default=None, alias="mediumBurn")
    slow_burn: str | None = Field(default=None, alias="slowBurn")
    long_term_burn: str | None = Field(default=None, alias="longTermBurn")
    absent: str | None = None


class Alerting(Foreign):
    name: str | None = None
    disabled: bool = False
    burnrates: bool = True
    absent: bool = True
    absent_name: str | None = Field(default=None, alias="absentName")
    severities: Severities | None = None


class Spec(Foreign):
    target: Number
    window: str
    description: str = ""
    indicator: Indicator
    alerting: Alerting = Alerting()
    # Thanos Ruler and rule-splitting options: they change where rules run, not what
    # they compute, so they carry no meaning for us
    partial_response_strategy: str | None = None
    performance_over_accuracy: bool = Field(default=False, alias="performanceOverAccuracy")
    rule_output: dict[str, Any] | None = Field(default=None, alias="ruleOutput")

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        parse_duration(v)  # reported with the target, not after it
        return v


class Metadata(Lenient):
    name: str
    namespace: str | None = None
    labels: dict[str, str] = {}


class ServiceLevelObjective(Foreign):
    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: Metadata
    spec: Spec


def is_pyrra(data: object) -> bool:
    return isinstance(data, dict) and data.get("apiVersion") == API and data.get("kind") == KIND


def _by(grouping: list[str]) -> str:
    return f" by ({', '.join(grouping)})" if grouping else ""


def _group_labels(grouping: list[str]) -> list[str]:
    """Pyrra groups by any label; one that sloexporter sets itself (`service` is common)
    is carried as `exported_<label>`, Prometheus's own spelling for a clashing label."""
    return [f"exported_{label}" if label in GROUP_RESERVED else label for label in grouping]


def _sum(inner: str, grouping: list[str]) -> str:
    for label in grouping:
        if label in GROUP_RESERVED:
            inner = f'label_replace({inner}, "exported_{label}", "$1", "{label}", "(.*)")'
    return f"sum{_by(_group_labels(grouping))} ({inner})"


def _sum_rate(metric: str, grouping: list[str]) -> str:
    return _sum(f"rate({metric}[{W}])", grouping)


def _histogram(success: str, total: str) -> tuple[str, str, Decimal] | None:
    """(base name, selector, le) when success is `<base>_bucket{...,le=X}` and total is
    `<base>_count{...}` with the same other matchers."""
    try:
        good, tot = promql_parser.parse(success), promql_parser.parse(total)
    except ValueError:
        return None
    if not (isinstance(good, promql_parser.VectorSelector)
            and isinstance(tot, promql_parser.VectorSelector)):
        return None

    def matchers(sel: Any) -> set[tuple[str, str, str]]:
        return {(m.name, str(m.op), m.value) for m in sel.matchers.matchers}

    good_m, le = matchers(good), None
    for m in list(good_m):
        if m[0] == "le" and m[1].endswith("Equal") and not m[1].endswith("NotEqual"):
            le = m[2]
            good_m.discard(m)
    base = (good.name or "").removesuffix("_bucket")
    if le is None or good.name != f"{base}_bucket" or tot.name != f"{base}_count" \
            or good_m != matchers(tot):
        return None
    selector = total[total.index("{"):] if "{" in total else "{}"
    try:
        return base, selector, Decimal(le)
    except ArithmeticError:
        return None


def _indicator(out: NativeBuilder, doc: Document, ind: Indicator) -> None:
    at: Path = ("spec", "indicator")
    sli: Path = ("slos", 0, "sli")
    for field in ("ratio", "latency", "latency_native", "bool_gauge"):
        body = getattr(ind, field)
        if body is not None and body.grouping:
            # one SLO per group, as Pyrra does: group_by stamps the group labels on
            # every series and alert, metadata included
            source = "latencyNative" if field == "latency_native" else field
            out.set(("slos", 0, "group_by"), _group_labels(body.grouping),
                    at + (source, "grouping"))
    if ind.ratio is not None:
        r = ind.ratio
        out.set(sli + ("events", "errors"), _sum_rate(r.errors.metric, r.grouping),
                at + ("ratio", "errors", "metric"))
        out.set(sli + ("events", "total"), _sum_rate(r.total.metric, r.grouping),
                at + ("ratio", "total", "metric"))
    elif ind.latency is not None:
        lat = ind.latency
        hist = _histogram(lat.success.metric, lat.total.metric)
        if hist is not None and not lat.grouping:
            base, selector, le = hist
            out.set(sli + ("latency",), {"metric": base, "selector": selector,
                                         "threshold": str(le)}, at + ("latency",))
            return
        success = lat.success.metric
        if hist is not None:  # grouped: still match le="1" and Prometheus 3's le="1.0"
            base, selector, le = hist
            success = f"{base}_bucket{merge_selector(selector, le_matcher(le))}"
        out.set(sli + ("events", "good"), _sum_rate(success, lat.grouping),
                at + ("latency", "success", "metric"))
        out.set(sli + ("events", "total"), _sum_rate(lat.total.metric, lat.grouping),
                at + ("latency", "total", "metric"))
    elif ind.latency_native is not None:
        nat = ind.latency_native
        try:
            seconds = Decimal(parse_duration(nat.latency)) if not nat.latency.endswith("ms") \
                else Decimal(nat.latency[:-2]) / 1000
        except (ValueError, ArithmeticError):
            raise SpecErrors([doc.error(at + ("latencyNative", "latency"),
                                        f"invalid latency {nat.latency!r}: use a duration "
                                        "like 200ms or 1s")]) from None
        hist = _sum_rate(nat.total.metric, nat.grouping)
        total = f"histogram_count({hist})"
        out.set(sli + ("events", "good"),
                f"histogram_fraction(0, {seconds.normalize():f}, {hist}) * {total}",
                at + ("latencyNative", "latency"))
        out.set(sli + ("events", "total"), total, at + ("latencyNative", "total", "metric"))
    elif ind.bool_gauge is not None:
        g = ind.bool_gauge
        out.set(sli + ("events", "good"), _sum(f"sum_over_time({g.metric}[{W}])", g.grouping),
                at + ("bool_gauge", "metric"))
        out.set(sli + ("events", "total"),
                _sum(f"count_over_time({g.metric}[{W}])", g.grouping),
                at + ("bool_gauge", "metric"))
    else:
        raise SpecErrors([doc.error(at, "indicator needs one of ratio, latency, "
                                        "latencyNative or bool_gauge")])


def _alerting(out: NativeBuilder, alerting: Alerting) -> None:
    at: Path = ("spec", "alerting")
    dst: Path = ("slos", 0, "alerting")
    if alerting.name:
        out.set(dst + ("name",), alerting.name, at + ("name",))
    off = alerting.disabled or not alerting.burnrates
    sev = alerting.severities or Severities()
    # Pyrra's fast and medium tiers page; slow and long-term ones are tickets
    for severity, name, field in (("page", sev.fast_burn or sev.medium_burn, "fastBurn"),
                                  ("ticket", sev.slow_burn or sev.long_term_burn, "slowBurn")):
        body: dict[str, Any] = {"disabled": off}
        if name:
            body["labels"] = {"severity": name}
        out.set(dst + (severity,), body, at + ("severities", field) if name else at)


def load_pyrra(doc: Document, _all: list[Document]) -> list[Service]:
    obj: ServiceLevelObjective = validate(doc, ServiceLevelObjective, doc.data)
    spec = obj.spec
    out = NativeBuilder(obj.metadata.name, ("metadata", "name"))
    labels = {k.removeprefix(TEAM_PREFIX): v for k, v in label_values(obj.metadata.labels).items()
              if k.startswith(TEAM_PREFIX)}
    if labels:
        out.set(("labels",), labels, ("metadata", "labels"))
    out.add_slo(("spec",))
    out.set(("slos", 0, "name"), obj.metadata.name, ("metadata", "name"))
    out.set(("slos", 0, "objective"), str(spec.target), ("spec", "target"))
    out.set(("slos", 0, "period"), spec.window, ("spec", "window"))
    if spec.description:
        out.set(("slos", 0, "description"), spec.description, ("spec", "description"))
    _indicator(out, doc, spec.indicator)
    _alerting(out, spec.alerting)
    service = out.build(doc)
    if spec.indicator.bool_gauge is not None:
        service = _with_gauge_inputs(service, spec.indicator.bool_gauge.metric)
    return [service]


def _with_gauge_inputs(service: Service, metric: str) -> Service:
    """Tell the test generator that a bool_gauge is a gauge: 1 - error share, not a
    counter it would otherwise derive from the query."""
    expr = promql_parser.parse(metric)
    assert isinstance(expr, promql_parser.VectorSelector)
    selector = metric[metric.index("{"):] if "{" in metric else "{}"
    synth = (SynthSeries(expr.name or "", "gauge", selector, a=Decimal(1), c=Decimal(-1)),)
    slos = tuple(replace(slo, sli=replace(slo.sli, synth=synth)) for slo in service.slos)
    return replace(service, slos=slos)
