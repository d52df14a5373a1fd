"""Reading a layer's files by tar name, confined to the layer's content directory.

tar-split's own getter opens ``Join(dir, name)``: ``..`` can climb out and every symlink on the
way is followed (``shared/reference/tar-split.md`` §8). Here a name is cleaned lexically and
refused when it climbs above the directory; then it is walked one component at a time with
``openat``-style calls relative to directory descriptors opened with ``O_NOFOLLOW``, so no
symlink is ever followed, neither on the way nor at the end, and nothing but a regular file is
opened for reading (no FIFO, no device).

The content directory itself is opened through :class:`forensics.evidence.Evidence`, which
guarantees that no directory between ROOT and it is a symlink.

Nothing here recurses: a name of thousands of components is opened one ``openat`` at a time
from the nearest directory held open. Paths are bounded by what Linux allows (:data:`PATH_MAX`
from the layer's root, :func:`too_deep`): a layer cannot hold a deeper path that dockerd could
have written or read, and the callers report one as a finding rather than follow it.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections import OrderedDict
from dataclasses import dataclass

from forensics.evidence import Evidence, entry_type
from forensics.fs.tree import kind_of  # a file type in words, as the trees of fs/ say it

__all__ = ["PATH_MAX", "ConfinedDir", "Refusal", "clean_name", "shorten", "too_deep"]

#: what os.fsencode does, without a call of it per directory entry
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NOATIME = getattr(os, "O_NOATIME", 0)
#: directories kept open: tar members come in directory order, so a few suffice
_CACHE = 64
#: levels above a directory searched for one held open, and levels of a walk down kept open
_NEAR = 8
#: Linux's bound on a path name, its terminating NUL included (``linux/limits.h``)
PATH_MAX = 4096
#: a name longer than this is not even cleaned: no tar writer produces one that would clean
#: to a path within PATH_MAX (only a stream of ``..`` and ``.`` components could)
_NAME_MAX_RAW = 16 * PATH_MAX
#: characters of a path kept at each end when it is shown shortened
_SHOWN_ENDS = 60

Parts = tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a member was not read. ``kind``: ``missing``, ``unsafe-path`` (a symlink on the way,
    or a name that climbs out), ``not-regular`` (the member is no regular file; ``mode`` says
    what it is), ``unreadable`` (an I/O or permission error)."""

    kind: str
    detail: str
    mode: int = 0


def clean_name(name: bytes) -> Parts | None:
    """The components of tar name ``name`` relative to the layer dir, or None when it climbs
    above it (``../x``, ``a/../../x``) or holds a NUL. Leading ``/`` and ``./`` are dropped and
    ``..`` inside the tree is resolved, as Go's ``filepath.Join`` does."""
    if b"\0" in name:
        return None
    if len(name) > _NAME_MAX_RAW:
        return (name,)  # one component as long as the name: too_deep says so, nothing opens it
    fast = tuple(name.split(b"/"))  # the usual name: nothing to drop or resolve
    if b"" not in fast and b"." not in fast and b".." not in fast:
        return fast
    parts: list[bytes] = []
    for comp in name.split(b"/"):
        if comp in (b"", b"."):
            continue
        if comp == b"..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(comp)
    return tuple(parts)


def too_deep(length: int) -> bool:
    """True when a cleaned path of ``length`` bytes (relative to the layer root, components
    joined by ``/``) is longer than Linux allows a path from that root: ``/`` + path + NUL
    beyond :data:`PATH_MAX` bytes. (It bounds the components too: each takes two bytes.)"""
    return length + 2 > PATH_MAX


def shorten(path: str) -> str:
    """``path`` fit for a message: a long one keeps its two ends around an ellipsis."""
    if len(path) <= 2 * _SHOWN_ENDS + 1:
        return path
    return f"{path[:_SHOWN_ENDS]}…{path[-_SHOWN_ENDS:]}"


