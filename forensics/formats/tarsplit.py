"""Decoding of tar-split metadata (``tar-split.json.gz``, legacy ``tar-data.json.gz``).

A gzip stream of JSON objects, one per line (Go ``json.Encoder``), each a *segment* (raw tar
bytes: headers, padding, end blocks) or a *file* entry (name, size, crc64 of the data). See
``shared/reference/tar-split.md`` §2–3. Decoding is streaming: the gzip is inflated in bounded
chunks and entries are yielded one by one, so a layer of a million files is never held whole.

Quirks of older writers that are accepted:

* tar-split v0.9.4 (Docker 1.8.0–1.8.2) wrote ``"name":""`` and ``"size":0`` on every entry,
  segments included, and empty segments (``"payload":""`` or ``null``);
* ≤ v0.10.1 (and, on real data, Docker 20.10's build too) end with an empty segment;
* names that are not UTF-8 are in ``name_raw`` (base64 of the raw bytes, tar-split ≥ v0.9.10);
  older writers replaced the bad bytes with U+FFFD (``Entry.lossy_name``);
* several JSON values on one line, and blank lines (Go's decoder reads a stream of values).

Damage is raised as :class:`TarSplitDamage` *after* every entry before it was yielded, with the
count reached, so a caller can report how far a truncated file goes.
"""

from __future__ import annotations

import binascii
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

__all__ = [
    "FILE",
    "SEGMENT",
    "Entry",
    "TarSplitDamage",
    "decode_entry",
    "iter_entries",
    "iter_lines",
]

FILE = 1
SEGMENT = 2

#: compressed bytes read at a time
_READ = 256 * 1024
#: inflated bytes produced at a time (bounds memory against a gzip bomb)
_INFLATE = 1024 * 1024
#: no tar-split line is longer: a segment of trailing bytes is cut at 1 MiB (base64: 1.4 MiB);
#: a PAX header with big xattrs is the largest legitimate case
MAX_LINE = 64 * 1024 * 1024


@dataclass(slots=True)
class Entry:
    """One tar-split entry.

    ``payload``: for a segment the raw tar bytes (``b""`` when empty or null); for a file the
    8-byte big-endian crc64 of its data, or None (size 0). ``name`` (file entries only) is the raw
    name: ``name_raw`` decoded when present, else ``name`` encoded as UTF-8.
    """

    type: int
    position: int
    payload: bytes | None
    name: bytes | None = None
    size: int = 0
    lossy_name: bool = False  # the name holds U+FFFD: an old writer may have replaced bytes


@dataclass(frozen=True)
class TarSplitDamage(Exception):
    """Why a tar-split stream cannot be decoded (further).

    ``kind``: ``empty``, ``not-gzip``, ``corrupt-gzip`` (bad deflate data or trailer CRC),
    ``truncated`` (the gzip or the last line ends early), ``bad-json``, ``bad-entry`` (a value
    of the wrong type, bad base64, …), ``unknown-type``, ``line-too-long``.
    ``entries`` counts the entries decoded before it; ``line`` is the 1-based line at fault.
    """

    kind: str
    detail: str
    entries: int = 0
    line: int = 0

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.detail} (after {self.entries} entries)"


def iter_entries(stream: BinaryIO) -> Iterator[Entry]:
    """The entries of the gzip-compressed tar-split ``stream``, in order.

    Raises :class:`TarSplitDamage` where the stream stops being decodable.
    """
    count = 0
    lineno = 0
    decode = json.JSONDecoder().raw_decode
    segment, file = _SEGMENT_LINE.fullmatch, _FILE_LINE.fullmatch
    try:
        for lineno, line in enumerate(iter_lines(stream), 1):
            kind = line[8:9]
            fast = segment(line) if kind == b"2" else file(line) if kind == b"1" else None
            if fast is not None:
                yield _fast_entry(fast, lineno)
                count += 1
                continue
            for obj in _values(line, decode, lineno, count):
                yield decode_entry(obj, lineno)
                count += 1
    except TarSplitDamage as exc:
        raise TarSplitDamage(exc.kind, exc.detail, count, exc.line or lineno + 1) from None


def iter_lines(stream: BinaryIO) -> Iterator[bytes]:
    """The non-blank lines of the gzip ``stream`` (all gzip members), without the newline."""
    pending = b""
    for chunk in _inflate(stream):
        pending += chunk
        if b"\n" not in chunk:
            if len(pending) > MAX_LINE:
                raise TarSplitDamage("line-too-long", f"a line longer than {MAX_LINE} bytes")
            continue
        lines = pending.split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line.strip():
                yield line
    if pending.strip():
        yield pending  # the last line need not end in a newline


