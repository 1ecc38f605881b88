"""Benchmark: the status service with 1,000 SLOs on a real Prometheus.

Backfills a day of the recorded series that `sloexporter generate` writes for N SLOs
(`slo:info`, the 5-minute errors and totals, every burn-rate window) into a real
Prometheus, then measures in the same run:

- one batched refresh (the service's way): its queries and wall time;
- the naive baseline: the same numbers read one SLO at a time (four queries per SLO:
  errors, totals, burn windows, alerts), its queries and wall time;
- the API list (`/api/v1/slos`) over HTTP: the first request after a refresh (which
  serialises every SLO) and then warm p50 and p99 (target p99 < 200 ms);
- the list page (`/`): the same (target < 1 s).

The recorded series are written directly (not evaluated from raw data) because the
benchmark measures the service, not rule evaluation; their names and labels are the
generator's (from `sloexporter.promql`).

    .venv/bin/python bench/status.py [--slos 1000] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sloexporter import promql  # noqa: E402
from sloexporter.config import Config  # noqa: E402
from sloexporter.server import Exporter  # noqa: E402
from sloexporter.sources.store import Shard  # noqa: E402
from sloexporter.specs import load_paths  # noqa: E402
from sloexporter.status.config import StatusConfig  # noqa: E402
from sloexporter.status.service import StatusService  # noqa: E402
from sloexporter.status.web import build_status_app  # noqa: E402
from tests.status_history import PromProcess  # noqa: E402
from tests.tools import free_port  # noqa: E402

WINDOWS = (300, 1800, 3600, 7200, 21600, 86400, 259200)
STEP = 300
HISTORY = 86400


def write_specs(folder: Path, slos: int) -> None:
    per = 10
    for s in range((slos + per - 1) // per):
        doc = {"apiVersion": "sloexporter.dev/v1", "kind": "ServiceLevels",
               "service": f"svc{s}", "labels": {"team": f"team{s % 7}"},
               "slos": [{"name": f"slo{i}", "objective": 99.9,
                         "sli": {"events": {
                             "errors": f'sum(rate(req_total{{job="svc{s}",slo="{i}",'
                                       'code=~"5.."}[{{window}}]))',
                             "total": f'sum(rate(req_total{{job="svc{s}",slo="{i}"}}'
                                      '[{{window}}]))'}}}
                        for i in range(min(per, slos - s * per))]}
        (folder / f"svc{s}.yaml").write_text(yaml.safe_dump(doc))


def openmetrics(keys: list[tuple[str, str]], now: int, path: Path) -> None:
    start = now - HISTORY
    with path.open("w") as f:
        def family(name: str, value: str, since: int, extra: str = "") -> None:
            f.write(f"# TYPE {name} gauge\n")
            for service, slo in keys:
                labels = f'service="{service}",slo="{slo}"{extra}'
                for t in range(since, now + 1, STEP):
                    f.write(f"{name}{{{labels}}} {value} {t}\n")
        family(promql.INFO, "1", now - 3600, ',objective="99.9",period="30d",sli_kind="events"')
        family(promql.ERRORS_RATE5M, "0.01", start)
        family(promql.TOTAL_RATE5M, "10", start)
        for window in WINDOWS:
            family(promql.error_ratio_name(window), "0.001", now - 3600)
        f.write("# EOF\n")


async def naive_refresh(svc: StatusService, keys: list[tuple[str, str]]) -> int:
    """One SLO at a time, as a tool without batching would."""
    client = svc.client
    gate = asyncio.Semaphore(4)
    sent = 0

    async def one(service: str, slo: str) -> None:
        nonlocal sent
        labels = {"service": service, "slo": slo}
        exprs = [promql.average_over(promql.selector(promql.ERRORS_RATE5M, labels), 30 * 86400),
                 promql.average_over(promql.selector(promql.TOTAL_RATE5M, labels), 30 * 86400),
                 '{__name__=~"slo:sli_error:ratio_rate.+",' + promql.matchers(labels) + "}",
                 promql.selector("ALERTS", labels)]
        for expr in exprs:
            async with gate:
                await client.query(expr)
                sent += 1

    await asyncio.gather(*(one(s, o) for s, o in keys))
    return sent


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def measure(url: str, specs: Path, keys: list[tuple[str, str]], requests: int) -> None:
    services, errors = load_paths([str(specs)])
    assert not errors, errors
    cfg = StatusConfig.model_validate({"prometheus": {"url": url, "query_timeout": 60},
                                       "calendar": {"period": "month"},
                                       "stale_after": 3600})
    svc = StatusService(cfg, [s for svc in services for s in svc.slos])
    start = time.perf_counter()
    await svc.refresh()
    batched_s = time.perf_counter() - start
    assert svc.error is None, svc.error
    batched_q = svc.refresh_queries
    print(f"batched refresh: {batched_q} queries, {batched_s:.2f} s for {len(keys)} SLOs",
          flush=True)
    start = time.perf_counter()
    naive_q = await naive_refresh(svc, keys)
    naive_s = time.perf_counter() - start
    print(f"naive baseline:  {naive_q} queries, {naive_s:.2f} s "
          f"({naive_q / batched_q:.0f}x the queries, {naive_s / batched_s:.1f}x the time)",
          flush=True)

    await svc.refresh()  # fresh data for the serving measurements
    exporter = Exporter(Config(), Shard(0, 1))
    runner = web.AppRunner(build_status_app(exporter, svc))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as session:
            for path, n, target in (("/api/v1/slos", requests, 0.2), ("/", max(requests // 10, 5),
                                                                     1.0)):
                t = time.perf_counter()  # the first request after a refresh renders
                async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
                    await resp.read()
                cold = time.perf_counter() - t
                times = []
                for _ in range(n):
                    t = time.perf_counter()
                    async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
                        body = await resp.read()
                        assert resp.status == 200, body[:200]
                    times.append(time.perf_counter() - t)
                p50, p99 = statistics.median(times), pct(times, 0.99)
                verdict = "ok" if p99 < target else "OVER TARGET"
                print(f"GET {path:<13} {n} requests, {len(body) / 1024:.0f} KiB: "
                      f"first after a refresh {cold * 1000:.1f} ms, then p50 {p50 * 1000:.1f} ms, "
                      f"p99 {p99 * 1000:.1f} ms (target p99 < {target * 1000:.0f} ms: "
                      f"{verdict})", flush=True)
    finally:
        await runner.cleanup()
        await svc.client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slos", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not prometheus or not promtool:
        print("needs prometheus and promtool (scripts/install-tools.sh)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-status-"))
    try:
        specs = work / "slos"
        specs.mkdir()
        write_specs(specs, args.slos)
        keys = [(f"svc{s // 10}", f"slo{s % 10}") for s in range(args.slos)]
        now = int(time.time()) // STEP * STEP
        om = work / "series.om"
        openmetrics(keys, now, om)
        t = time.perf_counter()
        subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(om),
                        str(work / "tsdb")], check=True, capture_output=True, timeout=1800)
        print(f"backfilled {args.slos} SLOs' recorded series in {time.perf_counter() - t:.1f} s",
              flush=True)
        prom = PromProcess(prometheus, work)
        config = work / "prometheus.yml"
        config.write_text("global: {}\n")
        prom.start(config)
        try:
            asyncio.run(measure(prom.url, specs, keys, args.requests))
        finally:
            prom.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
