"""End to end on 127.0.0.1, real processes only.

An instrumented app and `sloexporter serve --manifests examples/cluster` are scraped by a
real Prometheus that evaluates the rules `sloexporter generate` wrote; its alerts go to a
real Alertmanager configured by the same `generate`, which delivers pages to a
Slack-compatible webhook and tickets to an SMTP inbox. Every dashboard query then runs
against that Prometheus.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sloexporter.dashboards.queries import dashboard_queries
from tests.conftest import run_cli
from tests.e2e_app import App, Prometheus, serve, wait_until
from tests.stack import Alertmanager, SlackWebhook, SMTPInbox, alertmanager_settings
from tests.tools import free_port, require_tool

pytestmark = pytest.mark.e2e

RUNBOOK = "https://runbooks.example.com/e2e-shop/availability"
DASHBOARD = "https://grafana.example.com/d/sloexporter-slo-detail?var-service=e2e-shop"

# 1d periods scale the windows down (5 min is the floor), so the page fires in seconds;
# the rules come from the same code path as any other period.
SHOP = f"""\
apiVersion: sloexporter.dev/v1
kind: ServiceLevels
service: e2e-shop
labels: {{team: payments}}
slos:
  - name: availability
    objective: 99
    period: 1d
    description: Checkout requests succeed
    sli:
      http: {{convention: prometheus, selector: '{{job="e2e-app"}}', signal: availability}}
    alerting:
      runbook_url: {RUNBOOK}
      dashboard_url: {DASHBOARD}
  - name: latency
    objective: 99
    period: 1d
    description: Checkout requests finish within 500 ms
    sli:
      http: {{convention: prometheus, selector: '{{job="e2e-app"}}', signal: latency,
             threshold: 0.5}}
"""

# The demo cluster's MinIO mirror is overdue: a ticket. Everything else here is healthy.
PLATFORM = """\
apiVersion: sloexporter.dev/v1
kind: ServiceLevels
service: e2e-platform
labels: {team: platform}
slos:
  - name: minio-rpo
    objective: 99
    description: The MinIO mirror succeeded within its schedule plus 15 minutes
    sli:
      backup: {selector: '{kind="cronjob",namespace="storage",name="minio-mirror"}'}
    alerting:
      page: {disabled: true}
      runbook_url: https://runbooks.example.com/backups/minio
  - name: postgres-rpo
    objective: 99
    sli:
      backup: {selector: '{kind="cronjob",namespace="databases",name="postgres-pg-dumpall"}'}
  - name: shop-tls-renewal
    objective: 99.9
    sli:
      certificate: {selector: '{source="certificate",name="shop-tls"}', min_days_left: 14}
  - name: frontend-synced
    objective: 99
    sli:
      argocd: {selector: '{name="shop-frontend"}'}
