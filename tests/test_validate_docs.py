"""docs/validate.md: every guarantee names a test that exists, and its figures are the code's."""

from __future__ import annotations

import ast
import re

from sloexporter import gotemplate, yamlsafe
from sloexporter.sources import manifests
from sloexporter.specs import native, promcheck
from tests.tools import ROOT

DOC = ROOT / "docs" / "validate.md"


def _tests_in(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef)
            and n.name.startswith("test_")}


def test_every_guarantee_names_tests_that_exist():
    text = DOC.read_text()
    guarantees = re.findall(r"^\d+\. \*\*", text, re.M)
    assert len(guarantees) >= 9
    for block in re.split(r"\n(?=\d+\. )", text.split("## The YAML loader")[0])[1:]:
        assert re.search(r"`tests/\S+\.py::test_\w+`", block), block  # each names a test
    refs = re.findall(r"`(tests/\S+\.py)::(test_\w+)`", text)
    assert len(refs) >= 15
    for path, name in refs:
        assert name in _tests_in(path), f"{path}::{name} is named in {DOC.name} but missing"


def test_the_limits_table_is_the_code():
    text = DOC.read_text()
    table = dict(re.findall(r"^\| ([^|]+?) \| ([\d,]+)(?: bytes)? \|$", text, re.M))
    limits = yamlsafe.LIMITS
    assert table == {
        "file size": f"{limits.max_bytes:,}",
        "nesting depth (mappings and lists inside each other, aliases expanded)":
            str(limits.max_depth),
        "values that aliases add to one document once expanded":
            f"{limits.max_alias_nodes:,}",
        "characters in one number": str(limits.max_number_chars),
    }


def test_the_number_name_and_template_rules_are_the_code():
    text = " ".join(DOC.read_text().split())
    assert f"at most {native.MAX_DIGITS} significant digits" in text
    assert f"{manifests.MAX_FILE_BYTES >> 20} MiB" in text
    assert f"1e-{native.MAX_EXPONENT} to 1e{native.MAX_EXPONENT}" in text
    assert (f"at most {promcheck.MAX_LENGTH:,} characters, {promcheck.MAX_NESTING} levels of "
            f"brackets and {promcheck.MAX_OPERATORS} binary operators") in text
    assert "holt_winters" not in promcheck.FUNCTIONS
    for name in ("toDuration", "now", "urlQueryEscape"):
        assert f"`{name}`" in text and name not in gotemplate.FUNCTIONS
    for variable in gotemplate.PROMETHEUS_VARIABLES:
        assert f"`{variable}`" in text
