"""Generate `promtool test rules` files that prove each SLO's alerts behave.

For every SLO: a total outage pages within the theoretical detection time plus two
evaluation intervals (and nothing fires before it starts), and steady errors at half
the budget rate never alert. Inputs come from the SLI's own metrics: presets describe
them, and for hand-written queries they are derived from the queries' selectors.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from re import _parser as re_parser
from typing import Any, Literal

import promql_parser

from sloexporter import names, promql, steady
from sloexporter.model import (
    SLO,
    Condition,
    Service,
    SynthSeries,
    decimal_str,
    detection_seconds,
)
from sloexporter.render import header, service_source, to_yaml
from sloexporter.rules import severity_label

EVAL_INTERVAL = 60
#: requests per second fed to counters; large enough that tiny budgets stay exact
RATE = Decimal(100)
#: the window over which derived inputs are checked (any window gives the same steady ratio)
CHECK_WINDOW = 3600
_POOL = ("500", "503", "200", "204", "404", "0", "1", "error", "ok", "true", "false",
         "success", "failure", "5xx", "2xx", "GET", "x")


class SynthesisError(Exception):
    """The test inputs for an SLO cannot be derived from its queries."""


@dataclass(frozen=True)
class Segment:
    steps: int
    ratio: Decimal


# ---- label values that satisfy a selector -------------------------------------------

Matcher = steady.Matcher


def _matches(op: str, pattern: str, value: str) -> bool:
    try:
        return steady.label_matches(op, pattern, value)
    except re.error:
        return False


def _candidates(matchers: list[Matcher]) -> list[str]:
    """Equality values first, then common label values, then literal regex alternatives,
    then the shortest string each regex matches (`le=~"\\+?(?:0*\\.50*|...)"` -> `.5`,
    tried as the number client libraries write first: `0.5`)."""
    values = [m[2] for m in matchers if m[1] == "="] + list(_POOL)
    for label, op, pattern in matchers:
        if op in ("=~", "!~"):
            values += [p.strip("^$()") for p in pattern.split("|")]
            example = _regex_example(pattern)
            if example is not None:
                if label == "le":
                    with contextlib.suppress(ValueError):
                        values.append(repr(float(example)))
                values.append(example)
    return values


def _regex_example(pattern: str) -> str | None:
    """The shortest string matching `pattern` along its first alternatives, or None."""
    try:
        parsed = re_parser.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return None

    def walk(items: Any) -> str:
        out = []
        for op, arg in items:
            name = str(op)
            if name == "LITERAL":
                out.append(chr(arg))
            elif name == "IN":
                first = next((a for o, a in arg if str(o) in ("LITERAL", "RANGE")), None)
                if first is None:
                    raise ValueError(pattern)
                out.append(chr(first if isinstance(first, int) else first[0]))
            elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                low, _, sub = arg
                out.append(walk(sub) * low)
            elif name == "SUBPATTERN":
                out.append(walk(arg[-1]))
            elif name == "BRANCH":
                out.append(walk(arg[1][0]))
            elif name == "ANY":
                out.append("x")
            elif name != "AT":
                raise ValueError(pattern)
        return "".join(out)

    try:
        example = walk(parsed)
    except (ValueError, TypeError, IndexError):
        return None
    return example if re.fullmatch(pattern, example) else None


def _pick(matchers: list[Matcher]) -> str | None:
    return next((v for v in _candidates(matchers) if all(_matches(op, p, v)
                                                         for _, op, p in matchers)), None)


def _parse_matchers(text: str) -> tuple[str | None, list[Matcher]]:
    expr = promql_parser.parse(text)
    if isinstance(expr, promql_parser.MatrixSelector):
        expr = expr.vector_selector
    if not isinstance(expr, promql_parser.VectorSelector):
        raise SynthesisError(f"not a selector: {text}")
    return _selector_parts(expr)


def _selector_parts(sel: Any) -> tuple[str | None, list[Matcher]]:
    matchers = steady.selector_matchers(sel)
    name = sel.name or next((v for n, op, v in matchers if n == "__name__" and op == "="), None)
    return name, [m for m in matchers if m[0] != "__name__"]


def _labels_for(must: list[Matcher], must_not: list[Matcher] = ()) -> dict[str, str] | None:
    """Labels satisfying every matcher in `must` and failing at least one of `must_not`."""
    by_label: dict[str, list[Matcher]] = {}
    for m in must:
        by_label.setdefault(m[0], []).append(m)
    chosen: dict[str, str] = {}
    for label, ms in by_label.items():
        value = _pick(ms)
        if value is None:
            return None
        if value:  # an empty value means "label absent" in PromQL
            chosen[label] = value
    if not must_not:
        return chosen
    for lbl, op, p in must_not:  # flip one label so the series escapes `must_not`
        inverse = {"=": "!=", "!=": "=", "=~": "!~", "!~": "=~"}[op]
        value = _pick(by_label.get(lbl, []) + [(lbl, inverse, p)])
        if value is not None:
            return {**chosen, lbl: value} if value else {k: v for k, v in chosen.items()
                                                          if k != lbl}
    if not all(_matches(op, p, chosen.get(lbl, "")) for lbl, op, p in must_not):
        return chosen
    return None


# ---- series for hand-written queries --------------------------------------------------

Selector = tuple[str | None, list[Matcher]]
#: functions whose argument is a counter
_COUNTER_FUNCS = ("rate", "irate", "increase", "resets")


def _strip(expr: Any) -> Any:
    while isinstance(expr, promql_parser.ParenExpr):
        expr = expr.expr
    return expr


def _parse(query: str, window: int = 300) -> Any:
    try:
        return promql_parser.parse(promql.substitute_window(query, window))
    except ValueError as exc:
        raise SynthesisError(f"unparsable query: {exc}") from None


def _selectors(node: Any) -> list[Selector]:
    found: list[Selector] = []

    def visit(n: Any) -> None:
        if isinstance(n, promql_parser.VectorSelector):
            found.append(_selector_parts(n))

    promql_parser.walk(node, visit)
    return found


def _counter_metrics(nodes: list[Any]) -> set[str | None]:
    """Metrics read through rate()/increase(): those are counters, the rest gauges."""
    out: set[str | None] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.Call) and node.func.name in _COUNTER_FUNCS:
            for arg in node.args:
                if isinstance(arg, promql_parser.MatrixSelector):
                    out.add(_selector_parts(arg.vector_selector)[0])

    for node in nodes:
        promql_parser.walk(node, visit)
    return out


@dataclass(frozen=True)
class Queries:
    """The SLI as the test generator reads it: which parsed query counts what."""

    total: Any
    bad: Any = None
    good: Any = None
    #: a raw error-ratio query that is not `errors / total`
    ratio: Any = None

    @property
    def all(self) -> list[Any]:
        return [q for q in (self.total, self.bad, self.good, self.ratio) if q is not None]


#: functions that read native histograms, which promtool 2 test inputs cannot express
_NATIVE_HISTOGRAM_FUNCS = ("histogram_count", "histogram_sum", "histogram_fraction",
                           "histogram_avg", "histogram_stddev", "histogram_stdvar")


def _native_histogram_function(node: Any) -> str | None:
    found: list[str] = []

    def visit(n: Any) -> None:
        if isinstance(n, promql_parser.Call) and n.func.name in _NATIVE_HISTOGRAM_FUNCS:
            found.append(n.func.name)

    promql_parser.walk(node, visit)
    return found[0] if found else None


def _sli_queries(slo: SLO) -> list[str]:
    """The SLI's query texts (with their {{window}} placeholder)."""
    sli = slo.sli
    return [t for t in (sli.ratio, sli.errors, sli.total, sli.good) if t is not None]


