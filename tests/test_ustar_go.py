"""Tar headers judged as Go's archive/tar reader (the one tar-split and TarSum read layers with)
judges them: its ``parseOctal``/``parseNumeric``, ``getFormat``, ``parsePAX``/``mergePAX``,
the GNU long names and ``handleRegularFile``. Each case names the Go rule it holds."""

from __future__ import annotations

import tarfile

import pytest

from forensics.formats import ustar
from forensics.formats.ustar import BLOCK, HeaderError

# -- numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (b"0000644\0", 0o644),
        (b"   644 \0", 0o644),
        (b"\0\0 644 \0", 0o644),  # NULs and spaces trimmed from both ends
        (b"644\0 junk", 0o644),  # cut at the first NUL left after trimming
        (b"\0" * 8, 0),
        (b" " * 8, 0),
        (b"77777777777\0", 0o77777777777),
    ],
)
def test_octal_fields_that_go_reads(field: bytes, value: int) -> None:
    assert ustar.parse_octal(field) == value == ustar.parse_number(field)


@pytest.mark.parametrize(
    "field",
    [
        b"+000644\0",  # strconv.ParseUint takes no sign
        b"-000644\0",
        b"0o00644\0",  # nor a prefix
        b"000_644\0",  # nor an underscore
        b"\t000644\0",  # nor white space other than the trimmed spaces
        b"0000644\n",
        b" 644 \0x",  # the space before the NUL stays: not a digit
        b"0000648\0",
    ],
)
def test_octal_fields_that_go_rejects(field: bytes) -> None:
    with pytest.raises(HeaderError):
        ustar.parse_number(field)


def test_base256_within_64_bits() -> None:
    assert ustar.parse_number(b"\x80" + (2**63 - 1).to_bytes(11, "big")) == 2**63 - 1
    assert ustar.parse_number(b"\xff" * 12) == -1
    assert ustar.parse_number((-(2**63)).to_bytes(12, "big", signed=True)) == -(2**63)
    with pytest.raises(HeaderError, match="64 bits"):
        ustar.parse_number(b"\x80" + (2**63).to_bytes(11, "big"))
    with pytest.raises(HeaderError, match="64 bits"):
        ustar.parse_number(b"\xc0" + bytes(11))  # -(2**94): below int64


# -- header blocks ----------------------------------------------------------------------------


def _block(name: str = "a", **attrs: object) -> bytes:
    info = tarfile.TarInfo(name)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")[:BLOCK]


def _patch(block: bytes, at: int, data: bytes) -> bytes:
    """``data`` written at ``at``, the checksum made right again (as the writer's would be)."""
    out = bytearray(block)
    out[at : at + len(data)] = data
    out[148:156] = b" " * 8
    out[148:156] = b"%06o\0 " % sum(out)
    return bytes(out)


def _member(data: bytes) -> ustar.Member:
    """The member by both paths (fast where it applies, full), which must agree."""
    data += bytes(BLOCK)
    full, end = ustar.read_member(data, 0, fast=False)
    fast, fast_end = ustar.read_member(data, 0)
    assert (fast, fast_end) == (full, end)
    return full


def _rejected(data: bytes) -> None:
    data += bytes(BLOCK)
    for fast in (True, False):
        with pytest.raises(HeaderError):
            ustar.read_member(data, 0, fast=fast)


def test_a_base256_checksum_is_no_checksum() -> None:
    """getFormat reads the checksum with parseOctal alone."""
    block = bytearray(_block())
    block[148:156] = b" " * 8
    block[148:156] = b"\x80" + sum(block).to_bytes(7, "big")
    assert not ustar.checksum_ok(bytes(block))
    _rejected(bytes(block))


def test_a_bad_device_number_is_an_error_in_a_posix_header() -> None:
    """readHeader parses devmajor/devminor for every format after V7 with the same parser."""
    _rejected(_patch(_block(), 329, b"+000001\0"))


def test_a_v7_header_has_no_owner_names_devices_or_prefix() -> None:
    """Without a magic (V7) Go reads nothing after linkname."""
    block = _block("name", uname="root", gname="wheel")
    block = _patch(block, 257, bytes(8))  # magic and version gone
    block = _patch(block, 329, b"garbage!" + b"junk\0\0\0\0")
    block = _patch(block, 345, b"prefix\0")
    member = _member(block)
    assert (member.name, member.uname, member.gname) == (b"name", b"", b"")
    assert (member.devmajor, member.devminor) == (0, 0)


