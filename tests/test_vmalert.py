"""The generated rules on a real VictoriaMetrics + vmalert, against Prometheus' verdict.

One hour of synthetic traffic (a service in an outage from minute 20, one that stays
healthy) is imported into VictoriaMetrics with its timestamps; vmalert replays the
generated rules over that hour (`-replay.*`: every rule as range queries, the recorded
series and ALERTS written back with remote write). The same samples feed a promtool test
of the same rules, which checks that Prometheus fires each alert vmalert fired within one
evaluation of it, that the firing alerts at the end are exactly the same, and that
nothing fires for the healthy service on either engine.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.conftest import run_cli
from tests.e2e_app import wait_until
from tests.tools import free_port, promtool_test_rules, require_tool, terminate

pytestmark = pytest.mark.e2e

STEP = 15  # seconds between samples
EVAL = 30  # rule evaluation interval on both engines
MINUTES = 60
OUTAGE_FROM = 20 * 60
TIMEOUT = aiohttp.ClientTimeout(total=30)

# 1d periods scale the alert windows down to 5m..2h34m, so an hour shows every tier
SPEC = """\
apiVersion: sloexporter.dev/v1
kind: ServiceLevels
service: vm-shop
labels: {team: payments}
slos:
  - name: outage
    objective: 99
    period: 1d
    sli:
      events:
        errors: sum(rate(http_requests_total{job="outage",code=~"5.."}[{{window}}]))
        total: sum(rate(http_requests_total{job="outage"}[{{window}}]))
  - name: latency
    objective: 99
    period: 1d
    sli:
      latency: {metric: http_request_duration_seconds, selector: '{job="outage"}',
                threshold: 0.5}
  - name: routes
    objective: 99
    period: 1d
    group_by: [route]
    sli:
      events:
        errors: sum by (route) (rate(http_requests_total{job="routes",code=~"5.."}[{{window}}]))
        total: sum by (route) (rate(http_requests_total{job="routes"}[{{window}}]))
  - name: healthy
    objective: 99
    period: 1d
    sli:
      events:
        good: sum(rate(http_requests_total{job="healthy",code!~"5.."}[{{window}}]))
        total: sum(rate(http_requests_total{job="healthy"}[{{window}}]))
