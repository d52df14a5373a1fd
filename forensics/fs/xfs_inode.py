"""xfs inodes read from their own bytes, for the common case: what :meth:`lstat` and a file's
read need, without a call into the library per inode.

An inode is decoded here when its core is plain: the ``IN`` magic, a known file type, a data
fork format this module knows (a device number, data kept in the inode, or a list of extents;
a B+tree of extents is left to the library), and on a v5 filesystem its own number in its core.
Anything else is the library's, which reads or refuses it: :func:`decode` answers None.

Times are decoded as the kernel decodes them: seconds and nanoseconds, or with the bigtime
flag one count of nanoseconds since the start of 1901-12-13 20:45:52 UTC (2**31 seconds before
the epoch). A device node's number is the 32-bit value the data fork starts with (major in
the high 14 bits, minor in the low 18).

:func:`fork_extents` turns an inode's list of extent records into the list the libraries
give: every record checked (in order, not overlapping, inside an allocation group), holes and
unwritten extents as sparse extents.
"""

from __future__ import annotations

import os
import stat
from typing import Any, NamedTuple

import construct as cs

from forensics.errors import Damage
from forensics.fs.content import extent_runs
from forensics.fs.libyal import DecodedInode
from forensics.fs.structs import layout_of
from forensics.fs.tree import Stat

Dinode = cs.Struct(
    "magic" / cs.Bytes(2),
    "mode" / cs.Int16ub,
    "version" / cs.Int8ub,
    "format" / cs.Int8ub,
    "onlink" / cs.Int16ub,
    "uid" / cs.Int32ub,
    "gid" / cs.Int32ub,
    "nlink" / cs.Int32ub,
    cs.Padding(4),  # project id
    "big_nextents" / cs.Int64ub,  # with the nrext64 flag; padding and flush count before
    "atime" / cs.Int64ub,
    "mtime" / cs.Int64ub,
    "ctime" / cs.Int64ub,
    "size" / cs.Int64ub,
    cs.Padding(12),  # blocks, extent size hint
    "nextents" / cs.Int32ub,
    cs.Padding(2),  # attribute fork extents
    "forkoff" / cs.Int8ub,
    cs.Padding(1 + 4 + 2 + 2 + 4 + 4),  # attribute fork format, dmapi, flags, generation, next
    cs.Padding(4 + 8 + 8),  # v3 from here: crc, change count, lsn
    "flags2" / cs.Int64ub,
    cs.Padding(4 + 12),  # copy-on-write extent size hint, padding
    "crtime" / cs.Int64ub,
    "ino" / cs.Int64ub,
)
BmbtRecord = cs.Struct("high" / cs.Int64ub, "low" / cs.Int64ub)

MAGIC = b"IN"
FORMAT_DEV, FORMAT_LOCAL, FORMAT_EXTENTS = 0, 1, 2
#: the inode core's size: version 3 inodes (v5 filesystems) and older ones
CORE_V3, CORE_V2 = 176, 100
FLAG2_BIGTIME = 1 << 3
FLAG2_NREXT64 = 1 << 4
#: bigtime counts nanoseconds from 2**31 seconds before the epoch
BIGTIME_EPOCH_OFFSET = 1 << 31
_NS = 1_000_000_000
_KNOWN_TYPES = frozenset(
    (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO,
     stat.S_IFSOCK)
)  # fmt: skip

_DINODE = layout_of(Dinode, ">")
#: the bytes of an inode's core that are parsed
CORE_PARSED = _DINODE.size
_RECORD = layout_of(BmbtRecord, ">")
_WORD = layout_of(cs.Struct("value" / cs.Int32ub), ">")


