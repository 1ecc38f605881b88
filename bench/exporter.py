"""Benchmark: `sloexporter serve` on 10,000 Applications, 10,000 TLS Secrets, 1,000 CronJobs.

A minimal Kubernetes API (aiohttp, in this process) serves paginated LISTs and WATCH
streams over real HTTP; the real `serve` process reaches it through a kubeconfig. Measured:
time to ready (/readyz 200), watch events per second (20,000 MODIFIED Applications, until
serve has applied them all), /metrics scrape p50/p99 and the serve process's RSS.
Baseline, same run, same objects: a prometheus_client custom collector that walks every
object on each scrape (generate_latest), timed in-process.

    .venv/bin/python bench/exporter.py [--apps 10000] [--secrets 10000] [--cronjobs 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.core import CollectorRegistry, GaugeMetricFamily
from prometheus_client.registry import Collector

from sloexporter.sources.manifests import read_objects

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime.now(UTC)
PAGE = 500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_pem() -> str:
    """A real certificate (base64 tls.crt) from the demo cluster."""
    objs, _ = read_objects(ROOT / "examples" / "cluster", NOW)
    return next(o["data"]["tls.crt"] for o in objs if o.get("type") == "kubernetes.io/tls")


def app(i: int, rev: int = 0) -> dict[str, Any]:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": f"app{i}", "namespace": "argocd", "uid": f"app-{i}",
                         "resourceVersion": str(rev + 1)},
            "spec": {"project": "default", "source": {"repoURL": "https://git/x.git"},
                     "destination": {"server": "https://kubernetes.default.svc",
                                     "namespace": f"ns{i % 50}"}},
            "status": {"sync": {"status": "Synced" if (i + rev) % 7 else "OutOfSync"},
                       "health": {"status": "Healthy" if (i + rev) % 11 else "Degraded"},
                       "operationState": {"phase": "Succeeded",
                                          "startedAt": "2026-11-22T10:00:00Z",
                                          "finishedAt": f"2026-11-22T10:{rev % 60:02d}:00Z"}}}


def secret(i: int, crt: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": f"tls{i}", "namespace": f"ns{i % 50}", "uid": f"sec-{i}"},
            "data": {"tls.crt": crt, "tls.key": ""}}


def cronjob(i: int) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": f"backup{i}", "namespace": "backups", "uid": f"cj-{i}",
                         "labels": {"sloexporter.dev/backup": "true"}},
            "spec": {"schedule": f"{i % 60} 3 * * *", "timeZone": "Europe/Berlin",
                     "jobTemplate": {}},
            "status": {"lastScheduleTime": "2026-11-22T02:00:00Z",
                       "lastSuccessfulTime": "2026-11-22T02:05:00Z"}}


class FakeAPI:
    """Paginated LIST per plural, and WATCH: the apps' updates once released, else silence."""

    def __init__(self, objects: dict[str, list[dict[str, Any]]], updates: list[bytes]) -> None:
        self.objects = objects
        self.updates = updates
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        plural = request.path.rstrip("/").rsplit("/", 1)[-1]
        if request.query.get("watch") == "true":
            resp = web.StreamResponse()
            await resp.prepare(request)
            if plural == "applications":
                await self.release.wait()
                for i in range(0, len(self.updates), 1000):
                    await resp.write(b"".join(self.updates[i:i + 1000]))
            await asyncio.sleep(3600)  # the bench ends first
            return resp
        items = self.objects.get(plural, [])
        start = int(request.query.get("continue") or 0)
        limit = int(request.query.get("limit") or len(items) or 1)
        end = start + limit
        meta = {"resourceVersion": "1", **({"continue": str(end)} if end < len(items) else {})}
        return web.Response(body=json.dumps({"items": items[start:end], "metadata": meta}),
                            content_type="application/json")


class WalkingCollector(Collector):
    """The baseline: walk every object on every scrape."""

    def __init__(self, apps: list[dict[str, Any]], secrets: list[dict[str, Any]],
                 cronjobs: list[dict[str, Any]]) -> None:
        self.apps, self.secrets, self.cronjobs = apps, secrets, cronjobs

    def collect(self) -> Iterable[GaugeMetricFamily]:
        from sloexporter.x509 import parse_pem_chain
        info = GaugeMetricFamily("argocd_app_info", "", labels=[
            "namespace", "name", "project", "sync_status", "health_status"])
        synced = GaugeMetricFamily("argocd_app_synced", "", labels=["namespace", "name"])
        for a in self.apps:
            m, s = a["metadata"], a["status"]
            info.add_metric([m["namespace"], m["name"], a["spec"]["project"],
                             s["sync"]["status"], s["health"]["status"]], 1)
            synced.add_metric([m["namespace"], m["name"]], s["sync"]["status"] == "Synced")
        cert = GaugeMetricFamily("secret_not_after", "", labels=["namespace", "name", "cn"])
        for sec in self.secrets:
            for c in parse_pem_chain(base64.b64decode(sec["data"]["tls.crt"])):
                cert.add_metric([sec["metadata"]["namespace"], sec["metadata"]["name"],
                                 c.subject_cn or ""], c.not_after)
        cron = GaugeMetricFamily("backup_last_success", "", labels=["namespace", "name"])
        for cj in self.cronjobs:
            ts = datetime.fromisoformat(cj["status"]["lastSuccessfulTime"].replace("Z", "+00:00"))
            cron.add_metric([cj["metadata"]["namespace"], cj["metadata"]["name"]], ts.timestamp())
        yield from (info, synced, cert, cron)


