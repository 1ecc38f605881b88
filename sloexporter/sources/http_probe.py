"""HTTP probes: golden signals for apps with no metrics of their own.

Each round sends one request per target (configured, or a Service annotated for probing)
and accumulates a request counter by status code and a duration histogram, as a client
library would. Every attempt is observed in the histogram, failures included (for the
time until the failure), so `_count` always equals the sum of the request counter.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import aiohttp
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from yarl import URL

from sloexporter import __version__, names
from sloexporter.exposition import family_header, sample_line
from sloexporter.sources.probing import (
    InvalidTarget,
    LabelName,
    ProbeLoop,
    Seconds,
    check_unique_labels,
    string_shorthand,
)

log = logging.getLogger(__name__)

SOURCE = "http_probe"
MAX_BODY_BYTES = 1 << 20  # read (and discard) at most this much of a response body
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# Printable ASCII, no spaces or control characters, bounded length.
_PATH = re.compile(r"^/[\x21-\x7e]{0,511}$")


def url_label(url: str) -> str:
    """The URL as a `target` label: no userinfo, no query, no fragment.

    Credentials ride in both (`https://user:pw@host/`, `?token=...`), and a label is read
    by everyone who can query Prometheus; name a target explicitly to tell apart two URLs
    that differ only in their query.
    """
    try:
        return str(URL(url).with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        rest = url.split("?", 1)[0].split("#", 1)[0]
        scheme, sep, tail = rest.partition("://")
        return scheme + sep + tail.rpartition("@")[2] if sep else rest


def _check_url(url: str) -> str:
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"url {url!r} must be absolute http:// or https://")
    return url


class HTTPTarget(BaseModel):
    """One URL to probe. In YAML either a URL string or a mapping."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Capped below the exposition's label cap, so two long URLs never collide.
    url: str = Field(max_length=1000)
    name: LabelName | None = Field(default=None, description="the `target` label; default: the URL")
    method: Literal["GET", "HEAD"] = "GET"
    expected_codes: tuple[int, ...] | None = Field(
        default=None, description="status codes that count as success; default 200-399")
    timeout: Seconds | None = Field(default=None, description="default: the prober's timeout")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return string_shorthand(value, "url")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value)

    @field_validator("expected_codes")
    @classmethod
    def _codes(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (not value or any(not 100 <= c <= 599 for c in value)):
            raise ValueError("expected_codes must be a non-empty list of codes 100-599")
        return value

    @property
    def label(self) -> str:
        return self.name or url_label(self.url)

    def expected(self, status: int) -> bool:
        if self.expected_codes is None:
            return 200 <= status < 400
        return status in self.expected_codes


class HTTPProbeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    targets: list[HTTPTarget] = Field(default_factory=list)
    interval: Seconds = 30.0
    timeout: Seconds = Field(default=5.0, description="per request, for targets without their own")
    concurrency: int = Field(default=10, ge=1, le=1000)

    @model_validator(mode="after")
    def _unique_labels(self) -> Self:
        check_unique_labels(self.targets, "HTTP")
        return self


@dataclass(frozen=True, slots=True)
class HTTPResult:
    code: str  # the HTTP status, or names.PROBE_ERROR_CODE when no response came
    duration: float
    success: bool


@dataclass
class _Series:
    """Cumulative state of one target, as a client library's counter and histogram."""

    requests: dict[str, int] = field(default_factory=dict)
    buckets: list[int] = field(default_factory=lambda: [0] * len(names.PROBE_BUCKETS))
    total: float = 0.0
    count: int = 0
    success: bool = False

    def observe(self, result: HTTPResult) -> None:
        self.requests[result.code] = self.requests.get(result.code, 0) + 1
        for i, bound in enumerate(names.PROBE_BUCKETS):
            if result.duration <= bound:
                self.buckets[i] += 1
        self.total += result.duration
        self.count += 1
        self.success = result.success


class HTTPProber(ProbeLoop[HTTPTarget, HTTPResult]):
    name = SOURCE

    def __init__(self, config: HTTPProbeConfig) -> None:
        self.config = config
        self._series: dict[str, _Series] = {}
        self._session: aiohttp.ClientSession | None = None
        super().__init__(static=config.targets, interval=config.interval,
                         concurrency=config.concurrency)

    def _prepare_round(self) -> None:
        if self._session is None or self._session.closed:
            # force_close: each probe pays for a fresh connection, like a new client would.
            connector = aiohttp.TCPConnector(limit=self.config.concurrency, force_close=True)
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": f"sloexporter/{__version__}"})

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _discovered_target(self, raw: str) -> HTTPTarget | None:
        try:
            return HTTPTarget(url=raw)
        except ValidationError as exc:
            raise ValueError(str(exc.errors()[0].get("msg", "invalid URL"))
                             .removeprefix("Value error, ")) from None

    def _invalid(self, target: InvalidTarget) -> HTTPResult:
        return HTTPResult(names.PROBE_ERROR_CODE, 0.0, False)

    def _label_of(self, raw: str) -> str:
        return url_label(raw)

    async def _probe(self, target: HTTPTarget) -> HTTPResult:
        assert self._session is not None
        timeout = target.timeout or self.config.timeout
        start = time.monotonic()
        try:
            # ClientTimeout bounds aiohttp's phases; asyncio.timeout bounds the whole probe.
            async with asyncio.timeout(timeout), self._session.request(
                    target.method, target.url, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                await _discard_body(response)
                code = str(response.status)
                success = target.expected(response.status)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            log.debug("http probe %s failed: %s", target.label, type(exc).__name__)
            code, success = names.PROBE_ERROR_CODE, False
        return HTTPResult(code, time.monotonic() - start, success)

    def _render_round(self, results: list[tuple[HTTPTarget | InvalidTarget, HTTPResult]]
                      ) -> bytes:
        current = {t.label for t in self.targets()}
        for label in list(self._series):
            if label not in current:  # a target that went away takes its series along
                del self._series[label]
        for target, result in results:
            if target.label in current:  # not removed while this round ran
                self._series.setdefault(target.label, _Series()).observe(result)
        return render_series(self._series)


async def _discard_body(response: aiohttp.ClientResponse) -> None:
    read = 0
    async for chunk in response.content.iter_chunked(65536):
        read += len(chunk)
        if read >= MAX_BODY_BYTES:
            break


def format_le(bound: float) -> str:
    """A bucket bound as prometheus_client writes it: 0.005, 1.0, 10.0, +Inf."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


_LES = [format_le(b) for b in names.PROBE_BUCKETS] + ["+Inf"]


def render_series(series: dict[str, _Series]) -> bytes:
    out = [family_header(names.PROBE_REQUESTS, "HTTP probe requests by status code "
                         "(code=\"error\" when no response came).", "counter")]
    for label, s in series.items():
        for code, n in sorted(s.requests.items()):
            out.append(sample_line(names.PROBE_REQUESTS, {"target": label, "code": code}, n))
    out.append(family_header(names.PROBE_DURATION, "HTTP probe duration in seconds.",
                             "histogram"))
    for label, s in series.items():
        for le, n in zip(_LES, [*s.buckets, s.count], strict=True):
            out.append(sample_line(f"{names.PROBE_DURATION}_bucket",
                                   {"target": label, "le": le}, n))
        out.append(sample_line(f"{names.PROBE_DURATION}_sum", {"target": label}, s.total))
        out.append(sample_line(f"{names.PROBE_DURATION}_count", {"target": label}, s.count))
    out.append(family_header(names.PROBE_SUCCESS, "1 if the last probe got an expected "
                             "status code.", "gauge"))
    for label, s in series.items():
        out.append(sample_line(names.PROBE_SUCCESS, {"target": label}, int(s.success)))
    return "".join(out).encode()


class ProbeAnnotationError(ValueError):
    """A Service opted in to probing whose annotations cannot make a URL: it is skipped
    and counted (reason `invalid_probe_annotation`) and logged once, never dropped
    silently."""


def service_probe_urls(service_obj: dict, *, cluster_domain: str | None = None) -> list[str]:
    """The URLs to probe for a Service object (a dict as a watch delivers it).

    A Service opts in with the annotation `sloexporter.dev/probe: "true"`; the optional
    `probe-path` (default "/"), `probe-port` (number or port name; default the first
    port) and `probe-scheme` (http or https) annotations shape the URL, which addresses
    the Service's cluster DNS name. A Service that did not opt in gives []; one that did
    (or whose probe annotation is neither true nor false, like "yes") but cannot be
    probed raises ProbeAnnotationError saying why, rather than giving a bad URL or
    nothing at all.
    """
    meta = service_obj.get("metadata") if isinstance(service_obj, dict) else None
    if not isinstance(meta, dict):
        return []
    annotations = meta.get("annotations")
    if not isinstance(annotations, dict) or names.PROBE_ANNOTATION not in annotations:
        return []
    opted = str(annotations.get(names.PROBE_ANNOTATION, "")).strip().lower()
    if opted == "false":
        return []
    if opted != "true":
        raise ProbeAnnotationError(f"{names.PROBE_ANNOTATION} must be \"true\" or \"false\", "
                                   f"not {opted[:40]!r}")
    name, namespace = meta.get("name"), meta.get("namespace")
    if not all(isinstance(v, str) and _DNS_LABEL.fullmatch(v) for v in (name, namespace)):
        raise ProbeAnnotationError("name and namespace must be DNS labels to make a URL")
    scheme = str(annotations.get(names.PROBE_SCHEME_ANNOTATION, "http")).strip().lower()
    path = str(annotations.get(names.PROBE_PATH_ANNOTATION, "/")).strip()
    wanted = annotations.get(names.PROBE_PORT_ANNOTATION)
    port = _service_port(service_obj.get("spec"), wanted)
    if scheme not in ("http", "https"):
        raise ProbeAnnotationError(f"{names.PROBE_SCHEME_ANNOTATION} must be http or https, "
                                   f"not {scheme[:40]!r}")
    if not _PATH.fullmatch(path):
        raise ProbeAnnotationError(f"{names.PROBE_PATH_ANNOTATION} must be an absolute path "
                                   "of printable characters, no spaces, 512 at most")
    if port is None:
        raise ProbeAnnotationError(
            f"no port {str(wanted)[:40]!r} (by number or name) in the Service" if wanted
            is not None else "the Service has no port to probe")
    host = f"{name}.{namespace}.svc" + (f".{cluster_domain}" if cluster_domain else "")
    return [f"{scheme}://{host}:{port}{path}"]


def _service_port(spec: Any, wanted: Any) -> int | None:
    """The port number chosen by the probe-port annotation (number or name), or the first."""
    ports = spec.get("ports") if isinstance(spec, dict) else None
    ports = [p for p in ports if isinstance(p, dict)] if isinstance(ports, list) else []
    if wanted is not None:
        wanted = str(wanted).strip()
        if wanted.isdigit():
            number: Any = int(wanted)
        else:
            number = next((p.get("port") for p in ports if p.get("name") == wanted), None)
    else:
        number = ports[0].get("port") if ports else None
    if isinstance(number, int) and not isinstance(number, bool) and 0 < number < 65536:
        return number
    return None
