"""The contract between the server and the active probers (TLS endpoints, HTTP targets).

Watched kinds (ArgoCD, backups, certificates) go through the informer; probers instead
run their own bounded loop. The server treats both alike for `/metrics`, `/readyz` and
`sloexporter_source_up`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable


@runtime_checkable
class Prober(Protocol):
    #: source name used in sloexporter_source_up{source=...}, e.g. "tls_probe".
    name: str

    async def run(self) -> None:
        """Probe forever, one round per interval, until cancelled. Never raises."""

    def ready(self) -> bool:
        """True once the first round over the targets known at start has completed."""

    def up(self) -> bool:
        """False when the prober itself cannot work (not when a target fails)."""

    def render(self) -> bytes:
        """Exposition text of every family this prober owns, HELP/TYPE included."""

    def set_discovered_targets(self, origin: str, targets: Iterable[str]) -> None:
        """Replace the targets found through `origin` (e.g. "ingress/ns/name")."""