def percentiles(samples: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples, n=100)
    return q[49] * 1000, q[98] * 1000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def scrape(url: str, session: aiohttp.ClientSession) -> tuple[bytes, float]:
    """One scrape; timed by curl when present (a C client, as Prometheus is Go), else aiohttp."""
    if shutil.which("curl"):
        proc = await asyncio.create_subprocess_exec(
            "curl", "-s", "--max-time", "10", "-o", "-", "-w", "\n%{time_total}", url,
            stdout=subprocess.PIPE)
        out, _ = await proc.communicate()
        body, _, took = out.rpartition(b"\n")
        return body, float(took)
    t0 = time.perf_counter()
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as r:
        body = await r.read()
    return body, time.perf_counter() - t0


def last_event(text: str) -> float:
    for line in text.splitlines():
        if line.startswith('sloexporter_source_last_event_timestamp_seconds{source="argocd"}'):
            return float(line.rsplit(" ", 1)[1])
    raise SystemExit("no last event time for argocd")


async def poll(url: str, session: aiohttp.ClientSession, ok: Any, deadline: float,
               interval: float = 0.05) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < deadline:
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as r:
                if await ok(r):
                    return time.perf_counter() - start
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(interval)
    raise SystemExit(f"timed out polling {url}")


def events_seen(text: str) -> int:
    total = 0
    for line in text.splitlines():
        if line.startswith('sloexporter_watch_events_total{resource="applications.argoproj.io"'):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


async def main(args: argparse.Namespace) -> None:
    crt = demo_pem()
    apps = [app(i) for i in range(args.apps)]
    secrets = [secret(i, crt) for i in range(args.secrets)]
    cronjobs = [cronjob(i) for i in range(args.cronjobs)]
    updates = [json.dumps({"type": "MODIFIED", "object": app(i % args.apps, 1 + i // args.apps)}
                          ).encode() + b"\n" for i in range(args.events)]
    api = FakeAPI({"applications": apps, "secrets": secrets, "cronjobs": cronjobs}, updates)
    server = web.Application()
    server.router.add_route("GET", "/{tail:.*}", api.handle)
    runner = web.AppRunner(server, handle_signals=False)
    await runner.setup()
    api_port, port = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", api_port).start()
    with tempfile.TemporaryDirectory() as tmp:
        kube = Path(tmp, "kubeconfig")
        kube.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "b",
            "clusters": [{"name": "b", "cluster": {"server": f"http://127.0.0.1:{api_port}"}}],
            "contexts": [{"name": "b", "context": {"cluster": "b", "user": "b"}}],
            "users": [{"name": "b", "user": {"token": "b"}}]}))
        config = Path(tmp, "config.yaml")
        config.write_text(json.dumps({
            "cluster": {"mode": "kubeconfig", "kubeconfig": str(kube)},
            "sources": {"certificates": {"ingresses": False},
                        "services": {"enabled": False}}}))
        proc = subprocess.Popen(
            [sys.executable, "-m", "sloexporter.cli", "serve", "--config", str(config),
             "--listen", f"127.0.0.1:{port}"], cwd=ROOT, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as s:
                async def ready(r: aiohttp.ClientResponse) -> bool:
                    return r.status == 200
                t_ready = await poll(f"{base}/readyz", s, ready, 300)
                before = events_seen(await (await s.get(f"{base}/metrics")).text())
                released = time.time()
                api.release.set()

                async def applied(r: aiohttp.ClientResponse) -> bool:
                    return events_seen(await r.text()) >= before + args.events
                # polled slowly: a scrape competes with the watch for serve's CPU; the rate
                # comes from serve's own time of the last event, not from the poll
                await poll(f"{base}/metrics", s, applied, 300, interval=1.0)
                async with s.get(f"{base}/metrics") as r:
                    t_events = last_event(await r.text()) - released
                times, size, series = [], 0, 0
                for _ in range(args.scrapes):
                    body, took = await scrape(f"{base}/metrics", s)
                    times.append(took)
                    size = len(body)
                series = sum(1 for ln in body.splitlines() if ln and not ln.startswith(b"#"))
                rss = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)
            await runner.cleanup()
    registry = CollectorRegistry()
    registry.register(WalkingCollector(apps, secrets, cronjobs))
    base_times = []
    for _ in range(max(5, args.scrapes // 20)):
        t0 = time.perf_counter()
        generate_latest(registry)
        base_times.append(time.perf_counter() - t0)
    p50, p99 = percentiles(times)
    b50, b99 = percentiles(base_times)
    print(f"objects: {args.apps} Applications, {args.secrets} TLS Secrets, "
          f"{args.cronjobs} CronJobs; {series} series, {size / 1e6:.1f} MB per scrape")
    print(f"time to ready: {t_ready:.2f} s")
    print(f"watch events: {args.events} in {t_events:.2f} s = {args.events / t_events:.0f}/s "
          "(from release to serve's last applied event)")
    print(f"scrape: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({args.scrapes} scrapes over HTTP, "
          f"client {'curl' if shutil.which('curl') else 'aiohttp'})")
    print(f"baseline (prometheus_client collector walking objects): p50 {b50:.1f} ms, "
          f"p99 {b99:.1f} ms -> {b50 / p50:.1f}x slower at p50")
    print(f"serve RSS: {rss:.0f} MB")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--apps", type=int, default=10_000)
    p.add_argument("--secrets", type=int, default=10_000)
    p.add_argument("--cronjobs", type=int, default=1_000)
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--scrapes", type=int, default=200)
    asyncio.run(main(p.parse_args()))
