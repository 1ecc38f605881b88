"""Every promtool test `generate --with-tests` writes passes, on promtool 2 and 3.

Inputs: every example spec under examples/ and every peer input (Sloth, Pyrra, OpenSLO)
under ../shared/peers that converts. The SLOs whose tests are left out must be exactly
the ones docs/testing.md lists as unsynthesisable, with the reason it gives. Tests are
batched: a few promtool runs over many files, at most two at a time (two cores).
"""

from __future__ import annotations

from pathlib import Path

from sloexporter.output import write_all
from sloexporter.specs import load_paths
from sloexporter.testgen import Skipped
from tests.compat.peers import peer
from tests.compat.test_coverage import expected, load_input, peer_inputs
from tests.tools import ROOT, promtool_test_rules

DOCS = ROOT / "docs" / "testing.md"

#: (input, service/slo) -> (partial: only the steady-errors test is left out, reason)
UNSYNTHESISABLE: dict[tuple[str, str], tuple[bool, str]] = {
    # Pyrra's latencyNative: promtool 2 test files cannot hold native histogram samples
    ("pyrra/examples/pyrra-connect-latency.yaml", "pyrra-connect-latency/pyrra-connect-latency"): (
        False, "reads a native histogram (histogram_count)"),
    # Sloth's home-wifi: clients below a satisfaction level are counted, so each is good
    # or bad; half the budget would need 40 / 2,000 such series
    ("sloth/examples/home-wifi.yml", "home-wifi/good-wifi-client-satisfaction"): (
        True, "needs 40 series of a gauge whose objects are each good or bad"),
    ("sloth/examples/home-wifi.yml", "home-wifi/risk-wifi-client-satisfaction"): (
        True, "needs 2000 series of a gauge whose objects are each good or bad"),
    ("sloth/examples/k8s-home-wifi.yml", "home-wifi/good-wifi-client-satisfaction"): (
        True, "needs 40 series of a gauge whose objects are each good or bad"),
    ("sloth/examples/k8s-home-wifi.yml", "home-wifi/risk-wifi-client-satisfaction"): (
        True, "needs 2000 series of a gauge whose objects are each good or bad"),
}


def generate(inputs: list[tuple[str, list]], out: Path) -> tuple[list[Path], dict]:
    """Write rules and tests for each (name, services); the test files (under
    out/<input's index>/) and the skips."""
    files: list[Path] = []
    skipped: dict[tuple[str, str], Skipped] = {}
    for n, (name, services) in enumerate(inputs):
        left_out: list[Skipped] = []
        written = write_all(services, out / str(n), with_tests=True, skipped=left_out)
        files += [p for p in written if p.name.endswith(".test.yaml")]
        skipped.update({(name, f"{s.slo.service}/{s.slo.name}"): s for s in left_out})
    return files, skipped


def example_specs() -> list[Path]:
    """Every spec file under examples/ (manifests and settings files are not specs)."""
    found = []
    for path in sorted((ROOT / "examples").rglob("*.y*ml")):
        services, errors = load_paths([str(path)])
        if services and not errors:
            found.append(path)
    return found


def test_generated_tests_pass_for_every_example(tmp_path: Path) -> None:
    specs = example_specs()
    assert {p.name for p in (ROOT / "examples" / "slos").glob("*.yaml")} <= \
        {p.name for p in specs}
    inputs = [(str(p.relative_to(ROOT)), load_paths([str(p)])[0]) for p in specs]
    files, skipped = generate(inputs, tmp_path)
    assert not skipped, "\n".join(map(str, skipped.values()))
    assert len(files) == len({s.name for _, services in inputs for s in services})
    # test_platform_examples.py already runs promtool 2 on the platforms' tests
    platforms = {f for f in files
                 if inputs[int(f.relative_to(tmp_path).parts[0])][0]
                 .startswith("examples/platforms/")}
    promtool_test_rules([f for f in files if f not in platforms])
    promtool_test_rules(sorted(platforms), ("promtool3",))


def test_generated_tests_pass_for_every_peer_input(tmp_path: Path) -> None:
    peer()  # skips, saying why, when ../shared/peers is absent
    inputs = []
    for rel in peer_inputs():
        if expected(rel) is not None:
            continue  # rejected on purpose, with the message test_coverage checks
        services, errors = load_input(rel)
        assert not errors, (rel, [str(e) for e in errors])
        inputs.append((rel, services))
    files, skipped = generate(inputs, tmp_path)
    got = {key: (s.partial, s.reason) for key, s in skipped.items()}
    assert set(got) == set(UNSYNTHESISABLE), "\n".join(map(str, skipped.values()))
    for key, (partial, reason) in UNSYNTHESISABLE.items():
        assert got[key][0] == partial and reason in got[key][1], (key, got[key])
    assert len(files) >= 40
    promtool_test_rules(files)


def test_the_docs_list_every_unsynthesisable_peer_slo() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for rel, slo in UNSYNTHESISABLE:
        assert Path(rel).name in text and slo.split("/")[1] in text, (rel, slo)
