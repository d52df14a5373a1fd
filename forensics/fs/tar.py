"""A tar archive read in place as a :class:`~forensics.fs.tree.Tree`: ``.tar``, ``.tar.gz`` /
``.tgz``, ``.tar.xz``, ``.tar.zst`` (and ``.tar.bz2``), never unpacked.

:func:`open_tar` reads the archive once, front to back, into an index of its members (headers
decoded by :mod:`forensics.formats.ustar`, Go's reading of ustar, GNU and PAX), and contents are
read later by offset (:mod:`forensics.fs.compressed` gives random access into a compressed
stream). The tree is the one that extracting the archive would leave:

- names are bytes; a leading ``./`` and empty components are dropped; an absolute name is read
  relative to the archive's root, as GNU tar extracts it (a problem says so); a name with a
  ``..`` component or a NUL is left out (a problem);
- a later member of the same name replaces the earlier one (last wins), except that nothing
  replaces a directory that holds members (tar cannot unlink it either); a hard link binds the
  member it names *as it stands then*; a member below a symlink or a file is left out;
- directories that members imply but the archive has no entry for exist with mode 0755, owner
  0:0 and times 0 (the epoch): :meth:`TarTree.implied` tells them from real ones;
- modes, owners, device numbers (whiteouts are 0/0 character devices), symlink targets as
  recorded; times with PAX's sub-second precision (``mtime``, ``atime``, ``ctime``; a time the
  archive does not record is 0); xattrs from PAX ``SCHILY.xattr.*`` (raw values) and
  ``LIBARCHIVE.xattr.*`` (URL-encoded names, base64 values); sparse members of GNU's old ``S``
  type and of PAX formats 0.0, 0.1 and 1.0, read with their holes as zeros;
- a damaged header ends the index there, an archive cut short keeps what it holds (the member
  cut short refuses to be read): both are :attr:`TarTree.problems`; the caps of
  :class:`TarLimits` (members, index memory) and of the stream (a decompression bomb) refuse
  the archive (:class:`TarOpenError`).

Nothing is ever read outside the archive: every offset comes from the headers and is read
through the stream, which ends where the file ends.
"""

from __future__ import annotations

import base64
import io
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import unquote_to_bytes

from forensics.errors import OperationalError
from forensics.formats.ustar import (
    BLOCK,
    PAX_TIME,
    HeaderError,
    Member,
    parse_number,
    read_member,
)
from forensics.fs.compressed import (
    BombError,
    DecodedStream,
    PlainStream,
    StreamLimits,
    open_stream,
)
from forensics.fs.rawfile import SizedRawFile
from forensics.fs.tree import (
    DAMAGED,
    MISSING,
    NOT_DIRECTORY,
    NOT_REGULAR,
    TOO_LARGE,
    UNSAFE_PATH,
    Entry,
    Limits,
    Listing,
    Parts,
    Problem,
    Refusal,
    Stat,
    display,
    kind_of,
    name_problem,
)

_EXTENSION_TYPES = (b"x", b"L", b"K")
#: what one extension header's data may hold (Go's maxSpecialFileSize)
_MAX_SPECIAL = 1 << 20
#: a node's fixed cost in the index, for the memory cap (slots, dict entry, Stat made later)
_NODE_COST = 240
_FILE_TYPES = {b"0": stat.S_IFREG, b"\0": stat.S_IFREG, b"7": stat.S_IFREG, b"S": stat.S_IFREG}
_OTHER_TYPES = {
    b"2": stat.S_IFLNK,
    b"3": stat.S_IFCHR,
    b"4": stat.S_IFBLK,
    b"5": stat.S_IFDIR,
    b"D": stat.S_IFDIR,  # GNU dumpdir: a directory (its listing data is not needed)
    b"6": stat.S_IFIFO,
}
#: header-only types: their data is none, whatever the size field says (Go's isHeaderOnlyType)
_HEADER_ONLY = {b"1", b"2", b"3", b"4", b"5", b"6"}
_SKIPPED_TYPES = {b"g": "a PAX global header", b"V": "a volume label"}
#: problems of one kind recorded one by one; the rest are counted
_PROBLEMS_PER_KIND = 100


