"""A real Prometheus 2.42 holding 36 days of known history, for the status service tests.

The history is a piecewise-constant traffic model (requests and errors per second, in
10-minute-aligned segments): steady baselines, traffic-weighted incidents, a quiet night
with few requests but many errors, an incident across a calendar-month boundary (in
Europe/Berlin) and an incident still going on at `T0`. The raw counters are written as
OpenMetrics and turned into blocks by `promtool tsdb create-blocks-from openmetrics` up to
T0; from T0 on, Prometheus scrapes the same series live from `LiveFeed`.

Recording rules are not evaluated retroactively over backfilled raw data, so the rules
that read raw series (ours, Sloth's and Pyrra-shaped ones) are backfilled too, as
`promtool tsdb create-blocks-from rules` would: evaluated by this Prometheus every 5
minutes up to T0, then written as blocks (see `backfill_passes`). The final Prometheus
loads every rule file and evaluates them live from then on, which is what fires the
ongoing incident's page.

Hand computation (`ratio`) integrates the model step by step. Two facts of PromQL are
modelled explicitly: a Prometheus 2 range selector includes a sample at the window's
start, so rate() over a window on the sample grid covers all of it; and every segment
boundary is 10-minute aligned (a multiple of both the step and 5 minutes), so the mean of
the 5-minute rates recorded every 5 minutes equals the exact traffic-weighted ratio.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from sloexporter import promql
from tests.tools import ROOT, free_port, serve_text

DAY, HOUR, MIN = 86400, 3600, 60
HISTORY = 36 * DAY
FUTURE = 3 * HOUR
STEP = 120
TZ = "Europe/Berlin"
EVAL = 300
#: T0 and the history's start are multiples of both the sample step and 5 minutes
ALIGN = 600
LIVE_EVAL = 5


@dataclass(frozen=True)
class Segment:
    start: int
    end: int
    total: float  # requests per second
    errors: float  # errors per second (part of total)


@dataclass
class Job:
    """One service's traffic: the first segment containing a minute wins, else baseline."""

    name: str
    total: float
    errors: float
    segments: list[Segment] = field(default_factory=list)

    def rates(self, step_end: int) -> tuple[float, float]:
        """Rates during the sample step that ends at `step_end`."""
        for seg in self.segments:
            if seg.start < step_end <= seg.end:
                return seg.total, seg.errors
        return self.total, self.errors

    def sums(self, a: int, b: int) -> tuple[float, float]:
        """Requests and errors in (a, b], step by step."""
        total = errors = 0.0
        for t in range(a + STEP, b + 1, STEP):
            tr, er = self.rates(t)
            total += tr * STEP
            errors += er * STEP
        return total, errors

    def ratio(self, a: int, b: int) -> float:
        total, errors = self.sums(a, b)
        return errors / total

    def block_rates(self, t: int) -> tuple[float, float]:
        """The 5-minute rates recorded at t (segments are aligned, so one segment)."""
        return self.rates(t)

    def derived_window_ratio(self, t: int, window: int) -> float:
        """A window's error ratio as the generated rules derive it from the recorded
        5-minute series (`promql.window_rate`): the mean of the 5-minute rates
        in the window (a Prometheus 2 range includes its first instant, so w/5m + 1 of
        them) plus half a step of the change across the window, errors over totals."""
        times = range(t - window, t + 1, EVAL)
        parts = []
        for i in (1, 0):  # errors, then totals
            mean = sum(self.block_rates(s)[i] for s in times) / len(times)
            # from LEADING_ONLY_FROM on, the oldest edge is taken as the window's mean
            oldest = mean if window >= promql.LEADING_ONLY_FROM else \
                self.block_rates(t - window)[i]
            edge = (self.block_rates(t)[i] - oldest) * 150 / window
            parts.append(max(mean + edge, 0.0))
        return parts[0] / parts[1]

    def window_ratio(self, t: int, window: int) -> float:
        """What rate()-over-rate() records for `window` at t: Prometheus 2 range
        selectors include a sample exactly at the window's start, so with t and the
        window on the sample grid the increase covers the whole window."""
        return self.ratio(t - window, t)

    def mean_of_block_ratios(self, a: int, b: int) -> float:
        """Sloth's period SLI: the unweighted mean of 5-minute ratios."""
        ratios = [self.ratio(t - EVAL, t) for t in range(a + EVAL, b + 1, EVAL)]
        return sum(ratios) / len(ratios)


