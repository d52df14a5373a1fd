"""containerd's small binary values: Go's ``time.Time`` encodings and ``encoding/binary``
varints, decoded exactly. Pure decoders: bytes in, values out, :class:`ValueDamage` for bytes
that are not such a value.

- ``time.Time.MarshalBinary`` (what bbolt records hold): a version byte, then the seconds since
  January 1 of year 1 (int64, big-endian), the nanoseconds (int32), the zone offset in minutes
  (int16; -1 means UTC); version 2 adds the offset's leftover seconds (int8). 15 or 16 bytes.
- ``time.Time.MarshalText`` (the content store's ``startedat``/``updatedat`` files): RFC 3339
  with up to nine fraction digits.
- ``binary.PutUvarint`` / ``binary.PutVarint`` (sizes, snapshot ids): 7 bits a byte, low first,
  at most 10 bytes; the signed form zig-zag encoded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from forensics.containerd_model import GoTime
from forensics.errors import Damage

#: seconds from January 1 of year 1 to the Unix epoch (Go's unixToInternal)
UNIX_TO_INTERNAL = 62135596800
TIME_V1, TIME_V2 = 1, 2
MAX_VARINT_LEN = 10

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})"
)


@dataclass(frozen=True)
class ValueDamage(Damage):
    """Bytes that are not the value expected: ``kind`` is ``time`` or ``varint``."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return self.detail


def decode_binary_time(data: bytes) -> GoTime:
    """A ``time.Time`` from its ``MarshalBinary`` bytes."""
    if not data:
        raise ValueDamage("time", "empty time value")
    version = data[0]
    want = {TIME_V1: 15, TIME_V2: 16}.get(version)
    if want is None:
        raise ValueDamage("time", f"unknown time encoding version {version}")
    if len(data) != want:
        raise ValueDamage("time", f"time value of {len(data)} bytes, version {version} has {want}")
    sec = int.from_bytes(data[1:9], "big", signed=True)
    nanos = int.from_bytes(data[9:13], "big", signed=True)
    minutes = int.from_bytes(data[13:15], "big", signed=True)
    if not 0 <= nanos < 1_000_000_000:
        raise ValueDamage("time", f"nanoseconds {nanos} out of range")
    offset: int | None
    if minutes == -1:
        offset = None
    else:
        offset = minutes * 60 + (
            int.from_bytes(data[15:16], "big", signed=True) if want == 16 else 0
        )
    return GoTime(sec - UNIX_TO_INTERNAL, nanos, offset)


def decode_text_time(data: bytes) -> GoTime:
    """A ``time.Time`` from its ``MarshalText`` (RFC 3339) bytes."""
    text = data.decode("ascii", "replace").strip()
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueDamage("time", f"not an RFC 3339 time: {text[:40]!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction, zone = m.group(7) or "", m.group(8)
    try:
        days = _days_from_civil(year, month, day)
    except ValueError as exc:
        raise ValueDamage("time", f"not a date: {text[:40]!r} ({exc})") from None
    if hour > 23 or minute > 59 or second > 60:
        raise ValueDamage("time", f"not a time of day: {text[:40]!r}")
    offset = None
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    unix = days * 86400 + hour * 3600 + minute * 60 + second - (offset or 0)
    return GoTime(unix, int(fraction.ljust(9, "0")) if fraction else 0, offset)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (any year Go can print)."""
    if not 1 <= month <= 12 or not 1 <= day <= _month_days(year, month):
        raise ValueError("day or month out of range")
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    mp = (month + 9) % 12
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _month_days(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def decode_uvarint(data: bytes) -> int:
    """The unsigned varint that starts ``data`` (Go's ``binary.Uvarint``)."""
    value = shift = 0
    for i, byte in enumerate(data[:MAX_VARINT_LEN]):
        if i == MAX_VARINT_LEN - 1 and byte > 1:
            raise ValueDamage("varint", "varint overflows 64 bits")
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value
        shift += 7
    if len(data) >= MAX_VARINT_LEN:
        raise ValueDamage("varint", "varint overflows 64 bits")
    raise ValueDamage("varint", f"varint cut short after {len(data)} bytes")


def decode_varint(data: bytes) -> int:
    """The signed (zig-zag) varint that starts ``data`` (Go's ``binary.Varint``)."""
    u = decode_uvarint(data)
    return -(u >> 1) - 1 if u & 1 else u >> 1


def encode_uvarint(n: int) -> bytes:
    """Go's ``binary.PutUvarint`` (for keys of the snapshotter's ``parents`` bucket)."""
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def split_uvarint(data: bytes) -> tuple[int, int]:
    """The unsigned varint at the start of ``data`` and the number of bytes it takes."""
    value = decode_uvarint(data)
    return value, len(encode_uvarint(value))
