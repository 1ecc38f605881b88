"""The module layout issue 14 asked for stays: no import cycles, writers never import
the module that calls them, and `sloexporter/specs/` is not named like a test folder."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.tools import ROOT

PACKAGE = ROOT / "sloexporter"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, known: dict[str, Path], anywhere: bool) -> set[str]:
    """sloexporter modules imported at module level (or anywhere, with `anywhere`)."""
    tree = ast.parse(path.read_text())
    nodes = list(ast.walk(tree)) if anywhere else tree.body
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in known}


def test_no_module_level_import_cycle():
    known = _modules()
    graph = {m: _imports(p, known, anywhere=False) for m, p in known.items()}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(graph[module]):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*path, nxt])
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_writers_never_import_the_pipeline_that_calls_them():
    known = _modules()
    writers = [m for m in known if m.startswith(("sloexporter.alertmanager",
                                                 "sloexporter.dashboards",
                                                 "sloexporter.testgen"))]
    assert len(writers) >= 3
    for module in writers:
        assert "sloexporter.output" not in _imports(known[module], known, anywhere=True), module


def test_the_spec_loader_folder_is_not_named_like_tests():
    assert (PACKAGE / "specs").is_dir()
    assert not (PACKAGE / "spec").exists()