def month_start(t0: int) -> int:
    local = datetime.fromtimestamp(t0, ZoneInfo(TZ))
    return int(datetime(local.year, local.month, 1, tzinfo=ZoneInfo(TZ)).timestamp())


def model(t0: int) -> dict[str, Job]:
    m = month_start(t0)
    night = t0 - 10 * DAY
    night -= night % DAY - 1 * HOUR if night % DAY > HOUR else 0
    night -= night % ALIGN
    quiet = Segment(night, night + 4 * HOUR, 0.05, 0.02)
    checkout = Job("checkout", 10.0, 0.002, [
        Segment(t0 - 40 * MIN, t0 + FUTURE, 10.0, 0.5),  # ongoing: pages
        Segment(m - HOUR, m + HOUR, 10.0, 0.5),  # across the month boundary
        Segment(t0 - 20 * DAY, t0 - 20 * DAY + HOUR, 20.0, 2.0),  # heavy traffic incident
        quiet,
    ])
    search = Job("search", 5.0, 0.01, [
        Segment(t0 - 2 * DAY, t0 - 2 * DAY + 3 * HOUR, 5.0, 1.0),
    ])
    api = Job("api", 2.0, 0.001, [quiet])  # Sloth's SLO: the quiet night weighs unweighted
    pyrra = Job("pyrra-app", 1.0, 0.005)
    return {j.name: j for j in (checkout, search, api, pyrra)}


SPECS = {
    "checkout.yaml": {
        "apiVersion": "sloexporter.dev/v1", "kind": "ServiceLevels", "service": "checkout",
        "labels": {"team": "payments"},
        "slos": [{"name": "availability", "objective": 99.9, "period": "30d",
                  "description": "Checkout requests succeed",
                  "sli": {"events": {
                      "errors": 'sum(rate(http_requests_total{job="checkout",code=~"5.."}'
                                '[{{window}}]))',
                      "total": 'sum(rate(http_requests_total{job="checkout"}[{{window}}]))'}}}],
    },
    "search.yaml": {
        "apiVersion": "sloexporter.dev/v1", "kind": "ServiceLevels", "service": "search",
        "labels": {"team": "discovery"},
        "slos": [{"name": "availability", "objective": 99.5, "period": "7d",
                  "sli": {"events": {
                      "errors": 'sum(rate(http_requests_total{job="search",code=~"5.."}'
                                '[{{window}}]))',
                      "total": 'sum(rate(http_requests_total{job="search"}[{{window}}]))'}}}],
    },
}

SLOTH_SPEC = {
    "version": "prometheus/v1", "service": "api", "labels": {"team": "platform"},
    "slos": [{"name": "requests-availability", "objective": 99.9,
              "sli": {"events": {
                  "error_query": 'sum(rate(http_requests_total{job="api",code=~"5.."}'
                                 '[{{.window}}]))',
                  "total_query": 'sum(rate(http_requests_total{job="api"}[{{.window}}]))'}},
              "alerting": {"name": "ApiAvailability", "page_alert": {"labels": {}},
                           "ticket_alert": {"labels": {}}}}],
}


