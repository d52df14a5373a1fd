"""Read-only access to an evidence tree (a Docker root or a copy of one).

Every read goes through :class:`Evidence`. It never opens anything for writing, never follows a
symlink (neither in the final component nor in any directory on the way, so nothing outside ROOT
can be reached), refuses FIFOs and device nodes where a file is expected (opening a FIFO would
block), and caps how much it reads. Failures are raised as :class:`ReadFailure`, which the stores
turn into problems of the object they were reading.

Confinement does not rest on checks made before an open: ROOT is opened once and held, and every
path below it is reached from that descriptor, one directory descriptor at a time, each opened
with ``O_NOFOLLOW`` relative to the one above it (:mod:`forensics.dirchain`). A directory swapped
for a symlink while the tree is read is refused when it is reached, never followed; a name that
climbs (``..``) is refused before anything is opened. Directories that are read again and again
(``containers/``, ``layerdb/sha256/``, …) are kept open in a small cache.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forensics.dirchain import (
    DIR_FLAGS,
    DirChain,
    UnsafeName,
    WalkError,
    open_file_at,
)
from forensics.errors import Damage, OperationalError

#: metadata files larger than this are not read (a 1 GiB "JSON" file is damage, not data)
DEFAULT_READ_LIMIT = 64 * 1024 * 1024
#: small single-value files (ids, sizes, link names) are never longer than this
SMALL_LIMIT = 64 * 1024


class RootError(OperationalError):
    """ROOT itself cannot be examined (missing, not a directory, unreadable)."""


@dataclass(frozen=True)
class ReadFailure(Damage):
    """A file or directory under ROOT that could not be read as expected.

    ``kind`` is one of: ``missing``, ``symlink``, ``not-regular``, ``not-directory``,
    ``unreadable``, ``too-large``, ``unsafe-path`` (a name that climbs out of ROOT: never
    opened).
    """

    kind: str
    path: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}"


@dataclass(frozen=True)
class FileRead:
    """Provenance of one file read: where, how big, and its sha256."""

    path: str
    size: int
    sha256: str


@dataclass
class PlainDir:
    """What :meth:`Evidence.read_plain_dir` found in a directory where nothing was amiss:
    the contents of the files that exist, and the kind (``dir``, ``file``, ``symlink``,
    ``other``) of each probed name that exists."""

    files: dict[str, bytes]
    kinds: dict[str, str]


class Evidence:
    """A Docker root opened for reading only. Paths given to its methods are relative to ROOT.

    ROOT is resolved once (it may be given through a symlink) and its directory held open; every
    read below it goes through that descriptor. :meth:`close` (or the end of a ``with`` block)
    lets the descriptors go. (A root inside an archive or disk image is read by the subclass
    :class:`~forensics.treeevidence.TreeEvidence`, whose ``origin`` says where it lies.)"""

    #: where the root lies in an evidence file (:class:`forensics.image.root.Origin`); None
    #: for a directory
    origin: Any = None

    def __init__(self, root: str | os.PathLike[str], *, record_reads: bool = False) -> None:
        path = Path(root)
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            raise RootError(f"{root}: {_reason(exc)}") from None
        if not real.is_dir():
            raise RootError(f"{root}: not a directory")
        if not os.access(real, os.R_OK | os.X_OK):
            raise RootError(f"{root}: permission denied")
        try:
            fd = os.open(real, DIR_FLAGS)
        except OSError as exc:
            raise RootError(f"{root}: {_reason(exc)}") from None
        try:
            os.listdir(fd)
        except OSError as exc:
            os.close(fd)
            raise RootError(f"{root}: {_reason(exc)}") from None
        self.root = real
        self._prefix = str(real).rstrip("/") + "/"
        self._chain = DirChain(fd)
        self.record_reads = record_reads
        self.reads: dict[str, FileRead] = {}

    def __enter__(self) -> Evidence:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close ROOT's descriptor and the directories kept open (idempotent)."""
        chain = getattr(self, "_chain", None)
        if chain is not None:
            chain.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # at interpreter exit: nothing left to tell
            pass

    # -- paths ---------------------------------------------------------------------------

    def abspath(self, rel: str) -> str:
        """ROOT/rel as a string, for messages and for programs run on the evidence; never
        opened by this reader (a path is resolved again by whoever opens it)."""
        return self._prefix + rel if rel else str(self.root)

    def _dir_fd(self, rel: str, for_path: str) -> int:
        """The descriptor of directory ``rel`` (kept open by the cache: do not close it),
        reached without following a symlink. Raises ReadFailure naming ``for_path``."""
        try:
            return self._chain.dir_fd(rel)
        except UnsafeName as exc:
            raise ReadFailure("unsafe-path", for_path, str(exc)) from None
        except WalkError as exc:
            raise _failure_on_the_way(for_path, exc) from None

    def _parent_fd(self, rel: str) -> tuple[int, str]:
        """The descriptor of the directory holding ``rel`` and ``rel``'s last name."""
        parent, _, name = rel.rpartition("/")
        if name in ("", ".", "..") or "\0" in name:
            raise ReadFailure("unsafe-path", rel, "not a name below ROOT (never opened)")
        return self._dir_fd(parent, rel), name

    # -- metadata ------------------------------------------------------------------------

    def lstat(self, rel: str) -> os.stat_result | None:
        """lstat of ``rel``, or None when it (or a directory on the way) is absent or unsafe."""
        try:
            if not rel:
                return os.fstat(self._chain.root_fd)
            dir_fd, name = self._parent_fd(rel)
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except (ReadFailure, OSError):
            return None

    def exists(self, rel: str) -> bool:
        return self.lstat(rel) is not None

    def is_dir(self, rel: str) -> bool:
        st = self.lstat(rel)
        return st is not None and stat.S_ISDIR(st.st_mode)

    def is_file(self, rel: str) -> bool:
        st = self.lstat(rel)
        return st is not None and stat.S_ISREG(st.st_mode)

    def is_symlink(self, rel: str) -> bool:
        st = self.lstat(rel)
        return st is not None and stat.S_ISLNK(st.st_mode)

    def readlink(self, rel: str) -> str | None:
        """The target of the symlink ``rel`` (never followed), or None."""
        try:
            dir_fd, name = self._parent_fd(rel)
            return os.readlink(name, dir_fd=dir_fd)
        except (ReadFailure, OSError):  # EINVAL: not a symlink
            return None

    def _open_dir(self, rel: str) -> int:
        """A new descriptor of directory ``rel`` (the caller closes it), opened without
        following a symlink, relative to the directory above it."""
        dir_fd, name = self._parent_fd(rel) if rel else (self._chain.root_fd, ".")
        try:
            return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise ReadFailure("missing", rel, "no such directory") from None
            if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_symlink_at(dir_fd, name):
                raise ReadFailure("symlink", rel, "is a symlink (not followed)") from None
            if exc.errno == errno.ENOTDIR:
                raise ReadFailure("not-directory", rel, "not a directory") from None
            raise ReadFailure("unreadable", rel, _reason(exc)) from None

    def listdir(self, rel: str) -> list[str]:
        """Sorted names in directory ``rel``. Raises ReadFailure when it is no readable dir."""
        fd = self._open_dir(rel)
        try:
            names = os.listdir(fd)
        except OSError as exc:
            raise ReadFailure("unreadable", rel, _reason(exc)) from None
        finally:
            os.close(fd)
        names.sort()
        return names

    def listdir_or_empty(self, rel: str) -> list[str]:
        """Sorted names in ``rel``; an empty list when it is absent or unreadable."""
        try:
            return self.listdir(rel)
        except ReadFailure:
            return []

    def names(self, rel: str) -> set[str]:
        """The names in directory ``rel`` (unsorted); empty when it is absent or unreadable."""
        try:
            fd = self._open_dir(rel)
        except ReadFailure:
            return set()
        try:
            return set(os.listdir(fd))
        except OSError:
            return set()
        finally:
            os.close(fd)

    def scandir_types(self, rel: str) -> dict[str, str]:
        """Entries of ``rel``: name → ``dir``, ``file``, ``symlink`` or ``other`` (no follow)."""
        try:
            fd = self._open_dir(rel)
        except ReadFailure:
            return {}
        out: dict[str, str] = {}
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    out[entry.name] = entry_type(entry)
        except OSError:
            pass
        finally:
            os.close(fd)
        return out

    # -- contents ------------------------------------------------------------------------

    def read_bytes(self, rel: str, limit: int = DEFAULT_READ_LIMIT) -> bytes:
        """Contents of the regular file ``rel`` (no symlink followed anywhere on the way)."""
        fd, st = self._open_regular(rel, limit)
        try:
            data = _read_all(fd, st.st_size, limit, rel)
        finally:
            os.close(fd)
        self._record(rel, data)
        return data

    def open_regular(self, rel: str, limit: int | None = None) -> tuple[int, os.stat_result]:
        """An open descriptor of the regular file ``rel`` and its fstat; the caller closes it.
        For readers that need the file itself (a memory map): a program given
        ``/proc/self/fd/N`` of it opens this very file, whatever happens to the path. Checks and
        failures as :meth:`read_bytes` (``limit``: the largest size accepted, if any)."""
        return self._open_regular(rel, limit)

    def _open_regular(self, rel: str, limit: int | None) -> tuple[int, os.stat_result]:
        """The file ``rel`` opened when it is a regular file reached without a symlink: its kind
        is looked at before anything is opened (no FIFO or device is ever opened), and again
        on the descriptor (it may have been swapped in between)."""
        dir_fd, name = self._parent_fd(rel)
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError as exc:
            raise _failure_for(rel, exc) from None
        _require_regular(rel, st, limit)
        try:
            fd = open_file_at(name, dir_fd)
        except OSError as exc:
            raise _failure_for(rel, exc) from None
        try:
            st = os.fstat(fd)
            _require_regular(rel, st, limit)
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    def read_ends(self, rel: str, window: int) -> tuple[bytes, bytes]:
        """The first and the last ``window`` bytes of the regular file ``rel`` (of any size:
        a log), with the checks of :meth:`read_bytes`. Not recorded as a file read: only
        whole files are."""
        fd, st = self._open_regular(rel, None)
        try:
            head = os.pread(fd, window, 0)
            tail = os.pread(fd, window, max(0, st.st_size - window))
        except OSError as exc:
            raise ReadFailure("unreadable", rel, _reason(exc)) from None
        finally:
            os.close(fd)
        return head, tail

    def opendir(self, rel: str) -> DirHandle:
        """Directory ``rel`` held open, to read several of its files cheaply (relative to its
        descriptor, with the entry types its listing gave). Raises ReadFailure."""
        fd = self._open_dir(rel)
        types: dict[str, str] = {}
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    types[entry.name] = entry_type(entry)
        except OSError as exc:
            os.close(fd)
            raise ReadFailure("unreadable", rel, _reason(exc)) from None
        return DirHandle(self, rel, fd, types)

    def open_listed(self, rel: str, types: dict[str, str]) -> DirHandle:
        """Directory ``rel`` held open like :meth:`opendir`, with the entry types of a listing
        made before (by another process reading the same directory). Raises ReadFailure."""
        return DirHandle(self, rel, self._open_dir(rel), types)

    def read_plain_dir(
        self, rel: str, read: Sequence[str], probe: Sequence[str] = (), limit: int = SMALL_LIMIT
    ) -> PlainDir | None:
        """The files ``read`` of directory ``rel`` and the kinds of the names ``probe``, in the
        common case where nothing is wrong with them, without listing the directory.

        A big root holds tens of thousands of small directories whose names are known in
        advance (``diff``, ``cache-id``, …): one ``fstatat`` per name costs less than a listing,
        and still tells the kind of each before anything is opened (so no FIFO or device is
        ever opened). Absent names are left out. None as soon as anything is not plain: the
        directory is absent, a symlink or unreadable; a file to read is a symlink, not a regular
        file, over ``limit``, unreadable, or grew while read. The caller then reads the
        directory the careful way, which names the damage and records the provenance; here
        the reads are recorded only when the whole directory was plain.
        """
        try:
            fd = self._open_dir(rel)
        except ReadFailure:
            return None
        try:
            return _plain_dir(self, rel, fd, read, probe, limit)
        except OSError:
            return None
        finally:
            os.close(fd)

    def path_of(self, rel: str) -> str:
        return rel

    # -- what a forked helper hands back (forensics.parallel) ------------------------------

    def start_task(self) -> None:
        """A helper process starts a task: what it records from now on is the task's."""
        self.reads = {}

    def task_record(self) -> Any:
        """What the task recorded (the files it read), to send to the process that merges."""
        return self.reads

    def merge_record(self, record: Any) -> None:
        """Take in what a helper's task recorded."""
        self.reads.update(record)

    def _record(self, rel: str, data: bytes) -> None:
        if self.record_reads:
            self.reads[rel] = FileRead(rel, len(data), hashlib.sha256(data).hexdigest())

    def read_text(self, rel: str, limit: int = DEFAULT_READ_LIMIT) -> str:
        return self.read_bytes(rel, limit).decode("utf-8", "surrogateescape")


