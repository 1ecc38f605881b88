"""Compile every SLI kind of the native spec into PromQL templates.

Presets (`http`, `argocd`, `backup`, `certificate`, `probe`) know their metrics, so they
also describe the series a generated test must feed (`SynthSeries`).
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from sloexporter import names
from sloexporter.model import (
    SLI,
    Condition,
    SynthSeries,
    Traffic,
    decimal_str,
    parse_duration,
)
from sloexporter.promql import (
    CONDITION_GOOD,
    STATE_BAD,
    STATE_TOTAL,
    aggregate,
    le_matcher,
    merge_selector,
    moved_aside,
    quote,
    selector,
)
from sloexporter.specs.native import (
    HTTPSLI,
    ArgoCDSLI,
    BackupSLI,
    CertificateSLI,
    EventsSLI,
    LatencySLI,
    ProbeSLI,
    RatioSLI,
    SLISpec,
    ThresholdSLI,
)

W = "{{window}}"
SERVER_ERRORS = "5.."

#: (metric base name, status label) of each HTTP convention.
HTTP_CONVENTIONS: dict[str, tuple[str, str]] = {
    # OpenTelemetry semantic conventions, as exported to Prometheus
    "otel": ("http_server_request_duration_seconds", "http_response_status_code"),
    # prom-client / express-prom-bundle
    "prometheus": ("http_request_duration_seconds", "status_code"),
    # Go promhttp and most client libraries; FastAPI instrumentator uses `status`
    "requests_total": ("http_requests_total", "code"),
}
#: In-flight request gauges (the saturation signal) of the conventions that define one.
HTTP_IN_FLIGHT: dict[str, str] = {
    "otel": "http_server_active_requests",
}


def http_traffic(body: HTTPSLI) -> Traffic:
    """The request metrics an `http` SLI reads, whatever its signal."""
    metric, label = HTTP_CONVENTIONS[body.convention]
    histogram = body.convention != "requests_total"
    return Traffic(body.convention, f"{metric}_count" if histogram else metric, body.selector,
                   body.status_label or label, SERVER_ERRORS,
                   metric if histogram else None, HTTP_IN_FLIGHT.get(body.convention))


def probe_traffic(sel: str) -> Traffic:
    """sloexporter's own HTTP probes: a failed request is a 5xx or no answer at all."""
    return Traffic("probe", names.PROBE_REQUESTS, sel, "code",
                   f"5..|{names.PROBE_ERROR_CODE}", names.PROBE_DURATION)


def rate_sum(metric: str, sel: str, extra: str = "", by: str = "") -> str:
    """`sum(rate(metric{sel}[window]))`, or `sum by (...)` for a grouped SLO."""
    return aggregate("sum", by, f"rate({metric}{merge_selector(sel, extra)}[{W}])")


def _counter_synth(metric: str, sel: str, label: str, good: str,
                   bad: str) -> tuple[SynthSeries, ...]:
    return (SynthSeries(metric, "good", sel, ((label, good),)),
            SynthSeries(metric, "bad", sel, ((label, bad),)))


def _status_sli(kind: str, metric: str, sel: str, label: str, errors_regex: str,
                bad_value: str, by: str = "") -> SLI:
    return SLI(kind, errors=rate_sum(metric, sel, f"{label}=~{errors_regex}", by),
               total=rate_sum(metric, sel, by=by),
               synth=_counter_synth(metric, sel, label, "200", bad_value))


def _latency_sli(kind: str, base: str, sel: str, threshold: Decimal,
                 native: bool = False, by: str = "") -> SLI:
    """Requests at or below `threshold` are good.

    A classic histogram reads its `le` bucket (any spelling of the number) and `_count`;
    a native histogram (`native: true`) reads `histogram_fraction` of the one series.
    """
    if native:
        rates = rate_sum(base, sel, by=by)
        total = f"histogram_count({rates})"
        good = f"histogram_fraction(0, {format(threshold.normalize(), 'f')}, {rates}) * {total}"
        return SLI(kind, errors=f"{total} - {good}", total=total, good=good, synth=())
    good = rate_sum(f"{base}_bucket", sel, le_matcher(threshold), by)
    total = rate_sum(f"{base}_count", sel, by=by)
    le = format(threshold.normalize(), "f")
    return SLI(kind, errors=f"{total} - {good}", total=total, good=good,
               synth=(SynthSeries(f"{base}_bucket", "good", sel, (("le", le),)),
                      SynthSeries(f"{base}_count", "total", sel)))


