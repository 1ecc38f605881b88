"""PromQL building blocks and the names of every series the generator records.

Rules, dashboards and reports build their queries from these functions only, so a
recording rule and the panel that reads it can never drift apart.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal

import promql_parser

from sloexporter import names
from sloexporter.model import SLO, Tier, Traffic, decimal_str, format_duration

WINDOW_PLACEHOLDER = re.compile(r"\{\{\s*\.?window\s*\}\}")

# Recorded series. Each carries the SLO identity labels (service, slo, spec labels).
ERRORS_RATE5M = "slo:sli_errors:rate5m"
TOTAL_RATE5M = "slo:sli_total:rate5m"
GOOD_RATE5M = "slo:sli_good:rate5m"
#: 1 while the total has traffic but the error ratio cannot be measured, else 0
SIGNAL_MISSING = "slo:sli_signal:missing"
STATE_BAD = "slo:sli_bad_objects:sum"
STATE_TOTAL = "slo:sli_objects:count"
#: per series of a threshold SLI's query: 1 while its condition holds, else 0
CONDITION_GOOD = "slo:sli_condition_good:bool"
OBJECTIVE = "slo:objective:ratio"
ERROR_BUDGET = "slo:error_budget:ratio"
PERIOD_ERROR = "slo:period_error:ratio"
PERIOD_BURN = "slo:period_burn:rate"
BUDGET_REMAINING = "slo:error_budget_remaining:ratio"
#: opt-in (budget_exhausted): seconds until the budget is spent at the period burn rate
BUDGET_EXHAUSTION = "slo:error_budget_exhaustion:seconds"
INFO = "slo:info"


def error_ratio_name(window: int) -> str:
    """`slo:sli_error:ratio_rate1h` for the 1h window."""
    return f"slo:sli_error:ratio_rate{format_duration(window)}"


@functools.lru_cache(maxsize=1 << 14)
def quote(value: str) -> str:
    """A PromQL string literal; JSON escaping is a subset PromQL accepts."""
    return json.dumps(value, ensure_ascii=False)


def matchers(labels: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    items = labels.items() if isinstance(labels, Mapping) else labels
    return ",".join(f"{k}={quote(v)}" for k, v in items)


def moved_aside(expr: str, names: Iterable[str]) -> str:
    """`expr` with each named label moved to `exported_<label>`, as a scrape does, so
    series that differ only there stay apart once a rule sets that label."""
    for name in names:
        expr = f'label_replace({expr}, "exported_{name}", "$1", "{name}", "(.+)")'
    return expr


def selector(metric: str, labels: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    return f"{metric}{{{matchers(labels)}}}"


def slo_selector(metric: str, slo: SLO, extra: str = "") -> str:
    """A selector for one of the SLO's recorded series: service and slo identify it
    (`extra`: more matchers, such as `group_matchers`)."""
    return f"{metric}{{{_slo_matchers(slo.service, slo.name)}{extra}}}"


@functools.lru_cache(maxsize=1 << 14)
def _slo_matchers(service: str, name: str) -> str:
    # each SLO's rules select its series some 30 times
    return matchers((("service", service), ("slo", name)))


def merge_selector(base: str, extra: str) -> str:
    """Add matchers to a user selector: `{job="a"}` + `le="1"` -> `{job="a",le="1"}`."""
    inner = base.strip()
    if inner.startswith("{") and inner.endswith("}"):
        inner = inner[1:-1].strip().rstrip(",")
    parts = [p for p in (inner, extra) if p]
    return "{" + ",".join(parts) + "}"


def _exponent(e: int) -> str:
    """A regex for exponent `e` as `e-01`, `E+00`, `e1`, ... spell it."""
    sign = "-" if e < 0 else "\\+?" if e > 0 else "[+-]?"
    return f"[eE]{sign}0*{abs(e)}" if e else f"[eE]{sign}0+"


@functools.lru_cache(maxsize=1024)
def le_regex(value: Decimal) -> str:
    """A regex matching every way a client library writes the number `value`.

    `0.5` is also `.5`, `0.50`, `5e-01`, `5.0E-1`; `1` is also `1.0` (how Prometheus 3
    normalises classic-histogram `le` on ingestion), `1e+00`, `1.000000e+00`.
    """
    sign, digits, exp = value.normalize().as_tuple()
    assert isinstance(exp, int) and not sign
    text = "".join(map(str, digits))
    point = len(text) + exp  # digits before the decimal point
    if point <= 0:
        whole, frac = "", "0" * -point + text
    elif exp >= 0:
        whole, frac = text + "0" * exp, ""
    else:
        whole, frac = text[:point], text[point:]
    plain = f"0*{whole}" + (f"\\.{frac}0*" if frac else "(\\.0*)?")
    mantissa = text[0] + (f"\\.{text[1:]}0*" if len(text) > 1 else "(\\.0*)?")
    return f"\\+?(?:{plain}|{mantissa}{_exponent(point - 1)})"


def le_matcher(threshold: Decimal) -> str:
    """`le=~"..."`: the bucket `threshold` however the exporter spelled it.

    Prometheus 2 keeps `le` as exposed (`0.50`, `5e-01`, `1`); Prometheus 3 normalises a
    classic histogram's `le` to Go's float format (`0.5`, `1.0`). A plain `le="0.5"`
    misses the other spellings, and a missing good series would read as a total outage.
    """
    return "le=~" + quote(le_regex(threshold))


def substitute_window(template: str, window: int) -> str:
    return WINDOW_PLACEHOLDER.sub(format_duration(window), template)


def check_syntax(expr: str) -> str | None:
    """The parser's message if `expr` is not valid PromQL, else None."""
    try:
        promql_parser.parse(expr)
    except ValueError as exc:
        return str(exc) or "invalid PromQL"
    return None


def safe_ratio(errors: str, total: str) -> str:
    """errors / total that is 0, not NaN or absent, when total is 0 or errors is empty.

    No traffic spends no budget: without the `> 0` guard 0/0 gives NaN, and without the
    `or` a missing errors series (no 5xx ever seen) would hide the SLO entirely.
    """
    return f"({errors}) / (({total}) > 0) or ({total}) * 0"


