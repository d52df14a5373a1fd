"""tar-split decoding, crc64 and the ustar header: on the reference Go writer's files and on
damage derived from them."""

from __future__ import annotations

import base64
import gzip
import io
import json
import struct
import tarfile
import zlib
from dataclasses import astuple
from pathlib import Path

import pytest
from conftest import LAYOUT_EXAMPLES

from forensics.formats import ustar
from forensics.formats.crc64 import CHECK_VALUE, Crc64, crc64_iso, to_bytes
from forensics.formats.tarsplit import (
    FILE,
    FREE_MEMBERS,
    NO_SIZE,
    SEGMENT,
    Limits,
    TarSplitDamage,
    iter_entries,
)

MODERN = LAYOUT_EXAMPLES / "modern_28.x_overlay2/image/overlay2/layerdb/sha256"
BASE = MODERN / "85a9aa0b50367c436af24d88c410f963fb63e0665f55b40f2e981d5f9f339cf1"
SECOND = MODERN / "d6372967f65de8ab397a1f9f46a8cd3bd3f187174ad6b96acf29c0f123b62cf0"
LEGACY_EMPTY = (
    LAYOUT_EXAMPLES
    / "legacy_1.9.1_aufs/graph/517b4472cd16065f63aa7377036abcefd93ffc5e115bf75c3592ad21c141cd85"
)


def entries_of(data: bytes) -> list:
    return list(iter_entries(io.BytesIO(data)))


def gz(lines: list[str]) -> bytes:
    return gzip.compress("".join(line + "\n" for line in lines).encode())


def damage_of(data: bytes) -> tuple[TarSplitDamage, int]:
    got = []
    with pytest.raises(TarSplitDamage) as info:
        for entry in iter_entries(io.BytesIO(data)):
            got.append(entry)
    assert info.value.entries == len(got)
    return info.value, len(got)


# -- crc64 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "digest"),
    [
        (b"123456789", CHECK_VALUE.to_bytes(8, "big")),
        (b"imma hurr til I derp", bytes([2, 116, 164, 177, 171, 236, 107, 78])),
        ("café con leche, por favor".encode(), bytes([126, 72, 89, 239, 230, 252, 160, 187])),
        (b"", bytes(8)),
    ],
)
def test_crc64_go_iso_vectors(data: bytes, digest: bytes) -> None:
    assert to_bytes(crc64_iso(data)) == digest
    assert Crc64(data).digest() == digest


def test_crc64_chains_over_chunks() -> None:
    data = bytes(range(256)) * 1000
    crc = Crc64()
    for i in range(0, len(data), 4093):
        crc.update(memoryview(data)[i : i + 4093])
    assert crc.value == crc64_iso(data)
    assert crc.hexdigest() == f"{crc64_iso(data):016x}"


def test_crc64_matches_the_example_payload() -> None:
    """tar-split.md §2: the 43-byte bin/hello of the base layer has crc64 c2e11aa6b5ad2e92."""
    hello = b'#!/bin/sh\necho "hello from the base layer"\n'
    assert len(hello) == 43
    assert crc64_iso(hello) == 0xC2E11AA6B5AD2E92


# -- decoding the reference files ----------------------------------------------------------------


def test_decodes_the_modern_example() -> None:
    entries = entries_of((SECOND / "tar-split.json.gz").read_bytes())
    assert [e.position for e in entries] == list(range(len(entries)))
    files = [e for e in entries if e.type == FILE]
    assert [f.name for f in files] == [
        b"app/",
        b"app/run.sh",
        b"app/run-link.sh",
        b"app/a-file-name-that-is-longer-than-one-hundred-bytes-so-the-tar-writer-needs-a-pax-"
        b"path-record-xxxxxxxxxxxx.txt",
        b"etc/",
        b"etc/.wh.motd",
    ]
    assert sum(f.size for f in files) == 86
    assert all((f.payload is None) == (f.size == 0) for f in files)
    segments = b"".join(e.payload for e in entries if e.type == SEGMENT)
    assert len(segments) + 86 == 10240
    assert entries[-1].type == SEGMENT  # Go v0.12.1: no empty trailing segment
    assert entries[-1].payload


def test_decodes_the_legacy_trailing_empty_segment() -> None:
    entries = entries_of((LEGACY_EMPTY / "tar-data.json.gz").read_bytes())
    assert entries[-1].type == SEGMENT and entries[-1].payload == b""
    assert not [e for e in entries if e.type == FILE]
    assert sum(len(e.payload or b"") for e in entries) == 1024


def test_payload_of_file_entry_is_crc64_big_endian() -> None:
    (hello,) = [e for e in entries_of((BASE / "tar-split.json.gz").read_bytes()) if e.size == 43]
    assert hello.name == b"bin/hello"
    assert hello.payload == bytes.fromhex("c2e11aa6b5ad2e92")