def _queries(slo: SLO) -> Queries:
    sli = slo.sli
    texts = _sli_queries(slo)
    for text in texts:
        func = _native_histogram_function(_parse(text))
        if func:
            raise SynthesisError(f"the SLI reads a native histogram ({func}), and promtool 2 "
                                 "test files cannot hold native histogram samples")
    for text in texts:
        if _selectors(_parse(text, 300)) != _selectors(_parse(text, 3600)):
            raise SynthesisError("a label matcher holds {{window}}, so every window reads "
                                 "other series")
    if sli.ratio is not None:
        expr = _strip(_parse(sli.ratio))
        if isinstance(expr, promql_parser.BinaryExpr) and str(expr.op) == "/":
            return Queries(expr.rhs, bad=expr.lhs)
        return Queries(None, ratio=expr)
    assert sli.errors is not None and sli.total is not None
    total = _parse(sli.total)
    if sli.good is not None:
        return Queries(total, good=_parse(sli.good))
    # `total - good` written as errors (Sloth's latency from _count minus a _bucket)
    errors = _strip(_parse(sli.errors))
    if isinstance(errors, promql_parser.BinaryExpr) and str(errors.op) == "-" and \
            str(_strip(errors.lhs)) == str(_strip(total)):
        return Queries(total, good=errors.rhs)
    return Queries(total, bad=errors)


def _named(selectors: list[Selector]) -> list[tuple[str, list[Matcher]]]:
    if any(name is None for name, _ in selectors):
        raise SynthesisError("a selector without a metric name")
    return [(name, ms) for name, ms in selectors if name is not None]


def _role_series(q: Queries, nested: bool = True) -> list[SynthSeries]:
    """Series told apart by labels: the error (or good) selector's, and the total's others.

    `nested`: the error or good series are among the total's, which then also has the
    rest (`code=~"5.."` of all codes). Otherwise they are separate series and the total's
    selector is its own series (`_bucket{le="0.3"}` of `_bucket{le="+Inf"}`).
    """
    if q.total is None:
        raise SynthesisError("the error ratio is not `errors / total`")
    totals = _named(_selectors(q.total))
    special = _named(_selectors(q.good if q.good is not None else q.bad))
    if not totals or not special:
        raise SynthesisError("queries without a metric selector")
    role, other = ("good", "bad") if q.good is not None else ("bad", "good")
    out: list[SynthSeries] = []
    for name, ms in special:
        inside = [m for tn, tms in totals if tn == name for m in tms] if nested else []
        labels = _labels_for(ms + inside)
        if labels is None:
            raise SynthesisError(f"no label values satisfy the selector of {name}")
        out.append(SynthSeries(name, role, labels=tuple(sorted(labels.items()))))
    for name, ms in totals:
        same = [sms for sn, sms in special if sn == name]
        if not same:
            labels, kind = _labels_for(ms), "total"
        elif not same[0]:
            raise SynthesisError(f"the {role} and total queries select the same series of "
                                 f"{name}")
        else:
            labels, kind = _labels_for(ms, same[0]), other if nested else "total"
        if labels is None:
            raise SynthesisError(f"cannot find series of {name} outside the {role} selector")
        out.append(SynthSeries(name, kind, labels=tuple(sorted(labels.items()))))
    return list(dict.fromkeys(out))


