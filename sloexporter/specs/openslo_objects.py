"""OpenSLO objects across the files of a run: find them, check them, resolve references.

A file holds one object or a list of them; references (`indicatorRef`, `alertPolicyRef`,
`conditionRef`, `targetRef`) name an object of the given kind in any file of the run.
"""

from __future__ import annotations

from typing import Any

from sloexporter.specs.errors import Document, Path, SpecError, SpecErrors
from sloexporter.specs.foreign import validate
from sloexporter.specs.openslo_schema import KINDS, V1, V1ALPHA, Object

Located = tuple[Document, Path, dict[str, Any]]


def is_openslo(data: object) -> bool:
    items = data if isinstance(data, list) else [data]
    return bool(items) and all(isinstance(i, dict) and str(i.get("apiVersion", ""))
                               .startswith("openslo") for i in items)


def objects(doc: Document) -> list[tuple[Path, dict[str, Any]]]:
    if isinstance(doc.data, list):
        return [((i,), obj) for i, obj in enumerate(doc.data)]
    return [((), doc.data)]


def index_objects(all_docs: list[Document]) -> dict[tuple[str, str], Located]:
    """Every named OpenSLO object of the run, for references; the first one wins."""
    found: dict[tuple[str, str], Located] = {}
    for doc in all_docs:
        if not is_openslo(doc.data):
            continue
        for prefix, obj in objects(doc):
            name = (obj.get("metadata") or {}).get("name") if isinstance(obj, dict) else None
            if isinstance(name, str):
                found.setdefault((str(obj.get("kind")), name), (doc, prefix, obj))
    return found


def check_object(doc: Document, prefix: Path, obj: Any) -> tuple[Object, Any]:
    """The envelope and the validated spec of one object."""
    if isinstance(obj, dict) and obj.get("apiVersion") not in (V1, V1ALPHA):
        raise SpecErrors([doc.error(prefix + ("apiVersion",),
                                    f"unsupported OpenSLO version {obj.get('apiVersion')!r}; "
                                    f"sloexporter reads {V1} and {V1ALPHA}")])
    errors: list[SpecError] = []
    try:
        envelope: Object = validate(doc, Object, obj, prefix)
    except SpecErrors as exc:
        errors += exc.errors
    raw = obj if isinstance(obj, dict) else {}
    model = KINDS.get((str(raw.get("apiVersion")), str(raw.get("kind"))))
    if model is None:
        errors.append(doc.error(prefix + ("kind",), f"unsupported OpenSLO kind "
                                f"{raw.get('kind')!r} in {raw.get('apiVersion')}"))
    elif isinstance(raw.get("spec"), dict):
        try:
            spec = validate(doc, model, raw["spec"], prefix + ("spec",))
        except SpecErrors as exc:
            errors += exc.errors  # reported together with any metadata errors
    if errors:
        raise SpecErrors(sorted(set(errors)))
    return envelope, spec


def resolve(doc: Document, path: Path, ref: str | None, kind: str,
            index: dict[tuple[str, str], Located]) -> Located | None:
    if ref is None:
        return None
    found = index.get((kind, ref))
    if found is None:
        raise SpecErrors([doc.error(path, f"{kind} {ref!r} does not exist in any file "
                                          "of this run")])
    return found
