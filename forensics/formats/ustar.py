"""The tar header (POSIX ustar, GNU and PAX extensions): declaration, checksum, decoding.

:data:`HEADER` declares the 512-byte block once with construct; the hot path (one header per
file of a layer) unpacks it with a :class:`struct.Struct` built from that same declaration.
:func:`plain_member` decodes the usual header (no extension in front, octal numbers, a checksum
that verifies) with a few C calls; everything else goes through the full decoder
(:func:`decode_header`, :func:`read_member`), which gives the same member for what both read.
Extension headers are resolved the way Go's ``archive/tar`` reader does, which is what tar-split
used to name its file entries: a PAX ``x`` record overrides path, linkpath, size, uid, gid,
mtime, uname and gname of the next member; GNU ``L``/``K`` give the next member's long name or
link name; ``g`` (PAX global) is a member of its own. See ``shared/reference/tar-split.md`` §7.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from zlib import adler32

from construct import Bytes, Struct

__all__ = [
    "BLOCK",
    "HEADER",
    "HeaderError",
    "Member",
    "RawHeader",
    "checksum_ok",
    "decode_header",
    "parse_number",
    "parse_pax",
    "plain_member",
    "read_member",
]

BLOCK = 512

HEADER = Struct(
    "name" / Bytes(100),
    "mode" / Bytes(8),
    "uid" / Bytes(8),
    "gid" / Bytes(8),
    "size" / Bytes(12),
    "mtime" / Bytes(12),
    "chksum" / Bytes(8),
    "typeflag" / Bytes(1),
    "linkname" / Bytes(100),
    "magic" / Bytes(6),
    "version" / Bytes(2),
    "uname" / Bytes(32),
    "gname" / Bytes(32),
    "devmajor" / Bytes(8),
    "devminor" / Bytes(8),
    "prefix" / Bytes(155),
    "padding" / Bytes(12),
)

_FIELDS = [sub.name for sub in HEADER.subcons]
_LAYOUT = struct.Struct("".join(f"{sub.sizeof()}s" for sub in HEADER.subcons))
assert _LAYOUT.size == HEADER.sizeof() == BLOCK
_CHKSUM_AT = _FIELDS.index("chksum")
_CHKSUM_OFF = sum(sub.sizeof() for sub in HEADER.subcons[:_CHKSUM_AT])

#: typeflags of extension headers that describe the next member
_EXTENSIONS = {b"x", b"L", b"K"}
#: what a typeflag means; b"\0" and b"7" are regular files too
TYPES = {
    b"0": "file",
    b"\0": "file",
    b"7": "file",
    b"1": "hardlink",
    b"2": "symlink",
    b"3": "char",
    b"4": "block",
    b"5": "dir",
    b"6": "fifo",
    b"g": "pax-global",
    b"S": "sparse",
}
_PAX_NUMBERS = {"size", "uid", "gid"}


class HeaderError(ValueError):
    """A tar header that cannot be decoded: bad checksum, bad number, cut short."""


@dataclass(frozen=True, slots=True)
class RawHeader:
    """One 512-byte header block, decoded but not yet combined with extension headers."""

    name: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    typeflag: bytes
    linkname: bytes
    magic: bytes
    uname: bytes
    gname: bytes
    devmajor: int
    devminor: int
    prefix: bytes

    @property
    def path(self) -> bytes:
        """The member name; a POSIX ustar ``prefix`` is joined in (GNU uses that area else)."""
        if self.prefix and self.magic == b"ustar\0":
            return self.prefix + b"/" + self.name
        return self.name


@dataclass(slots=True)
class Member:
    """A tar member as a reader sees it: extension headers applied."""

    name: bytes
    linkname: bytes
    size: int
    mode: int
    uid: int
    gid: int
    mtime: float
    typeflag: bytes
    uname: bytes
    gname: bytes
    devmajor: int
    devminor: int
    pax: dict[str, bytes] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return TYPES.get(self.typeflag, "other")

    @property
    def xattrs(self) -> dict[str, bytes]:
        return {k[13:]: v for k, v in self.pax.items() if k.startswith("SCHILY.xattr.")}


def checksum_ok(block: bytes) -> bool:
    """True when the stored checksum matches the sum of the block with the checksum field
    counted as spaces (unsigned bytes; the signed sum of very old writers is accepted too)."""
    try:
        stored = parse_number(block[_CHKSUM_OFF : _CHKSUM_OFF + 8])
    except HeaderError:
        return False
    unsigned = sum(block) - sum(block[_CHKSUM_OFF : _CHKSUM_OFF + 8]) + 8 * 0x20
    if stored == unsigned:
        return True
    signed = unsigned - 256 * sum(1 for b in block if b > 127)
    signed += 256 * sum(1 for b in block[_CHKSUM_OFF : _CHKSUM_OFF + 8] if b > 127)
    return stored == signed


def parse_number(field: bytes) -> int:
    """A numeric header field: octal (NUL/space padded) or GNU base-256 (high bit set)."""
    if field and field[0] & 0x80:
        value = int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
        if field[0] & 0x40:  # negative base-256 (two's complement)
            value -= 1 << (8 * len(field) - 1)
        return value
    try:  # the usual "0000644\0": one call
        return int(field.rstrip(b"\0 ") or b"0", 8)
    except ValueError:
        pass
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise HeaderError(f"bad octal number {field!r}") from None


def decode_header(block: bytes) -> RawHeader:
    """Decode one header block; raises HeaderError when it is short or its checksum is wrong."""
    if len(block) < BLOCK:
        raise HeaderError(f"header cut short ({len(block)} of {BLOCK} bytes)")
    if not checksum_ok(block):
        if not block.strip(b"\0"):
            raise HeaderError("a zero block where a header should be")
        raise HeaderError("header checksum mismatch")
    (name, mode, uid, gid, size, mtime, _, typeflag, linkname, magic, _, uname, gname, major,
     minor, prefix, _) = _LAYOUT.unpack_from(block)  # fmt: skip
    return RawHeader(
        name=_cstr(name),
        mode=parse_number(mode),
        uid=parse_number(uid),
        gid=parse_number(gid),
        size=parse_number(size),
        mtime=parse_number(mtime),
        typeflag=typeflag,
        linkname=_cstr(linkname),
        magic=magic,
        uname=_cstr(uname),
        gname=_cstr(gname),
        devmajor=_device_number(major),
        devminor=_device_number(minor),
        prefix=_cstr(prefix),
    )


def parse_pax(data: bytes) -> dict[str, bytes]:
    """PAX extended header records ``"<len> <key>=<value>\\n"``; raises HeaderError."""
    records: dict[str, bytes] = {}
    pos = 0
    data = data.rstrip(b"\0")
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            raise HeaderError("PAX record without a length")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise HeaderError("PAX record with a bad length") from None
        record = data[space + 1 : pos + length]
        if length <= 0 or pos + length > len(data) or not record.endswith(b"\n"):
            raise HeaderError("PAX record cut short or badly terminated")
        key, sep, value = record[:-1].partition(b"=")
        if not sep:
            raise HeaderError("PAX record without '='")
        records[key.decode("utf-8", "surrogateescape")] = value
        pos += length
    return records


def read_member(buf: bytes, offset: int = 0, *, fast: bool = True) -> tuple[Member, int]:
    """The member whose header(s) start at ``offset`` of ``buf``, and the offset just after its
    last header block (where its data begins). Extension headers and their data must lie in
    ``buf``. Raises HeaderError.

    A plain header is decoded by :func:`plain_member`; anything else, or everything with
    ``fast=False``, by the full decoder (:func:`decode_header` per block). Both give the same
    member."""
    if fast:
        member = plain_member(buf, offset)
        if member is not None:
            return member, offset + BLOCK
    pax: dict[str, bytes] = {}
    long_name: bytes | None = None
    long_link: bytes | None = None
    while True:
        raw = decode_header(buf[offset : offset + BLOCK])
        offset += BLOCK
        if raw.typeflag not in _EXTENSIONS:
            break
        end = offset + raw.size
        if end > len(buf):
            raise HeaderError(f"extension header {raw.typeflag!r} data cut short")
        data = buf[offset:end]
        offset += _padded(raw.size)
        if raw.typeflag == b"x":
            pax.update(parse_pax(data))
        elif raw.typeflag == b"L":
            long_name = _cstr(data)
        else:
            long_link = _cstr(data)
    return _apply(raw, pax, long_name, long_link), offset


# -- the fast path: one plain header ------------------------------------------------------------

#: the three runs of a header block around its checksum field, each short enough that its byte
#: sum stays below 65521 (adler32's modulus): there ``adler32(run, 0) & 0xFFFF`` *is* the byte
#: sum, computed in C (``sum(block)`` walks 512 Python ints: ~5 × slower)
_RUNS = ((0, 148), (156, 406), (406, BLOCK))
assert _RUNS[0][1] == _CHKSUM_OFF and _RUNS[1][0] == _CHKSUM_OFF + 8
assert all((end - start) * 255 < 65521 for start, end in _RUNS)
_SPACES = 8 * 0x20  # the checksum field counts as spaces


def plain_member(buf: bytes, offset: int = 0) -> Member | None:
    """The member of the plain header block at ``offset`` of ``buf`` — no extension header
    (PAX, GNU long name) in front, a checksum that verifies as an unsigned sum, numbers in
    octal — decoded with a fraction of the full decoder's work; None for any other block,
    which :func:`read_member`'s full decoder then reads or rejects. Never raises.

    Where it returns a member, the full decoder returns an equal one: every number is read
    with :func:`parse_number`'s own first step, and ``tests/test_ustar_fast.py`` holds the two
    paths against each other."""
    block = buf[offset : offset + BLOCK]
    if len(block) < BLOCK or block[156:157] in _EXTENSIONS:
        return None
    (name, mode, uid, gid, size, mtime, chksum, typeflag, linkname, magic, _, uname, gname, major,
     minor, prefix, _) = _LAYOUT.unpack(block)  # fmt: skip
    # written out (numbers as parse_number's first step, strings as _cstr, the sum over
    # _RUNS): this runs once per member of a layer, and calls cost
    try:
        if int(chksum.rstrip(b"\0 ") or b"0", 8) != (
            (adler32(block[:148], 0) & 0xFFFF)
            + (adler32(block[156:406], 0) & 0xFFFF)
            + (adler32(block[406:], 0) & 0xFFFF)
            + _SPACES
        ):
            return None
        member = Member(
            name.partition(b"\0")[0],
            linkname.partition(b"\0")[0],
            int(size.rstrip(b"\0 ") or b"0", 8),
            int(mode.rstrip(b"\0 ") or b"0", 8),
            int(uid.rstrip(b"\0 ") or b"0", 8),
            int(gid.rstrip(b"\0 ") or b"0", 8),
            float(int(mtime.rstrip(b"\0 ") or b"0", 8)),
            typeflag,
            uname.partition(b"\0")[0],
            gname.partition(b"\0")[0],
            int(major.rstrip(b"\0 ") or b"0", 8),
            int(minor.rstrip(b"\0 ") or b"0", 8),
            {},
        )
    except ValueError:  # base-256 or garbage: the full decoder judges
        return None
    if magic == b"ustar\0" and prefix[0]:
        member.name = prefix.partition(b"\0")[0] + b"/" + member.name
    return member


def _apply(
    raw: RawHeader, pax: dict[str, bytes], long_name: bytes | None, long_link: bytes | None
) -> Member:
    member = Member(
        name=long_name if long_name is not None else raw.path,
        linkname=long_link if long_link is not None else raw.linkname,
        size=raw.size,
        mode=raw.mode,
        uid=raw.uid,
        gid=raw.gid,
        mtime=float(raw.mtime),
        typeflag=raw.typeflag,
        uname=raw.uname,
        gname=raw.gname,
        devmajor=raw.devmajor,
        devminor=raw.devminor,
        pax=pax,
    )
    if pax:
        _apply_pax(member, pax)
    return member


def _apply_pax(member: Member, pax: dict[str, bytes]) -> None:
    """PAX records override the header's fields (Go's archive/tar mergePAX)."""
    if "path" in pax:
        member.name = pax["path"]
    if "linkpath" in pax:
        member.linkname = pax["linkpath"]
    for key in _PAX_NUMBERS & pax.keys():
        try:
            setattr(member, key, int(pax[key]))
        except ValueError:
            raise HeaderError(f"PAX {key} is not a number") from None
    if "mtime" in pax:
        try:
            member.mtime = float(pax["mtime"])
        except ValueError:
            raise HeaderError("PAX mtime is not a number") from None
    if "uname" in pax:
        member.uname = pax["uname"]
    if "gname" in pax:
        member.gname = pax["gname"]


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _cstr(field: bytes) -> bytes:
    return field.partition(b"\0")[0]


def _device_number(field: bytes) -> int:
    """devmajor/devminor: empty in GNU headers of non-devices; never fatal."""
    try:
        return parse_number(field)
    except HeaderError:
        return 0
