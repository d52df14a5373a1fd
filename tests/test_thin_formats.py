"""The binary declarations of dm-thin metadata, on blocks written by the real thin_restore."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import thin_fixtures as tf

from forensics.formats import thin as fmt


@pytest.fixture(scope="module")
def meta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tf.restore(tf.three_device_pool().xml(), tmp_path_factory.mktemp("fmt") / "meta.bin")


def test_declared_sizes() -> None:
    assert fmt.Superblock.sizeof() == 364
    assert fmt.NodeHeader.sizeof() == 32
    assert fmt.DeviceDetails.sizeof() == 24
    assert fmt.IndexEntry.sizeof() == 16
    assert [fmt.max_entries(v) for v in (8, 24, 16, 4)] == [252, 126, 168, 336]


def test_numpy_dtypes_follow_the_declarations() -> None:
    header = fmt.NODE_BLOCK_DTYPE
    assert header.itemsize == 4096
    assert {name: header.fields[name][1] for name in header.names} == {
        "csum": 0,
        "flags": 4,
        "blocknr": 8,
        "nr_entries": 16,
        "max_entries": 20,
        "value_size": 24,
        "padding": 28,
    }
    assert fmt.DETAILS_DTYPE.itemsize == 24 and fmt.INDEX_ENTRY_DTYPE.itemsize == 16
    sb = fmt.numpy_dtype(fmt.Superblock)
    assert sb.fields["data_mapping_root"][1] == 0x140
    assert sb.fields["metadata_space_map_root"][1] == 0xC0


def test_superblock(meta: Path) -> None:
    sb = fmt.parse_superblock(bytes(tf.read_block(meta, 0)))
    assert sb.magic == fmt.SUPERBLOCK_MAGIC and sb.version == 2 and sb.blocknr == 0
    assert (sb.time, sb.trans_id, sb.data_block_size, sb.metadata_block_size) == (2, 3, 128, 8)
    assert sb.data_space_map_root.nr_blocks == 1638400
    assert sb.metadata_space_map_root.nr_blocks == 4096


def test_checksum_rule_and_block_types(meta: Path) -> None:
    sb = fmt.parse_superblock(bytes(tf.read_block(meta, 0)))
    kinds = {
        0: "thin superblock",
        int(sb.metadata_space_map_root.bitmap_root): "metadata space-map index",
        int(sb.device_details_root): "btree node",
        int(sb.data_mapping_root): "btree node",
    }
    for blocknr, kind in kinds.items():
        block = bytes(tf.read_block(meta, blocknr))
        assert fmt.block_type(block) == kind
    index = bytes(tf.read_block(meta, int(sb.metadata_space_map_root.bitmap_root)))
    bitmap = struct.unpack_from("<Q", index, 16)[0]
    assert fmt.block_type(bytes(tf.read_block(meta, bitmap))) == "space-map bitmap"
    block = tf.read_block(meta, 0)
    block[100] ^= 1
    assert not fmt.checksum_ok(bytes(block), fmt.SUPERBLOCK_CSUM_XOR)
    fmt.seal_block(block, fmt.SUPERBLOCK_CSUM_XOR)
    assert fmt.checksum_ok(bytes(block), fmt.SUPERBLOCK_CSUM_XOR)


def test_bitmap_bit_order() -> None:
    """The first bit of each pair is the count's high bit: 0xAA is four entries of count 1."""
    area = np.zeros((1, 4080), dtype=np.uint8)
    area[0, 0] = 0xAA
    area[0, 1] = 0x55
    area[0, 2] = 0b11_10_01_00
    counts = fmt.decode_bitmaps(area)[0]
    assert counts[:12].tolist() == [1, 1, 1, 1, 2, 2, 2, 2, 0, 2, 1, 3]
    assert counts.size == fmt.ENTRIES_PER_BITMAP
