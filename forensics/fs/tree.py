"""The small interface through which a file tree is read: a filesystem image (ext4, xfs) or,
later, a directory of the host.

A member is named by its path components as bytes from the tree's root (``()`` is the root,
``(b"etc", b"passwd")`` a file), never by a string that could hold ``..`` or a symlink to
follow. Every method answers with a value or with a :class:`Refusal` that says why not: a
missing name, a symlink on the way (never followed), a damaged structure, a cap reached. A
tree never raises for what its input holds; reading an opened file may raise ``OSError`` when
the bytes under it are unreadable (a damaged device).

:func:`walk` goes through a tree from its root, depth first, with caps on entries and depth,
and reports directory loops (a subdirectory whose inode is one of its ancestors) and
directories reached twice as problems instead of descending into them.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, NamedTuple, Protocol

Parts = tuple[bytes, ...]

#: kinds of :class:`Refusal`
MISSING = "missing"
UNSAFE_PATH = "unsafe-path"
NOT_REGULAR = "not-regular"
NOT_DIRECTORY = "not-directory"
UNREADABLE = "unreadable"
DAMAGED = "damaged"
TOO_LARGE = "too-large"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a member was not read. ``kind``: ``missing``, ``unsafe-path`` (a symlink on the
    way: never followed), ``not-regular`` / ``not-directory`` (the member is of another type;
    ``mode`` says which), ``unreadable`` (an I/O error under it), ``damaged`` (its structure
    is broken), ``too-large`` (over a cap of :class:`Limits`)."""

    kind: str
    detail: str
    mode: int = 0


class Stat(NamedTuple):
    """An inode's metadata. Times in nanoseconds since the epoch; ``crtime_ns`` None where the
    filesystem keeps no birth time. ``rdev`` as :func:`os.makedev` makes it. (A named tuple:
    one is made per member read, and a tuple is made four times as fast as a frozen
    dataclass.)"""

    mode: int
    ino: int
    nlink: int
    uid: int
    gid: int
    size: int
    rdev: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    crtime_ns: int | None = None

    @property
    def kind(self) -> str:
        return kind_of(self.mode)


class Entry(NamedTuple):
    """One name of a directory listing: the name's bytes, its inode, and its type as the
    ``S_IFMT`` bits of a mode (0 when the directory does not record types). (A named tuple,
    as :class:`Stat`: one is made per name listed.)"""

    name: bytes
    ino: int
    type: int = 0


