"""File-system primitives of the repair: every path is walked component by component from an
open directory, without following a symlink, and every change is a rename.

A path given to these helpers is relative to a base directory held open as a descriptor (ROOT or
the quarantine run directory); ROOT and the quarantine themselves are opened from ``/`` the same
way (:func:`open_path_dir`). Each directory on the way is opened with ``O_NOFOLLOW`` relative to
the previous one, so a symlink planted anywhere on the way (``overlay2/<id>`` → ``/etc``) makes
the step fail instead of redirecting it, and a directory swapped for a symlink after it was
checked cannot redirect it either: the rename works on the descriptors already opened.

A move (:func:`move_checked`) also holds the entry it moves (``O_PATH``, not followed) and checks
after the rename that what arrived is that entry and that both directories are still where their
paths lead: another process swapping the entry or a directory on the way in the instant between
the check and the rename is caught, the rename is reversed, and the step is refused.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from forensics.errors import OperationalError
from forensics.evidence import type_of_mode

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: how an entry is held while it is moved: never followed, never opened for I/O (a FIFO or a
#: device is not opened at all)
HOLD_FLAGS = getattr(os, "O_PATH", os.O_RDONLY | os.O_NONBLOCK) | os.O_NOFOLLOW | os.O_CLOEXEC
_RENAME_NOREPLACE = 1


class UnsafePath(OperationalError):
    """A path that cannot be used safely: a symlink or non-directory on the way, a bad name."""


class Swapped(UnsafePath):
    """What a rename moved was not what was checked, or a directory on its way moved meanwhile:
    the rename was reversed (or what it moved set apart) and the step refused."""


def split(rel: str) -> tuple[list[str], str]:
    """``a/b/c`` → (``[a, b]``, ``c``), refusing empty, ``.``, ``..`` and absolute paths."""
    parts = rel.split("/")
    for part in parts:
        if part in ("", ".", "..") or "\0" in part:
            raise UnsafePath(f"{rel!r}: not a plain relative path")
    return parts[:-1], parts[-1]


def open_dir(base_fd: int, parts: list[str], *, create: bool = False) -> int:
    """A descriptor of ``base/parts…``, each component opened without following a symlink.

    With ``create``, missing components are made (mode 0700): only ever used in the quarantine.
    """
    fd = os.dup(base_fd)
    for part in parts:
        try:
            child = _open_child(fd, part, create)
        finally:
            os.close(fd)
        fd = child
    return fd


def _open_child(fd: int, part: str, create: bool, shown: str | None = None) -> int:
    """Open directory ``part`` under ``fd`` (``shown``: how messages name it); raise UnsafePath
    on a symlink or a non-directory. With ``create`` a missing one is made (mode 0700)."""
    shown = shown or part
    try:
        return os.open(part, DIR_FLAGS, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            raise UnsafePath(f"{shown}: no such directory") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(f"{shown}: {_not_a_dir(fd, part)} (not followed)") from None
        raise
    try:
        os.mkdir(part, 0o700, dir_fd=fd)
    except FileExistsError:
        pass
    try:
        return os.open(part, DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        raise UnsafePath(f"{shown}: {_not_a_dir(fd, part)} (not followed)") from exc


def _not_a_dir(fd: int, part: str) -> str:
    kind = entry_kind(fd, part)
    return "a symlink" if kind == "symlink" else "a symlink or not a directory"


def open_path_dir(path: str, *, create: bool = False) -> int:
    """A descriptor of the directory at the absolute ``path``, each component from ``/`` opened
    without following a symlink; with ``create`` its last component is made if it is missing
    (mode 0700). A symlink at any component raises UnsafePath naming it."""
    if not os.path.isabs(path):
        raise UnsafePath(f"{path}: not an absolute path")
    parts = [p for p in os.path.normpath(path).split("/") if p]
    fd = os.open("/", DIR_FLAGS)
    walked = ""
    try:
        for i, part in enumerate(parts):
            walked += "/" + part
            child = _open_child(fd, part, create and i == len(parts) - 1, walked)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def same_entry(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


@dataclass
class Held:
    """A directory reached from ``base`` by ``parts`` and held open as ``fd``; ``name`` is the
    entry in it that a step works on."""

    base: int
    parts: list[str]
    fd: int
    name: str

    def still_there(self) -> bool:
        """Does the path from ``base`` still lead, without a symlink, to the directory held?"""
        try:
            fd = open_dir(self.base, self.parts)
        except (UnsafePath, OSError):
            return False
        try:
            return same_entry(os.fstat(fd), os.fstat(self.fd))
        finally:
            os.close(fd)


@contextmanager
def held(base_fd: int, rel: str, *, create: bool = False) -> Iterator[Held]:
    """The directory holding ``rel`` under ``base_fd``, held open, with ``rel``'s last name."""
    parts, name = split(rel)
    fd = open_dir(base_fd, parts, create=create)
    try:
        yield Held(base_fd, parts, fd, name)
    finally:
        os.close(fd)