def test_gnu_headers_keep_times_where_posix_keeps_the_prefix() -> None:
    gnu = _patch(_block("name"), 257, b"ustar  \0")
    assert _member(_patch(gnu, 345, b"0000001\0")).name == b"name"  # an access time: no prefix
    # Go < 1.8 wrote a prefix into GNU headers: times that do not read make it the prefix
    assert _member(_patch(gnu, 345, b"dir/sub\0")).name == b"dir/sub/name"
    assert _member(_patch(gnu, 345, b"d\xe9j\xe0\0")).name == b"name"  # not ASCII: dropped


def test_star_headers_have_a_short_prefix_and_times_that_must_read() -> None:
    star = _patch(_block("name"), 508, b"tar\0")
    assert _member(_patch(star, 345, b"p" * 131 + b"00000000001\0")).name == b"p" * 131 + b"/name"
    _rejected(_patch(star, 476, b"not-time\0"))


def test_old_regular_type_with_a_slash_is_a_directory() -> None:
    member = _member(_patch(_block("dir/"), 156, b"\0"))
    assert (member.typeflag, member.type) == (b"5", "dir")
    assert _member(_patch(_block("file"), 156, b"\0")).type == "file"


def test_negative_sizes() -> None:
    """handleRegularFile: a negative size is an error unless the type carries no data."""
    negative = b"\xff" * 12
    _rejected(_patch(_block("f"), 124, negative))
    symlink = _patch(_block("l", type=tarfile.SYMTYPE, linkname="t"), 124, negative)
    assert _member(symlink).size == -1


# -- PAX and GNU extension headers ------------------------------------------------------------


def _record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while len(b"%d" % n) + len(body) != n:
        n += 1
    return b"%d" % n + body


def _extension(kind: bytes, data: bytes, size: int | None = None) -> bytes:
    header = _patch(_block("././@PaxHeader"), 156, kind)
    header = _patch(header, 124, b"%011o\0" % (len(data) if size is None else size))
    return header + data + bytes(-len(data) % BLOCK)


@pytest.mark.parametrize(
    "data",
    [
        _record(b"path", b"ab") + b"\0",  # Go reads the data whole: a NUL is no record
        b"4 a=\n",  # a record is at least 5 bytes
        b"5 a=\nx",  # a residue that is no record
        b"1_2 path=ab\n",  # ParseInt takes no underscore
        b" 12 path=ab\n",
        _record(b"", b"ab"),  # an empty key
        _record(b"path", b"a\0b"),  # a NUL in a string field
        _record(b"k\0y", b"v"),
        b"99 path=ab\n",  # longer than the data
    ],
)
def test_pax_data_that_go_rejects(data: bytes) -> None:
    with pytest.raises(HeaderError):
        ustar.parse_pax(data)


def test_pax_data_that_go_reads() -> None:
    assert ustar.parse_pax(b"011 path=a\n") == {"path": b"a"}  # leading zeros are decimal
    assert ustar.parse_pax(_record(b"comment", b"a\0b")) == {"comment": b"a\0b"}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"uid", b" 5"),
        (b"uid", b"5_0"),
        (b"size", b"1e3"),
        (b"gid", b"9" * 20),  # beyond int64
        (b"mtime", b"inf"),
        (b"mtime", b".5"),
        (b"mtime", b"1.5e3"),
        (b"atime", b"x"),  # read, though kept nowhere
    ],
)
def test_pax_values_that_go_rejects(key: bytes, value: bytes) -> None:
    _rejected(_extension(b"x", _record(key, value)) + _block("f"))


def test_pax_values_merge_as_in_go() -> None:
    data = _record(b"path", b"") + _record(b"uid", b"+7") + _record(b"mtime", b"-1.5")
    member = _member(_extension(b"x", data) + _block("header-name"))
    assert (member.name, member.uid, member.mtime) == (b"header-name", 7, -1.5)  # "" keeps


def test_a_second_pax_header_replaces_the_first() -> None:
    first = _extension(b"x", _record(b"uid", b"42"))
    second = _extension(b"x", _record(b"path", b"long"))
    member = _member(first + second + _block("f", uid=1))
    assert (member.name, member.uid) == (b"long", 1)


def test_a_gnu_long_name_wins_over_a_pax_path() -> None:
    pax = _extension(b"x", _record(b"path", b"from-pax") + _record(b"linkpath", b"pax-target"))
    long_name = _extension(b"L", b"from-gnu\0")
    empty_link = _extension(b"K", b"\0")  # an empty long link leaves the PAX one
    member = _member(pax + long_name + empty_link + _block("h", type=tarfile.SYMTYPE))
    assert (member.name, member.linkname) == (b"from-gnu", b"pax-target")


def test_extension_data_over_one_mib_is_an_error() -> None:
    """maxSpecialFileSize."""
    _rejected(_extension(b"L", b"n" * (1 << 20) + b"x") + _block("f"))
    assert _member(_extension(b"L", b"n" * (1 << 20)) + _block("f")).name == b"n" * (1 << 20)
