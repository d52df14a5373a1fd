"""What the ext4 and xfs trees share: inodes read through libyal's ``libfsext``/``libfsxfs``
(``pyfsext``/``pyfsxfs``: C, LGPL-3.0+), the directories read by the backends themselves.

The libraries read inodes, extents, file contents, symlink targets and extended attributes;
they hand names out only as UTF-8 text (a name that is not UTF-8 cannot be had from them), so
each backend parses its directories' blocks itself, with the names as the bytes on disk. A
path is resolved one component at a time through those listings, from the root directory:
inode tables are never scanned, no symlink is followed.

Every error the library raises becomes a :class:`~forensics.fs.tree.Refusal`; when the file
object under the filesystem keeps a list of the problems its reads met (a thin device's
``read_problems``), the refusal names that problem rather than the library's words.
"""

from __future__ import annotations

import io
import os
import stat
from collections import OrderedDict
from typing import Any, BinaryIO

from forensics.fs.tree import (
    DAMAGED,
    MISSING,
    NOT_DIRECTORY,
    NOT_REGULAR,
    TOO_LARGE,
    UNREADABLE,
    UNSAFE_PATH,
    Limits,
    Listing,
    Parts,
    Refusal,
    Stat,
    display,
    kind_of,
)

#: inodes (file entries) and directory listings kept
_ENTRY_CACHE = 256
_LISTING_CACHE = 64
_DIR_CACHE = 256