"""
HEALTHY = ("latency", "postgres-rpo", "shop-tls-renewal", "frontend-synced")


async def alerts(prom: Prometheus, state: str = "firing") -> set[tuple[str, str, str]]:
    """(service, slo, severity) of every alert in `state`."""
    result = await prom.query(f'ALERTS{{alertstate="{state}"}}')
    return {(r["metric"].get("service", ""), r["metric"].get("slo", ""),
             r["metric"].get("severity", "")) for r in result}


# Every panel of these returns data on the demo cluster; the others must at least execute.
MUST_HAVE_DATA = ("slo-overview.json", "argocd.json", "backups.json", "certificates.json")


# Prometheus 3 changed range selection (left-open) and classic-histogram `le` handling:
# the same rules must page, ticket and stay quiet on both majors.
@pytest.mark.parametrize("binary", ["prometheus", "prometheus3"])
async def test_outage_pages_overdue_backup_tickets_healthy_slos_stay_quiet(tmp_path, binary):
    prometheus = require_tool(binary)
    am = Alertmanager(require_tool("prometheus-alertmanager"), tmp_path)
    specs = tmp_path / "slos"
    specs.mkdir()
    (specs / "shop.yaml").write_text(SHOP)
    (specs / "platform.yaml").write_text(PLATFORM)
    out = tmp_path / "out"
    app = App()
    prom = Prometheus(prometheus, tmp_path, free_port())
    async with SlackWebhook().running() as slack, SMTPInbox().running() as smtp:
        settings = alertmanager_settings(tmp_path, slack, smtp, group_wait="1s",
                                         group_interval="1s")
        res = run_cli("generate", str(specs), "-o", str(out), "--alertmanager-settings",
                      str(settings))
        assert res.returncode == 0, res.stderr
        async with am.running(out / "alertmanager" / "alertmanager.yaml"), \
                app.running(free_port()), serve(tmp_path, free_port(), {"http_probe": {
                    "targets": [{"name": "e2e-checkout", "url": app.url + "/checkout"}],
                    "interval": "1s", "timeout": "1s"}}) as exporter:
            config = prom.write_config(
                {"e2e-app": app.url.removeprefix("http://"), "sloexporter": exporter},
                sorted((out / "rules").glob("*.yaml")), am.address)
            async with prom.running(config):
                await _outage_and_notifications(prom, app, slack, smtp)
                await _dashboards_run(prom, out / "dashboards")


async def _outage_and_notifications(prom: Prometheus, app: App, slack: SlackWebhook,
                                    smtp: SMTPInbox) -> None:
    # healthy traffic first: the SLI is measured and says 0 errors
    ratio = 'slo:sli_error:ratio_rate5m{service="e2e-shop",slo="availability"}'
    await wait_until(lambda: _equals(prom, ratio, 0.0), "a measured error ratio of 0")
    mail = await smtp.inbox.wait_for(lambda m: "e2e-platform/minio-rpo" in m.subject,
                                     "the overdue backup's ticket email", 60)
    assert "https://runbooks.example.com/backups/minio" in mail.text + mail.html
    assert not {a for a in await alerts(prom, "pending") | await alerts(prom)
                if a[0] == "e2e-shop"}, "the healthy app alerted"

    app.failing = True
    page = await slack.inbox.wait_for(lambda m: "e2e-shop/availability" in m.title,
                                      "the outage's page on Slack", 60)
    assert f"<{RUNBOOK}|runbook>" in page.text and f"<{DASHBOARD}|dashboard>" in page.text
    assert re.search(r"burn rate [0-9.]+x over 5m", page.text), page.text
    assert "Budget remaining: " in page.text and "Budget remaining: unknown" not in page.text
    # once per alert, not again in the description
    assert page.text.count("Budget remaining") == page.text.count("page: burn rate"), page.text

    firing = await alerts(prom) | await alerts(prom, "pending")
    assert ("e2e-shop", "availability", "page") in firing
    assert not {a for a in firing if a[1] in HEALTHY}, firing
    assert ("e2e-platform", "minio-rpo", "page") not in firing  # its page is disabled
    delivered = [m.title for m in slack.inbox.messages] + [m.subject for m in smtp.inbox.messages]
    assert not [d for d in delivered for slo in HEALTHY if f"/{slo}" in d], delivered


async def _dashboards_run(prom: Prometheus, folder: Path) -> None:
    files = sorted(folder.glob("*.json"))
    assert {f.name for f in files} >= set(MUST_HAVE_DATA)
    empty: list[str] = []
    ran = 0
    for path in files:
        data = json.loads(path.read_text())
        panels: dict[str, bool] = {}
        for query in dashboard_queries(data):
            result = await prom.query(query.expr)  # fails on any PromQL error
            ran += 1
            if query.where.startswith("panel "):
                where = query.where.rsplit(" ", 1)[0]  # one panel, all its targets
                panels[where] = panels.get(where, False) or bool(result)
        assert panels, f"{path.name}: no panel queries"
        if path.name in MUST_HAVE_DATA:
            empty += [f"{path.name}: {where}" for where, has in panels.items() if not has]
    print(f"{ran} dashboard queries ran against Prometheus")
    assert not empty, "panels without data:\n" + "\n".join(empty)


async def _equals(prom: Prometheus, expr: str, expected: float) -> bool:
    return await prom.value(expr) == expected


async def _has(prom: Prometheus, alert: tuple[str, str, str]) -> bool:
    return alert in await alerts(prom)