"""


def _counters() -> dict[str, list[float]]:
    """Series (PromQL selector) -> one value every STEP seconds: 10 requests/s each;
    `outage` fails them all from OUTAGE_FROM, and answers them slower than 0.5 s from
    then (its histogram spells the bucket `0.50`, which the `le` regex must match);
    `healthy` fails 0.1% (a tenth of its budget rate) throughout; `routes` (a grouped
    SLO) fails route /b like `outage` while route /a stays good."""
    series: dict[str, list[float]] = {}
    ok = bad = hok = hbad = 0.0
    for i in range(MINUTES * 60 // STEP + 1):
        t = i * STEP
        for name, value in (('http_requests_total{job="outage",code="200"}', ok),
                            ('http_requests_total{job="outage",code="500"}', bad),
                            ('http_requests_total{job="healthy",code="200"}', hok),
                            ('http_requests_total{job="healthy",code="500"}', hbad),
                            ('http_request_duration_seconds_bucket{job="outage",le="0.50"}',
                             ok),
                            ('http_request_duration_seconds_bucket{job="outage",le="+Inf"}',
                             ok + bad),
                            ('http_request_duration_seconds_count{job="outage"}', ok + bad),
                            ('http_requests_total{job="routes",route="/a",code="200"}',
                             ok + bad),
                            ('http_requests_total{job="routes",route="/a",code="500"}', 0),
                            ('http_requests_total{job="routes",route="/b",code="200"}', ok),
                            ('http_requests_total{job="routes",route="/b",code="500"}',
                             bad)):
            series.setdefault(name, []).append(round(value, 6))
        failing = t >= OUTAGE_FROM
        ok += 0 if failing else 10 * STEP
        bad += 10 * STEP if failing else 0
        hok += 9.99 * STEP
        hbad += 0.01 * STEP
    return series


class VictoriaMetrics:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{free_port()}"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            require_tool("victoria-metrics"), f"-storageDataPath={self.workdir / 'vm-data'}",
            f"-httpListenAddr={self.url.removeprefix('http://')}", "-retentionPeriod=1y",
            "-search.disableCache", "-loggerLevel=ERROR",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)

        async def healthy() -> bool:
            assert self.proc is not None and self.proc.returncode is None, "VM exited"
            try:
                async with aiohttp.ClientSession(timeout=TIMEOUT) as http, \
                        http.get(f"{self.url}/health") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until(healthy, "VictoriaMetrics /health", 60)

    async def call(self, method: str, path: str, **kwargs: Any) -> str:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http, \
                http.request(method, f"{self.url}{path}", **kwargs) as resp:
            text = await resp.text()
            assert resp.status in (200, 204), f"{method} {path}: {resp.status} {text}"
            return text

    async def export(self, match: str) -> list[dict[str, Any]]:
        await self.call("GET", "/internal/force_flush")
        text = await self.call("GET", "/api/v1/export", params={"match[]": match})
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _import_text(series: dict[str, list[float]], start: int) -> str:
    return "".join(f"{name} {value} {(start + i * STEP) * 1000}\n"
                   for name, values in series.items() for i, value in enumerate(values))


def _layers(groups: list[dict[str, Any]], workdir: Path, tag: str = "") -> list[Path]:
    """The rule file cut by dependency depth: layer k holds, from every group, the rules
    that read a record of layer k-1 of their group (and none later), in order.

    vmalert's replay evaluates one rule over the whole range, then the next; a record
    written by remote write only becomes searchable after a flush, so each layer is
    replayed after the previous one is flushed: per evaluation, every rule sees what the
    rules before it in its group recorded, as in a live group.
    """
    layered: dict[int, list[dict[str, Any]]] = {}
    for group in groups:
        depth: dict[str, int] = {}
        parts: dict[int, list[dict[str, Any]]] = {}
        for rule in group["rules"]:
            reads = [d for name, d in depth.items() if re.search(
                rf"(?<![\w:]){re.escape(name)}(?![\w:])", rule["expr"])]
            level = max(reads, default=-1) + 1
            if "record" in rule:
                depth[rule["record"]] = max(depth.get(rule["record"], 0), level)
            parts.setdefault(level, []).append(rule)
        for level, part in parts.items():
            layered.setdefault(level, []).append({**group, "rules": part})
    count = sum(len(g["rules"]) for part in layered.values() for g in part)
    assert count == sum(len(g["rules"]) for g in groups)
    paths = []
    for level in sorted(layered):
        path = workdir / f"layer{tag}{level}.yaml"
        path.write_text(yaml.safe_dump({"groups": layered[level]}, sort_keys=False))
        paths.append(path)
    return paths


def _replay(rules: Path, vm: str, start: int, workdir: Path) -> None:
    """vmalert's replay mode over [start, start + MINUTES]; it exits when done."""
    def rfc3339(t: int) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    proc = subprocess.run(
        [require_tool("vmalert"), f"-rule={rules}", f"-datasource.url={vm}",
         f"-remoteWrite.url={vm}", f"-replay.timeFrom={rfc3339(start)}",
         f"-replay.timeTo={rfc3339(start + MINUTES * 60)}", f"-evaluationInterval={EVAL}s",
         "-replay.disableProgressBar", "-replay.rulesDelay=0s", "-rule.evalDelay=0s",
         "-disableAlertgroupLabel", "-notifier.blackhole",
         f"-httpListenAddr=127.0.0.1:{free_port()}", "-loggerLevel=ERROR"],
        capture_output=True, text=True, timeout=300, cwd=workdir)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _groups(rules: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load(rules.read_text())["groups"])


async def _replay_all(vm: VictoriaMetrics, layers: list[Path], start: int,
                      workdir: Path) -> None:
    for layer in layers:
        await asyncio.to_thread(_replay, layer, vm.url, start, workdir)
        await vm.call("GET", "/internal/force_flush")


