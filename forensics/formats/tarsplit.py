"""Decoding of tar-split metadata (``tar-split.json.gz``, legacy ``tar-data.json.gz``).

A gzip stream of JSON objects, one per line (Go ``json.Encoder``), each a *segment* (raw tar
bytes: headers, padding, end blocks) or a *file* entry (name, size, crc64 of the data), as
vbatts/tar-split's ``tar/storage`` packer writes them. Decoding is streaming: the gzip is
inflated in bounded chunks and entries are yielded one by one, so a layer of a million files is
never held whole.

Quirks of older writers that are accepted:

* tar-split v0.9.4 (Docker 1.8.0–1.8.2) wrote ``"name":""`` and ``"size":0`` on every entry,
  segments included, and empty segments (``"payload":""`` or ``null``);
* ≤ v0.10.1 (and, on real data, Docker 20.10's build too) end with an empty segment;
* names that are not UTF-8 are in ``name_raw`` (base64 of the raw bytes, tar-split ≥ v0.9.10);
  older writers replaced the bad bytes with U+FFFD (``Entry.lossy_name``);
* several JSON values on one line, and blank lines (Go's decoder reads a stream of values).

Damage is raised as :class:`TarSplitDamage` *after* every entry before it was yielded, with the
count reached, so a caller can report how far a truncated file goes.

A stream is untrusted input: a few megabytes of gzip can inflate to gigabytes of newlines or to
millions of entries. :class:`Limits` bounds what one layer's stream may hold, from the layer's
recorded size and the tar format (see there); beyond them the stream is damage (``too-large``).

Two paths decode a line. :func:`fast_line` takes the lines exactly as Go's ``json.Encoder``
writes them (nearly all of them) with a few byte operations and pybase64; anything else goes
to the JSON path (:func:`json_line`, :func:`entry_fields`), which reads every spelling Go's
decoder reads and alone decides what is damage. The fast path only accepts what the JSON path
reads the same way (``tests/test_tarsplit_paths.py``). Both read a file entry's payload
``""`` as ``null``: no crc64 recorded (Go decodes both, then fails that file's check).
"""

from __future__ import annotations

import binascii
import codecs
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from pybase64 import b64decode as _b64decode

from forensics.errors import Damage

