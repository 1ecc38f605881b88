"""Every PromQL query a dashboard JSON runs, with Grafana's variables filled in.

Grafana substitutes variables before it sends a query; a test against a real Prometheus
has to do the same. Template variables become a given value or `.*` (all our template
matchers are regex matchers), `$__rate_interval`/`$__interval` a step and `$__range` a
time range. Variable queries (`label_values(selector, label)`) become their selector.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sloexporter.model import parse_duration

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.*),)?\s*(\w+)\s*\)\s*$", re.S)
_QUERY_RESULT = re.compile(r"^\s*query_result\((.*)\)\s*$", re.S)


@dataclass(frozen=True)
class DashboardQuery:
    """One query: where it is, the expanded PromQL, and whether Grafana runs it instant."""

    where: str
    expr: str
    instant: bool = False


def expand(expr: str, values: Mapping[str, str] | None = None, *, interval: str = "1m",
           range_: str = "1h") -> str:
    """`expr` with every Grafana variable replaced.

    A template variable takes `values[name]`, else `.*`; `$__interval` and
    `$__rate_interval` become `interval`, `$__range` (and `_s`, `_ms`) become `range_`.
    An unknown built-in raises ValueError rather than sending broken PromQL.
    """
    given = dict(values or {})
    seconds = parse_duration(range_)
    builtins = {
        "__interval": interval, "__rate_interval": interval,
        "__interval_ms": str(parse_duration(interval) * 1000),
        "__range": range_, "__range_s": str(seconds), "__range_ms": str(seconds * 1000),
    }

    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name in given:
            return given[name]
        if name.startswith("__"):
            if name not in builtins:
                raise ValueError(f"unknown Grafana variable ${name} in {expr!r}")
            return builtins[name]
        if name == "datasource":
            raise ValueError(f"the datasource variable is not PromQL: {expr!r}")
        return ".*"

    return _VARIABLE.sub(value, expr)


def variable_selector(query: str) -> str:
    """The PromQL a variable query reads: `label_values(up{job="a"}, instance)` ->
    `up{job="a"}`; `label_values(instance)` -> `{instance!=""}`; `query_result(q)` -> q."""
    if match := _LABEL_VALUES.match(query):
        sel, label = match.groups()
        return sel.strip() if sel else f'{{{label}!=""}}'
    if match := _QUERY_RESULT.match(query):
        return match.group(1).strip()
    raise ValueError(f"not a Prometheus variable query: {query!r}")


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])


def dashboard_queries(data: Mapping[str, Any], values: Mapping[str, str] | None = None, *,
                      interval: str = "1m", range_: str = "1h") -> list[DashboardQuery]:
    """Every query of a dashboard: panel targets (rows and collapsed rows included),
    query variables and annotations, expanded with `expand`."""
    def ex(text: str) -> str:
        return expand(text, values, interval=interval, range_=range_)

    out = []
    for panel in _panels(data.get("panels") or []):
        for target in panel.get("targets") or []:
            if target.get("expr"):
                out.append(DashboardQuery(
                    f"panel {panel.get('id')} {panel.get('title')!r} {target.get('refId')}",
                    ex(target["expr"]), bool(target.get("instant"))))
    for var in (data.get("templating") or {}).get("list") or []:
        if var.get("type") == "query":
            text = var["query"] if isinstance(var["query"], str) else var["query"]["query"]
            out.append(DashboardQuery(f"variable {var['name']}", ex(variable_selector(text)),
                                      True))
    for ann in (data.get("annotations") or {}).get("list") or []:
        if ann.get("expr"):
            out.append(DashboardQuery(f"annotation {ann.get('name')!r}", ex(ann["expr"])))
    return out
