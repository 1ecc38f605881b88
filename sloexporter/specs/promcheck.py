"""Is this PromQL accepted by promtool 2 AND 3? promql-parser plus what it lets through.

promql-parser (Rust) follows Prometheus 3: it accepts quoted UTF-8 metric and label names,
`or` between matcher lists, functions behind feature flags and functions removed in 3
(`holt_winters`). Rules must load on both, so after parsing, the tree is walked for
exactly those. Each check is pinned against both promtools by tests.
"""

from __future__ import annotations

import functools
import re

import promql_parser

from sloexporter.promql import shape

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")

#: Functions of both Prometheus 2.42 and 3.x without a feature flag.
FUNCTIONS = frozenset(re.split(r"\s+", """
abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes
clamp clamp_max clamp_min cos cosh count_over_time days_in_month day_of_month day_of_week
day_of_year deg delta deriv exp floor histogram_count histogram_sum histogram_fraction
histogram_quantile hour idelta increase irate label_replace label_join last_over_time ln
log10 log2 max_over_time min_over_time minute month pi predict_linear present_over_time
quantile_over_time rad rate resets round scalar sgn sin sinh sort sort_desc sqrt
stddev_over_time stdvar_over_time sum_over_time tan tanh time timestamp vector year
""".strip()))
AGGREGATIONS = frozenset(re.split(r"\s+", "sum min max avg group stddev stdvar count "
                                               "count_values bottomk topk quantile"))

_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
_TOKEN = re.compile(r"""\s+|#[^\n]*|"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`|"""
                    r"""[0-9][0-9a-zA-Z_.]*|[a-zA-Z_:][a-zA-Z0-9_:]*|!=|=~|!~|==|.""", re.S)
_GROUP_LABELS = re.compile(r"group_(?:left|right)\s*\(([^)]*)\)")


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _problems(node: object, out: list[str]) -> None:
    if isinstance(node, promql_parser.VectorSelector):
        if node.name and not METRIC_NAME.match(node.name):
            out.append(f"metric name {node.name!r} needs Prometheus 3's quoted names; "
                       "Prometheus 2 refuses it")
        if node.matchers.or_matchers:
            out.append("'or' between label matchers is Prometheus 3 only")
        for matcher in node.matchers.matchers:
            if not LABEL_NAME.match(matcher.name):
                out.append(f"label name {matcher.name!r} is not a valid Prometheus label "
                           "name (letters, digits and '_', not starting with a digit)")
            if matcher.op in (promql_parser.MatchOp.Re, promql_parser.MatchOp.NotRe):
                regex = str(matcher.value)
                if "(?<" in regex.replace("(?<=", "").replace("(?<!", ""):
                    out.append("named groups written (?<name>...) need Go 1.22; write "
                               "(?P<name>...)")
                problem = regex_problem(regex)
                if problem:
                    out.append(f"regex {regex!r}: Go's regular expressions refuse {problem}")
    elif isinstance(node, promql_parser.Call):
        if node.func.name not in FUNCTIONS:
            out.append(f"function {node.func.name}() is not available in both Prometheus 2 "
                       "and 3 without a feature flag")
    elif isinstance(node, promql_parser.AggregateExpr):
        if str(node.op) not in AGGREGATIONS:
            out.append(f"aggregation {node.op}() is not available in both Prometheus 2 and 3 "
                       "without a feature flag")
        if node.modifier is not None:
            out += _label_list(node.modifier.labels)
    elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
        modifier = node.modifier
        text = str(modifier)
        if "fill" in text:
            out.append("fill modifiers on binary operators are Prometheus 3 only")
        if modifier.matching is not None:
            out += _label_list(modifier.matching.labels)
        for group in _GROUP_LABELS.findall(text):
            out += _label_list(_names(group))


def _label_list(labels: list[str]) -> list[str]:
    return [f"label name {name!r} is not a valid Prometheus label name (letters, digits "
            "and '_', not starting with a digit)" for name in labels
            if not LABEL_NAME.match(name)]


