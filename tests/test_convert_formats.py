"""`convert --to sloth|native`: round trips that generate the same rules, and Sloth itself
accepts what we write."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sloexporter import rules
from sloexporter.specs import load_paths
from tests.conftest import run_cli
from tests.tools import require_tool

SPEC = """\
apiVersion: sloexporter.dev/v1
kind: ServiceLevels
service: shop
labels: {team: web}
slos:
  - name: availability
    objective: 99.9
    description: Shop requests succeed
    labels: {tier: "1"}
    sli:
      events:
        errors: sum(rate(http_requests_total{job="shop",code=~"5.."}[{{window}}]))
        total: sum(rate(http_requests_total{job="shop"}[{{window}}]))
    alerting:
      name: ShopBurn
      runbook_url: https://runbooks.example.com/shop
      labels: {owner: web}
      annotations: {summary_extra: "see the runbook"}
      page: {labels: {severity: critical}, annotations: {escalate: "yes"}}
      ticket: {disabled: true}
  - name: logins
    objective: 99.5
    sli:
      events:
        good: sum(rate(logins_total{result="ok"}[{{window}}]))
        total: sum(rate(logins_total[{{window}}]))
  - name: up
    objective: 99
    sli:
      ratio:
        query: 1 - avg(avg_over_time(up{job="shop"}[{{window}}]))
  - name: latency
    objective: 99
    sli:
      latency: {metric: http_request_duration_seconds, selector: '{job="shop"}', threshold: 0.5}
"""


def _rules(paths: list[Path]) -> list[Any]:
    """The rule groups of `paths`, with slo:info's sli_kind left out (a converted SLI is
    an events one); everything else must be equal."""
    services, errors = load_paths([str(p) for p in paths])
    assert not errors, [str(e) for e in errors]
    groups = [g for s in sorted(services, key=lambda s: s.name) for g in rules.service_groups(s)]
    for group in groups:
        for rule in group["rules"]:
            rule.get("labels", {}).pop("sli_kind", None)
    return groups


def _convert(source: Path, to: str, out: Path, *more: Path) -> list[Path]:
    result = run_cli("convert", str(source), *map(str, more), "--to", to, "-o", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    return sorted(p for p in out.glob("*.yaml"))


GOOD = """  - name: logins
    objective: 99.5
    sli:
      events:
        good: sum(rate(logins_total{result="ok"}[{{window}}]))
        total: sum(rate(logins_total[{{window}}]))
"""
LATENCY = """  - name: latency
    objective: 99
    sli:
      latency: {metric: http_request_duration_seconds, selector: '{job="shop"}', threshold: 0.5}
"""
# Sloth has error queries only: SLIs our rules compute from good/total (events with good,
# latency) convert to errors = total - good, equivalent but not the same rule text
SLOTH_SPEC = SPEC.replace(GOOD, "").replace(LATENCY, "")


def test_native_to_native_keeps_good_and_total(tmp_path):
    source = tmp_path / "shop.yaml"
    source.write_text(SPEC)
    native = _convert(source, "native", tmp_path / "native")
    assert "good:" in native[0].read_text()
    assert _rules(native) == _rules([source])


def test_native_to_sloth_to_native_generates_the_same_rules(tmp_path):
    source = tmp_path / "shop.yaml"
    source.write_text(SLOTH_SPEC)
    sloth = _convert(source, "sloth", tmp_path / "sloth")
    assert [p.name for p in sloth] == ["shop.sloth.yaml"]  # 30d: no AlertWindows needed
    assert yaml.safe_load(sloth[0].read_text())["version"] == "prometheus/v1"
    native = _convert(sloth[0], "native", tmp_path / "native")
    assert _rules(sloth) == _rules([source]) == _rules(native)


def test_sloth_itself_generates_from_what_we_write(tmp_path):
    sloth_bin = require_tool("sloth")
    source = tmp_path / "shop.yaml"
    source.write_text(SPEC)
    [spec] = _convert(source, "sloth", tmp_path / "sloth")
    result = subprocess.run([sloth_bin, "generate", "--no-log", "-i", str(spec)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    groups = yaml.safe_load(result.stdout)["groups"]
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    assert alerts == {"ShopBurn", "ErrorBudgetBurn"}


def test_another_period_travels_as_sloths_alert_windows(tmp_path, promtool):
    sloth_bin = require_tool("sloth")
    source = tmp_path / "shop.yaml"
    source.write_text(SLOTH_SPEC.replace("    objective: 99.9\n",
                                         "    objective: 99.9\n    period: 7d\n")
                      .replace("    objective: 99\n", "    objective: 99\n    period: 7d\n"))
    out = tmp_path / "sloth"
    files = _convert(source, "sloth", out)
    assert [p.name for p in files] == ["alert-windows-7d.yaml", "shop.sloth.yaml"]
    # our reader, given both, generates the same rules as the 7d native spec
    assert _rules(files) == _rules([source])
    # and Sloth takes the windows file for its 7d period
    windows = tmp_path / "windows"
    windows.mkdir()
    (windows / "7d.yaml").write_text(files[0].read_text())
    result = subprocess.run([sloth_bin, "generate", "--no-log", "-i", str(files[1]),
                             "--slo-period-windows-path", str(windows),
                             "--default-slo-period", "7d"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rule_file = tmp_path / "sloth-rules.yaml"
    rule_file.write_text(result.stdout)
    check = subprocess.run([promtool, "check", "rules", str(rule_file)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_sloth_example_becomes_a_native_spec_with_the_same_rules(tmp_path):
    source = tmp_path / "sloth.yaml"
    source.write_text("""\