# --- The recorded SLI pipeline ----------------------------------------------------------
# Each raw SLI query is read once per SLO and evaluation, over 5m, into a recorded series;
# every window, the period and the SLI-health signal derive from those recorded series.
# They all carry the same labels (the SLO's grouping plus its identity), so default
# one-to-one matching joins them and no fallback can pair a series with the wrong one.

#: Aggregations whose output keeps exactly the labels of their `by` list.
_KEEPING_AGGREGATIONS = {"sum", "min", "max", "avg", "count", "group", "stddev", "stdvar"}
#: Functions whose output keeps the labels of their (first) vector argument.
_LABEL_KEEPING_CALLS = {"abs", "ceil", "floor", "round", "sqrt", "exp", "ln", "log2", "log10",
                        "clamp", "clamp_min", "clamp_max", "sgn", "histogram_count",
                        "histogram_sum", "histogram_fraction"}
_SCALAR = ("<scalar>",)


def _output_labels(node: object) -> tuple[str, ...] | None:
    """The label names every series of `node` has exactly, when the AST says so.

    None means "per input series" (a bare selector, `rate(x[5m])`, `without`, ...), and
    `_SCALAR` a number.
    """
    while isinstance(node, promql_parser.ParenExpr):
        node = node.expr
    if isinstance(node, promql_parser.NumberLiteral):
        return _SCALAR
    if isinstance(node, promql_parser.AggregateExpr):
        if str(node.op) not in _KEEPING_AGGREGATIONS:
            return None
        modifier = node.modifier
        if modifier is None:
            return ()
        if str(modifier.type).endswith("By"):
            return tuple(sorted(modifier.labels))
        return None
    if isinstance(node, promql_parser.Call):
        name = node.func.name
        if name in ("vector", "time", "scalar"):
            return () if name == "vector" else _SCALAR
        vectors = [a for a in node.args if _output_labels(a) != _SCALAR]
        if name in _LABEL_KEEPING_CALLS and len(vectors) == 1:
            return _output_labels(vectors[0])
        return None
    if isinstance(node, promql_parser.BinaryExpr):
        lhs, rhs = _output_labels(node.lhs), _output_labels(node.rhs)
        if lhs == _SCALAR:
            return rhs
        if rhs == _SCALAR or lhs == rhs:
            return lhs
        return None
    return None


_NAME_LIKE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD_LIKE = re.compile(r"[A-Za-z0-9_.-]+")
_PLAIN_STRING = re.compile(r""""([^"\n]*)"|'([^'\n]*)'""")


def _string_class(content: str) -> str:
    if _NAME_LIKE.fullmatch(content):
        return "a"
    if _WORD_LIKE.fullmatch(content):
        return "-"
    return content


@functools.lru_cache(maxsize=1 << 14)
def shape(expr: str) -> str | None:
    """`expr` with the text of its plain string literals replaced by a representative
    of its class, or None when the literals cannot be found by quotes alone.

    Queries and the rules generated from them differ mostly in label values (`job="a"`
    vs `job="b"`), which change neither whether promtool accepts them nor the AST's
    structure, so parses are memoised by shape (`specs.promcheck`, `query_labels`).
    The classes keep all that a check can see in a string: a valid label (and metric)
    name stays one (`a`); text of letters, digits, `_`, `.` and `-` (a literal regex
    that matches no empty string, not a name) stays that (`-`); anything else, the empty
    string included, is kept verbatim. Only text without
    escapes, comments or backquotes is shaped, so every quote opens or closes a string
    exactly as the PromQL lexer reads it; the shape keeps every bracket and operator,
    so only the length differs for the size limits.
    """
    if "\\" in expr or "#" in expr or "`" in expr:
        return None
    double, single = '"' in expr, "'" in expr
    if not (double or single):
        return expr
    if double != single:
        parts = expr.split('"' if double else "'")
        if not len(parts) % 2:
            return None  # an unclosed string
        for i in range(1, len(parts), 2):
            if "\n" in parts[i]:
                return None
            parts[i] = _string_class(parts[i])
        return ('"' if double else "'").join(parts)
    out: list[str] = []
    last = 0
    for match in _PLAIN_STRING.finditer(expr):
        between = expr[last:match.start()]
        if '"' in between or "'" in between:
            return None
        quote_char = match.group()[0]
        out += (between, quote_char, _string_class(match.group()[1:-1]), quote_char)
        last = match.end()
    rest = expr[last:]
    if '"' in rest or "'" in rest:
        return None
    out.append(rest)
    return "".join(out)


@functools.lru_cache(maxsize=1 << 14)
def query_grouping(query: str) -> tuple[str, ...]:
    """The labels an SLI query aggregates by: `sum by (route) (...)` -> (route,).

    A query that keeps per-series labels (a raw selector, `rate(x[5m])`) has none: it is
    summed, so errors and total always have one series per group to divide.
    """
    labels = query_labels(query)
    return labels if labels is not None and labels != _SCALAR else ()


def grouping(slo: SLO) -> tuple[str, ...]:
    """The labels that split the SLO into one series per group: its `group_by`, else
    the labels its total query aggregates by (Pyrra's `grouping`, Sloth's `sum by`)."""
    if slo.group_by:
        return slo.group_by
    sli = slo.sli
    return query_grouping(sli.total) if sli.total is not None else ()


def query_keeps(query: str, labels: tuple[str, ...]) -> str | None:
    """Why `query` cannot be aggregated to `labels` (it aggregates some away, or is a
    number), or None. A query whose labels the AST does not fix (`rate(x[5m])`) keeps
    each input series' labels, so it can."""
    kept = query_labels(query)
    if kept is None:
        return None
    if kept == _SCALAR:
        return "it is a number, with no labels to group by"
    lost = [label for label in labels if label not in kept]
    if lost:
        by = ", ".join(dict.fromkeys((*kept, *labels)))
        has = f"only {', '.join(kept)}" if kept else "no labels"
        return (f"it aggregates {', '.join(map(repr, lost))} away (its result has {has}); "
                f"aggregate it `by ({by})`")
    return None


def query_has_exactly(query: str, labels: tuple[str, ...]) -> bool:
    """Whether every series of `query` has exactly `labels`, as the AST proves."""
    kept = query_labels(query)
    return kept is not None and kept != _SCALAR and set(kept) == set(labels)


