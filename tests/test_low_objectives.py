"""Low objectives: a tier whose threshold needs more than 100% errors is refused.

At 30d the 1h page tier fires above 14.4x the budget, so below about 93% it would need
more than 100% errors and stay silent through a total outage; at or below 83.3% no page
tier can fire. `validate` names each such tier and the lowest objective at which it
fires, for every period and for custom tiers; `generate --with-tests` never crashes.
"""

from __future__ import annotations

import re
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from sloexporter.model import (
    SLI,
    SLO,
    Alerting,
    Service,
    TierSpec,
    parse_duration,
    resolve_tiers,
)
from sloexporter.specs import load_paths
from sloexporter.testgen import SynthesisError, outage_test, service_tests
from tests.conftest import run_cli

DAY = 86400
EVENTS = {"events": {
    "errors": 'sum(rate(http_requests_total{job="a",code=~"5.."}[{{window}}]))',
    "total": 'sum(rate(http_requests_total{job="a"}[{{window}}]))'}}


def write(tmp_path: Path, objective: str, period: str = "30d", alerting: dict | None = None,
          fmt: str = "native") -> Path:
    path = tmp_path / "s.yaml"
    if fmt == "sloth":
        doc = {"version": "prometheus/v1", "service": "low", "slos": [{
            "name": "avail", "objective": float(objective), "sli": {"events": {
                "error_query": EVENTS["events"]["errors"].replace("{{window}}", "{{.window}}"),
                "total_query": EVENTS["events"]["total"].replace("{{window}}", "{{.window}}")}},
            "alerting": {"name": "Low"}}]}
    else:
        slo = {"name": "avail", "objective": objective, "period": period, "sli": EVENTS}
        if alerting:
            slo["alerting"] = alerting
        doc = {"apiVersion": "sloexporter.dev/v1", "kind": "ServiceLevels", "service": "low",
               "slos": [slo]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def validate(path: Path) -> list[str]:
    """The error lines `validate` prints for `path` (the same code, in process)."""
    return [str(e) for e in load_paths([str(path)])[1]]


def silent_tiers(objective: Decimal, period: int) -> list[str]:
    """Independently of the generator: tiers whose factor x budget reaches 100% errors.

    Factors are the workbook's (budget % x period / long window), as the rules print them.
    """
    out = []
    for tier in resolve_tiers(period):
        factor = Decimal(tier.budget_percent) * period / 100 / tier.long_window
        if factor.quantize(Decimal("0.001")) * (100 - objective) / 100 >= 1:
            out.append(f"{tier.severity} tier {tier.long}/{tier.short}")
    return out


CASES = [("30d", "93"), ("30d", "90"), ("30d", "83.33"), ("30d", "80"), ("28d", "92.5"),
         ("7d", "85"), ("90d", "97"), ("1d", "80"), ("14d", "92.5")]


@pytest.mark.parametrize(("period", "objective"), CASES)
def test_validate_names_every_tier_that_can_never_fire(tmp_path, period, objective):
    expected = silent_tiers(Decimal(objective), parse_duration(period))
    assert expected, "each case must have a silent tier"
    lines = validate(write(tmp_path, objective, period))
    assert sorted(re.search(r"the (\w+ tier \S+) can never fire", line).group(1)
                  for line in lines) == sorted(expected), lines
    for line in lines:
        assert re.match(r".*s\.yaml:\d+: slos\[0\]\.objective: the .* can never fire at "
                        rf"objective {re.escape(objective)}: .*it can fire from objective "
                        r"[\d.]+ up\. .*custom alerting\.tiers", line), line


def test_the_command_reports_it_as_one_line_per_tier(tmp_path):
    result = run_cli("validate", str(write(tmp_path, "80")))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 2, result.stderr


@pytest.mark.parametrize("period", ["1d", "7d", "14d", "28d", "30d", "90d"])
def test_the_lowest_objective_given_is_exactly_where_the_tier_starts_to_fire(tmp_path, period):
    seconds = parse_duration(period)
    for tier in resolve_tiers(seconds):
        if tier.factor <= 1:
            continue
        message = "\n".join(validate(write(tmp_path, "50", period)))
        named = re.search(rf"{tier.severity} tier {re.escape(tier.long)}/\S+ can never fire "
                          r".*?from objective ([\d.]+) up", message)
        assert named, message
        lowest = Decimal(named.group(1))
        # at the objective given the tier can fire; 0.01 lower it cannot
        assert tier.factor * (100 - lowest) / 100 < 1
        assert tier.factor * (100 - (lowest - Decimal("0.01"))) / 100 >= 1
        ok = validate(write(tmp_path, str(lowest), period))
        assert not any(f"tier {tier.long}/" in line for line in ok), ok


def test_custom_tiers_are_checked_at_their_own_path(tmp_path):
    tiers = [{"severity": "page", "long_window": "1h", "short_window": "5m",
              "budget_consumed": 2},
             {"severity": "page", "long_window": "1d", "short_window": "1h",
              "budget_consumed": 10}]
    (line,) = validate(write(tmp_path, "85", "30d", {"tiers": tiers}))
    assert re.match(r".*s\.yaml:\d+: slos\[0\]\.alerting\.tiers\[0\]: the page tier 1h/5m "
                    r"can never fire at objective 85: it needs more than 216% errors", line), line
    assert "lower its budget_consumed or lengthen its long_window" in line


def test_disabled_pages_and_fitting_custom_tiers_are_the_way_out(tmp_path):
    assert validate(write(tmp_path, "80", "30d", {"page": {"disabled": True}})) == []
    tiers = [{"severity": "page", "long_window": "6h", "short_window": "30m",
              "budget_consumed": 20}]  # factor 24: fires only above 480% errors
    assert validate(write(tmp_path, "80", "30d", {"tiers": tiers}))
    tiers[0]["budget_consumed"] = 3  # factor 3: fires above 60% errors
    assert validate(write(tmp_path, "80", "30d", {"tiers": tiers})) == []


def test_other_formats_get_the_same_error_at_their_own_path(tmp_path):
    (line,) = validate(write(tmp_path, "90", fmt="sloth"))
    assert re.match(r".*s\.yaml:\d+: slos\[0\]\.objective: the page tier 1h/5m can never "
                    r"fire at objective 90", line), line


def test_generate_with_tests_refuses_instead_of_crashing(tmp_path):
    result = run_cli("generate", str(write(tmp_path, "80")), "-o", str(tmp_path / "out"),
                     "--with-tests")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "can never fire" in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_unvalidated_low_objective_slo_is_skipped_not_a_crash():
    """The model can be built without the spec checks (the API); the tests then say why."""
    sli = SLI("events", errors="sum(rate(e[{{window}}]))", total="sum(rate(t[{{window}}]))")
    pages_only = Alerting(custom_tiers=(TierSpec("page", 3600, 300, Decimal(2)),))
    slo = SLO("api", "low", Decimal(80), 30 * DAY, sli, alerting=pages_only)
    with pytest.raises(SynthesisError, match="no alert tier can fire at objective 80"):
        outage_test(slo)
    tests, skipped = service_tests(Service("api", (slo,)))
    assert tests == [] and len(skipped) == 1 and "can fire" in skipped[0].reason


def test_at_the_lowest_objective_a_total_outage_really_pages(tmp_path, promtool):
    """93.06% at 30d: the 1h page tier fires at 99.94% errors, and promtool sees it."""
    path = write(tmp_path, "93.06")
    assert not load_paths([str(path)])[1]
    result = run_cli("generate", str(path), "-o", str(tmp_path / "out"), "--with-tests")
    assert result.returncode == 0, result.stderr
    tests = yaml.safe_load((tmp_path / "out" / "tests" / "low.test.yaml").read_text())
    assert "a total outage fires page within" in tests["tests"][0]["name"]
    run = subprocess.run([promtool, "test", "rules", "low.test.yaml"],
                         cwd=tmp_path / "out" / "tests", capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
