"""The `status:` section of the serve config: Prometheus access, periods, policies, delivery.

Every field has a default, so `serve --prometheus-url URL --slos DIR` needs no config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CalendarKind = Literal["month", "week", "quarter"]


def read_secret(path: str, what: str, error: type[Exception]) -> str:
    """A credential file's content, stripped; read on every use so a rotated secret is
    picked up. An unreadable file raises `error` naming the file, never its content."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise error(f"cannot read the {what} file {path}: {exc.strerror}") from None


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}; use an IANA name such as "
                         "Europe/Berlin or UTC") from None
    return value


class PrometheusAccess(Strict):
    """How to reach the Prometheus (or Mimir, Cortex, Thanos) that holds the SLO series."""

    url: str | None = None
    #: read on every refresh, so a rotated token is picked up
    bearer_token_file: str | None = None
    basic_auth_username_file: str | None = None
    basic_auth_password_file: str | None = None
    ca_file: str | None = None
    #: the tenant of a multi-tenant store (Mimir, Cortex, Thanos Receive)
    org_id: str | None = None
    #: seconds for one query; a refresh is abandoned after `refresh_timeout`
    query_timeout: float = Field(default=10.0, gt=0, le=300)

    @model_validator(mode="after")
    def _auth(self) -> PrometheusAccess:
        if (self.basic_auth_username_file is None) != (self.basic_auth_password_file is None):
            raise ValueError("basic auth needs both basic_auth_username_file and "
                             "basic_auth_password_file")
        if self.bearer_token_file and self.basic_auth_username_file:
            raise ValueError("use either a bearer token or basic auth, not both")
        return self


class Calendar(Strict):
    """Calendar-aligned compliance periods, beside each SLO's rolling period."""

    period: CalendarKind = "month"
    timezone: str = "UTC"
    #: completed periods shown as history on the detail page and API
    history: int = Field(default=3, ge=0, le=24)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone(v)


class Thresholds(Strict):
    """How the status bucket is chosen (documented in docs/status.md).

    BREACHED: budget remaining <= 0. WARNING: budget remaining below `warning_budget`
    (a ratio), or a page or ticket alert firing. NO_DATA: no SLI value or no events in
    the period. OK otherwise.
    """

    warning_budget: float = Field(default=0.25, ge=0, le=1)
    #: the burn-rate window whose value gives the time to exhaustion
    exhaustion_window: str = "1h"


class GateRule(Strict):
    """Budget that must remain (a ratio, 0.1 = 10 %) for a deploy to pass."""

    service: str | None = None
    slo: str | None = None
    min_budget_remaining: float = Field(default=0.0, ge=-10, le=1)
    #: what an SLO without data does to the gate
    no_data: Literal["allow", "block"] = "allow"
    #: block while a page alert of the SLO fires
    block_on_page: bool = True


class Gate(Strict):
    default: GateRule = Field(default_factory=GateRule)
    #: the first rule whose service (and slo, when given) match is used
    rules: list[GateRule] = Field(default_factory=list)

    def rule_for(self, service: str, slo: str) -> GateRule:
        for rule in self.rules:
            if rule.service in (None, service) and rule.slo in (None, slo):
                return rule
        return self.default


class Platform(Strict):
    certificate_days: int = Field(default=14, ge=1, le=365)


class SMTP(Strict):
    host: str
    port: int = Field(default=25, gt=0, lt=65536)
    starttls: bool = False
    username: str | None = None
    password_file: str | None = None
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    timeout: float = Field(default=30, gt=0, le=300)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("sender", "to")
    @classmethod
    def _addresses(cls, v: str | list[str]) -> str | list[str]:
        """One plain address each: a line break would let a value add mail headers."""
        for address in [v] if isinstance(v, str) else v:
            local, at, domain = address.rpartition("@")
            if not (at and local and domain) or any(c.isspace() or ord(c) < 32 or c in ",;<>"
                                                    for c in address):
                raise ValueError(f"{address!r} is not an email address like sre@example.com")
        return v


class Slack(Strict):
    #: the webhook URL is a secret: give it in a file
    webhook_url_file: str
    channel: str | None = None
    timeout: float = Field(default=30, gt=0, le=300)


class Delivery(Strict):
    """A report sent on a cron schedule for the period that just ended."""

    name: str = "report"
    #: cron expression in `timezone`, e.g. "0 9 1 * *" (09:00 on the 1st)
    schedule: str
    timezone: str = "UTC"
    #: month, week or quarter: the completed period the report covers
    period: CalendarKind = "month"
    email: SMTP | None = None
    slack: Slack | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone(v)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        if not croniter.is_valid(v):
            raise ValueError(f"schedule {v!r} is not a cron expression like '0 9 1 * *'")
        return v

    @model_validator(mode="after")
    def _somewhere(self) -> Delivery:
        if self.email is None and self.slack is None:
            raise ValueError("a delivery needs email, slack or both")
        return self


class StatusConfig(Strict):
    prometheus: PrometheusAccess = Field(default_factory=PrometheusAccess)
    #: spec folders or files; --slos adds to them
    slos: list[str] = Field(default_factory=list)
    refresh_interval: float = Field(default=30, ge=1, le=3600)
    #: the API answers 503 when its data is older than this (seconds); by default
    #: 180, or three refresh intervals when that is longer
    stale_after: float = Field(default=180, ge=5)
    calendar: Calendar | None = None
    thresholds: Thresholds = Field(default_factory=Thresholds)
    gate: Gate = Field(default_factory=Gate)
    platform: Platform = Field(default_factory=Platform)
    #: Grafana base URL for links to the generated dashboards
    grafana_url: str | None = None
    #: points per graph on the detail page and API
    graph_points: int = Field(default=200, ge=10, le=2000)
    delivery: list[Delivery] = Field(default_factory=list)
    discover_sloth: bool = True
    discover_pyrra: bool = True

    @model_validator(mode="before")
    @classmethod
    def _stale_default(cls, data: object) -> object:
        """A slow refresh_interval without stale_after must not make every answer stale."""
        if isinstance(data, dict) and "stale_after" not in data:
            interval = data.get("refresh_interval")
            if isinstance(interval, int | float) and not isinstance(interval, bool):
                return {**data, "stale_after": max(180.0, 3.0 * interval)}
        return data

    @model_validator(mode="after")
    def _stale_after_a_refresh(self) -> StatusConfig:
        if self.stale_after <= self.refresh_interval:
            raise ValueError(f"stale_after ({self.stale_after:g}s) must be longer than "
                             f"refresh_interval ({self.refresh_interval:g}s), or every "
                             "answer is stale before the next refresh")
        return self

    @field_validator("delivery")
    @classmethod
    def _once(cls, v: list[Delivery]) -> list[Delivery]:
        seen: dict[str, int] = {}
        for i, target in enumerate(v):
            first = seen.setdefault(target.model_dump_json(), i)
            if first != i:
                raise ValueError(f"delivery {i + 1} repeats delivery {first + 1}: every "
                                 "report would be sent twice")
        return v
