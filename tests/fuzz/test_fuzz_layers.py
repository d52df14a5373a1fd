"""Fuzzing of the layer decoders: tar-split streams (gzip, JSON lines, base64) and tar headers.
Allowed outcomes: entries, or the decoder's own damage report."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from forensics.formats.tarsplit import TarSplitDamage, iter_entries
from forensics.formats.ustar import HeaderError, checksum_ok, decode_header, parse_pax, read_member

LAYOUT_EXAMPLES = Path(__file__).resolve().parents[3] / "shared/reference/layout_examples"
EXAMPLE = (
    LAYOUT_EXAMPLES
    / "modern_28.x_overlay2/image/overlay2/layerdb/sha256"
    / "85a9aa0b50367c436af24d88c410f963fb63e0665f55b40f2e981d5f9f339cf1/tar-split.json.gz"
)
LINES = gzip.decompress(EXAMPLE.read_bytes()).splitlines()
ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "type": st.integers(-2, 4),
        "name": st.text(max_size=30) | st.none(),
        "name_raw": st.text(max_size=10),
        "size": st.integers(-5, 1 << 40),
        "payload": st.text(max_size=40) | st.none(),
        "position": st.integers(-3, 1 << 20),
    },
)


def _drain(data: bytes) -> None:
    try:
        for _ in iter_entries(io.BytesIO(data)):
            pass
    except TarSplitDamage:
        pass


@given(st.binary(max_size=600))
def test_tar_split_any_bytes(data: bytes) -> None:
    _drain(data)
    _drain(gzip.compress(data))


@given(st.lists(ENTRY, max_size=8))
def test_tar_split_any_entries(entries: list[dict[str, object]]) -> None:
    _drain(gzip.compress(b"\n".join(json.dumps(e).encode() for e in entries)))


@given(st.data())
def test_tar_split_mutated_real_stream(data: st.DataObject) -> None:
    lines = list(LINES)
    for _ in range(data.draw(st.integers(1, 4))):
        n = data.draw(st.integers(0, len(lines) - 1))
        line = bytearray(lines[n])
        if line:
            line[data.draw(st.integers(0, len(line) - 1))] = data.draw(st.integers(0, 255))
        lines[n] = bytes(line)
    _drain(gzip.compress(b"\n".join(lines)))


@given(st.binary(min_size=512, max_size=512))
def test_tar_header_any_block(block: bytes) -> None:
    checksum_ok(block)
    try:
        decode_header(block)
    except HeaderError:
        pass


@given(st.binary(max_size=3000), st.integers(0, 600))
def test_tar_member_any_buffer(buf: bytes, offset: int) -> None:
    try:
        read_member(buf, offset)
    except HeaderError:
        pass


@given(st.binary(max_size=300))
def test_pax_records_any_bytes(data: bytes) -> None:
    try:
        parse_pax(data)
    except HeaderError:
        pass
