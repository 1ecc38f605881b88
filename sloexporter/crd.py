"""The `servicelevels.sloexporter.dev` CRD, its schema derived from the pydantic model.

The spec of a `ServiceLevels` object is the native spec without apiVersion/kind, so its
openAPI v3 schema is generated from `sloexporter.specs.native.ServiceLevels`
(`scripts/gen-crd.py` writes `helm/sloexporter/crds/servicelevels.yaml`; a test fails when
the file and the model differ). Kubernetes wants a *structural* schema: no `$ref`, a
`type` on every node, no `additionalProperties` beside `properties`, OpenAPI v3.0
keywords only. What JSON Schema can say and a structural schema cannot (a number given
as a string, exactly one SLI kind) is left to the controller, which runs the full
validation and reports it in the object's `Ready` condition.
"""

from __future__ import annotations

from typing import Any

GROUP = "sloexporter.dev"
VERSION = "v1"
KIND = "ServiceLevels"
PLURAL = "servicelevels"
SINGULAR = "servicelevel"
NAME = f"{PLURAL}.{GROUP}"

#: keywords of the OpenAPI v3.0 subset a CRD accepts that we copy as they are
_KEEP = ("type", "description", "enum", "pattern", "minLength", "maxLength", "minimum",
         "maximum", "minItems", "maxItems", "format", "nullable")


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return _resolve(merged, defs)
        return {k: _resolve(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, defs) for v in node]
    return node


def structural(node: dict[str, Any]) -> dict[str, Any]:
    """One JSON-Schema node (refs resolved) as a structural openAPI v3.0 node."""
    description = node.get("description")
    variants = node.get("anyOf") or node.get("oneOf")
    if variants:
        real = [v for v in variants if v.get("type") != "null"]
        nullable = len(real) < len(variants)
        if len(real) == 1:
            out = structural({**real[0], **({"description": description}
                                            if description else {})})
        else:
            types = sorted({v.get("type", "?") for v in real})
            # e.g. a Decimal (number or numeric string): a structural schema cannot say
            # "one of these types", so the value is kept as written and the controller
            # checks it
            out = {"description": description} if description else {}
            if types == ["integer", "string"]:
                out["x-kubernetes-int-or-string"] = True
            else:
                out["x-kubernetes-preserve-unknown-fields"] = True
        if nullable:
            out["nullable"] = True
        return out
    out = {k: node[k] for k in _KEEP if k in node}
    if "const" in node:
        out["enum"] = [node["const"]]
        out.setdefault("type", "string")
    # JSON Schema 2020's numeric exclusiveMinimum is OpenAPI v3.0's boolean form
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node:
            out[plain] = node[bound]
            out[bound] = True
    kind = node.get("type")
    if kind == "object":
        props = node.get("properties")
        if props:
            out["properties"] = {k: structural(v) for k, v in props.items()}
            if node.get("required"):
                out["required"] = list(node["required"])
        elif isinstance(node.get("additionalProperties"), dict):
            out["additionalProperties"] = structural(node["additionalProperties"])
        else:
            out["x-kubernetes-preserve-unknown-fields"] = True
    elif kind == "array":
        out["items"] = structural(node.get("items") or {"type": "string"})
    elif kind is None and "enum" in out:
        out["type"] = "string"
    return out


def spec_schema() -> dict[str, Any]:
    """The CRD's `spec`: the native spec's schema without apiVersion and kind."""
    from sloexporter.specs.native import ServiceLevels

    raw = ServiceLevels.model_json_schema(by_alias=True, mode="validation")
    resolved = _resolve({k: v for k, v in raw.items() if k != "$defs"}, raw.get("$defs", {}))
    resolved["properties"] = {k: v for k, v in resolved["properties"].items()
                              if k not in ("apiVersion", "kind")}
    resolved["required"] = [r for r in resolved.get("required", ())
                            if r not in ("apiVersion", "kind")]
    schema = structural(resolved)
    schema["description"] = ("The native SLO spec (sloexporter.dev/v1 ServiceLevels) without "
                             "apiVersion and kind; see docs/controller.md.")
    return schema


def _condition_schema() -> dict[str, Any]:
    def string(desc: str) -> dict[str, Any]:
        return {"type": "string", "description": desc}

    return {"type": "object", "required": ["type", "status"], "properties": {
        "type": string("Ready"),
        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "reason": string("Generated, InvalidSpec, Conflict or ApplyFailed"),
        "message": string("what was generated, or every error as `path: message`"),
        "observedGeneration": {"type": "integer", "format": "int64"},
        "lastTransitionTime": {"type": "string", "format": "date-time"},
    }}


def status_schema() -> dict[str, Any]:
    return {"type": "object", "properties": {
        "observedGeneration": {"type": "integer", "format": "int64",
                               "description": "the metadata.generation last reconciled"},
        "conditions": {"type": "array", "items": _condition_schema(),
                       "x-kubernetes-list-type": "map",
                       "x-kubernetes-list-map-keys": ["type"]},
        "generated": {"type": "array", "description": "the objects applied for this spec",
                      "items": {"type": "object", "required": ["kind", "name"],
                                "properties": {"apiVersion": {"type": "string"},
                                               "kind": {"type": "string"},
                                               "name": {"type": "string"}}}},
        "slos": {"type": "integer", "description": "SLOs in the last good spec"},
    }}


def crd_document() -> dict[str, Any]:
    """The CustomResourceDefinition, as written to helm/sloexporter/crds/."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": NAME, "labels": {"app.kubernetes.io/name": "sloexporter"}},
        "spec": {
            "group": GROUP,
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL,
                      "singular": SINGULAR, "categories": ["sloexporter"]},
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Service", "type": "string", "jsonPath": ".spec.service"},
                    {"name": "Ready", "type": "string",
                     "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
                    {"name": "Reason", "type": "string",
                     "jsonPath": ".status.conditions[?(@.type==\"Ready\")].reason"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "SLOs of one service; the sloexporter controller turns "
                                   "them into a PrometheusRule.",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec_schema(),
                        "status": status_schema(),
                    }}},
            }],
        },
    }


def render() -> str:
    from sloexporter.render import to_yaml

    return ("# Generated from sloexporter/specs/native.py by scripts/gen-crd.py; do not edit.\n"
            + to_yaml(crd_document()))
