"""Load spec files of every supported format into the normalised model.

`load_paths` never raises for bad input: it returns the services it could build and one
`SpecError` per problem, across all files.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path as FsPath

from sloexporter import parallel, yamlsafe
from sloexporter.model import Service
from sloexporter.specs.errors import (
    Document,
    SpecError,
    SpecErrors,
    load_documents,
    read_spec_text,
)

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
    #: whether a document of this format refers to or changes others (OpenSLO objects,
    #: Sloth AlertWindows); a run with none loads each file on its own, in parallel
    linked: Callable[[dict[str, object]], bool] | None = None


FORMATS: list[Format] = []


def register(fmt: Format) -> None:
    FORMATS.append(fmt)


STDIN = "-"
STDIN_NAME = "<stdin>"


def spec_files(paths: Iterable[str]) -> tuple[list[FsPath], list[SpecError]]:
    """The spec files `paths` name (folders searched for .yaml/.yml), each once.

    A path that does not exist or a folder without specs is a usage error (exit 2);
    `-` is standard input, passed through as FsPath("-").
    """
    files: list[FsPath] = []
    errors: list[SpecError] = []
    seen: set[FsPath] = set()

    def add(path: FsPath) -> None:
        key = path.resolve() if str(path) != STDIN else path
        if key not in seen:
            seen.add(key)
            files.append(path)

    for raw in paths:
        path = FsPath(raw)
        if raw == STDIN:
            add(path)
        elif path.is_dir():
            # hidden parts skipped: a ConfigMap volume keeps each file again under
            # ..data/ and ..<timestamp>/ (an old copy too, during an update)
            found = sorted(p for p in path.rglob("*") if p.suffix in SPEC_SUFFIXES
                           and p.is_file()
                           and not any(part.startswith(".")
                                       for part in p.relative_to(path).parts))
            if not found:
                errors.append(SpecError(raw, 0, "", "no .yaml or .yml spec files in this "
                                                    "folder", usage=True))
            for file in found:
                add(file)
        elif path.is_file():
            add(path)
        elif path.exists():
            errors.append(SpecError(raw, 0, "", "not a file or folder", usage=True))
        else:
            errors.append(SpecError(raw, 0, "", "no such file or folder", usage=True))
    return files, errors


def read_spec(file: FsPath) -> tuple[str, str]:
    """(name, text) of a spec file, or of standard input for `-`; raises SpecErrors for
    a file too big or not UTF-8, and a usage SpecError for one that cannot be opened."""
    if str(file) == STDIN:
        try:
            return STDIN_NAME, yamlsafe.read_stream(sys.stdin.buffer, STDIN_NAME,
                                                    what="input")
        except yamlsafe.YAMLProblem as exc:
            raise SpecErrors([SpecError(STDIN_NAME, exc.line, "", exc.message)]) from None
    try:
        return str(file), read_spec_text(str(file))
    except OSError as exc:
        raise SpecErrors([SpecError(str(file), 0, "", f"cannot read: {exc.strerror or exc}",
                                    usage=True)]) from None


def load_paths(paths: Iterable[str]) -> tuple[list[Service], list[SpecError]]:
    """Every service in `paths`, and every error found on the way.

    A service may span files: its SLOs are merged, and an SLO name used twice is an
    error that names both places.
    """
    files, errors = spec_files(paths)
    if parallel.workers(len(files)) > 1 and not any(str(f) == STDIN for f in files):
        # each worker parses and loads its own files; when a document links to others
        # (they may be in another worker's files), all are parsed again, then loaded
        # with every document in view
        parts = parallel.chunked_map(_load_files, files)
        if not any(linked for _, _, linked in parts):
            found = [s for services, _, _ in parts for s in services]
            problems = [e for _, errs, _ in parts for e in errs]
            return _merged(found, [*errors, *problems])
    documents: list[Document] = []
    for docs, problems in parallel.chunked_map(_read_files, files):
        documents += docs
        errors += problems
    return _services(documents, errors)


def _load_files(files: Sequence[FsPath]) -> tuple[list[Service], list[SpecError], bool]:
    """The services of `files` on their own, their problems, and whether a document
    among them links to others (then the services are not given)."""
    documents, errors = _read_files(files)
    if any(_linked(doc) for doc in documents):
        return [], [], True
    services, problems = _load(documents, documents)
    return services, [*errors, *problems], False


def _read_files(files: Sequence[FsPath]) -> tuple[list[Document], list[SpecError]]:
    """The documents of `files`, in order, and their problems."""
    documents: list[Document] = []
    errors: list[SpecError] = []
    for file in files:
        try:
            name, text = read_spec(file)
        except SpecErrors as exc:
            errors.extend(exc.errors)
            continue
        documents.extend(_documents(text, name, errors))
    return documents, errors


def _linked(doc: Document) -> bool:
    fmt = _detect(doc)
    return fmt is not None and fmt.linked is not None and fmt.linked(doc.data)


def load_text(text: str, name: str) -> tuple[list[Service], list[SpecError]]:
    """`load_paths` for a spec held in memory (e.g. one `init` has just written)."""
    errors: list[SpecError] = []
    return _services(_documents(text, name, errors), errors)


def _documents(text: str, name: str, errors: list[SpecError]) -> list[Document]:
    """The non-empty documents of one input; its problems go to `errors`."""
    try:
        found = [d for d in load_documents(text, name) if d.data is not None]
    except SpecErrors as exc:
        errors.extend(exc.errors)
        return []
    if not found:
        errors.append(SpecError(name, 1, "", "no spec here: the input is empty or holds "
                                             "only comments"))
    return found


def _services(documents: list[Document],
              errors: list[SpecError]) -> tuple[list[Service], list[SpecError]]:
    services: list[Service] = []
    # each document sees all of them: Sloth AlertWindows and OpenSLO objects refer
    # across documents and files
    for found, problems in parallel.chunked_map(lambda docs: _load(docs, documents),
                                                documents):
        services += found
        errors = [*errors, *problems]
    return _merged(services, errors)


def _load(docs: Sequence[Document],
          documents: list[Document]) -> tuple[list[Service], list[SpecError]]:
    """The services of `docs`, each loaded with every document of the run in view."""
    found: list[Service] = []
    problems: list[SpecError] = []
    for doc in docs:
        fmt = _detect(doc)
        if fmt is None:
            problems.append(doc.error((), _unknown_format(doc.data)))
            continue
        try:
            found.extend(fmt.load(doc, documents))
        except SpecErrors as exc:
            problems.extend(exc.errors)
    return found, problems


def _merged(services: list[Service],
            errors: list[SpecError]) -> tuple[list[Service], list[SpecError]]:
    services, merge_errors = merge_services(services)
    return services, sorted({*errors, *merge_errors})


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


def merge_services(services: list[Service]) -> tuple[list[Service], list[SpecError]]:
    """One service per name, with the SLOs of every file that defines it, in order."""
    merged: dict[str, Service] = {}
    errors: list[SpecError] = []
    for svc in services:
        first = merged.get(svc.name)
        if first is None:
            merged[svc.name] = svc
            continue
        where = {slo.name: slo.origin for slo in first.slos}
        for slo in svc.slos:
            if slo.name in where:
                file, _, line = slo.origin.rpartition(":")
                errors.append(SpecError(file, int(line or 1), "name", (
                    f"duplicate SLO name {slo.name!r} in service {svc.name!r}: also defined "
                    f"at {where[slo.name]}")))
        apps = first.argocd_apps
        if svc.argocd_apps is not None and apps is not None and \
                set(svc.argocd_apps) != set(apps):
            file, _, line = svc.origin.rpartition(":")
            errors.append(SpecError(file, int(line or 1), "argocd_apps", (
                f"service {svc.name!r} lists other argocd_apps at {first.origin}; give them "
                "in one file")))
        labels = dict(first.labels)
        for key, value in svc.labels:
            labels.setdefault(key, value)
        merged[svc.name] = replace(
            first, slos=first.slos + tuple(s for s in svc.slos if s.name not in where),
            labels=tuple(sorted(labels.items())),
            argocd_apps=apps if apps is not None else svc.argocd_apps)
    return list(merged.values()), errors
