"""Dashboards over what `sloexporter serve` exports: ArgoCD, backups, certificates."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import piechart
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from sloexporter import names, promql
from sloexporter.dashboards.common import (
    ARGOCD,
    BACKUPS,
    CERTIFICATES,
    DATASOURCE,
    graph,
    grid,
    new_dashboard,
    query,
    single,
    unit_override,
    variable,
)

RED_ABOVE_0 = [(None, "green"), (1, "red")]
#: The expiry horizons the certificate dashboard counts, in days.
EXPIRY_DAYS = (7, 14, 28)
APP = "{{namespace}}/{{name}}"


def _pie(title: str, expr: str, legend: str) -> piechart.Panel:
    # one series per status, so the pie has a slice for each
    target = query(expr, legend, "A", instant=True).format(PromQueryFormat.TIME_SERIES)
    return (piechart.Panel().title(title).datasource(DATASOURCE).span(6).height(8)
            .with_target(target))


def argocd() -> db.Dashboard:
    f = promql.template_matchers("namespace", "project")
    app_keys = "namespace, name, project"
    return (new_dashboard(ARGOCD)
            .with_variable(variable("namespace", "Namespace", names.ARGOCD_APP_INFO))
            .with_variable(variable("project", "Project", names.ARGOCD_APP_INFO,
                                    promql.template_matchers("namespace")))
            .with_panel(single("Apps", promql.count_or_zero(
                promql.select(names.ARGOCD_APP_INFO, f)), width=6))
            .with_panel(single("OutOfSync", promql.count_zero(names.ARGOCD_APP_SYNCED, f),
                               width=6, thresholds=RED_ABOVE_0))
            .with_panel(single("Unhealthy", promql.count_zero(names.ARGOCD_APP_HEALTHY, f),
                               width=6, thresholds=RED_ABOVE_0))
            .with_panel(single("Failed syncs in range", promql.argocd_failed_syncs(f), width=6,
                               thresholds=RED_ABOVE_0))
            .with_panel(_pie("Apps by sync status", promql.argocd_apps_by("sync_status", f),
                             "{{sync_status}}"))
            .with_panel(_pie("Apps by health status", promql.argocd_apps_by("health_status", f),
                             "{{health_status}}"))
            .with_panel(graph("Sync operations by result",
                              [(promql.argocd_sync_operations(f, "phase"), "{{phase}}")],
                              description="Completed sync operations per interval."))
            .with_panel(grid("OutOfSync apps and for how long", [
                (promql.argocd_not_synced_for(f), "Out of sync for")], width=12,
                sort="Out of sync for", desc=True,
                description="Time since the app was last seen Synced; an app not Synced in "
                            "the whole time range shows the range.")
                .unit("s"))
            .with_panel(grid("Degraded and other unhealthy apps, and for how long", [
                (promql.argocd_unhealthy_for(f), "Unhealthy for")], width=12,
                sort="Unhealthy for", desc=True).unit("s"))
            .with_panel(grid("Sync operations and failures per app in range", [
                (promql.argocd_sync_operations(f, f"{app_keys}, phase", promql.DASHBOARD_RANGE),
                 "Operations")], width=12, sort="Operations", desc=True))
            .with_panel(grid("Time since last sync", [
                (promql.argocd_since_last_sync(f), "Since last sync")], width=12,
                sort="Since last sync", desc=True).unit("s")))


def backups() -> db.Dashboard:
    f = promql.template_matchers("kind", "namespace")
    return (new_dashboard(BACKUPS, "now-7d")
            .with_variable(variable("kind", "Kind", names.BACKUP_EXPECTED_INTERVAL))
            .with_variable(variable("namespace", "Namespace", names.BACKUP_EXPECTED_INTERVAL,
                                    promql.template_matchers("kind")))
            .with_panel(single("Backups", promql.count_or_zero(
                promql.select(names.BACKUP_EXPECTED_INTERVAL, f)), width=6))
            .with_panel(single("Overdue", promql.count_or_zero(promql.backup_overdue_by(f)),
                               width=6, thresholds=RED_ABOVE_0))
            .with_panel(single("Never succeeded", promql.count_or_zero(
                promql.backup_never_succeeded(f)), width=6, thresholds=RED_ABOVE_0))
            .with_panel(single("Failed runs in range", promql.backup_failed_runs(f), width=6,
                               thresholds=RED_ABOVE_0))
            .with_panel(grid("Last success age against the expected interval", [
                (promql.backup_age(f), "Last success age"),
                (promql.select(names.BACKUP_EXPECTED_INTERVAL, f), "Expected interval"),
                (promql.backup_age_ratio(f), "Age / interval"),
                (promql.select(names.BACKUP_LAST_DURATION, f), "Last duration")],
                sort="Age / interval", desc=True,
                description="Above 1 interval a backup is late; the backup SLOs add their "
                            "grace on top.")
                .unit("s").override_by_name("Age / interval", [unit_override("x")]))
            .with_panel(grid("Overdue backups", [
                (promql.backup_overdue_by(f), "Overdue by")], width=12,
                sort="Overdue by", desc=True).unit("s"))
            .with_panel(grid("Runs in range by result", [
                (promql.backup_runs(f, "kind, namespace, name, result", promql.DASHBOARD_RANGE),
                 "Runs")], width=12))
            .with_panel(graph("Runs by result", [
                (promql.backup_runs(f, "result"), "{{result}}")]))
            .with_panel(graph("Last run duration", [
                (promql.select(names.BACKUP_LAST_DURATION, f), "{{kind}} " + APP)], unit="s")))


def certificates() -> db.Dashboard:
    f = promql.template_matchers("source", "namespace")
    dash = (new_dashboard(CERTIFICATES)
            .with_variable(variable("source", "Source", names.CERT_NOT_AFTER))
            .with_variable(variable("namespace", "Namespace", names.CERT_NOT_AFTER,
                                    promql.template_matchers("source"))))
    for days in EXPIRY_DAYS:
        dash = dash.with_panel(single(
            f"Expiring within {days} days", promql.certs_expiring_within(days, f),
            description="Certificates (expired ones included) with fewer days left.",
            thresholds=RED_ABOVE_0))
    return (dash
            .with_panel(single("Not Ready (cert-manager)", promql.count_zero(names.CERT_READY, f),
                               thresholds=RED_ABOVE_0))
            .with_panel(single("TLS probes failing", promql.count_or_zero(
                promql.tls_probe_failures()), width=8, thresholds=RED_ABOVE_0))
            .with_panel(grid("Days left per certificate", [
                (promql.cert_days_left(f), "Days left")], height=12, sort="Days left")
                .decimals(1))
            .with_panel(grid("TLS probe failures with reasons", [
                (promql.tls_probe_failures(), "Failing")], width=12))
            .with_panel(graph("TLS probe failures by reason", [
                (promql.tls_probe_failures("reason"), "{{reason}}")])))
