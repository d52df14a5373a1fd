"""Fuzzing of every metadata decoder: any bytes, any JSON shape. The only outcomes allowed are a
value or the decoder's own damage report; any other exception is a bug."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from forensics.evidence import Evidence
from forensics.formats.jsonfile import JsonDamage, decode_json
from forensics.model import Container, Device, Host, Image, Problem
from forensics.stores.containers import _fill_from_config
from forensics.stores.devicemapper import _fill_device
from forensics.stores.imagestore import _fill_image
from forensics.stores.legacy import _linkgraph_edges, read_linkgraph
from forensics.stores.reading import read_json_object, read_value
from forensics.stores.tags import read_tag_store

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=25,
)
KEYS = st.sampled_from(
    ["State", "Config", "Image", "Name", "ID", "MountPoints", "Path", "Args", "Driver", "rootfs",
     "diff_ids", "history", "Running", "StartedAt", "device_id", "size", "transaction_id",
     "initialized", "deleted", "Repositories", "created"]
)  # fmt: skip
SHAPED = st.dictionaries(KEYS, JSON, max_size=8)


class Bytes:
    """A Source over bytes in memory: what the readers see of one file."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read_bytes(self, name: str, limit: int = 1 << 26) -> bytes:
        return self.data

    def path_of(self, name: str) -> str:
        return name

    def exists(self, name: str) -> bool:
        return True


@given(st.binary(max_size=400))
def test_decode_json_any_bytes(data: bytes) -> None:
    try:
        decode_json(data)
    except JsonDamage as damage:
        assert damage.kind in {"empty", "nul-filled", "truncated", "invalid", "not-utf8"}


@given(st.binary(max_size=200))
def test_value_and_object_readers(data: bytes) -> None:
    problems: dict[str, Problem] = {}
    read_value(Bytes(data), "f", problems, "v")
    read_json_object(Bytes(data), "f", problems, "o")
    assert set(problems) <= {"v", "o"}


@given(SHAPED | JSON)
def test_container_config_shapes(doc: Any) -> None:
    if isinstance(doc, dict):
        _fill_from_config(Container(id="c", path="c"), doc)


@given(SHAPED)
def test_image_config_shapes(doc: dict[str, Any]) -> None:
    _fill_image(Image(id="i", path="i"), doc)


@given(SHAPED)
def test_device_record_shapes(doc: dict[str, Any]) -> None:
    _fill_device(Device(hash="h", path="h"), doc)


@given(st.binary(max_size=300))
def test_tag_store_any_bytes(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "repositories.json").write_bytes(data)
        host = Host(root=tmp)
        read_tag_store(Evidence(tmp), host, "repositories.json", legacy=False)
        assert all(isinstance(v, str) for v in host.references.values())


LINKGRAPH = (
    Path(__file__).resolve().parents[3]
    / "shared/reference/layout_examples/legacy_1.9.1_aufs/linkgraph.db"
)


@given(st.data())
def test_linkgraph_mutations(data: st.DataObject) -> None:
    """Real linkgraph.db bytes with random bytes overwritten: a value or sqlite3's own error."""
    original = bytearray(LINKGRAPH.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(original) - 1))
        original[at] = data.draw(st.integers(0, 255))
    try:
        _linkgraph_edges(bytes(original))
    except (sqlite3.Error, MemoryError):
        pass


@given(st.binary(max_size=2048))
def test_linkgraph_reader_never_raises(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "linkgraph.db").write_bytes(data)
        host = Host(root=tmp)
        read_linkgraph(Evidence(tmp), host)
