"""Model -> Prometheus rule groups (plain data, written out by `sloexporter.output`).

Per SLO there are two groups. The first records the SLI error ratio for every window
an alert needs, the SLO's metadata, and then evaluates the alerts, in that order, so an
alert always sees this evaluation's ratios. The second records the period series, which
move slowly, at its own longer interval.
"""

from __future__ import annotations

from typing import Any

from sloexporter import promql
from sloexporter.model import SLO, AlertSettings, Service, Tier, decimal_str, format_duration

Rule = dict[str, Any]


def _record(name: str, expr: str, labels: dict[str, str]) -> Rule:
    return {"record": name, "expr": expr, "labels": labels}


def sli_rules(slo: SLO) -> list[Rule]:
    """The SLI's raw queries read once (5m), then every window from those records."""
    ident = dict(slo.identity)
    rules = [_record(name, expr, ident) for name, expr in slo.sli.records]
    if slo.sli.ratio is None:
        rules += [_record(name, expr, ident) for name, expr in promql.sli_records(slo)]
    for window in slo.windows:
        rules.append(_record(promql.error_ratio_name(window),
                             promql.window_error_ratio(slo, window), ident))
    return rules


def severity_label(slo: SLO, severity: str) -> str:
    """The `severity` an alert of this tier carries; a spec may rename it."""
    return dict(slo.alerting.settings(severity).labels).get("severity", severity)  # type: ignore[arg-type]


def alert_rule(slo: SLO, tier: Tier, budget_remaining: str) -> Rule:
    """A tier's alert; `budget_remaining` is `_budget_remaining_template(slo)`, the same
    for every tier of the SLO (built once: it is most of an alert's text). It is its own
    annotation only, not repeated in the description: a message shows both."""
    alerting = slo.alerting
    settings = alerting.settings(tier.severity)
    labels = _labels(slo, tier.severity, settings, long_window=tier.long,
                     short_window=tier.short)
    factor = decimal_str(tier.factor)
    annotations = {
        "summary": (f"{slo.service}/{slo.name}{_group_text(slo)}: error budget burning "
                    f"{{{{ $value | printf \"%.1f\" }}}}x too fast over {tier.long}"),
        "description": (
            f"The {decimal_str(slo.objective)}% {slo.name} SLO of {slo.service} is burning "
            f"its {slo.period_str} error budget at {{{{ $value | printf \"%.2f\" }}}}x over "
            f"{tier.long} and above {factor}x over {tier.short}. At {factor}x, "
            f"{decimal_str(tier.budget_percent)}% of the budget is consumed in {tier.long}."),
        "burn_rate": '{{ $value | printf "%.2f" }}',
        "burn_rate_threshold": factor,
        "budget_remaining": budget_remaining,
    }
    return _alert(slo, alerting.name, promql.tier_condition(slo, tier), settings.for_,
                  labels, annotations, settings)


def _budget_remaining_template(slo: SLO) -> str:
    """The budget left, rendered by Prometheus when the alert is evaluated (Alertmanager
    messages only see annotations): the recorded series, else the same figure computed
    from the 5m series (a new SLO before its period group first ran), else "unknown".
    A grouped SLO's queries name the alert's group, not the first group."""
    extra = promql.group_matchers(slo)
    values = " ".join(f"$labels.{label}" for label in slo.group_by)
    out = "unknown"
    for expr in reversed((promql.slo_selector(promql.BUDGET_REMAINING, slo, extra),
                          promql.budget_remaining(slo, extra))):
        text = expr.replace('"', '\\"')
        query = f"printf \"{text}\" {values} | query" if values else f"query \"{text}\""
        out = (f"{{{{ with {query} }}}}{{{{ . | first | value | humanizePercentage }}}}"
               f"{{{{ else }}}}{out}{{{{ end }}}}")
    return out


def _group_text(slo: SLO) -> str:
    """` (cluster={{ $labels.cluster }})`: which group of a grouped SLO an alert is for."""
    if not slo.group_by:
        return ""
    return " (" + ", ".join(f"{label}={{{{ $labels.{label} }}}}" for label in slo.group_by) + ")"


def _labels(slo: SLO, severity: str, settings: AlertSettings,
            **extra: str) -> dict[str, str]:
    labels = dict(slo.identity)
    labels.update(slo.alerting.labels)
    labels["severity"] = severity
    labels.update(extra)
    labels.update(settings.labels)
    return labels


