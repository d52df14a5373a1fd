"""``thin extract``: one thin device's blocks copied out of the pool's data file into a sparse raw
image, each mapped virtual block at its offset, holes where nothing is mapped.

The data file (or device) is only read. A mapping to a data block past the end of the data file
is skipped and reported; the rest is still written.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from forensics.drivers import DEVICEMAPPER_POOL as THIN
from forensics.errors import OperationalError
from forensics.formats import jsonfile
from forensics.thin.mappings import data_blocks, run_lengths, run_starts
from forensics.thin.pool import Pool

SECTOR = 512
CHUNK = 8 << 20


@dataclass
class ExtractResult:
    image: Path
    size: int
    mapped: int
    copied: int
    skipped: list[tuple[int, int]] = field(default_factory=list)


class ExtractError(OperationalError):
    """The device is unknown, or the image cannot be written."""


@dataclass(frozen=True)
class RecordedSize:
    """A thin device's virtual size as Docker's devicemapper driver recorded it."""

    size: int
    record: Path


RECORD_LIMIT = 64 * 1024


def docker_recorded_size(metadata: Path, dev_id: int) -> RecordedSize | None:
    """The size of thin device ``dev_id`` in Docker's records, when ``metadata`` is Docker's
    ``devicemapper/devicemapper/metadata``: the JSON record in ``devicemapper/metadata/`` whose
    ``device_id`` is ``dev_id`` (and not ``deleted``) gives its ``size`` in bytes. None when
    there is no such record (a copy of the metadata elsewhere, a device Docker does not know)."""
    records = _records_beside(metadata)
    if records is None or not records.is_dir():
        return None
    try:
        entries = sorted(os.scandir(records), key=lambda e: e.name)
    except OSError:
        return None
    for entry in entries:
        if entry.name.startswith(".") or entry.name in THIN.pool_records:
            continue
        size = _record_size(Path(entry.path), dev_id)
        if size is not None:
            return RecordedSize(size, Path(entry.path))
    return None


def _records_beside(metadata: Path) -> Path | None:
    """Docker's device records when ``metadata`` lies where a loop-lvm pool's metadata file lies
    in the driver's directory (the driver table's ``pool``/``metadata_name``): ``records`` of
    the same directory; None elsewhere."""
    home = PurePosixPath(os.path.commonpath([THIN.pool, THIN.records]))
    pool_in_home = PurePosixPath(THIN.pool).relative_to(home).parts
    pool_dir = metadata.absolute().parent
    if metadata.name != THIN.metadata_name or pool_dir.parts[-len(pool_in_home) :] != pool_in_home:
        return None
    return pool_dir.parents[len(pool_in_home) - 1] / PurePosixPath(THIN.records).relative_to(home)


def _record_size(path: Path, dev_id: int) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        doc = jsonfile.decode_json(os.read(fd, RECORD_LIMIT))  # devmapper: json.Unmarshal
    except (OSError, jsonfile.JsonDamage):
        return None
    finally:
        os.close(fd)
    if jsonfile.go_int(jsonfile.field(doc, "device_id")) != dev_id:
        return None
    if jsonfile.field(doc, "deleted") is True:
        return None
    return jsonfile.go_uint(jsonfile.field(doc, "size"))


def device_runs(vblocks: np.ndarray, block_times: np.ndarray) -> list[tuple[int, int, int]]:
    """``(virtual start, data start, length)`` of each run of consecutive mappings."""
    if vblocks.size == 0:
        return []
    data = data_blocks(block_times)
    starts = run_starts(vblocks, data)
    lengths = run_lengths(starts, vblocks.size)
    return list(zip(vblocks[starts].tolist(), data[starts].tolist(), lengths.tolist(), strict=True))


def extract_device(
    pool: Pool, dev_id: int, data_path: Path, image: Path, *, size: int | None = None
) -> ExtractResult:
    if dev_id not in pool.roots:
        known = ", ".join(str(d) for d in sorted(pool.roots)) or "none"
        raise ExtractError(f"device {dev_id} has no mapping tree in this pool (devices: {known})")
    assert pool.superblock is not None
    block_bytes = int(pool.superblock.data_block_size) * SECTOR
    vblocks, block_times = pool.device_mappings(dev_id)
    runs = device_runs(vblocks, block_times)
    end = (int(vblocks[-1]) + 1) * block_bytes if vblocks.size else 0
    length = max(end, size or 0)
    src = os.open(data_path, os.O_RDONLY)
    try:
        data_size = os.lseek(src, 0, os.SEEK_END)
        dst = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            result = ExtractResult(image, length, int(vblocks.size), 0)
            os.ftruncate(dst, length)
            for vstart, dstart, count in runs:
                _copy_run(src, dst, data_size, block_bytes, vstart, dstart, count, result)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return result


def _copy_run(
    src: int,
    dst: int,
    data_size: int,
    block_bytes: int,
    vstart: int,
    dstart: int,
    count: int,
    result: ExtractResult,
) -> None:
    available = max(0, min(count, data_size // block_bytes - dstart))
    if available < count:
        result.skipped.append((vstart + available, count - available))
    remaining = available * block_bytes
    src_off, dst_off = dstart * block_bytes, vstart * block_bytes
    while remaining:
        chunk = os.pread(src, min(CHUNK, remaining), src_off)
        if not chunk:
            break
        _write_leaving_holes(dst, chunk, dst_off, block_bytes)
        src_off += len(chunk)
        dst_off += len(chunk)
        remaining -= len(chunk)
    result.copied += available


def _write_leaving_holes(dst: int, chunk: bytes, offset: int, block_bytes: int) -> None:
    """``chunk`` written at ``offset`` of the image (made by truncation: zeros throughout), its
    blocks of zeros left as holes: a mapped block that reads as zeros (never written by mkfs,
    or a hole of the data file) costs no disk space. Runs of blocks holding data are written
    with one call each."""
    view = memoryview(chunk)
    zeros = bytes(block_bytes)
    start = None
    for at in range(0, len(chunk), block_bytes):
        piece = view[at : at + block_bytes]
        if piece == zeros[: len(piece)]:
            if start is not None:
                os.pwrite(dst, view[start:at], offset + start)
                start = None
        elif start is None:
            start = at
    if start is not None:
        os.pwrite(dst, view[start:], offset + start)
