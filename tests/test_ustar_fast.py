"""The fast header path (``ustar.plain_member``) and the full construct-declared decoder give
identical members: on every header of the real layers (samples, corpus, reference examples),
on tar files written by Python's tarfile in every format, and on generated header blocks —
plain ones, and ones with base-256 numbers, odd padding, bad or signed checksums, extension
typeflags."""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_tarsplit_paths import REAL

from forensics.formats import ustar
from forensics.formats.tarsplit import FILE, iter_entries
from forensics.formats.ustar import BLOCK, HeaderError, Member, plain_member, read_member


def outcome(buf: bytes, offset: int, *, fast: bool) -> tuple[Member, int] | str:
    try:
        return read_member(buf, offset, fast=fast)
    except HeaderError as exc:
        return f"HeaderError: {exc}"


def same_member(buf: bytes, offset: int = 0) -> Member | None:
    """plain_member's reading of the block at ``offset``, held against the full decoder's;
    and read_member's outcome (member or error) the same with and without the fast path."""
    plain = plain_member(buf, offset)
    full = outcome(buf, offset, fast=False)
    if plain is not None:
        assert full == (plain, offset + BLOCK), (buf[offset : offset + BLOCK], plain, full)
    assert outcome(buf, offset, fast=True) == full
    return plain


# -- real layers ----------------------------------------------------------------------------------


def _header_buffers(data: bytes) -> list[tuple[bytes, int]]:
    """What the reassembly hands the header decoder before each file entry: the segment bytes
    since the previous file's data, and the padding they start with."""
    out, pending, pad = [], b"", 0
    for entry in iter_entries(io.BytesIO(data)):
        if entry.type == FILE:
            out.append((pending, pad))
            pending, pad = b"", -entry.size % BLOCK
        else:
            pending += entry.payload or b""
    return out


@pytest.mark.parametrize(("name", "data"), REAL, ids=[name for name, _ in REAL])
def test_every_real_header_reads_alike(name: str, data: bytes) -> None:
    buffers = _header_buffers(data)
    plain = [same_member(buf, pad) for buf, pad in buffers]
    single = [len(buf) - pad == BLOCK for buf, pad in buffers]  # no extension header in front
    # Go's, GNU's and Python's writers use plain octal: every lone header takes the fast path
    assert all(p is not None for p, lone in zip(plain, single, strict=True) if lone), name


def test_real_headers_are_many() -> None:
    assert sum(len(_header_buffers(data)) for _, data in REAL) > 500


# -- tar files of every format ---------------------------------------------------------------------

_TYPES = [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE]


@st.composite
def tar_files(draw: st.DrawFn) -> bytes:
    fmt = draw(st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt, encoding="utf-8") as tar:
        for _ in range(draw(st.integers(1, 4))):
            name = draw(st.text("ab/é.\u2603", min_size=1, max_size=160))
            if fmt == tarfile.USTAR_FORMAT and len(name.encode()) > 99:
                name = name[:40]
            info = tarfile.TarInfo(name)
            info.type = draw(st.sampled_from(_TYPES))
            info.mode = draw(st.integers(0, 0o7777))
            big = fmt != tarfile.USTAR_FORMAT
            info.uid = draw(st.integers(0, 2**40 if big else 0o7777777))
            info.gid = draw(st.integers(0, 0o7777777))
            info.mtime = draw(st.integers(0, 2**35 if big else 0o77777777777))
            info.uname = draw(st.text("rootx", max_size=8))
            info.devmajor = draw(st.integers(0, 255))
            info.devminor = draw(st.integers(0, 255))
            if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = draw(st.text("ab/", min_size=1, max_size=120 if big else 90))
            data = b""
            if info.type == tarfile.REGTYPE:
                data = draw(st.binary(max_size=600))
                info.size = len(data)
            if fmt == tarfile.PAX_FORMAT and draw(st.booleans()):
                info.pax_headers = {"SCHILY.xattr.user.x": "y", "mtime": "1.5"}
            try:
                tar.addfile(info, io.BytesIO(data) if data else None)
            except ValueError:  # a value the format cannot hold
                continue
    return out.getvalue()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(tar_files())
def test_tarfile_written_headers_read_alike(data: bytes) -> None:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    for member in members:
        for offset in range(member.offset, member.offset_data, BLOCK):
            same_member(data, offset)
        base256 = any(data[member.offset + at] & 0x80 for at in _NUMBERS_AT)
        if member.offset_data - member.offset == BLOCK and not base256:  # a plain header
            assert plain_member(data, member.offset) is not None


#: where the numeric fields start (GNU writes base-256 there when octal is too short)
_NUMBERS_AT = (100, 108, 116, 124, 136, 329, 337)


# -- generated header blocks ----------------------------------------------------------------------


