"""Spreading a reader over the cores of the machine.

Reading a big root is dominated by small-file system calls and the Python work around them; a
thread pool does not help (the GIL), forked worker processes do. Each worker reads a slice of
the entries and sends back the model objects and the provenance of what it read.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from forensics.evidence import Evidence, FileRead

T = TypeVar("T")
R = TypeVar("R")

#: below this many entries the start-up of the workers costs more than it saves
MIN_PARALLEL = 2000
CHUNK = 1000

_job: tuple[Evidence, Callable[[Evidence, Any], object]] | None = None


def workers() -> int:
    """How many processes read: ``DOCKER_FORENSICS_WORKERS`` if set, else the usable cores."""
    configured = os.environ.get("DOCKER_FORENSICS_WORKERS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def map_entries(
    ev: Evidence,
    fn: Callable[[Evidence, T], R],
    items: Sequence[T],
    *,
    min_parallel: int | None = None,
    chunk: int | None = None,
) -> Iterator[R]:
    """``fn(ev, item)`` for every item, in order; in forked workers when that pays off: from
    ``min_parallel`` items on, ``chunk`` items per task (cheap work wants big chunks)."""
    count = workers()
    threshold = MIN_PARALLEL if min_parallel is None else min_parallel
    size = CHUNK if chunk is None else chunk
    if count < 2 or len(items) < threshold or "fork" not in multiprocessing.get_all_start_methods():
        for item in items:
            yield fn(ev, item)
        return
    global _job
    _job = (ev, fn)
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    try:
        with multiprocessing.get_context("fork").Pool(count) as pool:
            for results, reads in pool.imap(_run_chunk, chunks):
                ev.reads.update(reads)
                yield from results  # type: ignore[misc]
    finally:
        _job = None


def _run_chunk(names: Sequence[Any]) -> tuple[list[object], dict[str, FileRead]]:
    assert _job is not None
    ev, fn = _job
    ev.reads = {}
    return [fn(ev, name) for name in names], ev.reads