def _gauge_labels(q: Queries) -> dict[str, dict[str, str]]:
    """One label set per metric that every selector of that metric matches."""
    by_metric: dict[str, list[Matcher]] = {}
    for query in q.all:
        for name, ms in _named(_selectors(query)):
            by_metric.setdefault(name, []).extend(ms)
    out = {}
    for name, ms in by_metric.items():
        labels = _labels_for(ms)
        if labels is None:
            raise SynthesisError(f"no label values satisfy every selector of {name}")
        out[name] = labels
    return out


def _thresholds(q: Queries) -> list[Decimal]:
    """Numbers the queries compare series with (`x < 0.75`, `up == 0`)."""
    found: list[Decimal] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.BinaryExpr) and \
                str(node.op) in ("==", "!=", "<", ">", "<=", ">="):
            for side in (node.lhs, node.rhs):
                side = _strip(side)
                if isinstance(side, promql_parser.NumberLiteral) and math.isfinite(side.val):
                    found.append(Decimal(repr(side.val)))

    for query in q.all:
        promql_parser.walk(query, visit)
    return found


def _state_values(thresholds: list[Decimal]) -> list[Decimal]:
    values = {Decimal(0), Decimal(1)}
    for t in thresholds:
        values.update((t, t - 1, t + 1, t / 2, t * 2, t - Decimal("0.01"), t + Decimal("0.01")))
    return sorted(values)


def _layouts(q: Queries) -> Iterator[tuple[SynthSeries, ...]]:
    """Input layouts to try, most natural first; `_check` keeps the first that works."""
    counters = _counter_metrics(q.all)
    try:
        roles = _role_series(q)
    except SynthesisError as exc:
        roles, role_error = [], exc
    else:
        role_error = None
    if roles:
        yield tuple(roles)  # counters, or gauges read by rate() alike
    try:
        separate = tuple(_role_series(q, nested=False))
    except SynthesisError:
        separate = ()
    if separate and list(separate) != roles:
        yield separate
    if counters:
        if role_error is not None:
            raise role_error
        return
    shares = {"good": (Decimal(1), Decimal(-1)), "bad": (Decimal(0), Decimal(1)),
              "total": (Decimal(1), Decimal(0))}
    if roles:  # gauges told apart by labels, each at its share
        yield tuple(replace(s, role="gauge", a=shares[s.role][0], c=shares[s.role][1])
                    for s in roles)
    gauges = _gauge_labels(q)

    def each(role: str, a: Decimal, c: Decimal) -> tuple[SynthSeries, ...]:
        return tuple(SynthSeries(name, role, labels=tuple(sorted(labels.items())), a=a, c=c)
                     for name, labels in gauges.items())

    # one gauge whose value is the good share (satisfaction, availability) or the bad one
    yield each("gauge", Decimal(1), Decimal(-1))
    yield each("gauge", Decimal(0), Decimal(1))
    # objects that are good or bad by value (`count(x < 0.75)`, `up == 0`)
    values = _state_values(_thresholds(q))
    for good in values:
        for bad in values:
            if good != bad:
                yield each("state", good, bad - good)
    if role_error is not None:
        raise role_error


def _derived_synth(slo: SLO) -> tuple[SynthSeries, ...]:
    q = _queries(slo)
    first: str | None = None
    try:
        for candidate in _layouts(q):
            problem = _check(slo, candidate)
            if problem is None:
                return candidate
            first = first or problem
    except SynthesisError as exc:
        first = first or str(exc)
    reason = first or "no input layout reproduces the error ratio"
    if any(name and name.endswith("_bucket") for query in q.all
           for name, _ in _selectors(query)):
        reason += ("; for a histogram, the `latency` SLI kind writes this SLI (and its tests) "
                   "from the metric's name and a threshold")
    raise SynthesisError(reason)


# ---- series for a threshold SLI's gauge condition -----------------------------------
# The query is read as a linear form a*v + b*t + c of the gauge value v and time() t,
# with every gauge it selects at v and those it divides by at 1. Gauges then rise with
# slope -b/a, so the query holds one value all along: V -+ margin, good or bad.

Linear = tuple[Fraction, Fraction, Fraction]  # (per gauge value, per second, constant)
_PASS_THROUGH = {"sum", "min", "max", "avg", "topk", "bottomk", "quantile", "group"}
_OVER_TIME = {"max_over_time", "min_over_time", "avg_over_time", "last_over_time",
              "quantile_over_time"}


