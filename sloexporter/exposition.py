"""Prometheus text exposition helpers shared by every source.

Label values come from the cluster and are untrusted: they are escaped here and capped in
length, so a hostile annotation cannot break the scrape or blow up memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

MAX_LABEL_VALUE_LEN = 1024
TRUNCATION_MARK = "..."


def escape_label_value(value: str) -> str:
    """Escape a label value for the text format; values over the cap are truncated."""
    if len(value) > MAX_LABEL_VALUE_LEN:
        value = value[: MAX_LABEL_VALUE_LEN - len(TRUNCATION_MARK)] + TRUNCATION_MARK
    if "\\" in value or "\n" in value or '"' in value:  # rare: most values need nothing
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


_EXACT = 10**15


def format_value(value: float) -> str:
    """Format a sample value the way Prometheus parses it back exactly."""
    if type(value) is int and -_EXACT < value < _EXACT:  # the common case, every event
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def format_labels(labels: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    items = labels.items() if isinstance(labels, Mapping) else labels
    inner = ",".join([f'{k}="{escape_label_value(str(v))}"' for k, v in items])
    return "{" + inner + "}" if inner else ""


def sample_line(name: str, labels: Mapping[str, str] | Iterable[tuple[str, str]],
                value: float) -> str:
    return f"{name}{format_labels(labels)} {format_value(value)}\n"


def family_header(name: str, help_text: str, kind: str) -> str:
    """HELP and TYPE lines; `kind` is gauge, counter, histogram or untyped."""
    escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {name} {escaped}\n# TYPE {name} {kind}\n"
