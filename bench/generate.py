"""Benchmark: generate rules for 1,000 SLOs.

Prints wall time and SLOs per second for the whole pipeline (load + validate + build +
render), next to a baseline measured in the same run: loading the same specs with
`yaml.safe_load` alone (the least any YAML-driven generator must do). The target is
under 1 s for 1,000 SLOs on a 2-core machine.

    .venv/bin/python bench/generate.py [--slos 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from sloexporter.output import write_all
from sloexporter.specs import load_paths

KINDS = [
    {"events": {"errors": 'sum(rate(http_requests_total{job="svc%d",code=~"5.."}[{{window}}]))',
                "total": 'sum(rate(http_requests_total{job="svc%d"}[{{window}}]))'}},
    {"latency": {"metric": "http_request_duration_seconds", "selector": '{job="svc%d"}',
                 "threshold": 0.5}},
    {"argocd": {"selector": '{name="app%d"}'}},
    {"backup": {"selector": '{name="backup%d"}'}},
    {"certificate": {"selector": '{name="cert%d"}'}},
]


def _fill(obj: object, n: int) -> object:
    if isinstance(obj, dict):
        return {k: _fill(v, n) for k, v in obj.items()}
    if isinstance(obj, str) and "%d" in obj:
        return obj.replace("%d", str(n))
    return obj


def write_specs(folder: Path, slos: int, per_service: int = 10) -> None:
    for s in range(slos // per_service):
        spec = {"apiVersion": "sloexporter.dev/v1", "kind": "ServiceLevels",
                "service": f"svc{s}", "labels": {"team": f"team{s % 7}"}, "slos": []}
        for i in range(per_service):
            n = s * per_service + i
            spec["slos"].append({"name": f"slo{i}", "objective": [99, 99.5, 99.9][n % 3],
                                 "period": ["7d", "28d", "30d"][n % 3],
                                 "sli": _fill(KINDS[n % len(KINDS)], n)})
        (folder / f"svc{s}.yaml").write_text(yaml.safe_dump(spec))


def run(folder: Path, out: Path) -> tuple[float, int]:
    start = time.perf_counter()
    services, errors = load_paths([str(folder)])
    assert not errors, errors[:3]
    write_all(services, out)
    return time.perf_counter() - start, sum(len(s.slos) for s in services)


def baseline(folder: Path) -> float:
    start = time.perf_counter()
    for path in sorted(folder.glob("*.yaml")):
        yaml.safe_load(path.read_text())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slos", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp, "specs"), Path(tmp, "out")
        folder.mkdir()
        write_specs(folder, args.slos)
        run(folder, out)  # warm-up: imports, caches
        times, bases, count = [], [], 0
        for _ in range(args.repeat):
            bases.append(baseline(folder))
            elapsed, count = run(folder, out)
            times.append(elapsed)
        rules = sum(p.read_text().count("- record:") + p.read_text().count("- alert:")
                    for p in (out / "rules").glob("*.yaml"))
    best, median = min(times), statistics.median(times)
    base = statistics.median(bases)
    print(f"generate: {count} SLOs, {rules} rules")
    print(f"  wall time   best {best:.3f} s   median {median:.3f} s")
    print(f"  throughput  {count / median:,.0f} SLOs/s (median)")
    print(f"  baseline    yaml.safe_load of the same specs: median {base:.3f} s")
    print(f"  ratio       generate / baseline = {median / base:.1f}x")
    print(f"  target      < 1 s for 1000 SLOs: {'met' if median < 1 else 'MISSED'}")


if __name__ == "__main__":
    main()
