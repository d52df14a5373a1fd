"""The two decoders of a tar-split line agree: wherever the fast path (``fast_line``: the lines
as Go's json.Encoder writes them) takes a line, the JSON path (``json_line``) reads the same
single entry from it; and a whole stream decodes to the same entries and the same damage with
the fast path as without it. On the real writers' files, on hand-picked edge cases, and on
generated and mutated lines."""

from __future__ import annotations

import base64
import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
from conftest import CORPUS, LAYOUT_EXAMPLES, SAMPLES
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from forensics.formats import tarsplit
from forensics.formats.tarsplit import (
    FILE,
    SEGMENT,
    Fields,
    TarSplitDamage,
    fast_line,
    iter_fields,
    iter_lines,
    json_line,
)

CRC = base64.b64encode(bytes.fromhex("c2e11aa6b5ad2e92")).decode()


def by_json(line: bytes) -> list[Fields] | tuple[str, str]:
    """The JSON path's reading of one line: its entries, or its damage (kind, detail)."""
    try:
        return list(json_line(line, 1))
    except TarSplitDamage as damage:
        return damage.kind, damage.detail


def agree(line: bytes) -> Fields | None:
    """The fast path's reading of ``line``, checked against the JSON path's."""
    fast = fast_line(line)
    if fast is not None:
        assert by_json(line) == [fast], line
    return fast


def go_string(text: str) -> str:
    """A JSON string as Go's encoder spells it (HTML characters and U+2028/9 escaped)."""
    out = json.dumps(text, ensure_ascii=False)
    for char in "<>&\u2028\u2029":
        out = out.replace(char, f"\\u{ord(char):04x}")
    return out


def go_line(
    kind: int,
    position: int,
    payload: bytes | None = None,
    name: str = "",
    size: int = 0,
    name_raw: bytes = b"",
) -> bytes:
    """An entry as tar-split's Go writer spells it: fixed key order, omitempty on name,
    name_raw and size, never on payload."""
    keys = [f'"type":{kind}']
    if name:
        keys.append(f'"name":{go_string(name)}')
    if name_raw:
        keys.append(f'"name_raw":"{base64.b64encode(name_raw).decode()}"')
    if size:
        keys.append(f'"size":{size}')
    shown = "null" if payload is None else f'"{base64.b64encode(payload).decode()}"'
    keys += [f'"payload":{shown}', f'"position":{position}']
    return ("{" + ",".join(keys) + "}").encode("utf-8", "surrogatepass")


# -- the real writers' files ---------------------------------------------------------------------


def _real_streams() -> list[tuple[str, bytes]]:
    """Every tar-split file of the reference examples, the samples and the corpus."""
    streams = [
        (str(p.relative_to(LAYOUT_EXAMPLES)), p.read_bytes())
        for p in sorted(LAYOUT_EXAMPLES.rglob("*.json.gz"))
    ]
    archives = sorted(SAMPLES.glob("*.tar.*")) + sorted(CORPUS.glob("*.tgz"))
    for archive in archives:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and Path(member.name).name in (
                    "tar-split.json.gz",
                    "tar-data.json.gz",
                ):
                    streams.append(
                        (f"{archive.name}:{member.name}", tar.extractfile(member).read())
                    )
    return [(name, data) for name, data in streams if data[:2] == b"\x1f\x8b"]


REAL = _real_streams()


def test_real_files_are_found() -> None:
    assert len(REAL) >= 20


@pytest.mark.parametrize(("name", "data"), REAL, ids=[name for name, _ in REAL])
def test_every_real_line_reads_alike(name: str, data: bytes) -> None:
    """Every line of a real writer (Go's spelling, v0.9.4's too) takes the fast path."""
    for line in iter_lines(io.BytesIO(data)):
        assert agree(line) is not None, line[:80]


# -- edge cases -----------------------------------------------------------------------------------

