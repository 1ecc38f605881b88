"""Model -> Grafana dashboards, built with grafana-foundation-sdk's typed builders.

`build_all` returns plain JSON data per file name; `write` is the `generate` writer
(`OUTDIR/dashboards/<name>.json`). `dashboard_queries` lists every PromQL expression a
dashboard runs, with Grafana's variables filled in, for tests against a real Prometheus.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sloexporter.dashboards.common import (
    ALL,
    ARGOCD,
    BACKUPS,
    CERTIFICATES,
    DETAIL,
    GOLDEN,
    OVERVIEW,
    Meta,
    render,
)
from sloexporter.dashboards.golden import golden
from sloexporter.dashboards.platform import argocd, backups, certificates
from sloexporter.dashboards.queries import DashboardQuery, dashboard_queries, expand
from sloexporter.dashboards.slo import detail, overview
from sloexporter.model import Service

__all__ = ["ALL", "DashboardQuery", "Meta", "build_all", "dashboard_queries", "expand",
           "write"]


def build_all(services: list[Service]) -> dict[str, dict[str, Any]]:
    """Every dashboard as JSON data, by file name (without `.json`)."""
    built = {
        OVERVIEW: overview(services),
        DETAIL: detail(services),
        ARGOCD: argocd(),
        BACKUPS: backups(),
        CERTIFICATES: certificates(),
        GOLDEN: golden(services),
    }
    return {meta.file: render(dash) for meta, dash in built.items()}


def write(services: list[Service], outdir: Path) -> list[Path]:
    from sloexporter.output import write_json

    written = []
    for name, data in sorted(build_all(services).items()):
        path = outdir / "dashboards" / f"{name}.json"
        write_json(path, data)
        written.append(path)
    return written
