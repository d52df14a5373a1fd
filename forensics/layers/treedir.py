"""A directory of a file tree read without mounting, as a layer's tree.

:class:`TreeDir` serves the members below one directory (``top``) of any
:class:`forensics.fs.Tree` — ``rootfs/`` of a devicemapper thin device today; a containerd
snapshot or a directory of a disk image the same way — through the
:class:`~forensics.layers.content.LayerTree` interface that the layer code reads. The tree does
the confinement (a path is resolved one name at a time from the root, no symlink followed,
sizes capped by the device), this adapter the vocabulary: stats with ``os.stat_result``'s field
names, refusals in the layer code's words, paths shown where Docker would mount the tree.

What the tree met on the way (names dropped from a damaged directory, a listing cut at a cap, a
directory that cannot be listed) is kept in :attr:`TreeDir.problems`, each once, for the caller
to report: a member that cannot be read is the caller's to name already.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from typing import BinaryIO

from forensics.fs.tree import MISSING, NOT_REGULAR, UNSAFE_PATH, Stat, Tree, display
from forensics.fs.tree import Refusal as TreeRefusal
from forensics.layers.confine import Parts, Refusal, kind_of
from forensics.treeevidence import TreeEvidence

__all__ = ["TreeDir", "TreeStat", "evidence_dir"]

#: a tree's refusal kinds in the layer code's words (it knows no damaged or too-large member:
#: both are unreadable to it; a non-directory on the way is a missing member, as on a disk)
_KINDS = {MISSING: "missing", UNSAFE_PATH: "unsafe-path", NOT_REGULAR: "not-regular"}
#: directory entry types (S_IFMT bits) as listing kinds
_ENTRY_KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink"}
#: problems of one tree kept (a crafted filesystem can hold millions)
_PROBLEMS_KEPT = 1000


class TreeStat:
    """A tree member's metadata under ``os.stat_result``'s field names."""

    __slots__ = (
        "st_mode",
        "st_ino",
        "st_nlink",
        "st_uid",
        "st_gid",
        "st_size",
        "st_rdev",
        "st_atime_ns",
        "st_mtime_ns",
        "st_ctime_ns",
        "st_birthtime_ns",
    )

    def __init__(self, st: Stat) -> None:
        self.st_mode, self.st_ino, self.st_nlink = st.mode, st.ino, st.nlink
        self.st_uid, self.st_gid, self.st_size, self.st_rdev = st.uid, st.gid, st.size, st.rdev
        self.st_atime_ns, self.st_mtime_ns, self.st_ctime_ns = st.atime_ns, st.mtime_ns, st.ctime_ns
        #: the inode's birth time (ext4's crtime, xfs v5's crtime); None where there is none
        self.st_birthtime_ns = st.crtime_ns


class TreeDir:
    """The members below ``top`` of ``tree``, shown as ``rel``/… (``rel``: where Docker
    mounts them, relative to ROOT). ``source`` says what holds the tree, for messages;
    ``on_close`` releases it (the tree and what it was opened on)."""

    #: owners, times and xattrs are read as the filesystem holds them
    exact_metadata = True

    def __init__(
        self,
        tree: Tree,
        top: Parts,
        rel: str,
        source: str,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.tree, self.top, self.rel, self.source = tree, top, rel, source
        self._on_close = on_close
        self._top_shown = display(top) if top else ""
        self.problems: list[str] = []
        self._seen_problems: set[str] = set()

    def __enter__(self) -> TreeDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    def path_of(self, parts: Parts) -> str:
        tail = b"/".join(parts).decode("utf-8", "surrogateescape")
        return f"{self.rel}/{tail}" if tail else self.rel

    # -- the LayerTree interface ------------------------------------------------------------

    def lstat(self, parts: Parts) -> TreeStat | Refusal:
        st = self.tree.lstat((*self.top, *parts))
        if isinstance(st, TreeRefusal):
            return self._refusal(st)
        return TreeStat(st)

    def open_regular(
        self, parts: Parts, *, listed_regular: bool = False
    ) -> tuple[BinaryIO, TreeStat] | Refusal:
        st = self.lstat(parts)
        if isinstance(st, Refusal):
            return st
        if not stat.S_ISREG(st.st_mode):
            return Refusal("not-regular", f"is a {kind_of(st.st_mode)}", st.st_mode)
        opened = self.tree.open_file((*self.top, *parts))
        if isinstance(opened, TreeRefusal):
            return self._refusal(opened)
        return opened, st

    def readlink(self, parts: Parts) -> bytes | Refusal:
        target = self.tree.readlink((*self.top, *parts))
        if isinstance(target, TreeRefusal):
            return self._refusal(target)
        return target

    def listdir(self, parts: Parts) -> list[tuple[bytes, str]] | Refusal:
        listing = self.tree.listdir((*self.top, *parts))
        if isinstance(listing, TreeRefusal):
            refusal = self._refusal(listing)
            if refusal.kind == "unreadable":
                self._note(f"{refusal.detail} (its entries are not read)")
            return refusal
        for problem in listing.problems:
            self._note(f"{self.path_of(parts)}: {problem}")
        out = []
        for entry in listing.entries:
            kind = _ENTRY_KINDS.get(entry.type)
            if kind is None:  # a type the directory does not record, or a special file
                st = self.lstat((*parts, entry.name)) if not entry.type else None
                mode = entry.type if st is None or isinstance(st, Refusal) else st.st_mode
                kind = _ENTRY_KINDS.get(stat.S_IFMT(mode), "other")
            out.append((entry.name, kind))
        out.sort()
        return out

    def shared_members(self, other: object) -> Callable[[Parts], bool] | None:
        """How to tell that a member is the same in ``other`` without reading it: a test of
        ``parts`` that is True when both trees list it as the same inode (not a directory)
        kept in the same bytes of one thin pool — a snapshot's member that neither device
        rewrote. None when the trees cannot tell (not two trees of one pool's devices)."""
        if not isinstance(other, TreeDir):
            return None
        shares = getattr(self.tree, "shares_member", None)
        if shares is None or type(other.tree) is not type(self.tree):
            return None
        mine, theirs, their_tree = self.top, other.top, other.tree
        return lambda parts: bool(shares(their_tree, (*mine, *parts), (*theirs, *parts)))

    def xattr(self, parts: Parts, name: str) -> bytes | None:
        found = self.tree.xattrs((*self.top, *parts))
        if isinstance(found, TreeRefusal):
            return None
        return found.get(name.encode())

    # -- helpers ----------------------------------------------------------------------------

    def _refusal(self, refusal: TreeRefusal) -> Refusal:
        kind = _KINDS.get(refusal.kind, "unreadable")
        return Refusal(kind, self._shown(refusal.detail), refusal.mode)

    def _shown(self, detail: str) -> str:
        """A tree's message with the member's path from the tree's root (``/rootfs/a``)
        shown as the layer's (``devicemapper/mnt/<id>/rootfs/a``)."""
        top = self._top_shown
        if top and (detail == top or detail.startswith((top + "/", top + ":", top + " "))):
            return self.rel + detail[len(top) :]
        if not top and detail.startswith("/"):
            return self.rel + detail
        return detail

    def _note(self, problem: str) -> None:
        if problem in self._seen_problems or len(self.problems) >= _PROBLEMS_KEPT:
            return
        self._seen_problems.add(problem)
        self.problems.append(problem)


def evidence_dir(ev: TreeEvidence, rel: str) -> TreeDir:
    """Directory ``rel`` of a Docker root read from an archive or disk image, as the layer
    tree its unpacked directory would be (:class:`~forensics.layers.confine.ConfinedDir`):
    shown as ``rel``/…, its owners, times and xattrs held as a directory's are (a root read
    from a file answers as the directory would). Raises ``ReadFailure`` as ``ConfinedDir``
    does when it is missing, a symlink, or lies under one."""
    top = ev.directory_parts(rel)
    out = TreeDir(ev.tree, top, rel, "")
    out.exact_metadata = False
    return out