def pyrra_rules() -> dict[str, object]:
    """Rules in the shape Pyrra generates (its golden files, shared/peers/pyrra), for one
    28-day 99% ratio SLO named `pyrra-errors` in namespace `shop`."""
    sel = '{job="pyrra-app"}'
    err = '{job="pyrra-app",code=~"5.."}'
    labels = {"slo": "pyrra-errors", "namespace": "shop", "team": "shop"}
    burn = [{"record": f"http_requests:burnrate{w}",
             "expr": f"sum(rate(http_requests_total{err}[{w}])) / "
                     f"sum(rate(http_requests_total{sel}[{w}]))", "labels": labels}
            for w in ("5m", "30m", "1h", "2h", "6h", "1d", "4d")]
    alerts = [{"alert": "ErrorBudgetBurn",
               "expr": f'http_requests:burnrate{s}{{slo="pyrra-errors"}} > ({f} * (1-0.99)) and '
                       f'http_requests:burnrate{lw}{{slo="pyrra-errors"}} > ({f} * (1-0.99))',
               "for": "0s", "labels": dict(labels, severity=sev, long=lw, short=s)}
              for s, lw, f, sev in (("5m", "1h", 14, "critical"), ("30m", "6h", 7, "critical"),
                                    ("2h", "1d", 2, "warning"), ("6h", "4d", 1, "warning"))]
    return {"groups": [
        {"name": "pyrra-errors-increase", "rules": [
            {"record": "http_requests:increase4w",
             "expr": f"sum by (code) (increase(http_requests_total{sel}[4w]))",
             "labels": labels}]},
        {"name": "pyrra-errors", "rules": burn + alerts},
        {"name": "pyrra-errors-generic", "rules": [
            {"record": "pyrra_objective", "expr": "0.99", "labels": labels},
            {"record": "pyrra_window", "expr": "2419200", "labels": labels},
            {"record": "pyrra_availability",
             "expr": '1 - sum(http_requests:increase4w{code=~"5..",slo="pyrra-errors"} or '
                     'vector(0)) / sum(http_requests:increase4w{slo="pyrra-errors"})',
             "labels": labels},
            {"record": "pyrra_requests:rate5m",
             "expr": f"sum(rate(http_requests_total{sel}[5m]))", "labels": labels},
            {"record": "pyrra_errors:rate5m",
             "expr": f"sum(rate(http_requests_total{err}[5m])) or vector(0)",
             "labels": labels}]},
    ]}


HTML_SERVICE = '<img src=x onerror="alert(1)">'
HTML_SLO = "<script>alert('slo')</script>"


def platform_series(t0: int, start: int, end: int) -> Iterator[str]:
    """ArgoCD, backup, certificate and probe series of the last 8 days, within [start, end]."""
    start, end = max(start, t0 - 8 * DAY), min(end, t0)
    app = 'namespace="argocd",name="{}",project="default"'
    backup = 'kind="cronjob",namespace="db",name="nightly"'
    cert = 'source="certificate",namespace="web",name="site",subject_cn="shop.example",' \
           'issuer_cn="R11",serial="0a"'
    # a foreign SLO whose error series are missing, with HTML in its names
    html = (f'sloth_service="{_om_escape(HTML_SERVICE)}",sloth_slo="{_om_escape(HTML_SLO)}",'
            'sloth_id="html",sloth_objective="99"')
    degraded = lambda t: t >= t0 - 3 * HOUR  # noqa: E731
    families: list[tuple[str, list[tuple[Callable[[int], str], Callable[[int], int]]]]] = [
        ("sloexporter_argocd_app_synced", [
            (lambda t: app.format("shop"), lambda t: 0 if t >= t0 - 2 * HOUR else 1),
            (lambda t: app.format("web"), lambda t: 1)]),
        ("sloexporter_argocd_app_healthy", [
            (lambda t: app.format("web"), lambda t: 0 if degraded(t) else 1)]),
        ("sloexporter_argocd_app_info", [
            (lambda t: f'{app.format("web")},health_status='
                       f'"{"Degraded" if degraded(t) else "Healthy"}",sync_status="Synced"',
             lambda t: 1)]),
        ("sloexporter_backup_last_success_timestamp_seconds",
         [(lambda t: backup, lambda t: t0 - 2 * DAY)]),
        ("sloexporter_backup_expected_interval_seconds", [(lambda t: backup, lambda t: DAY)]),
        ("sloexporter_certificate_not_after_timestamp_seconds",
         [(lambda t: cert, lambda t: t0 + 5 * DAY)]),
        ("sloexporter_tls_probe_failure_info",
         [(lambda t: 'target="db.example:5432",reason="expired"', lambda t: 1)]),
        ("sloth_slo_info", [(lambda t: html, lambda t: 1)]),
    ]
    for name, series in families:
        yield f"# TYPE {name} gauge"
        for labels, value in series:
            for t in range(start, end + 1, STEP):
                yield f"{name}{{{labels(t)}}} {value(t)} {t}"


