"""One end-to-end test per seed platform (`examples/platforms/<name>/`), real processes.

Each test generates the platform's own specs and Alertmanager routes, runs a real
Prometheus and Alertmanager with the Slack/SMTP/PagerDuty stand-ins, `sloexporter serve`
on a copy of the platform's manifests, and a small instrumented stand-in of the
platform's signals. It shows the healthy state (nothing pending, nothing delivered) and
then the platform's signature failure reaching the right receiver, and only that.

Time is compressed: the specs' periods become 1d, so every alert window is 5 min or
more and a total failure trips a tier within seconds; Prometheus scrapes and evaluates
every second. Rules are loaded only after the first scrapes, as a Prometheus that has
been running would have them: a brand-new one would count its first evaluations, before
any scrape, as missing data. Where Debian has the real thing it runs: redis-server and
redis_exporter (BullMQ's queue age), PostgreSQL and postgres_exporter (Supabase's
database, the invoicing primary's lag and WAL archive age). The other gauges are served
with their exporters' names over HTTP. The invoicing standby's replication lag is such a
gauge: a real lag above 15 minutes takes 15 minutes to build.
"""

from __future__ import annotations

import contextlib
import re
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from sloexporter.specs import load_paths
from tests.conftest import run_cli
from tests.e2e_app import Prometheus, serve, wait_until
from tests.platform_stand_ins import Gauges, PostgresWithExporter, RedisWithExporter
from tests.stack import (
    PAGERDUTY_KEY,
    Alertmanager,
    PagerDutyEvents,
    SlackWebhook,
    SMTPInbox,
    alertmanager_settings,
)
from tests.tools import ROOT, free_port, require_tool

pytestmark = pytest.mark.e2e

PLATFORMS = ROOT / "examples" / "platforms"
#: SLI kinds whose SLOs are measured (a ratio of 0) as soon as their signals are scraped
MEASURED_KINDS = {"threshold", "probe", "backup", "certificate", "argocd"}
DEADLINE = 90.0
STAND_IN = frozenset({"stand-in"})


@dataclass
class Platform:
    name: str
    workdir: Path
    prom: Prometheus
    gauges: Gauges
    slack: SlackWebhook
    smtp: SMTPInbox
    pagerduty: PagerDutyEvents
    manifests: Path
    services: tuple[str, ...]

    @property
    def scope(self) -> str:
        return "|".join(self.services)

    async def alerts(self, states: str = "pending|firing") -> set[tuple[str, str, str]]:
        result = await self.prom.query(
            f'ALERTS{{alertstate=~"{states}",service=~"{self.scope}"}}')
        return {(r["metric"]["service"], r["metric"]["slo"], r["metric"]["severity"])
                for r in result}

    def edit_manifest(self, file: str, old: str, new: str) -> None:
        """Change the copied manifests as a cluster change would (serve reloads them)."""
        path = self.manifests / file
        text = path.read_text()
        assert old in text, f"{old!r} not in {file}"
        path.write_text(text.replace(old, new))

    def delivered(self) -> list[str]:
        return ([f"slack: {m.title}" for m in self.slack.inbox.messages]
                + [f"email: {m.subject}" for m in self.smtp.inbox.messages]
                + [f"pagerduty: {e['payload']['summary']}" for e in self.pagerduty.inbox.messages])


def _copy_specs(name: str, dest: Path) -> None:
    """The platform's specs with every period 1d (windows scale down to 5 min)."""
    dest.mkdir()
    for spec in sorted((PLATFORMS / name / "slos").glob("*.yaml")):
        doc = yaml.safe_load(spec.read_text())
        for slo in doc["slos"]:
            slo["period"] = "1d"
        (dest / spec.name).write_text(yaml.safe_dump(doc, sort_keys=False))