def _text_problems(expr: str) -> list[str]:
    """What Prometheus 2's lexer refuses and promql-parser's does not: durations without
    a unit or outside `[...]` and `offset`, and quoted label names in braces."""
    out: list[str] = []
    brackets: list[str] = []
    previous = before = ""
    inside_range = ""
    for match in _TOKEN.finditer(expr):
        token = match.group()
        if token.isspace() or token.startswith("#"):
            continue
        top = brackets[-1] if brackets else ""
        if top == "[" and token != "]":
            inside_range += token
        elif token in "({[":
            brackets.append(token)
            inside_range = ""
        elif token in ")}]" and brackets:
            brackets.pop()
            if token == "]":
                for n, part in enumerate(inside_range.split(":")):
                    if part and not _DURATION.match(part):
                        out.append(f"range [{inside_range}] needs durations with a unit, "
                                   "like 5m or 1h30m")
                    elif n == 0 and part and not re.search(r"[1-9]", part):
                        out.append(f"range [{inside_range}] is empty: give it a duration "
                                   "above zero")
        elif token[0] in "\"'`" and top == "{" and previous in ("{", ","):
            out.append(f"quoted label name {token} in braces is Prometheus 3 only")
        elif token[0].isdigit() and top != "[" and _DURATION.match(token) and not (
                previous.lower() == "offset" or previous in "+-" and before.lower() == "offset"):
            out.append(f"duration {token} outside a range or offset is Prometheus 3 only")
        elif token[0].isdigit() and previous.lower() == "offset" and not _DURATION.match(token):
            out.append(f"offset {token} needs a unit, like 5m")
        previous, before = token, previous
    return out


_REPEAT = re.compile(r"\{(\d+)(?:,(\d*))?\}")


def regex_problem(regex: str) -> str | None:
    """What Go's RE2 refuses and Rust's regex accepts: nested repetition (`a**`,
    `a{2}{3}`) and repeat counts over 1000."""
    i, last = 0, ""  # last: "" (an atom), "q" (a quantifier), "lazy" (quantifier + ?)
    while i < len(regex):
        ch = regex[i]
        if ch == "\\":
            i, last = i + 2, ""
            continue
        if ch == "[":
            j = i + 1
            if regex[j:j + 1] == "^":
                j += 1
            if regex[j:j + 1] == "]":
                j += 1
            while j < len(regex) and regex[j] != "]":
                j += 2 if regex[j] == "\\" else (regex.find(":]", j) + 2
                                                if regex.startswith("[:", j) and
                                                regex.find(":]", j) > 0 else 1)
            i, last = j + 1, ""
            continue
        repeat = _REPEAT.match(regex, i) if ch == "{" else None
        if ch in "*+?" or repeat:
            if repeat and any(int(n) > 1000 for n in repeat.groups() if n):
                return "a repeat count above 1000"
            if ch == "?" and last == "q":
                last = "lazy"
            elif last:
                return "nested repetition (like a** or a{2}{3})"
            else:
                last = "q"
            i = repeat.end() if repeat else i + 1
            continue
        i, last = i + 1, ""
    return None


#: promql-parser's time grows with the square of the nesting and it overflows its stack
#: (a crash, not an error) near 100,000 levels: refuse long before either
MAX_NESTING = 64
MAX_LENGTH = 16 * 1024
#: binary operators outside braces: a chain of them nests as deep as it is long, and
#: promql-parser's tree walk slows with the cube of that
MAX_OPERATORS = 64
_OPERATORS = {"+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", "and", "or", "unless",
              "atan2"}


def too_big(expr: str, scale: int = 1) -> str | None:
    """Why `expr` is too long, deep or operator-heavy to parse safely, or None. `scale`
    allows for a generated rule holding a user's query several times."""
    if len(expr) > MAX_LENGTH * scale:
        return f"a query of {len(expr):,} characters; at most {MAX_LENGTH * scale:,}"
    if _surely_small(expr, scale):
        return None
    depth = operators = 0
    braces = 0
    for match in _TOKEN.finditer(expr):
        token = match.group()
        if token in ("(", "[", "{"):
            depth += 1
            braces += token == "{"
            if depth > MAX_NESTING + 8 * (scale - 1):
                return f"nested deeper than {MAX_NESTING} levels of brackets"
        elif token in (")", "]", "}"):
            depth -= 1
            braces -= token == "}"
        elif not braces and token.lower() in _OPERATORS:
            operators += 1
            if operators > MAX_OPERATORS * scale:
                return (f"more than {MAX_OPERATORS} binary operators in one query; split it "
                        "into recording rules")
    return None


def _surely_small(expr: str, scale: int) -> bool:
    """True when plain counts already show `expr` within the nesting and operator limits:
    each bracket token is one of the characters counted, and each operator token holds
    a counted character or is a counted word, so the counts are upper bounds and the
    common case skips the tokenizer."""
    brackets = expr.count("(") + expr.count("[") + expr.count("{")
    if brackets > MAX_NESTING + 8 * (scale - 1):
        return False
    operators = sum(map(expr.count, "+-*/%^=!<>")) + \
        sum(map(expr.lower().count, ("and", "or", "unless", "atan2")))
    return operators <= MAX_OPERATORS * scale


