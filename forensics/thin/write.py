"""Fresh dm-thin pool metadata, written from a model of the pool.

The model (:class:`MetadataModel`) holds what ``thin_dump`` shows: the superblock's numbers and,
per device, its details and its sorted mappings. :func:`encode_metadata` lays out every block of a
new metadata device and :func:`write_metadata` puts it in a new (sparse) file; nothing is ever
written over an existing file unless asked, and never in place.

What is written, block by block (the layout of the kernel's ``dm-thin-metadata.c`` and
``persistent-data/``):

* block 0, the superblock; block 1, the metadata space map's index block; then the metadata
  bitmaps, the data bitmaps, the data space map's index btree, the data and metadata ref-count
  btrees, the device details btree, the top level of the mapping tree, and the devices' mapping
  trees;
* btree nodes as the kernel packs them: ``max_entries`` from the value size, keys then values at
  ``32 + 8 * max_entries``, unused slots zero. Leaves are filled from the left, 252 mappings each,
  and the last two evened out when the last would hold less than a third: a tree never has a
  non-root node under a third full;
* identical mapping nodes of different devices are written once and shared, the way a snapshot
  shares its origin's nodes in the kernel: a device's leaves that a snapshot left untouched hold
  the same entries, so the snapshot points at the same blocks. A shared node's metadata count is
  the number of pointers to it; a data block counts once per distinct leaf that maps it;
* both space maps recomputed from that: two bits per block, counts of 3 and more in the ref-count
  btree; index entries with ``nr_free`` counted over the whole bitmap (as the kernel starts them)
  and ``none_free_before`` at the first free entry;
* every block's checksum with the salt of its type.

Headers are built with the construct declarations of :mod:`forensics.formats.thin` (in bulk
through the numpy dtypes derived from them); no offset is written twice.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from forensics.errors import OperationalError
from forensics.formats import thin as fmt
from forensics.thin.mappings import data_blocks

if TYPE_CHECKING:
    from forensics.thin.pool import Pool

LEAF_WIDTH = fmt.max_entries(fmt.BLOCK_TIME_SIZE)  # 252: mapping, top level, internal nodes
INTERNAL_WIDTH = fmt.max_entries(8)
#: data blocks are limited to 40 bits in a block_time value
MAX_DATA_BLOCKS = 1 << 40
ENTRY_BYTES = fmt.ENTRIES_PER_BITMAP // 4


class WriteError(OperationalError, ValueError):
    """The model cannot be written: a value out of range, or it does not fit the device."""


@dataclass
class DeviceRecord:
    """One thin device: its details and its mappings (virtual block → ``block_time``, that is
    ``data_block << 24 | time``), virtual blocks strictly ascending."""

    dev_id: int
    transaction_id: int = 0
    creation_time: int = 0
    snapshotted_time: int = 0
    vblocks: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    block_times: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))

    @property
    def mapped_blocks(self) -> int:
        return int(self.vblocks.size)


@dataclass
class MetadataModel:
    """A pool as thin_dump sees it, and the size of the metadata device to write it for."""

    data_block_size: int
    nr_data_blocks: int
    #: the metadata device's size in 4 KiB blocks (what the metadata space map covers)
    metadata_blocks: int
    transaction_id: int = 0
    time: int = 0
    flags: int = 0
    version: int = 2
    devices: list[DeviceRecord] = field(default_factory=list)

    @property
    def mappings(self) -> int:
        return sum(d.mapped_blocks for d in self.devices)


@dataclass(frozen=True)
class WriteStats:
    """What a write produced: blocks in use, nodes, and how much was shared."""

    metadata_blocks: int
    used_blocks: int
    devices: int
    mappings: int
    mapping_nodes: int
    shared_nodes: int
    data_blocks_used: int


@dataclass
class EncodedMetadata:
    """Blocks ``0 .. used-1`` of the new metadata; the blocks past them are zero."""

    blocks: np.ndarray
    stats: WriteStats

    @property
    def size(self) -> int:
        """The metadata device's size in bytes."""
        return self.stats.metadata_blocks * fmt.BLOCK_SIZE