class TarOpenError(OperationalError):
    """The archive cannot be read as a tree: not a tar archive, or over a cap."""


@dataclass(frozen=True)
class TarLimits:
    """Caps that keep the index of a hostile archive within bounded memory."""

    #: members indexed
    members: int = 5_000_000
    #: bytes the index may take (names, link targets, xattrs, and a fixed cost per member)
    index_bytes: int = 2 << 30
    #: entries of one sparse map
    sparse_entries: int = 100_000
    #: caps and tuning of a compressed stream
    stream: StreamLimits = field(default_factory=StreamLimits)


class _Node:
    """One inode of the archive's tree (hard links share one)."""

    __slots__ = (
        "mode", "uid", "gid", "size", "rdev", "atime", "mtime", "ctime", "ino", "nlink",
        "xattrs", "target", "offset", "stored", "sparse", "children", "implied", "cut",
        "subdirs",
    )  # fmt: skip

    def __init__(self, mode: int, ino: int) -> None:
        self.mode, self.ino = mode, ino
        self.uid = self.gid = self.size = self.rdev = 0
        self.atime = self.mtime = self.ctime = 0
        self.nlink = 0
        self.xattrs: dict[bytes, bytes] | None = None
        self.target: bytes | None = None
        #: where its data starts in the (decompressed) archive, and how many bytes it stores
        self.offset = self.stored = 0
        #: a sparse member's map: (offset in the file, length) of each stored run
        self.sparse: list[tuple[int, int]] | None = None
        self.children: dict[bytes, _Node] | None = {} if stat.S_ISDIR(mode) else None
        self.implied = False
        #: the archive ends inside its data
        self.cut = False
        self.subdirs = 0


@dataclass
class _Headers:
    """A member's headers as read from the stream."""

    member: Member
    #: the offset of its first header block and of its data
    start: int
    data: int
    #: the raw block of its last header (GNU sparse fields live there)
    block: bytes
    #: the PAX extended header data, as read (the repeated sparse records of format 0.0)
    pax_raw: bytes = b""
    #: the extension blocks of a GNU ``S`` member's map (between its header and its data)
    sparse_blocks: bytes = b""