def _copy_manifests(name: str, dest: Path) -> None:
    """The platform's objects without its Services: outside a cluster their DNS names do
    not resolve, so the test probes stand-ins under the same `target` labels instead."""
    dest.mkdir()
    for path in sorted((PLATFORMS / name / "cluster").glob("*.yaml")):
        chunks = re.split(r"^---\n", path.read_text(), flags=re.M)
        kept = [c for c in chunks if (yaml.safe_load(c) or {}).get("kind") != "Service"]
        (dest / path.name).write_text("---\n".join(kept))


def _measured_slos(specs: Path) -> tuple[tuple[str, ...], int]:
    services, errors = load_paths([str(specs)])
    assert not errors, errors
    measured = sum(1 for s in services for slo in s.slos if slo.sli.kind in MEASURED_KINDS)
    return tuple(sorted(s.name for s in services)), measured


@contextlib.asynccontextmanager
async def platform(tmp_path: Path, name: str, probes: dict[str, str],
                   setup: Callable[[Gauges], None],
                   extra_scrape: dict[str, str] | None = None) -> AsyncIterator[Platform]:
    """The platform's generated rules and routes live on Prometheus and Alertmanager;
    `probes` maps probe `target` labels to stand-in paths; `setup` sets healthy gauges."""
    specs, manifests, out = tmp_path / "slos", tmp_path / "cluster", tmp_path / "out"
    _copy_specs(name, specs)
    _copy_manifests(name, manifests)
    services, measured = _measured_slos(specs)
    gauges = Gauges()
    setup(gauges)
    # each port is picked right before its server binds it: a port picked early could be
    # handed out again by the next free_port() while it is still unbound
    async with SlackWebhook().running() as slack, SMTPInbox().running() as smtp, \
            PagerDutyEvents().running() as pagerduty, gauges.running():
        settings = alertmanager_settings(tmp_path, slack, smtp, pagerduty, group_wait="1s",
                                         group_interval="1s")
        result = run_cli("generate", str(specs), "-o", str(out), "--alertmanager-settings",
                         str(settings))
        assert result.returncode == 0, result.stderr
        targets = [{"name": label, "url": gauges.url(path)} for label, path in probes.items()]
        am = Alertmanager(require_tool("prometheus-alertmanager"), tmp_path)
        async with am.running(out / "alertmanager" / "alertmanager.yaml"), \
                serve(tmp_path, free_port(), {"http_probe": {
                    "targets": targets, "interval": "1s", "timeout": "1s"}},
                    manifests=manifests) as exporter:
            scrape = {"stand-in": gauges.address, "sloexporter": exporter, **(extra_scrape or {})}
            prom = Prometheus(require_tool("prometheus"), tmp_path, free_port())
            # the stand-in keeps its own labels (job included): those its exporters have
            config = prom.write_config(scrape, [], am.address, STAND_IN)
            async with prom.running(config):
                up = f"count(up == 1) == {len(scrape)}"
                await wait_until(lambda: prom.value(up), "every target scraped", 30)
                prom.write_config(scrape, sorted((out / "rules").glob("*.yaml")), am.address,
                                  STAND_IN)
                assert prom.proc is not None
                prom.proc.send_signal(signal.SIGHUP)  # reload: the rules start now
                plat = Platform(name, tmp_path, prom, gauges, slack, smtp, pagerduty,
                                manifests, services)
                await _healthy(plat, measured)
                yield plat


async def _healthy(plat: Platform, measured: int) -> None:
    """Every measured SLO reads 0 errors, nothing has been pending, nothing delivered."""
    zero = f'count(slo:sli_error:ratio_rate5m{{service=~"{plat.scope}"}} == 0) >= {measured}'
    await wait_until(lambda: plat.prom.value(zero), f"{measured} SLOs measured at 0", 60)
    bad = await plat.prom.query(f'slo:sli_error:ratio_rate5m{{service=~"{plat.scope}"}} > 0')
    assert not bad, bad
    ever = await plat.prom.query(f'count_over_time(ALERTS{{service=~"{plat.scope}"}}[10m])')
    assert not ever, f"alerts while healthy: {ever}"
    assert not plat.delivered(), plat.delivered()