def _om_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def counters(t0: int, jobs: dict[str, Job]) -> dict[tuple[str, str], list[float]]:
    """Each counter's value at every sample time from T0 - HISTORY to T0."""
    out = {}
    for job in jobs.values():
        for code, part in (("200", "good"), ("500", "bad")):
            count, values = 0.0, []
            for t in range(t0 - HISTORY, t0 + 1, STEP):
                if t > t0 - HISTORY:
                    total, errors = job.rates(t)
                    count += (total - errors if part == "good" else errors) * STEP
                values.append(count)
            out[(job.name, code)] = values
    return out


def openmetrics(t0: int, values: dict[tuple[str, str], list[float]], start: int,
                end: int) -> Iterator[str]:
    """One OpenMetrics document with the samples in [start, end)."""
    first = t0 - HISTORY
    yield "# TYPE http_requests counter"
    for (job, code), series in values.items():
        for t in range(start, end, STEP):
            yield f'http_requests_total{{job="{job}",code="{code}"}} ' \
                  f'{series[(t - first) // STEP]:.6f} {t}'
    yield from platform_series(t0, start, end - 1)
    yield "# EOF"


def backfill_raw(t0: int, jobs: dict[str, Job], workdir: Path, tsdb: Path,
                 promtool: str) -> dict[tuple[str, str], list[float]]:
    """The raw history, one file per day: promtool re-reads its whole input for every
    2-hour block it writes, so one 36-day file would be read 432 times."""
    values = counters(t0, jobs)
    om = workdir / "day.om"
    for start in range(t0 - HISTORY, t0 + 1, DAY):
        with om.open("w") as f:
            for line in openmetrics(t0, values, start, min(start + DAY, t0 + 1)):
                f.write(line + "\n")
        _run(promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(om), str(tsdb))
    om.unlink()
    return values


RECORD_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def rule_levels(rule_files: list[Path]) -> list[list[dict[str, object]]]:
    """Recording rules grouped by how many recorded series they read through."""
    rules = [r for f in rule_files for g in yaml.safe_load(f.read_text())["groups"]
             for r in g["rules"] if "record" in r]
    recorded = {r["record"] for r in rules}
    level: dict[int, int] = {}

    def depth(i: int, seen: frozenset[int] = frozenset()) -> int:
        if i in level:
            return level[i]
        names = set(RECORD_NAME.findall(rules[i]["expr"])) & recorded
        deps = [j for j, r in enumerate(rules) if r["record"] in names and j not in seen]
        level[i] = 1 + max((depth(j, seen | {i}) for j in deps), default=-1)
        return level[i]

    for i in range(len(rules)):
        depth(i)
    out: list[list[dict[str, object]]] = [[] for _ in range(max(level.values()) + 1)]
    for i, rule in enumerate(rules):
        out[level[i]].append(rule)
    return out


RANGE = re.compile(r"\[(\d+[smhdw])\]")
#: the 5m errors and totals, then what derives from them (windows, the 5m ratio); the
#: period and budget series above them only feed live graphs and are evaluated live
BACKFILL_LEVELS = 3


def backfill_passes(t0: int, rules: list[dict[str, object]]) -> list[tuple[int, list[object]]]:
    """(start, rules) runs of `create-blocks-from rules` over the rules that read raw data.

    The 5-minute series, which the service averages over whole periods, and the 1h
    ratios, whose peak a report shows, get the whole history; the longer windows are read
    only at T0 and get the last day. Rules that read
    other recorded series are not backfilled: the service derives its numbers and graphs
    from the 5-minute series, and Prometheus evaluates those rules live from the start.
    """
    from sloexporter.model import parse_duration

    full, recent = [], []
    for rule in rules:
        ranges = [parse_duration(r) for r in RANGE.findall(str(rule["expr"]))]
        (full if not ranges or max(ranges) <= HOUR else recent).append(rule)
    return [(t0 - HISTORY + EVAL, full), (t0 - DAY, recent)]


