"""The SLO overview (one table row per SLO) and the per-SLO detail dashboard.

Tier windows and factors differ by period (a 7d SLO scales its windows down) and by
custom tiers, so every tier panel asks `promql` for a query that gives each SLO the
value of its own tier: nothing here retypes a window or a factor.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import statetimeline
from grafana_foundation_sdk.models import dashboard as model

from sloexporter import promql
from sloexporter.dashboards.common import (
    ANNOTATION_FIELDS,
    DATASOURCE,
    DETAIL,
    OVERVIEW,
    graph,
    grid,
    new_dashboard,
    query,
    single,
    unit_override,
    value_text,
    variable,
)
from sloexporter.model import SLO, Service
from sloexporter.rules import severity_label

OVERVIEW_FILTERS = promql.template_matchers("service", "slo", "team")
DETAIL_FILTERS = promql.template_matchers("service", "slo")
# a row's SLO opens its detail dashboard, keeping the time range and data source
DETAIL_LINK = (f"/d/{DETAIL.uid}?var-service=${{__data.fields.service}}"
               "&var-slo=${__data.fields.slo}&${__url_time_range}&${datasource:queryparam}")
ALERT_STATES = {0: ("OK", "green"), 1: ("ticket", "orange"), 2: ("page", "red")}
HISTORY_STATES = {1: ("pending", "yellow"), 2: ("firing", "red")}


def every_slo(services: list[Service]) -> list[SLO]:
    return [slo for svc in sorted(services, key=lambda s: s.name) for slo in svc.slos]


def _group_variables(dash: db.Dashboard, groups: tuple[str, ...]) -> db.Dashboard:
    """A variable per group_by label of grouped SLOs; "All" also shows ungrouped ones."""
    for label in groups:
        dash = dash.with_variable(variable(label, label, promql.INFO,
                                           promql.template_matchers("service", "slo")))
    return dash


def _detail_link(groups: tuple[str, ...]) -> str:
    """A row's SLO (and group) opens its detail dashboard."""
    return DETAIL_LINK.replace("&${__url_time_range}", "".join(
        f"&var-{label}=${{__data.fields.{label}}}" for label in groups)
        + "&${__url_time_range}")


def slot_title(slot: promql.TierSlot) -> str:
    return f"{slot[0]} tier {slot[1]}"


def overview(services: list[Service]) -> db.Dashboard:
    slos = every_slo(services)
    groups = promql.group_labels(slos)
    f = ",".join(p for p in (OVERVIEW_FILTERS, promql.template_matchers(*groups)) if p)
    pages = sorted({severity_label(s, "page") for s in slos})
    columns = [
        (promql.by_slo(promql.select(promql.OBJECTIVE, f), groups), "Objective"),
        (promql.by_slo(promql.sli_over_period(f), groups), "SLI over the period"),
        (promql.by_slo(promql.select(promql.BUDGET_REMAINING, f), groups),
         "Error budget remaining"),
    ]
    columns += [(promql.by_slo(promql.tier_burn_rate(slos, slot, f), groups),
                 f"Burn rate, {slot_title(slot)}") for slot in promql.tier_slots(slos)]
    columns.append((promql.alert_state(slos, pages, f), "Alert state"))
    table = (grid("SLOs", columns, height=12, sort="Error budget remaining",
                  description="One row per SLO. Each burn rate is over the long window of "
                              "that SLO's own tier; a tier fires above its factor.")
             .override_by_name("slo", [model.DynamicConfigValue(id_val="links", value=[{
                 "title": "SLO detail", "url": _detail_link(groups)}])])
             .override_by_name("Objective", [unit_override("percentunit")])
             .override_by_name("SLI over the period", [unit_override("percentunit")])
             .override_by_name("Error budget remaining", [unit_override("percentunit")])
             .override_by_name("Alert state", [
                 model.DynamicConfigValue(id_val="mappings", value=value_text(ALERT_STATES)),
                 model.DynamicConfigValue(id_val="custom.cellOptions",
                                          value={"type": "color-background"})]))
    budget = promql.select(promql.BUDGET_REMAINING, f)
    firing = promql.slos_alerting(slos, pages, f)
    dash = (new_dashboard(OVERVIEW, "now-7d")
            .with_variable(variable("service", "Service", promql.INFO))
            .with_variable(variable("slo", "SLO", promql.INFO,
                                    promql.template_matchers("service")))
            .with_variable(variable("team", "Team", promql.INFO,
                                    promql.template_matchers("service"))))
    return (_group_variables(dash, groups)
            .with_panel(single("Number of SLOs",
                               promql.count_or_zero(promql.select(promql.INFO, f))))
            .with_panel(single("SLOs alerting", firing,
                               thresholds=[(None, "green"), (1, "red")]))
            .with_panel(single("SLOs out of budget", promql.slos_out_of_budget(f),
                               thresholds=[(None, "green"), (1, "red")]))
            .with_panel(graph("Error budget remaining", [(budget, "{{service}} / {{slo}}" + "".join(
                f" {{{{{label}}}}}" for label in groups))],
                              unit="percentunit", width=12, height=4))
            .with_panel(table))


