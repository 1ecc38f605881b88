"""External labels, the global rule set and ruler group limits, proven with promtool 2 and 3.

- `--external-labels cluster=eu-1`: the generated promtool tests of every SLI kind still
  pass (the alerts fire at the same step), every recorded series and alert carries the
  labels, and the rules record exactly as many series as without them.
- `--global`: two clusters' recorded series, one with an outage, give the global burn
  rate a hand computation gives (traffic-weighted), and the global set never reads a
  series without a cluster label nor its own output.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import run_cli
from tests.tools import promtool_test_rules, require_tool

#: one SLO per SLI shape whose joins differ: errors/total, good/total, a histogram, a
#: gauge condition (per-series records) and a low-traffic guard
SPEC = """\
apiVersion: sloexporter.dev/v1
kind: ServiceLevels
service: shop
labels: {team: payments}
slos:
  - name: errors
    objective: 99.9
    period: 1d
    sli:
      events:
        errors: sum(rate(http_requests_total{job="shop",code=~"5.."}[{{window}}]))
        total: sum(rate(http_requests_total{job="shop"}[{{window}}]))
  - name: good
    objective: 99
    period: 1d
    min_events: 10
    sli:
      events:
        good: sum(rate(http_requests_total{job="shop",code!~"5.."}[{{window}}]))
        total: sum(rate(http_requests_total{job="shop"}[{{window}}]))
  - name: latency
    objective: 99
    period: 1d
    sli:
      latency: {metric: http_request_duration_seconds, selector: '{job="shop"}',
                threshold: 0.5}
  - name: lag
    objective: 99
    period: 1d
    sli:
      threshold: {query: 'max(pg_replication_lag_seconds{job="db"})', op: "<", value: 900}
"""

EXTERNAL = {"cluster": "eu-1", "region": "eu west"}


def _generate(tmp_path: Path, name: str, *args: str) -> Path:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC)
    out = tmp_path / name
    result = run_cli("generate", str(spec), "-o", str(out), *args)
    assert result.returncode == 0, result.stderr
    return out


def _rules(path: Path) -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]


def _series_counts(tool: str, test_file: Path) -> dict[str, str]:
    """What promtool got for each probe, by its `# tN pM` tag (each expects -1: all fail)."""
    proc = subprocess.run([tool, "test", "rules", str(test_file)], capture_output=True,
                          text=True, timeout=600)
    got = dict(re.findall(r'# (t\d+ p\d+)", time: .*\n.*exp: .*\n\s*got: (nil|\{\} \S+)',
                          proc.stdout + proc.stderr))
    assert got, proc.stdout + proc.stderr
    return got


def _probe_tests(test_file: Path, rules_file: Path, probes: list[str]) -> Path:
    """The generated outage tests' inputs, each with `probes` evaluated at its end."""
    doc = yaml.safe_load(test_file.read_text())
    tests = []
    for i, test in enumerate(t for t in doc["tests"] if "outage" in t["name"]):
        end = max(int(e["eval_time"].rstrip("s")) for e in test["promql_expr_test"])
        tests.append({"interval": test["interval"], "input_series": test["input_series"],
                      "promql_expr_test": [
                          {"expr": f"{p} # t{i} p{j}", "eval_time": f"{end}s",
                           "exp_samples": [{"labels": "{}", "value": -1}]}
                          for j, p in enumerate(probes)]})
    probe = test_file.with_name("probe.test.yaml")
    probe.write_text(yaml.safe_dump({"rule_files": [str(rules_file)], "tests": tests}))
    return probe


def test_external_labels_keep_every_alert_and_series(tmp_path: Path) -> None:
    plain = _generate(tmp_path, "plain", "--with-tests")
    labelled = _generate(tmp_path, "labelled", "--with-tests", "--external-labels",
                         "cluster=eu-1", "--external-labels", "region=eu west")
    # every series and alert carries the labels; the joins ignore them on both sides
    for rule in _rules(labelled / "rules" / "shop.yaml"):
        assert {k: rule["labels"].get(k) for k in EXTERNAL} == EXTERNAL, rule
        if "ignoring (" in rule["expr"]:
            assert "ignoring (cluster, region, service, slo, team)" in rule["expr"], rule
    # the generated tests prove each alert still fires within its detection time
    promtool_test_rules([labelled / "tests" / "shop.test.yaml"])
    # ... and the same series exist, each once, now with the labels
    probes = ['count({__name__=~"slo:.+"})',
              'count({__name__=~"slo:.+",cluster="eu-1",region="eu west"})',
              'count(ALERTS{cluster="eu-1",region="eu west"})', "count(ALERTS)"]
    tool = require_tool("promtool3")
    before = _series_counts(tool, _probe_tests(plain / "tests" / "shop.test.yaml",
                                               plain / "rules" / "shop.yaml", probes))
    after = _series_counts(tool, _probe_tests(labelled / "tests" / "shop.test.yaml",
                                              labelled / "rules" / "shop.yaml", probes))
    assert len(before) == len(after) == 4 * 4, (before, after)  # an outage test per SLO
    for test in range(4):
        every, stamped, stamped_alerts, alerts = (f"t{test} p{j}" for j in range(4))
        assert after[stamped] == after[every] == before[every] != "nil", (before, after)
        assert after[stamped_alerts] == after[alerts] == before[alerts], (before, after)


