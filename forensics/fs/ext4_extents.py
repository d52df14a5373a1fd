"""An ext4 file's extent tree, walked from the 60 bytes of its inode's ``i_block``.

The tree's root lies in ``i_block``: a header (magic, entries, room for entries, depth) and up
to four entries; an inner node's entries are index entries (the first logical block under
them, the block of the node below), a leaf's are extents (first logical block, length, first
physical block; a length over 32768 marks an unwritten extent, read as zeros). The nodes below
the root are whole blocks of the same layout.

A hostile tree is damage, never a reading: a node reached twice (a loop, or two index entries
naming one block), a node whose depth is not one less than its parent's, index entries or
extents out of order or outside the range their parent gives them, extents that overlap,
a node or an extent outside the filesystem, an empty node below the root. The walk reads at
most one node per extent it may list, and lists at most ``max_extents`` extents.

The answer is the list the libraries give: ``(device offset, bytes, flags)`` in file order,
holes (and the space after the last extent up to the file's size) as sparse extents.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import construct as cs

from forensics.errors import Damage
from forensics.fs.content import extent_runs

ExtentHeader = cs.Struct(
    "magic" / cs.Int16ul,
    "entries" / cs.Int16ul,
    "max" / cs.Int16ul,
    "depth" / cs.Int16ul,
    "generation" / cs.Int32ul,
)
Extent = cs.Struct(
    "block" / cs.Int32ul,
    "length" / cs.Int16ul,
    "start_hi" / cs.Int16ul,
    "start_lo" / cs.Int32ul,
)
ExtentIndex = cs.Struct(
    "block" / cs.Int32ul,
    "leaf_lo" / cs.Int32ul,
    "leaf_hi" / cs.Int16ul,
    "unused" / cs.Int16ul,
)
EXTENT_MAGIC = 0xF30A
#: an extent of more blocks than this is unwritten (preallocated): its length less this
MAX_INIT_LENGTH = 32768
#: the kernel's EXT4_MAX_EXTENT_DEPTH
MAX_DEPTH = 5
#: entries that fit in ``i_block`` after the header
ROOT_ENTRIES = 4
#: logical block numbers are 32 bits
LOGICAL_END = 1 << 32

_HEADER = struct.Struct("<HHHHI")
_EXTENT = struct.Struct("<IHHI")
_INDEX = struct.Struct("<IIHH")
assert _HEADER.size == ExtentHeader.sizeof() and _EXTENT.size == Extent.sizeof()
assert _INDEX.size == ExtentIndex.sizeof() == _EXTENT.size

#: ``read_block(number)``: the bytes of one filesystem block, or None when unreadable (the
#: reader keeps why)
ReadBlock = Callable[[int], bytes | None]


class ExtentTreeError(Damage):
    """The tree does not describe a file (``too_large``: over a cap)."""

    def __init__(self, detail: str, *, too_large: bool = False) -> None:
        super().__init__(detail)
        self.too_large = too_large


def root_depth(i_block: bytes) -> int | None:
    """The depth of the tree whose root is ``i_block``, or None when its header is not one
    (a bad magic, more entries than room, more room than ``i_block`` has)."""
    magic, entries, room, depth, _ = _HEADER.unpack_from(i_block, 0)
    if magic != EXTENT_MAGIC or entries > room or room > ROOT_ENTRIES:
        return None
    return depth


def walk_extents(
    i_block: bytes,
    size: int,
    block_size: int,
    blocks: int,
    read_block: ReadBlock,
    max_extents: int,
) -> list[tuple[int, int, int]]:
    """The extents of a file of ``size`` bytes whose tree's root is ``i_block``, on a
    filesystem of ``blocks`` blocks of ``block_size`` bytes. Raises
    :class:`ExtentTreeError`."""
    leaves = _Walk(block_size, blocks, read_block, max_extents).run(i_block)
    return extent_runs(leaves, size, block_size)


class _Walk:
    def __init__(self, block_size: int, blocks: int, read_block: ReadBlock, cap: int) -> None:
        self.block_size, self.blocks, self.read_block, self.cap = (
            block_size,
            blocks,
            read_block,
            cap,
        )
        self.room = (block_size - _HEADER.size) // _EXTENT.size
        self.seen: set[int] = set()
        #: (first logical block, length, first physical block, unwritten), in file order
        self.extents: list[tuple[int, int, int, bool]] = []
        self.next_logical = 0

    def run(self, i_block: bytes) -> list[tuple[int, int, int, bool]]:
        depth = root_depth(i_block)
        if depth is None:
            raise ExtentTreeError("its extent tree's root is not an extent header")
        if depth > MAX_DEPTH:
            raise ExtentTreeError(f"its extent tree claims a depth of {depth}, over {MAX_DEPTH}")
        # a stack of (node bytes, its depth, its logical range, its block or None: the root)
        stack = [(i_block, depth, 0, LOGICAL_END, None, 0)]
        while stack:
            node, depth, low, high, where, index = stack.pop()
            entries = _HEADER.unpack_from(node, 0)[1]
            if depth == 0:
                self._leaf(node, entries, low, high, where)
                continue
            if index >= entries:
                continue
            first, child, below_high = self._index(node, entries, index, low, high, where)
            stack.append((node, depth, low, high, where, index + 1))
            stack.append((self._node(child, depth - 1, where), depth - 1, first, below_high,
                          child, 0))  # fmt: skip
        return self.extents

    def _index(
        self, node: bytes, entries: int, index: int, low: int, high: int, where: int | None
    ) -> tuple[int, int, int]:
        """Index entry ``index`` of ``node``: its first logical block, its child's block and
        the end of the child's range (the next entry's first block, or the node's end)."""
        first, leaf_lo, leaf_hi, _ = _INDEX.unpack_from(node, _HEADER.size + index * _INDEX.size)
        if index + 1 < entries:
            after = _INDEX.unpack_from(node, _HEADER.size + (index + 1) * _INDEX.size)[0]
        else:
            after = high
        if not low <= first < after <= high:
            raise ExtentTreeError(
                f"{_node_name(where)}: index entry {index} (logical block {first}) is out of "
                "order or outside its node's range"
            )
        return first, leaf_hi << 32 | leaf_lo, after

    def _node(self, block: int, depth: int, parent: int | None) -> bytes:
        """The node at ``block``, checked, one level below ``parent``."""
        if not 0 < block < self.blocks:
            raise ExtentTreeError(
                f"{_node_name(parent)} points to block {block}, outside the filesystem"
            )
        if block in self.seen:
            raise ExtentTreeError(
                f"its extent tree reaches block {block} twice (a loop or a shared node)"
            )
        if len(self.seen) >= self.cap:
            raise ExtentTreeError(f"more than {self.cap} extent tree nodes", too_large=True)
        self.seen.add(block)
        data = self.read_block(block)
        if data is None or len(data) < self.block_size:
            raise ExtentTreeError(f"extent tree block {block} is unreadable")
        magic, entries, room, got, _ = _HEADER.unpack_from(data, 0)
        if magic != EXTENT_MAGIC:
            raise ExtentTreeError(f"extent tree block {block} holds no extent header")
        if got != depth:
            raise ExtentTreeError(
                f"extent tree block {block} has depth {got} where {depth} belongs"
            )
        if room > self.room or entries > room:
            raise ExtentTreeError(
                f"extent tree block {block} claims {entries} entries in room for {room}"
            )
        if entries == 0:
            raise ExtentTreeError(f"extent tree block {block} is empty")
        return data

    def _leaf(self, node: bytes, entries: int, low: int, high: int, where: int | None) -> None:
        for i in range(entries):
            first, length, start_hi, start_lo = _EXTENT.unpack_from(
                node, _HEADER.size + i * _EXTENT.size
            )
            unwritten = length > MAX_INIT_LENGTH
            if unwritten:
                length -= MAX_INIT_LENGTH
            start = start_hi << 32 | start_lo
            if length == 0:
                raise ExtentTreeError(f"{_node_name(where)}: extent {i} has no blocks")
            if first < max(low, self.next_logical) or first + length > high:
                raise ExtentTreeError(
                    f"{_node_name(where)}: extent {i} (logical blocks {first}-"
                    f"{first + length - 1}) overlaps another or lies outside its node's range"
                )
            if start + length > self.blocks or start == 0:
                raise ExtentTreeError(
                    f"{_node_name(where)}: extent {i} (blocks {start}-{start + length - 1}) "
                    "lies outside the filesystem"
                )
            if len(self.extents) >= self.cap:
                raise ExtentTreeError(f"more than {self.cap} extents", too_large=True)
            self.extents.append((first, length, start, unwritten))
            self.next_logical = first + length


def _node_name(block: int | None) -> str:
    return "its extent tree's root" if block is None else f"extent tree block {block}"
