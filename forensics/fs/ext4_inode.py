"""ext4 inodes read from their own bytes, for the common case: what :meth:`lstat` and a file's
read need, without a call into the library per inode.

An inode is decoded here when it is plain: a known file type, a valid extra size, a size an
ext4 file can have, and no extent tree or one that fits in ``i_block`` (depth 0). Anything
else (an extent tree with index blocks, a damaged extent header, an inode whose fields make no
sense) is left to the library, which reads or refuses it as before: :func:`decode` answers
None. The extents themselves are walked when the file's contents are asked for
(:mod:`forensics.fs.ext4_extents`).

Times are decoded as the kernel decodes them (signed seconds, two epoch bits and the nanoseconds in
the ``_extra`` field when the inode is large enough to hold it); the device number of a device node
in the old or new encoding of ``i_block``.
"""

from __future__ import annotations

import os
import stat
import struct
from typing import Any

import construct as cs

from forensics.fs.ext4_extents import root_depth
from forensics.fs.libyal import DecodedInode
from forensics.fs.structs import layout_of
from forensics.fs.tree import Stat

Inode = cs.Struct(
    "mode" / cs.Int16ul,
    "uid" / cs.Int16ul,
    "size_lo" / cs.Int32ul,
    "atime" / cs.Int32ul,
    "ctime" / cs.Int32ul,
    "mtime" / cs.Int32ul,
    cs.Padding(0x18 - 0x14),
    "gid" / cs.Int16ul,
    "links" / cs.Int16ul,
    cs.Padding(0x20 - 0x1C),
    "flags" / cs.Int32ul,
    cs.Padding(0x28 - 0x24),
    "block" / cs.Bytes(60),
    cs.Padding(0x6C - 0x64),
    "size_high" / cs.Int32ul,
    cs.Padding(0x78 - 0x70),
    "uid_high" / cs.Int16ul,
    "gid_high" / cs.Int16ul,
    cs.Padding(0x80 - 0x7C),
    "extra_isize" / cs.Int16ul,
    cs.Padding(0x84 - 0x82),
    "ctime_extra" / cs.Int32ul,
    "mtime_extra" / cs.Int32ul,
    "atime_extra" / cs.Int32ul,
    "crtime" / cs.Int32ul,
    "crtime_extra" / cs.Int32ul,
)
GOOD_OLD_INODE_SIZE = 128

FLAG_EXTENTS = 0x80000
FLAG_EA_INODE = 0x200000
FLAG_INLINE_DATA = 0x10000000
_KNOWN_TYPES = frozenset(
    (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO,
     stat.S_IFSOCK)
)  # fmt: skip


_INODE = layout_of(Inode)
_WORD = struct.Struct("<I")
#: where each time's ``_extra`` field (and the birth time) ends in the inode: a field is there
#: when the inode's extra size reaches it
_CTIME_EXTRA_END, _MTIME_EXTRA_END, _ATIME_EXTRA_END = 0x88, 0x8C, 0x90
_CRTIME_END, _CRTIME_EXTRA_END = 0x94, 0x98
_NS = 1_000_000_000