def _state_sli(kind: str, bad: str, total: str, ident: tuple[tuple[str, str], ...],
               synth: tuple[SynthSeries, ...] | None, by: str = "") -> SLI:
    """A time-share SLI: the share of (object x time) that is bad.

    The per-instant bad count and object count are recorded, and each window sums them,
    so `share of time` needs no subquery.
    """
    errors = aggregate("sum", by, f"sum_over_time({selector(STATE_BAD, ident)}[{W}])")
    totals = aggregate("sum", by, f"sum_over_time({selector(STATE_TOTAL, ident)}[{W}])")
    return SLI(kind, errors=errors, total=totals, records=((STATE_BAD, bad), (STATE_TOTAL, total)),
               synth=synth)


def _traffic_sli(kind: str, traffic: Traffic, signal: str, threshold: Decimal | None,
                 by: str = "") -> SLI:
    if signal == "latency":
        assert threshold is not None and traffic.duration is not None
        return _latency_sli(kind, traffic.duration, traffic.selector, threshold, by=by)
    bad = names.PROBE_ERROR_CODE if traffic.convention == "probe" else "500"
    return _status_sli(kind, traffic.requests, traffic.selector, traffic.status_label,
                       quote(traffic.errors_regex), bad, by)


def compile_sli(spec: SLISpec, service: str, slo: str,
                labels: tuple[tuple[str, str], ...] = (), group: tuple[str, ...] = ()) -> SLI:
    """Turn the one SLI kind set in `spec` into queries; `labels` are the SLO's own
    labels (beyond service and slo) that its recorded series carry, and `group` its
    group_by labels, which the presets' queries aggregate by. The queries a user wrote
    are checked to keep them (`specs.build`) and aggregated by the rules."""
    ident = (("service", service), ("slo", slo))
    by = ", ".join(group)
    kind = spec.kind
    body = getattr(spec, kind)
    if isinstance(body, EventsSLI):
        if body.errors is not None:
            return SLI(kind, errors=body.errors, total=body.total)
        return SLI(kind, errors=f"({body.total}) - ({body.good})", total=body.total,
                   good=body.good)
    if isinstance(body, RatioSLI):
        return SLI(kind, ratio=body.query)
    if isinstance(body, LatencySLI):
        return _latency_sli(kind, body.metric, body.selector, body.threshold,
                            body.native, by)
    if isinstance(body, HTTPSLI | ProbeSLI):
        traffic = http_traffic(body) if isinstance(body, HTTPSLI) else probe_traffic(body.selector)
        return replace(_traffic_sli(kind, traffic, body.signal, body.threshold, by),
                       traffic=traffic)
    if isinstance(body, ArgoCDSLI):
        return _argocd(body, ident, by)
    if isinstance(body, BackupSLI):
        return _backup(body, ident, by)
    if isinstance(body, CertificateSLI):
        return _certificate(body, ident, by)
    if isinstance(body, ThresholdSLI):
        return threshold_sli(body, ident, labels, by)
    raise AssertionError(f"unhandled SLI kind {kind}")


def _argocd(body: ArgoCDSLI, ident: tuple[tuple[str, str], ...], by: str = "") -> SLI:
    sel = body.selector
    if body.signal == "sync_success":
        failed = quote("|".join(names.ARGOCD_SYNC_FAILED_PHASES))
        return SLI("argocd", errors=rate_sum(names.ARGOCD_APP_SYNC_OPERATIONS, sel,
                                             f"phase=~{failed}", by),
                   total=rate_sum(names.ARGOCD_APP_SYNC_OPERATIONS, sel, by=by),
                   synth=_counter_synth(names.ARGOCD_APP_SYNC_OPERATIONS, sel, "phase",
                                        "Succeeded", "Failed"))
    ready = f"{names.ARGOCD_APP_SYNCED}{sel} * {names.ARGOCD_APP_HEALTHY}{sel}"
    app = (("namespace", "argocd"), ("name", "demo"), ("project", "default"))
    return _state_sli("argocd", aggregate("sum", by, f"1 - ({ready})"),
                      aggregate("count", by, ready), ident, (
        SynthSeries(names.ARGOCD_APP_SYNCED, "gauge", sel, app, a=Decimal(1), c=Decimal(-1)),
        SynthSeries(names.ARGOCD_APP_HEALTHY, "gauge", sel, app, a=Decimal(1)),
    ), by)


