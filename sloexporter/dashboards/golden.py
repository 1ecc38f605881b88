"""Golden signals: sloexporter's HTTP probes per target, and each instrumented service.

The instrumented services are the `http` SLIs of the specs: their metric names, status
label and selector come from the same preset (`sli.http_traffic`) the rules use.
Saturation is drawn where the convention defines an in-flight gauge (OpenTelemetry's
`http_server_active_requests`); prom-client and promhttp define none, and a probe
measures from outside, so those rows have no saturation panel.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from sloexporter import names, promql
from sloexporter.dashboards.common import GOLDEN, graph, new_dashboard, variable
from sloexporter.model import Service, Traffic
from sloexporter.sli import probe_traffic

QUANTILES = ("0.5", "0.95", "0.99")


def instrumented(services: list[Service]) -> list[tuple[str, Traffic]]:
    """(service, traffic) for each distinct request metric set the specs' SLIs read."""
    seen: list[tuple[str, Traffic]] = []
    for svc in sorted(services, key=lambda s: s.name):
        for slo in svc.slos:
            traffic = slo.sli.traffic
            if traffic is not None and traffic.convention != "probe" and \
                    (svc.name, traffic) not in seen:
                seen.append((svc.name, traffic))
    return seen


def signal_panels(traffic: Traffic, by: str, legend: str) -> list[db.Panel]:
    panels = [
        graph("Request rate", [(promql.request_rate(traffic, by), legend)], unit="reqps",
              width=6),
        graph("Error ratio", [(promql.request_error_ratio(traffic, by), legend)],
              unit="percentunit", width=6,
              description=f"Requests whose {traffic.status_label} matches "
                          f"{traffic.errors_regex}, as the SLI counts them."),
    ]
    if traffic.duration:
        panels.append(graph("Latency p50 / p95 / p99", [
            (promql.latency_quantile(traffic, q, by), f"p{float(q) * 100:g} {legend}")
            for q in QUANTILES], unit="s", width=6))
    if traffic.in_flight:
        panels.append(graph("Saturation: requests in flight",
                            [(promql.in_flight(traffic, by), legend)], width=6))
    return panels


def golden(services: list[Service]) -> db.Dashboard:
    dash = (new_dashboard(GOLDEN, "now-6h")
            .with_variable(variable("target", "Probe target", names.PROBE_REQUESTS))
            .with_row(db.Row("HTTP probes by target (sloexporter_probe_*)")))
    probes = probe_traffic(promql.template_selector("target"))
    for panel in signal_panels(probes, "target", "{{target}}"):
        dash = dash.with_panel(panel)
    for service, traffic in instrumented(services):
        row = db.Row(f"{service}: {traffic.convention} {traffic.requests}{traffic.selector}") \
            .collapsed(True)
        for panel in signal_panels(traffic, "", service):
            row = row.with_panel(panel)
        dash = dash.with_row(row)
    return dash