__all__ = [
    "FILE",
    "SEGMENT",
    "Entry",
    "Fields",
    "Limits",
    "TarSplitDamage",
    "decode_entry",
    "entry_fields",
    "fast_line",
    "iter_entries",
    "iter_fields",
    "iter_lines",
    "json_line",
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

#: a tar block: every member takes one header block at least, its data whole blocks
BLOCK = 512
#: members that a layer may hold beyond those its recorded size pays for (see :class:`Limits`)
FREE_MEMBERS = 100_000
#: the data a layer is taken to hold when no size is recorded: a generous fixed cap
NO_SIZE = 256 * 1024 * 1024
#: tar bytes per member besides its data: the header, one extension header (PAX or GNU long
#: name) and the padding of the data before it
MEMBER_OVERHEAD = 3 * BLOCK
#: the end of a tar: two zero blocks, then padding up to the default 10 KiB record
TAR_END = 20 * BLOCK
#: what Go's encoder adds to a line besides its values: the keys, position, size, quotes
LINE_KEYS = 256


@dataclass(frozen=True, slots=True)
class Limits:
    """What one layer's tar-split stream may hold, derived from the tar format.

    ``S`` is the layer's recorded size: layerdb ``size`` (legacy: ``layersize``; a migrated
    layer: the sum of its file sizes), the bytes of *file data* the layer holds — not the
    length of its tar, which Docker does not record. Hence:

    * **Members.** A member's data takes whole 512-byte blocks, so at most ``S // 512``
      members carry a block of data or more. Members with less (directories, links, devices,
      whiteouts, empty and small files) are not counted by ``S``: :data:`FREE_MEMBERS` of
      them are allowed beyond it, plus two per entry of the layer's directory when it holds
      exactly the layer's diff (overlay2, aufs: every member is there, an opaque directory
      adds a marker member) — ``members = S // 512 + FREE_MEMBERS + 2 × listed``.
    * **Lines.** tar-split writes a member as at most two lines (the segment of its header,
      the entry of its file) and ends with a segment or two: ``lines = 2 × members + 2``.
      Blank lines count as lines (Go's encoder writes none; they are input all the same), and
      so does every value of a line holding several.
    * **JSON bytes.** The tar stream holds at most ``tar = S + members × 1536 + 10240``
      bytes (:data:`MEMBER_OVERHEAD`, :data:`TAR_END`); its JSON is base64 of the segments
      (4/3 of their bytes), the names (at most 6× as ``\\u`` escapes) and a few keys per
      line: ``json = 2 × tar + 256 × lines`` bytes inflated, blank lines included.
    * **Per line.** A line decoded by the JSON path (anything Go's encoder did not write
      verbatim) may be at most ``8 × (payload + name) + 256`` bytes per value: whitespace
      and unknown keys, which Go ignores, are no cover for filler.

    When no size is recorded (no ``size`` file, a legacy ``layersize`` of -1), ``S`` is
    :data:`NO_SIZE` (256 MiB), and :attr:`reason` says so. A stream beyond any bound raises
    :class:`TarSplitDamage` of kind ``too-large`` before the lines beyond it are decoded, so
    the time and memory spent on a layer stay proportional to what its size allows.
    """

    lines: int
    json_bytes: int
    #: how the bounds were derived, for the damage message
    reason: str

    @classmethod
    def for_layer(cls, recorded_size: int | None, listed: int = 0) -> Limits:
        """The bounds of a layer of ``recorded_size`` bytes (None: none recorded) whose diff
        directory holds ``listed`` entries (0: unknown, or a full root file system)."""
        if recorded_size is None or recorded_size < 0:
            data, said = NO_SIZE, f"no size recorded: taken as {NO_SIZE:,} bytes"
        else:
            data, said = recorded_size, f"{recorded_size:,} bytes recorded"
        members = data // BLOCK + FREE_MEMBERS + 2 * listed
        lines = 2 * members + 2
        tar = data + members * MEMBER_OVERHEAD + TAR_END
        if listed:
            said += f", {listed:,} entries on disk"
        return cls(
            lines,
            2 * tar + LINE_KEYS * lines,
            f"a layer of {said} holds at most {members:,} tar members",
        )


@dataclass(slots=True)
class Entry:
    """One tar-split entry.

    ``payload``: for a segment the raw tar bytes (``b""`` when empty or null); for a file the
    8-byte big-endian crc64 of its data, or None (none recorded: ``null`` or ``""``; Go writes
    ``null`` for size 0). ``name`` (file entries only) is the raw name: ``name_raw`` decoded
    when present, else ``name`` encoded as UTF-8.
    """

    type: int
    position: int
    payload: bytes | None
    name: bytes | None = None
    size: int = 0
    lossy_name: bool = False  # the name holds U+FFFD: an old writer may have replaced bytes


#: an entry as plain values, in :class:`Entry`'s field order:
#: (type, position, payload, name, size, lossy_name)
Fields = tuple[int, int, bytes | None, bytes | None, int, bool]


@dataclass(frozen=True)
class TarSplitDamage(Damage):
    """Why a tar-split stream cannot be decoded (further).

    ``kind``: ``empty``, ``not-gzip``, ``corrupt-gzip`` (bad deflate data or trailer CRC),
    ``truncated`` (the gzip or the last line ends early), ``bad-json``, ``bad-entry`` (a value
    of the wrong type, bad base64, …), ``line-too-long``, ``too-large`` (beyond the
    :class:`Limits` of its layer).
    ``entries`` counts the entries decoded before it; ``line`` is the 1-based line at fault.
    """

    kind: str
    detail: str
    entries: int = 0
    line: int = 0

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.detail} (after {self.entries} entries)"


def iter_entries(stream: BinaryIO, limits: Limits | None = None) -> Iterator[Entry]:
    """The entries of the gzip-compressed tar-split ``stream``, in order.

    Raises :class:`TarSplitDamage` where the stream stops being decodable, or goes beyond
    ``limits`` (None: only :data:`MAX_LINE` bounds a line).
    """
    for fields in iter_fields(stream, limits):
        yield Entry(*fields)