class LibyalTree:
    """A filesystem read through a libyal volume; ``_list_directory`` is the backend's."""

    label = "filesystem"

    def __init__(self, volume: Any, fileobj: BinaryIO, device_size: int, limits: Limits) -> None:
        self.volume = volume
        self.fileobj = fileobj
        self.device_size = device_size
        self.limits = limits
        self.file_size_cap = limits.file_size if limits.file_size is not None else device_size
        raw = getattr(fileobj, "raw", fileobj)
        self._io_problems: list[Any] | None = getattr(raw, "read_problems", None)
        self._entries: OrderedDict[int, Any] = OrderedDict()
        self._listings: OrderedDict[int, Listing | Refusal] = OrderedDict()
        #: directories reached, by path: their inode (the tree is read-only: paths stay put)
        self._dirs: OrderedDict[Parts, int] = OrderedDict()
        #: what is wrong with the filesystem as a whole (found when it was opened)
        self.notes: list[str] = []
        root = self._library(lambda: volume.get_root_directory(), "the root directory")
        if isinstance(root, Refusal):
            raise OSError(root.detail)
        if root is None:
            raise OSError(f"the {self.label} filesystem has no root directory")
        self.root_ino = int(root.inode_number)
        self._entries[self.root_ino] = root

    def close(self) -> None:
        self._entries.clear()
        self._listings.clear()
        self._dirs.clear()
        try:
            self.volume.close()
        except OSError:
            pass

    def __enter__(self) -> LibyalTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the Tree protocol ------------------------------------------------------------------

    def path_of(self, parts: Parts) -> str:
        return display(parts)

    def lstat(self, parts: Parts) -> Stat | Refusal:
        found = self._resolve(parts)
        if isinstance(found, Refusal):
            return found
        return self._stat(*found)

    def listdir(self, parts: Parts) -> Listing | Refusal:
        found = self._resolve(parts)
        if isinstance(found, Refusal):
            return found
        ino, entry = found
        mode = self._mode(entry)
        if not stat.S_ISDIR(mode):
            return Refusal(NOT_DIRECTORY, f"{display(parts)} is a {kind_of(mode)}", mode)
        return self._listing(ino, entry)

    def readlink(self, parts: Parts) -> bytes | Refusal:
        found = self._resolve(parts)
        if isinstance(found, Refusal):
            return found
        ino, entry = found
        mode = self._mode(entry)
        if not stat.S_ISLNK(mode):
            return Refusal(NOT_REGULAR, f"{display(parts)} is a {kind_of(mode)}", mode)
        size = self._library(lambda: int(entry.size), f"inode {ino}'s size")
        if isinstance(size, Refusal):
            return size
        if size > self.limits.symlink:
            what = f"{display(parts)}: a symlink target of {size} bytes, over {self.limits.symlink}"
            return Refusal(TOO_LARGE, what, mode)
        target = self._library(lambda: entry.symbolic_link_target, f"inode {ino}'s target")
        if isinstance(target, Refusal):
            return target
        if target is None:
            return Refusal(DAMAGED, f"{display(parts)}: a symlink without a target", mode)
        return str(target).encode("utf-8", "surrogateescape")

    def open_file(self, parts: Parts) -> BinaryIO | Refusal:
        found = self._resolve(parts)
        if isinstance(found, Refusal):
            return found
        ino, entry = found
        mode = self._mode(entry)
        if not stat.S_ISREG(mode):
            return Refusal(NOT_REGULAR, f"{display(parts)} is a {kind_of(mode)}", mode)
        size = self._library(lambda: int(entry.size), f"inode {ino}'s size")
        if isinstance(size, Refusal):
            return size
        if size > self.file_size_cap:
            what = (
                f"{display(parts)}: {size} bytes, more than the {self.file_size_cap} "
                "that the device holds"
            )
            return Refusal(TOO_LARGE, what, mode)
        return io.BufferedReader(_EntryFile(entry, size, self, ino), 1 << 20)

    def xattrs(self, parts: Parts) -> dict[bytes, bytes] | Refusal:
        found = self._resolve(parts)
        if isinstance(found, Refusal):
            return found
        ino, entry = found
        return self._library(lambda: self._read_xattrs(entry, ino), f"inode {ino}'s xattrs")

    # -- helpers for the backends -----------------------------------------------------------

    def entry_of(self, ino: int) -> Any:
        """The library's file entry of inode ``ino`` (cached), or a Refusal."""
        cached = self._entries.get(ino)
        if cached is not None:
            self._entries.move_to_end(ino)
            return cached
        entry = self._library(lambda: self.volume.get_file_entry_by_inode(ino), f"inode {ino}")
        if isinstance(entry, Refusal):
            return entry
        if entry is None:
            return Refusal(DAMAGED, f"inode {ino}: {self.label} has no such inode")
        self._entries[ino] = entry
        if len(self._entries) > _ENTRY_CACHE:
            self._entries.popitem(last=False)
        return entry

    def _library(self, call: Any, what: str) -> Any:
        """``call()``, its errors made a Refusal naming ``what`` (and the device's problem)."""
        before = len(self._io_problems) if self._io_problems is not None else 0
        try:
            return call()
        except (OSError, ValueError, OverflowError, MemoryError, TypeError) as exc:
            if self._io_problems is not None and len(self._io_problems) > before:
                return Refusal(UNREADABLE, f"{what}: {self._io_problems[-1]}")
            return Refusal(DAMAGED, f"{what}: {self.label} {library_reason(exc)}")

    def _mode(self, entry: Any) -> int:
        try:
            return int(entry.file_mode)
        except (OSError, ValueError, TypeError):
            return 0

    def _resolve(self, parts: Parts) -> tuple[int, Any] | Refusal:
        """The inode of ``parts``, one name at a time from the root — or from its directory,
        when that was reached before (a walk asks for the members of one directory in turn)."""
        start, ino = 0, self.root_ino
        if parts:
            known = self._dirs.get(parts[:-1])
            if known is not None:
                start, ino = len(parts) - 1, known
        entry = self.entry_of(ino)
        for depth in range(start, len(parts)):
            name = parts[depth]
            if isinstance(entry, Refusal):
                return entry
            mode = self._mode(entry)
            if not stat.S_ISDIR(mode):
                where = display(parts[:depth])
                if stat.S_ISLNK(mode):
                    return Refusal(UNSAFE_PATH, f"{where} is a symlink (not followed)", mode)
                return Refusal(MISSING, f"{where} is a {kind_of(mode)}, not a directory", mode)
            listing = self._listing(ino, entry)
            if isinstance(listing, Refusal):
                return listing
            self._remember_dir(parts[:depth], ino)
            found = listing.find(name)
            if found is None:
                return Refusal(MISSING, f"{display(parts[: depth + 1])}: no such file")
            ino = found.ino
            entry = self.entry_of(ino)
        if isinstance(entry, Refusal):
            return entry
        return ino, entry

    def _remember_dir(self, parts: Parts, ino: int) -> None:
        dirs = self._dirs
        if parts in dirs:
            dirs.move_to_end(parts)
            return
        dirs[parts] = ino
        if len(dirs) > _DIR_CACHE:
            dirs.popitem(last=False)

    def _listing(self, ino: int, entry: Any) -> Listing | Refusal:
        cached = self._listings.get(ino)
        if cached is not None:
            self._listings.move_to_end(ino)
            return cached
        listing = self._list_directory(ino, entry)
        self._listings[ino] = listing
        if len(self._listings) > _LISTING_CACHE:
            self._listings.popitem(last=False)
        return listing

    def _list_directory(self, ino: int, entry: Any) -> Listing | Refusal:
        raise NotImplementedError

    def _stat(self, ino: int, entry: Any) -> Stat | Refusal:
        def read() -> Stat:
            mode = int(entry.file_mode)
            rdev = 0
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                rdev = _makedev(entry.device_number)
            return Stat(
                mode=mode,
                ino=ino,
                nlink=int(entry.number_of_links),
                uid=int(entry.owner_identifier),
                gid=int(entry.group_identifier),
                size=self._size(ino, entry, mode),
                rdev=rdev,
                atime_ns=int(entry.get_access_time_as_integer()),
                mtime_ns=int(entry.get_modification_time_as_integer()),
                ctime_ns=int(entry.get_inode_change_time_as_integer()),
                crtime_ns=_optional(entry.get_creation_time_as_integer),
            )

        return self._library(read, f"inode {ino}")

    def _size(self, ino: int, entry: Any, mode: int) -> int:
        """The inode's size (the libraries give 0 for a directory: the backend knows it)."""
        return int(entry.size)

    @staticmethod
    def _check_xattr_count(count: int, limits: Limits, ino: int) -> None:
        if count > limits.xattrs:
            raise ValueError(f"inode {ino} has {count} extended attributes, over {limits.xattrs}")

    def _xattr_name(self, name: bytes) -> bytes:
        """The library's name of an extended attribute as Linux names it."""
        return name

    def _read_xattrs(self, entry: Any, ino: int) -> dict[bytes, bytes]:
        count = int(entry.number_of_extended_attributes)
        self._check_xattr_count(count, self.limits, ino)
        out: dict[bytes, bytes] = {}
        for i in range(count):
            attr = entry.get_extended_attribute(i)
            name = self._xattr_name(str(attr.name).encode("utf-8", "surrogateescape"))
            size = int(attr.size)
            if size > self.limits.xattr_value:
                raise ValueError(f"xattr {name!r} of {size} bytes, over {self.limits.xattr_value}")
            out[name] = bytes(attr.read_buffer(size)) if size else b""
        return out


