"""Benchmark: `sloexporter generate` against `sloth generate`, as the commands a user runs.

Both read the same Sloth-format specs (`prometheus/v1`, 5 SLOs per service, events SLIs)
from one folder and write rule files to an empty folder. Each run is a fresh process, so
start-up (imports, Go runtime) counts as it does for a user. The two commands alternate,
several times, and the medians and their ratio are printed; a ratio at or below 1.0 means
sloexporter is at least as fast as Sloth.

Also printed, as same-run baselines for what any YAML-driven generator must do in
Python: reading the specs with PyYAML's C loader (`yaml.CSafeLoader`), and start-up alone
(`sloexporter --version`, `sloexporter validate` of one small spec).

    .venv/bin/python bench/generate.py [--slos 1000 5000] [--repeat 5] [--sloth PATH]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PER_SERVICE = 5


def write_specs(folder: Path, slos: int) -> None:
    """Sloth specs: `slos` SLOs in services of PER_SERVICE, events SLIs."""
    for s in range((slos + PER_SERVICE - 1) // PER_SERVICE):
        items = []
        for i in range(min(PER_SERVICE, slos - s * PER_SERVICE)):
            job = f"svc{s}"
            items.append({
                "name": f"requests-{i}",
                "objective": [99.0, 99.5, 99.9][(s + i) % 3],
                "description": f"requests of {job} route {i} succeed",
                "sli": {"events": {
                    "error_query": f'sum(rate(http_requests_total{{job="{job}",route="r{i}",'
                                   f'code=~"5.."}}[{{{{.window}}}}]))',
                    "total_query": f'sum(rate(http_requests_total{{job="{job}",route="r{i}"}}'
                                   f"[{{{{.window}}}}]))"}},
                "alerting": {"name": f"Svc{s}Route{i}Burn",
                             "labels": {"category": "availability"},
                             "annotations": {"summary": "high error budget burn"},
                             "page_alert": {"labels": {"severity": "page"}},
                             "ticket_alert": {"labels": {"severity": "ticket"}}},
            })
        spec = {"version": "prometheus/v1", "service": f"svc{s}",
                "labels": {"team": f"team{s % 7}"}, "slos": items}
        (folder / f"svc{s}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], cpu: list[float] | None = None) -> float:
    """Wall seconds of one run of `cmd`; its CPU seconds (user + system, every thread)
    are appended to `cpu`. On a shared machine the CPU time is the steadier figure."""
    before = _child_cpu()
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    if cpu is not None:
        cpu.append(_child_cpu() - before)
    return elapsed


def _verdict(met: bool) -> str:
    return "target met" if met else "target NOT met"


def count_rules(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*.yaml"):
        text = path.read_text()
        total += text.count("- record:") + text.count("- alert:")
    return total


def c_loader_baseline(folder: Path) -> float:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    start = time.perf_counter()
    for path in sorted(folder.glob("*.yaml")):
        yaml.load(path.read_text(), Loader=loader)  # noqa: S506 (a safe loader)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slos", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sloth", default=str(ROOT / ".tools" / "bin" / "sloth"))
    args = parser.parse_args()
    exe = shutil.which("sloexporter", path=str(Path(sys.executable).parent))
    ours_cmd = [exe] if exe else [sys.executable, "-m", "sloexporter.cli"]
    sloth = shutil.which(args.sloth) or (args.sloth if os.access(args.sloth, os.X_OK) else None)
    if not sloth:
        sys.exit(f"sloth not found at {args.sloth}: run scripts/install-tools.sh")
    # an installed wheel has its bytecode compiled by pip; do the same for this checkout,
    # or every run would compile the package anew (PYTHONDONTWRITEBYTECODE)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "sloexporter")],
                   check=True, capture_output=True)
    if not hasattr(yaml, "CSafeLoader"):
        print("note: PyYAML has no C loader here; the loader baseline uses the pure one")

    # start-up depends on how the interpreter was built (a distribution's is optimised;
    # scripts/lib.sh makes .venv with it when there is one)
    print(f"interpreter: {os.path.realpath(sys.executable)} "
          f"(Python {sys.version.split()[0]})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp, "small")
        small.mkdir()
        write_specs(small, PER_SERVICE)
        vcpu: list[float] = []
        acpu: list[float] = []
        version = [timed([*ours_cmd, "--version"], vcpu) for _ in range(args.repeat)]
        validate = [timed([*ours_cmd, "validate", str(small)], acpu) for _ in range(args.repeat)]
        python = [timed([sys.executable, "-c", "pass"]) for _ in range(args.repeat)]
        # what any validator built on the project's pydantic models and PyYAML pays first
        floor = [timed([sys.executable, "-c", "import pydantic, yaml"])
                 for _ in range(args.repeat)]
        ms = lambda xs: f"{statistics.median(xs) * 1000:.0f} ms"  # noqa: E731
        print(f"start-up (target: under 150 ms): sloexporter --version median {ms(version)} "
              f"(CPU {ms(vcpu)}, {_verdict(statistics.median(version) < 0.15)}), validate "
              f"of {PER_SERVICE} SLOs median {ms(validate)} (CPU {ms(acpu)}, "
              f"{_verdict(statistics.median(validate) < 0.15)}); baselines: `python -c pass` "
              f"{ms(python)}, `python -c 'import pydantic, yaml'` {ms(floor)}", flush=True)

        for slos in args.slos:
            specs = Path(tmp, f"specs{slos}")
            specs.mkdir()
            write_specs(specs, slos)
            ours_t, sloth_t, base_t = [], [], []
            cpu: dict[str, list[float]] = {"ours": [], "sloth": []}
            ours_out, sloth_out = Path(tmp, f"ours{slos}"), Path(tmp, f"sloth{slos}")
            for n in range(args.repeat + 1):  # the first round warms the page cache
                for folder in (ours_out, sloth_out):
                    shutil.rmtree(folder, ignore_errors=True)
                sloth_out.mkdir()  # sloth writes into an existing folder only
                # alternate which goes first, so neither always gets the warmer machine
                pair = [("ours", [*ours_cmd, "generate", str(specs), "-o", str(ours_out)]),
                        ("sloth", [sloth, "generate", "--no-log", "-i", str(specs),
                                   "-o", str(sloth_out)])]
                if n % 2:
                    pair.reverse()
                round_cpu: dict[str, list[float]] = {"ours": [], "sloth": []}
                times = {name: timed(cmd, round_cpu[name]) for name, cmd in pair}
                base = c_loader_baseline(specs)
                if n:
                    for name in cpu:
                        cpu[name] += round_cpu[name]
                    ours_t.append(times["ours"])
                    sloth_t.append(times["sloth"])
                    base_t.append(base)
            ours_m, sloth_m = statistics.median(ours_t), statistics.median(sloth_t)
            print(f"\n{slos} SLOs ({slos // PER_SERVICE} services, {PER_SERVICE} SLOs each, "
                  f"events SLIs), {args.repeat} interleaved runs:")
            print(f"  sloexporter generate  median {ours_m:.3f} s  (min {min(ours_t):.3f}), "
                  f"{count_rules(ours_out / 'rules')} rules")
            print(f"  sloth generate        median {sloth_m:.3f} s  (min {min(sloth_t):.3f}), "
                  f"{count_rules(sloth_out)} rules")
            print(f"  ratio sloexporter / sloth = {ours_m / sloth_m:.2f} "
                  f"({'at or below' if ours_m <= sloth_m else 'ABOVE'} Sloth)")
            if slos == 1000:
                print(f"  1,000 SLOs in under 1 s (wall median): "
                      f"{_verdict(ours_m < 1.0)}")
            ours_c, sloth_c = statistics.median(cpu["ours"]), statistics.median(cpu["sloth"])
            print(f"  CPU (user + system) median: sloexporter {ours_c:.2f} s, sloth "
                  f"{sloth_c:.2f} s, ratio {ours_c / sloth_c:.2f}")
            print(f"  load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
            print(f"  baseline: PyYAML C loader reading the specs, median "
                  f"{statistics.median(base_t):.3f} s", flush=True)


if __name__ == "__main__":
    main()
