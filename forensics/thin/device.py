"""One thin device of a pool as a read-only, seekable binary file.

Byte ``o`` of the device lies in virtual block ``o // block_bytes``; the device's mapping tree
(read by :func:`forensics.thin.pool.read_pool`) gives its data block ``d``, and the byte is
``data[d * block_bytes + o % block_bytes]``. An unmapped block reads as zeros, as the kernel's
thin target returns it.

Damage is never guessed over: a read that touches a virtual block whose mapping is unreadable
(a damaged leaf or internal node hides it), or a mapping to a data block past the pool's data
blocks or past the end of the data file, raises :class:`DeviceReadError` naming the device and
the byte range, after returning the bytes before it. The problems known without reading
(:meth:`ThinDevice.damage`) and those met by reads (:attr:`ThinDevice.read_problems`) are kept
as :class:`DeviceProblem` values for the caller to report.

The data file is read through a descriptor the caller opened (read-only), with ``os.preadv``
into the caller's buffer: one call per run of consecutive mapped blocks whose data blocks are
consecutive too. Mappings are looked up a run of leaves at a time (the leaves' first keys are
kept, their entries gathered from the metadata when a read reaches them, a few runs cached).
Nothing is ever written.
"""

from __future__ import annotations

import bisect
import errno
import io
import os
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from forensics.errors import Damage, OperationalError
from forensics.thin.blocks import fd_size
from forensics.thin.btree import KEY_MAX
from forensics.thin.mappings import data_blocks, run_starts
from forensics.thin.pool import Pool

SECTOR = 512
#: leaves whose entries are gathered together when a read reaches one of them
LEAVES_PER_RUN = 16
#: runs of leaves kept (each at most 16 × 252 mappings)
CACHED_RUNS = 8
#: spans of recent reads kept (see ThinDevice._span)
_RECENT_SPANS = 4
#: zeros handed out for unmapped blocks, at most this many bytes at a time
_ZEROS = bytes(1 << 20)

#: kinds of :class:`DeviceProblem`
MAPPING_UNREADABLE = "mapping-unreadable"
DATA_PAST_POOL = "data-past-pool"
DATA_PAST_FILE = "data-past-file"
DATA_UNREADABLE = "data-unreadable"


@dataclass(frozen=True, slots=True)
class DeviceProblem:
    """Bytes ``start``..``end - 1`` of device ``dev_id`` cannot be read as the pool maps them.

    ``kind``: ``mapping-unreadable`` (the mapping tree hides them: ``block`` is the metadata
    block at fault), ``data-past-pool`` (mapped to data blocks the pool does not have),
    ``data-past-file`` (mapped past the end of the data file: it is truncated),
    ``data-unreadable`` (the data file gave an I/O error or fewer bytes than it holds)."""

    dev_id: int
    start: int
    end: int
    kind: str
    detail: str
    block: int | None = None

    def __str__(self) -> str:
        return f"device {self.dev_id}: bytes {self.start}..{self.end - 1}: {self.detail}"

    def as_dict(self) -> dict[str, object]:
        return {
            "device": self.dev_id,
            "start": self.start,
            "end": self.end,
            "kind": self.kind,
            "detail": self.detail,
            "metadata_block": self.block,
        }


class DeviceReadError(Damage, OSError):
    """A read reached bytes of the device that cannot be read (``problem`` says which)."""

    def __init__(self, problem: DeviceProblem) -> None:
        super().__init__(errno.EIO, str(problem))
        self.problem = problem


class DeviceOpenError(OperationalError):
    """The device cannot be served at all: unknown to the pool, or the pool is unusable."""


@dataclass(frozen=True, slots=True)
class _Span:
    """What virtual blocks ``vblock``..``vblock + count - 1`` are: mapped to data blocks
    ``data``.., unmapped (``data`` -1), or unreadable (``problem`` says why)."""

    vblock: int
    count: int
    data: int
    problem: DeviceProblem | None = None