def _require_regular(rel: str, st: os.stat_result, limit: int | None) -> None:
    _require_regular_mode(rel, st.st_mode, st.st_size, limit)


def _require_regular_mode(rel: str, mode: int, size: int, limit: int | None) -> None:
    """The refusals of a file to be read: a symlink, not a regular file, over ``limit``
    (a member of a tree is refused by the same words: :mod:`forensics.treeevidence`)."""
    if stat.S_ISLNK(mode):
        raise ReadFailure("symlink", rel, "is a symlink (not followed)")
    if not stat.S_ISREG(mode):
        raise ReadFailure("not-regular", rel, f"not a regular file ({_kind_of(mode)})")
    if limit is not None and size > limit:
        raise ReadFailure("too-large", rel, f"{size} bytes, over the {limit} limit")


def _failure_on_the_way(for_path: str, exc: WalkError) -> ReadFailure:
    """Why ``for_path`` cannot be reached: a directory on its way could not be opened (it is
    absent, a symlink, not a directory: ``missing`` all three, as nothing is there to read)."""
    if exc.reason == "missing":
        return ReadFailure("missing", for_path, f"{exc.where} does not exist")
    if exc.reason in ("symlink", "not-directory"):
        what = "a symlink (not followed)" if exc.reason == "symlink" else "not a directory"
        return ReadFailure("missing", for_path, f"a directory on the way ({exc.where}) is {what}")
    return ReadFailure("unreadable", for_path, f"{exc.where}: {exc.detail}")


