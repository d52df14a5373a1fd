"""ext2/3/4 read without mounting: the filesystem opened through ``pyfsext`` (libfsext), plain
inodes, extent trees, inline data and directories read here from their own bytes (names and
targets come out as the bytes on disk), file contents straight from the device through the
extents; the library reads what is left (unusual inodes, block maps, extended attributes).

The filesystem is opened exactly as it is: the primary superblock (at byte 1024) must be
there; a backup superblock is never used in its place. A directory's blocks are those its
extents (or block map) give, holes skipped; each block is a chain of
``ext4_dir_entry_2`` records (inode, record length, name length, file type, name). An htree
directory's index blocks read as records of inode 0 spanning the block, the checksum tail as a
record of inode 0: both are skipped, as the kernel's linear readers do. A record whose length
runs past its block or is too short for its name ends that block and is reported. A directory
kept inside its inode (``inline_data``) is parsed the same way from the inode's own bytes
(``i_block`` after the parent's number, then the ``system.data`` attribute).

A symlink's target is read as bytes too (the library gives it only as UTF-8 text): a fast
symlink's from ``i_block``, a slow one's from its first block through its extents.
"""

from __future__ import annotations

import io
import stat
import struct
from typing import Any, BinaryIO

import construct as cs

from forensics.fs.content import EXTENT_SPARSE, Layout, Reserved, innermost, read_at
from forensics.fs.ext4_extents import (
    EXTENT_MAGIC,
    MAX_INIT_LENGTH,
    ROOT_ENTRIES,
    ExtentTreeError,
    root_depth,
    walk_extents,
)
from forensics.fs.ext4_groups import Groups, blocks_count
from forensics.fs.ext4_inode import (
    GOOD_OLD_INODE_SIZE,
    XATTR_INDEX_SYSTEM,
    all_xattrs,
    decode,
    file_acl,
    in_inode_xattr,
)
from forensics.fs.libyal import DecodedInode, LibyalTree
from forensics.fs.tree import (
    DAMAGED,
    FTYPE_TO_IFMT,
    TOO_LARGE,
    Entry,
    Limits,
    Listing,
    Refusal,
    name_problem,
)

SUPERBLOCK_OFFSET = 1024
MAGIC = 0xEF53
INCOMPAT_FILETYPE = 0x2
INCOMPAT_INLINE_DATA = 0x8000
INCOMPAT_64BIT = 0x80
#: xattr values kept in inodes of their own (``ea_inode``)
INCOMPAT_EA_INODE = 0x400
#: the largest block size ext4 knows (64 KiB: s_log_block_size 6)
MAX_LOG_BLOCK_SIZE = 6

Superblock = cs.Struct(
    "inodes_count" / cs.Int32ul,
    "blocks_count_lo" / cs.Int32ul,
    cs.Padding(0x14 - 0x08),
    "first_data_block" / cs.Int32ul,
    "log_block_size" / cs.Int32ul,
    cs.Padding(0x20 - 0x1C),
    "blocks_per_group" / cs.Int32ul,
    cs.Padding(0x28 - 0x24),
    "inodes_per_group" / cs.Int32ul,
    cs.Padding(0x38 - 0x2C),
    "magic" / cs.Int16ul,
    cs.Padding(0x4C - 0x3A),
    "rev_level" / cs.Int32ul,
    cs.Padding(0x58 - 0x50),
    "inode_size" / cs.Int16ul,
    cs.Padding(0x5C - 0x5A),
    "feature_compat" / cs.Int32ul,
    "feature_incompat" / cs.Int32ul,
    "feature_ro_compat" / cs.Int32ul,
    cs.Padding(0xCE - 0x68),
    "reserved_gdt_blocks" / cs.Int16ul,
    cs.Padding(0xFE - 0xD0),
    "desc_size" / cs.Int16ul,
    cs.Padding(0x104 - 0x100),
    "first_meta_bg" / cs.Int32ul,
    cs.Padding(0x150 - 0x108),
    "blocks_count_hi" / cs.Int32ul,
    cs.Padding(0x24C - 0x154),
    "backup_bgs" / cs.Array(2, cs.Int32ul),
)
SUPERBLOCK_SIZE = 1024

