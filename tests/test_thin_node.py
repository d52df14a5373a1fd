"""The one home of the btree node rules: a leaf of a real pool (thin_restore), its header edited
field by field, judged by each rule in thin_check's order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import thin_fixtures as tf

from forensics.formats import thin as fmt
from forensics.thin.blocks import MetadataFile
from forensics.thin.node import (
    INTERNAL,
    WRITTEN,
    WRITTEN_MAPPING_LEAF,
    NodeError,
    describe,
    leaf_rule,
    node_error,
    sound_nodes,
    unordered_rows,
)

MAPPING = leaf_rule(fmt.BLOCK_TIME_SIZE)


@pytest.fixture
def leaf(tmp_path: Path) -> tuple[Path, int]:
    """The metadata of the three-device pool and the block of device 3's only leaf."""
    path = tf.restore(tf.three_device_pool().xml(), tmp_path / "meta.bin")
    sb = fmt.parse_superblock(bytes(tf.read_block(path, 0)))
    keys, values, _ = tf._node_entries(tf.read_block(path, int(sb.data_mapping_root)))
    return path, values[keys.index(3)]


def _edit(path: Path, block: int, *fields: tuple[str, int], seal: bool = True) -> None:
    for name, value in fields:
        offset = fmt.field_offset(fmt.NodeHeader, name)
        size = fmt.field_size(fmt.NodeHeader, name)
        tf.edit_block(path, block, tf.put("I" if size == 4 else "Q", offset, value))
    if seal:
        tf.edit_block(path, block, lambda b: None, xor=fmt.BTREE_CSUM_XOR)


def _judge(path: Path, block: int, rule, *, root: bool) -> NodeError:
    with MetadataFile(path) as meta:
        return node_error(meta, block, rule, root=root)


def test_a_sound_leaf_passes_every_rule_that_fits_it(leaf) -> None:
    path, block = leaf
    for rule in (MAPPING, WRITTEN, WRITTEN_MAPPING_LEAF):
        assert _judge(path, block, rule, root=False) == NodeError.NONE
    assert _judge(path, block, INTERNAL, root=False) == NodeError.NONE  # flags 2 are allowed
    assert _judge(path, block, leaf_rule(fmt.DeviceDetails.sizeof()), root=True) == (
        NodeError.VALUE_SIZE
    )


@pytest.mark.parametrize(
    ("fields", "seal", "first"),
    [
        ((("flags", 0),), False, NodeError.CHECKSUM),
        ((("blocknr", 3), ("flags", 0)), True, NodeError.BLOCKNR),
        ((("flags", 0), ("value_size", 4)), True, NodeError.FLAGS),
        ((("value_size", 4), ("max_entries", 250)), True, NodeError.VALUE_SIZE),
        ((("max_entries", 250), ("nr_entries", 300)), True, NodeError.MAX_ENTRIES),
        ((("nr_entries", 300),), True, NodeError.NR_ENTRIES),
    ],
)
def test_the_first_check_failed_is_reported(leaf, fields, seal, first) -> None:
    path, block = leaf
    _edit(path, block, *fields, seal=seal)
    assert _judge(path, block, MAPPING, root=True) == first
    with MetadataFile(path) as meta:
        assert describe(meta, block, first, MAPPING).startswith(
            {
                NodeError.CHECKSUM: "bad checksum in btree node",
                NodeError.BLOCKNR: "bad block nr in btree node",
                NodeError.FLAGS: f"btree node {block} has flags 0",
                NodeError.VALUE_SIZE: f"btree node {block} has value size 4, expected 8",
                NodeError.MAX_ENTRIES: f"btree node {block} has max_entries 250",
                NodeError.NR_ENTRIES: f"btree node {block} has 300 entries",
            }[first]
        )
        assert not sound_nodes(meta, np.array([block]), WRITTEN)[0]


def test_too_few_entries_only_matter_below_a_root(leaf) -> None:
    """Device 3's leaf cut to one entry of 252: a root may hold so few, a non-root node may not
    (thin_check); the kernel's own reading ignores it, and so do the rules of the repair's
    scan."""
    path, block = leaf
    assert _judge(path, block, MAPPING, root=False) == NodeError.NONE  # 105 entries
    _edit(path, block, ("nr_entries", 1))
    assert _judge(path, block, MAPPING, root=True) == NodeError.NONE
    assert _judge(path, block, MAPPING, root=False) == NodeError.UNDERFULL
    assert NodeError.UNDERFULL.check == "node.nr-entries"
    assert _judge(path, block, WRITTEN_MAPPING_LEAF, root=False) == NodeError.NONE
    with MetadataFile(path) as meta:
        assert sound_nodes(meta, np.array([block]), WRITTEN)[0]


def test_the_kernels_width_is_stricter_than_thin_checks(leaf) -> None:
    """max_entries 249 fits the block in a multiple of 3 (thin_check accepts it), but the
    kernel writes 252 for 8-byte values: the repair's scan does not take such a node."""
    path, block = leaf
    _edit(path, block, ("max_entries", 249))
    assert _judge(path, block, MAPPING, root=True) == NodeError.NONE
    assert _judge(path, block, WRITTEN_MAPPING_LEAF, root=True) == NodeError.MAX_ENTRIES
    with MetadataFile(path) as meta:
        assert not sound_nodes(meta, np.array([block]), WRITTEN)[0]


def test_keys_out_of_order_name_their_node() -> None:
    """Only the keys in use count: a node's unused slots after its entries do not."""
    keys = np.array([[1, 2, 3, 0], [7, 5, 0, 0], [9, 0, 0, 0], [10, 10, 0, 0], [4, 6, 8, 1]])
    nr = np.array([3, 2, 1, 2, 3])
    assert unordered_rows(keys.astype(np.uint64), nr).tolist() == [False, True, False, True, False]