EDGE_LINES = [
    # what Go writes
    go_line(SEGMENT, 0, b"x" * 700),
    go_line(SEGMENT, 3, b""),
    go_line(SEGMENT, 4, None),
    go_line(FILE, 1, None, "bin/"),
    go_line(FILE, 3, bytes(8), "bin/hello", 43),
    go_line(FILE, 5, None, "empty-file"),
    go_line(FILE, 6, bytes(8), "etc/caf\u00e9 \u2603 \U0001f600", 1),
    go_line(FILE, 7, None, "caf\ufffd"),  # lossy (an old writer)
    go_line(FILE, 8, bytes(8), "a<b>&c\u2028", 2),  # escaped by Go: the JSON path
    go_line(FILE, 9, bytes(8), 'quote"back\\slash', 2),
    go_line(FILE, 10, bytes(8), "tab\there\nnewline\x01\x7f", 2),
    go_line(FILE, 11, bytes(8), "ignored", 15, name_raw=b"data/\xe4\xff"),
    go_line(FILE, 12, bytes(8), "", 15, name_raw=b"x"),
    go_line(FILE, 13, bytes(8), "", 0),  # no name at all
    go_line(FILE, 14, bytes(8), "zero-size-with-crc"),
    go_line(FILE, 10**18 - 1, bytes(8), "big", 10**18 - 1),
    go_line(FILE, 10**18, bytes(8), "bigger", 10**18),  # 19 digits: the JSON path
    go_line(FILE, 2**63 - 1, bytes(8), "int64-max", 2**63 - 1),
    go_line(FILE, 2**63, bytes(8), "int64-max+1", 2**63),
    go_line(SEGMENT, 2**63, b"x"),
    go_line(FILE, 0, bytes(8), "lone-surrogate-\udcff", 1),
    # the payload of a file: empty, null, short, long, not base64
    b'{"type":1,"name":"a","size":5,"payload":"","position":0}',
    b'{"type":1,"name":"a","size":5,"payload":null,"position":0}',
    b'{"type":1,"name":"a","payload":"","position":0}',
    b'{"type":1,"name":"a","size":3,"payload":"AAA=","position":0}',
    b'{"type":1,"name":"a","payload":"AAA=","position":0}',
    b'{"type":1,"name":"a","size":3,"payload":"AAAAAAAAAAAA","position":0}',
    b'{"type":1,"name":"a","size":3,"payload":"AAAAAAAAAAA","position":0}',
    b'{"type":1,"name":"a","size":3,"payload":"AAAAAAAAAAA=A","position":0}',
    b'{"type":1,"name":"a","size":3,"payload":"AAAA=","position":0}',
    b'{"type":2,"payload":"AAAA=","position":0}',
    b'{"type":2,"payload":"AA==AA==","position":0}',
    b'{"type":2,"payload":"%%%","position":0}',
    b'{"type":2,"payload":"AB==","position":0}',  # non-zero trailing bits: Go takes it
    # numbers: signs, leading zeros, fractions, exponents, sizes, out of range
    b'{"type":2,"payload":"","position":007}',
    b'{"type":2,"payload":"","position":0}',
    b'{"type":2,"payload":"","position":-1}',
    b'{"type":2,"payload":"","position":-0}',
    b'{"type":2,"payload":"","position":1.0}',
    b'{"type":2,"payload":"","position":1e3}',
    b'{"type":2,"payload":"","position":' + b"9" * 30 + b"}",
    b'{"type":2,"payload":"","position":' + b"1" * 5000 + b"}",
    b'{"type":1,"name":"a","size":-1,"payload":null,"position":0}',
    b'{"type":1,"name":"a","size":00,"payload":null,"position":0}',
    b'{"type":1,"name":"a","size":0,"payload":null,"position":0}',
    b'{"type":1,"name":"a","size":1.5,"payload":null,"position":0}',
    b'{"type":1,"name":"a","size":true,"payload":null,"position":0}',
    b'{"type":2,"payload":"","position":NaN}',
    b'{"type":1.0,"payload":"","position":0}',
    b'{"type":3,"payload":"","position":0}',
    b'{"type":true,"payload":"","position":0}',
    # other spellings: key order, extra keys, duplicates, whitespace, several values
    b'{"type":2,"name":"","size":0,"payload":"QUJD","position":0}',  # v0.9.4
    b'{"type":2,"name":"","size":0,"payload":null,"position":0}',
    b'{"type":1,"name":"a/","size":0,"payload":null,"position":2}',
    b'{"position":0,"type":2,"payload":"QUJD"}',
    b'{"type":2,"payload":"QUJD","position":0,"extra":1}',
    b'{"type":2,"payload":"QUJD","extra":"x","position":0}',
    b'{"type":1,"name":"a","extra":"b","size":1,"payload":"' + CRC.encode() + b'","position":0}',
    b'{"type":2,"payload":"QUJD","position":0,"position":1}',
    b'{"type":2,"payload":"QUJD","payload":"REVG","position":0}',
    b'{"type":1,"name":"a","name":"b","payload":null,"position":0}',
    b'{"type":2,"payload":"QUJD","position":0} ',
    b' {"type":2,"payload":"QUJD","position":0}',
    b'{"type":2,"payload":"QUJD","position":0}\r',
    b'{"type":2, "payload":"QUJD","position":0}',
    b'{"type":2,"payload":"QUJD","position":0}{"type":2,"payload":"REVG","position":1}',
    b'{"type":2,"payload":"QUJD","position":0} {"type":2,"payload":"","position":1}',
    b'{"type":1,"name":"a","payload":null,"position":0}{"type":1,"name":"b","payload":null,'
    b'"position":1}',
    b'{"type":2,"payload":"QUJD","position":0}{"type":2,"payload":"%","position":1}',
    # damage
    b'{"type":2,"payload":"QUJD","position":0',
    b'{"type":2,"payload":"QUJD","posi',
    b'{"type":2,"payload":"QU',
    b'{"type":1,"name":"a',
    b'{"type":1,"name":"a\xff","payload":null,"position":0}',
    b'{"type":1,"name":"a\xed\xa0\x80","payload":null,"position":0}',  # UTF-8 surrogate
    b'{"type":1,"name":"\\u0000nul","payload":null,"position":0}',
    b'{"type":1,"name":"a\x00b","payload":null,"position":0}',
    b'{"type":1,"name":5,"payload":null,"position":0}',
    b'{"type":1,"name":null,"payload":null,"position":0}',
    b'{"type":1,"name_raw":"%%","payload":null,"position":0}',
    b'{"type":1,"name_raw":5,"payload":null,"position":0}',
    b'{"type":2,"payload":5,"position":0}',
    b'{"type":2,"payload":"","position":"0"}',
    b"[1,2]",
    b"null",
    b"[" * 20000,
    b"{}",
    b'{"type":2,"payload":"","position":0}}',
    b'{"type":2,"payload":"","position":0}]',
    b'{"type":2,"payload":"","position":0}x',
]


