"""Measure `sloexporter serve` per 10,000 watched objects, for the chart's sizing table.

A stand-in API server (aiohttp, paginated LIST, idle WATCH) serves N objects of one kind;
a real `serve` process lists them. Printed per kind: time to /readyz, CPU seconds to get
there, resident memory, and the wall and CPU time of one /metrics scrape.

    .venv/bin/python bench/sizing.py [--objects 10000] [--kinds applications,...]

The objects are the sharding test's (tests/test_sharding.py), renamed per copy.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere; it reuses the test objects

from bench.kube_load import wait_ready  # noqa: E402
from tests.kube_fixtures import RESOURCES  # noqa: E402
from tests.test_sharding import cluster_objects  # noqa: E402
from tests.tools import free_port  # noqa: E402

#: kind -> API paths served; a CronJob comes with its two Jobs
KINDS = {"applications": ["applications"], "cronjobs": ["cronjobs", "jobs"],
         "certificates": ["certificates"], "secrets": ["secrets"]}
DEADLINE = 600.0
SCRAPES = 20


def api_path(obj: dict[str, Any]) -> str:
    group, _, version = obj["apiVersion"].rpartition("/")
    plural = next(key.rsplit("/", 1)[1] for key, kind in RESOURCES.items()
                  if kind == obj["kind"] and key.startswith(obj["apiVersion"] + "/"))
    return f"/apis/{group}/{version}/{plural}" if group else f"/api/{version}/{plural}"


def objects(kind: str, count: int) -> dict[str, list[dict[str, Any]]]:
    """`count` copies of the first synthetic object of `kind` (and its Jobs), by API path."""
    plurals = KINDS[kind]
    first = [o for o in cluster_objects(1) if o["metadata"]["uid"].endswith("-0")
             and api_path(o).rsplit("/", 1)[1] in plurals]
    out: dict[str, list[dict[str, Any]]] = {}
    for i in range(count):
        for template in first:
            obj = copy.deepcopy(template)
            obj["metadata"]["name"] += f"-{i}"
            obj["metadata"]["uid"] += f"-{i}"
            for ref in obj["metadata"].get("ownerReferences", ()):
                ref["uid"] += f"-{i}"
                ref["name"] += f"-{i}"
            out.setdefault(api_path(obj), []).append(obj)
    return out


async def api_server(store: dict[str, list[dict[str, Any]]],
                     done: asyncio.Event) -> tuple[web.AppRunner, int]:
    async def handle(request: web.Request) -> web.StreamResponse:
        items = store.get(request.path, [])
        if request.query.get("watch") == "true":
            resp = web.StreamResponse()
            await resp.prepare(request)
            await done.wait()  # an idle watch until the measurement ends
            return resp
        limit = int(request.query.get("limit", 500))
        start = int(request.query.get("continue") or 0)
        more = start + limit < len(items)
        return web.json_response({"items": items[start:start + limit], "metadata": {
            "resourceVersion": "1", "continue": str(start + limit) if more else ""}})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def usage(pid: int) -> tuple[float, float]:
    """(CPU seconds, resident MiB) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
               if ln.startswith("VmRSS")).split()[1]
    return cpu, int(rss) / 1024


async def measure(kind: str, count: int, workdir: Path) -> dict[str, Any]:
    store = objects(kind, count)
    done = asyncio.Event()
    runner, port = await api_server(store, done)
    kubeconfig, config = workdir / "kubeconfig", workdir / "config.yaml"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "k",
        "clusters": [{"name": "k", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "contexts": [{"name": "k", "context": {"cluster": "k", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    config.write_text(json.dumps({
        "cluster": {"mode": "kubeconfig", "kubeconfig": str(kubeconfig)},
        "sources": {"certificates": {"ingresses": False, "tls_secrets": True},
                    "services": {"enabled": False}}}))
    listen = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sloexporter.cli", "serve", "--config", str(config), "--listen",
        f"127.0.0.1:{listen}", cwd=ROOT, stderr=asyncio.subprocess.DEVNULL)
    url = f"http://127.0.0.1:{listen}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            ready = await wait_ready(session, url, DEADLINE, proc)
            cpu_ready, rss_ready = usage(proc.pid)
            began = time.monotonic()
            for _ in range(SCRAPES):
                async with session.get(url + "/metrics") as resp:
                    body = await resp.read()
            scrape = (time.monotonic() - began) / SCRAPES
            cpu_after, rss_after = usage(proc.pid)
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
        done.set()
        await runner.cleanup()
    return {"kind": kind, "objects": sum(len(v) for v in store.values()),
            "ready_s": round(ready, 2), "cpu_to_ready_s": round(cpu_ready, 2),
            "rss_mib": round(max(rss_ready, rss_after), 1),
            "scrape_ms": round(scrape * 1000, 1),
            "scrape_cpu_ms": round((cpu_after - cpu_ready) / SCRAPES * 1000, 1),
            "series": body.count(b"\n")}


async def main_async(kinds: list[str], count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # the same process with nothing to watch: each kind's cost is its figures minus these
        base = await measure(kinds[0], 0, Path(tmp))
        print(json.dumps(dict(base, kind="baseline: nothing to watch")), flush=True)
        for kind in kinds:
            row = await measure(kind, count, Path(tmp))
            row["rss_over_baseline_mib"] = round(row["rss_mib"] - base["rss_mib"], 1)
            row["cpu_over_baseline_s"] = round(row["cpu_to_ready_s"] - base["cpu_to_ready_s"], 2)
            print(json.dumps(row), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()
    asyncio.run(main_async(args.kinds.split(","), args.objects))
    return 0


if __name__ == "__main__":
    sys.exit(main())
