"""Evaluate an SLI query in steady state over synthetic series, without Prometheus.

The test generator derives input series from a query's selectors; before it writes a
test it checks here that those inputs really give the error ratio the test expects (0,
1, half the budget), so a generated test can never fail because the inputs were guessed
wrong. In steady state every counter grows at a constant rate and every gauge holds a
constant value, so each range function has a closed form (`rate` is the slope,
`sum_over_time` is value x samples). Anything outside that subset raises Unsupported and
the generator skips the SLO instead of guessing.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import promql_parser

Labels = tuple[tuple[str, str], ...]
Vector = dict[Labels, float]
NAME = "__name__"
#: seconds between samples: the input series interval and the subquery resolution
STEP = 60


class Unsupported(Exception):
    """The query uses PromQL this evaluator does not model."""


@dataclass(frozen=True)
class Signal:
    """A synthetic series: a counter growing `value` per second, or a gauge at `value`."""

    labels: Labels
    kind: Literal["counter", "gauge"]
    value: float


@dataclass(frozen=True)
class Range:
    items: tuple[tuple[Labels, str, float], ...]
    seconds: float

    @property
    def samples(self) -> float:
        return self.seconds / STEP


def _label_replace(labels: Labels, dst: str, replacement: str, src: str,
                   regex: str) -> Labels:
    """Prometheus's label_replace: a full match of `regex` on `src` sets `dst` to the
    expanded replacement ($1, ${1}, $name; an empty result removes `dst`)."""
    found = re.fullmatch(regex, dict(labels).get(src, ""))
    if found is None:
        return labels

    def group(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        key = m.group(1) or m.group(2)
        try:
            return found.group(int(key) if key.isdigit() else key) or ""
        except IndexError:
            return ""

    value = re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)", group, replacement)
    rest = tuple(kv for kv in labels if kv[0] != dst)
    return tuple(sorted(rest + ((dst, value),))) if value else rest


def _drop_name(labels: Labels) -> Labels:
    return tuple(kv for kv in labels if kv[0] != NAME)


#: (label, op, value), op as PromQL writes it: = != =~ !~
Matcher = tuple[str, str, str]
_MATCH_OPS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}


def selector_matchers(sel: Any) -> list[Matcher]:
    """The label matchers of a parsed vector selector (the metric name is not one)."""
    return [(m.name, _MATCH_OPS[str(m.op).rpartition(".")[2]], m.value)
            for m in sel.matchers.matchers]


def label_matches(op: str, pattern: str, value: str) -> bool:
    """Whether `value` satisfies the matcher; an invalid regex raises re.error."""
    if op == "=":
        return value == pattern
    if op == "!=":
        return value != pattern
    hit = re.fullmatch(pattern, value) is not None
    return hit if op == "=~" else not hit


def _match(op: str, pattern: str, value: str) -> bool:
    try:
        return label_matches(op, pattern, value)
    except re.error as exc:
        raise Unsupported(f"regex {pattern!r}") from exc


def _select(sel: Any, signals: Iterable[Signal]) -> list[Signal]:
    if sel.matchers.or_matchers:
        raise Unsupported("`or` inside a selector")
    matchers = selector_matchers(sel)
    if sel.name:
        matchers.append((NAME, "=", sel.name))
    return [s for s in signals
            if all(_match(op, v, dict(s.labels).get(n, "")) for n, op, v in matchers)]


_ARITH: dict[str, Callable[[float, float], float]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul,
    "/": lambda a, b: a / b if b else (math.nan if a == 0 or math.isnan(a)
                                       else math.copysign(math.inf, a)),
    "%": lambda a, b: math.fmod(a, b) if b else math.nan,
    "^": lambda a, b: a ** b,
}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt,
    ">=": operator.ge, "<=": operator.le,
}
_OVER_TIME: dict[str, Callable[[float, float], float]] = {
    "avg_over_time": lambda v, n: v, "min_over_time": lambda v, n: v,
    "max_over_time": lambda v, n: v, "last_over_time": lambda v, n: v,
    "sum_over_time": lambda v, n: v * n, "count_over_time": lambda v, n: n,
    "present_over_time": lambda v, n: 1.0, "stddev_over_time": lambda v, n: 0.0,
    "stdvar_over_time": lambda v, n: 0.0, "changes": lambda v, n: 0.0,
    "delta": lambda v, n: 0.0, "deriv": lambda v, n: 0.0, "idelta": lambda v, n: 0.0,
}
_ELEMENTWISE: dict[str, Callable[[float], float]] = {
    "abs": abs, "ceil": math.ceil, "floor": math.floor, "sgn": lambda v: math.copysign(1, v)
    if v else 0.0, "exp": math.exp, "sqrt": math.sqrt,
}


class Evaluator:
    def __init__(self, signals: Iterable[Signal]) -> None:
        self.signals = tuple(signals)

    def eval(self, node: Any) -> float | Vector | Range:
        handler = getattr(self, f"_{type(node).__name__}", None)
        if handler is None:
            raise Unsupported(type(node).__name__)
        return handler(node)  # type: ignore[no-any-return]

    def vector(self, node: Any) -> Vector:
        value = self.eval(node)
        if not isinstance(value, dict):
            raise Unsupported("a scalar or range where a vector is needed")
        return value

    # -- leaves ------------------------------------------------------------------------
    def _NumberLiteral(self, node: Any) -> float:  # noqa: N802
        return float(node.val)

    def _ParenExpr(self, node: Any) -> float | Vector | Range:  # noqa: N802
        return self.eval(node.expr)

    def _UnaryExpr(self, node: Any) -> float | Vector:  # noqa: N802
        value = self.eval(node.expr)
        if isinstance(value, Range):
            raise Unsupported("negated range")
        if isinstance(value, dict):
            return {_drop_name(k): -v for k, v in value.items()}
        return -value

    def _VectorSelector(self, node: Any) -> Vector:  # noqa: N802
        out: Vector = {}
        for s in _select(node, self.signals):
            if s.kind == "counter":
                raise Unsupported("a counter's raw value; only its rate is steady")
            out[s.labels] = s.value
        return out

    def _MatrixSelector(self, node: Any) -> Range:  # noqa: N802
        items = tuple((s.labels, s.kind, s.value)
                      for s in _select(node.vector_selector, self.signals))
        return Range(items, node.range.total_seconds())

    def _SubqueryExpr(self, node: Any) -> Range:  # noqa: N802
        if node.step is not None and node.step.total_seconds() != STEP:
            raise Unsupported("a subquery step other than the evaluation interval")
        inner = self.vector(node.expr)
        return Range(tuple((k, "gauge", v) for k, v in inner.items()),
                     node.range.total_seconds())

    # -- functions ---------------------------------------------------------------------
    def _Call(self, node: Any) -> float | Vector:  # noqa: N802
        name = node.func.name
        args = list(node.args)
        if name in ("rate", "irate", "increase"):
            rng = self.eval(args[0])
            assert isinstance(rng, Range)
            factor = rng.seconds if name == "increase" else 1.0
            return {_drop_name(k): (v * factor if kind == "counter" else 0.0)
                    for k, kind, v in rng.items}
        if name in _OVER_TIME:
            rng = self.eval(args[0])
            assert isinstance(rng, Range)
            if any(kind == "counter" for _, kind, _ in rng.items) and \
                    name not in ("count_over_time", "present_over_time"):
                raise Unsupported(f"{name} over a counter")
            return {_drop_name(k): _OVER_TIME[name](v, rng.samples) for k, _, v in rng.items}
        if name == "vector":
            return {(): self._scalar(args[0])}
        if name == "scalar":
            vec = self.vector(args[0])
            return next(iter(vec.values())) if len(vec) == 1 else math.nan
        if name == "absent":
            return {} if self.vector(args[0]) else {(): 1.0}
        if name in _ELEMENTWISE:
            return {_drop_name(k): _ELEMENTWISE[name](v)
                    for k, v in self.vector(args[0]).items()}
        if name in ("clamp", "clamp_min", "clamp_max"):
            vec = self.vector(args[0])
            bounds = [self._scalar(a) for a in args[1:]]
            lo = bounds[0] if name in ("clamp", "clamp_min") else -math.inf
            hi = bounds[-1] if name in ("clamp", "clamp_max") else math.inf
            return {_drop_name(k): min(max(v, lo), hi) for k, v in vec.items()}
        if name == "label_replace":
            dst, replacement, src, regex = (str(a.val) for a in args[1:])
            return {_label_replace(k, dst, replacement, src, regex): v
                    for k, v in self.vector(args[0]).items()}
        raise Unsupported(f"function {name}")

    def _scalar(self, node: Any) -> float:
        value = self.eval(node)
        if not isinstance(value, float):
            raise Unsupported("a vector where a number is needed")
        return value

    # -- aggregation -------------------------------------------------------------------
    def _AggregateExpr(self, node: Any) -> Vector:  # noqa: N802
        op = str(node.op)
        if op not in ("sum", "avg", "min", "max", "count", "group", "stddev", "stdvar"):
            raise Unsupported(f"aggregation {op}")
        vec = self.vector(node.expr)
        groups: dict[Labels, list[float]] = {}
        for labels, value in vec.items():
            groups.setdefault(self._group_key(node.modifier, labels), []).append(value)
        fold: dict[str, Callable[[list[float]], float]] = {
            "sum": math.fsum, "avg": lambda vs: math.fsum(vs) / len(vs), "min": min,
            "max": max, "count": lambda vs: float(len(vs)), "group": lambda vs: 1.0,
            "stddev": lambda vs: 0.0 if len(set(vs)) == 1 else math.nan,
            "stdvar": lambda vs: 0.0 if len(set(vs)) == 1 else math.nan,
        }
        return {k: fold[op](vs) for k, vs in groups.items()}

    @staticmethod
    def _group_key(modifier: Any, labels: Labels) -> Labels:
        if modifier is None:
            return ()
        names = set(modifier.labels)
        if "Without" in str(modifier.type):
            return tuple(kv for kv in labels if kv[0] not in names and kv[0] != NAME)
        return tuple(kv for kv in labels if kv[0] in names)

    # -- binary operators --------------------------------------------------------------
    def _BinaryExpr(self, node: Any) -> float | Vector:  # noqa: N802
        op = str(node.op)
        lhs, rhs = self.eval(node.lhs), self.eval(node.rhs)
        if isinstance(lhs, Range) or isinstance(rhs, Range):
            raise Unsupported("a range vector in a binary operation")
        modifier = node.modifier
        as_bool = bool(modifier is not None and modifier.return_bool)
        if isinstance(lhs, float) and isinstance(rhs, float):
            if op in _COMPARE:
                return float(_COMPARE[op](lhs, rhs))
            return _ARITH[op](lhs, rhs)
        if isinstance(lhs, float) or isinstance(rhs, float):
            return self._vector_scalar(op, lhs, rhs, as_bool)
        assert isinstance(lhs, dict) and isinstance(rhs, dict)
        matching = modifier.matching if modifier is not None else None
        if op in ("and", "or", "unless"):
            return self._set_op(op, lhs, rhs, matching)
        card = str(modifier.card) if modifier is not None else "OneToOne"
        if "ManyToMany" in card:
            raise Unsupported("many-to-many matching")
        return self._vector_vector(op, lhs, rhs, matching, card, as_bool,
                                   list(modifier.group_labels or ()) if modifier else [])

    @staticmethod
    def _signature(labels: Labels, matching: Any) -> Labels:
        if matching is None:
            return _drop_name(labels)
        names = set(matching.labels)
        if "Include" in str(matching.type):
            return tuple(kv for kv in labels if kv[0] in names)
        return tuple(kv for kv in labels if kv[0] not in names and kv[0] != NAME)

    def _set_op(self, op: str, lhs: Vector, rhs: Vector, matching: Any) -> Vector:
        right = {self._signature(k, matching) for k in rhs}
        if op == "and":
            return {k: v for k, v in lhs.items() if self._signature(k, matching) in right}
        if op == "unless":
            return {k: v for k, v in lhs.items() if self._signature(k, matching) not in right}
        left = {self._signature(k, matching) for k in lhs}
        out = dict(lhs)
        out.update({k: v for k, v in rhs.items() if self._signature(k, matching) not in left})
        return out

    @staticmethod
    def _vector_scalar(op: str, lhs: float | Vector, rhs: float | Vector,
                       as_bool: bool) -> Vector:
        vec_left = isinstance(lhs, dict)
        vec = lhs if isinstance(lhs, dict) else rhs
        num = rhs if vec_left else lhs
        assert isinstance(vec, dict) and isinstance(num, float)
        out: Vector = {}
        for labels, v in vec.items():
            a, b = (v, num) if vec_left else (num, v)
            if op in _COMPARE:
                hit = _COMPARE[op](a, b)
                if as_bool:
                    out[_drop_name(labels)] = float(hit)
                elif hit:
                    out[labels] = v
            else:
                out[_drop_name(labels)] = _ARITH[op](a, b)
        return out

    def _vector_vector(self, op: str, lhs: Vector, rhs: Vector, matching: Any, card: str,
                       as_bool: bool, include: list[str]) -> Vector:
        many_left = "ManyToOne" in card
        many_right = "OneToMany" in card
        one, many = (rhs, lhs) if not many_right else (lhs, rhs)
        index: dict[Labels, tuple[Labels, float]] = {}
        for labels, v in one.items():
            sig = self._signature(labels, matching)
            if sig in index:
                raise Unsupported("duplicate series on the 'one' side of a match")
            index[sig] = (labels, v)
        out: Vector = {}
        for labels, v in many.items():
            hit = index.get(self._signature(labels, matching))
            if hit is None:
                continue
            other_labels, other = hit
            a, b = (v, other) if not many_right else (other, v)
            result_labels = labels
            if not (many_left or many_right):
                if matching is not None:  # on() keeps, ignoring() drops the listed labels
                    result_labels = self._signature(labels, matching)
            elif include:
                extra = dict(other_labels)
                merged = dict(labels)
                merged.update({n: extra[n] for n in include if n in extra})
                result_labels = tuple(sorted(merged.items()))
            if op in _COMPARE:
                keep = _COMPARE[op](a, b)
                if as_bool:
                    value = float(keep)
                elif keep:
                    value = a
                else:
                    continue
            else:
                value = _ARITH[op](a, b)
            if op not in _COMPARE or as_bool:
                result_labels = _drop_name(result_labels)
            if result_labels in out:
                raise Unsupported("a match that yields duplicate series")
            out[result_labels] = value
        return out


def evaluate(query: str, signals: Iterable[Signal]) -> Vector:
    """The instant vector `query` yields in steady state over `signals`."""
    try:
        node = promql_parser.parse(query)
    except ValueError as exc:
        raise Unsupported(f"unparsable query: {exc}") from None
    result = Evaluator(signals).eval(node)
    if isinstance(result, float):
        return {(): result}
    if isinstance(result, Range):
        raise Unsupported("a range vector as the result")
    return result
