"""File trees read without mounting: ext4 and xfs filesystems on a device or image given as a
file object, behind the small :class:`~forensics.fs.tree.Tree` interface.

:func:`open_tree` recognises the filesystem from its primary superblock and opens it as it is
(a zeroed or damaged superblock is an :class:`FsOpenError`, never a backup copy read instead).
"""

from __future__ import annotations

from typing import BinaryIO

from forensics.errors import Damage
from forensics.fs.blockcache import BlockCache
from forensics.fs.libyal import LibyalTree, library_reason
from forensics.fs.tree import (
    Entry,
    Limits,
    Listing,
    Parts,
    Problem,
    Refusal,
    Stat,
    Tree,
    Walked,
    display,
    walk,
)

__all__ = [
    "Entry",
    "FsOpenError",
    "Limits",
    "Listing",
    "Parts",
    "Problem",
    "Refusal",
    "Stat",
    "Tree",
    "Walked",
    "display",
    "open_tree",
    "walk",
]


class FsOpenError(Damage):
    """No filesystem can be read from the device: none recognised, or its superblock is
    zeroed or damaged, or the library refuses it."""


def open_tree(fileobj: BinaryIO, device_size: int, limits: Limits | None = None) -> LibyalTree:
    """The ext4 or xfs filesystem on ``fileobj`` (seekable, ``device_size`` bytes long)."""
    from forensics.fs import ext4, xfs

    limits = limits or Limits()
    xsb = xfs.read_superblock(fileobj)
    if not isinstance(xsb, str):
        return _open(xfs.XfsTree, "pyfsxfs", fileobj, device_size, limits, xsb)
    esb = ext4.read_superblock(fileobj)
    if not isinstance(esb, str):
        tree = _open(ext4.Ext4Tree, "pyfsext", fileobj, device_size, limits, esb)
        _note_size(tree, ext4.blocks_count(esb) * tree.block_size, device_size)
        return tree
    if xsb != "no xfs superblock at byte 0":
        raise FsOpenError(xsb)
    head = _head(fileobj)
    if head is not None and not any(head):
        raise FsOpenError("no filesystem: the first 2048 bytes (both superblock places) are zeros")
    if head is not None and not any(head[:512]):
        raise FsOpenError(
            f"no filesystem: the first sector (an xfs superblock's place) is all zeros, and {esb}"
        )
    raise FsOpenError(f"no ext4 or xfs filesystem: {esb}")


def _open(
    cls: type, module: str, fileobj: BinaryIO, device_size: int, limits: Limits, sb: object
) -> LibyalTree:
    lib = __import__(module)
    volume = lib.volume()
    cached = BlockCache(fileobj, device_size)
    try:
        volume.open_file_object(cached)
        tree = cls(volume, cached, device_size, limits, sb)
    except (OSError, ValueError, MemoryError, OverflowError) as exc:
        reason = library_reason(exc) if "libfs" in str(exc) else str(exc)
        raise FsOpenError(f"{cls.label} cannot be opened: {reason}") from None
    return tree


def _note_size(tree: LibyalTree, fs_size: int, device_size: int) -> None:
    if fs_size > device_size:
        tree.notes.append(
            f"the filesystem claims {fs_size} bytes but the device holds {device_size}: "
            "the end of it is missing"
        )


def _head(fileobj: BinaryIO) -> bytes | None:
    try:
        fileobj.seek(0)
        return fileobj.read(2048)
    except OSError:
        return None
