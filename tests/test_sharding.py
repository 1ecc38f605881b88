"""Sharding: 3 real `serve --shard N --total-shards 3` processes export, together, exactly
what one unsharded process exports, series for series, with no series in two shards:
against one Kubernetes API test server (kmock), and from manifests.

The chart's StatefulSet runs the same command line (tests/test_helm.py checks how each pod
derives its shard); this proves the split itself on real processes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from sloexporter import names
from sloexporter.sources.manifests import read_objects
from sloexporter.sources.store import Shard, jump_hash
from tests.certs import make_ca, make_leaf
from tests.kube_fixtures import seed
from tests.promtext import samples
from tests.tools import ROOT, free_port, require_tool, terminate

#: kmock with the watch=True normalisation (the informer sends watch=true itself)
pytest_plugins = ["tests.kube_fixtures"]

SHARDS = 3
#: per-process bookkeeping, not object series: each process counts its own events
SELF_MONITORING = {names.SOURCE_UP, names.WATCH_EVENTS, names.WATCH_RESTARTS,
                   names.SOURCE_LAST_EVENT, names.SKIPPED_OBJECTS, names.BUILD_INFO,
                   names.PROCESS_PREFIX, names.GZIP_CHUNKS}
#: no live probes: the sources' object series are what is sharded
CONFIG = {"sources": {"certificates": {"ingresses": False, "tls_secrets": True},
                      "services": {"enabled": False}}}
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DEADLINE = 60.0

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def ts(hours_ago: float) -> str:
    return datetime.fromtimestamp(NOW.timestamp() - hours_ago * 3600, UTC) \
        .strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str, namespace: str, uid: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "uid": uid, **extra}


def cluster_objects(n: int = 24) -> list[dict[str, Any]]:
    """The demo cluster plus `n` of each kind, with fixed times so processes agree."""
    objects, bad = read_objects(ROOT / "examples" / "cluster", NOW)
    assert not bad
    leaf = make_leaf(make_ca(), "svc.example.org")
    crt = base64.b64encode(leaf.cert_pem).decode()
    for i in range(n):
        ns = f"team-{i % 5}"
        objects.append({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": meta(f"app-{i}", "argocd", f"app-uid-{i}"),
            "spec": {"project": f"p{i % 3}", "destination": {"server": "https://k",
                                                             "namespace": ns}},
            "status": {"sync": {"status": ["Synced", "OutOfSync"][i % 2]},
                       "health": {"status": ["Healthy", "Degraded", "Progressing"][i % 3]},
                       "operationState": {"phase": "Succeeded", "startedAt": ts(2),
                                          "finishedAt": ts(1.9)}}})
        cron = f"cron-uid-{i}"
        objects.append({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": meta(f"backup-{i}", ns, cron,
                             labels={"sloexporter.dev/backup": "true"}),
            "spec": {"schedule": "0 * * * *", "jobTemplate": {}},
            "status": {"lastScheduleTime": ts(0.5), "lastSuccessfulTime": ts(0.5 + i % 3)}})
        for j, ok in enumerate((True, False)):
            objects.append({
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": meta(f"backup-{i}-{j}", ns, f"job-uid-{i}-{j}", ownerReferences=[
                    {"apiVersion": "batch/v1", "kind": "CronJob", "name": f"backup-{i}",
                     "uid": cron}]),
                "status": {"startTime": ts(3 - j), "completionTime": ts(2.9 - j),
                           "succeeded" if ok else "failed": 1,
                           "conditions": [{"type": "Complete" if ok else "Failed",
                                           "status": "True"}]}})
        objects.append({
            "apiVersion": "velero.io/v1", "kind": "Schedule",
            "metadata": meta(f"sched-{i}", "velero", f"sched-uid-{i}"),
            "spec": {"schedule": "0 1 * * *"}, "status": {"lastBackup": ts(20)}})
        objects.append({
            "apiVersion": "velero.io/v1", "kind": "Backup",
            "metadata": meta(f"sched-{i}-1", "velero", f"vb-uid-{i}",
                             labels={"velero.io/schedule-name": f"sched-{i}"}),
            "status": {"phase": "Completed", "startTimestamp": ts(20),
                       "completionTimestamp": ts(19.8)}})
        objects.append({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": meta(f"cert-{i}", ns, f"cert-uid-{i}"),
            "spec": {"secretName": f"cert-{i}", "dnsNames": [f"s{i}.example.org"],
                     "issuerRef": {"name": "le"}},
            "status": {"notBefore": ts(24 * 30), "notAfter": ts(-24 * (60 - i)),
                       "conditions": [{"type": "Ready", "status": ["True", "False"][i % 2]}]}})
        objects.append({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": meta(f"tls-{i}", ns, f"secret-uid-{i}"),
            "data": {"tls.crt": crt, "tls.key": "cmVkYWN0ZWQ="}})
    return objects


@pytest.mark.parametrize("total", [1, 2, 3, 5, 16])
def test_shards_partition_the_keys(total: int):
    """Every key is owned by exactly one of N shards, and the split is roughly even."""
    keys = [f"{i:08x}-uid-{i * 7919}" for i in range(20_000)]
    shards = [Shard(i, total) for i in range(total)]
    owners = [[s.index for s in shards if s.owns(k)] for k in keys]
    assert all(len(o) == 1 for o in owners)
    sizes = [sum(1 for o in owners if o == [i]) for i in range(total)]
    assert min(sizes) > 0.9 * len(keys) / total  # no shard starves
    # ownership is a pure function of the key: a second pass agrees
    assert owners == [[s.index for s in shards if s.owns(k)] for k in keys]


def test_growing_the_shard_count_only_moves_keys_to_the_new_shard():
    """Jump hash is consistent: going from N to N+1 shards moves ~1/(N+1) of the keys,
    all of them to the new shard, so a scale-up does not reshuffle every replica."""
    keys = [f"uid-{i}" for i in range(20_000)]
    for n in (1, 2, 3, 7):
        moved = [k for k in keys if jump_hash(k, n) != jump_hash(k, n + 1)]
        assert all(jump_hash(k, n + 1) == n for k in moved)
        assert abs(len(moved) / len(keys) - 1 / (n + 1)) < 0.02


class Serve:
    """One `sloexporter serve` child process, driven without blocking the event loop."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc, self.url = proc, f"http://127.0.0.1:{port}"

    @classmethod
    async def start(cls, *args: str) -> Serve:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sloexporter.cli", "serve", "--listen", f"127.0.0.1:{port}",
            *args, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        return cls(proc, port)

    async def get(self, session: aiohttp.ClientSession, path: str) -> tuple[int, str]:
        async with session.get(self.url + path) as resp:
            return resp.status, await resp.text()

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        async def poll() -> None:
            while True:
                if self.proc.returncode is not None:
                    err = await self.proc.stderr.read() if self.proc.stderr else b""
                    raise AssertionError(f"serve exited: {err.decode()[-2000:]}")
                with contextlib.suppress(aiohttp.ClientError):
                    if (await self.get(session, "/readyz"))[0] == 200:
                        return
                await asyncio.sleep(0.1)

        await asyncio.wait_for(poll(), DEADLINE)

    async def stop(self) -> None:
        await terminate(self.proc)


