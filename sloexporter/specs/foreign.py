"""Shared machinery for foreign formats (Sloth, OpenSLO, Pyrra).

Each foreign loader validates its own schema, then writes a native `ServiceLevels`
mapping with `NativeBuilder`, remembering for every value it sets the path it came from.
`build_native` then runs the same validation and semantic checks as the native format,
and any error is reported at the ORIGINAL file's path and line.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from sloexporter import promql
from sloexporter.model import Service
from sloexporter.specs.build import build_service, check_native
from sloexporter.specs.errors import Document, Path, SpecError, SpecErrors, format_path
from sloexporter.specs.native import API_VERSION, KIND, check_group_by


class Foreign(BaseModel):
    """A strict foreign-schema model: unknown fields are errors, with typo hints."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


class Lenient(BaseModel):
    """Kubernetes metadata and the like: fields we do not use are accepted."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True, defer_build=True)


class MappedDocument(Document):
    """A document that reports errors about a native spec at the original paths."""

    def __init__(self, doc: Document, origins: dict[Path, Path], prefix: Path = ()) -> None:
        super().__init__(doc.file, doc.data, doc.lines, doc.start_line)
        self.origins = origins
        self.prefix = prefix

    def translate(self, path: Path) -> Path:
        for n in range(len(path), -1, -1):
            origin = self.origins.get(tuple(path[:n]))
            if origin is not None:
                # loaders map every renamed value, so what is below keeps its name
                return origin + tuple(path[n:])
        return self.prefix

    def line_of(self, path: Path) -> int:
        return super().line_of(self.translate(path))

    def error(self, path: Path, message: str) -> SpecError:
        where = self.translate(path)
        return SpecError(self.file, super().line_of(where), format_path(where), message)


class NativeBuilder:
    """Builds a native spec mapping and records where each value came from."""

    def __init__(self, service: str, origin: Path) -> None:
        self.data: dict[str, Any] = {"apiVersion": API_VERSION, "kind": KIND,
                                     "service": service, "slos": []}
        self.origins: dict[Path, Path] = {(): origin[:-1] if origin else (), ("service",): origin}

    def set(self, path: Path, value: Any, origin: Path) -> None:
        """Set `value` at native `path`, creating parents; `origin` is its foreign path."""
        node: Any = self.data
        for i, part in enumerate(path[:-1]):
            nxt = path[i + 1]
            if isinstance(node, list):
                while len(node) <= int(part):
                    node.append({})
                node = node[int(part)]
            else:
                node = node.setdefault(part, [] if isinstance(nxt, int) else {})
        if isinstance(node, list):
            while len(node) <= int(path[-1]):
                node.append(None)
        node[path[-1]] = value
        self.origins[path] = origin

    def add_slo(self, origin: Path) -> int:
        self.data["slos"].append({})
        index = len(self.data["slos"]) - 1
        self.origins[("slos", index)] = origin
        return index

    def build(self, doc: Document, prefix: Path = ()) -> Service:
        mapped = MappedDocument(doc, self.origins, prefix)
        return build_service(mapped, check_native(mapped, self.data))


def validate(doc: Document, model: type[BaseModel], data: Any, prefix: Path = (),
             by_alias: bool = True) -> Any:
    """`model` validated from `data`; schema errors point at the original paths.

    Field names are the snake_case spelling and aliases the camelCase one: a format
    accepts exactly one of them, so error messages use the user's spelling.
    """
    try:
        return model.model_validate(data, by_alias=by_alias, by_name=not by_alias)
    except ValidationError as exc:
        raise SpecErrors(doc.errors_from_validation(exc, prefix, model, by_alias)) from None


def percent(ratio: Decimal) -> Decimal:
    """A 0-1 target as a percentage, exactly: 0.999 -> 99.9."""
    return (ratio * 100).normalize()


def label_values(labels: dict[str, Any] | None) -> dict[str, str]:
    """Labels as strings; OpenSLO v1 label values may be lists, joined with commas."""
    out = {}
    for key, value in (labels or {}).items():
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        out[str(key)] = "true" if value is True else "false" if value is False else str(value)
    return out


def query_group_by(main: str, other: str | None, constant: set[str]) -> list[str] | None:
    """The labels a foreign SLI's queries aggregate by, as a group_by: Sloth v0.16's
    grouped SLOs (and OpenSLO's) are written as `sum by (...)`. None when the queries do
    not agree on them or one is a label the SLO sets itself; then the rules stay as the
    source tool's would be."""
    group = promql.query_grouping(main)
    if not group or (other is not None and promql.query_keeps(other, group) is not None):
        return None
    try:
        check_group_by(list(group))
    except ValueError:
        return None
    return None if constant & set(group) else list(group)
