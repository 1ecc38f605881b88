"""kmock 0.8 as a Kubernetes API server, with the `watch=True` fix (see notes/tooling.md).

kubernetes-asyncio's own watch helper sends `?watch=True`; kmock only recognises
`watch=true` and would answer with a LIST body. The informer sends `watch=true` itself, but
every test module that talks to kmock imports this fixture so either client works.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import kmock as km
import pytest
from kmock._internal import parsing
from kubernetes_asyncio import client


@pytest.fixture(autouse=True)
def watch_true_normalised(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Lower-case the `watch` query value before kmock classifies the request."""
    original = parsing.guess_k8s

    def guess_k8s(k8s: Any, method: Any, query: dict[str, str]) -> Any:
        if "watch" in query:
            query = {**query, "watch": str(query["watch"]).lower()}
        return original(k8s, method, query)

    monkeypatch.setattr(parsing, "guess_k8s", guess_k8s)
    yield


def register(kmock: Any, group: str, version: str, plural: str, kind: str) -> str:
    """Register a namespaced resource for discovery; returns kmock's resource key."""
    key = f"{group}/{version}/{plural}".lstrip("/")
    kmock.resources[key] = km.ResourceInfo(kind=kind, namespaced=True)
    return key


@pytest.fixture
async def api_client(kmock: Any) -> AsyncIterator[client.ApiClient]:
    """A kubernetes-asyncio ApiClient pointed at kmock over real HTTP."""
    config = client.Configuration(host=str(kmock.url).rstrip("/"))
    async with client.ApiClient(config) as api:
        yield api
