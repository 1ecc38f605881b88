"""Shared helpers of the compatibility tests: where the peers' files are, promtool, sloth.

The peers' examples and expected outputs are read in place from ../shared/peers; when
that folder is absent the compat tests skip and say why (the only allowed skip).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from sloexporter import rules
from sloexporter.model import Service
from sloexporter.output import to_yaml
from sloexporter.specs import load_paths
from tests.tools import ROOT, require_tool

PEERS = ROOT.parent / "shared" / "peers"
#: the Sloth release of the examples and `_gen` outputs in ../shared (SOURCE.md), which
#: scripts/install-tools.sh builds
SLOTH_VERSION = "v0.16.0"


def peer(*parts: str) -> Path:
    """A path under the peers' folder; skips the test when the folder is absent."""
    if not PEERS.is_dir():
        pytest.skip(f"the peers' examples are not present at {PEERS}")
    return PEERS.joinpath(*parts)


def peer_inputs() -> list[str]:
    """Every example input of the three peers, relative to the peers' folder."""
    root = peer()
    found = [*root.glob("sloth/examples/*.y*ml"), *root.glob("sloth/examples/windows/*.yaml"),
             *root.glob("pyrra/examples/**/*.yaml"),
             *root.glob("pyrra/golden/kubernetes/**/*.yaml"),
             *root.glob("openslo/**/*.yaml"), *root.glob("openslo/**/*.json")]
    return sorted(str(p.relative_to(root)) for p in found
                  if not p.name.endswith(".rules.yaml"))  # Pyrra's expected output


def load(*paths: Path) -> list[Service]:
    services, errors = load_paths([str(p) for p in paths])
    assert not errors, "\n".join(str(e) for e in errors)
    return services


def our_groups(services: list[Service]) -> list[dict[str, Any]]:
    return [g for s in services for g in rules.service_groups(s)]


def first_fire(selector: str, over: int) -> str:
    """PromQL for when `selector` (an ALERTS selector) first fired in the last `over`s."""
    return f"min(min_over_time(timestamp({selector})[{over}s:1m]))"


def rule_documents(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of a Prometheus rule file or of PrometheusRule objects."""
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def groups_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The rule groups of one of those documents (the document's own list)."""
    return doc["spec"]["groups"] if doc.get("kind") == "PrometheusRule" else doc["groups"]


def rule_groups(path: Path) -> list[dict[str, Any]]:
    """The rule groups of a Prometheus rule file or of PrometheusRule objects."""
    return [g for doc in rule_documents(path) for g in groups_of(doc)]


def promtool_test(promtool: str, folder: Path, rule_files: dict[str, list[dict[str, Any]]],
                  tests: list[dict[str, Any]], interval: str = "1m") -> str | None:
    """Run `promtool test rules` on `tests` over the given rule files; its output on failure."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, groups in rule_files.items():
        (folder / name).write_text(to_yaml({"groups": groups}), encoding="utf-8")
    test_file = folder / "equivalence.test.yaml"
    test_file.write_text(to_yaml({"rule_files": list(rule_files), "evaluation_interval": interval,
                                  "tests": tests}), encoding="utf-8")
    proc = subprocess.run([promtool, "test", "rules", test_file.name], cwd=folder,
                          capture_output=True, text=True, timeout=300)
    return None if proc.returncode == 0 else f"{folder.name}:\n{proc.stdout}{proc.stderr}"


def run_all(jobs: list[Callable[[], str | None]]) -> None:
    """Run promtool jobs on every core (promtool is single-threaded) and report failures."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        failures = [f for f in pool.map(lambda job: job(), jobs) if f]
    assert not failures, "\n".join(failures)


def run_sloth(source: Path, out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """Run the real `sloth generate` on one input, as upstream's examplesgen.sh made `_gen`:
    its extra label and its examples folder as the plugins path (SOURCE.md)."""
    examples = peer("sloth", "examples")
    return subprocess.run([require_tool("sloth"), "generate", "--no-log", "-i", str(source),
                           "-o", str(out), "-p", str(examples),
                           "--extra-labels", "cmd=examplesgen.sh", *flags],
                          capture_output=True, text=True, timeout=120)


def sloth_stderr(proc: subprocess.CompletedProcess[str]) -> str:
    # Sloth logs that it cannot read the cgroup's PSI files on every start, even with
    # --no-log; it says nothing about the run
    return "".join(line for line in proc.stderr.splitlines(keepends=True)
                   if "disable exposing PSI metrics" not in line)


def sloth_output(source: Path, out: Path, *flags: str) -> Path:
    """The file `out` Sloth generates for `source`; a Sloth failure fails the test."""
    proc = run_sloth(source, out, *flags)
    if proc.returncode != 0:
        pytest.fail(f"sloth generate {source.name} exited {proc.returncode}:\n"
                    f"{sloth_stderr(proc)}")
    return out
