"""Reading in forked workers gives exactly what reading in one process gives."""

from __future__ import annotations

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