class TarTree:
    """A tar archive's members as a tree; see the module's docstring."""

    label = "tar"

    def __init__(self, stream: DecodedStream | PlainStream, limits: Limits, tar: TarLimits) -> None:
        self.stream = stream
        self.limits = limits
        self.tar_limits = tar
        #: what is wrong in the archive, member by member (``kind``: ``unsafe-name``,
        #: ``absolute-name``, ``duplicate``, ``not-kept``, ``link-target``, ``field``,
        #: ``sparse-map``, ``header``, ``cut-short``, ``stream``)
        self.problems: list[Problem] = []
        self.members = 0
        self._inos = 1
        self.root = _Node(stat.S_IFDIR | 0o755, 1)
        self.root.nlink = 2
        self.root.implied = True
        self._index_bytes = 0
        self._problem_counts: dict[str, int] = {}

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> TarTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def codec(self) -> str | None:
        """``gzip``, ``xz``, ``zstd``, ``bzip2``, or None for a plain tar."""
        codec = self.stream.codec
        return codec.name if codec is not None else None

    # -- the Tree protocol ------------------------------------------------------------------

    def path_of(self, parts: Parts) -> str:
        return display(parts)

    def lstat(self, parts: Parts) -> Stat | Refusal:
        node = self._resolve(parts)
        if isinstance(node, Refusal):
            return node
        return self._stat(node)

    def listdir(self, parts: Parts) -> Listing | Refusal:
        node = self._resolve(parts)
        if isinstance(node, Refusal):
            return node
        if node.children is None:
            return Refusal(NOT_DIRECTORY, f"{display(parts)} is a {kind_of(node.mode)}", node.mode)
        return Listing(
            [Entry(name, c.ino, stat.S_IFMT(c.mode)) for name, c in node.children.items()]
        )

    def readlink(self, parts: Parts) -> bytes | Refusal:
        node = self._resolve(parts)
        if isinstance(node, Refusal):
            return node
        if not stat.S_ISLNK(node.mode) or node.target is None:
            return Refusal(NOT_REGULAR, f"{display(parts)} is a {kind_of(node.mode)}", node.mode)
        return node.target

    def open_file(self, parts: Parts) -> BinaryIO | Refusal:
        node = self._resolve(parts)
        if isinstance(node, Refusal):
            return node
        if not stat.S_ISREG(node.mode):
            return Refusal(NOT_REGULAR, f"{display(parts)} is a {kind_of(node.mode)}", node.mode)
        if node.cut:
            return Refusal(
                DAMAGED,
                f"{display(parts)}: the archive ends inside its data "
                f"({node.stored} bytes recorded)",
                node.mode,
            )
        cap = self.limits.file_size
        if cap is not None and node.size > cap:
            what = f"{display(parts)}: {node.size} bytes, over {cap}"
            return Refusal(TOO_LARGE, what, node.mode)
        return io.BufferedReader(_MemberFile(self.stream, node), 1 << 20)

    def xattrs(self, parts: Parts) -> dict[bytes, bytes] | Refusal:
        node = self._resolve(parts)
        if isinstance(node, Refusal):
            return node
        return dict(node.xattrs or {})

    def implied(self, parts: Parts) -> bool:
        """Whether ``parts`` is a directory that the archive implies but has no entry for
        (its mode, owner and times are then made up: 0755, 0:0, 0)."""
        node = self._resolve(parts)
        return not isinstance(node, Refusal) and node.implied

    # -- resolving --------------------------------------------------------------------------

    def _resolve(self, parts: Parts) -> _Node | Refusal:
        node = self.root
        for depth, name in enumerate(parts):
            if node.children is None:
                where = display(parts[:depth])
                if stat.S_ISLNK(node.mode):
                    return Refusal(UNSAFE_PATH, f"{where} is a symlink (not followed)", node.mode)
                return Refusal(MISSING, f"{where} is a {kind_of(node.mode)}, not a directory")
            child = node.children.get(name)
            if child is None:
                return Refusal(MISSING, f"{display(parts[: depth + 1])}: no such member")
            node = child
        return node

    def _stat(self, node: _Node) -> Stat:
        nlink = 2 + node.subdirs if node.children is not None else node.nlink
        return Stat(
            mode=node.mode,
            ino=node.ino,
            nlink=nlink,
            uid=node.uid,
            gid=node.gid,
            size=node.size,
            rdev=node.rdev,
            atime_ns=node.atime,
            mtime_ns=node.mtime,
            ctime_ns=node.ctime,
        )

    # -- building the index -----------------------------------------------------------------

    def problem(self, parts: Parts, kind: str, detail: str) -> None:
        """A problem of the archive; past :data:`_PROBLEMS_PER_KIND` of one kind only counted
        (a hostile archive of a million duplicates must not make a million problems)."""
        count = self._problem_counts.get(kind, 0) + 1
        self._problem_counts[kind] = count
        if count <= _PROBLEMS_PER_KIND:
            self.problems.append(Problem(parts, kind, detail))

    def finish_problems(self) -> None:
        for kind, count in self._problem_counts.items():
            if count > _PROBLEMS_PER_KIND:
                more = count - _PROBLEMS_PER_KIND
                self.problems.append(Problem((), kind, f"and {more} more of this kind"))

    def add(self, h: _Headers) -> None:
        """One member into the tree."""
        m = h.member
        if m.typeflag in _SKIPPED_TYPES:
            return
        parts = self._parts(m.name, h.start)
        if parts is None:
            return
        self.members += 1
        if self.members > self.tar_limits.members:
            raise TarOpenError(f"more than {self.tar_limits.members} members: over the cap")
        self._charge(_NODE_COST + len(m.name) + len(m.linkname))
        if m.typeflag == b"1":
            self._link(parts, m, h.start)
            return
        mode = _FILE_TYPES.get(m.typeflag) or _OTHER_TYPES.get(m.typeflag)
        if mode is None:
            self.problem(parts, "not-kept", f"member of type {m.typeflag!r} at byte {h.start}: "
                         "not a kind of file tar extracts; left out")  # fmt: skip
            return
        node = self._node(parts, mode, m, h)
        if node is not None:
            self._bind(parts, node, h.start)

    def _charge(self, cost: int) -> None:
        self._index_bytes += cost
        if self._index_bytes > self.tar_limits.index_bytes:
            raise TarOpenError(
                f"the archive's index needs more than {self.tar_limits.index_bytes} bytes: "
                "over the cap"
            )

    def _parts(self, name: bytes, where: int) -> Parts | None:
        """The member's path components, or None (a problem said why) when it cannot be one."""
        shown = (name,)
        if b"\0" in name:
            self.problem(shown, "unsafe-name", f"the name at byte {where} holds a NUL: left out")
            return None
        if name.startswith(b"/"):
            self.problem(
                shown,
                "absolute-name",
                f"the absolute name at byte {where} is read relative to the archive's root, "
                "as tar extracts it",
            )
        parts = tuple(p for p in name.split(b"/") if p not in (b"", b"."))
        if b".." in parts:
            self.problem(shown, "unsafe-name", f"the name at byte {where} climbs with '..': "
                         "left out, as tar refuses it")  # fmt: skip
            return None
        for part in parts:
            problem = name_problem(part, self.limits)
            if problem is not None:
                self.problem(shown, "unsafe-name", f"at byte {where}: {problem}: left out")
                return None
        return parts

    def _node(self, parts: Parts, kind: int, m: Member, h: _Headers) -> _Node | None:
        self._inos += 1
        node = _Node(kind | (m.mode & 0o7777), self._inos)
        if stat.S_ISLNK(kind):
            node.mode = kind | 0o777  # what Linux gives every symlink
            node.target = m.linkname
            node.size = len(m.linkname)
        node.uid = self._id(parts, "uid", m.uid)
        node.gid = self._id(parts, "gid", m.gid)
        node.mtime = _time(m.pax.get("mtime"), int(m.mtime) * 1_000_000_000)
        node.atime = _time(m.pax.get("atime"), _gnu_time(h.block, 345, m))
        node.ctime = _time(m.pax.get("ctime"), _gnu_time(h.block, 357, m))
        if stat.S_ISCHR(kind) or stat.S_ISBLK(kind):
            node.rdev = self._rdev(parts, m)
        node.xattrs = self._xattrs(parts, m.pax)
        if stat.S_ISREG(kind):
            node.offset, node.stored, node.size = h.data, m.size, m.size
            if not self._sparse(parts, node, m, h):
                return None
        return node

    def _id(self, parts: Parts, what: str, value: int) -> int:
        if 0 <= value < 1 << 32:
            return value
        self.problem(parts, "field", f"{what} {value} is out of range: read as 0")
        return 0

    def _rdev(self, parts: Parts, m: Member) -> int:
        if 0 <= m.devmajor < 1 << 32 and 0 <= m.devminor < 1 << 32:
            return os.makedev(m.devmajor, m.devminor)
        self.problem(parts, "field", f"device {m.devmajor}:{m.devminor} is out of range")
        return 0

    def _xattrs(self, parts: Parts, pax: dict[str, bytes]) -> dict[bytes, bytes] | None:
        """The member's xattrs from its PAX records."""
        found: dict[bytes, bytes] = {}
        # libarchive writes each xattr twice, its exact LIBARCHIVE record first in weight: a
        # SCHILY record of the same (URL-encoded) key is its copy for other readers
        libarchive = {k[17:] for k in pax if k.startswith("LIBARCHIVE.xattr.")}
        for key, value in pax.items():
            if key.startswith("SCHILY.xattr.") and key[13:] in libarchive:
                continue
            if key.startswith("SCHILY.xattr."):
                name = key[13:].encode("utf-8", "surrogateescape")
            elif key.startswith("LIBARCHIVE.xattr."):
                name = unquote_to_bytes(key[17:])
                try:
                    value = base64.b64decode(value + b"=" * (-len(value) % 4), validate=True)
                except ValueError:
                    self.problem(parts, "field", f"xattr {name!r}: its value is not base64")
                    continue
            else:
                continue
            if len(value) > self.limits.xattr_value or len(found) >= self.limits.xattrs:
                self.problem(parts, "field", f"xattr {name!r} over the caps: left out")
                continue
            found[name] = value
        if found:
            self._charge(sum(len(k) + len(v) + 64 for k, v in found.items()))
        return found or None

    def _sparse(self, parts: Parts, node: _Node, m: Member, h: _Headers) -> bool:
        """A sparse member's map and real size onto ``node``; False when its map is damaged
        (a problem says so: the member is left out)."""
        try:
            found = sparse_map(m, h, self)
        except (ValueError, HeaderError) as exc:
            self.problem(parts, "sparse-map", f"sparse member at byte {h.start}: {exc}: left out")
            return False
        if found is None:
            return True
        runs, real_size, data_skip = found
        node.offset = h.data
        if len(runs) > self.tar_limits.sparse_entries:
            self.problem(parts, "sparse-map", f"{len(runs)} sparse runs, over the cap: left out")
            return False
        problem = _runs_problem(runs, real_size, m.size - data_skip)
        if problem is not None:
            self.problem(parts, "sparse-map", f"sparse member at byte {h.start}: {problem}")
            return False
        self._charge(32 * len(runs))
        node.sparse = runs
        node.size = real_size
        node.offset += data_skip
        node.stored = m.size - data_skip
        return True

    def _link(self, parts: Parts, m: Member, where: int) -> None:
        target_parts = self._parts(m.linkname, where)
        if target_parts is None:
            return
        target = self._resolve(target_parts)
        if isinstance(target, Refusal) or target.children is not None:
            what = "a directory" if not isinstance(target, Refusal) else "no member before it"
            self.problem(
                parts,
                "link-target",
                f"the hard link at byte {where} names {display(target_parts)}, {what}: left out",
            )
            return
        self._bind(parts, target, where)

    def _bind(self, parts: Parts, node: _Node, where: int) -> None:
        """``node`` under the name ``parts``: parents made as needed, an earlier member of
        the name replaced."""
        if not parts:
            if node.children is None:
                self.problem(parts, "not-kept", f"a non-directory at byte {where} names the root")
                return
            node.children, node.subdirs = self.root.children, self.root.subdirs
            node.ino = self.root.ino
            self.root = node
            return
        parent = self._parent(parts, where)
        if parent is None:
            return
        assert parent.children is not None
        name = parts[-1]
        old = parent.children.get(name)
        if old is not None:
            if not self._replace(parts, old, node, where):
                return
        elif node.children is not None:
            parent.subdirs += 1
        parent.children[name] = node
        node.nlink += 1

    def _replace(self, parts: Parts, old: _Node, node: _Node, where: int) -> bool:
        if old.children is not None and old.children and node.children is None:
            self.problem(
                parts,
                "not-kept",
                f"the member at byte {where} would replace a directory that holds members "
                "(tar cannot): left out",
            )
            return False
        if not old.implied:
            self.problem(
                parts, "duplicate", f"named again at byte {where}: the later member is kept"
            )
        if old.children is not None and node.children is not None:
            node.children, node.subdirs, node.ino = old.children, old.subdirs, old.ino
        elif old.children is None and node.children is not None:
            self._parent_of(parts).subdirs += 1
        elif old.children is not None:
            self._parent_of(parts).subdirs -= 1
        old.nlink -= 1
        return True

    def _parent_of(self, parts: Parts) -> _Node:
        node = self._resolve(parts[:-1])
        assert not isinstance(node, Refusal)
        return node

    def _parent(self, parts: Parts, where: int) -> _Node | None:
        node = self.root
        for depth, name in enumerate(parts[:-1]):
            assert node.children is not None
            child = node.children.get(name)
            if child is None:
                self._inos += 1
                child = _Node(stat.S_IFDIR | 0o755, self._inos)
                child.implied = True
                child.nlink = 1
                node.children[name] = child
                node.subdirs += 1
                self._charge(_NODE_COST + len(name))
            elif child.children is None:
                self.problem(
                    parts,
                    "not-kept",
                    f"the member at byte {where} lies below {display(parts[: depth + 1])}, "
                    f"a {kind_of(child.mode)}: left out",
                )
                return None
            node = child
        return node


