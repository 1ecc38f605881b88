"""Model -> Prometheus rule groups (plain data, written out by `sloexporter.output`).

Per SLO there are two groups. The first records the SLI error ratio for every window
an alert needs and then evaluates the alerts, in that order, so an alert always sees
this evaluation's ratios. The second records the slower period series and metadata.
"""

from __future__ import annotations

from typing import Any

from sloexporter import promql
from sloexporter.model import SLO, Service, Tier, decimal_str, format_duration

Rule = dict[str, Any]


def _record(name: str, expr: str, labels: dict[str, str]) -> Rule:
    return {"record": name, "expr": expr, "labels": labels}


def sli_rules(slo: SLO) -> list[Rule]:
    ident = dict(slo.identity)
    rules = [_record(name, expr, ident) for name, expr in slo.sli.records]
    if slo.sli.ratio is None:
        assert slo.sli.errors is not None and slo.sli.total is not None
        errors = promql.substitute_window(slo.sli.errors, 300)
        total = promql.substitute_window(slo.sli.total, 300)
        # errors may be absent (no 5xx ever seen) while total is not: count that as 0
        rules.append(_record(promql.ERRORS_RATE5M, f"({errors}) or ({total}) * 0", ident))
        rules.append(_record(promql.TOTAL_RATE5M, total, ident))
    for window in slo.windows:
        rules.append(_record(promql.error_ratio_name(window),
                             promql.window_error_ratio(slo, window), ident))
    return rules


def severity_label(slo: SLO, severity: str) -> str:
    """The `severity` an alert of this tier carries; a spec may rename it."""
    return dict(slo.alerting.settings(severity).labels).get("severity", severity)  # type: ignore[arg-type]


def alert_rule(slo: SLO, tier: Tier) -> Rule:
    alerting = slo.alerting
    settings = alerting.settings(tier.severity)
    labels = dict(slo.identity)
    labels.update(alerting.labels)
    labels.update(severity=tier.severity, long_window=tier.long, short_window=tier.short)
    labels.update(settings.labels)
    factor = decimal_str(tier.factor)
    budget_query = promql.slo_selector(promql.BUDGET_REMAINING, slo).replace('"', '\\"')
    # rendered by Prometheus at evaluation: Alertmanager messages only see annotations
    budget_remaining = (f"{{{{ with query \"{budget_query}\" }}}}"
                        "{{ . | first | value | humanizePercentage }}{{ else }}unknown{{ end }}")
    annotations = {
        "summary": (f"{slo.service}/{slo.name}: error budget burning "
                    f"{{{{ $value | printf \"%.1f\" }}}}x too fast over {tier.long}"),
        "description": (
            f"The {decimal_str(slo.objective)}% {slo.name} SLO of {slo.service} is burning "
            f"its {slo.period_str} error budget at {{{{ $value | printf \"%.2f\" }}}}x over "
            f"{tier.long} and above {factor}x over {tier.short}. At {factor}x, "
            f"{decimal_str(tier.budget_percent)}% of the budget is consumed in {tier.long}. "
            f"Budget remaining: {budget_remaining}."),
        "burn_rate": '{{ $value | printf "%.2f" }}',
        "burn_rate_threshold": factor,
        "budget_remaining": budget_remaining,
    }
    if alerting.runbook_url:
        annotations["runbook_url"] = alerting.runbook_url
    if alerting.dashboard_url:
        annotations["dashboard_url"] = alerting.dashboard_url
    annotations.update(alerting.annotations)
    annotations.update(settings.annotations)
    rule: Rule = {"alert": alerting.name, "expr": promql.tier_condition(slo, tier)}
    if settings.for_:
        rule["for"] = format_duration(settings.for_)
    rule["labels"] = labels
    rule["annotations"] = annotations
    return rule


def meta_rules(slo: SLO) -> list[Rule]:
    ident = dict(slo.identity)
    budget = decimal_str(slo.budget)
    info = dict(ident, objective=decimal_str(slo.objective), period=slo.period_str,
                sli_kind=slo.sli.kind)
    return [
        _record(promql.OBJECTIVE, f"vector({decimal_str(slo.objective / 100)})", ident),
        _record(promql.ERROR_BUDGET, f"vector({budget})", ident),
        _record(promql.PERIOD_ERROR, promql.period_error_ratio(slo), ident),
        _record(promql.PERIOD_BURN,
                f"{promql.slo_selector(promql.PERIOD_ERROR, slo)} / {budget}", ident),
        _record(promql.BUDGET_REMAINING,
                f"1 - {promql.slo_selector(promql.PERIOD_BURN, slo)}", ident),
        _record(promql.INFO, "vector(1)", info),
    ]


def group_name(slo: SLO, part: str) -> str:
    return f"sloexporter-{slo.service}-{slo.name}-{part}"


def slo_groups(slo: SLO) -> list[dict[str, Any]]:
    alerts = [alert_rule(slo, tier) for tier in slo.tiers]
    return [
        {"name": group_name(slo, "sli"), "rules": sli_rules(slo) + alerts},
        {"name": group_name(slo, "meta"), "rules": meta_rules(slo)},
    ]


def service_groups(service: Service) -> list[dict[str, Any]]:
    return [g for slo in service.slos for g in slo_groups(slo)]
