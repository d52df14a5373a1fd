"""Output files (``--sqlite OUT``) written whole or not at all, and never through what is
already at OUT.

The new contents are written in a private directory (mode 0700, made afresh beside OUT, so on
the same file system) to a file created there exclusively without following a symlink; only
when the writer has finished is the file moved to OUT. Nothing but a regular file is ever
replaced: a symlink (dangling or not), a device node, a FIFO, a socket or a directory at OUT is
refused, never written through or replaced. Without ``overwrite`` the file is linked to OUT,
which fails if anything appeared there meanwhile (a rename check-then-move is the fallback on
file systems without hard links). On any failure, full disk included, the private directory is
removed with what it holds: no partial file is left.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from forensics.errors import OperationalError

_KINDS = (
    (stat.S_ISLNK, "a symlink"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)
#: link(2) errors that mean "this file system has no hard links", not "OUT exists"
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class OutputRefused(OperationalError, OSError):
    """OUT holds something that must not be replaced: ``strerror`` says what."""


def kind_of(mode: int) -> str:
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "a regular file" if stat.S_ISREG(mode) else "an unknown kind of file"


def check_replaceable(name: str | Path, overwrite: bool, *, dir_fd: int | None = None) -> None:
    """Refuse what lies at ``name`` itself (a symlink is not followed) unless it is nothing,
    or a regular file and ``overwrite`` is asked for."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise OutputRefused(
            errno.EEXIST, f"is {kind_of(st.st_mode)}: only a regular file is ever replaced"
        )
    if not overwrite:
        raise OutputRefused(errno.EEXIST, "exists (use --overwrite to replace it)")


@contextmanager
def staged_file(out: Path, *, overwrite: bool) -> Iterator[Path]:
    """A new empty file to write ``out``'s contents to, by path; moved to ``out`` when the
    block ends without an exception, removed (with anything written beside it, such as a
    journal) when it does not."""
    parent_fd = os.open(out.parent, _DIR_FLAGS)
    try:
        check_replaceable(out.name, overwrite, dir_fd=parent_fd)
        stage = f".{out.name}.tmp-{secrets.token_hex(6)}"
        os.mkdir(stage, 0o700, dir_fd=parent_fd)
        try:
            stage_fd = os.open(stage, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent_fd)
            try:
                os.close(os.open(out.name, _NEW_FILE_FLAGS, 0o644, dir_fd=stage_fd))
                yield out.parent / stage / out.name
                _move_into_place(out.name, stage_fd, parent_fd, overwrite)
            finally:
                os.close(stage_fd)
        finally:
            shutil.rmtree(stage, dir_fd=parent_fd, ignore_errors=True)
    finally:
        os.close(parent_fd)


def _move_into_place(name: str, stage_fd: int, parent_fd: int, overwrite: bool) -> None:
    _fsync(name, stage_fd)
    if overwrite:
        check_replaceable(name, True, dir_fd=parent_fd)  # again: it may have changed meanwhile
        os.rename(name, name, src_dir_fd=stage_fd, dst_dir_fd=parent_fd)
    else:
        _link_new(name, stage_fd, parent_fd)
    with suppress(OSError):  # the new name made durable where the file system allows it
        os.fsync(parent_fd)


def _fsync(name: str, dir_fd: int) -> None:
    """The file's contents on disk before its name is: a crash never leaves OUT half written."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_new(name: str, stage_fd: int, parent_fd: int) -> None:
    """``name`` in the stage becomes ``name`` in the parent, which must still be free."""
    try:
        os.link(name, name, src_dir_fd=stage_fd, dst_dir_fd=parent_fd, follow_symlinks=False)
    except FileExistsError:
        check_replaceable(name, False, dir_fd=parent_fd)
        raise
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        check_replaceable(name, False, dir_fd=parent_fd)
        os.rename(name, name, src_dir_fd=stage_fd, dst_dir_fd=parent_fd)