def _linear(node: Any, divisors: list[Any]) -> Linear:
    p = promql_parser
    zero = Fraction(0)
    if isinstance(node, p.NumberLiteral):
        return zero, zero, Fraction(str(node.val))
    if isinstance(node, p.ParenExpr):
        return _linear(node.expr, divisors)
    if isinstance(node, p.VectorSelector | p.MatrixSelector):
        return Fraction(1), zero, zero
    if isinstance(node, p.UnaryExpr):
        a, b, c = _linear(node.expr, divisors)
        return -a, -b, -c
    if isinstance(node, p.AggregateExpr) and str(node.op).lower() in _PASS_THROUGH:
        return _linear(node.expr, divisors)
    if isinstance(node, p.AggregateExpr) and str(node.op).lower() == "count":
        return zero, zero, Fraction(1)
    if isinstance(node, p.Call):
        name = node.func.name
        if name == "time":
            return zero, Fraction(1), zero
        if name in ("vector", "scalar") or name in _OVER_TIME:
            return _linear(node.args[-1], divisors)
    if isinstance(node, p.BinaryExpr):
        op = str(node.op)
        if op in ("or", "and", "unless"):
            return _linear(node.lhs, divisors)
        lhs = _linear(node.lhs, divisors)
        if op == "/" and not isinstance(node.rhs, p.NumberLiteral):
            divisors.append(node.rhs)  # its gauges are fed 1
            return lhs
        rhs = _linear(node.rhs, divisors)
        if op in ("+", "-"):
            sign = 1 if op == "+" else -1
            return tuple(x + sign * y for x, y in zip(lhs, rhs, strict=True))  # type: ignore[return-value]
        if op == "*" and (rhs[0], rhs[1]) == (0, 0):
            return tuple(x * rhs[2] for x in lhs)  # type: ignore[return-value]
        if op == "*" and (lhs[0], lhs[1]) == (0, 0):
            return tuple(x * lhs[2] for x in rhs)  # type: ignore[return-value]
        if op == "/" and rhs[2] != 0:
            return tuple(x / rhs[2] for x in lhs)  # type: ignore[return-value]
    raise SynthesisError(f"cannot derive gauge values for the threshold query at "
                         f"{str(node)[:80]!r}; write `tests: false` or a simpler query")


def _gauges(node: Any) -> list[tuple[str, dict[str, str]]]:
    out = []
    for name, ms in _selectors(node):
        labels = _labels_for(ms) if name else None
        if name is None or labels is None:
            raise SynthesisError("a threshold query selector without a metric name or with "
                                 "matchers no label values satisfy")
        out.append((name, labels))
    return out


def _dec(value: Fraction) -> Decimal:
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(Decimal("1e-9")) \
        .normalize()


def _sliced(condition: Condition) -> Condition | None:
    """The inner condition of a timeslice form, `avg_over_time(((q) op bool v)[w:]) >= t`
    (OpenSLO Timeslices): a gauge held on one side of v fills every slice alike."""
    p = promql_parser
    expr = p.parse(condition.query)
    if not (isinstance(expr, p.Call) and expr.func.name == "avg_over_time"
            and isinstance(expr.args[0], p.SubqueryExpr) and condition.op in (">", ">=")
            and 0 < condition.value <= 1):
        return None
    inner = expr.args[0].expr
    while isinstance(inner, p.ParenExpr):
        inner = inner.expr
    if not (isinstance(inner, p.BinaryExpr) and str(inner.op) in ("<", "<=", ">", ">=")
            and inner.modifier is not None and inner.modifier.return_bool
            and isinstance(inner.rhs, p.NumberLiteral)):
        return None
    return Condition(str(inner.lhs), str(inner.op), Decimal(str(inner.rhs.val)))


def _threshold_synth(condition: Condition) -> tuple[SynthSeries, ...]:
    condition = _sliced(condition) or condition
    expr = promql_parser.parse(condition.query)
    divisors: list[Any] = []
    a, b, c = _linear(expr, divisors)
    if a == 0:
        raise SynthesisError("the threshold query does not move with its gauges; write "
                             "`tests: false` or a query over the gauges")
    value = Fraction(condition.value)
    margin = abs(value) / 2 or Fraction(1)
    # the query's value on the good and the bad side of the condition
    targets = {"==": (value, value + margin), "!=": (value + margin, value)}.get(
        condition.op, (value + margin, value - margin) if condition.op in (">", ">=")
        else (value - margin, value + margin))
    good, bad = (_dec((t - c) / a) for t in targets)
    slope = _dec(-b / a)
    fed_one = {(n, tuple(sorted(lb.items()))) for d in divisors for n, lb in _gauges(d)}
    out: list[SynthSeries] = []
    for name, labels in _gauges(expr):
        key = (name, tuple(sorted(labels.items())))
        if key in fed_one:
            out.append(SynthSeries(name, "gauge", labels=key[1], a=Decimal(1)))
        else:
            out.append(SynthSeries(name, "gauge", labels=key[1], a=good, b=slope, c=bad - good))
    return tuple(dict.fromkeys(out))


