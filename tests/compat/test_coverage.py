"""Coverage of the peers' own example inputs.

Every Sloth, Pyrra and OpenSLO input under ../shared/peers is either supported (it
loads, and the rules we generate for it pass `promtool check rules`) or listed in
REJECTED with the message we give and why. A new upstream example that is neither makes
`test_every_peer_input_is_classified` fail. docs/compat.md gives the counts.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from sloexporter.model import Service
from sloexporter.output import write_all
from sloexporter.specs import load_paths
from sloexporter.specs.errors import SpecError
from tests.compat.peers import PEERS, peer, peer_inputs

#: peer input -> (a message we must give, why we do not support it)
REJECTED: dict[str, tuple[str, str]] = {
    # Sloth: plugins are Go code or change the rule pipeline
    "sloth/examples/plugin-getting-started.yml": (
        "unsupported: SLI plugin getting_started_availability", "SLI plugin (Go code)"),
    "sloth/examples/plugin-k8s-getting-started.yml": (
        "unknown field 'page_alert'; did you mean 'pageAlert'",
        "snake_case fields in a CRD, which the API server would prune; and an SLI plugin"),
    "sloth/examples/contrib-slo-plugins.yml": (
        "unsupported: SLO plugin sloth.dev/contrib/info_labels/v1", "SLO plugins"),
    "sloth/examples/contrib-denominator-corrected.yaml": (
        "unsupported: SLO plugin sloth.dev/contrib/denominator_corrected_rules/v1",
        "SLO plugin"),
    "sloth/examples/victoria-metrics.yml": (
        "unsupported: SLO plugin sloth.dev/contrib/validate_victoria_metrics/v1",
        "VictoriaMetrics-only PromQL (histogram_share), alert names Prometheus rejects"),
    # Pyrra: a 90% objective over 4w, where no page tier's threshold is below 100% errors
    "pyrra/examples/caddy-response-latency.yaml": (
        "the page tier 1h/5m can never fire at objective 90", "objective too low to page"),
    "pyrra/examples/nginx.yaml": (
        "the page tier 1h/5m can never fire at objective 90", "objective too low to page"),
    # OpenSLO: the known-invalid upstream examples (SOURCE.md)
    "openslo/examples/budgeting-method/ratio-timeslices.yaml": (
        "property is forbidden: 'op'", "op on a ratioMetric objective (invalid upstream)"),
    "openslo/examples/treat-low-traffic-as-equally-important/timeslices-slo.yaml": (
        "property is forbidden: 'op'", "op on a ratioMetric objective (invalid upstream)"),
    "openslo/examples/budgeting-method/timeslices-slo.yaml": (
        "did you mean M (a month)?", "calendar window 1m (minute) meant 1M (invalid upstream)"),
    "openslo/go-sdk/pkg/openslo/v1/examples/slos.yaml": (
        "property is forbidden: 'op'", "op on a ratioMetric objective (invalid upstream)"),
    "openslo/oslo/test/inputs/validate/v1.yaml": (
        "property is forbidden: 'op'", "oslo expects this to fail"),
    "openslo/oslo/test/inputs/validate/v1alpha.yaml": (
        "budgetingMethod Timeslices needs 'timeSliceTarget'", "oslo expects this to fail"),
    "openslo/oslo/test/inputs/validate/unknown-field.yaml": (
        "unknown field 'markdown'", "oslo expects this to fail"),
    "openslo/oslo/test/inputs/validate/invalid-apiversion.yaml": (
        "unknown spec format: apiVersion 'foo'", "oslo expects this to fail"),
    "openslo/oslo/test/inputs/validate/mix/1.yaml": ("RFC-1123", "oslo expects this to fail"),
    "openslo/oslo/test/inputs/validate/mix/2.yaml": ("RFC-1123", "oslo expects this to fail"),
    "openslo/oslo/test/inputs/validate/recursive/1.yaml": ("RFC-1123",
                                                           "oslo expects this to fail"),
    # OpenSLO: queries for other backends cannot become Prometheus rules
    "openslo/examples/budgeting-method/occurences-slo.yaml": (
        "unsupported: metric source 'Any'", "placeholder metric source"),
    "openslo/go-sdk/pkg/openslo/v1alpha/examples/slos.yaml": (
        "unsupported: metric source 'datadog'", "Datadog queries"),
    # OpenSLO: references to objects no file defines (upstream SDK rejects these too)
    "openslo/go-sdk/pkg/openslo/v1/examples/alert_policies.yaml": (
        "AlertNotificationTarget 'on-call-mail-notification' does not exist",
        "targetRef to a target no example file defines"),
    "openslo/go-sdk/pkg/openslosdk/test_data/inline/inputs/"
    "v1_alert_policies_invalid_condition.yaml": (
        "AlertCondition 'cpu-usage-breach' does not exist", "upstream error case"),
    "openslo/go-sdk/pkg/openslosdk/test_data/inline/inputs/"
    "v1_alert_policies_invalid_target.yaml": (
        "AlertNotificationTarget 'devs-email-notification' does not exist",
        "upstream error case"),
    "openslo/go-sdk/pkg/openslosdk/test_data/inline/inputs/v1_slo_invalid_sli.yaml": (
        "SLI 'no-sli' does not exist", "upstream error case"),
    "openslo/go-sdk/pkg/openslosdk/test_data/inline/inputs/v1_slo_invalid_target.yaml": (
        "AlertNotificationTarget 'devs-email-notification' does not exist",
        "upstream error case"),
    "openslo/go-sdk/pkg/openslosdk/test_data/inline/inputs/v1_slo_invalid_policy.yaml": (
        "AlertPolicy 'no-policy' does not exist", "dangling alertPolicyRef"),
    "openslo/go-sdk/pkg/openslosdk/test_data/inline/inputs/custom_config.yaml": (
        "does not exist", "SDK test data whose references live in other test files"),
    "openslo/go-sdk/pkg/openslosdk/test_data/inline/outputs/custom_config.yaml": (
        "does not exist", "SDK test data whose references live in other test files"),
    "openslo/go-sdk/pkg/openslosdk/test_data/export/inputs/custom_config.yaml": (
        "does not exist", "SDK test data whose references live in other test files"),
    "openslo/go-sdk/pkg/openslosdk/test_data/export/outputs/custom_config.yaml": (
        "does not exist", "SDK test data whose references live in other test files"),
    "openslo/go-sdk/pkg/openslosdk/test_data/export/inputs/v1_alert_policies.yaml": (
        "does not exist", "SDK test data whose references live in other test files"),
    "openslo/go-sdk/pkg/openslosdk/test_data/export/outputs/v1_alert_policies.yaml": (
        "does not exist", "SDK test data whose references live in other test files"),
    "openslo/go-sdk/pkg/openslosdk/test_data/export/inputs/v1_slo.yaml": (
        "does not exist", "SDK test data whose references live in other test files"),
    "openslo/go-sdk/pkg/openslosdk/test_data/export/outputs/v1_slo.yaml": (
        "does not exist", "SDK test data whose references live in other test files"),
    # OpenSLO: a burn-rate condition that alerts when the burn is LOW
    "openslo/go-sdk/pkg/openslosdk/test_data/inline/inputs/v1_slo.yaml": (
        "op lte: a burn-rate alert fires when the burn rate is above", "op lte burn rate"),
    "openslo/go-sdk/pkg/openslosdk/test_data/inline/outputs/v1_slo.yaml": (
        "op lte: a burn-rate alert fires when the burn rate is above", "op lte burn rate"),
    # OpenSLO: SLOs without a timeWindow (decoder test data)
    "openslo/go-sdk/pkg/openslosdk/test_data/decode/v1_slos.yaml": (
        "missing required field 'timeWindow'", "no timeWindow"),
    "openslo/go-sdk/pkg/openslosdk/test_data/encode/v1_slo.yaml": (
        "missing required field 'timeWindow'", "no timeWindow"),
    "openslo/go-sdk/pkg/openslosdk/test_data/encode/v1_slo.json": (
        "missing required field 'timeWindow'", "no timeWindow"),
}
#: OpenSLO v2alpha is a draft; every file of that version is rejected the same way
V2ALPHA = ("unsupported OpenSLO version 'openslo.com/v2alpha'", "draft API version v2alpha")


def expected(rel: str) -> tuple[str, str] | None:
    if rel in REJECTED:
        return REJECTED[rel]
    text = (PEERS / rel).read_text(encoding="utf-8")
    return V2ALPHA if "openslo.com/v2alpha" in text else None


#: folders whose files refer to each other, so they are loaded together
TOGETHER = {"openslo/go-sdk/pkg/openslo/v1/examples"}


def load_input(rel: str) -> tuple[list[Service], list[SpecError]]:
    """Load one input, with its sibling files when they refer to each other."""
    path = PEERS / rel
    folder = str(Path(rel).parent)
    if folder not in TOGETHER:
        return load_paths([str(path)])
    services, errors = load_paths([str(PEERS / folder)])
    return ([s for s in services if s.origin.startswith(f"{path}:")],
            [e for e in errors if e.file == str(path)])


def test_every_peer_input_is_classified() -> None:
    inputs = set(peer_inputs())
    assert set(REJECTED) <= inputs, "REJECTED names files the peers do not have"
    assert len(inputs) >= 100


def test_rejected_inputs_get_the_right_message() -> None:
    for rel in peer_inputs():
        reason = expected(rel)
        if reason is None:
            continue
        _, errors = load_input(rel)
        assert any(reason[0] in str(e) for e in errors), (rel, [str(e) for e in errors])
        assert all(str(e).startswith(f"{PEERS / rel}:") for e in errors), errors


def test_supported_inputs_generate_rules_promtool_accepts(promtool: str, tmp_path: Path) -> None:
    written: list[Path] = []
    for n, rel in enumerate(peer_inputs()):
        if expected(rel) is not None:
            continue
        services, errors = load_input(rel)
        assert not errors, (rel, [str(e) for e in errors])
        written += [p for p in write_all(services, tmp_path / str(n)) if "/rules/" in str(p)]
    assert len(written) >= 45
    proc = subprocess.run([promtool, "check", "rules", *map(str, written)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pyrra_golden_fixtures_generate_rules_promtool_accepts(promtool: str,
                                                               tmp_path: Path) -> None:
    fixtures = yaml.safe_load(peer("pyrra", "golden", "slo", "rules_test", "fixtures.yaml")
                              .read_text(encoding="utf-8"))
    written: list[Path] = []
    for name, fixture in fixtures.items():
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(yaml.safe_dump(fixture["object"]), encoding="utf-8")
        services, errors = load_paths([str(spec)])
        assert not errors, (name, [str(e) for e in errors])
        written += [p for p in write_all(services, tmp_path / name) if "/rules/" in str(p)]
    assert len(written) == len(fixtures) == 27
    proc = subprocess.run([promtool, "check", "rules", *map(str, written)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def coverage() -> dict[str, tuple[int, int]]:
    """(supported, total) input files per peer, as docs/compat.md reports them."""
    out: dict[str, tuple[int, int]] = {}
    for rel in peer_inputs():
        name = rel.split("/")[0]
        ok, total = out.get(name, (0, 0))
        out[name] = (ok + (expected(rel) is None), total + 1)
    return out


@pytest.mark.parametrize(("name", "supported", "total"), [
    ("sloth", 15, 20), ("pyrra", 33, 35), ("openslo", 17, 62)])
def test_coverage_numbers_match_the_docs(name: str, supported: int, total: int) -> None:
    assert coverage()[name] == (supported, total)
