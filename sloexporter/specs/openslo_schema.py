"""The OpenSLO `openslo/v1` and `openslo/v1alpha` objects we read, as strict models.

Only the schema lives here; `sloexporter.specs.openslo` turns the objects into native
specs. Names follow the OpenSLO spec (camelCase aliases), so errors use its spelling.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from sloexporter.specs.foreign import Foreign, Lenient
from sloexporter.specs.native import Number, Query

V1 = "openslo/v1"
V1ALPHA = "openslo/v1alpha"
RFC1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: OpenSLO v1 duration shorthand: minutes, hours, days, weeks, Months, Quarters, Years
SHORTHAND = re.compile(r"^(\d+)([mhdwMQY])$")


class Metadata(Lenient):
    name: str
    display_name: str | None = Field(default=None, alias="displayName")
    labels: dict[str, Any] = {}
    annotations: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _rfc1123(cls, v: str) -> str:
        if len(v) > 63 or not RFC1123.match(v):
            raise ValueError(f"name {v!r} must be an RFC-1123 label: at most 63 lowercase "
                             "letters, digits or '-', starting and ending with a letter or digit")
        return v


class MetricSourceSpec(Lenient):
    query: Query | None = None


class MetricSource(Foreign):
    metric_source_ref: str | None = Field(default=None, alias="metricSourceRef")
    type: str | None = None
    spec: MetricSourceSpec = MetricSourceSpec()


class Metric(Foreign):
    metric_source: MetricSource = Field(alias="metricSource")


class RatioMetric(Foreign):
    counter: bool | None = None
    good: Metric | None = None
    bad: Metric | None = None
    total: Metric | None = None
    raw: Metric | None = None
    raw_type: Literal["success", "failure"] | None = Field(default=None, alias="rawType")

    @model_validator(mode="after")
    def _shape(self) -> RatioMetric:
        if self.raw is not None:
            if self.good or self.bad or self.total:
                raise ValueError("ratioMetric has either 'raw' or 'good'/'bad' with 'total'")
            if self.raw_type is None:
                raise ValueError("a raw ratioMetric needs 'rawType' (success or failure)")
        elif self.total is None or (self.good is None) == (self.bad is None):
            raise ValueError("ratioMetric needs exactly one of 'good' or 'bad', plus 'total'")
        return self


class SLISpec(Foreign):
    description: str = ""
    ratio_metric: RatioMetric | None = Field(default=None, alias="ratioMetric")
    threshold_metric: Metric | None = Field(default=None, alias="thresholdMetric")

    @model_validator(mode="after")
    def _one(self) -> SLISpec:
        if (self.ratio_metric is None) == (self.threshold_metric is None):
            raise ValueError("an SLI needs exactly one of 'ratioMetric' or 'thresholdMetric'")
        return self


class InlineSLI(Foreign):
    metadata: Metadata
    spec: SLISpec


class Condition(Foreign):
    kind: Literal["burnrate"]
    op: Literal["lt", "lte", "gt", "gte"]
    threshold: Number = Field(gt=0)
    lookback_window: str = Field(alias="lookbackWindow")
    alert_after: str | None = Field(default=None, alias="alertAfter")


class AlertConditionSpec(Foreign):
    description: str = ""
    severity: str
    condition: Condition


class Target(Foreign):
    description: str = ""
    target: str


class ConditionItem(Foreign):
    condition_ref: str | None = Field(default=None, alias="conditionRef")
    api_version: str | None = Field(default=None, alias="apiVersion")
    kind: str | None = None
    metadata: Metadata | None = None
    spec: AlertConditionSpec | None = None


class TargetItem(Foreign):
    target_ref: str | None = Field(default=None, alias="targetRef")
    api_version: str | None = Field(default=None, alias="apiVersion")
    kind: str | None = None
    metadata: Metadata | None = None
    spec: Target | None = None


class AlertPolicySpec(Foreign):
    description: str = ""
    alert_when_no_data: bool = Field(default=False, alias="alertWhenNoData")
    alert_when_resolved: bool = Field(default=False, alias="alertWhenResolved")
    alert_when_breaching: bool = Field(default=True, alias="alertWhenBreaching")
    conditions: list[ConditionItem] = Field(min_length=1)
    notification_targets: list[TargetItem] = Field(default=[], alias="notificationTargets")


class PolicyItem(Foreign):
    alert_policy_ref: str | None = Field(default=None, alias="alertPolicyRef")
    api_version: str | None = Field(default=None, alias="apiVersion")
    kind: str | None = None
    metadata: Metadata | None = None
    spec: AlertPolicySpec | None = None


class Calendar(Foreign):
    # YAML reads an unquoted `2022-01-01 12:00:00` as a timestamp
    start_time: str | datetime = Field(alias="startTime")
    time_zone: str = Field(alias="timeZone")


class TimeWindow(Foreign):
    duration: str
    is_rolling: bool = Field(default=True, alias="isRolling")
    calendar: Calendar | None = None


class Objective(Foreign):
    display_name: str | None = Field(default=None, alias="displayName")
    op: Literal["lt", "lte", "gt", "gte"] | None = None
    value: Number | None = None
    target: Number | None = Field(default=None, gt=0, lt=1)
    target_percent: Number | None = Field(default=None, alias="targetPercent", gt=0, lt=100)
    time_slice_target: Number | None = Field(default=None, alias="timeSliceTarget", gt=0,
                                              le=1)
    time_slice_window: str | None = Field(default=None, alias="timeSliceWindow")
    indicator_ref: str | None = Field(default=None, alias="indicatorRef")
    composite_weight: Number | None = Field(default=None, alias="compositeWeight")


BudgetingMethod = Literal["Occurrences", "Timeslices", "RatioTimeslices"]


class SLOSpecV1(Foreign):
    description: str = ""
    service: str
    indicator: InlineSLI | None = None
    indicator_ref: str | None = Field(default=None, alias="indicatorRef")
    time_window: list[TimeWindow] = Field(alias="timeWindow", min_length=1, max_length=1)
    budgeting_method: BudgetingMethod = Field(alias="budgetingMethod")
    objectives: list[Objective] = Field(min_length=1)
    alert_policies: list[PolicyItem] | None = Field(default=None, alias="alertPolicies")


class AlphaQuery(Foreign):
    source: str
    query_type: str = Field(alias="queryType")
    query: Query
    metadata: dict[str, Any] | None = None


class AlphaRatio(Foreign):
    incremental: bool = False
    good: AlphaQuery
    total: AlphaQuery


class AlphaObjective(Objective):
    ratio_metrics: AlphaRatio | None = Field(default=None, alias="ratioMetrics")


class AlphaIndicator(Foreign):
    threshold_metric: AlphaQuery = Field(alias="thresholdMetric")


class AlphaWindow(Foreign):
    count: int = Field(gt=0)
    unit: Literal["Second", "Minute", "Hour", "Day", "Week", "Month", "Quarter", "Year"]
    is_rolling: bool = Field(default=True, alias="isRolling")
    calendar: Calendar | None = None


class SLOSpecV1Alpha(Foreign):
    description: str = ""
    service: str
    indicator: AlphaIndicator | None = None
    time_windows: list[AlphaWindow] = Field(alias="timeWindows", min_length=1, max_length=1)
    budgeting_method: BudgetingMethod = Field(alias="budgetingMethod")
    objectives: list[AlphaObjective] = Field(min_length=1)


class ServiceSpec(Foreign):
    description: str = ""


class DataSourceSpec(Lenient):
    type: str


#: the spec model of every kind we read, per version
KINDS: dict[tuple[str, str], type[Foreign] | type[Lenient]] = {
    (V1, "SLO"): SLOSpecV1, (V1, "SLI"): SLISpec, (V1, "Service"): ServiceSpec,
    (V1, "AlertPolicy"): AlertPolicySpec, (V1, "AlertCondition"): AlertConditionSpec,
    (V1, "AlertNotificationTarget"): Target, (V1, "DataSource"): DataSourceSpec,
    (V1ALPHA, "SLO"): SLOSpecV1Alpha, (V1ALPHA, "Service"): ServiceSpec,
}


class Object(Foreign):
    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: Metadata
    spec: dict[str, Any]
