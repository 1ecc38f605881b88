"""Targets found in the cluster for the active probers.

Ingress `tls` hosts go to the TLS prober; Services annotated `sloexporter.dev/probe`
go to the HTTP prober. This source exports nothing itself.
"""

from __future__ import annotations

from typing import Any

from sloexporter.sources.base import BadInput, Source, field, meta
from sloexporter.sources.http_probe import ProbeAnnotationError, service_probe_urls
from sloexporter.sources.informer import Resource
from sloexporter.sources.prober import Prober
from sloexporter.sources.store import Obj

INGRESSES = Resource("networking.k8s.io", "v1", "ingresses", "Ingress")
SERVICES = Resource("", "v1", "services", "Service")
#: no sane Ingress lists more hosts; a hostile one must not flood the prober
MAX_HOSTS = 100


def ingress_tls_hosts(ingress: Obj) -> list[str]:
    """The `spec.tls[].hosts` of an Ingress; BadInput when they are not lists of strings.

    The API server only stores lists there; from --manifests a string must not be
    iterated (and probed) one character at a time.
    """
    tls = field(ingress, "spec", "tls")
    if tls is None:
        return []
    if not isinstance(tls, list):
        raise BadInput("malformed")
    hosts: list[str] = []
    for entry in tls:
        if not isinstance(entry, dict):
            raise BadInput("malformed")
        listed = entry.get("hosts")
        if listed is None:
            continue
        if not isinstance(listed, list) or not all(isinstance(h, str) for h in listed):
            raise BadInput("malformed")
        hosts += listed
    return sorted(set(hosts))[:MAX_HOSTS]


class DiscoverySource(Source):
    name = "discovery"
    families = ()

    def __init__(self, *args: Any, tls: Prober | None = None, http: Prober | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tls, self.http = tls, http
        self._origins: dict[str, tuple[Prober, str]] = {}

    @property
    def resources(self) -> tuple[Resource, ...]:
        return tuple(r for r, p in ((INGRESSES, self.tls), (SERVICES, self.http)) if p)

    def update(self, resource: Resource, key: str, obj: Obj) -> None:
        m = meta(obj)
        origin = f"{resource.kind.lower()}/{m.get('namespace', '')}/{m.get('name', '')}"
        if resource == INGRESSES and self.tls:
            self._origins[key] = (self.tls, origin)
            self.tls.set_discovered_targets(origin, ingress_tls_hosts(obj))
        elif resource == SERVICES and self.http:
            try:
                urls = service_probe_urls(obj)
            except ProbeAnnotationError as exc:
                raise BadInput("invalid_probe_annotation", str(exc)) from None
            self._origins[key] = (self.http, origin)
            self.http.set_discovered_targets(origin, urls)

    def remove(self, resource: Resource, key: str, obj: Obj | None) -> None:
        found = self._origins.pop(key, None)
        if found:
            found[0].set_discovered_targets(found[1], [])
