"""The one YAML loader of the project: specs, Alertmanager settings, serve config, manifests.

PyYAML's safe loader builds no Python objects from tags, but it still lets a small file
become a huge one (aliases), a deep one (nesting), swallows duplicate keys, and turns a
5,000-digit number into a traceback. This loader composes the node graph first (in C when
libyaml is there), checks it against `Limits` WITHOUT expanding aliases, and only then
builds the data. Every problem is one `YAMLProblem` with the line it is on, so callers
print `FILE:LINE: message`.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path as FsPath
from typing import Any, BinaryIO

#: PyYAML's pure-Python reader checks text against this at import: compiled, the largest
#: regex `validate` meets (4 ms of it), and never used when libyaml parses
_NON_PRINTABLE = ("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD"
                  "\U00010000-\U0010ffff]")


class _CompiledOnUse:
    """A pattern that compiles when first used (`re` caches it)."""

    def __init__(self, pattern: str, flags: int) -> None:
        self.pattern, self.flags = pattern, flags

    def __getattr__(self, name: str) -> Any:
        return getattr(re.compile(self.pattern, self.flags), name)


@contextlib.contextmanager
def _reader_check_compiled_on_use() -> Iterator[None]:
    """While `yaml` is first imported: its pure reader's check compiles once it runs."""
    real = re.compile

    def compile_(pattern: Any, flags: int = 0) -> Any:
        if pattern == _NON_PRINTABLE:
            return _CompiledOnUse(pattern, flags)
        return real(pattern, flags)

    re.compile = compile_  # type: ignore[assignment]
    try:
        yield
    finally:
        re.compile = real


with _reader_check_compiled_on_use():
    import yaml

Path = tuple[str | int, ...]

_BASE_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Limits:
    """What one file may hold; each is far above what a real spec or manifest needs."""

    #: bytes of text in one file
    max_bytes: int = 8 * 1024 * 1024
    #: mappings and sequences inside each other
    max_depth: int = 64
    #: values that aliases add to one document once expanded (what consumers will walk);
    #: anchors are rare in specs and manifests, alias bombs are not
    max_alias_nodes: int = 100_000
    #: characters of one number (a longer one is a typo or an attack, never a value)
    max_number_chars: int = 64


LIMITS = Limits()


class YAMLProblem(Exception):
    """Bad or hostile YAML: one line, at the line it is on.

    `kind` says which: too_large, too_deep, alias_expansion or unparsable_yaml (the
    manifests folder counts skipped files by it).
    """

    def __init__(self, file: str, line: int, message: str,
                 kind: str = "unparsable_yaml") -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file, self.line, self.message, self.kind = file, line, message, kind


@dataclass
class Loaded:
    """One YAML document: its data and the line of every value, by path."""

    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    start_line: int = 1


class _Loader(_BASE_LOADER):  # type: ignore[misc,valid-type]
    """The safe loader, optionally with YAML floats as exact Decimals."""

    exact_numbers = False

    def resolve(self, kind: type, value: Any, implicit: Any) -> Any:  # noqa: ANN401
        # a plain scalar's tag depends on its text alone (no path resolvers here)
        if kind is yaml.ScalarNode:
            return _scalar_tag(value, implicit)
        return super().resolve(kind, value, implicit)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> Any:  # noqa: ANN401
        if not self.exact_numbers:
            return super().construct_yaml_float(node)
        text = str(node.value).replace("_", "").lower()
        if ":" in text or text.lstrip("+-") in (".inf", ".nan"):
            return Decimal(repr(super().construct_yaml_float(node)))
        return Decimal(text)


_Loader.add_constructor(FLOAT_TAG, _Loader.construct_yaml_float)
_RESOLVER = _BASE_LOADER.resolve


@functools.lru_cache(maxsize=1 << 12)
def _scalar_tag(value: str, implicit: tuple[bool, bool]) -> str:
    return _RESOLVER(_Loader, yaml.ScalarNode, value, implicit)