def clear_caches() -> None:
    query_labels.cache_clear()
    _text_labels.cache_clear()


@functools.lru_cache(maxsize=1 << 14)
def query_labels(query: str) -> tuple[str, ...] | None:
    """`_output_labels` of a user's query (the labels it keeps; None: per input series),
    parsed once however many rules embed it, and once per `shape` unless a quoted label
    name in a `by` list could be one the shape renamed."""
    text = substitute_window(query, 300)
    shaped = shape(text)
    if shaped is not None and shaped != text:
        labels = _text_labels(shaped)
        if labels is None or not {"a", "-"} & set(labels):
            return labels
    return _text_labels(text)


@functools.lru_cache(maxsize=1 << 12)
def _text_labels(text: str) -> tuple[str, ...] | None:
    try:
        return _output_labels(promql_parser.parse(text))
    except ValueError:
        return None


def aggregate_to(query: str, group: tuple[str, ...]) -> str:
    """`query` summed to `group`, or as is when it already has exactly those labels."""
    if query_labels(query) == group or group and query_has_exactly(query, group):
        return query
    return f"sum by ({', '.join(group)}) ({query})" if group else f"sum({query})"


def _ignoring(slo: SLO) -> str:
    return ", ".join(k for k, _ in slo.identity)


def signal_missing(total: str, measured: str) -> str:
    """1 while `total` has traffic but `measured` has no series with its labels, else 0.

    A reusable builder for every SLI: `measured` is the side the error ratio cannot be
    computed without (good events, bad objects, ...).
    """
    return f"(({total} > 0) * 0 + 1 unless {measured}) or {total} * 0"


def sli_records(slo: SLO) -> list[tuple[str, str]]:
    """The recording rules (name, expr) that read an errors/total SLI's raw queries.

    - `slo:sli_total:rate5m`: the total, aggregated to the SLO's grouping.
    - `slo:sli_good:rate5m` (good/total SLIs): the good events. A missing good series
      while the total has traffic counts as all bad: the fallback is on the good side.
    - `slo:sli_errors:rate5m`: the errors; 0 when no error series exists (no 5xx yet).
    - `slo:sli_signal:missing`: 1 while the total has traffic but the good (or error)
      side cannot be matched to it, the SLOSignalMissing alert's input.
    """
    sli = slo.sli
    assert sli.total is not None and sli.errors is not None
    group = grouping(slo)
    total = slo_selector(TOTAL_RATE5M, slo)
    records = [(TOTAL_RATE5M, aggregate_to(substitute_window(sli.total, 300), group))]
    if sli.good is not None:
        good = slo_selector(GOOD_RATE5M, slo)
        records += [
            (GOOD_RATE5M, aggregate_to(substitute_window(sli.good, 300), group)),
            (ERRORS_RATE5M, f"clamp_min({total} - ({good} or {total} * 0), 0)"),
            (SIGNAL_MISSING, signal_missing(total, good)),
        ]
    else:
        errors = aggregate_to(substitute_window(sli.errors, 300), group)
        recorded = slo_selector(ERRORS_RATE5M, slo)
        # measured unless some error series cannot be attributed to a total series
        measured = f"({total} unless on () count({recorded} unless {total}) > 0)"
        records += [
            (ERRORS_RATE5M, f"({errors}) or ignoring ({_ignoring(slo)}) {total} * 0"),
            (SIGNAL_MISSING, sli.missing or signal_missing(total, measured)),
        ]
    return records


#: Half the recorded 5m rates' window: a window average of them lags the raw window by it.
_HALF_BASE = 150
#: From this window on only the leading edge is corrected, against the window's own
#: average: the trailing edge's lookup a whole window back (`r offset W`, with its `or`)
#: made a 3d rule cost twice its average (bench/rule_cost.py). Detection is unchanged; an
#: old change leaving the window is off by at most 150/W of it (0.17% at 1d).
LEADING_ONLY_FROM = 86400


def window_rate(recorded: str, window: int) -> str:
    """The average of a recorded 5m rate over `window`, as `rate(raw[window])` would give.

    A 5m rate smooths every change over 5 minutes, so a plain `avg_over_time` lags the
    raw window by 2.5 minutes at both ends. Adding back the newest 2.5 minutes and
    dropping the oldest (trapezoid correction) makes it exact, up to half an evaluation
    interval, once a change is 5 minutes old; in a change's first 5 minutes it is late by
    at most 0.625 minutes. Reads `window` of one recorded series, not of every raw series.
    From `LEADING_ONLY_FROM` on, the oldest 2.5 minutes are taken as the window's average.
    """
    win = format_duration(window)
    if window >= LEADING_ONLY_FROM:
        return (f"(avg_over_time({recorded}[{win}]) * {window - _HALF_BASE} + {recorded} * "
                f"{_HALF_BASE}) / {window}")
    return (f"avg_over_time({recorded}[{win}]) + ({recorded} - ({recorded} offset {win} "
            f"or {recorded} * 0)) * {_HALF_BASE} / {window}")


def _raw_ratio(slo: SLO, window: int) -> str:
    """A window shorter than the recorded 5m base: read the raw queries over it."""
    sli = slo.sli
    assert sli.total is not None and sli.errors is not None
    group = grouping(slo)
    total = aggregate_to(substitute_window(sli.total, window), group)
    recorded_total = slo_selector(TOTAL_RATE5M, slo)
    ignoring = f"ignoring ({_ignoring(slo)})"
    if sli.good is not None:
        good = aggregate_to(substitute_window(sli.good, window), group)
        # no good series: all bad while the 5m total has traffic
        return (f"clamp_min(1 - ({good}) / (({total}) > 0), 0) "
                f"or {ignoring} ({recorded_total} > bool 0)")
    errors = aggregate_to(substitute_window(sli.errors, window), group)
    return f"({errors}) / (({total}) > 0) or {ignoring} {recorded_total} * 0"


