"""Spec errors that point at a file and line, and YAML loading that remembers lines.

Every input format reports problems as `FILE:LINE: field.path: message`, so the loaders
keep a map from each value's path to the line it was written on.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from sloexporter import yamlsafe

Path = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class SpecError:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


class SpecErrors(Exception):
    """Raised by a loader with every error it found, not only the first."""

    def __init__(self, errors: list[SpecError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass
class Document:
    """One YAML document with the line of every value in it."""

    file: str
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    start_line: int = 1

    def line_of(self, path: Path) -> int:
        """The line of `path`, or of its nearest ancestor that has one."""
        for n in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:n]))
            if line is not None:
                return line
        return self.start_line

    def error(self, path: Path, message: str) -> SpecError:
        return SpecError(self.file, self.line_of(path), format_path(path), message)

    def errors_from_validation(self, exc: ValidationError, prefix: Path = ()) -> list[SpecError]:
        raw = [(prefix + tuple(p for p in e["loc"] if not _is_internal(p)), e)
               for e in exc.errors(include_url=False)]
        missing = {loc for loc, e in raw if e["type"] == "missing" and loc}
        typos: dict[Path, str] = {}
        for loc, e in raw:
            if e["type"] == "extra_forbidden" and loc:
                siblings = [str(m[-1]) for m in missing if m[:-1] == loc[:-1]]
                close = difflib.get_close_matches(str(loc[-1]), siblings, n=1)
                if close:
                    typos[loc] = close[0]
                    missing.discard(loc[:-1] + (close[0],))
        out = []
        for loc, err in raw:
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = f"unknown field {loc[-1]!r}" if loc else "unknown field"
                if loc in typos:
                    msg += f"; did you mean {typos[loc]!r}?"
            elif err["type"] == "missing":
                if loc and loc not in missing:
                    continue  # reported as the typo that caused it
                msg = f"missing required field {loc[-1]!r}" if loc else "missing field"
            elif msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            elif msg.startswith("Assertion failed, "):
                msg = msg[len("Assertion failed, "):]
            out.append(self.error(loc, msg))
        return out


def _is_internal(part: str | int) -> bool:
    # pydantic adds the tag of a function validator or union member to the location
    return isinstance(part, str) and (part.startswith("function-") or "[" in part)


def load_documents(text: str, file: str) -> Iterator[Document]:
    """Every YAML document in `text` (floats as exact Decimals), through the safe loader.

    Bad or hostile YAML (syntax, tabs, duplicate keys, alias bombs, depth, huge numbers)
    raises SpecErrors with one `FILE:LINE: message`.
    """
    try:
        loaded = yamlsafe.load_all(text, file, exact_numbers=True)
    except yamlsafe.YAMLProblem as exc:
        raise SpecErrors([SpecError(file, exc.line, "", exc.message)]) from None
    for doc in loaded:
        yield Document(file, doc.data, doc.lines, doc.start_line)


def read_spec_text(path: str) -> str:
    """A spec or settings file's text; raises SpecErrors for a file that is too big or
    not UTF-8, and OSError when it cannot be read at all."""
    try:
        return yamlsafe.read_text(path)
    except yamlsafe.YAMLProblem as exc:
        raise SpecErrors([SpecError(path, exc.line, "", exc.message)]) from None


Model = TypeVar("Model", bound=BaseModel)


def load_model(path: str, model: type[Model], what: str = "config file") -> Model:
    """Read a one-document YAML file into `model`; raises SpecErrors with every problem.

    An empty file gives the model's defaults.
    """
    try:
        text = read_spec_text(path)
    except OSError as exc:
        raise SpecErrors([SpecError(path, 1, "", f"cannot read: {exc.strerror or exc}")]) \
            from None
    docs = [d for d in load_documents(text, path) if d.data is not None]
    if len(docs) > 1:
        raise SpecErrors([SpecError(path, 1, "", f"a {what} holds one YAML document")])
    doc = docs[0] if docs else Document(path, None)
    try:
        return model.model_validate(doc.data if doc.data is not None else {})
    except ValidationError as exc:
        raise SpecErrors(sorted(doc.errors_from_validation(exc))) from None
