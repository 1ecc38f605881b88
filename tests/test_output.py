"""The YAML emitter writes what PyYAML reads back as the same data."""

from __future__ import annotations

import pytest
import yaml

from sloexporter.output import to_yaml

TRICKY = ["", " ", "yes", "no", "on", "null", "~", "1", "1.0", "0x1f", "1e3", "a: b", "a:",
          "a #b", "#x", "- x", "'q'", '"d"', "it's", "multi\nline", "tab\there", "ünïcödé",
          "{a}", "[a]", "*ref", "&anchor", "!tag", "%x", "@x", "`x`", "a,b", "x?", "? x",
          'sum(rate(x{a="b",c=~"5.."}[5m])) > 0.001', "{{ $value | humanize }}", "2026-11-22",
          "12:30", ".inf", ".nan", "True", "NULL", "https://x.example/a?b=c&d=e#f"]


@pytest.mark.parametrize("text", TRICKY)
def test_strings_round_trip(text):
    data = {"k": text, "list": [text, {"nested": text}], text or "empty": 1}
    assert yaml.safe_load(to_yaml(data)) == data


def test_structures_round_trip():
    data = {"groups": [{"name": "g", "rules": [{"record": "a:b", "expr": "x", "labels": {}}]}],
            "empty": [], "nums": [1, 2.5, True, None], "deep": [[1, [2]], [{"a": [3]}]]}
    assert yaml.safe_load(to_yaml(data)) == data