# -- quirks of older writers ----------------------------------------------------------------------


def test_v094_quirks_name_and_size_on_every_entry_and_null_segments() -> None:
    seg = base64.b64encode(b"x" * 10).decode()
    data = gz(
        [
            f'{{"type":2,"name":"","size":0,"payload":"{seg}","position":0}}',
            '{"type":2,"name":"","size":0,"payload":null,"position":1}',
            '{"type":1,"name":"a/","size":0,"payload":null,"position":2}',
            '{"type":2,"name":"","size":0,"payload":"","position":3}',
        ]
    )
    entries = entries_of(data)
    assert [e.type for e in entries] == [SEGMENT, SEGMENT, FILE, SEGMENT]
    assert [e.payload for e in entries] == [b"x" * 10, b"", None, b""]
    assert entries[2].name == b"a/"


def test_name_raw_wins_over_name() -> None:
    raw = "data/file-with-german-umlaut-ae-ä".encode("latin-1")
    line = {"type": 1, "name": "ignored", "name_raw": base64.b64encode(raw).decode()}
    line |= {"size": 15, "payload": base64.b64encode(bytes(8)).decode(), "position": 0}
    (entry,) = entries_of(gz([json.dumps(line)]))
    assert entry.name == raw and not entry.lossy_name


def test_lossy_name_is_flagged() -> None:
    (entry,) = entries_of(gz(['{"type":1,"name":"caf\\ufffd","payload":null,"position":0}']))
    assert entry.lossy_name and entry.name == "caf\ufffd".encode()


def test_blank_lines_several_values_per_line_and_no_final_newline() -> None:
    text = (
        '\n{"type":2,"payload":"","position":0} {"type":2,"payload":"","position":1}\n\n'
        '{"type":2,"payload":"","position":2}'
    )
    assert [e.position for e in entries_of(gzip.compress(text.encode()))] == [0, 1, 2]


def test_concatenated_gzip_members() -> None:
    one = gz(['{"type":2,"payload":"","position":0}'])
    two = gz(['{"type":2,"payload":"","position":1}'])
    assert len(entries_of(one + two)) == 2


# -- damage -------------------------------------------------------------------------------------


def test_truncated_gzip_reports_entries_reached() -> None:
    data = (SECOND / "tar-split.json.gz").read_bytes()
    total = len(entries_of(data))
    damage, got = damage_of(data[: len(data) // 2])
    assert damage.kind == "truncated" and 0 < got < total
    damage, got = damage_of(data[:-3])  # the trailer cut: every entry decoded, still damage
    assert damage.kind == "truncated" and got == total


def test_corrupt_gzip() -> None:
    data = bytearray((SECOND / "tar-split.json.gz").read_bytes())
    data[-6] ^= 0xFF  # inside the CRC32 trailer
    damage, _ = damage_of(bytes(data))
    assert damage.kind == "corrupt-gzip"


def test_corrupt_deflate_data() -> None:
    raw = zlib.compressobj(9, zlib.DEFLATED, 31)
    data = bytearray(raw.compress(b'{"type":2,"payload":"","position":0}\n' * 50) + raw.flush())
    data[20] ^= 0xFF
    damage, _ = damage_of(bytes(data))
    assert damage.kind in ("corrupt-gzip", "bad-json")


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", "empty"),
        (b'{"type":2}\n', "not-gzip"),
        (gzip.compress(b"not json\n"), "bad-json"),
        (gzip.compress(b'{"type":2,"size":"3","position":0}\n'), "bad-entry"),  # any field
        (gzip.compress(b'{"type":2,"name_raw":0,"position":0}\n'), "bad-entry"),
        (gzip.compress(b'{"type":' + b"9" * 20 + b',"position":0}\n'), "bad-entry"),
        (gzip.compress(b'{"type":"1","position":0}\n'), "bad-entry"),
        (gzip.compress(b'{"type":2,"payload":"%%%","position":0}\n'), "bad-entry"),
        (gzip.compress(b'{"type":1,"name":"a","size":-1,"position":0}\n'), "bad-entry"),
        (
            gzip.compress(b'{"type":1,"name":"a","size":3,"payload":"AAA=","position":0}\n'),
            "bad-entry",
        ),
        (gzip.compress(b"[1, 2]\n"), "bad-entry"),
        (gzip.compress(b'{"type":2,"payload":"QQ==","posi'), "truncated"),
    ],
)
def test_damage_kinds(data: bytes, kind: str) -> None:
    damage, _ = damage_of(data)
    assert damage.kind == kind, damage
    assert str(damage)


def test_an_entry_of_another_type_is_read_for_the_reassembly_to_skip() -> None:
    """tar-split's reassembly ignores entry types it does not know (a missing type is 0)."""
    data = gzip.compress(b'{"type":3,"payload":"QQ==","position":0}\n{"position":1}\n')
    entries = list(iter_entries(io.BytesIO(data)))
    assert [(e.type, e.position, e.payload) for e in entries] == [(3, 0, b"A"), (0, 1, b"")]