class ConfinedDir:
    """A content directory held open; members are looked up by cleaned name components.
    The directory backend of :class:`~forensics.layers.content.LayerTree`."""

    #: a directory of ROOT may be a copy that lost owners and xattrs: only modes are held
    exact_metadata = False
    source = ""

    def __init__(self, ev: Evidence, rel: str) -> None:
        """Open directory ``rel`` of the evidence. Raises ``ReadFailure`` when it is missing,
        a symlink, or lies under one."""
        handle = ev.opendir(rel)
        try:
            self.fd = os.dup(handle.fd)
        finally:
            handle.close()
        self.rel = rel
        self._dirs: OrderedDict[Parts, int] = OrderedDict()

    def __enter__(self) -> ConfinedDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def path_of(self, parts: Parts) -> str:
        """The member's path relative to ROOT, for messages (undecodable bytes escaped)."""
        tail = b"/".join(parts).decode("utf-8", "surrogateescape")
        return f"{self.rel}/{tail}" if tail else self.rel

    # -- lookups -----------------------------------------------------------------------------

    def dir_fd(self, parts: Parts) -> int | Refusal:
        """A descriptor of directory ``parts`` (owned by the cache: do not close it).

        Opened one component at a time from the nearest directory held open within
        :data:`_NEAR` levels above (else from the top); the last :data:`_NEAR` levels walked
        are kept open, since the members that follow are mostly their neighbours."""
        if not parts:
            return self.fd
        dirs = self._dirs
        fd = dirs.get(parts)
        if fd is not None:
            dirs.move_to_end(parts)
            return fd
        depth = len(parts)
        start, fd = 0, self.fd
        for level in range(depth - 1, max(0, depth - _NEAR), -1):
            above = parts[:level]
            held = dirs.get(above)
            if held is not None:
                dirs.move_to_end(above)
                start, fd = level, held
                break
        owned = False  # whether fd is ours to close (not held in the cache)
        for level in range(start, depth):
            try:
                child = os.open(parts[level], _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                refusal = self._why_not_dir(fd, parts[: level + 1], exc)
                if owned:
                    os.close(fd)
                return refusal
            if owned:
                os.close(fd)
            fd = child
            owned = level + 1 < depth - _NEAR
            if not owned:
                self._hold(parts[: level + 1], fd)
        return fd

    def _hold(self, parts: Parts, fd: int) -> None:
        """Keep ``fd`` open as directory ``parts``; the least recently used one is closed."""
        self._dirs[parts] = fd
        if len(self._dirs) > _CACHE:
            _, old = self._dirs.popitem(last=False)
            os.close(old)

    def lstat(self, parts: Parts) -> os.stat_result | Refusal:
        """lstat of the member (never following it), its directories walked without follow."""
        if not parts:
            return os.fstat(self.fd)
        parent = self.dir_fd(parts[:-1])
        if isinstance(parent, Refusal):
            return parent
        try:
            return os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except OSError as exc:
            return _refusal(self.path_of(parts), exc)

    def open_regular(
        self, parts: Parts, *, listed_regular: bool = False
    ) -> tuple[int, os.stat_result] | Refusal:
        """An open descriptor of the regular file ``parts`` and its fstat; the caller closes
        it. A symlink, directory, device, FIFO or socket is refused before being opened: by
        an lstat, or — ``listed_regular`` — because its directory listing said it is a regular
        file (as :class:`~forensics.evidence.DirHandle` does); fstat confirms after the open."""
        parent = self.dir_fd(parts[:-1]) if parts else Refusal("not-regular", "the layer root")
        if isinstance(parent, Refusal):
            return parent
        name = parts[-1]
        if not listed_regular:
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except OSError as exc:
                return _refusal(self.path_of(parts), exc)
            if not stat.S_ISREG(st.st_mode):
                return Refusal("not-regular", f"is a {kind_of(st.st_mode)}", st.st_mode)
        try:
            fd = _open_noatime(name, parent)
        except OSError as exc:
            return _refusal(self.path_of(parts), exc)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced between stat and open: refuse all the same
            os.close(fd)
            return Refusal("not-regular", f"is a {kind_of(st.st_mode)}", st.st_mode)
        return fd, st

    def readlink(self, parts: Parts) -> bytes | Refusal:
        """The target of the symlink ``parts``, never followed."""
        parent = self.dir_fd(parts[:-1]) if parts else Refusal("not-regular", "the layer root")
        if isinstance(parent, Refusal):
            return parent
        try:
            return os.readlink(parts[-1], dir_fd=parent)
        except OSError as exc:
            return Refusal("unreadable", (exc.strerror or str(exc)).lower())

    def listdir(self, parts: Parts) -> list[tuple[bytes, str]] | Refusal:
        """The entries of directory ``parts`` with their kinds (from the listing's d_type,
        never followed), sorted by name."""
        fd = self.dir_fd(parts)
        if isinstance(fd, Refusal):
            return fd
        try:
            with os.scandir(fd) as it:
                return sorted([(e.name.encode(_FS_ENCODING, _FS_ERRORS), _kind(e)) for e in it])
        except OSError as exc:
            return Refusal("unreadable", f"{self.path_of(parts)}: {_reason(exc)}")

    def xattr(self, parts: Parts, name: str) -> bytes | None:
        """The extended attribute ``name`` of the member (a directory through its descriptor,
        anything else by its name in its directory, never followed), None when it has none."""
        try:
            if not parts:
                return os.getxattr(self.fd, name)
            parent = self.dir_fd(parts[:-1])
            if isinstance(parent, Refusal):
                return None
            st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                fd = self.dir_fd(parts)
                return None if isinstance(fd, Refusal) else os.getxattr(fd, name)
            where = b"/proc/self/fd/%d/%s" % (parent, parts[-1])
            return os.getxattr(where, name, follow_symlinks=False)
        except OSError:
            return None

    def _why_not_dir(self, parent: int, parts: Parts, exc: OSError) -> Refusal:
        where = self.path_of(parts)
        if exc.errno == errno.ENOENT:
            return Refusal("missing", f"{where}: no such directory")
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            try:
                st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            except OSError:
                return Refusal("missing", f"{where}: no such directory")
            if stat.S_ISLNK(st.st_mode):
                return Refusal("unsafe-path", f"{where} is a symlink (not followed)", st.st_mode)
            return Refusal("missing", f"{where} is a {kind_of(st.st_mode)}, not a directory")
        return Refusal("unreadable", f"{where}: {_reason(exc)}")


def _kind(entry: os.DirEntry[str]) -> str:
    """``file``, ``dir``, ``symlink`` or ``other`` for a directory entry, asking first what
    most entries are (never followed)."""
    try:
        if entry.is_file(follow_symlinks=False):
            return "file"
    except OSError:
        return "other"
    return entry_type(entry)


def _open_noatime(name: bytes, dir_fd: int) -> int:
    if _NOATIME:
        try:
            return os.open(name, _FILE_FLAGS | _NOATIME, dir_fd=dir_fd)
        except PermissionError:  # O_NOATIME is refused on files of other owners
            pass
    return os.open(name, _FILE_FLAGS, dir_fd=dir_fd)


def _refusal(where: str, exc: OSError) -> Refusal:
    if exc.errno == errno.ENOENT:
        return Refusal("missing", f"{where}: no such file")
    if exc.errno == errno.ELOOP:
        return Refusal("unsafe-path", f"{where} is a symlink (not followed)")
    if exc.errno == errno.ENOTDIR:
        return Refusal("missing", f"{where}: a directory on the way is not a directory")
    return Refusal("unreadable", f"{where}: {_reason(exc)}")


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()
