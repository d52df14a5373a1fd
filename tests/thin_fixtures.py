"""Thin-pool metadata fixtures, made at test time by the real ``thin_restore`` from XML that is
generated here with a seed. Nothing binary is committed.

A pool is modelled the way dm-thin and Docker's devicemapper driver build one: ``create_thin``
adds an empty device, ``create_snap`` bumps the pool's time and copies the origin's mappings,
writes to a device map fresh data blocks stamped with the pool's current time. ``thin_restore``
turns the XML into binary metadata; ``thin_dump``/``thin_check``/``thin_ls`` then judge our reading
of it. Damaged fixtures are derived from these by editing bytes (:func:`edit_block`).
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from forensics.formats import thin as fmt

SBIN = os.pathsep.join(["/usr/sbin", "/sbin"])
TOOLS = ("thin_restore", "thin_check", "thin_dump", "thin_ls")


def tool(name: str) -> str:
    """The path of a thin-provisioning-tools program (they live in sbin, often off PATH)."""
    found = shutil.which(name) or shutil.which(name, path=SBIN)
    if found is None:
        pytest.skip(f"{name} is not installed (Debian: thin-provisioning-tools)")
    return found


def run_tool(name: str, *args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([tool(name), *map(str, args)], capture_output=True, check=False)


@dataclass
class Device:
    dev_id: int
    transaction: int
    creation_time: int
    snap_time: int
    origin: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    data: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    time: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))

    @property
    def mapped_blocks(self) -> int:
        return int(self.origin.size)


@dataclass
class Pool:
    """A pool being built by the operations of the kernel target, in memory."""

    data_block_size: int = 128
    nr_data_blocks: int = 1638400
    time: int = 0
    transaction: int = 0
    flags: int = 0
    version: int = 2
    devices: dict[int, Device] = field(default_factory=dict)
    next_data: int = 0

    def create_thin(self, dev_id: int) -> Device:
        dev = Device(dev_id, self.transaction, self.time, self.time)
        self.devices[dev_id] = dev
        self.transaction += 1
        return dev

    def create_snap(self, dev_id: int, origin_id: int) -> Device:
        origin = self.devices[origin_id]
        self.time += 1
        origin.snap_time = self.time
        dev = Device(
            dev_id,
            self.transaction,
            self.time,
            self.time,
            origin.origin.copy(),
            origin.data.copy(),
            origin.time.copy(),
        )
        self.devices[dev_id] = dev
        self.transaction += 1
        return dev

    def allocate(self, count: int) -> np.ndarray:
        start = self.next_data
        self.next_data += count
        assert self.next_data <= self.nr_data_blocks, "pool full"
        return np.arange(start, start + count, dtype=np.uint64)

    def write(self, dev_id: int, vblocks: np.ndarray, data: np.ndarray | None = None) -> None:
        """Map ``vblocks`` of a device to new data blocks (or to ``data``) at the current time."""
        dev = self.devices[dev_id]
        vblocks = np.unique(np.asarray(vblocks, dtype=np.uint64))
        if data is None:
            data = self.allocate(vblocks.size)
        keep = ~np.isin(dev.origin, vblocks)
        origin = np.concatenate([dev.origin[keep], vblocks])
        order = np.argsort(origin, kind="stable")
        dev.origin = origin[order]
        dev.data = np.concatenate([dev.data[keep], np.asarray(data, np.uint64)])[order]
        times = np.full(vblocks.size, self.time, np.uint64)
        dev.time = np.concatenate([dev.time[keep], times])[order]

    def xml(self) -> str:
        return pool_xml(self)


def pool_xml(pool: Pool) -> str:
    """The pool as thin_dump-style XML (runs of consecutive mappings merged)."""
    out = [
        f'<superblock uuid="" time="{pool.time}" transaction="{pool.transaction}" '
        f'flags="{pool.flags}" version="{pool.version}" '
        f'data_block_size="{pool.data_block_size}" nr_data_blocks="{pool.nr_data_blocks}">\n'
    ]
    for dev_id in sorted(pool.devices):
        dev = pool.devices[dev_id]
        out.append(
            f'  <device dev_id="{dev_id}" mapped_blocks="{dev.mapped_blocks}" '
            f'transaction="{dev.transaction}" creation_time="{dev.creation_time}" '
            f'snap_time="{dev.snap_time}">\n'
        )
        out.extend(_mapping_lines(dev))
        out.append("  </device>\n")
    out.append("</superblock>\n")
    return "".join(out)


def _mapping_lines(dev: Device) -> Iterator[str]:
    n = dev.origin.size
    if n == 0:
        return
    o, d, t = (a.astype(np.int64) for a in (dev.origin, dev.data, dev.time))
    cont = (np.diff(o) == 1) & (np.diff(d) == 1) & (np.diff(t) == 0)
    starts = np.flatnonzero(np.concatenate([[True], ~cont]))
    ends = np.append(starts[1:], n)
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if e - s == 1:
            yield (
                f'    <single_mapping origin_block="{o[s]}" data_block="{d[s]}" time="{t[s]}"/>\n'
            )
        else:
            yield (
                f'    <range_mapping origin_begin="{o[s]}" data_begin="{d[s]}" '
                f'length="{e - s}" time="{t[s]}"/>\n'
            )


# -- pools ----------------------------------------------------------------------------------------


def three_device_pool() -> Pool:
    """The reference's pool: a base, a snapshot that rewrote 50–59 and added 2000–2001, and a
    snapshot of that."""
    pool = Pool()
    pool.create_thin(1)
    pool.write(1, np.arange(100))
    pool.write(1, np.array([1000, 163839]))
    pool.create_snap(2, 1)
    pool.write(2, np.arange(50, 60))
    pool.write(2, np.array([2000, 2001]))
    pool.create_snap(3, 2)
    pool.write(3, np.array([5000]))
    return pool


def docker_like_pool(
    seed: int,
    *,
    chains: int = 4,
    layers: int = 3,
    containers: int = 2,
    base_blocks: int = 2000,
    write_blocks: int = 200,
    nr_data_blocks: int = 1638400,
) -> Pool:
    """A base device, ``chains`` chains of ``layers`` snapshot layers, and ``containers``
    container devices (``-init`` + the container itself) on each chain's top layer. Writes are
    random: scattered singles and contiguous runs, so the XML holds both mapping kinds."""
    rng = random.Random(seed)
    pool = Pool(nr_data_blocks=nr_data_blocks)
    ids = iter(range(1, 1 << 24))
    base = next(ids)
    pool.create_thin(base)
    pool.write(base, np.arange(base_blocks))
    for _ in range(chains):
        parent = base
        for _ in range(layers):
            child = next(ids)
            pool.create_snap(child, parent)
            _random_writes(pool, child, rng, write_blocks)
            parent = child
        for _ in range(containers):
            init = next(ids)
            pool.create_snap(init, parent)
            _random_writes(pool, init, rng, 3)
            container = next(ids)
            pool.create_snap(container, init)
            _random_writes(pool, container, rng, write_blocks // 4)
    return pool


def _random_writes(pool: Pool, dev_id: int, rng: random.Random, count: int) -> None:
    span = 1 << 20
    runs: list[np.ndarray] = []
    left = count
    while left > 0:
        length = min(left, rng.choice([1, 1, 1, 2, 5, 16, 64]))
        start = rng.randrange(span)
        runs.append(np.arange(start, start + length))
        left -= length
    pool.write(dev_id, np.concatenate(runs))


def many_devices_pool(count: int = 300, seed: int = 7) -> Pool:
    """More devices than one leaf of the details tree (126) or the top level (252) holds."""
    rng = random.Random(seed)
    pool = Pool()
    for dev_id in rng.sample(range(1, 1 << 24), count):
        pool.create_thin(dev_id)
        pool.write(dev_id, np.array(sorted(rng.sample(range(1 << 16), rng.randrange(0, 6)))))
    return pool


def big_pool(seed: int = 11, mappings: int = 60000) -> Pool:
    """Tens of thousands of mappings: bottom-level trees with internal nodes, data blocks shared
    by many devices (counts of 3 and more: the data ref-count tree)."""
    per_layer = max(mappings // 40, 1)
    return docker_like_pool(
        seed,
        chains=3,
        layers=3,
        containers=1,
        base_blocks=per_layer * 4,
        write_blocks=per_layer,
    )


# -- binary metadata ------------------------------------------------------------------------------


def restore(xml: str, out: Path, size: int = 16 << 20) -> Path:
    """Binary metadata from ``xml`` by thin_restore, into a new sparse file of ``size`` bytes."""
    src = out.with_suffix(".xml")
    src.write_text(xml)
    with open(out, "wb") as f:
        f.truncate(size)
    result = run_tool("thin_restore", "-i", src, "-o", out)
    assert result.returncode == 0, result.stderr.decode()
    return out


def read_block(path: Path, blocknr: int) -> bytearray:
    with open(path, "rb") as f:
        f.seek(blocknr * fmt.BLOCK_SIZE)
        return bytearray(f.read(fmt.BLOCK_SIZE))


def write_block(path: Path, blocknr: int, block: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(blocknr * fmt.BLOCK_SIZE)
        f.write(block)


def edit_block(
    path: Path, blocknr: int, edit: Callable[[bytearray], None], *, xor: int | None = None
) -> None:
    """Apply ``edit`` to one block; with ``xor``, recompute its checksum for that block type
    (semantic damage that a checksum does not catch)."""
    block = read_block(path, blocknr)
    edit(block)
    if xor is not None:
        fmt.seal_block(block, xor)
    write_block(path, blocknr, block)


def put(fmt_char: str, offset: int, value: int) -> Callable[[bytearray], None]:
    def edit(block: bytearray) -> None:
        struct.pack_into("<" + fmt_char, block, offset, value)

    return edit


def get(path: Path, blocknr: int, fmt_char: str, offset: int) -> int:
    return int(struct.unpack_from("<" + fmt_char, read_block(path, blocknr), offset)[0])


# -- sharing, as the kernel does it and thin_restore never does ----------------------------------


def _node_entries(block: bytes) -> tuple[list[int], list[int], int]:
    nr, width = struct.unpack_from("<II", block, 16)
    keys = list(struct.unpack_from(f"<{nr}Q", block, 32))
    values = list(struct.unpack_from(f"<{nr}Q", block, 32 + 8 * width))
    return keys, values, width


def _set_value(path: Path, blocknr: int, index: int, value: int) -> None:
    _, _, width = _node_entries(read_block(path, blocknr))
    edit_block(path, blocknr, put("Q", 32 + 8 * width + 8 * index, value), xor=fmt.BTREE_CSUM_XOR)


def _subtree(path: Path, root: int) -> tuple[list[int], list[int]]:
    """The nodes of a bottom-level subtree and the data blocks its leaves map."""
    nodes, data = [root], []
    block = read_block(path, root)
    _, values, _ = _node_entries(block)
    if struct.unpack_from("<I", block, 4)[0] & fmt.INTERNAL_NODE:
        for child in values:
            sub_nodes, sub_data = _subtree(path, child)
            nodes += sub_nodes
            data += sub_data
    else:
        data += [v >> fmt.TIME_BITS for v in values]
    return nodes, data


def _adjust_counts(path: Path, bitmaps: list[int], deltas: dict[int, int]) -> None:
    """Add ``deltas`` to 2-bit bitmap counts (all staying within 0..2)."""
    raw_of = {0: 0, 1: 2, 2: 1}
    count_of = {0: 0, 2: 1, 1: 2}
    by_bitmap: dict[int, dict[int, int]] = {}
    for b, d in deltas.items():
        by_bitmap.setdefault(b // fmt.ENTRIES_PER_BITMAP, {})[b % fmt.ENTRIES_PER_BITMAP] = d

    for index, entries in by_bitmap.items():

        def edit(block: bytearray, entries: dict[int, int] = entries) -> None:
            for entry, delta in entries.items():
                at, shift = 16 + entry // 4, 2 * (entry % 4)
                count = count_of[(block[at] >> shift) & 3] + delta
                block[at] = (block[at] & ~(3 << shift) & 0xFF) | (raw_of[count] << shift)

        edit_block(path, bitmaps[index], edit, xor=fmt.BITMAP_CSUM_XOR)


def share_subtree(path: Path, origin: int, snapshot: int, child: int | None = None) -> None:
    """Make ``snapshot`` share ``origin``'s mapping subtree the way the kernel's create_snap
    does (``child`` None: the whole root; else only that child of the root), and fix both space
    maps and the checksums. The snapshot must be an unmodified snapshot of the origin."""
    sb = fmt.parse_superblock(bytes(read_block(path, 0)))
    top = int(sb.data_mapping_root)
    keys, values, _ = _node_entries(read_block(path, top))
    r1, r2 = values[keys.index(origin)], values[keys.index(snapshot)]
    if child is None:
        shared, dropped = r1, r2
        _set_value(path, top, keys.index(snapshot), r1)
    else:
        shared = _node_entries(read_block(path, r1))[1][child]
        dropped = _node_entries(read_block(path, r2))[1][child]
        _set_value(path, r2, child, shared)
    freed, _ = _subtree(path, dropped)
    _, data = _subtree(path, shared)
    meta_index = int(sb.metadata_space_map_root.bitmap_root)
    meta_bitmaps = [
        int(struct.unpack_from("<Q", read_block(path, meta_index), 16 + 16 * i)[0])
        for i in range(-(-int(sb.metadata_space_map_root.nr_blocks) // fmt.ENTRIES_PER_BITMAP))
    ]
    deltas = {b: -1 for b in freed}
    deltas[shared] = 1
    _adjust_counts(path, meta_bitmaps, deltas)
    data_bitmaps = _index_bitmaps(path, int(sb.data_space_map_root.bitmap_root))
    _adjust_counts(path, data_bitmaps, dict.fromkeys(data, -1))
    nr_allocated = int(sb.metadata_space_map_root.nr_allocated) - len(freed)
    edit_block(path, 0, put("Q", 0xC8, nr_allocated), xor=fmt.SUPERBLOCK_CSUM_XOR)


def _index_bitmaps(path: Path, data_index: int) -> list[int]:
    block = read_block(path, data_index)
    nr, width = struct.unpack_from("<II", block, 16)
    return [int(struct.unpack_from("<Q", block, 32 + 8 * width + 16 * i)[0]) for i in range(nr)]


def sharing_pool() -> Pool:
    """Two bases of 2,000 blocks (an internal root over 8 leaves each), each with one unmodified
    snapshot to share with: 1 → 2 and 3 → 4. No block has more than two references."""
    pool = Pool()
    pool.create_thin(1)
    pool.write(1, np.arange(2000))
    pool.create_snap(2, 1)
    pool.create_thin(3)
    pool.write(3, np.arange(5000, 7000))
    pool.create_snap(4, 3)
    return pool


def add_metadata_snapshot(path: Path, at: int = 4000) -> None:
    """Reserve a metadata snapshot by hand as the kernel does (thin_restore cannot): copy the
    superblock to the free block ``at`` with its space-map roots zeroed, point ``held_root`` at
    it, and count the copy and one more reference to each of the two tree roots."""
    sb = fmt.parse_superblock(bytes(read_block(path, 0)))
    index = int(sb.metadata_space_map_root.bitmap_root)
    bitmaps = [int(struct.unpack_from("<Q", read_block(path, index), 16)[0])]
    copy = read_block(path, 0)
    struct.pack_into("<Q", copy, 8, at)
    copy[0x40:0x140] = bytes(0x100)
    fmt.seal_block(copy, fmt.SUPERBLOCK_CSUM_XOR)
    write_block(path, at, copy)
    roots = (int(sb.data_mapping_root), int(sb.device_details_root))
    _adjust_counts(path, bitmaps, {at: 1, roots[0]: 1, roots[1]: 1})
    allocated = int(sb.metadata_space_map_root.nr_allocated) + 1
    edit_block(path, 0, put("Q", 0x38, at), xor=fmt.SUPERBLOCK_CSUM_XOR)
    edit_block(path, 0, put("Q", 0xC8, allocated), xor=fmt.SUPERBLOCK_CSUM_XOR)