def iter_fields(stream: BinaryIO, limits: Limits | None = None) -> Iterator[Fields]:
    """What :func:`iter_entries` yields, as plain tuples (:data:`Fields`): the hot loop of a
    layer of many small files unpacks these instead of building an :class:`Entry` each.

    Each line goes through :func:`fast_line` first; whatever it does not take (another
    spelling, damage) is decoded by the JSON path, which alone reports damage. ``limits`` are
    checked per inflated chunk (lines and bytes, before its lines are decoded) and per line of
    the JSON path (its length against its values).
    """
    count = 0
    lineno = 0
    fast = fast_line
    tally = _Tally(limits)
    try:
        for batch in _line_batches(stream, tally):
            for line in batch:
                fields = fast(line)
                if fields is not None:
                    lineno += 1
                    count += 1
                    yield fields
                    continue
                if not line or line.isspace():
                    continue
                lineno += 1
                values = useful = 0
                for fields in json_line(line, lineno):
                    count += 1
                    values += 1
                    useful += len(fields[2] or b"") + len(fields[3] or b"")
                    yield fields
                if limits is not None:
                    tally.json_line(len(line), values, useful, lineno)
    except TarSplitDamage as exc:
        line = exc.line or (lineno + 1 if exc.kind != "too-large" else 0)
        raise TarSplitDamage(exc.kind, exc.detail, count, line) from None


class _Tally:
    """What a stream has held so far, against its :class:`Limits` (None: unbounded)."""

    __slots__ = ("bytes", "limits", "lines")

    def __init__(self, limits: Limits | None) -> None:
        self.limits = limits
        self.lines = 0
        self.bytes = 0

    def chunk(self, inflated: int, lines: int) -> None:
        """An inflated chunk of ``inflated`` bytes that completes ``lines`` lines."""
        limits = self.limits
        if limits is None:
            return
        self.bytes += inflated
        self.lines += lines
        if self.lines > limits.lines:
            raise TarSplitDamage("too-large", f"more than {limits.lines:,} lines: {limits.reason}")
        if self.bytes > limits.json_bytes:
            raise TarSplitDamage(
                "too-large", f"more than {limits.json_bytes:,} bytes of JSON: {limits.reason}"
            )

    def json_line(self, length: int, values: int, useful: int, lineno: int) -> None:
        """A line of the JSON path: ``values`` values (each beyond the first counts as a line)
        holding ``useful`` bytes of payload and name."""
        if length > 8 * useful + LINE_KEYS * max(values, 1):
            raise TarSplitDamage(
                "too-large",
                f"a line of {length:,} bytes that holds {useful:,} bytes of payload and name: "
                "filler that no tar-split writer produces",
                0,
                lineno,
            )
        if values > 1:
            self.chunk(0, values - 1)


def iter_lines(stream: BinaryIO) -> Iterator[bytes]:
    """The non-blank lines of the gzip ``stream`` (all gzip members), without the newline."""
    for batch in _line_batches(stream, _Tally(None)):
        for line in batch:
            if line and not line.isspace():
                yield line


def _line_batches(stream: BinaryIO, tally: _Tally) -> Iterator[list[bytes]]:
    """The lines of the gzip ``stream``, a list per inflated chunk (one generator step per
    chunk, not per line); blank lines included. Each chunk is held against ``tally`` before
    its lines are handed out."""
    pending = b""
    for chunk in _inflate(stream):
        pending += chunk
        if b"\n" not in chunk:
            tally.chunk(len(chunk), 0)
            if len(pending) > MAX_LINE:
                raise TarSplitDamage("line-too-long", f"a line longer than {MAX_LINE} bytes")
            continue
        lines = pending.split(b"\n")
        pending = lines.pop()
        tally.chunk(len(chunk), len(lines))
        yield lines
    if pending:
        tally.chunk(0, 1)
        yield [pending]  # the last line need not end in a newline


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


# -- the fast path: the lines Go's json.Encoder writes ------------------------------------------

_SEGMENT = b'{"type":2,"payload":"'
#: tar-split v0.9.4 (Docker 1.8.0–1.8.2) wrote name and size on segments too
_SEGMENT_V094 = b'{"type":2,"name":"","size":0,"payload":"'
_SEGMENT_AT, _SEGMENT_V094_AT = len(_SEGMENT), len(_SEGMENT_V094)
_FILE = b'{"type":1,"name":"'
#: a number as JSON spells it (no sign, no leading zero) and short enough that it fits Go's
#: int64 (10**18 - 1 < 2**63); longer ones take the JSON path, which checks the range
_NUMBER = rb"(0|[1-9][0-9]{0,17})"
#: what follows a segment's base64 payload
_SEGMENT_TAIL = re.compile(rb'","position":' + _NUMBER + rb"\}")
_SEGMENT_NULL = re.compile(rb'\{"type":2,"payload":null,"position":' + _NUMBER + rb"\}")
#: a file line: a name without escapes, quotes or control characters; size (omitted when 0);
#: the crc64 as Go's encoder writes 8 bytes (11 base64 digits and one ``=``), or null
_FILE_LINE = re.compile(
    rb'\{"type":1,"name":"([^"\\\x00-\x1f]*)",(?:"size":' + _NUMBER + rb",)?"
    rb'"payload":(?:"([A-Za-z0-9+/]{11}=)"|null),"position":' + _NUMBER + rb"\}"
)


