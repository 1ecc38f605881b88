"""`validate` as a newcomer meets it (issue 14) and the specs that fooled it (issue 9)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sloexporter.output import render_rules
from sloexporter.specs import load_paths
from sloexporter.specs.build import unchecked
from tests.conftest import run_cli
from tests.test_validate import VALID
from tests.tools import ROOT, require_tool

#: phrases of pydantic's and PyYAML's own messages that must never reach a user
LIBRARY_WORDING = re.compile(r"Input should|Field required|Value error|validation error|"
                             r"Extra inputs|type=|Assertion failed|could not determine a "
                             r"constructor|found character that cannot start")


def validate_stdin(text: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sloexporter.cli", "validate", "-", *args],
                          input=text, capture_output=True, text=True, timeout=120, cwd=ROOT)


def validate_each(tmp: Path, texts: dict[str, str]) -> dict[str, list[str]]:
    """One `validate` run over a folder of specs (a CLI start costs seconds on a busy
    machine): each file's error lines, the file name stripped to `<case>:LINE: ...`."""
    folder = tmp / "cases"
    folder.mkdir()
    for name, text in texts.items():
        (folder / f"{name}.yaml").write_text(text, encoding="utf-8")
    result = run_cli("validate", str(folder))
    assert "Traceback" not in result.stderr
    out: dict[str, list[str]] = {name: [] for name in texts}
    for line in result.stderr.strip().splitlines():
        file, _, rest = line.partition(".yaml:")
        out[Path(file).name].append(f"{Path(file).name}:{rest}")
    return out