@dataclass
class Listing:
    """A directory's entries (``.`` and ``..`` left out), and what was wrong in it: names that
    were dropped (with ``/`` or NUL in them, empty, a stray ``.``/``..``, over the length cap),
    damaged blocks skipped, a cap reached."""

    entries: list[Entry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _index: dict[bytes, Entry] | None = field(default=None, init=False, repr=False)

    def find(self, name: bytes) -> Entry | None:
        """The entry called ``name`` (the first, if a damaged directory holds it twice)."""
        if self._index is None:
            self._index = {}
            for e in self.entries:
                self._index.setdefault(e.name, e)
        return self._index.get(name)


@dataclass(frozen=True)
class Limits:
    """Caps that keep a hostile tree within bounded memory and time."""

    #: entries of one directory listed (the rest reported, not listed)
    dir_entries: int = 1_000_000
    #: bytes of one directory's blocks read
    dir_bytes: int = 256 << 20
    #: members a walk yields in all
    total_entries: int = 20_000_000
    #: directory depth a walk descends to
    depth: int = 4096
    #: a name's length in bytes (ext4 and xfs: 255)
    name: int = 255
    #: a symlink target's length in bytes (PATH_MAX)
    symlink: int = 4096
    #: extended attributes of one inode, and the bytes of one value
    xattrs: int = 10_000
    xattr_value: int = 1 << 20
    #: a regular file's size; None: the size of the device the filesystem lies on
    file_size: int | None = None
    #: extents of one file (a file in more pieces is refused, not read)
    extents: int = 1 << 20


class Tree(Protocol):
    """What the readers of a file tree offer. Sizes and contents come from the tree's own
    structures, checked against :class:`Limits`."""

    def lstat(self, parts: Parts) -> Stat | Refusal:
        """The member's metadata (a symlink's own, never its target's)."""
        ...

    def listdir(self, parts: Parts) -> Listing | Refusal:
        """The names in directory ``parts``, in the order the directory keeps them."""
        ...

    def readlink(self, parts: Parts) -> bytes | Refusal:
        """The target of symlink ``parts``, never followed."""
        ...

    def open_file(self, parts: Parts) -> BinaryIO | Refusal:
        """Regular file ``parts`` open for reading (seekable; the caller closes it)."""
        ...

    def xattrs(self, parts: Parts) -> dict[bytes, bytes] | Refusal:
        """The member's extended attributes, full names (``security.capability``) to values."""
        ...

    def path_of(self, parts: Parts) -> str:
        """The member's path for messages (undecodable bytes escaped)."""
        ...


@dataclass(frozen=True, slots=True)
class Problem:
    """What a walk met at ``path``: ``kind`` one of ``loop`` (a directory that is its own
    ancestor), ``hardlinked-dir`` (a directory reached a second time), ``listing`` (names
    dropped or blocks skipped in a directory), ``refused`` (a member not read: ``detail`` says
    why), ``cap`` (a cap of :class:`Limits` reached)."""

    path: Parts
    kind: str
    detail: str


@dataclass
class Walked:
    """One member met by :func:`walk`."""

    parts: Parts
    stat: Stat


def walk(
    tree: Tree, problems: list[Problem], limits: Limits | None = None, top: Parts = ()
) -> Iterator[Walked]:
    """Every member under ``top`` (``top`` itself first), parents before children, each
    directory's entries in its own order. Problems go to ``problems``; the walk goes on."""
    limits = limits or Limits()
    first = tree.lstat(top)
    if isinstance(first, Refusal):
        problems.append(Problem(top, "refused", first.detail))
        return
    yield Walked(top, first)
    if not stat.S_ISDIR(first.mode):
        return
    count = 1
    seen_dirs = {first.ino}
    # a stack of (directory parts, its entries, next index, ancestors' inodes)
    stack: list[tuple[Parts, list[Entry], int, frozenset[int]]] = []
    entries = _entries(tree, top, problems)
    stack.append((top, entries, 0, frozenset({first.ino})))
    while stack:
        parts, entries, index, ancestors = stack[-1]
        if index >= len(entries):
            stack.pop()
            continue
        stack[-1] = (parts, entries, index + 1, ancestors)
        entry = entries[index]
        child = (*parts, entry.name)
        if count >= limits.total_entries:
            problems.append(Problem(child, "cap", f"over {limits.total_entries} entries: stopped"))
            return
        st = tree.lstat(child)
        if isinstance(st, Refusal):
            problems.append(Problem(child, "refused", st.detail))
            continue
        count += 1
        if not stat.S_ISDIR(st.mode):
            yield Walked(child, st)
            continue
        if st.ino in ancestors:
            problems.append(
                Problem(child, "loop", f"directory inode {st.ino} is one of its own ancestors")
            )
            continue
        if st.ino in seen_dirs:
            problems.append(
                Problem(child, "hardlinked-dir", f"directory inode {st.ino} was reached before")
            )
            continue
        seen_dirs.add(st.ino)
        yield Walked(child, st)
        if len(stack) >= limits.depth:
            problems.append(Problem(child, "cap", f"deeper than {limits.depth} levels"))
            continue
        stack.append((child, _entries(tree, child, problems), 0, ancestors | {st.ino}))


def _entries(tree: Tree, parts: Parts, problems: list[Problem]) -> list[Entry]:
    listing = tree.listdir(parts)
    if isinstance(listing, Refusal):
        problems.append(Problem(parts, "refused", listing.detail))
        return []
    problems.extend(Problem(parts, "listing", p) for p in listing.problems)
    return listing.entries


def name_problem(name: bytes, limits: Limits) -> str | None:
    """Why a directory entry's name cannot name a member, or None."""
    if not name:
        return "an empty name"
    if b"/" in name:
        return f"the name {name!r} holds a '/'"
    if b"\0" in name:
        return f"the name {name!r} holds a NUL byte"
    if name in (b".", b".."):
        return f"a stray {name.decode()} entry"
    if len(name) > limits.name:
        return f"a name of {len(name)} bytes, over {limits.name}"
    return None


def display(parts: Parts) -> str:
    """``/a/b`` for messages, undecodable bytes escaped."""
    return "/" + "/".join(p.decode("utf-8", "backslashreplace") for p in parts)


def kind_of(mode: int) -> str:
    """A file type in words."""
    for test, word in (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return word
    return "special file"


#: directory entry file types (ext4's and xfs' ftype, the same numbers) as S_IFMT bits
FTYPE_TO_IFMT = {
    1: stat.S_IFREG,
    2: stat.S_IFDIR,
    3: stat.S_IFCHR,
    4: stat.S_IFBLK,
    5: stat.S_IFIFO,
    6: stat.S_IFSOCK,
    7: stat.S_IFLNK,
}
