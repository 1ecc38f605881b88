"""From a validated native spec to the model: the checks pydantic cannot do, then build.

Every input format ends here, so PromQL syntax, duplicate names and bucket boundaries
are checked the same way for all of them.
"""

from __future__ import annotations

from decimal import Decimal

import promql_parser
from pydantic import ValidationError

from sloexporter.model import (
    SLO,
    Alerting,
    AlertSettings,
    Service,
    TierSpec,
    decimal_str,
    error_budget,
    lowest_firing_objective,
    parse_duration,
    resolve_tiers,
    tier_can_fire,
)
from sloexporter.promql import WINDOW_PLACEHOLDER, check_syntax, substitute_window
from sloexporter.sli import compile_sli, known_buckets
from sloexporter.specs.errors import Document, Path, SpecError, SpecErrors
from sloexporter.specs.native import (
    AlertingSpec,
    EventsSLI,
    RatioSLI,
    ServiceLevels,
    SLOSpec,
    ThresholdSLI,
)

QUERY_FIELDS: dict[type, tuple[str, ...]] = {
    EventsSLI: ("errors", "good", "total"),
    RatioSLI: ("query",),
}


def check_template(doc: Document, path: Path, template: str) -> list[SpecError]:
    if not WINDOW_PLACEHOLDER.search(template):
        return [doc.error(path, "query has no {{window}} placeholder, so every alert window "
                                "would see the same range")]
    message = check_syntax(substitute_window(template, 300))
    return [doc.error(path, f"invalid PromQL: {message}")] if message else []


def check_instant(doc: Document, path: Path, query: str) -> list[SpecError]:
    """A threshold query: valid PromQL that yields an instant vector of gauge series."""
    message = check_syntax(query)
    if message:
        return [doc.error(path, f"invalid PromQL: {message}")]
    expr = promql_parser.parse(query)
    while isinstance(expr, promql_parser.ParenExpr):
        expr = expr.expr
    if isinstance(expr, promql_parser.MatrixSelector | promql_parser.SubqueryExpr):
        return [doc.error(path, "the query returns a range vector; a threshold compares an "
                                "instant value (wrap it, e.g. max_over_time(x[5m]))")]
    if isinstance(expr, promql_parser.StringLiteral | promql_parser.NumberLiteral):
        return [doc.error(path, "the query is a constant; it must read a metric")]
    found: list[object] = []
    promql_parser.walk(expr, lambda n: found.append(n)
                       if isinstance(n, promql_parser.VectorSelector) else None)
    if not found:
        return [doc.error(path, "the query reads no metric, so there is nothing to measure")]
    return []


def check_selector(doc: Document, path: Path, text: str) -> list[SpecError]:
    stripped = text.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        return [doc.error(path, f"selector {text!r} must be a matcher list like "
                                "{job=\"api\"}")]
    if stripped.replace(" ", "") == "{}":
        return []
    try:
        expr = promql_parser.parse("up" + stripped)
    except ValueError as exc:
        return [doc.error(path, f"invalid selector: {exc}")]
    if not isinstance(expr, promql_parser.VectorSelector):
        return [doc.error(path, f"selector {text!r} must be a matcher list")]
    return []


def _check_slo(doc: Document, path: Path, slo: SLOSpec) -> list[SpecError]:
    errors: list[SpecError] = []
    kind = slo.sli.kind
    body = getattr(slo.sli, kind)
    for name in QUERY_FIELDS.get(type(body), ()):
        value = getattr(body, name)
        if value is not None:
            errors += check_template(doc, path + ("sli", kind, name), value)
    if isinstance(body, ThresholdSLI):
        errors += check_instant(doc, path + ("sli", kind, "query"), body.query)
    if hasattr(body, "selector"):
        errors += check_selector(doc, path + ("sli", kind, "selector"), body.selector)
    threshold = getattr(body, "threshold", None)
    buckets = known_buckets(slo.sli)
    if threshold is not None and buckets is not None and \
            all(Decimal(threshold) != b for b in buckets):
        listed = ", ".join(format(b.normalize(), "f") for b in buckets)
        errors.append(doc.error(path + ("sli", kind, "threshold"),
                                f"threshold {threshold} is not a bucket boundary; "
                                f"the buckets are {listed}"))
    period = parse_duration(slo.period)
    for i, tier in enumerate(slo.alerting.tiers or ()):
        if parse_duration(tier.long_window) > period:
            errors.append(doc.error(path + ("alerting", "tiers", i, "long_window"),
                                    f"long_window {tier.long_window} is longer than the "
                                    f"period {slo.period}"))
    if not errors:
        errors += _check_tiers_can_fire(doc, path, slo)
    return errors


