"""ext4's block groups: where the group descriptors, bitmaps, inode tables and superblock
copies lie, from the primary superblock and the group descriptor table.

What the readers need of it: the place of an inode (to read a fast symlink's target or an
inline directory from the inode's own bytes, which the library does not hand out), and the
device ranges that hold the filesystem's own structures (a file's data extent that covers
one is damage, never read as the file's bytes). The table is read once, whole, with a cap:
a superblock that claims more groups than the device can hold, or than the cap, leaves the
groups unknown (:attr:`Groups.problem` says why).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import BinaryIO

import construct as cs
import numpy as np

from forensics.formats.thin import numpy_dtype
from forensics.fs.content import Reserved, read_at
from forensics.fs.tree import Refusal

INCOMPAT_META_BG = 0x10
INCOMPAT_64BIT = 0x80
INCOMPAT_FLEX_BG = 0x200
RO_COMPAT_SPARSE_SUPER = 0x1
COMPAT_SPARSE_SUPER2 = 0x200
#: the group descriptor table read at most (half a million groups of 64 bytes)
MAX_TABLE_BYTES = 32 << 20
SUPERBLOCK_OFFSET = 1024

GroupDescriptor32 = cs.Struct(
    "block_bitmap_lo" / cs.Int32ul,
    "inode_bitmap_lo" / cs.Int32ul,
    "inode_table_lo" / cs.Int32ul,
    cs.Padding(0x20 - 0x0C),
)
GroupDescriptor64 = cs.Struct(
    "block_bitmap_lo" / cs.Int32ul,
    "inode_bitmap_lo" / cs.Int32ul,
    "inode_table_lo" / cs.Int32ul,
    cs.Padding(0x20 - 0x0C),
    "block_bitmap_hi" / cs.Int32ul,
    "inode_bitmap_hi" / cs.Int32ul,
    "inode_table_hi" / cs.Int32ul,
)


class Groups:
    """The block groups of the ext4 filesystem whose primary superblock is ``sb``."""

    def __init__(self, sb: cs.Container, fileobj: BinaryIO, device_size: int) -> None:
        self.sb = sb
        self.block_size = bs = 1024 << int(sb.log_block_size)
        self.inode_size = int(sb.inode_size) if sb.rev_level >= 1 else 128
        self.inodes_per_group = int(sb.inodes_per_group)
        self.blocks_per_group = int(sb.blocks_per_group)
        self.first_data_block = int(sb.first_data_block)
        #: the block that holds the primary superblock (byte 1024): block 1 of 1 KiB blocks
        #: whatever the first data block says (0 with bigalloc), else block 0
        self.sb_block = SUPERBLOCK_OFFSET // bs
        wide = bool(sb.feature_incompat & INCOMPAT_64BIT)
        self.desc_size = int(sb.desc_size) if wide else 32
        self.meta_bg = bool(sb.feature_incompat & INCOMPAT_META_BG)
        self.blocks = blocks_count(sb)
        #: why the groups are unknown (None: they are known)
        self.problem: str | None = self._geometry_problem(device_size)
        self.count = self.table_blocks = 0
        #: inodes that can be located (none while the groups are unknown)
        self.inodes = 0
        self.per_block = bs // self.desc_size if self.problem is None else 1
        self.block_bitmap = self.inode_bitmap = self.inode_table = np.zeros(0, np.int64)
        if self.problem is None:
            self.count = -(-(self.blocks - self.first_data_block) // self.blocks_per_group)
            self.table_blocks = -(-self.count * self.desc_size // bs)
            self.problem = self._read_table(fileobj, device_size)

    def _geometry_problem(self, device_size: int) -> str | None:
        bs, size = self.block_size, self.inode_size
        if not self.blocks_per_group or not self.inodes_per_group:
            return "the superblock gives groups of no blocks or no inodes"
        if size < 128 or size & (size - 1) or size > bs:
            return f"the superblock gives inodes of {size} bytes"
        ds = self.desc_size
        if ds != 32 and (ds < 64 or ds & (ds - 1) or ds > min(bs, 1024)):
            return f"the superblock gives group descriptors of {ds} bytes"
        if self.blocks <= self.first_data_block:
            return f"the superblock gives {self.blocks} blocks"
        groups = -(-(self.blocks - self.first_data_block) // self.blocks_per_group)
        need = groups * ds
        if need > min(MAX_TABLE_BYTES, device_size):
            return f"{groups} block groups: their descriptors are not read (over {MAX_TABLE_BYTES})"
        if self.inodes_per_group * self.inode_size > self.blocks_per_group * bs:
            return f"{self.inodes_per_group} inodes per group do not fit in a group"
        return None

    # -- the descriptor table ---------------------------------------------------------------

    def _read_table(self, fileobj: BinaryIO, device_size: int) -> str | None:
        bs = self.block_size
        parts = []
        for at, blocks in self._table_runs():
            if at + blocks * bs > device_size:
                return f"the group descriptors at byte {at} lie past the device's end"
            data = read_at(fileobj, at, blocks * bs)
            if isinstance(data, Refusal) or len(data) < blocks * bs:
                why = data.detail if isinstance(data, Refusal) else "cut short"
                return f"the group descriptors at byte {at} are unreadable ({why})"
            parts.append(data)
        table = b"".join(parts)[: self.count * self.desc_size]
        declaration = GroupDescriptor64 if self.desc_size >= 64 else GroupDescriptor32
        rows = np.frombuffer(table, dtype=numpy_dtype(declaration, self.desc_size))

        def field(name: str) -> np.ndarray:
            value = rows[name + "_lo"].astype(np.int64)
            if self.desc_size >= 64:
                value |= rows[name + "_hi"].astype(np.int64) << 32
            return value

        block_bitmap, inode_bitmap = field("block_bitmap"), field("inode_bitmap")
        inode_table = field("inode_table")
        problem = self._misplaced(block_bitmap, inode_bitmap, inode_table)
        if problem is not None:
            return f"the group descriptors are damaged: {problem}"
        self.block_bitmap, self.inode_bitmap = block_bitmap, inode_bitmap
        self.inode_table = inode_table
        self.inodes = int(self.sb.inodes_count)
        return None

    def _misplaced(
        self, block_bitmap: np.ndarray, inode_bitmap: np.ndarray, inode_table: np.ndarray
    ) -> str | None:
        """The first bitmap or inode table that lies where the kernel refuses to mount one
        (``ext4_check_descriptors``): outside its group (anywhere in the filesystem with
        flex_bg), or over the superblock and descriptors at the start. A superblock that
        claims more blocks than there are makes a descriptor table of other blocks' bytes:
        this is where it shows."""
        groups = np.arange(self.count, dtype=np.int64)
        head = self.sb_block + 1 + self._descriptor_blocks(0)
        if self.sb.feature_incompat & INCOMPAT_FLEX_BG:
            low = np.full(self.count, self.first_data_block, np.int64)
            high = np.full(self.count, self.blocks, np.int64)
        else:
            low = self.first_data_block + groups * self.blocks_per_group
            high = np.minimum(low + self.blocks_per_group, self.blocks)
        low = np.maximum(low, head)
        table = -(-self.inodes_per_group * self.inode_size // self.block_size)
        for what, starts, length in (
            ("block bitmap", block_bitmap, 1),
            ("inode bitmap", inode_bitmap, 1),
            ("inode table", inode_table, table),
        ):
            bad = np.flatnonzero((starts < low) | (starts + length > high))
            if bad.size:
                g = int(bad[0])
                return (
                    f"group {g}'s {what} at block {int(starts[g])} lies outside blocks "
                    f"{int(low[g])}-{int(high[g]) - 1}"
                )
        return None

    def _table_runs(self) -> Iterator[tuple[int, int]]:
        """(device offset, blocks) of the descriptor table's blocks, in order."""
        bs = self.block_size
        first = (self.sb_block + 1) * bs
        if not self.meta_bg:
            yield first, self.table_blocks
            return
        plain = min(int(self.sb.first_meta_bg), self.table_blocks)
        if plain:
            yield first, plain
        for meta in range(plain, self.table_blocks):
            group = meta * self.per_block
            yield (self.group_start(group) + self._super_blocks(group)) * bs, 1

    # -- places -----------------------------------------------------------------------------

    def group_start(self, group: int) -> int:
        return self.first_data_block + group * self.blocks_per_group

    def has_super(self, group: int) -> int:
        """1 when group ``group`` holds a copy of the superblock, else 0."""
        if group == 0:
            return 1
        if self.sb.feature_compat & COMPAT_SPARSE_SUPER2:
            return int(group in tuple(self.sb.backup_bgs))
        if not self.sb.feature_ro_compat & RO_COMPAT_SPARSE_SUPER or group == 1:
            return 1
        for base in (3, 5, 7):
            power = base
            while power < group:
                power *= base
            if power == group:
                return 1
        return 0

    def _super_blocks(self, group: int) -> int:
        """Blocks before group ``group``'s descriptors: its superblock copy's, and in group 0
        of 1 KiB blocks that start at block 0 (bigalloc), the boot block too."""
        if group == 0:
            return self.sb_block + 1 - self.first_data_block
        return self.has_super(group)

    def inode_offset(self, ino: int) -> int | None:
        """The device offset of inode ``ino``, or None when it has none."""
        if not 1 <= ino <= self.inodes:
            return None
        group, index = divmod(ino - 1, self.inodes_per_group)
        if group >= self.count:
            return None
        return self._table_offsets[group] + index * self.inode_size

    @functools.cached_property
    def _table_offsets(self) -> list[int]:
        """Each group's inode table's device offset, as Python ints (an item of a numpy
        array costs more to fetch than a list's, and one is fetched per inode read)."""
        return (self.inode_table * self.block_size).tolist()

    def reserved(self) -> Reserved:
        """The ranges of the superblock and its copies, the descriptor tables (and the
        blocks reserved for their growth), the bitmaps and the inode tables."""
        bs = self.block_size
        if self.problem is not None:  # not even the descriptors' extent is known
            return Reserved([(0, (self.sb_block + 1) * bs, "the superblock")])
        head = self.sb_block + 1 + self._descriptor_blocks(0)
        groups = np.arange(1, self.count, dtype=np.int64)
        copies = self._super_blocks_of(groups) + self._descriptor_blocks_of(groups)
        starts = self.first_data_block + groups * self.blocks_per_group
        table = -(-self.inodes_per_group * self.inode_size // bs)
        return Reserved.of_arrays(
            (
                (np.zeros(1, np.int64), np.array([head * bs]), "the superblock and descriptors"),
                (starts * bs, (starts + copies) * bs, "a superblock copy and its descriptors"),
                (self.block_bitmap * bs, (self.block_bitmap + 1) * bs, "a block bitmap"),
                (self.inode_bitmap * bs, (self.inode_bitmap + 1) * bs, "an inode bitmap"),
                (self.inode_table * bs, (self.inode_table + table) * bs, "an inode table"),
            )
        )

    def _descriptor_blocks(self, group: int) -> int:
        """Blocks of descriptors (and reserved for them) after group ``group``'s superblock
        copy, as the kernel's ``ext4_bg_num_gdb`` counts them."""
        return int(self._descriptor_blocks_of(np.array([group], np.int64))[0])

    def _descriptor_blocks_of(self, groups: np.ndarray) -> np.ndarray:
        plain_count = self.table_blocks
        if self.meta_bg:
            plain_count = min(int(self.sb.first_meta_bg), self.table_blocks)
        plain = self._has_super_of(groups) * (plain_count + int(self.sb.reserved_gdt_blocks))
        if not self.meta_bg:
            return plain
        within = groups % self.per_block
        meta = ((within == 0) | (within == 1) | (within == self.per_block - 1)).astype(np.int64)
        return np.where(groups // self.per_block < int(self.sb.first_meta_bg), plain, meta)

    def _super_blocks_of(self, groups: np.ndarray) -> np.ndarray:
        """:meth:`_super_blocks` of each group (none of them group 0)."""
        return self._has_super_of(groups)

    def _has_super_of(self, groups: np.ndarray) -> np.ndarray:
        """:meth:`has_super` of each group, 1 or 0."""
        if self.sb.feature_compat & COMPAT_SPARSE_SUPER2:
            backups = [int(b) for b in self.sb.backup_bgs if b]
            has = np.isin(groups, backups)
        elif not self.sb.feature_ro_compat & RO_COMPAT_SPARSE_SUPER:
            has = np.ones(len(groups), bool)
        else:
            powers = [1]
            for base in (3, 5, 7):
                power = base
                while power < max(self.count, 2):
                    powers.append(power)
                    power *= base
            has = np.isin(groups, powers)
        return (has | (groups == 0)).astype(np.int64)


def blocks_count(sb: cs.Container) -> int:
    high = int(sb.blocks_count_hi) if sb.feature_incompat & INCOMPAT_64BIT else 0
    return (high << 32) | int(sb.blocks_count_lo)
