"""`sloexporter convert --to openslo|sloth|native`.

`--to native` and `--to sloth` start from the model, so they read every input format:
each SLO becomes an `events` (or `ratio`) SLI over the compiled queries, with its
objective, period, labels and alerting, which generates the same rules (`slo:info`
then says `sli_kind="events"`). What the target cannot say is an error naming the SLO,
never a silent loss: Sloth has no `for`, no per-SLO tiers and one period per run (an
AlertWindows document carries it when it is not 30d); SLI kinds that need recording
rules of their own (argocd, backup, certificate, threshold) are neither events nor Sloth.

`--to openslo` converts native specs to OpenSLO v1:

Each service becomes an OpenSLO `Service` and one `SLO` per SLO, with standard fields
any OpenSLO tool reads: a Prometheus `ratioMetric` (or raw ratio, or a `thresholdMetric`
on the histogram bucket for latency SLIs), a rolling `timeWindow`, the target, and one
burn-rate `AlertCondition` per alert tier.

OpenSLO cannot say everything a native spec can (SLI presets, alert names, labels,
custom tiers), so the native SLI and alerting also travel as JSON in the annotations
`sloexporter.dev/sli` and `sloexporter.dev/alerting`. Our OpenSLO reader prefers them,
which is why converting back gives exactly the same rules.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from sloexporter import __version__, promql
from sloexporter.model import (
    SLO,
    AlertSettings,
    Service,
    Tier,
    format_duration,
    resolve_tiers,
)
from sloexporter.output import write_tree
from sloexporter.render import header, k8s_name, service_source, to_yaml
from sloexporter.specs import spec_files
from sloexporter.specs.build import build_service, check_native
from sloexporter.specs.errors import SpecError, SpecErrors, load_documents
from sloexporter.specs.native import API_VERSION, KIND, ServiceLevels, SLOSpec
from sloexporter.specs.openslo import (
    ANNOTATION_ALERTING,
    ANNOTATION_GROUP_BY,
    ANNOTATION_NAME,
    ANNOTATION_SLI,
)

OPENSLO_OP = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}


def rfc1123(name: str) -> str:
    """An OpenSLO object name: lowercase letters, digits and '-'."""
    return k8s_name(name, 63)


def _metric(query: str) -> dict[str, Any]:
    return {"metricSource": {"type": "Prometheus", "spec": {"query": query}}}


def _indicator(slo: SLOSpec, model: SLO) -> dict[str, Any]:
    """The standard OpenSLO view of the SLI, for tools other than ours."""
    if slo.sli.threshold is not None and slo.sli.threshold.op in OPENSLO_OP:
        return {"thresholdMetric": _metric(slo.sli.threshold.query)}
    latency = slo.sli.latency
    if latency is not None:
        selector = latency.selector.strip() or "{}"
        return {"thresholdMetric": _metric(f"{latency.metric}_bucket{selector}")}
    sli = model.sli
    if sli.ratio is not None:
        return {"ratioMetric": {"rawType": "failure", "raw": _metric(sli.ratio)}}
    assert sli.errors is not None and sli.total is not None
    return {"ratioMetric": {"counter": True, "bad": _metric(sli.errors),
                            "total": _metric(sli.total)}}


def _conditions(model: SLO) -> list[dict[str, Any]]:
    """One burn-rate condition per enabled alert tier, as OpenSLO tools understand them."""
    return [{"kind": "AlertCondition",
             "metadata": {"name": rfc1123(f"{model.name}-{tier.severity}-{tier.long}")},
             "spec": {"severity": tier.severity,
                      "condition": {"kind": "burnrate", "op": "gt",
                                    "threshold": float(tier.factor),
                                    "lookbackWindow": tier.long}}}
            for tier in model.tiers]


def _dump(model: Any) -> str:
    data = model.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def slo_object(spec: ServiceLevels, slo: SLOSpec, model: SLO) -> dict[str, Any]:
    labels = {**spec.labels, **slo.labels}
    annotations = {ANNOTATION_SLI: _dump(slo.sli), ANNOTATION_ALERTING: _dump(slo.alerting)}
    name = rfc1123(slo.name)
    if name != slo.name:
        annotations[ANNOTATION_NAME] = slo.name
    if model.group_by:
        annotations[ANNOTATION_GROUP_BY] = ",".join(model.group_by)
    metadata: dict[str, Any] = {"name": name, "displayName": slo.name}
    if labels:
        metadata["labels"] = dict(sorted(labels.items()))
    metadata["annotations"] = annotations
    body: dict[str, Any] = {"service": spec.service}
    if slo.description:
        body["description"] = slo.description
    body["indicator"] = {"metadata": {"name": rfc1123(f"{slo.name}-sli")},
                         "spec": _indicator(slo, model)}
    body["timeWindow"] = [{"duration": slo.period, "isRolling": True}]
    body["budgetingMethod"] = "Occurrences"
    objective: dict[str, Any] = {"displayName": slo.name,
                                 "target": float(Decimal(slo.objective) / 100)}
    if slo.sli.threshold is not None and slo.sli.threshold.op in OPENSLO_OP:
        # good while `query op value`, in OpenSLO's spelling (it has no == or !=)
        objective["op"] = OPENSLO_OP[slo.sli.threshold.op]
        objective["value"] = float(slo.sli.threshold.value)
    body["objectives"] = [objective]
    conditions = _conditions(model)
    if conditions:
        body["alertPolicies"] = [{"kind": "AlertPolicy",
                                  "metadata": {"name": rfc1123(f"{slo.name}-burn-rate")},
                                  "spec": {"alertWhenBreaching": True,
                                           "conditions": conditions}}]
    return {"apiVersion": "openslo/v1", "kind": "SLO", "metadata": metadata, "spec": body}


def to_openslo(spec: ServiceLevels, service: Service) -> list[dict[str, Any]]:
    obj: dict[str, Any] = {"apiVersion": "openslo/v1", "kind": "Service",
                           "metadata": {"name": rfc1123(spec.service),
                                        "displayName": spec.service},
                           "spec": {"description": f"Service level objectives of "
                                                   f"{spec.service}"}}
    return [obj, *(slo_object(spec, slo, model)
                   for slo, model in zip(spec.slos, service.slos, strict=True))]


def convert_paths(paths: list[str], outdir: Path) -> tuple[list[Path], list[SpecError]]:
    """Write every native spec in `paths` as OpenSLO v1 under `outdir`."""
    files, errors = spec_files(paths)
    specs: list[tuple[str, ServiceLevels, Service]] = []
    for file in files:
        try:
            docs = list(load_documents(file.read_text(encoding="utf-8"), str(file)))
        except SpecErrors as exc:
            errors += exc.errors
            continue
        for doc in docs:
            data = doc.data
            if not (isinstance(data, dict) and data.get("apiVersion") == API_VERSION
                    and data.get("kind") == KIND):
                errors.append(doc.error((), f"convert reads native specs ({API_VERSION} "
                                            f"{KIND}) only"))
                continue
            try:
                spec = check_native(doc, data)
                # the model gives the compiled queries and tiers, and its checks are ours
                specs.append((str(file), spec, build_service(doc, spec)))
            except SpecErrors as exc:
                errors += exc.errors
    if errors:
        return [], sorted(set(errors))
    files = {}
    for source, spec, service in sorted(specs, key=lambda s: s[1].service):
        docs = "---\n".join(to_yaml(obj) for obj in to_openslo(spec, service))
        files[f"{spec.service}.openslo.yaml"] = header([source]) + docs
    written, _ = write_tree(outdir, files)
    return written, []


# ---- from the model: --to native, --to sloth ---------------------------------------------

TARGETS = ("native", "sloth", "openslo")
_SLOTH_DEFAULT_PERIOD = 30 * 86400


class Unconvertible(Exception):
    """An SLO the target format cannot express; the message says what and why."""


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _sli_body(slo: SLO) -> dict[str, Any]:
    sli = slo.sli
    if sli.records:
        raise Unconvertible(f"its {sli.kind} SLI reads recording rules of its own, which "
                            "an events SLI cannot carry")
    if sli.ratio is not None:
        return {"ratio": {"query": sli.ratio}}
    if sli.good is not None:
        return {"events": {"good": sli.good, "total": sli.total}}
    return {"events": {"errors": sli.errors, "total": sli.total}}


def _alert_body(settings: AlertSettings, disabled_key: str) -> dict[str, Any]:
    """One severity's settings, as native (`disabled`) and Sloth (`disable`) spell them."""
    out: dict[str, Any] = {}
    if settings.disabled:
        out[disabled_key] = True
    if settings.labels:
        out["labels"] = dict(settings.labels)
    if settings.annotations:
        out["annotations"] = dict(settings.annotations)
    return out