def _assert_only(plat: Platform, expected: str, channel: str) -> None:
    """Every notification so far is about the failing SLO, on the expected channel."""
    others = [d for d in plat.delivered() if expected not in d]
    assert not others, f"notifications for healthy SLOs: {others}"
    assert any(d.startswith(channel) for d in plat.delivered()), plat.delivered()


# ---- the five platforms ------------------------------------------------------------------

SUPABASE_PROBES = {"http://postgrest.supabase.svc:3001/ready": "/postgrest/ready",
                   "http://auth.supabase.svc:9999/health": "/auth/health",
                   "http://storage.supabase.svc:5000/status": "/storage/status"}


def _supabase_gauges(g: Gauges) -> None:
    g.set("kube_cronjob_status_last_successful_time", time.time() - 2400,
          namespace="supabase", cronjob="etl", job="kube-state-metrics")
    g.set("kube_deployment_status_replicas_available", 2, namespace="supabase",
          deployment="processor", job="kube-state-metrics")


async def test_supabase_postgrest_down_pages_slack(tmp_path):
    pg = PostgresWithExporter(require_tool("prometheus-postgres-exporter"))
    async with pg.running(), platform(tmp_path, "supabase-microservices", SUPABASE_PROBES,
                                      _supabase_gauges,
                                      {"supabase-postgres": pg.exporter_address}) as plat:
        assert await plat.prom.value('pg_up{job="supabase-postgres"}') == 1
        plat.gauges.status["/postgrest/ready"] = 503
        page = await plat.slack.inbox.wait_for(
            lambda m: "supabase/postgrest-up" in m.title, "PostgREST's page on Slack", DEADLINE)
        assert "(page)" in page.title
        assert {a for a in await plat.alerts() if a[1] != "postgrest-up"} == set()
        _assert_only(plat, "supabase/postgrest-up", "slack")


def _gitops_gauges(g: Gauges) -> None:
    g.set("aws_sqs_approximate_age_of_oldest_message_maximum", 12, queue_name="orders",
          job="cloudwatch")
    g.set("aws_sqs_approximate_number_of_messages_visible_average", 0, queue_name="orders-dlq",
          job="cloudwatch")


async def test_gitops_missed_nightly_dump_tickets_email(tmp_path):
    async with platform(tmp_path, "gitops-platform", {}, _gitops_gauges) as plat:
        # last night's run never succeeded: the last success is now 26h old
        plat.edit_manifest("platform.yaml", "lastScheduleTime: now-5h, lastSuccessfulTime: now-5h",
                           "lastScheduleTime: now-2h, lastSuccessfulTime: now-26h")
        mail = await plat.smtp.inbox.wait_for(
            lambda m: "gitops-backups/postgres-dump" in m.subject, "the missed dump's ticket",
            DEADLINE)
        assert "(ticket)" in mail.subject
        assert "https://runbooks.example.com/backups/postgres" in mail.text
        assert await plat.alerts("firing") == {("gitops-backups", "postgres-dump", "ticket")}
        _assert_only(plat, "gitops-backups/postgres-dump", "email")


async def test_bullmq_old_job_pages_slack(tmp_path):
    redis = RedisWithExporter(require_tool("redis-server"),
                              require_tool("prometheus-redis-exporter"), require_tool("redis-cli"),
                              PLATFORMS / "bullmq-workers" / "oldest-job-age.lua", tmp_path)
    async with redis.running():
        await redis.add_job("metrics-sync", 1, age_seconds=5)
        await redis.add_job("llm-insights", 1, age_seconds=30)
        probes = {"http://insights-api.insights.svc:3000/readyz": "/readyz"}
        async with platform(tmp_path, "bullmq-workers", probes, lambda g: None,
                            {"redis": redis.exporter_address}) as plat:
            age = 'redis_script_values{job="redis",key="metrics-sync"}'
            assert 0 <= (await plat.prom.value(age) or -1) < 300
            # a job stuck at the head of the queue for 10 minutes
            await redis.add_job("metrics-sync", 2, age_seconds=600, oldest=True)
            page = await plat.slack.inbox.wait_for(
                lambda m: "insights/metrics-sync-queue-age" in m.title,
                "the queue age's page on Slack", DEADLINE)
            assert "(page)" in page.title
            assert await plat.prom.value(age) >= 600
            assert {a[1] for a in await plat.alerts()} == {"metrics-sync-queue-age"}
            _assert_only(plat, "insights/metrics-sync-queue-age", "slack")


