"""Property: `validate` and promtool agree on what `generate` writes, in both directions.

Hypothesis writes random specs in every input format (native, Sloth, Pyrra, OpenSLO) and
every SLI kind, with odd label values, Go templates (good and broken), PromQL with
comments, range vectors, Prometheus-3-only syntax and unicode. For each spec:

- validate ok  => the rules `generate` writes pass `promtool check rules`, 2.42 and 3.x;
- validate refuses => promtool 2.42 refuses the rules built from the same spec with the
  checks beyond the schema switched off (`specs.build.unchecked`), or no rules can be
  built at all.

The run is derandomized (the same examples every time, for CI). Run it longer with
`SLOEXPORTER_PROPERTY_EXAMPLES=2000 pytest tests/test_validate_property.py`.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sloexporter.output import render_rules
from sloexporter.specs import load_paths
from sloexporter.specs.build import unchecked
from tests.tools import require_tool

#: how the run went: specs validate accepted, refused with rules promtool judged, refused
#: before any rules existed, per format and kind
SEEN: Counter[str] = Counter()
EXAMPLES = int(os.environ.get("SLOEXPORTER_PROPERTY_EXAMPLES", "40"))
SPECS_PER_EXAMPLE = 8  # each example is one batch: one promtool run per tool

# ---- building blocks ---------------------------------------------------------------------

ODD_TEXT = st.text(
    alphabet=st.sampled_from(list("ab Z09_-.:/é世🙂'\"\\#{}$|()`%,=~!<>\t")), max_size=14)
TEMPLATES = st.sampled_from([
    "{{ $labels.instance }}", "{{ .Labels.job }}", "{{ $value | humanizePercentage }}",
    '{{ printf "%.2f" $value }}', "{{ if gt $value 1.0 }}high{{ else }}low{{ end }}",
    '{{ "{{" }}', "{{/* note */}}", "{{- .Labels.x -}}", "{{ range $k, $v := .Labels }}"
    "{{ $k }}{{ end }}", "{{ $externalURL }}",
    # refused by Go's parser
    "{{ .Labels.x", "{{ nope }}", "{{ $undefined }}", "{{ end }}", "{{ if true }}open",
    "{{ 'ab' }}", "{{ 08 }}", "{{ .x | 1 }}", "{{ break }}", '{{ "\\q" }}', "{{ toDuration 1 }}",
    "{{ with .x }}{{ else with .y }}{{ end }}", "{{}}", "{{ (.x }}",
])
VALUES = st.one_of(ODD_TEXT, TEMPLATES, st.builds(lambda a, t: a + t, ODD_TEXT, TEMPLATES))
LABEL_NAMES = st.sampled_from(["team", "tier", "owner_2", "_x", "component"])
LABELS = st.dictionaries(LABEL_NAMES, VALUES, max_size=2)

GOOD_SELECTORS = ['job="api"', 'job=~"api|web"', 'code!="200"', 'path="/a b/é"',
                  'x="q\\"uote"', 'job="世界"']
BAD_SELECTORS = ['"a.b"="1"', 'job=~"a**"', 'job=~"x{2}{3}"', 'job=~"a{1,2000}"']


def selector(good: bool, pick: int) -> str:
    pool = GOOD_SELECTORS if good else BAD_SELECTORS
    return pool[pick % len(pool)]


# (query template with {sel} and {w}, promtool-visible problem?)
EVENT_QUERIES = [
    ("sum(rate(http_requests_total{{{sel}}}[{w}]))", False),
    ("sum by (job) (rate(http_requests_total{{{sel}}}[{w}]))", False),
    ("sum(increase(http_requests_total{{{sel}}}[{w}])) / 60", False),
    ("sum(rate(http_requests_total{{{sel}}}[{w}])) # a comment", True),
    ("http_requests_total{{{sel}}}[{w}]", True),
    ("sum(rate(http_requests_total{{{sel}}}[{w}])", True),
    ("sum(holt_winters(http_requests_total{{{sel}}}[{w}], 0.5, 0.5))", True),
    ("limitk(1, rate(http_requests_total{{{sel}}}[{w}]))", True),
    ("sum(rate(http_requests_total{{{sel}}}[{w}])) - 5m", True),
]


@st.composite
def slo_case(draw: st.DrawFn, index: int) -> dict[str, Any]:
    fmt = draw(st.sampled_from(["native", "sloth", "pyrra", "openslo"]))
    kinds = {"native": ["events", "ratio", "latency", "http", "argocd", "backup",
                        "certificate", "probe"],
             "sloth": ["events", "ratio"], "pyrra": ["events", "latency"],
             "openslo": ["events"]}[fmt]
    kind = draw(st.sampled_from(kinds))
    good_sel = draw(st.booleans()) or draw(st.booleans())
    sel = selector(good_sel, draw(st.integers(0, 10)))
    query, _ = draw(st.sampled_from(EVENT_QUERIES)) if draw(st.booleans()) \
        else EVENT_QUERIES[0]
    return {
        "format": fmt, "kind": kind, "service": f"svc{index}", "name": f"slo{index}",
        "objective": draw(st.sampled_from(["99.9", "99", "99.95", "95"])),
        "labels": draw(LABELS), "alert_labels": draw(LABELS),
        "annotations": draw(st.dictionaries(st.sampled_from(["summary", "runbook"]), VALUES,
                                            max_size=2)),
        "selector": sel, "query": query, "signal": draw(st.sampled_from(
            ["availability", "latency"])),
        # a grouped SLO (native group_by, Pyrra grouping): one per job. Chosen from the
        # index, not drawn, so the derandomized examples stay those of the other fields
        "group": fmt in ("native", "pyrra") and index % 2 == 0,
    }


#: the query of a grouped case whose own query is valid: one that keeps the group label
GROUPED_QUERY = "sum by (job) (rate(http_requests_total{{{sel}}}[{w}]))"


def query_of(case: dict[str, Any], window: str, errors: bool) -> str:
    sel = case["selector"] + (',code=~"5.."' if errors else "")
    valid = dict(EVENT_QUERIES)[case["query"]] is False
    query = GROUPED_QUERY if case.get("group") and valid else case["query"]
    return query.format(sel=sel, w=window)


def render(case: dict[str, Any]) -> str:
    """The spec of `case` in its format."""
    fmt, kind = case["format"], case["kind"]
    if fmt == "native":
        sli: dict[str, Any]
        if kind == "events":
            sli = {"events": {"errors": query_of(case, "{{window}}", True),
                              "total": query_of(case, "{{window}}", False)}}
        elif kind == "ratio":
            sli = {"ratio": {"query": f"({query_of(case, '{{window}}', True)}) / "
                                      f"({query_of(case, '{{window}}', False)})"}}
        elif kind == "latency":
            sli = {"latency": {"metric": "http_request_duration_seconds",
                               "selector": "{" + case["selector"] + "}", "threshold": 0.5}}
        elif kind in ("http", "probe"):
            body: dict[str, Any] = {"selector": "{" + case["selector"] + "}",
                                    "signal": case["signal"]}
            if kind == "http":
                body["convention"] = "otel"
            if case["signal"] == "latency":
                body["threshold"] = 0.5 if kind == "http" else 1
            sli = {kind: body}
        else:
            sli = {kind: {"selector": "{" + case["selector"] + "}"}}
        spec = {"apiVersion": "sloexporter.dev/v1", "kind": "ServiceLevels",
                "service": case["service"], "labels": case["labels"],
                "slos": [{"name": case["name"], "objective": case["objective"], "sli": sli,
                          "alerting": {"labels": case["alert_labels"],
                                       "annotations": case["annotations"]}}]}
        if case["group"]:
            spec["group_by"] = ["job"]
    elif fmt == "sloth":
        if kind == "events":
            sli = {"events": {"error_query": query_of(case, "{{.window}}", True),
                              "total_query": query_of(case, "{{.window}}", False)}}
        else:
            sli = {"raw": {"error_ratio_query": f"({query_of(case, '{{.window}}', True)}) / "
                                               f"({query_of(case, '{{.window}}', False)})"}}
        spec = {"version": "prometheus/v1", "service": case["service"],
                "labels": case["labels"],
                "slos": [{"name": case["name"], "objective": float(case["objective"]),
                          "sli": sli, "alerting": {
                              "name": "Burn", "labels": case["alert_labels"],
                              "annotations": case["annotations"],
                              "page_alert": {}, "ticket_alert": {}}}]}
    elif fmt == "pyrra":
        if kind == "events":
            indicator = {"ratio": {
                "errors": {"metric": "http_requests_total{" + case["selector"]
                           + ',code=~"5.."}'},
                "total": {"metric": "http_requests_total{" + case["selector"] + "}"}}}
        else:
            indicator = {"latency": {
                "success": {"metric": "http_request_duration_seconds_bucket{"
                            + case["selector"] + ',le="0.5"}'},
                "total": {"metric": "http_request_duration_seconds_count{"
                          + case["selector"] + "}"}}}
        if case["group"]:
            next(iter(indicator.values()))["grouping"] = ["job"]
        spec = {"apiVersion": "pyrra.dev/v1alpha1", "kind": "ServiceLevelObjective",
                "metadata": {"name": case["service"],
                             "labels": {f"pyrra.dev/{k}": v for k, v in case["labels"].items()}},
                "spec": {"target": case["objective"], "window": "30d",
                         "indicator": indicator}}
    else:
        source = {"type": "Prometheus"}
        spec = {"apiVersion": "openslo/v1", "kind": "SLO",
                "metadata": {"name": case["name"], "labels": case["labels"]},
                "spec": {"service": case["service"], "budgetingMethod": "Occurrences",
                         "timeWindow": [{"duration": "30d", "isRolling": True}],
                         "objectives": [{"target": float(case["objective"]) / 100}],
                         "indicator": {"metadata": {"name": f"i{case['name']}"}, "spec": {
                             "ratioMetric": {
                                 "counter": False,
                                 "bad": {"metricSource": dict(source, spec={
                                     "query": query_of(case, "5m", True)})},
                                 "total": {"metricSource": dict(source, spec={
                                     "query": query_of(case, "5m", False)})}}}}}}
    return yaml.safe_dump(spec, allow_unicode=True, sort_keys=False)


def failing_files(tool: str, files: list[Path]) -> set[Path]:
    """The rule files promtool refuses, from one run over all of them."""
    if not files:
        return set()
    out = subprocess.run([tool, "check", "rules", *map(str, files)], capture_output=True,
                         text=True, timeout=300)
    text = out.stdout + out.stderr
    bad = {f for f in files if re.search(rf"^\s*{re.escape(str(f))}:", text, re.M)}
    if out.returncode != 0:
        assert bad, f"promtool failed without naming a file:\n{text}"
    return bad


def check_batch(tmp: Path, cases: list[dict[str, Any]], tools: dict[str, str]) -> None:
    verdicts: dict[int, bool] = {}
    checked: dict[int, Path] = {}
    unchecked_rules: dict[int, Path] = {}
    for i, case in enumerate(cases):
        spec = tmp / f"spec{i}.yaml"
        spec.write_text(render(case), encoding="utf-8")
        services, errors = load_paths([str(spec)])
        verdicts[i] = not errors
        SEEN[f"{case['format']}/{case['kind']}"] += 1
        SEEN["grouped"] += bool(case["group"])
        if services and not errors:
            checked[i] = tmp / f"rules{i}.yaml"
            checked[i].write_text(render_rules(services[0]), encoding="utf-8")
        with unchecked():
            services, errors = load_paths([str(spec)])
        if services:
            unchecked_rules[i] = tmp / f"unchecked{i}.yaml"
            unchecked_rules[i].write_text(render_rules(services[0]), encoding="utf-8")
    for name, tool in tools.items():
        bad = failing_files(tool, list(checked.values()))
        for i, path in checked.items():
            assert path not in bad, (
                f"validate accepts but {name} refuses the rules of:\n{render(cases[i])}\n"
                + path.read_text())
    bad = failing_files(tools["promtool 2"], list(unchecked_rules.values()))
    for i, case in enumerate(cases):
        SEEN["accepted" if verdicts[i] else "refused, promtool asked" if i in unchecked_rules
             else "refused, no rules"] += 1
        if not verdicts[i] and i in unchecked_rules:
            errors = load_paths([str(tmp / f"spec{i}.yaml")])[1]
            assert unchecked_rules[i] in bad, (
                f"validate refuses but promtool 2 accepts the rules of:\n{render(case)}\n"
                f"validate said: {[str(e) for e in errors]}")


@pytest.fixture(scope="module")
def promtools() -> dict[str, str]:
    return {"promtool 2": require_tool("promtool"), "promtool 3": require_tool("promtool3")}


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, 10**6), min_size=SPECS_PER_EXAMPLE,
                max_size=SPECS_PER_EXAMPLE, unique=True).flatmap(
    lambda ids: st.tuples(*(slo_case(i) for i in ids))))
def test_validate_and_promtool_agree(tmp_path_factory, promtools, cases):
    check_batch(tmp_path_factory.mktemp("prop"), list(cases), promtools)


def test_the_property_covered_every_format_kind_and_both_verdicts():
    """Runs after the property (file order): it saw a few hundred specs, both verdicts,
    and every format and SLI kind."""
    assert sum(v for k, v in SEEN.items() if "/" in k) >= min(300, EXAMPLES * SPECS_PER_EXAMPLE)
    assert SEEN["accepted"] >= 50 and SEEN["refused, promtool asked"] >= 50, SEEN
    assert SEEN["grouped"] >= 30, SEEN
    kinds = {"native/" + k for k in ("events", "ratio", "latency", "http", "argocd", "backup",
                                     "certificate", "probe")} | {
        "sloth/events", "sloth/ratio", "pyrra/events", "pyrra/latency", "openslo/events"}
    assert kinds <= set(SEEN), kinds - set(SEEN)