def _slo_body(service: Service, slo: SLO, **after_objective: Any) -> dict[str, Any]:  # noqa: ANN401
    """What native and Sloth specs spell alike: name, objective, description, and the
    labels the service does not already give."""
    body: dict[str, Any] = {"name": slo.name, "objective": _number(slo.objective),
                            **after_objective}
    if slo.description:
        body["description"] = slo.description
    common = dict(service.labels)
    own = {k: v for k, v in slo.labels if common.get(k) != v}
    if own:
        body["labels"] = own
    return body


def _sli_of(service: Service, slo: SLO) -> dict[str, Any]:
    try:
        return _sli_body(slo)
    except Unconvertible as exc:
        raise Unconvertible(f"{service.name}/{slo.name}: {exc}") from None


def _severity(settings: AlertSettings) -> dict[str, Any]:
    out = _alert_body(settings, "disabled")
    if settings.for_:
        out["for"] = format_duration(settings.for_)
    return out


def native_document(service: Service) -> dict[str, Any]:
    """A native spec that generates the same rules as `service`; raises Unconvertible."""
    common = dict(service.labels)
    slos = []
    for slo in service.slos:
        sli = _sli_of(service, slo)
        body = _slo_body(service, slo, period=slo.period_str)
        if slo.group_by:
            body["group_by"] = list(slo.group_by)
        body["sli"] = sli
        a = slo.alerting
        alerting: dict[str, Any] = {"name": a.name}
        if a.runbook_url:
            alerting["runbook_url"] = a.runbook_url
        if a.dashboard_url:
            alerting["dashboard_url"] = a.dashboard_url
        if a.labels:
            alerting["labels"] = dict(a.labels)
        if a.annotations:
            alerting["annotations"] = dict(a.annotations)
        for severity in ("page", "ticket"):
            settings = _severity(a.settings(severity))  # type: ignore[arg-type]
            if settings:
                alerting[severity] = settings
        if a.custom_tiers is not None:
            alerting["tiers"] = [{"severity": t.severity,
                                  "long_window": format_duration(t.long_window),
                                  "short_window": format_duration(t.short_window),
                                  "budget_consumed": _number(t.budget_percent)}
                                 for t in a.custom_tiers]
        body["alerting"] = alerting
        slos.append(body)
    doc: dict[str, Any] = {"apiVersion": API_VERSION, "kind": KIND, "service": service.name}
    if common:
        doc["labels"] = common
    if service.argocd_apps is not None:
        doc["argocd_apps"] = list(service.argocd_apps)
    doc["slos"] = slos
    return doc


