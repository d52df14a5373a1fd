"""Fuzzing of the evidence sources: the tar index, the partition tables, the LVM label and
the Docker-root locator, on real inputs damaged and on any bytes. The targets are shared with
the atheris runner."""

from __future__ import annotations

import shutil

import pytest
import targets
from draw import HypothesisDraw
from hypothesis import given, settings
from hypothesis import strategies as st

needs_sfdisk = pytest.mark.skipif(
    not shutil.which("sfdisk", path="/usr/sbin:/sbin:/usr/bin"), reason="fdisk missing"
)


@given(st.data())
def test_tar_index_of_a_damaged_archive(data: st.DataObject) -> None:
    targets.TARGETS["tar-index"].run(HypothesisDraw(data))


@given(st.data())
def test_tar_index_of_any_bytes(data: st.DataObject) -> None:
    targets.TARGETS["tar-bytes"].run(HypothesisDraw(data))


@given(st.data())
def test_locator_on_drawn_archives(data: st.DataObject) -> None:
    targets.TARGETS["locator"].run(HypothesisDraw(data))


@needs_sfdisk
@given(st.data())
def test_partition_tables_damaged(data: st.DataObject) -> None:
    targets.TARGETS["partitions"].run(HypothesisDraw(data))


@given(st.data())
def test_lvm_label_of_any_bytes(data: st.DataObject) -> None:
    targets.TARGETS["lvm-label"].run(HypothesisDraw(data))


@settings(max_examples=60)
@given(st.data())
def test_docker_root_read_from_a_damaged_archive(data: st.DataObject) -> None:
    targets.TARGETS["tree-root"].run(HypothesisDraw(data))
