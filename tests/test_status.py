"""The status service against a real Prometheus 2.42 with 36 days of known history.

Every expected number is computed by hand from the traffic model in
tests/status_history.py, not read back from Prometheus.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from sloexporter.config import Config
from sloexporter.server import Exporter
from sloexporter.sources.store import Shard
from sloexporter.specs import load_paths
from sloexporter.status.config import StatusConfig
from sloexporter.status.service import StatusService
from sloexporter.status.web import build_status_app
from tests import status_history as hist
from tests.tools import ROOT

DAY = hist.DAY


def status_config(url: str, **extra: Any) -> StatusConfig:
    return StatusConfig.model_validate({
        "prometheus": {"url": url, "query_timeout": 20},
        "calendar": {"period": "month", "timezone": hist.TZ, "history": 2},
        "grafana_url": "http://grafana.example", **extra})


def service_at(history: hist.History, at: float | None = None, **extra: Any) -> StatusService:
    services, errors = load_paths([str(history.specs)])
    assert not errors
    clock = (lambda: float(at)) if at is not None else time.time
    return StatusService(status_config(history.url, **extra),
                         [s for svc in services for s in svc.slos], clock)


@pytest.fixture
async def pinned(history: hist.History) -> AsyncIterator[TestClient]:
    """The API and UI evaluated at T0, the end of the backfilled recorded series."""
    svc = service_at(history, history.t0)
    await svc.refresh()
    assert svc.error is None, svc.error
    exporter = Exporter(Config(), Shard(0, 1))
    client = TestClient(TestServer(build_status_app(exporter, svc)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
        await svc.client.close()


async def get_json(client: TestClient, path: str, status: int = 200) -> dict[str, Any]:
    resp = await client.get(path)
    body = await resp.json()
    assert resp.status == status, body
    return body  # type: ignore[no-any-return]


def by_name(body: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(i["service"], i["slo"]): i for i in body["slos"]}


def approx(value: float) -> Any:
    return pytest.approx(value, rel=1e-6, abs=1e-9)


async def test_api_numbers_equal_hand_computed_values(history, pinned):
    t0, jobs = history.t0, history.jobs
    slos = by_name(await get_json(pinned, "/api/v1/slos"))
    checkout = slos[("checkout", "availability")]
    ratio = jobs["checkout"].ratio(t0 - 30 * DAY, t0)
    assert checkout["sli"] == approx(1 - ratio)
    assert checkout["error_budget_remaining"] == approx(1 - ratio / 0.001)
    total, errors = jobs["checkout"].sums(t0 - 30 * DAY, t0)
    assert checkout["error_budget"]["unit"] == "requests"
    assert checkout["error_budget"]["events"] == approx(total)
    assert checkout["error_budget"]["remaining"] == approx(0.001 * total - errors)
    # calendar month in Europe/Berlin: from its first midnight to T0
    month = hist.month_start(t0)
    cal = checkout["calendar"]
    assert cal["start"] == month
    assert cal["sli"] == approx(1 - jobs["checkout"].ratio(month, t0))
    assert cal["error_budget_remaining"] == approx(1 - jobs["checkout"].ratio(month, t0) / 0.001)
    # every window's burn rate, as the rules derive it from the recorded 5m series
    assert checkout["burn_rates"]["5m"] == approx(jobs["checkout"].ratio(t0 - 300, t0) / 0.001)
    for window, seconds in (("30m", 1800), ("1h", 3600), ("6h", 21600), ("1d", DAY),
                            ("3d", 3 * DAY)):
        expected = jobs["checkout"].derived_window_ratio(t0, seconds) / 0.001
        assert checkout["burn_rates"][window] == approx(expected), window
        # the rules' derivation stays near the exact window (Prometheus 2 reads w/5m + 1 samples)
        exact = jobs["checkout"].window_ratio(t0, seconds) / 0.001
        assert checkout["burn_rates"][window] == pytest.approx(exact, rel=0.1), window
    page = next(t for t in checkout["tiers"] if t["long_window"] == "1h")
    assert page["threshold"] == 14.4 and page["firing"] is True
    assert checkout["objective"] == 99.9 and checkout["period"] == "30d"
    assert checkout["labels"] == {"team": "payments"} and checkout["origin"] == "native"
    assert checkout["status"] in ("OK", "WARNING")
    # time to exhaustion: the budget left, spent at the current 1h burn rate
    burn_1h = jobs["checkout"].derived_window_ratio(t0, 3600) / 0.001
    remaining = 1 - ratio / 0.001
    assert remaining > 0 and burn_1h > 0
    assert checkout["time_to_exhaustion_seconds"] == approx(remaining * 30 * DAY / burn_1h)

    search = slos[("search", "availability")]
    ratio = jobs["search"].ratio(t0 - 7 * DAY, t0)
    assert search["period"] == "7d"
    assert search["error_budget_remaining"] == approx(1 - ratio / 0.005)
    assert search["error_budget_remaining"] < 0 and search["status"] == "BREACHED"
    assert search["time_to_exhaustion_seconds"] == 0


async def test_list_page_sorts_by_budget_left_both_ways(pinned):
    import re
    from urllib.parse import quote
    items = (await get_json(pinned, "/api/v1/slos"))["slos"]
    known = sorted((i for i in items if i["error_budget_remaining"] is not None),
                   key=lambda i: i["error_budget_remaining"])
    hrefs = [f"/slo/{quote(i['service'], safe='')}/{quote(i['slo'], safe='')}" for i in known]
    assert len(hrefs) >= 3

    async def order(query: str) -> list[str]:
        html = await (await pinned.get("/" + query)).text()
        rows = re.findall(r'<tr data-slo="[^"]*"><td><a href="([^"]+)"', html)
        return [h for h in rows if h in hrefs]

    assert await order("") == hrefs  # the default: least budget left first
    assert await order("?sort=budget") == hrefs
    assert await order("?sort=-budget") == hrefs[::-1]
    assert await order("?sort=nonsense") == hrefs  # an unknown sort falls back, no error


async def test_foreign_slos_share_the_list(history, pinned):
    t0, jobs = history.t0, history.jobs
    slos = by_name(await get_json(pinned, "/api/v1/slos"))
    sloth = slos[("api", "requests-availability")]
    assert sloth["origin"] == "sloth" and sloth["objective"] == 99.9
    # Sloth's period SLI is the unweighted mean of 5m ratios: the quiet night weighs in
    unweighted = jobs["api"].mean_of_block_ratios(t0 - 30 * DAY, t0)
    assert sloth["sli"] == approx(1 - unweighted)
    assert sloth["sli"] < 1 - jobs["api"].ratio(t0 - 30 * DAY, t0)
    assert sloth["burn_rates"]["1h"] == approx(jobs["api"].window_ratio(t0, 3600) / 0.001)
    assert "description" in " ".join(sloth["unknown"])
    # a time-based SLI's absolute budget is in minutes of the period
    minutes = 30 * DAY / 60
    assert sloth["error_budget"]["unit"] == "minutes"
    assert sloth["error_budget"]["allowed"] == approx(0.001 * minutes)
    assert sloth["error_budget"]["consumed"] == approx(unweighted * minutes)
    assert sloth["error_budget"]["remaining"] == approx((0.001 - unweighted) * minutes)
    pyrra = slos[("shop", "pyrra-errors")]
    assert pyrra["origin"] == "pyrra" and pyrra["objective"] == 99.0
    assert pyrra["period"] == "28d"
    ratio = jobs["pyrra-app"].ratio(t0 - 28 * DAY, t0)
    assert pyrra["sli"] == approx(1 - ratio)
    assert pyrra["error_budget_remaining"] == approx(1 - ratio / 0.01)
    assert pyrra["burn_rates"]["1h"] == approx(jobs["pyrra-app"].window_ratio(t0, 3600) / 0.01)
    assert pyrra["labels"] == {"team": "shop"}
    # a Sloth SLO whose error series are missing, named with HTML
    broken = slos[(hist.HTML_SERVICE, hist.HTML_SLO)]
    assert broken["status"] == "NO_DATA" and broken["sli"] is None
    assert "no error-ratio series" in broken["reason"]


async def test_list_filters(pinned):
    def names(body: dict[str, Any]) -> set[str]:
        return {f"{i['service']}/{i['slo']}" for i in body["slos"]}

    assert names(await get_json(pinned, "/api/v1/slos?service=search")) == \
        {"search/availability"}
    assert names(await get_json(pinned, "/api/v1/slos?status=BREACHED")) >= \
        {"search/availability"}
    assert names(await get_json(pinned, "/api/v1/slos?label=team=payments")) == \
        {"checkout/availability"}
    assert (await get_json(pinned, "/api/v1/slos?status=GREEN", 400))["error"]
    assert (await get_json(pinned, "/api/v1/slos?label=team", 400))["error"]


async def test_detail_has_graphs_and_calendar_history(history, pinned):
    t0, jobs = history.t0, history.jobs
    body = await get_json(pinned, "/api/v1/slos/checkout/availability")
    graphs = body["graphs"]
    for name in ("error_budget_remaining", "sli", "error_rate"):
        assert 10 <= len(graphs[name]) <= 200, name
    last_t, last_sli = graphs["sli"][-1]
    assert last_t == t0 and last_sli == approx(1 - jobs["checkout"].ratio(t0 - 30 * DAY, t0))
    labels = [h["label"] for h in body["calendar_history"]]
    assert len(labels) == 3 and labels[0] == body["calendar"]["label"]
    previous = body["calendar_history"][1]
    start = max(int(previous["start"]), t0 - hist.HISTORY)
    assert previous["sli"] == approx(1 - jobs["checkout"].ratio(start, int(previous["end"])))
    await get_json(pinned, "/api/v1/slos/checkout/nothing", 404)


@pytest.mark.parametrize("key", [("shop", "pyrra-errors"), ("api", "requests-availability")])
async def test_detail_graphs_of_foreign_slos_end_at_the_listed_numbers(pinned, key):
    """Pyrra's and Sloth's SLOs get the same detail as native ones: the graphs' last point
    is the list's SLI and budget, read through each tool's own series."""
    item = await get_json(pinned, f"/api/v1/slos/{key[0]}/{key[1]}")
    graphs = item["graphs"]
    for name in ("error_budget_remaining", "sli", "error_rate"):
        assert len(graphs[name]) >= 10, (key, name)
    assert graphs["sli"][-1][1] == approx(item["sli"])
    assert graphs["error_budget_remaining"][-1][1] == approx(item["error_budget_remaining"])
    assert all(0 <= v <= 1 for _, v in graphs["error_rate"])


async def test_gate(pinned):
    blocked = await get_json(pinned, "/api/v1/gate?service=search", 423)
    assert blocked["allowed"] is False and "search/availability" in blocked["reason"]
    ok = await get_json(pinned, "/api/v1/gate?service=shop&slo=pyrra-errors")
    assert ok["allowed"] is True
    await get_json(pinned, "/api/v1/gate?service=nobody", 404)
    await get_json(pinned, "/api/v1/gate", 400)


async def test_platform(history, pinned):
    body = await get_json(pinned, "/api/v1/platform")
    (unsynced,) = body["argocd_out_of_sync"]
    assert unsynced["name"] == "shop"
    # to the minute: the last minute at which it was seen synced
    assert unsynced["for_seconds"] == pytest.approx(2 * 3600, abs=hist.STEP)
    (degraded,) = body["argocd_degraded"]
    assert degraded["name"] == "web" and degraded["health_status"] == "Degraded"
    (backup,) = body["backups_overdue"]
    assert backup["name"] == "nightly" and backup["overdue_seconds"] == pytest.approx(DAY)
    (cert,) = body["certificates_expiring"]
    assert cert["days_left"] == pytest.approx(5)
    assert body["failing_probes"] == [{"kind": "tls", "target": "db.example:5432",
                                       "reason": "expired"}]
    assert (await get_json(pinned, "/api/v1/platform?days=1"))["certificates_expiring"] == []


async def test_queries_per_refresh_are_bounded_and_exported(pinned):
    text = await (await pinned.get("/metrics")).text()
    queries = next(float(line.split()[1]) for line in text.splitlines()
                   if line.startswith("sloexporter_status_refresh_queries "))
    # discovery 5, burn windows 2, alerts 1, two rolling periods and the calendar month
    assert 0 < queries <= 20
    assert "sloexporter_status_up 1" in text


async def test_pages_escape_html_names(pinned):
    resp = await pinned.get("/")
    html = await resp.text()
    assert resp.status == 200
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html
    assert 'onerror="alert' not in html
    from urllib.parse import quote
    path = f"/slo/{quote(hist.HTML_SERVICE, safe='')}/{quote(hist.HTML_SLO, safe='')}"
    detail = await pinned.get(path)
    text = await detail.text()
    assert detail.status == 200 and "<script>alert" not in text and "NO_DATA" in text
    page = await (await pinned.get("/slo/checkout/availability")).text()
    assert "http://grafana.example/d/sloexporter-slo-detail?var-service=checkout&amp;" \
           "var-slo=availability" in page
    assert page.count("<polyline") == 3 and "Calendar periods" in page


async def test_live_alerts_and_gate_block_on_page(history):
    """Prometheus evaluates the loaded rules live: the ongoing incident pages."""
    svc = service_at(history)
    try:
        deadline = time.monotonic() + 60
        while True:
            await svc.refresh()
            item = svc.snapshot.by_key[("checkout", "availability")] if svc.snapshot else None
            if item and item["alerts"]["page"] == "firing":
                break
            assert time.monotonic() < deadline, (svc.error, item and item["alerts"])
            await asyncio.sleep(1)
        assert item["status"] == "WARNING"
        from sloexporter.status.api import gate_decision
        status, body = gate_decision(svc, "checkout", None)
        assert status == 423 and "page alert" in body["reason"]
    finally:
        await svc.client.close()


# --- Reports ------------------------------------------------------------------------------

def run_report(history: hist.History, outdir: Path, *period: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "sloexporter.cli", "report", "--prometheus-url", history.url,
         "--slos", str(history.specs), "--timezone", hist.TZ, "-o", str(outdir), *period],
        capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    (path,) = outdir.glob("*.json")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_report_for_the_month_before(history, tmp_path):
    """The month before T0's month: SLI, previous month, peak burn, by hand."""
    from zoneinfo import ZoneInfo

    from sloexporter.status import calendar
    tz = ZoneInfo(hist.TZ)
    month = calendar.previous(calendar.containing("month", history.t0, tz), tz)
    rep = run_report(history, tmp_path, "--period", month.label)
    rows = {(r["service"], r["slo"]): r for r in rep["slos"]}
    job = history.jobs["checkout"]
    first = history.t0 - hist.HISTORY
    start, end = max(int(month.start), first), int(month.end)
    row = rows[("checkout", "availability")]
    assert row["sli"] == approx(1 - job.ratio(start, end))
    assert row["error_budget_consumed"] == approx(job.ratio(start, end) / 0.001)
    prev = calendar.previous(month, tz)
    if prev.end > first + 300:
        assert row["previous_sli"] == approx(1 - job.ratio(max(int(prev.start), first),
                                                           int(prev.end)))
    peak = max(job.derived_window_ratio(t, 3600) for t in range(start + 300, end + 1, 300)
               if t <= history.t0 and t - 3600 >= first + 300)
    assert row["peak_burn_rate"] == pytest.approx(peak / 0.001, rel=1e-6)
    assert row["no_data_minutes"] == pytest.approx(0, abs=10)
    assert row["alerts_fired"] == {"page": 0, "ticket": 0}
    services = {r["service"]: r for r in rep["services"]}
    assert services["checkout"]["slos"] == 1
    teams = {r["team"]: r for r in rep["teams"]}
    assert "payments" in teams and "discovery" in teams
    md = (tmp_path / f"slo-report-{month.label}.md").read_text()
    html = (tmp_path / f"slo-report-{month.label}.html").read_text()
    assert "| checkout | availability |" in md and "&lt;script&gt;" in html
    assert "<script>alert" not in html and "<script>alert" not in md