def decode(raw: bytes, ino: int, volume: Any) -> DecodedInode | None:
    """Inode ``ino`` from its bytes ``raw`` (the whole inode), or None when it is left to
    the library."""
    if len(raw) < _DINODE.size:
        return None
    (magic, mode, version, fmt, onlink, uid, gid, nlink, _, atime, mtime, ctime, size,
     _, _, flags2, crtime, own) = _DINODE.unpack_from(raw)  # fmt: skip
    if magic != MAGIC or stat.S_IFMT(mode) not in _KNOWN_TYPES or size >= 1 << 63:
        return None
    if version >= 3 and own != ino:
        return None
    if fmt not in (FORMAT_DEV, FORMAT_LOCAL, FORMAT_EXTENTS):
        return None
    big = version >= 3 and bool(flags2 & FLAG2_BIGTIME)
    rdev = 0
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        if fmt != FORMAT_DEV:
            return None
        number = _WORD.unpack_from(raw, fork_start(version))[0]
        rdev = os.makedev((number >> 18) & 0x3FFF, number & 0x3FFFF)
    st = Stat(
        mode,
        ino,
        nlink if version >= 2 else onlink,
        uid,
        gid,
        size,
        rdev,
        _time(atime, big),
        _time(mtime, big),
        _time(ctime, big),
        _time(crtime, big) if version >= 3 else None,
    )
    return DecodedInode(volume, st, raw)


def _time(value: int, big: bool) -> int:
    if big:
        return value - BIGTIME_EPOCH_OFFSET * _NS
    seconds, nanos = value >> 32, value & 0xFFFFFFFF
    seconds -= (seconds & 0x80000000) << 1
    return seconds * _NS + nanos


class Core(NamedTuple):
    """What the readers ask of an inode's core."""

    magic: bytes
    version: int
    format: int
    forkoff: int
    size: int
    ino: int


def core_of(raw: bytes) -> Core:
    """The core of inode ``raw`` (at least :data:`CORE_PARSED` bytes)."""
    fields = _DINODE.unpack_from(raw)
    return Core(fields[0], fields[2], fields[3], fields[14], fields[12], fields[17])


def fork_start(version: int) -> int:
    return CORE_V3 if version >= 3 else CORE_V2


def data_fork(raw: bytes) -> tuple[int, bytes]:
    """The inode's data fork format and bytes (up to the attribute fork, if any)."""
    version, fmt, forkoff = raw[4], raw[5], raw[82]
    start = fork_start(version)
    end = start + 8 * forkoff if forkoff else len(raw)
    return fmt, raw[start:end]


class ExtentListError(Damage):
    """The inode's extent records do not describe a file (``too_large``: over a cap)."""

    def __init__(self, detail: str, *, too_large: bool = False) -> None:
        super().__init__(detail)
        self.too_large = too_large


def fork_extents(
    raw: bytes, size: int, block_size: int, ag_blocks: int, ag_count: int, ag_bits: int, cap: int
) -> list[tuple[int, int, int]]:
    """The extents of an inode whose data fork is a list of extent records, as the libraries
    list them: ``(filesystem block × block size, bytes, flags)`` in file order, holes and
    unwritten extents sparse, up to ``size``. Raises :class:`ExtentListError`."""
    version, flags2 = raw[4], _DINODE.unpack_from(raw)[15]
    if version >= 3 and flags2 & FLAG2_NREXT64:
        count = _DINODE.unpack_from(raw)[8]
    else:
        count = _DINODE.unpack_from(raw)[13]
    _, fork = data_fork(raw)
    if count * _RECORD.size > len(fork):
        raise ExtentListError(f"{count} extent records do not fit in its data fork")
    if count > cap:
        raise ExtentListError(f"more than {cap} extents", too_large=True)
    extents: list[tuple[int, int, int, bool]] = []
    at = 0  # the next file block
    end = -(-size // block_size)
    for i in range(count):
        high, low = _RECORD.unpack_from(fork, i * _RECORD.size)
        unwritten = high >> 63
        first = (high >> 9) & ((1 << 54) - 1)
        start = ((high & 0x1FF) << 43) | (low >> 21)
        length = low & ((1 << 21) - 1)
        ag, ag_block = start >> ag_bits, start & ((1 << ag_bits) - 1)
        if length == 0:
            raise ExtentListError(f"extent record {i} has no blocks")
        if first < at:
            raise ExtentListError(
                f"extent record {i} (file blocks {first}-{first + length - 1}) overlaps the "
                "one before or is out of order"
            )
        if ag >= ag_count or ag_block + length > ag_blocks:
            raise ExtentListError(
                f"extent record {i} (block {ag_block} of allocation group {ag}, {length} "
                "blocks) lies outside the filesystem"
            )
        if first >= end:
            break  # past the size (preallocated): never read
        extents.append((first, length, start, bool(unwritten)))
        at = first + length
    return extent_runs(extents, size, block_size)