def _inflate(stream: BinaryIO) -> Iterator[bytes]:
    """Inflated bytes of every gzip member in ``stream``; damage raised as TarSplitDamage."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    member_open = False  # bytes of a member were fed and its end was not reached yet
    total_in = 0
    while data := stream.read(_READ):
        if not total_in and data[:2] != b"\x1f\x8b":
            raise TarSplitDamage("not-gzip", "not a gzip stream (no gzip magic)")
        total_in += len(data)
        while data:
            member_open = True
            try:
                out = inflater.decompress(data, _INFLATE)
            except zlib.error as exc:
                raise TarSplitDamage("corrupt-gzip", f"corrupt gzip data: {exc}") from None
            if out:
                yield out
            if not inflater.eof:
                data = inflater.unconsumed_tail
                continue
            member_open = False
            data = inflater.unused_data.lstrip(b"\x00")  # a next member (NUL padding allowed)
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            if data and data[:2] != b"\x1f\x8b":
                raise TarSplitDamage("corrupt-gzip", "garbage after the end of the gzip data")
    if not total_in:
        raise TarSplitDamage("empty", "empty file (no gzip data)")
    if member_open:
        raise TarSplitDamage(
            "truncated", f"the gzip stream ends early (after {total_in} compressed bytes)"
        )


#: the lines Go's encoder writes, matched without the JSON decoder (the common case); any other
#: spelling (escapes in names, other key order, v0.9.4's extra keys) takes the JSON path
_SEGMENT_LINE = re.compile(
    rb'\{"type":2,"payload":(?:"([A-Za-z0-9+/=]*)"|null),"position":(\d+)\}\s*'
)
_FILE_LINE = re.compile(
    rb'\{"type":1,"name":"([^"\\\x00-\x1f]*)",(?:"size":(\d+),)?'
    rb'"payload":(?:"([^"\\]*)"|null),"position":(\d+)\}\s*'
)


def _fast_entry(found: re.Match[bytes], line: int) -> Entry:
    groups = found.groups()
    if len(groups) == 2:
        payload = _b64_bytes(groups[0], line) if groups[0] else b""
        return Entry(SEGMENT, int(groups[1]), payload)
    name, size, payload, position = groups
    crc = _b64_bytes(payload, line) if payload else None
    nbytes = int(size) if size else 0
    if crc is not None and len(crc) != 8 and (nbytes or crc):
        raise _bad(f"crc64 payload of {len(crc)} bytes, not 8", line)
    try:
        lossy = b"\xef\xbf\xbd" in name  # U+FFFD
        name.decode("utf-8")
    except UnicodeDecodeError:
        raise TarSplitDamage("bad-json", "not UTF-8", 0, line) from None
    return Entry(FILE, int(position), crc or None, name, nbytes, lossy)


def _b64_bytes(value: bytes, line: int) -> bytes:
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad(f"payload is not valid base64 ({exc})", line) from None


def _values(line: bytes, decode: Any, lineno: int, count: int) -> Iterator[Any]:
    """The JSON values on one line: normally one; several are accepted (Go stream semantics)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TarSplitDamage("bad-json", f"not UTF-8 at byte {exc.start}", count, lineno) from None
    pos = 0
    end = len(text)
    while pos < end:
        try:
            obj, pos = decode(text, pos)
        except json.JSONDecodeError as exc:
            cut = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
            kind = "truncated" if cut else "bad-json"
            raise TarSplitDamage(kind, f"invalid JSON: {exc.msg}", count, lineno) from None
        yield obj
        while pos < end and text[pos] in " \t\r":
            pos += 1


def decode_entry(obj: Any, line: int = 0) -> Entry:
    """One decoded JSON object as an :class:`Entry`; raises TarSplitDamage when malformed."""
    if not isinstance(obj, dict):
        raise _bad(f"an entry is a JSON {type(obj).__name__}, not an object", line)
    kind = obj.get("type")
    position = obj.get("position", 0)
    if type(kind) is not int:  # bool is no type either
        raise _bad(f"entry type {kind!r} is not an integer", line)
    if type(position) is not int:
        raise _bad(f"position {position!r} is not an integer", line)
    payload = _b64(obj.get("payload"), "payload", line)
    if kind == SEGMENT:
        return Entry(SEGMENT, position, payload or b"")
    if kind != FILE:
        raise TarSplitDamage("unknown-type", f"unknown entry type {kind}", 0, line)
    size = obj.get("size", 0)
    if type(size) is not int or size < 0:
        raise _bad(f"size {size!r} is not a non-negative integer", line)
    name, lossy = _name(obj, line)
    if payload is not None and len(payload) != 8 and (size or payload):
        raise _bad(f"crc64 payload of {len(payload)} bytes, not 8", line)
    return Entry(FILE, position, payload or None, name, size, lossy)


def _name(obj: dict[str, Any], line: int) -> tuple[bytes, bool]:
    raw = obj.get("name_raw")
    if raw:
        decoded = _b64(raw, "name_raw", line)
        if decoded:
            return decoded, False
    name = obj.get("name", "")
    if name is None:
        name = ""
    if not isinstance(name, str):
        raise _bad(f"name {name!r} is not a string", line)
    return name.encode("utf-8", "surrogatepass"), "\ufffd" in name


def _b64(value: Any, key: str, line: int) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(f"{key} {value!r:.40} is not a base64 string", line)
    if not value:
        return b""
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad(f"{key} is not valid base64 ({exc})", line) from None


def _bad(detail: str, line: int) -> TarSplitDamage:
    return TarSplitDamage("bad-entry", detail, 0, line)
