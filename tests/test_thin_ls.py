"""``thin ls`` against thin_ls 0.9.0: the same grid for the fields both have."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import thin_fixtures as tf
from click.testing import CliRunner

from forensics.cli.thin import thin
from forensics.thin.blocks import MetadataFile
from forensics.thin.ls import TABLE_MIN, _EntryTable
from forensics.thin.pool import read_pool

FIELDS = "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,TRANSACTION,CREATE_TIME,SNAP_TIME"


def _shared(path: Path) -> None:
    tf.share_subtree(path, 1, 2)
    tf.share_subtree(path, 3, 4, child=2)


@pytest.mark.parametrize(
    ("make", "derive"),
    [
        (tf.three_device_pool, None),
        (lambda: tf.docker_like_pool(5), None),
        (tf.many_devices_pool, None),
        (tf.sharing_pool, _shared),
    ],
    ids=["three devices", "docker-like", "300 devices", "shared subtrees"],
)
def test_ls_matches_thin_ls(make, derive, tmp_path: Path) -> None:
    path = tf.restore(make().xml(), tmp_path / "meta.bin")
    if derive:
        derive(path)
    theirs = tf.run_tool("thin_ls", "-o", FIELDS, path)
    assert theirs.returncode == 0
    result = CliRunner().invoke(thin, ["ls", str(path)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == theirs.stdout


def test_ls_json(tmp_path: Path) -> None:
    path = tf.restore(tf.three_device_pool().xml(), tmp_path / "meta.bin")
    result = CliRunner().invoke(thin, ["ls", "--format", "json", str(path)])
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["devices"][0] == {
        "dev_id": 1,
        "mapped_blocks": 102,
        "exclusive_blocks": 10,
        "shared_blocks": 92,
        "transaction": 0,
        "creation_time": 0,
        "snap_time": 1,
        "counted_mappings": 102,
    }
    assert doc["errors"] == []


def test_ls_on_damage_exits_4(tmp_path: Path) -> None:
    path = tf.restore(tf.three_device_pool().xml(), tmp_path / "meta.bin")
    top = int(tf.fmt.parse_superblock(bytes(tf.read_block(path, 0))).data_mapping_root)
    tf.edit_block(path, top, lambda b: b.__setitem__(500, b[500] ^ 1))
    result = CliRunner().invoke(thin, ["ls", "--format", "json", str(path)])
    assert result.exit_code == 4
    assert json.loads(result.stdout)["errors"][0]["check"] == "node.checksum"


def test_ls_table_follows_the_mappings_not_the_claim(tmp_path: Path) -> None:
    """A superblock claiming 2**40 data blocks: the table of data blocks stays a small multiple
    of the mappings, and a mapping past it is counted by sorting, with the same result."""
    path = tf.restore(tf.three_device_pool().xml(), tmp_path / "meta.bin")
    before = CliRunner().invoke(thin, ["ls", str(path)]).stdout_bytes
    sb = tf.fmt.parse_superblock(bytes(tf.read_block(path, 0)))
    tf.edit_block(path, 0, tf.put("Q", 0x40, 1 << 40), xor=tf.fmt.SUPERBLOCK_CSUM_XOR)
    # device 3's only write, virtual block 5000, maps a block no other device maps: move it far
    keys, values, width = tf._node_entries(tf.read_block(path, _root_of(path, sb, 3)))
    at = keys.index(5000)
    far = (1 << 30) << tf.fmt.TIME_BITS | (values[at] & tf.fmt.TIME_MASK)
    root = _root_of(path, sb, 3)
    tf.edit_block(path, root, tf.put("Q", 32 + 8 * width + 8 * at, far), xor=tf.fmt.BTREE_CSUM_XOR)
    with MetadataFile(path) as meta:
        pool = read_pool(meta, space_maps=False)
        assert pool.mappings is not None
        assert _EntryTable.of(pool.mappings, pool.nr_data_blocks).counts.size == TABLE_MIN
    result = CliRunner().invoke(thin, ["ls", str(path)])
    assert result.stdout_bytes == before


def _root_of(path: Path, sb, dev_id: int) -> int:
    keys, values, _ = tf._node_entries(tf.read_block(path, int(sb.data_mapping_root)))
    root = values[keys.index(dev_id)]
    assert tf.get(path, root, "I", 4) == tf.fmt.LEAF_NODE
    return root
