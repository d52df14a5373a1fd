"""A device's small reads served from a few cached aligned chunks.

The filesystem libraries read metadata a piece at a time, seeking before each read — an inode
of 256 bytes, an extent block, a directory block — and inodes that follow each other in a
directory mostly lie in the same inode table block. Each such read through a thin device costs
a mapping lookup and a system call; here a read of up to one chunk is served from an LRU of
aligned chunks of the device (each read once, whole). File contents come this way only for
small files (:meth:`BlockCache.read_into`: a Docker root holds them by the hundred thousand,
and the files of one directory mostly lie side by side, so that one chunk serves many); larger
ones are read straight from the device (:mod:`forensics.fs.content`).

A chunk that cannot be read whole (a damaged range of a thin device, an I/O error) is not
cached: the read then goes to the device as asked, so that its error, and the problem the
device records, are exactly those of the bytes asked for.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import BinaryIO

from forensics.fs.rawfile import SizedRawFile

#: bytes of one cached chunk, and chunks kept (8 MiB in all: a walk of a Docker root goes
#: through the inode tables and directory blocks of several thousand directories in turn, and
#: comes back to the same few chunks of them)
CHUNK = 1 << 16
CHUNKS = 128


class BlockCache(SizedRawFile):
    """``device`` (a seekable raw file object of ``size`` bytes), read-only, its small reads
    cached."""

    def __init__(self, device: BinaryIO, size: int) -> None:
        super().__init__()
        self.device = device
        self.size = size
        self._pos = 0
        self._chunks: OrderedDict[int, bytes] = OrderedDict()
        #: the device's own record of problems met, if it keeps one
        self.read_problems: list[object] | None = getattr(device, "read_problems", None)

    @property
    def raw(self) -> BinaryIO:
        """The device under the cache (what file contents are read from)."""
        return self.device

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        pos = self._pos
        want = max(0, min(len(out), self.size - pos))
        if want == 0:
            return 0
        start = pos - pos % CHUNK
        if pos + want <= start + CHUNK:
            chunk = self._chunk(start)
            if chunk is not None:
                got = max(0, min(want, len(chunk) - (pos - start)))
                out[:got] = chunk[pos - start : pos - start + got]
                self._pos += got
                return got
        got = self._direct(out[:want], pos)
        self._pos += got
        return got

    def pread(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` (fewer at the end), the position left alone; raises
        the device's ``OSError``."""
        size = max(0, min(size, self.size - offset))
        if size == 0:
            return b""
        start = offset - offset % CHUNK
        if offset + size <= start + CHUNK:
            chunk = self._chunk(start)
            if chunk is not None:
                return chunk[offset - start : offset - start + size]
        out = bytearray(size)
        got = self._direct(memoryview(out), offset)
        return bytes(out[:got])

    def read_into(self, view: memoryview, offset: int) -> int:
        """Fill the start of ``view`` with the bytes at ``offset`` (as :meth:`pread`, the
        position left alone); how many (0 at the device's end)."""
        data = self.pread(offset, len(view))
        view[: len(data)] = data
        return len(data)

    def _chunk(self, start: int) -> bytes | None:
        chunk = self._chunks.get(start)
        if chunk is not None:
            self._chunks.move_to_end(start)
            return chunk
        length = min(CHUNK, self.size - start)
        data = bytearray(length)
        problems = self.read_problems
        before = len(problems) if problems is not None else 0
        try:
            filled = 0
            while filled < length:
                got = self._direct(memoryview(data)[filled:], start + filled)
                if not got:
                    break
                filled += got
        except OSError:
            if problems is not None:  # met by this read ahead, not by a read asked for
                del problems[before:]
            return None
        chunk = bytes(data[:filled])
        self._chunks[start] = chunk
        if len(self._chunks) > CHUNKS:
            self._chunks.popitem(last=False)
        return chunk

    def _direct(self, out: memoryview, at: int) -> int:
        keep = self.device.tell()
        try:
            self.device.seek(at)
            return self.device.readinto(out) or 0
        finally:
            self.device.seek(keep)
