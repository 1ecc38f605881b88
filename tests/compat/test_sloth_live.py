"""Sloth v0.16.0 itself, run on its own examples in place: it makes the committed `_gen`.

scripts/install-tools.sh builds the pinned Sloth. Every example input is run the way
upstream's examplesgen.sh made `_gen` (SOURCE.md), one input at a time, so that one
failing input cannot hide the others' output. What Sloth writes must be its committed
expected output, compared as YAML documents, which leaves out two things a build or a run
may change: the header comment, and the `sloth_version` label, which is `dev` in `_gen`
and in a `go install` build, but a release's own version in a release binary. Inputs
Sloth cannot generate here are in NEEDS_SLI_PLUGIN, and each must fail for that reason.
test_sloth_equivalence.py runs our alert-equivalence cases against the same live output.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.compat.peers import (
    SLOTH_VERSION,
    groups_of,
    peer,
    rule_documents,
    run_sloth,
    sloth_output,
    sloth_stderr,
)
from tests.compat.test_sloth_equivalence import EXAMPLES, UNSUPPORTED_GEN
from tests.tools import require_tool

#: input -> the SLI plugin it uses. Sloth loads SLI plugins as Go source from the plugins
#: path (-p); upstream keeps this one in examples/plugins, which is code and was not copied
#: to ../shared (SOURCE.md), so Sloth cannot find it
NEEDS_SLI_PLUGIN = {
    "plugin-getting-started.yml": "getting_started_availability",
    "plugin-k8s-getting-started.yml": "getting_started_availability",
}
#: every input with an expected output in `_gen` that Sloth can generate here: the ones
#: with SLO plugins too, which are built into Sloth
LIVE = sorted({*EXAMPLES, *UNSUPPORTED_GEN} - set(NEEDS_SLI_PLUGIN))


def test_the_sloth_the_tests_run_is_the_pinned_release() -> None:
    sloth = require_tool("sloth")
    version = subprocess.run([sloth, "version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0, sloth_stderr(version)
    if version.stdout.strip() == SLOTH_VERSION:  # a release binary
        return
    # a `go install` build says `dev`; its build info names the module version
    info = subprocess.run([require_tool("go"), "version", "-m", sloth],
                          capture_output=True, text=True, timeout=60)
    assert info.returncode == 0, info.stderr
    assert ["mod", "github.com/slok/sloth", SLOTH_VERSION] in \
        [line.split()[:3] for line in info.stdout.splitlines()]


def test_every_sloth_input_is_run_live() -> None:
    inputs = {p.name for p in peer("sloth", "examples").glob("*.y*ml")}
    assert set(LIVE) | set(NEEDS_SLI_PLUGIN) == inputs
    assert len(LIVE) == 16


def documents(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of a Sloth output, with the Sloth version label blanked."""
    docs = rule_documents(path)
    for rule in (r for doc in docs for g in groups_of(doc) for r in g["rules"]):
        if "sloth_version" in rule.get("labels", {}):
            rule["labels"]["sloth_version"] = "<version>"
    return docs


@pytest.mark.parametrize("example", LIVE)
def test_sloth_generates_its_committed_expected_output(example: str, tmp_path: Path) -> None:
    out = sloth_output(peer("sloth", "examples", example), tmp_path / example)
    assert documents(out) == documents(peer("sloth", "examples", "_gen", example))


@pytest.mark.parametrize("example", sorted(NEEDS_SLI_PLUGIN))
def test_sloth_cannot_run_the_upstream_sli_plugin_we_do_not_have(example: str,
                                                                tmp_path: Path) -> None:
    proc = run_sloth(peer("sloth", "examples", example), tmp_path / example)
    assert proc.returncode != 0
    assert f'plugin "{NEEDS_SLI_PLUGIN[example]}" not found' in sloth_stderr(proc)
