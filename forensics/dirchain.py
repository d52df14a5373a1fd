"""Directories below ROOT reached through descriptors, never through a path resolved again.

A check made on a path (an ``lstat`` that says "a real directory") and an open of the same path
later are two resolutions: between them another process can swap a directory for a symlink to
anywhere. Here ROOT's descriptor is held, and a directory below it is opened relative to the
descriptor of the directory above, with ``O_NOFOLLOW`` at every component, so that a symlink met
on the way is refused at the moment it is met. Where the kernel has ``openat2`` (Linux 5.6), a
directory several levels below the nearest one already open is reached in one call with
``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS``; any failure of that call is
diagnosed by the component walk, which says which component is missing or a symlink.

Names are plain relative paths (``a/b/c``): an empty component, ``.`` or ``..`` or a NUL is
refused before anything is opened, so no name can climb out of ROOT.

Directories are kept open in a small least-recently-used cache (the stores read the files of
``containers/``, ``layerdb/sha256/``, … again and again); a descriptor handed out by
:meth:`DirChain.dir_fd` belongs to the cache and is valid until that many other directories
have been opened, so it is used at once and never kept.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import sys
from collections import OrderedDict
from collections.abc import Callable

from forensics.errors import Damage

__all__ = [
    "DIR_FLAGS",
    "FILE_FLAGS",
    "DirChain",
    "UnsafeName",
    "WalkError",
    "open_file_at",
    "plain_parts",
]

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: O_NONBLOCK: a FIFO swapped in after its kind was looked at never blocks the open
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NOATIME = getattr(os, "O_NOATIME", 0)
#: directories kept open per chain (a process opens at most this many besides its own)
CACHE_SIZE = 128

# openat2(2): the syscall number is the same on every Linux architecture (the unified table)
_SYS_OPENAT2 = 437
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_RESOLVE = _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS


class UnsafeName(Damage, ValueError):
    """A name that is not a plain path below ROOT (empty component, ``.``, ``..``, NUL)."""


class WalkError(Damage):
    """Directory ``where`` (relative to ROOT) on the way could not be opened. ``reason``:
    ``missing``, ``symlink``, ``not-directory`` or ``unreadable``."""

    def __init__(self, where: str, reason: str, detail: str) -> None:
        super().__init__(f"{where}: {detail}")
        self.where, self.reason, self.detail = where, reason, detail


def plain_parts(rel: str) -> list[str]:
    """The components of ``rel``; raises UnsafeName when one of them could climb or is empty."""
    parts = rel.split("/")
    for part in parts:
        if part in ("", ".", "..") or "\0" in part:
            raise UnsafeName(f"{rel!r} is not a plain path below ROOT (never opened)")
    return parts


def open_file_at(name: str, dir_fd: int) -> int:
    """``name`` in ``dir_fd`` opened read-only, never through a symlink, without updating its
    access time where the kernel lets us (it refuses O_NOATIME on files of other owners)."""
    if _NOATIME:
        try:
            return os.open(name, FILE_FLAGS | _NOATIME, dir_fd=dir_fd)
        except PermissionError:
            pass
    return os.open(name, FILE_FLAGS, dir_fd=dir_fd)


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


class _Openat2:
    """``openat2`` through ``syscall(2)``; ``usable`` turns False for good once the kernel (or
    a seccomp filter) refuses it."""

    def __init__(self) -> None:
        self.usable = False
        if not sys.platform.startswith("linux"):
            return
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self._syscall = libc.syscall
        except (OSError, AttributeError):  # pragma: no cover - no C library to call through
            return
        self._syscall.restype = ctypes.c_long
        self._how = _OpenHow(DIR_FLAGS, 0, _RESOLVE)
        self._size = ctypes.sizeof(self._how)
        self.usable = True

    def open_dir(self, dir_fd: int, path: str) -> int:
        """Directory ``path`` below ``dir_fd``, no symlink anywhere and nothing above
        ``dir_fd``. Raises OSError."""
        fd = self._syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_int(dir_fd),
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.byref(self._how),
            ctypes.c_size_t(self._size),
        )
        if fd < 0:
            code = ctypes.get_errno()
            if code in (errno.ENOSYS, errno.EPERM, errno.E2BIG, errno.EINVAL):
                self.usable = False  # no openat2 here (old kernel, seccomp): walk instead
            raise OSError(code, os.strerror(code))
        return int(fd)


_openat2 = _Openat2()


class DirChain:
    """ROOT's descriptor and the directories below it opened so far (owned: :meth:`close`
    closes them all)."""

    def __init__(self, root_fd: int, capacity: int = CACHE_SIZE) -> None:
        self.root_fd = root_fd
        self.capacity = capacity
        self._open: OrderedDict[str, int] = OrderedDict()

    def close(self, _close: Callable[[int], None] = os.close) -> None:
        """Close every descriptor (idempotent; ``_close`` bound early, for interpreter exit)."""
        while self._open:
            _close(self._open.popitem()[1])
        if self.root_fd >= 0:
            _close(self.root_fd)
            self.root_fd = -1

    def dir_fd(self, rel: str) -> int:
        """The descriptor of directory ``rel`` ('' is ROOT), owned by the chain: use it at once.
        Raises UnsafeName or WalkError."""
        if not rel:
            return self.root_fd
        fd = self._open.get(rel)
        if fd is not None:
            self._open.move_to_end(rel)
            return fd
        parts = plain_parts(rel)
        done, base = self._nearest_open(parts)
        if len(parts) - done > 1 and _openat2.usable:
            try:
                fd = _openat2.open_dir(base, "/".join(parts[done:]))
            except OSError:
                pass  # the walk below says which component is at fault (or that it went away)
            else:
                self._keep(rel, fd)
                return fd
        return self._walk(parts, done, base)

    def _nearest_open(self, parts: list[str]) -> tuple[int, int]:
        """How many leading components of ``parts`` name the deepest directory already open
        (not ``parts`` itself), and its descriptor (ROOT's when none is)."""
        for depth in range(len(parts) - 1, 0, -1):
            fd = self._open.get("/".join(parts[:depth]))
            if fd is not None:
                return depth, fd
        return 0, self.root_fd

    def _walk(self, parts: list[str], done: int, base: int) -> int:
        """Open ``parts[done:]`` one component at a time below ``base``, each kept."""
        fd = base
        for depth in range(done, len(parts)):
            name = parts[depth]
            try:
                fd = os.open(name, DIR_FLAGS, dir_fd=base)
            except OSError as exc:
                raise _walk_error("/".join(parts[: depth + 1]), base, name, exc) from None
            self._keep("/".join(parts[: depth + 1]), fd)
            base = fd
        return fd

    def _keep(self, rel: str, fd: int) -> None:
        self._open[rel] = fd
        if len(self._open) > self.capacity:
            _, old = self._open.popitem(last=False)
            os.close(old)


def _walk_error(where: str, parent_fd: int, name: str, exc: OSError) -> WalkError:
    if exc.errno == errno.ENOENT:
        return WalkError(where, "missing", "no such directory")
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        try:
            mode = os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode
        except OSError:
            return WalkError(where, "missing", "no such directory")
        if stat.S_ISLNK(mode):
            return WalkError(where, "symlink", "is a symlink (not followed)")
        return WalkError(where, "not-directory", "not a directory")
    return WalkError(where, "unreadable", (exc.strerror or str(exc)).lower())