@contextlib.asynccontextmanager
async def running(argv: Iterable[list[str]]) -> AsyncIterator[list[Serve]]:
    servers: list[Serve] = []
    try:
        for args in argv:
            servers.append(await Serve.start(*args))
        yield servers
    finally:
        await asyncio.gather(*(s.stop() for s in servers))


def object_series(text: str) -> Series:
    """Every sample but the per-process self-monitoring ones."""
    return {k: v for k, v in samples(text).items()
            if not any(k[0] == m or k[0].startswith(m.removesuffix("_total"))
                       for m in SELF_MONITORING)}


async def scrape_all(servers: list[Serve]) -> list[Series]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(s.wait_ready(session) for s in servers))
        bodies = await asyncio.gather(*(s.get(session, "/metrics") for s in servers))
    return [object_series(body) for status, body in bodies if status == 200]


async def unsharded_and_shards(feed: list[str]) -> tuple[Series, list[Series]]:
    argv = [feed] + [[*feed, "--shard", str(i), "--total-shards", str(SHARDS)]
                     for i in range(SHARDS)]
    async with running(argv) as servers:
        whole, *parts = await scrape_all(servers)
    return whole, parts


def assert_partition(whole: Series, parts: list[Series]) -> None:
    assert len(parts) == SHARDS
    combined: Series = {}
    for i, part in enumerate(parts):
        assert part, f"shard {i} exports no object series"
        overlap = combined.keys() & part.keys()
        assert not overlap, f"in two shards: {sorted(overlap)[:3]}"
        combined.update(part)
    assert combined == whole
    families = {name for name, _ in whole}
    # every object family of every source is in the comparison
    assert {names.ARGOCD_APP_INFO, names.ARGOCD_APP_SYNC_OPERATIONS, names.BACKUP_RUNS,
            names.BACKUP_LAST_SUCCESS, names.CERT_NOT_AFTER, names.CERT_READY} <= families


