"""Model -> Alertmanager routes, receivers, inhibition and messages (plain data).

`severity=page` goes to Slack (and PagerDuty when configured), `severity=ticket` to
email, grouped per SLO; a firing page inhibits the ticket of the same SLO. With
`routing`, alerts are first split by one label (`team`, or any other): each listed value
gets its own Slack, email or PagerDuty receivers, and anything else goes to the default
ones. The tree is scoped by matchers on our own labels, so it can sit under a user's
existing route. `grafana_url` gives every SLO without a `dashboard_url` a link to its
SLO detail dashboard.
Secrets are only ever file paths (Alertmanager reads them at send time) or, for the
prometheus-operator form, Secret key selectors.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import replace
from typing import Any, NamedTuple
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sloexporter import names, promql, rules
from sloexporter.model import SLO, Service, parse_duration
from sloexporter.render import header, k8s_name, service_source, to_yaml
from sloexporter.specs.errors import load_model

Data = dict[str, Any]


# ---- settings ---------------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _check_duration(text: str) -> str:
    if text.strip() != "0s":
        parse_duration(text)
    return text.strip()


def _check_file(path: str) -> str:
    # Alertmanager resolves a relative path against its own working directory
    if not path.startswith("/"):
        raise ValueError(f"{path!r} must be an absolute path (a file holding the secret)")
    return path


class Slack(_Strict):
    #: a file holding the incoming-webhook URL (Alertmanager `api_url_file`)
    api_url_file: str = "/etc/alertmanager/secrets/slack-api-url"
    #: the channels pages are posted to, one message each
    channels: list[str] = Field(default_factory=lambda: ["#slo-pages"], min_length=1)
    send_resolved: bool = True

    _file = field_validator("api_url_file")(_check_file)


class Email(_Strict):
    to: list[str] = Field(default_factory=lambda: ["slo-tickets@example.com"], min_length=1)
    from_: str = Field("alertmanager@example.com", alias="from")
    #: HOST:PORT of the SMTP server
    smarthost: str = "localhost:25"
    auth_username: str | None = None
    #: a file holding the SMTP password (Alertmanager `auth_password_file`)
    auth_password_file: str | None = None
    require_tls: bool = True
    send_resolved: bool = False

    @field_validator("smarthost")
    @classmethod
    def _smarthost(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"smarthost {v!r} must be HOST:PORT, e.g. smtp.example.com:587")
        return v

    @field_validator("auth_password_file")
    @classmethod
    def _password_file(cls, v: str | None) -> str | None:
        return None if v is None else _check_file(v)

    @model_validator(mode="after")
    def _auth_pair(self) -> Email:
        if (self.auth_username is None) != (self.auth_password_file is None):
            raise ValueError("auth_username and auth_password_file go together")
        return self


class PagerDuty(_Strict):
    #: a file holding the Events API v2 routing key (Alertmanager `routing_key_file`)
    routing_key_file: str
    #: the Events API v2 endpoint; unset: PagerDuty's default (set it for the EU region)
    url: str | None = Field(None, pattern=r"^https?://.+$")
    send_resolved: bool = True

    _file = field_validator("routing_key_file")(_check_file)


class Timing(_Strict):
    group_wait: str = "30s"
    group_interval: str = "5m"
    page_repeat_interval: str = "1h"
    ticket_repeat_interval: str = "1d"

    _durations = field_validator("*")(_check_duration)


class Kubernetes(_Strict):
    """The AlertmanagerConfig form: one Secret whose keys are the secret files' names."""

    name: str = "sloexporter"
    secret_name: str = "sloexporter-alertmanager"


class Receivers(_Strict):
    """Where one label value's alerts go; a part left out falls back to the default one.

    A block given here starts from the default block's fields (the same webhook file,
    SMTP server, ...) and changes only what it sets.
    """

    slack: Slack | None = None
    email: Email | None = None
    pagerduty: PagerDuty | None = None


_LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
#: labels the routing cannot split on: the tree already routes on them
_NOT_ROUTABLE = {"severity", "service", "slo", "alertname"}


class Routing(_Strict):
    #: the alert label to split on: `team` (from the spec's labels), or any other
    label: str = Field("team", pattern=_LABEL_NAME)
    #: label value -> its receivers; other values, and alerts without the label, go to
    #: the default receivers (the top-level slack, email and pagerduty)
    routes: dict[str, Receivers] = Field(min_length=1)

    @field_validator("label")
    @classmethod
    def _routable(cls, v: str) -> str:
        if v in _NOT_ROUTABLE or v.startswith("__"):
            raise ValueError(f"routing by {v!r} is not possible: the routes already use it; "
                             "pick a label such as team")
        return v

    @field_validator("routes")
    @classmethod
    def _names(cls, v: dict[str, Receivers]) -> dict[str, Receivers]:
        seen: dict[str, str] = {}
        for value in v:
            if not value:
                raise ValueError("a label value to route must not be empty")
            other = seen.setdefault(_slug(value), value)
            if other != value:
                raise ValueError(f"label values {other!r} and {value!r} would give the same "
                                 "receiver names")
        return v


def _slug(value: str) -> str:
    """A label value as part of a receiver name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", value).strip("-") or "x"


class Settings(_Strict):
    #: receiver names start with it; change it if it clashes with your own receivers
    receiver_prefix: str = Field("sloexporter", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    slack: Slack = Field(default_factory=Slack)
    email: Email = Field(default_factory=Email)
    pagerduty: PagerDuty | None = None
    #: split alerts by a label (team, ...) before the default receivers
    routing: Routing | None = None
    #: Grafana's base URL: every SLO without a dashboard_url links to its SLO detail
    #: dashboard there (alert annotations, Slack, email and PagerDuty messages)
    grafana_url: str | None = Field(None, pattern=r"^https?://[^\s?#]+$")
    timing: Timing = Field(default_factory=Timing)
    kubernetes: Kubernetes = Field(default_factory=Kubernetes)

    @model_validator(mode="before")
    @classmethod
    def _inherit(cls, data: Any) -> Any:
        """Per-value receiver blocks start from the default block of the same kind."""
        if not isinstance(data, dict):
            return data
        routing = data.get("routing")
        routes = routing.get("routes") if isinstance(routing, dict) else None
        if not isinstance(routes, dict):
            return data
        merged = {}
        for value, receivers in routes.items():
            if isinstance(receivers, dict):
                receivers = dict(receivers)
                for kind in ("slack", "email", "pagerduty"):
                    base, own = data.get(kind), receivers.get(kind)
                    if isinstance(base, dict) and isinstance(own, dict):
                        receivers[kind] = {**base, **own}
            merged[value] = receivers
        return {**data, "routing": {**routing, "routes": merged}}


def load_settings(path: str) -> Settings:
    """Read a settings file; raises SpecErrors (`FILE:LINE: field.path: message`)."""
    return load_model(path, Settings, "settings file")


# ---- messages ---------------------------------------------------------------------------
# Alertmanager templates see labels and annotations only: burn_rate, budget_remaining and
# the links are annotations the alert rules render (see sloexporter.rules.alert_rule).

TITLE = ('[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}'
         '{{ end }}] {{ .CommonLabels.service }}/{{ .CommonLabels.slo }}: error budget burn '
         '({{ .CommonLabels.severity }})')


def _alert_lines(bold: tuple[str, str], link: str, newline: str) -> str:
    """One paragraph per alert; `link` formats a URL and its text as {url} and {text}."""
    runbook = link.format(url="{{ . }}", text="runbook")
    dashboard = link.format(url="{{ . }}", text="dashboard")
    return (
        "{{ range .Alerts }}"
        f"{bold[0]}{{{{ .Labels.service }}}}/{{{{ .Labels.slo }}}}{bold[1]} "
        "{{ .Labels.severity }}{{ if eq .Status \"resolved\" }} (resolved){{ end }}: "
        "burn rate {{ .Annotations.burn_rate }}x over {{ .Labels.long_window }} "
        "(threshold {{ .Annotations.burn_rate_threshold }}x, also over "
        f"{{{{ .Labels.short_window }}}}){newline}"
        f"Budget remaining: {{{{ .Annotations.budget_remaining }}}}{newline}"
        f"{{{{ with .Annotations.runbook_url }}}}Runbook: {runbook}{newline}{{{{ end }}}}"
        f"{{{{ with .Annotations.dashboard_url }}}}Dashboard: {dashboard}{newline}{{{{ end }}}}"
        f"{{{{ .Annotations.description }}}}{newline}{newline}"
        "{{ end }}")


SLACK_TEXT = _alert_lines(("*", "*"), "<{url}|{text}>", "\n")
EMAIL_TEXT = _alert_lines(("", ""), "{url}", "\n")
EMAIL_HTML = ("<html><body><h3>" + TITLE + "</h3><p>"
              + _alert_lines(("<b>", "</b>"), '<a href="{url}">{text}</a>', "<br>\n")
              + "</p></body></html>")
PAGERDUTY_DETAILS = {"alerts": EMAIL_TEXT,
                     "runbook_url": "{{ .CommonAnnotations.runbook_url }}",
                     "dashboard_url": "{{ .CommonAnnotations.dashboard_url }}"}


# ---- routes -----------------------------------------------------------------------------

class Matcher(NamedTuple):
    name: str
    op: str
    value: str

    def __str__(self) -> str:
        return f"{self.name}{self.op}{json.dumps(self.value)}"


def _alternatives(values: list[str]) -> str:
    return "|".join(re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", v) for v in values)


def _severity(values: list[str]) -> Matcher:
    if len(values) == 1:
        return Matcher("severity", "=", values[0])
    return Matcher("severity", "=~", _alternatives(values))


def _slack_receiver(name: str, slack: Slack) -> Data:
    return {"name": name, "slack_configs": [
        {"api_url_file": slack.api_url_file, "channel": channel,
         "send_resolved": slack.send_resolved, "title": TITLE, "text": SLACK_TEXT}
        for channel in slack.channels]}


def _email_receiver(name: str, mail: Email) -> Data:
    email: Data = {"to": ", ".join(mail.to), "from": mail.from_, "smarthost": mail.smarthost}
    if mail.auth_username:
        email.update(auth_username=mail.auth_username,
                     auth_password_file=mail.auth_password_file)
    email.update(require_tls=mail.require_tls, send_resolved=mail.send_resolved,
                 headers={"Subject": TITLE}, html=EMAIL_HTML, text=EMAIL_TEXT)
    return {"name": name, "email_configs": [email]}


def _pagerduty_receiver(name: str, pd: PagerDuty) -> Data:
    config: Data = {"routing_key_file": pd.routing_key_file}
    if pd.url:
        config["url"] = pd.url
    # PagerDuty takes critical/error/warning/info only, not our severity label
    config.update(send_resolved=pd.send_resolved, severity="critical", description=TITLE,
                  details=PAGERDUTY_DETAILS)
    return {"name": name, "pagerduty_configs": [config]}


class _Target(NamedTuple):
    """The receivers of one branch of the tree: the default one, or one label value's."""

    slack: str
    email: str
    pagerduty: str | None