def parse(expr: str, scale: int = 1, walk: bool = True) -> tuple[object | None, str | None]:
    """The tree and None, or None and the problem: a syntax error or a 2-vs-3 difference.

    Without `walk`, only what the text shows is checked (for generated rules, whose
    user parts were walked already)."""
    problem = too_big(expr, scale)
    if problem is not None:
        return None, problem
    try:
        tree = promql_parser.parse(expr)
    except ValueError as exc:
        return None, str(exc) or "invalid PromQL"
    except BaseException as exc:  # noqa: BLE001  (a Rust panic surfaces as PanicException)
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return None, f"invalid PromQL ({type(exc).__name__})"
    found = _text_problems(expr)

    def visit(node: object) -> None:
        _problems(node, found)

    if walk:
        promql_parser.walk(tree, visit)
    return tree, (found[0] if found else None)


#: a range or offset duration as the generator writes windows (`5m`, `1h30m`, `30d`)
_WINDOW = re.compile(r"(?<=\[)(?=[^\]:]*[1-9])(?:\d+(?:ms|[smhdwy]))+(?=[\]:])")


def check_generated(expr: str) -> str | None:
    """`check` for a generated rule: its user queries were checked already, so the tree is
    not walked again, and it may be a few times as long as one query.

    Validity does not depend on which valid duration a range holds, so the rules of one
    SLO's windows (the same query at 5m, 30m, 1h, ...) share one parse.
    """
    return _generated(_WINDOW.sub("5m", expr))


@functools.lru_cache(maxsize=1 << 14)
def _generated(expr: str) -> str | None:
    """Nor does it depend on which label values of one class its strings hold: rules of
    one `shape` share a parse. A problem is reported from the rule's own parse."""
    shaped = shape(expr)
    if shaped is not None and shaped != expr and len(expr) <= MAX_LENGTH * 4 and \
            _check(shaped) is None:
        return None
    return _check(expr)


def check(expr: str) -> str | None:
    """None if promtool 2 and 3 both accept `expr`, else the problem."""
    return parse(expr)[1]


@functools.lru_cache(maxsize=1 << 14)
def _check(expr: str) -> str | None:
    return parse(expr, scale=4, walk=False)[1]


def value_type(tree: object) -> str:
    """`vector`, `scalar`, `matrix` or `string`: what a query returns."""
    if isinstance(tree, promql_parser.ParenExpr | promql_parser.UnaryExpr):
        return value_type(tree.expr)
    if isinstance(tree, promql_parser.MatrixSelector | promql_parser.SubqueryExpr):
        return "matrix"
    if isinstance(tree, promql_parser.StringLiteral):
        return "string"
    if isinstance(tree, promql_parser.NumberLiteral):
        return "scalar"
    if isinstance(tree, promql_parser.Call):
        return str(tree.func.return_type).rsplit(".", 1)[-1].lower()
    if isinstance(tree, promql_parser.BinaryExpr):
        sides = {value_type(tree.lhs), value_type(tree.rhs)}
        return "scalar" if sides == {"scalar"} else "vector"
    return "vector"


def check_query(query: str) -> str | None:
    """A user's query as the generator embeds it: in parentheses, as an instant vector
    on one side of `/`, `or` and `-`. None if fine, else why not, in the user's terms.

    Queries of one `shape` share the verdict; a problem is always reported from the
    query itself."""
    shaped = shape(query)
    if shaped is not None and len(query) <= MAX_LENGTH and _shape_ok(shaped):
        return None
    return _check_query(query)


@functools.lru_cache(maxsize=1 << 12)
def _shape_ok(shaped: str) -> bool:
    return _check_query(shaped) is None


def _check_query(query: str) -> str | None:
    tree, problem = parse(query)
    if problem is not None:
        return f"invalid PromQL: {problem}"
    # embedded, a query only breaks where its bare form did not if a comment swallows
    # the rest of the rule: parse the embedded form only then
    wrapped = parse(f"({query}) or vector(0)")[1] if "#" in query else None
    kind = value_type(tree)
    if kind == "matrix":
        return ("this is a range vector (it ends in [...]); the rules need an instant "
                "vector: wrap it in a function such as rate(...) or sum_over_time(...)")
    if kind in ("scalar", "string"):
        return (f"this is a {kind}; the rules need an instant vector: use vector(...) or a "
                "query over series")
    if wrapped is not None:
        if "#" in query:
            return ("a '#' comment in a query would comment out the rest of the generated "
                    "rule; remove it")
        return f"invalid PromQL once embedded in the rules: {wrapped}"
    return None


def clear_cache() -> None:
    _check.cache_clear()
    _generated.cache_clear()
    _shape_ok.cache_clear()