def case_id(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@pytest.fixture(scope="module")
def wording_results(tmp_path_factory) -> dict[str, list[str]]:
    texts = {case_id(c[0]): VALID.replace(c[1], c[2], 1) for c in WORDING + UNKNOWN_KEYS}
    return validate_each(tmp_path_factory.mktemp("wording"), texts)


def test_schema_and_semantic_errors_come_in_one_pass(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(VALID
                    .replace("objective: 99.9", "objective: high")        # schema, SLO 0
                    .replace("- name: latency", "- name: availability")   # duplicate name
                    .replace('"5.."}[{{window}}]))', '"5.."}[{{window}}])')  # PromQL, SLO 0
                    .replace("threshold: 0.5", "threshold: 0.3\n        buckets: [0.5, 1]"))
    result = run_cli("validate", str(spec))
    assert result.returncode == 1
    found = [line.split(": ", 2)[1] for line in result.stderr.strip().splitlines()]
    assert found == ["slos[0].objective", "slos[0].sli.events.errors", "slos[1].name",
                     "slos[1].sli.latency.threshold"], result.stderr


# (what, text to replace, replacement, expected in the one line)
UNKNOWN_KEYS = [
    ("descripton", "    description:", "    descripton:", "did you mean 'description'?"),
    ("latencys", "      latency:\n", "      latencys:\n", "did you mean 'latency'?"),
    ("objectiv", "objective: 99\n", "objectiv: 99\n", "did you mean 'objective'?"),
    ("tresholds", "threshold: 0.5", "treshold: 0.5", "did you mean 'threshold'?"),
    ("anotations", "annotations: {}}\n      ticket", "anotations: {}}\n      ticket",
     "did you mean 'annotations'?"),
    ("servce", "service: checkout", "servce: checkout", "did you mean 'service'?"),
    ("alertng", "    alerting:\n", "    alertng:\n", "did you mean 'alerting'?"),
]


@pytest.mark.parametrize("case", UNKNOWN_KEYS, ids=[c[0] for c in UNKNOWN_KEYS])
def test_every_unknown_key_gets_did_you_mean(case, wording_results):
    name, old, _, expected = case
    assert old in VALID
    lines = wording_results[case_id(name)]
    assert len(lines) == 1 and expected in lines[0], lines
    assert "missing required field" not in lines[0]  # the typo explains it


def test_unknown_keys_in_alertmanager_settings_and_foreign_formats(tmp_path):
    from sloexporter.alertmanager import load_settings
    from sloexporter.specs.errors import SpecErrors

    settings = tmp_path / "settings.yaml"
    settings.write_text("slack:\n  channel: ['#x']\ntimng: {}\n")
    with pytest.raises(SpecErrors) as info:
        load_settings(str(settings))
    messages = [str(e) for e in info.value.errors]
    assert any("slack.channel: unknown field 'channel'; did you mean 'channels'?" in m
               for m in messages), messages
    assert any("did you mean 'timing'?" in m for m in messages), messages
    sloth = tmp_path / "sloth.yaml"
    sloth.write_text("version: prometheus/v1\nservice: a\nslos:\n  - name: b\n    objectiv: 99\n"
                     "    sli: {raw: {error_ratio_query: 'x{a=\"[{{.window}}]\"}'}}\n")
    errors = [str(e) for e in load_paths([str(sloth)])[1]]
    assert any("did you mean 'objective'?" in e for e in errors), errors



@pytest.mark.parametrize("module", ["sloth", "pyrra", "openslo"])
def test_every_foreign_field_in_the_other_spelling_is_named_in_the_format_s_spelling(module):
    """`errorQuery` in a snake_case schema, `error_query` in a camelCase one: the hint names
    the field as this format spells it, for every field of every foreign schema."""
    import importlib

    from pydantic.alias_generators import to_camel

    from sloexporter.specs.errors import Document, SpecErrors
    from sloexporter.specs.foreign import Foreign, validate

    models = [m for m in vars(importlib.import_module(f"sloexporter.specs.{module}")).values()
              if isinstance(m, type) and issubclass(m, Foreign) and m is not Foreign]
    assert models
    checked = 0
    for model in models:
        for by_alias in (True, False):
            for name, info in model.model_fields.items():
                spelled = (info.alias or name) if by_alias else name
                other = re.sub(r"(?<!^)([A-Z])", r"_\1", spelled).lower() if by_alias \
                    else to_camel(spelled)
                if other == spelled:
                    continue
                with pytest.raises(SpecErrors) as info_:
                    validate(Document("f.yaml", {other: 1}), model, {other: 1},
                             by_alias=by_alias)
                messages = [e.message for e in info_.value.errors]
                assert f"unknown field {other!r}; did you mean {spelled!r}?" in messages, \
                    (model.__name__, messages)
                checked += 1
    assert checked


# (mistake, text, replacement, the tool's own words expected)
WORDING = [
    ("percent sign", "objective: 99.9", "objective: 99.9%",
     "objective must be a percentage like 99.9, written without '%': 99.9"),
    ("a list for a number", "objective: 99.9", "objective: [99]", "must be a percentage"),
    ("a word for a bool", "page: {labels: {}, annotations: {}}", "page: {disabled: maybe}",
     "must be true or false, not 'maybe'"),
    ("a bool for a label", "labels: {team: payments}", "labels: {team: no}",
     "quote it"),
    ("a number for a label", "labels: {team: payments}", "labels: {team: 1.50}",
     "quote it"),
    ("a list for labels", "labels: {team: payments}", "labels: [team]",
     "must be a mapping"),
    ("a string for slos", "slos:\n", "slos: none\nx_slos:\n", "must be a list"),
    ("an unknown convention", "      latency:\n        metric: http_request_duration_seconds\n"
     "        selector: '{job=\"checkout\"}'\n        threshold: 0.5",
     "      http: {convention: jaeger}", "must be one of 'otel', 'prometheus'"),
    ("a negative threshold", "threshold: 0.5", "threshold: -1", "must be greater than 0"),
    ("an empty slos list", "slos:\n  - name: availability", "slos: []\nx:\n  - name: a",
     "needs at least 1 item"),
    ("NaN objective", "objective: 99.9", "objective: .nan", "finite"),
    ("infinite threshold", "threshold: 0.5", "threshold: .inf", "finite"),
    ("objective with 30 digits", "objective: 99.9", "objective: 99." + "9" * 30,
     "significant digits"),
    ("objective with 5,000 digits", "objective: 99.9", "objective: " + "9" * 5000,
     "number of 5,000 characters"),
    ("threshold as a huge string", "threshold: 0.5", "threshold: '1e999999999'",
     "out of range"),
    ("a tab", "    period: 30d", "\tperiod: 30d", "tab character"),
    ("a date for a description", "description: Checkout API requests succeed",
     "description: 2024-01-01", "must be a string"),
]


@pytest.mark.parametrize("case", WORDING, ids=[c[0] for c in WORDING])
def test_every_message_is_the_tools_own_wording(case, wording_results):
    name, old, _, expected = case
    assert old in VALID
    lines = wording_results[case_id(name)]
    assert lines, "refused"
    assert not any(LIBRARY_WORDING.search(line) for line in lines), lines
    assert any(expected in line for line in lines), lines
    assert all(re.match(rf"^{case_id(name)}:[1-9]\d*: ", line) for line in lines), lines


def test_usage_and_path_errors_exit_2_with_the_path(tmp_path):
    (tmp_path / "empty-folder").mkdir()
    for args, path, message in [
        (["validate", str(tmp_path / "nope.yaml")], tmp_path / "nope.yaml",
         "no such file or folder"),
        (["validate", str(tmp_path / "empty-folder")], tmp_path / "empty-folder",
         "no .yaml or .yml spec files"),
        (["generate", str(tmp_path / "nope.yaml"), "-o", str(tmp_path / "o")],
         tmp_path / "nope.yaml", "no such file or folder"),
    ]:
        result = run_cli(*args)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"{path}: ") and message in result.stderr
        assert ":0:" not in result.stderr
    spec = tmp_path / "s.yaml"
    spec.write_text(VALID)
    result = run_cli("generate", str(spec), "-o", str(tmp_path / "o"),
                     "--alertmanager-settings", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and ":0:" not in result.stderr
    assert result.stderr.startswith(f"{tmp_path / 'missing.yaml'}: cannot read")


def test_stdin_is_dash(tmp_path):
    result = validate_stdin(VALID)
    assert result.returncode == 0 and "ok: 2 SLOs in 1 services" in result.stdout
    result = validate_stdin(VALID.replace("objective: 99.9", "objective: 120"))
    assert result.returncode == 1
    assert result.stderr.startswith("<stdin>:7: slos[0].objective: ")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "sloexporter.cli", "generate", "-", "-o",
                             str(out)], input=VALID, capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert (out / "rules" / "checkout.yaml").is_file()


def test_stdin_given_twice_is_read_once():
    # `-` twice is the same input, as a file given twice is: one read, no duplicate SLOs
    result = validate_stdin(VALID, "-")
    assert result.returncode == 0, result.stderr
    assert "ok: 2 SLOs in 1 services" in result.stdout



@pytest.mark.parametrize("data,expected", [
    (b"a: " + b"x" * (8 << 20) + b"\n", "<stdin>:1: input larger than 8,388,608 bytes"),
    (b"service: caf\xe9\n", "<stdin>:1: not UTF-8 text: byte 0xe9 at column 13"),
], ids=["huge", "not-utf8"])
def test_stdin_huge_or_not_utf8_is_one_line(data, expected):
    result = subprocess.run([sys.executable, "-m", "sloexporter.cli", "validate", "-"],
                            input=data, capture_output=True, timeout=120, cwd=ROOT)
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [expected]

EMPTY = {"empty": "", "blank-lines": "\n\n", "comment": "# only a comment\n",
         "one-separator": "---\n", "two-separators": "---\n---\n", "bom": "\ufeff"}


def test_an_empty_input_is_an_error(tmp_path):
    found = validate_each(tmp_path, EMPTY)
    for name in EMPTY:
        assert found[name] == [f"{name}:1: no spec here: the input is empty or holds only "
                               "comments"], found
    result = validate_stdin("")
    assert result.returncode == 1 and result.stderr.startswith("<stdin>:1: no spec here")


def test_a_service_spans_formats_and_files(tmp_path):
    (tmp_path / "native.yaml").write_text(VALID)
    (tmp_path / "sloth.yaml").write_text(
        "version: prometheus/v1\nservice: checkout\nslos:\n  - name: latency\n"
        "    objective: 99\n    sli: {raw: {error_ratio_query: 'x{a=\"[{{.window}}]\"}'}}\n"
        "    alerting: {page_alert: {}, ticket_alert: {}}\n")
    result = run_cli("validate", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"{tmp_path / 'sloth.yaml'}:4: name: duplicate SLO name 'latency' in service "
        f"'checkout': also defined at {tmp_path / 'native.yaml'}:17")
    # the same file given twice is read once
    result = run_cli("validate", str(tmp_path / "native.yaml"), str(tmp_path))
    assert "also defined at" in result.stderr and result.stderr.count("\n") == 1


# ---- issue 9, finding 5: validate ok, promtool refused ------------------------------------

TOTAL = 'sum(rate(http_requests_total{job="checkout"}[{{window}}]))'
ERRORS = 'sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{window}}]))'

FINDINGS = [
    ("a trailing # comment in a query", f"errors: {ERRORS}",
     f"errors: |-\n          {ERRORS} # server errors", "slos[0].sli.events.errors",
     "'#' comment"),
    ("a range vector as errors", f"errors: {ERRORS}",
     'errors: http_requests_total{job="checkout",code=~"5.."}[{{window}}]',
     "slos[0].sli.events.errors", "range vector"),
    ("an unclosed template in a label", "labels: {team: payments}",
     "labels: {team: '{{ .Labels.x'}", "labels.team", "unclosed action"),
    ("an unclosed template in an annotation", "page: {labels: {}, annotations: {}}",
     "page: {labels: {}, annotations: {summary: 'at {{ $value'}}",
     "slos[0].alerting.page.annotations.summary", "unclosed action"),
    ("an undefined template function", "labels: {team: payments}",
     "labels: {team: '{{ nope }}'}", "labels.team", "function 'nope' not defined"),
    ("a Prometheus-3-only quoted label name", 'job="checkout",code',
     '"job.name"="checkout",code', "slos[0].sli.events.errors", "Prometheus 3 only"),
    ("a regex Go refuses", 'code=~"5.."', 'code=~"5**"', "slos[0].sli.events.errors",
     "nested repetition"),
    ("PromQL injected through status_label",
     "      latency:\n        metric: http_request_duration_seconds\n"
     "        selector: '{job=\"checkout\"}'\n        threshold: 0.5",
     "      http:\n        convention: requests_total\n"
     "        status_label: 'code=~\".*\"} or vector(1) or up{x'",
     "slos[1].sli.http.status_label", "is not a label name"),
    ("a Pyrra-style grouping label that is not a label name", "labels: {team: payments}",
     "labels: {team: payments, 'team-name': x}", "labels", "invalid label name"),
]


@pytest.fixture(scope="module")
def findings_results(tmp_path_factory) -> dict[str, list[str]]:
    texts = {case_id(f[0]): VALID.replace(f[1], f[2], 1) for f in FINDINGS}
    return validate_each(tmp_path_factory.mktemp("findings"), texts)


@pytest.mark.parametrize("finding", FINDINGS, ids=[f[0] for f in FINDINGS])
def test_what_promtool_refuses_validate_refuses(tmp_path, finding, promtool, findings_results):
    """Each hazard: validate names the field; and the rules built without validate's
    checks are really refused by promtool (so the check is not a guess)."""
    name, old, new, path, message = finding
    assert old in VALID
    lines = findings_results[case_id(name)]
    assert len(lines) == 1 and f": {path}: " in lines[0] and message in lines[0], lines
    spec = tmp_path / "s.yaml"
    spec.write_text(VALID.replace(old, new, 1))
    with unchecked():
        services, errors = load_paths([str(spec)])
    if errors:  # refused by the schema itself: there are no rules to show promtool
        return
    rules = tmp_path / "rules.yaml"
    rules.write_text(render_rules(services[0]))
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True,
                             text=True, timeout=60)
    promtool3 = require_tool("promtool3")
    checked3 = subprocess.run([promtool3, "check", "rules", str(rules)], capture_output=True,
                              text=True, timeout=60)
    assert checked.returncode != 0 or checked3.returncode != 0, checked.stdout