@functools.lru_cache(maxsize=4096)
def synth(slo: SLO) -> tuple[SynthSeries, ...]:
    """The series a test feeds for `slo`: the preset's, or derived from its queries and
    checked to give the error ratios the tests expect."""
    if slo.sli.synth == ():
        raise SynthesisError("its inputs (a native histogram) have no promtool 2 notation")
    if slo.sli.synth is not None:
        return slo.sli.synth
    if slo.sli.condition is not None:
        return _threshold_synth(slo.sli.condition)
    try:
        return _derived_synth(slo)
    except (ValueError, steady.Unsupported) as exc:
        raise SynthesisError(str(exc)) from None


# ---- checking a layout in steady state ------------------------------------------------

def _steady_ratio_problem(series: tuple[SynthSeries, ...], ratio: Decimal) -> str | None:
    """Why a steady error share of `ratio` cannot be fed, or None."""
    if ratio in (0, 1) or not any(s.role == "state" for s in series):
        return None
    # each object is wholly good or bad, so a share of 1/N needs N series; promtool's
    # sample limit (10,000 per query) allows a handful over the SLO's windows
    return (f"a steady error share of {_num(ratio)} needs "
            f"{math.ceil(1 / ratio)} series of a gauge whose objects are each good or bad, "
            "more than promtool's sample limit allows")


def _signals(series: tuple[SynthSeries, ...], ratio: Decimal) -> list[steady.Signal]:
    out = []
    for s, labels in _expanded(series):
        kind, value = _steady_value(s, ratio)
        out.append(steady.Signal(tuple(sorted({**labels, "__name__": s.metric}.items())),
                                 kind, float(value)))
    return out


def _steady_value(s: SynthSeries, ratio: Decimal) -> tuple[Literal["counter", "gauge"], Decimal]:
    if s.role in ("gauge", "state"):
        return "gauge", _gauge_value(s, ratio)
    return "counter", RATE * {"good": 1 - ratio, "bad": ratio, "total": Decimal(1)}[s.role]


def _gauge_value(s: SynthSeries, ratio: Decimal, t: int = 0) -> Decimal:
    """A gauge's value at `t` seconds; a `state` object is bad once the share reaches 1."""
    if s.role == "state":
        return s.a + (s.c if ratio == 1 else 0)
    return s.a + s.b * t + s.c * ratio


def _close(value: float, expected: Decimal) -> bool:
    return math.isclose(value, float(expected), rel_tol=1e-6, abs_tol=1e-12)


def _ratio_query(slo: SLO, window: int) -> str:
    """The SLI's error ratio over `window`, straight from its own queries.

    Independent of how the rules record it. A missing good series is left missing (so a
    layout relying on it is refused): Prometheus versions of the rules differ on it.
    """
    sli = slo.sli
    if sli.ratio is not None:
        return promql.substitute_window(sli.ratio, window)
    assert sli.total is not None and sli.errors is not None

    def query(template: str) -> str:  # a grouped SLO's sides, summed to its groups
        text = promql.substitute_window(template, window)
        return promql.aggregate_to(text, slo.group_by) if slo.group_by else text

    total = query(sli.total)
    if sli.good is not None:
        return f"1 - ({query(sli.good)}) / ({total})"
    return f"({query(sli.errors)}) / ({total}) or ({total}) * 0"


def _check(slo: SLO, series: tuple[SynthSeries, ...]) -> str | None:
    """Why `series` would not give `slo` the error ratios the tests expect, or None."""
    if any(s.b for s in series):
        return "a gauge that moves with time"
    query = _ratio_query(slo, CHECK_WINDOW)
    half = slo.budget / 2
    steady_half = [] if _steady_ratio_problem(series, half) else [half]
    for ratio in (Decimal(0), Decimal(1), *steady_half):
        try:
            result = steady.evaluate(query, _signals(series, ratio))
        except steady.Unsupported as exc:
            return f"cannot check the derived inputs against the query ({exc})"
        if not result and ratio == 0:
            continue
        if not result or not all(_close(v, ratio) for v in result.values()):
            got = ", ".join(f"{v:.6g}" for v in result.values()) or "no series"
            return (f"the inputs derived from the queries give an error ratio of {got} "
                    f"where {_num(ratio)} is meant")
    return None


# ---- scenario -> input series ---------------------------------------------------------

def _num(value: Decimal) -> str:
    return decimal_str(value.quantize(Decimal("1e-9")) if value.as_tuple().exponent < -9
                       else value)


def _series_labels(s: SynthSeries) -> dict[str, str]:
    labels = dict(s.labels)
    if s.selector.strip() not in ("", "{}"):
        # the user's selector wins over a preset's example labels (e.g. namespace)
        _, ms = _parse_matchers("m" + s.selector)
        chosen = _labels_for(ms)
        if chosen is None:
            raise SynthesisError(f"no label values satisfy the selector {s.selector}")
        labels.update(chosen)
    return labels


#: the bucket ladder of Prometheus client libraries' default histogram
DEFAULT_BUCKETS = tuple(Decimal(b) for b in ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
                                             "0.5", "1", "2.5", "5", "10"))


#: histograms whose buckets we know: the exporter's own probe
_KNOWN_LADDERS = {f"{names.PROBE_DURATION}_bucket":
                  tuple(Decimal(str(b)) for b in names.PROBE_BUCKETS)}


