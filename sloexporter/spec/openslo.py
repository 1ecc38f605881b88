"""OpenSLO `openslo/v1` and `openslo/v1alpha` objects -> native specs.

A file may hold one object or a list of them, and objects refer to each other by name
across every file of the run (`indicatorRef`, `alertPolicyRef`, `conditionRef`,
`targetRef`). Each objective of an SLO becomes one native SLO; all SLOs naming the same
`spec.service` become one service.

Calendar windows: a calendar `timeWindow` is read as a rolling window of the same
length (a month is 30d, a quarter 90d). Burn-rate alerts do not depend on where the
period starts, so alerting is exact; the budget-remaining series is rolling and does
not reset on the first of the month.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from sloexporter.model import SLO, Service, parse_duration
from sloexporter.spec.errors import Document, Path, SpecError, SpecErrors
from sloexporter.spec.foreign import NativeBuilder, label_values, percent, validate
from sloexporter.spec.openslo_queries import (
    SliError,
    alpha_sli,
    timeslices,
    v1_sli,
)
from sloexporter.spec.openslo_schema import (
    KINDS,
    SHORTHAND,
    V1,
    V1ALPHA,
    AlertConditionSpec,
    AlertPolicySpec,
    Object,
    Objective,
    SLOSpecV1,
    SLOSpecV1Alpha,
    Target,
)

#: days per OpenSLO shorthand unit; months and quarters are counted as 30d and 90d
UNIT_DAYS = {"d": 1, "w": 7, "M": 30, "Q": 90, "Y": 365,
             "Day": 1, "Week": 7, "Month": 30, "Quarter": 90, "Year": 365}
#: written by `sloexporter convert`: what OpenSLO cannot express, as JSON
ANNOTATION_SLI = "sloexporter.dev/sli"
ANNOTATION_ALERTING = "sloexporter.dev/alerting"
ANNOTATION_NAME = "sloexporter.dev/name"
PAGE_SEVERITIES = {"page", "critical", "high", "p1", "urgent"}

Located = tuple[Document, Path, dict[str, Any]]


def is_openslo(data: object) -> bool:
    items = data if isinstance(data, list) else [data]
    return bool(items) and all(isinstance(i, dict) and str(i.get("apiVersion", ""))
                               .startswith("openslo") for i in items)


def _objects(doc: Document) -> list[tuple[Path, dict[str, Any]]]:
    if isinstance(doc.data, list):
        return [((i,), obj) for i, obj in enumerate(doc.data)]
    return [((), doc.data)]


def _index(all_docs: list[Document]) -> dict[tuple[str, str], Located]:
    """Every named OpenSLO object of the run, for references; the first one wins."""
    found: dict[tuple[str, str], Located] = {}
    for doc in all_docs:
        if not is_openslo(doc.data):
            continue
        for prefix, obj in _objects(doc):
            name = (obj.get("metadata") or {}).get("name") if isinstance(obj, dict) else None
            if isinstance(name, str):
                found.setdefault((str(obj.get("kind")), name), (doc, prefix, obj))
    return found


def _check_object(doc: Document, prefix: Path, obj: Any) -> tuple[Object, Any]:
    """The envelope and the validated spec of one object."""
    if isinstance(obj, dict) and obj.get("apiVersion") not in (V1, V1ALPHA):
        raise SpecErrors([doc.error(prefix + ("apiVersion",),
                                    f"unsupported OpenSLO version {obj.get('apiVersion')!r}; "
                                    f"sloexporter reads {V1} and {V1ALPHA}")])
    errors: list[SpecError] = []
    try:
        envelope: Object = validate(doc, Object, obj, prefix)
    except SpecErrors as exc:
        errors += exc.errors
    raw = obj if isinstance(obj, dict) else {}
    model = KINDS.get((str(raw.get("apiVersion")), str(raw.get("kind"))))
    if model is None:
        errors.append(doc.error(prefix + ("kind",), f"unsupported OpenSLO kind "
                                f"{raw.get('kind')!r} in {raw.get('apiVersion')}"))
    elif isinstance(raw.get("spec"), dict):
        try:
            spec = validate(doc, model, raw["spec"], prefix + ("spec",))
        except SpecErrors as exc:
            errors += exc.errors  # reported together with any metadata errors
    if errors:
        raise SpecErrors(sorted(set(errors)))
    return envelope, spec


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


def _condition_tier(doc: Document, path: Path, cond: AlertConditionSpec,
                    period: str) -> tuple[dict[str, Any], str]:
    """A burn-rate condition as one of our tiers, and its page/ticket severity."""
    c = cond.condition
    if c.op in ("lt", "lte"):
        raise SpecErrors([doc.error(path + ("condition", "op"),
                                    f"op {c.op}: a burn-rate alert fires when the burn rate is "
                                    "above the threshold; use gt or gte")])
    try:
        long = parse_duration(c.lookback_window)
    except ValueError as exc:
        raise SpecErrors([doc.error(path + ("condition", "lookbackWindow"), str(exc))]) from None
    # the workbook pairs each long window with a short one of 1/12 of it, to reset fast
    short = max(300, long // 12 // 60 * 60)
    budget = (c.threshold * long * 100 / parse_duration(period)).quantize(Decimal("0.001"))
    severity = "page" if cond.severity.lower() in PAGE_SEVERITIES else "ticket"
    return {"severity": severity, "long_window": c.lookback_window,
            "short_window": f"{short}s", "budget_consumed": str(budget.normalize())}, severity


def _resolve(doc: Document, path: Path, ref: str | None, kind: str,
             index: dict[tuple[str, str], Located]) -> Located | None:
    if ref is None:
        return None
    found = index.get((kind, ref))
    if found is None:
        raise SpecErrors([doc.error(path, f"{kind} {ref!r} does not exist in any file "
                                          "of this run")])
    return found


def _alerting(doc: Document, at: Path, spec: SLOSpecV1, period: str,
              index: dict[tuple[str, str], Located]) -> tuple[dict[str, Any], list[Path]]:
    """Native alerting from alert policies, and the origin of each tier."""
    tiers: list[dict[str, Any]] = []
    origins: list[Path] = []
    alerting: dict[str, Any] = {}
    errors: list[SpecError] = []
    for i, item in enumerate(spec.alert_policies or ()):
        p_at = at + ("alertPolicies", i)
        try:
            found = _resolve(doc, p_at + ("alertPolicyRef",), item.alert_policy_ref,
                             "AlertPolicy", index)
            if found is not None:
                _, policy = _check_object(found[0], found[1], found[2])
                p_spec: AlertPolicySpec = policy
            elif item.spec is not None:
                p_spec = item.spec
            else:
                raise SpecErrors([doc.error(p_at, "an alert policy needs 'alertPolicyRef' or "
                                                  "'kind', 'metadata' and 'spec'")])
            targets = _targets(doc, p_at, p_spec, index)
            for j, c_item in enumerate(p_spec.conditions):
                c_at = p_at + ("spec", "conditions", j)
                c_found = _resolve(doc, c_at + ("conditionRef",), c_item.condition_ref,
                                   "AlertCondition", index)
                cond = _check_object(*c_found)[1] if c_found else c_item.spec
                if cond is None:
                    raise SpecErrors([doc.error(c_at, "a condition needs 'conditionRef' or "
                                                      "an inline AlertCondition")])
                tier, severity = _condition_tier(doc, c_at + ("spec",), cond, period)
                tiers.append(tier)
                origins.append(c_at)
                settings = alerting.setdefault(severity, {"labels": {}, "annotations": {}})
                settings["labels"].setdefault("severity", cond.severity)
                if cond.condition.alert_after:
                    settings["for"] = cond.condition.alert_after
                if targets:
                    settings["annotations"]["notification_targets"] = targets
        except SpecErrors as exc:
            errors += exc.errors
    if errors:
        raise SpecErrors(errors)
    if tiers:
        alerting["tiers"] = tiers
    return alerting, origins


def _policy_refs(doc: Document, prefix: Path, spec: AlertPolicySpec,
                 index: dict[tuple[str, str], Located]) -> None:
    """A standalone AlertPolicy's references must resolve, as the OpenSLO SDK demands."""
    for j, c_item in enumerate(spec.conditions):
        found = _resolve(doc, prefix + ("spec", "conditions", j, "conditionRef"),
                         c_item.condition_ref, "AlertCondition", index)
        if found is not None:
            _check_object(*found)
    _targets(doc, prefix, spec, index)


