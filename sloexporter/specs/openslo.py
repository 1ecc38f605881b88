"""OpenSLO `openslo/v1` and `openslo/v1alpha` SLOs -> native specs.

Objects may refer to each other across files (`openslo_objects`); SLIs become PromQL
(`openslo_queries`) and burn-rate alert conditions our tiers (`openslo_alerts`). Each
objective of an SLO becomes one native SLO; all SLOs naming the same `spec.service`
become one service.

Calendar windows: a calendar `timeWindow` is read as a rolling window of the same
length (a month is 30d, a quarter 90d). Burn-rate alerts do not depend on where the
period starts, so alerting is exact; the budget-remaining series is rolling and does
not reset on the first of the month.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from sloexporter.model import SLO, Service
from sloexporter.specs.errors import Document, Path, SpecError, SpecErrors
from sloexporter.specs.foreign import NativeBuilder, label_values, percent, query_group_by
from sloexporter.specs.openslo_alerts import alerting_from_policies, check_policy_refs
from sloexporter.specs.openslo_objects import (
    Located,
    check_object,
    index_objects,
    is_openslo,
    objects,
    resolve,
)
from sloexporter.specs.openslo_queries import (
    Leaves,
    SliError,
    alpha_sli,
    timeslices,
    v1_sli,
)
from sloexporter.specs.openslo_schema import (
    SHORTHAND,
    AlertPolicySpec,
    Object,
    Objective,
    SLOSpecV1,
    SLOSpecV1Alpha,
)

#: days per OpenSLO shorthand unit; months and quarters are counted as 30d and 90d
UNIT_DAYS = {"d": 1, "w": 7, "M": 30, "Q": 90, "Y": 365,
             "Day": 1, "Week": 7, "Month": 30, "Quarter": 90, "Year": 365}
#: written by `sloexporter convert`: what OpenSLO cannot express, as JSON
ANNOTATION_SLI = "sloexporter.dev/sli"
ANNOTATION_ALERTING = "sloexporter.dev/alerting"
ANNOTATION_NAME = "sloexporter.dev/name"
#: a grouped SLO's group_by labels, comma-separated
ANNOTATION_GROUP_BY = "sloexporter.dev/group_by"


def _period(doc: Document, path: Path, count: int, unit: str) -> str:
    days = UNIT_DAYS.get(unit)
    if days is None:
        hint = "; did you mean M (a month)?" if unit == "m" else ""
        raise SpecErrors([doc.error(path, f"time window {count}{unit} is shorter than a day; "
                                          f"an SLO period is whole days{hint}")])
    return f"{count * days}d"


def _v1_period(doc: Document, path: Path, duration: str) -> str:
    match = SHORTHAND.match(duration)
    if not match:
        raise SpecErrors([doc.error(path, f"invalid duration {duration!r}: use a number and "
                                          "one of m, h, d, w, M, Q, Y, as in 28d or 1M")])
    return _period(doc, path, int(match.group(1)), match.group(2))


def _target(doc: Document, path: Path, obj: Objective) -> Decimal:
    if obj.target is not None:
        return percent(obj.target)
    if obj.target_percent is not None:
        return obj.target_percent.normalize()
    raise SpecErrors([doc.error(path, "an objective needs 'target' (0-1) or 'targetPercent'")])


def _native_annotations(doc: Document, prefix: Path, envelope: Object) -> dict[str, Any]:
    """The native SLI, alerting and name that `sloexporter convert` stores in annotations.

    OpenSLO cannot express them; reading them back makes a round trip exact.
    """
    found: dict[str, Any] = {}
    annotations = envelope.metadata.annotations
    for key, field in ((ANNOTATION_SLI, "sli"), (ANNOTATION_ALERTING, "alerting")):
        if key in annotations:
            try:
                found[field] = json.loads(str(annotations[key]))
            except ValueError as exc:
                raise SpecErrors([doc.error(prefix + ("metadata", "annotations", key),
                                            f"invalid JSON: {exc}")]) from None
    if ANNOTATION_NAME in annotations:
        found["name"] = str(annotations[ANNOTATION_NAME])
    if ANNOTATION_GROUP_BY in annotations:
        found["group_by"] = [label.strip() for label in
                             str(annotations[ANNOTATION_GROUP_BY]).split(",")]
    return found


def _build_slo(doc: Document, prefix: Path, envelope: Object, spec: Any,
               index: dict[tuple[str, str], Located]) -> Service:
    at = prefix + ("spec",)
    out = NativeBuilder(spec.service, at + ("service",))
    native_at = prefix + ("metadata", "annotations")
    labels = label_values(envelope.metadata.labels)
    errors: list[SpecError] = []
    native = _native_annotations(doc, prefix, envelope)
    if isinstance(spec, SLOSpecV1):
        period = _v1_period(doc, at + ("timeWindow", 0, "duration"), spec.time_window[0].duration)
        alerting, tier_origins = alerting_from_policies(doc, at, spec, period, index) \
            if "alerting" not in native else ({}, [])
    else:
        window = spec.time_windows[0]
        period = _period(doc, at + ("timeWindows", 0), window.count, window.unit)
        alerting, tier_origins = {}, []
    for i, objective in enumerate(spec.objectives):
        o_at = at + ("objectives", i)
        try:
            if objective.indicator_ref is not None:
                raise SliError(o_at + ("indicatorRef",), "unsupported: composite SLOs "
                                                         "(an objective with its own "
                                                         "indicatorRef)")
            if "sli" in native:
                leaves = [((), native["sli"], native_at + (ANNOTATION_SLI,))]
            elif isinstance(spec, SLOSpecV1Alpha):
                leaves = alpha_sli(spec, objective, at, o_at)
            else:
                found = resolve(doc, at + ("indicatorRef",), spec.indicator_ref, "SLI", index)
                sli_spec = check_object(*found)[1] if found else \
                    spec.indicator.spec if spec.indicator else None
                sli_at = at + ("indicatorRef",) if found else at + ("indicator", "spec")
                if sli_spec is None:
                    raise SpecErrors([doc.error(at, "an SLO needs 'indicator' or "
                                                    "'indicatorRef'")])
                leaves = v1_sli(sli_spec, objective, sli_at, o_at, index)
            if "sli" not in native:
                leaves = timeslices(spec.budgeting_method, objective, leaves, o_at)
            n = out.add_slo(o_at)
            dst: Path = ("slos", n)
            base = native.get("name") or envelope.metadata.name
            name = base if len(spec.objectives) == 1 else f"{base}-{i}"
            out.set(dst + ("name",), name, prefix + ("metadata", "name"))
            out.set(dst + ("objective",), str(_target(doc, o_at, objective)), o_at + ("target",))
            out.set(dst + ("period",), period, at)
            if spec.description:
                out.set(dst + ("description",), spec.description, at + ("description",))
            if labels:
                out.set(dst + ("labels",), labels, prefix + ("metadata", "labels"))
            for path, value, origin in leaves:
                out.set(dst + ("sli",) + path, value, origin)
            if "group_by" in native:
                out.set(dst + ("group_by",), native["group_by"],
                        native_at + (ANNOTATION_GROUP_BY,))
            else:
                _group_by(out, dst, leaves, set(labels or ()))
            if "alerting" in native:
                out.set(dst + ("alerting",), native["alerting"],
                        native_at + (ANNOTATION_ALERTING,))
            else:
                out.set(dst + ("alerting",), {k: v for k, v in alerting.items()
                                              if k != "tiers"}, at)
            for k, (tier, t_origin) in enumerate(zip(alerting.get("tiers", ()), tier_origins,
                                                     strict=True)):
                out.set(dst + ("alerting", "tiers", k), tier, t_origin)
        except SliError as exc:
            errors.append(doc.error(exc.path, exc.message))
        except SpecErrors as exc:
            errors += exc.errors
    if errors:
        raise SpecErrors(errors)
    return out.build(doc, at)


def _group_by(out: NativeBuilder, dst: Path, leaves: Leaves, constant: set[str]) -> None:
    """A ratioMetric whose queries aggregate `by (...)` is a grouped SLO."""
    queries = {path: (value, origin) for path, value, origin in leaves
               if isinstance(value, str)}
    total = queries.get(("events", "total")) or queries.get(("ratio", "query"))
    if total is None:
        return
    other = queries.get(("events", "good")) or queries.get(("events", "errors"))
    group = query_group_by(total[0], other[0] if other else None, constant)
    if group:
        out.set(dst + ("group_by",), group, total[1])


def _load_object(doc: Document, prefix: Path, obj: Any,
                 index: dict[tuple[str, str], Located]) -> Service | None:
    envelope, spec = check_object(doc, prefix, obj)
    if isinstance(spec, AlertPolicySpec):
        check_policy_refs(doc, prefix, spec, index)
    if envelope.kind != "SLO":
        return None  # referenced by SLOs; checked here so its own errors point at it
    return _build_slo(doc, prefix, envelope, spec, index)


def load_openslo(doc: Document, all_docs: list[Document]) -> list[Service]:
    index = index_objects(all_docs)
    errors: list[SpecError] = []
    mine: list[Service] = []
    for prefix, obj in objects(doc):
        try:
            service = _load_object(doc, prefix, obj, index)
        except SpecErrors as exc:
            errors += exc.errors
            continue
        if service is not None:
            mine.append(service)
    if errors:
        raise SpecErrors(errors)
    return _merge(doc, mine, all_docs, index)


def _merge(doc: Document, mine: list[Service], all_docs: list[Document],
           index: dict[tuple[str, str], Located]) -> list[Service]:
    """One service per `spec.service`: the first document naming it collects all SLOs."""
    owners: dict[str, Document] = {}
    for other in all_docs:
        if is_openslo(other.data):
            for _, obj in objects(other):
                if isinstance(obj, dict) and obj.get("kind") == "SLO":
                    owners.setdefault(str((obj.get("spec") or {}).get("service")), other)
    out: list[Service] = []
    for name in dict.fromkeys(s.name for s in mine):
        if owners.get(name) is not doc:
            continue  # merged into the service of the document that names it first
        slos: list[SLO] = [slo for s in mine if s.name == name for slo in s.slos]
        for other in all_docs:
            if other is doc or not is_openslo(other.data):
                continue
            for prefix, obj in objects(other):
                if isinstance(obj, dict) and obj.get("kind") == "SLO" and \
                        (obj.get("spec") or {}).get("service") == name:
                    try:
                        built = _load_object(other, prefix, obj, index)
                    except SpecErrors:
                        continue  # reported when that document is loaded
                    slos.extend(built.slos if built else ())
        _check_unique(slos)
        first = next(s for s in mine if s.name == name)
        out.append(Service(name, tuple(slos), first.labels, first.origin))
    return out


def _check_unique(slos: list[SLO]) -> None:
    """Two SLO objects of one service must not make SLOs of the same name."""
    seen: dict[str, SLO] = {}
    errors = []
    for slo in slos:
        first = seen.setdefault(slo.name, slo)
        if first is not slo:
            file, _, line = slo.origin.rpartition(":")
            errors.append(SpecError(file, int(line or 0), "",
                                    f"SLO {slo.name!r} of service {slo.service!r} is also "
                                    f"defined at {first.origin}"))
    if errors:
        raise SpecErrors(errors)
