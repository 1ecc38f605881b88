"""The checkers behind `validate`, pinned to both promtools on corpora of hard cases.

`sloexporter.gotemplate` (Go templates) and `sloexporter.specs.promcheck` (PromQL) decide
what validate accepts. The rule: accepted by the checker <=> accepted by promtool 2.42 AND
promtool 3, except the few listed cases where the checker is knowingly stricter.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from sloexporter import gotemplate
from sloexporter.specs import promcheck
from tests.tools import require_tool

TEMPLATES = [
    '{{ .Labels.x', '{{ .Labels.x }}', '{{ $labels.x }}', '{{ $value }}', '{{ $nope }}',
    '{{ nope }}', '{{ humanize $value }}', '{{ $value | humanizePercentage }}',
    '{{ if gt $value 1.0 }}hi{{ end }}', '{{ if }}', '{{ end }}', '{{ else }}', '{{ if true }}x',
    '{{ range $i, $e := .Labels }}{{$i}}{{ end }}', '{{ break }}',
    '{{ range .Labels }}{{ break }}{{ end }}', '{{ with .Labels }}{{ else with .X }}{{ end }}',
    '{{ if 1 }}{{ else if 2 }}{{ else }}{{ end }}', '{{}}', '{{ }}', '{{- .Labels -}}', '{{-.x}}',
    '{{ .x -}}', '{{/* c */}}', '{{/* c */ }}', '{{/* c', '{{ "unterminated }}', '{{ `raw` }}',
    "{{ 'a' }}", "{{ 'ab' }}", "{{ '\\n' }}", '{{ 1e999 }}', '{{ 0x }}', '{{ 08 }}', '{{ 1_000 }}',
    '{{ 1__0 }}', '{{ .5 }}', '{{ +5 }}', '{{ - }}', '{{ 1+2i }}', '{{ "\\q" }}',
    '{{ "\\u00e9" }}', '{{ "\\ud800" }}', '{{ "\\400" }}', '{{ printf "%s" .x }}', '{{ .x | 1 }}',
    '{{ .x | printf }}', '{{ (.x }}', '{{ .x) }}', '{{ ((.x)) }}', '{{ $x := 1 }}{{ $x }}',
    '{{ $x = 1 }}', '{{ if $y := 1 }}{{ $y }}{{ end }}{{ $y }}',
    '{{ define "a" }}x{{ end }}{{ template "a" }}',
    '{{ define "a" }}x{{ end }}{{ define "a" }}y{{ end }}', '{{ template a }}',
    '{{ block "b" . }}z{{ end }}', '{{ .x.y.z }}', '{{ 1.x }}', '{{ "a".x }}', '{{ $.x }}',
    '{{ $ }}', '{{ .Labels.é }}', '{{ .a-b }}', '{{ query "up" | first | value }}',
    '{{ toDuration 1 }}', '{{ now }}', '{{ urlQueryEscape "a" }}', '{{ stripDomain "a" }}',
    '{{ with query "x" }}{{ . | first | value }}{{ else }}u{{ end }}', '{ {x}}', '}}', '{{',
    'a {{ .x }} b {{ .y', '{{ .x\n}}', '{{ "a\nb" }}', '{{ index .Labels "a" }}', '{{ call .f }}',
    '{{ nil }}', '{{ true.x }}', '{{ range $i, $j, $k := . }}{{end}}',
    '{{ with $a, $b := . }}{{end}}', '{{ $a, $b := . }}', '{{ continue }}',
    '{{ range . }}{{ if . }}{{ continue }}{{ end }}{{ end }}', '{{ .x | .y }}',
    '{{ .x | $value }}', '{{ .x | "s" }}', '{{ if .x }}{{ else }}{{ else }}{{ end }}',
    '{{ template "a" . . }}', '{{ .x, .y }}', '{{ .x = 1 }}', '{{ % }}', '{{ é }}', '{{ xé }}',
    "{{ 'x }}", "{{ '\\'' }}", '{{ \'"\' }}', '{{ \'\\"\' }}', '{{ 0b101 }}', '{{ 0o17 }}',
    '{{ 0x1p-2 }}', '{{ 1e5i }}', '{{ 07i }}', '{{ .x.1 }}', '{{ $labels. }}', '{{ .Labels.x.}}',
    '{{ -1 }}', '{{ --1 }}', '{{ 99999999999999999999 }}', '{{ 18446744073709551615 }}',
    '{{ -9223372036854775808 }}', '{{ -9223372036854775809 }}', '{{ 1e5 }}', '{{ 0x1F }}',
    '{{ 0_7 }}', '{{ 0x_1 }}', '{{ 1_ }}',
]

QUERIES = [
    'up', 'up # c', 'x{a="1" or b="2"}', 'x{"a.b"="1"}', '{"x.y"}', 'x @ start()', 'x offset -5m',
    'holt_winters(x[5m], 0.5, 0.5)', 'double_exponential_smoothing(x[5m], 0.5, 0.5)',
    'limitk(1, x)', 'info(x)', 'sort_by_label(x, "a")', 'mad_over_time(x[5m])', 'histogram_avg(x)',
    'histogram_fraction(0, 0.5, x)', 'x{a=~"(?<n>x)"}', 'x{a=~"(?P<n>x)"}', 'x{a=~"(?=x)"}',
    'x{a=~"\\\\d+"}', 'x{a=~"["}', 'x[5]', 'x[1.5m]', 'x[5m+1m]', 'x[1h30m]', 'x[5ms]',
    'rate(x[5m:1m])', 'rate(x[5m:])', 'sum by ("a.b") (x)', 'sum by (a) (x)', 'x / on("a.b") y',
    'x / on(a) group_left("b.c") y', 'x / on(a) group_left(b) y', 'x and on() y', 'x{a="\\u00e9"}',
    "x{a='s'}", 'x{a=`raw`}', 'x{a="\\x41"}', 'x{a="\\q"}', 'x{a="\\101"}', 'x{__name__="y"}',
    '{__name__=~"y.*"}', '{a=""}', 'x{}', '{}', 'sum(x) without (a)', 'count_values("v", x)',
    'quantile(0.5, x)', 'topk(2, x)', 'group(x)', 'stddev(x)', 'x > bool 1', '1 > bool 1', 'x ^ 2',
    'x atan2 y', '-x', '+x', 'x unless y', 'x @ 100', 'x @ end()', 'absent(nonexistent{job="x"})',
    'label_replace(x, "a", "$1", "b", "(.*)")', 'label_replace(x, "a.b", "$1", "b", "(.*)")',
    'vector(1) or vector(0)', 'scalar(x) * 2', 'time()', 'x[5m] offset 1m', 'x offset 1m[5m]',
    'sum(x)[5m:1m]', 'x{a=~"\\\\p{Greek}"}', 'x{a=~"[[:alpha:]]"}', 'x{a=~"a{1,1001}"}',
    'x{a=~"\\\\Z"}', 'x{a=~"\\\\z"}', 'x{a=~"(?i)a"}', 'x{a=~"(?s:.)"}', 'x{a=~"(?U)a"}',
    'x{a=~"\\\\C"}', 'x{a=~"\\\\Q.\\\\E"}', 'x{a=~"a**"}', 'x{a=~"\\\\b"}', 'x{a=~"\\\\pN"}',
    'x{a=~"[a-\\\\d]"}', 'x{a=~"x{2}{3}"}', 'rate(x[5m]) / ignoring(le) group_left sum(y)',
    'x % y', 'x == y', 'x =~ y', 'max_over_time(x[1d:5m])', 'x{job="a",}', 'x{,job="a"}',
    'sum(rate(x[5m])) by (job) > 0', 'round(x, 0.1)', 'clamp(x, 0, 1)', 'sort(x)',
    'present_over_time(x[5m])', 'absent_over_time(x[5m])', 'x and x', '0x1F', '1e3', 'Inf', 'NaN',
    '-Inf', '1_000', '0b11', '5m', 'x - 5m', 'x[0s]', 'x[-5m]', 'step()', 'x[1y]', 'x[2w]',
    'x{a="1"}[5m] @ 100', 'sum(x) by ()', 'nan', 'inf', 'x offset 1y', '"str"', 'x{a="é"}', 'é',
    'x:y:z', 'x{a!~""}', 'sum without() (x)', 'count by (le,) (x)',
]

#: refused by the checker although both promtools accept them: Rust's regex engine
#: (promql-parser) has no \\Q...\\E quoting
STRICTER = {'x{a=~"\\\\Q.\\\\E"}'}


def refused_groups(tool: str, path: Path, groups: list[dict]) -> set[int]:
    path.write_text(json.dumps({"groups": groups}))
    out = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True,
                         timeout=120)
    bad = {int(m) for m in re.findall(r'group "g(\d+)"', out.stdout + out.stderr)}
    assert out.returncode == (1 if bad else 0), out.stdout + out.stderr
    return bad


@pytest.fixture(scope="module")
def tools() -> list[str]:
    return [require_tool("promtool"), require_tool("promtool3")]


def test_templates_agree_with_both_promtools(tools, tmp_path):
    groups = [{"name": f"g{i}", "rules": [{"alert": "A", "expr": "up",
                                           "annotations": {"a": text}}]}
              for i, text in enumerate(TEMPLATES)]
    refused = set().union(*(refused_groups(t, tmp_path / "t.yaml", groups) for t in tools))
    disagree = [(text, gotemplate.check(text)) for i, text in enumerate(TEMPLATES)
                if (gotemplate.check(text) is None) == (i in refused)]
    assert not disagree
    assert 20 < len(refused) < len(TEMPLATES) - 20  # the corpus has both kinds


def test_queries_agree_with_both_promtools(tools, tmp_path):
    groups = [{"name": f"g{i}", "rules": [{"record": "r", "expr": q}]}
              for i, q in enumerate(QUERIES)]
    refused = set().union(*(refused_groups(t, tmp_path / "q.yaml", groups) for t in tools))
    accepted_wrongly = [q for i, q in enumerate(QUERIES)
                        if promcheck.check(q) is None and i in refused]
    assert not accepted_wrongly
    refused_wrongly = [q for i, q in enumerate(QUERIES)
                       if promcheck.check(q) is not None and i not in refused]
    assert set(refused_wrongly) == STRICTER


#: label values of every class `promql.shape` tells apart, where a check could see them
SHAPED = [
    'up{job="0abc"}', 'up{job=~"a.b"}', 'up{job=~"a-b"}', 'up{job=""}', 'up{job!="x"}',
    'up{job!~"x"}', 'up{job=~"x", a=""}', '{__name__="up"}', '{__name__="a.b"}',
    '{__name__=~"a-b"}', 'count_values("a", up)', 'count_values("0a", up)',
    'count_values("a.b", up)', 'label_replace(up, "dst", "$1", "src", "(.*)")',
    'label_replace(up, "0dst", "x", "src", "a")', 'label_join(up, "d", "-", "a", "b")',
    'sum by ("job") (up)', 'sum by ("a.b") (up)', "up{job='x'} or on () up{a=\"b\"}",
    'histogram_quantile(0.9, sum by (le) (rate(x_bucket{le="0.5"}[5m])))',
    'sum(rate(http_requests_total{job="svc0",route="r0",code=~"5.."}[5m]))',
]


def test_a_query_and_its_shape_get_one_verdict(tools, tmp_path):
    """`validate` memoises its PromQL checks by `promql.shape` (a string's text replaced
    by a representative of its class): both promtools must refuse a query exactly when
    they refuse its shape, on the hard corpus and on label values of every class."""
    from sloexporter.promql import shape

    pairs = [(q, s) for q in QUERIES + SHAPED if (s := shape(q)) is not None and s != q]
    groups = [{"name": f"g{i}", "rules": [{"record": "r", "expr": text}]}
              for i, text in enumerate(text for pair in pairs for text in pair)]
    refused = set().union(*(refused_groups(t, tmp_path / "s.yaml", groups) for t in tools))
    differ = [pair for i, pair in enumerate(pairs)
              if (2 * i in refused) != (2 * i + 1 in refused)]
    assert not differ
    assert len(pairs) > 20
    assert any(2 * i in refused for i in range(len(pairs)))  # both kinds are in there
    checked = [q for q, s in pairs
               if (promcheck.check_query(q) is None) != (promcheck.check(s) is None)
               and promcheck.value_type(promcheck.parse(q)[0]) == "vector"]
    assert not checked
