"""Tiny layer tarballs and their tar-split streams, byte-exact, for the synthetic host.

A layer here is a directory plus a couple of small files. We write the uncompressed tar the way
Go's archive/tar lays it out (ustar headers, data padded to 512, two zero blocks, record padding
to 10240 like the examples in shared/reference), hash it for the DiffID, and cut it into the
tar-split entry stream that dockerd keeps in ``tar-split.json.gz`` (see tar-split.md §2).
So the generated layers really reassemble to their DiffIDs from ``overlay2/<cache-id>/diff``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import tarfile
from dataclasses import dataclass

BLOCK = 512
RECORD = 10240
EOF_BLOCKS = bytes(2 * BLOCK)
#: DiffID of the empty layer (1024 zero bytes), common in images built before BuildKit
EMPTY_DIFF_ID = "sha256:" + hashlib.sha256(EOF_BLOCKS).hexdigest()

_CRC64_ISO_REFLECTED = 0xD800000000000000
_MASK64 = 0xFFFFFFFFFFFFFFFF


def _crc64_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC64_ISO_REFLECTED if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc64_table()


def crc64_iso(data: bytes) -> bytes:
    """Go ``hash/crc64`` with the ISO table, 8 bytes big-endian (the tar-split file payload)."""
    crc = _MASK64
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return (crc ^ _MASK64).to_bytes(8, "big")


@dataclass(frozen=True)
class Entry:
    """One member of a layer: a directory (``data is None``) or a regular file."""

    name: str
    data: bytes | None


@dataclass(frozen=True)
class LayerBlob:
    diff_id: str
    tar_split_gz: bytes
    size: int  # what overlay2's ApplyDiff reports: the bytes of regular files


def _header(entry: Entry, mtime: int) -> bytes:
    info = tarfile.TarInfo(entry.name)
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if entry.data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.type, info.mode, info.size = tarfile.REGTYPE, 0o644, len(entry.data)
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")


class _Stream:
    """Collects the tar bytes and the tar-split JSON lines side by side."""

    def __init__(self) -> None:
        self.tar = hashlib.sha256()
        self.lines: list[str] = []
        self.pending = bytearray()

    def raw(self, data: bytes) -> None:
        self.tar.update(data)
        self.pending += data

    def flush(self) -> None:
        if self.pending:
            payload = base64.b64encode(self.pending).decode()
            pos = len(self.lines)
            self.lines.append(f'{{"type":2,"payload":"{payload}","position":{pos}}}')
            self.pending.clear()

    def file(self, name: str, data: bytes | None) -> None:
        self.flush()
        pos = len(self.lines)
        if data:
            self.tar.update(data)
            crc = base64.b64encode(crc64_iso(data)).decode()
            self.lines.append(
                f'{{"type":1,"name":"{name}","size":{len(data)},"payload":"{crc}",'
                f'"position":{pos}}}'
            )
        else:
            self.lines.append(f'{{"type":1,"name":"{name}","payload":null,"position":{pos}}}')


def build_layer(entries: list[Entry], mtime: int) -> LayerBlob:
    """The DiffID, tar-split stream and size of a layer made of ``entries`` (in tar order)."""
    stream = _Stream()
    written = 0
    for entry in entries:
        header = _header(entry, mtime)
        stream.raw(header)
        name = entry.name + "/" if entry.data is None else entry.name
        stream.file(name, entry.data)
        written += len(header)
        if entry.data:
            pad = -len(entry.data) % BLOCK
            stream.raw(bytes(pad))
            written += len(entry.data) + pad
    stream.raw(EOF_BLOCKS)
    written += len(EOF_BLOCKS)
    if entries:
        stream.flush()
        stream.raw(bytes(-written % RECORD))
    stream.flush()
    text = "".join(line + "\n" for line in stream.lines).encode()
    size = sum(len(e.data) for e in entries if e.data)
    return LayerBlob("sha256:" + stream.tar.hexdigest(), gzip.compress(text, 6, mtime=0), size)
