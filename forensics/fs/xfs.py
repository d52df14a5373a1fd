"""xfs read without mounting: the filesystem opened through ``pyfsxfs`` (libfsxfs), plain
inodes, their lists of extents, symlinks and directories read here from their own bytes (names
and targets come out as the bytes on disk), file contents straight from the device through the
extents; the library reads what is left (B+trees of extents, extended attributes).

The primary superblock (at byte 0) must be there; no other allocation group's copy is used in
its place. A directory is read from its inode: a short-form directory lives in the inode's data
fork (read from the inode's own bytes, located from its number as the format defines); a
block, leaf or node directory in the directory blocks its extents give, up to its size. Each
directory block is recognised by its magic: a single-block directory (``XD2B``/``XDB3``, its
entries up to the leaf array at its end) or a data block (``XD2D``/``XDD3``); leaf, node and
free-index blocks hold no names and are skipped.
"""

from __future__ import annotations

import stat
import struct
from typing import Any, BinaryIO, NamedTuple

import construct as cs

from forensics.fs.content import Reserved, innermost, read_at
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
from forensics.fs.xfs_inode import (
    CORE_PARSED,
    FORMAT_EXTENTS,
    FORMAT_LOCAL,
    Core,
    ExtentListError,
    core_of,
    data_fork,
    decode,
    fork_extents,
)
from forensics.fs.xfs_inode import (
    MAGIC as MAGIC_INODE,
)

MAGIC = b"XFSB"
FORMAT_BTREE = 3
INCOMPAT_FTYPE = 0x1
VERSION2_FTYPE = 0x200
VERSION_5 = 5

Superblock = cs.Struct(
    "magic" / cs.Bytes(4),
    "blocksize" / cs.Int32ub,
    "dblocks" / cs.Int64ub,
    cs.Padding(48 - 16),
    "logstart" / cs.Int64ub,
    "rootino" / cs.Int64ub,
    cs.Padding(84 - 64),
    "agblocks" / cs.Int32ub,
    "agcount" / cs.Int32ub,
    cs.Padding(96 - 92),
    "logblocks" / cs.Int32ub,
    "versionnum" / cs.Int16ub,
    "sectsize" / cs.Int16ub,
    "inodesize" / cs.Int16ub,
    "inopblock" / cs.Int16ub,
    cs.Padding(120 - 108),
    "blocklog" / cs.Int8ub,
    "sectlog" / cs.Int8ub,
    "inodelog" / cs.Int8ub,
    "inopblog" / cs.Int8ub,
    "agblklog" / cs.Int8ub,
    cs.Padding(192 - 125),
    "dirblklog" / cs.Int8ub,
    cs.Padding(200 - 193),
    "features2" / cs.Int32ub,
    cs.Padding(216 - 204),
    "features_incompat" / cs.Int32ub,
)
SUPERBLOCK_SIZE = 220


#: directory block magics: single-block directories and data blocks, v4 and v5
BLOCK_MAGICS = (b"XD2B", b"XDB3")
DATA_MAGICS = (b"XD2D", b"XDD3")
#: blocks of a directory that hold no names: free-index blocks (magic at 0), leaf and node
#: blocks (magic at byte 8, after the sibling pointers)
OTHER_MAGICS = (b"XD2F", b"XDF3")
OTHER_MAGICS_AT_8 = tuple(
    m.to_bytes(2, "big") for m in (0xD2F1, 0xD2FF, 0x3DF1, 0x3DFF, 0xFEBE, 0x3EBE)
)
_TAIL = struct.Struct(">II")
_FREE_TAG = 0xFFFF
#: a remote symlink block's header on v5 filesystems (magic, offset, bytes, crc, uuid,
#: owner, block number, lsn), and its magic
SYMLINK_HEADER = 56
SYMLINK_MAGIC = b"XSLM"
#: an allocation group's first sectors: superblock, free space, inode and free list headers
AG_HEADER_SECTORS = 4


