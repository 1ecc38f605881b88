"""Sloth specs: `version: prometheus/v1` files and `sloth.slok.dev/v1` objects.

`PrometheusServiceLevel` is the Kubernetes form of `prometheus/v1` with camelCase
fields; both become one native `ServiceLevels`. `AlertWindows` objects define the
windows of a custom SLO period and apply to every Sloth SLO of that period in the run.
SLI plugins are Go code we cannot run, so they are an error, never a silent skip.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from sloexporter.model import Service, format_duration, parse_duration
from sloexporter.specs.errors import Document, Path, SpecError, SpecErrors
from sloexporter.specs.foreign import (
    Foreign,
    Lenient,
    NativeBuilder,
    label_values,
    query_group_by,
    validate,
)
from sloexporter.specs.native import Duration, Number, Query

PROM_V1 = "prometheus/v1"
K8S_API = "sloth.slok.dev/v1"
#: SLO plugins that only log or re-run Sloth's default pipeline: nothing to carry over
HARMLESS_SLO_PLUGINS = {"sloth.dev/core/debug/v1", "sloth.dev/core/sli_rules/v1",
                        "sloth.dev/core/metadata_rules/v1", "sloth.dev/core/alert_rules/v1"}
#: the windows Sloth uses for 30d when no AlertWindows file is given, as ours
DEFAULT_PERIOD = "30d"


class Plugin(Foreign):
    id: str
    priority: int = 0
    config: Any = None
    options: Any = None


class PluginChain(Foreign):
    # spelled in camelCase in both formats
    overridePrevious: bool = False  # noqa: N815
    chain: list[Plugin] = []


class Events(Foreign):
    error_query: Query = Field(alias="errorQuery")
    total_query: Query = Field(alias="totalQuery")


class Raw(Foreign):
    error_ratio_query: Query = Field(alias="errorRatioQuery")


class SLI(Foreign):
    events: Events | None = None
    raw: Raw | None = None
    plugin: Plugin | None = None


class Alert(Foreign):
    disable: bool = False
    labels: dict[str, Any] = {}
    annotations: dict[str, str] = {}


class Alerting(Foreign):
    name: str | None = None
    labels: dict[str, Any] = {}
    annotations: dict[str, str] = {}
    page_alert: Alert = Field(default=Alert(), alias="pageAlert")
    ticket_alert: Alert = Field(default=Alert(), alias="ticketAlert")


class SLO(Foreign):
    name: str
    objective: Number
    description: str = ""
    labels: dict[str, Any] = {}
    sli: SLI
    alerting: Alerting = Alerting()
    plugins: PluginChain | None = None


class Spec(Foreign):
    service: str
    labels: dict[str, Any] = {}
    slos: list[SLO] = Field(min_length=1)
    slo_plugins: PluginChain | None = Field(default=None, alias="sloPlugins")


class PromV1(Spec):
    version: str


class K8sObject(Foreign):
    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: Lenient = Lenient()
    spec: Spec


class Window(Foreign):
    error_budget_percent: Number = Field(alias="errorBudgetPercent", gt=0, le=100)
    short_window: Duration = Field(alias="shortWindow")
    long_window: Duration = Field(alias="longWindow")


class SeverityWindows(Foreign):
    quick: Window
    slow: Window


class WindowsSpec(Foreign):
    slo_period: Duration = Field(alias="sloPeriod")
    page: SeverityWindows
    ticket: SeverityWindows


class AlertWindows(Foreign):
    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: Lenient = Lenient()
    spec: WindowsSpec


def is_sloth(data: object) -> bool:
    if not isinstance(data, dict):
        return False
    return data.get("version") == PROM_V1 or (
        data.get("apiVersion") == K8S_API
        and data.get("kind") in ("PrometheusServiceLevel", "AlertWindows"))


def _tiers(windows: WindowsSpec) -> list[dict[str, Any]]:
    """Sloth's quick/slow windows as our custom tiers (budget percent per long window)."""
    out = []
    for severity in ("page", "ticket"):
        for speed in ("quick", "slow"):
            w: Window = getattr(getattr(windows, severity), speed)
            out.append({"severity": severity, "long_window": w.long_window,
                        "short_window": w.short_window,
                        "budget_consumed": str(w.error_budget_percent)})
    return out


#: the last run's documents and their AlertWindows: every Sloth document of a run asks for
#: the same answer, and scanning all documents for each one is quadratic (1,000 files)
_windows_of_run: tuple[list[Document], int, dict[int, tuple[Document, WindowsSpec]]] | None = None


def _custom_windows(all_docs: list[Document]) -> dict[int, tuple[Document, WindowsSpec]]:
    """AlertWindows of the run by period in seconds; bad ones are reported where they are."""
    global _windows_of_run
    cached = _windows_of_run
    if cached is not None and cached[0] is all_docs and cached[1] == len(all_docs):
        return cached[2]
    found: dict[int, tuple[Document, WindowsSpec]] = {}
    for doc in all_docs:
        data = doc.data
        if isinstance(data, dict) and data.get("apiVersion") == K8S_API \
                and data.get("kind") == "AlertWindows":
            try:
                windows = validate(doc, AlertWindows, data).spec
                found[parse_duration(windows.slo_period)] = (doc, windows)
            except SpecErrors:
                continue  # load_alert_windows reports it for that document
    _windows_of_run = (all_docs, len(all_docs), found)
    return found


def load_alert_windows(doc: Document, _all: list[Document]) -> list[Service]:
    """An AlertWindows document on its own: check it; it produces no service."""
    validate(doc, AlertWindows, doc.data)
    return []


