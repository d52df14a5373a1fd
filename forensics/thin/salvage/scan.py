"""Btree nodes found without a superblock: every block of the file that is a sound node as the
kernel writes it (:data:`forensics.thin.node.WRITTEN`), the roots among them that nothing points
at, and the metadata space map found by its index block. ``thin repair`` finds the trees of a
pool whose superblock is lost this way, and the subtrees that damage cut off.
"""

from __future__ import annotations

from dataclasses import dataclass

import construct as cs
import numpy as np

from forensics.formats import thin as fmt
from forensics.thin.blocks import MetadataFile
from forensics.thin.btree import MAX_DEPTH, Forest, ForestWalker, keys_at, values_at
from forensics.thin.findings import Findings
from forensics.thin.node import WRITTEN, sound_nodes
from forensics.thin.spacemap import read_metadata_space_map

#: the value size of the top level of the mapping tree (a device's mapping root)
TOP_VALUE_SIZE = fmt.ChildPointer.sizeof()
#: the value size of every node of a bottom-level mapping tree: internal nodes' child pointers
#: and leaves' block_time values are both 8 bytes
MAPPING_VALUE_SIZE = fmt.BLOCK_TIME_SIZE
assert TOP_VALUE_SIZE == MAPPING_VALUE_SIZE == fmt.ChildPointer.sizeof()


def walk_tree(meta: MetadataFile, limit: int, root: int, value_size: int, label: str) -> Forest:
    """The tree at ``root`` (values of ``value_size`` bytes, keyed by device id), its damage
    kept in the forest and its findings dropped."""
    return ForestWalker(
        meta,
        Findings(),
        value_size=value_size,
        label=lambda _: label,
        key_name="device ids",
        limit=limit,
    ).walk([0], [root])


def walk_devices(meta: MetadataFile, limit: int, owners: list[int], roots: list[int]) -> Forest:
    """The mapping trees of devices ``owners`` at ``roots`` (shared subtrees walked once), their
    findings dropped."""
    return ForestWalker(
        meta,
        Findings(),
        value_size=fmt.BLOCK_TIME_SIZE,
        label=lambda i: f"the mapping tree of device {owners[i]}",
        key_name="virtual blocks",
        share=True,
        limit=limit,
    ).walk(owners, roots)


def found_counts(meta: MetadataFile, sb: cs.Container | None, limit: int) -> np.ndarray | None:
    """Metadata counts from the metadata space map, its index block found through the damaged
    superblock or, failing that, as the one block in the file that checksums as an index."""
    index = int(sb.metadata_space_map_root.bitmap_root) if sb is not None else -1
    if not (0 < index < limit and is_index(meta, index)):
        found = [b for b in self_located(meta, limit).tolist() if is_index(meta, b)]
        if len(found) != 1:
            return None
        index = found[0]
    rc_root = int(sb.metadata_space_map_root.ref_count_root) if sb is not None else 0
    root = cs.Container(
        nr_blocks=limit,
        nr_allocated=0,
        bitmap_root=index,
        ref_count_root=rc_root,
    )
    sm = read_metadata_space_map(meta, root, Findings(), limit)
    if sm is None:
        return None
    return sm.dense(meta.nr_blocks)


def is_index(meta: MetadataFile, block: int) -> bool:
    """Whether ``block`` is a sound metadata space map index (checksum and own number)."""
    data = meta.block(block)
    return fmt.checksum_ok(data, fmt.INDEX_CSUM_XOR) and fmt.stored_blocknr(data) == block


def self_located(meta: MetadataFile, limit: int) -> np.ndarray:
    """Blocks that hold their own number (every metadata block type does, in its header)."""
    blocknr = meta.headers["blocknr"][:limit]
    return np.flatnonzero(blocknr == np.arange(limit, dtype=np.uint64))


