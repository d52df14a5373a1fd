"""An SQLite database in WAL mode read with its write-ahead log, without SQLite touching a file.

In WAL mode (``journal_mode=WAL``) committed transactions go to ``NAME-wal`` first; the database
file holds them only after a checkpoint. A reader that opens the file alone sees stale rows, or
an empty schema. SQLite itself would read the log, but it also creates ``NAME-shm`` (and may
checkpoint) beside the file: not in evidence. So the log is applied here, to a copy in memory,
as SQLite's recovery applies it (https://www.sqlite.org/fileformat2.html §4 "The WAL file"):

* a 32-byte header: magic ``0x377f0682`` (checksums over little-endian words) or ``0x377f0683``
  (big-endian), format version 3007000, page size, checkpoint sequence, two salts and a
  checksum of its first 24 bytes;
* frames of a 24-byte header (page number; the database size in pages for a commit frame, else
  0; the two salts; a cumulative checksum over the frame header's first 8 bytes and the page)
  and one page;
* a frame counts when its salts are the header's and the running checksum holds; only frames up
  to the last such commit frame are applied (a transaction cut short is not). A header whose
  checksum fails, or a log of another page size, is a log SQLite would not use either.

SQLite opens a log whenever one exists beside a database file that is not empty, whatever the
file's header says, and deletes the log of an empty file (``pager.c pagerOpenWalIfPresent``):
the same here, but the log is only left out, never deleted.

The result is the database as SQLite would show it, with the header's file format bytes set back
to "legacy" (1) so that an in-memory copy opens without asking for a log of its own.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import construct as cs

__all__ = ["WalResult", "apply_wal", "is_wal_database"]

#: the WAL header (big-endian, whatever the checksum byte order)
HEADER = cs.Struct(
    "magic" / cs.Int32ub,
    "version" / cs.Int32ub,
    "page_size" / cs.Int32ub,
    "checkpoint_seq" / cs.Int32ub,
    "salt1" / cs.Int32ub,
    "salt2" / cs.Int32ub,
    "checksum1" / cs.Int32ub,
    "checksum2" / cs.Int32ub,
)
#: a frame header; ``commit`` is the database size in pages after a commit frame, else 0
FRAME = cs.Struct(
    "pgno" / cs.Int32ub,
    "commit" / cs.Int32ub,
    "salt1" / cs.Int32ub,
    "salt2" / cs.Int32ub,
    "checksum1" / cs.Int32ub,
    "checksum2" / cs.Int32ub,
)
HEADER_SIZE, FRAME_SIZE = HEADER.sizeof(), FRAME.sizeof()
MAGIC_LE, MAGIC_BE = 0x377F0682, 0x377F0683
VERSION = 3007000
_MASK = 0xFFFFFFFF


@dataclass(frozen=True)
class WalResult:
    """The database with its log applied: ``frames`` committed frames, of ``transactions``
    transactions; ``ignored`` says why a log was not used (None when it was, or was empty)."""

    data: bytes
    frames: int
    transactions: int
    ignored: str | None = None


def is_wal_database(data: bytes) -> bool:
    """True when the database header says WAL mode (file format bytes 18 and 19 are 2)."""
    return len(data) >= 20 and data[18] == 2 and data[19] == 2


def _page_size(data: bytes) -> int | None:
    if len(data) < 100 or not data.startswith(b"SQLite format 3\0"):
        return None
    size = int.from_bytes(data[16:18], "big")
    return 65536 if size == 1 else size


def _checksum(payload: bytes, s0: int, s1: int, big: bool) -> tuple[int, int]:
    """SQLite's WAL checksum: over 32-bit word pairs, ``s0 += x0 + s1; s1 += x1 + s0``."""
    words = struct.unpack(f"{'>' if big else '<'}{len(payload) // 4}I", payload)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & _MASK
        s1 = (s1 + words[i + 1] + s0) & _MASK
    return s0, s1


def apply_wal(db: bytes, wal: bytes) -> WalResult:
    """``db`` with the committed frames of ``wal`` applied."""
    if not db:
        reason = "the database file is empty: SQLite discards its log" if wal else None
        return WalResult(db, 0, 0, reason)
    if len(wal) < HEADER_SIZE:
        return WalResult(_legacy(db), 0, 0, "the log is shorter than its header" if wal else None)
    head = HEADER.parse(wal)
    if head.magic not in (MAGIC_LE, MAGIC_BE) or head.version != VERSION:
        return WalResult(_legacy(db), 0, 0, "the log has no WAL header")
    big = head.magic == MAGIC_BE
    page_size = int(head.page_size)
    s0, s1 = _checksum(wal[:24], 0, 0, big)
    if (s0, s1) != (head.checksum1, head.checksum2):
        return WalResult(_legacy(db), 0, 0, "the log header's checksum fails (an unused log)")
    if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        return WalResult(_legacy(db), 0, 0, f"the log's page size {page_size} is not valid")
    if _page_size(db) != page_size:
        return WalResult(_legacy(db), 0, 0, "the log's page size is not the database's")
    pages: dict[int, bytes] = {}
    committed: dict[int, bytes] = {}
    size_in_pages = frames = pending = transactions = 0
    at, step = HEADER_SIZE, FRAME_SIZE + page_size
    while at + step <= len(wal):
        frame = FRAME.parse(wal[at : at + FRAME_SIZE])
        if (frame.salt1, frame.salt2) != (head.salt1, head.salt2) or frame.pgno == 0:
            break
        s0, s1 = _checksum(wal[at : at + 8] + wal[at + FRAME_SIZE : at + step], s0, s1, big)
        if (s0, s1) != (frame.checksum1, frame.checksum2):
            break
        pages[int(frame.pgno)] = wal[at + FRAME_SIZE : at + step]
        pending += 1
        if frame.commit:
            committed.update(pages)
            frames, pending, pages = frames + pending, 0, {}
            size_in_pages = int(frame.commit)
            transactions += 1
        at += step
    if not transactions:
        return WalResult(_legacy(db), 0, 0)
    known = max(len(db) // page_size, max(committed))
    if size_in_pages > known:  # pages neither the file nor the log holds: a crafted log
        return WalResult(
            _legacy(db), 0, 0, f"the log's database of {size_in_pages} pages is past what it holds"
        )
    image = bytearray(db[: size_in_pages * page_size].ljust(size_in_pages * page_size, b"\0"))
    for pgno, page in committed.items():
        if pgno <= size_in_pages:
            image[(pgno - 1) * page_size : pgno * page_size] = page
    return WalResult(_legacy(bytes(image)), frames, transactions)


def _legacy(data: bytes) -> bytes:
    """The database with its header's file format bytes set to 1 (rollback journal)."""
    if not is_wal_database(data):
        return data
    return data[:18] + b"\x01\x01" + data[20:]