POLYGLOT_PROBES = {f"http://{n}.web.svc:{p}/readyz": f"/{n}/readyz"
                   for n, p in (("api", 3000), ("auth", 8080), ("image", 8000))}


async def test_polyglot_certificate_5_days_from_expiry_pages_slack(tmp_path):
    async with platform(tmp_path, "polyglot-services", POLYGLOT_PROBES, lambda g: None) as plat:
        plat.edit_manifest("services.yaml", "notAfter: now+70d", "notAfter: now+5d")
        page = await plat.slack.inbox.wait_for(
            lambda m: "polyglot-tls/expiry" in m.title, "the expiring certificate's page",
            DEADLINE)
        assert "(page)" in page.title
        assert "https://runbooks.example.com/web/certificates" in page.text
        # 5 days left is also under the renewal SLO's 21: its own ticket, by email
        mail = await plat.smtp.inbox.wait_for(lambda m: "polyglot-tls/renewal" in m.subject,
                                              "the renewal ticket", DEADLINE)
        assert "(ticket)" in mail.subject
        assert {a[:2] for a in await plat.alerts()} == {("polyglot-tls", "expiry"),
                                                       ("polyglot-tls", "renewal")}
        others = [d for d in plat.delivered() if "polyglot-tls/" not in d]
        assert not others, others


def _standby_lag(g: Gauges, seconds: float) -> None:
    g.set("pg_replication_lag_seconds", seconds, job="invoicing-postgres",
          instance="standby-0")


async def test_invoicing_replication_lag_over_15_minutes_pages_pagerduty(tmp_path):
    """The primary is a real PostgreSQL with a real postgres_exporter (0.11: its lag is
    `pg_replication_lag`, 0 on a primary; its WAL archive age is real). The standby's lag
    is a stand-in gauge with v0.13's name: the spec's query reads either."""
    pg = PostgresWithExporter(require_tool("prometheus-postgres-exporter"))
    async with pg.running():
        # archive one WAL segment, so the archive age is a number, not NaN
        await pg.sql("CREATE TABLE invoices (id int); INSERT INTO invoices VALUES (1)")
        await pg.sql("SELECT pg_switch_wal()")
        async with platform(tmp_path, "invoicing", {}, lambda g: _standby_lag(g, 2),
                            {"invoicing-postgres": pg.exporter_address}) as plat:
            assert await plat.prom.value('pg_replication_lag{job="invoicing-postgres"}') == 0
            archive_age = await plat.prom.value(
                'pg_stat_archiver_last_archive_age{job="invoicing-postgres"}')
            assert archive_age is not None and 0 <= archive_age < 900
            await _lag_pages_pagerduty(plat)


async def _lag_pages_pagerduty(plat: Platform) -> None:
    _standby_lag(plat.gauges, 16 * 60)
    event = await plat.pagerduty.inbox.wait_for(
        lambda e: "invoicing/replication-rpo" in e["payload"]["summary"],
        "the RPO page on PagerDuty", DEADLINE)
    assert event["routing_key"] == PAGERDUTY_KEY
    assert event["event_action"] == "trigger"
    assert event["payload"]["severity"] == "critical"
    await plat.slack.inbox.wait_for(lambda m: "invoicing/replication-rpo" in m.title,
                                    "the same page on Slack", DEADLINE)
    assert {a[1] for a in await plat.alerts()} == {"replication-rpo"}
    _assert_only(plat, "invoicing/replication-rpo", "pagerduty")