def test_damage_names_the_line() -> None:
    data = gz(['{"type":2,"payload":"","position":0}', "{oops", '{"type":2,"position":2}'])
    damage, got = damage_of(data)
    assert (damage.kind, damage.line, got) == ("bad-json", 2, 1)


# -- bounds: what a layer of its recorded size can need ----------------------------------------


def test_limits_follow_from_the_recorded_size_and_the_listing() -> None:
    free = Limits.for_layer(0)
    assert free.lines == 2 * FREE_MEMBERS + 2
    assert "0 bytes recorded" in free.reason and f"{FREE_MEMBERS:,} tar members" in free.reason
    big = Limits.for_layer(512 * 1000, listed=7)
    assert big.lines == 2 * (1000 + FREE_MEMBERS + 14) + 2
    assert big.json_bytes > 2 * 512 * 1000 and "7 entries on disk" in big.reason
    for unknown in (None, -1):
        cap = Limits.for_layer(unknown)
        assert (cap.lines, cap.json_bytes) == astuple(Limits.for_layer(NO_SIZE))[:2]
        assert cap.reason.startswith(f"a layer of no size recorded: taken as {NO_SIZE:,} bytes")


def test_the_examples_decode_within_the_bounds_of_their_recorded_size() -> None:
    for layer in (BASE, SECOND):
        data = (layer / "tar-split.json.gz").read_bytes()
        limits = Limits.for_layer(int((layer / "size").read_text()))
        assert list(iter_entries(io.BytesIO(data), limits)) == entries_of(data)
        exact = Limits(len(entries_of(data)), len(gzip.decompress(data)), "exactly this")
        assert list(iter_entries(io.BytesIO(data), exact)) == entries_of(data)


def damage_within(data: bytes, limits: Limits) -> tuple[TarSplitDamage, int]:
    got = []
    with pytest.raises(TarSplitDamage) as info:
        for entry in iter_entries(io.BytesIO(data), limits):
            got.append(entry)
    assert info.value.entries == len(got)
    return info.value, len(got)


SEGMENT_LINE = '{"type":2,"payload":"","position":0}'


def test_blank_lines_count_as_lines() -> None:
    limits = Limits(lines=10, json_bytes=1 << 20, reason="ten lines")
    assert len(list(iter_entries(io.BytesIO(gz([SEGMENT_LINE] * 10)), limits))) == 10
    damage, got = damage_within(gz([SEGMENT_LINE] * 2 + [""] * 9), limits)
    assert damage.kind == "too-large" and "more than 10 lines: ten lines" in str(damage)
    assert got == 0  # the chunk over the bound is not decoded


def test_several_values_on_a_line_count_as_lines() -> None:
    limits = Limits(lines=3, json_bytes=1 << 20, reason="three")
    damage, got = damage_within(gz([" ".join([SEGMENT_LINE] * 5)]), limits)
    assert damage.kind == "too-large" and got == 5  # known once the line is read


def test_inflated_bytes_are_bounded_whitespace_included() -> None:
    limits = Limits(lines=1000, json_bytes=4096, reason="4 KiB")
    damage, _ = damage_within(gzip.compress(b" " * 8192 + b"\n"), limits)
    assert damage.kind == "too-large" and "more than 4,096 bytes of JSON" in str(damage)


def test_filler_on_a_line_is_damage_beyond_its_values() -> None:
    """Go ignores unknown keys and whitespace, so they could pad a line to any length; a line
    may be a few times what its payload and name take as JSON, no more."""
    limits = Limits(lines=1000, json_bytes=1 << 30, reason="")
    padded = '{"type":2,"payload":"QUFB","position":0,"pad":"' + "x" * 10_000 + '"}'
    damage, got = damage_within(gz([padded]), limits)
    assert damage.kind == "too-large" and damage.line == 1 and got == 1
    assert "filler" in str(damage)
    spaced = '{"type": 2, "payload": "QUFB", "position": 0}'  # Go-readable, not verbatim
    assert len(list(iter_entries(io.BytesIO(gz([spaced])), limits))) == 1


# -- ustar headers ------------------------------------------------------------------------------


def test_header_declaration_is_512_bytes_and_struct_agrees_with_construct() -> None:
    assert ustar.HEADER.sizeof() == 512
    block = _segments(SECOND)[0][:512]
    parsed = ustar.HEADER.parse(block)
    raw = ustar.decode_header(block)
    assert parsed.name.rstrip(b"\0") == raw.name == b"app/"
    assert int(parsed.mode.strip(b"\0 "), 8) == raw.mode == 0o755