def move_checked(
    src: Held,
    dst: Held,
    check: Callable[[int, os.stat_result], None] | None = None,
    *,
    dst_name: str | None = None,
    park: Callable[[int, str], str] | None = None,
) -> os.stat_result:
    """Rename ``src.name`` to ``dst_name`` (default ``dst.name``) in ``dst``, never replacing.

    The entry is held first (``O_PATH``, never followed) and ``check`` judges it
    through that descriptor; after the rename, the entry that arrived must be the one held and
    both directories must still be where their paths lead. If not (another process swapped the
    entry, or a directory on the way, in the instant between), the rename is reversed — or, when
    the old name is taken again, what arrived is set apart by ``park(dir_fd, name)`` — and
    Swapped is raised.
    Returns the stat of the entry moved.
    """
    to = dst_name or dst.name
    try:
        efd = os.open(src.name, HOLD_FLAGS, dir_fd=src.fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(f"{src.name}: a symlink (not followed)") from None
        raise
    try:
        st = os.fstat(efd)
        if check is not None:
            check(efd, st)
        if not (src.still_there() and dst.still_there()):
            raise Swapped(f"{src.name}: a directory on its way was moved or swapped; not moved")
        rename_noreplace(src.fd, src.name, dst.fd, to)
        arrived = entry(dst.fd, to)
        if arrived is not None and same_entry(arrived, st):
            if src.still_there() and dst.still_there():
                return st
        where = _reverse(src, dst, to, park)
        raise Swapped(
            f"{src.name}: changed while it was moved (swapped by another process, or a directory "
            f"on its way moved); {where}"
        )
    finally:
        os.close(efd)


def _reverse(src: Held, dst: Held, to: str, park: Callable[[int, str], str] | None) -> str:
    """Put back what a rename moved, or else set it apart with ``park``; say where it is."""
    try:
        rename_noreplace(dst.fd, to, src.fd, src.name)
        return "the rename was reversed"
    except OSError:
        pass
    if park is not None:
        try:
            return park(dst.fd, to)
        except (OSError, UnsafePath):
            pass
    return f"what arrived is left as {to}"


@contextmanager
def parent_of(base_fd: int, rel: str, *, create: bool = False) -> Iterator[tuple[int, str]]:
    """(descriptor of the directory holding ``rel``, last component), closed afterwards."""
    parts, name = split(rel)
    fd = open_dir(base_fd, parts, create=create)
    try:
        yield fd, name
    finally:
        os.close(fd)


def entry(dir_fd: int, name: str) -> os.stat_result | None:
    """lstat of ``name`` in ``dir_fd`` (never followed), or None when it does not exist."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def entry_kind(dir_fd: int, name: str) -> str | None:
    st = entry(dir_fd, name)
    return None if st is None else type_of_mode(st.st_mode)


def times_of(st: os.stat_result) -> list[int]:
    return [st.st_atime_ns, st.st_mtime_ns]


def set_times(dir_fd: int, name: str | None, times: list[int]) -> None:
    """Set (atime, mtime) of ``name`` in ``dir_fd`` — or of ``dir_fd`` itself — unfollowed."""
    ns = (times[0], times[1])
    if name is None:
        os.utime(dir_fd, ns=ns)
    else:
        os.utime(name, ns=ns, dir_fd=dir_fd, follow_symlinks=False)


def _libc_renameat2() -> object | None:
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_RENAMEAT2 = _libc_renameat2()


def rename_noreplace(src_fd: int, src: str, dst_fd: int, dst: str) -> None:
    """Rename ``src`` (in ``src_fd``) to ``dst`` (in ``dst_fd``); never replaces ``dst``.

    Uses renameat2(RENAME_NOREPLACE) where the C library and file system have it, otherwise an
    lstat of ``dst`` then a plain rename (the daemon is stopped and the repair holds its lock).
    """
    if _RENAMEAT2 is not None:
        rc = _RENAMEAT2(src_fd, os.fsencode(src), dst_fd, os.fsencode(dst), _RENAME_NOREPLACE)  # type: ignore[operator]
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(err, os.strerror(err), src, None, dst)
    if entry(dst_fd, dst) is not None:
        raise FileExistsError(errno.EEXIST, "file exists", dst)
    os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)


def write_new_file(
    dir_fd: int, name: str, data: bytes | memoryview, mode: int, size: int | None = None
) -> None:
    """Write ``data`` to the new file ``name`` in ``dir_fd`` (replacing an earlier partial copy
    of ours), extended with a hole to ``size`` if given, and fsync it. Only used inside the
    quarantine."""
    tmp = f".{name}.part"
    try:
        os.unlink(tmp, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    fd = os.open(
        tmp,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        mode,
        dir_fd=dir_fd,
    )
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if size is not None and size > len(data):
            os.ftruncate(fd, size)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    os.fsync(dir_fd)


READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def read_file(dir_fd: int, name: str, limit: int = 64 * 1024 * 1024) -> bytes:
    """The bytes of the regular file ``name`` in ``dir_fd`` (not followed; a FIFO or device is
    refused, never read), at most ``limit`` of them."""
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(f"{name}: a symlink (not followed)") from None
        raise
    try:
        return read_fd(fd, name, limit)
    finally:
        os.close(fd)


def read_fd(fd: int, name: str, limit: int) -> bytes:
    """The bytes of the regular file open at ``fd`` (``name`` for messages), at most ``limit``."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"{name}: not a regular file")
    if st.st_size > limit:
        raise UnsafePath(f"{name}: larger than {limit} bytes")
    chunks = [os.read(fd, st.st_size + 1)]  # whole in one read, as a regular file gives it
    total = len(chunks[0])
    while total <= limit and (chunk := os.read(fd, 1 << 20)):
        total += len(chunk)
        chunks.append(chunk)
    if total > limit:
        raise UnsafePath(f"{name}: larger than {limit} bytes")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