def _first_firing(exported: list[dict[str, Any]], start: int) -> dict[str, tuple[dict, int]]:
    """Per firing alert (its labels): the labels and the first evaluation, in seconds
    from `start`, at which vmalert wrote it firing."""
    out = {}
    for row in exported:
        labels = {k: v for k, v in row["metric"].items() if k != "__name__"}
        first = min(t // 1000 - start for t, v in zip(row["timestamps"], row["values"],
                                                        strict=True) if v == 1)
        out[json.dumps(labels, sort_keys=True)] = (labels, first)
    return out


def _promtool_check(rules: Path, series: dict[str, list[float]],
                    fired: dict[str, tuple[dict, int]], path: Path) -> None:
    """Prometheus fires each alert within one evaluation of vmalert, the same set fires
    at the end, and the healthy SLO never fires."""
    def matchers(labels: dict[str, str]) -> str:
        return ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()))
    end = MINUTES * 60
    checks: list[dict[str, Any]] = []
    for labels, first in fired.values():
        count = f"count(ALERTS{{{matchers(labels)}}}) or vector(0)"
        checks.append({"expr": count, "eval_time": f"{min(first + EVAL, end)}s",
                       "exp_samples": [{"labels": "{}", "value": 1}]})
        if first - 2 * EVAL >= 0:
            checks.append({"expr": count, "eval_time": f"{first - 2 * EVAL}s",
                           "exp_samples": [{"labels": "{}", "value": 0}]})
    checks.append({"expr": 'ALERTS{alertstate="firing"}', "eval_time": f"{end}s",
                   "exp_samples": [{"labels": f"ALERTS{{{matchers(labels)}}}", "value": 1}
                                   for labels, _ in fired.values()]})
    for quiet in ('slo="healthy"', 'slo="routes",route="/a"'):
        checks.append({"expr": f"max_over_time(ALERTS{{{quiet}}}[{end}s])",
                       "eval_time": f"{end}s", "exp_samples": []})
    path.write_text(yaml.safe_dump({
        "rule_files": [str(rules)], "evaluation_interval": f"{EVAL}s",
        "tests": [{"interval": f"{STEP}s", "promql_expr_test": checks, "input_series": [
            {"series": name, "values": " ".join(str(v) for v in values)}
            for name, values in series.items()]}]}))
    promtool_test_rules([path])


