"""Benchmark: `serve` against an idiomatic prometheus_client exporter, under watch churn.

For each size (default 1,000 and 10,000 objects; `--sizes 50000,100000` for the large
ones) a stand-in Kubernetes API (aiohttp, in this process) serves a realistic mix by
paginated LIST, then streams churn on the WATCHes at `--churn` events per second:

- Applications of about 3 KB with `status.resources` and `status.history` (60 %), MODIFIED
  with their sync and health status and operation times moving;
- backup CronJobs (5 %) and their Jobs (25 %): new Jobs ADDED as they complete, the
  oldest DELETED, so the count stays level;
- TLS Secrets (10 %) with real leaf + CA chains, rotated (MODIFIED) to a new certificate.

Two exporters run in turn, one at a time so they never share the 2 cores, each fed the
same events through its own LIST and WATCH:

- **serve**: the real `sloexporter serve` process, through a kubeconfig;
- **baseline**: the idiomatic prometheus_client exporter: the same informers and the same
  per-object logic update labelled `Gauge`s on every event (`labels(...).set()`,
  `remove()` on delete), and prometheus_client's own HTTP server exposes them
  (`start_http_server`, gzip when asked, generated on every scrape).

Each exporter is measured the same way: time and CPU to ready; CPU per event over a
churn-only window; then `--scrapes` plain and `--scrapes` gzip scrapes over HTTP (curl,
one at a time, as Prometheus does) while the churn goes on; peak RSS (VmHWM) against an
idle process of the same kind with no objects; gzip cache hits and misses (serve caches
compressed chunks; the baseline compresses every gzip scrape anew, a miss each time).
At the end both expositions are parsed and compared: the same object series, same values.

Progress and each size's results are printed as they come.

    .venv/bin/python bench/exporter.py [--sizes 1000,10000] [--churn 1000] [--scrapes 50]
        [--nice -10]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from bench.kube_load import wait_ready  # noqa: E402
from sloexporter import names  # noqa: E402
from tests.tools import free_port  # noqa: E402

Obj = dict[str, Any]
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]
CONFIG: Obj = {"sources": {"certificates": {"ingresses": False, "cert_manager": False},
                           "services": {"enabled": False}, "backups": {"velero": False}}}
#: per-process bookkeeping, not object series: not compared between the two exporters
SELF_PREFIXES = ("sloexporter_source_", "sloexporter_watch_", "sloexporter_skipped_",
                 names.BUILD_INFO, "sloexporter_gzip_", "process_", "bench_")
#: targets from the issue, all under churn
P99_MS_PER_10K, RSS_MB_PER_10K, FLAT_CPU_RATIO = 10.0, 30.0, 1.5
CLK_TCK = os.sysconf("SC_CLK_TCK")
SHARES = {"applications": 0.6, "cronjobs": 0.05, "jobs": 0.25, "secrets": 0.10}
CHURN_SHARES = {"applications": 0.7, "jobs": 0.2, "secrets": 0.1}  # jobs: ADDED + DELETED
JOBS_PER_CRON = 5


def say(*parts: object) -> None:
    print(*parts, flush=True)


# --- workload ---------------------------------------------------------------------------

def make_chains(n: int) -> list[str]:
    """`n` base64 tls.crt values, each a real leaf + CA chain (EC keys: fast to make)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(days=30))
          .not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    out = []
    for i in range(n):
        key = ec.generate_private_key(ec.SECP256R1())
        host = f"svc{i}.bench.example.org"
        leaf = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
                .issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=10))
                .not_valid_after(now + dt.timedelta(days=10 + 7 * i))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, ca))
        out.append(base64.b64encode(pem).decode())
    return out


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


T0 = time.time() - 86400


