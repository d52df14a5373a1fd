"""ext2/3/4 read without mounting: inodes and contents through ``pyfsext`` (libfsext), the
directories' blocks parsed here so that names come out as the bytes on disk.

The filesystem is opened exactly as it is: the primary superblock (at byte 1024) must be
there; a backup superblock is never used in its place. A directory's blocks are those its
extents (or block map) give, holes skipped; each block is a chain of
``ext4_dir_entry_2`` records (inode, record length, name length, file type, name). An htree
directory's index blocks read as records of inode 0 spanning the block, the checksum tail as a
record of inode 0: both are skipped, as the kernel's linear readers do. A record whose length
runs past its block or is too short for its name ends that block and is reported.
"""

from __future__ import annotations

import stat
import struct
from typing import Any, BinaryIO

import construct as cs

from forensics.fs.libyal import LibyalTree
from forensics.fs.tree import (
    FTYPE_TO_IFMT,
    Entry,
    Limits,
    Listing,
    Refusal,
    name_problem,
)

SUPERBLOCK_OFFSET = 1024
MAGIC = 0xEF53
INCOMPAT_FILETYPE = 0x2
INCOMPAT_64BIT = 0x80
INCOMPAT_INLINE_DATA = 0x8000
#: libfsext's extent flag for a hole
EXTENT_SPARSE = 1
#: the largest block size ext4 knows (64 KiB: s_log_block_size 6)
MAX_LOG_BLOCK_SIZE = 6

Superblock = cs.Struct(
    "inodes_count" / cs.Int32ul,
    "blocks_count_lo" / cs.Int32ul,
    cs.Padding(0x18 - 0x08),
    "log_block_size" / cs.Int32ul,
    cs.Padding(0x38 - 0x1C),
    "magic" / cs.Int16ul,
    cs.Padding(0x4C - 0x3A),
    "rev_level" / cs.Int32ul,
    cs.Padding(0x58 - 0x50),
    "inode_size" / cs.Int16ul,
    cs.Padding(0x5C - 0x5A),
    "feature_compat" / cs.Int32ul,
    "feature_incompat" / cs.Int32ul,
    "feature_ro_compat" / cs.Int32ul,
    cs.Padding(0x150 - 0x68),
    "blocks_count_hi" / cs.Int32ul,
)
SUPERBLOCK_SIZE = 1024

_DIRENT = struct.Struct("<IHBB")


class Ext4Tree(LibyalTree):
    """An ext2/3/4 filesystem on ``fileobj`` (a device of ``device_size`` bytes)."""

    label = "ext4"

    def __init__(
        self, volume: Any, fileobj: BinaryIO, device_size: int, limits: Limits, sb: cs.Container
    ) -> None:
        super().__init__(volume, fileobj, device_size, limits)
        self.block_size = 1024 << int(sb.log_block_size)
        self.filetype = bool(sb.feature_incompat & INCOMPAT_FILETYPE)
        self.superblock = sb

    def _extents(self, entry: Any) -> list[tuple[int, int, int]]:
        count = int(entry.number_of_extents)
        return [tuple(entry.get_extent(i)) for i in range(count)]

    def _size(self, ino: int, entry: Any, mode: int) -> int:
        if stat.S_ISDIR(mode):  # libfsext gives 0: the blocks the directory spans
            return sum(int(size) for _, size, _ in self._extents(entry))
        return int(entry.size)

    def _list_directory(self, ino: int, entry: Any) -> Listing | Refusal:
        extents = self._library(lambda: self._extents(entry), f"directory inode {ino}")
        if isinstance(extents, Refusal):
            return extents
        if not extents:  # inline data (or an empty directory): the library's own listing
            return self._library(lambda: library_listing(entry, self.limits), f"inode {ino}")
        listing = Listing()
        reader = DirReader(self, ino, listing)
        for offset, size, flags in extents:
            if flags & EXTENT_SPARSE:
                continue
            if not reader.read_extent(int(offset), int(size)):
                break
        return listing


class DirReader:
    """Reads one directory's blocks from the device and parses them into ``listing``, within
    the caps of the tree's :class:`Limits`."""

    def __init__(self, tree: Ext4Tree, ino: int, listing: Listing) -> None:
        self.tree, self.ino, self.listing = tree, ino, listing
        self.read = 0
        self.index = 0  # records met so far ("." and ".." are the first two)

    def read_extent(self, offset: int, size: int) -> bool:
        """Parse the blocks of one extent; False once a cap is reached or the device fails."""
        bs = self.tree.block_size
        limits = self.tree.limits
        for start in range(offset, offset + size, bs):
            if self.read + bs > limits.dir_bytes:
                self.listing.problems.append(
                    f"directory inode {self.ino} spans more than {limits.dir_bytes} bytes: "
                    "the rest is not read"
                )
                return False
            block = read_at(self.tree.fileobj, start, bs)
            self.read += bs
            if isinstance(block, Refusal) or len(block) < bs:
                what = block.detail if isinstance(block, Refusal) else "past the device's end"
                self.listing.problems.append(
                    f"directory inode {self.ino}: the block at byte {start} is unreadable ({what})"
                )
                continue
            self.index = parse_block(
                block, self.tree.filetype, limits, self.listing, self.index, start
            )
            if len(self.listing.entries) >= limits.dir_entries:
                self.listing.problems.append(
                    f"directory inode {self.ino} has more than {limits.dir_entries} entries: "
                    "the rest is not listed"
                )
                return False
        return True


