"""TarSum: the checksum that Docker 1.x pushed with a layer (``tarsum[.v1|.dev]+sha256:<hex>``).

A legacy ``graph/<id>/checksum`` of the 1.3–1.5 era holds one (``shared/reference/tar-split.md``
§9; moby's ``pkg/tarsum``). It does not hash the tar bytes: every member is hashed on its own —
``key + value`` for a fixed list of header fields as Go's ``archive/tar`` reader presents them,
then the member's data — and the sorted hex digests of the members, optionally after an extra
payload, go into one last hash. The v1 registry push hashed the layer with version 0 and the
image's ``json`` bytes as that payload (``tarsumLayer.Sum(jsonRaw)``).

:class:`TarSum` is fed the tar stream chunk by chunk (the rebuilt stream of
:func:`~forensics.layers.reassemble.verify_layer`, as its ``sink``) and keeps no member's data:
headers are decoded with :mod:`forensics.formats.ustar` (PAX records, GNU long names and links
applied), data goes straight into the member's hash.

What the header fields are, as pinned by moby's published test vectors (``tests/test_tarsum.py``):

* ``name``, ``linkname``, ``uname``, ``gname``: the raw bytes, long forms applied;
* ``mode``, ``uid``, ``gid``, ``size``, ``devmajor``, ``devminor``: decimal; ``mode`` is the raw
  header number (type bits included if the writer put them there);
* ``mtime`` (version 0 only): Unix seconds; a writer's zero time reads back as 0;
* ``typeflag``: the header byte as written (``\\0`` stays ``\\0``);
* v1 and dev: then every ``SCHILY.xattr.`` record, sorted by key, as ``key + value``.

Since its move to Go 1.10, moby hashes ``uname`` and ``gname`` as empty strings (Go began to fill
them in from the user database); ``blank_names=True`` computes that variant. Sums stored by
Docker 1.x include them. The very first TarSum kept one digest per name (a later member of the
same path replaced the earlier); that variant is not computed: a layer that reassembles from
tar-split has no duplicate paths (tar-split refuses them).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from forensics.errors import Damage
from forensics.formats.ustar import (
    BLOCK,
    PAX_TIME,
    HeaderError,
    Member,
    decode_header,
    read_member,
)

__all__ = ["HASHES", "VERSIONS", "Label", "TarSum", "TarSumError", "parse_label"]

#: version label → version number (0: with mtime, no xattrs; 1 and dev: xattrs, no mtime)
VERSIONS = {"tarsum": 0, "tarsum.v1": 1, "tarsum.dev": 2}
#: the hashes moby's TarSum could be built with (``NewTarSumHash``; its tests use all of them)
HASHES = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")
_LABEL = re.compile(r"(tarsum(?:\.v1|\.dev)?)\+([a-z0-9]+):([0-9a-f]+)")
#: extension headers (PAX ``x``, GNU ``L``/``K``) and their data kept before a member: bound
_EXTENSION_LIMIT = 16 * 1024 * 1024
_XATTR = b"SCHILY.xattr."
_EXTENSIONS = (b"x", b"L", b"K")


class TarSumError(Damage, ValueError):
    """The stream cannot be read as a tar the way Go's reader would: no TarSum. ``kind``:
    ``damaged`` (a bad header, cut short) or ``unsupported`` (a GNU sparse member, which Go's
    reader expands and this reader does not)."""

    def __init__(self, message: str, kind: str = "damaged") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Label:
    """A parsed TarSum string: ``<name>+<hash>:<hex>``."""

    name: str
    hash: str
    hex: str

    @property
    def version(self) -> int:
        return VERSIONS[self.name]

    def __str__(self) -> str:
        return f"{self.name}+{self.hash}:{self.hex}"


def parse_label(text: str) -> Label | None:
    """The TarSum in ``text`` (a checksum file's content), or None when it is none (a plain
    ``sha256:`` digest, damage, an unknown hash)."""
    m = _LABEL.fullmatch(text.strip())
    if m is None or m[2] not in HASHES:
        return None
    if len(m[3]) != hashlib.new(m[2]).digest_size * 2:
        return None
    return Label(m[1], m[2], m[3])


class TarSum:
    """A TarSum computed while a tar stream passes through :meth:`update`.

    After the whole stream (:meth:`close`), :meth:`sum` gives the label string for an extra
    payload (None: no payload; ``json`` bytes: the registry push). Raises
    :class:`TarSumError` from :meth:`update`/:meth:`close` when the stream is no readable tar;
    :attr:`error` keeps it and later input is ignored.
    """

    def __init__(self, version: int = 0, hash_name: str = "sha256", *, blank_names: bool = False):
        if version not in VERSIONS.values():
            raise ValueError(f"unknown TarSum version {version}")
        self.version = version
        self.hash_name = hash_name
        self.blank_names = blank_names
        self.error: TarSumError | None = None
        #: (cleaned name, hex digest) per member, in archive order
        self.sums: list[tuple[bytes, str]] = []
        self._pending = bytearray()  # header blocks (and extension data) not yet complete
        self._need = BLOCK  # bytes the pending headers need before they can be decoded
        self._hash: Any = None  # the current member's hash while its data passes
        self._name = b""
        self._data = 0  # data bytes of the current member still to come
        self._skip = 0  # padding bytes still to skip
        self._ended = False  # an end-of-archive zero block was read

    # -- input -------------------------------------------------------------------------------

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        """Feed the next bytes of the tar stream."""
        if self.error is not None or self._ended:
            return
        view = memoryview(chunk).cast("B")
        try:
            while view:
                view = self._step(view)
                if self._ended:
                    return
        except TarSumError as exc:
            self.error = exc
            raise

    def close(self) -> None:
        """The stream ended; raises TarSumError if it ended inside a member."""
        if self.error is not None:
            raise self.error
        if self._ended:
            return
        if self._hash is not None or self._skip or self._pending:
            self.error = TarSumError("the tar stream ends inside a member")
            raise self.error
        # Go's reader also takes a plain EOF as the end of the archive

    def _step(self, view: memoryview) -> memoryview:
        """Consume what the current state takes of ``view``; the rest."""
        if self._hash is not None:
            take = min(self._data, len(view))
            self._hash.update(view[:take])
            self._data -= take
            if not self._data:
                self._finish_member()
            return view[take:]
        if self._skip:
            take = min(self._skip, len(view))
            self._skip -= take
            return view[take:]
        take = min(self._need - len(self._pending), len(view))
        self._pending += view[:take]
        if len(self._pending) == self._need:
            self._headers_ready()
        return view[take:]

    # -- headers -------------------------------------------------------------------------------

    def _headers_ready(self) -> None:
        """The pending bytes end with a whole header block: an extension header wants its data
        and the next header too; otherwise the member is complete."""
        block = bytes(self._pending[-BLOCK:])
        if not block.strip(b"\0"):
            if len(self._pending) > BLOCK:
                raise TarSumError("a zero block after an extension header")
            self._ended = True  # the end of the archive: what follows is not hashed
            return
        try:
            raw = decode_header(block)
        except HeaderError as exc:
            raise TarSumError(f"tar header: {exc}") from None
        if raw.typeflag in _EXTENSIONS:
            self._need += -(-raw.size // BLOCK) * BLOCK + BLOCK
            if self._need > _EXTENSION_LIMIT:
                raise TarSumError("extension headers larger than 16 MiB")
            return
        self._start_member()

    def _start_member(self) -> None:
        try:
            member, _ = read_member(bytes(self._pending))
            mtime = _mtime(member)
        except HeaderError as exc:
            raise TarSumError(f"tar header: {exc}") from None
        if member.typeflag == b"S":
            raise TarSumError("a GNU sparse member (not reproduced here)", "unsupported")
        if member.size < 0:
            raise TarSumError("a member of negative size")
        self._pending.clear()
        self._need = BLOCK
        self._hash = hashlib.new(self.hash_name)
        for piece in self._header_pieces(member, mtime):
            self._hash.update(piece)
        self._name = _clean(member.name)
        self._data = member.size
        self._skip = -member.size % BLOCK
        if not self._data:
            self._finish_member()

    def _finish_member(self) -> None:
        self.sums.append((self._name, self._hash.hexdigest()))
        self._hash = None

    def _header_pieces(self, m: Member, mtime: int) -> list[bytes]:
        """What moby's header selector writes for member ``m``, in order."""
        blank = self.blank_names
        fields = [
            (b"name", m.name),
            (b"mode", _dec(m.mode)),
            (b"uid", _dec(m.uid)),
            (b"gid", _dec(m.gid)),
            (b"size", _dec(m.size)),
            (b"mtime", _dec(mtime)),
            (b"typeflag", m.typeflag),
            (b"linkname", m.linkname),
            (b"uname", b"" if blank else m.uname),
            (b"gname", b"" if blank else m.gname),
            (b"devmajor", _dec(m.devmajor)),
            (b"devminor", _dec(m.devminor)),
        ]
        if self.version:
            fields = [f for f in fields if f[0] != b"mtime"]
            fields += sorted(_xattrs(m))
        return [key + value for key, value in fields]

    # -- output --------------------------------------------------------------------------------

    def sum(self, extra: bytes | None = None) -> str:
        """The TarSum label of the stream read so far (call :meth:`close` first)."""
        h = hashlib.new(self.hash_name)
        if extra is not None:
            h.update(extra)
        for digest in self._ordered():
            h.update(digest.encode("ascii"))
        name = next(k for k, v in VERSIONS.items() if v == self.version)
        return f"{name}+{self.hash_name}:{h.hexdigest()}"

    def _ordered(self) -> list[str]:
        """The member digests in moby's order: by digest; members that share a (cleaned) name
        keep their archive order among themselves (``FileInfoSums.SortBySums``).

        Go sorts with a comparator that, with duplicate names, is no strict order in general
        (and then its result depends on Go's sort algorithm); this places the members of each
        duplicated name, in archive order, into the slots their digests sort to, which is
        Go's result whenever its comparator is consistent (the published collision vectors).
        """
        by_sum = sorted(range(len(self.sums)), key=lambda i: self.sums[i][1])
        names = [self.sums[i][0] for i in by_sum]
        if len(set(names)) == len(names):
            return [self.sums[i][1] for i in by_sum]
        slots: dict[bytes, list[int]] = {}
        for slot, name in enumerate(names):
            slots.setdefault(name, []).append(slot)
        order = list(by_sum)
        for where in slots.values():
            if len(where) > 1:
                members = sorted(by_sum[s] for s in where)  # archive order
                for slot, i in zip(where, members, strict=True):
                    order[slot] = i
        return [self.sums[i][1] for i in order]