def raw_error_ratio(sli_errors: str, sli_total: str, sli_good: str | None = None) -> str:
    """errors / total of raw instant queries (timeslices), with the good-side fallback:
    a missing good series is all bad, a missing error series is no errors."""
    if sli_good is not None:
        return (f"(({sli_total}) - (({sli_good}) or ({sli_total}) * 0)) / "
                f"(({sli_total}) > 0)")
    return f"(({sli_errors}) or ({sli_total}) * 0) / (({sli_total}) > 0)"


def window_error_ratio(slo: SLO, window: int) -> str:
    """The SLI error ratio over `window`.

    From the recorded 5m errors and totals: each window reads one recorded series per
    side, `total` once, and no traffic gives 0 (not NaN) through the 5m total, which
    exists whenever the SLI's total does.
    """
    sli = slo.sli
    if sli.ratio is not None:
        return substitute_window(sli.ratio, window)
    errors, total = slo_selector(ERRORS_RATE5M, slo), slo_selector(TOTAL_RATE5M, slo)
    if window < 300:
        return _raw_ratio(slo, window)
    return recorded_error_ratio(errors, total, window)


def recorded_error_ratio(errors: str, total: str, window: int) -> str:
    """errors / total over `window` from recorded 5m rate series (0 without traffic)."""
    if window <= 300:
        return f"{errors} / ({total} > 0) or {total} * 0"
    return (f"clamp_min({window_rate(errors, window)}, 0) / "
            f"(({window_rate(total, window)}) > 0) or {total} * 0")


def window_events(slo: SLO, window: int) -> str:
    """How many events the total counted over `window`: its raw query x the window.

    Only `min_events` reads it, so an opted-in tier reads the raw total over its long
    window once more. The recorded 5m totals cannot count events where the history is
    shorter than the window (a new SLO), and `rate()` does not extrapolate over that gap.
    The total must be a per-second rate, as `rate()` gives.
    """
    assert slo.sli.total is not None
    total = aggregate_to(substitute_window(slo.sli.total, window), grouping(slo))
    return f"({total}) * {window}"


def period_error_ratio(slo: SLO, extra: str = "", had_traffic: bool = False) -> str:
    """The error ratio over the whole period, weighted by traffic.

    Sums recorded 5m rates instead of `increase(...[30d])` over raw series (expensive) or
    averaging 5m ratios (wrong under uneven traffic); a uniform 2.5m lag is immaterial
    over a period. A raw ratio SLI has no separate totals, so its 5m ratios are averaged;
    that is documented as unweighted. `had_traffic`: the reader knows the period had
    events, so the zero-traffic branch (ratio 0) is left out.
    """
    period = slo.period_str
    if slo.sli.ratio is not None:
        return f"avg_over_time({slo_selector(error_ratio_name(300), slo, extra)}[{period}])"
    errors = slo_selector(ERRORS_RATE5M, slo, extra)
    total = slo_selector(TOTAL_RATE5M, slo, extra)
    ratio = f"sum_over_time({errors}[{period}]) / (sum_over_time({total}[{period}]) > 0)"
    return ratio if had_traffic else f"{ratio} or {total} * 0"


def budget_remaining(slo: SLO, extra: str = "") -> str:
    """The share of the error budget left over the period, computed from the recorded
    5m series: what `slo:error_budget_remaining:ratio` records, for an alert's annotation
    before the period group first ran. An alert fires only on errors, so the period had
    traffic (`/` binds before `-`: no parentheses needed)."""
    return f"1 - {period_error_ratio(slo, extra, True)} / {decimal_str(slo.budget)}"


def per_group(slo: SLO, value: str) -> str:
    """`value` once per group of a grouped SLO, so a metadata series (objective, budget,
    info) has the group labels and joins one-to-one with the recorded series. Carried on
    the group's period error ratio, which exists for every group seen in the period, or
    on its 5m series until the slower period group has first run (a new SLO)."""
    current = slo_selector(TOTAL_RATE5M if slo.sli.ratio is None
                           else error_ratio_name(min(slo.windows)), slo)
    return f"({slo_selector(PERIOD_ERROR, slo)} or {current}) * 0 + {value}"


def group_matchers(slo: SLO) -> str:
    """`,cluster=%[1]q,route=%[2]q`: the group labels of an alert's series, for a Go
    template `printf` with `$labels.cluster $labels.route` (`%q` quotes a value as PromQL
    does; the indexes let a query name the group in more than one selector)."""
    return "".join(f",{label}=%[{i}]q" for i, label in enumerate(slo.group_by, 1))


def budget_exhaustion_seconds(slo: SLO) -> str:
    """Seconds until the budget is spent at the period's burn rate; 0 once it is spent.

    At burn rate b the whole budget lasts period / b, so the remaining share r lasts
    r x period / b. Absent while nothing burns (it would last forever).
    """
    remaining = slo_selector(BUDGET_REMAINING, slo)
    burn = slo_selector(PERIOD_BURN, slo)
    return f"clamp_min({remaining}, 0) * {slo.period} / ({burn} > 0)"


def burn_rate(slo: SLO, window: int) -> str:
    """The burn rate over `window`: error ratio / error budget."""
    return f"{slo_selector(error_ratio_name(window), slo)} / {decimal_str(slo.budget)}"


def tier_condition(slo: SLO, tier: Tier) -> str:
    """The alert condition of one tier. Its value is the long window's burn rate."""
    factor = decimal_str(tier.factor)
    long_burn = burn_rate(slo, tier.long_window)
    short_burn = burn_rate(slo, tier.short_window)
    condition = f"({long_burn} > {factor}) and ({short_burn} > {factor})"
    if tier.min_events is not None and slo.sli.ratio is None:
        # low traffic: a handful of failures in a quiet hour is no page
        events = window_events(slo, tier.long_window)
        condition += f" and ignoring ({_ignoring(slo)}) ({events} >= {tier.min_events})"
    return condition


# --- The global view over many clusters (sloexporter.global_rules) ---------------------
# Every cluster records its own 5m errors and totals with its external labels (cluster=...).
# The global set sums those across clusters into series of other names, so neither set
# ever reads what the other writes, and a cluster's traffic weighs in as it should.

GLOBAL_ERRORS_RATE5M = "slo_global:sli_errors:rate5m"
GLOBAL_TOTAL_RATE5M = "slo_global:sli_total:rate5m"
GLOBAL_PERIOD_ERROR = "slo_global:period_error:ratio"


