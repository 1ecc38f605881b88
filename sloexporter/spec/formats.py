"""The registry of built-in input formats, in detection order."""

from __future__ import annotations

from sloexporter.spec import Format, register
from sloexporter.spec.build import load_native
from sloexporter.spec.native import API_VERSION, KIND
from sloexporter.spec.openslo import is_openslo, load_openslo
from sloexporter.spec.pyrra import is_pyrra, load_pyrra
from sloexporter.spec.sloth import is_sloth, load_sloth


def _is_native(data: object) -> bool:
    return isinstance(data, dict) and data.get("apiVersion") == API_VERSION \
        and data.get("kind") == KIND


register(Format("native", _is_native, load_native))
register(Format("sloth", is_sloth, load_sloth))
register(Format("pyrra", is_pyrra, load_pyrra))
register(Format("openslo", is_openslo, load_openslo))
