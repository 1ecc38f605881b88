"""Two asyncio helpers the server needs: blocking work off the loop, and supervised tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections.abc import Awaitable, Callable
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