def fast_line(line: bytes) -> Fields | None:
    """The entry on ``line`` when it is spelled exactly as Go's ``json.Encoder`` writes it
    (keys in tar-split's order, no whitespace, no escapes), decoded without the JSON decoder;
    None for anything else — other spellings, several values, and every kind of damage — which
    the JSON path (:func:`entry_fields`) then decodes or reports. Never raises.

    Whatever it accepts, the JSON path reads the same way: ``tests/test_tarsplit_paths.py``
    holds the two against each other."""
    if line.startswith(_SEGMENT):
        return _fast_segment(line, _SEGMENT_AT)
    if line.startswith(_FILE):
        return _fast_file(line)
    if line.startswith(_SEGMENT_V094):
        return _fast_segment(line, _SEGMENT_V094_AT)
    null = _SEGMENT_NULL.fullmatch(line)
    if null is not None:
        return (SEGMENT, int(null[1]), b"", None, 0, False)
    return None


def _fast_segment(line: bytes, start: int) -> Fields | None:
    """A segment line whose base64 payload starts at ``start``."""
    at = line.rfind(b'","position":')
    tail = _SEGMENT_TAIL.fullmatch(line, at) if at >= start else None
    if tail is None:
        return None
    try:
        payload = _b64decode(line[start:at], None, True)
    except ValueError:  # not base64, or more JSON than one string
        return None
    return (SEGMENT, int(tail[1]), payload, None, 0, False)


def _fast_file(line: bytes) -> Fields | None:
    found = _FILE_LINE.fullmatch(line)
    if found is None:
        return None
    name, size, crc, position = found.groups()
    lossy = False
    if not name.isascii():
        try:
            name.decode("utf-8")
        except UnicodeDecodeError:
            return None
        lossy = b"\xef\xbf\xbd" in name  # U+FFFD: an old writer replaced bytes
    return (
        FILE,
        int(position),
        binascii.a2b_base64(crc) if crc else None,  # 8 bytes: the pattern says so
        name,
        int(size) if size else 0,
        lossy,
    )


# -- the JSON path: any spelling, and the judge of damage ----------------------------------------


def _no_constant(name: str) -> Any:
    """NaN and Infinity are no JSON (Python's decoder would accept them, Go's does not)."""
    raise ValueError(f"{name} is not JSON")


#: tar-split's Entry fields: Go's decoder sets them from keys that match their JSON names
#: case-insensitively (last key wins); other keys are ignored
_FIELDS = ("type", "name", "name_raw", "size", "payload", "position")
#: fields that a JSON null sets to nil (Go slices); null leaves the others as they were
_NULLABLE = {"name_raw", "payload"}
#: the two non-ASCII letters that Go's case folding (``bytes.EqualFold``) equals to ASCII ones
_GO_FOLD = str.maketrans({"\u017f": "s", "\u212a": "k"})


def _go_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as Go's decoder fills tar-split's Entry struct from it."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        name = key.translate(_GO_FOLD).lower() if not key.isascii() else key.lower()
        if name not in _FIELDS or (value is None and name not in _NULLABLE):
            continue
        obj[name] = value
    return obj


_DECODER = json.JSONDecoder(parse_constant=_no_constant, object_pairs_hook=_go_object)


def _go_replace(exc: UnicodeError) -> tuple[str, int]:
    """Bytes that are not UTF-8: one U+FFFD each, as Go's JSON decoder reads them in strings
    (outside strings the replacement is no JSON, so the line is still damage)."""
    assert isinstance(exc, UnicodeDecodeError)
    return "\ufffd" * (exc.end - exc.start), exc.end


codecs.register_error("forensics-go-json", _go_replace)


def json_line(line: bytes, lineno: int = 0) -> Iterator[Fields]:
    """The entries on one line by the JSON path: any spelling Go's decoder reads, and
    damage raised as :class:`TarSplitDamage` (after the entries before it on the line)."""
    for obj in _values(line, lineno):
        yield entry_fields(obj, lineno)


