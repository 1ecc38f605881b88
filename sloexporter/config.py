"""The `serve` configuration file (YAML, validated like SLO specs: FILE:LINE errors)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from sloexporter.sources.http_probe import HTTPProbeConfig
from sloexporter.sources.tls_probe import TLSProbeConfig
from sloexporter.specs.errors import load_model
from sloexporter.status.config import StatusConfig


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _unique(names: list[str]) -> list[str]:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"namespaces listed twice: {', '.join(twice)}")
    return names


#: Kubernetes namespace names (RFC 1123 labels), as the chart's values.schema.json checks;
#: an empty string would watch every namespace, and a `/` would change the API path
Namespaces = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=63,
                              pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]],
    AfterValidator(_unique)]


class Scope(Strict):
    enabled: bool = True
    #: watch only these namespaces (one watch each); empty means all namespaces
    namespaces: Namespaces = Field(default_factory=list)
    label_selector: str | None = None
    field_selector: str | None = None


class ArgoCDConfig(Scope):
    pass


class BackupsConfig(Scope):
    velero: bool = True


class CertificatesConfig(Scope):
    cert_manager: bool = True
    #: reading Secrets needs RBAC to read their contents; it can be limited to namespaces
    tls_secrets: bool = True
    secret_namespaces: Namespaces = Field(default_factory=list)
    ingresses: bool = True


class ServicesConfig(Scope):
    """Services annotated `sloexporter.dev/probe: "true"` become HTTP probe targets."""


class Sources(Strict):
    argocd: ArgoCDConfig = Field(default_factory=ArgoCDConfig)
    backups: BackupsConfig = Field(default_factory=BackupsConfig)
    certificates: CertificatesConfig = Field(default_factory=CertificatesConfig)
    services: ServicesConfig = Field(default_factory=ServicesConfig)


class Cluster(Strict):
    #: auto: in-cluster when running in a pod, else the kubeconfig; none: no cluster
    mode: Literal["auto", "in-cluster", "kubeconfig", "none"] = "auto"
    kubeconfig: str | None = None
    context: str | None = None


class Watch(Strict):
    page_size: int = Field(default=500, ge=1, le=10000)
    timeout_seconds: int = Field(default=300, ge=1, le=3600)
    connect_timeout: float = Field(default=10, gt=0, le=120)
    watchdog_seconds: float = Field(default=330, gt=0)
    #: a watch quiet this long makes the exporter ask the API server whether it answers;
    #: a frozen server is noticed within heartbeat_seconds + heartbeat_timeout
    heartbeat_seconds: float = Field(default=10, gt=0, le=300)
    heartbeat_timeout: float = Field(default=5, gt=0, le=60)
    #: longest wait for the next bytes of a LIST page
    list_timeout: float = Field(default=30, gt=0, le=600)
    #: retries back off exponentially with jitter up to this
    backoff_max: float = Field(default=30, gt=0, le=600)


class Server(Strict):
    """The HTTP server's connection bounds (see docs/serve.md)."""

    #: request headers must arrive within this of connecting or of the previous
    #: response; an idle keep-alive connection is closed after it
    idle_timeout: float = Field(default=15.0, gt=0, le=3600)
    #: a response the client has not read by then is dropped with its connection
    write_timeout: float = Field(default=60.0, gt=0, le=3600)


class Config(Strict):
    listen: str = "0.0.0.0:9469"
    server: Server = Field(default_factory=Server)
    cluster: Cluster = Field(default_factory=Cluster)
    sources: Sources = Field(default_factory=Sources)
    watch: Watch = Field(default_factory=Watch)
    tls_probe: TLSProbeConfig | None = None
    http_probe: HTTPProbeConfig | None = None
    #: the status service, API and UI (on with --prometheus-url or status.prometheus.url)
    status: StatusConfig = Field(default_factory=StatusConfig)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        parse_listen(v)
        return v


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"listen address {text!r} must be HOST:PORT, e.g. 0.0.0.0:9469")
    return host.strip("[]") or "0.0.0.0", int(port)


def load_config(path: str) -> Config:
    """Read and validate a config file; raises SpecErrors with every problem."""
    return load_model(path, Config)
