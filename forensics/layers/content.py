"""A layer's tree: the one interface through which the layer code reads a layer's files.

A layer's files are a directory of ROOT on most drivers (overlay2's ``diff/``, vfs' copy), and
a filesystem inside a thin device on devicemapper; a containerd snapshot or a disk image holds
them the same two ways. The checks (:mod:`~forensics.layers.reassemble`,
:mod:`~forensics.layers.listing`, :mod:`~forensics.layers.diff`) ask a :class:`LayerTree` for
what they need, member by member, named by cleaned path components as bytes — never a path
string that could climb or follow a symlink:

* :class:`~forensics.layers.confine.ConfinedDir` serves a directory of ROOT, walked with
  ``O_NOFOLLOW`` descriptors;
* :class:`~forensics.layers.treedir.TreeDir` serves a directory of any
  :class:`forensics.fs.Tree` (ext4 or xfs read without mounting), e.g. ``rootfs/`` of a thin
  device (:mod:`forensics.layers.devices` opens it from the pool files of the evidence).

Both refuse in the same words (:class:`~forensics.layers.confine.Refusal`): a symlink on the
way is never followed, nothing but a regular file is opened for reading, and sizes are capped
by what holds them.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO, Protocol

from forensics.drivers import OVERLAY_WHITEOUTS
from forensics.layers.confine import Parts, Refusal

__all__ = [
    "DISK_TYPE",
    "FileHandle",
    "LayerTree",
    "StatLike",
    "close_handle",
    "disk_type",
    "is_opaque",
    "read_into",
]

#: an open regular file: a descriptor (a directory of ROOT) or a file object (a tree)
FileHandle = int | BinaryIO
#: tar type → file type bits expected on disk
DISK_TYPE = {
    "file": stat.S_IFREG,
    "dir": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "char": stat.S_IFCHR,
    "block": stat.S_IFBLK,
    "fifo": stat.S_IFIFO,
}


class StatLike(Protocol):
    """The fields of ``os.stat_result`` that the layer code reads (a tree's stat has them
    too)."""

    st_mode: int
    st_ino: int
    st_nlink: int
    st_uid: int
    st_gid: int
    st_size: int
    st_rdev: int
    st_mtime_ns: int


class LayerTree(Protocol):
    """A layer's files, read-only.

    ``rel``: where the layer's files are, relative to ROOT, for messages and the disk path of
    each member (for a device, where Docker mounts it). ``exact_metadata``: True when owners,
    times and extended attributes are read as the filesystem holds them (a filesystem image),
    so that they can be held against the tar; False for a directory of ROOT, which may be a
    copy that lost them. ``source``: what holds the files, in words (empty for a directory).
    """

    rel: str
    exact_metadata: bool
    source: str

    def path_of(self, parts: Parts) -> str:
        """The member's path relative to ROOT, for messages."""
        ...

    def lstat(self, parts: Parts) -> StatLike | Refusal:
        """The member's metadata, never following it (nor a symlink on the way)."""
        ...

    def open_regular(
        self, parts: Parts, *, listed_regular: bool = False
    ) -> tuple[FileHandle, StatLike] | Refusal:
        """The regular file ``parts`` open for reading, and its metadata; the caller closes it
        (:func:`close_handle`). ``listed_regular``: a listing said it is a regular file (a
        directory backend may skip its lstat)."""
        ...

    def readlink(self, parts: Parts) -> bytes | Refusal:
        """The target of the symlink ``parts``, never followed."""
        ...

    def listdir(self, parts: Parts) -> list[tuple[bytes, str]] | Refusal:
        """The entries of directory ``parts``: (name, kind) sorted by name, kind one of
        ``file``, ``dir``, ``symlink``, ``other``."""
        ...

    def xattr(self, parts: Parts, name: str) -> bytes | None:
        """The extended attribute ``name`` of the member, None when it has none or it
        cannot be read."""
        ...

    def close(self) -> None: ...


def read_into(handle: FileHandle, buffer: bytearray) -> int:
    """Read the next bytes of an open file into ``buffer``; their count (0 at the end)."""
    if isinstance(handle, int):
        return os.readv(handle, (buffer,))
    return handle.readinto(buffer) or 0


def close_handle(handle: FileHandle) -> None:
    if isinstance(handle, int):
        os.close(handle)
    else:
        handle.close()


def is_opaque(tree: LayerTree, parts: Parts) -> bool:
    """True when the directory ``parts`` carries an overlay opaque xattr = ``y``."""
    return any(tree.xattr(parts, attr) == b"y" for attr in OVERLAY_WHITEOUTS.opaque_xattrs)


def disk_type(mode: int) -> str:
    """The tar's word for the file type of ``mode`` (``other`` for a socket)."""
    for kind, bits in DISK_TYPE.items():
        if stat.S_IFMT(mode) == bits:
            return kind
    return "other"