def _period(windows: dict[int, tuple[Document, WindowsSpec]]) -> int | None:
    """Sloth's default period (30d), or the one period that AlertWindows define."""
    default = parse_duration(DEFAULT_PERIOD)
    if default in windows or not windows:
        return default
    return next(iter(windows)) if len(windows) == 1 else None


def _plugin_errors(doc: Document, chain: PluginChain | None, path: Path) -> list[SpecError]:
    if chain is None:
        return []
    return [doc.error(path + ("chain", i, "id"), f"unsupported: SLO plugin {p.id}")
            for i, p in enumerate(chain.chain) if p.id not in HARMLESS_SLO_PLUGINS]


def load_sloth(doc: Document, all_docs: list[Document]) -> list[Service]:
    data = doc.data
    if data.get("kind") == "AlertWindows":
        return load_alert_windows(doc, all_docs)
    k8s = data.get("apiVersion") == K8S_API
    if k8s:
        spec: Spec = validate(doc, K8sObject, data).spec
        base: Path = ("spec",)
        names = {"slo_plugins": "sloPlugins", "error": "errorQuery", "total": "totalQuery",
                 "raw": "errorRatioQuery", "page": "pageAlert", "ticket": "ticketAlert"}
    else:
        spec = validate(doc, PromV1, data, by_alias=False)
        base = ()
        names = {"slo_plugins": "slo_plugins", "error": "error_query", "total": "total_query",
                 "raw": "error_ratio_query", "page": "page_alert", "ticket": "ticket_alert"}
    errors = _plugin_errors(doc, spec.slo_plugins, base + (names["slo_plugins"],))
    windows = _custom_windows(all_docs)
    out = NativeBuilder(spec.service, base + ("service",))
    if spec.labels:
        out.set(("labels",), label_values(spec.labels), base + ("labels",))
    for i, slo in enumerate(spec.slos):
        src: Path = base + ("slos", i)
        errors += _plugin_errors(doc, slo.plugins, src + ("plugins",))
        if slo.sli.plugin is not None:
            errors.append(doc.error(src + ("sli", "plugin", "id"),
                                    f"unsupported: SLI plugin {slo.sli.plugin.id}"))
            continue
        n = out.add_slo(src)
        dst: Path = ("slos", n)
        out.set(dst + ("name",), slo.name, src + ("name",))
        out.set(dst + ("objective",), str(slo.objective), src + ("objective",))
        if slo.description:
            out.set(dst + ("description",), slo.description, src + ("description",))
        if slo.labels:
            out.set(dst + ("labels",), label_values(slo.labels), src + ("labels",))
        _sli(out, dst, src, slo.sli, names, {*(spec.labels or {}), *(slo.labels or {})})
        _alerting(out, dst, src, slo.alerting, names)
        # Sloth has one period per run (--default-slo-period); with an AlertWindows file
        # for it, its windows replace the workbook ones exactly as Sloth would use them
        period = _period(windows)
        if period is None:
            errors.append(doc.error(src, "several AlertWindows periods in this run ("
                                    + ", ".join(format_duration(p) for p in sorted(windows))
                                    + "); Sloth uses one period per run, so pass only its file"))
            continue
        if period in windows:
            out.set(dst + ("alerting", "tiers"), _tiers(windows[period][1]), src)
        out.set(dst + ("period",), format_duration(period), src)
    services: list[Service] = []
    if out.data["slos"]:  # an SLO whose SLI plugin we rejected is not built
        try:
            services.append(out.build(doc, base))
        except SpecErrors as exc:
            errors += exc.errors
    if errors:
        raise SpecErrors(errors)
    return services


def _sli(out: NativeBuilder, dst: Path, src: Path, sli: SLI, names: dict[str, str],
         constant: set[str]) -> None:
    queries = (sli.events.total_query, sli.events.error_query) if sli.events is not None \
        else (sli.raw.error_ratio_query, None) if sli.raw is not None else None
    group = query_group_by(*queries, constant) if queries else None
    if group:
        out.set(dst + ("group_by",), group, src + ("sli",))
    if sli.events is not None:
        # errors/total keeps Sloth's meaning; our rules add the no-traffic and
        # missing-error-series guards Sloth's plain division lacks
        out.set(dst + ("sli", "events", "errors"), sli.events.error_query,
                src + ("sli", "events", names["error"]))
        out.set(dst + ("sli", "events", "total"), sli.events.total_query,
                src + ("sli", "events", names["total"]))
    elif sli.raw is not None:
        out.set(dst + ("sli", "ratio", "query"), sli.raw.error_ratio_query,
                src + ("sli", "raw", names["raw"]))
    else:
        out.set(dst + ("sli",), {}, src + ("sli",))  # native reports "needs exactly one"


def _alerting(out: NativeBuilder, dst: Path, src: Path, alerting: Alerting,
              names: dict[str, str]) -> None:
    path = dst + ("alerting",)
    at = src + ("alerting",)
    if alerting.name:
        out.set(path + ("name",), alerting.name, at + ("name",))
    if alerting.labels:
        out.set(path + ("labels",), label_values(alerting.labels), at + ("labels",))
    if alerting.annotations:
        out.set(path + ("annotations",), dict(alerting.annotations), at + ("annotations",))
    for severity in ("page", "ticket"):
        alert: Alert = getattr(alerting, f"{severity}_alert")
        sev_at = at + (names[severity],)
        body: dict[str, Any] = {}
        if alert.disable:
            body["disabled"] = True
        if alert.labels:
            body["labels"] = label_values(alert.labels)
        if alert.annotations:
            body["annotations"] = dict(alert.annotations)
        if body:
            out.set(path + (severity,), body, sev_at)
            out.set(path + (severity, "disabled"), alert.disable, sev_at + ("disable",))