def _ladder(s: SynthSeries, labels: dict[str, str]) -> list[tuple[SynthSeries, dict[str, str]]]:
    """A whole histogram around the good bucket: nothing below the threshold, the good
    requests at it, every request from the next boundary up (bad ones fall between)."""
    text = labels["le"]
    try:
        threshold = Decimal(text)
    except ArithmeticError:
        return [(s, labels)]
    if not threshold.is_finite():
        return [(s, labels)]
    known = _KNOWN_LADDERS.get(s.metric, DEFAULT_BUCKETS)
    ladder = sorted(set(known) | {threshold})
    out = []
    for bound in ladder:
        le = text if bound == threshold else decimal_str(bound)
        if bound < threshold:
            role = replace(s, role="gauge", a=Decimal(0), b=Decimal(0), c=Decimal(0))
        else:
            role = s if bound == threshold else replace(s, role="total")
        out.append((role, {**labels, "le": le}))
    out.append((replace(s, role="total"), {**labels, "le": "+Inf"}))
    return out


def _expanded(series: tuple[SynthSeries, ...]) -> list[tuple[SynthSeries, dict[str, str]]]:
    """Every concrete series a test feeds, with whole histogram ladders."""
    out: list[tuple[SynthSeries, dict[str, str]]] = []
    for s in series:
        labels = _series_labels(s)
        if s.role == "good" and s.metric.endswith("_bucket") and "le" in labels:
            out.extend(_ladder(s, labels))
        else:
            out.append((s, labels))
    seen: dict[str, tuple[str, Decimal, Decimal, Decimal]] = {}
    unique = []
    for s, labels in out:
        name = promql.selector(s.metric, sorted(labels.items()))
        values = (s.role, s.a, s.b, s.c)
        if seen.setdefault(name, values) != values:
            raise SynthesisError(f"two inputs would be the same series {name} with other "
                                 "values")
        if seen[name] is values:
            unique.append((s, labels))
    return unique


def _values(s: SynthSeries, segments: list[Segment], interval: int) -> str:
    parts = []
    step = 0
    value = Decimal(0)
    for seg in segments:
        r = seg.ratio
        if s.role in ("gauge", "state"):
            start = _gauge_value(s, r, step * interval)
            parts.append(f"{_num(start)}+{_num(s.b * interval)}x{seg.steps - 1}")
            step += seg.steps
            continue
        share = {"good": 1 - r, "bad": r, "total": Decimal(1)}[s.role]
        inc = RATE * share * interval
        if step == 0:
            parts.append(f"{_num(value)}+{_num(inc)}x{seg.steps - 1}")
            value += inc * (seg.steps - 1)
        else:
            parts.append(f"{_num(value + inc)}+{_num(inc)}x{seg.steps - 1}")
            value += inc * seg.steps
        step += seg.steps
    return " ".join(parts)


def input_series(slo: SLO, segments: list[Segment], interval: int,
                 group: dict[str, str] | None = None) -> list[dict[str, str]]:
    """The series of one scenario; `group` stamps a grouped SLO's group labels on each."""
    series = synth(slo)
    for seg in segments:
        problem = _steady_ratio_problem(series, seg.ratio)
        if problem:
            raise SynthesisError(problem)
    raw = _raw_group(slo, group or {})
    return [{"series": promql.selector(s.metric, sorted({**labels, **raw}.items())),
             "values": _values(s, segments, interval)} for s, labels in _expanded(series)]


#: `label_replace(X, "dst", "$1", "src", "(.*)")`: a group label copied from another
#: (Pyrra's grouping by a label sloexporter sets, carried as exported_<label>)
_LABEL_COPY = re.compile(
    r'label_replace\(.*?,\s*"(\w+)",\s*"\$1",\s*"(\w+)",\s*"\(\.\*\)"\s*\)', re.S)


def _label_copies(slo: SLO) -> dict[str, str]:
    return {dst: src for query in _sli_queries(slo)
            for dst, src in _LABEL_COPY.findall(query)}


def _raw_group(slo: SLO, group: dict[str, str]) -> dict[str, str]:
    """A group's labels as the raw series carry them: a copied label by its source."""
    copies = _label_copies(slo)
    return {copies.get(label, label): value for label, value in group.items()}


def group_values(slo: SLO) -> tuple[dict[str, str], dict[str, str]]:
    """Two groups of a grouped SLO, as label sets its selectors allow: the one a test
    breaks and one that must stay quiet. Unconstrained labels get `a` and `b`."""
    # the queries' own matchers too: a derived series carries them only as the one
    # value picked for it, and a group value must satisfy them as well
    matchers = [m for s in synth(slo) if s.selector.strip() not in ("", "{}")
                for m in _parse_matchers("m" + s.selector)[1]]
    matchers += [m for query in _sli_queries(slo) for _, ms in _selectors(_parse(query))
                 for m in ms]
    copies = _label_copies(slo)
    first: dict[str, str] = {}
    second: dict[str, str] = {}
    for label in slo.group_by:
        raw = copies.get(label, label)
        on_label = [(label, op, p) for name, op, p in matchers if name == raw] \
            + [(label, "!=", "")]
        if len(on_label) == 1:
            first[label], second[label] = "a", "b"
            continue
        a = _pick(on_label)
        b = None if a is None else _pick([*on_label, (label, "!=", a)])
        if a is None or b is None:
            raise SynthesisError(f"the SLI's selectors allow only one value of the group "
                                 f"label {label!r}, so a second group cannot be fed")
        first[label], second[label] = a, b
    return first, second


