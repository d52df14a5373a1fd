"""A pool's metadata read whole: superblock, device details, the two-level mapping tree, and
(for the checker) both space maps. Every problem met on the way is a finding; what is readable
is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import construct as cs
import numpy as np

from forensics.formats import thin as fmt
from forensics.thin.blocks import MetadataFile
from forensics.thin.btree import Forest, ForestWalker
from forensics.thin.findings import Findings
from forensics.thin.spacemap import SpaceMap, read_data_space_map, read_metadata_space_map


@dataclass(frozen=True)
class DeviceDetails:
    dev_id: int
    mapped_blocks: int
    transaction_id: int
    creation_time: int
    snapshotted_time: int


@dataclass
class Pool:
    """What could be read of one pool's metadata."""

    meta: MetadataFile
    findings: Findings = field(default_factory=Findings)
    superblock: cs.Container | None = None
    #: the superblock is sound enough to follow its roots
    usable: bool = False
    #: why the file is no thin-pool metadata at all (too small, or block 0 has not the
    #: superblock's magic number), as e2fsck refuses a bad magic; None for metadata
    not_metadata: str | None = None
    limit: int = 0
    details: dict[int, DeviceDetails] = field(default_factory=dict)
    details_forest: Forest | None = None
    top_forest: Forest | None = None
    #: device id → root of its bottom-level mapping tree
    roots: dict[int, int] = field(default_factory=dict)
    mappings: Forest | None = None
    metadata_sm: SpaceMap | None = None
    data_sm: SpaceMap | None = None
    snapshot_references: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    #: leaves that only the metadata snapshot still reaches (they hold data references too)
    snapshot_mappings: Forest | None = None

    @property
    def nr_data_blocks(self) -> int:
        assert self.superblock is not None
        return int(self.superblock.data_space_map_root.nr_blocks)

    def tree_damage(self) -> bool:
        forests = (self.details_forest, self.top_forest, self.mappings)
        return any(f is not None and f.damage for f in forests)

    def device_mappings(self, dev_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Virtual blocks and block_time values of a device, in order (empty if unreadable)."""
        if self.mappings is None or dev_id not in self.roots:
            empty = np.zeros(0, dtype=np.uint64)
            return empty, empty
        return self.mappings.entries(self.mappings.owners.index(dev_id))


def read_pool(meta: MetadataFile, *, space_maps: bool = True) -> Pool:
    """Read ``meta``; with ``space_maps``, also both space maps (the checker needs them)."""
    pool = Pool(meta)
    if not _read_superblock(pool):
        return pool
    sb = pool.superblock
    assert sb is not None
    _read_details(pool, int(sb.device_details_root))
    _read_mappings(pool, int(sb.data_mapping_root))
    if space_maps:
        pool.metadata_sm = read_metadata_space_map(
            meta, sb.metadata_space_map_root, pool.findings, pool.limit
        )
        pool.data_sm = read_data_space_map(
            meta, sb.data_space_map_root, pool.findings, pool.limit, pool.limit
        )
        _read_metadata_snapshot(pool)
    return pool


# -- superblock ----------------------------------------------------------------------------------


def _read_superblock(pool: Pool) -> bool:
    meta, findings = pool.meta, pool.findings
    if meta.nr_blocks == 0:
        head = meta.head(64).lstrip()
        xml = (
            " It looks like XML: thin_dump's output, not binary metadata."
            if head.startswith(b"<")
            else ""
        )
        findings.add(
            "file.too-small",
            None,
            f"the metadata file has {meta.size} bytes, less than one 4096-byte block.{xml}",
        )
        looks = "; it looks like XML, thin_dump's output" if xml else ""
        pool.not_metadata = f"{meta.size} bytes, less than one 4096-byte block{looks}"
        return False
    block = meta.block(0)
    if not any(block):
        findings.add(
            "superblock.zeroed",
            0,
            "block 0 is all zeros: a kernel activating this pool read-write would format fresh "
            "metadata over it and lose every device; repair it offline first",
        )
        return False
    sb = fmt.parse_superblock(block)
    pool.superblock = sb
    checksum_ok = fmt.checksum_ok(block, fmt.SUPERBLOCK_CSUM_XOR)
    also = ""
    if not checksum_ok:
        kind = fmt.block_type(block)
        also = f" (block 0 checksums as a {kind}: not a thin pool)" if kind else ""
        if block.lstrip().startswith(b"<"):
            also = " (it looks like XML: thin_dump's output, not binary metadata)"
        findings.add("superblock.checksum", 0, f"bad checksum in superblock{also}")
    if sb.magic != fmt.SUPERBLOCK_MAGIC:
        findings.add(
            "superblock.magic", 0, f"superblock magic is {sb.magic}, not {fmt.SUPERBLOCK_MAGIC}"
        )
        pool.not_metadata = f"block 0 has not the superblock's magic number{also}"
        return False
    if sb.blocknr != 0:
        findings.add("superblock.blocknr", 0, f"the superblock claims to be block {sb.blocknr}")
    _superblock_fields(pool, sb)
    sm_blocks = int(sb.metadata_space_map_root.nr_blocks)
    pool.limit = min(meta.nr_blocks, sm_blocks) if sm_blocks else meta.nr_blocks
    if sm_blocks > meta.nr_blocks:
        findings.add(
            "file.truncated",
            None,
            f"the metadata space map covers {sm_blocks} blocks but the file holds "
            f"{meta.nr_blocks} ({meta.size} bytes): it is truncated",
        )
    pool.usable = True
    return True


def _superblock_fields(pool: Pool, sb: cs.Container) -> None:
    findings = pool.findings
    if sb.flags & fmt.NEEDS_CHECK:
        findings.add(
            "superblock.needs-check",
            0,
            "the NEEDS_CHECK flag is set: the kernel met a metadata error and keeps the pool "
            "read-only until the flag is cleared (thin_check --clear-needs-check-flag, on a copy)",
        )
    if sb.version not in (1, 2):
        findings.add("superblock.version", 0, f"metadata version {sb.version} is neither 1 nor 2")
    if sb.metadata_block_size != 8:
        findings.add(
            "superblock.block-size",
            0,
            f"metadata block size is {sb.metadata_block_size} sectors, not 8",
        )
    dbs = int(sb.data_block_size)
    if not (128 <= dbs <= 2097152 and dbs % 128 == 0):
        findings.add(
            "superblock.block-size",
            0,
            f"data block size is {dbs} sectors; the kernel takes multiples of 128 "
            "from 128 to 2097152",
        )
    if sb.incompat_flags:
        findings.add(
            "superblock.incompat-flags", 0, f"incompatible feature flags {sb.incompat_flags:#x}"
        )
    if sb.compat_ro_flags:
        findings.add(
            "superblock.compat-ro-flags", 0, f"read-only feature flags {sb.compat_ro_flags:#x}"
        )


# -- trees ----------------------------------------------------------------------------------------


def _read_details(pool: Pool, root: int) -> None:
    walker = ForestWalker(
        pool.meta,
        pool.findings,
        value_size=fmt.DeviceDetails.sizeof(),
        label=lambda _: "the device details tree",
        key_name="device ids",
        limit=pool.limit,
    )
    forest = walker.walk([0], [root])
    pool.details_forest = forest
    values = forest.values
    for i, dev_id in enumerate(forest.keys.tolist()):
        v = values[i]
        pool.details[dev_id] = DeviceDetails(
            dev_id,
            int(v["mapped_blocks"]),
            int(v["transaction_id"]),
            int(v["creation_time"]),
            int(v["snapshotted_time"]),
        )


def _read_mappings(pool: Pool, root: int) -> None:
    top = ForestWalker(
        pool.meta,
        pool.findings,
        value_size=fmt.ChildPointer.sizeof(),
        label=lambda _: "the top level of the mapping tree",
        key_name="device ids",
        limit=pool.limit,
    ).walk([0], [root])
    pool.top_forest = top
    devices = top.keys.tolist()
    pool.roots = dict(zip(devices, top.values.astype(np.int64).tolist(), strict=True))
    pool.mappings = ForestWalker(
        pool.meta,
        pool.findings,
        value_size=fmt.BLOCK_TIME_SIZE,
        label=lambda i: f"the mapping tree of device {devices[i]}",
        key_name="virtual blocks",
        share=True,
        limit=pool.limit,
    ).walk(devices, list(pool.roots.values()))


def _read_metadata_snapshot(pool: Pool) -> None:
    """A metadata snapshot (held root) is a superblock copy whose roots keep old trees alive:
    its block and the roots it names are metadata references too."""
    sb = pool.superblock
    assert sb is not None
    held = int(sb.held_root)
    if held == 0:
        return
    if not 0 < held < pool.limit:
        pool.findings.add(
            "superblock.metadata-snap", 0, f"the metadata snapshot is at block {held}, past the end"
        )
        return
    block = pool.meta.block(held)
    copy = fmt.parse_superblock(block)
    if not fmt.checksum_ok(block, fmt.SUPERBLOCK_CSUM_XOR) or copy.blocknr != held:
        pool.findings.add(
            "superblock.metadata-snap",
            held,
            f"the metadata snapshot at block {held} is not a valid superblock copy "
            "(bad checksum or block number)",
        )
        return
    if pool.details_forest is None or pool.top_forest is None or pool.mappings is None:
        return
    details = ForestWalker(
        pool.meta,
        pool.findings,
        value_size=fmt.DeviceDetails.sizeof(),
        label=lambda _: "the metadata snapshot's device details tree",
        key_name="device ids",
        limit=pool.limit,
        stop_at=pool.details_forest.visited,
    ).walk([0], [int(copy.device_details_root)])
    top = ForestWalker(
        pool.meta,
        pool.findings,
        value_size=fmt.ChildPointer.sizeof(),
        label=lambda _: "the top level of the metadata snapshot's mapping tree",
        key_name="device ids",
        limit=pool.limit,
        stop_at=pool.top_forest.visited,
    ).walk([0], [int(copy.data_mapping_root)])
    devices = top.keys.tolist()
    bottom = ForestWalker(
        pool.meta,
        pool.findings,
        value_size=fmt.BLOCK_TIME_SIZE,
        label=lambda i: f"the metadata snapshot's mapping tree of device {devices[i]}",
        key_name="virtual blocks",
        share=True,
        limit=pool.limit,
        stop_at=pool.mappings.visited,
    ).walk(devices, top.values.astype(np.int64).tolist())
    pool.snapshot_references = np.concatenate(
        [[held], details.references, top.references, bottom.references]
    ).astype(np.int64)
    pool.snapshot_mappings = bottom