def _time(pax: bytes | None, fallback: int) -> int:
    """A PAX time in nanoseconds (``<s>[.<digits>]``, exact), else ``fallback``."""
    if not pax:
        return fallback
    match = PAX_TIME.fullmatch(pax)
    if match is None:
        return fallback
    seconds = int(match[1])
    fraction = (match[2] or b"").ljust(9, b"0")[:9]
    nanos = int(fraction)
    if seconds < 0 or pax.startswith(b"-"):
        return seconds * 1_000_000_000 - nanos
    return seconds * 1_000_000_000 + nanos


def _gnu_time(block: bytes, at: int, m: Member) -> int:
    """The access or change time of a GNU header (``--atime-preserve``, incremental), else 0."""
    if block[257:265] != b"ustar  \0" or not block[at]:
        return 0
    try:
        return parse_number(block[at : at + 12]) * 1_000_000_000
    except HeaderError:
        return 0


# -- sparse members -------------------------------------------------------------------------------


def sparse_map(
    m: Member, h: _Headers, tree: TarTree
) -> tuple[list[tuple[int, int]], int, int] | None:
    """A sparse member's runs, real size, and the bytes at the start of its data that hold
    the map (format 1.0); None when the member is not sparse. Raises ValueError."""
    pax = m.pax
    if m.typeflag == b"S":
        return _old_gnu_sparse(h, tree)
    major, minor = pax.get("GNU.sparse.major"), pax.get("GNU.sparse.minor")
    if major == b"1" and minor == b"0":
        real = _decimal(pax.get("GNU.sparse.realsize") or pax.get("GNU.sparse.size"))
        runs, skip = _sparse_1_0(tree.stream, h.data, m.size, tree.tar_limits.sparse_entries)
        return runs, real, skip
    if "GNU.sparse.map" in pax:  # 0.1
        numbers = [_decimal(n) for n in pax["GNU.sparse.map"].split(b",") if n]
        if len(numbers) % 2:
            raise ValueError("GNU.sparse.map holds an odd count of numbers")
        runs = list(zip(numbers[::2], numbers[1::2], strict=True))
        return runs, _decimal(pax.get("GNU.sparse.size")), 0
    if "GNU.sparse.offset" in pax or "GNU.sparse.numblocks" in pax:  # 0.0: repeated records
        runs = _sparse_0_0(h.pax_raw)
        return runs, _decimal(pax.get("GNU.sparse.size")), 0
    return None


