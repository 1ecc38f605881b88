"""OpenSLO alert policies -> our alert tiers.

A burn-rate `AlertCondition` becomes one tier: its `lookbackWindow` is the long window,
the short window is 1/12 of it (the workbook's ratio, so the alert resets soon after the
burn stops), and the threshold becomes the share of the budget it burns in that window.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sloexporter.model import parse_duration
from sloexporter.specs.errors import Document, Path, SpecError, SpecErrors
from sloexporter.specs.openslo_objects import Located, check_object, resolve
from sloexporter.specs.openslo_schema import AlertConditionSpec, AlertPolicySpec, SLOSpecV1, Target

PAGE_SEVERITIES = {"page", "critical", "high", "p1", "urgent"}


def _condition_tier(doc: Document, path: Path, cond: AlertConditionSpec,
                    period: str) -> tuple[dict[str, Any], str]:
    """A burn-rate condition as one of our tiers, and its page/ticket severity."""
    c = cond.condition
    if c.op in ("lt", "lte"):
        raise SpecErrors([doc.error(path + ("condition", "op"),
                                    f"op {c.op}: a burn-rate alert fires when the burn rate is "
                                    "above the threshold; use gt or gte")])
    try:
        long = parse_duration(c.lookback_window)
    except ValueError as exc:
        raise SpecErrors([doc.error(path + ("condition", "lookbackWindow"), str(exc))]) from None
    # the workbook pairs each long window with a short one of 1/12 of it, to reset fast
    short = max(300, long // 12 // 60 * 60)
    budget = (c.threshold * long * 100 / parse_duration(period)).quantize(Decimal("0.001"))
    severity = "page" if cond.severity.lower() in PAGE_SEVERITIES else "ticket"
    return {"severity": severity, "long_window": c.lookback_window,
            "short_window": f"{short}s", "budget_consumed": str(budget.normalize())}, severity


def alerting_from_policies(doc: Document, at: Path, spec: SLOSpecV1, period: str,
              index: dict[tuple[str, str], Located]) -> tuple[dict[str, Any], list[Path]]:
    """Native alerting from alert policies, and the origin of each tier."""
    tiers: list[dict[str, Any]] = []
    origins: list[Path] = []
    alerting: dict[str, Any] = {}
    errors: list[SpecError] = []
    for i, item in enumerate(spec.alert_policies or ()):
        p_at = at + ("alertPolicies", i)
        try:
            found = resolve(doc, p_at + ("alertPolicyRef",), item.alert_policy_ref,
                             "AlertPolicy", index)
            if found is not None:
                _, policy = check_object(found[0], found[1], found[2])
                p_spec: AlertPolicySpec = policy
            elif item.spec is not None:
                p_spec = item.spec
            else:
                raise SpecErrors([doc.error(p_at, "an alert policy needs 'alertPolicyRef' or "
                                                  "'kind', 'metadata' and 'spec'")])
            targets = _targets(doc, p_at, p_spec, index)
            if not p_spec.alert_when_breaching:
                continue  # a policy that does not alert on a breach adds no tier
            for j, c_item in enumerate(p_spec.conditions):
                c_at = p_at + ("spec", "conditions", j)
                c_found = resolve(doc, c_at + ("conditionRef",), c_item.condition_ref,
                                   "AlertCondition", index)
                cond = check_object(*c_found)[1] if c_found else c_item.spec
                if cond is None:
                    raise SpecErrors([doc.error(c_at, "a condition needs 'conditionRef' or "
                                                      "an inline AlertCondition")])
                tier, severity = _condition_tier(doc, c_at + ("spec",), cond, period)
                tiers.append(tier)
                origins.append(c_at)
                settings = alerting.setdefault(severity, {"labels": {}, "annotations": {}})
                settings["labels"].setdefault("severity", cond.severity)
                if cond.condition.alert_after:
                    settings["for"] = cond.condition.alert_after
                if targets:
                    settings["annotations"]["notification_targets"] = targets
        except SpecErrors as exc:
            errors += exc.errors
    if errors:
        raise SpecErrors(errors)
    if tiers:
        alerting["tiers"] = tiers
    return alerting, origins


def check_policy_refs(doc: Document, prefix: Path, spec: AlertPolicySpec,
                 index: dict[tuple[str, str], Located]) -> None:
    """A standalone AlertPolicy's references must resolve, as the OpenSLO SDK demands."""
    for j, c_item in enumerate(spec.conditions):
        found = resolve(doc, prefix + ("spec", "conditions", j, "conditionRef"),
                         c_item.condition_ref, "AlertCondition", index)
        if found is not None:
            check_object(*found)
    _targets(doc, prefix, spec, index)


def _targets(doc: Document, at: Path, spec: AlertPolicySpec,
             index: dict[tuple[str, str], Located]) -> str:
    names = []
    for k, t in enumerate(spec.notification_targets):
        t_at = at + ("spec", "notificationTargets", k)
        found = resolve(doc, t_at + ("targetRef",), t.target_ref, "AlertNotificationTarget",
                         index)
        target: Target | None = check_object(*found)[1] if found else t.spec
        name = t.target_ref or (t.metadata.name if t.metadata else "")
        if target is not None:
            names.append(f"{name} ({target.target})")
    return ", ".join(names)
