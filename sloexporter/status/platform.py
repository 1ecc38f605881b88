"""Platform health beside the SLOs: ArgoCD, backups, certificates and probes.

Read back from Prometheus (the series `serve` exports), so a central status service sees
every cluster that Prometheus scrapes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sloexporter import names, promql
from sloexporter.status.client import PrometheusClient, Sample

#: how far back "out of sync since" looks; older shows as "more than" this
LOOKBACK = 7 * 86400


def _since(bad: list[Sample], since: list[Sample], now: float,
           keys: tuple[str, ...]) -> list[dict[str, Any]]:
    when = {tuple(s.labels.get(k, "") for k in keys): s.value for s in since}
    out = []
    for sample in bad:
        ident = tuple(sample.labels.get(k, "") for k in keys)
        last_good = when.get(ident)
        row: dict[str, Any] = {k: sample.labels.get(k, "") for k in keys}
        row["for_seconds"] = now - last_good if last_good else None
        row["for_at_least_seconds"] = LOOKBACK if not last_good else None
        out.append(row)
    return sorted(out, key=lambda r: [r[k] for k in keys])


async def read_platform(client: PrometheusClient, now: float, cert_days: int) -> dict[str, Any]:
    app = ("namespace", "name", "project")
    queries = [
        promql.platform_out_of_sync(),
        promql.platform_bad_since(names.ARGOCD_APP_SYNCED, LOOKBACK),
        promql.platform_unhealthy(),
        promql.platform_bad_since(names.ARGOCD_APP_HEALTHY, LOOKBACK),
        names.ARGOCD_APP_INFO,
        promql.platform_backups_overdue(),
        promql.platform_certs_expiring(cert_days),
        promql.platform_failing_probes(),
    ]
    (unsynced, synced_at, unhealthy, healthy_at, info, overdue, certs,
     probes) = await asyncio.gather(*(client.query(q, now) for q in queries))
    health = {tuple(s.labels.get(k, "") for k in app): s.labels.get("health_status", "")
              for s in info}
    degraded = _since(unhealthy, healthy_at, now, app)
    for row in degraded:
        row["health_status"] = health.get(tuple(row[k] for k in app), "")
    return {
        "argocd_out_of_sync": _since(unsynced, synced_at, now, app),
        "argocd_degraded": degraded,
        "backups_overdue": sorted(
            ({"kind": s.labels.get("kind", ""), "namespace": s.labels.get("namespace", ""),
              "name": s.labels.get("name", ""), "overdue_seconds": s.value} for s in overdue),
            key=lambda r: -r["overdue_seconds"]),
        "certificates_expiring": sorted(
            ({"source": s.labels.get("source", ""), "namespace": s.labels.get("namespace", ""),
              "name": s.labels.get("name", ""), "subject_cn": s.labels.get("subject_cn", ""),
              "days_left": s.value / promql.DAY_SECONDS}
             for s in certs), key=lambda r: r["days_left"]),
        "certificate_days": cert_days,
        "failing_probes": _probes(probes),
    }


def _probes(samples: list[Sample]) -> list[dict[str, str]]:
    """One row per failing target; the TLS failure reason when there is one."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for s in samples:
        kind = "tls" if s.labels.get("__name__", "").startswith("sloexporter_tls") else "http"
        row = {"kind": kind, "target": s.labels.get("target", ""),
               "reason": s.labels.get("reason", "")}
        key = (kind, row["target"])
        if key not in rows or row["reason"]:
            rows[key] = row
    return [rows[k] for k in sorted(rows)]
