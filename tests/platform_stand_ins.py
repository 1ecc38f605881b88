"""Small instrumented stand-ins of the seed platforms' signals, for the end-to-end tests.

- `Gauges`: an HTTP server on 127.0.0.1 whose /metrics serves the gauges a test sets
  (with their exporter's own names and labels, scraped with honor_labels) and whose
  health endpoints answer the status a test sets.
- `RedisWithExporter`: a real `redis-server` and `prometheus-redis-exporter` running
  the BullMQ example's oldest-job-age script.
- `PostgresWithExporter`: a real PostgreSQL primary archiving its WAL, and a real
  `prometheus-postgres-exporter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.e2e_app import wait_until
from tests.tools import free_port, require_tool, serving, terminate

TIMEOUT = aiohttp.ClientTimeout(total=5)


def _line(name: str, labels: dict[str, str], value: float) -> str:
    body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{body}}} {value!r}\n"


async def exports(address: str, line: str) -> bool:
    """Whether the exporter at `address` serves `line` on /metrics yet."""
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session, \
                session.get(f"http://{address}/metrics") as resp:
            return line in await resp.text()
    except aiohttp.ClientError:
        return False


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
        async with serving(app) as self.address:
            yield self


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
        return await exports(self.exporter_address, "redis_up 1")


def postgres_bin(name: str) -> str:
    """A PostgreSQL server program: on PATH, or in Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which(name) or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                                reverse=True)), None)
    return found or require_tool(name)  # fails or skips with the install hint


#: postgres_exporter 0.11's example queries.yaml entry for the replication lag (0 on a
#: primary), which Debian ships; v0.13+ has it built in as pg_replication_lag_seconds.
REPLICATION_QUERY = """\
pg_replication:
  query: >-
    SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0 ELSE GREATEST (0,
    EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp()))) END AS lag
  master: true
  metrics:
    - lag:
        usage: "GAUGE"
        description: "Replication lag behind master in seconds"
"""


class PostgresWithExporter:
    """A throwaway PostgreSQL primary on 127.0.0.1 (WAL archiving into a folder) and a
    real prometheus-postgres-exporter. As root, the server runs as the `postgres` user
    (PostgreSQL refuses root) from a data folder that user owns."""

    def __init__(self, exporter: str) -> None:
        self.exporter = exporter
        self.port = 0  # picked after initdb, right before the server binds it
        self.exporter_address = ""
        self.root = Path(tempfile.mkdtemp(prefix="sloexporter-pg-"))

    def _as_owner(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    async def _run(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            *self._as_owner(), *args, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, f"{args[0]}: {out.decode()[-2000:]}"
        return out.decode()

    async def sql(self, statement: str) -> str:
        return await self._run(postgres_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port),
                               "-U", "postgres", "-d", "postgres", "-Atc", statement)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[PostgresWithExporter]:
        data, archive = self.root / "data", self.root / "archive"
        archive.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(archive, "postgres")
        queries = self.root / "queries.yaml"
        queries.write_text(REPLICATION_QUERY)
        log = (self.root / "exporter.log").open("wb")
        exporter = None
        started = False
        try:
            await self._run(postgres_bin("initdb"), "-D", str(data), "-A", "trust", "-U",
                            "postgres", "--no-sync")
            self.port = free_port()
            with (data / "postgresql.conf").open("a") as conf:
                conf.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                           f"unix_socket_directories = '{self.root}'\nfsync = off\n"
                           f"archive_mode = on\narchive_command = 'cp %p {archive}/%f'\n")
            await self._run(postgres_bin("pg_ctl"), "-D", str(data), "-l",
                            str(self.root / "postgres.log"), "-w", "-t", "60", "start")
            started = True
            self.exporter_address = f"127.0.0.1:{free_port()}"
            dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres?sslmode=disable"
            exporter = await asyncio.create_subprocess_exec(
                self.exporter, f"--web.listen-address={self.exporter_address}",
                f"--extend.query-path={queries}", stdout=log, stderr=log,
                env={**os.environ, "DATA_SOURCE_NAME": dsn})
            await wait_until(self._exporting, "postgres_exporter /metrics with pg_up 1", 30)
            yield self
        finally:
            if exporter is not None:
                await terminate(exporter)
            if started:
                await self._run(postgres_bin("pg_ctl"), "-D", str(data), "-m", "immediate",
                                "-w", "stop")
            log.close()
            shutil.rmtree(self.root, ignore_errors=True)

    async def _exporting(self) -> bool:
        return await exports(self.exporter_address, "pg_up 1")