def decode(raw: bytes, ino: int, block_size: int, volume: Any) -> DecodedInode | None:
    """Inode ``ino`` from its bytes ``raw`` (the whole inode), or None when it is left to
    the library."""
    size = len(raw)
    if size < _INODE.size:
        raw = raw + bytes(_INODE.size - size)
    fields = _INODE.unpack_from(raw)
    (mode, uid, size_lo, atime, ctime, mtime, gid, links, flags, block, size_high) = fields[:11]
    (uid_high, gid_high, extra_isize, ctime_x, mtime_x, atime_x, crtime, crtime_x) = fields[11:]
    if stat.S_IFMT(mode) not in _KNOWN_TYPES or flags & FLAG_EA_INODE:
        return None
    if flags & FLAG_EXTENTS and not flags & FLAG_INLINE_DATA and root_depth(block) != 0:
        return None  # index blocks, or a damaged root: the library reads or refuses it
    extra = extra_isize if size > GOOD_OLD_INODE_SIZE else 0
    if extra % 4 or GOOD_OLD_INODE_SIZE + extra > size:
        return None
    reach = GOOD_OLD_INODE_SIZE + extra
    length = size_lo | size_high << 32
    if length > (1 << 32) * block_size:
        return None
    rdev = _device_number(block) if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else 0
    # seconds are signed; the _extra field (when the inode reaches it) adds two epoch bits
    # and the nanoseconds
    atime -= (atime & 0x80000000) << 1
    mtime -= (mtime & 0x80000000) << 1
    ctime -= (ctime & 0x80000000) << 1
    if reach >= _ATIME_EXTRA_END:
        atime_ns = (atime + ((atime_x & 3) << 32)) * _NS + (atime_x >> 2)
        mtime_ns = (mtime + ((mtime_x & 3) << 32)) * _NS + (mtime_x >> 2)
        ctime_ns = (ctime + ((ctime_x & 3) << 32)) * _NS + (ctime_x >> 2)
    else:
        atime_ns = _time(atime, atime_x, False)
        mtime_ns = _time(mtime, mtime_x, reach >= _MTIME_EXTRA_END)
        ctime_ns = _time(ctime, ctime_x, reach >= _CTIME_EXTRA_END)
    birth = None
    if reach >= _CRTIME_END:
        crtime -= (crtime & 0x80000000) << 1
        birth = _time(crtime, crtime_x, reach >= _CRTIME_EXTRA_END)
    st = Stat(
        mode,
        ino,
        links,
        uid | uid_high << 16,
        gid | gid_high << 16,
        length,
        rdev,
        atime_ns,
        mtime_ns,
        ctime_ns,
        birth,
    )
    return DecodedInode(volume, st, raw)


def _time(seconds: int, extra: int, has_extra: bool) -> int:
    """Nanoseconds from signed ``seconds`` and, when the inode has it, the ``_extra``
    field."""
    if not has_extra:
        return seconds * _NS
    return (seconds + ((extra & 3) << 32)) * _NS + (extra >> 2)


def _device_number(block: bytes) -> int:
    old = _WORD.unpack_from(block, 0)[0]
    if old:
        return os.makedev((old >> 8) & 0xFF, old & 0xFF)
    new = _WORD.unpack_from(block, 4)[0]
    return os.makedev((new & 0xFFF00) >> 8, (new & 0xFF) | ((new >> 12) & 0xFFF00))


# -- the attributes kept in the inode --------------------------------------------------------

#: the magic number before the attributes kept in the inode's extra space
XATTR_MAGIC = 0xEA020000
#: the name index of ``system.*`` attributes (``system.data``: the rest of inline data)
XATTR_INDEX_SYSTEM = 7
XattrEntry = cs.Struct(
    "name_len" / cs.Int8ul,
    "name_index" / cs.Int8ul,
    "value_offs" / cs.Int16ul,
    "value_inum" / cs.Int32ul,
    "value_size" / cs.Int32ul,
    "hash" / cs.Int32ul,
)
_XATTR = layout_of(XattrEntry)


def in_inode_xattr(raw: bytes, name_index: int, name: bytes) -> bytes | None:
    """The value of attribute ``name`` (of ``name_index``) kept in inode ``raw``'s extra
    space, or None when it is not there. Raises ``ValueError`` when the attributes are
    damaged (an entry or a value past the inode, a value in an inode of its own)."""
    if len(raw) <= GOOD_OLD_INODE_SIZE:
        return None
    extra = _WORD.unpack_from(raw, 0x80)[0] & 0xFFFF
    start = GOOD_OLD_INODE_SIZE + extra
    if extra % 4 or start + 4 > len(raw) or _WORD.unpack_from(raw, start)[0] != XATTR_MAGIC:
        return None
    first = pos = start + 4
    while pos + 4 <= len(raw) and _WORD.unpack_from(raw, pos)[0]:
        if pos + _XATTR.size > len(raw):
            raise ValueError(f"an attribute entry at inode byte {pos} runs past the inode")
        name_len, index, value_offs, value_inum, value_size, _ = _XATTR.unpack_from(raw, pos)
        end = pos + _XATTR.size + name_len
        if end > len(raw):
            raise ValueError(f"an attribute name at inode byte {pos} runs past the inode")
        if index == name_index and raw[pos + _XATTR.size : end] == name:
            if value_inum:
                raise ValueError("the attribute's value is in an inode of its own")
            at = first + value_offs
            if at + value_size > len(raw):
                raise ValueError(
                    f"the attribute's value ({value_size} bytes at inode byte {at}) runs "
                    "past the inode"
                )
            return raw[at : at + value_size]
        pos = (end + 3) & ~3
    return None