def _decimal(value: bytes | None) -> int:
    if value is None or not value.isdigit() or len(value) > 20:
        raise ValueError(f"a sparse number {value!r} that is no number")
    return int(value)


def _sparse_0_0(raw: bytes) -> list[tuple[int, int]]:
    """The repeated ``GNU.sparse.offset``/``GNU.sparse.numbytes`` records, in order."""
    offsets: list[int] = []
    sizes: list[int] = []
    for key, value in _pax_records(raw):
        if key == b"GNU.sparse.offset":
            offsets.append(_decimal(value))
        elif key == b"GNU.sparse.numbytes":
            sizes.append(_decimal(value))
    if len(offsets) != len(sizes):
        raise ValueError("GNU.sparse.offset and GNU.sparse.numbytes records do not pair")
    return list(zip(offsets, sizes, strict=True))


def _pax_records(raw: bytes) -> Iterator[tuple[bytes, bytes]]:
    pos = 0
    while pos < len(raw):
        space = raw.find(b" ", pos)
        if space < 0 or not raw[pos:space].isdigit():
            raise ValueError("PAX records without lengths")
        length = int(raw[pos:space])
        record = raw[space + 1 : pos + length]
        if length < 5 or not record.endswith(b"\n"):
            raise ValueError("a PAX record of a bad length")
        key, _, value = record[:-1].partition(b"=")
        yield key, value
        pos += length