def _alert(slo: SLO, name: str, expr: str, for_: int, labels: dict[str, str],
           annotations: dict[str, str], settings: AlertSettings) -> Rule:
    """An alerting rule with the SLO's links and the spec's extra annotations added."""
    alerting = slo.alerting
    for key, url in (("runbook_url", alerting.runbook_url),
                     ("dashboard_url", alerting.dashboard_url)):
        if url:
            annotations[key] = url
    annotations.update(alerting.annotations)
    annotations.update(settings.annotations)
    rule: Rule = {"alert": name, "expr": expr}
    if for_:
        rule["for"] = format_duration(for_)
    rule["labels"] = labels
    rule["annotations"] = annotations
    return rule


#: How long the SLI must stay unmeasurable before SLOSignalMissing fires: longer than a
#: rollout that briefly drops a series, shorter than the slowest page tier's detection.
SIGNAL_MISSING_FOR = 15 * 60
SIGNAL_MISSING_ALERT = "SLOSignalMissing"
BUDGET_EXHAUSTED_ALERT = "SLOBudgetExhausted"


def signal_missing_alert(slo: SLO) -> Rule:
    """A ticket while the total has traffic but the SLI cannot measure errors: a blind
    SLI (a renamed label, a bucket that does not exist, a good series gone) shows here
    even in the cases the generator could not foresee."""
    settings = AlertSettings()
    selector = promql.slo_selector(promql.SIGNAL_MISSING, slo)
    annotations = {
        "summary": f"{slo.service}/{slo.name}{_group_text(slo)}: the SLI cannot be measured",
        "description": (
            f"{slo.service}/{slo.name} has traffic but its "
            f"{'good' if slo.sli.good is not None else 'error'} events have no series "
            f"that matches the total for {format_duration(SIGNAL_MISSING_FOR)}. The SLO "
            "counts that traffic as failed (a missing good series) or cannot attribute "
            "errors to it; check the SLI's selectors, label names and histogram buckets."),
    }
    if slo.sli.condition is not None:
        annotations["description"] = (
            f"The gauge query of {slo.service}/{slo.name} has returned no series, or lost "
            f"some it had, for {format_duration(SIGNAL_MISSING_FOR)}. The SLO counts the "
            "missing series as bad; check the exporter, its scrape target and the query's "
            "selectors.")
    return _alert(slo, SIGNAL_MISSING_ALERT, f"{selector} == 1", SIGNAL_MISSING_FOR,
                  _labels(slo, "ticket", settings), annotations, settings)


def budget_exhausted_alert(slo: SLO, settings: AlertSettings) -> Rule:
    remaining = promql.slo_selector(promql.BUDGET_REMAINING, slo)
    annotations = {
        "summary": (f"{slo.service}/{slo.name}{_group_text(slo)}: the {slo.period_str} error "
                    "budget is spent"),
        "description": (
            f"The {decimal_str(slo.objective)}% {slo.name} SLO of {slo.service} has spent "
            f"its error budget over the last {slo.period_str}: "
            "{{ $value | humanizePercentage }} of it remains."),
    }
    return _alert(slo, BUDGET_EXHAUSTED_ALERT, f"{remaining} <= 0", settings.for_,
                  _labels(slo, "ticket", settings), annotations, settings)


def meta_rules(slo: SLO) -> list[Rule]:
    """The SLO's objective, budget and `slo:info`, recorded with its SLI series so a new
    SLO is visible from the first evaluation. A grouped SLO has one series per group."""
    ident = dict(slo.identity)
    objective, budget = decimal_str(slo.objective / 100), decimal_str(slo.budget)
    info = dict(ident, objective=decimal_str(slo.objective), period=slo.period_str,
                sli_kind=slo.sli.kind)
    if slo.group_by:
        values = [promql.per_group(slo, v) for v in (objective, budget, "1")]
    else:
        values = [f"vector({v})" for v in (objective, budget, "1")]
    return [_record(promql.OBJECTIVE, values[0], ident),
            _record(promql.ERROR_BUDGET, values[1], ident),
            _record(promql.INFO, values[2], info)]


