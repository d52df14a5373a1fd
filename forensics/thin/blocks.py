"""Read-only access to a metadata file (or an image of a ``_tmeta`` device) by 4096-byte block.

The file is memory-mapped read-only; numpy views over the map give the btree node headers of
every block and the file as 64-bit words, so that bulk decoding never copies whole blocks.
Every mapped page that has been read counts in the process's resident size (clean file pages,
but counted): readers call :meth:`MetadataFile.release` after each run of blocks, which unmaps
the pages read so far (``MADV_DONTNEED``; they stay in the page cache and come back on the
next read), so that the resident size follows the run, not the file.
Block numbers are checked against the file's end before any access: a truncated file yields
findings, not exceptions.
"""

from __future__ import annotations

import mmap
import os
import stat
from pathlib import Path
from types import TracebackType

import numpy as np

from forensics.errors import OperationalError
from forensics.formats import thin as fmt

_DONTNEED: int | None = getattr(mmap, "MADV_DONTNEED", None)
#: how far from a page read the kernel may map others (``fault_around_bytes``, 64 KiB)
_FAULT_AROUND = 64 * 1024
#: 64-bit words in a block, as :attr:`MetadataFile.words` sees the file
WORDS_PER_BLOCK = fmt.BLOCK_SIZE // 8
#: 32-bit words in a block: a block's checksum (the first field of every header) is word 0
_WORDS32_PER_BLOCK = fmt.BLOCK_SIZE // fmt.CSUM_SIZE


def fd_size(fd: int) -> int:
    """The size of the file or block device open as ``fd``."""
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode):
        return st.st_size
    return os.lseek(fd, 0, os.SEEK_END)  # a block device: its size is where its end is


class MetadataOpenError(OperationalError):
    """The metadata cannot be opened or read at all (missing, a directory, no permission)."""


class MetadataFile:
    """A metadata file opened read-only. ``nr_blocks`` counts whole blocks; a partial last
    block is ignored (and reported by the checker)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise MetadataOpenError(f"{path}: {exc.strerror or exc}") from None
        try:
            self.size = self._size(fd)
            self._map = mmap.mmap(fd, self.size, access=mmap.ACCESS_READ) if self.size else None
        except OSError as exc:
            raise MetadataOpenError(f"{path}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)
        self.nr_blocks = self.size // fmt.BLOCK_SIZE
        buffer = self._map if self._map is not None else b""
        length = self.nr_blocks * fmt.BLOCK_SIZE
        #: the node header fields of every whole block (a structured array, one item per block)
        self.headers = np.frombuffer(buffer, dtype=fmt.NODE_BLOCK_DTYPE, count=self.nr_blocks)
        #: the whole blocks as little-endian 64-bit words, flat
        self.words = np.frombuffer(buffer, dtype="<u8", count=length // 8)
        #: the whole blocks as little-endian 32-bit words, flat
        self.words32 = np.frombuffer(buffer, dtype="<u4", count=length // 4)
        #: the whole blocks as bytes, one row per block
        self.bytes = np.frombuffer(buffer, dtype=np.uint8, count=length).reshape(-1, 4096)

    @staticmethod
    def _size(fd: int) -> int:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(21, "is a directory")
        return fd_size(fd)

    def __enter__(self) -> MetadataFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.headers = self.words = self.words32 = self.bytes = np.zeros(0)
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # a caller still holds a view; the map goes with it
                pass
            self._map = None

    def release(self, first: int | None = None, end: int | None = None) -> None:
        """Hand the pages read so far back to the page cache (reads after this still work):
        all of them, or those of blocks ``first..end-1`` and the pages that the kernel's
        fault-around mapped beside them (a range is quicker to hand back than the whole map)."""
        if self._map is None or _DONTNEED is None:
            return
        if first is None or end is None:
            self._map.madvise(_DONTNEED)
            return
        start = max(0, first * fmt.BLOCK_SIZE - _FAULT_AROUND) // mmap.PAGESIZE * mmap.PAGESIZE
        stop = min(self.size, end * fmt.BLOCK_SIZE + _FAULT_AROUND)
        if stop > start:
            self._map.madvise(_DONTNEED, start, stop - start)

    def contains(self, blocknr: int) -> bool:
        return 0 <= blocknr < self.nr_blocks

    def block(self, blocknr: int) -> bytes:
        """The 4096 bytes of block ``blocknr``, which must be :meth:`contains`-ed."""
        if not self.contains(blocknr):
            raise IndexError(f"block {blocknr} is past the end of {self.path}")
        assert self._map is not None
        start = blocknr * fmt.BLOCK_SIZE
        return self._map[start : start + fmt.BLOCK_SIZE]

    def head(self, length: int) -> bytes:
        """The first ``length`` bytes of the file (fewer if it is shorter)."""
        if self._map is None:
            return b""
        return self._map[: min(length, self.size)]

    def checksum_ok(self, blocknr: int, xor: int) -> bool:
        return fmt.checksum_ok(self.block(blocknr), xor)

    def checksums_ok(self, blocks: np.ndarray, xor: int) -> np.ndarray:
        """The checksum verdict of each block in ``blocks`` (all inside the file): the stored
        checksums read at once, each block's computed over a row of :attr:`bytes` (a view, not
        a copy; the C extension takes numpy arrays, not memoryviews of the map)."""
        blocks = np.asarray(blocks, dtype=np.int64)
        stored = self.words32[blocks * _WORDS32_PER_BLOCK]
        body = self.bytes[:, fmt.CSUM_SIZE :]
        value = fmt.google_crc32c.value
        computed = np.fromiter(
            (value(body[b]) for b in blocks.tolist()), dtype=np.uint32, count=blocks.size
        )
        return stored == (computed ^ np.uint32(0xFFFFFFFF ^ xor))