def _segments(layer: Path) -> list[bytes]:
    return [
        e.payload
        for e in entries_of((layer / "tar-split.json.gz").read_bytes())
        if e.payload and e.type == SEGMENT
    ]


def _headers_in_examples() -> list[bytes]:
    """Every header block in the example streams (the stream rebuilt with zero-filled data)."""
    blocks = []
    for layer in (BASE, SECOND):
        stream = bytearray()
        for e in entries_of((layer / "tar-split.json.gz").read_bytes()):
            stream += e.payload if e.type == SEGMENT else bytes(e.size)
        with tarfile.open(fileobj=io.BytesIO(bytes(stream))) as tar:
            for m in tar.getmembers():
                blocks.append(bytes(stream[m.offset : m.offset + 512]))
    return blocks


def test_every_example_header_checksum_verifies() -> None:
    blocks = _headers_in_examples()
    assert len(blocks) >= 12
    for block in blocks:
        assert ustar.checksum_ok(block)
        broken = bytearray(block)
        broken[0] ^= 1
        assert not ustar.checksum_ok(bytes(broken))
        with pytest.raises(ustar.HeaderError):
            ustar.decode_header(bytes(broken))


def test_pax_path_record_resolves_the_long_name() -> None:
    data = _rebuilt(SECOND)
    names = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            member, end = ustar.read_member(data, m.offset)
            names.append(member.name)
            assert end == m.offset_data
            assert member.size == m.size
    assert any(len(n) > 100 for n in names)
    assert b"app/run-link.sh" in names


def _rebuilt(layer: Path) -> bytes:
    out = bytearray()
    for e in entries_of((layer / "tar-split.json.gz").read_bytes()):
        out += e.payload if e.type == SEGMENT else bytes(e.size)
    return bytes(out)


def test_hardlink_member_keeps_its_target() -> None:
    data = _rebuilt(SECOND)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        (link,) = [m for m in tar.getmembers() if m.islnk()]
    member, _ = ustar.read_member(data, link.offset)
    assert (member.type, member.linkname, member.size) == ("hardlink", b"app/run.sh", 0)


def _tar(fmt: int, *infos: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for info, data in infos:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


def test_gnu_long_name_and_long_link() -> None:
    name = "d/" + "n" * 150
    target = "t/" + "l" * 150
    f = tarfile.TarInfo(name)
    f.size = 3
    link = tarfile.TarInfo("short")
    link.type, link.linkname = tarfile.SYMTYPE, target
    data = _tar(tarfile.GNU_FORMAT, (f, b"abc"), (link, b""))
    member, end = ustar.read_member(data, 0)
    assert member.name == name.encode() and member.size == 3
    assert data[end : end + 3] == b"abc"
    member2, _ = ustar.read_member(data, end + 512)
    assert (member2.name, member2.linkname, member2.type) == (b"short", target.encode(), "symlink")


def test_pax_records_override_and_carry_xattrs() -> None:
    info = tarfile.TarInfo("p" * 120)
    info.size = 2
    info.uid = 3_000_000_000  # too big for octal: goes into a PAX record
    info.pax_headers = {"SCHILY.xattr.security.capability": "cap"}
    data = _tar(tarfile.PAX_FORMAT, (info, b"hi"))
    member, _ = ustar.read_member(data, 0)
    assert member.name == b"p" * 120 and member.uid == 3_000_000_000
    assert member.xattrs == {"security.capability": b"cap"}


def test_base256_and_signed_checksum() -> None:
    assert ustar.parse_number(b"\x80" + (8).to_bytes(11, "big")) == 8
    assert ustar.parse_number(b"0000644\0") == 0o644
    assert ustar.parse_number(b"   644 \0") == 0o644
    assert ustar.parse_number(b"\0" * 8) == 0
    with pytest.raises(ustar.HeaderError):
        ustar.parse_number(b"09\0")
    # an old writer summing signed bytes: a name with a high byte
    info = tarfile.TarInfo("caf\xe9")
    block = bytearray(info.tobuf(tarfile.USTAR_FORMAT, "latin-1"))[:512]
    block[148:156] = b" " * 8
    signed = sum(struct.unpack("512b", bytes(block)))
    block[148:156] = b"%06o\0 " % signed
    assert ustar.checksum_ok(bytes(block))


def test_header_errors() -> None:
    with pytest.raises(ustar.HeaderError, match="cut short"):
        ustar.decode_header(b"\0" * 100)
    with pytest.raises(ustar.HeaderError, match="zero block"):
        ustar.decode_header(b"\0" * 512)
    with pytest.raises(ustar.HeaderError):
        ustar.parse_pax(b"9 path=ab\n")
    with pytest.raises(ustar.HeaderError):
        ustar.parse_pax(b"x path=a\n")
    assert ustar.parse_pax(b"11 path=ab\n") == {"path": b"ab"}