@dataclass
class NodeScan:
    """Every block of the file that is a sound btree node: checksum, own block number, flags,
    ``max_entries`` as the kernel writes it for its value size, ``nr_entries`` within it."""

    meta: MetadataFile
    limit: int
    valid: np.ndarray
    live: np.ndarray

    @classmethod
    def of(cls, meta: MetadataFile, limit: int, counts: np.ndarray | None) -> NodeScan:
        blocks = self_located(meta, limit)
        valid = np.zeros(limit, dtype=bool)
        valid[blocks[sound_nodes(meta, blocks, WRITTEN)]] = True
        live = valid.copy()
        if counts is not None:
            known = np.full(limit, -1, dtype=np.int64)
            known[: min(limit, counts.size)] = counts[:limit]
            live &= known > 0
        return cls(meta, limit, valid, live)

    def flags(self, block: int) -> int:
        return int(self.meta.headers["flags"][block])

    def value_size(self, block: int) -> int:
        return int(self.meta.headers["value_size"][block])

    def entries(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """Keys and 64-bit values of a node (internal, or a leaf of value size 8)."""
        return node_entries(self.meta, block)

    def leaf_kind(self, block: int, depth: int = 0) -> int:
        """The value size of the leftmost leaf under ``block`` (0: none found)."""
        if depth > MAX_DEPTH or not self.valid[block]:
            return 0
        if self.flags(block) == fmt.LEAF_NODE:
            return self.value_size(block)
        _, children = self.entries(block)
        if children.size == 0 or int(children[0]) >= self.limit:
            return 0
        return self.leaf_kind(int(children[0]), depth + 1)

    def top_like(self, block: int) -> bool:
        """A leaf of the top level: device ids as keys, every value a sound mapping node."""
        if self.flags(block) != fmt.LEAF_NODE or self.value_size(block) != TOP_VALUE_SIZE:
            return False
        keys, values = self.entries(block)
        if values.size == 0 or int(keys.max()) > fmt.MAX_DEV_ID:
            return False
        inside = values < np.uint64(self.limit)
        if not inside.all():
            return False
        targets = values.astype(np.int64)
        return bool(self.valid[targets].all()) and all(
            self.value_size(t) == MAPPING_VALUE_SIZE for t in targets.tolist()
        )

    def roots(self, among: np.ndarray) -> list[int]:
        """The blocks of ``among`` (a mask) that no other block of ``among`` points at."""
        pointed = np.zeros(self.limit, dtype=bool)
        for block in np.flatnonzero(among).tolist():
            if self.flags(block) == fmt.INTERNAL_NODE or self.top_like(block):
                _, children = self.entries(block)
                children = children[children < np.uint64(self.limit)].astype(np.int64)
                pointed[children] = True
        return np.flatnonzero(among & ~pointed).tolist()


def pick_root(meta: MetadataFile, scan: NodeScan, hint: int | None, kind: str) -> int | None:
    """The root of the details tree (``kind`` "details") or of the top level ("top"): the
    damaged superblock's, if it walks cleanly; else the one live unreferenced root of its kind,
    the one with most entries when there are several."""
    size = fmt.DeviceDetails.sizeof() if kind == "details" else TOP_VALUE_SIZE
    if hint is not None and 0 < hint < scan.limit and scan.valid[hint]:
        forest = walk_tree(meta, scan.limit, hint, size, kind)
        if not forest.damage and scan.leaf_kind(hint) == size and kind_fits(scan, hint, kind):
            return hint
    best: tuple[int, int] | None = None
    for root in scan.roots(scan.live):
        if scan.leaf_kind(root) != size or not kind_fits(scan, root, kind):
            continue
        forest = walk_tree(meta, scan.limit, root, size, kind)
        entries = int(forest.keys.size)
        if entries and (best is None or entries > best[0]):
            best = (entries, root)
    return best[1] if best else None


def kind_fits(scan: NodeScan, root: int, kind: str) -> bool:
    """Whether the tree at ``root`` can be a tree of ``kind``: a top level's leftmost leaf must
    look like one (:meth:`NodeScan.top_like`); a details tree is told by its value size."""
    if kind != "top":
        return True
    block = root
    for _ in range(MAX_DEPTH):
        if scan.flags(block) == fmt.LEAF_NODE:
            return scan.top_like(block)
        _, children = scan.entries(block)
        if children.size == 0 or int(children[0]) >= scan.limit:
            return False
        block = int(children[0])
    return False


def node_entries(meta: MetadataFile, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Keys and 64-bit values of a node (internal, or a leaf of value size 8), as its header
    says, cut at the end of the file: the scan also follows pointers to nodes it has not
    judged."""
    nr = int(meta.headers["nr_entries"][block])
    width = int(meta.headers["max_entries"][block])
    keys = keys_at(block)
    values = values_at(block, width, MAPPING_VALUE_SIZE)
    return meta.words[keys : keys + nr], meta.words[values : values + nr]