def _numeric(width: int) -> st.SearchStrategy[bytes]:
    digits = width - 1
    value = st.integers(0, 8**digits - 1)
    return st.one_of(
        value.map(lambda v: b"%0*o\0" % (digits, v)),  # Go, GNU tar, Python
        value.map(lambda v: b"%0*o \0" % (digits - 1, v % 8 ** (digits - 1))),  # libarchive
        value.map(lambda v: b"%*o \0" % (digits - 1, v % 8 ** (digits - 1))),  # space-padded
        value.map(lambda v: b"%0*o" % (width, v)),  # no terminator
        st.just(b"\0" * width),
        st.just(b" " * width),
        st.integers(0, 2**40).map(lambda v: b"\x80" + v.to_bytes(width - 1, "big")),
        st.just(b"\xff" * width),  # base-256 -1
        st.binary(min_size=width, max_size=width),
        st.lists(st.sampled_from(b"0127 \0+-_ox89"), min_size=width, max_size=width).map(bytes),
    )


def _text(width: int) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=width).map(lambda b: b.ljust(width, b"\0")),
        st.binary(min_size=width, max_size=width),
        st.text("abc/.", max_size=width).map(lambda t: t.encode().ljust(width, b"\0")),
    )


@st.composite
def header_blocks(draw: st.DrawFn) -> bytes:
    block = bytearray(
        draw(_text(100))
        + draw(_numeric(8))
        + draw(_numeric(8))
        + draw(_numeric(8))
        + draw(_numeric(12))
        + draw(_numeric(12))
        + b" " * 8
        + draw(st.sampled_from(b"0\x001234567xgLKSV?")).to_bytes(1, "big")
        + draw(_text(100))
        + draw(st.sampled_from([b"ustar\x0000", b"ustar  \x00", b"\0" * 8, b"ustar\x00  "]))
        + draw(_text(32))
        + draw(_text(32))
        + draw(_numeric(8))
        + draw(_numeric(8))
        + draw(st.one_of(st.just(b"\0" * 155), _text(155)))
        + b"\0" * 12
    )
    assert len(block) == BLOCK
    unsigned = sum(block)
    signed = sum(struct.unpack("512b", bytes(block)))
    chksum = draw(
        st.one_of(
            st.just(b"%06o\0 " % unsigned),  # Go, GNU tar, Python
            st.just(b"%07o\0" % unsigned),
            st.just(b"%06o \0" % unsigned),
            st.just(b"%06o\0 " % (signed & 0o777777)),
            st.just(b"%06o\0 " % ((unsigned + 1) & 0o777777)),
            st.just(b"\x80" + unsigned.to_bytes(7, "big")),
            _numeric(8),
        )
    )
    block[148:156] = chksum
    return bytes(block)


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
@given(header_blocks(), st.integers(0, 3))
def test_generated_headers_read_alike(block: bytes, lead: int) -> None:
    buf = b"\0" * lead * 7 + block + b"\0" * BLOCK
    same_member(buf, lead * 7)


def test_the_fast_path_takes_plain_go_headers() -> None:
    info = tarfile.TarInfo("usr/bin/" + "x" * 60)
    info.size, info.mode, info.uid, info.mtime = 12345, 0o4755, 1000, 1_700_000_000
    block = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    member = same_member(block + b"\0" * BLOCK)
    assert member is not None
    assert (member.name, member.size, member.mode, member.uid, member.mtime) == (
        info.name.encode(),
        12345,
        0o4755,
        1000,
        1_700_000_000.0,
    )
    prefixed = tarfile.TarInfo("p" * 120 + "/name")
    block = prefixed.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    member = same_member(block)
    assert member is not None and member.name == prefixed.name.encode()


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b[:148] + b"\x80" + b"\0" * 7 + b[156:],  # base-256 checksum
        lambda b: b[:124] + b"\x80" + (5).to_bytes(11, "big") + b[136:],  # base-256 size
        lambda b: b[:156] + b"x" + b[157:],  # PAX extension
        lambda b: b[:156] + b"L" + b[157:],  # GNU long name
        lambda b: b[:0] + b"Z" + b[1:],  # checksum no longer matches
        lambda b: b[:100] + b"+000644\0" + b[108:],  # a sign: left to the full decoder
    ],
)
def test_the_fast_path_leaves_unusual_headers(change: Callable[[bytes], bytes]) -> None:
    block = tarfile.TarInfo("a").tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    changed = change(block)
    assert plain_member(changed) is None
    same_member(changed + b"\0" * BLOCK)


def test_checksum_runs_sum_exactly() -> None:
    """adler32's low half is the byte sum only while that stays below 65521."""
    block = b"\xff" * BLOCK
    assert all((end - start) * 255 < 65521 for start, end in ustar._RUNS)
    total = sum(block) - sum(block[148:156])
    assert total == sum(zlib.adler32(block[s:e], 0) & 0xFFFF for s, e in ustar._RUNS)
