"""Compliance reports for a calendar period or a custom range: HTML, Markdown and JSON.

Per SLO: the SLI against its objective, budget consumed and remaining, the change from
the previous period, the peak 1h burn rate, alerts fired and minutes firing, minutes
without data, and the status; rolled up per service and per team.
"""

from __future__ import annotations

import asyncio
import json
import math
from html import escape
from pathlib import Path
from typing import Any

from sloexporter import model, promql
from sloexporter.model import SLO
from sloexporter.status import compute
from sloexporter.status.calendar import Window
from sloexporter.status.catalog import Key, SLODef, from_model, native_key, pyrra_key, sloth_key
from sloexporter.status.client import PrometheusClient, Sample
from sloexporter.status.config import StatusConfig

PEAK_WINDOW = 3600


def _by_key(samples: list[Sample], how: str = "max") -> dict[Key, float]:
    out: dict[Key, float] = {}
    for s in samples:
        labels = s.labels
        key = sloth_key(labels) if "sloth_slo" in labels else native_key(labels) \
            if "service" in labels else pyrra_key(labels)
        if key is not None and math.isfinite(s.value):
            out[key] = max(out.get(key, s.value), s.value) if how == "max" \
                else out.get(key, 0.0) + s.value
    return out


def _alerts_by(samples: list[Sample], slos: dict[Key, SLODef]) -> dict[Key, dict[str, float]]:
    out: dict[Key, dict[str, float]] = {}
    for s in samples:
        labels = s.labels
        if "sloth_slo" in labels:
            key, sev = sloth_key(labels), labels.get("sloth_severity", "")
        else:
            key = native_key(labels) if "service" in labels else pyrra_key(labels)
            slo = slos.get(key) if key else None
            raw = labels.get("severity", "")
            sev = "page" if slo and raw in slo.page_severities else \
                "ticket" if slo and raw in slo.ticket_severities else ""
        if key in slos and sev in ("page", "ticket") and math.isfinite(s.value):
            per = out.setdefault(key, {})
            per[sev] = per.get(sev, 0.0) + s.value
    return out


async def build_report(client: PrometheusClient, specs: list[SLO], cfg: StatusConfig,
                       window: Window, previous: Window, now: float) -> dict[str, Any]:
    window = window.clipped(now)
    q = compute.Querier(client, window.end)
    slos = await compute.discover(q, [from_model(s) for s in specs], cfg)
    need = compute.needs(slos)
    s = window.seconds
    present_metric = {"native": promql.TOTAL_RATE5M, "ratio": promql.ERROR_RATIO_5M,
                      "pyrra": promql.PYRRA_REQUESTS_RATE5M}
    jobs = [compute.measure_window(q, window, need), compute.measure_window(q, previous, need),
            q(promql.maximum_over(promql.error_ratio_name(PEAK_WINDOW), s)),
            q(promql.alert_firings(s)), q(promql.alert_minutes_firing(s)),
            *(q(promql.minutes_present(present_metric[n], s)) for n in sorted(need))]
    if "pyrra" in need:
        jobs.append(q(promql.maximum_over(
            f'{{__name__=~".+:burnrate{promql.format_duration(PEAK_WINDOW)}"}}', s)))
    results = await asyncio.gather(*jobs)
    current, before, peak, firings, minutes = results[:5]
    present: dict[Key, float] = {}
    for samples in results[5:5 + len(need)]:
        for key, value in _by_key(samples).items():
            present[key] = max(present.get(key, 0.0), value)
    if "pyrra" in need:
        peak = [*peak, *results[-1]]
    by_key = {d.key: d for d in slos}
    peaks = _by_key(peak)
    fired, firing = _alerts_by(firings, by_key), _alerts_by(minutes, by_key)
    rows = []
    for slo in slos:
        view = compute.window_view(slo, current, window)
        prev = compute.window_view(slo, before, previous)
        status = compute.status_of(view, {}, cfg.thresholds.warning_budget)
        eb = view["error_budget"] or {}
        change = view["sli"] - prev["sli"] if view["sli"] is not None and \
            prev["sli"] is not None else None
        peak_ratio = peaks.get(slo.key)
        rows.append({
            "service": slo.service, "slo": slo.slo, "team": slo.team, "origin": slo.origin,
            "objective": slo.objective, "sli": view["sli"],
            "met": view["sli"] is not None and view["sli"] * 100 >= slo.objective,
            "error_budget_remaining": view["error_budget_remaining"],
            "error_budget_consumed": None if view["error_budget_remaining"] is None
            else 1 - view["error_budget_remaining"],
            "error_budget": eb or None,
            "previous_sli": prev["sli"], "sli_change": change,
            "peak_burn_rate": None if peak_ratio is None
            else model.burn_rate_of(peak_ratio, slo.budget),
            "alerts_fired": {sev: int(fired.get(slo.key, {}).get(sev, 0))
                             for sev in ("page", "ticket")},
            "alert_minutes": {sev: firing.get(slo.key, {}).get(sev, 0.0)
                              for sev in ("page", "ticket")},
            "no_data_minutes": max(s / 60 - present.get(slo.key, 0.0), 0.0),
            "status": status, "reason": view["reason"], "labels": slo.labels,
        })
    return {"period": {"label": window.label, "start": window.start, "end": window.end,
                       "previous": previous.label},
            "generated_at": now, "slos": rows,
            "services": rollup(rows, "service"), "teams": rollup(rows, "team")}


