"""Soak: `serve` against a real kube-apiserver under churn, restarts and compaction.

etcd and two apiservers (tests/kube_real.py): the churn is written through the session's
apiserver; the exporter watches a second one with `--watch-cache=false`, which is
restarted every `--restart-every` seconds, while etcd is compacted every
`--compact-every` seconds (so re-watches get real 410s). The churn is backup CronJobs:
status updates, deletes, creates and re-creates under the same name (a new UID), at
`--rate` events per second.

Reported: events written and the rate reached, the exporter's RSS slope (MB/hour after
the first 10% of the run), open file descriptors, asyncio tasks, restarts by reason, every
scrape checked for duplicate series, and exactness at the end: /metrics against a fresh
LIST rendered by a new source (0 missing, extra, wrong or duplicated series) or exit 1.

    .venv/bin/python bench/soak.py [--duration 1800] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

import aiohttp  # noqa: E402

from bench.kube_load import (  # noqa: E402
    ExporterProcess,
    Writer,
    compare,
    cronjob,
    parse_series,
    scrape,
    stamp,
    wait_ready,
)
from sloexporter import names  # noqa: E402
from tests.kube_real import KubeCluster, api_state  # noqa: E402

NS = "soak"


def child(argv: list[str]) -> int:
    """`serve`, plus the number of asyncio tasks written to --stats every second."""
    from sloexporter.config import load_config, parse_listen
    from sloexporter.server import Exporter, serve
    from sloexporter.sources.store import Shard

    p = argparse.ArgumentParser()
    p.add_argument("--child", action="store_true")
    p.add_argument("--stats", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--listen", required=True)
    args = p.parse_args(argv)
    import logging
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(args.config)
    host, port = parse_listen(args.listen)

    async def run() -> None:
        async def stats() -> None:
            while True:
                # written aside and renamed: the soak reads it while this writes it
                tmp = Path(args.stats + ".tmp")
                tmp.write_text(json.dumps({"tasks": len(asyncio.all_tasks())}))
                tmp.replace(args.stats)
                await asyncio.sleep(1)
        task = asyncio.create_task(stats())
        try:
            await serve(Exporter(config, Shard()), host, port)
        finally:
            task.cancel()

    asyncio.run(run())
    return 0


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per hour."""
    if len(points) < 3:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    return 0.0 if var == 0 else sum((t - mx) * (v - my) for t, v in points) / var * 3600


async def churn(writer: Writer, present: dict[str, int], pool: int, rate: float,
                until: float, stats: dict[str, int]) -> None:
    """Write at `rate` events/s: 70% status updates, 15% deletes, 15% (re-)creates."""
    gate = asyncio.Semaphore(writer.concurrency)
    started = time.monotonic()
    issued = 0
    tasks: set[asyncio.Task[Any]] = set()

    async def one() -> None:
        async with gate:
            roll = random.random()
            live = list(present)
            if live and roll < 0.70:
                name = random.choice(live)
                present[name] += 1
                await writer.set_success(NS, name, stamp(present[name]))
                stats["updates"] += 1
            elif live and roll < 0.85:
                name = random.choice(live)
                present.pop(name, None)
                await writer.delete(NS, name)
                stats["deletes"] += 1
            else:
                gone = [f"c{i:04d}" for i in range(pool) if f"c{i:04d}" not in present]
                if not gone:
                    return
                name = random.choice(gone)
                present[name] = 1_780_000_000 + random.randrange(10**6)
                await writer.create(cronjob(NS, name, present[name]))  # 2 events
                stats["creates"] += 1

    while time.monotonic() < until:
        due = int((time.monotonic() - started) * rate) - issued
        # never queue more than the writer can have in flight: when the apiserver is
        # slower than `rate`, the schedule slips (the report gives the rate reached)
        due = min(due, 2 * writer.concurrency - len(tasks))
        for _ in range(max(due, 0)):
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            issued += 1
        if due < 0:
            issued = int((time.monotonic() - started) * rate)  # slipped: do not catch up
        await asyncio.sleep(0.01)
    if tasks:
        await asyncio.gather(*tasks)


