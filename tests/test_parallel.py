"""Reading in forked workers gives exactly what reading in one process gives."""

from __future__ import annotations

import os
import signal
import time
from functools import partial
from pathlib import Path

import pytest

from forensics import parallel
from forensics.checks import run_checks
from forensics.evidence import Evidence
from forensics.inventory import build_inventory
from forensics.stores import read_host


def _read(root: Path) -> tuple[dict, list, dict]:  # type: ignore[type-arg]
    ev = Evidence(root, record_reads=True)
    host = read_host(ev)
    return build_inventory(host), run_checks(host), ev.reads


def test_workers_read_what_one_process_reads(
    sample_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sample_root / "overlay2" / ("c" * 64)).mkdir()  # one finding from a worker's slice
    monkeypatch.setenv("DOCKER_FORENSICS_WORKERS", "1")
    serial = _read(sample_root)
    monkeypatch.setenv("DOCKER_FORENSICS_WORKERS", "3")
    monkeypatch.setattr(parallel, "MIN_PARALLEL", 1)
    monkeypatch.setattr(parallel, "CHUNK", 7)
    forked = _read(sample_root)
    assert forked[0] == serial[0]
    assert forked[1] == serial[1] and serial[1]
    assert forked[2] == serial[2] and len(serial[2]) > 100


def _pid_after_a_nap(ev: Evidence, item: int) -> tuple[int, int]:
    time.sleep(0.002)
    return item, os.getpid()


def _fails_in_a_helper(parent: int, ev: Evidence, item: int) -> int:
    if os.getpid() != parent:
        raise ValueError(f"damaged item {item}")
    time.sleep(0.005)
    return item


@pytest.fixture
def three_processes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Evidence:
    monkeypatch.setenv("DOCKER_FORENSICS_WORKERS", "3")
    return Evidence(tmp_path)


def test_helpers_and_this_process_share_the_work_in_order(three_processes: Evidence) -> None:
    got = list(
        parallel.map_entries(three_processes, _pid_after_a_nap, range(400), min_parallel=1, chunk=5)
    )
    assert [item for item, _ in got] == list(range(400))
    pids = {pid for _, pid in got}
    assert os.getpid() in pids and len(pids) >= 2


def test_a_helper_that_fails_is_an_error_not_a_hang(three_processes: Evidence) -> None:
    signal.alarm(60)  # a hang fails the run instead of blocking it
    try:
        fn = partial(_fails_in_a_helper, os.getpid())
        with pytest.raises(parallel.WorkerError, match="damaged item"):
            list(parallel.map_entries(three_processes, fn, range(200), min_parallel=1, chunk=2))
    finally:
        signal.alarm(0)


def _slow_in_a_helper(parent: int, started: Path, ev: Evidence, item: int) -> int:
    if os.getpid() != parent:
        started.touch()
        time.sleep(1.0)
    return item


def _pid_after_a_long_nap(ev: Evidence, item: int) -> int:
    time.sleep(0.05)
    return os.getpid()


def test_this_process_works_ahead_while_a_helper_finishes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """While the helper is at the task that this process needs next, this process does the
    tasks of the jobs handed over after it, rather than wait."""
    monkeypatch.setenv("DOCKER_FORENSICS_WORKERS", "2")
    ev = Evidence(tmp_path)
    started = tmp_path / "started"
    signal.alarm(60)
    try:
        with parallel.shared_workers(ev):
            slow = partial(_slow_in_a_helper, os.getpid(), started)
            first = parallel.map_entries(ev, slow, [0, 1], min_parallel=1, chunk=1)
            then = parallel.map_entries(
                ev, _pid_after_a_long_nap, range(10), min_parallel=1, chunk=1
            )
            while not started.exists():  # the helper is at one of the first job's tasks
                time.sleep(0.01)
            assert list(first) == [0, 1]
            pids = list(then)
    finally:
        signal.alarm(0)
    # the helper's one second covers this process doing all ten (0.05 s each); waiting, it
    # would have shared them with the helper after that second
    assert pids.count(os.getpid()) >= 8