def test_default_output_has_no_external_labels(tmp_path: Path) -> None:
    plain = (_generate(tmp_path, "a") / "rules" / "shop.yaml").read_text()
    again = (_generate(tmp_path, "b", "--external-labels", "") / "rules" / "shop.yaml")
    assert again.read_text() == plain
    assert "cluster" not in plain


@pytest.mark.parametrize(("value", "message"), [
    ("cluster", "expected KEY=VALUE"),
    ("=eu", "expected KEY=VALUE"),
    ("cluster=", "needs a value"),
    ("1cluster=a", "a label name is letters"),
    ("clus-ter=a", "a label name is letters"),
    ("service=a", "set this label themselves"),
    ("slo=a", "set this label themselves"),
    ("severity=a", "set this label themselves"),
    ("le=a", "set this label themselves"),
    ("__name__=a", "set this label themselves"),
    ("__meta=a", "set this label themselves"),
    ("cluster=a,cluster=b", "given twice"),
    ("cluster={{ $value }}", "templates"),
    ("team=x", "already has the label team"),
])
def test_bad_external_labels_are_clear_errors(tmp_path: Path, value: str, message: str) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    result = run_cli("generate", str(spec), "-o", str(out), "--external-labels", value)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not out.exists()


def test_external_label_clashes(tmp_path: Path) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC)
    both = run_cli("generate", str(spec), "-o", "-", "--external-labels", "cluster=a",
                   "--rule-labels", "cluster=a")
    assert both.returncode == 2 and "both set 'cluster'" in both.stderr, both.stderr
    grouped = tmp_path / "grouped.yaml"
    grouped.write_text(SPEC.replace("sum(rate(http_requests_total{job=\"shop\"}",
                                    "sum by (cluster) (rate(http_requests_total{job=\"shop\"}")
                       .replace('sum(rate(http_requests_total{job="shop",code',
                                'sum by (cluster) (rate(http_requests_total{job="shop",code'))
    split = run_cli("generate", str(grouped), "-o", "-", "--external-labels", "cluster=a")
    assert split.returncode == 2 and "splits its series by cluster" in split.stderr, \
        split.stderr


def test_a_gauge_series_named_like_an_external_label_stays_apart(tmp_path: Path) -> None:
    """A threshold SLI records one series per gauge series; two that differ only in
    `cluster` must not collide with the constant cluster label."""
    spec = tmp_path / "db.yaml"
    spec.write_text("""\
apiVersion: sloexporter.dev/v1
kind: ServiceLevels
service: db
slos:
  - name: up
    objective: 99
    period: 7d
    sli:
      threshold: {query: 'db_up{job="db"}', op: "==", value: 1}
""")
    out = tmp_path / "out"
    assert run_cli("generate", str(spec), "-o", str(out), "--external-labels",
                   "cluster=eu-1").returncode == 0
    test = {"rule_files": [str(out / "rules" / "db.yaml")], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": [
                {"series": 'db_up{job="db",cluster="a"}', "values": "1x30"},
                {"series": 'db_up{job="db",cluster="b"}', "values": "0x30"}],
                "promql_expr_test": [{
                    "expr": "slo:sli_condition_good:bool", "eval_time": "10m",
                    "exp_samples": [
                        {"labels": 'slo:sli_condition_good:bool{cluster="eu-1",'
                                   'exported_cluster="a",job="db",service="db",slo="up"}',
                         "value": 1},
                        {"labels": 'slo:sli_condition_good:bool{cluster="eu-1",'
                                   'exported_cluster="b",job="db",service="db",slo="up"}',
                         "value": 0}]}, {
                    "expr": 'slo:sli_bad_objects:sum{cluster="eu-1"}', "eval_time": "10m",
                    "exp_samples": [{"labels": 'slo:sli_bad_objects:sum{cluster="eu-1",'
                                               'service="db",slo="up"}', "value": 1}]}]}]}
    path = tmp_path / "db.test.yaml"
    path.write_text(yaml.safe_dump(test))
    promtool_test_rules([path])