async def test_vmalert_fires_what_prometheus_fires(tmp_path: Path) -> None:
    spec = tmp_path / "vm-shop.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    result = run_cli("generate", str(spec), "-o", str(out))
    assert result.returncode == 0, result.stderr
    rules = out / "rules" / "vm-shop.yaml"
    series = _counters()
    # an hour that ended an hour ago, on a whole hour: both engines evaluate at the same
    # offsets from it, and VictoriaMetrics serves it without its latency offset
    start = (int(time.time()) // 3600 - 2) * 3600
    vm = VictoriaMetrics(tmp_path)
    await vm.start()
    try:
        await vm.call("POST", "/api/v1/import/prometheus", data=_import_text(series, start))
        await vm.call("GET", "/internal/force_flush")
        await _replay_all(vm, _layers(_groups(rules), tmp_path), start, tmp_path)
        recorded = await vm.export('slo:sli_error:ratio_rate5m{slo="latency"}')
        assert recorded, "vmalert recorded nothing"
        fired = _first_firing(await vm.export('ALERTS{alertstate="firing"}'), start)
    finally:
        assert vm.proc is not None
        await terminate(vm.proc)
    # vmalert fired every burn-rate tier of the outage, after it began, and nothing for
    # the healthy service
    for slo in ("outage", "latency", "routes"):
        windows = {labels["long_window"] for labels, _ in fired.values()
                   if labels["slo"] == slo}
        assert windows == {"5m", "12m", "51m", "2h34m"}, fired
    assert all(labels["slo"] != "healthy" and first > OUTAGE_FROM
               for labels, first in fired.values()), fired
    # the grouped SLO pages for the failing route alone
    assert {labels.get("route") for labels, _ in fired.values()
            if labels["slo"] == "routes"} == {"/b"}, fired
    await asyncio.to_thread(_promtool_check, rules, series, fired,
                            tmp_path / "compare.test.yaml")


GLOBAL_SPEC = """\
apiVersion: sloexporter.dev/v1
kind: ServiceLevels
service: vm-global
slos:
  - name: checkout
    objective: 99.9
    period: 1d
    sli:
      events:
        errors: sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{window}}]))
        total: sum(rate(http_requests_total{job="checkout"}[{{window}}]))
"""


def _two_clusters() -> dict[str, list[float]]:
    """eu-1 serves 98 requests/s, all good; us-1 serves 2/s and fails them all from
    OUTAGE_FROM: globally 2 errors in 100 requests/s, a 20x burn of a 99.9% budget."""
    series: dict[str, list[float]] = {}
    counts = {("eu-1", "200"): 0.0, ("us-1", "200"): 0.0, ("us-1", "500"): 0.0}
    for i in range(MINUTES * 60 // STEP + 1):
        for (cluster, code), value in counts.items():
            name = f'http_requests_total{{job="checkout",code="{code}",cluster="{cluster}"}}'
            series.setdefault(name, []).append(value)
        failing = i * STEP >= OUTAGE_FROM
        counts["eu-1", "200"] += 98 * STEP
        counts["us-1", "500" if failing else "200"] += 2 * STEP
    return series


async def test_vmalert_clusters_and_the_global_set(tmp_path: Path) -> None:
    """Each cluster's rules (generated with --external-labels, evaluated by vmalert on
    that cluster's series only: `extra_label`), then the global set over all of them:
    one store, as with a global VictoriaMetrics, Thanos or Mimir."""
    spec = tmp_path / "vm-global.yaml"
    spec.write_text(GLOBAL_SPEC)
    groups: list[dict[str, Any]] = []
    for cluster in ("eu-1", "us-1"):
        out = tmp_path / cluster
        result = run_cli("generate", str(spec), "-o", str(out), "--external-labels",
                         f"cluster={cluster}")
        assert result.returncode == 0, result.stderr
        groups += [{**g, "name": f"{g['name']}-{cluster}",
                    "params": {"extra_label": [f"cluster={cluster}"]}}
                   for g in _groups(out / "rules" / "vm-global.yaml")]
    assert run_cli("generate", str(spec), "-o", str(tmp_path / "global"),
                   "--global").returncode == 0
    start = (int(time.time()) // 3600 - 2) * 3600
    vm = VictoriaMetrics(tmp_path)
    await vm.start()
    try:
        await vm.call("POST", "/api/v1/import/prometheus",
                      data=_import_text(_two_clusters(), start))
        await vm.call("GET", "/internal/force_flush")
        await _replay_all(vm, _layers(groups, tmp_path, "c"), start, tmp_path)
        await _replay_all(vm, _layers(_groups(tmp_path / "global/global/vm-global.yaml"),
                                      tmp_path, "g"), start, tmp_path)
        fired = _first_firing(await vm.export('ALERTS{alertstate="firing"}'), start)
        totals = await vm.export('{__name__=~"slo_global:sli_total:rate5m|'
                                 'slo_global:sli_error:ratio_rate5m"}')
    finally:
        assert vm.proc is not None
        await terminate(vm.proc)
    by_scope: dict[str, set[str]] = {}
    for labels, first in fired.values():
        assert first > OUTAGE_FROM, fired
        scope = labels.get("cluster") or labels.get("slo_scope", "?")
        by_scope.setdefault(scope, set()).add(labels["severity"])
    # us-1 pages, eu-1 is quiet, and the global set pages without a cluster label
    assert by_scope == {"us-1": {"page", "ticket"}, "global": {"page", "ticket"}}, fired
    # the hand computation: at the end, 100 requests/s in all (not 200: nothing is
    # counted twice), 2 of them errors
    last = {row["metric"]["__name__"]: row["values"][-1] for row in totals}
    assert [row["metric"].get("cluster") for row in totals] == [None, None]
    assert last["slo_global:sli_total:rate5m"] == pytest.approx(100)
    assert last["slo_global:sli_error:ratio_rate5m"] == pytest.approx(0.02)