def _targets(settings: Settings) -> tuple[_Target, list[tuple[str, _Target]], list[Data]]:
    """The default branch, each routed value's branch, and every receiver they use."""
    prefix = settings.receiver_prefix
    receivers: list[Data] = []
    if settings.pagerduty:
        receivers.append(_pagerduty_receiver(f"{prefix}-pagerduty", settings.pagerduty))
    receivers.append(_slack_receiver(f"{prefix}-slack", settings.slack))
    receivers.append(_email_receiver(f"{prefix}-email", settings.email))
    default = _Target(f"{prefix}-slack", f"{prefix}-email",
                      f"{prefix}-pagerduty" if settings.pagerduty else None)
    branches = []
    routing = settings.routing
    for value, own in sorted(routing.routes.items()) if routing else ():
        base = f"{prefix}-{_slug(value)}"
        target = default
        if own.pagerduty:
            receivers.append(_pagerduty_receiver(f"{base}-pagerduty", own.pagerduty))
            target = target._replace(pagerduty=f"{base}-pagerduty")
        if own.slack:
            receivers.append(_slack_receiver(f"{base}-slack", own.slack))
            target = target._replace(slack=f"{base}-slack")
        if own.email:
            receivers.append(_email_receiver(f"{base}-email", own.email))
            target = target._replace(email=f"{base}-email")
        branches.append((value, target))
    return default, branches, receivers


