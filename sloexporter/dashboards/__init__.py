"""Model -> Grafana dashboards, built with grafana-foundation-sdk's typed builders.

`build_all` returns plain JSON data per file name; `files` renders them as the `generate`
output (`dashboards/<name>.json`), a pure function like every other writer.
`dashboard_queries` lists every PromQL expression a dashboard runs, with Grafana's
variables filled in, for tests against a real Prometheus.
"""

from __future__ import annotations

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
from sloexporter.render import to_json

__all__ = ["ALL", "DashboardQuery", "Meta", "build_all", "dashboard_queries", "expand",
           "files"]


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


def files(services: list[Service]) -> dict[str, str]:
    """Every dashboard's JSON text by its path under OUTDIR."""
    return {f"dashboards/{name}.json": to_json(data)
            for name, data in sorted(build_all(services).items())}