def rollup(rows: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row[by] or "(none)", []).append(row)
    out = []
    for name, members in sorted(groups.items()):
        budgets = [m["error_budget_remaining"] for m in members
                   if m["error_budget_remaining"] is not None]
        out.append({by: name, "slos": len(members),
                    "met": sum(1 for m in members if m["met"]),
                    "breached": sum(1 for m in members if m["status"] == "BREACHED"),
                    "no_data": sum(1 for m in members if m["status"] == "NO_DATA"),
                    "worst_error_budget_remaining": min(budgets) if budgets else None,
                    "pages_fired": sum(m["alerts_fired"]["page"] for m in members),
                    "tickets_fired": sum(m["alerts_fired"]["ticket"] for m in members)})
    return out


def _pct(v: float | None, digits: int = 3) -> str:
    return "—" if v is None else f"{v * 100:.{digits}f}%"


def _pp(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:+.3f} pp"


def _n(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


COLUMNS = ("Service", "SLO", "Team", "Objective", "SLI", "Change", "Budget consumed",
           "Budget left", "Peak burn (1h)", "Pages", "Tickets", "Minutes firing",
           "No-data min", "Status")


def _cells(r: dict[str, Any]) -> list[str]:
    return [r["service"], r["slo"], r["team"] or "—", f"{r['objective']:g}%", _pct(r["sli"]),
            _pp(r["sli_change"]), _pct(r["error_budget_consumed"], 1),
            _pct(r["error_budget_remaining"], 1), _n(r["peak_burn_rate"], 2),
            str(r["alerts_fired"]["page"]), str(r["alerts_fired"]["ticket"]),
            _n(sum(r["alert_minutes"].values()), 0), _n(r["no_data_minutes"], 0), r["status"]]


ROLLUP_COLUMNS = ("SLOs", "Met", "Breached", "No data", "Worst budget left", "Pages",
                  "Tickets")


def _rollup_cells(r: dict[str, Any]) -> list[str]:
    return [str(r["slos"]), str(r["met"]), str(r["breached"]), str(r["no_data"]),
            _pct(r["worst_error_budget_remaining"], 1), str(r["pages_fired"]),
            str(r["tickets_fired"])]


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;") \
        .replace(">", "&gt;").replace("\n", " ")


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def title(report: dict[str, Any]) -> str:
    return f"SLO report {report['period']['label']}"


def to_markdown(report: dict[str, Any]) -> str:
    parts = [f"# {title(report)}", "",
             f"Compared with {report['period']['previous']}.", "",
             _md_table(list(COLUMNS), [_cells(r) for r in report["slos"]]), "",
             "## Per service", "",
             _md_table(["Service", *ROLLUP_COLUMNS],
                       [[r["service"], *_rollup_cells(r)] for r in report["services"]]), "",
             "## Per team", "",
             _md_table(["Team", *ROLLUP_COLUMNS],
                       [[r["team"], *_rollup_cells(r)] for r in report["teams"]]), ""]
    return "\n".join(parts)


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{escape(c)}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
                for row in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"


def to_html(report: dict[str, Any]) -> str:
    style = ("body{font:14px system-ui,sans-serif;margin:20px}table{border-collapse:collapse}"
             "td,th{border:1px solid #d1d9e0;padding:4px 8px;text-align:left}"
             "th{background:#f6f8fa}")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title(report))}</title><style>{style}</style></head><body>"
            f"<h1>{escape(title(report))}</h1>"
            f"<p>Compared with {escape(report['period']['previous'])}.</p>"
            + _html_table(list(COLUMNS), [_cells(r) for r in report["slos"]])
            + "<h2>Per service</h2>"
            + _html_table(["Service", *ROLLUP_COLUMNS],
                          [[r["service"], *_rollup_cells(r)] for r in report["services"]])
            + "<h2>Per team</h2>"
            + _html_table(["Team", *ROLLUP_COLUMNS],
                          [[r["team"], *_rollup_cells(r)] for r in report["teams"]])
            + "</body></html>")


def to_json(report: dict[str, Any]) -> str:
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(report), indent=2, sort_keys=True) + "\n"


def write(report: dict[str, Any], outdir: Path) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    stem = "slo-report-" + "".join(c if c.isalnum() or c in "-_" else "_"
                                   for c in report["period"]["label"])
    written = []
    for ext, render in (("html", to_html), ("md", to_markdown), ("json", to_json)):
        path = outdir / f"{stem}.{ext}"
        path.write_text(render(report), encoding="utf-8")
        written.append(path)
    return written