def detail(services: list[Service]) -> db.Dashboard:
    slos = every_slo(services)
    groups = promql.group_labels(slos)
    f = ",".join(p for p in (DETAIL_FILTERS, promql.template_matchers(*groups)) if p)
    longest = max((s.period for s in slos), default=30 * 86400)
    dash = (new_dashboard(DETAIL, f"now-{longest // 86400}d")
            .with_variable(variable("service", "Service", promql.INFO, include_all=False))
            .with_variable(variable("slo", "SLO", promql.INFO,
                                    promql.template_matchers("service"), include_all=False)))
    dash = _group_variables(dash, groups).annotation(_sync_annotation(services))
    dash = (dash
            .with_panel(single("Objective", promql.select(promql.OBJECTIVE, f), "percentunit"))
            .with_panel(single("SLI over the period",
                               promql.sli_over_period(f), "percentunit"))
            .with_panel(single("Error budget remaining", promql.select(promql.BUDGET_REMAINING, f),
                               "percentunit", thresholds=[(None, "red"), (0, "orange"),
                                                          (0.25, "green")]))
            .with_panel(single("Burn rate over the period", promql.select(promql.PERIOD_BURN, f),
                               "x", thresholds=[(None, "green"), (1, "red")]))
            .with_panel(single("Alerts firing", promql.alerts_firing(slos, f), width=8,
                thresholds=[(None, "green"), (1, "red")]))
            .with_panel(graph("Error budget burn-down",
                              [(promql.select(promql.BUDGET_REMAINING, f), "budget remaining")],
                              unit="percentunit", width=24,
                              description="Share of the period's error budget left, over a "
                                          "rolling period; below 0 the SLO is broken.")))
    dash = dash.with_row(db.Row("Burn rate per window, against the tier thresholds"))
    for slot in promql.tier_slots(slos):
        dash = dash.with_panel(graph(
            f"Burn rate, {slot_title(slot)}",
            [(promql.tier_burn_rate(slos, slot, f), "long window {{window}}"),
             (promql.tier_burn_rate(slos, slot, f, short=True), "short window {{window}}"),
             (promql.tier_threshold(slos, slot, f), "threshold")],
            unit="x", description="The alert fires while both windows burn above the "
                                  "threshold (the tier's factor for this SLO's period).")
            .override_by_name("threshold", [
                model.DynamicConfigValue(id_val="custom.lineStyle",
                                         value={"fill": "dash", "dash": [10, 10]}),
                model.DynamicConfigValue(id_val="color",
                                         value={"mode": "fixed", "fixedColor": "red"})]))
    history = (statetimeline.Panel().title("Alert history").datasource(DATASOURCE).span(24)
               .height(6).mappings(value_text(HISTORY_STATES))
               .with_target(query(promql.alert_history(slos, f),
                                  "{{severity}} {{long_window}}/{{short_window}}")))
    return (dash.with_row(db.Row("Errors and traffic"))
            .with_panel(graph("Error ratio (5m)", [
                (promql.select(promql.error_ratio_name(300), f), "error ratio"),
                (promql.select(promql.ERROR_BUDGET, f), "error budget (allowed ratio)")],
                unit="percentunit"))
            .with_panel(graph("Traffic (5m)", [
                (promql.select(promql.TOTAL_RATE5M, f), "total"),
                (promql.select(promql.ERRORS_RATE5M, f), "errors")], unit="reqps",
                description="Events per second as the SLI counts them; empty for raw "
                            "ratio SLIs."))
            .with_panel(history))


SYNC_ANNOTATION = "ArgoCD syncs"
ANNOTATION_FIELDS[SYNC_ANNOTATION] = {"titleFormat": "ArgoCD sync of {{name}}: {{phase}}",
                                      "tagKeys": "namespace,name,phase"}


def _sync_annotation(services: list[Service]) -> db.AnnotationQuery:
    """Deploys beside the burn they may cause: syncs of the service's ArgoCD apps."""
    apps = {svc.name: svc.apps for svc in services}
    return (db.AnnotationQuery().name(SYNC_ANNOTATION).datasource(DATASOURCE).enable(True)
            .icon_color("blue").expr(promql.sync_annotations(apps, DETAIL_FILTERS)))
