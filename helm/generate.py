"""Write the chart's generated files: helm cannot read outside the chart or run Python.

- files/rules/<service>.yaml: PrometheusRules from examples/slos/platform-*.yaml (the SLOs
  on what sloexporter itself exports), as `sloexporter generate --format
  prometheus-operator` writes them.
- files/dashboards/*.json: copies of the committed dashboards/*.json.

    .venv/bin/python helm/generate.py            # rewrite helm/sloexporter/files
    .venv/bin/python helm/generate.py --out DIR  # write elsewhere (the drift test)

tests/test_helm.py fails when the committed files differ from a fresh run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# this folder holds the chart dir `sloexporter/`, which would shadow the package
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(ROOT)
CHART_FILES = ROOT / "helm" / "sloexporter" / "files"
SPECS = "examples/slos/platform-*.yaml"


def generate(out: Path) -> list[Path]:
    """Write rules and dashboards under `out`; returns the files written."""
    from sloexporter.output import render_rules
    from sloexporter.specs import load_paths

    os.chdir(ROOT)  # the rule header names the spec by its path relative to the repo
    specs = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob(SPECS))
    services, errors = load_paths(specs)
    if errors:
        raise SystemExit("\n".join(str(e) for e in errors))
    written: list[Path] = []
    for folder in ("rules", "dashboards"):
        shutil.rmtree(out / folder, ignore_errors=True)
        (out / folder).mkdir(parents=True)
    for service in sorted(services, key=lambda s: s.name):
        path = out / "rules" / f"{service.name}.yaml"
        path.write_text(render_rules(service, "prometheus-operator"), encoding="utf-8")
        written.append(path)
    for dashboard in sorted((ROOT / "dashboards").glob("*.json")):
        written.append(Path(shutil.copyfile(dashboard, out / "dashboards" / dashboard.name)))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CHART_FILES)
    args = parser.parse_args(argv)
    written = generate(args.out.resolve())
    print(f"wrote {len(written)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