_DIRENT = struct.Struct("<IHBB")
_EXTENT_HEADER = struct.Struct("<HHHHI")
_EXTENT = struct.Struct("<IHHI")
_SIZE = struct.Struct("<I")
_HALF = struct.Struct("<H")
#: an inode's ``i_block`` (60 bytes: extents, block map, or a short target or inline data)
I_BLOCK = slice(0x28, 0x28 + 60)
FLAG_INLINE_DATA = 0x10000000
FLAG_EXTENTS = 0x80000
#: an inline directory's ``i_block`` starts with its parent's inode number
INLINE_DOTDOT = 4


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
        self.groups = Groups(sb, fileobj, device_size)
        self.inode_size = self.groups.inode_size
        if self.groups.problem is not None:
            self.notes.append(
                f"{self.groups.problem}: inodes are read through the library alone, and file "
                "data is not held against the filesystem's own structures"
            )

    @property
    def filesystem_size(self) -> int:
        return blocks_count(self.superblock) * self.block_size

    def _decode(self, ino: int) -> DecodedInode | None:
        at = self.groups.inode_offset(ino)
        if at is None:
            return None
        raw = read_at(self.fileobj, at, self.inode_size)
        if isinstance(raw, Refusal) or len(raw) < self.inode_size:
            return None
        return decode(raw, ino, self.block_size, self.volume)

    def _shares_inode(self, other: LibyalTree, ino: int) -> bool:
        """The inode's record (its stat, in-inode xattrs, inline data, extent root) and its
        xattr block, when it has one, in the same data blocks of the pool in both devices.
        Not told on a filesystem whose xattr values may lie in inodes of their own."""
        if not isinstance(other, Ext4Tree) or self.superblock.feature_incompat & INCOMPAT_EA_INODE:
            return False
        device, theirs = innermost(self.fileobj), innermost(other.fileobj)
        shares = getattr(device, "shares_bytes", None)
        at = self.groups.inode_offset(ino)
        size, bs = self.inode_size, self.block_size
        if shares is None or at is None or at != other.groups.inode_offset(ino):
            return False
        if size != other.inode_size or bs != other.block_size or not shares(theirs, at, size):
            return False
        raw = read_at(self.fileobj, at, size)
        if isinstance(raw, Refusal) or len(raw) < GOOD_OLD_INODE_SIZE:
            return False
        if stat.S_ISDIR(_HALF.unpack_from(raw, 0)[0]):
            return False  # listed as another type: a directory is always entered
        acl = file_acl(raw, bool(self.superblock.feature_incompat & INCOMPAT_64BIT))
        return not acl or shares(theirs, acl * bs, bs)

    def _read_xattrs(self, entry: Any, ino: int) -> dict[bytes, bytes]:
        """A decoded inode's attributes read from its own bytes and its xattr block (no
        library entry fetched for them); anything unusual is the library's, as before."""
        if isinstance(entry, DecodedInode) and len(entry.raw) >= GOOD_OLD_INODE_SIZE:
            found = self._own_xattrs(entry.raw)
            if found is not None:
                return found
        return super()._read_xattrs(entry, ino)

    def _own_xattrs(self, raw: bytes) -> dict[bytes, bytes] | None:
        if self.superblock.feature_incompat & INCOMPAT_EA_INODE:
            return None
        acl = file_acl(raw, bool(self.superblock.feature_incompat & INCOMPAT_64BIT))
        block = None
        if acl:
            if acl >= self.groups.blocks:
                return None
            block = read_at(self.fileobj, acl * self.block_size, self.block_size)
            if isinstance(block, Refusal) or len(block) < self.block_size:
                return None
        limits = self.limits
        return all_xattrs(raw, block, limits.xattrs, limits.xattr_value)

    def _reserved(self) -> Reserved:
        return self.groups.reserved()

    def _extents(self, entry: Any) -> list[tuple[int, int, int]]:
        count = int(entry.number_of_extents)
        return [tuple(entry.get_extent(i)) for i in range(count)]

    def extents_of(self, ino: int, entry: Any, size: int) -> list[tuple[int, int, int]] | Refusal:
        """An extent-mapped inode's extents walked here, from its own bytes, with every check
        of :mod:`~forensics.fs.ext4_extents`; a block-mapped one's as the library lists them;
        none for data kept inside the inode."""
        raw = entry.raw if isinstance(entry, DecodedInode) else self._own_bytes(ino)
        if raw is None:
            return super().extents_of(ino, entry, size)
        if isinstance(raw, Refusal):
            return raw
        flags = _SIZE.unpack_from(raw, 0x20)[0]
        if flags & FLAG_INLINE_DATA:
            return []  # kept in the inode
        if not flags & FLAG_EXTENTS:
            return super().extents_of(ino, entry, size)
        try:
            return walk_extents(
                raw[I_BLOCK],
                size,
                self.block_size,
                self.groups.blocks,
                self._tree_block,
                self.limits.extents,
            )
        except ExtentTreeError as exc:
            return Refusal(TOO_LARGE if exc.too_large else DAMAGED, f"inode {ino}: {exc}")

    def layout(self, ino: int, entry: Any, size: int) -> Layout | Refusal | None:
        """As the libyal trees' (extents walked, then planned), with a quick way for the
        usual file: its data in one extent that the inode holds itself."""
        if size and isinstance(entry, DecodedInode):
            single = self._single_extent(entry.raw, size)
            if single is not None:
                return single
        return super().layout(ino, entry, size)

    def _single_extent(self, raw: bytes, size: int) -> Layout | None:
        """The layout of a file of ``size`` bytes whose extent tree is one written extent in
        ``i_block``, from logical block 0, covering the size, inside the filesystem and clear
        of its own structures; None for any other file (or any doubt): the full walk and
        plan then read it, or say what is wrong with it, as for every file."""
        flags = _SIZE.unpack_from(raw, 0x20)[0]
        if flags & FLAG_INLINE_DATA or not flags & FLAG_EXTENTS:
            return None
        magic, entries, room, depth, _ = _EXTENT_HEADER.unpack_from(raw, I_BLOCK.start)
        if magic != EXTENT_MAGIC or entries != 1 or room > ROOT_ENTRIES or depth:
            return None
        first, length, start_hi, start_lo = _EXTENT.unpack_from(raw, I_BLOCK.start + 12)
        start = start_hi << 32 | start_lo
        bs = self.block_size
        if first or not 0 < length <= MAX_INIT_LENGTH or size > length * bs:
            return None  # a hole first, an unwritten extent, or a hole after it
        if not 0 < start or start + length > self.groups.blocks or self.limits.extents < 1:
            return None
        at = start * bs
        bounds = self.bounds
        if at + size > bounds.end or bounds.reserved.overlap(at, size) is not None:
            return None
        return Layout(size, [0], [size], [at])

    def _explain(self, ino: int, refusal: Refusal) -> Refusal:
        """The library refuses an inode whose extent tree it cannot walk with a word on
        depth; the tree walked here adds the node and what is wrong with it (a loop)."""
        raw = self.raw_inode(ino)
        if isinstance(raw, Refusal) or not _SIZE.unpack_from(raw, 0x20)[0] & FLAG_EXTENTS:
            return refusal
        size = _SIZE.unpack_from(raw, 0x04)[0] | _SIZE.unpack_from(raw, 0x6C)[0] << 32
        try:
            walk_extents(
                raw[I_BLOCK], size, self.block_size, self.groups.blocks, self._tree_block, 1 << 16
            )
        except ExtentTreeError as exc:
            return Refusal(refusal.kind, f"{refusal.detail}: {exc}", refusal.mode)
        return refusal

    def _tree_block(self, number: int) -> bytes | None:
        data = read_at(self.fileobj, number * self.block_size, self.block_size)
        return None if isinstance(data, Refusal) else data

    def _size(self, ino: int, entry: Any, mode: int) -> int:
        if stat.S_ISDIR(mode):  # libfsext gives 0: the blocks the directory spans
            spans = sum(int(size) for _, size, _ in self._extents(entry))
            if spans:
                return spans
            raw = self.raw_inode(ino)  # kept inline: the inode's own size
            if isinstance(raw, Refusal):
                raise ValueError(raw.detail)
            low, high = _SIZE.unpack_from(raw, 0x04)[0], _SIZE.unpack_from(raw, 0x6C)[0]
            return low | high << 32
        return int(entry.size)

    # -- the inode's own bytes --------------------------------------------------------------

    def _own_bytes(self, ino: int) -> bytes | Refusal | None:
        """Inode ``ino``'s bytes; None when the block groups are unknown (damaged
        descriptors): what needs them is then read through the library, as it can."""
        if self.groups.problem is not None:
            return None
        return self.raw_inode(ino)

    def raw_inode(self, ino: int) -> bytes | Refusal:
        """Inode ``ino``'s bytes, from the inode table its group descriptor names."""
        at = self.groups.inode_offset(ino)
        if at is None:
            why = self.groups.problem or "no such inode number"
            return Refusal(DAMAGED, f"inode {ino} cannot be located: {why}")
        raw = read_at(self.fileobj, at, self.inode_size)
        if isinstance(raw, Refusal):
            return raw
        if len(raw) < self.inode_size:
            return Refusal(DAMAGED, f"inode {ino} lies past the device's end")
        return raw

    def _inline(self, ino: int, entry: Any) -> tuple[bytes, bytes, int] | Refusal:
        """A file kept in its inode: the 60 bytes of ``i_block``, the rest kept in the
        ``system.data`` attribute (read from the inode's own bytes: the library refuses some
        that e2fsprogs writes), and the inode's device offset (for messages)."""
        raw = self.raw_inode(ino)
        if isinstance(raw, Refusal):
            return raw
        if not _SIZE.unpack_from(raw, 0x20)[0] & FLAG_INLINE_DATA:
            return Refusal(DAMAGED, f"inode {ino} has neither blocks nor inline data")
        try:
            rest = in_inode_xattr(raw, XATTR_INDEX_SYSTEM, b"data") or b""
        except ValueError as exc:
            return Refusal(DAMAGED, f"inode {ino}'s inline data: {exc}")
        return raw[I_BLOCK], rest, self.groups.inode_offset(ino) or 0

    def _inline_file(self, ino: int, entry: Any, size: int) -> BinaryIO | Refusal:
        inline = self._inline(ino, entry)
        if isinstance(inline, Refusal):
            return inline
        data = (inline[0] + inline[1])[:size]
        if len(data) < size:
            return Refusal(DAMAGED, f"inode {ino} keeps {len(data)} of its {size} bytes inline")
        return io.BytesIO(data)

    def _link_target(self, ino: int, entry: Any, size: int) -> bytes | Refusal:
        raw = self._own_bytes(ino)
        if raw is None:  # the library's (UTF-8 only)
            target = self._library(lambda: entry.symbolic_link_target, f"inode {ino}'s target")
            if isinstance(target, Refusal) or target is None:
                return target or Refusal(DAMAGED, f"inode {ino} has no target")
            return str(target).encode("utf-8", "surrogateescape")
        if isinstance(raw, Refusal):
            return raw
        flags = _SIZE.unpack_from(raw, 0x20)[0]
        if flags & FLAG_INLINE_DATA:
            inline = self._inline(ino, entry)
            if isinstance(inline, Refusal):
                return inline
            return (inline[0] + inline[1])[:size]
        if flags & FLAG_EXTENTS and root_depth(raw[I_BLOCK]) is not None:
            return self.read_extents(ino, entry, size)  # a slow symlink: in its first block
        if not flags & FLAG_EXTENTS:  # a block map: a slow symlink's names its block
            blocks = self._library(lambda: int(entry.number_of_extents), f"inode {ino}")
            if isinstance(blocks, Refusal):
                return blocks
            if blocks:
                return self.read_extents(ino, entry, size)
        return raw[I_BLOCK][:size]  # a fast symlink: the target in i_block

    # -- directories ------------------------------------------------------------------------

    def _list_directory(self, ino: int, entry: Any) -> Listing | Refusal:
        raw = self._own_bytes(ino)
        if isinstance(raw, Refusal):
            return raw
        if raw is None:
            extents = self._library(lambda: self._extents(entry), f"directory inode {ino}")
        else:
            size = _SIZE.unpack_from(raw, 0x04)[0] | _SIZE.unpack_from(raw, 0x6C)[0] << 32
            extents = self.extents_of(ino, entry, size)
        if isinstance(extents, Refusal):
            return extents
        if not extents:
            return self._inline_listing(ino, entry)
        listing = Listing()
        reader = DirReader(self, ino, listing)
        for offset, size, flags in extents:
            if flags & EXTENT_SPARSE:
                continue
            if not reader.read_extent(int(offset), int(size)):
                break
        return listing

    def _inline_listing(self, ino: int, entry: Any) -> Listing | Refusal:
        """A directory kept in its inode: the parent's number in the first 4 bytes of
        ``i_block``, then records as in a block, and more records in ``system.data``."""
        inline = self._inline(ino, entry)
        if isinstance(inline, Refusal):
            return inline
        head, rest, at = inline
        listing = Listing()
        index = parse_block(
            head[INLINE_DOTDOT:], self.filetype, self.limits, listing, 2, at + 0x28 + 4
        )
        if rest:
            parse_block(rest, self.filetype, self.limits, listing, index, at)
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
    entries, cap, name_cap = listing.entries, limits.dir_entries, limits.name
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
            if (  # the usual name: nothing for name_problem to say (as _add would ask)
                index > 1
                and 0 < name_len <= name_cap
                and b"/" not in name
                and b"\0" not in name
                and name != b"."
                and name != b".."
            ):
                if len(entries) < cap:
                    entries.append(Entry(name, ino, FTYPE_TO_IFMT.get(ftype, 0)))
                index += 1
            else:
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