def period_rules(slo: SLO) -> list[Rule]:
    """The period error ratio and what follows from it, in order (rules of a group run
    in order), and the opt-in exhaustion series and alert."""
    ident = dict(slo.identity)
    budget = decimal_str(slo.budget)
    return [
        _record(promql.PERIOD_ERROR, promql.period_error_ratio(slo), ident),
        _record(promql.PERIOD_BURN,
                f"{promql.slo_selector(promql.PERIOD_ERROR, slo)} / {budget}", ident),
        _record(promql.BUDGET_REMAINING,
                f"1 - {promql.slo_selector(promql.PERIOD_BURN, slo)}", ident),
    ] + _exhaustion_rules(slo, ident)


def _exhaustion_rules(slo: SLO, ident: dict[str, str]) -> list[Rule]:
    exhausted = slo.alerting.budget_exhausted
    if exhausted is None:
        return []
    return [_record(promql.BUDGET_EXHAUSTION, promql.budget_exhaustion_seconds(slo), ident),
            budget_exhausted_alert(slo, exhausted)]


def group_name(slo: SLO, part: str) -> str:
    return f"sloexporter-{slo.service}-{slo.name}-{part}"


def slo_groups(slo: SLO) -> list[dict[str, Any]]:
    """The SLO's rule groups, built once per SLO: `validate` checks them and `generate`
    then writes the same ones (callers copy before changing them)."""
    cached = slo.__dict__.get("_rule_groups")  # an SLO is frozen; cached like `tiers`
    if cached is None:
        cached = slo.__dict__["_rule_groups"] = _build_groups(slo)
    return list(cached)


#: The period group's interval is the period / PERIOD_EVALUATIONS: 2m30s for 30d, as
#: Pyrra evaluates its long-window group. Its sums over the whole period are most of an
#: SLO's rule cost (bench/rule_cost.py) and move by a few parts in 10,000 between
#: evaluations; at most 2m30s keeps it well inside the 5m lookback, so an instant query
#: always finds the last value.
PERIOD_EVALUATIONS = 17280
PERIOD_INTERVAL_MAX = 150
#: Below this the group inherits the evaluation interval (rarely slower than 1m): a short
#: period's sums are cheap, and a slower group would only delay its first budget figures.
PERIOD_INTERVAL_MIN = 60


def period_interval(slo: SLO) -> str | None:
    """The `-period` group's `interval`, or None to inherit the evaluation interval."""
    seconds = min(slo.period // PERIOD_EVALUATIONS, PERIOD_INTERVAL_MAX)
    return format_duration(seconds) if seconds >= PERIOD_INTERVAL_MIN else None


def period_group(slo: SLO, part: str, rules: list[Rule]) -> dict[str, Any]:
    """A group of `rules` over the whole period, at `period_interval` (the per-cluster
    and the global sets alike)."""
    group: dict[str, Any] = {"name": group_name(slo, part)}
    if (interval := period_interval(slo)) is not None:
        group["interval"] = interval
    group["rules"] = rules
    return group


def _build_groups(slo: SLO) -> list[dict[str, Any]]:
    budget_remaining = _budget_remaining_template(slo)
    alerts = [alert_rule(slo, tier, budget_remaining) for tier in slo.tiers]
    if slo.sli.ratio is None:
        alerts.append(signal_missing_alert(slo))
    return [
        {"name": group_name(slo, "sli"), "rules": sli_rules(slo) + meta_rules(slo) + alerts},
        period_group(slo, "period", period_rules(slo)),
    ]


def service_groups(service: Service) -> list[dict[str, Any]]:
    return [g for slo in service.slos for g in slo_groups(slo)]


def split_groups(groups: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    """Groups of at most `limit` rules (a ruler's per-group limit, 20 on Mimir).

    A group's rules keep their order across the parts: `NAME`, `NAME-2`, `NAME-3`, ...
    (no generated name ends in a digit, so parts never clash with another group). A
    ruler evaluates groups concurrently, so a rule that reads a record from an earlier
    part may see it one evaluation late; within a part the order holds as before.
    """
    if limit is None:
        return groups
    out = []
    for group in groups:
        rules = group["rules"]
        for i in range(0, max(len(rules), 1), limit):
            name = group["name"] if i == 0 else f"{group['name']}-{i // limit + 1}"
            out.append({**group, "name": name, "rules": rules[i:i + limit]})
    return out