@pytest.mark.parametrize("line", EDGE_LINES)
def test_edge_cases_read_alike(line: bytes) -> None:
    agree(line)


def test_the_fast_path_takes_what_go_writes() -> None:
    assert agree(go_line(SEGMENT, 7, b"\0" * 1024)) == (SEGMENT, 7, b"\0" * 1024, None, 0, False)
    assert agree(go_line(SEGMENT, 8, None)) == (SEGMENT, 8, b"", None, 0, False)
    assert agree(go_line(FILE, 3, bytes(8), "bin/hello", 43)) == (
        FILE,
        3,
        bytes(8),
        b"bin/hello",
        43,
        False,
    )
    assert agree(go_line(FILE, 1, None, "bin/")) == (FILE, 1, None, b"bin/", 0, False)
    lossy = agree(go_line(FILE, 7, None, "caf\ufffd"))
    assert lossy == (FILE, 7, None, "caf\ufffd".encode(), 0, True)
    v094 = b'{"type":2,"name":"","size":0,"payload":"QUJD","position":0}'
    assert agree(v094) == (SEGMENT, 0, b"ABC", None, 0, False)


@pytest.mark.parametrize(
    "line",
    [
        b'{"type":2,"payload":"","position":007}',  # invalid JSON
        b'{"type":1,"name":"a","size":3,"payload":"AAAA=","position":0}',
        b'{"type":2,"payload":"QUJD","position":0}{"type":2,"payload":"REVG","position":1}',
        go_line(FILE, 8, bytes(8), "a<b", 2),  # escaped
        go_line(FILE, 9, bytes(8), "x", 10**18),
        b'{"type":1,"name":"a\x7f\x01","payload":null,"position":0}',
    ],
)
def test_the_fast_path_leaves_unusual_lines_to_the_json_path(line: bytes) -> None:
    assert fast_line(line) is None