def _backup(body: BackupSLI, ident: tuple[tuple[str, str], ...], by: str = "") -> SLI:
    sel, grace = body.selector, parse_duration(body.grace)
    last = f"{names.BACKUP_LAST_SUCCESS}{sel}"
    expected = f"{names.BACKUP_EXPECTED_INTERVAL}{sel}"
    # clamp keeps the indicator 0..1 yet continuous in its first second of lateness, so a
    # steady fractional share is representable in tests; a never-succeeded backup is bad.
    late = f"clamp((time() - {last}) - ({expected} + {grace}), 0, 1)"
    obj = (("kind", "cronjob"), ("namespace", "db"), ("name", "backup"))
    interval = Decimal(86400)
    return _state_sli("backup", aggregate("sum", by, f"{late} or ({expected} * 0 + 1)"),
                      aggregate("count", by, expected), ident, (
                          SynthSeries(names.BACKUP_LAST_SUCCESS, "gauge", sel, obj,
                                      a=-(interval + grace), b=Decimal(1), c=Decimal(-1)),
                          SynthSeries(names.BACKUP_EXPECTED_INTERVAL, "gauge", sel, obj,
                                      a=interval),
                      ), by)


def _certificate(body: CertificateSLI, ident: tuple[tuple[str, str], ...], by: str = "") -> SLI:
    sel = body.selector
    need = body.min_days_left * 86400
    not_after = f"{names.CERT_NOT_AFTER}{sel}"
    cert = (("source", "certificate"), ("namespace", "web"), ("name", "site"),
            ("subject_cn", "example.org"), ("issuer_cn", "R11"), ("serial", "01"))
    # "every certificate has more than N days left": bad while the worst one has fewer
    return _state_sli("certificate",
                      aggregate("max", by, f"clamp({need} - ({not_after} - time()), 0, 1)"),
                      aggregate("max", by, f"{not_after} * 0 + 1"), ident, (
                          SynthSeries(names.CERT_NOT_AFTER, "gauge", sel, cert,
                                      a=Decimal(need), b=Decimal(1), c=Decimal(-1)),
                      ), by)


def threshold_sli(body: ThresholdSLI, ident: tuple[tuple[str, str], ...],
                  labels: tuple[tuple[str, str], ...] = (), by: str = "") -> SLI:
    """The share of (series x evaluations) in which `query op value` fails.

    Each evaluation records 1/0 per series of the query (`slo:sli_condition_good:bool`),
    then the bad and total series counts that every window sums, as for the other
    time-share SLIs. Missing data is never good: a series seen in the last `forget_after`
    but absent now counts as bad, and a query with no series at all is one bad object.
    """
    good = f"({body.query}) {body.op} bool {decimal_str(body.value)}"
    holds = selector(CONDITION_GOOD, ident)
    recent = f"last_over_time({holds}[{body.forget_after}])"
    # grouped: `or on ()` adds the one bad object only while no group has any series
    none = " or on () vector(1)" if by else " or vector(1)"
    sli = _state_sli("threshold", aggregate("sum", by, f"1 - ({holds} or {recent} * 0)") + none,
                     aggregate("count", by, recent) + none, ident, None, by)
    record = (CONDITION_GOOD, moved_aside(good, [n for n, _ in (*ident, *labels)]))
    # SLI health: 1 while a series seen within forget_after, or every series, is missing
    vanished = aggregate("count", by, f"{recent} unless {holds}")
    present = aggregate("count", by, recent if by else holds)
    missing = f"clamp_max({vanished}, 1) or {present} * 0{none}"
    return replace(sli, records=(record, *sli.records),
                   condition=Condition(body.query, body.op, body.value), missing=missing)


def known_buckets(spec: SLISpec) -> tuple[Decimal, ...] | None:
    """The histogram's bucket boundaries when the spec or the preset knows them."""
    body = getattr(spec, spec.kind)
    if isinstance(body, ProbeSLI):
        return tuple(Decimal(str(b)) for b in names.PROBE_BUCKETS)
    if isinstance(body, LatencySLI | HTTPSLI) and body.buckets:
        return tuple(body.buckets)
    return None
