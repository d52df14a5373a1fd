"""Fuzzing of containerd's two bolt files as this tool reads them: the containerd-store sample's
meta.db and overlayfs metadata.db with random bytes and fields written over them (maybe cut
short), and meta.db's records with values of any bytes. The salvaging walk and the record
decoders must never raise: damage is a problem. The targets are shared with the atheris
runner."""

from __future__ import annotations

import targets
from draw import HypothesisDraw
from hypothesis import given
from hypothesis import strategies as st


@given(st.data())
def test_containerd_bolt_files_damaged(data: st.DataObject) -> None:
    targets.containerd_mutations(HypothesisDraw(data))


@given(st.data())
def test_containerd_record_values(data: st.DataObject) -> None:
    targets.containerd_values(HypothesisDraw(data))