def test_report_for_an_iso_week_and_a_quarter(history, tmp_path):
    """--week and --quarter choose their calendar periods in --timezone."""
    from zoneinfo import ZoneInfo

    from sloexporter.status import calendar
    tz = ZoneInfo(hist.TZ)
    week = calendar.previous(calendar.containing("week", history.t0, tz), tz)
    rep = run_report(history, tmp_path / "week", "--week", week.label)
    assert rep["period"]["label"] == week.label and rep["period"]["start"] == week.start
    assert rep["period"]["previous"] == calendar.previous(week, tz).label
    row = next(r for r in rep["slos"] if (r["service"], r["slo"]) == ("checkout",
                                                                       "availability"))
    job = history.jobs["checkout"]
    assert row["sli"] == approx(1 - job.ratio(int(week.start), int(week.end)))
    quarter = calendar.containing("quarter", history.t0, tz)
    rep = run_report(history, tmp_path / "quarter", "--quarter", quarter.label)
    assert rep["period"]["label"] == quarter.label
    assert (tmp_path / "quarter" / f"slo-report-{quarter.label}.html").is_file()
    # the quarter is still running: it ends now, not at its calendar end
    assert rep["period"]["end"] < quarter.end
    assert {r["service"] for r in rep["services"]} >= {"checkout", "search"}