# ---- assertions -----------------------------------------------------------------------

def count_alerts(slo: SLO, over: int | None, severity: str | None = None,
                 group: dict[str, str] | None = None) -> str:
    """1 if an alert of `slo` (of one group) is firing now (over=None), or was active at
    all in `over`."""
    if over is None:
        sel = promql.alerts_selector(slo, severity, "firing", group)
    else:
        sel = f"max_over_time({promql.alerts_selector(slo, severity, None, group)}[{over}s])"
    return f"clamp_max(count({sel}), 1) or vector(0)"


def expect(expr: str, at: int, value: int | str) -> dict[str, Any]:
    return {"expr": expr, "eval_time": f"{at}s",
            "exp_samples": [{"labels": "{}", "value": value}]}


def _minutes(seconds: Decimal | float) -> int:
    return int(math.ceil(float(seconds) / 60)) * 60


def detection_budget(slo: SLO, severity: str) -> tuple[int, int]:
    """(lead-in, seconds until `severity` must fire) for a total outage."""
    times = [(d, t) for t in slo.tiers if t.severity == severity
             if (d := detection_seconds(t, slo.objective, Decimal(1), slo.period)) is not None]
    if not times:
        raise SynthesisError(f"no {severity} tier can fire at objective "
                             f"{decimal_str(slo.objective)}")
    theory, tier = min(times, key=lambda x: x[0])
    settings = slo.alerting.settings(severity)
    return tier.long_window, _minutes(theory) + settings.for_ + 2 * EVAL_INTERVAL


def _firing_severities(slo: SLO) -> list[str]:
    """page, then ticket: the severities with a tier that a total outage trips."""
    return [sev for sev in ("page", "ticket") if any(
        t.severity == sev and detection_seconds(t, slo.objective, Decimal(1), slo.period)
        is not None for t in slo.tiers)]


def outage_test(slo: SLO) -> dict[str, Any] | None:
    severities = _firing_severities(slo)
    if not severities:
        if slo.tiers:
            raise SynthesisError(f"no alert tier can fire at objective "
                                 f"{decimal_str(slo.objective)}")
        return None
    severity = severities[0]
    lead, within = detection_budget(slo, severity)
    steps_lead = lead // EVAL_INTERVAL
    steps_out = within // EVAL_INTERVAL + 5
    segments = [Segment(steps_lead + 1, Decimal(0)), Segment(steps_out, Decimal(1))]
    label = severity_label(slo, severity)
    if slo.group_by:
        return _grouped_outage_test(slo, segments, lead, within, label)
    return {
        "name": f"{slo.name}: a total outage fires {label} within {within // 60}m",
        "interval": f"{EVAL_INTERVAL}s",
        "input_series": input_series(slo, segments, EVAL_INTERVAL),
        "promql_expr_test": [
            expect(count_alerts(slo, lead), lead, 0),
            expect(count_alerts(slo, None, label), lead + within, 1),
        ],
    }


def _grouped_outage_test(slo: SLO, segments: list[Segment], lead: int, within: int,
                         label: str) -> dict[str, Any]:
    """One group's total outage pages that group alone: the other group, healthy
    throughout, has no alert of any severity, not even pending."""
    broken, healthy = group_values(slo)
    steps = sum(seg.steps for seg in segments)
    end = lead + within
    return {
        "name": (f"{slo.name}: a total outage of group {_group_name(broken)} fires {label} "
                 f"within {within // 60}m; group {_group_name(healthy)} stays quiet"),
        "interval": f"{EVAL_INTERVAL}s",
        "input_series": (input_series(slo, segments, EVAL_INTERVAL, broken)
                         + input_series(slo, [Segment(steps, Decimal(0))], EVAL_INTERVAL,
                                        healthy)),
        "promql_expr_test": [
            expect(count_alerts(slo, lead), lead, 0),
            expect(count_alerts(slo, None, label, broken), end, 1),
            expect(count_alerts(slo, end, None, healthy), end, 0),
        ],
    }


def _group_name(group: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in group.items())


def steady_test(slo: SLO, burn: Decimal, duration: int | None = None,
                interval: int = EVAL_INTERVAL) -> tuple[dict[str, Any], int]:
    """Errors at `burn` x the budget rate from t=0; returns the test and its end time."""
    ratio = slo.budget * burn
    if duration is None:
        # The ratio of a steady rate is the same in every window, so the page windows plus
        # an hour show it; longer runs only make users' CI slower (3d of data: ~1 min).
        pages = [t.long_window for t in slo.tiers if t.severity == "page"]
        duration = max(pages or [3600]) + 3600
    steps = duration // interval + 1
    return {
        "name": f"{slo.name}: steady errors at {_num(burn)}x the budget rate",
        "interval": f"{interval}s",
        "input_series": input_series(slo, [Segment(steps, ratio)], interval,
                                     group_values(slo)[0] if slo.group_by else None),
    }, duration