class Geometry(NamedTuple):
    """The superblock's numbers that place inodes and blocks, as plain integers."""

    blocksize: int
    agblocks: int
    agcount: int
    agblklog: int
    inopblog: int


#: libfsxfs's prefix of the security namespace's attributes
_LIBRARY_SECURE = b"secure."


#: an inode's attribute fork offset (0: no attributes) and format (1: kept in the inode)
_FORKOFF, _AFORMAT, _FORMAT_LOCAL = 82, 83, 1


class XfsTree(LibyalTree):
    """An xfs filesystem on ``fileobj`` (a device of ``device_size`` bytes)."""

    label = "xfs"

    def __init__(
        self, volume: Any, fileobj: BinaryIO, device_size: int, limits: Limits, sb: cs.Container
    ) -> None:
        super().__init__(volume, fileobj, device_size, limits)
        self.sb = sb
        self.v5 = (sb.versionnum & 0xF) == VERSION_5
        self.ftype = bool(
            sb.features_incompat & INCOMPAT_FTYPE if self.v5 else sb.features2 & VERSION2_FTYPE
        )
        self.dir_block = int(sb.blocksize) << int(sb.dirblklog)
        self.data_header = 64 if self.v5 else 16
        self.inode_size = int(sb.inodesize)
        self._geometry = Geometry(
            int(sb.blocksize),
            int(sb.agblocks),
            int(sb.agcount),
            int(sb.agblklog),
            int(sb.inopblog),
        )

    # -- where data may lie ----------------------------------------------------------------

    @property
    def filesystem_size(self) -> int:
        return int(self.sb.dblocks) * int(self.sb.blocksize)

    def to_device(self, offset: int) -> int | None:
        return self.device_offset(offset)

    def _reserved(self) -> Reserved:
        """Each allocation group's header sectors, and the log when it is internal."""
        sb = self.sb
        ag_bytes = int(sb.agblocks) * int(sb.blocksize)
        groups = min(int(sb.agcount), self.device_size // ag_bytes + 1)
        header = AG_HEADER_SECTORS * int(sb.sectsize)
        ranges = [(g * ag_bytes, g * ag_bytes + header, f"allocation group {g}'s headers")
                  for g in range(groups)]  # fmt: skip
        if sb.logstart:
            at = self.device_offset(int(sb.logstart) * int(sb.blocksize))
            if at is not None:
                ranges.append((at, at + int(sb.logblocks) * int(sb.blocksize), "the log"))
        return Reserved(ranges)

    # -- inodes decoded here ---------------------------------------------------------------

    def _decode(self, ino: int) -> DecodedInode | None:
        at = self.inode_offset(ino)
        if at is None:
            return None
        raw = read_at(self.fileobj, at, self.inode_size)
        if isinstance(raw, Refusal) or len(raw) < self.inode_size:
            return None
        return decode(raw, ino, self.volume)

    def extents_of(self, ino: int, entry: Any, size: int) -> list[tuple[int, int, int]] | Refusal:
        """A list of extent records in the inode read here, every record checked; a B+tree
        of them as the library lists it; none for data kept in the inode."""
        if isinstance(entry, DecodedInode):
            raw = entry.raw
        else:
            found = self.raw_inode(ino)
            if isinstance(found, Refusal):
                return found
            raw = found[1]
        fmt = raw[5]
        if fmt == FORMAT_LOCAL:
            return []
        if fmt != FORMAT_EXTENTS:
            return super().extents_of(ino, entry, size)
        g = self._geometry
        try:
            return fork_extents(
                raw, size, g.blocksize, g.agblocks, g.agcount, g.agblklog, self.limits.extents
            )
        except ExtentListError as exc:
            return Refusal(TOO_LARGE if exc.too_large else DAMAGED, f"inode {ino}: {exc}")

    # -- symlinks --------------------------------------------------------------------------

    def _link_target(self, ino: int, entry: Any, size: int) -> bytes | Refusal:
        found = self.raw_inode(ino)
        if isinstance(found, Refusal):
            return found
        core, raw = found
        if core.format == FORMAT_LOCAL:  # the target in the inode's data fork
            return data_fork(raw)[1][:size]
        if core.format not in (FORMAT_EXTENTS, FORMAT_BTREE):
            return Refusal(DAMAGED, f"symlink inode {ino} has data fork format {core.format}")
        bs = int(self.sb.blocksize)
        header = SYMLINK_HEADER if self.v5 else 0
        blocks = -(-size // (bs - header))
        data = self.read_extents(ino, entry, blocks * bs)
        if isinstance(data, Refusal):
            return data
        pieces = []
        for at in range(0, len(data), bs):
            if header and data[at : at + 4] != SYMLINK_MAGIC:
                what = f"symlink inode {ino}: its block {at // bs} is not a symlink block"
                return Refusal(DAMAGED, what)
            pieces.append(data[at + header : at + bs])
        return b"".join(pieces)[:size]

    def _shares_inode(self, other: LibyalTree, ino: int) -> bool:
        """The inode (its core, data fork, and attributes when they are kept inside it) in
        the same data blocks of the pool in both devices. Not told for an inode whose
        attributes lie in blocks of their own."""
        if not isinstance(other, XfsTree):
            return False
        device, theirs = innermost(self.fileobj), innermost(other.fileobj)
        shares = getattr(device, "shares_bytes", None)
        at, size = self.inode_offset(ino), self.inode_size
        if shares is None or at is None or at != other.inode_offset(ino):
            return False
        if size != other.inode_size or not shares(theirs, at, size):
            return False
        raw = read_at(self.fileobj, at, size)
        if isinstance(raw, Refusal) or len(raw) < CORE_PARSED:
            return False
        if stat.S_ISDIR(int.from_bytes(raw[2:4], "big")):
            return False  # listed as another type: a directory is always entered
        return raw[_FORKOFF] == 0 or raw[_AFORMAT] == _FORMAT_LOCAL

    def _xattr_name(self, name: bytes) -> bytes:
        """libfsxfs names the attributes of the XFS_ATTR_SECURE namespace ``secure.…``;
        Linux (and a tar's ``SCHILY.xattr.`` record) names them ``security.…``."""
        if name.startswith(_LIBRARY_SECURE):
            return b"security." + name[len(_LIBRARY_SECURE) :]
        return name

    # -- raw inodes ------------------------------------------------------------------------

    def inode_offset(self, ino: int) -> int | None:
        """Where inode ``ino`` lies on the device, or None when its number is impossible."""
        g = self._geometry
        agno = ino >> (g.agblklog + g.inopblog)
        agbno = (ino >> g.inopblog) & ((1 << g.agblklog) - 1)
        if agno >= g.agcount or agbno >= g.agblocks:
            return None
        block = agno * g.agblocks + agbno
        return block * g.blocksize + (ino & ((1 << g.inopblog) - 1)) * self.inode_size

    def device_offset(self, offset: int) -> int | None:
        """The device offset of an extent's ``offset`` as libfsxfs gives it: a filesystem
        block number (allocation group in the high bits, block in the group in the low ones)
        times the block size."""
        g = self._geometry
        fsblock, within = divmod(offset, g.blocksize)
        agno = fsblock >> g.agblklog
        agbno = fsblock & ((1 << g.agblklog) - 1)
        if agno >= g.agcount or agbno >= g.agblocks:
            return None
        return (agno * g.agblocks + agbno) * g.blocksize + within

    def raw_inode(self, ino: int) -> tuple[Core, bytes] | Refusal:
        """The inode's core and its whole bytes, checked: magic, and (v5) its own number."""
        at = self.inode_offset(ino)
        if at is None:
            return Refusal(DAMAGED, f"inode number {ino} lies outside the filesystem")
        raw = read_at(self.fileobj, at, self.inode_size)
        if isinstance(raw, Refusal):
            return raw
        if len(raw) < max(CORE_PARSED, self.inode_size):
            return Refusal(DAMAGED, f"inode {ino} lies past the device's end")
        core = core_of(raw)
        if core.magic != MAGIC_INODE or (core.version >= 3 and core.ino != ino):
            return Refusal(DAMAGED, f"inode {ino}: not an inode (bad magic or number)")
        return core, raw

    def _size(self, ino: int, entry: Any, mode: int) -> int:
        if stat.S_ISDIR(mode):  # libfsxfs gives 0: the inode's own di_size
            found = self.raw_inode(ino)
            if isinstance(found, Refusal):
                raise ValueError(found.detail)
            return int(found[0].size)
        return int(entry.size)

    # -- directories -----------------------------------------------------------------------

    def _list_directory(self, ino: int, entry: Any) -> Listing | Refusal:
        found = self.raw_inode(ino)
        if isinstance(found, Refusal):
            return found
        core, raw = found
        if core.format == FORMAT_LOCAL:
            return parse_shortform(data_fork(raw)[1], self.ftype, self.limits)
        if core.format not in (FORMAT_EXTENTS, FORMAT_BTREE):
            return Refusal(DAMAGED, f"directory inode {ino} has data fork format {core.format}")
        extents = self.extents_of(ino, entry, core.size)
        if isinstance(extents, Refusal):
            return extents
        listing = Listing()
        read = 0
        for offset, size, _flags in extents:
            at = self.device_offset(int(offset))
            if at is None:
                listing.problems.append(
                    f"directory inode {ino}: an extent at filesystem block "
                    f"{int(offset) // int(self.sb.blocksize)} lies outside the filesystem"
                )
                continue
            for start in range(at, at + int(size), self.dir_block):
                if read + self.dir_block > self.limits.dir_bytes:
                    listing.problems.append(
                        f"directory inode {ino} spans more than {self.limits.dir_bytes} bytes: "
                        "the rest is not read"
                    )
                    return listing
                read += self.dir_block
                block = read_at(self.fileobj, start, self.dir_block)
                if isinstance(block, Refusal) or len(block) < self.dir_block:
                    what = block.detail if isinstance(block, Refusal) else "past the device's end"
                    listing.problems.append(
                        f"directory inode {ino}: the block at byte {start} is unreadable ({what})"
                    )
                    continue
                parse_dir_block(block, self.data_header, self.ftype, self.limits, listing, start)
                if len(listing.entries) >= self.limits.dir_entries:
                    listing.problems.append(
                        f"directory inode {ino} has more than {self.limits.dir_entries} "
                        "entries: the rest is not listed"
                    )
                    return listing
        return listing


def parse_shortform(fork: bytes, ftype: bool, limits: Limits) -> Listing:
    """A short-form directory (in the inode): a header (count, i8count, parent) and entries
    (name length, offset tag, name, file type, inode number of 4 or 8 bytes)."""
    listing = Listing()
    if len(fork) < 6:
        listing.problems.append("a short-form directory shorter than its header")
        return listing
    count, i8count = fork[0], fork[1]
    width = 8 if i8count else 4
    pos = 2 + width
    for i in range(count or i8count):
        need = 3 + (1 if ftype else 0) + width
        if pos + need > len(fork):
            listing.problems.append(f"short-form entry {i} runs past the inode: the rest is lost")
            break
        name_len = fork[pos]
        end = pos + 3 + name_len + (1 if ftype else 0) + width
        if name_len == 0 or end > len(fork):
            listing.problems.append(f"short-form entry {i} runs past the inode: the rest is lost")
            break
        name = fork[pos + 3 : pos + 3 + name_len]
        kind = fork[pos + 3 + name_len] if ftype else 0
        ino = int.from_bytes(fork[end - width : end], "big")
        _add(listing, name, ino, kind, limits, f"short-form entry {i}")
        pos = end
    return listing


def parse_dir_block(
    block: bytes, header: int, ftype: bool, limits: Limits, listing: Listing, where: int
) -> None:
    """The names of one directory block (single-block or data block; others skipped)."""
    magic = block[:4]
    if magic in BLOCK_MAGICS:
        count, _stale = _TAIL.unpack_from(block, len(block) - _TAIL.size)
        end = len(block) - _TAIL.size - 8 * count
        if end < header:
            listing.problems.append(
                f"directory block at byte {where}: a leaf count of {count} does not fit"
            )
            return
    elif magic in DATA_MAGICS:
        end = len(block)
    elif magic in OTHER_MAGICS or block[8:10] in OTHER_MAGICS_AT_8:
        return  # leaf, node or free-index blocks: no names
    else:
        listing.problems.append(f"directory block at byte {where} is of no known kind: skipped")
        return
    pos = header
    while pos + 8 <= end:
        if int.from_bytes(block[pos : pos + 2], "big") == _FREE_TAG:
            length = int.from_bytes(block[pos + 2 : pos + 4], "big")
            if length < 8 or length % 8 or pos + length > end:
                listing.problems.append(
                    f"directory block at byte {where}: a free region of {length} bytes at "
                    f"{pos} is damaged; the rest of the block is skipped"
                )
                return
            pos += length
            continue
        name_len = block[pos + 8] if pos + 8 < end else 0
        size = (8 + 1 + name_len + (1 if ftype else 0) + 2 + 7) // 8 * 8
        if name_len == 0 or pos + size > end:
            listing.problems.append(
                f"directory block at byte {where}: the entry at {pos} runs past the block; "
                "the rest of the block is skipped"
            )
            return
        ino = int.from_bytes(block[pos : pos + 8], "big")
        name = block[pos + 9 : pos + 9 + name_len]
        kind = block[pos + 9 + name_len] if ftype else 0
        if name not in (b".", b"..") or pos >= header + 32:
            _add(listing, name, ino, kind, limits, f"the entry at byte {where + pos}")
        pos += size


def _add(listing: Listing, name: bytes, ino: int, kind: int, limits: Limits, where: str) -> None:
    problem = name_problem(name, limits)
    if problem is not None:
        listing.problems.append(f"{problem} (inode {ino}, {where}): left out")
        return
    if len(listing.entries) < limits.dir_entries:
        listing.entries.append(Entry(name, ino, FTYPE_TO_IFMT.get(kind, 0)))


def read_superblock(fileobj: BinaryIO) -> cs.Container | str:
    """The primary superblock, or why there is no xfs filesystem here."""
    data = read_at(fileobj, 0, SUPERBLOCK_SIZE)
    if isinstance(data, Refusal):
        return f"the xfs superblock is unreadable: {data.detail}"
    if len(data) < SUPERBLOCK_SIZE:
        return "the device is too short to hold an xfs superblock"
    sb = Superblock.parse(data)
    if sb.magic != MAGIC:
        return "no xfs superblock at byte 0"
    problem = _geometry_problem(sb)
    if problem is not None:
        return f"the xfs superblock is damaged: {problem}"
    return sb


def _geometry_problem(sb: cs.Container) -> str | None:
    if not 512 <= sb.blocksize <= 65536 or sb.blocksize != 1 << sb.blocklog:
        return f"block size {sb.blocksize}"
    if not 256 <= sb.inodesize <= 2048 or sb.inodesize != 1 << sb.inodelog:
        return f"inode size {sb.inodesize}"
    if sb.inopblock != sb.blocksize // sb.inodesize or sb.inopblock != 1 << sb.inopblog:
        return f"{sb.inopblock} inodes per block"
    if sb.agblocks == 0 or sb.agcount == 0 or sb.agblklog > 31 or sb.agblocks > 1 << sb.agblklog:
        return f"allocation groups of {sb.agblocks} blocks ({sb.agcount} of them)"
    if sb.dirblklog > 6:
        return f"directory blocks of 2**{sb.dirblklog} filesystem blocks"
    return None
