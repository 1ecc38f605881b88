"""External labels: constant labels (`cluster=eu-1`) on every series and alert of a run.

Each cluster's Prometheus evaluates its own rules; a global store (Thanos, Mimir,
VictoriaMetrics) then holds every cluster's recorded series side by side, told apart by
these labels, and `sloexporter.global_rules` aggregates them.

The labels become part of each SLO's identity (`SLO.labels`), so they reach every place
the identity does: the `labels:` of every recording and alerting rule, the `ignoring
(...)` lists that join a recorded series (which has them) with a raw query (which does
not), the metadata series, and the dashboards and Alertmanager routes. A label already
set by the spec, or one the SLO's queries split by, would be overwritten or collide, so
both are errors rather than silently merged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace

from sloexporter import promql
from sloexporter.model import SLO, Service

#: labels the rules, the histogram and Prometheus itself set; never an external label
RESERVED = frozenset({"service", "slo", "severity", "long_window", "short_window",
                      "alertname", "alertstate", "le", "__name__"})
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def parse_pairs(items: list[str], option: str) -> dict[str, str]:
    """`k=v[,k=v]` option values (repeatable) as a dict; ValueError names the item."""
    labels: dict[str, str] = {}
    for item in items:
        for pair in filter(None, (p.strip() for p in item.split(","))):
            key, sep, value = pair.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ValueError(f"{option} {pair!r}: expected KEY=VALUE")
            if key in labels and labels[key] != value:
                raise ValueError(f"{option} {key!r} is given twice")
            labels[key] = value
    return labels


def check_label_name(key: str, option: str) -> None:
    if not _LABEL_NAME.match(key):
        raise ValueError(f"{option} {key!r}: a label name is letters, digits and '_', not "
                         "starting with a digit")


def parse_external_labels(items: list[str]) -> dict[str, str]:
    """`--external-labels cluster=eu-1,region=eu` as labels; ValueError on a bad one."""
    option = "--external-labels"
    labels = parse_pairs(items, option)
    for key, value in labels.items():
        if key in RESERVED or key.startswith("__"):
            raise ValueError(f"{option} {key!r}: the rules set this label themselves")
        check_label_name(key, option)
        if not value:
            raise ValueError(f"{option} {key!r}: needs a value (an empty value is no label)")
        if "{{" in value or "}}" in value:
            raise ValueError(f"{option} {key}={value!r}: Prometheus expands alert labels as "
                             "templates; a value may not contain '{{' or '}}'")
        if any(ord(c) < 32 for c in value):
            raise ValueError(f"{option} {key}={value!r}: control characters are not "
                             "allowed in a value")
    return labels


def _stamped(slo: SLO, external: Mapping[str, str]) -> SLO:
    own = dict(slo.labels)
    for key in sorted(external):
        if key in own:
            raise ValueError(f"--external-labels {key!r}: SLO {slo.service}/{slo.name} "
                             f"already has the label {key}={own[key]!r} from its spec")
        if key in promql.grouping(slo):
            raise ValueError(f"--external-labels {key!r}: SLO {slo.service}/{slo.name} "
                             f"splits its series by {key}; a constant {key} would merge "
                             "them")
    # a threshold SLI's per-series record keeps the query's own labels: one named like
    # an external label moves aside (exported_<label>), as it does for the spec's labels
    records = tuple((name, promql.moved_aside(expr, sorted(external)))
                    for name, expr in slo.sli.records)
    return replace(slo, labels=tuple(sorted({**own, **external}.items())),
                   sli=replace(slo.sli, records=records))


def with_external_labels(services: list[Service],
                         external: Mapping[str, str]) -> list[Service]:
    """`services` with `external` on every SLO's identity; ValueError on a clash."""
    if not external:
        return services
    return [replace(s, slos=tuple(_stamped(slo, external) for slo in s.slos),
                    labels=tuple(sorted({**dict(s.labels), **external}.items())),
                    external_labels=tuple(sorted(external)))
            for s in services]