def global_error_ratio_name(window: int) -> str:
    """`slo_global:sli_error:ratio_rate1h` for the 1h window."""
    return f"slo_global:sli_error:ratio_rate{format_duration(window)}"


def global_sum(metric: str, slo: SLO, cluster_labels: Iterable[str]) -> str:
    """`metric` of `slo` summed over every cluster: only series that carry each of
    `cluster_labels` (what the clusters recorded), keeping the SLO's identity and groups."""
    drop = set(cluster_labels)
    keep = sorted(({k for k, _ in slo.identity} | set(grouping(slo))) - drop)
    present = "".join(f',{label}!=""' for label in sorted(drop))
    return f"sum by ({', '.join(keep)}) ({slo_selector(metric, slo)[:-1]}{present}}})"


def global_window_error_ratio(slo: SLO, window: int) -> str:
    """The error ratio over `window` across clusters, weighted by each one's traffic.
    Windows below the 5m base read the 5m ratio: the raw series stay in the clusters."""
    errors = slo_selector(GLOBAL_ERRORS_RATE5M, slo)
    total = slo_selector(GLOBAL_TOTAL_RATE5M, slo)
    return recorded_error_ratio(errors, total, max(window, 300))


def global_period_error_ratio(slo: SLO) -> str:
    errors = slo_selector(GLOBAL_ERRORS_RATE5M, slo)
    total = slo_selector(GLOBAL_TOTAL_RATE5M, slo)
    period = slo.period_str
    return (f"sum_over_time({errors}[{period}]) / (sum_over_time({total}[{period}]) > 0) "
            f"or {total} * 0")


def global_tier_condition(slo: SLO, tier: Tier) -> str:
    """A tier's alert condition on the global ratios; its value is the long burn rate."""
    factor, budget = decimal_str(tier.factor), decimal_str(slo.budget)
    long_burn, short_burn = (
        f"{slo_selector(global_error_ratio_name(max(w, 300)), slo)} / {budget}"
        for w in (tier.long_window, tier.short_window))
    condition = f"({long_burn} > {factor}) and ({short_burn} > {factor})"
    if tier.min_events is not None:
        total = slo_selector(GLOBAL_TOTAL_RATE5M, slo)
        events = f"({window_rate(total, tier.long_window)}) * {tier.long_window}"
        condition += f" and ({events} >= {tier.min_events})"
    return condition


def alerts_selector(slo: SLO, severity: str | None = None,
                    state: str | None = "firing", group: Mapping[str, str] | None = None,
                    ) -> str:
    """The SLO's ALERTS series (of one group); state None matches pending and firing."""
    labels = [("service", slo.service), ("slo", slo.name), *(group or {}).items()]
    if severity:
        labels.append(("severity", severity))
    if state:
        labels.append(("alertstate", state))
    return selector("ALERTS", labels)


# --- Dashboard and report queries --------------------------------------------------------
# Panels read the recorded series above and the exporter's names, so a renamed series
# breaks the rules and the dashboards together. `filters` is a matcher list such as
# `template_matchers("service", "slo")`; Grafana fills in the `$` variables.

#: Grafana's per-panel rate window; `$__range` is the dashboard's time range.
RATE_INTERVAL = "$__rate_interval"
DASHBOARD_RANGE = "$__range"
DAY_SECONDS = 86400


def template_matchers(*labels: str) -> str:
    """`service=~"$service",...`: regex matchers, so "All" (`.*`) also matches series
    that lack the label, as an SLO without a `team` label does."""
    return ",".join(f'{label}=~"${label}"' for label in labels)


def select(metric: str, *matcher_lists: str) -> str:
    """`metric{a,b}` from matcher lists, any of which may be empty."""
    joined = ",".join(m for m in matcher_lists if m)
    return f"{metric}{{{joined}}}" if joined else metric


def label_values(metric: str, label: str, filters: str = "") -> str:
    """A Grafana variable query (not PromQL): the values `label` takes on `metric`."""
    return f"label_values({select(metric, filters)}, {label})"


_REGEX_META = re.compile(r"[\\.^$|?*+()\[\]{}]")


def regex_of(values: Iterable[str]) -> str:
    """A quoted regex that matches exactly one of `values`."""
    return quote("|".join(_REGEX_META.sub(r"\\\g<0>", v) for v in sorted(set(values))))


def _key(slo: SLO) -> tuple[str, str]:
    return slo.service, slo.name


def slo_set_matchers(chosen: Iterable[SLO], every: Iterable[SLO]) -> list[str]:
    """Matcher lists on `slo:info` that together select exactly the `chosen` SLOs.

    When the chosen SLOs are all those of some periods (default tiers depend on the
    period only), one `period=~` matcher does; otherwise whole services collapse into
    one `service=~` matcher. So a per-tier query grows with the number of distinct tier
    layouts, not with the number of SLOs.
    """
    every = list(every)
    wanted = {_key(s) for s in chosen}
    if wanted == {_key(s) for s in every}:
        return [""]
    periods = {s.period_str for s in every if _key(s) in wanted}
    if wanted == {_key(s) for s in every if s.period_str in periods}:
        return [f"period=~{regex_of(periods)}"]
    by_service: dict[str, list[tuple[str, bool]]] = {}
    for slo in every:
        by_service.setdefault(slo.service, []).append((slo.name, _key(slo) in wanted))
    whole = [svc for svc, members in by_service.items() if all(p for _, p in members)]
    out = [f"service=~{regex_of(whole)}"] if whole else []
    for svc, members in sorted(by_service.items()):
        names = [name for name, picked in members if picked]
        if names and svc not in whole:
            out.append(f"service={quote(svc)},slo=~{regex_of(names)}")
    return out


def among(expr: str, filters: str, matcher: str) -> str:
    """`expr` (one series per SLO) kept for the SLOs whose `slo:info` matches."""
    if not matcher:
        return expr
    return f"({expr}) and on (service, slo) {select(INFO, filters, matcher)}"


TierSlot = tuple[str, int]