def app(i: int, rev: int = 0) -> Obj:
    """An Application of about 3 KB, as Argo CD stores it."""
    team = f"team{i % 20}"
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": f"app{i}", "namespace": "argocd", "uid": f"app-{i}",
                         "resourceVersion": str(rev + 1), "labels": {"team": team},
                         "annotations": {"notified.notifications.argoproj.io": "{}"}},
            "spec": {"project": team,
                     "source": {"repoURL": f"https://git.example.org/{team}/app{i}.git",
                                "targetRevision": "main", "path": "deploy/overlays/prod"},
                     "destination": {"server": "https://kubernetes.default.svc",
                                     "namespace": f"ns{i % 50}"},
                     "syncPolicy": {"automated": {"prune": True, "selfHeal": True}}},
            "status": {
                "sync": {"status": "Synced" if (i + rev) % 7 else "OutOfSync",
                         "revision": f"{rev:040x}"},
                "health": {"status": "Healthy" if (i + rev) % 11 else "Degraded"},
                "operationState": {"phase": "Succeeded", "startedAt": iso(T0 + rev * 60),
                                   "finishedAt": iso(T0 + rev * 60 + 30)},
                "resources": [{"group": "apps", "version": "v1", "kind": kind,
                               "namespace": f"ns{i % 50}", "name": f"app{i}-{kind.lower()}",
                               "status": "Synced", "health": {"status": "Healthy"}}
                              for kind in ("Deployment", "Service", "ConfigMap", "Secret",
                                           "Ingress", "HorizontalPodAutoscaler",
                                           "ServiceAccount", "PodDisruptionBudget")],
                "history": [{"revision": f"{r:040x}", "deployedAt": iso(T0 + r * 60),
                             "id": r} for r in range(max(0, rev - 3), rev + 1)]}}


def cronjob(c: int) -> Obj:
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": f"backup{c}", "namespace": "backups", "uid": f"cj-{c}",
                         "labels": {names.BACKUP_LABEL: "true"}},
            "spec": {"schedule": f"{c % 60} {c % 24} * * *", "timeZone": "Europe/Berlin",
                     "jobTemplate": {"spec": {"template": {"spec": {"containers": [
                         {"name": "dump", "image": "postgres:16"}]}}}}},
            "status": {"lastScheduleTime": iso(T0), "lastSuccessfulTime": iso(T0 + 300)}}


def job(c: int, n: int) -> Obj:
    start = T0 + n * 3600
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"backup{c}-{n}", "namespace": "backups",
                         "uid": f"job-{c}-{n}", "ownerReferences": [
                             {"apiVersion": "batch/v1", "kind": "CronJob", "name": f"backup{c}",
                              "uid": f"cj-{c}", "controller": True}]},
            "status": {"startTime": iso(start), "completionTime": iso(start + 120),
                       "succeeded": 1, "conditions": [
                           {"type": "Complete", "status": "True",
                            "lastTransitionTime": iso(start + 120)}]}}


def secret(i: int, crt: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": f"tls{i}", "namespace": f"ns{i % 50}", "uid": f"sec-{i}"},
            "data": {"tls.crt": crt, "tls.key": ""}}  # the key is never read: left empty