class _ExactLoader(_Loader):
    exact_numbers = True


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _key_text(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else f"<{node.id}>"


def _check(node: yaml.Node, file: str, limits: Limits) -> None:
    """Depth, aliases, expanded size, duplicate keys and number length, in one pass over
    the distinct nodes: an aliased node is measured once and its size reused."""
    sizes: dict[int, int] = {}
    heights: dict[int, int] = {}
    added = 0  # values the aliases add once expanded
    # iterative post-order walk: a 5,000-deep document must not hit Python's recursion limit
    stack: list[tuple[yaml.Node, int, bool]] = [(node, 1, False)]
    active: set[int] = set()
    while stack:
        current, depth, done = stack.pop()
        key = id(current)
        if done:
            active.discard(key)
            children = _children(current)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            heights[key] = 1 + max((heights[id(c)] for c in children), default=0)
            continue
        if key in sizes:
            added += sizes[key]  # a node seen before is an alias to it
            if added > limits.max_alias_nodes:
                raise YAMLProblem(file, _line(current), (
                    f"aliases expand to more than {limits.max_alias_nodes:,} values; "
                    "refusing the document (an alias bomb?)"), "alias_expansion")
            if depth + heights[key] - 1 > limits.max_depth:
                raise YAMLProblem(file, _line(current), (
                    f"nested deeper than {limits.max_depth} levels once aliases are "
                    "expanded"), "too_deep")
            continue
        if key in active:
            raise YAMLProblem(file, _line(current), "an alias refers to a value that contains "
                                                    "it (a recursive alias)")
        if depth > limits.max_depth:
            raise YAMLProblem(file, _line(current), (
                f"nested deeper than {limits.max_depth} levels"), "too_deep")
        if isinstance(current, yaml.ScalarNode):
            if current.tag in (INT_TAG, FLOAT_TAG) and \
                    len(current.value) > limits.max_number_chars:
                raise YAMLProblem(file, _line(current), (
                    f"a number of {len(current.value):,} characters; numbers may have at most "
                    f"{limits.max_number_chars}"))
            sizes[key] = heights[key] = 1
            continue
        if isinstance(current, yaml.MappingNode):
            _check_duplicates(current, file)
        active.add(key)
        stack.append((current, depth, True))
        stack.extend((child, depth + 1, False) for child in reversed(_children(current)))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_duplicates(node: yaml.MappingNode, file: str) -> None:
    seen: dict[tuple[str, str], int] = {}
    for key_node, _ in node.value:
        if key_node.tag == MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
            continue
        ident = (key_node.tag, key_node.value)
        line = _line(key_node)
        if ident in seen:
            first = seen[ident]
            where = f"line {first}" if first != line else "the same line"
            raise YAMLProblem(file, line, (
                f"duplicate key {key_node.value!r}: first given at {where}; YAML would "
                "silently keep only the last"))
        seen[ident] = line


def _walk_lines(node: yaml.Node, lines: dict[Path, int]) -> None:
    """The line of every path. Aliased nodes are walked again at each path they appear:
    `_check` has bounded the expanded size already."""
    stack: list[tuple[yaml.Node, Path]] = [(node, ())]
    while stack:
        current, path = stack.pop()
        lines.setdefault(path, _line(current))
        if isinstance(current, yaml.MappingNode):
            for key_node, value_node in current.value:
                if isinstance(key_node, yaml.ScalarNode):
                    sub = path + (key_node.value,)
                    lines[sub] = _line(key_node)
                    stack.append((value_node, sub))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend((item, path + (i,)) for i, item in enumerate(current.value))


STR_TAG = "tag:yaml.org,2002:str"
MAP_TAG = "tag:yaml.org,2002:map"
SEQ_TAG = "tag:yaml.org,2002:seq"


class _Irregular(Exception):
    """The fast path met what only the general one handles: a key text used twice with
    different tags (its line-map entries depend on walk order), or a merge key (`<<`:
    building the data rewrites the node graph, and the line map is of the rewritten one)."""


def _check_tree(node: yaml.Node, file: str, limits: Limits,
                lines: dict[Path, int] | None) -> None:
    """`_check` and `_walk_lines` in one pass, for a document without anchors (so
    without aliases: every node is reached once). Same checks in the same order, so the
    same first problem; raises _Irregular where the general path must decide."""
    max_depth, max_number = limits.max_depth, limits.max_number_chars
    # (node, depth, path); path None: under a non-scalar key, outside the line map
    stack: list[tuple[yaml.Node, int, Path | None]] = [(node, 1, ())]
    while stack:
        current, depth, path = stack.pop()
        line = current.start_mark.line + 1
        if depth > max_depth:
            raise YAMLProblem(file, line, f"nested deeper than {max_depth} levels",
                              "too_deep")
        if lines is not None and path is not None:
            lines.setdefault(path, line)
        if isinstance(current, yaml.ScalarNode):
            if current.tag in (INT_TAG, FLOAT_TAG) and len(current.value) > max_number:
                raise YAMLProblem(file, line, (
                    f"a number of {len(current.value):,} characters; numbers may have at "
                    f"most {max_number}"))
            continue
        depth += 1
        if isinstance(current, yaml.MappingNode):
            _check_duplicates(current, file)
            keys: set[str] = set()
            children: list[tuple[yaml.Node, int, Path | None]] = []
            for key_node, value_node in current.value:
                sub: Path | None = None
                if isinstance(key_node, yaml.ScalarNode):
                    if key_node.value in keys or key_node.tag == MERGE_TAG:
                        raise _Irregular
                    keys.add(key_node.value)
                    if path is not None:
                        sub = path + (key_node.value,)
                        if lines is not None:
                            lines[sub] = key_node.start_mark.line + 1
                children += ((key_node, depth, None), (value_node, depth, sub))
            stack += reversed(children)
        elif isinstance(current, yaml.SequenceNode):
            items = current.value
            stack += ((items[i], depth, None if path is None else path + (i,))
                      for i in range(len(items) - 1, -1, -1))


def _build(node: yaml.Node, loader: Any) -> Any:  # noqa: ANN401
    """The data of an anchor-free document: plain strings, lists and maps built here,
    every other node by the loader's own constructors."""
    if isinstance(node, yaml.ScalarNode):
        return node.value if node.tag == STR_TAG else loader.construct_object(node, True)
    if isinstance(node, yaml.SequenceNode) and node.tag == SEQ_TAG:
        return [_build(item, loader) for item in node.value]
    if isinstance(node, yaml.MappingNode) and node.tag == MAP_TAG and all(
            isinstance(k, yaml.ScalarNode) for k, _ in node.value):
        return {_build(k, loader): _build(v, loader) for k, v in node.value}
    return loader.construct_object(node, True)


def _reset(loader: Any) -> None:  # noqa: ANN401
    loader.constructed_objects, loader.recursive_objects = {}, {}
    loader.state_generators, loader.deep_construct = [], False


def _document(loader: Any, node: yaml.Node, file: str, limits: Limits,  # noqa: ANN401
              lines: bool, anchors: bool) -> Loaded:
    line_map: dict[Path, int] = {}
    if not anchors:
        try:
            _check_tree(node, file, limits, line_map if lines else None)
        except _Irregular:
            line_map.clear()
        else:
            try:
                data = _build(node, loader)
            except Exception:  # noqa: BLE001  (the general path reports it, first as it sees it)
                _reset(loader)
            else:
                _reset(loader)
                return Loaded(data, line_map, _line(node))
    _check(node, file, limits)
    data = loader.construct_document(node)
    line_map.clear()
    if lines:
        _walk_lines(node, line_map)
    return Loaded(data, line_map, _line(node))


_TAB = re.compile(r"\t")


def _problem_of(exc: yaml.YAMLError, text: str, file: str) -> YAMLProblem:
    if isinstance(exc, yaml.reader.ReaderError):
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return YAMLProblem(file, _line_of_offset(text, exc.position), (
            f"control character U+{ord(char):04X} is not allowed in YAML text; write it "
            "as an escape in a double-quoted string"))
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = int(mark.line) + 1 if mark is not None else 1
    problem = str(getattr(exc, "problem", None) or exc).strip()
    all_lines = text.splitlines()
    source_line = all_lines[line - 1] if 0 < line <= len(all_lines) else ""
    column = int(mark.column) if mark is not None else 0
    indent = source_line[:len(source_line) - len(source_line.lstrip(" \t"))]
    if source_line[column:column + 1] == "\t" or "tab character" in problem or "\t" in indent:
        col = column + 1 if source_line[column:column + 1] == "\t" else source_line.find("\t") + 1
        return YAMLProblem(file, line, (
            f"a tab character at column {col}: YAML indents and separates with spaces, "
            "never tabs"))
    if "unhashable key" in problem:
        return YAMLProblem(file, line, "a key must be a plain value, not a list or mapping")
    if isinstance(exc, yaml.constructor.ConstructorError) and "tag" in problem:
        tag = problem.rsplit(" ", 1)[-1].strip("'!")
        return YAMLProblem(file, line, f"unsupported YAML tag !{tag}: specs hold plain "
                                       "mappings, lists, strings, numbers and booleans")
    if "nesting depth" in problem:  # libyaml's own limit, far above ours
        return YAMLProblem(file, line, "nested deeper than the limit of "
                                       f"{LIMITS.max_depth} levels", "too_deep")
    return YAMLProblem(file, line, f"invalid YAML: {problem}")


def _line_of_offset(text: str, offset: int) -> int:
    return text.count("\n", 0, max(0, offset)) + 1


def load_all(text: str, file: str, *, limits: Limits = LIMITS, lines: bool = True,
             exact_numbers: bool = False) -> list[Loaded]:
    """Every document in `text`, checked against `limits`; raises YAMLProblem.

    `exact_numbers` gives YAML floats as Decimal (99.95 stays 99.95, 1.50 stays `1.50`).
    Empty documents (`---` alone, comments only) come back with data None.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        raise YAMLProblem(file, 1, f"file larger than {limits.max_bytes:,} bytes",
                          "too_large")
    try:  # the pure reader checks the whole text for control characters here
        loader = (_ExactLoader if exact_numbers else _Loader)(text)
    except yaml.YAMLError as exc:
        raise _problem_of(exc, text, file) from None
    out: list[Loaded] = []
    # no `&` in the text: no anchors, so no aliases, and every node is reached once
    anchors = "&" in text
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            out.append(_document(loader, node, file, limits, lines, anchors))
    except yaml.YAMLError as exc:
        raise _problem_of(exc, text, file) from None
    except RecursionError:
        # the pure-Python composer recurses per level; libyaml stops at its own limit
        raise YAMLProblem(file, 1, f"nested deeper than {limits.max_depth} levels",
                          "too_deep") from None
    except (ValueError, InvalidOperation) as exc:  # e.g. an int beyond Python's digit limit
        raise YAMLProblem(file, 1, f"invalid value: {exc}") from None
    finally:
        loader.dispose()
    return out


def read_text(path: str | FsPath, file: str | None = None,
              limits: Limits = LIMITS) -> str:
    """A file's text, refusing what is too big before reading it; raises YAMLProblem.

    OSError is left to the caller (a missing file is a usage problem, not bad YAML).
    """
    with open(path, "rb") as fh:
        return read_stream(fh, file or str(path), limits)


def read_stream(stream: BinaryIO, file: str, limits: Limits = LIMITS,
                what: str = "file") -> str:
    """The text of an open binary stream (a file, standard input), reading at most one
    byte past the limit; raises YAMLProblem when it is too big or not UTF-8."""
    raw = stream.read(limits.max_bytes + 1)
    if len(raw) > limits.max_bytes:
        raise YAMLProblem(file, 1, f"{what} larger than {limits.max_bytes:,} bytes",
                          "too_large")
    return decode(raw, file)


def decode(raw: bytes, file: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YAMLProblem(file, line, (f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at "
                                       f"column {column}")) from None


def load_file(path: str | FsPath, *, limits: Limits = LIMITS,
              exact_numbers: bool = False) -> list[Any]:
    """The non-empty documents of a file, for callers that need no line map (manifests).

    Pure and thread-safe: it can run in `asyncio.to_thread`. Raises YAMLProblem or OSError.
    """
    text = read_text(path, limits=limits)
    return [d.data for d in load_all(text, str(path), limits=limits, lines=False,
                                     exact_numbers=exact_numbers) if d.data is not None]