def _check_tiers_can_fire(doc: Document, path: Path, slo: SLOSpec) -> list[SpecError]:
    """A tier whose threshold needs more than 100% errors would stay silent through a
    total outage: refuse it, naming the lowest objective at which it could fire."""
    alerting = _alerting(slo.alerting)
    custom = alerting.custom_tiers is not None
    budget = error_budget(slo.objective)
    errors = []
    for i, tier in enumerate(resolve_tiers(parse_duration(slo.period), alerting.custom_tiers)):
        if alerting.settings(tier.severity).disabled or tier_can_fire(tier, slo.objective):
            continue
        where = path + (("alerting", "tiers", i) if custom else ("objective",))
        factor = decimal_str(tier.factor)
        needed = decimal_str((tier.factor * budget * 100).quantize(Decimal("0.1")))
        fix = ("lower its budget_consumed or lengthen its long_window" if custom else
               "set custom alerting.tiers with a lower burn rate "
               "(budget_consumed x period / long_window)")
        errors.append(doc.error(where, (
            f"the {tier.severity} tier {tier.long}/{tier.short} can never fire at objective "
            f"{decimal_str(slo.objective)}: it needs more than {needed}% errors (burn rate "
            f"{factor} x {decimal_str(budget * 100)}% budget); it can fire from objective "
            f"{decimal_str(lowest_firing_objective(tier))} up. Raise the objective, {fix}, "
            f"or disable {tier.severity} alerts")))
    return errors


def _alerting(spec: AlertingSpec) -> Alerting:
    def settings(sev: str) -> AlertSettings:
        s = getattr(spec, sev)
        return AlertSettings(s.disabled, tuple(sorted(s.labels.items())),
                             tuple(sorted(s.annotations.items())),
                             parse_duration(s.for_) if s.for_ else 0)

    tiers = None
    if spec.tiers is not None:
        tiers = tuple(TierSpec(t.severity, parse_duration(t.long_window),
                               parse_duration(t.short_window), t.budget_consumed)
                      for t in spec.tiers)
    return Alerting(spec.name, settings("page"), settings("ticket"),
                    tuple(sorted(spec.labels.items())), tuple(sorted(spec.annotations.items())),
                    spec.runbook_url, spec.dashboard_url, tiers)


def build_service(doc: Document, spec: ServiceLevels, prefix: Path = ()) -> Service:
    """Check `spec` beyond its schema and build the model; raises SpecErrors."""
    errors: list[SpecError] = []
    seen: dict[str, int] = {}
    for i, slo in enumerate(spec.slos):
        path = prefix + ("slos", i)
        if slo.name in seen:
            errors.append(doc.error(path + ("name",), f"duplicate SLO name {slo.name!r}, "
                                    f"first used at slos[{seen[slo.name]}]"))
        seen.setdefault(slo.name, i)
        errors += _check_slo(doc, path, slo)
    if errors:
        raise SpecErrors(errors)
    service_labels = dict(spec.labels)
    slos = []
    for i, slo in enumerate(spec.slos):
        labels = {**service_labels, **slo.labels}
        slos.append(SLO(
            service=spec.service, name=slo.name, objective=slo.objective,
            period=parse_duration(slo.period),
            sli=compile_sli(slo.sli, spec.service, slo.name, tuple(sorted(labels.items()))),
            description=slo.description, labels=tuple(sorted(labels.items())),
            alerting=_alerting(slo.alerting),
            origin=f"{doc.file}:{doc.line_of(prefix + ('slos', i))}",
            tests=slo.tests,
        ))
    apps = tuple(spec.argocd_apps) if spec.argocd_apps is not None else None
    return Service(spec.service, tuple(slos), tuple(sorted(service_labels.items())),
                   f"{doc.file}:{doc.line_of(prefix)}", apps)


def load_native(doc: Document, _all: list[Document]) -> list[Service]:
    try:
        spec = ServiceLevels.model_validate(doc.data)
    except ValidationError as exc:
        raise SpecErrors(doc.errors_from_validation(exc)) from None
    return [build_service(doc, spec)]