def test_pyrra_grouping_labels_must_be_label_names(tmp_path):
    spec = tmp_path / "p.yaml"
    spec.write_text("""\
apiVersion: pyrra.dev/v1alpha1
kind: ServiceLevelObjective
metadata: {name: api}
spec:
  target: "99"
  window: 2w
  indicator:
    ratio:
      errors: {metric: 'http_requests_total{code=~"5.."}'}
      total: {metric: http_requests_total}
      grouping: [handler, "a) (vector(1)"]
""")
    errors = [str(e) for e in load_paths([str(spec)])[1]]
    assert errors == [f"{spec}:11: spec.indicator.ratio.grouping[1]: 'a) (vector(1)' is not a "
                      "label name: use letters, digits and '_', not starting with a digit"]


# a query that would make promql-parser crawl (quadratic) or crash (stack overflow)
HEAVY_QUERIES = [
    ("100,000 nested parentheses", "(" * 100_000 + ERRORS + ")" * 100_000,
     "characters; at most"),
    ("70 nested parentheses", "(" * 70 + ERRORS + ")" * 70, "nested deeper than 64"),
    ("a chain of 10,000 operators", " or ".join([ERRORS] * 10_000), "characters; at most"),
    ("a chain of 100 operators", " + ".join(["up"] * 100) + f" + {ERRORS}",
     "more than 64 binary operators"),
]