def tier_slots(slos: Iterable[SLO]) -> list[TierSlot]:
    """(severity, n): the n-th tier of that severity, page before ticket, over all SLOs.

    SLOs with other periods have other windows and factors in the same slot, so a
    dashboard column or panel per slot fits every SLO.
    """
    slots = {slot for slo in slos for slot in _slots(slo)}
    return sorted(slots, key=lambda s: (s[0] != "page", s))


def slo_tiers(slo: SLO) -> list[tuple[TierSlot, Tier]]:
    return list(_slots(slo).items())


def _slots(slo: SLO) -> dict[TierSlot, Tier]:
    """The SLO's tiers by slot, built once per SLO (cached like `SLO.tiers`; a dashboard
    looks each SLO up once per slot); callers only read it."""
    cached = slo.__dict__.get("_tier_slots")
    if cached is None:
        counts: dict[str, int] = {}
        cached = slo.__dict__["_tier_slots"] = {}
        for tier in slo.tiers:
            counts[tier.severity] = counts.get(tier.severity, 0) + 1
            cached[(tier.severity, counts[tier.severity])] = tier
    return cached


def _per_tier(slos: list[SLO], slot: TierSlot, key: Callable[[Tier], object],
              term: Callable[[object, str], str]) -> str:
    """`term(key, matchers)` for each group of SLOs whose tier in `slot` shares `key`,
    joined with `or`: each SLO gets the value for its own tier."""
    groups: dict[object, list[SLO]] = {}
    for slo in slos:
        tier = _slots(slo).get(slot)
        if tier is not None:
            groups.setdefault(key(tier), []).append(slo)
    terms = [term(k, m) for k, members in sorted(groups.items(), key=lambda kv: str(kv[0]))
             for m in slo_set_matchers(members, slos)]
    return " or ".join(terms) if terms else "vector(0) * 0 < 0"


def tier_burn_rate(slos: list[SLO], slot: TierSlot, filters: str, short: bool = False) -> str:
    """Each SLO's burn rate over the long (or short) window of its tier in `slot`, with a
    `window` label naming that window."""
    def term(window: object, matcher: str) -> str:
        assert isinstance(window, int)
        burn = f"{select(error_ratio_name(window), filters)} / {select(ERROR_BUDGET, filters)}"
        return f"label_replace({among(burn, filters, matcher)}, \"window\", " \
               f"{quote(format_duration(window))}, \"\", \"\")"
    return _per_tier(slos, slot, lambda t: t.short_window if short else t.long_window, term)


def tier_threshold(slos: list[SLO], slot: TierSlot, filters: str) -> str:
    """Each SLO's burn-rate factor in `slot`, the line its alert fires above."""
    def term(factor: object, matcher: str) -> str:
        assert isinstance(factor, Decimal)
        return f"{select(INFO, filters, matcher)} * {decimal_str(factor)}"
    return _per_tier(slos, slot, lambda t: t.factor, term)


def sli_over_period(filters: str) -> str:
    return f"1 - {select(PERIOD_ERROR, filters)}"


def slos_out_of_budget(filters: str) -> str:
    return count_or_zero(f"{select(BUDGET_REMAINING, filters)} <= 0")


def group_labels(slos: Iterable[SLO]) -> tuple[str, ...]:
    """Every group_by label of these SLOs, for dashboard variables and table rows."""
    return tuple(sorted({label for slo in slos for label in slo.group_by}))


def by_slo(expr: str, groups: Iterable[str] = ()) -> str:
    """One series per SLO (service, slo) and group, so a table merges its columns into
    one row per SLO group."""
    return f"max by ({', '.join(('service', 'slo', *groups))}) ({expr})"


def _alerts(slos: list[SLO], state: str, *filters: str) -> str:
    """The ALERTS series of these SLOs' burn-rate alerts in `state`."""
    alert_names = f"alertname=~{regex_of(s.alerting.name for s in slos)}"
    return select("ALERTS", alert_names, f"alertstate={quote(state)}", *filters)


def alert_state(slos: list[SLO], page_severities: Iterable[str], filters: str) -> str:
    """Per SLO: 2 while a page fires, 1 while only a ticket fires, else 0."""
    page = _alerts(slos, "firing", f"severity=~{regex_of(page_severities)}", filters)
    groups = group_labels(slos)
    return (f"{by_slo(page, groups)} * 2 or {by_slo(_alerts(slos, 'firing', filters), groups)} "
            f"or {by_slo(select(INFO, filters), groups)} * 0")


def alerts_firing(slos: list[SLO], filters: str) -> str:
    return count_or_zero(_alerts(slos, "firing", filters))


def slos_alerting(slos: list[SLO], page_severities: Iterable[str], filters: str) -> str:
    return count_or_zero(f"{alert_state(slos, page_severities, filters)} > 0")


def alert_history(slos: list[SLO], filters: str) -> str:
    """Per tier: 2 while its alert fires, 1 while it is pending."""
    by = "max by (severity, long_window, short_window)"
    return (f"{by} ({_alerts(slos, 'firing', filters)}) * 2 or "
            f"{by} ({_alerts(slos, 'pending', filters)})")


def sync_annotations(apps_by_service: Mapping[str, Iterable[str]], filters: str) -> str:
    """Completed ArgoCD syncs of the apps of the services `filters` selects, by phase.

    PromQL cannot map a service to its apps, so each service contributes a term that
    only passes (`and on()`) while its own SLO info series is selected.
    """
    terms = []
    for service, apps in sorted(apps_by_service.items()):
        if not list(apps):
            continue
        ops = select(names.ARGOCD_APP_SYNC_OPERATIONS, f"name=~{regex_of(apps)}")
        gate = select(INFO, f"service={quote(service)}", filters)
        terms.append(f"(sum by (namespace, name, phase) (increase({ops}[$__interval])) > 0 "
                     f"and on() count({gate}) > 0)")
    return " or ".join(terms) if terms else "vector(0) * 0 < 0"


def count_or_zero(expr: str) -> str:
    """How many series `expr` has; 0, not "no data", when none."""
    return f"count({expr}) or vector(0)"


def sum_or_zero(expr: str) -> str:
    return f"sum({expr}) or vector(0)"


def count_zero(metric: str, filters: str) -> str:
    """How many series of a 0/1 gauge are 0 (not synced, not healthy, not ready)."""
    return count_or_zero(f"{select(metric, filters)} == 0")