def half_budget_test(slo: SLO) -> dict[str, Any]:
    test, end = steady_test(slo, Decimal("0.5"))
    ratio = slo.budget / 2
    check_window = max(w for w in slo.windows if w <= end)
    seen = (f"{promql.slo_selector(promql.error_ratio_name(check_window), slo)} "
            f"> {_num(ratio * Decimal('0.9'))} < {_num(ratio * Decimal('1.1'))}")
    test["name"] = f"{slo.name}: steady errors at half the budget rate never alert"
    test["promql_expr_test"] = [
        # the errors really flow, so "no alert" is not vacuous
        expect(f"clamp_max(count({seen}), 1) or vector(0)", end, 1),
        expect(count_alerts(slo, end), end, 0),
    ]
    return test


def condition_holds_test(slo: SLO) -> dict[str, Any]:
    """A threshold SLI whose condition holds throughout: measured at 0, nothing fires.

    (A steady fractional share cannot be fed to a 1/0 condition, so this replaces the
    half-budget test.)"""
    test, end = steady_test(slo, Decimal(0))
    check_window = max(w for w in slo.windows if w <= end)
    measured = f"{promql.slo_selector(promql.error_ratio_name(check_window), slo)} == 0"
    test["name"] = f"{slo.name}: the condition holds throughout; nothing fires"
    test["promql_expr_test"] = [
        expect(f"clamp_max(count({measured}), 1) or vector(0)", end, 1),
        expect(count_alerts(slo, end), end, 0),
    ]
    return test


def no_data_test(slo: SLO) -> dict[str, Any] | None:
    """A threshold SLI whose gauges never report: missing data is bad, so it alerts."""
    severity = next((s for s in ("page", "ticket") if any(t.severity == s for t in slo.tiers)),
                    None)
    if severity is None:
        return None
    _, within = detection_budget(slo, severity)
    label = severity_label(slo, severity)
    return {
        "name": f"{slo.name}: no data at all fires {label} within {within // 60}m",
        "interval": f"{EVAL_INTERVAL}s",
        "input_series": [],
        "promql_expr_test": [expect(count_alerts(slo, None, label), within, 1)],
    }


@dataclass(frozen=True)
class Skipped:
    """An SLO whose promtool tests were left out (`partial`: only the steady-errors one)."""

    slo: SLO
    reason: str
    partial: bool = False

    def __str__(self) -> str:
        what = "no steady-errors test" if self.partial else "no promtool tests"
        return f"{self.slo.origin}: SLO {self.slo.service}/{self.slo.name}: {what}: {self.reason}"


#: what makes an SLO's tests impossible to write; a run goes on without them
_UNSYNTHESISABLE = (SynthesisError, steady.Unsupported, ValueError, ArithmeticError)


def slo_tests(slo: SLO) -> tuple[list[dict[str, Any]], Skipped | None]:
    """The tests of one SLO, and why some or all of them were left out."""
    try:
        outage = outage_test(slo)
    except _UNSYNTHESISABLE as exc:
        return [], Skipped(slo, str(exc) or type(exc).__name__)
    tests = [outage] if outage is not None else []
    try:
        if slo.sli.condition is not None:
            tests += [t for t in (condition_holds_test(slo), no_data_test(slo)) if t]
        else:
            tests.append(half_budget_test(slo))
    except _UNSYNTHESISABLE as exc:
        return tests, Skipped(slo, str(exc) or type(exc).__name__, partial=bool(tests))
    return tests, None


def service_tests(service: Service) -> tuple[list[dict[str, Any]], list[Skipped]]:
    """Every test of the service's SLOs that opted in, and the SLOs left out."""
    tests: list[dict[str, Any]] = []
    skipped: list[Skipped] = []
    for slo in service.slos:
        if not slo.tests:
            continue
        found, skip = slo_tests(slo)
        tests += found
        if skip is not None:
            skipped.append(skip)
    return tests, skipped


def promtool_test_file(rules_file: str, tests: list[dict[str, Any]]) -> dict[str, Any]:
    return {"rule_files": [rules_file], "evaluation_interval": f"{EVAL_INTERVAL}s",
            "tests": tests}


def render_tests(service: Service, rules_file: str) -> tuple[str | None, list[Skipped]]:
    """The promtool test file of `service` (None when no SLO has a test), and the skips."""
    tests, skipped = service_tests(service)
    if not tests:
        return None, skipped
    return header([service_source(service)]) + to_yaml(
        promtool_test_file(rules_file, tests)), skipped


def summary(services: list[Service], skipped: list[Skipped]) -> str | None:
    """The closing line of a `--with-tests` run when some SLOs have no or fewer tests."""
    total = sum(len(s.slos) for s in services)
    off = sum(not slo.tests for s in services for slo in s.slos)
    parts = []
    none = sum(not s.partial for s in skipped)
    partial = len(skipped) - none
    if none:
        parts.append(f"no promtool tests for {none} of {total} SLOs whose inputs cannot be "
                     "synthesised")
    if partial:
        parts.append(f"no steady-errors test for {partial}")
    if off:
        parts.append(f"{off} with `tests: false`")
    if not parts:
        return None
    hint = " (see the warnings above; `tests: false` silences one)" if skipped else ""
    return "; ".join(parts) + hint