def backfill_recorded(recorded: list[tuple[dict[str, object], int, list[dict[str, object]]]],
                      t0: int, workdir: Path, tsdb: Path, promtool: str) -> None:
    """Write the evaluated rules as OpenMetrics, one file per day, and backfill them."""
    series: dict[str, list[tuple[str, list[tuple[float, str]]]]] = {}
    for rule, _start, result in recorded:
        name = str(rule["record"])
        for item in result:
            labels = {k: v for k, v in dict(item["metric"]).items() if k != "__name__"}
            labels.update({str(k): str(v) for k, v in dict(rule.get("labels") or {}).items()})
            text = ",".join(f'{k}="{_om_escape(v)}"' for k, v in sorted(labels.items()))
            series.setdefault(name, []).append(
                (text, [(float(t), str(v)) for t, v in item["values"]]))
    om = workdir / "recorded.om"
    for day in range(t0 - HISTORY, t0 + 1, DAY):
        with om.open("w") as f:
            for name, members in series.items():
                f.write(f"# TYPE {name} gauge\n")
                for text, values in members:
                    for t, v in values:
                        if day <= t < day + DAY or (t == t0 and day + DAY > t0):
                            f.write(f"{name}{{{text}}} {v} {t:.0f}\n")
            f.write("# EOF\n")
        _run(promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(om), str(tsdb))
    om.unlink()


class LiveFeed:
    """The model after T0, served for Prometheus to scrape: blocks can only hold the past
    (Prometheus refuses live samples older than its newest block), so the history is
    backfilled up to T0 and continues live from here, in the same series."""

    def __init__(self, t0: int, jobs: dict[str, Job],
                 counts: dict[tuple[str, str], list[float]]) -> None:
        self.t0, self.jobs = t0, jobs
        self.base = {key: values[-1] for key, values in counts.items()}
        self.port = free_port()
        self._server: ThreadingHTTPServer | None = None

    def count(self, job: Job, code: str, now: float) -> float:
        value, t = self.base[(job.name, code)], self.t0
        while t < now:
            end = t + STEP
            total, errors = job.rates(end)
            rate = errors if code == "500" else total - errors
            value += rate * (min(end, now) - t)
            t = end
        return value

    def text(self, now: float) -> str:
        lines = [f'http_requests_total{{job="{job.name}",code="{code}"}} '
                 f'{self.count(job, code, now):.6f}'
                 for job in self.jobs.values() for code in ("200", "500")]
        lines += [line.rsplit(" ", 1)[0] for line in platform_series(self.t0, self.t0,
                                                                    self.t0)
                  if not line.startswith("#")]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        self._server = serve_text(lambda: self.text(time.time()), self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def scrape_config(self) -> dict[str, object]:
        """Scraped as if it were the history's own series: no job or instance label added."""
        return {"job_name": "feed", "scrape_interval": "5s", "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{self.port}"]}],
                "metric_relabel_configs": [
                    {"action": "labeldrop", "regex": "instance"},
                    {"source_labels": ["job"], "regex": "feed", "target_label": "job",
                     "replacement": ""}]}


