"""Load for a real kube-apiserver (tests/kube_real.py): writes, the exporter process, checks.

Shared by bench/real_apiserver.py and bench/soak.py. The objects are backup CronJobs
(`sloexporter.dev/backup: "true"`): a built-in kind, so no CRD (nor ../shared) is needed,
and each one yields five series in the backups source.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sloexporter import names  # noqa: E402
from tests.kube_real import APIServer, KubeCluster  # noqa: E402
from tests.tools import free_port  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
SUCCESS_LINE = re.compile(
    rb'^' + names.BACKUP_LAST_SUCCESS.encode() + rb'\{([^}]*)\} (\S+)$', re.M)
NAME_LABEL = re.compile(rb'name="([^"]*)"')


def cronjob(ns: str, name: str, success: int) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {names.BACKUP_LABEL: "true"}},
            "spec": {"schedule": "0 2 * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "b", "image": "busybox"}]}}}}},
            "status": {"lastSuccessfulTime": stamp(success)}}


def stamp(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class Writer:
    """Async writes as admin, `concurrency` in flight; counts what the server accepted."""

    def __init__(self, cluster: KubeCluster, concurrency: int = 16) -> None:
        self.cluster = cluster
        self.concurrency = concurrency
        self.ok = 0
        self.failed = 0
        ctx = ssl.create_default_context(cafile=str(cluster.pki / "ca.crt"))
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, limit=concurrency),
            headers={"Authorization": "Bearer admin-token"},
            timeout=aiohttp.ClientTimeout(total=30))

    async def close(self) -> None:
        await self.session.close()

    @property
    def base(self) -> str:
        assert self.cluster.main is not None
        return self.cluster.main.url

    async def _send(self, method: str, path: str, body: Any, ctype: str) -> bool:
        try:
            async with self.session.request(method, self.base + path, data=json.dumps(body),
                                            headers={"Content-Type": ctype}) as resp:
                await resp.read()
                good = resp.status < 300 or (method == "DELETE" and resp.status == 404)
        except (aiohttp.ClientError, TimeoutError):
            good = False
        if good:
            self.ok += 1
        else:
            self.failed += 1
        return good

    async def create(self, obj: dict[str, Any]) -> bool:
        ns = obj["metadata"]["namespace"]
        ok = await self._send("POST", f"/apis/batch/v1/namespaces/{ns}/cronjobs", obj,
                              "application/json")
        # status is a subresource: set it in a second write
        return ok and await self.set_success(ns, obj["metadata"]["name"],
                                             obj["status"]["lastSuccessfulTime"])

    async def set_success(self, ns: str, name: str, when: str) -> bool:
        return await self._send(
            "PATCH", f"/apis/batch/v1/namespaces/{ns}/cronjobs/{name}/status",
            {"status": {"lastSuccessfulTime": when}}, "application/merge-patch+json")

    async def delete(self, ns: str, name: str) -> bool:
        return await self._send("DELETE", f"/apis/batch/v1/namespaces/{ns}/cronjobs/{name}",
                                {"kind": "DeleteOptions", "apiVersion": "v1",
                                 "gracePeriodSeconds": 0}, "application/json")

    async def run_all(self, jobs: Iterable[Any]) -> None:
        """Run coroutine factories with `concurrency` in flight."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for job in jobs:
            queue.put_nowait(job)

        async def worker() -> None:
            while not queue.empty():
                await queue.get_nowait()()

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))


@dataclass
class ExporterProcess:
    """`sloexporter serve` (or bench/soak.py --child) watching `server` as the chart's user."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @classmethod
    def start(cls, cluster: KubeCluster, server: APIServer, ns: str, workdir: Path,
              child: bool = False, stats: Path | None = None,
              watch: dict[str, Any] | None = None) -> ExporterProcess:
        port = free_port()
        config = workdir / "serve.json"
        config.write_text(json.dumps({
            "cluster": {"mode": "kubeconfig",
                        "kubeconfig": str(cluster.write_kubeconfig(server, "exporter"))},
            "sources": {"argocd": {"enabled": False}, "certificates": {"enabled": False},
                        "services": {"enabled": False},
                        "backups": {"namespaces": [ns], "velero": False}},
            "watch": watch or {}}))
        argv = [sys.executable, "-m", "sloexporter.cli", "serve"] if not child else \
            [sys.executable, str(Path(__file__).with_name("soak.py")), "--child",
             "--stats", str(stats)]
        argv += ["--config", str(config), "--listen", f"127.0.0.1:{port}"]
        log = workdir / "serve.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        return cls(proc, f"http://127.0.0.1:{port}", log)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


async def scrape(session: aiohttp.ClientSession, url: str) -> bytes:
    async with session.get(url + "/metrics", timeout=aiohttp.ClientTimeout(total=30)) as r:
        return await r.read()


async def wait_ready(session: aiohttp.ClientSession, url: str, timeout: float = 120,
                     proc: asyncio.subprocess.Process | None = None) -> float:
    """Seconds until `url`/readyz answers 200; fails at once if `proc` (serve) exits."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc is not None and proc.returncode is not None:
            raise RuntimeError(f"the exporter exited with {proc.returncode} before it was ready")
        try:
            async with session.get(url + "/readyz") as r:
                if r.status == 200:
                    return time.monotonic() - started
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError("the exporter never became ready")


def success_values(body: bytes) -> dict[str, float]:
    """name -> last-success value, from the exposition (fast: a regex, not a parser)."""
    out = {}
    for labels, value in SUCCESS_LINE.findall(body):
        m = NAME_LABEL.search(labels)
        if m:
            out[m.group(1).decode()] = float(value)
    return out


def compare(got: dict[Any, float], want: dict[Any, float], dupes: int) -> dict[str, int]:
    return {"missing": len(want.keys() - got.keys()), "extra": len(got.keys() - want.keys()),
            "wrong": sum(1 for k in want.keys() & got.keys() if got[k] != want[k]),
            "duplicated": dupes}


def parse_series(body: bytes, prefix: str) -> tuple[dict[Any, float], int]:
    """Series under `prefix` and how many appeared more than once."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[Any, float] = {}
    dupes = 0
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if not s.name.startswith(prefix):
                continue
            key = (s.name, frozenset(s.labels.items()))
            dupes += key in out
            out[key] = s.value
    return out, dupes
