"""Load spec files of every supported format into the normalised model.

`load_paths` never raises for bad input: it returns the services it could build and one
`SpecError` per problem, across all files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path as FsPath

from sloexporter.model import Service
from sloexporter.specs.errors import Document, SpecError, SpecErrors, load_documents

SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Format:
    """An input format: how to recognise a document and turn it into services.

    `load` gets the document and every document of the run (for cross-file references,
    as OpenSLO needs) and raises SpecErrors on bad input.
    """

    name: str
    detect: Callable[[object], bool]
    load: Callable[[Document, list[Document]], list[Service]]
    #: documents that only other documents refer to (e.g. an OpenSLO SLI) produce nothing
    standalone: bool = True


FORMATS: list[Format] = []


def register(fmt: Format) -> None:
    FORMATS.append(fmt)


def spec_files(paths: Iterable[str]) -> tuple[list[FsPath], list[SpecError]]:
    files: list[FsPath] = []
    errors: list[SpecError] = []
    for raw in paths:
        path = FsPath(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in SPEC_SUFFIXES and p.is_file())
            if not found:
                errors.append(SpecError(raw, 0, "", "no .yaml or .yml spec files in folder"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            errors.append(SpecError(raw, 0, "", "no such file or folder"))
    return files, errors


def load_paths(paths: Iterable[str]) -> tuple[list[Service], list[SpecError]]:
    """Every service in `paths`, and every error found on the way."""
    files, errors = spec_files(paths)
    documents: list[Document] = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(SpecError(str(file), 0, "", f"cannot read: {exc}"))
            continue
        try:
            documents.extend(d for d in load_documents(text, str(file)) if d.data is not None)
        except SpecErrors as exc:
            errors.extend(exc.errors)
    services: list[Service] = []
    for doc in documents:
        fmt = _detect(doc)
        if fmt is None:
            errors.append(doc.error((), _unknown_format(doc.data)))
            continue
        try:
            services.extend(fmt.load(doc, documents))
        except SpecErrors as exc:
            errors.extend(exc.errors)
    errors.extend(_duplicate_services(services))
    return services, sorted(set(errors))


def _detect(doc: Document) -> Format | None:
    if not FORMATS:
        from sloexporter.specs import formats  # noqa: F401  (registers the built-in formats)
    return next((f for f in FORMATS if f.detect(doc.data)), None)


def _unknown_format(data: object) -> str:
    if not isinstance(data, dict):
        return "a spec must be a YAML mapping"
    api, kind = data.get("apiVersion"), data.get("kind")
    if api is None and "version" in data:
        return f"unknown spec format: version {data.get('version')!r}"
    return (f"unknown spec format: apiVersion {api!r}, kind {kind!r}; expected "
            "apiVersion sloexporter.dev/v1 with kind ServiceLevels, or a Sloth, Pyrra or "
            "OpenSLO spec")


def _duplicate_services(services: list[Service]) -> list[SpecError]:
    seen: dict[str, Service] = {}
    errors = []
    for svc in services:
        first = seen.setdefault(svc.name, svc)
        if first is not svc:
            file, _, line = svc.origin.rpartition(":")
            errors.append(SpecError(file, int(line or 0), "service",
                                    f"service {svc.name!r} is also defined at {first.origin}"))
    return errors
