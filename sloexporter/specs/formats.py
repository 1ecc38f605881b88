"""The registry of built-in input formats, in detection order."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from sloexporter.specs import Format, register
from sloexporter.specs.build import load_native
from sloexporter.specs.native import API_VERSION, KIND


def _is_native(data: object) -> bool:
    return isinstance(data, dict) and data.get("apiVersion") == API_VERSION \
        and data.get("kind") == KIND


def _lazy(module: str, name: str) -> Callable[..., Any]:
    """`module.name`, imported on first call: a format's pydantic models take a noticeable
    part of start-up, so a run pays only for the formats its documents need (detection
    stops at the first format that matches)."""
    def call(*args: Any) -> Any:
        return getattr(importlib.import_module(f"sloexporter.specs.{module}"), name)(*args)
    return call


def _alert_windows(data: dict[str, object]) -> bool:
    return data.get("kind") == "AlertWindows"  # it sets the windows of every Sloth SLO


register(Format("native", _is_native, load_native))
register(Format("sloth", _lazy("sloth", "is_sloth"), _lazy("sloth", "load_sloth"),
                linked=_alert_windows))
register(Format("pyrra", _lazy("pyrra", "is_pyrra"), _lazy("pyrra", "load_pyrra")))
register(Format("openslo", _lazy("openslo_objects", "is_openslo"),
                _lazy("openslo", "load_openslo"), linked=lambda _: True))
