"""Feed a source objects the way the informer does, and read its exposition back."""

from __future__ import annotations

from typing import Any

from sloexporter.sources.base import Source
from sloexporter.sources.informer import Resource, SelfMetrics


def feed(source: Source, resource: Resource, *objs: dict[str, Any],
         event: str = "ADDED") -> None:
    for obj in objs:
        source.apply(resource, event, obj)


def text(source: Source) -> str:
    return b"".join(source.render()).decode()


def metrics() -> SelfMetrics:
    return SelfMetrics()
