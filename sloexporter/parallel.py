"""Batch work split over forked processes: `validate` and `generate` on every core.

Each heavy stage (parsing the spec files, building the models, rendering each service's
files) is a function of a contiguous slice of its inputs. `chunked_map` runs the first
slices here and each other slice in a child made by fork, which inherits everything built
so far (the parsed documents, the models) without copying; a child sends its result back
pickled. The results come back in input order, so the output is byte for byte what one
process writes (a test holds the two equal).

A child that fails in any way (an exception, a crash, a result that will not pickle) has
its slice redone here, where an error surfaces as it would without workers.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: SLOEXPORTER_WORKERS: how many processes share a batch (1: none forked). Unset, as many
#: as the CPUs this process may use, at most MAX_WORKERS, and only for inputs of at least
#: MIN_SLICE items a worker, below which a fork costs more than it saves.
ENV = "SLOEXPORTER_WORKERS"
MAX_WORKERS = 4
MIN_SLICE = 40
#: the most processes SLOEXPORTER_WORKERS may ask for (a typo of 1000 must not fork 1000)
MAX_ASKED = 32


#: set by `batch()`: only a batch command's process forks. A server (the status service
#: loads specs too) has threads, and a child forked beside them may inherit a held lock.
_allowed = False


@contextlib.contextmanager
def batch() -> Iterator[None]:
    """Within, `chunked_map` may fork: for commands that run alone in their process."""
    global _allowed
    was, _allowed = _allowed, True
    try:
        yield
    finally:
        _allowed = was


def workers(items: int) -> int:
    """The number of processes for `items` inputs (1 outside `batch()`)."""
    if not _allowed or not hasattr(os, "fork") or items < 2:
        return 1
    asked = os.environ.get(ENV, "").strip()
    if asked:
        try:
            return max(1, min(int(asked), items, MAX_ASKED))
        except ValueError:
            return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS, items // MIN_SLICE))


def slices(items: Sequence[T], count: int,
           weights: Sequence[float] | None = None) -> list[Sequence[T]]:
    """`items` cut into `count` contiguous slices, in order, of near-equal length, or of
    near-equal total weight when `weights` (one per item) are given."""
    if weights is None:
        weights = [1.0] * len(items)
    total = sum(weights)
    out, start, reached = [], 0, 0.0
    for i in range(count - 1):
        goal = total * (i + 1) / count
        end = start
        # take items while that brings the slice's end closer to its share of the total
        while end < len(items) and abs(reached + weights[end] - goal) <= abs(reached - goal):
            reached += weights[end]
            end += 1
        out.append(items[start:end])
        start = end
    out.append(items[start:])
    return out


def chunked_map(fn: Callable[[Sequence[T]], R], items: Sequence[T],
                weights: Sequence[float] | None = None) -> list[R]:
    """[fn(part) for part in contiguous parts of `items`], in order, the parts after the
    first two computed in forked children; `weights` (one per item, e.g. its expected
    cost) balance the parts.

    The first part is the first item alone, done here before any fork: what it loads on
    first use (a format's modules and models, caches) is then inherited by every child
    instead of being loaded again in each."""
    count = workers(len(items))
    if count == 1:
        return [fn(items)]
    import signal  # only where it forks: a short command never does
    first = fn(items[:1])
    parts = slices(items[1:], count, None if weights is None else weights[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    children: list[tuple[int, int, Sequence[T]]] = []
    try:
        for part in parts[1:]:
            children.append(_fork(fn, part))
        results = [first, fn(parts[0])]
        while children:
            pid, fd, part = children.pop(0)
            results.append(_collect(fn, pid, fd, part))
        return results
    finally:
        for pid, fd, _ in children:  # only after an error here: stop and reap the rest
            os.close(fd)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def _fork(fn: Callable[[Sequence[T]], R], part: Sequence[T]) -> tuple[int, int, Sequence[T]]:
    import pickle  # as signal above

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, send, and leave without the parent's exit handlers
        status = 1
        try:
            os.close(read_fd)
            data = pickle.dumps(fn(part), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_fd, "wb") as out:
                out.write(data)
            status = 0
        except BaseException:  # noqa: BLE001  (the parent redoes the slice and reports)
            pass
        finally:
            os._exit(status)
    os.close(write_fd)
    return pid, read_fd, part


def _collect(fn: Callable[[Sequence[T]], R], pid: int, fd: int, part: Sequence[T]) -> R:
    import pickle  # as signal above

    with os.fdopen(fd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status == 0 and data:
        try:
            return pickle.loads(data)  # noqa: S301  (our own child's bytes)
        except Exception:  # noqa: BLE001,S110  (redone below)
            pass
    return fn(part)
