"""From a validated native spec to the model: the checks pydantic cannot do, then build.

Every input format ends here, so PromQL syntax, duplicate names and bucket boundaries
are checked the same way for all of them.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import replace
from decimal import Decimal

import promql_parser
from pydantic import BaseModel, ValidationError

from sloexporter import gotemplate, promql, rules
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
from sloexporter.promql import WINDOW_PLACEHOLDER, quote, substitute_window
from sloexporter.sli import compile_sli, known_buckets
from sloexporter.specs import promcheck
from sloexporter.specs.errors import Document, Path, SpecError, SpecErrors
from sloexporter.specs.native import (
    AlertingSpec,
    EventsSLI,
    RatioSLI,
    ServiceLevels,
    SeverityAlert,
    SLISpec,
    SLOSpec,
    ThresholdSLI,
    check_group_by,
)

#: False only inside `unchecked()`
_CHECKS: ContextVar[bool] = ContextVar("sloexporter_spec_checks", default=True)


@contextlib.contextmanager
def unchecked() -> Iterator[None]:
    """Build specs with the schema only, skipping the checks beyond it and of the generated
    rules: how the tests see what promtool says about the rules of a spec that validate
    refuses. Never used by the command line."""
    token = _CHECKS.set(False)
    try:
        yield
    finally:
        _CHECKS.reset(token)


def clear_caches() -> None:
    """Forget the memoised template and PromQL checks (benchmarks run the same specs
    repeatedly and must not time a warm cache)."""
    gotemplate.check.cache_clear()
    promcheck.clear_cache()
    _CLEAN_SHAPES.clear()
    promql.clear_caches()


QUERY_FIELDS: dict[type, tuple[str, ...]] = {
    EventsSLI: ("errors", "good", "total"),
    RatioSLI: ("query",),
}


def check_template(doc: Document, path: Path, template: str) -> list[SpecError]:
    if not WINDOW_PLACEHOLDER.search(template):
        return [doc.error(path, "query has no {{window}} placeholder, so every alert window "
                                "would see the same range")]
    message = promcheck.check_query(substitute_window(template, 300))
    return [doc.error(path, message)] if message else []


def check_instant(doc: Document, path: Path, query: str) -> list[SpecError]:
    """A threshold query: valid PromQL that yields an instant vector of gauge series."""
    expr, message = promcheck.parse(query)
    if message:
        return [doc.error(path, f"invalid PromQL: {message}")]
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
    tree, problem = promcheck.parse("up" + stripped)
    if problem is not None:
        return [doc.error(path, f"invalid selector: {problem}")]
    if type(tree).__name__ != "VectorSelector":
        return [doc.error(path, f"selector {text!r} must be a matcher list")]
    return []


def check_go_templates(doc: Document, path: Path, values: dict[str, str] | None,
                       ) -> list[SpecError]:
    """Alert labels and annotations are Go templates to Prometheus: each must parse."""
    errors = []
    for key, value in (values or {}).items():
        problem = gotemplate.check(value)
        if problem is not None:
            errors.append(doc.error(path + (key,), (
                f"not a valid Prometheus template: {problem}; write a literal '{{{{' as "
                "{{ \"{{\" }}")))
    return errors


def _check_alerting(doc: Document, path: Path, spec: AlertingSpec) -> list[SpecError]:
    errors = check_go_templates(doc, path + ("labels",), spec.labels)
    errors += check_go_templates(doc, path + ("annotations",), spec.annotations)
    for url in ("runbook_url", "dashboard_url"):
        errors += check_go_templates(doc, path, {url: getattr(spec, url) or ""})
    for severity in ("page", "ticket", "budget_exhausted"):
        settings = getattr(spec, severity)
        if settings is None:
            continue
        errors += check_go_templates(doc, path + (severity, "labels"), settings.labels)
        errors += check_go_templates(doc, path + (severity, "annotations"),
                                     settings.annotations)
    return errors


def _not_a_bucket(threshold: Decimal, buckets: tuple[Decimal, ...]) -> str:
    """Name the buckets around `threshold`: a histogram cannot count requests between
    two boundaries, so the SLI would measure another threshold (or nothing)."""
    def show(b: Decimal) -> str:
        return format(b.normalize(), "f")
    below = [b for b in buckets if b < threshold]
    above = [b for b in buckets if b > threshold]
    nearest = " or ".join(show(b) for b in (max(below, default=None), min(above, default=None))
                          if b is not None)
    return (f"threshold {show(threshold)} is not a bucket boundary of the histogram; use "
            f"the nearest bucket {nearest} (buckets: {', '.join(map(show, sorted(buckets)))})")


def _check_sli(doc: Document, path: Path, sli: SLISpec) -> list[SpecError]:
    errors: list[SpecError] = []
    kind = sli.kind
    body = getattr(sli, kind)
    for name in QUERY_FIELDS.get(type(body), ()):
        value = getattr(body, name)
        if value is not None:
            errors += check_template(doc, path + (kind, name), value)
    if isinstance(body, ThresholdSLI):
        errors += check_instant(doc, path + (kind, "query"), body.query)
    if hasattr(body, "selector"):
        errors += check_selector(doc, path + (kind, "selector"), body.selector)
    threshold = getattr(body, "threshold", None)
    buckets = known_buckets(sli)
    if threshold is not None and buckets and all(Decimal(threshold) != b for b in buckets):
        errors.append(doc.error(path + (kind, "threshold"),
                                _not_a_bucket(Decimal(threshold), buckets)))
    return errors


def _check_parts(doc: Document, path: Path, raw: object) -> list[SpecError]:
    """The checks of an SLO whose schema failed, on each part that is valid by itself."""
    if not isinstance(raw, dict):
        return []
    errors: list[SpecError] = []
    for key, model, check in (("sli", SLISpec, _check_sli),
                              ("alerting", AlertingSpec, _check_alerting)):
        try:
            part = model.model_validate(raw.get(key))
        except ValidationError:
            continue
        errors += check(doc, path + (key,), part)  # type: ignore[operator]
    labels = raw.get("labels")
    if isinstance(labels, dict):
        errors += check_go_templates(doc, path + ("labels",),
                                     {k: v for k, v in labels.items() if isinstance(v, str)})
    return errors


def _check_slo(doc: Document, path: Path, slo: SLOSpec) -> list[SpecError]:
    errors = _check_sli(doc, path + ("sli",), slo.sli)
    errors += check_go_templates(doc, path + ("labels",), slo.labels)
    errors += _check_alerting(doc, path + ("alerting",), slo.alerting)
    period = parse_duration(slo.period)
    for i, tier in enumerate(slo.alerting.tiers or ()):
        if parse_duration(tier.long_window) > period:
            errors.append(doc.error(path + ("alerting", "tiers", i, "long_window"),
                                    f"long_window {tier.long_window} is longer than the "
                                    f"period {slo.period}"))
    if not errors:
        errors += _check_tiers_can_fire(doc, path, slo)
    return errors


def _group_of(service_group: list[str] | None, slo: SLOSpec) -> tuple[str, ...]:
    """An SLO's group_by: its own, else its service's."""
    return tuple(slo.group_by if slo.group_by is not None else service_group or ())


def _check_grouping(doc: Document, prefix: Path, i: int, slo: SLOSpec,
                    service_group: list[str] | None, service_labels: dict[str, str],
                    ) -> list[SpecError]:
    """What keeps a grouped SLO from having one series per group: a group label the spec
    also sets as a constant label, or an SLI query that does not keep the group labels
    (a ratio cannot be re-aggregated, so it must have exactly them)."""
    group = _group_of(service_group, slo)
    if not group:
        return []
    path = prefix + ("slos", i)
    where = path + ("group_by",) if slo.group_by is not None else prefix + ("group_by",)
    errors = [doc.error(where, f"group_by label {label!r} is also a constant label of the "
                               "SLO; every group would get the same value")
              for label in group if label in {**service_labels, **slo.labels}]
    kind = slo.sli.kind
    body = getattr(slo.sli, kind)
    by = ", ".join(group)
    if isinstance(body, RatioSLI):
        if not promql.query_has_exactly(body.query, group):
            errors.append(doc.error(path + ("sli", kind, "query"), (
                f"a grouped ratio query must have exactly the group_by labels ({by}) on "
                "every series: a ratio cannot be summed per group afterwards; write it as "
                f"sum by ({by}) (...) / sum by ({by}) (...), or use an events SLI")))
        return errors
    fields = QUERY_FIELDS.get(type(body), ()) + (("query",) if isinstance(body, ThresholdSLI)
                                                else ())
    for name in fields:
        query = getattr(body, name)
        problem = None if query is None else promql.query_keeps(query, group)
        if problem is not None:
            errors.append(doc.error(path + ("sli", kind, name),
                                    f"cannot group by {by}: {problem}"))
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
    def settings(s: SeverityAlert) -> AlertSettings:
        return AlertSettings(s.disabled, tuple(sorted(s.labels.items())),
                             tuple(sorted(s.annotations.items())),
                             parse_duration(s.for_) if s.for_ else 0, s.min_events)

    tiers = None
    if spec.tiers is not None:
        tiers = tuple(TierSpec(t.severity, parse_duration(t.long_window),
                               parse_duration(t.short_window), t.budget_consumed,
                               t.min_events)
                      for t in spec.tiers)
    exhausted = spec.budget_exhausted
    return Alerting(spec.name, settings(spec.page), settings(spec.ticket),
                    tuple(sorted(spec.labels.items())), tuple(sorted(spec.annotations.items())),
                    spec.runbook_url, spec.dashboard_url, tiers,
                    settings(exhausted) if exhausted is not None and not exhausted.disabled
                    else None)


def semantic_errors(doc: Document, spec: ServiceLevels | None, raw: object,
                    prefix: Path = ()) -> list[SpecError]:
    """The checks beyond the schema, for `spec`, or, when the schema failed, for every
    SLO of `raw` that is valid on its own: one pass reports both kinds of problem."""
    if not _CHECKS.get():
        return []
    slos: list[tuple[int, SLOSpec]] = []
    names: list[tuple[int, object]] = []
    partial: list[SpecError] = []
    if spec is not None:
        slos = list(enumerate(spec.slos))
        names = [(i, slo.name) for i, slo in slos]
    elif isinstance(raw, dict) and isinstance(raw.get("slos"), list):
        for i, item in enumerate(raw["slos"]):
            names.append((i, item.get("name") if isinstance(item, dict) else None))
            try:
                slos.append((i, SLOSpec.model_validate(item)))
            except ValidationError:  # its schema errors are reported already
                partial.extend(_check_parts(doc, prefix + ("slos", i), item))
    errors: list[SpecError] = []
    if spec is not None:
        errors += check_go_templates(doc, prefix + ("labels",), spec.labels)
    elif isinstance(raw, dict) and isinstance(raw.get("labels"), dict):
        labels = {k: v for k, v in raw["labels"].items() if isinstance(v, str)}
        errors += check_go_templates(doc, prefix + ("labels",), labels)
    seen: dict[object, int] = {}
    for i, name in names:
        if not isinstance(name, str):
            continue
        if name in seen:
            errors.append(doc.error(prefix + ("slos", i, "name"), (
                f"duplicate SLO name {name!r}, first used at slos[{seen[name]}] "
                f"(line {doc.line_of(prefix + ('slos', seen[name], 'name'))})")))
        seen.setdefault(name, i)
    service_group, service_labels = _service_grouping(spec, raw)
    for i, slo in slos:
        errors += _check_slo(doc, prefix + ("slos", i), slo)
        errors += _check_grouping(doc, prefix, i, slo, service_group, service_labels)
    return errors + partial


def _service_grouping(spec: ServiceLevels | None, raw: object,
                      ) -> tuple[list[str] | None, dict[str, str]]:
    """The service's group_by and labels, from the spec or, when its schema failed, from
    the raw document where they are well-formed."""
    if spec is not None:
        return spec.group_by, dict(spec.labels)
    raw = raw if isinstance(raw, dict) else {}
    group = raw.get("group_by")
    labels = raw.get("labels")
    try:  # an invalid group_by is reported by the schema, and checked no further
        group = check_group_by(group) if isinstance(group, list) and all(
            isinstance(g, str) for g in group) else None
    except ValueError:
        group = None
    return group, labels if isinstance(labels, dict) else {}


def check_native(doc: Document, data: object, prefix: Path = (),
                 model: type[BaseModel] = ServiceLevels) -> ServiceLevels:
    """`data` as a valid native spec; else SpecErrors with schema AND semantic errors."""
    try:
        spec = ServiceLevels.model_validate(data)
    except ValidationError as exc:
        errors = doc.errors_from_validation(exc, model=model)
        raise SpecErrors(errors + semantic_errors(doc, None, data, prefix)) from None
    errors = semantic_errors(doc, spec, data, prefix)
    if errors:
        raise SpecErrors(errors)
    return spec


def build_service(doc: Document, spec: ServiceLevels, prefix: Path = ()) -> Service:
    """Build the model from a checked spec, then check every rule it generates; raises
    SpecErrors."""
    service_labels = dict(spec.labels)
    slos = []
    for i, slo in enumerate(spec.slos):
        labels = {**service_labels, **slo.labels}
        group = _group_of(spec.group_by, slo)
        slos.append(SLO(
            service=spec.service, name=slo.name, objective=slo.objective,
            period=parse_duration(slo.period),
            sli=compile_sli(slo.sli, spec.service, slo.name, tuple(sorted(labels.items())),
                            group),
            description=slo.description, labels=tuple(sorted(labels.items())),
            alerting=_alerting(slo.alerting),
            origin=f"{doc.file}:{doc.line_of(prefix + ('slos', i))}",
            tests=slo.tests,
            min_events=slo.min_events,
            group_by=group,
        ))
    apps = tuple(spec.argocd_apps) if spec.argocd_apps is not None else None
    service = Service(spec.service, tuple(slos), tuple(sorted(service_labels.items())),
                      f"{doc.file}:{doc.line_of(prefix)}", apps)
    errors = [doc.error(prefix + ("slos", i), message)
              for i, slo in enumerate(service.slos) if _CHECKS.get()
              for message in _generated_problems(slo)]
    if errors:
        raise SpecErrors(errors)
    return service


def _user_values(slo: SLO) -> set[str]:
    """Label and annotation values the spec gave verbatim (checked at their own paths)."""
    alerting = slo.alerting
    values = {v for _, v in slo.labels} | {v for _, v in alerting.labels} | \
        {v for _, v in alerting.annotations}
    for severity in ("page", "ticket"):
        settings = alerting.settings(severity)  # type: ignore[arg-type]
        values |= {v for _, v in settings.labels} | {v for _, v in settings.annotations}
    return values | {alerting.runbook_url or "", alerting.dashboard_url or ""}


_ACTION = re.compile(r"(\{\{.*?\}\})", re.S)


def _canonical(text: str, slo: SLO, template: bool) -> str:
    """`text` of a generated rule with the SLO's names made the same for every SLO.

    Names are letters, digits, '_', '.' and '-' and the generator writes them only as
    text or inside quoted strings, where which such name it is cannot change whether
    PromQL or a Go template parses; so the checks below are memoised across SLOs.
    """
    names = ((slo.service, "svc"), (slo.name, "slo"))
    if not template:
        for name, placeholder in names:
            text = text.replace(quote(name), f'"{placeholder}"')
        return text
    parts = _ACTION.split(text)
    for i, part in enumerate(parts):
        for name, placeholder in names:
            part = part.replace(f'\\"{name}\\"', f'\\"{placeholder}\\"') if i % 2 \
                else part.replace(name, placeholder)
        parts[i] = part
    return "".join(parts)


_ALERT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _shape_of(slo: SLO) -> SLO | None:
    """`slo` with what cannot change whether promtool accepts its rules made the same
    for every SLO, or None when that cannot be shown: its names (as `_canonical` argues),
    its description and origin (no rule holds them), an alert name that is a plain word
    (only the `alert:` field holds it, and promtool does not check it) and its queries'
    `promql.shape` (kept only when the shape aggregates the same way, so the generator
    builds the same structure around it)."""
    sli = slo.sli
    queries: dict[str, str] = {}
    for name in ("errors", "total", "ratio", "good"):
        query = getattr(sli, name)
        if query is None:
            continue
        shaped = promql.shape(query)
        if shaped is None or promql.query_labels(shaped) != promql.query_labels(query):
            return None
        queries[name] = shaped
    alerting = slo.alerting
    if _ALERT_NAME.fullmatch(alerting.name):
        alerting = replace(alerting, name="Alert")
    return replace(slo, service="svc", name="slo", description="", origin="",
                   sli=replace(sli, **queries), alerting=alerting)


_CLEAN_SHAPES: set[SLO] = set()
_MAX_SHAPES = 1 << 12


def _generated_problems(slo: SLO) -> list[str]:
    """`check_generated`, once per `_shape_of`: the rules of SLOs of one shape are all
    accepted or all refused; a refused one is checked itself, for its own messages."""
    shaped = _shape_of(slo)
    try:
        if shaped is not None and shaped in _CLEAN_SHAPES:
            return []
    except TypeError:  # a field that cannot be hashed: no memo
        shaped = None
    if shaped is not None and not check_generated(shaped):
        if len(_CLEAN_SHAPES) >= _MAX_SHAPES:  # bounded in a long-lived controller
            _CLEAN_SHAPES.clear()
        _CLEAN_SHAPES.add(shaped)
        return []
    return check_generated(slo)


def check_generated(slo: SLO) -> list[str]:
    """What `promtool check rules` would refuse in the rules generated for `slo`, on
    Prometheus 2 or 3: every expression, record name, label and annotation."""
    problems: dict[str, None] = {}
    given = _user_values(slo)
    for group in rules.slo_groups(slo):
        for rule in group["rules"]:
            name = rule.get("record") or rule.get("alert")
            problem = promcheck.check_generated(_canonical(rule["expr"], slo, False))
            if problem is not None:
                problems[f"the generated rule {name} is not valid PromQL: {problem}"] = None
            if "record" in rule and not promcheck.METRIC_NAME.match(rule["record"]):
                problems[f"invalid recording rule name {rule['record']!r}"] = None
            for what in ("labels", "annotations"):
                for key, value in (rule.get(what) or {}).items():
                    if not promcheck.LABEL_NAME.match(key) or key == "__name__":
                        problems[f"invalid {what[:-1]} name {key!r} in the generated rule "
                                 f"{name}"] = None
                    if "alert" in rule and "{{" in str(value):
                        text = str(value)
                        problem = gotemplate.check(text if text in given
                                                   else _canonical(text, slo, True))
                        if problem is not None:
                            problems[f"{what[:-1]} {key!r} of the generated alert {name} "
                                     f"is not a valid Prometheus template: {problem}"] = None
    return list(problems)


def load_native(doc: Document, _all: list[Document]) -> list[Service]:
    return [build_service(doc, check_native(doc, doc.data))]