def _severity_routes(target: _Target, page: Matcher, ticket: Matcher,
                     timing: Timing) -> list[Data]:
    routes: list[Data] = []
    if target.pagerduty:
        routes.append({"receiver": target.pagerduty, "matchers": [page],
                       "continue": True,  # the same page goes on to Slack
                       "repeat_interval": timing.page_repeat_interval})
    routes.append({"receiver": target.slack, "matchers": [page],
                   "repeat_interval": timing.page_repeat_interval})
    routes.append({"receiver": target.email, "matchers": [ticket],
                   "repeat_interval": timing.ticket_repeat_interval})
    return routes


def _tree(services: list[Service], settings: Settings) -> Data:
    """Our route subtree, receivers and inhibit rules; matchers still as Matcher."""
    slos = [slo for service in services for slo in service.slos]
    # only our alerts: one of our services, with an SLO label
    scope = [Matcher("service", "=~", _alternatives(sorted({s.service for s in slos}))),
             Matcher("slo", "=~", ".+")]
    # a spec may rename a tier's severity; route whatever the rules will carry
    page = _severity(sorted({rules.severity_label(s, "page") for s in slos
                             if any(t.severity == "page" for t in s.tiers)}) or ["page"])
    ticket = _severity(sorted({rules.severity_label(s, "ticket") for s in slos
                               if any(t.severity == "ticket" for t in s.tiers)}) or ["ticket"])
    timing = settings.timing
    default, branches, receivers = _targets(settings)
    label = settings.routing.label if settings.routing else ""
    routes: list[Data] = []
    for value, target in branches:
        # a routed value first: its own receivers, the default ones for what it leaves out
        routes.append({"receiver": target.email, "matchers": [Matcher(label, "=", value)],
                       "routes": _severity_routes(target, page, ticket, timing)})
    routes.extend(_severity_routes(default, page, ticket, timing))
    # with --external-labels or a grouped SLO, one cluster's (or group's) page neither
    # joins nor silences another's
    external = sorted({n for s in services for n in s.external_labels})
    per_slo = ["service", "slo", *dict.fromkeys((*external, *promql.group_labels(slos)))]
    return {
        "route": {
            "receiver": default.email,  # a renamed severity no child matches still arrives
            "matchers": scope,
            # one notification per SLO: its page tiers (1h and 6h) arrive together
            "group_by": per_slo,
            "group_wait": timing.group_wait,
            "group_interval": timing.group_interval,
            "repeat_interval": timing.ticket_repeat_interval,
            "routes": routes,
        },
        "receivers": receivers,
        # a firing page for an SLO silences the ticket of the same service and SLO
        "inhibit_rules": [{"source_matchers": [*scope, page],
                           "target_matchers": [*scope, ticket],
                           "equal": per_slo}],
    }


def _plain(data: Any) -> Any:
    if isinstance(data, Matcher):
        return str(data)
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_plain(v) for v in data]
    return data


