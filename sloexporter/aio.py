"""asyncio helpers the server needs: blocking work off the loop, supervised tasks, and
sharing the loop between background work and the requests it serves."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a daemon thread; awaiting it can be cancelled at any time.

    Not `asyncio.to_thread`: `asyncio.run` joins the default executor's threads at exit,
    so a 15 s YAML parse there would hold SIGTERM for 15 s. A daemon thread is abandoned
    at exit instead, and a cancelled caller just stops waiting for it.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if not future.done():
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    def work() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name=getattr(fn, "__name__", "work"), daemon=True).start()
    return await future


class _Switch:
    """The process's own interval, saved by the first holder, and the holders inside."""

    saved = 0.0
    holders = 0


@contextlib.contextmanager
def short_switch_interval(seconds: float) -> Iterator[None]:
    """The GIL switch interval at most `seconds` while any holder is inside.

    A thread doing long work (a parse) makes the event loop wait up to the interval each
    time it wants the GIL back. The interval is process-wide: the first holder saves it
    and the last one out restores it, in whatever order holders leave (on the loop's
    thread)."""
    if not _Switch.holders:
        _Switch.saved = sys.getswitchinterval()
    _Switch.holders += 1
    sys.setswitchinterval(min(sys.getswitchinterval(), seconds))
    try:
        yield
    finally:
        _Switch.holders -= 1
        if not _Switch.holders:
            sys.setswitchinterval(_Switch.saved)


async def supervise(name: str, factory: Callable[[], Awaitable[None]],
                    backoff_max: float = 30.0) -> None:
    """Run `factory()` forever: when it dies, log once with the cause and start it again.

    A background loop that returns or raises is a bug, but the exporter must not go
    silently stale because of it; the restart backs off with jitter.
    """
    failures = 0
    while True:
        try:
            await factory()
            log.error("background task %s ended; restarting it", name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - logged, then restarted
            log.error("background task %s failed (%s: %s); restarting it", name,
                      type(exc).__name__, str(exc)[:300])
        failures += 1
        await asyncio.sleep(random.uniform(0, min(backoff_max, 0.5 * 2 ** min(failures, 10))))


#: the longest stretch background work (applying watch events) holds the loop
SLICE_SECONDS = 0.001
#: the longest background work stands aside for requests in flight before it takes a
#: slice anyway, so a flood of scrapes slows the watches down but never stops them
DEFER_SECONDS = 0.025
#: a request has priority for this long after it starts: a client that reads its
#: response slowly must not slow the watches for the whole write timeout
PRIORITY_SECONDS = 0.25


class LoopShare:
    """One event loop shared by background work and the requests it serves.

    Background work (a backlog of watch events, a re-list) asks `due()` after each item
    and, when it is, awaits `take_turn()`: no worker holds the loop for more than about
    SLICE_SECONDS, so a request that arrives is read within a few slices, not after a
    backlog. While a request is served (`serving()`; for PRIORITY_SECONDS at most, so a
    client that reads slowly cannot slow the watches for long) a worker's turn waits
    until it is done, or DEFER_SECONDS at most, then runs a full slice: the response is
    rendered and written without slices of watch work between its steps, and a flood of
    scrapes slows the watches down but never stops them.
    """

    def __init__(self) -> None:
        self._mark = time.perf_counter()
        self._serving = 0
        self._until = 0.0  # requests in flight have priority until then
        self._waiters: list[asyncio.Future[None]] = []

    def due(self) -> bool:
        return time.perf_counter() - self._mark >= SLICE_SECONDS

    async def take_turn(self) -> None:
        wait = self._until - time.perf_counter() if self._serving else 0.0
        if wait > 0:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(min(wait, DEFER_SECONDS)):
                    await waiter
            except TimeoutError:
                pass
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        else:
            await asyncio.sleep(0)
        self._mark = time.perf_counter()

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        self._serving += 1
        self._until = time.perf_counter() + PRIORITY_SECONDS
        try:
            yield
        finally:
            self._serving -= 1
            if not self._serving:
                waiters, self._waiters = self._waiters, []
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)


#: the process's one event loop is shared through this
LOOP_SHARE = LoopShare()