def test_report_counts_alerts_fired_today(history, tmp_path):
    """Prometheus pages live for the ongoing incident; a report over today counts it."""
    deadline = time.monotonic() + 60
    while not history.prom.query('ALERTS{service="checkout",alertstate="firing"}'):
        assert time.monotonic() < deadline, "the checkout page never fired"
        time.sleep(1)
    seen = time.time()
    # the report counts on a 1-minute grid: wait for the next grid point after the firing
    time.sleep(max(0.0, (seen // 60 + 1) * 60 + 2 - time.time()))
    start = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(history.t0 - 3600))
    end = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() + 120))
    rep = run_report(history, tmp_path, "--from", start + "+00:00", "--to", end + "+00:00")
    row = next(r for r in rep["slos"] if r["service"] == "checkout")
    assert row["alerts_fired"]["page"] >= 1 and row["alert_minutes"]["page"] >= 1


def test_report_usage_errors(history, tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sloexporter.cli", "report",
                               "--prometheus-url", history.url, *args], capture_output=True,
                              text=True, timeout=60, cwd=ROOT)

    assert run("--period", "2026-13").returncode == 2
    assert run("--period", "2026-W01").returncode == 2
    assert run("--from", "2026-11-01").returncode == 2
    assert run("--period", "2999-01").returncode == 2
    # before any rule existed and without --slos: nothing to report is an error, not an
    # empty report
    empty = run("--period", "2020-01", "-o", str(tmp_path / "empty"))
    assert empty.returncode == 1 and "no SLO to report for 2020-01" in empty.stderr
    assert not (tmp_path / "empty").exists()
    down = subprocess.run([sys.executable, "-m", "sloexporter.cli", "report",
                           "--prometheus-url", "http://127.0.0.1:1", "--period", "2026-01",
                           "-o", str(tmp_path)], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert down.returncode == 1 and "127.0.0.1:1" in down.stderr


async def test_scheduled_delivery_by_email_and_slack(history, tmp_path, smtp_inbox,
                                                    slack_webhook):
    """A every-second schedule in serve's scheduler mails and posts the last month."""
    from sloexporter.status.delivery import Scheduler
    password = tmp_path / "smtp-password"
    password.write_text("not-logged\n")
    hook = tmp_path / "slack-url"
    hook.write_text(slack_webhook.url)
    cfg = status_config(history.url, delivery=[{
        "name": "monthly", "schedule": "* * * * * *", "timezone": hist.TZ, "period": "month",
        "email": {"host": "127.0.0.1", "port": smtp_inbox.port, "from": "slo@example.com",
                  "to": ["sre@example.com"]},
        "slack": {"webhook_url_file": str(hook), "channel": "#slo"}}])
    services, _ = load_paths([str(history.specs)])
    from sloexporter.status.client import PrometheusClient
    client = PrometheusClient(cfg.prometheus)
    scheduler = Scheduler(cfg, client, [s for svc in services for s in svc.slos])
    scheduler.start()
    try:
        mail = await smtp_inbox.inbox.wait_for(lambda m: "SLO report" in m.subject,
                                               "the report mail", 60)
        assert "checkout" in mail.text and "sre@example.com" in mail.to
        message = await slack_webhook.inbox.wait_for(lambda m: "checkout" in m.text,
                                                     "the Slack report", 60)
        assert message.channel == "#slo" and "SLO report" in message.title
        # every second fires again for the same month: it is not sent twice
        deadline = time.monotonic() + 60
        while not scheduler.sent and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        mails, posts = len(smtp_inbox.inbox.messages), len(slack_webhook.inbox.messages)
        assert await scheduler.run_once(cfg.delivery[0], time.time()) == []
        assert len(smtp_inbox.inbox.messages) == mails
        assert len(slack_webhook.inbox.messages) == posts
        assert scheduler.sent.count(scheduler.sent[0]) == 1
    finally:
        await scheduler.stop()
        await client.close()


async def test_team_filter_on_the_api_and_the_server_rendered_list(pinned):
    body = await get_json(pinned, "/api/v1/slos?team=payments")
    assert {f"{i['service']}/{i['slo']}" for i in body["slos"]} == {"checkout/availability"}
    assert (await get_json(pinned, "/api/v1/slos?team=nobody"))["slos"] == []
    page = await (await pinned.get("/?team=payments")).text()
    assert "checkout / availability" in page and "search / availability" not in page