def _is_symlink_at(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


class DirHandle:
    """An open directory of the evidence; files are read relative to it, never through a
    symlink (the listing's entry types decide, and ``O_NOFOLLOW`` guards the open)."""

    def __init__(self, ev: Evidence, rel: str, fd: int, types: dict[str, str]) -> None:
        self.ev, self.rel, self.fd, self.types = ev, rel, fd, types

    def __enter__(self) -> DirHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def path_of(self, name: str) -> str:
        return f"{self.rel}/{name}"

    def exists(self, name: str) -> bool:
        return name in self.types

    def readlink(self, name: str) -> str | None:
        """The target of the symlink ``name`` (never followed), or None when it is no symlink."""
        if self.types.get(name) != "symlink":
            return None
        try:
            return os.readlink(name, dir_fd=self.fd)
        except OSError:
            return None

    def listed_entry(self, name: str) -> tuple[str, str]:
        """The path and listed kind of ``name``, to be read as a file: what the listing
        already refuses (an entry it does not hold, a symlink) raises here."""
        rel = self.path_of(name)
        kind = self.types.get(name)
        if kind is None:
            raise ReadFailure("missing", rel, "no such file")
        if kind == "symlink":
            raise ReadFailure("symlink", rel, "is a symlink (not followed)")
        return rel, kind

    def read_bytes(self, name: str, limit: int = DEFAULT_READ_LIMIT) -> bytes:
        rel, kind = self.listed_entry(name)
        if kind != "file":
            return self.ev.read_bytes(rel, limit)  # let the full check say what it is
        try:
            fd = open_file_at(name, self.fd)
        except OSError as exc:
            raise _failure_for(rel, exc) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ReadFailure(
                    "not-regular", rel, f"not a regular file ({_kind_of(st.st_mode)})"
                )
            if st.st_size > limit:
                raise ReadFailure("too-large", rel, f"{st.st_size} bytes, over the {limit} limit")
            data = _read_all(fd, st.st_size, limit, rel)
        finally:
            os.close(fd)
        self.ev._record(rel, data)
        return data


def _plain_dir(
    ev: Evidence, rel: str, fd: int, read: Sequence[str], probe: Sequence[str], limit: int
) -> PlainDir | None:
    """The body of :meth:`Evidence.read_plain_dir`, with ``fd`` the directory held open.
    Raises OSError for anything unexpected (the caller then gives None)."""
    files: dict[str, bytes] = {}
    for name in read:
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        size = st.st_size
        if not stat.S_ISREG(st.st_mode) or size > limit:
            return None
        data = _read_at(fd, name, size)
        if data is None:
            return None
        files[name] = data
    kinds: dict[str, str] = {}
    for name in probe:
        try:
            kinds[name] = type_of_mode(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            continue
    for name, data in files.items():
        ev._record(f"{rel}/{name}", data)
    return PlainDir(files, kinds)


def _read_at(dir_fd: int, name: str, size: int) -> bytes | None:
    """The ``size`` bytes of the regular file ``name`` in ``dir_fd``; None when it has more
    (it grew since it was looked at). Raises OSError."""
    fd = open_file_at(name, dir_fd)
    try:
        data = os.read(fd, size + 1)
    finally:
        os.close(fd)
    return data if len(data) <= size else None


def _read_all(fd: int, expected: int, limit: int, rel: str) -> bytes:
    """Read to the end: one read call for a file of the size lstat gave (a short read of a
    regular file is its end); more only when the file grew meanwhile."""
    try:
        first = os.read(fd, expected + 1)
    except OSError as exc:
        raise ReadFailure("unreadable", rel, _reason(exc)) from None
    if len(first) <= expected:
        return first
    chunks = [first]
    total = len(first)
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except OSError as exc:
            raise ReadFailure("unreadable", rel, _reason(exc)) from None
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise ReadFailure("too-large", rel, f"over the {limit} byte limit")
        chunks.append(chunk)


def _failure_for(rel: str, exc: OSError) -> ReadFailure:
    if exc.errno == errno.ENOENT:
        return ReadFailure("missing", rel, "no such file")
    if exc.errno == errno.ELOOP:
        return ReadFailure("symlink", rel, "is a symlink (not followed)")
    if exc.errno in (errno.EISDIR, errno.ENOTDIR):
        return ReadFailure("not-regular", rel, "not a regular file (directory)")
    return ReadFailure("unreadable", rel, _reason(exc))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


def entry_type(entry: os.DirEntry[str]) -> str:
    """``dir``, ``file``, ``symlink`` or ``other`` for a directory entry, never followed (from the
    listing's d_type where the file system gives it)."""
    try:
        if entry.is_symlink():
            return "symlink"
        if entry.is_dir(follow_symlinks=False):
            return "dir"
        if entry.is_file(follow_symlinks=False):
            return "file"
    except OSError:
        pass
    return "other"


def type_of_mode(mode: int) -> str:
    """``dir``, ``file``, ``symlink`` or ``other``: the vocabulary of :func:`entry_type`."""
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"
