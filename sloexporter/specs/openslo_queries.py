"""OpenSLO indicators as native SLI fields (PromQL templates with `{{window}}`).

- A query with a `{{window}}` (or Sloth's `{{.window}}`) placeholder is used as is.
- Without one, a counter query (`counter`/`incremental: true`) gets `rate(...[window])`
  around each selector, and any other query is summed over the window.
- `thresholdMetric` on a histogram `_bucket` selector is a native latency SLI (the value
  is the `le` boundary); on any other query, a sample is bad when it fails `op value`.
- `Timeslices` counts the slices whose error ratio exceeds 1 - timeSliceTarget;
  `RatioTimeslices` averages the slice ratios. Slices without traffic are not counted.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import promql_parser
from pydantic import ValidationError

from sloexporter.model import format_duration, parse_duration
from sloexporter.promql import WINDOW_PLACEHOLDER, quote, substitute_window
from sloexporter.sli import compile_sli
from sloexporter.specs.errors import Path
from sloexporter.specs.native import SLISpec
from sloexporter.specs.openslo_schema import (
    AlphaObjective,
    AlphaQuery,
    Metric,
    Objective,
    SLOSpecV1Alpha,
)
from sloexporter.specs.openslo_schema import (
    SLISpec as OpenSLOSLI,
)

W = "{{window}}"
#: (native path below `sli`, value, original path) for each value an SLI sets
Leaves = list[tuple[Path, Any, Path]]
BAD_OP = {"lt": ">=", "lte": ">", "gt": "<=", "gte": "<"}
OP = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_SELECTOR = re.compile(r"(?<![\w:\"'])([a-zA-Z_:][\w:]*)(\s*\{[^{}]*\})?"
                       r"(\s+offset\s+-?[0-9smhdwy]+)?")


class SliError(Exception):
    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def rate_selectors(query: str) -> str:
    """Wrap every bare selector of a counter query in `rate(...[{{window}}])`."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    try:
        promql_parser.walk(promql_parser.parse(query), visit)
    except ValueError as exc:
        raise ValueError(f"invalid PromQL: {exc}") from None

    def wrap(match: re.Match[str]) -> str:
        rest = query[match.end():].lstrip()
        if match.group(1) not in names or rest.startswith(("[", "(")):
            return match.group(0)
        selector = match.group(1) + (match.group(2) or "")
        return f"rate({selector}[{W}]{match.group(3) or ''})"  # offset follows the range

    return _SELECTOR.sub(wrap, query)


def template(query: str, counter: bool, path: Path) -> str:
    query = query.strip()
    if WINDOW_PLACEHOLDER.search(query):
        return query
    if counter:
        try:
            return rate_selectors(query)
        except ValueError as exc:
            raise SliError(path, str(exc)) from None
    return f"sum_over_time(({query})[{W}:])"


def _prometheus(kind: str | None, path: Path) -> None:
    if (kind or "").lower() != "prometheus":
        raise SliError(path, f"unsupported: metric source {kind!r}; only Prometheus queries "
                             "can become Prometheus rules")


def _v1_query(metric: Metric, path: Path, index: dict[tuple[str, str], Any]) -> str:
    source = metric.metric_source
    kind = source.type
    if kind is None and source.metric_source_ref:
        found = index.get(("DataSource", source.metric_source_ref))
        kind = ((found[2].get("spec") or {}).get("type")) if found else None
    _prometheus(kind, path + ("metricSource", "type"))
    if not source.spec.query:
        raise SliError(path + ("metricSource", "spec"), "missing required field 'query'")
    return source.spec.query


def _alpha_query(q: AlphaQuery, path: Path) -> str:
    _prometheus(q.source, path + ("source",))
    return q.query


def threshold(query: str, objective: Objective, path: Path, o_at: Path) -> Leaves:
    if objective.op is None or objective.value is None:
        raise SliError(o_at, "a thresholdMetric SLI needs 'op' and 'value' on each objective")
    value = objective.value
    try:
        expr = promql_parser.parse(query.strip())
    except ValueError as exc:
        raise SliError(path, f"invalid PromQL: {exc}") from None
    if isinstance(expr, promql_parser.VectorSelector) and (expr.name or "").endswith("_bucket"):
        if objective.op not in ("lt", "lte"):
            raise SliError(o_at + ("op",), f"op {objective.op}: a latency histogram counts "
                                           "requests at or below a bucket; use lt or lte")
        ops = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}
        kept = [(m.name, ops[str(m.op).rpartition(".")[2]], m.value)
                for m in expr.matchers.matchers if m.name not in ("le", "__name__")]
        selector = "{" + ",".join(f"{n}{op}{quote(v)}" for n, op, v in kept) + "}"
        return [(("latency",), {"metric": expr.name.removesuffix("_bucket"),
                                "selector": selector, "threshold": str(value)}, path)]
    q, bad = query.strip(), BAD_OP[objective.op]
    if not WINDOW_PLACEHOLDER.search(q):
        # a gauge condition: the native threshold SLI (missing data counts as bad)
        return [(("threshold",), {"query": q, "op": objective.op, "value": str(value)}, path)]
    return [(("events", "errors"), f"sum(count_over_time((({q}) {bad} {value})[{W}:]))", path),
            (("events", "total"), f"sum(count_over_time(({q})[{W}:]))", path)]


