"""A small instrumented HTTP service for the end-to-end test, and a real Prometheus.

The app counts its requests the way prometheus-client/express apps do
(`http_request_duration_seconds{status_code}`), and the test switches its failures on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest

from tests.tools import ROOT, serving, terminate

TIMEOUT = aiohttp.ClientTimeout(total=5)


class App:
    """GET /checkout answers 200, or 500 once `failing` is set; /metrics is scraped."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.duration = Histogram("http_request_duration_seconds", "Request duration",
                                  ["method", "route", "status_code"], registry=self.registry,
                                  buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
        for code in ("200", "500"):  # both series exist before the first error
            self.duration.labels("GET", "/checkout", code)
        self.failing = False
        self.served = 0
        self.url = ""

    async def checkout(self, _: web.Request) -> web.Response:
        started = time.perf_counter()
        code = 500 if self.failing else 200
        self.served += 1
        self.duration.labels("GET", "/checkout", str(code)).observe(
            time.perf_counter() - started)
        return web.Response(status=code, text="failed\n" if self.failing else "ok\n")

    async def metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    @contextlib.asynccontextmanager
    async def running(self, port: int) -> AsyncIterator[App]:
        app = web.Application()
        app.router.add_get("/checkout", self.checkout)
        app.router.add_get("/metrics", self.metrics)
        async with serving(app, port) as address:
            self.url = f"http://{address}"
            traffic = asyncio.create_task(self._traffic())
            try:
                yield self
            finally:
                traffic.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await traffic

    async def _traffic(self) -> None:
        """Steady client load, about 20 requests per second."""
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            while True:
                async with session.get(self.url + "/checkout") as resp:
                    await resp.read()
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def serve(workdir: Path, port: int, config: dict[str, Any] | None = None,
                manifests: Path = ROOT / "examples" / "cluster") -> AsyncIterator[str]:
    """`sloexporter serve --manifests DIR` (examples/cluster) on 127.0.0.1:`port`, until ready."""
    args = []
    if config is not None:
        path = workdir / "serve.yaml"
        path.write_text(json.dumps(config))
        args = ["--config", str(path)]
    log_path = workdir / "serve.log"
    log = log_path.open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sloexporter.cli", "serve", "--manifests",
        str(manifests), *args, "--listen", f"127.0.0.1:{port}", cwd=ROOT,
        stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}/readyz"

    async def ready() -> bool:
        assert proc.returncode is None, log_path.read_text()[-2000:]
        try:
            async with aiohttp.ClientSession(timeout=TIMEOUT) as session, \
                    session.get(url) as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    try:
        await wait_until(ready, "sloexporter serve /readyz", 30)
        yield f"127.0.0.1:{port}"
    finally:
        await terminate(proc)
        log.close()


async def wait_until(check: Callable[[], Awaitable[Any]], what: str,
                     deadline: float = 60.0) -> Any:
    """Poll `check` until it returns something truthy; fail after `deadline` seconds."""
    end = time.monotonic() + deadline
    last: Any = None
    while time.monotonic() < end:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {deadline:.0f}s waiting for {what} (last: {last!r})")


class Prometheus:
    """A real `prometheus` on 127.0.0.1 with 1 s scrapes and rule evaluation."""

    def __init__(self, binary: str, workdir: Path, port: int) -> None:
        self.binary, self.workdir, self.port = binary, workdir, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.session: aiohttp.ClientSession | None = None

    def write_config(self, scrape: dict[str, str], rule_files: list[Path],
                     alertmanager: str, honor_labels: frozenset[str] = frozenset()) -> Path:
        """prometheus.yml; the jobs in `honor_labels` keep their targets' own labels."""
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                       "scrape_timeout": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
            "scrape_configs": [{"job_name": job, "honor_labels": job in honor_labels,
                                "static_configs": [{"targets": [target]}]}
                               for job, target in scrape.items()],
        }
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        return path

    @contextlib.asynccontextmanager
    async def running(self, config: Path) -> AsyncIterator[Prometheus]:
        log = (self.workdir / "prometheus.log").open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            self.binary, f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--rules.alert.resend-delay=1s", stdout=log, stderr=log)
        self.session = aiohttp.ClientSession(timeout=TIMEOUT)
        try:
            await wait_until(self._ready, "prometheus /-/ready", 30)
            yield self
        finally:
            await self.session.close()
            await terminate(self.proc)
            log.close()

    async def _ready(self) -> bool:
        assert self.proc is not None and self.proc.returncode is None, \
            (self.workdir / "prometheus.log").read_text()[-2000:]
        assert self.session is not None
        try:
            async with self.session.get(self.url + "/-/ready") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; a PromQL error fails with Prometheus' own message."""
        assert self.session is not None
        async with self.session.get(self.url + "/api/v1/query", params={"query": expr}) as resp:
            body = await resp.json()
        assert body.get("status") == "success", f"{expr}: {body.get('error')}"
        return body["data"]["result"]

    async def value(self, expr: str) -> float | None:
        result = await self.query(expr)
        return float(result[0]["value"][1]) if result else None