def test_an_empty_file_payload_is_no_crc64_like_null() -> None:
    """Go decodes "" and null alike (then the file fails its check): not stream damage."""
    empty = b'{"type":1,"name":"a","size":5,"payload":"","position":0}'
    null = b'{"type":1,"name":"a","size":5,"payload":null,"position":0}'
    assert by_json(empty) == by_json(null) == [(FILE, 0, None, b"a", 5, False)]


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (b'{"type":2,"payload":"","position":007}', "bad-json"),
        (b'{"type":2,"payload":"","position":' + b"1" * 5000 + b"}", "bad-json"),
        (b"[" * 20000, "bad-json"),
        (b'{"type":2,"payload":"","position":NaN}', "bad-json"),
        (b'{"type":2,"payload":"AAAA=","position":0}', "bad-entry"),
        (b'{"type":2,"payload":"","position":' + b"9" * 30 + b"}", "bad-entry"),
        (go_line(FILE, 0, bytes(8), "x", 2**63), "bad-entry"),
    ],
)
def test_what_go_refuses_is_damage_not_a_traceback(line: bytes, kind: str) -> None:
    result = by_json(line)
    assert isinstance(result, tuple) and result[0] == kind, result


def test_int64_bounds() -> None:
    assert by_json(go_line(FILE, 2**63 - 1, bytes(8), "x", 2**63 - 1)) == [
        (FILE, 2**63 - 1, bytes(8), b"x", 2**63 - 1, False)
    ]
    assert by_json(b'{"type":2,"payload":"","position":-9223372036854775808}') == [
        (SEGMENT, -(2**63), b"", None, 0, False)
    ]
    assert by_json(b'{"type":2,"payload":"","position":-9223372036854775809}')[0] == "bad-entry"


def test_whitespace_around_values_as_go_reads_it() -> None:
    line = b' \t{"type":2,"payload":"","position":0}  {"type":2,"payload":"","position":1}\r'
    assert [f[1] for f in by_json(line)] == [0, 1]


# -- generated lines ----------------------------------------------------------------------------

names = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from('"\\\n\x00\ufffd<&'),
    max_size=30,
)
numbers = st.one_of(
    st.integers(0, 300),
    st.integers(-(2**64), 2**64),
    st.sampled_from([10**18 - 1, 10**18, 2**63 - 1, 2**63, -1, -(2**63), -(2**63) - 1]),
)
payloads = st.one_of(st.none(), st.binary(max_size=12), st.just(bytes(8)))


