"""File-system primitives of the repair: every path is walked component by component from an
open directory, without following a symlink, and every change is a rename.

A path given to these helpers is relative to a base directory held open as a descriptor (ROOT or
the quarantine run directory). Each directory on the way is opened with ``O_NOFOLLOW`` relative
to the previous one, so a symlink planted anywhere on the way (``overlay2/<id>`` → ``/etc``) makes
the step fail instead of redirecting it, and a directory swapped for a symlink after it was
checked cannot redirect it either: the rename works on the descriptors already opened.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from forensics.evidence import type_of_mode

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RENAME_NOREPLACE = 1


class UnsafePath(Exception):
    """A path that cannot be used safely: a symlink or non-directory on the way, a bad name."""


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


def _open_child(fd: int, part: str, create: bool) -> int:
    """Open directory ``part`` under ``fd``; raise UnsafePath on a symlink or a non-directory."""
    try:
        return os.open(part, DIR_FLAGS, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            raise UnsafePath(f"{part}: no such directory") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(f"{part}: a symlink or not a directory (not followed)") from None
        raise
    try:
        os.mkdir(part, 0o700, dir_fd=fd)
    except FileExistsError:
        pass
    try:
        return os.open(part, DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        raise UnsafePath(f"{part}: a symlink or not a directory (not followed)") from exc


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


def write_new_file(dir_fd: int, name: str, data: bytes, mode: int) -> None:
    """Write ``data`` to the new file ``name`` in ``dir_fd`` (replacing an earlier partial copy
    of ours) and fsync it. Only used inside the quarantine."""
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
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    os.fsync(dir_fd)


def read_file(dir_fd: int, name: str, limit: int = 64 * 1024 * 1024) -> bytes:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(f"{name}: not a regular file")
        chunks = []
        total = 0
        while chunk := os.read(fd, 1 << 20):
            total += len(chunk)
            if total > limit:
                raise UnsafePath(f"{name}: larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
