"""Small instrumented stand-ins of the seed platforms' signals, for the end-to-end tests.

- `Gauges`: an HTTP server on 127.0.0.1 whose /metrics serves the gauges a test sets
  (with their exporter's own names and labels, scraped with honor_labels) and whose
  health endpoints answer the status a test sets.
- `RedisWithExporter`: a real `redis-server` and `prometheus-redis-exporter` running
  the BullMQ example's oldest-job-age script.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.e2e_app import wait_until
from tests.tools import free_port, terminate

TIMEOUT = aiohttp.ClientTimeout(total=5)


def _line(name: str, labels: dict[str, str], value: float) -> str:
    body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{body}}} {value!r}\n"


class Gauges:
    """`/metrics` serves `values`; any other GET path answers `status[path]` (default 200)."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.status: dict[str, int] = {}
        self.address = ""

    def set(self, name: str, value: float, **labels: str) -> None:
        self.values[(name, tuple(sorted(labels.items())))] = value

    def drop(self, name: str) -> None:
        """Stop exporting every series of `name` (as an exporter that lost its source)."""
        self.values = {k: v for k, v in self.values.items() if k[0] != name}

    async def _metrics(self, _: web.Request) -> web.Response:
        text = "".join(_line(n, dict(lb), v) for (n, lb), v in sorted(self.values.items()))
        return web.Response(text=text, content_type="text/plain")

    async def _health(self, request: web.Request) -> web.Response:
        status = self.status.get(request.path, 200)
        return web.Response(status=status, text="ok\n" if status < 400 else "down\n")

    def url(self, path: str) -> str:
        return f"http://{self.address}{path}"

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Gauges]:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/{tail:.*}", self._health)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self.address = f"127.0.0.1:{port}"
        try:
            yield self
        finally:
            await runner.cleanup()


class RedisWithExporter:
    """A throwaway redis-server (no persistence) and prometheus-redis-exporter beside it."""

    def __init__(self, redis_server: str, exporter: str, redis_cli: str, script: Path,
                 workdir: Path) -> None:
        self.redis_server, self.exporter, self.redis_cli = redis_server, exporter, redis_cli
        self.script, self.workdir = script, workdir
        self.port = free_port()
        self.exporter_address = ""

    async def cli(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            self.redis_cli, "-h", "127.0.0.1", "-p", str(self.port), *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
        assert proc.returncode == 0, out.decode()
        return out.decode().strip()

    async def add_job(self, queue: str, job_id: int, age_seconds: float,
                      oldest: bool = False) -> None:
        """A BullMQ job as BullMQ stores it: its hash, and its id on the wait list (new
        ids are LPUSHed; `oldest` puts it where the next worker takes from)."""
        created_ms = int((time.time() - age_seconds) * 1000)
        await self.cli("HSET", f"bull:{queue}:{job_id}", "name", queue, "data", "{}",
                       "timestamp", str(created_ms))
        await self.cli("RPUSH" if oldest else "LPUSH", f"bull:{queue}:wait", str(job_id))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RedisWithExporter]:
        logs = [(self.workdir / f"{n}.log").open("wb") for n in ("redis", "redis-exporter")]
        redis = await asyncio.create_subprocess_exec(
            self.redis_server, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
            "--appendonly", "no", "--dir", str(self.workdir), "--maxmemory", "64mb",
            "--maxmemory-policy", "noeviction", stdout=logs[0], stderr=logs[0])
        exporter = None
        try:
            await wait_until(self._pong, "redis-server PONG", 30)
            self.exporter_address = f"127.0.0.1:{free_port()}"
            exporter = await asyncio.create_subprocess_exec(
                self.exporter, f"--redis.addr=redis://127.0.0.1:{self.port}",
                f"--web.listen-address={self.exporter_address}", f"--script={self.script}",
                stdout=logs[1], stderr=logs[1])
            await wait_until(self._exporting, "redis_exporter /metrics with redis_up 1", 30)
            yield self
        finally:
            if exporter is not None:
                await terminate(exporter)
            await terminate(redis)
            for log in logs:
                log.close()

    async def _pong(self) -> bool:
        with contextlib.suppress(AssertionError, TimeoutError):
            return await self.cli("PING") == "PONG"
        return False

    async def _exporting(self) -> bool:
        try:
            async with aiohttp.ClientSession(timeout=TIMEOUT) as session, \
                    session.get(f"http://{self.exporter_address}/metrics") as resp:
                return "redis_up 1" in await resp.text()
        except aiohttp.ClientError:
            return False