def alertmanager_config(services: list[Service], settings: Settings) -> Data:
    """A complete alertmanager.yaml: our subtree under a root that drops everything else."""
    tree = _plain(_tree(services, settings))
    drop = f"{settings.receiver_prefix}-drop"
    return {
        "route": {"receiver": drop, "routes": [tree["route"]]},
        "receivers": [{"name": drop}, *tree["receivers"]],
        "inhibit_rules": tree["inhibit_rules"],
    }


# ---- prometheus-operator form ------------------------------------------------------------
# The same tree with the CRD's spelling: camelCase keys, matcher objects, and secrets as
# keys of one Secret. Mounted as a volume, a Secret shows each key as a file of that name,
# so the key is the name of the file the plain form reads.

_CRD_KEYS = {"api_url_file": "apiURL", "auth_password_file": "authPassword",
             "routing_key_file": "routingKey", "require_tls": "requireTLS",
             "source_matchers": "sourceMatch", "target_matchers": "targetMatch"}


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.title() for part in rest)


def _crd(data: Any, secret: str) -> Any:
    if isinstance(data, Matcher):
        return {"name": data.name, "value": data.value, "matchType": data.op}
    if isinstance(data, list):
        return [_crd(v, secret) for v in data]
    if not isinstance(data, dict):
        return data
    out = {}
    for key, value in data.items():
        if key.endswith("_file"):
            out[_CRD_KEYS[key]] = {"name": secret, "key": posixpath.basename(value)}
        elif key in ("headers", "details"):  # maps become lists of KeyValue
            out[key] = [{"key": k, "value": v} for k, v in value.items()]
        else:
            out[_CRD_KEYS.get(key, _camel(key))] = _crd(value, secret)
    return out


def alertmanager_config_crd(services: list[Service], settings: Settings) -> Data:
    """The same tree as a monitoring.coreos.com/v1alpha1 AlertmanagerConfig."""
    return {
        "apiVersion": "monitoring.coreos.com/v1alpha1",
        "kind": "AlertmanagerConfig",
        "metadata": {"name": k8s_name(settings.kubernetes.name),
                     "labels": {"app.kubernetes.io/managed-by": "sloexporter"}},
        "spec": _crd(_tree(services, settings), settings.kubernetes.secret_name),
    }


def helm_values(services: list[Service], settings: Settings) -> Data:
    """Values for the chart's `alertmanagerConfig`, which renders the same spec."""
    spec = alertmanager_config_crd(services, settings)["spec"]
    return {"alertmanagerConfig": {"enabled": True, **spec}}


# ---- dashboard links --------------------------------------------------------------------

def dashboard_links(services: list[Service], grafana_url: str | None) -> list[Service]:
    """`services` with a link to its SLO detail dashboard on every SLO that has none."""
    if not grafana_url:
        return services
    base = grafana_url.rstrip("/")

    def linked(slo: SLO) -> SLO:
        if slo.alerting.dashboard_url:
            return slo
        query = urlencode({"var-service": slo.service, "var-slo": slo.name})
        # a grouped SLO's alert opens its own group (Prometheus fills the template in)
        query += "".join(f"&var-{label}={{{{ $labels.{label} | urlquery }}}}"
                         for label in slo.group_by)
        url = f"{base}/d/{names.SLO_DETAIL_DASHBOARD_UID}?{query}"
        return replace(slo, alerting=replace(slo.alerting, dashboard_url=url))

    return [replace(s, slos=tuple(linked(slo) for slo in s.slos)) for s in services]


# ---- writer -----------------------------------------------------------------------------

def files(services: list[Service], settings: Settings) -> dict[str, str]:
    """`alertmanager/`: alertmanager.yaml, alertmanagerconfig.yaml, helm-values.yaml."""
    head = header(service_source(s) for s in services)
    return {
        "alertmanager/alertmanager.yaml": head + to_yaml(alertmanager_config(services, settings)),
        "alertmanager/alertmanagerconfig.yaml":
            head + to_yaml(alertmanager_config_crd(services, settings)),
        "alertmanager/helm-values.yaml": head + to_yaml(helm_values(services, settings)),
    }
