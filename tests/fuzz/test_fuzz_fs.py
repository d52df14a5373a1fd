"""Fuzzing of the filesystem readers: real ext4 and xfs images damaged where their structures
are, then opened, walked and read whole. Allowed outcomes: the readers' own refusals and
problems. The targets are shared with the atheris runner."""

from __future__ import annotations

import shutil

import pytest
import targets
from draw import HypothesisDraw
from hypothesis import given
from hypothesis import strategies as st

needs = pytest.mark.skipif(
    not shutil.which("mkfs.xfs", path="/usr/sbin:/sbin:/usr/bin"), reason="xfsprogs missing"
)


@given(st.data())
def test_ext4_image_damaged(data: st.DataObject) -> None:
    targets.TARGETS["fs-ext4"].run(HypothesisDraw(data))


@needs
@given(st.data())
def test_xfs_image_damaged(data: st.DataObject) -> None:
    targets.TARGETS["fs-xfs"].run(HypothesisDraw(data))