#: name index → what Linux puts before the attribute's name; the other indexes (POSIX ACLs,
#: kept in ext4's own compact form, and the rare ones) are left to the library
XATTR_PREFIXES = {1: b"user.", 4: b"trusted.", 6: b"security.", 7: b"system."}
#: an xattr block's header: magic, refcount, blocks (1), hash, checksum, 3 reserved words
XATTR_BLOCK_HEADER = 32
_XATTR_BLOCK_BLOCKS = 8


def file_acl(raw: bytes, wide: bool) -> int:
    """The number of inode ``raw``'s xattr block (0: none); ``wide``: the filesystem has the
    64bit feature (``l_i_file_acl_high`` counts)."""
    low = _WORD.unpack_from(raw, 0x68)[0]
    return low | (struct.unpack_from("<H", raw, 0x76)[0] << 32 if wide else 0)


def all_xattrs(
    raw: bytes, block: bytes | None, max_count: int, max_value: int
) -> dict[bytes, bytes] | None:
    """Every extended attribute of inode ``raw`` (those in its extra space, then those of its
    xattr block ``block``, None when it has none), named as Linux names them; None when any
    of them is left to the library (an index without a plain prefix, a value in an inode of
    its own, a name twice, a count or value over the caps, anything that runs past its
    area): the library then reads or refuses them as before."""
    out: dict[bytes, bytes] = {}
    if len(raw) > GOOD_OLD_INODE_SIZE:
        extra = _WORD.unpack_from(raw, 0x80)[0] & 0xFFFF
        start = GOOD_OLD_INODE_SIZE + extra
        if extra % 4 == 0 and start + 4 <= len(raw):
            if _WORD.unpack_from(raw, start)[0] == XATTR_MAGIC:
                if not _entries_into(out, raw, start + 4, start + 4, max_count, max_value):
                    return None
    if block is not None:
        if len(block) < XATTR_BLOCK_HEADER or _WORD.unpack_from(block, 0)[0] != XATTR_MAGIC:
            return None
        if _WORD.unpack_from(block, _XATTR_BLOCK_BLOCKS)[0] != 1:
            return None
        if not _entries_into(out, block, XATTR_BLOCK_HEADER, 0, max_count, max_value):
            return None
    return out


def _entries_into(
    out: dict[bytes, bytes], area: bytes, pos: int, values: int, max_count: int, max_value: int
) -> bool:
    """The entries of ``area`` from ``pos`` (their values at ``values`` + offset) added to
    ``out``; False when one is left to the library."""
    while pos + 4 <= len(area) and _WORD.unpack_from(area, pos)[0]:
        if pos + _XATTR.size > len(area):
            return False
        name_len, index, value_offs, value_inum, value_size, _ = _XATTR.unpack_from(area, pos)
        end = pos + _XATTR.size + name_len
        prefix = XATTR_PREFIXES.get(index)
        if prefix is None or value_inum or end > len(area) or value_size > max_value:
            return False
        at = values + value_offs
        if at + value_size > len(area):
            return False
        name = prefix + area[pos + _XATTR.size : end]
        if name in out or len(out) >= max_count:
            return False
        out[name] = area[at : at + value_size]
        pos = (end + 3) & ~3
    return True
