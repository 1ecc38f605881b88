"""A small Prometheus HTTP API client: instant and range queries with auth and timeouts.

Works against Prometheus, Thanos Query, Mimir/Cortex (with `X-Scope-OrgID`) and
VictoriaMetrics. Every call has a timeout; errors become `PrometheusError` with a reason
a person can act on, never a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import math
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from sloexporter.status.config import PrometheusAccess

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
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise PrometheusError(f"cannot read the {what} file {path}: {exc.strerror}") from None


def _float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


class PrometheusClient:
    """Queries one Prometheus-compatible endpoint; counts every query it sends."""

    def __init__(self, access: PrometheusAccess) -> None:
        if not access.url:
            raise ValueError("no Prometheus URL: give --prometheus-url or status.prometheus.url")
        self.access = access
        self.base = access.url.rstrip("/")
        self.queries = 0
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

    async def _call(self, path: str, form: dict[str, str]) -> Any:
        self.queries += 1
        session = await self._session_get()
        timeout = aiohttp.ClientTimeout(total=self.access.query_timeout)
        url = self.base + path
        try:
            async with session.post(url, data=form, headers=self._headers(),
                                    timeout=timeout) as resp:
                try:
                    body = await resp.json(content_type=None)
                except (ValueError, aiohttp.ContentTypeError):
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
        if not isinstance(data, dict):
            raise PrometheusError("query answer without data")
        if data.get("resultType") == "scalar":
            return [Sample({}, _float(data["result"][1]))]
        if data.get("resultType") != "vector":
            raise PrometheusError(f"expected a vector, got {data.get('resultType')}")
        out = []
        for item in data.get("result") or []:
            value = item.get("value") or [0, "NaN"]
            out.append(Sample(dict(item.get("metric") or {}), _float(value[1])))
        return out

    async def query_range(self, expr: str, start: float, end: float,
                          step: float) -> list[Series]:
        form = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                "step": f"{max(step, 1):.0f}"}
        data = await self._call("/api/v1/query_range", form)
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            raise PrometheusError("expected a matrix from query_range")
        return [Series(dict(item.get("metric") or {}),
                       [(float(t), _float(v)) for t, v in item.get("values") or []])
                for item in data.get("result") or []]
