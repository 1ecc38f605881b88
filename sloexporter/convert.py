"""Native specs -> OpenSLO v1 (`sloexporter convert --to openslo`).

Each service becomes an OpenSLO `Service` and one `SLO` per SLO, with standard fields
any OpenSLO tool reads: a Prometheus `ratioMetric` (or raw ratio, or a `thresholdMetric`
on the histogram bucket for latency SLIs), a rolling `timeWindow`, the target, and one
burn-rate `AlertCondition` per alert tier.

OpenSLO cannot say everything a native spec can (SLI presets, alert names, labels,
custom tiers), so the native SLI and alerting also travel as JSON in the annotations
`sloexporter.dev/sli` and `sloexporter.dev/alerting`. Our OpenSLO reader prefers them,
which is why converting back gives exactly the same rules.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sloexporter.model import SLO, Service
from sloexporter.output import write_tree
from sloexporter.render import header, to_yaml
from sloexporter.specs import spec_files
from sloexporter.specs.build import build_service
from sloexporter.specs.errors import SpecError, SpecErrors, load_documents
from sloexporter.specs.native import API_VERSION, KIND, ServiceLevels, SLOSpec
from sloexporter.specs.openslo import ANNOTATION_ALERTING, ANNOTATION_NAME, ANNOTATION_SLI

OPENSLO_OP = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}


def rfc1123(name: str) -> str:
    """An OpenSLO object name: lowercase letters, digits and '-'."""
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return out or "slo"


def _metric(query: str) -> dict[str, Any]:
    return {"metricSource": {"type": "Prometheus", "spec": {"query": query}}}


def _indicator(slo: SLOSpec, model: SLO) -> dict[str, Any]:
    """The standard OpenSLO view of the SLI, for tools other than ours."""
    if slo.sli.threshold is not None and slo.sli.threshold.op in OPENSLO_OP:
        return {"thresholdMetric": _metric(slo.sli.threshold.query)}
    latency = slo.sli.latency
    if latency is not None:
        selector = latency.selector.strip() or "{}"
        return {"thresholdMetric": _metric(f"{latency.metric}_bucket{selector}")}
    sli = model.sli
    if sli.ratio is not None:
        return {"ratioMetric": {"rawType": "failure", "raw": _metric(sli.ratio)}}
    assert sli.errors is not None and sli.total is not None
    return {"ratioMetric": {"counter": True, "bad": _metric(sli.errors),
                            "total": _metric(sli.total)}}


def _conditions(model: SLO) -> list[dict[str, Any]]:
    """One burn-rate condition per enabled alert tier, as OpenSLO tools understand them."""
    return [{"kind": "AlertCondition",
             "metadata": {"name": rfc1123(f"{model.name}-{tier.severity}-{tier.long}")},
             "spec": {"severity": tier.severity,
                      "condition": {"kind": "burnrate", "op": "gt",
                                    "threshold": float(tier.factor),
                                    "lookbackWindow": tier.long}}}
            for tier in model.tiers]


def _dump(model: Any) -> str:
    data = model.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def slo_object(spec: ServiceLevels, slo: SLOSpec, model: SLO) -> dict[str, Any]:
    labels = {**spec.labels, **slo.labels}
    annotations = {ANNOTATION_SLI: _dump(slo.sli), ANNOTATION_ALERTING: _dump(slo.alerting)}
    name = rfc1123(slo.name)
    if name != slo.name:
        annotations[ANNOTATION_NAME] = slo.name
    metadata: dict[str, Any] = {"name": name, "displayName": slo.name}
    if labels:
        metadata["labels"] = dict(sorted(labels.items()))
    metadata["annotations"] = annotations
    body: dict[str, Any] = {"service": spec.service}
    if slo.description:
        body["description"] = slo.description
    body["indicator"] = {"metadata": {"name": rfc1123(f"{slo.name}-sli")},
                         "spec": _indicator(slo, model)}
    body["timeWindow"] = [{"duration": slo.period, "isRolling": True}]
    body["budgetingMethod"] = "Occurrences"
    objective: dict[str, Any] = {"displayName": slo.name,
                                 "target": float(Decimal(slo.objective) / 100)}
    if slo.sli.threshold is not None and slo.sli.threshold.op in OPENSLO_OP:
        # good while `query op value`, in OpenSLO's spelling (it has no == or !=)
        objective["op"] = OPENSLO_OP[slo.sli.threshold.op]
        objective["value"] = float(slo.sli.threshold.value)
    body["objectives"] = [objective]
    conditions = _conditions(model)
    if conditions:
        body["alertPolicies"] = [{"kind": "AlertPolicy",
                                  "metadata": {"name": rfc1123(f"{slo.name}-burn-rate")},
                                  "spec": {"alertWhenBreaching": True,
                                           "conditions": conditions}}]
    return {"apiVersion": "openslo/v1", "kind": "SLO", "metadata": metadata, "spec": body}


def to_openslo(spec: ServiceLevels, service: Service) -> list[dict[str, Any]]:
    obj: dict[str, Any] = {"apiVersion": "openslo/v1", "kind": "Service",
                           "metadata": {"name": rfc1123(spec.service),
                                        "displayName": spec.service},
                           "spec": {"description": f"Service level objectives of "
                                                   f"{spec.service}"}}
    return [obj, *(slo_object(spec, slo, model)
                   for slo, model in zip(spec.slos, service.slos, strict=True))]


def convert_paths(paths: list[str], outdir: Path) -> tuple[list[Path], list[SpecError]]:
    """Write every native spec in `paths` as OpenSLO v1 under `outdir`."""
    files, errors = spec_files(paths)
    specs: list[tuple[str, ServiceLevels, Service]] = []
    for file in files:
        try:
            docs = list(load_documents(file.read_text(encoding="utf-8"), str(file)))
        except SpecErrors as exc:
            errors += exc.errors
            continue
        for doc in docs:
            data = doc.data
            if not (isinstance(data, dict) and data.get("apiVersion") == API_VERSION
                    and data.get("kind") == KIND):
                errors.append(doc.error((), f"convert reads native specs ({API_VERSION} "
                                            f"{KIND}) only"))
                continue
            try:
                spec = ServiceLevels.model_validate(data)
                # the model gives the compiled queries and tiers, and its checks are ours
                specs.append((str(file), spec, build_service(doc, spec)))
            except ValidationError as exc:
                errors += doc.errors_from_validation(exc)
            except SpecErrors as exc:
                errors += exc.errors
    if errors:
        return [], sorted(set(errors))
    files = {}
    for source, spec, service in sorted(specs, key=lambda s: s[1].service):
        docs = "---\n".join(to_yaml(obj) for obj in to_openslo(spec, service))
        files[f"{spec.service}.openslo.yaml"] = header([source]) + docs
    written, _ = write_tree(outdir, files)
    return written, []