@pytest.fixture
def manifests(tmp_path: Path) -> list[str]:
    folder = tmp_path / "cluster"
    folder.mkdir()
    (folder / "objects.yaml").write_text(yaml.safe_dump_all(cluster_objects()))
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(CONFIG))
    return ["--config", str(config), "--manifests", str(folder)]


@pytest.fixture
def api_server(kube: Any, kubeconfig: Path, tmp_path: Path) -> list[str]:
    """The objects served by kmock; serve reaches it through a kubeconfig."""
    assert seed(kube, cluster_objects()) > 200
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({**CONFIG, "cluster": {"mode": "kubeconfig",
                                                        "kubeconfig": str(kubeconfig)}}))
    return ["--config", str(config)]


async def test_three_shards_against_one_api_server_export_what_one_process_exports(
        api_server):
    whole, parts = await unsharded_and_shards(api_server)
    assert_partition(whole, parts)
    secrets = [k for k in whole if k[0] == names.CERT_NOT_AFTER and
               ("source", "secret") in k[1]]
    assert len(secrets) >= 24


async def test_three_shards_from_manifests_export_what_one_process_exports(manifests):
    whole, parts = await unsharded_and_shards(manifests)
    assert_partition(whole, parts)


_SELECTOR = re.compile(r"(sloexporter_[A-Za-z0-9_]+)(?:\{([^}]*)\})?")


def only_set(expr: str, name: str) -> str:
    """`expr` with every exporter selector narrowed to one copy of the data."""
    def narrow(m: re.Match[str]) -> str:
        inner = ",".join(x for x in (f'copy="{name}"', m[2]) if x)
        return f"{m[1]}{{{inner}}}"
    return _SELECTOR.sub(narrow, expr)


def input_series(series: Series, **extra: str) -> list[dict[str, str]]:
    out = []
    for (name, labels), value in sorted(series.items(), key=str):
        if math.isfinite(value):
            matchers = ",".join(f"{k}={json.dumps(v)}" for k, v in
                                sorted({**dict(labels), **extra}.items()))
            out.append({"series": f"{name}{{{matchers}}}", "values": f"{value!r}+0x40"})
    return out


async def test_generated_slo_queries_give_the_same_result_for_one_or_three_shards(
        manifests, tmp_path):
    """The chart's rules, evaluated by promtool on both copies of the same objects.

    Copy `one` is the unsharded process's series; copy `three` is the three shards',
    each with its own `instance`, as Prometheus scrapes them. Every rule on exporter
    series must give the same value on both (or be empty on both).
    """
    promtool = require_tool("promtool")
    whole, parts = await unsharded_and_shards(manifests)
    series = input_series(whole, copy="one", instance="sloexporter-0")
    for i, part in enumerate(parts):
        series += input_series(part, copy="three", instance=f"sloexporter-{i}")
    tests = []
    for path in sorted((ROOT / "helm" / "sloexporter" / "files" / "rules").glob("*.yaml")):
        for group in yaml.safe_load(path.read_text())["spec"]["groups"]:
            for rule in group["rules"]:
                if "sloexporter_" not in rule["expr"]:
                    continue
                tests.append(same_on_both(rule["expr"]))
    assert len(tests) > 10  # each raw query is read once (5m), by one rule per SLO
    out = promtool_test(promtool, tmp_path, series, tests)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # the control: a per-pod query differs between the copies, and the check sees it
    per_pod = "count by (instance) (sloexporter_certificate_not_after_timestamp_seconds)"
    assert promtool_test(promtool, tmp_path, series, [same_on_both(per_pod)]).returncode == 1


def same_on_both(expr: str) -> dict[str, Any]:
    """A promtool expression test: 0 when `expr` is equal on both copies, or empty on both;
    no sample (so a failure) when the values differ or only one is empty."""
    a, b = only_set(expr, "one"), only_set(expr, "three")
    return {"eval_time": "30m", "exp_samples": [{"labels": "{}", "value": 0}],
            "expr": f"(({a}) - on() ({b})) or on() (vector(0) unless on() (({a}) or ({b})))"}


def promtool_test(promtool: str, tmp_path: Path, series: list[dict[str, str]],
                  tests: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    rules = tmp_path / "empty.yaml"
    rules.write_text("groups: []\n")
    unit = tmp_path / "shards.test.yaml"
    unit.write_text(yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "1m",
                                    "tests": [{"interval": "1m", "input_series": series,
                                               "promql_expr_test": tests}]}))
    return subprocess.run([promtool, "test", "rules", str(unit)], capture_output=True,
                          text=True, timeout=120)
