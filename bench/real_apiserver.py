"""Benchmark: `sloexporter serve` following a real kube-apiserver (`exporter.py --real-apiserver`).

One run, one cluster (etcd + kube-apiserver from tests/kube_real.py):

1. **baseline**: the apiserver's own write rate. N writes (backup CronJobs: a create and a
   status patch each), 16 in flight, with no exporter watching them.
2. **exporter**: `serve` (a real process, the chart's RBAC) watches another namespace;
   the same N writes go there. Measured: the write rate with the exporter watching, the
   events per second end to end (first write to /metrics exact), the time from the last
   write's acknowledgement until /metrics is exact (polled every 50 ms), and the
   exporter's CPU per event.
3. **exactness**: /metrics against a fresh LIST rendered by a new source (tests/kube_real
   `api_state`): 0 missing, extra, wrong or duplicated series, or the run fails.

    .venv/bin/python bench/real_apiserver.py [--writes 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from bench.kube_load import (  # noqa: E402
    ExporterProcess,
    Writer,
    compare,
    cronjob,
    parse_series,
    scrape,
    success_values,
    wait_ready,
)
from tests.kube_real import KubeCluster, api_state  # noqa: E402

BASE = 1_780_000_000


async def write_round(writer: Writer, ns: str, objects: int) -> tuple[float, float]:
    """Create `objects` CronJobs with their status: 2 writes each. (start, end) times."""
    started = time.monotonic()
    await writer.run_all(lambda i=i: writer.create(cronjob(ns, f"b{i:05d}", BASE + i))
                         for i in range(objects))
    return started, time.monotonic()


async def main(args: argparse.Namespace) -> int:
    objects = max(args.writes // 2, 1)
    writes = objects * 2
    cluster = KubeCluster()
    workdir = Path(tempfile.mkdtemp(prefix="sloexporter-bench-"))
    exporter = None
    try:
        cluster.start()
        for ns in ("bench-baseline", "bench"):
            cluster.ensure_namespace(ns)
        writer = Writer(cluster, args.concurrency)
        t0, t1 = await write_round(writer, "bench-baseline", objects)
        baseline_rate = writes / (t1 - t0)
        baseline_failed = writer.failed

        exporter = ExporterProcess.start(cluster, cluster.main, "bench", workdir)
        async with aiohttp.ClientSession() as http:
            ready_s = await wait_ready(http, exporter.url)
            cpu0 = exporter.cpu_seconds()
            expected = {f"b{i:05d}": float(BASE + i) for i in range(objects)}
            done = asyncio.Event()
            exact_at: list[float] = []

            async def poll() -> None:
                while True:
                    got = success_values(await scrape(http, exporter.url))
                    if done.is_set() and got == expected:
                        exact_at.append(time.monotonic())
                        return
                    await asyncio.sleep(0.05)

            poller = asyncio.create_task(poll())
            w0, w1 = await write_round(writer, "bench", objects)
            done.set()
            await asyncio.wait_for(poller, args.exact_timeout)
            cpu = exporter.cpu_seconds() - cpu0
            body = await scrape(http, exporter.url)
        await writer.close()
        got, dupes = parse_series(body, "sloexporter_backup")
        result = compare(got, api_state(cluster, "backups", "bench", velero=False), dupes)
        rate = writes / (w1 - w0)
        end_to_end = writes / (exact_at[0] - w0)
        print(f"writes: {writes} ({objects} CronJobs: create + status), "
              f"{args.concurrency} in flight")
        print(f"apiserver alone (baseline):    {baseline_rate:8.0f} writes/s"
              f"  ({baseline_failed} failed)")
        print(f"apiserver, exporter watching:  {rate:8.0f} writes/s  ({writer.failed} failed)")
        print(f"exporter, end to end:          {end_to_end:8.0f} events/s "
              f"(first write to /metrics exact)")
        print(f"/metrics exact after the last write: {exact_at[0] - w1:.3f} s")
        print(f"exporter CPU per event: {cpu / writes * 1000:.3f} ms; ready in {ready_s:.2f} s")
        print(f"exactness vs a fresh LIST: {result}")
        return 0 if not any(result.values()) else 1
    finally:
        if exporter is not None:
            exporter.stop()
        cluster.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--writes", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--exact-timeout", type=float, default=120.0)
    return p.parse_args(argv)


def run(argv: list[str] | None = None) -> int:
    return asyncio.run(main(parse(argv)))


if __name__ == "__main__":
    raise SystemExit(run())