def _dec(value: int) -> bytes:
    return str(value).encode("ascii")


def _mtime(m: Member) -> int:
    """Unix seconds as Go's ``ModTime.Unix()``: the header's number as it is, or a PAX
    ``mtime`` (``"<s>[.<frac>]"``, Go's ``parsePAXTime``: nanoseconds from the first nine
    fraction digits, negative times floored)."""
    text = m.pax.get("mtime")
    if text is None:
        return int(m.mtime)
    match = PAX_TIME.fullmatch(text)
    if match is None:
        raise HeaderError(f"PAX mtime {text[:40]!r} is no time")
    seconds = int(match[1])
    if match[1].startswith(b"-") and (match[2] or b"").strip(b"0"):
        seconds -= 1
    return seconds


def _xattrs(m: Member) -> list[tuple[bytes, bytes]]:
    out = []
    for key, value in m.pax.items():
        raw = key.encode("utf-8", "surrogateescape")
        if raw.startswith(_XATTR):
            out.append((raw[len(_XATTR) :], value))
    return out


def _clean(name: bytes) -> bytes:
    """``path.Join(".", path.Join("/", name))``: the name moby's TarSum compares for duplicates."""
    parts: list[bytes] = []
    for comp in name.split(b"/"):
        if comp in (b"", b"."):
            continue
        if comp == b"..":
            if parts:
                parts.pop()
        else:
            parts.append(comp)
    return b"/".join(parts) or b"."
