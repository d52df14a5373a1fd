"""The readable trees of a damaged pool for its repaired copy: those its superblock names, or
when the superblock is lost, those that the node scan finds (:mod:`.scan`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forensics.formats import thin as fmt
from forensics.thin.blocks import MetadataFile
from forensics.thin.btree import Damage, Forest
from forensics.thin.pool import DeviceDetails, Pool
from forensics.thin.salvage.scan import (
    TOP_VALUE_SIZE,
    NodeScan,
    found_counts,
    pick_root,
    walk_devices,
    walk_tree,
)
from forensics.thin.salvage.superblock import Header


@dataclass
class Trees:
    """The readable trees of the pool, however their roots were found."""

    details: dict[int, DeviceDetails]
    details_damage: list[Damage]
    roots: dict[int, int]
    top_damage: list[Damage]
    mappings: Forest
    #: node blocks that a readable node (or the superblock) points at, or that were walked
    reached: set[int]
    #: metadata counts (None where unknown), to tell live cut-off nodes from stale ones
    counts: np.ndarray | None


def trees_of_pool(pool: Pool) -> Trees:
    """The trees of a pool whose superblock is sound, as :func:`read_pool` read them."""
    assert pool.details_forest is not None and pool.top_forest is not None
    assert pool.mappings is not None
    reached: set[int] = {0}
    for forest in (pool.details_forest, pool.top_forest, pool.mappings, pool.snapshot_mappings):
        if forest is not None:
            reached |= forest.visited
            reached.update(forest.references.tolist())
    reached.update(pool.snapshot_references.tolist())
    sb = pool.superblock
    assert sb is not None
    reached.add(int(sb.held_root))
    sm = pool.metadata_sm
    counts = None
    if sm is not None:
        counts = sm.dense(pool.meta.nr_blocks)
    return Trees(
        details=dict(pool.details),
        details_damage=list(pool.details_forest.damage),
        roots=dict(pool.roots),
        top_damage=list(pool.top_forest.damage),
        mappings=pool.mappings,
        reached=reached,
        counts=counts,
    )


def found_trees(meta: MetadataFile, sb_block: bytes, header: Header) -> Trees:
    """The trees when the superblock cannot be believed: its roots if they still walk cleanly,
    else the roots that a scan of every block finds."""
    limit = min(meta.nr_blocks, header.metadata_blocks)
    sb = fmt.parse_superblock(sb_block)
    hinted = sb.magic == fmt.SUPERBLOCK_MAGIC or fmt.checksum_ok(sb_block, fmt.SUPERBLOCK_CSUM_XOR)
    counts = found_counts(meta, sb if hinted else None, limit)
    scan = NodeScan.of(meta, limit, counts)
    details_root = pick_root(meta, scan, int(sb.device_details_root) if hinted else None, "details")
    top_root = pick_root(meta, scan, int(sb.data_mapping_root) if hinted else None, "top")
    details: dict[int, DeviceDetails] = {}
    details_damage: list[Damage] = []
    reached: set[int] = {0}
    if details_root is not None:
        forest = walk_tree(meta, limit, details_root, fmt.DeviceDetails.sizeof(), "details")
        details = details_of(forest)
        details_damage = forest.damage
        reached |= forest.visited
    roots: dict[int, int] = {}
    top_damage: list[Damage] = []
    if top_root is not None:
        top = walk_tree(meta, limit, top_root, TOP_VALUE_SIZE, "the top level")
        roots = dict(zip(top.keys.tolist(), top.values.astype(np.int64).tolist(), strict=True))
        top_damage = top.damage
        reached |= top.visited | set(top.references.tolist())
    devices = list(roots)
    mappings = walk_devices(meta, limit, devices, list(roots.values()))
    reached |= mappings.visited | set(mappings.references.tolist())
    if details_root is None:
        header.notes.append("no device details tree was found")
    if top_root is None:
        header.notes.append("no top level of the mapping tree was found")
    return Trees(details, details_damage, roots, top_damage, mappings, reached, counts)


def details_of(forest: Forest) -> dict[int, DeviceDetails]:
    out = {}
    for i, dev_id in enumerate(forest.keys.tolist()):
        v = forest.values[i]
        out[dev_id] = DeviceDetails(
            dev_id,
            int(v["mapped_blocks"]),
            int(v["transaction_id"]),
            int(v["creation_time"]),
            int(v["snapshotted_time"]),
        )
    return out
