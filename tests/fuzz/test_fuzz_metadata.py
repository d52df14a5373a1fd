"""Fuzzing of every metadata decoder: any bytes, any JSON shape, every JSON file kind through its
store reader, and linkgraph.db. The only outcomes allowed are a value or the decoder's own damage
report; any other exception is a bug. The targets are shared with the atheris runner."""

from __future__ import annotations

import pytest
import targets
from draw import HypothesisDraw
from hypothesis import given
from hypothesis import strategies as st


@given(st.data())
def test_decode_json_any_bytes(data: st.DataObject) -> None:
    targets.json_any_bytes(HypothesisDraw(data))


@given(st.data())
def test_go_json_rules(data: st.DataObject) -> None:
    targets.go_json(HypothesisDraw(data))


@given(st.data())
def test_value_and_object_readers(data: st.DataObject) -> None:
    targets.value_readers(HypothesisDraw(data))


@given(st.data())
def test_container_config_shapes(data: st.DataObject) -> None:
    targets.json_shapes(HypothesisDraw(data), "container")


@given(st.data())
def test_go_field_types(data: st.DataObject) -> None:
    targets.go_types(HypothesisDraw(data))


@given(st.data())
def test_image_config_shapes(data: st.DataObject) -> None:
    targets.json_shapes(HypothesisDraw(data), "image")


@given(st.data())
def test_device_record_shapes(data: st.DataObject) -> None:
    targets.json_shapes(HypothesisDraw(data), "device")


@pytest.mark.parametrize("kind", targets.KIND_NAMES)
@given(data=st.data())
def test_json_file_kinds(kind: str, data: st.DataObject) -> None:
    """Each kind of JSON file: a shaped document, the real file damaged, or any bytes."""
    targets.json_files(HypothesisDraw(data), kind)


@given(st.data())
def test_tag_store_recovery(data: st.DataObject) -> None:
    targets.tag_recovery(HypothesisDraw(data))


@given(st.data())
def test_linkgraph_mutations(data: st.DataObject) -> None:
    targets.linkgraph_mutations(HypothesisDraw(data))


@given(st.data())
def test_linkgraph_wal(data: st.DataObject) -> None:
    targets.linkgraph_wal(HypothesisDraw(data))


@given(st.data())
def test_linkgraph_reader_never_raises(data: st.DataObject) -> None:
    targets.linkgraph_bytes(HypothesisDraw(data))
