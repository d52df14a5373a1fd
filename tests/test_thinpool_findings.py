"""verify on a damaged thin pool says what ``thin check`` says (which node, which device, which
virtual blocks are unreadable), on copies of the Docker 1.8 devicemapper sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forensics.thin.blocks import MetadataFile
from forensics.thin.pool import read_pool

POOL = "devicemapper/devicemapper/metadata"


def _pool_finding(cli, root: Path, check: str) -> str:
    result = cli("verify", root, "--format", "json")
    assert result.code == 4, result.stderr
    (message,) = [f["message"] for f in result.json()["findings"] if f["check"] == check]
    return message


def _root_of(path: Path, dev_id: int) -> int:
    with MetadataFile(path) as meta:
        return read_pool(meta, space_maps=False).roots[dev_id]


def test_damaged_mapping_node_is_named(cli, dm_root: Path, dm_truth: dict[str, Any]) -> None:
    dev_id = dm_truth["containers"][0]["device_ids"]["rw"]
    block = _root_of(dm_root / POOL, dev_id)
    with open(dm_root / POOL, "r+b") as f:  # a byte of the node: its checksum fails
        f.seek(block * 4096 + 2000)
        byte = f.read(1)
        f.seek(block * 4096 + 2000)
        f.write(bytes([byte[0] ^ 0x5A]))
    message = _pool_finding(cli, dm_root, "thinpool.damaged")
    # the node flipped is the device's root: the whole device is unreadable
    assert f"block {block}: the mapping tree of device {dev_id}: " in message
    assert f"bad checksum in btree node {block}" in message
    assert "virtual blocks 0 and above are unreadable" in message
    assert f"docker-forensics thin check {POOL}" in message


def test_zeroed_superblock_is_named(cli, dm_root: Path) -> None:
    with open(dm_root / POOL, "r+b") as f:
        f.write(b"\0" * 4096)
    message = _pool_finding(cli, dm_root, "thinpool.unreadable")
    assert "block 0: block 0 is all zeros" in message


def test_not_metadata_is_named(cli, dm_root: Path) -> None:
    with open(dm_root / POOL, "r+b") as f:
        f.write(bytes(range(256)) * 16)
    message = _pool_finding(cli, dm_root, "thinpool.unreadable")
    assert message.startswith("not thin-pool metadata (block 0 has not the superblock's magic")
