"""The loop both active probers share: targets, rounds, a concurrency bound, bytes.

A prober probes its static targets plus those handed in by `set_discovered_targets`,
one round per interval, at most `concurrency` at a time. After each round it renders its
exposition once, so a scrape only returns bytes. Subclasses say how to probe one target
(bounded by their own timeout, never raising) and how to render a round's results.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Protocol, TypeVar

from pydantic import BeforeValidator, Field

from sloexporter.model import parse_duration

log = logging.getLogger(__name__)


def _seconds(value: object) -> object:
    # Config accepts 30 or 0.5 (seconds) as well as Prometheus-style strings like "1m".
    return parse_duration(value) if isinstance(value, str) else value


#: A positive number of seconds; "30s", "1m" and "1h30m" are accepted as well.
Seconds = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]
#: A `target` label set by the user; short enough never to be truncated on exposition.
LabelName = Annotated[str, Field(min_length=1, max_length=200)]
#: an unusable discovered target keeps at most this much of itself as its label
MAX_INVALID_LABEL = 300


def string_shorthand(value: Any, key: str) -> Any:
    """Config shorthand: a bare string in a target list stands for `{key: string}`."""
    return {key: value} if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class InvalidTarget:
    """A discovered target that cannot be probed (e.g. a 64-character DNS label).

    It keeps its series, as a failure with reason `invalid_target`, so a dashboard shows
    it rather than nothing; it is logged once, when first discovered.
    """

    label: str
    reason: str = "invalid_target"


class Target(Protocol):
    @property
    def label(self) -> str:
        """The value of the `target` label; unique among a prober's targets."""


T = TypeVar("T", bound=Target)
R = TypeVar("R")


def check_unique_labels(targets: Iterable[Target], kind: str) -> None:
    """Config validation: two static targets must not share a `target` label."""
    labels = [t.label for t in targets]
    dupes = sorted({label for label in labels if labels.count(label) > 1})
    if dupes:
        raise ValueError(f"duplicate {kind} targets {dupes}; give each a distinct `name`")


class ProbeLoop(ABC, Generic[T, R]):
    """Rounds over static + discovered targets; implements the `Prober` protocol."""

    name: str

    def __init__(self, *, static: Sequence[T], interval: float, concurrency: int) -> None:
        self._static = list(static)
        self._interval = interval
        self._semaphore = asyncio.Semaphore(concurrency)
        self._discovered: dict[str, list[T | InvalidTarget]] = {}
        self._reported: set[str] = set()  # unusable targets already logged
        self._ready = False
        self._up = True
        self._rendered = self._render_round([])

    # --- Prober protocol -------------------------------------------------------------

    async def run(self) -> None:
        """Probe forever at a fixed rate until cancelled; a failed round never ends it."""
        try:
            while True:
                started = time.monotonic()
                await self.probe_round()
                await asyncio.sleep(max(0.0, self._interval - (time.monotonic() - started)))
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Release what the rounds hold open (e.g. an HTTP session); run() calls it."""

    def ready(self) -> bool:
        return self._ready

    def up(self) -> bool:
        return self._up

    def render(self) -> bytes:
        return self._rendered

    def set_discovered_targets(self, origin: str, targets: Iterable[str]) -> None:
        """Replace the targets found through `origin`.

        An unusable entry becomes an InvalidTarget: one log line when first seen, then a
        failure series every round, never a traceback.
        """
        parsed: list[T | InvalidTarget] = []
        for raw in targets:
            try:
                target = self._discovered_target(raw)
                if target is not None:
                    parsed.append(target)
            except ValueError as exc:
                label = self._label_of(str(raw))[:MAX_INVALID_LABEL]
                if label not in self._reported:
                    self._reported.add(label)
                    log.warning("%s: cannot probe %r from %s: %s", self.name, label, origin,
                                str(exc)[:200])
                parsed.append(InvalidTarget(label))
        if parsed:
            self._discovered[origin] = parsed
        else:
            self._discovered.pop(origin, None)

    # --- one round -------------------------------------------------------------------

    def targets(self) -> list[T | InvalidTarget]:
        """Static targets first; a discovered target with an already-used label is skipped."""
        seen: set[str] = set()
        out: list[T | InvalidTarget] = []
        for target in [*self._static, *(t for ts in self._discovered.values() for t in ts)]:
            if target.label not in seen:
                seen.add(target.label)
                out.append(target)
        return out

    async def probe_round(self) -> None:
        """Probe every current target once and re-render; never raises."""
        try:
            self._prepare_round()
        except Exception as exc:  # e.g. an unreadable ca_file: the prober cannot work
            log.error("%s: cannot start a probe round: %s", self.name, exc)
            self._up = False
            return
        targets = self.targets()
        outcomes = await asyncio.gather(*(self._bounded(t) for t in targets))
        results = [(t, r) for t, r in zip(targets, outcomes, strict=True) if r is not None]
        self._rendered = self._render_round(results)
        self._up = True
        self._ready = True

    async def _bounded(self, target: T | InvalidTarget) -> R | None:
        if isinstance(target, InvalidTarget):
            return self._invalid(target)
        async with self._semaphore:
            try:
                return await self._probe(target)
            except Exception:  # a bug in one probe must not stop the others
                log.exception("%s: probe of %s failed unexpectedly", self.name, target.label)
                return None

    # --- subclass hooks --------------------------------------------------------------

    def _prepare_round(self) -> None:
        """Build per-round state (e.g. TLS contexts); raising marks the prober down."""

    @abstractmethod
    def _discovered_target(self, raw: str) -> T | None:
        """A target from a discovered string; None to pass it over silently (a wildcard);
        ValueError (saying why) when it is unusable: it then gets a failure series."""

    def _label_of(self, raw: str) -> str:
        """The `target` label of an unusable discovered string (credentials removed)."""
        return raw

    @abstractmethod
    def _invalid(self, target: InvalidTarget) -> R:
        """The failed result an unusable target gets every round."""

    @abstractmethod
    async def _probe(self, target: T) -> R:
        """Probe one target, bounded by a timeout; failures are results, not exceptions."""

    @abstractmethod
    def _render_round(self, results: list[tuple[T | InvalidTarget, R]]) -> bytes:
        """The full exposition for this round's results (HELP/TYPE included)."""