async def main(args: argparse.Namespace) -> int:
    cluster = KubeCluster()
    workdir = Path(tempfile.mkdtemp(prefix="sloexporter-soak-"))
    exporter = None
    watched = None
    try:
        cluster.start()
        cluster.ensure_namespace(NS)
        watched = cluster.extra_apiserver_process("watched", watch_cache=False)
        writer = Writer(cluster, args.concurrency)
        present = {f"c{i:04d}": 1_780_000_000 + i for i in range(args.objects)}
        await writer.run_all(lambda n=n, v=v: writer.create(cronjob(NS, n, v))
                             for n, v in present.items())
        stats_file = workdir / "stats.json"
        exporter = ExporterProcess.start(cluster, watched, NS, workdir, child=True,
                                         stats=stats_file,
                                         watch={"timeout_seconds": args.watch_timeout})
        samples: list[dict[str, float]] = []
        counts = {"updates": 0, "deletes": 0, "creates": 0, "scrapes": 0,
                  "dupe_scrapes": 0, "restarts": 0, "compactions": 0}
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, exporter.url)
            start = time.monotonic()
            end = start + args.duration
            writes0 = writer.ok
            churner = asyncio.create_task(churn(writer, present, args.objects * 2, args.rate,
                                                end, counts))

            async def every(period: float, fault: Any, name: str) -> None:
                while time.monotonic() + period < end:
                    await asyncio.sleep(period)
                    await asyncio.to_thread(fault)
                    counts[name] += 1

            faults = [asyncio.create_task(every(args.restart_every, watched.restart,
                                                "restarts")),
                      asyncio.create_task(every(args.compact_every, cluster.compact,
                                                "compactions"))]
            while time.monotonic() < end:
                try:
                    body = await scrape(http, exporter.url)
                    _, dupes = parse_series(body, "sloexporter_backup")
                    counts["scrapes"] += 1
                    counts["dupe_scrapes"] += dupes > 0
                except (aiohttp.ClientError, TimeoutError):
                    pass
                tasks = json.loads(stats_file.read_text())["tasks"] if stats_file.exists() \
                    else 0
                samples.append({"t": time.monotonic() - start, "rss": exporter.rss_mb(),
                                "fds": exporter.fds(), "tasks": tasks})
                await asyncio.sleep(args.scrape_every)
            await churner
            written = writer.ok - writes0
            elapsed = time.monotonic() - start
            await asyncio.gather(*faults)
            watched.start()
            # the end: the exporter must reach exactly the API state
            settle = time.monotonic()
            result: dict[str, int] = {}
            while time.monotonic() - settle < args.exact_timeout:
                body = await scrape(http, exporter.url)
                got, dupes = parse_series(body, "sloexporter_backup")
                result = compare(got, api_state(cluster, "backups", NS, velero=False), dupes)
                if not any(result.values()):
                    break
                await asyncio.sleep(0.5)
            settled = time.monotonic() - settle
            final = await scrape(http, exporter.url)
        await writer.close()
        restarts, _ = parse_series(final, names.WATCH_RESTARTS.removesuffix("_total"))
        by_reason: dict[str, float] = {}
        for (_, labels), v in restarts.items():
            reason = dict(labels)["reason"]
            by_reason[reason] = by_reason.get(reason, 0) + v
        warm = [s for s in samples if s["t"] >= args.duration * 0.1]
        print(f"soak: {elapsed:.0f} s, {written} events written ({written / elapsed:.0f}/s; "
              f"target {args.rate:.0f}/s), {writer.failed} writes failed")
        print(f"churn: {counts['updates']} updates, {counts['deletes']} deletes, "
              f"{counts['creates']} creates/re-creates; {counts['restarts']} apiserver "
              f"restarts, {counts['compactions']} etcd compactions")
        print(f"exporter restarts by reason: {json.dumps(by_reason, sort_keys=True)}")
        rss = [s["rss"] for s in samples]
        print(f"RSS: start {rss[0]:.1f} MB, end {rss[-1]:.1f} MB, max {max(rss):.1f} MB, "
              f"slope {slope_per_hour([(s['t'], s['rss']) for s in warm]):+.1f} MB/hour")
        fds = [s["fds"] for s in samples]
        tasks_seen = [s["tasks"] for s in samples]
        print(f"fds: start {fds[0]}, end {fds[-1]}, max {max(fds)}; asyncio tasks: start "
              f"{tasks_seen[0]}, end {tasks_seen[-1]}, max {max(tasks_seen)}")
        print(f"scrapes: {counts['scrapes']}, with a duplicate series: {counts['dupe_scrapes']}")
        print(f"exact {settled:.1f} s after the churn stopped: {result}")
        return 0 if not any(result.values()) and not counts["dupe_scrapes"] else 1
    finally:
        if exporter is not None:
            exporter.stop()
        cluster.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=1800.0, help="seconds of churn")
    p.add_argument("--rate", type=float, default=200.0, help="events per second")
    p.add_argument("--objects", type=int, default=300, help="CronJobs at the start")
    p.add_argument("--restart-every", type=float, default=180.0)
    p.add_argument("--compact-every", type=float, default=120.0)
    p.add_argument("--scrape-every", type=float, default=1.0)
    p.add_argument("--watch-timeout", type=int, default=60,
                   help="the exporter's watch timeoutSeconds (re-watches meet compactions)")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--exact-timeout", type=float, default=120.0)
    return p.parse_args(argv)


if __name__ == "__main__":
    if "--child" in sys.argv:
        raise SystemExit(child(sys.argv[1:]))
    raise SystemExit(asyncio.run(main(parse())))