def v1_sli(sli: OpenSLOSLI, objective: Objective, at: Path, o_at: Path,
           index: dict[tuple[str, str], Any]) -> Leaves:
    r = sli.ratio_metric
    if r is None:
        assert sli.threshold_metric is not None
        q_at = at + ("thresholdMetric",)
        return threshold(_v1_query(sli.threshold_metric, q_at, index), objective,
                         q_at + ("metricSource", "spec", "query"), o_at)
    for name, value in (("op", objective.op), ("value", objective.value)):
        if value is not None:
            raise SliError(o_at + (name,), f"property is forbidden: '{name}' applies only to "
                                           "a thresholdMetric SLI; a ratioMetric objective "
                                           "has only a target")
    r_at = at + ("ratioMetric",)
    leaves: Leaves = []
    for part in ("raw", "good", "bad", "total"):
        metric: Metric | None = getattr(r, part)
        if metric is None:
            continue
        q_at = r_at + (part,)
        query = template(_v1_query(metric, q_at, index), bool(r.counter), q_at)
        where = q_at + ("metricSource", "spec", "query")
        if part == "raw":
            ratio = query if r.raw_type == "failure" else f"1 - ({query})"
            leaves.append((("ratio", "query"), ratio, where))
        else:
            leaves.append((("events", "errors" if part == "bad" else part), query, where))
    return leaves


def alpha_sli(spec: SLOSpecV1Alpha, objective: AlphaObjective, at: Path, o_at: Path) -> Leaves:
    r = objective.ratio_metrics
    if r is not None:
        r_at = o_at + ("ratioMetrics",)
        return [(("events", part), template(_alpha_query(getattr(r, part), r_at + (part,)),
                                            r.incremental, r_at + (part,)),
                 r_at + (part, "query")) for part in ("good", "total")]
    if spec.indicator is None:
        raise SliError(o_at, "an objective needs 'ratioMetrics' when the SLO has no "
                             "'indicator'")
    q_at = at + ("indicator", "thresholdMetric")
    return threshold(_alpha_query(spec.indicator.threshold_metric, q_at), objective,
                     q_at + ("query",), o_at)


def _as_dict(leaves: Leaves) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value, _ in leaves:
        node = out
        for part in path[:-1]:
            node = node.setdefault(str(part), {})
        node[str(path[-1])] = value
    return out


def _threshold_slices(method: str, objective: Objective, leaf: tuple[Path, Any, Path],
                      seconds: int) -> Leaves:
    """A gauge condition by timeslices. RatioTimeslices averages the slices' good shares,
    which is the plain share of good samples. Timeslices: at each evaluation the slice
    ending then is good when the condition held for at least timeSliceTarget of it
    (rolling slices, sampled at the evaluation interval)."""
    if method == "RatioTimeslices":
        return [leaf]
    assert objective.time_slice_target is not None
    body = leaf[1]
    good = f"({body['query']}) {OP[body['op']]} bool {body['value']}"
    sliced = f"avg_over_time(({good})[{format_duration(seconds)}:])"
    return [(leaf[0], {"query": sliced, "op": ">=",
                       "value": format(objective.time_slice_target.normalize(), "f")}, leaf[2])]


def timeslices(method: str, objective: Objective, leaves: Leaves, o_at: Path) -> Leaves:
    """The SLI of a Timeslices or RatioTimeslices objective, built on the plain one."""
    if method == "Occurrences":
        return leaves
    if method == "Timeslices" and objective.time_slice_target is None:
        raise SliError(o_at, "budgetingMethod Timeslices needs 'timeSliceTarget'")
    if objective.time_slice_window is None:
        raise SliError(o_at, f"budgetingMethod {method} needs 'timeSliceWindow'")
    try:
        seconds = parse_duration(objective.time_slice_window)
    except ValueError as exc:
        raise SliError(o_at + ("timeSliceWindow",), str(exc)) from None
    if len(leaves) == 1 and leaves[0][0] == ("threshold",):
        return _threshold_slices(method, objective, leaves[0], seconds)
    try:
        sli = compile_sli(SLISpec.model_validate(_as_dict(leaves)), "openslo", "openslo")
    except (ValidationError, ValueError):
        return leaves  # the native checks report what is wrong with the plain SLI
    if sli.ratio is not None:
        ratio = sli.ratio
    else:
        ratio = f"(({sli.errors}) or ({sli.total}) * 0) / (({sli.total}) > 0)"
    per_slice, step, origin = substitute_window(ratio, seconds), format_duration(seconds), \
        leaves[0][2]
    if method == "RatioTimeslices":
        return [(("ratio", "query"), f"avg_over_time(({per_slice})[{W}:{step}])", origin)]
    assert objective.time_slice_target is not None
    worst = (Decimal(1) - objective.time_slice_target).normalize()
    return [(("events", "errors"),
             f"sum(sum_over_time((({per_slice}) > bool {worst:f})[{W}:{step}]))", origin),
            (("events", "total"), f"sum(count_over_time(({per_slice})[{W}:{step}]))", origin)]