@st.composite
def go_lines(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from([FILE, SEGMENT, 3]))
    return go_line(
        kind,
        draw(numbers),
        draw(payloads),
        draw(names) if kind == FILE else "",
        draw(numbers) if kind == FILE else 0,
        draw(st.binary(max_size=6)) if kind == FILE and draw(st.booleans()) else b"",
    )


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(go_lines())
def test_generated_lines_read_alike(line: bytes) -> None:
    agree(line)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A line of Go's spelling with a few bytes replaced, inserted or removed."""
    line = bytearray(draw(go_lines()))
    alphabet = b'{}[]",:0123456789-+.eE AQ=/\\nul\x00\xff'
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(line)))
        what = draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = draw(st.sampled_from(alphabet))
        if what == "insert":
            line.insert(at, byte)
        elif at < len(line):
            if what == "replace":
                line[at] = byte
            else:
                del line[at]
    return bytes(line)


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
@example(b'{"type":2,"payload":"AAAA","position":01}')
@example(b'{"type":1,"name":"a","size":01,"payload":null,"position":1}')
def test_mutated_lines_read_alike(line: bytes) -> None:
    agree(line)


# -- whole streams: with and without the fast path -----------------------------------------------


def decode_stream(data: bytes) -> tuple[list[Fields], tuple[str, str, int, int] | None]:
    got: list[Fields] = []
    try:
        for fields in iter_fields(io.BytesIO(data)):
            got.append(fields)
    except TarSplitDamage as damage:
        return got, (damage.kind, damage.detail, damage.entries, damage.line)
    return got, None


def json_only(data: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Fields], object]:
    with monkeypatch.context() as patch:
        patch.setattr(tarsplit, "fast_line", lambda line: None)
        return decode_stream(data)


@pytest.mark.parametrize(("name", "data"), REAL[:12], ids=[name for name, _ in REAL[:12]])
def test_real_streams_decode_alike_without_the_fast_path(
    name: str, data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert decode_stream(data) == json_only(data, monkeypatch)


def test_edge_case_streams_decode_alike_without_the_fast_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for line in EDGE_LINES:
        data = gzip.compress(b"\n" + go_line(SEGMENT, 0, b"x") + b"\n\n" + line + b"\n")
        assert decode_stream(data) == json_only(data, monkeypatch), line


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # keys match tar-split's field names case-insensitively, as in Go; the last one wins
        (b'{"TYPE":2,"Payload":"YWJj","POSITION":3}', (SEGMENT, 3, b"abc", None, 0, False)),
        (b'{"type":1,"name":"a","size":1,"SIZE":5,"position":0}', (FILE, 0, None, b"a", 5, False)),
        # Go's folding equals U+017F (long s) to "s"; U+0130 (dotted I) to nothing ASCII
        (
            '{"type":1,"name":"a","\u017fize":5,"po\u0130tion":9,"position":1}'.encode(),
            (FILE, 1, None, b"a", 5, False),
        ),
        # null leaves a number or a string as it was, and sets a byte slice to nil
        (
            b'{"type":1,"name":"a","size":5,"size":null,"name":null,"position":null}',
            (FILE, 0, None, b"a", 5, False),
        ),
        (
            b'{"type":2,"payload":"YWJj","payload":null,"position":0}',
            (SEGMENT, 0, b"", None, 0, False),
        ),
        # other keys are ignored
        (
            b'{"type":2,"payload":"YWJj","extra":[1,{"x":2}],"position":0}',
            (SEGMENT, 0, b"abc", None, 0, False),
        ),
        # base64 with line breaks anywhere, even in the padding (Go's decoder skips CR and LF)
        (b'{"type":2,"payload":"YW\\nJj","position":0}', (SEGMENT, 0, b"abc", None, 0, False)),
        (b'{"type":2,"payload":"YWI\\r\\n=","position":0}', (SEGMENT, 0, b"ab", None, 0, False)),
        # bytes that are not UTF-8 inside a string: one U+FFFD each, a lossy name
        (
            b'{"type":1,"name":"a\xe2\x82b","position":0}',
            (FILE, 0, None, "a\ufffd\ufffdb".encode(), 0, True),
        ),
    ],
)
def test_the_json_path_reads_what_go_reads(line: bytes, expected: Fields) -> None:
    assert by_json(line) == [expected]


def test_a_byte_that_is_not_utf8_outside_strings_is_damage() -> None:
    assert by_json(b'{"type":2,\xff"payload":"","position":0}')[0] == "bad-json"
