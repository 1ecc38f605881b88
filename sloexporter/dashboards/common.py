"""Shared pieces of every dashboard: datasource variable, links, panels, ids.

Panels are built with grafana-foundation-sdk's typed builders; this module only picks
the defaults all our dashboards share, so each dashboard module reads as a list of
panels and their queries.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import common, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from sloexporter import names
from sloexporter.promql import label_values

DATASOURCE_VAR = "datasource"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${" + DATASOURCE_VAR + "}")
TAG = "sloexporter"
REFRESH = "1m"


@dataclass(frozen=True)
class Meta:
    """A dashboard's identity: file name, stable uid (URLs and links use it) and title."""

    file: str
    uid: str
    title: str


OVERVIEW = Meta("slo-overview", "sloexporter-slo-overview", "SLO overview")
DETAIL = Meta("slo-detail", names.SLO_DETAIL_DASHBOARD_UID, "SLO detail")
ARGOCD = Meta("argocd", "sloexporter-argocd", "ArgoCD")
BACKUPS = Meta("backups", "sloexporter-backups", "Backups")
CERTIFICATES = Meta("certificates", "sloexporter-certificates", "Certificates")
GOLDEN = Meta("golden-signals", "sloexporter-golden-signals", "Golden signals")
ALL = (OVERVIEW, DETAIL, ARGOCD, BACKUPS, CERTIFICATES, GOLDEN)


def new_dashboard(meta: Meta, time_from: str = "now-24h") -> db.Dashboard:
    """A dashboard with the datasource variable and a link to each of the others."""
    dash = (db.Dashboard(f"sloexporter / {meta.title}").uid(meta.uid).tags([TAG])
            .time(time_from, "now").refresh(REFRESH).timezone("browser").editable()
            .tooltip(model.DashboardCursorSync.CROSSHAIR)
            .with_variable(db.DatasourceVariable(DATASOURCE_VAR).label("Data source")
                           .type("prometheus")))
    for other in ALL:
        if other != meta:
            # keep time and variables: from the overview to an SLO's detail and back
            dash.link(db.DashboardLink(other.title).type(model.DashboardLinkType.LINK)
                      .url(f"/d/{other.uid}").keep_time(True).include_vars(True)
                      .tooltip(f"sloexporter / {other.title}").icon("dashboard"))
    return dash


def variable(name: str, label: str, metric: str, filters: str = "",
             include_all: bool = True) -> db.QueryVariable:
    """A variable over the values of `name` on `metric`; "All" is `.*`, which also
    matches series without the label."""
    var = (db.QueryVariable(name).label(label).datasource(DATASOURCE)
           .query(label_values(metric, name, filters))
           .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
           .sort(model.VariableSort.ALPHABETICAL_ASC))
    if include_all:
        var = var.multi(True).include_all(True).all_value(".*")
    return var


def query(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> \
        prometheus.Dataquery:
    q = (prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
         .legend_format(legend or "__auto"))
    return q.instant().format(PromQueryFormat.TABLE) if instant else q


def refs() -> Iterator[str]:
    """Query refIds as Grafana names them: A..Z, then AA, AB, ... (never ends)."""
    letters = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    for size in itertools.count(1):
        for combo in itertools.product(letters, repeat=size):
            yield "".join(combo)


def graph(title: str, queries: list[tuple[str, str]], unit: str = "short", width: int = 12,
          height: int = 8, description: str = "") -> timeseries.Panel:
    """A time series panel of (expr, legend) queries."""
    panel = (timeseries.Panel().title(title).datasource(DATASOURCE).unit(unit).span(width)
             .height(height).description(description))
    for ref, (expr, legend) in zip(refs(), queries, strict=False):
        panel = panel.with_target(query(expr, legend, ref))
    return panel


def single(title: str, expr: str, unit: str = "short", width: int = 4,
           description: str = "", thresholds: list[tuple[float | None, str]] | None = None) \
        -> stat.Panel:
    """A stat panel of one instant value."""
    steps = [model.Threshold(value=v, color=c) for v, c in thresholds or [(None, "green")]]
    return (stat.Panel().title(title).datasource(DATASOURCE).unit(unit).span(width).height(4)
            .description(description).with_target(query(expr, ref="A", instant=True))
            .thresholds(db.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(steps)))


def grid(title: str, columns: list[tuple[str, str]], width: int = 24, height: int = 9,
         description: str = "", sort: str | None = None, desc: bool = False) -> table.Panel:
    """A table of instant queries, one column per (expr, column title), merged on labels."""
    panel = (table.Panel().title(title).datasource(DATASOURCE).span(width).height(height)
             .description(description))
    renames: dict[str, str] = {}
    for ref, (expr, name) in zip(refs(), columns, strict=False):
        panel = panel.with_target(query(expr, ref=ref, instant=True))
        renames[f"Value #{ref}" if len(columns) > 1 else "Value"] = name
    panel = panel.with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
    panel = panel.with_transformation(model.DataTransformerConfig(
        id_val="organize", options={"excludeByName": {"Time": True}, "renameByName": renames}))
    if sort:
        panel = panel.sort_by([sort_by_column(sort, desc)])
    return panel


def sort_by_column(column: str, desc: bool) -> common.TableSortByFieldState:
    return common.TableSortByFieldState().display_name(column).desc(desc)


def unit_override(unit: str) -> model.DynamicConfigValue:
    return model.DynamicConfigValue(id_val="unit", value=unit)


def value_text(mapping: dict[int, tuple[str, str]]) -> list[model.ValueMap]:
    """Value mappings: number -> (text, color)."""
    options = {str(k): model.ValueMappingResult(text=t, color=c, index=i)
               for i, (k, (t, c)) in enumerate(sorted(mapping.items()))}
    return [model.ValueMap(options=options)]


#: Prometheus annotation fields the SDK's AnnotationQuery has no setter for, by name.
ANNOTATION_FIELDS: dict[str, dict[str, str]] = {}


def render(dash: db.Dashboard) -> dict[str, Any]:
    """Plain JSON data with a stable `id` on every panel, rows and their panels included."""
    data: dict[str, Any] = json.loads(json.dumps(dash.build(), cls=JSONEncoder))
    for ann in data.get("annotations", {}).get("list", []):
        ann.update(ANNOTATION_FIELDS.get(ann["name"], {}))
    next_id = 1
    for panel in data.get("panels", []):
        for p in [panel, *panel.get("panels", [])]:
            p["id"] = next_id
            next_id += 1
    return data