def template_selector(*labels: str) -> str:
    """`{target=~"$target"}`, for a preset that takes a selector."""
    return f"{{{template_matchers(*labels)}}}"


# ArgoCD
def argocd_apps_by(label: str, filters: str) -> str:
    return f"count by ({label}) ({select(names.ARGOCD_APP_INFO, filters)})"


def _bad_for(metric: str, filters: str) -> str:
    """Seconds since `metric` (0/1) was last 1, for the series that are 0 now.

    A series not seen at 1 in the whole dashboard range shows the range itself.
    """
    now = select(metric, filters)
    since = f"time() - max_over_time(timestamp({now} == 1)[{DASHBOARD_RANGE}:1m])"
    return f"(({since}) or {now} * 0 + {DASHBOARD_RANGE}_s) and {now} == 0"


def argocd_not_synced_for(filters: str) -> str:
    return _bad_for(names.ARGOCD_APP_SYNCED, filters)


def argocd_unhealthy_for(filters: str) -> str:
    """How long each unhealthy app has been so, with its `health_status` (Degraded, ...)."""
    status = f"max by (namespace, name, project, health_status) " \
             f"({select(names.ARGOCD_APP_INFO, filters)})"
    return f"({_bad_for(names.ARGOCD_APP_HEALTHY, filters)}) " \
           f"* on (namespace, name, project) group_left (health_status) {status}"


def argocd_sync_operations(filters: str, by: str, window: str = RATE_INTERVAL,
                           failed: bool = False) -> str:
    phase = f"phase=~{regex_of(names.ARGOCD_SYNC_FAILED_PHASES)}" if failed else ""
    ops = select(names.ARGOCD_APP_SYNC_OPERATIONS, filters, phase)
    return f"sum by ({by}) (increase({ops}[{window}]))"


def argocd_failed_syncs(filters: str) -> str:
    """Failed sync operations of all apps in the dashboard's time range."""
    return sum_or_zero(argocd_sync_operations(filters, "namespace, name, project",
                                              DASHBOARD_RANGE, failed=True))


def argocd_since_last_sync(filters: str) -> str:
    return f"time() - {select(names.ARGOCD_APP_LAST_SYNCED, filters)}"


# Backups
def backup_age(filters: str) -> str:
    return f"time() - {select(names.BACKUP_LAST_SUCCESS, filters)}"


def backup_age_ratio(filters: str) -> str:
    """Age of the last success in expected intervals: above 1 is late."""
    return f"({backup_age(filters)}) / {select(names.BACKUP_EXPECTED_INTERVAL, filters)}"


def backup_overdue_by(filters: str) -> str:
    """Seconds past the expected interval, for the backups that are overdue."""
    return f"({backup_age(filters)}) - {select(names.BACKUP_EXPECTED_INTERVAL, filters)} > 0"


def backup_never_succeeded(filters: str) -> str:
    return (f"{select(names.BACKUP_EXPECTED_INTERVAL, filters)} unless on (kind, namespace, "
            f"name) {select(names.BACKUP_LAST_SUCCESS, filters)}")


def backup_runs(filters: str, by: str, window: str = RATE_INTERVAL, result: str = "") -> str:
    runs = select(names.BACKUP_RUNS, filters, f"result={quote(result)}" if result else "")
    return f"sum by ({by}) (increase({runs}[{window}]))"


def backup_failed_runs(filters: str) -> str:
    """Failed runs of all backups in the dashboard's time range."""
    return sum_or_zero(backup_runs(filters, "kind, namespace, name", DASHBOARD_RANGE, "failure"))


# Certificates
def cert_days_left(filters: str) -> str:
    return f"({select(names.CERT_NOT_AFTER, filters)} - time()) / {DAY_SECONDS}"


def certs_expiring_within(days: int, filters: str) -> str:
    expiring = f"{select(names.CERT_NOT_AFTER, filters)} - time() < {days * DAY_SECONDS}"
    return count_or_zero(expiring)


def tls_probe_failures(by: str = "") -> str:
    """Failing TLS probes; by a label list, counted per value."""
    info = select(names.TLS_PROBE_FAILURE_INFO)
    return f"count by ({by}) ({info})" if by else info


def aggregate(op: str, by: str, expr: str) -> str:
    """`sum by (a, b) (expr)`, or `sum(expr)` when `by` is empty."""
    return f"{op} by ({by}) ({expr})" if by else f"{op}({expr})"


# Golden signals, from an SLI's Traffic (the spec's preset) or sloexporter's own probes
def request_rate(traffic: Traffic, by: str = "") -> str:
    return aggregate("sum", by, f"rate({traffic.requests}{traffic.selector}[{RATE_INTERVAL}])")


def request_error_ratio(traffic: Traffic, by: str = "") -> str:
    bad = f"{traffic.status_label}=~{quote(traffic.errors_regex)}"
    errors = aggregate("sum", by, f"rate({traffic.requests}"
                                  f"{merge_selector(traffic.selector, bad)}[{RATE_INTERVAL}])")
    return safe_ratio(errors, request_rate(traffic, by))


def latency_quantile(traffic: Traffic, quantile: str, by: str = "") -> str:
    assert traffic.duration is not None
    labels = ", ".join(p for p in (by, "le") if p)
    buckets = f"{traffic.duration}_bucket{traffic.selector}"
    return f"histogram_quantile({quantile}, sum by ({labels}) (rate({buckets}[{RATE_INTERVAL}])))"


def in_flight(traffic: Traffic, by: str = "") -> str:
    assert traffic.in_flight is not None
    return aggregate("sum", by, f"{traffic.in_flight}{traffic.selector}")


# --- Status service and reports -----------------------------------------------------------
# The service reads the same recorded series as the rules and dashboards above, plus the
# series Sloth and Pyrra record, and evaluates ranges PromQL rules cannot (calendar months).

