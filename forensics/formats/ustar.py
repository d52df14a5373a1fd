"""The tar header (POSIX ustar, GNU and PAX extensions): declaration, checksum, decoding.

:data:`HEADER` declares the 512-byte block once with construct; the hot path (one header per
file of a layer) unpacks it with a :class:`struct.Struct` built from that same declaration.
:func:`plain_member` decodes the usual header (no extension in front, octal numbers, a checksum
that verifies) with a few C calls; everything else goes through the full decoder
(:func:`decode_header`, :func:`read_member`), which gives the same member for what both read.
Extension headers are resolved the way Go's ``archive/tar`` reader does, which is what tar-split
used to name its file entries: a PAX ``x`` record overrides path, linkpath, size, uid, gid,
mtime, uname and gname of the next member; GNU ``L``/``K`` give the next member's long name or
link name; ``g`` (PAX global) is a member of its own (Go's ``archive/tar`` ``reader.go``).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from zlib import adler32

from construct import Bytes, Struct

from forensics.errors import Damage

__all__ = [
    "BLOCK",
    "HEADER",
    "PAX_TIME",
    "HeaderError",
    "Member",
    "RawHeader",
    "checksum_ok",
    "decode_header",
    "header_format",
    "parse_number",
    "parse_octal",
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
_PAX_STRINGS = {"path": "name", "linkpath": "linkname", "uname": "uname", "gname": "gname"}
#: Go's ``maxSpecialFileSize``: the largest PAX or GNU long-name data it reads
_MAX_SPECIAL = 1 << 20
_OCTAL_DIGITS = b"01234567"
#: what an octal field of a plain header may hold (digits, space and NUL padding)
_OCTAL_FIELD = _OCTAL_DIGITS + b" \0"
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
#: a decimal as Go's ``strconv.ParseInt`` reads it (base 10): an optional sign, then digits
_DECIMAL = re.compile(rb"[-+]?[0-9]+")
#: a PAX time as Go's ``parsePAXTime`` reads it: ``<seconds>[.<digits>]``
PAX_TIME = re.compile(rb"([-+]?[0-9]+)(?:\.([0-9]{0,9})[0-9]*)?")
#: typeflags whose members carry no data (Go's ``isHeaderOnlyType``): their size is not read
_HEADER_ONLY = {b"1", b"2", b"3", b"4", b"5", b"6"}
_MAGIC_USTAR = b"ustar\0"
_MAGIC_GNU, _VERSION_GNU = b"ustar ", b" \0"
_TRAILER_STAR = b"tar\0"


class HeaderError(Damage, ValueError):
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
        """The member name with the header's ``prefix`` joined in (see :func:`_prefix`)."""
        return self.prefix + b"/" + self.name if self.prefix else self.name


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
    try:  # Go reads the checksum as octal only (getFormat's parseOctal)
        stored = parse_octal(block[_CHKSUM_OFF : _CHKSUM_OFF + 8])
    except HeaderError:
        return False
    unsigned = sum(block) - sum(block[_CHKSUM_OFF : _CHKSUM_OFF + 8]) + 8 * 0x20
    if stored == unsigned:
        return True
    signed = unsigned - 256 * sum(1 for b in block if b > 127)
    signed += 256 * sum(1 for b in block[_CHKSUM_OFF : _CHKSUM_OFF + 8] if b > 127)
    return stored == signed


def parse_number(field: bytes) -> int:
    """A numeric header field as Go's ``parseNumeric`` reads it: GNU base-256 when the high bit
    is set (two's complement, within 64 bits), else octal (:func:`parse_octal`)."""
    if field and field[0] & 0x80:
        value = int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
        if field[0] & 0x40:  # negative base-256 (two's complement)
            value -= 1 << (8 * len(field) - 1)
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise HeaderError(f"base-256 number {field!r} beyond 64 bits")
        return value
    return parse_octal(field)


def parse_octal(field: bytes) -> int:
    """An octal field as Go's ``parseOctal`` reads it: spaces and NULs trimmed from both ends,
    cut at the first NUL left, then digits 0-7 alone (``strconv.ParseUint`` in base 8 takes no
    sign, prefix, underscore or other white space); an empty field is 0."""
    text = field.strip(b" \0").partition(b"\0")[0]
    if text.translate(None, _OCTAL_DIGITS):
        raise HeaderError(f"bad octal number {field!r}")
    return int(text, 8) if text else 0


