"""The registry of built-in input formats, in detection order."""

from __future__ import annotations

from sloexporter.specs import Format, register
from sloexporter.specs.build import load_native
from sloexporter.specs.native import API_VERSION, KIND
from sloexporter.specs.openslo import is_openslo, load_openslo
from sloexporter.specs.pyrra import is_pyrra, load_pyrra
from sloexporter.specs.sloth import is_sloth, load_sloth


def _is_native(data: object) -> bool:
    return isinstance(data, dict) and data.get("apiVersion") == API_VERSION \
        and data.get("kind") == KIND


register(Format("native", _is_native, load_native))
register(Format("sloth", is_sloth, load_sloth))
register(Format("pyrra", is_pyrra, load_pyrra))
register(Format("openslo", is_openslo, load_openslo))
