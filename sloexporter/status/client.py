"""A small Prometheus HTTP API client: instant and range queries with auth and timeouts.

Works against Prometheus, Thanos Query, Mimir/Cortex (with `X-Scope-OrgID`) and
VictoriaMetrics. Every call has a timeout; errors become `PrometheusError` with a reason
a person can act on, never a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp

from sloexporter.status.config import PrometheusAccess, read_secret

Labels = dict[str, str]


class PrometheusError(Exception):
    """A query failed: unreachable, too slow, an HTTP error or a PromQL error."""


@dataclass(frozen=True)
class Sample:
    labels: Labels
    value: float


@dataclass(frozen=True)
class Series:
    labels: Labels
    points: list[tuple[float, float]]


def _read(path: str, what: str) -> str:
    return read_secret(path, what, PrometheusError)


def _float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


#: labels that tell HA replicas of one series apart (Prometheus Operator, Thanos, Mimir)
REPLICA_LABELS = frozenset({"prometheus_replica", "replica", "__replica__", "rule_replica",
                            "thanos_ruler_replica"})

#: a larger answer is refused, not buffered: 1,000 SLOs answer a few MB per query
MAX_BODY = 64 * 1024 * 1024


def _labels(metric: Any) -> Labels | None:
    """A series' labels; None when they are not a mapping of strings."""
    if not isinstance(metric, dict):
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metric.items()):
        return None
    return dict(metric)


def _value(pair: Any) -> float:
    """The value of a `[time, "value"]` pair; NaN for anything else."""
    if isinstance(pair, list | tuple) and len(pair) == 2:
        return _float(pair[1])
    return math.nan


def _results(data: Any, kind: str) -> list[dict[str, Any]]:
    """The `result` list of a `resultType: kind` answer, without malformed items.

    Prometheus never answers two series with the same labels, but a fan-out query layer
    (Thanos without deduplication, a proxy in front of HA replicas) can, or answers each
    once per replica label: the first one is kept, so a rate is never counted twice.
    """
    if not isinstance(data, dict) or data.get("resultType") != kind:
        got = data.get("resultType") if isinstance(data, dict) else type(data).__name__
        raise PrometheusError(f"expected a {kind}, got {got}")
    result = data.get("result")
    if result is None:
        return []
    if not isinstance(result, list):
        raise PrometheusError(f"malformed {kind} answer: result is not a list")
    out, seen = [], set()
    for item in result:
        labels = _labels(item.get("metric", {}) if isinstance(item, dict) else None)
        if labels is None:
            continue
        ident = tuple(sorted((k, v) for k, v in labels.items() if k not in REPLICA_LABELS))
        if ident in seen:
            continue
        seen.add(ident)
        out.append(dict(item, metric=labels))
    return out


class PrometheusClient:
    """Queries one Prometheus-compatible endpoint; counts every query it sends."""

    def __init__(self, access: PrometheusAccess) -> None:
        if not access.url:
            raise ValueError("no Prometheus URL: give --prometheus-url or status.prometheus.url")
        self.access = access
        self.base = access.url.rstrip("/")
        self.queries = 0
        self.max_body = MAX_BODY
        self._session: aiohttp.ClientSession | None = None

    def _ssl(self) -> ssl.SSLContext | bool:
        if self.access.ca_file:
            try:
                return ssl.create_default_context(cafile=self.access.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise PrometheusError(f"cannot load CA file {self.access.ca_file}: {exc}") \
                    from None
        return True

    def _headers(self) -> dict[str, str]:
        """Read on every call: a rotated token or password is picked up."""
        a = self.access
        headers = {"Accept": "application/json"}
        if a.bearer_token_file:
            headers["Authorization"] = "Bearer " + _read(a.bearer_token_file, "bearer token")
        elif a.basic_auth_username_file and a.basic_auth_password_file:
            user = _read(a.basic_auth_username_file, "basic auth username")
            password = _read(a.basic_auth_password_file, "basic auth password")
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers["Authorization"] = "Basic " + token
        if a.org_id:
            headers["X-Scope-OrgID"] = a.org_id
        return headers

    async def _session_get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl(), limit=8)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _body(self, resp: aiohttp.ClientResponse, url: str) -> bytes:
        """The answer, refused once it grows past `max_body` (never buffered whole)."""
        too_big = PrometheusError(f"{url}: HTTP {resp.status}, an answer over the "
                                  f"{self.max_body} byte limit")
        if (resp.content_length or 0) > self.max_body:
            raise too_big
        chunks, size = [], 0
        async for chunk in resp.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > self.max_body:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    async def _call(self, path: str, form: dict[str, str]) -> Any:
        self.queries += 1
        session = await self._session_get()
        timeout = aiohttp.ClientTimeout(total=self.access.query_timeout)
        url = self.base + path
        try:
            async with session.post(url, data=form, headers=self._headers(),
                                    timeout=timeout) as resp:
                raw = await self._body(resp, url)
                try:
                    body = json.loads(raw)
                except (ValueError, RecursionError):
                    body = None
                if not isinstance(body, dict):
                    raise PrometheusError(f"{url}: HTTP {resp.status}, not a Prometheus API "
                                          "answer")
                if body.get("status") != "success":
                    raise PrometheusError(f"{url}: HTTP {resp.status}: "
                                          f"{body.get('errorType', 'error')}: "
                                          f"{str(body.get('error', ''))[:300]}")
                return body.get("data")
        except TimeoutError:
            raise PrometheusError(f"{url}: no answer within {self.access.query_timeout:g}s") \
                from None
        except aiohttp.ClientError as exc:
            raise PrometheusError(f"{url}: {exc.__class__.__name__}: {exc}") from None
        except asyncio.CancelledError:
            raise

    async def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """An instant query; NaN values are kept as NaN, non-vector results rejected."""
        form = {"query": expr}
        if at is not None:
            form["time"] = f"{at:.3f}"
        data = await self._call("/api/v1/query", form)
        if isinstance(data, dict) and data.get("resultType") == "scalar":
            return [Sample({}, _value(data.get("result")))]
        return [Sample(item["metric"], _value(item.get("value")))
                for item in _results(data, "vector")]

    async def query_range(self, expr: str, start: float, end: float,
                          step: float) -> list[Series]:
        form = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                "step": f"{max(step, 1):.0f}"}
        data = await self._call("/api/v1/query_range", form)
        out = []
        for item in _results(data, "matrix"):
            values = item.get("values")
            points = [(_float(p[0]), _value(p)) for p in values
                      if isinstance(p, list | tuple) and len(p) == 2] \
                if isinstance(values, list) else []
            out.append(Series(item["metric"], [(t, v) for t, v in points if math.isfinite(t)]))
        return out
