"""A Docker root inside a file tree (a tar archive, a disk image's filesystem) read as
:class:`~forensics.evidence.Evidence`.

The stores, checks and deep checks read a root through the methods of ``Evidence``; here each
is served by a :class:`forensics.fs.Tree` from the directory ``top`` down, with the same rules
as a directory of the host and the same answers, word for word:

- a path is a plain path below the root (no empty component, ``.``, ``..`` or NUL: refused
  before anything is looked up), resolved one name at a time by the tree, which never follows
  a symlink; a symlink on the way is refused as the directory reader refuses it;
- only a regular file is opened for reading, within the size caps of the caller; a FIFO or a
  device node is named as what it is;
- every failure is a :class:`~forensics.evidence.ReadFailure` of the same kind and wording as
  the directory reader's (``missing``, ``symlink``, ``not-regular``, …), so that a damaged root
  reports the same findings whether it is read from a directory or from an archive of it;
  damage of the tree itself (a truncated archive, an unreadable block) is ``unreadable``.

A tree never changes while it is read (it is a file's contents, opened read-only), so what is
looked up is kept: the metadata of the last :data:`STAT_CACHE` members.

What a tree cannot give is refused: a file descriptor of a member (:meth:`TreeEvidence.
open_regular`, which a directory root gives to map devicemapper's pool metadata).
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from forensics.evidence import (
    DEFAULT_READ_LIMIT,
    SMALL_LIMIT,
    DirHandle,
    Evidence,
    FileRead,
    PlainDir,
    ReadFailure,
    _reason,
    _require_regular_mode,
    type_of_mode,
)
from forensics.fs.tree import MISSING, Parts, Refusal, Stat, Tree

__all__ = ["STAT_CACHE", "TreeDirHandle", "TreeEvidence", "stat_result"]

#: members whose metadata is kept (a tree does not change under the reader)
STAT_CACHE = 4096
#: damaged paths kept (a hostile image can hold millions)
DAMAGE_KEPT = 1000
#: the block size a tree's stat reports (allocation is counted in these)
_BLOCK = 4096


def stat_result(st: Stat) -> os.stat_result:
    """A tree member's metadata as ``os.lstat`` would give it (``st_dev`` 0: one tree;
    ``st_blocks`` the size rounded up to whole 4 KiB blocks, as the tree records no
    allocation)."""
    blocks = -(-st.size // _BLOCK) * (_BLOCK // 512) if stat.S_ISREG(st.mode) else 0
    return os.stat_result(
        (
            st.mode,
            st.ino,
            0,
            st.nlink,
            st.uid,
            st.gid,
            st.size,
            st.atime_ns // 1_000_000_000,
            st.mtime_ns // 1_000_000_000,
            st.ctime_ns // 1_000_000_000,
        ),
        {
            "st_atime": st.atime_ns / 1e9,
            "st_mtime": st.mtime_ns / 1e9,
            "st_ctime": st.ctime_ns / 1e9,
            "st_atime_ns": st.atime_ns,
            "st_mtime_ns": st.mtime_ns,
            "st_ctime_ns": st.ctime_ns,
            "st_blksize": _BLOCK,
            "st_blocks": blocks,
            "st_rdev": st.rdev,
        },
    )


@functools.lru_cache(maxsize=4096)
def _parts_of(rel: str) -> Parts:
    return tuple(os.fsencode(p) for p in rel.split("/")) if rel else ()


@functools.lru_cache(maxsize=1024)
def _name_bytes(name: str) -> bytes:
    """``os.fsencode(name)``, kept: the stores ask for the same few names in every layer and
    container directory."""
    return os.fsencode(name)


def _unsafe(rel: str) -> bool:
    return any(p in ("", ".", "..") or "\0" in p for p in rel.split("/"))


class TreeEvidence(Evidence):
    """The directory ``top`` of ``tree`` as a Docker root read through the ``Evidence``
    interface. ``root``: the evidence file (for messages, and so that no output is written over
    it); ``close`` lets the tree go (and runs ``on_close``, which closes what it was opened
    on)."""

    def __init__(
        self,
        tree: Tree,
        top: Parts,
        root: str | os.PathLike[str],
        *,
        record_reads: bool = False,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.tree, self.top = tree, top
        self.root = Path(os.path.realpath(root))
        self._prefix = str(self.root) + ":" + "/" + b"/".join(top).decode(errors="replace")
        self.record_reads = record_reads
        self.reads: dict[str, FileRead] = {}
        self._on_close = on_close
        self._stats: OrderedDict[Parts, Stat | Refusal] = OrderedDict()
        #: what the evidence file holds damaged below the root: path → what was met there
        self.damage: dict[str, str] = {}

    def close(self) -> None:
        self._stats.clear()
        on_close, self._on_close = getattr(self, "_on_close", None), None
        if on_close is not None:
            on_close()

    # -- paths ---------------------------------------------------------------------------

    def abspath(self, rel: str) -> str:
        """``EVIDENCE:/path/of/the/root/rel``, for messages (never opened)."""
        return f"{self._prefix.rstrip('/')}/{rel}" if rel else self._prefix

    def tree_parts(self, rel: str) -> Parts:
        """``rel`` as path components of the tree (``top`` first). Raises ReadFailure
        ``unsafe-path`` for a name that is not a plain path below the root."""
        if rel and _unsafe(rel):
            what = f"{rel!r} is not a plain path below ROOT (never opened)"
            raise ReadFailure("unsafe-path", rel, what)
        return (*self.top, *_parts_of(rel))

    def _tree_stat(self, parts: Parts) -> Stat | Refusal:
        cached = self._stats.get(parts)
        if cached is not None:
            self._stats.move_to_end(parts)
            return cached
        found = self.tree.lstat(parts)
        self._stats[parts] = found
        if len(self._stats) > STAT_CACHE:
            self._stats.popitem(last=False)
        return found

    def _member(self, rel: str) -> Stat:
        """The metadata of ``rel``, every directory on the way checked as the directory
        reader checks it. Raises ReadFailure in its words."""
        parent, _, name = rel.rpartition("/")
        if name in ("", ".", "..") or "\0" in name:
            raise ReadFailure("unsafe-path", rel, "not a name below ROOT (never opened)")
        if parent and _unsafe(parent):
            what = f"{parent!r} is not a plain path below ROOT (never opened)"
            raise ReadFailure("unsafe-path", rel, what)
        found = self._tree_stat(self.tree_parts(rel))
        if isinstance(found, Stat):
            return found
        self._check_way(parent, rel)
        if found.kind == MISSING:
            raise ReadFailure("missing", rel, "no such file")
        raise self._damaged(rel, found.detail)

    def _check_way(self, parent: str, for_path: str) -> None:
        """Raise the ReadFailure of the first directory on the way to ``for_path`` that is
        absent, a symlink, no directory or unreadable (nothing when all are directories)."""
        if not parent:
            return
        names = parent.split("/")
        for depth in range(1, len(names) + 1):
            where = "/".join(names[:depth])
            st = self._tree_stat(self.tree_parts(where))
            if isinstance(st, Refusal):
                if st.kind == MISSING:
                    raise ReadFailure("missing", for_path, f"{where} does not exist")
                self._damaged(where, st.detail)
                raise ReadFailure("unreadable", for_path, f"{where}: {st.detail}")
            if not stat.S_ISDIR(st.mode):
                what = "a symlink (not followed)" if stat.S_ISLNK(st.mode) else "not a directory"
                raise ReadFailure(
                    "missing", for_path, f"a directory on the way ({where}) is {what}"
                )

    def directory_parts(self, rel: str) -> Parts:
        """The tree parts of directory ``rel``. Raises ReadFailure as the directory reader
        does when it opens a directory (missing, a symlink, not a directory)."""
        parts = self.tree_parts(rel)
        if not rel:
            st = self._tree_stat(parts)
            if isinstance(st, Refusal):
                raise self._damaged(rel, st.detail)
            return parts
        try:
            st = self._member(rel)
        except ReadFailure as failure:
            if failure.detail == "no such file":
                raise ReadFailure("missing", rel, "no such directory") from None
            raise
        if stat.S_ISLNK(st.mode):
            raise ReadFailure("symlink", rel, "is a symlink (not followed)")
        if not stat.S_ISDIR(st.mode):
            raise ReadFailure("not-directory", rel, "not a directory")
        return parts

    # -- metadata ------------------------------------------------------------------------

    def lstat(self, rel: str) -> os.stat_result | None:
        try:
            st = self._member(rel) if rel else self._tree_stat(self.top)
        except ReadFailure:
            return None
        return None if isinstance(st, Refusal) else stat_result(st)

    def readlink(self, rel: str) -> str | None:
        try:
            st = self._member(rel)
        except ReadFailure:
            return None
        if not stat.S_ISLNK(st.mode):
            return None
        target = self.tree.readlink(self.tree_parts(rel))
        return None if isinstance(target, Refusal) else os.fsdecode(target)

    def _types(self, rel: str) -> dict[str, str]:
        """Name → kind of the entries of directory ``rel``. Raises ReadFailure (in the
        directory reader's words: looked for only when the tree refuses the listing)."""
        parts = self.tree_parts(rel)
        listing = self.tree.listdir(parts)
        if isinstance(listing, Refusal):
            self.directory_parts(rel)  # raises what a directory reader would say
            raise self._damaged(rel, listing.detail)
        if listing.problems:  # the entries that could be read are given all the same
            more = f" (and {len(listing.problems) - 1} more)" if len(listing.problems) > 1 else ""
            self._damaged(rel, f"{listing.problems[0]}{more}")
        out: dict[str, str] = {}
        for entry in listing.entries:
            mode = entry.type
            if not mode:  # a directory that records no types: the member says
                st = self._tree_stat((*parts, entry.name))
                mode = 0 if isinstance(st, Refusal) else st.mode
            out[os.fsdecode(entry.name)] = type_of_mode(mode) if mode else "other"
        return out

    def listdir(self, rel: str) -> list[str]:
        return sorted(self._types(rel))

    def names(self, rel: str) -> set[str]:
        try:
            return set(self._types(rel))
        except ReadFailure:
            return set()

    def scandir_types(self, rel: str) -> dict[str, str]:
        try:
            return self._types(rel)
        except ReadFailure:
            return {}

    # -- contents ------------------------------------------------------------------------

    def _open(self, rel: str, limit: int | None) -> tuple[BinaryIO, Stat]:
        """The regular file ``rel`` open for reading, with the directory reader's checks."""
        st = self._member(rel)
        _require_regular_mode(rel, st.mode, st.size, limit)
        opened = self.tree.open_file(self.tree_parts(rel))
        if isinstance(opened, Refusal):
            raise self._damaged(rel, opened.detail)
        return opened, st

    def read_bytes(self, rel: str, limit: int = DEFAULT_READ_LIMIT) -> bytes:
        data = self._read_plain(self.tree_parts(rel), limit) if rel and not _unsafe(rel) else None
        if data is None:  # not plain: the careful way says why, in the directory reader's words
            f, st = self._open(rel, limit)
            try:
                data = _read_member(f, st.size, rel)
            except ReadFailure as failure:
                raise self._damaged(rel, failure.detail) from None
            finally:
                f.close()
        self._record(rel, data)
        return data

    def open_regular(self, rel: str, limit: int | None = None) -> tuple[int, os.stat_result]:
        """Refused: a member of an archive or a disk image has no descriptor of its own."""
        self._open(rel, limit)[0].close()
        raise ReadFailure(
            "unreadable",
            rel,
            "a file inside an archive or disk image cannot be mapped (read it from a directory)",
        )

    def read_ends(self, rel: str, window: int) -> tuple[bytes, bytes]:
        f, st = self._open(rel, None)
        try:
            head = f.read(window)
            f.seek(max(0, st.size - window))
            tail = f.read(window)
        except OSError as exc:
            raise ReadFailure("unreadable", rel, _reason(exc)) from None
        finally:
            f.close()
        return head, tail

    def opendir(self, rel: str) -> DirHandle:
        return TreeDirHandle(self, rel, self._types(rel))

    def open_listed(self, rel: str, types: dict[str, str]) -> DirHandle:
        self.directory_parts(rel)
        return TreeDirHandle(self, rel, types)

    def read_plain_dir(
        self, rel: str, read: Sequence[str], probe: Sequence[str] = (), limit: int = SMALL_LIMIT
    ) -> PlainDir | None:
        """As :meth:`Evidence.read_plain_dir`: None as soon as anything is not plain (the
        caller then reads the directory the careful way, which names the damage). The
        directory's listing (kept by the tree) gives each name's kind; only the files to read
        are looked up again, to be opened."""
        try:
            parts = self.tree_parts(rel)
        except ReadFailure:
            return None
        listing = self.tree.listdir(parts)
        if isinstance(listing, Refusal) or listing.problems:
            return None
        files: dict[str, bytes] = {}
        for name in read:
            entry = listing.find(_name_bytes(name))
            if entry is None:
                continue
            if entry.type and entry.type != stat.S_IFREG:
                return None
            data = self._read_plain((*parts, entry.name), limit)
            if data is None:
                return None
            files[name] = data
        kinds: dict[str, str] = {}
        for name in probe:
            entry = listing.find(_name_bytes(name))
            if entry is None:
                continue
            mode = entry.type
            if not mode:  # a directory that records no types: the member says
                st = self._tree_stat((*parts, entry.name))
                if isinstance(st, Refusal):
                    return None
                mode = st.mode
            kinds[name] = type_of_mode(mode)
        for name, data in files.items():
            self._record(f"{rel}/{name}", data)
        return PlainDir(files, kinds)

    def _read_plain(self, parts: Parts, limit: int) -> bytes | None:
        """The bytes of the regular file ``parts`` when it holds ``limit`` at most and reads
        whole; None otherwise (not regular, too large, damaged)."""
        opened = self.tree.open_file(parts)
        if isinstance(opened, Refusal):
            return None
        try:
            with opened:
                data = opened.read(limit + 1)
        except OSError:
            return None
        return data if len(data) <= limit else None

    def _record(self, rel: str, data: bytes) -> None:
        if self.record_reads:
            self.reads[rel] = FileRead(rel, len(data), hashlib.sha256(data).hexdigest())

    def _damaged(self, rel: str, detail: str) -> ReadFailure:
        """Note that the evidence file holds ``rel`` damaged (the first :data:`DAMAGE_KEPT`
        paths); the ReadFailure to raise."""
        if len(self.damage) < DAMAGE_KEPT:
            self.damage.setdefault(rel, detail)
        return ReadFailure("unreadable", rel, detail)

    # -- what a forked helper hands back -------------------------------------------------

    def start_task(self) -> None:
        super().start_task()
        self.damage = {}

    def task_record(self) -> Any:
        return super().task_record(), self.damage

    def merge_record(self, record: Any) -> None:
        reads, damage = record
        super().merge_record(reads)
        for rel, detail in damage.items():
            if len(self.damage) < DAMAGE_KEPT:
                self.damage.setdefault(rel, detail)


class TreeDirHandle(DirHandle):
    """A directory of a :class:`TreeEvidence` held for reading several of its files, with
    the entry types of its listing (the directory reader's :class:`DirHandle`, without a
    descriptor)."""

    def __init__(self, ev: TreeEvidence, rel: str, types: dict[str, str]) -> None:
        self.ev, self.rel, self.fd, self.types = ev, rel, -1, types
        self.tree_ev = ev

    def close(self) -> None:
        pass

    def readlink(self, name: str) -> str | None:
        if self.types.get(name) != "symlink":
            return None
        return self.tree_ev.readlink(self.path_of(name))

    def read_bytes(self, name: str, limit: int = DEFAULT_READ_LIMIT) -> bytes:
        rel, _ = self.listed_entry(name)  # the directory reader's refusals, then the tree's read
        return self.tree_ev.read_bytes(rel, limit)


def _read_member(f: BinaryIO, size: int, rel: str) -> bytes:
    """The whole of an open member (``size`` bytes by its metadata)."""
    try:
        data = f.read(size + 1)
    except OSError as exc:
        raise ReadFailure("unreadable", rel, _reason(exc)) from None
    if len(data) < size:
        raise ReadFailure("unreadable", rel, f"{len(data)} of its {size} bytes can be read")
    return data[:size] if len(data) > size else data