def _targets(doc: Document, at: Path, spec: AlertPolicySpec,
             index: dict[tuple[str, str], Located]) -> str:
    names = []
    for k, t in enumerate(spec.notification_targets):
        t_at = at + ("spec", "notificationTargets", k)
        found = _resolve(doc, t_at + ("targetRef",), t.target_ref, "AlertNotificationTarget",
                         index)
        target: Target | None = _check_object(*found)[1] if found else t.spec
        name = t.target_ref or (t.metadata.name if t.metadata else "")
        if target is not None:
            names.append(f"{name} ({target.target})")
    return ", ".join(names)


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
        alerting, tier_origins = _alerting(doc, at, spec, period, index) \
            if "alerting" not in native else ({}, [])
    else:
        window = spec.time_windows[0]
        period = _period(doc, at + ("timeWindows", 0), window.count, window.unit)
        alerting, tier_origins = {}, []
    for i, objective in enumerate(spec.objectives):
        o_at = at + ("objectives", i)
        try:
            if "sli" in native:
                leaves = [((), native["sli"], native_at + (ANNOTATION_SLI,))]
            elif isinstance(spec, SLOSpecV1Alpha):
                leaves = alpha_sli(spec, objective, at, o_at)
            else:
                found = _resolve(doc, at + ("indicatorRef",), spec.indicator_ref, "SLI", index)
                sli_spec = _check_object(*found)[1] if found else \
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


def _load_object(doc: Document, prefix: Path, obj: Any,
                 index: dict[tuple[str, str], Located]) -> Service | None:
    envelope, spec = _check_object(doc, prefix, obj)
    if isinstance(spec, AlertPolicySpec):
        _policy_refs(doc, prefix, spec, index)
    if envelope.kind != "SLO":
        return None  # referenced by SLOs; checked here so its own errors point at it
    return _build_slo(doc, prefix, envelope, spec, index)


def load_openslo(doc: Document, all_docs: list[Document]) -> list[Service]:
    index = _index(all_docs)
    errors: list[SpecError] = []
    mine: list[Service] = []
    for prefix, obj in _objects(doc):
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
            for _, obj in _objects(other):
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
            for prefix, obj in _objects(other):
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
