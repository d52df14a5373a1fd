"""A regular file's bytes read straight from the device through its extents, not through the
filesystem library's own reads.

A backend lists a file's extents in file order, holes included as sparse extents up to the
size (as ``libfsext`` and ``libfsxfs`` list them; the ext4 and xfs backends walk their own
extent trees and lists into the same form): each is an offset, a length and flags.
:func:`plan` turns that list into a :class:`Layout` (runs of the file, each either bytes of
the device or zeros) and checks it first: a data extent must lie inside the device and the
filesystem and must not cover the filesystem's own metadata (superblocks, group descriptors,
bitmaps, inode tables, allocation group headers, the log), and the extents must cover the
file's size; an unwritten (preallocated) extent and a hole read as zeros; nothing past the
size is ever read. :class:`ExtentFile` then serves the file with one positional read per run
of consecutive data extents (a thin device turns it into one ``preadv`` per run of
mapped blocks).
"""

from __future__ import annotations

import bisect
import errno
import io
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from forensics.errors import Damage
from forensics.fs.blockcache import BlockCache
from forensics.fs.rawfile import SizedRawFile
from forensics.fs.tree import UNREADABLE, Refusal

#: the extent flag both libraries set on a hole and on an unwritten extent
EXTENT_SPARSE = 1


def extent_runs(
    extents: list[tuple[int, int, int, bool]], size: int, block_size: int
) -> list[tuple[int, int, int]]:
    """Extents ``(first file block, blocks, first filesystem block, unwritten)`` in file order,
    as the libraries list a file's data: ``(filesystem block × block size, bytes, flags)``, the
    holes between them and up to ``size`` sparse, unwritten extents sparse, the blocks past
    ``size`` (preallocated) left out."""
    out: list[tuple[int, int, int]] = []
    at = 0  # the next file block
    end = -(-size // block_size)
    for first, length, start, unwritten in extents:
        if first >= end:
            break  # blocks past the size (preallocated): never read
        if first > at:
            out.append((0, (first - at) * block_size, EXTENT_SPARSE))
        out.append((start * block_size, length * block_size, EXTENT_SPARSE if unwritten else 0))
        at = first + length
    if end > at:
        out.append((0, (end - at) * block_size, EXTENT_SPARSE))
    return out


#: zeros handed out for holes, at most this many bytes at a time
_ZEROS = bytes(1 << 20)

#: ``read_into(view, device_offset)``: fills the start of ``view``, returns how many bytes
ReadInto = Callable[[memoryview, int], int]


class Reserved:
    """Byte ranges of the device that belong to the filesystem's own structures, sorted,
    overlapping ones merged (adjacent ones keep their names), asked whether a data extent
    overlaps one. Kept as arrays: a filesystem of a million block groups has a few million."""

    def __init__(self, ranges: Iterable[tuple[int, int, str]] = ()) -> None:
        listed = list(ranges)
        self.names: list[str] = []
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for start, end, what in listed:
            self.add(np.array([start], np.int64), np.array([end], np.int64), what)
        self._merge()

    @classmethod
    def of_arrays(cls, parts: Iterable[tuple[np.ndarray, np.ndarray, str]]) -> Reserved:
        """Ranges given as arrays of starts and ends, each array with one name."""
        reserved = cls()
        for starts, ends, what in parts:
            reserved.add(starts, ends, what)
        reserved._merge()
        return reserved

    def add(self, starts: np.ndarray, ends: np.ndarray, what: str) -> None:
        if what not in self.names:
            self.names.append(what)
        kind = np.full(len(starts), self.names.index(what), np.int16)
        self._parts.append((np.asarray(starts, np.int64), np.asarray(ends, np.int64), kind))

    def _merge(self) -> None:
        if self._parts:
            starts = np.concatenate([p[0] for p in self._parts])
            ends = np.concatenate([p[1] for p in self._parts])
            kinds = np.concatenate([p[2] for p in self._parts])
        else:
            starts = ends = np.zeros(0, np.int64)
            kinds = np.zeros(0, np.int16)
        self._parts = []
        keep = ends > starts
        starts, ends, kinds = starts[keep], ends[keep], kinds[keep]
        order = np.lexsort((ends, starts))
        starts, ends, kinds = starts[order], ends[order], kinds[order]
        if len(starts):
            reach = np.maximum.accumulate(ends)
            first = np.ones(len(starts), bool)
            first[1:] = starts[1:] >= reach[:-1]  # not inside what came before: a new range
            at = np.flatnonzero(first)
            self.starts = starts[at]
            self.ends = np.maximum.reduceat(ends, at)
            self.kinds = kinds[at]
        else:
            self.starts, self.ends, self.kinds = starts, ends, kinds

    def __len__(self) -> int:
        return len(self.starts)

    def overlap(self, start: int, length: int) -> tuple[int, str] | None:
        """The first reserved byte in ``start``..``start + length - 1`` and what lies there."""
        i = int(self.starts.searchsorted(start, "right")) - 1
        if i >= 0 and int(self.ends[i]) > start:
            return start, self.names[int(self.kinds[i])]
        if i + 1 < len(self.starts) and int(self.starts[i + 1]) < start + length:
            return int(self.starts[i + 1]), self.names[int(self.kinds[i + 1])]
        return None


@dataclass(frozen=True, slots=True)
class Layout:
    """A file of ``size`` bytes as runs: run ``i`` covers file bytes ``starts[i]`` ..
    ``starts[i] + lengths[i] - 1``, read from device offset ``device[i]``, or zeros when it
    is -1."""

    size: int
    starts: list[int]
    lengths: list[int]
    device: list[int]


@dataclass(frozen=True, slots=True)
class Bounds:
    """What :func:`plan` holds a file's extents against."""

    #: bytes of the device that can hold data (the smaller of the device and the filesystem)
    end: int
    #: what ``end`` is, for messages
    end_what: str
    reserved: Reserved
    #: extents looked at before the file is refused as too fragmented
    max_extents: int


class LayoutError(Damage):
    """The extents do not describe the file's bytes (``too_large``: over a cap)."""

    def __init__(self, detail: str, *, too_large: bool = False) -> None:
        super().__init__(detail)
        self.too_large = too_large


def plan(
    extents: Iterable[tuple[int, int, int]],
    size: int,
    bounds: Bounds,
    to_device: Callable[[int], int | None] = int,
) -> Layout:
    """The layout of a file of ``size`` bytes from its extents ``(offset, length, flags)`` in
    file order; ``to_device`` turns the library's offset of a data extent into a device
    offset (None: it names no place of the filesystem). Raises :class:`LayoutError`."""
    starts: list[int] = []
    lengths: list[int] = []
    device: list[int] = []
    pos = 0
    for count, (offset, length, flags) in enumerate(extents):
        if pos >= size:
            break
        if count >= bounds.max_extents:
            raise LayoutError(f"more than {bounds.max_extents} extents", too_large=True)
        if length <= 0:
            continue
        take = min(length, size - pos)
        at = -1
        if not flags & EXTENT_SPARSE:
            at = _data_extent(offset, take, bounds, to_device, pos)
        if device and (device[-1] < 0) == (at < 0) and (at < 0 or device[-1] + lengths[-1] == at):
            lengths[-1] += take  # consecutive on the device (or zeros after zeros): one run
        else:
            starts.append(pos)
            lengths.append(take)
            device.append(at)
        pos += take
    if pos < size:
        raise LayoutError(f"its extents cover {pos} of its {size} bytes")
    return Layout(size, starts, lengths, device)


def _data_extent(
    offset: int, take: int, bounds: Bounds, to_device: Callable[[int], int | None], pos: int
) -> int:
    at = to_device(offset)
    if at is None or at < 0:
        raise LayoutError(f"the extent at file byte {pos} lies outside the filesystem")
    if at + take > bounds.end:
        raise LayoutError(
            f"the extent at file byte {pos} ({take} bytes at device byte {at}) runs past "
            f"the {bounds.end_what} ({bounds.end} bytes)"
        )
    hit = bounds.reserved.overlap(at, take)
    if hit is not None:
        raise LayoutError(
            f"the extent at file byte {pos} ({take} bytes at device byte {at}) covers "
            f"{hit[1]} (device byte {hit[0]})"
        )
    return at


def read_at(fileobj: BinaryIO, offset: int, size: int) -> bytes | Refusal:
    """``size`` bytes at ``offset`` of the device (fewer at its end), the file position put
    back after (the library keeps its own idea of it)."""
    if isinstance(fileobj, BlockCache):  # no seeking
        try:
            return fileobj.pread(offset, size)
        except OSError as exc:
            return Refusal(UNREADABLE, str(exc))
    keep = fileobj.tell()
    try:
        fileobj.seek(offset)
        return fileobj.read(size) or b""
    except OSError as exc:
        return Refusal(UNREADABLE, str(exc))
    finally:
        fileobj.seek(keep)


def innermost(fileobj: BinaryIO) -> BinaryIO:
    """The device below any buffers and caches."""
    while hasattr(fileobj, "raw"):
        fileobj = fileobj.raw
    return fileobj


def positional_reader(fileobj: BinaryIO) -> ReadInto:
    """How to read device bytes at an offset into a buffer: ``preadv`` on a plain file, else
    the raw file object's own ``readinto`` with its position put back (the library keeps its
    own idea of it)."""
    raw = innermost(fileobj)
    if isinstance(raw, io.FileIO):
        fd = raw.fileno()
        return lambda view, at: os.preadv(fd, [view], at)

    def read_into(view: memoryview, at: int) -> int:
        keep = raw.tell()
        try:
            raw.seek(at)
            return raw.readinto(view) or 0
        finally:
            raw.seek(keep)

    return read_into


class ExtentFile(SizedRawFile):
    """A file's bytes by its :class:`Layout`, read-only and seekable. A read that the device
    cannot serve raises the device's ``OSError`` (a thin device names its damaged range);
    fewer bytes than the device should hold is ``EIO`` naming the file."""

    def __init__(self, layout: Layout, read_into: ReadInto, what: str) -> None:
        super().__init__()
        self.layout, self._read_into, self.what = layout, read_into, what
        self.size = layout.size
        self._pos = 0
        self._run = 0

    def readall(self) -> bytes:
        return self.read(-1)

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when negative); the buffer made no larger
        than what is left of the file (the base class makes one of ``size``)."""
        left = max(0, self.size - self._pos)
        want = left if size is None or size < 0 else min(size, left)
        buffer = bytearray(want)
        got = self.readinto(buffer)
        return bytes(buffer) if got == want else bytes(memoryview(buffer)[:got])

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        want = max(0, min(len(out), self.size - self._pos))
        done = 0
        layout = self.layout
        while done < want:
            i = self._run_at(self._pos + done)
            within = self._pos + done - layout.starts[i]
            n = min(layout.lengths[i] - within, want - done)
            at = layout.device[i]
            if at < 0:
                _zero(out[done : done + n])
            else:
                self._fill(out[done : done + n], at + within)
            done += n
        self._pos += done
        return done

    def _run_at(self, pos: int) -> int:
        layout = self.layout
        i = self._run
        if not layout.starts[i] <= pos < layout.starts[i] + layout.lengths[i]:
            i = bisect.bisect_right(layout.starts, pos) - 1
            self._run = i
        return i

    def _fill(self, view: memoryview, at: int) -> None:
        filled = 0
        while filled < len(view):
            got = self._read_into(view[filled:], at + filled)
            if not got:
                raise OSError(
                    errno.EIO,
                    f"{self.what}: the device gives no bytes at offset {at + filled}",
                )
            filled += got


def _zero(out: memoryview) -> None:
    at = 0
    while at < len(out):
        step = min(len(_ZEROS), len(out) - at)
        out[at : at + step] = _ZEROS[:step]
        at += step