# -- logical trees ------------------------------------------------------------------------------


@dataclass(eq=False)
class _Node:
    """A btree node before it has a block. A leaf holds ``values`` (as stored) or, in the top
    level, ``children``: the mapping-tree roots its values point at; an internal node holds
    ``children``. ``refs`` counts the pointers to it (its metadata reference count)."""

    keys: np.ndarray
    leaf: bool = True
    values: np.ndarray | None = None
    children: list[_Node] | None = None
    refs: int = 0
    block: int = -1


def chunks(n: int, width: int) -> list[tuple[int, int]]:
    """Node boundaries for ``n`` entries: full nodes from the left; when the last would be under
    a third full, the last two share their entries evenly (each then holds over half)."""
    if n <= width:
        return [(0, n)]
    bounds = [*range(0, n, width), n]
    last = n - bounds[-2]
    if last < width // 3:
        total = width + last
        bounds[-2] = n - (total - total // 2)
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _tree_size(n: int, width: int) -> int:
    """How many nodes :func:`_build_tree` makes for ``n`` entries in leaves of ``width``."""
    count = level = len(chunks(n, width))
    while level > 1:
        level = len(chunks(level, INTERNAL_WIDTH))
        count += level
    return count


class _Interner:
    """Hash-consing of mapping nodes: an identical node is made once and shared."""

    def __init__(self) -> None:
        self._seen: dict[bytes, _Node] = {}
        self.shared = 0

    def node(self, node: _Node) -> _Node:
        digest = hashlib.blake2b(digest_size=20)
        digest.update(b"L" if node.leaf else b"I")
        digest.update(node.keys.tobytes())
        if node.values is not None:
            digest.update(node.values.tobytes())
        else:
            assert node.children is not None
            digest.update(np.array([id(c) for c in node.children], np.uint64).tobytes())
        key = digest.digest()
        found = self._seen.get(key)
        if found is not None and _same(found, node):
            self.shared += 1
            return found
        self._seen[key] = node
        return node


def _same(a: _Node, b: _Node) -> bool:
    if a.leaf != b.leaf or not np.array_equal(a.keys, b.keys):
        return False
    if a.values is not None or b.values is not None:
        return a.values is not None and b.values is not None and np.array_equal(a.values, b.values)
    assert a.children is not None and b.children is not None
    return len(a.children) == len(b.children) and all(
        x is y for x, y in zip(a.children, b.children, strict=True)
    )


def _build_tree(
    leaves: list[_Node], nodes: list[_Node], interner: _Interner | None = None
) -> _Node:
    """Internal levels over ``leaves`` (already in ``nodes``) up to one root; new nodes are
    appended to ``nodes``. Every child pointer of a node made here (not one found again by the
    ``interner``) is a reference to the child."""
    level = leaves
    while len(level) > 1:
        upper: list[_Node] = []
        for start, end in chunks(len(level), INTERNAL_WIDTH):
            children = level[start:end]
            keys = np.array([int(c.keys[0]) for c in children], dtype=np.uint64)
            node = _Node(keys, leaf=False, children=children)
            upper.append(_adopt(node, nodes, interner))
        level = upper
    return level[0]


def _adopt(node: _Node, nodes: list[_Node], interner: _Interner | None) -> _Node:
    """``node``, or the identical node made before; a new node is kept and references its
    children."""
    found = interner.node(node) if interner is not None else node
    if found is node:
        nodes.append(node)
        for child in node.children or ():
            child.refs += 1
    return found


def _leaves(keys: np.ndarray, values: np.ndarray, width: int) -> list[_Node]:
    return [
        _Node(keys[start:end], values=values[start:end]) for start, end in chunks(keys.size, width)
    ]


def _simple_tree(keys: np.ndarray, values: np.ndarray, nodes: list[_Node]) -> _Node:
    """A tree of one owner (details, index, ref counts), referenced once from its root."""
    width = fmt.max_entries(values.dtype.itemsize)
    leaves = _leaves(keys, values, width)
    nodes.extend(leaves)
    root = _build_tree(leaves, nodes)
    root.refs += 1
    return root


def model_from_pool(pool: Pool, metadata_blocks: int | None = None) -> MetadataModel:
    """The model of a pool read whole (its readable part, when damaged): the superblock's
    numbers, and every device of the details tree with the mappings of its tree. The metadata
    device keeps its size unless ``metadata_blocks`` is given."""
    sb = pool.superblock
    assert sb is not None and pool.usable
    devices = []
    for dev_id in sorted(pool.details):
        dev = pool.details[dev_id]
        vblocks, block_times = pool.device_mappings(dev_id)
        devices.append(
            DeviceRecord(
                dev_id,
                dev.transaction_id,
                dev.creation_time,
                dev.snapshotted_time,
                vblocks.astype(np.uint64),
                block_times.astype(np.uint64),
            )
        )
    size = int(sb.metadata_space_map_root.nr_blocks) or pool.meta.nr_blocks
    return MetadataModel(
        data_block_size=int(sb.data_block_size),
        nr_data_blocks=pool.nr_data_blocks,
        metadata_blocks=metadata_blocks or size,
        transaction_id=int(sb.trans_id),
        time=int(sb.time),
        flags=int(sb.flags),
        version=int(sb.version),
        devices=devices,
    )


# -- the model checked --------------------------------------------------------------------------


def _check_model(model: MetadataModel) -> None:
    if not 0 < model.metadata_blocks <= fmt.MAX_METADATA_BLOCKS:
        raise WriteError(
            f"a metadata device of {model.metadata_blocks} blocks: the space map covers 1 to "
            f"{fmt.MAX_METADATA_BLOCKS}"
        )
    if not 0 < model.nr_data_blocks <= MAX_DATA_BLOCKS:
        raise WriteError(f"{model.nr_data_blocks} data blocks: 1 to 2^40 can be mapped")
    if not 0 < model.data_block_size < 1 << 32:
        raise WriteError(f"data block size {model.data_block_size} does not fit 32 bits")
    for name in ("time", "flags", "version"):
        if not 0 <= getattr(model, name) < 1 << 32:
            raise WriteError(f"superblock {name} {getattr(model, name)} does not fit 32 bits")
    if not 0 <= model.transaction_id < 1 << 64:
        raise WriteError(f"transaction id {model.transaction_id} does not fit 64 bits")
    bitmaps = -(-model.nr_data_blocks // fmt.ENTRIES_PER_BITMAP)
    bitmaps += -(-model.metadata_blocks // fmt.ENTRIES_PER_BITMAP)
    if bitmaps + 2 > model.metadata_blocks:
        raise WriteError(
            f"the space maps alone need {bitmaps + 2} metadata blocks; the metadata device has "
            f"{model.metadata_blocks}"
        )
    ids = [d.dev_id for d in model.devices]
    if any(b <= a for a, b in zip(ids, ids[1:], strict=False)) or (ids and ids[0] < 0):
        raise WriteError("device ids must be distinct, non-negative and in ascending order")
    for dev in model.devices:
        _check_device(dev, model.nr_data_blocks)


def _check_device(dev: DeviceRecord, nr_data_blocks: int) -> None:
    if dev.dev_id >= 1 << 64 or not 0 <= dev.transaction_id < 1 << 64:
        raise WriteError(f"device {dev.dev_id}: id or transaction id out of range")
    if not (0 <= dev.creation_time < 1 << 32 and 0 <= dev.snapshotted_time < 1 << 32):
        raise WriteError(f"device {dev.dev_id}: creation or snapshot time out of range")
    if dev.vblocks.shape != dev.block_times.shape or dev.vblocks.ndim != 1:
        raise WriteError(f"device {dev.dev_id}: as many block_time values as virtual blocks")
    if dev.vblocks.size > 1 and bool((dev.vblocks[1:] <= dev.vblocks[:-1]).any()):
        raise WriteError(f"device {dev.dev_id}: virtual blocks must be strictly ascending")
    data = data_blocks(dev.block_times.astype(np.uint64))
    if data.size and int(data.max()) >= nr_data_blocks:
        raise WriteError(
            f"device {dev.dev_id}: data block {int(data.max())} is past the end of the data "
            f"device ({nr_data_blocks} blocks)"
        )


# -- layout ---------------------------------------------------------------------------------------


@dataclass
class _Layout:
    """Every tree of the new metadata, its blocks and reference counts."""

    model: MetadataModel
    interner: _Interner | None
    mapping_nodes: list[_Node] = field(default_factory=list)
    top_nodes: list[_Node] = field(default_factory=list)
    details_nodes: list[_Node] = field(default_factory=list)
    data_index_nodes: list[_Node] = field(default_factory=list)
    data_rc_nodes: list[_Node] = field(default_factory=list)
    meta_rc_nodes: list[_Node] = field(default_factory=list)
    roots: dict[str, _Node] = field(default_factory=dict)
    data_blocks: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    data_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    meta_bitmaps: int = 0
    data_bitmaps: int = 0
    used: int = 0


def _mapping_trees(layout: _Layout) -> list[_Node]:
    """Each device's mapping tree (shared nodes made once); the root of each, in device order."""
    nodes, interner = layout.mapping_nodes, layout.interner
    roots = []
    for dev in layout.model.devices:
        keys = dev.vblocks.astype(np.uint64)
        values = dev.block_times.astype(np.uint64)
        leaves = [_adopt(leaf, nodes, interner) for leaf in _leaves(keys, values, LEAF_WIDTH)]
        roots.append(_build_tree(leaves, nodes, interner))
    return roots


def _top_level(layout: _Layout, roots: list[_Node]) -> None:
    ids = np.array([d.dev_id for d in layout.model.devices], dtype=np.uint64)
    leaves = [
        _Node(ids[start:end], children=roots[start:end])
        for start, end in chunks(ids.size, LEAF_WIDTH)
    ]
    for leaf in leaves:
        for root in leaf.children or ():
            root.refs += 1
    layout.top_nodes.extend(leaves)
    top = _build_tree(leaves, layout.top_nodes)
    top.refs += 1
    layout.roots["top"] = top


def _details(layout: _Layout) -> None:
    devices = layout.model.devices
    values = np.zeros(len(devices), dtype=fmt.DETAILS_DTYPE)
    values["mapped_blocks"] = [d.mapped_blocks for d in devices]
    values["transaction_id"] = [d.transaction_id for d in devices]
    values["creation_time"] = [d.creation_time for d in devices]
    values["snapshotted_time"] = [d.snapshotted_time for d in devices]
    keys = np.array([d.dev_id for d in devices], dtype=np.uint64)
    layout.roots["details"] = _simple_tree(keys, values, layout.details_nodes)


def _data_counts(layout: _Layout) -> None:
    """A data block counts once per distinct leaf that maps it."""
    parts = [
        data_blocks(n.values).astype(np.int64)
        for n in layout.mapping_nodes
        if n.leaf and n.values is not None
    ]
    if parts:
        layout.data_blocks, layout.data_counts = np.unique(
            np.concatenate(parts), return_counts=True
        )
    overflow = layout.data_counts >= 3
    keys = layout.data_blocks[overflow].astype(np.uint64)
    counts = layout.data_counts[overflow].astype("<u4")
    layout.roots["data-rc"] = _simple_tree(keys, counts, layout.data_rc_nodes)


def _data_index(layout: _Layout) -> None:
    """The data space map's index btree; its values name the bitmaps by number until blocks are
    known (:func:`_assign`)."""
    n = layout.data_bitmaps
    values = np.zeros(n, dtype=fmt.INDEX_ENTRY_DTYPE)
    values["nr_free"], values["none_free_before"] = _bitmap_index(
        layout.data_blocks, layout.model.nr_data_blocks
    )
    keys = np.arange(n, dtype=np.uint64)
    layout.roots["data-index"] = _simple_tree(keys, values, layout.data_index_nodes)


def _bitmap_index(blocks: np.ndarray, nr_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """``nr_free`` and ``none_free_before`` of each bitmap, for the sorted in-use ``blocks``."""
    per = fmt.ENTRIES_PER_BITMAP
    n = -(-nr_blocks // per)
    bitmap = blocks // per
    used = np.bincount(bitmap, minlength=n)
    rank = np.arange(blocks.size) - (np.cumsum(used) - used)[bitmap]
    leading = np.bincount(bitmap[blocks - bitmap * per == rank], minlength=n)
    length = np.minimum(per, nr_blocks - np.arange(n, dtype=np.int64) * per)
    return per - used, np.minimum(leading, length)


def _plan(model: MetadataModel, share: bool) -> _Layout:
    layout = _Layout(model, _Interner() if share else None)
    per = fmt.ENTRIES_PER_BITMAP
    layout.meta_bitmaps = -(-model.metadata_blocks // per)
    layout.data_bitmaps = -(-model.nr_data_blocks // per)
    roots = _mapping_trees(layout)
    _top_level(layout, roots)
    _details(layout)
    _data_counts(layout)
    _data_index(layout)
    _assign(layout)
    return layout


def _assign(layout: _Layout) -> None:
    """Blocks in the order of the module's docstring. The metadata ref-count tree's keys are
    blocks, so its size is reserved first (it only depends on how many nodes are shared three
    times or more) and its nodes are made once every other block is known."""
    block = 2 + layout.meta_bitmaps + layout.data_bitmaps
    for node in layout.data_index_nodes + layout.data_rc_nodes:
        node.block, block = block, block + 1
    overflow = sum(1 for n in layout.mapping_nodes if n.refs >= 3)
    meta_rc_start, block = block, block + _tree_size(overflow, fmt.max_entries(4))
    for node in layout.details_nodes + layout.top_nodes + layout.mapping_nodes:
        node.block, block = block, block + 1
    layout.used = block
    if block > layout.model.metadata_blocks:
        raise WriteError(
            f"the pool needs {block} metadata blocks; the metadata device has "
            f"{layout.model.metadata_blocks}"
        )
    shared = [n for n in layout.mapping_nodes if n.refs >= 3]
    keys = np.array([n.block for n in shared], dtype=np.uint64)
    counts = np.array([n.refs for n in shared], dtype="<u4")
    layout.roots["meta-rc"] = _simple_tree(keys, counts, layout.meta_rc_nodes)
    for offset, node in enumerate(layout.meta_rc_nodes):
        node.block = meta_rc_start + offset
    assert len(layout.meta_rc_nodes) == _tree_size(overflow, fmt.max_entries(4))


# -- bytes ----------------------------------------------------------------------------------------


def encode_metadata(model: MetadataModel, *, share: bool = True) -> EncodedMetadata:
    """Every block in use of new metadata for ``model`` (see the module's docstring). Without
    ``share``, every device gets nodes of its own, as thin_restore writes them."""
    _check_model(model)
    layout = _plan(model, share)
    out = np.zeros((layout.used, fmt.BLOCK_SIZE), dtype=np.uint8)
    xor = np.full(layout.used, fmt.BTREE_CSUM_XOR, dtype=np.int64)
    data_bitmap0 = 2 + layout.meta_bitmaps
    _write_nodes(out, layout, data_bitmap0)
    meta_counts = _metadata_counts(layout)
    _write_bitmaps(out, xor, 2, layout.meta_bitmaps, np.arange(layout.used), meta_counts)
    _write_bitmaps(
        out, xor, data_bitmap0, layout.data_bitmaps, layout.data_blocks, layout.data_counts
    )
    _write_index(out, layout, meta_counts)
    xor[1] = fmt.INDEX_CSUM_XOR
    _write_superblock(out, layout)
    xor[0] = fmt.SUPERBLOCK_CSUM_XOR
    _seal(out, xor)
    stats = WriteStats(
        metadata_blocks=model.metadata_blocks,
        used_blocks=layout.used,
        devices=len(model.devices),
        mappings=model.mappings,
        mapping_nodes=len(layout.mapping_nodes),
        shared_nodes=sum(1 for n in layout.mapping_nodes if n.refs > 1),
        data_blocks_used=int(layout.data_blocks.size),
    )
    return EncodedMetadata(out, stats)


def _metadata_counts(layout: _Layout) -> np.ndarray:
    counts = np.ones(layout.used, dtype=np.int64)  # superblock, index, bitmaps, single nodes
    for node in _all_nodes(layout):
        counts[node.block] = node.refs
    return counts


def _all_nodes(layout: _Layout) -> Iterable[_Node]:
    for group in (
        layout.data_index_nodes,
        layout.data_rc_nodes,
        layout.meta_rc_nodes,
        layout.details_nodes,
        layout.top_nodes,
        layout.mapping_nodes,
    ):
        yield from group


def _write_nodes(out: np.ndarray, layout: _Layout, data_bitmap0: int) -> None:
    nodes = list(_all_nodes(layout))
    words = out.view("<u8").reshape(out.shape[0], -1)
    header: dict[str, list[int]] = {k: [] for k in (*_NODE_FIELDS, "value_size")}
    for node in nodes:
        values = _stored_values(node, data_bitmap0)
        width = fmt.max_entries(values.dtype.itemsize)
        n = node.keys.size
        for name, value in zip(
            _NODE_FIELDS,
            (fmt.LEAF_NODE if node.leaf else fmt.INTERNAL_NODE, node.block, n, width),
            strict=True,
        ):
            header[name].append(value)
        header["value_size"].append(values.dtype.itemsize)
        words[node.block, fmt.NODE_KEYS_WORD : fmt.NODE_KEYS_WORD + n] = node.keys
        start = fmt.node_values_offset(width)
        raw = np.frombuffer(values.tobytes(), dtype=np.uint8)
        out[node.block, start : start + raw.size] = raw
    headers = out.reshape(-1).view(fmt.NODE_BLOCK_DTYPE)
    blocks = np.array(header["blocknr"], dtype=np.int64)
    for name, column in header.items():
        headers[name][blocks] = column


_NODE_FIELDS = ("flags", "blocknr", "nr_entries", "max_entries")


def _stored_values(node: _Node, data_bitmap0: int) -> np.ndarray:
    """The values of ``node`` as written: child blocks for pointers, bitmap blocks in the data
    space map's index entries."""
    if node.children is not None:
        return np.array([c.block for c in node.children], dtype=np.uint64)
    assert node.values is not None
    if node.values.dtype == fmt.INDEX_ENTRY_DTYPE:
        values = node.values.copy()
        values["blocknr"] = data_bitmap0 + node.keys.astype(np.int64)
        return values
    return node.values


def _write_bitmaps(
    out: np.ndarray, xor: np.ndarray, first: int, n: int, blocks: np.ndarray, counts: np.ndarray
) -> None:
    """Bitmaps ``first .. first+n-1`` for the sorted in-use ``blocks`` and their ``counts``."""
    area = np.zeros(n * ENTRY_BYTES, dtype=np.uint8)
    raw = fmt.COUNT_TO_BITMAP_RAW[np.minimum(counts, 3)]
    shift = (2 * (blocks % 4)).astype(np.uint8)
    np.bitwise_or.at(area, blocks // 4, raw << shift)
    out[first : first + n, fmt.BITMAP_ENTRIES_OFFSET :] = area.reshape(n, ENTRY_BYTES)
    headers = out[first : first + n].reshape(-1).view(fmt.BITMAP_BLOCK_DTYPE)
    headers["blocknr"] = np.arange(first, first + n, dtype=np.uint64)
    xor[first : first + n] = fmt.BITMAP_CSUM_XOR


def _write_index(out: np.ndarray, layout: _Layout, counts: np.ndarray) -> None:
    n = layout.meta_bitmaps
    nr_free, none_free = _bitmap_index(
        np.arange(layout.used, dtype=np.int64), layout.model.metadata_blocks
    )
    entries = [
        {"blocknr": 2 + i, "nr_free": int(nr_free[i]), "none_free_before": int(none_free[i])}
        for i in range(n)
    ]
    unused = {"blocknr": 0, "nr_free": 0, "none_free_before": 0}
    entries += [unused] * (fmt.MAX_METADATA_BITMAPS - n)
    block = fmt.MetadataIndex.build(
        {"header": {"csum": 0, "padding": 0, "blocknr": 1}, "entries": entries}
    )
    out[1, : len(block)] = np.frombuffer(block, dtype=np.uint8)
    assert int(np.count_nonzero(counts)) == layout.used


def _write_superblock(out: np.ndarray, layout: _Layout) -> None:
    model = layout.model
    roots = layout.roots
    block = fmt.Superblock.build(
        {
            "csum": 0,
            "flags": model.flags,
            "blocknr": 0,
            "uuid": bytes(16),
            "magic": fmt.SUPERBLOCK_MAGIC,
            "version": model.version,
            "time": model.time,
            "trans_id": model.transaction_id,
            "held_root": 0,
            "data_space_map_root": {
                "nr_blocks": model.nr_data_blocks,
                "nr_allocated": int(layout.data_blocks.size),
                "bitmap_root": roots["data-index"].block,
                "ref_count_root": roots["data-rc"].block,
            },
            "metadata_space_map_root": {
                "nr_blocks": model.metadata_blocks,
                "nr_allocated": layout.used,
                "bitmap_root": 1,
                "ref_count_root": roots["meta-rc"].block,
            },
            "data_mapping_root": roots["top"].block,
            "device_details_root": roots["details"].block,
            "data_block_size": model.data_block_size,
            "metadata_block_size": fmt.BLOCK_SIZE // 512,
            "metadata_nr_blocks": model.metadata_blocks,
            "compat_flags": 0,
            "compat_ro_flags": 0,
            "incompat_flags": 0,
        }
    )
    out[0, : len(block)] = np.frombuffer(block, dtype=np.uint8)


def _seal(out: np.ndarray, xor: np.ndarray) -> None:
    value = fmt.google_crc32c.value
    csum = np.empty(out.shape[0], dtype="<u4")
    assert csum.itemsize == fmt.CSUM_SIZE
    for b, salt in enumerate(xor.tolist()):
        csum[b] = value(out[b, fmt.CSUM_SIZE :].tobytes()) ^ 0xFFFFFFFF ^ salt
    out[:, : fmt.CSUM_SIZE] = csum.view(np.uint8).reshape(-1, fmt.CSUM_SIZE)


# -- files ----------------------------------------------------------------------------------------


def write_metadata(
    model: MetadataModel,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike[str]] = (),
    share: bool = True,
) -> WriteStats:
    """Encode ``model`` and write it to the new file ``out`` (sparse, the metadata device's
    size). The file is written beside ``out`` under a temporary name, synced, then linked into
    place: an existing ``out`` is refused unless ``overwrite``, and it is never one of
    ``inputs`` nor anything but a regular file."""
    encoded = encode_metadata(model, share=share)
    write_encoded(encoded, out, overwrite=overwrite, inputs=inputs)
    return encoded.stats


def check_output_path(
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> None:
    """Raise :class:`OSError`-like :class:`WriteError` when ``out`` may not be written."""
    path = Path(out)
    for source in inputs:
        if _same_file(path, Path(source)):
            raise WriteError(f"{path} is the input: the metadata is never rewritten in place")
    try:
        st = path.lstat()
    except FileNotFoundError:
        st = None
    if st is not None:
        if not overwrite:
            raise WriteError(f"{path} exists; give --force to replace it")
        if not stat.S_ISREG(st.st_mode):
            raise WriteError(f"{path} exists and is not a regular file; it is never replaced")
    if not path.parent.resolve().is_dir():
        raise WriteError(f"{path.parent}: no such directory")


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = a.stat(), b.stat()
    except OSError:
        return a.resolve() == b.resolve()
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def write_encoded(
    encoded: EncodedMetadata,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> None:
    path = Path(out)
    check_output_path(path, overwrite=overwrite, inputs=inputs)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        try:
            _write_all(fd, encoded.blocks.reshape(-1).data)
            os.ftruncate(fd, encoded.size)
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if ``out`` appeared meanwhile: nothing is replaced
            os.unlink(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_all(fd: int, data: memoryview) -> None:
    done = 0
    while done < len(data):
        done += os.write(fd, data[done : done + (1 << 24)])