def _optional(call: Any) -> int | None:
    try:
        value = call()
    except (OSError, ValueError, OverflowError):
        return None
    return None if value is None else int(value)


def _makedev(number: Any) -> int:
    if isinstance(number, tuple) and len(number) == 2:
        major, minor = (int(n) for n in number)
        if 0 <= major < 1 << 32 and 0 <= minor < 1 << 32:
            return os.makedev(major, minor)
    return 0


def library_reason(exc: BaseException) -> str:
    """The cause in a libyal error chain (``a: unable to x. b: cause. c: …``), shortened."""
    segments = [s.strip() for s in str(exc).split(". ") if s.strip()]
    reason = segments[1] if len(segments) > 1 else (segments[0] if segments else type(exc).__name__)
    head, sep, tail = reason.partition(": ")
    if sep and " " not in head:  # drop the function name
        reason = tail
    return reason[:200].rstrip(".")


class _EntryFile(io.RawIOBase):
    """A regular file's contents through the library, read-only, bounded by the size checked
    when it was opened."""

    def __init__(self, entry: Any, size: int, tree: LibyalTree, ino: int) -> None:
        super().__init__()
        self._entry, self.size, self._tree, self.ino = entry, size, tree, ino
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError(22, "negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        want = max(0, min(len(out), self.size - self._pos))
        if want == 0:
            return 0
        pos = self._pos
        got = self._tree._library(
            lambda: self._entry.read_buffer_at_offset(want, pos), f"inode {self.ino}'s data"
        )
        if isinstance(got, Refusal):
            raise OSError(5, got.detail)
        data = bytes(got)
        if not data:
            raise OSError(5, f"inode {self.ino}: no data at offset {pos} of {self.size}")
        out[: len(data)] = data
        self._pos += len(data)
        return len(data)
