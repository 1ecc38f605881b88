"""The web UI: list, detail and platform pages rendered on the server.

Every page is complete HTML without JavaScript; every value from a spec, a label or
Prometheus goes through `escape` (an SLO may be named `<script>`), and every link
through `quote`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from sloexporter.status.charts import budget_bar, line_chart
from sloexporter.status.compute import STATUSES, duration_text, objective_text

DETAIL_DASHBOARD = "sloexporter-slo-detail"
OVER = '<span class="alert-firing">over threshold</span>'
SORTS = {"budget": lambda i: (i["error_budget_remaining"] is None,
                              i["error_budget_remaining"] or 0.0),
         "sli": lambda i: (i["sli"] is None, i["sli"] or 0.0),
         "name": lambda i: (i["service"], i["slo"]),
         "status": lambda i: (STATUSES.index(i["status"]) if i["status"] in STATUSES else 9,
                              i["service"], i["slo"])}


def pct(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def slo_href(service: str, slo: str) -> str:
    return f"/slo/{quote(service, safe='')}/{quote(slo, safe='')}"


NAV = ("<a href=\"/\">SLOs</a><a href=\"/platform\">Platform</a>"
       "<a href=\"/api/v1/slos\">API</a><a href=\"/metrics\">Metrics</a>")


def page(title: str, body: str, banner: str = "", nav: str = NAV) -> str:
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)} · sloexporter</title>"
            "<link rel=\"icon\" href=\"data:,\">"
            "<link rel=\"stylesheet\" href=\"/static/style.css\"></head><body>"
            f"<header><a class=\"brand\" href=\"/\">sloexporter</a>{nav}</header>"
            f"<main>{banner}{body}</main></body></html>")


def banner(reason: str | None, age: float | None, error: bool) -> str:
    """The stale-data banner: why, and how old the numbers on the page are."""
    if reason is None:
        return ""
    css = "banner error" if error else "banner"
    shown = f"Showing data from {age_text(age)} ago." if age is not None else \
        "No data to show yet."
    return f'<div class="{css}" role="alert"><strong>Prometheus is unavailable or ' \
           f'slow.</strong> {escape(reason)} {shown}</div>'


def status_badge(status: str) -> str:
    s = escape(status)
    return f'<span class="status status-{s}">{s}</span>'


def alert_text(state: str) -> str:
    s = escape(state)
    return f'<span class="alert-{s}">{s}</span>'


def _select(name: str, options: list[str], chosen: str, label: str) -> str:
    opts = ['<option value="">all</option>'] + [
        f'<option value="{escape(o)}"{" selected" if o == chosen else ""}>{escape(o)}</option>'
        for o in options]
    return f'<label>{escape(label)}<select name="{name}">{"".join(opts)}</select></label>'


def list_page(items: list[dict[str, Any]], every: list[dict[str, Any]],
              query: dict[str, str], calendar_label: str | None, reason: str | None,
              age: float | None, error: bool) -> str:
    sort = query.get("sort", "budget")
    descending = sort.startswith("-")
    key = SORTS.get(sort.lstrip("-"), SORTS["budget"])
    rows = sorted(items, key=key, reverse=descending)
    services = sorted({i["service"] for i in every})
    teams = sorted({i["team"] for i in every if i["team"]})
    form = ('<form class="filters" method="get" action="/">'
            + _select("service", services, query.get("service", ""), "service")
            + _select("team", teams, query.get("team", ""), "team")
            + _select("status", list(STATUSES), query.get("status", ""), "status")
            + f'<label>label (name=value)<input name="label" value="'
              f'{escape(query.get("label", ""))}" placeholder="tier=1"></label>'
            + f'<input type="hidden" name="sort" value="{escape(sort)}">'
            + '<button type="submit">Filter</button></form>')

    def head(title: str, name: str, css: str = "") -> str:
        flip = f"-{name}" if sort == name else name
        params = {k: v for k, v in query.items() if k != "sort" and v}
        params["sort"] = flip
        arrow = " ▲" if sort == name else " ▼" if sort == f"-{name}" else ""
        return f'<th class="{css}"><a href="/?{escape(urlencode(params))}">' \
               f'{escape(title)}{arrow}</a></th>'

    cal = f"<th class=\"num\">{escape(calendar_label)} SLI</th>" \
          f"<th class=\"num\">{escape(calendar_label)} budget</th>" if calendar_label else ""
    header = ("<tr>" + head("Service / SLO", "name") + "<th class=\"num\">Objective</th>"
              "<th>Period</th>" + head("SLI", "sli", "num") + head("Budget left", "budget", "num")
              + "<th></th><th class=\"num\">Burn 1h</th><th>Page</th><th>Ticket</th>"
              "<th class=\"num\">Exhausted in</th>" + cal + head("Status", "status") + "</tr>")
    body = []
    for i in rows:
        cal_cells = ""
        if calendar_label:
            c = i.get("calendar") or {}
            cal_cells = f'<td class="num">{pct(c.get("sli"))}</td>' \
                        f'<td class="num">{pct(c.get("error_budget_remaining"), 1)}</td>'
        body.append(
            f'<tr data-slo="{escape(i["service"])}/{escape(i["slo"])}">'
            f'<td><a href="{escape(slo_href(i["service"], i["slo"]))}">{escape(i["service"])} / '
            f'{escape(i["slo"])}</a> <span class="muted">{escape(i["origin"])}</span></td>'
            f'<td class="num">{escape(objective_text(i))}%</td><td>{escape(i["period"])}</td>'
            f'<td class="num">{pct(i["sli"])}</td>'
            f'<td class="num budget">{pct(i["error_budget_remaining"], 1)}</td>'
            f'<td>{budget_bar(i["error_budget_remaining"])}</td>'
            f'<td class="num">{num(i["burn_rates"].get("1h"))}</td>'
            f'<td>{alert_text(i["alerts"]["page"])}</td>'
            f'<td>{alert_text(i["alerts"]["ticket"])}</td>'
            f'<td class="num">{escape(duration_text(i["time_to_exhaustion_seconds"]))}</td>'
            f'{cal_cells}<td>{status_badge(i["status"])}</td></tr>')
    if not body:
        span = 13 if calendar_label else 11
        body.append(f'<tr><td colspan="{span}" class="muted">No SLO matches.</td></tr>')
    counts = {s: sum(1 for i in every if i["status"] == s) for s in STATUSES}
    summary = " ".join(f"{status_badge(s)} {n}" for s, n in counts.items())
    html = (f"<h1>Service level objectives</h1><p>{len(every)} SLOs: {summary}</p>{form}"
            f"<table id=\"slos\"><thead>{header}</thead><tbody>{''.join(body)}</tbody></table>")
    return page("SLOs", html, banner(reason, age, error))


def grafana_link(base: str | None, service: str, slo: str) -> str:
    if not base:
        return ""
    url = f"{base.rstrip('/')}/d/{DETAIL_DASHBOARD}?" + urlencode(
        {"var-service": service, "var-slo": slo})
    return f'<p><a class="grafana" href="{escape(url)}">Open the Grafana SLO detail ' \
           f'dashboard</a></p>'


def detail_page(item: dict[str, Any], grafana: str | None, reason: str | None,
                age: float | None, error: bool) -> str:
    graphs = item.get("graphs") or {}
    objective = item["objective"] / 100
    eb = item.get("error_budget") or {}
    unit = eb.get("unit", "")
    cards = [("Status", status_badge(item["status"])), ("SLI", pct(item["sli"])),
             ("Objective", escape(objective_text(item)) + "%"),
             ("Budget left", pct(item["error_budget_remaining"], 1)),
             ("Budget left (" + escape(unit) + ")" if unit else "Budget left (abs.)",
              num(eb.get("remaining"), 1)),
             ("Exhausted in", escape(duration_text(item["time_to_exhaustion_seconds"]))),
             ("Page", alert_text(item["alerts"]["page"])),
             ("Ticket", alert_text(item["alerts"]["ticket"]))]
    cards_html = "".join(f'<div class="card"><div class="k">{k}</div><div class="v">{v}</div>'
                         f"</div>" for k, v in cards)
    charts = ('<div class="charts">'
              + line_chart(graphs.get("error_budget_remaining", []), "Error budget remaining",
                           lines=((0.0, "0%"),))
              + line_chart(graphs.get("sli", []), f"SLI over {item['period']}",
                           lines=((objective, "objective"),), css="series-sli")
              + line_chart(graphs.get("error_rate", []), "Error ratio (5m)", css="series-err")
              + "</div>")
    tiers = "".join(
        f"<tr><td>{escape(t['severity'])}</td><td>{escape(t['long_window'])}</td>"
        f"<td>{escape(t['short_window'])}</td><td class=\"num\">{num(t['threshold'], 3)}</td>"
        f"<td class=\"num\">{num(t['burn_rate_long'], 3)}</td>"
        f"<td class=\"num\">{num(t['burn_rate_short'], 3)}</td>"
        f"<td>{OVER if t['firing'] else 'ok'}</td></tr>" for t in item["tiers"])
    burns = "".join(f"<tr><td>{escape(w)}</td><td class=\"num\">{num(v, 3)}</td></tr>"
                    for w, v in item["burn_rates"].items())
    history = "".join(
        f"<tr><td>{escape(h['label'])}</td><td class=\"num\">{pct(h['sli'])}</td>"
        f"<td class=\"num\">{pct(h['error_budget_remaining'], 1)}</td>"
        f"<td>{status_badge(h['status'])}</td>"
        f"<td class=\"muted\">{escape(h['reason'] or '')}</td></tr>"
        for h in item.get("calendar_history") or [])
    labels = ", ".join(f"{escape(k)}={escape(v)}" for k, v in item["labels"].items()) or "—"
    unknown = ""
    if item.get("unknown"):
        unknown = ("<p class=\"muted\">Not known for this " + escape(item["origin"]) +
                   " SLO: " + escape("; ".join(item["unknown"])) + "</p>")
    title = f"{item['service']} / {item['slo']}"
    html = (f"<h1>{escape(title)}</h1>"
            f"<p>{escape(item.get('description') or '')}</p>"
            f"<p class=\"muted\">origin {escape(item['origin'])} · period {escape(item['period'])}"
            f" · labels {labels}</p>{unknown}{grafana_link(grafana, item['service'], item['slo'])}"
            f"<div class=\"cards\">{cards_html}</div>{charts}"
            "<h2>Alert tiers</h2><table id=\"tiers\"><thead><tr><th>Severity</th><th>Long</th>"
            "<th>Short</th><th class=\"num\">Threshold</th><th class=\"num\">Burn (long)</th>"
            "<th class=\"num\">Burn (short)</th><th>Now</th></tr></thead>"
            f"<tbody>{tiers}</tbody></table>"
            "<h2>Burn rate by window</h2><table id=\"burn\"><thead><tr><th>Window</th>"
            f"<th class=\"num\">Burn rate</th></tr></thead><tbody>{burns}</tbody></table>")
    if history:
        html += ("<h2>Calendar periods</h2><table id=\"history\"><thead><tr><th>Period</th>"
                 "<th class=\"num\">SLI</th><th class=\"num\">Budget left</th><th>Status</th>"
                 f"<th></th></tr></thead><tbody>{history}</tbody></table>")
    return page(title, html, banner(reason, age, error))


def _rows(rows: list[dict[str, Any]], cols: list[tuple[str, str]]) -> str:
    if not rows:
        return '<p class="muted">None.</p>'
    head = "".join(f"<th>{escape(t)}</th>" for t, _ in cols)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(r.get(k, '')))}</td>" for _, k in cols)
                   + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _for(row: dict[str, Any]) -> str:
    if row.get("for_seconds") is not None:
        return age_text(row["for_seconds"])
    return f"more than {age_text(row.get('for_at_least_seconds'))}"


def platform_page(data: dict[str, Any] | None, reason: str | None) -> str:
    if data is None:
        return page("Platform", "<h1>Platform</h1>", banner(reason, None, True))
    unsynced = [dict(r, since=_for(r)) for r in data["argocd_out_of_sync"]]
    degraded = [dict(r, since=_for(r)) for r in data["argocd_degraded"]]
    backups = [dict(r, overdue=age_text(r["overdue_seconds"])) for r in data["backups_overdue"]]
    certs = [dict(r, days=f"{r['days_left']:.1f}") for r in data["certificates_expiring"]]
    html = ("<h1>Platform</h1><p class=\"muted\">Computed " + escape(when(data["computed_at"]))
            + "</p><h2>ArgoCD applications out of sync</h2>"
            + _rows(unsynced, [("Namespace", "namespace"), ("Application", "name"),
                               ("Project", "project"), ("For", "since")])
            + "<h2>ArgoCD applications not healthy</h2>"
            + _rows(degraded, [("Namespace", "namespace"), ("Application", "name"),
                               ("Health", "health_status"), ("For", "since")])
            + "<h2>Backups overdue</h2>"
            + _rows(backups, [("Kind", "kind"), ("Namespace", "namespace"), ("Name", "name"),
                              ("Overdue by", "overdue")])
            + f"<h2>Certificates expiring within {int(data['certificate_days'])} days</h2>"
            + _rows(certs, [("Source", "source"), ("Namespace", "namespace"), ("Name", "name"),
                            ("Subject", "subject_cn"), ("Days left", "days")])
            + "<h2>Failing probes</h2>"
            + _rows(data["failing_probes"], [("Kind", "kind"), ("Target", "target"),
                                             ("Reason", "reason")]))
    return page("Platform", html)


