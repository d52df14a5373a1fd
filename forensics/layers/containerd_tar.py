"""A layer blob's tar read front to back as a stream: every byte hashed on the way (the
DiffID), each member's headers with its extension headers (PAX, GNU long names) decoded by
:mod:`forensics.formats.ustar`, as Go's reader does, with bounds on what they may hold."""

from __future__ import annotations

import hashlib
from typing import Any

from forensics.formats.ustar import BLOCK, HeaderError, Member, read_member
from forensics.fs.compressed import DecodedStream, PlainStream

#: read size of the blob, the stream and the snapshot's files
CHUNK = 1 << 20
#: extension headers (PAX, GNU long names) in front of one member, and what they may hold
EXTENSIONS = {b"x", b"L", b"K"}
MAX_EXTENSIONS = 16
MAX_EXTENSION_DATA = 1 << 20
#: typeflags whose members carry no data, whatever their size field says (Go's reader)
HEADER_ONLY = {b"1", b"2", b"3", b"4", b"5", b"6"}


class TarReader:
    """The decompressed tar read front to back, every byte hashed (the DiffID)."""

    def __init__(self, stream: DecodedStream | PlainStream) -> None:
        self.stream = stream
        self.pos = 0
        self.hash = hashlib.sha256()

    def read(self, size: int) -> bytes:
        data = self.stream.read_at(self.pos, size)
        self.pos += len(data)
        self.hash.update(data)
        return data

    def skip(self, size: int, into: Any = None) -> int:
        """Read ``size`` bytes (fewer at the end), fed to ``into`` too; their count."""
        done = 0
        while done < size:
            data = self.read(min(CHUNK, size - done))
            if not data:
                break
            if into is not None:
                into.update(data)
            done += len(data)
        return done

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def next_member(reader: TarReader) -> Member | str | None:
    """The next member (its extension headers applied), None at the end of the archive,
    or what is wrong with its headers."""
    buf = reader.read(BLOCK)
    if not buf.strip(b"\0"):
        return None  # the end-of-archive block (or the end of the stream: Go reads so too)
    if len(buf) < BLOCK:
        return f"the archive ends inside a header ({len(buf)} of {BLOCK} bytes)"
    for _ in range(MAX_EXTENSIONS):
        typeflag = buf[-BLOCK + 156 : -BLOCK + 157]
        if typeflag not in EXTENSIONS:
            break
        try:
            size = int(buf[-BLOCK + 124 : -BLOCK + 136].strip(b" \0") or b"0", 8)
        except ValueError:
            break  # read_member says what is wrong
        if size > MAX_EXTENSION_DATA:
            return f"an extension header ({typeflag!r}) of {size} bytes"
        buf += reader.read(size + (-size % BLOCK))
        nxt = reader.read(BLOCK)
        if len(nxt) < BLOCK:
            return "the archive ends inside a member's extension headers"
        buf += nxt
    else:
        return f"more than {MAX_EXTENSIONS} extension headers in front of one member"
    try:
        member, _ = read_member(buf)
    except HeaderError as exc:
        return str(exc)
    return member
