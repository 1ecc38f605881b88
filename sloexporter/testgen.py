"""Generate `promtool test rules` files that prove each SLO's alerts behave.

For every SLO: a total outage pages within the theoretical detection time plus two
evaluation intervals (and nothing fires before it starts), and steady errors at half
the budget rate never alert. Inputs come from the SLI's own metrics: presets describe
them, and for hand-written queries they are derived from the queries' selectors.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import promql_parser

from sloexporter import promql
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
_POOL = ("500", "503", "200", "204", "404", "0", "1", "error", "ok", "true", "false",
         "success", "failure", "5xx", "2xx", "GET", "x")


class SynthesisError(Exception):
    """The test inputs for an SLO cannot be derived from its queries."""


@dataclass(frozen=True)
class Segment:
    steps: int
    ratio: Decimal


# ---- label values that satisfy a selector -------------------------------------------

Matcher = tuple[str, str, str]  # (label, op, value), op in = != =~ !~


def _matches(op: str, pattern: str, value: str) -> bool:
    if op == "=":
        return value == pattern
    if op == "!=":
        return value != pattern
    try:
        hit = re.fullmatch(pattern, value) is not None
    except re.error:
        return False
    return hit if op == "=~" else not hit


def _candidates(matchers: list[Matcher]) -> list[str]:
    """Equality values first, then common label values, then literal regex alternatives."""
    values = [m[2] for m in matchers if m[1] == "="] + list(_POOL)
    for _, op, pattern in matchers:
        if op in ("=~", "!~"):
            values += [p.strip("^$()") for p in pattern.split("|")]
    return values


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
    ops = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}
    matchers = [(m.name, ops[str(m.op).rpartition(".")[2]], m.value) for m in sel.matchers.matchers]
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

def _selectors(query: str) -> list[tuple[str | None, list[Matcher]]]:
    found: list[tuple[str | None, list[Matcher]]] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(_selector_parts(node))

    promql_parser.walk(promql_parser.parse(promql.substitute_window(query, 300)), visit)
    return found


def _derived_synth(slo: SLO) -> tuple[SynthSeries, ...]:
    sli = slo.sli
    if sli.ratio is not None:
        expr = promql_parser.parse(promql.substitute_window(sli.ratio, 300))
        while isinstance(expr, promql_parser.ParenExpr):
            expr = expr.expr
        if not (isinstance(expr, promql_parser.BinaryExpr) and str(expr.op) == "/"):
            raise SynthesisError("a ratio query that is not `errors / total`")
        bad_q, total_q, good_q = str(expr.lhs), str(expr.rhs), None
    elif sli.good is not None:
        bad_q, total_q, good_q = None, sli.total, sli.good
    else:
        bad_q, total_q, good_q = sli.errors, sli.total, None
    assert total_q is not None
    totals = _selectors(total_q)
    special = _selectors(good_q if good_q is not None else bad_q or "")
    if not totals or not special:
        raise SynthesisError("queries without a metric selector")
    role, other = ("good", "bad") if good_q is not None else ("bad", "good")
    out: list[SynthSeries] = []
    for name, ms in special:
        if name is None:
            raise SynthesisError("a selector without a metric name")
        labels = _labels_for(ms + [m for tn, tms in totals if tn == name for m in tms])
        if labels is None:
            raise SynthesisError(f"no label values satisfy the selector of {name}")
        out.append(SynthSeries(name, role, labels=tuple(sorted(labels.items()))))
    for name, ms in totals:
        if name is None:
            raise SynthesisError("a selector without a metric name")
        same = [sms for sn, sms in special if sn == name]
        if not same:
            labels = _labels_for(ms)
            kind = "total"
        else:
            labels = _labels_for(ms, same[0])
            kind = other
        if labels is None:
            raise SynthesisError(f"cannot find series of {name} outside the error selector")
        out.append(SynthSeries(name, kind, labels=tuple(sorted(labels.items()))))
    return tuple(dict.fromkeys(out))


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
    for name, ms in _selectors(str(node)):
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


def synth(slo: SLO) -> tuple[SynthSeries, ...]:
    if slo.sli.synth is not None:
        return slo.sli.synth
    if slo.sli.condition is not None:
        return _threshold_synth(slo.sli.condition)
    try:
        return _derived_synth(slo)
    except ValueError as exc:
        raise SynthesisError(str(exc)) from None


# ---- scenario -> input series ---------------------------------------------------------

def _num(value: Decimal) -> str:
    return decimal_str(value.quantize(Decimal("1e-9")) if value.as_tuple().exponent < -9
                       else value)


def _series_name(s: SynthSeries) -> str:
    labels = dict(s.labels)
    if s.selector.strip() not in ("", "{}"):
        # the user's selector wins over a preset's example labels (e.g. namespace)
        _, ms = _parse_matchers("m" + s.selector)
        chosen = _labels_for(ms)
        if chosen is None:
            raise SynthesisError(f"no label values satisfy the selector {s.selector}")
        labels.update(chosen)
    return promql.selector(s.metric, sorted(labels.items()))


def _values(s: SynthSeries, segments: list[Segment], interval: int) -> str:
    parts = []
    step = 0
    value = Decimal(0)
    for seg in segments:
        r = seg.ratio
        if s.role == "gauge":
            start = s.a + s.b * step * interval + s.c * r
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


def input_series(slo: SLO, segments: list[Segment], interval: int) -> list[dict[str, str]]:
    return [{"series": _series_name(s), "values": _values(s, segments, interval)}
            for s in synth(slo)]


# ---- assertions -----------------------------------------------------------------------

def count_alerts(slo: SLO, over: int | None, severity: str | None = None) -> str:
    """1 if an alert of `slo` is firing now (over=None), or was active at all in `over`."""
    if over is None:
        sel = promql.alerts_selector(slo, severity, "firing")
    else:
        sel = f"max_over_time({promql.alerts_selector(slo, severity, None)}[{over}s])"
    return f"clamp_max(count({sel}), 1) or vector(0)"


def expect(expr: str, at: int, value: int | str) -> dict[str, Any]:
    return {"expr": expr, "eval_time": f"{at}s",
            "exp_samples": [{"labels": "{}", "value": value}]}


def _minutes(seconds: Decimal | float) -> int:
    return int(math.ceil(float(seconds) / 60)) * 60


def detection_budget(slo: SLO, severity: str) -> tuple[int, int]:
    """(lead-in, seconds until `severity` must fire) for a total outage."""
    tiers = [t for t in slo.tiers if t.severity == severity]
    times = [(detection_seconds(t, slo.objective, Decimal(1), slo.period), t) for t in tiers]
    theory, tier = min(((d, t) for d, t in times if d is not None), key=lambda x: x[0])
    settings = slo.alerting.settings(severity)
    return tier.long_window, _minutes(theory) + settings.for_ + 2 * EVAL_INTERVAL


def outage_test(slo: SLO) -> dict[str, Any] | None:
    severities = [s for s in ("page", "ticket") if any(t.severity == s for t in slo.tiers)]
    if not severities:
        return None
    severity = severities[0]
    lead, within = detection_budget(slo, severity)
    steps_lead = lead // EVAL_INTERVAL
    steps_out = within // EVAL_INTERVAL + 5
    segments = [Segment(steps_lead + 1, Decimal(0)), Segment(steps_out, Decimal(1))]
    label = severity_label(slo, severity)
    return {
        "name": f"{slo.name}: a total outage fires {label} within {within // 60}m",
        "interval": f"{EVAL_INTERVAL}s",
        "input_series": input_series(slo, segments, EVAL_INTERVAL),
        "promql_expr_test": [
            expect(count_alerts(slo, lead), lead, 0),
            expect(count_alerts(slo, None, label), lead + within, 1),
        ],
    }


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
        "input_series": input_series(slo, [Segment(steps, ratio)], interval),
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


def slo_tests(slo: SLO) -> list[dict[str, Any]]:
    tests = [outage_test(slo)]
    if slo.sli.condition is not None:
        tests += [condition_holds_test(slo), no_data_test(slo)]
    else:
        tests.append(half_budget_test(slo))
    return [t for t in tests if t is not None]


def service_tests(service: Service) -> list[dict[str, Any]]:
    tests = []
    for slo in service.slos:
        try:
            tests += slo_tests(slo)
        except SynthesisError as exc:
            raise SynthesisError(f"{slo.origin}: SLO {slo.name!r}: {exc}") from None
    return tests


def promtool_test_file(rules_file: str, tests: list[dict[str, Any]]) -> dict[str, Any]:
    return {"rule_files": [rules_file], "evaluation_interval": f"{EVAL_INTERVAL}s",
            "tests": tests}


def render_tests(service: Service, rules_file: str) -> str:
    return header([service_source(service)]) + to_yaml(
        promtool_test_file(rules_file, service_tests(service)))