SLOTH_INFO = "sloth_slo_info"
SLOTH_PERIOD_DAYS = "slo:time_period:days"
PYRRA_OBJECTIVE = "pyrra_objective"
PYRRA_WINDOW = "pyrra_window"
PYRRA_ERRORS_RATE5M = "pyrra_errors:rate5m"
PYRRA_REQUESTS_RATE5M = "pyrra_requests:rate5m"
#: the 5m error ratio: ours for ratio SLIs, and Sloth's for every SLO
ERROR_RATIO_5M = error_ratio_name(300)
_ERROR_RATIO_PREFIX = "slo:sli_error:ratio_rate"
_PYRRA_BURNRATE = re.compile(r"^(?P<metric>.+):burnrate(?P<window>[0-9smhdw]+)$")
_ALERT_KEYS = "service, slo, severity, sloth_service, sloth_slo, sloth_severity, namespace"


def error_ratios_every_window() -> str:
    """Every recorded `slo:sli_error:ratio_rate<window>` series, ours and Sloth's, at once."""
    return f'{{__name__=~"{_ERROR_RATIO_PREFIX}[0-9smhdw]+"}}'


def error_ratio_window(metric: str) -> str | None:
    """`1h` for `slo:sli_error:ratio_rate1h`; None for any other name."""
    if metric.startswith(_ERROR_RATIO_PREFIX):
        return metric[len(_ERROR_RATIO_PREFIX):] or None
    return None


def pyrra_burnrates_every_window() -> str:
    return '{__name__=~".+:burnrate[0-9smhdw]+"}'


def pyrra_burnrate_window(metric: str) -> tuple[str, str] | None:
    """(metric, window) of Pyrra's `<metric>:burnrate<window>` names."""
    match = _PYRRA_BURNRATE.match(metric)
    return (match["metric"], match["window"]) if match else None


def slo_alerts() -> str:
    """The ALERTS of every SLO: ours and Pyrra's carry `slo`, Sloth's `sloth_slo`."""
    return 'ALERTS{slo!=""} or ALERTS{sloth_slo!=""}'


def range_seconds(seconds: float) -> str:
    return f"{max(1, int(seconds))}s"


def _open_range(seconds: float) -> str:
    """A range that leaves out its first instant: Prometheus 2 range selectors include
    it, Prometheus 3 ones do not, and a sample exactly at a period start belongs to the
    period before."""
    return range_seconds(seconds - 1 if seconds >= 2 else seconds)


#: the resolution at which recorded 5-minute series are read over long ranges
SERIES_STEP = "5m"


def average_over(metric: str, seconds: float) -> str:
    """The mean of a recorded 5-minute series over the last `seconds`, read every 5
    minutes (a subquery), so the rule evaluation interval does not weigh in.

    A ratio of two such means is the traffic-weighted ratio over the range, and a mean
    rate times the range is the count of events in it.
    """
    return f"avg_over_time(({metric})[{_open_range(seconds)}:{SERIES_STEP}])"


def maximum_over(metric: str, seconds: float) -> str:
    return f"max_over_time(({metric})[{_open_range(seconds)}:{SERIES_STEP}])"


def minutes_present(metric: str, seconds: float) -> str:
    """Minutes in the range in which `metric` had a value (a 1m subquery)."""
    return f"count_over_time(({metric})[{_open_range(seconds)}:1m])"


def _firing(offset: str = "") -> str:
    shift = f" offset {offset}" if offset else ""
    return (f'max by ({_ALERT_KEYS}) (ALERTS{{alertstate="firing",slo!=""}}{shift} or '
            f'ALERTS{{alertstate="firing",sloth_slo!=""}}{shift})')


def alert_minutes_firing(seconds: float) -> str:
    """Per SLO and severity: minutes in the range with an alert firing."""
    return f"count_over_time(({_firing()})[{_open_range(seconds)}:1m])"


def alert_firings(seconds: float) -> str:
    """Per SLO and severity: how many times an alert started firing in the range."""
    return (f"count_over_time(({_firing()} unless {_firing('1m')})"
            f"[{_open_range(seconds)}:1m])")


def mean_error_ratio(slo_labels: Mapping[str, str], origin: str, weighted: bool,
                     seconds: float) -> str:
    """One SLO's error ratio over the last `seconds`, as the list computes it: the mean
    errors rate over the mean total rate (traffic-weighted), or the mean 5m ratio."""
    if origin == "pyrra":
        errors, total = PYRRA_ERRORS_RATE5M, PYRRA_REQUESTS_RATE5M
    elif origin == "native" and weighted:
        errors, total = ERRORS_RATE5M, TOTAL_RATE5M
    else:
        return f"max({average_over(selector(ERROR_RATIO_5M, slo_labels), seconds)})"
    return (f"sum({average_over(selector(errors, slo_labels), seconds)}) / "
            f"sum({average_over(selector(total, slo_labels), seconds)})")


def error_ratio_5m(slo_labels: Mapping[str, str], origin: str,
                   pyrra_metric: str | None = None) -> str:
    """One SLO's 5m error ratio, for graphs."""
    if origin == "pyrra":
        return f"max({selector(f'{pyrra_metric}:burnrate5m', slo_labels)})" if pyrra_metric \
            else f"sum({selector(PYRRA_ERRORS_RATE5M, slo_labels)}) / " \
                 f"sum({selector(PYRRA_REQUESTS_RATE5M, slo_labels)})"
    return f"max({selector(ERROR_RATIO_5M, slo_labels)})"


# Platform health, read back from Prometheus for the status page
def platform_out_of_sync() -> str:
    return f"{names.ARGOCD_APP_SYNCED} == 0"


def platform_unhealthy() -> str:
    return f"{names.ARGOCD_APP_HEALTHY} == 0"


def platform_bad_since(metric: str, seconds: float) -> str:
    """When each series of a 0/1 gauge that is 0 now was last 1 (within the range)."""
    return (f"max_over_time(timestamp({metric} == 1)[{range_seconds(seconds)}:1m]) "
            f"and {metric} == 0")


def platform_backups_overdue() -> str:
    return backup_overdue_by("")


def platform_certs_expiring(days: int) -> str:
    return f"{names.CERT_NOT_AFTER} - time() < {days * DAY_SECONDS}"


def platform_failing_probes() -> str:
    return (f"{names.TLS_PROBE_SUCCESS} == 0 or {names.PROBE_SUCCESS} == 0 or "
            f"{names.TLS_PROBE_FAILURE_INFO}")