@dataclass
class Workload:
    """The initial objects per plural (uid -> JSON), and the churn as an event sequence."""

    size: int
    chains: list[str]
    objects: dict[str, dict[str, bytes]] = field(default_factory=dict)
    _churn: dict[str, list[list[tuple[str, str, bytes]]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = {p: int(self.size * s) for p, s in SHARES.items()}
        self.apps, self.crons, self.secrets = n["applications"], n["cronjobs"], n["secrets"]
        objs = {
            "applications": [app(i) for i in range(self.apps)],
            "cronjobs": [cronjob(c) for c in range(self.crons)],
            "jobs": [job(c, k) for c in range(self.crons) for k in range(JOBS_PER_CRON)],
            "secrets": [secret(i, self.chains[i % len(self.chains)])
                        for i in range(self.secrets)],
        }
        self.objects = {p: {o["metadata"]["uid"]: json.dumps(o).encode() for o in items}
                        for p, items in objs.items()}

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.objects.values())

    def churn(self, plural: str, count: int) -> list[list[tuple[str, str, bytes]]]:
        """The first `count` churn steps of a plural, each its events as (type, uid,
        object JSON) (a Job step adds one and deletes the oldest). They are made
        once per workload, before any exporter is measured: serialising 1,000 events/s
        of 3 KB objects while measuring would take a core from the exporter measured."""
        made = self._churn.setdefault(plural, [])
        for k in range(len(made), count):
            made.append([(kind, obj["metadata"]["uid"], json.dumps(obj).encode())
                         for kind, obj in self.event(plural, k)])
        return made[:count]

    def event(self, plural: str, k: int) -> list[tuple[str, Obj]]:
        """The k-th churn event(s) of a plural: (type, object)."""
        if plural == "applications" and self.apps:
            return [("MODIFIED", app(k % self.apps, 1 + k // self.apps))]
        if plural == "secrets" and self.secrets:
            i = k % self.secrets
            return [("MODIFIED", secret(i, self.chains[(i + 1 + k // self.secrets)
                                                      % len(self.chains)]))]
        if plural == "jobs" and self.crons:
            c, n = k % self.crons, JOBS_PER_CRON + k // self.crons
            return [("ADDED", job(c, n)), ("DELETED", job(c, n - JOBS_PER_CRON))]
        return []


# --- the stand-in Kubernetes API --------------------------------------------------------

class FakeAPI:
    """Paginated LIST of the current state per plural; WATCH streams the churn.

    One churn sequence per plural, produced at the set rate once released and kept in a
    log: a watch tails the log from where it was when it connected, and a LIST shows the
    state so far, so an exporter that re-lists and re-watches (after a heartbeat timeout
    on a loaded machine, say) still ends in the state the other exporter ends in.
    """

    def __init__(self, workload: Workload, rate: float, seconds: float) -> None:
        self.w = workload
        self.rate = rate
        #: a fixed number of events per plural, so both exporters end in the same state
        self.limit = {p: int(share * rate * seconds) for p, share in CHURN_SHARES.items()
                      if workload.objects.get(p)}
        self.current = {p: dict(objs) for p, objs in workload.objects.items()}
        self.log: dict[str, list[bytes]] = {p: [] for p in self.current}
        #: every churn event, serialised before the exporter starts
        self.churn = {p: workload.churn(p, n) for p, n in self.limit.items()}
        self.grew = asyncio.Event()
        self.release = asyncio.Event()
        self.stop = asyncio.Event()
        self.written = 0  # watch events produced, over every plural
        self.finished: set[str] = set()  # plurals that produced their whole churn
        self._snapshots: dict[str, list[bytes]] = {}
        self._listed = 0

    @property
    def churning(self) -> bool:
        return self.release.is_set() and len(self.finished) < len(self.limit)

    async def produce(self) -> None:
        """The churn: events at the set rate, each applied to the current state."""
        await self.release.wait()
        started = time.monotonic()
        sent = dict.fromkeys(self.churn, 0)
        while not self.stop.is_set() and len(self.finished) < len(self.churn):
            elapsed = time.monotonic() - started
            for plural, events in self.churn.items():
                due = min(len(events), int(elapsed * CHURN_SHARES[plural] * self.rate))
                current, log = self.current[plural], self.log[plural]
                for step in events[sent[plural]:due]:
                    for kind, uid, raw in step:
                        if kind == "DELETED":
                            current.pop(uid, None)
                        else:
                            current[uid] = raw
                        log.append(b'{"type": "' + kind.encode() + b'", "object": ' + raw
                                   + b"}\n")
                        self.written += 1
                sent[plural] = due
                if due >= len(events):
                    self.finished.add(plural)
            self.grew.set()
            self.grew = asyncio.Event()
            await asyncio.sleep(0.01)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        plural = request.path.rstrip("/").rsplit("/", 1)[-1]
        if request.query.get("watch") == "true":
            return await self._watch(request, plural)
        token = request.query.get("continue") or ""
        snap_id, _, offset = token.partition(":")
        if not token:  # a LIST starts: its pages come from one snapshot of the state
            # a new id each time: len() of the dict reused the id of a finished list
            # while another was still paging, whose next pages then came from the wrong
            # snapshot (lost objects at 50,000 and more, where lists overlap)
            self._listed += 1
            snap_id = str(self._listed)
            self._snapshots[snap_id] = list(self.current.get(plural, {}).values())
        items = self._snapshots.get(snap_id, [])
        start = int(offset or 0)
        end = start + int(request.query.get("limit") or len(items) or 1)
        more = f', "continue": "{snap_id}:{end}"' if end < len(items) else ""
        if not more:
            self._snapshots.pop(snap_id, None)
        body = b'{"kind": "List", "metadata": {"resourceVersion": "1"' + more.encode() \
            + b'}, "items": [' + b",".join(items[start:end]) + b"]}"
        return web.Response(body=body, content_type="application/json")

    async def _watch(self, request: web.Request, plural: str) -> web.StreamResponse:
        try:
            return await self._stream(request, plural)
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            return web.StreamResponse()  # the exporter went away at the end of its phase

    async def _stream(self, request: web.Request, plural: str) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        log = self.log.get(plural, [])
        pos = len(log)
        while not self.stop.is_set():
            if len(log) > pos:
                end = len(log)
                await resp.write(b"".join(log[pos:end]))
                pos = end
            else:
                await self.grew.wait()
        return resp


# --- the baseline exporter (run with --baseline-process) ---------------------------------

def baseline_process(config_path: str, port: int) -> None:
    """The idiomatic prometheus_client exporter: gauges updated on every watch event."""
    from prometheus_client import CollectorRegistry, Gauge, ProcessCollector, start_http_server
    from prometheus_client.core import GaugeMetricFamily

    from sloexporter.config import load_config
    from sloexporter.server import Exporter
    from sloexporter.sources import base
    from sloexporter.sources.store import Sample, Shard, Store

    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    gauges: dict[str, Gauge] = {}

    class GaugeStore(Store):
        """Store's interface, kept as prometheus_client Gauges instead of bytes."""

        def __post_init__(self) -> None:
            self._help = {f.name: f.help for f in self.families}
            self._held: dict[str, dict[str, list[tuple[str, ...]]]] = {}

        def _gauge(self, name: str, labelnames: tuple[str, ...]) -> Gauge:
            gauge = gauges.get(name)
            if gauge is None:
                gauge = gauges[name] = Gauge(name, self._help[name], labelnames,
                                             registry=registry)
            return gauge

        def put_family(self, name: str, key: str, samples: Iterable[Sample]) -> None:
            held = self._held.setdefault(key, {})
            new: list[tuple[str, ...]] = []
            for labels, v in samples:
                items = list(labels.items() if isinstance(labels, Mapping) else labels)
                gauge = self._gauge(name, tuple(k for k, _ in items))
                values = tuple(str(x) for _, x in items)
                gauge.labels(*values).set(v)
                new.append(values)
            for values in set(held.get(name, ())) - set(new):
                gauges[name].remove(*values)
            if new:
                held[name] = new
            else:
                held.pop(name, None)

        def put(self, key: str, rows: Mapping[str, Iterable[Sample]]) -> None:
            for family in self.families:
                self.put_family(family.name, key, rows.get(family.name, ()))

        def delete(self, key: str) -> None:
            for name, values in self._held.pop(key, {}).items():
                for v in values:
                    gauges[name].remove(*v)

        def keys(self) -> set[str]:
            return set(self._held)

        def render(self, openmetrics: bool = False,
                   extra: Mapping[str, bytes] | None = None) -> list[bytes]:
            return []

    base.Store = GaugeStore  # type: ignore[misc] # the sources build their store from here
    exporter = Exporter(load_config(config_path), Shard())

    class Applied:
        """Events applied so far: the bench waits on it before comparing series."""

        def collect(self) -> Iterable[GaugeMetricFamily]:
            yield GaugeMetricFamily("bench_events_applied", "events applied",
                                    value=sum(exporter.metrics.events.values()))

    registry.register(Applied())  # type: ignore[arg-type]

    async def run() -> None:
        await exporter.start()
        while exporter.not_ready():
            await asyncio.sleep(0.05)
        start_http_server(port, "127.0.0.1", registry=registry)
        say("READY")
        await asyncio.Event().wait()

    asyncio.run(run())


# --- measuring --------------------------------------------------------------------------

def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 in ms; with fewer than two samples both are that sample."""
    if not samples:
        return float("nan"), float("nan")
    if len(samples) == 1:
        return samples[0] * 1000, samples[0] * 1000
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return q[49] * 1000, q[98] * 1000


def proc_stats(pid: int) -> tuple[float, float, float]:
    """(RSS MB, peak RSS MB, CPU seconds user+system) of a process, from /proc."""
    rss = peak = float("nan")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return rss, peak, (int(fields[11]) + int(fields[12])) / CLK_TCK


async def scrape(url: str, gz: bool, session: aiohttp.ClientSession) -> tuple[float, int]:
    """One scrape: (seconds, bytes). curl when present: a C client, its own process."""
    if shutil.which("curl"):
        args = ["curl", "-sf", "--max-time", "60", "-o", "/dev/null",
                "-w", "%{time_total} %{size_download}", url]
        if gz:
            args[1:1] = ["-H", "Accept-Encoding: gzip"]  # undecoded, as Prometheus gets it
        proc = await asyncio.create_subprocess_exec(*args, stdout=subprocess.PIPE)
        out, _ = await proc.communicate()
        took, size = out.split()
        return float(took), int(size)
    headers = {"Accept-Encoding": "gzip" if gz else "identity"}
    t0 = time.perf_counter()
    async with session.get(url, headers=headers, auto_decompress=False) as r:
        body = await r.read()
    return time.perf_counter() - t0, len(body)


def parse(text: str) -> Series:
    from prometheus_client.parser import text_string_to_metric_families

    out: Series = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if not s.name.startswith(SELF_PREFIXES):
                out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def metric_sum(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(prefix))


@dataclass
class Run:
    kind: str
    size: int
    ready_s: float = 0.0
    ready_cpu: float = 0.0
    cpu_per_event_us: float = 0.0
    events_per_s: float = 0.0
    plain: list[float] = field(default_factory=list)
    gz: list[float] = field(default_factory=list)
    body: int = 0
    gz_body: int = 0
    peak_rss: float = 0.0
    ready_peak_rss: float = 0.0  # the peak once the first LISTs are applied
    end_rss: float = 0.0  # the RSS after the churn and the scrapes
    gzip_hits: float = 0.0
    gzip_misses: float = 0.0
    series: Series = field(default_factory=dict)
    under_churn: int = 0  # scrape pairs started while the churn was still going
    scrape_cpu_ms: float = 0.0  # exporter CPU per scrape (plain and gzip averaged)
    churn_scrape_cpu_ms: float = 0.0  # the same under churn, less the events' CPU


class Exporters:
    """Starts either exporter against the stand-in API, waits until it is ready."""

    def __init__(self, tmp: Path, api_port: int) -> None:
        kube = tmp / "kubeconfig"
        kube.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "b",
            "clusters": [{"name": "b", "cluster": {"server": f"http://127.0.0.1:{api_port}"}}],
            "contexts": [{"name": "b", "context": {"cluster": "b", "user": "b"}}],
            "users": [{"name": "b", "user": {"token": "b"}}]}))
        self.config = tmp / "config.json"
        self.config.write_text(json.dumps(
            {**CONFIG, "cluster": {"mode": "kubeconfig", "kubeconfig": str(kube)}}))

    async def start(self, kind: str, port: int) -> asyncio.subprocess.Process:
        if kind == "serve":
            argv = ["-m", "sloexporter.cli", "serve", "--config", str(self.config),
                    "--listen", f"127.0.0.1:{port}", "--log-level", "warning"]
        else:
            argv = [str(Path(__file__)), "--baseline-process", str(self.config), str(port)]
        return await asyncio.create_subprocess_exec(
            sys.executable, *argv, cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL)

    @staticmethod
    async def ready(kind: str, proc: asyncio.subprocess.Process, url: str,
                    session: aiohttp.ClientSession, deadline: float = 1800) -> None:
        if kind == "baseline":
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), deadline)
            if line.strip() != b"READY":
                raise SystemExit("the baseline exporter did not start")
            return
        await wait_ready(session, url, deadline, proc)


async def measure(kind: str, w: Workload, args: argparse.Namespace, tmp: Path) -> Run:
    """One exporter, one size: ready, churn-only CPU, scrapes under churn, final series."""
    api = FakeAPI(w, args.churn, 1.0 + args.churn_seconds + args.scrape_seconds)
    app_ = web.Application()
    app_.router.add_route("GET", "/{tail:.*}", api.handle)
    runner = web.AppRunner(app_, handle_signals=False, shutdown_timeout=0.2)
    await runner.setup()
    producer = asyncio.create_task(api.produce())
    api_port, port = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", api_port).start()
    run = Run(kind, w.count)
    url = f"http://127.0.0.1:{port}"
    proc = await Exporters(tmp, api_port).start(kind, port)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
            t0 = time.monotonic()
            await Exporters.ready(kind, proc, url, s)
            run.ready_s = time.monotonic() - t0
            _, run.ready_peak_rss, run.ready_cpu = proc_stats(proc.pid)
            if not w.count:  # idle: a few scrapes, then the peak
                for gz in (False, True):
                    await scrape(url + "/metrics", gz, s)
                run.peak_rss = proc_stats(proc.pid)[1]
                return run
            # churn only: CPU per event
            api.release.set()
            await asyncio.sleep(1.0)  # let the streams reach their rate
            cpu0, n0, t1 = proc_stats(proc.pid)[2], api.written, time.monotonic()
            await asyncio.sleep(args.churn_seconds)
            cpu1, n1, t2 = proc_stats(proc.pid)[2], api.written, time.monotonic()
            run.cpu_per_event_us = (cpu1 - cpu0) / max(n1 - n0, 1) * 1e6
            run.events_per_s = (n1 - n0) / (t2 - t1)
            say(f"  {kind}: {run.events_per_s:.0f} events/s written, "
                f"{run.cpu_per_event_us:.0f} us CPU per event")
            # scrapes while the churn goes on
            cpu0, n0 = proc_stats(proc.pid)[2], api.written
            for i in range(args.scrapes):
                run.under_churn += api.churning
                for gz in (False, True):
                    took, size = await scrape(url + "/metrics", gz, s)
                    (run.gz if gz else run.plain).append(took)
                    if gz:
                        run.gz_body = size
                    else:
                        run.body = size
                if (i + 1) % max(1, args.scrapes // 4) == 0:
                    p50, p99 = percentiles(run.plain)
                    say(f"  {kind}: {i + 1}/{args.scrapes} scrape pairs, plain p50 "
                        f"{p50:.1f} ms p99 {p99:.1f} ms so far")
            run.end_rss, run.peak_rss, cpu1 = proc_stats(proc.pid)
            # what the scrapes cost under churn: the window's CPU less its events' CPU at
            # the churn-only rate (an estimate: events may still be queued at the end)
            events_cpu = (api.written - n0) * run.cpu_per_event_us / 1e6
            run.churn_scrape_cpu_ms = max(0.0, cpu1 - cpu0 - events_cpu) \
                / (2 * args.scrapes) * 1000
            while api.churning:  # the rest of the fixed churn, then the final state
                await asyncio.sleep(0.1)
            written = api.written
            # wait until every event written is applied, then read the final state
            applied_prefix = names.WATCH_EVENTS if kind == "serve" else "bench_events_applied"

            async def text() -> str:
                async with s.get(url + "/metrics") as r:
                    return await r.text()
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                body = await text()
                if metric_sum(body, applied_prefix) >= written:
                    break
                await asyncio.sleep(0.5)
            # the exporter's CPU per scrape, measured once the churn is over (load on the
            # machine stretches wall times, hardly CPU times)
            quiet = max(1, args.scrapes // 4)
            cpu0 = proc_stats(proc.pid)[2]
            for _ in range(quiet):
                for gz in (False, True):
                    await scrape(url + "/metrics", gz, s)
            run.scrape_cpu_ms = (proc_stats(proc.pid)[2] - cpu0) / (2 * quiet) * 1000
            body = await text()
            run.series = parse(body)
            run.gzip_hits = metric_sum(body, f'{names.GZIP_CHUNKS}{{result="hit"')
            run.gzip_misses = metric_sum(body, f'{names.GZIP_CHUNKS}{{result="miss"')
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        api.stop.set()
        api.grew.set()
        producer.cancel()
        await runner.cleanup()
    return run


def report(size: int, serve: Run, base: Run | None, idle: dict[str, Run],
           args: argparse.Namespace) -> dict[str, Any]:
    per10k = size / 10_000
    p50, p99 = percentiles(serve.plain)
    g50, g99 = percentiles(serve.gz)
    rss = serve.peak_rss - idle["serve"].peak_rss
    say(f"\n== {size} objects (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
        f"CPUs): {len(serve.series)} object series, {serve.body / 1e6:.1f} MB "
        f"per scrape ({serve.gz_body / 1e6:.2f} MB gzip), churn {serve.events_per_s:.0f} "
        f"events/s ==")
    target = P99_MS_PER_10K * max(per10k, 1.0)  # below 10k objects: 10 ms
    if serve.under_churn < len(serve.plain):
        say(f"NOTE: only {serve.under_churn} of {len(serve.plain)} scrape pairs ran under "
            f"churn; raise --scrape-seconds")
    say(f"serve    scrape p50 {p50:.1f} ms, p99 {p99:.1f} ms [target < {target:.0f} ms: "
        f"{'ok' if p99 < target else 'MISSED'}]; gzip p50 {g50:.1f} ms, p99 {g99:.1f} ms; "
        f"{serve.scrape_cpu_ms:.1f} ms CPU per scrape after the churn, about "
        f"{serve.churn_scrape_cpu_ms:.1f} ms under it")
    total = serve.gzip_hits + serve.gzip_misses
    say(f"         gzip chunks: {serve.gzip_hits:.0f} hits, {serve.gzip_misses:.0f} misses "
        f"({serve.gzip_hits / total * 100 if total else 0:.0f}% hits; changed chunks "
        f"are recompressed)")
    rss_verdict = ("ok" if rss / per10k < RSS_MB_PER_10K else "MISSED") \
        if size >= 10_000 else "n/a below 10k objects"
    say(f"         peak RSS {serve.peak_rss:.0f} MB, {rss:.0f} MB above idle "
        f"({rss / per10k:.0f} MB per 10k objects) [target < {RSS_MB_PER_10K:.0f}: "
        f"{rss_verdict}]; peak {serve.ready_peak_rss - idle['serve'].peak_rss:.0f} MB above "
        f"idle once listed, {serve.end_rss - idle['serve'].peak_rss:.0f} MB at the end; ready in "
        f"{serve.ready_s:.1f} s ({serve.ready_cpu:.1f} s CPU); "
        f"{serve.cpu_per_event_us:.0f} us CPU per event")
    row: dict[str, Any] = {"size": size, "series": len(serve.series),
                           "serve_p50_ms": p50, "serve_p99_ms": p99, "serve_gzip_p99_ms": g99,
                           "serve_rss_above_idle_mb": rss,
                           "serve_cpu_per_event_us": serve.cpu_per_event_us,
                           "serve_scrape_cpu_ms": serve.scrape_cpu_ms,
                           "serve_churn_scrape_cpu_ms": serve.churn_scrape_cpu_ms,
                           "serve_gzip_p50_ms": g50, "serve_peak_rss_mb": serve.peak_rss,
                           "serve_gzip_hits": serve.gzip_hits,
                           "serve_gzip_misses": serve.gzip_misses,
                           "load_average": os.getloadavg()[0]}
    if base is not None:
        b50, b99 = percentiles(base.plain)
        bg50, bg99 = percentiles(base.gz)
        brss = base.peak_rss - idle["baseline"].peak_rss
        say(f"baseline scrape p50 {b50:.1f} ms, p99 {b99:.1f} ms; gzip p50 {bg50:.1f} ms, "
            f"p99 {bg99:.1f} ms (every gzip scrape compressed anew: {len(base.gz)} misses); "
            f"{base.scrape_cpu_ms:.1f} ms CPU per scrape after the churn, about "
            f"{base.churn_scrape_cpu_ms:.1f} ms under it")
        say(f"         peak RSS {base.peak_rss:.0f} MB, {brss:.0f} MB above idle; ready in "
            f"{base.ready_s:.1f} s; {base.cpu_per_event_us:.0f} us CPU per event")
        say(f"ratio    scrape p99 {b99 / p99:.1f}x faster, gzip p99 {bg99 / g99:.1f}x, CPU "
            f"per scrape {base.scrape_cpu_ms / max(serve.scrape_cpu_ms, 1e-9):.1f}x less; "
            f"CPU per event {base.cpu_per_event_us / max(serve.cpu_per_event_us, 1e-9):.2f}x "
            f"of serve's; RSS above idle {brss / rss if rss > 0 else float('nan'):.2f}x")
        same = serve.series == base.series
        diff = ""
        if not same:
            only = sorted(serve.series.keys() ^ base.series.keys(), key=str)[:3]
            differ = [k for k in serve.series.keys() & base.series.keys()
                      if serve.series[k] != base.series[k]][:3]
            diff = f" only on one side: {only}; values differ: {differ}"
        say(f"same object series as the baseline after the churn: {'yes' if same else 'NO'}"
            f" ({len(serve.series)} compared, values included){diff}")
        row.update({"baseline_p50_ms": b50, "baseline_p99_ms": b99,
                    "baseline_gzip_p50_ms": bg50, "baseline_gzip_p99_ms": bg99,
                    "baseline_peak_rss_mb": base.peak_rss,
                    "baseline_churn_scrape_cpu_ms": base.churn_scrape_cpu_ms,
                    "baseline_rss_above_idle_mb": brss,
                    "baseline_cpu_per_event_us": base.cpu_per_event_us,
                    "baseline_scrape_cpu_ms": base.scrape_cpu_ms, "same_series": same})
    return row


async def main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = ["serve"] + ([] if args.no_baseline else ["baseline"])
    say(f"niceness {os.getpriority(os.PRIO_PROCESS, 0)}; sizes {sizes}; churn {args.churn} "
        f"events/s; {args.scrapes} plain + "
        f"{args.scrapes} gzip scrapes per exporter and size; exporters: {', '.join(kinds)}")
    chains = make_chains(16)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        idle = {}
        for kind in kinds:
            idle[kind] = await measure(kind, Workload(0, chains), args, Path(tmp))
            say(f"idle {kind}: peak RSS {idle[kind].peak_rss:.0f} MB, ready in "
                f"{idle[kind].ready_s:.1f} s")
        for size in sizes:
            say(f"\n-- {size} objects: building the workload")
            w = Workload(size, chains)
            runs: dict[str, Run] = {}
            for kind in kinds:
                say(f"  {kind}: starting")
                runs[kind] = await measure(kind, w, args, Path(tmp))
            rows.append(report(size, runs["serve"], runs.get("baseline"), idle, args))
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        ratio = last["serve_cpu_per_event_us"] / max(first["serve_cpu_per_event_us"], 1e-9)
        say(f"\nCPU per event, serve: {first['serve_cpu_per_event_us']:.0f} us at "
            f"{first['size']} objects, {last['serve_cpu_per_event_us']:.0f} us at "
            f"{last['size']}: {ratio:.2f}x [target flat, <= {FLAT_CPU_RATIO}x: "
            f"{'ok' if ratio <= FLAT_CPU_RATIO else 'MISSED'}]")
    say(json.dumps(rows, default=float))
    say(f"\nbench took {time.perf_counter() - started:.0f} s")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,10000",
                   help="object counts, comma-separated (default 1000,10000)")
    p.add_argument("--churn", type=float, default=1000.0, help="watch events per second")
    p.add_argument("--churn-seconds", type=float, default=5.0,
                   help="churn-only window for CPU per event")
    p.add_argument("--scrapes", type=int, default=50, help="per encoding and exporter")
    p.add_argument("--scrape-seconds", type=float, default=30.0,
                   help="how long the churn goes on after the CPU window, for the scrapes")
    p.add_argument("--baseline-scrapes", type=int, default=None,
                   help="deprecated: the baseline is scraped as often as serve")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--nice", type=int, default=0,
                   help="run the benchmark, both exporters and curl at this niceness "
                        "(e.g. -10 as root): on a machine shared with other work it keeps "
                        "wall times from measuring mostly the wait for a core; both "
                        "exporters get the same")
    return p


if __name__ == "__main__":
    if "--real-apiserver" in sys.argv:  # a real kube-apiserver: bench/real_apiserver.py
        from bench import real_apiserver
        raise SystemExit(real_apiserver.run([a for a in sys.argv[1:]
                                             if a != "--real-apiserver"]))
    if len(sys.argv) == 4 and sys.argv[1] == "--baseline-process":
        baseline_process(sys.argv[2], int(sys.argv[3]))
        raise SystemExit(0)
    random.seed(1)
    parsed = parser().parse_args()
    if parsed.nice:
        try:  # inherited by every process the benchmark starts
            os.setpriority(os.PRIO_PROCESS, 0, parsed.nice)
        except OSError as exc:
            say(f"--nice {parsed.nice} not applied ({exc}); running at the default")
    asyncio.run(main(parsed))
