"""Spreading a reader over the cores of the machine.

Reading a big root is dominated by small-file system calls and the Python work around them; a
thread pool does not help (the GIL), forked worker processes do. Each worker reads a slice of
the entries and sends back the model objects and the provenance of what it read.

Within :func:`shared_workers` (the whole of reading a host) one set of workers serves every
reader: it is forked once, when the first reader needs it, and a reader can hand its work over
(:func:`submit`) and collect it later, so that the workers go on with the next store while the
parent takes in the results of the previous one.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from multiprocessing.pool import Pool
from typing import Any, TypeVar

from forensics.evidence import Evidence, FileRead

T = TypeVar("T")
R = TypeVar("R")

#: below this many entries the start-up of the workers costs more than it saves
MIN_PARALLEL = 2000
#: the most entries in one task; fewer when that leaves some tasks to balance the load
CHUNK = 1000
#: tasks per worker that a reader's entries are cut into at least (the last ones even out)
TASKS_PER_WORKER = 4

#: the evidence that the workers read (set before they are forked)
_worker_ev: Evidence | None = None


class _Shared:
    """The workers of a :func:`shared_workers` block, forked at their first use."""

    def __init__(self, ev: Evidence) -> None:
        self.ev = ev
        self.pool: Pool | None = None

    def get(self, count: int) -> Pool:
        if self.pool is None:
            self.pool = _fork_pool(self.ev, count)
        return self.pool


_shared: _Shared | None = None


def workers() -> int:
    """How many processes read: ``DOCKER_FORENSICS_WORKERS`` if set, else the usable cores."""
    configured = os.environ.get("DOCKER_FORENSICS_WORKERS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@contextmanager
def shared_workers(ev: Evidence) -> Iterator[None]:
    """Every reader of ``ev`` inside the block uses one set of forked workers."""
    global _shared
    if _shared is not None:  # nested: the outer block's workers serve
        yield
        return
    _shared = _Shared(ev)
    try:
        yield
    finally:
        pool, _shared = _shared.pool, None
        if pool is not None:
            pool.terminate()
            pool.join()


def map_entries(
    ev: Evidence,
    fn: Callable[[Evidence, T], R],
    items: Sequence[T],
    *,
    min_parallel: int | None = None,
    chunk: int | None = None,
) -> Iterator[R]:
    """``fn(ev, item)`` for every item, in order; in forked workers when that pays off: from
    ``min_parallel`` items on, ``chunk`` items per task (cheap work wants big chunks). ``fn``
    must be picklable (a module-level function, or a :func:`functools.partial` of one)."""
    return submit(ev, partial(_each, fn), items, min_parallel=min_parallel, chunk=chunk)


def submit(
    ev: Evidence,
    fn: Callable[[Evidence, Sequence[T]], list[R]],
    items: Sequence[T],
    *,
    min_parallel: int | None = None,
    chunk: int | None = None,
) -> Iterator[R]:
    """``fn(ev, slice)`` over consecutive slices of ``items``, the results in order. In
    workers, the work starts now and the results are collected as the returned iterator is
    read; in this process, the work is done as it is read."""
    count = workers()
    threshold = MIN_PARALLEL if min_parallel is None else min_parallel
    if count < 2 or len(items) < threshold or "fork" not in multiprocessing.get_all_start_methods():
        return _in_process(ev, fn, items)
    size = chunk or max(1, min(CHUNK, len(items) // (count * TASKS_PER_WORKER)))
    tasks = [(fn, items[i : i + size]) for i in range(0, len(items), size)]
    if _shared is not None and _shared.ev is ev:
        return _collect(ev, _shared.get(count).imap(_run_task, tasks), None)
    pool = _fork_pool(ev, count)
    return _collect(ev, pool.imap(_run_task, tasks), pool)


def _in_process(
    ev: Evidence, fn: Callable[[Evidence, Sequence[T]], list[R]], items: Sequence[T]
) -> Iterator[R]:
    yield from fn(ev, items)


def _fork_pool(ev: Evidence, count: int) -> Pool:
    global _worker_ev
    _worker_ev = ev
    return multiprocessing.get_context("fork").Pool(count)


def _collect(
    ev: Evidence, results: Iterator[tuple[list[R], dict[str, FileRead]]], own: Pool | None
) -> Iterator[R]:
    """The results of the tasks in order, their provenance added to ``ev``; ``own`` is a pool
    made for these tasks alone, ended with them."""
    try:
        for values, reads in results:
            ev.reads.update(reads)
            yield from values
    finally:
        if own is not None:
            own.terminate()
            own.join()


def _each(fn: Callable[[Evidence, T], R], ev: Evidence, items: Sequence[T]) -> list[R]:
    return [fn(ev, item) for item in items]


def _run_task(
    task: tuple[Callable[[Evidence, Sequence[Any]], list[Any]], Sequence[Any]],
) -> tuple[list[Any], dict[str, FileRead]]:
    assert _worker_ev is not None
    fn, items = task
    ev = _worker_ev
    ev.reads = {}
    return fn(ev, items), ev.reads
