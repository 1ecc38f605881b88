"""Real notification endpoints on 127.0.0.1: a Slack webhook, an SMTP inbox, Alertmanager.

Each is an async context manager (`async with SlackWebhook().running() as slack:`) and
also a pytest fixture (`slack_webhook`, `smtp_inbox`) for tests that import them. Every
wait takes a deadline and fails with what did arrive; teardown kills what was started.

    settings = alertmanager_settings(tmp_path, slack, inbox, group_wait="0s")
    run_cli("generate", SPECS, "-o", out, "--alertmanager-settings", settings)
    async with Alertmanager(require_tool("prometheus-alertmanager"), tmp_path).running(
            out / "alertmanager" / "alertmanager.yaml") as am:
        await am.post([{"labels": {...}, "annotations": {...}}])
        message = await slack.inbox.wait_for(lambda m: "checkout" in m.text, "the page")
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Self, TypeVar

import aiohttp
import pytest_asyncio
import yaml
from aiohttp import web
from aiosmtpd.controller import Controller

from tests.tools import ROOT, free_port, serving, terminate

EXAMPLE_SETTINGS = ROOT / "examples" / "alertmanager-settings.yaml"

T = TypeVar("T")
TIMEOUT = aiohttp.ClientTimeout(total=5)
PAGERDUTY_KEY = "0123456789abcdef0123456789abcdef"


class Inbox(Generic[T]):
    """Messages in arrival order; waiters wake on each arrival, never on a timer."""

    def __init__(self) -> None:
        self.messages: list[T] = []
        self._arrived = asyncio.Event()

    def add(self, message: T) -> None:
        self.messages.append(message)
        self._arrived.set()
        self._arrived = asyncio.Event()

    async def wait_for(self, match: Callable[[T], bool], what: str,
                       deadline: float = 15.0) -> T:
        """The first message `match` accepts, waiting up to `deadline` seconds for it."""
        try:
            async with asyncio.timeout(deadline):
                while True:
                    arrived = self._arrived
                    for message in self.messages:
                        if match(message):
                            return message
                    await arrived.wait()
        except TimeoutError:
            raise AssertionError(f"no {what} within {deadline:.0f}s; got {self.messages!r}") \
                from None


@dataclass(frozen=True)
class SlackMessage:
    channel: str
    title: str
    text: str
    body: dict[str, Any] = field(repr=False)


class JSONWebhook(Generic[T]):
    """An HTTP endpoint on 127.0.0.1 that takes JSON POSTs at `url`; read `inbox`."""

    path = "/hook"
    status = 200

    def __init__(self) -> None:
        self.inbox: Inbox[T] = Inbox()
        self.url = ""

    def messages(self, body: dict[str, Any]) -> list[T]:
        raise NotImplementedError

    async def _post(self, request: web.Request) -> web.Response:
        for message in self.messages(await request.json()):
            self.inbox.add(message)
        return web.json_response({"status": "success"}, status=self.status)

    @contextlib.asynccontextmanager
    async def running(self, port: int | None = None) -> AsyncIterator[Self]:
        app = web.Application()
        app.router.add_post(self.path, self._post)
        async with serving(app, port) as address:
            self.url = f"http://{address}{self.path}"
            yield self


class SlackWebhook(JSONWebhook[SlackMessage]):
    """A Slack-compatible incoming webhook: one SlackMessage per attachment."""

    path = "/services/hook"

    def messages(self, body: dict[str, Any]) -> list[SlackMessage]:
        return [SlackMessage(body.get("channel", ""), a.get("title", ""), a.get("text", ""),
                             body) for a in body.get("attachments") or [{}]]


class PagerDutyEvents(JSONWebhook[dict[str, Any]]):
    """A stand-in for PagerDuty's Events API v2: each event as it was sent."""

    path = "/v2/enqueue"
    status = 202  # what PagerDuty answers

    def messages(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        return [body]


@dataclass(frozen=True)
class Mail:
    to: tuple[str, ...]
    subject: str
    text: str
    html: str


class SMTPInbox:
    """An aiosmtpd server on 127.0.0.1 (no TLS, no auth); mails land in `inbox`."""

    def __init__(self) -> None:
        self.inbox: Inbox[Mail] = Inbox()
        self.port = 0

    @contextlib.asynccontextmanager
    async def running(self, port: int | None = None) -> AsyncIterator[SMTPInbox]:
        loop = asyncio.get_running_loop()
        inbox = self.inbox

        class Handler:
            # aiosmtpd calls this on its own thread and loop: hand the mail to ours
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                loop.call_soon_threadsafe(inbox.add, _parse_mail(envelope))
                return "250 Message accepted for delivery"

        self.port = port or free_port()
        controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        await asyncio.to_thread(controller.start)
        try:
            yield self
        finally:
            await asyncio.to_thread(controller.stop)


def _parse_mail(envelope: Any) -> Mail:
    msg = email.message_from_bytes(envelope.original_content or envelope.content,
                                   policy=email.policy.default)
    parts = {"text/plain": "", "text/html": ""}
    for part in msg.walk():
        if part.get_content_type() in parts:
            parts[part.get_content_type()] = part.get_content()
    return Mail(tuple(envelope.rcpt_tos), str(msg["Subject"] or ""), parts["text/plain"],
                parts["text/html"])


class Alertmanager:
    """A real `prometheus-alertmanager` on 127.0.0.1, gossip off (it delays delivery)."""

    def __init__(self, binary: str, workdir: Path, port: int | None = None) -> None:
        self.binary, self.workdir = binary, workdir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.address = f"127.0.0.1:{self.port}"  # for Prometheus' alerting config
        self.log = workdir / "alertmanager.log"
        self.session: aiohttp.ClientSession | None = None

    @contextlib.asynccontextmanager
    async def running(self, config: Path, deadline: float = 20.0) -> AsyncIterator[Alertmanager]:
        with self.log.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                self.binary, f"--config.file={config}",
                f"--storage.path={self.workdir / 'alertmanager-data'}",
                f"--web.listen-address={self.address}", "--cluster.listen-address=",
                stdout=log, stderr=log, start_new_session=True)
            self.session = aiohttp.ClientSession(timeout=TIMEOUT)
            try:
                await self._until_ready(proc, deadline)
                yield self
            finally:
                await self.session.close()
                await terminate(proc)

    async def _until_ready(self, proc: asyncio.subprocess.Process, deadline: float) -> None:
        assert self.session is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while loop.time() < end:
            if proc.returncode is not None:
                raise AssertionError(f"alertmanager exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(aiohttp.ClientError):
                async with self.session.get(self.url + "/-/ready") as resp:
                    if resp.status == 200:
                        return
            # the process offers no readiness event: poll its endpoint, bounded above
            await asyncio.sleep(0.05)
        raise AssertionError(f"alertmanager not ready in {deadline:.0f}s: "
                             f"{self.log.read_text()[-2000:]}")

    async def post(self, alerts: list[dict[str, Any]]) -> None:
        """Send alerts the way Prometheus does (POST /api/v2/alerts)."""
        assert self.session is not None
        async with self.session.post(self.url + "/api/v2/alerts", json=alerts) as resp:
            assert resp.status == 200, await resp.text()

    async def alerts(self, **labels: str) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds, with `status.inhibitedBy`, filtered by labels."""
        assert self.session is not None
        params = [("filter", f"{k}={json.dumps(v)}") for k, v in labels.items()]
        async with self.session.get(self.url + "/api/v2/alerts", params=params) as resp:
            assert resp.status == 200, await resp.text()
            return list(await resp.json())


def alertmanager_settings(workdir: Path, slack: SlackWebhook, smtp: SMTPInbox,
                          pagerduty: PagerDutyEvents | None = None, **timing: str) -> Path:
    """A settings file pointing the generated routes at these stand-ins.

    Secrets go into files, as real ones would (the PagerDuty routing key is
    `PAGERDUTY_KEY`); `timing` overrides group_wait and friends (e.g. group_wait="0s"
    for routing tests).
    """
    url_file = workdir / "slack-api-url"
    url_file.write_text(slack.url + "\n")
    settings: dict[str, Any] = {
        "slack": {"api_url_file": str(url_file), "channels": ["#slo-pages"]},
        "email": {"to": ["tickets@example.com"], "from": "alertmanager@example.com",
                  "smarthost": f"127.0.0.1:{smtp.port}", "require_tls": False},
        "timing": timing,
    }
    if pagerduty:
        key_file = workdir / "pagerduty-routing-key"
        key_file.write_text(PAGERDUTY_KEY + "\n")
        settings["pagerduty"] = {"routing_key_file": str(key_file), "url": pagerduty.url}
    path = workdir / "alertmanager-settings.yaml"
    path.write_text(json.dumps(settings, indent=2))  # JSON is YAML
    return path


@pytest_asyncio.fixture
async def slack_webhook() -> AsyncIterator[SlackWebhook]:
    async with SlackWebhook().running() as hook:
        yield hook


@pytest_asyncio.fixture
async def smtp_inbox() -> AsyncIterator[SMTPInbox]:
    async with SMTPInbox().running() as inbox:
        yield inbox


__all__ = ["Alertmanager", "Inbox", "JSONWebhook", "Mail", "PagerDutyEvents", "SMTPInbox",
           "SlackMessage", "SlackWebhook", "alertmanager_settings", "slack_webhook",
           "smtp_inbox"]


def with_secret_files(tmp_path: Path, settings: Path = EXAMPLE_SETTINGS) -> Path:
    """Alertmanager settings (the example's by default) with their secret files moved into
    tmp_path as real files (amtool reads them), and written there."""
    data = yaml.safe_load(settings.read_text())
    secrets = tmp_path / "secrets"
    secrets.mkdir()

    def move(block: dict) -> None:
        for key, value in list(block.items()):
            if isinstance(value, dict):
                move(value)
            elif key.endswith("_file"):
                path = secrets / Path(value).name
                path.write_text("not-a-real-secret\n")
                block[key] = str(path)

    move(data)
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