class PromProcess:
    """`prometheus` on a data folder; restartable, so backfilled blocks get loaded."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary, self.workdir = binary, workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, config: Path) -> None:
        log = (self.workdir / "prometheus.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={config}",
             f"--storage.tsdb.path={self.workdir / 'tsdb'}",
             "--storage.tsdb.retention.time=400d",
             f"--web.listen-address=127.0.0.1:{self.port}", "--rules.alert.resend-delay=1s"],
            stdout=log, stderr=log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.workdir / "prometheus.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError("prometheus did not become ready in 120s")

    def wait_until_live(self, max_interval: float, timeout: float = 90) -> None:
        """Until every target was scraped and every group that runs at most every
        `max_interval` seconds was evaluated once: the backfill ends at T0, which may be
        more than an instant query's 5m lookback ago, so before that a query can find
        nothing for a series the history does hold."""
        never = "0001-01-01T00:00:00Z"
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None and self.proc.poll() is None
            with urllib.request.urlopen(self.url + "/api/v1/rules", timeout=10) as resp:
                groups = json.load(resp)["data"]["groups"]
            with urllib.request.urlopen(self.url + "/api/v1/targets", timeout=10) as resp:
                targets = json.load(resp)["data"]["activeTargets"]
            waiting = [g["name"] for g in groups if g["interval"] <= max_interval
                       and g.get("lastEvaluation", never).startswith("0001-")]
            waiting += [t["scrapeUrl"] for t in targets
                        if t.get("lastScrape", never).startswith("0001-")]
            if groups and targets and not waiting:
                return
            assert time.monotonic() < deadline, f"never evaluated or scraped: {waiting}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def query_range(self, expr: str, start: float, end: float,
                    step: float) -> list[dict[str, object]]:
        body = urllib.parse.urlencode({"query": expr, "start": start, "end": end,
                                       "step": step}).encode()
        with urllib.request.urlopen(self.url + "/api/v1/query_range", body,
                                    timeout=600) as resp:
            answer = json.load(resp)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]  # type: ignore[no-any-return]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, object]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = str(at)
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=30) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]["result"]  # type: ignore[no-any-return]


@dataclass
class History:
    t0: int
    jobs: dict[str, Job]
    prom: PromProcess
    specs: Path
    workdir: Path
    rule_files: list[Path]
    feed: LiveFeed

    def stop(self) -> None:
        self.prom.stop()
        self.feed.stop()

    @property
    def url(self) -> str:
        return self.prom.url


def _run(*cmd: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{cmd}: {result.stdout[-2000:]}{result.stderr[-2000:]}"


def build(workdir: Path, prometheus: str, promtool: str, sloth: str) -> History:
    t0 = int(time.time()) // ALIGN * ALIGN
    jobs = model(t0)
    specs = workdir / "slos"
    specs.mkdir()
    for name, doc in SPECS.items():
        (specs / name).write_text(yaml.safe_dump(doc, sort_keys=False))
    out = workdir / "generated"
    result = subprocess.run([sys.executable, "-m", "sloexporter.cli", "generate", str(specs),
                             "-o", str(out)], capture_output=True, text=True, cwd=ROOT,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    rule_files = sorted((out / "rules").glob("*.yaml"))
    sloth_spec = workdir / "sloth.yaml"
    sloth_spec.write_text(yaml.safe_dump(SLOTH_SPEC, sort_keys=False))
    _run(sloth, "generate", "-i", str(sloth_spec), "-o", str(workdir / "sloth-rules.yaml"))
    (workdir / "pyrra-rules.yaml").write_text(yaml.safe_dump(pyrra_rules(), sort_keys=False))
    rule_files += [workdir / "sloth-rules.yaml", workdir / "pyrra-rules.yaml"]

    tsdb = workdir / "tsdb"
    counts = backfill_raw(t0, jobs, workdir, tsdb, promtool)

    prom = PromProcess(prometheus, workdir)
    bare = workdir / "bare.yml"
    bare.write_text(yaml.safe_dump({"global": {"evaluation_interval": "5m"}}))
    # a rule reading another recorded series waits for that series' blocks: one level at
    # a time, Prometheus restarted in between to load them
    for rules in rule_levels(rule_files)[:BACKFILL_LEVELS]:
        prom.start(bare)
        try:
            recorded = [(rule, start, prom.query_range(str(rule["expr"]), start, t0, EVAL))
                        for start, chosen in backfill_passes(t0, rules) for rule in chosen]
        finally:
            prom.stop()
        backfill_recorded(recorded, t0, workdir, tsdb, promtool)
    feed = LiveFeed(t0, jobs, counts)
    feed.start()
    live = workdir / "prometheus.yml"
    live.write_text(yaml.safe_dump({"global": {"evaluation_interval": f"{LIVE_EVAL}s"},
                                    "rule_files": [str(p) for p in rule_files],
                                    "scrape_configs": [feed.scrape_config()]}))
    prom.start(live)
    prom.wait_until_live(LIVE_EVAL)
    return History(t0, jobs, prom, specs, workdir, rule_files, feed)


def keep_workdir() -> bool:
    return os.environ.get("SLOEXPORTER_KEEP_HISTORY") == "1"
