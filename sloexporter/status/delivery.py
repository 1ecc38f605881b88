"""Scheduled report delivery from `serve`: email (SMTP) and Slack incoming webhooks.

Secrets (the SMTP password, the webhook URL) are read from files when a report is sent,
never logged. Each send has a timeout; a failed send is retried with backoff, then
logged and left to the next scheduled run.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
import time
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from croniter import croniter

from sloexporter.model import SLO
from sloexporter.status import calendar, report
from sloexporter.status.client import PrometheusClient, PrometheusError
from sloexporter.status.config import SMTP, Delivery, Slack, StatusConfig, read_secret

log = logging.getLogger("sloexporter.status.delivery")
RETRIES = 3


class DeliveryError(Exception):
    pass


def _secret(path: str, what: str) -> str:
    return read_secret(path, what, DeliveryError)


def email_message(rep: dict[str, Any], smtp: SMTP) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = report.title(rep)
    msg["From"] = smtp.sender
    msg["To"] = ", ".join(smtp.to)
    msg.set_content(report.to_markdown(rep))
    msg.add_alternative(report.to_html(rep), subtype="html")
    stem = "slo-report-" + rep["period"]["label"]
    msg.add_attachment(report.to_json(rep).encode(), maintype="application", subtype="json",
                       filename=f"{stem}.json")
    return msg


def _send_smtp(msg: EmailMessage, smtp: SMTP) -> None:
    with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as client:
        if smtp.starttls:
            client.starttls(context=ssl.create_default_context())
        if smtp.username:
            password = _secret(smtp.password_file, "SMTP password") if smtp.password_file \
                else ""
            client.login(smtp.username, password)
        client.send_message(msg)


async def send_email(rep: dict[str, Any], smtp: SMTP) -> None:
    msg = email_message(rep, smtp)
    try:
        await asyncio.to_thread(_send_smtp, msg, smtp)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"SMTP {smtp.host}:{smtp.port}: {exc.__class__.__name__}: {exc}") \
            from None


def slack_payload(rep: dict[str, Any], channel: str | None) -> dict[str, Any]:
    lines = []
    for row in rep["slos"]:
        sli = "—" if row["sli"] is None else f"{row['sli'] * 100:.3f}%"
        left = "—" if row["error_budget_remaining"] is None else \
            f"{row['error_budget_remaining'] * 100:.1f}%"
        lines.append(f"{row['status']} {row['service']}/{row['slo']}: SLI {sli} "
                     f"(objective {row['objective']:g}%), budget left {left}")
    counts: dict[str, int] = {}
    for row in rep["slos"]:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no SLOs"
    body: dict[str, Any] = {"text": f"{report.title(rep)}: {summary}",
                            "attachments": [{"title": report.title(rep),
                                             "text": "\n".join(lines)[:7000]}]}
    if channel:
        body["channel"] = channel
    return body


async def send_slack(rep: dict[str, Any], slack: Slack) -> None:
    url = _secret(slack.webhook_url_file, "Slack webhook URL")
    timeout = aiohttp.ClientTimeout(total=slack.timeout)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.post(url, json=slack_payload(rep, slack.channel)) as resp:
            if resp.status >= 300:
                raise DeliveryError(f"Slack webhook answered HTTP {resp.status}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        # the URL is the secret: say what failed, not where
        raise DeliveryError(f"Slack webhook: {exc.__class__.__name__}") from None


async def deliver(rep: dict[str, Any], target: Delivery) -> list[str]:
    """Send to every channel of `target`; the errors, one per failed channel."""
    errors = []
    for name, send in (("email", target.email and (lambda: send_email(rep, target.email)),),
                       ("slack", target.slack and (lambda: send_slack(rep, target.slack)),)):
        if not send:
            continue
        for attempt in range(RETRIES):
            try:
                await send()
                log.info("delivered %s by %s", report.title(rep), name)
                break
            except DeliveryError as exc:
                if attempt == RETRIES - 1:
                    errors.append(f"{name}: {exc}")
                    log.warning("cannot deliver %s by %s: %s", report.title(rep), name, exc)
                else:
                    await asyncio.sleep(2 ** attempt)
    return errors


def next_run(target: Delivery, after: float) -> float:
    tz = ZoneInfo(target.timezone)
    base = datetime.fromtimestamp(after, tz)
    return float(croniter(target.schedule, base).get_next(datetime).timestamp())


def completed_period(target: Delivery, at: float) -> tuple[calendar.Window, calendar.Window]:
    """The last full period before `at`, and the one before it."""
    tz = ZoneInfo(target.timezone)
    current = calendar.containing(target.period, at, tz)
    last = calendar.previous(current, tz)
    return last, calendar.previous(last, tz)


class Scheduler:
    """Runs every configured delivery on its cron schedule inside `serve`."""

    def __init__(self, cfg: StatusConfig, client: PrometheusClient, slos: list[SLO],
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg, self.client, self.slos, self.clock = cfg, client, slos, clock
        self.sent: list[tuple[str, str]] = []
        #: (delivery, period) pairs already delivered: a schedule that fires twice for
        #: one period (every minute on the 1st, 02:30 on a DST fall-back night) sends once
        self._done: set[tuple[str, str]] = set()
        self._running = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(t)) for t in self.cfg.delivery]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)

    async def _run(self, target: Delivery) -> None:
        due = next_run(target, self.clock())
        while True:
            await asyncio.sleep(max(due - self.clock(), 0.0))
            try:
                await self.run_once(target, due)
            except Exception:  # noqa: BLE001 - one bad run must not end the schedule
                log.exception("the %s delivery failed", target.name)
            due = next_run(target, max(due, self.clock()))

    async def run_once(self, target: Delivery, at: float) -> list[str]:
        # one run at a time, so a second run for a period waits and then sees it done
        async with self._running:
            return await self._run_once(target, at)

    async def _run_once(self, target: Delivery, at: float) -> list[str]:
        window, previous = completed_period(target, at)
        done = (target.model_dump_json(), window.label)
        if done in self._done:
            log.info("%s: the %s report was already delivered", target.name, window.label)
            return []
        try:
            rep = await report.build_report(self.client, self.slos, self.cfg, window,
                                            previous, self.clock())
        except (PrometheusError, TimeoutError) as exc:
            log.warning("cannot build the %s report: %s", target.name, exc)
            return [f"report: {exc}"]
        if not rep["slos"]:
            log.warning("the %s report for %s has no SLO: nothing sent", target.name,
                        window.label)
            return [f"report: no SLO for {window.label}"]
        errors = await deliver(rep, target)
        if not errors:
            self._done.add(done)
            self.sent.append((target.name, window.label))
        return errors
