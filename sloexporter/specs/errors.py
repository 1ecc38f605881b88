"""Spec errors that point at a file and line, and YAML loading that remembers lines.

Every input format reports problems as `FILE:LINE: field.path: message`, so the loaders
keep a map from each value's path to the line it was written on.
"""

from __future__ import annotations

import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from sloexporter import yamlsafe

Path = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class SpecError:
    """One problem in a spec, printed `FILE:LINE: field.path: message`."""

    file: str
    line: int
    path: str
    message: str
    #: a problem with the command line (a missing path): exit 2, and no line to point at
    usage: bool = False

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        if self.line <= 0:
            return f"{self.file}: {where}{self.message}"
        return f"{self.file}:{self.line}: {where}{self.message}"


class SpecErrors(Exception):
    """Raised by a loader with every error it found, not only the first."""

    def __init__(self, errors: list[SpecError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


def print_startup_error(exc: SpecErrors | ValueError) -> int:
    """Print why a command cannot start; the exit code: 1 for invalid specs or config
    (every error, one per line), 2 for a usage error such as a bad URL or flag."""
    if isinstance(exc, SpecErrors):
        for err in exc.errors:
            print(err, file=sys.stderr)
        return 1
    print(f"error: {exc}", file=sys.stderr)
    return 2


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

    def errors_from_validation(self, exc: ValidationError, prefix: Path = (),
                               model: type[BaseModel] | None = None,
                               by_alias: bool = True) -> list[SpecError]:
        """Our own one-line message for each pydantic error, at the value's line.

        With `model`, an unknown key gets "did you mean" from every key allowed there;
        a typo that explains a missing required key is reported once, as the typo.
        """
        raw = [(prefix + tuple(p for p in e["loc"] if not _is_internal(p)), e)
               for e in exc.errors(include_url=False)]
        missing = {loc for loc, e in raw if e["type"] == "missing" and loc}
        typos: dict[Path, str] = {}
        import difflib  # only for input with errors: a valid spec's check never needs it

        for loc, e in raw:
            if e["type"] == "extra_forbidden" and loc:
                allowed = [str(m[-1]) for m in missing if m[:-1] == loc[:-1]]
                if model is not None:
                    allowed += allowed_keys(model, loc[len(prefix):-1], by_alias)
                close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
                if close:
                    typos[loc] = close[0]
                    missing.discard(loc[:-1] + (close[0],))
        out = []
        for loc, err in raw:
            if err["type"] == "missing" and loc and loc not in missing:
                continue  # reported as the typo that caused it
            msg = describe(err, loc)
            if loc in typos:
                msg += f"; did you mean {typos[loc]!r}?"
            out.append(self.error(loc, msg))
        return out


def allowed_keys(model: type[BaseModel], path: Path, by_alias: bool = True) -> list[str]:
    """The keys a mapping at `path` under `model` may hold (the user's spelling)."""
    types: list[Any] = [model]
    for part in path:
        nxt: list[Any] = []
        for tp in types:
            for t in _unwrap(tp):
                if isinstance(part, int) and typing.get_origin(t) in (list, tuple, set):
                    nxt += list(typing.get_args(t)[:1])
                elif typing.get_origin(t) is dict:
                    nxt += list(typing.get_args(t)[1:2])
                elif isinstance(t, type) and issubclass(t, BaseModel):
                    for name, info in t.model_fields.items():
                        if part in (name, info.alias):
                            nxt.append(info.annotation)
        types = nxt
    keys: list[str] = []
    for tp in types:
        for t in _unwrap(tp):
            if isinstance(t, type) and issubclass(t, BaseModel):
                keys += [(info.alias or name) if by_alias else name
                         for name, info in t.model_fields.items()]
    return keys


def _unwrap(tp: Any) -> list[Any]:  # noqa: ANN401
    if typing.get_origin(tp) is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [u for a in typing.get_args(tp) for u in _unwrap(a)]
    return [tp]


#: what a number field holds, for the message when it is not a number
NUMBER_HINTS = {
    "objective": "a percentage like 99.9",
    "target": "a ratio like 0.999",
    "targetPercent": "a percentage like 99.9",
    "threshold": "a number like 0.5",
    "budget_consumed": "a percentage of the error budget like 2",
    "errorBudgetPercent": "a percentage of the error budget like 2",
}

_YAML_BOOLS = "true, false, yes, no, on and off"


def _shown(value: object) -> str:
    if value is None:
        return "an empty value (null)"
    if value is True or value is False:
        return str(value).lower()
    text = str(value) if type(value).__name__ == "Decimal" else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def describe(err: Any, loc: Path) -> str:  # noqa: ANN401
    """Our wording for one pydantic error: what is wrong and what is accepted."""
    kind: str = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    name = str(loc[-1]) if loc and isinstance(loc[-1], str) else "each item" if loc \
        else "the value"
    if kind == "invalid_key":
        return f"keys must be strings, not {_shown(value)}"
    if kind == "extra_forbidden":
        return f"unknown field {name!r}" if loc else "unknown field"
    if kind == "missing":
        return f"missing required field {name!r}" if loc else "missing field"
    if kind in ("value_error", "assertion_error"):
        msg = str(err["msg"])
        for head in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(head)
        return msg
    if kind in ("decimal_parsing", "decimal_type", "float_parsing", "float_type",
                "int_parsing", "int_type", "int_from_float", "finite_number"):
        whole = kind.startswith("int")
        hint = NUMBER_HINTS.get(name, "a whole number like 14" if whole else "a number")
        if isinstance(value, str) and value.strip().endswith("%"):
            return (f"{name} must be {hint}, written without '%': "
                    f"{value.strip()[:-1].strip()}")
        if kind == "finite_number":
            return f"{name} must be a finite number, not {_shown(value)}"
        if kind == "int_from_float":
            return f"{name} must be a whole number, not {_shown(value)}"
        return f"{name} must be {hint}, not {_shown(value)}"
    if kind in ("bool_parsing", "bool_type"):
        return f"{name} must be true or false, not {_shown(value)}"
    if kind in ("string_type", "string_sub_type"):
        extra = ""
        if isinstance(value, bool):
            extra = f"; YAML reads unquoted {_YAML_BOOLS} as booleans, so quote it"
        elif isinstance(value, int | float) or type(value).__name__ == "Decimal":
            extra = "; quote it to keep it as text"
        return f"{name} must be a string, not {_shown(value)}{extra}"
    if kind in ("dict_type", "model_type", "model_attributes_type", "dataclass_type"):
        return f"{name} must be a mapping of keys to values, not {_shown(value)}"
    if kind in ("list_type", "tuple_type", "set_type"):
        return f"{name} must be a list, not {_shown(value)}"
    if kind in ("literal_error", "enum"):
        expected = str(ctx.get("expected", "")).replace(" or ", ", ")
        return f"{name} must be one of {expected}, not {_shown(value)}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        words = {"greater_than": "greater than", "greater_than_equal": "at least",
                 "less_than": "less than", "less_than_equal": "at most"}[kind]
        bound = next(iter(ctx.values()), "")
        return f"{name} must be {words} {bound}, not {_shown(value)}"
    if kind in ("too_short", "too_long"):
        count = ctx.get("min_length" if kind == "too_short" else "max_length")
        words = "at least" if kind == "too_short" else "at most"
        return f"{name} needs {words} {count} item{'s' if count != 1 else ''}"
    if kind in ("string_too_short", "string_too_long"):
        count = ctx.get("min_length" if kind == "string_too_short" else "max_length")
        words = "at least" if kind == "string_too_short" else "at most"
        return f"{name} must have {words} {count} characters"
    if kind == "string_pattern_mismatch":
        return f"{name} {_shown(value)} must match the pattern {ctx.get('pattern')}"
    if kind == "none_required":
        return f"{name} must be empty (null)"
    if kind in ("decimal_max_digits", "decimal_max_places", "decimal_whole_digits"):
        return f"{name} has too many digits: {_shown(value)}"
    return f"{name} has an invalid value {_shown(value)}"


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
        raise SpecErrors([SpecError(path, 0, "", f"cannot read: {exc.strerror or exc}",
                                    usage=True)]) from None
    docs = [d for d in load_documents(text, path) if d.data is not None]
    if len(docs) > 1:
        raise SpecErrors([SpecError(path, 1, "", f"a {what} holds one YAML document")])
    doc = docs[0] if docs else Document(path, None)
    try:
        return model.model_validate(doc.data if doc.data is not None else {})
    except ValidationError as exc:
        raise SpecErrors(sorted(doc.errors_from_validation(exc, model=model))) from None