def _sparse_1_0(
    stream: DecodedStream | PlainStream, data: int, size: int, cap: int
) -> tuple[list[tuple[int, int]], int]:
    """Format 1.0: the map leads the data, as decimal lines (count, then offset and length of
    each run), padded to a block."""
    numbers: list[int] = []
    text = b""
    pos = 0
    want: int | None = None
    while want is None or len(numbers) < want:
        if b"\n" not in text:
            if pos >= size or pos > 20 * (2 * cap + 1) + BLOCK:
                raise ValueError("its map runs past its data")
            chunk = stream.read_at(data + pos, BLOCK)
            if len(chunk) < BLOCK:
                raise ValueError("its map is cut short")
            pos += BLOCK
            text += chunk
            continue
        line, text = text.split(b"\n", 1)
        number = _decimal(line)
        if want is None:
            if number > cap:
                raise ValueError(f"a map of {number} runs, over the cap")
            want = 1 + 2 * number
        numbers.append(number)
    runs = list(zip(numbers[1::2], numbers[2::2], strict=True))
    return runs, pos


def _old_gnu_sparse(h: _Headers, tree: TarTree) -> tuple[list[tuple[int, int]], int, int]:
    """GNU's ``S`` type: four runs in the header, more in the extension blocks after it (read
    with the headers), the real size at byte 483."""
    runs = _gnu_runs(h.block, 386, 4)
    for i in range(0, len(h.sparse_blocks), BLOCK):
        runs += _gnu_runs(h.sparse_blocks[i : i + BLOCK], 0, 21)
    return runs, parse_number(h.block[483:495]), 0