def _sloth_alert(settings: AlertSettings, what: str) -> dict[str, Any]:
    if settings.for_:
        raise Unconvertible(f"{what} has for: {format_duration(settings.for_)}, which Sloth "
                            "alerts cannot have")
    return _alert_body(settings, "disable")


def sloth_document(service: Service) -> dict[str, Any]:
    """A Sloth `prometheus/v1` spec for `service`; raises Unconvertible."""
    common = dict(service.labels)
    slos = []
    for slo in service.slos:
        name = f"{service.name}/{slo.name}"
        sli = _sli_of(service, slo)
        if "events" in sli and "good" in sli["events"]:
            sli = {"events": {"errors": slo.sli.errors, "total": slo.sli.total}}
        a = slo.alerting
        if a.custom_tiers is not None:
            raise Unconvertible(f"{name}: its own alert tiers have no place in a Sloth spec "
                                "(Sloth's AlertWindows apply to every SLO of a period)")
        body = _slo_body(service, slo)
        if slo.group_by:  # Sloth groups by what its queries aggregate by
            sli = {kind: {k: promql.aggregate_to(q, slo.group_by) if k != "query" else q
                          for k, q in parts.items()} for kind, parts in sli.items()}
        if "ratio" in sli:
            body["sli"] = {"raw": {"error_ratio_query": _sloth_window(sli["ratio"]["query"])}}
        else:
            body["sli"] = {"events": {"error_query": _sloth_window(sli["events"]["errors"]),
                                      "total_query": _sloth_window(sli["events"]["total"])}}
        alerting: dict[str, Any] = {"name": a.name}
        if a.labels:
            alerting["labels"] = dict(a.labels)
        annotations = {}
        if a.runbook_url:
            annotations["runbook_url"] = a.runbook_url
        if a.dashboard_url:
            annotations["dashboard_url"] = a.dashboard_url
        annotations.update(a.annotations)
        if annotations:
            alerting["annotations"] = annotations
        for severity in ("page", "ticket"):
            alert = _sloth_alert(a.settings(severity), f"{name}: its {severity} alert")  # type: ignore[arg-type]
            if alert:
                alerting[f"{severity}_alert"] = alert
        body["alerting"] = alerting
        slos.append(body)
    doc: dict[str, Any] = {"version": "prometheus/v1", "service": service.name}
    if common:
        doc["labels"] = common
    doc["slos"] = slos
    return doc


