"""Spreading a reader over the cores of the machine.

Reading a big root is dominated by small-file system calls and the Python work around them; a
thread pool does not help (the GIL), forked processes do. The work of a reader (a *job*) is cut
into slices (*tasks*); forked helpers and this process itself take the next task that nobody
has taken yet, each in turn, and the results are handed over in order. This process works too
rather than wait: on a machine of two cores a pool of two workers leaves the parent only the
taking in of results, which competes with the workers for the cores, whereas one helper and
the parent split the reading and only half of the results travel between processes.

Within :func:`shared_workers` (the whole of reading a host) the same helpers serve every
reader: they are forked once, when the first reader needs them, and a reader can hand its work
over (:func:`submit`) and take the results in later, so that the helpers go on with the next
store while this process takes in the previous one.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import ForkingPickler
from typing import Any, TypeVar

from forensics.evidence import Evidence

T = TypeVar("T")
R = TypeVar("R")

#: below this many entries the start-up of the helpers costs more than it saves
MIN_PARALLEL = 2000
#: the most entries in one task; fewer when that leaves some tasks to balance the load
CHUNK = 1000
#: tasks per process that a job is cut into at least (the last ones even out)
TASKS_PER_WORKER = 4
#: jobs whose task counters live side by side in shared memory (a ring: far more than are
#: ever in flight at once)
SLOTS = 64

Task = Callable[[Evidence, Sequence[Any]], list[Any]]


class WorkerError(RuntimeError):
    """A helper process failed: the trace of the exception it raised, or that it ended."""


def workers() -> int:
    """How many processes read (this one and its helpers): ``DOCKER_FORENSICS_WORKERS`` if
    set, else the usable cores."""
    configured = os.environ.get("DOCKER_FORENSICS_WORKERS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class _Counters:
    """The next task of each job, in shared memory: whoever takes a task (a helper or this
    process) takes the lowest that nobody has taken. A slot names its job, so that a helper
    late on a finished job never takes a task of the job that reuses the slot."""

    def __init__(self, ctx: Any) -> None:
        self.lock = ctx.Lock()
        self.cells = ctx.RawArray("q", 2 * SLOTS)  # per slot: job id, next task

    def open(self, job: int) -> None:
        slot = 2 * (job % SLOTS)
        with self.lock:
            self.cells[slot], self.cells[slot + 1] = job, 0

    def close_all(self) -> None:
        """No task of any job is left to take (helpers finish the one they are at)."""
        with self.lock:
            for slot in range(1, 2 * SLOTS, 2):
                self.cells[slot] = 1 << 62

    def take(self, job: int, tasks: int) -> int | None:
        slot = 2 * (job % SLOTS)
        with self.lock:
            index = self.cells[slot + 1]
            if self.cells[slot] != job or index >= tasks:
                return None
            self.cells[slot + 1] = index + 1
        return int(index)


class _Team:
    """Forked helpers and this process, sharing the tasks of each job."""

    def __init__(self, ev: Evidence, helpers: int) -> None:
        # the helpers are forked before this team starts its threads (a fork copies only the
        # thread that calls it)
        ctx = multiprocessing.get_context("fork")
        self.ev = ev
        self.counters = _Counters(ctx)
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for _ in range(helpers):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_helper, args=(theirs, ev, self.counters), daemon=True)
            proc.start()
            theirs.close()
            self.conns.append(mine)
            self.procs.append(proc)
        self.next_job = 1
        #: results that came from helpers: (job, task) -> (values, what the task recorded)
        self.arrived: dict[tuple[int, int], tuple[list[Any], Any]] = {}
        #: results computed here ahead of their turn: job -> task -> values
        self.done_here: dict[int, dict[int, list[Any]]] = {}
        #: the jobs handed over whose results are not all taken in yet: job -> (fn, tasks)
        self.open_jobs: dict[int, tuple[Task, list[Sequence[Any]]]] = {}
        self.failure: str | None = None
        self.closing = False
        self.changed = threading.Condition()
        self.receiver = threading.Thread(target=self._receive, daemon=True)
        self.receiver.start()
        #: jobs on their way to the helpers: a helper busy with a job reads the next one only
        #: when it is done, and this process must not wait for that to read along
        self.outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.sender = threading.Thread(target=self._send, daemon=True)
        self.sender.start()

    def run(self, fn: Task, tasks: list[Sequence[Any]]) -> Iterator[Any]:
        """Hand the job to the helpers now; its results, in order, as they are read."""
        job = self.next_job
        self.next_job += 1
        self.counters.open(job)
        self.open_jobs[job] = (fn, tasks)
        self.outbox.put(ForkingPickler.dumps((job, fn, tasks)))
        return self._results(job, fn, tasks)

    def close(self) -> None:
        self.closing = True
        self.counters.close_all()
        self.outbox.put(None)
        self.sender.join()
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():  # pragma: no cover - a helper stuck in a system call
                proc.terminate()
                proc.join()
        self.receiver.join(timeout=5)
        for conn in self.conns:
            conn.close()

    def _results(self, job: int, fn: Task, tasks: list[Sequence[Any]]) -> Iterator[Any]:
        try:
            for index in range(len(tasks)):
                yield from self._result(job, index, fn, tasks)
        finally:
            self.open_jobs.pop(job, None)
            self.done_here.pop(job, None)

    def _result(self, job: int, index: int, fn: Task, tasks: list[Sequence[Any]]) -> list[Any]:
        """The values of task ``index``: from a helper, or computed here; while a helper is
        still at it, this process takes the next tasks rather than wait."""
        done = self.done_here.setdefault(job, {})
        while True:
            if index in done:
                return done.pop(index)
            with self.changed:
                arrived = self.arrived.pop((job, index), None)
            if arrived is not None:
                values, record = arrived
                self.ev.merge_record(record)
                return values
            mine = self.counters.take(job, len(tasks))
            if mine is not None:
                done[mine] = fn(self.ev, tasks[mine])  # reads recorded in self.ev directly
                continue
            if not self._work_ahead(job):
                self._wait_for(job, index)

    def _work_ahead(self, waiting: int) -> bool:
        """While a helper finishes the task of job ``waiting`` that this process needs next,
        do a task of a later job that nobody has taken (the earliest first); False when
        there is none."""
        for job in sorted(self.open_jobs):
            if job <= waiting:
                continue
            fn, tasks = self.open_jobs[job]
            mine = self.counters.take(job, len(tasks))
            if mine is not None:
                self.done_here.setdefault(job, {})[mine] = fn(self.ev, tasks[mine])
                return True
        return False

    def _wait_for(self, job: int, index: int) -> None:
        with self.changed:
            while (job, index) not in self.arrived:
                if self.failure is not None:
                    raise WorkerError(self.failure)
                self.changed.wait()

    def _send(self) -> None:
        """Pass each job on to every helper, then the end (None) when the team closes."""
        end = ForkingPickler.dumps(None)
        while True:
            payload = self.outbox.get()
            for conn in self.conns:
                try:
                    conn.send_bytes(end if payload is None else payload)
                except OSError:  # the helper is gone: the receiver reports it
                    pass
            if payload is None:
                return

    def _receive(self) -> None:
        """Take in what the helpers send, until every one of them has hung up."""
        live = list(self.conns)
        while live:
            for ready in wait(live):
                assert isinstance(ready, Connection)
                try:
                    message = ready.recv()
                except (EOFError, OSError):
                    live.remove(ready)
                    message = None
                with self.changed:
                    if message is None:
                        if not self.closing:
                            self.failure = self.failure or "a reading process ended"
                    elif message[0] == "error":
                        self.failure = message[1]
                    else:
                        _, job, index, values, reads = message
                        self.arrived[(job, index)] = (values, reads)
                    self.changed.notify_all()


def _helper(conn: Connection, ev: Evidence, counters: _Counters) -> None:
    """A helper process: for each job received, take tasks until none is left."""
    try:
        while True:
            message = conn.recv()
            if message is None:
                return
            job, fn, tasks = message
            while (index := counters.take(job, len(tasks))) is not None:
                ev.start_task()
                conn.send(("done", job, index, fn(ev, tasks[index]), ev.task_record()))
    except (EOFError, KeyboardInterrupt):
        return
    except BaseException:
        try:
            conn.send(("error", traceback.format_exc()))
        except OSError:  # this process is gone: nobody is left to tell
            pass
    finally:
        conn.close()


_shared: _Team | None = None
_shared_ev: Evidence | None = None


@contextmanager
def shared_workers(ev: Evidence) -> Iterator[None]:
    """Every reader of ``ev`` inside the block uses one set of helpers (forked at first need)."""
    global _shared, _shared_ev
    if _shared_ev is not None:  # nested: the outer block's helpers serve
        yield
        return
    _shared_ev = ev
    try:
        yield
    finally:
        team, _shared, _shared_ev = _shared, None, None
        if team is not None:
            team.close()


def map_entries(
    ev: Evidence,
    fn: Callable[[Evidence, T], R],
    items: Sequence[T],
    *,
    min_parallel: int | None = None,
    chunk: int | None = None,
) -> Iterator[R]:
    """``fn(ev, item)`` for every item, in order; shared with forked helpers when that pays
    off: from ``min_parallel`` items on, ``chunk`` items per task (cheap work wants big
    chunks). ``fn`` must be picklable (a module-level function, or a
    :func:`functools.partial` of one)."""
    return submit(ev, partial(_each, fn), items, min_parallel=min_parallel, chunk=chunk)


def submit(
    ev: Evidence,
    fn: Task,
    items: Sequence[T],
    *,
    min_parallel: int | None = None,
    chunk: int | None = None,
) -> Iterator[Any]:
    """``fn(ev, slice)`` over consecutive slices of ``items``, the results in order. With
    helpers, they start now and this process joins in as the returned iterator is read;
    alone, the work is done as it is read."""
    count = workers()
    threshold = MIN_PARALLEL if min_parallel is None else min_parallel
    if count < 2 or len(items) < threshold or "fork" not in multiprocessing.get_all_start_methods():
        return _in_process(ev, fn, items)
    size = chunk or max(1, min(CHUNK, len(items) // (count * TASKS_PER_WORKER)))
    tasks = [items[i : i + size] for i in range(0, len(items), size)]
    if _shared_ev is ev:
        return _shared_team(ev, count).run(fn, tasks)
    return _own_team(ev, count, fn, tasks)


def _shared_team(ev: Evidence, count: int) -> _Team:
    global _shared
    if _shared is None:
        _shared = _Team(ev, count - 1)
    return _shared


def _own_team(ev: Evidence, count: int, fn: Task, tasks: list[Sequence[Any]]) -> Iterator[Any]:
    """A job with helpers of its own, ended with it."""
    team = _Team(ev, count - 1)
    try:
        yield from team.run(fn, tasks)
    finally:
        team.close()


def _in_process(ev: Evidence, fn: Task, items: Sequence[Any]) -> Iterator[Any]:
    yield from fn(ev, items)


def _each(fn: Callable[[Evidence, T], R], ev: Evidence, items: Sequence[T]) -> list[R]:
    return [fn(ev, item) for item in items]
