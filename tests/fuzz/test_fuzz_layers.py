"""Fuzzing of the layer decoders: tar-split streams (gzip, JSON lines, base64) and tar headers.
Allowed outcomes: entries, or the decoder's own damage report. The targets are shared with the
atheris runner."""

from __future__ import annotations

import targets
from draw import HypothesisDraw
from hypothesis import given
from hypothesis import strategies as st


@given(st.data())
def test_tar_split_any_bytes(data: st.DataObject) -> None:
    targets.tar_split_bytes(HypothesisDraw(data))


@given(st.data())
def test_tar_split_any_entries(data: st.DataObject) -> None:
    targets.tar_split_entries(HypothesisDraw(data))


@given(st.data())
def test_tar_split_mutated_real_stream(data: st.DataObject) -> None:
    targets.tar_split_mutations(HypothesisDraw(data))


@given(st.data())
def test_tar_header_any_block(data: st.DataObject) -> None:
    targets.tar_header(HypothesisDraw(data))


@given(st.data())
def test_tar_member_any_buffer(data: st.DataObject) -> None:
    targets.tar_member(HypothesisDraw(data))


@given(st.data())
def test_pax_records_any_bytes(data: st.DataObject) -> None:
    targets.pax_records(HypothesisDraw(data))