@pytest.mark.parametrize("case", HEAVY_QUERIES, ids=[c[0] for c in HEAVY_QUERIES])
def test_a_query_too_heavy_to_parse_is_refused_before_parsing(tmp_path, case):
    import time

    _, query, message = case
    spec = tmp_path / "s.yaml"
    spec.write_text(VALID.replace(f"errors: {ERRORS}", f"errors: '{query}'"))
    started = time.process_time()
    errors = [str(e) for e in load_paths([str(spec)])[1]]
    assert time.process_time() - started < 2.0
    assert len(errors) == 1 and "slos[0].sli.events.errors" in errors[0], errors
    assert message in errors[0]


def test_a_configmap_mounted_spec_folder_is_read_once_and_hidden_files_not_at_all(tmp_path):
    """A ConfigMap volume holds each key as a link into ..data/, which links to a
    ..<timestamp>/ folder; during an update the old timestamp folder is still there.
    Only the visible names count: reading the copies made one service a duplicate."""
    folder = tmp_path / "specs"
    new, old = folder / "..2026_12_02_07_00_00.1", folder / "..2026_12_01_07_00_00.1"
    new.mkdir(parents=True)
    old.mkdir()
    (new / "checkout.yaml").write_text(VALID)
    (old / "checkout.yaml").write_text(VALID.replace("objective: 99.9", "objective: 99"))
    (folder / "..data").symlink_to(new.name)
    (folder / "checkout.yaml").symlink_to("..data/checkout.yaml")
    (folder / ".checkout.yaml.swp.yaml").write_text("not: [a, spec")
    result = run_cli("validate", str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    plain = tmp_path / "plain.yaml"
    plain.write_text(VALID)
    assert result.stdout == run_cli("validate", str(plain)).stdout
    # the visible name is what is read: the old copy's objective never appears
    out = tmp_path / "out"
    assert run_cli("generate", str(folder), "-o", str(out)).returncode == 0
    assert "0.999" in (out / "rules" / "checkout.yaml").read_text()