def parse_block(
    block: bytes, filetype: bool, limits: Limits, listing: Listing, index: int, where: int
) -> int:
    """The records of one directory block into ``listing``; ``index`` counts the records of
    the directory met before (the first two are ``.`` and ``..``). Returns the new count."""
    bs = len(block)
    pos = 0
    while pos + _DIRENT.size <= bs:
        ino, rec_len, name_len, ftype = _DIRENT.unpack_from(block, pos)
        if bs >= 65536 and rec_len in (0, 65535):
            rec_len = bs  # ext4_rec_len_from_disk for 64 KiB blocks
        if not filetype:
            name_len, ftype = name_len | (ftype << 8), 0
        if rec_len < _DIRENT.size or rec_len % 4 or pos + rec_len > bs:
            listing.problems.append(
                f"a damaged directory record at byte {where + pos} (length {rec_len}): "
                "the rest of its block is skipped"
            )
            return index
        if _DIRENT.size + name_len > rec_len:
            listing.problems.append(
                f"a directory record at byte {where + pos} whose name ({name_len} bytes) "
                f"runs past its length {rec_len}: skipped"
            )
        elif ino:
            name = block[pos + 8 : pos + 8 + name_len]
            index = _add(listing, name, ino, ftype, index, limits, where + pos)
        pos += rec_len
    return index


def _add(
    listing: Listing, name: bytes, ino: int, ftype: int, index: int, limits: Limits, where: int
) -> int:
    if index < 2 and name == (b"." if index == 0 else b".."):
        return index + 1
    problem = name_problem(name, limits)
    if problem is not None:
        listing.problems.append(f"{problem} (inode {ino}, record at byte {where}): left out")
        return index + 1
    if len(listing.entries) < limits.dir_entries:
        listing.entries.append(Entry(name, ino, FTYPE_TO_IFMT.get(ftype, 0)))
    return index + 1


def library_listing(entry: Any, limits: Limits) -> Listing:
    """A directory's names as the library lists them (UTF-8 names only): for directories kept
    inline in the inode, which have no blocks to parse."""
    listing = Listing()
    count = int(entry.number_of_sub_file_entries)
    if count > limits.dir_entries:
        listing.problems.append(f"{count} entries, over {limits.dir_entries}: the rest left out")
        count = limits.dir_entries
    for i in range(count):
        sub = entry.get_sub_file_entry(i)
        try:
            name = str(sub.name).encode("utf-8", "surrogateescape")
        except (OSError, ValueError) as exc:
            listing.problems.append(f"entry {i}: its name is unreadable ({exc}): left out")
            continue
        problem = name_problem(name, limits)
        ino = int(sub.inode_number)
        if problem is not None:
            listing.problems.append(f"{problem} (inode {ino}): left out")
            continue
        listing.entries.append(Entry(name, ino, stat.S_IFMT(int(sub.file_mode))))
    return listing


def read_at(fileobj: BinaryIO, offset: int, size: int) -> bytes | Refusal:
    """``size`` bytes at ``offset`` of the device, the file position restored after (the
    library keeps its own idea of it)."""
    from forensics.fs.tree import UNREADABLE

    keep = fileobj.tell()
    try:
        fileobj.seek(offset)
        return fileobj.read(size) or b""
    except OSError as exc:
        return Refusal(UNREADABLE, str(exc))
    finally:
        fileobj.seek(keep)


def read_superblock(fileobj: BinaryIO) -> cs.Container | str:
    """The primary superblock, or why there is no ext filesystem here."""
    data = read_at(fileobj, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE)
    if isinstance(data, Refusal):
        return f"the ext4 superblock is unreadable: {data.detail}"
    if len(data) < SUPERBLOCK_SIZE:
        return "the device is too short to hold an ext4 superblock"
    if not any(data):
        return "the ext4 superblock (at byte 1024) is all zeros"
    sb = Superblock.parse(data)
    if sb.magic != MAGIC:
        return f"no ext4 superblock at byte 1024 (magic {sb.magic:#06x}, not {MAGIC:#06x})"
    if sb.log_block_size > MAX_LOG_BLOCK_SIZE:
        return f"the ext4 superblock gives a block size of 2**{10 + sb.log_block_size} bytes"
    return sb


def blocks_count(sb: cs.Container) -> int:
    high = int(sb.blocks_count_hi) if sb.feature_incompat & INCOMPAT_64BIT else 0
    return (high << 32) | int(sb.blocks_count_lo)
