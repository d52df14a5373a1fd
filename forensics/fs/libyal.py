"""What the ext4 and xfs trees share: inodes read through libyal's ``libfsext``/``libfsxfs``
(``pyfsext``/``pyfsxfs``: C, LGPL-3.0+), the directories read by the backends themselves.

The libraries open the filesystem and read extended attributes, and whatever a backend does
not decode itself: inodes of unusual shape, ext4 block maps, xfs B+trees of extents. They hand
names and symlink targets out only as UTF-8 text (one that is not UTF-8 cannot be had from
them), so each backend parses its directories and reads its symlink targets itself, as the
bytes on disk; plain inodes and their extents are decoded by the backends too
(:class:`DecodedInode`). A regular file's contents are read straight from the device through
its extents (:mod:`forensics.fs.content`: large reads, holes and unwritten extents as zeros,
every extent checked against the device and the filesystem's own structures); a small file's
through the block cache (:mod:`forensics.fs.blockcache`), whole, without a buffer of its own.
A path is resolved one component at a time through the listings, from the root directory:
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

from forensics.fs.blockcache import BlockCache
from forensics.fs.content import (
    Bounds,
    ExtentFile,
    Layout,
    LayoutError,
    Reserved,
    innermost,
    plan,
    positional_reader,
)
from forensics.fs.rawfile import SizedRawFile
from forensics.fs.tree import (
    DAMAGED,
    MISSING,
    NOT_DIRECTORY,
    NOT_REGULAR,
    TOO_LARGE,
    UNREADABLE,
    UNSAFE_PATH,
    Entry,
    Limits,
    Listing,
    Parts,
    Refusal,
    Stat,
    display,
    kind_of,
)

#: inodes (file entries) and directory listings kept
_ENTRY_CACHE = 16384
_LISTING_CACHE = 64
#: directories whose listing is kept by path (a walk returns to a few ancestors)
_DIR_CACHE = 16
#: files up to this size are handed out without a buffer: they are read whole, in one go,
#: and a buffer of its own per file costs more than the read
_UNBUFFERED = 1 << 16


class DecodedInode:
    """An inode a backend decoded from its own bytes (its :class:`Stat`), standing in for
    the library's file entry: it answers the attributes the tree asks of every entry
    (``file_mode``, ``size``, ``inode_number``); any other is the library entry's, fetched
    when first asked for."""

    __slots__ = ("_entry", "_volume", "file_mode", "inode_number", "raw", "size", "stat")

    def __init__(self, volume: Any, st: Stat, raw: bytes = b"") -> None:
        self._volume = volume
        self._entry: Any = None
        #: the inode's bytes it was decoded from
        self.raw = raw
        self.inode_number = st.ino
        self.file_mode = st.mode
        self.size = st.size
        self.stat = st

    def library_entry(self) -> Any:
        if self._entry is None:
            entry = self._volume.get_file_entry_by_inode(self.inode_number)
            if entry is None:
                raise ValueError(f"no inode {self.inode_number}")
            self._entry = entry
        return self._entry

    def __getattr__(self, name: str) -> Any:
        return getattr(self.library_entry(), name)


class LibyalTree:
    """A filesystem read through a libyal volume; ``_list_directory`` is the backend's."""

    label = "filesystem"

    def __init__(self, volume: Any, fileobj: BinaryIO, device_size: int, limits: Limits) -> None:
        self.volume = volume
        self.fileobj = fileobj
        self.device_size = device_size
        self.limits = limits
        self.file_size_cap = limits.file_size if limits.file_size is not None else device_size
        raw = innermost(fileobj)
        self._io_problems: list[Any] | None = getattr(raw, "read_problems", None)
        self.read_into = positional_reader(fileobj)
        #: how a small file's bytes are read: through the block cache when there is one
        self.read_small = fileobj.read_into if isinstance(fileobj, BlockCache) else self.read_into
        self._bounds: Bounds | None = None
        self._entries: OrderedDict[int, Any] = OrderedDict()
        self._listings: OrderedDict[int, Listing | Refusal] = OrderedDict()
        self._dirs: OrderedDict[Parts, Listing] = OrderedDict()
        self._last: tuple[Parts | None, tuple[int, Any] | Refusal] = (None, Refusal(MISSING, ""))
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
        if size == 0:
            return Refusal(DAMAGED, f"{display(parts)}: a symlink with an empty target", mode)
        target = self._link_target(ino, entry, size)
        if isinstance(target, Refusal):
            return Refusal(target.kind, f"{display(parts)}: {target.detail}", mode)
        if len(target) != size:
            what = f"{display(parts)}: a symlink target of {len(target)} bytes, not {size}"
            return Refusal(DAMAGED, what, mode)
        if b"\0" in target:
            return Refusal(DAMAGED, f"{display(parts)}: a symlink target holding a NUL byte", mode)
        return target

    def open_file(self, parts: Parts) -> BinaryIO | Refusal:
        found = self._resolve(parts)
        if isinstance(found, Refusal):
            return found
        ino, entry = found
        mode = self._mode(entry)
        if not stat.S_ISREG(mode):
            return Refusal(NOT_REGULAR, f"{display(parts)} is a {kind_of(mode)}", mode)
        if isinstance(entry, DecodedInode):
            size = entry.size
        else:
            size = self._library(lambda: int(entry.size), f"inode {ino}'s size")
            if isinstance(size, Refusal):
                return size
        if size > self.file_size_cap:
            what = (
                f"{display(parts)}: {size} bytes, more than the {self.file_size_cap} "
                "that the device holds"
            )
            return Refusal(TOO_LARGE, what, mode)
        layout = self.layout(ino, entry, size)
        if isinstance(layout, Refusal):
            return Refusal(layout.kind, f"{display(parts)}: {layout.detail}", mode)
        if layout is None:  # kept inside the inode
            inline = self._inline_file(ino, entry, size)
            if isinstance(inline, Refusal):
                return Refusal(inline.kind, f"{display(parts)}: {inline.detail}", mode)
            return inline
        if size <= _UNBUFFERED:  # read whole at once, by one read per run
            return ExtentFile(layout, self.read_small, f"inode {ino}")
        return io.BufferedReader(ExtentFile(layout, self.read_into, f"inode {ino}"), 1 << 16)

    def layout(self, ino: int, entry: Any, size: int) -> Layout | Refusal | None:
        """Where the ``size`` bytes of inode ``ino`` lie on the device, checked; None when
        they are kept inside the inode itself (no extents, and no more bytes than an inode
        holds)."""
        extents = self.extents_of(ino, entry, size)
        if isinstance(extents, Refusal):
            return extents
        if size and not extents:
            if size <= self.inode_size:
                return None
            return Refusal(DAMAGED, f"no extents hold its {size} bytes")
        try:
            return plan(extents, size, self.bounds, self.to_device)
        except LayoutError as exc:
            return Refusal(TOO_LARGE if exc.too_large else DAMAGED, f"inode {ino}: {exc}")

    def extents_of(self, ino: int, entry: Any, size: int) -> list[tuple[int, int, int]] | Refusal:
        """Inode ``ino``'s extents in file order, ``(offset, bytes, flags)``, holes as sparse
        extents: as the library lists them, at most :attr:`Limits.extents` of them."""
        count = self._library(lambda: int(entry.number_of_extents), f"inode {ino}'s extents")
        if isinstance(count, Refusal):
            return count
        if count > self.limits.extents:
            what = f"inode {ino}: {count} extents, over {self.limits.extents}"
            return Refusal(TOO_LARGE, what)
        return self._library(
            lambda: [tuple(entry.get_extent(i)) for i in range(count)], f"inode {ino}'s extents"
        )

    @property
    def bounds(self) -> Bounds:
        """What every data extent is held against (worked out at the first file read)."""
        if self._bounds is None:
            fs_size = self.filesystem_size
            if fs_size < self.device_size:
                end, what = fs_size, "filesystem's end"
            else:
                end, what = self.device_size, "device's end"
            self._bounds = Bounds(end, what, self._reserved(), self.limits.extents)
        return self._bounds

    # -- what the backends tell -------------------------------------------------------------

    #: the size of one inode (a file kept inside its inode is no larger)
    inode_size = 0

    @property
    def filesystem_size(self) -> int:
        """The filesystem's length in bytes, as its superblock gives it."""
        return self.device_size

    def to_device(self, offset: int) -> int | None:
        """The device offset of a data extent's offset as the library gives it."""
        return offset

    def _reserved(self) -> Reserved:
        """The device's ranges that hold the filesystem's own structures."""
        return Reserved([])

    def _link_target(self, ino: int, entry: Any, size: int) -> bytes | Refusal:
        """The ``size`` bytes of symlink ``ino``'s target."""
        raise NotImplementedError

    def read_extents(self, ino: int, entry: Any, size: int) -> bytes | Refusal:
        """The first ``size`` bytes of inode ``ino``'s data through its extents (a short
        symlink target, a directory's inline part): small, read whole."""
        layout = self.layout(ino, entry, size)
        if layout is None:
            return Refusal(DAMAGED, f"inode {ino} has no extents")
        if isinstance(layout, Refusal):
            return layout
        try:
            return ExtentFile(layout, self.read_into, f"inode {ino}").readall()
        except OSError as exc:
            return Refusal(UNREADABLE, f"inode {ino}: {exc.strerror or exc}")

    def xattrs(self, parts: Parts) -> dict[bytes, bytes] | Refusal:
        found = self._resolve(parts)
        if isinstance(found, Refusal):
            return found
        ino, entry = found
        return self._library(lambda: self._read_xattrs(entry, ino), f"inode {ino}'s xattrs")

    def shares_member(self, other: LibyalTree, parts: Parts, other_parts: Parts) -> bool:
        """True when ``parts`` here and ``other_parts`` in ``other`` are listed as the same
        inode, not a directory, kept in the same bytes of the one pool on both sides (its
        record and whatever else holds its metadata and extended attributes): nothing that a
        stat or an xattr read can differ. Found without decoding the inode; False whenever it
        cannot be told (the backend does not know where an inode's metadata lies)."""
        if not parts or not other_parts:
            return False
        mine, theirs = self._listed(parts), other._listed(other_parts)
        if mine is None or theirs is None or mine.ino != theirs.ino:
            return False
        if not mine.type or mine.type == stat.S_IFDIR or mine.type != theirs.type:
            return False
        return self._shares_inode(other, mine.ino)

    def _listed(self, parts: Parts) -> Entry | None:
        """The entry of ``parts`` in its directory's listing (None: not listed)."""
        known = self._dirs.get(parts[:-1])
        if known is None:
            known = self._directory(parts[:-1])
        return None if isinstance(known, Refusal) else known.find(parts[-1])

    def _shares_inode(self, other: LibyalTree, ino: int) -> bool:
        """True when everything of inode ``ino`` that a stat and its xattrs read lies in the
        same bytes of the pool here and in ``other``; the backend's to tell."""
        return False

    # -- helpers for the backends -----------------------------------------------------------

    def entry_of(self, ino: int) -> Any:
        """The file entry of inode ``ino`` (cached): decoded by the backend, else the
        library's; or a Refusal."""
        cached = self._entries.get(ino)
        if cached is not None:
            self._entries.move_to_end(ino)
            return cached
        entry = self._decode(ino)
        if entry is None:
            entry = self._library(lambda: self.volume.get_file_entry_by_inode(ino), f"inode {ino}")
        if isinstance(entry, Refusal):
            return self._explain(ino, entry)
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
        """Inode and entry of ``parts``, one component at a time from the root. A walk asks
        for the members of one directory after another, and for one member several times
        (its stat, then its contents): the last answer and the listings of the last few
        directories met are kept, so a member costs one lookup in its directory."""
        last_parts, last_found = self._last
        if parts == last_parts:
            return last_found
        if not parts:
            found = self._descend(())
        else:
            parent = parts[:-1]
            known = self._dirs.get(parent)
            if known is None:
                known = self._directory(parent)
            if isinstance(known, Refusal):
                found = known
            else:
                child = known.find(parts[-1])
                if child is None:
                    found = Refusal(MISSING, f"{display(parts)}: no such file")
                else:
                    entry = self.entry_of(child.ino)
                    found = entry if isinstance(entry, Refusal) else (child.ino, entry)
        self._last = (parts, found)
        return found

    def _directory(self, parts: Parts) -> Listing | Refusal:
        """The listing of directory ``parts``, kept for the next members asked for."""
        found = self._descend(parts)
        if isinstance(found, Refusal):
            return found
        ino, entry = found
        mode = self._mode(entry)
        if not stat.S_ISDIR(mode):
            where = display(parts)
            if stat.S_ISLNK(mode):
                return Refusal(UNSAFE_PATH, f"{where} is a symlink (not followed)", mode)
            return Refusal(MISSING, f"{where} is a {kind_of(mode)}, not a directory", mode)
        listing = self._listing(ino, entry)
        if isinstance(listing, Refusal):
            return listing
        self._dirs[parts] = listing
        if len(self._dirs) > _DIR_CACHE:
            self._dirs.popitem(last=False)
        return listing

    def _descend(self, names: Parts) -> tuple[int, Any] | Refusal:
        """From the root directory down through ``names``."""
        ino = self.root_ino
        entry = self.entry_of(ino)
        for depth, name in enumerate(names):
            if isinstance(entry, Refusal):
                return entry
            mode = self._mode(entry)
            if not stat.S_ISDIR(mode):
                where = display(names[:depth])
                if stat.S_ISLNK(mode):
                    return Refusal(UNSAFE_PATH, f"{where} is a symlink (not followed)", mode)
                return Refusal(MISSING, f"{where} is a {kind_of(mode)}, not a directory", mode)
            listing = self._listing(ino, entry)
            if isinstance(listing, Refusal):
                return listing
            found = listing.find(name)
            if found is None:
                return Refusal(MISSING, f"{display(names[: depth + 1])}: no such file")
            ino = found.ino
            entry = self.entry_of(ino)
        if isinstance(entry, Refusal):
            return entry
        return ino, entry

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

    def _inline_file(self, ino: int, entry: Any, size: int) -> BinaryIO | Refusal:
        """A regular file of ``size`` bytes kept inside its inode: the library reads it."""
        return io.BufferedReader(_EntryFile(entry, size, self, ino), 1 << 16)

    def _explain(self, ino: int, refusal: Refusal) -> Refusal:
        """Why the library refused inode ``ino``, said better by the backend where it can."""
        return refusal

    def _decode(self, ino: int) -> DecodedInode | None:
        """Inode ``ino`` decoded from its bytes by the backend; None: the library reads it."""
        return None

    def _stat(self, ino: int, entry: Any) -> Stat | Refusal:
        if isinstance(entry, DecodedInode):
            return entry.stat

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


class _EntryFile(SizedRawFile):
    """A regular file's contents through the library, read-only, bounded by the size checked
    when it was opened."""

    def __init__(self, entry: Any, size: int, tree: LibyalTree, ino: int) -> None:
        super().__init__()
        self._entry, self.size, self._tree, self.ino = entry, size, tree, ino
        self._pos = 0

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
