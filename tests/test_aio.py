"""Supervised background tasks (issue 10: "one that dies is logged and restarted") and
blocking work off the event loop, on the real asyncio loop."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from sloexporter import aio
from sloexporter.aio import LoopShare, in_thread, supervise


async def until(cond, what: str, wait: float = 30.0) -> None:
    deadline = time.monotonic() + wait
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_a_task_that_raises_or_returns_is_logged_once_each_time_and_restarted(caplog):
    caplog.set_level(logging.ERROR, "sloexporter")
    runs: list[int] = []
    steady = asyncio.Event()

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise KeyError("boom")
        if len(runs) == 2:
            return  # a loop that ends is a bug too
        steady.set()
        await asyncio.Event().wait()  # the third run lives

    task = asyncio.create_task(supervise("reload", flaky, backoff_max=0.2))
    await until(steady.is_set, "the third run")
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    lines = [r.getMessage() for r in caplog.records]
    assert len(runs) == 3
    assert lines == ["background task reload failed (KeyError: 'boom'); restarting it",
                     "background task reload ended; restarting it"]


async def test_restarts_back_off_and_cancel_stops_the_loop_at_once():
    starts: list[float] = []

    async def dies() -> None:
        starts.append(time.monotonic())
        raise RuntimeError("always")

    task = asyncio.create_task(supervise("probe", dies, backoff_max=0.05))
    await until(lambda: len(starts) >= 20, "twenty restarts")
    task.cancel()
    cancelled = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - cancelled < 1.0
    # 19 waits of uniform(0, 0.05) s sum to about 0.5 s; below 0.05 s is never chance
    # (a restart without a backoff takes microseconds)
    assert starts[-1] - starts[0] > 0.05, starts[-1] - starts[0]


async def test_in_thread_runs_off_the_loop_and_a_cancelled_wait_returns_at_once():
    loop_thread = threading.get_ident()
    assert await in_thread(threading.get_ident) != loop_thread
    with pytest.raises(ZeroDivisionError):
        await in_thread(lambda: 1 / 0)
    release = threading.Event()
    waiting = asyncio.create_task(in_thread(release.wait, 30))
    ticks = 0
    for _ in range(5):  # the loop stays free while the thread blocks
        await asyncio.sleep(0.01)
        ticks += 1
    waiting.cancel()
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert time.monotonic() - started < 1.0 and ticks == 5
    release.set()


async def test_watch_work_stands_aside_while_a_scrape_is_served(monkeypatch):
    monkeypatch.setattr(aio, "DEFER_SECONDS", 60.0)  # only the scrape's end releases it
    share = LoopShare()
    with share.serving():
        turn = asyncio.create_task(share.take_turn())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not turn.done(), "a worker took its turn in the middle of a scrape"
    await asyncio.wait_for(turn, 30)  # the scrape is done: the worker goes on at once


async def test_a_scrape_that_never_ends_cannot_stop_the_watches():
    """A client that never reads its response keeps the request in flight for the write
    timeout; watch work must still get its turns (each waits DEFER_SECONDS at most, and
    only for PRIORITY_SECONDS after the scrape began)."""
    share = LoopShare()
    with share.serving():
        turns = 0

        async def worker() -> None:
            nonlocal turns
            for _ in range(200):
                await share.take_turn()
                turns += 1
        await asyncio.wait_for(worker(), 30)
        assert turns == 200


async def test_the_short_switch_interval_lasts_while_any_holder_is_inside():
    """Two parses at once, leaving in the other order than they came: the interval stays
    short until the last leaves, then it is the process's own again."""
    import sys

    original = sys.getswitchinterval()
    first_in, second_in, release_first = asyncio.Event(), asyncio.Event(), asyncio.Event()
    seen: list[float] = []

    async def parse(entered: asyncio.Event, leave: asyncio.Event | None,
                    seconds: float) -> None:
        with aio.short_switch_interval(seconds):
            entered.set()
            if leave is not None:
                await leave.wait()
            seen.append(sys.getswitchinterval())

    first = asyncio.create_task(parse(first_in, release_first, 0.002))
    await first_in.wait()
    second = asyncio.create_task(parse(second_in, None, 0.001))
    await second
    assert sys.getswitchinterval() == pytest.approx(0.001)  # the first is still inside
    release_first.set()
    await first
    assert seen == [pytest.approx(0.001), pytest.approx(0.001)]
    assert sys.getswitchinterval() == original
    with pytest.raises(RuntimeError), aio.short_switch_interval(0.001):
        raise RuntimeError
    assert sys.getswitchinterval() == original
