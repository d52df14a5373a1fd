"""Fuzz targets for dm-thin pool metadata: superblock, btree nodes, space maps, and the whole
``thin check`` / ``dump`` / ``ls`` path, over a real pool written by Debian's ``thin_restore``.

The pool (:func:`real_pool`) is small on purpose: three devices (a base of 600 mappings under an
internal root, a snapshot, a snapshot of that), so the mapping trees and the data ref-count tree
have internal nodes, counts of three and more exist, and a metadata snapshot is held; one data
space-map bitmap, one metadata bitmap. Damage is written block-aware (header fields, keys,
values, index entries, bitmap bytes, with edge values) and the block is resealed with the
checksum of its type most of the time, so that the damage gets past the checksum into the
structure checks.

Each input is written into one scratch file over the pristine pool, and the changed blocks are
put back afterwards, so an input costs a few 4 KiB writes rather than a whole file.

Allowed outcomes: values and findings. Any exception is a crash.
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import construct as cs
import numpy as np
import thin_fixtures as tf
from draw import Draw, mostly
from targets import field_value, scratch_dir, tiled

from forensics.formats import thin as fmt
from forensics.thin.blocks import MetadataFile
from forensics.thin.btree import ForestWalker
from forensics.thin.check import check_pool, report_json, report_text, summary
from forensics.thin.dump import dump_chunks
from forensics.thin.findings import CHECKS, Findings
from forensics.thin.ls import device_usage, usage_text
from forensics.thin.pool import Pool, _read_superblock, read_pool
from forensics.thin.spacemap import (
    CHUNK_BITMAPS,
    read_data_space_map,
    read_metadata_space_map,
)

BLOCK = fmt.BLOCK_SIZE
METADATA_BLOCKS = 128
SNAPSHOT_AT = 120


def fuzz_pool() -> tf.Pool:
    pool = tf.Pool(nr_data_blocks=16000)
    pool.create_thin(1)
    pool.write(1, np.arange(600))
    pool.write(1, np.array([5000, 70000]))
    pool.create_snap(2, 1)
    pool.write(2, np.arange(50, 60))
    pool.create_snap(3, 2)
    pool.write(3, np.array([7]))
    return pool


def field_offsets(declaration: cs.Construct, base: int = 0) -> list[tuple[int, int]]:
    """``(offset, width)`` of every integer field of a construct declaration, nested included:
    where damage to a structure is most telling."""
    out: list[tuple[int, int]] = []
    offset = base
    for sub in declaration.subcons:
        inner = sub.subcon if isinstance(sub, cs.Renamed) else sub
        size = sub.sizeof()
        if isinstance(inner, cs.FormatField):
            out.append((offset, size))
        elif isinstance(inner, cs.Struct):
            out += field_offsets(inner, offset)
        offset += size
    return out


SUPERBLOCK_FIELDS = field_offsets(fmt.Superblock)
NODE_FIELDS = field_offsets(fmt.NodeHeader)
INDEX_ENTRY_FIELDS = field_offsets(fmt.IndexEntry)
XOR_OF = {name: xor for xor, name in fmt.BLOCK_TYPE_BY_XOR.items()}


@dataclass(frozen=True)
class Tree:
    """One btree of the real pool: its roots (one per owner), value size, and whether subtrees
    may be shared between owners."""

    name: str
    roots: tuple[int, ...]
    value_size: int
    share: bool = False


@dataclass
class RealPool:
    data: bytes
    #: every block that checksums as a known type → its checksum xor
    xor: dict[int, int]
    superblock: cs.Container
    trees: tuple[Tree, ...]
    #: btree node blocks (internal and leaves) by the tree they belong to
    nodes: dict[str, tuple[int, ...]]
    path: Path


@functools.cache
def real_pool() -> RealPool:
    """The pool of :func:`fuzz_pool`, restored once, and what a target needs to know of it."""
    d = scratch_dir() / "thin"
    d.mkdir(exist_ok=True)
    path = tf.restore(fuzz_pool().xml(), d / "pristine.bin", METADATA_BLOCKS * BLOCK)
    tf.add_metadata_snapshot(path, at=SNAPSHOT_AT)
    data = path.read_bytes()
    xor = {}
    for b in range(len(data) // BLOCK):
        kind = fmt.block_type(data[b * BLOCK : (b + 1) * BLOCK])
        if kind is not None:
            xor[b] = XOR_OF[kind]
    sb = fmt.parse_superblock(data[:BLOCK])
    with MetadataFile(path) as meta:
        pool = read_pool(meta)
        assert not check_pool(pool).exit_damage(), "the pristine pool must be clean"
        device_roots = tuple(pool.roots.values())
    trees = (
        Tree("details", (int(sb.device_details_root),), fmt.DeviceDetails.sizeof()),
        Tree("top", (int(sb.data_mapping_root),), 8),
        Tree("mapping", device_roots, fmt.BLOCK_TIME_SIZE, share=True),
        Tree("data-index", (int(sb.data_space_map_root.bitmap_root),), fmt.IndexEntry.sizeof()),
        Tree("data-refcount", (int(sb.data_space_map_root.ref_count_root),), 4),
        Tree("metadata-refcount", (int(sb.metadata_space_map_root.ref_count_root),), 4),
    )
    nodes = {t.name: tuple(_tree_nodes(data, t.roots)) for t in trees}
    return RealPool(data, xor, sb, trees, nodes, d / "scratch.bin")


def _tree_nodes(data: bytes, roots: tuple[int, ...]) -> Iterator[int]:
    for root in roots:
        yield root
        block = data[root * BLOCK : (root + 1) * BLOCK]
        (flags,) = struct.unpack_from("<I", block, 4)
        nr, width = struct.unpack_from("<II", block, 16)
        if flags & fmt.INTERNAL_NODE:
            children = struct.unpack_from(f"<{nr}Q", block, 32 + 8 * width)
            yield from _tree_nodes(data, tuple(int(c) for c in children))


# -- damage ---------------------------------------------------------------------------------------


def put(block: bytearray, offset: int, width: int, draw: Draw) -> None:
    """Write a value (edge, nudged, or any) into the ``width``-byte field at ``offset``."""
    if offset + width > len(block):
        return
    old = int.from_bytes(block[offset : offset + width], "little")
    block[offset : offset + width] = field_value(draw, width, old).to_bytes(width, "little")


def damage_node(draw: Draw, block: bytearray) -> None:
    """A header field, a key, a value (a child pointer in an internal node), or a byte."""
    nr, width, value_size = np.frombuffer(bytes(block[16:28]), "<u4").tolist()
    entries = max(min(nr, width, 508), 1)
    how = draw.integer(0, 3)
    if how == 0:
        put(block, *draw.choice(NODE_FIELDS), draw)
    elif how == 1:  # a key: the last one most often (keys must stay ascending to get far)
        i = mostly(draw, entries - 1, 0, entries - 1)
        put(block, 32 + 8 * i, 8, draw)
    elif how == 2:
        i = draw.integer(0, entries - 1)
        size = value_size if 0 < value_size <= 24 else 8
        start = 32 + 8 * min(width, 508) + size * i
        put(block, start + draw.choice((0, 4)) if size >= 8 else start, min(size, 8), draw)
    else:
        block[draw.integer(0, BLOCK - 1)] = draw.integer(0, 255)


def damage_block(draw: Draw, block: bytearray, xor: int | None) -> None:
    """1–4 changes fitting the block's type, then resealed with its checksum three times in
    four (an unsealed block stops at the checksum check)."""
    for _ in range(draw.integer(1, 4)):
        if xor == fmt.BTREE_CSUM_XOR:
            damage_node(draw, block)
        elif xor == fmt.SUPERBLOCK_CSUM_XOR:
            put(block, *draw.choice(SUPERBLOCK_FIELDS), draw)
        elif xor == fmt.INDEX_CSUM_XOR:
            offset, width = draw.choice(INDEX_ENTRY_FIELDS)
            put(block, 16 + 16 * draw.integer(0, 3) + offset, width, draw)
        elif xor == fmt.BITMAP_CSUM_XOR and draw.boolean():
            block[16 + draw.integer(0, 160)] = draw.integer(0, 255)  # the used blocks' counts
        else:
            put(block, draw.integer(0, BLOCK - 8), draw.choice((1, 4, 8)), draw)
    if xor is not None and draw.integer(0, 3):
        fmt.seal_block(block, xor)


def random_block(draw: Draw) -> bytearray:
    """Any bytes (a pattern tiled over the block), sealed as any block type half the time."""
    block = bytearray(tiled(draw.bytes(64), BLOCK))
    if draw.boolean():
        fmt.seal_block(block, draw.choice(tuple(XOR_OF.values())))
    return block


class Edits:
    """Blocks of the scratch file to change for one input (block → new bytes), and a length."""

    def __init__(self, pool: RealPool) -> None:
        self.pool = pool
        self.blocks: dict[int, bytearray] = {}
        self.length = len(pool.data)

    def block(self, blocknr: int) -> bytearray:
        if blocknr not in self.blocks:
            start = blocknr * BLOCK
            self.blocks[blocknr] = bytearray(self.pool.data[start : start + BLOCK])
        return self.blocks[blocknr]

    def damage(self, draw: Draw, blocknr: int) -> None:
        block = self.block(blocknr)
        if draw.integer(0, 5):
            damage_block(draw, block, self.pool.xor.get(blocknr))
        else:
            block[:] = random_block(draw)


@contextmanager
def applied(edits: Edits) -> Iterator[Path]:
    """The scratch file holding the pristine pool with ``edits``; restored afterwards."""
    pool = edits.pool
    path = pool.path
    if not path.exists():
        path.write_bytes(pool.data)
    fd = os.open(path, os.O_RDWR)
    try:
        for b, data in edits.blocks.items():
            os.pwrite(fd, bytes(data), b * BLOCK)
        if edits.length != len(pool.data):
            os.ftruncate(fd, edits.length)
        yield path
    finally:
        if edits.length != len(pool.data):
            os.ftruncate(fd, len(pool.data))
            os.pwrite(fd, pool.data[edits.length :], edits.length)
        for b in edits.blocks:
            os.pwrite(fd, pool.data[b * BLOCK : (b + 1) * BLOCK], b * BLOCK)
        os.close(fd)


def assert_findings(findings: Findings) -> None:
    for f in findings:
        assert f.check in CHECKS and f.message and "\n" not in f.message, f


# -- targets --------------------------------------------------------------------------------------


def superblock(draw: Draw) -> None:
    """Block 0 damaged (or any bytes): the superblock's own checks and the roots' bounds."""
    pool = real_pool()
    edits = Edits(pool)
    edits.damage(draw, 0)
    with applied(edits) as path, MetadataFile(path) as meta:
        p = Pool(meta)
        if _read_superblock(p):
            assert 0 <= p.limit <= meta.nr_blocks
            summary(p)
        assert_findings(p.findings)


def node(draw: Draw) -> None:
    """One tree of the real pool with some of its nodes damaged, walked alone."""
    pool = real_pool()
    tree = draw.choice(pool.trees)
    nodes = pool.nodes[tree.name]
    edits = Edits(pool)
    for _ in range(draw.integer(1, 3)):
        edits.damage(draw, nodes[0] if draw.boolean() else draw.choice(nodes))
    roots = [mostly(draw, r, 0, METADATA_BLOCKS + 2) for r in tree.roots]
    with applied(edits) as path, MetadataFile(path) as meta:
        walk(draw, meta, roots, tree.value_size, tree.share)


def walk(draw: Draw, meta: MetadataFile, roots: list[int], value_size: int, share: bool) -> None:
    findings = Findings()
    limit = mostly(draw, meta.nr_blocks, 0, meta.nr_blocks + 2)
    forest = ForestWalker(
        meta,
        findings,
        value_size=value_size,
        label=lambda i: f"tree {i}",
        key_name="keys",
        share=share,
        limit=limit,
    ).walk(list(range(len(roots))), roots)
    assert forest.keys.size == forest.values.size == int(forest.leaf_nr.sum())
    forest.entries_per_owner()
    for part, keys, values in forest.chunks(size=2):
        assert keys.size == values.size == forest.chunk_leaf_of_entry(part).size
    for owner in range(len(roots)):
        keys, values = forest.entries(owner)
        assert keys.size == values.size
    assert forest.damaged_owners() <= set(range(len(roots)))
    assert_findings(findings)


def random_node(draw: Draw) -> None:
    """A btree root whose header, keys and values are drawn (mostly plausible), over children
    that are drawn too: the walker on nodes no real writer made."""
    value_size = draw.choice((4, 8, 16, 24))
    blocks = [bytes(BLOCK)] + [_drawn_node(draw, b, value_size) for b in range(1, 5)]
    path = scratch_dir() / "thin-random-node.bin"
    path.write_bytes(b"".join(blocks))
    with MetadataFile(path) as meta:
        roots = [mostly(draw, 1, 0, 6) for _ in range(draw.integer(1, 3))]
        walk(draw, meta, roots, value_size, draw.boolean())


def _drawn_node(draw: Draw, blocknr: int, value_size: int) -> bytes:
    if draw.integer(0, 7) == 0:
        return bytes(random_block(draw))
    internal = blocknr == 1 and draw.integer(0, 3) > 0
    size = 8 if internal else value_size
    width = mostly(draw, fmt.max_entries(size), 0, 600)
    nr = mostly(draw, draw.integer(0, 4), 0, 0xFFFFFFFF)
    flags = mostly(draw, fmt.INTERNAL_NODE if internal else fmt.LEAF_NODE, 0, 0xFFFFFFFF)
    header = fmt.NodeHeader.build(
        dict(csum=0, flags=flags, blocknr=mostly(draw, blocknr, 0, 8), nr_entries=nr,
             max_entries=width, value_size=mostly(draw, size, 0, 64), padding=0)
    )  # fmt: skip
    block = bytearray(header.ljust(BLOCK, b"\0"))
    n = min(nr, 4)
    keys = sorted(draw.integer(0, 1 << 20) for _ in range(n)) if draw.integer(0, 3) else None
    for i in range(n):
        key = keys[i] if keys is not None else field_value(draw, 8)
        _put_int(block, 32 + 8 * i, 8, key)
        value = mostly(draw, draw.integer(2, 4), 0, 8) if internal else field_value(draw, 8)
        _put_int(block, 32 + 8 * min(width, 508) + size * i, min(size, 8), value)
    if draw.integer(0, 7):
        fmt.seal_block(block, fmt.BTREE_CSUM_XOR)
    return bytes(block)


def _put_int(block: bytearray, offset: int, width: int, value: int) -> None:
    if offset + width <= len(block):
        value &= (1 << (8 * width)) - 1
        block[offset : offset + width] = value.to_bytes(width, "little")


def spacemap(draw: Draw) -> None:
    """One space map read from a damaged root (sizes up to 2**64 - 1, roots anywhere) over
    damaged index, bitmap and ref-count blocks."""
    pool = real_pool()
    which = draw.choice(("metadata", "data"))
    real = pool.superblock[f"{which}_space_map_root"]
    root = cs.Container(
        nr_blocks=_maybe(draw, int(real.nr_blocks)),
        nr_allocated=_maybe(draw, int(real.nr_allocated)),
        bitmap_root=_maybe(draw, int(real.bitmap_root)),
        ref_count_root=_maybe(draw, int(real.ref_count_root)),
    )
    edits = Edits(pool)
    own = _space_map_blocks(pool, which)
    for _ in range(draw.integer(0, 3)):
        edits.damage(draw, draw.choice(own))
    with applied(edits) as path, MetadataFile(path) as meta:
        findings = Findings()
        limit = mostly(draw, meta.nr_blocks, 0, meta.nr_blocks + 2)
        if which == "metadata":
            sm = read_metadata_space_map(meta, root, findings, limit)
        else:
            bound = mostly(draw, meta.nr_blocks, 0, (1 << 64) - 1)
            sm = read_data_space_map(meta, root, findings, limit, bound)
        assert_findings(findings)
        if sm is not None:
            # counts are decoded a span of bitmaps at a time, never for the claimed size at once;
            # the bitmaps are bounded by the format (metadata) or by the file's blocks (data)
            for lo, hi in sm.spans():
                counts, known = sm.counts_in(lo, hi)
                assert (
                    counts.size == known.size == hi - lo <= CHUNK_BITMAPS * fmt.ENTRIES_PER_BITMAP
                )
            most = fmt.MAX_METADATA_BITMAPS if which == "metadata" else meta.nr_blocks
            assert sm.bitmap_blocks.size <= most


def _maybe(draw: Draw, value: int) -> int:
    return value if draw.integer(0, 3) else field_value(draw, 8, value)


def _space_map_blocks(pool: RealPool, which: str) -> tuple[int, ...]:
    """The index, bitmap and ref-count tree blocks of one space map of the real pool."""
    bitmaps = tuple(b for b, x in pool.xor.items() if x == fmt.BITMAP_CSUM_XOR)
    if which == "metadata":
        index = int(pool.superblock.metadata_space_map_root.bitmap_root)
        return (index, *bitmaps, *pool.nodes["metadata-refcount"])
    return (*pool.nodes["data-index"], *bitmaps, *pool.nodes["data-refcount"])


def check_file(draw: Draw) -> None:
    """The whole pool damaged anywhere (and maybe cut short): what ``thin check``, ``thin dump``
    and ``thin ls`` run, through their library calls."""
    pool = real_pool()
    edits = Edits(pool)
    used = tuple(pool.xor)
    for _ in range(draw.integer(1, 6)):
        blocknr = draw.choice(used) if draw.integer(0, 7) else draw.integer(0, METADATA_BLOCKS - 1)
        edits.damage(draw, blocknr)
    if draw.integer(0, 15) == 0:
        edits.length = draw.integer(0, len(pool.data))
    with applied(edits) as path, MetadataFile(path) as meta:
        p = read_pool(meta)
        result = check_pool(p)
        report_json(result)
        report_text(result)
        if p.usable:
            b"".join(dump_chunks(p))
            usage_text(device_usage(p))
        assert_findings(p.findings)
