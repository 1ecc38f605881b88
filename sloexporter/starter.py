"""`sloexporter init`: a commented starter spec for one HTTP service.

The text is a template rather than a dump of the model, because its point is the
comments: a newcomer edits it, so every field says what it means and what to change.
Values are written as JSON scalars (valid YAML), so no flag value can break the file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sloexporter.sli import HTTP_CONVENTIONS

#: what each HTTP convention of `sli.HTTP_CONVENTIONS` (which names its metric) is
CONVENTIONS = {
    "otel": "OpenTelemetry HTTP server semantic conventions",
    "prometheus": "a prometheus-client / prom-client / express histogram",
    "requests_total": "a plain request counter, no histogram",
}
#: the client libraries' default buckets (OpenTelemetry's; Go and Node prom-client's)
DEFAULT_BUCKETS = {
    "otel": "0, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10",
    "prometheus": "0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10",
}
#: the label each convention puts the job or service on, for `--job`
JOB_LABEL = {"otel": "service_name", "prometheus": "job", "requests_total": "job"}
_SELECTOR = re.compile(r"^\{.*\}$", re.S)


@dataclass(frozen=True)
class Starter:
    service: str
    convention: str = "prometheus"
    selector: str | None = None
    objective: str = "99.9"
    latency_threshold: str | None = "0.5"
    latency_objective: str = "99"
    period: str = "30d"
    team: str | None = None


_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _q(value: str) -> str:
    """`value` as a YAML scalar: plain when YAML reads it back as that string, else JSON."""
    import yaml

    if _PLAIN.match(value) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value, ensure_ascii=False)


def _number(text: str, what: str) -> str:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{what} {text!r} is not a number")
    return format(value.normalize(), "f")


def selector_for(convention: str, job: str) -> str:
    """The selector that picks one job's series in `convention`."""
    escaped = job.replace("\\", "\\\\").replace('"', '\\"')
    return f'{{{JOB_LABEL[convention]}="{escaped}"}}'


def render(s: Starter) -> str:
    """The commented spec. Raises ValueError for a flag value that cannot be written."""
    if s.convention not in CONVENTIONS:
        raise ValueError(f"convention {s.convention!r}: choose one of "
                         f"{', '.join(CONVENTIONS)}")
    selector = (s.selector if s.selector is not None
                else selector_for(s.convention, s.service)).strip()
    if not _SELECTOR.match(selector):
        raise ValueError(f"selector {selector!r} must be a label selector in braces, "
                         "e.g. '{job=\"checkout\"}'")
    objective = _number(s.objective, "objective")
    metric, what = HTTP_CONVENTIONS[s.convention][0], CONVENTIONS[s.convention]
    lines = [
        f"# SLOs of {s.service}, written by `sloexporter init`. Edit freely, then:",
        "#   sloexporter validate FILE && sloexporter generate FILE -o out --with-tests",
        "# Reference: docs/spec.md (every field) and docs/sli-kinds.md (every SLI kind).",
        "apiVersion: sloexporter.dev/v1",
        "kind: ServiceLevels",
        f"service: {_q(s.service)}",
        "# copied onto every recorded series and alert; Alertmanager can route on them",
        f"labels: {{team: {_q(s.team)}}}" if s.team else "labels: {}   # e.g. {team: payments}",
        "slos:",
        "  - name: availability",
        "    # percent of requests that must not fail with a 5xx, over the period",
        f"    objective: {objective}",
        "    period: " + _q(s.period) + "   # a rolling window, 1d to 90d (e.g. 28d, 4w)",
        f"    description: {_q(s.service + ' answers without server errors')}",
        "    sli:",
        "      http:",
        f"        # {metric}: {what}",
        f"        convention: {s.convention}",
        "        # which series are this service's; any PromQL label matchers",
        f"        selector: {_q(selector)}",
        "        signal: availability",
        "    alerting:",
        "      # linked from every alert and notification; fill in when you have them",
        "      # runbook_url: https://runbooks.example.com/" + s.service,
        "      page: {labels: {}, annotations: {}}     # fast burn: wakes someone up",
        "      ticket: {labels: {}, annotations: {}}   # slow burn: a ticket for office hours",
    ]
    if s.latency_threshold is not None and s.convention != "requests_total":
        threshold = _number(s.latency_threshold, "latency threshold")
        latency_objective = _number(s.latency_objective, "latency objective")
        lines += [
            "  - name: latency",
            f"    # percent of requests faster than {threshold} s",
            f"    objective: {latency_objective}",
            "    period: " + _q(s.period),
            f"    description: {_q(f'{s.service} answers within {threshold} s')}",
            "    sli:",
            "      http:",
            f"        convention: {s.convention}",
            f"        selector: {_q(selector)}",
            "        signal: latency",
            "        # seconds; it must be a bucket boundary of the histogram (an le value)",
            f"        threshold: {threshold}",
            "        # list your histogram's buckets and validate checks the threshold is one:",
            f"        # buckets: [{DEFAULT_BUCKETS[s.convention]}]",
        ]
    elif s.convention == "requests_total":
        lines += ["  # no latency SLO: the requests_total convention has no histogram"]
    return "\n".join(lines) + "\n"
