"""Benchmark: what our rules cost Prometheus, next to Sloth's for the same SLOs.

Three Prometheus 2.42 processes run side by side, scraping one synthetic exporter:
one loads sloexporter's rules, one Sloth v0.16.0's rules for the same Sloth-format specs
(`sloth generate`), one no rules (the baseline: scraping and storage alone). Before they
start, every TSDB is backfilled (`promtool tsdb create-blocks-from openmetrics`) with
`--history-days` of the exporter's raw series, and with the history of the recorded
series that each rule set reads over long ranges (ours: the 5m errors and totals; Sloth:
its 5m ratio), so the 3d and 30d windows read real data. Raw samples are at the scrape
interval for the newest 3d + 1h (the longest raw window Sloth reads) and every
`--old-step` before; recorded samples at the evaluation interval, then `--old-step`. Then
each TSDB is compacted as a long-running server's would be (`compact`; `--no-compact`
measures on the backfill's blocks as they are).

It prints, for each process, the CPU used over `--measure` seconds (after `--warmup`),
the summed rule-group evaluation time (mean of the groups' last durations, sampled each
evaluation), and the recorded `slo:*` series, with the ratios ours / Sloth, both for the
whole process and for the rules alone (minus the baseline). Goal: CPU ratio <= 1.0.
Then, on a quiet Prometheus over each TSDB, it queries every rule's expression and lists
the costliest kinds of rule by Prometheus CPU (`--profile-rounds 0` skips it).

    .venv/bin/python bench/rule_cost.py [--slos 200] [--history-days 31] [--measure 300]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.tools import LOCAL_TOOLS, free_port, serve_text  # noqa: E402

METRIC = "bench_requests_total"
#: requests per second of each raw series, by status code
RATES = {"200": 20.0, "500": 0.02}
INSTANCES = ("a", "b")
OBJECTIVES = (99.9, 99.5, 99.0, 99.95, 99.9)


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(LOCAL_TOOLS))
    if not path:
        sys.exit(f"{name} is not installed; run scripts/install-tools.sh")
    return path


# ---- specs and rules -------------------------------------------------------------------

def slo_keys(slos: int, per_service: int) -> list[tuple[str, str]]:
    return [(f"svc{n // per_service}", f"slo{n % per_service}") for n in range(slos)]


def write_specs(folder: Path, keys: list[tuple[str, str]]) -> None:
    """Sloth-format specs (both tools read them): events SLIs over the raw counters."""
    services: dict[str, list[dict[str, Any]]] = {}
    for n, (svc, slo) in enumerate(keys):
        sel = f'app="{svc}",endpoint="{slo}"'
        services.setdefault(svc, []).append({
            "name": slo, "objective": OBJECTIVES[n % len(OBJECTIVES)],
            "sli": {"events": {
                "error_query": f'sum(rate({METRIC}{{{sel},code=~"5.."}}[{{{{.window}}}}]))',
                "total_query": f"sum(rate({METRIC}{{{sel}}}[{{{{.window}}}}]))"}},
            "alerting": {"name": f"{svc}{slo}Burn".capitalize(),
                         "page_alert": {"labels": {"severity": "page"}},
                         "ticket_alert": {"labels": {"severity": "ticket"}}}})
    for svc, slos in services.items():
        spec = {"version": "prometheus/v1", "service": svc, "labels": {"team": "bench"},
                "slos": slos}
        (folder / f"{svc}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def generate_ours(specs: Path, out: Path) -> list[Path]:
    subprocess.run([sys.executable, "-m", "sloexporter.cli", "generate", str(specs), "-o",
                    str(out)], check=True, capture_output=True, timeout=600, cwd=ROOT)
    return sorted((out / "rules").glob("*.yaml"))


def generate_sloth(specs: Path, out: Path) -> list[Path]:
    out.mkdir()
    subprocess.run([tool("sloth"), "generate", "--no-log", "-i", str(specs), "-o", str(out)],
                   check=True, capture_output=True, timeout=600)
    return sorted(out.rglob("*.yaml"))


def recorded_label_sets(rule_files: list[Path], record: str) -> list[dict[str, str]]:
    """The label sets a rule set gives `record`, for backfilling its history."""
    found = []
    for path in rule_files:
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            for rule in group["rules"]:
                if rule.get("record") == record:
                    found.append({str(k): str(v) for k, v in (rule.get("labels") or {}).items()})
    return found


# ---- the synthetic exporter ------------------------------------------------------------

def raw_series(keys: list[tuple[str, str]]) -> list[tuple[str, float]]:
    """(label text, rate) of every raw series; value at t is rate x (t - origin)."""
    return [(f'app="{svc}",endpoint="{slo}",code="{code}",instance="{inst}"', rate)
            for svc, slo in keys for code, rate in RATES.items() for inst in INSTANCES]


def serve_exporter(series: list[tuple[str, float]], origin: float) -> ThreadingHTTPServer:
    def body() -> str:
        elapsed = time.time() - origin
        lines = [f"# TYPE {METRIC} counter"]
        lines += [f"{METRIC}{{{labels}}} {rate * elapsed:.3f}" for labels, rate in series]
        return "\n".join(lines) + "\n"

    return serve_text(body)


# ---- backfill --------------------------------------------------------------------------

def _times(start: float, end: float, dense_from: float, dense: int, sparse: int) -> list[float]:
    out, t = [], start
    while t < end:
        out.append(t)
        t += dense if t >= dense_from else sparse
    return out


def write_openmetrics(path: Path, families: list[tuple[str, str, list[tuple[str, Any]]]],
                      times: list[float]) -> int:
    """families: (name, type, [(labels, value(t))]); returns the number of samples."""
    count = 0
    with path.open("w") as f:
        for name, kind, members in families:
            f.write(f"# TYPE {name} {kind}\n")
            sample = f"{name}_total" if kind == "counter" else name
            for labels, value in members:
                f.writelines(f"{sample}{{{labels}}} {value(t):.6g} {t:.0f}\n" for t in times)
                count += len(times)
        f.write("# EOF\n")
    return count


BLOCK = 7200  # promtool 2.42 writes 2h blocks


def backfill(promtool: str, folder: Path, families: list[tuple[str, str, list[Any]]],
             times: list[float], tsdb: Path) -> int:
    """One OpenMetrics file per 2h block: promtool 2.42 parses its whole input once per
    2h block of it, so one file of 31 days would be parsed 372 times."""
    by_block: dict[int, list[float]] = {}
    for t in times:
        by_block.setdefault(int(t // BLOCK), []).append(t)
    count = 0
    for block, ts in sorted(by_block.items()):
        source = folder / f"block-{block}.om"
        count += write_openmetrics(source, families, ts)
        subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "-q",
                        str(source), str(tsdb)], check=True, capture_output=True, timeout=600)
        source.unlink()
    return count


def label_text(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


# ---- Prometheus ------------------------------------------------------------------------

class Prom:
    def __init__(self, name: str, folder: Path, rules: list[Path], target: str | None,
                 scrape: int, evaluation: int, role: str = "prometheus") -> None:
        """A Prometheus over `folder`/tsdb; its config and log are `role`.yml and .log."""
        self.name, self.folder, self.role = name, folder, role
        self.port = free_port()
        config = {"global": {"scrape_interval": f"{scrape}s",
                             "evaluation_interval": f"{evaluation}s"},
                  "rule_files": [str(r) for r in rules],
                  "scrape_configs": [{"job_name": "bench",
                                      "static_configs": [{"targets": [target]}]}]
                  if target else []}
        (folder / f"{role}.yml").write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, prometheus: str) -> None:
        self.log = (self.folder / f"{self.role}.log").open("wb")
        self.proc = subprocess.Popen([
            prometheus, f"--config.file={self.folder / f'{self.role}.yml'}",
            f"--storage.tsdb.path={self.folder / 'tsdb'}", "--storage.tsdb.retention.time=60d",
            f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log, stderr=self.log)

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as r:
            return json.load(r)["data"]

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: prometheus exited; see {self.folder}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready",
                                            timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name}: not ready in time")

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rule_time(self) -> float:
        return sum(g.get("evaluationTime", 0.0) for g in self.api("/api/v1/rules")["groups"])

    def recorded_series(self) -> int:
        res = self.api("/api/v1/query?query=" + urllib.request.quote(
            'count({__name__=~"slo:.+"}) or vector(0)'))["result"]
        return int(float(res[0]["value"][1])) if res else 0

    def blocks(self) -> int:
        """The persisted blocks of the TSDB (a folder named by its ULID each)."""
        return sum(1 for p in (self.folder / "tsdb").iterdir() if p.is_dir() and
                   len(p.name) == 26)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        if getattr(self, "log", None):
            self.log.close()


def compact(proms: list[Prom], prometheus: str, settle: float = 150,
            limit: float = 3600) -> None:
    """Bring each TSDB to the blocks a long-running server would hold.

    The backfill leaves one 2h block per 2h of history and, for the recorded series, a
    second set overlapping it; a server that ran for those days would have merged the
    overlaps and compacted its blocks to longer ranges (up to a tenth of the retention).
    Left as they are, every selector of a 3d query looks itself up in some 40 blocks' index
    and reads merged overlapping chunks, a cost no real server pays. Each Prometheus runs
    with nothing to scrape or evaluate until its block count has not changed for `settle`
    seconds (it compacts once a minute)."""
    quiet = [Prom(f"{p.name}-compact", p.folder, [], None, 60, 60, "compact") for p in proms]
    for prom in quiet:
        prom.start(prometheus)
    try:
        started = time.monotonic()
        before = [p.blocks() for p in quiet]
        counts, steady_since = before, time.monotonic()
        while time.monotonic() - steady_since < settle:
            if time.monotonic() - started > limit:
                raise RuntimeError(f"compaction did not settle in {limit:.0f}s")
            time.sleep(5)
            now = [p.blocks() for p in quiet]
            if now != counts:
                counts, steady_since = now, time.monotonic()
        print("compacted: blocks " + ", ".join(
            f"{p.name.removesuffix('-compact')} {b} -> {a}"
            for p, b, a in zip(quiet, before, counts, strict=True))
            + f" in {time.monotonic() - started:.0f}s", flush=True)
    finally:
        for prom in quiet:
            prom.stop()


def rule_kind(rule: dict[str, Any]) -> str:
    """A recording rule by its name, an alert by its long window (or severity)."""
    if "record" in rule:
        return str(rule["record"])
    labels = rule.get("labels") or {}
    return "alert " + str(labels.get("long_window") or labels.get("sloth_severity")
                          or labels.get("severity") or rule["alert"])


def rule_exprs(rule_files: list[Path]) -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = {}
    for path in rule_files:
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            for rule in group["rules"]:
                kinds.setdefault(rule_kind(rule), []).append(str(rule["expr"]))
    return kinds


def profile(prom: Prom, kinds: dict[str, list[str]], at: float,
            rounds: int) -> dict[str, float]:
    """Prometheus CPU seconds per evaluation of each kind of rule, summed over the SLOs.

    Every expression is queried at `at` on a Prometheus that neither scrapes nor
    evaluates rules, so its CPU is the queries'; the same number of `vector(1)` queries
    measures the HTTP and JSON overhead, which is subtracted. The groups' own
    `evaluationTime` is wall time, which a loaded machine inflates for every rule alike.
    """
    def cpu_of(exprs: list[str]) -> float:
        start = prom.cpu_seconds()
        for _ in range(rounds):
            for expr in exprs:
                prom.api("/api/v1/query?" + urllib.parse.urlencode(
                    {"query": expr, "time": f"{at:.3f}"}))
        return (prom.cpu_seconds() - start) / rounds

    out = {}
    for kind, exprs in kinds.items():
        out[kind] = max(cpu_of(exprs) - cpu_of(["vector(1)"] * len(exprs)), 0.0)
    return out


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slos", type=int, default=200)
    parser.add_argument("--per-service", type=int, default=5)
    parser.add_argument("--history-days", type=float, default=31)
    parser.add_argument("--scrape", type=int, default=60, help="scrape interval, seconds")
    parser.add_argument("--eval", type=int, default=60, help="evaluation interval, seconds")
    parser.add_argument("--old-step", type=int, default=1800,
                        help="sample step of history older than 3d1h, seconds")
    parser.add_argument("--warmup", type=int, default=60, help="seconds before measuring")
    parser.add_argument("--measure", type=int, default=300, help="seconds measured")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--no-compact", dest="compact", action="store_false",
                        help="measure on the backfill's 2h blocks as they are, not compacted "
                             "as a long-running server's would be")
    parser.add_argument("--compact-settle", type=float, default=150,
                        help="seconds without a change in the blocks that end compaction")
    parser.add_argument("--profile-rounds", type=int, default=3,
                        help="afterwards, query every rule this many times on a quiet "
                             "Prometheus to list the costliest kinds of rule (0: skip)")
    parser.add_argument("--top", type=int, default=10, help="kinds of rule listed")
    args = parser.parse_args()
    promtool, prometheus = tool("promtool"), tool("prometheus")
    tmp = Path(tempfile.mkdtemp(prefix="rule-cost-"))
    proms: list[Prom] = []
    server = None
    try:
        keys = slo_keys(args.slos, args.per_service)
        specs = tmp / "specs"
        specs.mkdir()
        write_specs(specs, keys)
        ours, sloth = generate_ours(specs, tmp / "ours-out"), generate_sloth(specs,
                                                                            tmp / "sloth-out")
        now = time.time()
        origin = now - args.history_days * 86400
        end = now - 60  # the live scrapes take over from here
        dense_from = now - 3 * 86400 - 3600
        series = raw_series(keys)
        print(f"{len(keys)} SLOs, {len(series)} raw series, {args.history_days:g} days of "
              f"history; backfilling...", flush=True)
        raw_times = _times(origin, end, dense_from, args.scrape, args.old_step)
        rec_times = _times(origin, end, dense_from, args.eval, args.old_step)
        raw_families: list[tuple[str, str, list[Any]]] = [
            (METRIC.removesuffix("_total"), "counter",
             [(labels, lambda t, r=rate: r * (t - origin)) for labels, rate in series])]
        err = RATES["500"] * len(INSTANCES)
        tot = sum(RATES.values()) * len(INSTANCES)
        recorded = {
            "ours": [("slo:sli_errors:rate5m", "gauge",
                      [(label_text(ls), lambda t: err)
                       for ls in recorded_label_sets(ours, "slo:sli_errors:rate5m")]),
                     ("slo:sli_total:rate5m", "gauge",
                      [(label_text(ls), lambda t: tot)
                       for ls in recorded_label_sets(ours, "slo:sli_total:rate5m")])],
            "sloth": [("slo:sli_error:ratio_rate5m", "gauge",
                       [(label_text(ls), lambda t: err / tot)
                        for ls in recorded_label_sets(sloth, "slo:sli_error:ratio_rate5m")])],
        }
        server = serve_exporter(series, origin)
        target = f"127.0.0.1:{server.server_address[1]}"
        base_tsdb = tmp / "raw-tsdb"
        start = time.perf_counter()
        samples = backfill(promtool, tmp, raw_families, raw_times, base_tsdb)
        for name, rules in (("ours", ours), ("sloth", sloth), ("none", [])):
            folder = tmp / name
            folder.mkdir()
            shutil.copytree(base_tsdb, folder / "tsdb")
            if name in recorded:
                samples += backfill(promtool, folder, recorded[name], rec_times,
                                    folder / "tsdb")
            proms.append(Prom(name, folder, rules, target, args.scrape, args.eval))
        print(f"backfilled {samples / 1e6:.1f}M samples in {time.perf_counter() - start:.0f}s",
              flush=True)
        if args.compact:
            compact(proms, prometheus, args.compact_settle)
        for prom in proms:
            prom.start(prometheus)
        deadline = time.monotonic() + 300
        for prom in proms:
            prom.wait_ready(deadline)
        print(f"running; warming up {args.warmup}s, then measuring {args.measure}s",
              flush=True)
        time.sleep(args.warmup)
        cpu0 = [p.cpu_seconds() for p in proms]
        rule_samples: list[list[float]] = [[] for _ in proms]
        t_end = time.monotonic() + args.measure
        while True:
            for i, p in enumerate(proms):
                rule_samples[i].append(p.rule_time())
            left = t_end - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(args.eval, left))
        cpu = [p.cpu_seconds() - c for p, c in zip(proms, cpu0, strict=True)]
        millicores = [c / args.measure * 1000 for c in cpu]
        rule_ms = [sum(s) / len(s) * 1000 for s in rule_samples]
        series_count = [p.recorded_series() for p in proms]
        ours_i, sloth_i, none_i = 0, 1, 2
        cpu_ratio = ratio(millicores[ours_i], millicores[sloth_i])
        rules_ratio = ratio(millicores[ours_i] - millicores[none_i],
                            millicores[sloth_i] - millicores[none_i])
        print(f"\n{'':28}{'ours':>10}{'sloth':>10}{'no rules':>10}{'ours/sloth':>12}"
              f"{'rules only':>12}")
        print(f"{'CPU (millicores)':28}" + "".join(f"{m:>10.1f}" for m in millicores)
              + f"{cpu_ratio:>12}{rules_ratio:>12}")
        print(f"{'rule groups, ms per eval':28}" + "".join(f"{m:>10.2f}" for m in rule_ms)
              + f"{ratio(rule_ms[ours_i], rule_ms[sloth_i]):>12}{'':>12}")
        print(f"{'recorded slo:* series':28}" + "".join(f"{n:>10}" for n in series_count)
              + f"{ratio(series_count[ours_i], series_count[sloth_i]):>12}{'':>12}")
        rules_count = [sum(len(g["rules"]) for f in files
                           for g in (yaml.safe_load(f.read_text()) or {}).get("groups", []))
                       for files in (ours, sloth)]
        print(f"{'rules':28}{rules_count[0]:>10}{rules_count[1]:>10}{0:>10}"
              f"{ratio(rules_count[0], rules_count[1]):>12}")
        print(f"\nCPU ratio ours/sloth: {cpu_ratio} (goal <= 1.0); rules only: {rules_ratio}",
              flush=True)
        if args.profile_rounds > 0:
            at = time.time()
            for prom in proms:
                prom.stop()
            totals = []
            for name, rules in (("ours", ours), ("sloth", sloth)):
                quiet = Prom(f"{name}-profile", tmp / name, [], None, args.scrape, args.eval,
                             "profile")
                proms.append(quiet)
                quiet.start(prometheus)
                quiet.wait_ready(time.monotonic() + 300)
                cost = profile(quiet, rule_exprs(rules), at, args.profile_rounds)
                quiet.stop()
                total = sum(cost.values())
                totals.append(total)
                print(f"\ncostliest rules, {name}: Prometheus CPU ms per evaluation, summed "
                      f"over SLOs (all rules: {total * 1000:.1f} ms)")
                for kind, seconds in sorted(cost.items(), key=lambda kv: -kv[1])[:args.top]:
                    share = seconds / total * 100 if total else 0.0
                    print(f"  {seconds * 1000:>9.1f}  {share:>5.1f}%  {kind}")
            print(f"\nqueried rule CPU ratio ours/sloth: {ratio(totals[0], totals[1])}")
    finally:
        for prom in proms:
            prom.stop()
        if server is not None:
            server.shutdown()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
