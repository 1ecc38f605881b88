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
from typing import Any, Generic, TypeVar

import aiohttp
import pytest_asyncio
from aiohttp import web
from aiosmtpd.controller import Controller

from tests.test_serve import free_port

T = TypeVar("T")
TIMEOUT = aiohttp.ClientTimeout(total=5)


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


class SlackWebhook:
    """A Slack-compatible incoming webhook: POST JSON to `url`, read `inbox`."""

    def __init__(self) -> None:
        self.inbox: Inbox[SlackMessage] = Inbox()
        self.url = ""

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.json()
        for attachment in body.get("attachments") or [{}]:
            self.inbox.add(SlackMessage(body.get("channel", ""), attachment.get("title", ""),
                                        attachment.get("text", ""), body))
        return web.Response(text="ok")  # what Slack answers

    @contextlib.asynccontextmanager
    async def running(self, port: int | None = None) -> AsyncIterator[SlackWebhook]:
        app = web.Application()
        app.router.add_post("/services/hook", self._post)
        runner = web.AppRunner(app)
        await runner.setup()
        port = port or free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/services/hook"
        try:
            yield self
        finally:
            await runner.cleanup()


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
                if proc.returncode is None:
                    proc.terminate()
                    try:
                        await asyncio.wait_for(proc.wait(), 10)
                    except TimeoutError:
                        proc.kill()
                        await proc.wait()

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
                          **timing: str) -> Path:
    """A settings file pointing the generated routes at these stand-ins.

    The webhook URL goes into a file, as a real one would; `timing` overrides
    group_wait and friends (e.g. group_wait="0s" for routing tests).
    """
    url_file = workdir / "slack-api-url"
    url_file.write_text(slack.url + "\n")
    settings = {
        "slack": {"api_url_file": str(url_file), "channels": ["#slo-pages"]},
        "email": {"to": ["tickets@example.com"], "from": "alertmanager@example.com",
                  "smarthost": f"127.0.0.1:{smtp.port}", "require_tls": False},
        "timing": timing,
    }
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


__all__ = ["Alertmanager", "Inbox", "Mail", "SMTPInbox", "SlackMessage", "SlackWebhook",
           "alertmanager_settings", "slack_webhook", "smtp_inbox"]