def _gnu_runs(block: bytes, at: int, count: int) -> list[tuple[int, int]]:
    runs = []
    for i in range(count):
        field = block[at + 24 * i : at + 24 * i + 24]
        if not field[0]:
            break
        runs.append((parse_number(field[:12]), parse_number(field[12:])))
    return runs


def _runs_problem(runs: list[tuple[int, int]], real: int, stored: int) -> str | None:
    end = 0
    total = 0
    for offset, length in runs:
        if offset < end or length < 0:
            return "runs that overlap or go backwards: left out"
        end = offset + length
        total += length
    if end > real:
        return f"runs past its real size {real}: left out"
    if total != stored:
        return f"runs of {total} bytes where {stored} are stored: left out"
    return None


# -- contents -------------------------------------------------------------------------------------


class _MemberFile(SizedRawFile):
    """A member's contents: a slice of the archive, or a sparse member's runs among zeros."""

    def __init__(self, stream: DecodedStream | PlainStream, node: _Node) -> None:
        super().__init__()
        self.stream, self.node = stream, node
        self.size = node.size
        self._pos = 0
        runs = node.sparse if node.sparse is not None else [(0, node.size)]
        # (file offset, length, archive offset) of each stored run
        self._runs: list[tuple[int, int, int]] = []
        at = node.offset
        for offset, length in runs:
            self._runs.append((offset, length, at))
            at += length

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        want = max(0, min(len(out), self.size - self._pos))
        if want == 0:
            return 0
        data = self._read(self._pos, want)
        out[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def _read(self, pos: int, want: int) -> bytes:
        for offset, length, at in self._runs:
            if offset <= pos < offset + length:
                count = min(want, offset + length - pos)
                try:
                    data = self.stream.read_at(at + pos - offset, count)
                except BombError as exc:
                    raise OSError(5, str(exc)) from None
                if len(data) < count:
                    raise OSError(5, f"the archive ends inside a member at byte {at}")
                return data
            if offset > pos:
                return bytes(min(want, offset - pos))
        return bytes(want)


# -- the index pass -------------------------------------------------------------------------------


def open_tar(
    fileobj: BinaryIO,
    size: int,
    limits: Limits | None = None,
    tar_limits: TarLimits | None = None,
) -> TarTree:
    """The tar archive in ``fileobj`` (``size`` bytes; compressed or not) as a tree. Raises
    :class:`TarOpenError` when it is no tar archive or a cap is reached."""
    limits = limits or Limits()
    tar_limits = tar_limits or TarLimits()
    stream = open_stream(fileobj, size, tar_limits.stream)
    tree = TarTree(stream, limits, tar_limits)
    try:
        _index(tree)
    except BombError as exc:
        stream.close()
        raise TarOpenError(str(exc)) from None
    except TarOpenError:
        stream.close()
        raise
    except OSError as exc:
        stream.close()
        raise TarOpenError(f"the archive cannot be read: {exc}") from None
    return tree


def _index(tree: TarTree) -> None:
    stream = tree.stream
    pos = 0
    first = True
    while True:
        headers = _read_headers(tree, pos)
        if headers is None:
            break
        if isinstance(headers, str):
            if first:
                raise TarOpenError(f"not a tar archive: {headers}")
            tree.problem((), "header", f"{headers}: the members after it are not read")
            break
        first = False
        tree.add(headers)
        m = headers.member
        stored = 0 if m.typeflag in _HEADER_ONLY else max(0, m.size)
        end = headers.data + stored
        if stored and not _present(stream, end):
            _mark_cut(tree, headers)
            break
        pos = end + (-stored % BLOCK)
    for text in stream.problems:
        tree.problem((), "stream", text)
    tree.finish_problems()


def _present(stream: DecodedStream | PlainStream, end: int) -> bool:
    """Whether the archive holds a byte at ``end - 1`` (a member's last)."""
    return len(stream.read_at(end - 1, 1)) == 1


def _mark_cut(tree: TarTree, h: _Headers) -> None:
    tree.problem(
        (h.member.name,),
        "cut-short",
        f"the archive ends inside the data of the member at byte {h.start}",
    )
    parts = tuple(p for p in h.member.name.split(b"/") if p not in (b"", b"."))
    node = tree._resolve(parts) if b".." not in parts else None
    if isinstance(node, _Node) and stat.S_ISREG(node.mode) and node.children is None:
        node.cut = True


def _read_headers(tree: TarTree, pos: int) -> _Headers | str | None:
    """The member whose headers start at ``pos``; None at the end of the archive; a string
    saying why when its headers cannot be read."""
    stream = tree.stream
    buf = b""
    pax_raw = b""
    at = pos
    while True:
        block = stream.read_at(at, BLOCK)
        if not block:
            if at != pos:
                return f"the archive ends inside the headers at byte {pos}"
            if pos:
                what = f"no end-of-archive marker: the archive stops at byte {pos}"
                tree.problem((), "cut-short", what)
            return None
        if len(block) < BLOCK:
            return f"the archive ends inside a header at byte {at}"
        if at == pos and not any(block):
            return None  # the end-of-archive marker
        buf += block
        at += BLOCK
        if block[156:157] not in _EXTENSION_TYPES:
            break
        try:
            length = parse_number(block[124:136])
        except HeaderError as exc:
            return f"the header at byte {at - BLOCK} cannot be read: {exc}"
        if not 0 <= length <= _MAX_SPECIAL:
            return f"the extension header at byte {at - BLOCK} holds {length} bytes"
        if len(buf) + length > 4 * _MAX_SPECIAL:
            return f"the extension headers from byte {pos} on hold more than 4 MiB"
        data = stream.read_at(at, length)
        if len(data) < length:
            return f"the archive ends inside the extension header at byte {at - BLOCK}"
        if block[156:157] == b"x":
            pax_raw = data
        padded = length + (-length % BLOCK)
        buf += data + bytes(padded - length)
        at += padded
    try:
        member, consumed = read_member(buf, 0, fast=False)
    except HeaderError as exc:
        return f"the header at byte {pos} cannot be read: {exc}"
    if "GNU.sparse.name" in member.pax and member.pax["GNU.sparse.name"]:
        member.name = member.pax["GNU.sparse.name"]
    headers = _Headers(member, pos, pos + consumed, buf[-BLOCK:], pax_raw)
    if member.typeflag == b"S":
        return _gnu_sparse_blocks(tree, headers)
    return headers


def _gnu_sparse_blocks(tree: TarTree, h: _Headers) -> _Headers | str:
    """A GNU ``S`` member's extension blocks of sparse runs (``isextended`` at byte 482 of
    the header, 504 of each block), read so that its data starts after them."""
    extended = h.block[482]
    blocks: list[bytes] = []
    while extended:
        if len(blocks) * 21 > tree.tar_limits.sparse_entries:
            return f"the sparse member at byte {h.start} has more runs than the cap"
        ext = tree.stream.read_at(h.data, BLOCK)
        if len(ext) < BLOCK:
            return f"the archive ends inside the sparse map of the member at byte {h.start}"
        blocks.append(ext)
        h.data += BLOCK
        extended = ext[504]
    h.sparse_blocks = b"".join(blocks)
    return h
