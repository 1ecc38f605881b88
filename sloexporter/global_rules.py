"""The global rule set: every cluster's SLI summed, for a ruler over the global store.

Each cluster's Prometheus records `slo:sli_errors:rate5m` and `slo:sli_total:rate5m`
with its external labels (`--external-labels cluster=eu-1`, or Prometheus'
`external_labels` on the way to Thanos/Mimir/VictoriaMetrics). This set, evaluated by a
Thanos Ruler, a Mimir or Cortex ruler or vmalert over the store holding all clusters:

- reads only those series that carry every cluster label (so never a series a cluster
  recorded without one, nor its own output);
- sums errors and totals across clusters (a ratio of sums: each cluster weighs by its
  traffic, never an average of ratios) into `slo_global:*` series without the cluster
  labels, names no per-cluster rule writes or reads, so nothing is counted twice;
- derives each alert window's ratio and the period ratio from those sums, and pages and
  tickets on the same tiers as the per-cluster rules, with `slo_scope="global"`; the
  period ratio runs in a group of its own at `rules.period_interval`, as per cluster.

Ratio SLIs (a raw error-ratio query) have no totals to weigh by and are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sloexporter import promql
from sloexporter.model import SLO, Service, Tier, decimal_str, format_duration
from sloexporter.rules import group_name, period_group

Rule = dict[str, Any]
SCOPE_LABEL = "slo_scope"
DEFAULT_CLUSTER_LABELS = ("cluster",)


def _record(name: str, expr: str, labels: dict[str, str]) -> Rule:
    return {"record": name, "expr": expr, "labels": labels}


def _alert(slo: SLO, tier: Tier, labels: dict[str, str]) -> Rule:
    settings = slo.alerting.settings(tier.severity)
    alert_labels = dict(labels)
    alert_labels.update(slo.alerting.labels)
    alert_labels.update(severity=tier.severity, long_window=tier.long,
                        short_window=tier.short)
    alert_labels.update(settings.labels)
    alert_labels[SCOPE_LABEL] = "global"
    factor = decimal_str(tier.factor)
    annotations = {
        "summary": (f"{slo.service}/{slo.name} across all clusters: error budget burning "
                    f"{{{{ $value | printf \"%.1f\" }}}}x too fast over {tier.long}"),
        "description": (
            f"Summed over every cluster, the {decimal_str(slo.objective)}% {slo.name} SLO "
            f"of {slo.service} is burning its {slo.period_str} error budget at "
            f"{{{{ $value | printf \"%.2f\" }}}}x over {tier.long} and above {factor}x over "
            f"{tier.short}. Each cluster's own alerts tell which clusters burn."),
        "burn_rate": '{{ $value | printf "%.2f" }}',
        "burn_rate_threshold": factor,
    }
    for key, url in (("runbook_url", slo.alerting.runbook_url),
                     ("dashboard_url", slo.alerting.dashboard_url)):
        if url:
            annotations[key] = url
    annotations.update(slo.alerting.annotations)
    annotations.update(settings.annotations)
    rule: Rule = {"alert": slo.alerting.name, "expr": promql.global_tier_condition(slo, tier)}
    if settings.for_:
        rule["for"] = format_duration(settings.for_)
    rule["labels"] = alert_labels
    rule["annotations"] = annotations
    return rule


def slo_groups(slo: SLO, cluster_labels: Iterable[str]) -> list[dict[str, Any]]:
    """The sums, then the window ratios, then the alerts that read them (in that order,
    so an alert sees this evaluation's ratios); the period ratio, which nothing here
    reads, in a slower group of its own. Nothing for a ratio SLI."""
    if slo.sli.ratio is not None:
        return []
    drop = tuple(cluster_labels)
    labels = {k: v for k, v in slo.identity if k not in drop}
    rules = [
        _record(promql.GLOBAL_ERRORS_RATE5M,
                promql.global_sum(promql.ERRORS_RATE5M, slo, drop), labels),
        _record(promql.GLOBAL_TOTAL_RATE5M,
                promql.global_sum(promql.TOTAL_RATE5M, slo, drop), labels),
    ]
    for window in sorted({max(w, 300) for w in slo.windows}):
        rules.append(_record(promql.global_error_ratio_name(window),
                             promql.global_window_error_ratio(slo, window), labels))
    rules += [_alert(slo, tier, labels) for tier in slo.tiers]
    period = [_record(promql.GLOBAL_PERIOD_ERROR, promql.global_period_error_ratio(slo),
                      labels)]
    return [{"name": group_name(slo, "global"), "rules": rules},
            period_group(slo, "global-period", period)]


def service_groups(service: Service, cluster_labels: Iterable[str]) -> list[dict[str, Any]]:
    labels = tuple(cluster_labels)
    return [g for slo in service.slos for g in slo_groups(slo, labels)]


def left_out(services: Iterable[Service]) -> list[str]:
    """A line per SLO the global set cannot cover."""
    return [f"{slo.service}/{slo.name}: a ratio SLI has no totals to weigh clusters by; "
            "it has no global rules" for s in services for slo in s.slos
            if slo.sli.ratio is not None]
