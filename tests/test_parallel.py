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