class ThinDevice(io.RawIOBase):
    """Device ``dev_id`` of ``pool`` over the data file open as ``data_fd`` (not closed here).

    ``size`` is the device's length in bytes (Docker's record gives it); without it, the end of
    the last readable mapping. The filesystem libraries read it best unbuffered (they ask for
    the sizes they need; a buffer refilled at every seek costs more than it saves)."""

    def __init__(self, pool: Pool, dev_id: int, data_fd: int, *, size: int | None = None) -> None:
        super().__init__()
        if not pool.usable or pool.superblock is None or pool.mappings is None:
            raise DeviceOpenError("the pool's superblock is unusable: no device can be read")
        if dev_id not in pool.roots:
            raise DeviceOpenError(_unknown_device(pool, dev_id))
        self.dev_id = dev_id
        self.block_bytes = int(pool.superblock.data_block_size) * SECTOR
        if self.block_bytes <= 0:
            raise DeviceOpenError(f"the pool's data block size is {self.block_bytes} bytes")
        self._fd = data_fd
        self._forest = pool.mappings
        owner = pool.mappings.owners.index(dev_id)
        leaves = self._forest.leaves_of(owner)
        self._leaves = leaves[self._forest.leaf_nr[leaves] > 0]
        self._first: list[int] = self._forest.first_keys(self._leaves).tolist()
        self._damage = sorted(
            ((d.lo, d.hi, d.block) for d in self._forest.damage if d.owner == owner),
        )
        self.nr_data_blocks = pool.nr_data_blocks
        self.data_file_size = fd_size(data_fd)
        self._runs: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
        self.size = self._last_mapped_end() if size is None else size
        self._pos = 0
        #: the spans the last reads were in, newest first: a filesystem library reads a few
        #: KiB at a time, going back and forth between a file's data and its metadata
        self._recent: list[_Span] = []
        #: problems met by reads, in the order met (each once)
        self.read_problems: list[DeviceProblem] = []

    # -- io.RawIOBase ----------------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def write(self, _data: object) -> int:
        raise io.UnsupportedOperation("a thin device is read-only here")

    def truncate(self, _size: int | None = None) -> int:
        raise io.UnsupportedOperation("a thin device is read-only here")

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise OSError(errno.EINVAL, f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        want = max(0, min(len(out), self.size - self._pos))
        done = 0
        while done < want:
            try:
                done += self._fill(out[done:want], self._pos + done)
            except DeviceReadError:
                if done:
                    break  # hand out what was read; the next read raises
                raise
        self._pos += done
        return done

    def pread(self, length: int, offset: int) -> bytes:
        """``length`` bytes at ``offset`` (fewer at the end), the position unchanged."""
        keep = self._pos
        try:
            self._pos = offset
            return self.read(length) or b""
        finally:
            self._pos = keep

    def shares_bytes(self, other: ThinDevice, offset: int, length: int) -> bool:
        """True when bytes ``offset``..``offset + length`` of this device are kept in the
        same data blocks of the same pool as ``other``'s: then they are the same bytes (a
        snapshot shares what neither device wrote since). False when any block of them is
        unmapped or its mapping unreadable in either."""
        if other._forest is not self._forest or length <= 0:
            return False
        first = offset // self.block_bytes
        last = (offset + length - 1) // self.block_bytes
        for vblock in range(first, last + 1):
            mine, theirs = self._span(vblock), other._span(vblock)
            if mine.problem is not None or theirs.problem is not None:
                return False
            if mine.data < 0 or mine.data != theirs.data:
                return False
        return True

    # -- problems ---------------------------------------------------------------------------

    def damage(self) -> list[DeviceProblem]:
        """Byte ranges the mapping tree hides (damaged nodes), within the device's size."""
        out = []
        for lo, hi, block in self._damage:
            start = lo * self.block_bytes
            if start >= self.size:
                continue
            end = self.size if hi == KEY_MAX else min(self.size, (hi + 1) * self.block_bytes)
            out.append(self._mapping_problem(start, end, block))
        return out

    def scan(self) -> list[DeviceProblem]:
        """Every problem of the device: :meth:`damage` and each run of mappings to data blocks
        that the pool or the data file does not have (all mappings are read for it)."""
        out = self.damage()
        owner = self._forest.owners.index(self.dev_id)
        limit = np.uint64(self._data_limit())
        for keys, values in self._forest.entry_runs(owner):
            data = data_blocks(values)
            bad = np.flatnonzero(data >= limit)
            if not bad.size:
                continue
            bad_keys = keys[bad].astype(np.int64)
            starts = np.flatnonzero(np.diff(bad_keys, prepend=-2) != 1)
            lengths = np.diff(np.append(starts, bad.size))
            for s, n in zip(starts.tolist(), lengths.tolist(), strict=True):
                problem = self._bounds_problem(int(bad_keys[s]), int(data[bad[s]]), n)
                if problem.start < self.size:
                    out.append(problem)
        return _merge(out)

    # -- reading ----------------------------------------------------------------------------

    def _fill(self, out: memoryview, offset: int) -> int:
        """Fill the start of ``out`` from device offset ``offset``; the number of bytes."""
        vblock, within = divmod(offset, self.block_bytes)
        span = self._span(vblock)
        length = min(len(out), span.count * self.block_bytes - within)
        if span.problem is not None:
            raise self._met(span.problem)
        if span.data < 0:
            _zero(out[:length])
            return length
        at = span.data * self.block_bytes + within
        try:
            got = os.preadv(self._fd, [out[:length]], at)
        except OSError as exc:
            raise self._met(self._data_problem(offset, length, f"the data file: {exc}")) from None
        if got <= 0:
            what = f"the data file gave no bytes at offset {at} (it has {self.data_file_size})"
            raise self._met(self._data_problem(offset, length, what))
        return got

    def _met(self, problem: DeviceProblem) -> DeviceReadError:
        if problem not in self.read_problems:
            self.read_problems.append(problem)
        return DeviceReadError(problem)

    def _span(self, vblock: int) -> _Span:
        recent = self._recent
        for last in recent:
            if last.vblock <= vblock < last.vblock + last.count:
                skip = vblock - last.vblock
                data = last.data + skip if last.data >= 0 else -1
                return _Span(vblock, last.count - skip, data)
        span = self._find_span(vblock)
        if span.problem is None:
            recent.insert(0, span)
            del recent[_RECENT_SPANS:]
        return span

    def _find_span(self, vblock: int) -> _Span:
        for lo, hi, block in self._damage:
            if lo <= vblock <= hi:
                count = min(hi - vblock + 1, 1 << 40)
                start = vblock * self.block_bytes
                end = min(self.size, (vblock + count) * self.block_bytes)
                return _Span(vblock, count, -1, self._mapping_problem(start, end, block))
        leaf = bisect.bisect_right(self._first, vblock) - 1
        if leaf < 0:
            return self._unmapped(vblock, self._first[0] if self._first else None)
        keys, data, run_end = self._run_of(leaf)
        i = int(np.searchsorted(keys, np.uint64(vblock)))
        if i < keys.size and int(keys[i]) == vblock:
            last = int(run_end[i])
            count = int(keys[last]) - vblock + 1
            first_data = int(data[i])
            readable = self._data_limit() - first_data
            if readable >= count:
                return _Span(vblock, count, first_data)
            if readable > 0:  # the rest of the run lies past the end: a span of its own
                return _Span(vblock, readable, first_data)
            problem = self._bounds_problem(vblock, first_data, count)
            return _Span(vblock, count, -1, problem)
        if i < keys.size:
            return self._unmapped(vblock, int(keys[i]))
        following = (leaf // LEAVES_PER_RUN + 1) * LEAVES_PER_RUN
        return self._unmapped(
            vblock, self._first[following] if following < len(self._first) else None
        )

    def _unmapped(self, vblock: int, next_key: int | None) -> _Span:
        """An unmapped span from ``vblock`` to the next mapping or damage (or the end)."""
        stop = next_key if next_key is not None else KEY_MAX
        for lo, _, _ in self._damage:
            if vblock < lo < stop:
                stop = lo
        end_block = -(-self.size // self.block_bytes)
        stop = min(stop, max(end_block, vblock + 1))
        return _Span(vblock, stop - vblock, -1)

    def _run_of(self, leaf: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keys, data blocks and run ends of the run of leaves holding leaf index ``leaf``."""
        run = leaf // LEAVES_PER_RUN
        cached = self._runs.get(run)
        if cached is not None:
            self._runs.move_to_end(run)
            return cached
        part = self._leaves[run * LEAVES_PER_RUN : (run + 1) * LEAVES_PER_RUN]
        keys, values = self._forest.gather(part)
        data = data_blocks(values).astype(np.int64)
        cached = (keys, data, _run_ends(keys.astype(np.int64), data))
        self._runs[run] = cached
        if len(self._runs) > CACHED_RUNS:
            self._runs.popitem(last=False)
        return cached

    def _data_limit(self) -> int:
        return min(self.nr_data_blocks, self.data_file_size // self.block_bytes)

    def _bounds_problem(self, vblock: int, data: int, count: int) -> DeviceProblem:
        """The problem of mappings ``vblock``.. → ``data``.. (``count`` of them), all past the
        pool's data blocks or the data file's end (a partial last block counts as missing)."""
        start = vblock * self.block_bytes
        end = (vblock + count) * self.block_bytes
        if self.size > start:
            end = min(self.size, end)
        first_bad = data
        if first_bad >= self.nr_data_blocks:
            what = (
                f"mapped to data block {first_bad}, past the pool's {self.nr_data_blocks} "
                "data blocks"
            )
            return DeviceProblem(self.dev_id, start, end, DATA_PAST_POOL, what)
        what = (
            f"mapped to data block {first_bad}, past the end of the data file "
            f"({self.data_file_size} bytes: it is truncated)"
        )
        return DeviceProblem(self.dev_id, start, end, DATA_PAST_FILE, what)

    def _mapping_problem(self, start: int, end: int, block: int) -> DeviceProblem:
        what = f"the mapping tree is damaged at metadata block {block}: these blocks are unreadable"
        return DeviceProblem(self.dev_id, start, end, MAPPING_UNREADABLE, what, block)

    def _data_problem(self, offset: int, length: int, what: str) -> DeviceProblem:
        return DeviceProblem(self.dev_id, offset, offset + length, DATA_UNREADABLE, what)

    def _last_mapped_end(self) -> int:
        if not self._leaves.size:
            return 0
        keys, _, _ = self._run_of(len(self._first) - 1)
        return (int(keys[-1]) + 1) * self.block_bytes if keys.size else 0


def open_device(
    pool: Pool, dev_id: int, data_fd: int, *, size: int | None = None, buffer_size: int = 1 << 20
) -> io.BufferedReader:
    """Device ``dev_id`` as a buffered reader (its raw :class:`ThinDevice` is ``.raw``)."""
    return io.BufferedReader(ThinDevice(pool, dev_id, data_fd, size=size), buffer_size)


def _run_ends(keys: np.ndarray, data: np.ndarray) -> np.ndarray:
    """For each entry, the index of the last entry of its run (consecutive keys and data)."""
    n = keys.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = run_starts(keys, data)
    ends = np.append(starts[1:] - 1, n - 1)
    return ends[np.searchsorted(starts, np.arange(n), side="right") - 1]


def _zero(out: memoryview) -> None:
    at = 0
    while at < len(out):
        step = min(len(_ZEROS), len(out) - at)
        out[at : at + step] = _ZEROS[:step]
        at += step


def _unknown_device(pool: Pool, dev_id: int) -> str:
    hidden = pool.top_forest is not None and any(
        d.lo <= dev_id <= d.hi for d in pool.top_forest.damage
    )
    if hidden:
        return (
            f"device {dev_id}: the top level of the mapping tree is damaged where its root "
            "would be; its mappings are unreadable"
        )
    known = ", ".join(str(d) for d in sorted(pool.roots)[:20]) or "none"
    more = ", …" if len(pool.roots) > 20 else ""
    return f"device {dev_id} has no mapping tree in this pool (devices: {known}{more})"


def _merge(problems: list[DeviceProblem]) -> list[DeviceProblem]:
    """Adjacent problems of one kind and cause merged, in byte order."""
    out: list[DeviceProblem] = []
    for p in sorted(problems, key=lambda p: (p.start, p.end)):
        last = out[-1] if out else None
        if (
            last is not None
            and last.kind == p.kind
            and last.block == p.block
            and p.start <= last.end
        ):
            end = max(last.end, p.end)
            out[-1] = DeviceProblem(p.dev_id, last.start, end, p.kind, last.detail, p.block)
        else:
            out.append(p)
    return out