def header_format(block: bytes) -> str:
    """The header's format as Go's ``getFormat`` guesses it from the magic: ``"ustar"`` (POSIX,
    also PAX), ``"star"``, ``"gnu"`` or ``"v7"`` (no magic: the fields after ``linkname`` are
    not read)."""
    magic = block[257:263]
    if magic == _MAGIC_USTAR:
        return "star" if block[508:512] == _TRAILER_STAR else "ustar"
    if magic == _MAGIC_GNU and block[263:265] == _VERSION_GNU:
        return "gnu"
    return "v7"


def decode_header(block: bytes) -> RawHeader:
    """Decode one header block as Go's ``archive/tar`` reader does; raises HeaderError when it
    is short, its checksum is wrong or a number it reads is bad."""
    if len(block) < BLOCK:
        raise HeaderError(f"header cut short ({len(block)} of {BLOCK} bytes)")
    if not checksum_ok(block):
        if not block.strip(b"\0"):
            raise HeaderError("a zero block where a header should be")
        raise HeaderError("header checksum mismatch")
    (name, mode, uid, gid, size, mtime, _, typeflag, linkname, magic, _, uname, gname, major,
     minor, _, _) = _LAYOUT.unpack_from(block)  # fmt: skip
    fmt = header_format(block)
    v7 = fmt == "v7"
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
        uname=b"" if v7 else _cstr(uname),
        gname=b"" if v7 else _cstr(gname),
        devmajor=0 if v7 else parse_number(major),
        devminor=0 if v7 else parse_number(minor),
        prefix=_prefix(block, fmt),
    )


def _prefix(block: bytes, fmt: str) -> bytes:
    """What Go joins in front of the name: the POSIX ``prefix`` (155 bytes; 131 in a star
    header, whose access and change times follow and must read); nothing for GNU, whose
    header keeps times there — unless they do not read as numbers, the mark of the buggy
    Go < 1.8 writer that put a prefix into GNU headers, whose prefix is then taken when it is
    ASCII."""
    if fmt == "ustar":
        return _cstr(block[345:500])
    if fmt == "star":
        parse_number(block[476:488])
        parse_number(block[488:500])
        return _cstr(block[345:476])
    if fmt == "gnu" and not (_time_reads(block[345:357]) and _time_reads(block[357:369])):
        prefix = _cstr(block[345:500])
        return prefix if prefix.isascii() else b""
    return b""


def _time_reads(field: bytes) -> bool:
    """A GNU access or change time: absent (first byte NUL) or a number."""
    if not field[0]:
        return True
    try:
        parse_number(field)
    except HeaderError:
        return False
    return True


def parse_pax(data: bytes) -> dict[str, bytes]:
    """PAX extended header records ``"<len> <key>=<value>\\n"`` as Go's ``parsePAX`` reads
    them; raises HeaderError. The data is taken whole: a NUL after the last record is an error
    there too."""
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            raise HeaderError("PAX record without a length")
        digits = data[pos:space]
        if len(digits) > 20 or not _DECIMAL.fullmatch(digits):
            raise HeaderError("PAX record with a bad length")
        length = int(digits)
        if length < 5 or pos + length > len(data) or space + 1 >= pos + length - 1:
            raise HeaderError("PAX record with a bad length")
        record = data[space + 1 : pos + length]
        if not record.endswith(b"\n"):
            raise HeaderError("PAX record badly terminated")
        key, sep, value = record[:-1].partition(b"=")
        if not sep or not key:
            raise HeaderError("PAX record without a key")
        name = key.decode("utf-8", "surrogateescape")
        if b"\0" in (value if name in _PAX_STRINGS else key):
            raise HeaderError(f"PAX record {name[:40]!r} holds a NUL")
        records[name] = value
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
    long_name = long_link = b""
    while True:
        raw = decode_header(buf[offset : offset + BLOCK])
        _check_size(raw.typeflag, raw.size)
        offset += BLOCK
        if raw.typeflag not in _EXTENSIONS:
            break
        if raw.size > _MAX_SPECIAL:
            raise HeaderError(f"extension header {raw.typeflag!r} of more than 1 MiB")
        end = offset + raw.size
        if end > len(buf):
            raise HeaderError(f"extension header {raw.typeflag!r} data cut short")
        data = buf[offset:end]
        offset += _padded(raw.size)
        if raw.typeflag == b"x":
            pax = parse_pax(data)  # a second PAX header replaces the first, as in Go
        elif raw.typeflag == b"L":
            long_name = _cstr(data)
        else:
            long_link = _cstr(data)
    member = _apply(raw, pax, long_name, long_link)
    _check_size(member.typeflag, member.size)
    return member, offset


