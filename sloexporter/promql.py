"""PromQL building blocks and the names of every series the generator records.

Rules, dashboards and reports build their queries from these functions only, so a
recording rule and the panel that reads it can never drift apart.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal

import promql_parser

from sloexporter.model import SLO, Tier, decimal_str, format_duration

WINDOW_PLACEHOLDER = re.compile(r"\{\{\s*\.?window\s*\}\}")

# Recorded series. Each carries the SLO identity labels (service, slo, spec labels).
ERRORS_RATE5M = "slo:sli_errors:rate5m"
TOTAL_RATE5M = "slo:sli_total:rate5m"
STATE_BAD = "slo:sli_bad_objects:sum"
STATE_TOTAL = "slo:sli_objects:count"
OBJECTIVE = "slo:objective:ratio"
ERROR_BUDGET = "slo:error_budget:ratio"
PERIOD_ERROR = "slo:period_error:ratio"
PERIOD_BURN = "slo:period_burn:rate"
BUDGET_REMAINING = "slo:error_budget_remaining:ratio"
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


def selector(metric: str, labels: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    return f"{metric}{{{matchers(labels)}}}"


def slo_selector(metric: str, slo: SLO) -> str:
    """A selector for one of the SLO's recorded series: service and slo identify it."""
    return selector(metric, (("service", slo.service), ("slo", slo.name)))


def merge_selector(base: str, extra: str) -> str:
    """Add matchers to a user selector: `{job="a"}` + `le="1"` -> `{job="a",le="1"}`."""
    inner = base.strip()
    if inner.startswith("{") and inner.endswith("}"):
        inner = inner[1:-1].strip().rstrip(",")
    parts = [p for p in (inner, extra) if p]
    return "{" + ",".join(parts) + "}"


def le_matcher(threshold: Decimal) -> str:
    """Match a bucket boundary written the Prometheus 2 way (`1`) or the 3 way (`1.0`)."""
    text = decimal_str(threshold)
    forms = [text]
    if "." not in text and "e" not in text.lower():
        forms.append(text + ".0")
    if len(forms) == 1:
        return f"le={quote(text)}"
    return "le=~" + quote("|".join(re.escape(f) for f in forms))


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


def window_error_ratio(slo: SLO, window: int) -> str:
    """The SLI error ratio over `window`, from the raw SLI queries."""
    sli = slo.sli
    if sli.ratio is not None:
        return substitute_window(sli.ratio, window)
    assert sli.errors is not None and sli.total is not None
    return safe_ratio(substitute_window(sli.errors, window), substitute_window(sli.total, window))


def period_error_ratio(slo: SLO) -> str:
    """The error ratio over the whole period, weighted by traffic.

    Sums recorded 5m rates instead of `increase(...[30d])` over raw series (expensive) or
    averaging 5m ratios (wrong under uneven traffic). A raw ratio SLI has no separate
    totals, so its 5m ratios are averaged; that is documented as unweighted.
    """
    period = slo.period_str
    if slo.sli.ratio is not None:
        return f"avg_over_time({slo_selector(error_ratio_name(300), slo)}[{period}])"
    errors = f"sum_over_time({slo_selector(ERRORS_RATE5M, slo)}[{period}])"
    total = f"sum_over_time({slo_selector(TOTAL_RATE5M, slo)}[{period}])"
    return safe_ratio(errors, total)


def burn_rate(slo: SLO, window: int) -> str:
    """The burn rate over `window`: error ratio / error budget."""
    return f"{slo_selector(error_ratio_name(window), slo)} / {decimal_str(slo.budget)}"


def tier_condition(slo: SLO, tier: Tier) -> str:
    """The alert condition of one tier. Its value is the long window's burn rate."""
    factor = decimal_str(tier.factor)
    long_burn = burn_rate(slo, tier.long_window)
    short_burn = burn_rate(slo, tier.short_window)
    return f"({long_burn} > {factor}) and ({short_burn} > {factor})"


def alerts_selector(slo: SLO, severity: str | None = None,
                    state: str | None = "firing") -> str:
    """The SLO's ALERTS series; state None matches pending and firing."""
    labels = [("service", slo.service), ("slo", slo.name)]
    if severity:
        labels.append(("severity", severity))
    if state:
        labels.append(("alertstate", state))
    return selector("ALERTS", labels)