version: prometheus/v1
service: myservice
labels: {owner: myteam}
slos:
  - name: requests-availability
    objective: 99.9
    description: Common SLO based on availability for HTTP request responses.
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="myservice",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="myservice"}[{{.window}}]))
    alerting:
      name: MyServiceHighErrorRate
      labels: {category: availability}
      annotations: {summary: High error rate on 'myservice' requests responses}
      page_alert: {labels: {severity: pageteam, routing_key: myteam}}
      ticket_alert: {labels: {severity: slack, slack_channel: "#alerts-myteam"}}
""")
    [native] = _convert(source, "native", tmp_path / "native")
    doc = yaml.safe_load(native.read_text())
    assert (doc["apiVersion"], doc["kind"], doc["service"]) == (
        "sloexporter.dev/v1", "ServiceLevels", "myservice")
    assert "Yours to edit" in native.read_text()
    assert _rules([native]) == _rules([source])
    assert run_cli("validate", str(native)).returncode == 0


@pytest.mark.parametrize(("change", "says"), [
    (("    ticket: {disabled: true}", "    ticket: {disabled: true}\n      page: {for: 2m}"),
     None),
    (("      ticket: {disabled: true}", "      ticket: {disabled: true}\n      tiers:\n"
      "        - {severity: page, long_window: 1h, short_window: 5m, budget_consumed: 2}"),
     "own alert tiers"),
    (("  - name: up\n    objective: 99\n", "  - name: up\n    objective: 99\n    period: 28d\n"),
     "several periods"),
])
def test_what_sloth_cannot_say_is_an_error_and_nothing_is_written(tmp_path, change, says):
    text = SPEC.replace(*change)
    if says is None:  # a `for` on the page alert
        text = SPEC.replace("page: {labels: {severity: critical}, annotations: {escalate: "
                            "\"yes\"}}", "page: {for: 2m}")
        says = "for: 2m"
    source = tmp_path / "shop.yaml"
    source.write_text(text)
    out = tmp_path / "out"
    result = run_cli("convert", str(source), "--to", "sloth", "-o", str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_kinds_with_their_own_recording_rules_are_not_events(tmp_path):
    source = tmp_path / "backup.yaml"
    source.write_text("""\
apiVersion: sloexporter.dev/v1
kind: ServiceLevels
service: db
slos:
  - name: rpo
    objective: 99
    sli:
      backup: {selector: '{name="pg"}'}
""")
    for to in ("native", "sloth"):
        result = run_cli("convert", str(source), "--to", to, "-o", str(tmp_path / to))
        assert result.returncode == 1
        assert "db/rpo" in result.stderr and "recording rules" in result.stderr


def test_invalid_input_is_reported_like_validate(tmp_path):
    source = tmp_path / "bad.yaml"
    source.write_text(SPEC.replace("objective: 99.9", "objective: 100"))
    result = run_cli("convert", str(source), "--to", "native", "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    assert f"{source}:" in result.stderr and "objective" in result.stderr


def test_the_documented_convert_commands_run(tmp_path):
    import re

    from tests.tools import doc_section, run_sh

    sloth_spec = _sloth_of(tmp_path)
    (tmp_path / "sloth").mkdir()
    (tmp_path / "sloth" / "shop.yaml").write_text(sloth_spec)
    block = re.findall(r"```sh\n(.*?)\n```", doc_section("formats", "## Convert"), re.S)[0]
    run_sh(block, tmp_path)
    assert sorted(p.name for p in (tmp_path / "slos").glob("*.yaml")) == ["shop.yaml"]
    assert (tmp_path / "sloth" / "shop.sloth.yaml").is_file()
    assert (tmp_path / "openslo" / "shop.openslo.yaml").is_file()


def _sloth_of(tmp_path: Path) -> str:
    source = tmp_path / "native-shop.yaml"
    source.write_text(SPEC)
    [spec] = _convert(source, "sloth", tmp_path / "first")
    return spec.read_text()


def test_object_names_cut_to_their_limit_still_end_with_a_letter_or_digit():
    import re

    from sloexporter.convert import rfc1123
    from sloexporter.render import k8s_name

    for name, limit in ((rfc1123("A" * 62 + " b"), 63), (k8s_name("x" * 252 + "_y"), 253),
                        (k8s_name("--Checkout API--", 63), 63)):
        assert re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", name) and len(name) <= limit, name
    assert k8s_name("Checkout API") == rfc1123("Checkout API") == "checkout-api"
    assert k8s_name("***") == "slo"