def _converted(service: Service) -> str:
    return (f"# Converted by sloexporter {__version__} from {service_source(service)}.\n"
            "# Yours to edit: this is a spec, not generated output.\n")


def _sloth_window(query: str | None) -> str:
    assert query is not None
    return query.replace("{{window}}", "{{.window}}")


def sloth_alert_windows(period: int) -> dict[str, Any]:
    """Sloth's AlertWindows for `period`: our default tiers, as Sloth spells them."""
    tiers: dict[str, list[Tier]] = {}
    for tier in resolve_tiers(period):
        tiers.setdefault(tier.severity, []).append(tier)

    def window(tier: Tier) -> dict[str, Any]:
        return {"errorBudgetPercent": _number(tier.budget_percent),
                "shortWindow": tier.short, "longWindow": tier.long}

    return {"apiVersion": "sloth.slok.dev/v1", "kind": "AlertWindows",
            "spec": {"sloPeriod": format_duration(period),
                     "page": {"quick": window(tiers["page"][0]),
                              "slow": window(tiers["page"][1])},
                     "ticket": {"quick": window(tiers["ticket"][0]),
                                "slow": window(tiers["ticket"][1])}}}


def convert_models(paths: list[str], outdir: Path,
                   to: str) -> tuple[list[Path], list[SpecError | str]]:
    """Every service in `paths` (any format) as a native or Sloth spec under `outdir`."""
    from sloexporter.specs import load_paths

    services, errors = load_paths(paths)
    if errors:
        return [], list(errors)
    problems: list[SpecError | str] = []
    files: dict[str, str] = {}
    ordered = sorted(services, key=lambda s: s.name)
    if to == "sloth":
        periods = {slo.period for s in ordered for slo in s.slos}
        if len(periods) > 1:
            listed = ", ".join(format_duration(p) for p in sorted(periods))
            problems.append(f"the SLOs have several periods ({listed}); Sloth uses one "
                            "period per run: convert each period's specs separately")
        elif periods and (period := next(iter(periods))) != _SLOTH_DEFAULT_PERIOD:
            files[f"alert-windows-{format_duration(period)}.yaml"] = (
                "".join(_converted(s) for s in ordered[:1])
                + "# Pass this file to sloth generate with --slo-period-windows-path and\n"
                + f"# --default-slo-period {format_duration(period)}.\n"
                + to_yaml(sloth_alert_windows(period)))
    render = native_document if to == "native" else sloth_document
    suffix = "yaml" if to == "native" else "sloth.yaml"
    for service in ordered:
        try:
            doc = render(service)
        except Unconvertible as exc:
            problems.append(f"{service_source(service)}: {exc}")
            continue
        files[f"{service.name}.{suffix}"] = _converted(service) + to_yaml(doc)
    if problems:
        return [], problems
    written, _ = write_tree(outdir, files)
    return written, []