def _values(line: bytes, lineno: int) -> Iterator[Any]:
    """The JSON values on one line: normally one; several are accepted, separated or
    surrounded by whitespace (Go stream semantics)."""
    decode = _DECODER.raw_decode
    text = line.decode("utf-8", "forensics-go-json")
    pos = _skip_space(text, 0)
    end = len(text)
    while pos < end:
        try:
            obj, pos = decode(text, pos)
        except json.JSONDecodeError as exc:
            cut = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
            kind = "truncated" if cut else "bad-json"
            raise TarSplitDamage(kind, f"invalid JSON: {exc.msg}", 0, lineno) from None
        except (ValueError, RecursionError) as exc:  # a number of > 4300 digits, NaN, nesting
            detail = f"invalid JSON: {str(exc) or type(exc).__name__}"
            raise TarSplitDamage("bad-json", detail[:200], 0, lineno) from None
        yield obj
        pos = _skip_space(text, pos)


def _skip_space(text: str, pos: int) -> int:
    end = len(text)
    while pos < end and text[pos] in " \t\r\n":
        pos += 1
    return pos


def decode_entry(obj: Any, line: int = 0) -> Entry:
    """One decoded JSON object as an :class:`Entry`; raises TarSplitDamage when malformed."""
    return Entry(*entry_fields(obj, line))


def entry_fields(obj: Any, line: int = 0) -> Fields:
    """One decoded JSON object as :data:`Fields`; raises TarSplitDamage when malformed.

    Every field present must have its Go type, whatever the entry's type (Go's decoder fails
    the whole entry on one mismatch); numbers must fit Go's int64. An entry of a type other
    than file or segment (a missing type is 0) is returned as it is: tar-split's reassembly
    skips it. A file's payload is its crc64, 8 bytes; an empty one (``""``, like ``null``)
    records no crc64 — Go decodes both and then fails that file's integrity check, and so does
    the reassembly (the file is reported, the stream goes on)."""
    if not isinstance(obj, dict):
        raise _bad(f"an entry is a JSON {type(obj).__name__}, not an object", line)
    kind = _int64(obj.get("type", 0), "entry type", line)
    position = _int64(obj.get("position", 0), "position", line)
    size = _int64(obj.get("size", 0), "size", line)
    payload = _b64(obj.get("payload"), "payload", line)
    name, lossy = _name(obj, line)
    if kind != FILE:
        return (kind, position, payload or b"", None, 0, False)
    if size < 0:
        raise _bad(f"size {size} is negative", line)
    if payload and len(payload) != 8:
        raise _bad(f"crc64 payload of {len(payload)} bytes, not 8", line)
    return (FILE, position, payload or None, name, size, lossy)


_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


def _int64(value: Any, what: str, line: int) -> int:
    if type(value) is not int:  # bool is no number either
        raise _bad(f"{what} {value!r:.40} is not an integer", line)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _bad(f"{what} {value!r:.40} does not fit 64 bits", line)
    return value


def _name(obj: dict[str, Any], line: int) -> tuple[bytes, bool]:
    decoded = _b64(obj.get("name_raw"), "name_raw", line)
    if decoded:
        return decoded, False
    name = obj.get("name", "")
    if name is None:
        name = ""
    if not isinstance(name, str):
        raise _bad(f"name {name!r:.40} is not a string", line)
    return name.encode("utf-8", "surrogatepass"), "\ufffd" in name


def _b64(value: Any, key: str, line: int) -> bytes | None:
    """Standard base64 as Go's decoder reads it: padded, nothing after the padding; line
    breaks (CR, LF) anywhere are skipped."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(f"{key} {value!r:.40} is not a base64 string", line)
    if "\n" in value or "\r" in value:
        value = value.replace("\r", "").replace("\n", "")
    if not value:
        return b""
    try:
        return _b64decode(value, None, True)
    except ValueError:
        raise _bad(f"{key} is not valid base64 ({_b64_fault(value)})", line) from None


def _b64_fault(value: str) -> str:
    """What is wrong with a base64 string, in binascii's words (more telling than pybase64's)."""
    try:
        binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        return str(exc)
    return "padding after a complete group"  # binascii takes it, Go does not


def _bad(detail: str, line: int) -> TarSplitDamage:
    return TarSplitDamage("bad-entry", detail, 0, line)