def _check_size(typeflag: bytes, size: int) -> None:
    """Go's ``handleRegularFile``: a negative size is an error, except for the types that carry
    no data."""
    if size < 0 and typeflag not in _HEADER_ONLY:
        raise HeaderError(f"negative size {size}")


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

    Where it returns a member, the full decoder returns an equal one: it takes only POSIX
    headers and GNU headers without times, whose numeric fields hold nothing but octal digits,
    spaces and NULs (there ``int(field.rstrip(b"\\0 "), 8)`` reads what :func:`parse_octal`
    reads, or fails), and ``tests/test_ustar_fast.py`` holds the two paths against each other."""
    block = buf[offset : offset + BLOCK]
    if len(block) < BLOCK or block[156:157] in _EXTENSIONS:
        return None
    magic = block[257:263]
    if magic == _MAGIC_USTAR:
        if block[508:512] == _TRAILER_STAR:
            return None
        join_prefix = True
    elif magic == _MAGIC_GNU and block[263:265] == _VERSION_GNU and not block[345] | block[357]:
        join_prefix = False  # GNU without access or change times: no prefix
    else:
        return None
    if block[100:156].lstrip(_OCTAL_FIELD) or block[329:345].lstrip(_OCTAL_FIELD):
        return None  # a sign, a base-256 number, other white space: the full decoder judges
    (name, mode, uid, gid, size, mtime, chksum, typeflag, linkname, _, _, uname, gname, major,
     minor, prefix, _) = _LAYOUT.unpack(block)  # fmt: skip
    # written out (strings as _cstr, the sum over _RUNS): this runs once per member of a
    # layer, and calls cost
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
    except ValueError:  # digits after a NUL, inner spaces: the full decoder judges
        return None
    if join_prefix and prefix[0]:
        member.name = prefix.partition(b"\0")[0] + b"/" + member.name
    if typeflag == b"\0" and member.name.endswith(b"/"):
        member.typeflag = b"5"
    return member


def _apply(raw: RawHeader, pax: dict[str, bytes], long_name: bytes, long_link: bytes) -> Member:
    """The member as Go's reader gives it: PAX records merged, then a (non-empty) GNU long name
    or link name over them, then an old regular-file type with a trailing ``/`` made a
    directory."""
    member = Member(
        name=raw.path,
        linkname=raw.linkname,
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
    if long_name:
        member.name = long_name
    if long_link:
        member.linkname = long_link
    if member.typeflag == b"\0" and member.name.endswith(b"/"):
        member.typeflag = b"5"
    return member


def _apply_pax(member: Member, pax: dict[str, bytes]) -> None:
    """PAX records override the header's fields as Go's ``mergePAX`` does: an empty value
    leaves the header's; numbers are decimals within 64 bits, times ``<s>[.<digits>]``."""
    for key, value in pax.items():
        if not value:
            continue
        if key in _PAX_STRINGS:
            setattr(member, _PAX_STRINGS[key], value)
        elif key in _PAX_NUMBERS:
            setattr(member, key, _pax_decimal(key, value))
        elif key == "mtime":
            member.mtime = _pax_time(value)
        elif key in ("atime", "ctime"):
            _pax_time(value)  # read, and an error, though the member keeps no such time


def _pax_decimal(key: str, value: bytes) -> int:
    if len(value) > 20 or not _DECIMAL.fullmatch(value):
        raise HeaderError(f"PAX {key} is not a number")
    number = int(value)
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise HeaderError(f"PAX {key} beyond 64 bits")
    return number


def _pax_time(value: bytes) -> float:
    match = PAX_TIME.fullmatch(value)
    if match is None or len(match[1]) > 20 or not _INT64_MIN <= int(match[1]) <= _INT64_MAX:
        raise HeaderError(f"PAX time {value[:40]!r} is not a time")
    return float(value)


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _cstr(field: bytes) -> bytes:
    return field.partition(b"\0")[0]
