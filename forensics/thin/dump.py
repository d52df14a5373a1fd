"""``thin dump``: the pool as thin_dump 0.9.0's XML, byte for byte on valid metadata.

Devices come in the order of the details tree. Within a device, consecutive mappings whose
virtual and data blocks both advance by one and whose times are equal merge into one
``range_mapping``; a run of one is a ``single_mapping``. The superblock's uuid is always written
empty, and a metadata snapshot (held root) is not mentioned: thin_dump 0.9.0 does the same.
On damaged metadata the readable part is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

import numpy as np

from forensics.thin.btree import CHUNK_LEAVES
from forensics.thin.mappings import data_blocks, run_lengths, run_starts, times
from forensics.thin.pool import Pool


def superblock_open(pool: Pool) -> str:
    sb = pool.superblock
    assert sb is not None
    return (
        f'<superblock uuid="" time="{sb.time}" transaction="{sb.trans_id}" flags="{sb.flags}" '
        f'version="{sb.version}" data_block_size="{sb.data_block_size}" '
        f'nr_data_blocks="{pool.nr_data_blocks}">\n'
    )


def dump_chunks(pool: Pool, leaves_per_chunk: int = CHUNK_LEAVES) -> Iterator[str]:
    """The XML in pieces: a device's mappings are read ``leaves_per_chunk`` leaves at a time, so
    that memory follows the run, not the biggest device."""
    yield superblock_open(pool)
    forest = pool.mappings
    index = {dev_id: i for i, dev_id in enumerate(forest.owners)} if forest is not None else {}
    for dev_id, dev in pool.details.items():
        yield (
            f'  <device dev_id="{dev_id}" mapped_blocks="{dev.mapped_blocks}" '
            f'transaction="{dev.transaction_id}" creation_time="{dev.creation_time}" '
            f'snap_time="{dev.snapshotted_time}">\n'
        )
        if forest is not None and dev_id in index and dev_id in pool.roots:
            yield from device_lines(forest.entry_runs(index[dev_id], leaves_per_chunk))
        yield "  </device>\n"
    yield "</superblock>\n"


#: one ``range_mapping`` or ``single_mapping``: origin, data block, length, time
Run = tuple[int, int, int, int]


def device_lines(entry_runs: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[str]:
    """The mapping lines of one device whose sorted mappings come in runs: a run of mappings
    that goes on across the end of one run of entries merges with the next run's first."""
    pending: Run | None = None
    for vblocks, block_times in entry_runs:
        runs = mapping_runs(vblocks, block_times)
        if not runs:
            continue
        if pending is not None and _continues(pending, runs[0]):
            runs[0] = (pending[0], pending[1], pending[2] + runs[0][2], pending[3])
        elif pending is not None:
            runs.insert(0, pending)
        pending = runs.pop()
        if runs:
            yield "".join(map(_line, runs))
    if pending is not None:
        yield _line(pending)


def _continues(run: Run, after: Run) -> bool:
    origin, data, length, time = run
    return after[0] == origin + length and after[1] == data + length and after[3] == time


def _line(run: Run) -> str:
    o, d, k, t = run
    if k == 1:
        return f'    <single_mapping origin_block="{o}" data_block="{d}" time="{t}"/>\n'
    return f'    <range_mapping origin_begin="{o}" data_begin="{d}" length="{k}" time="{t}"/>\n'


def mapping_runs(vblocks: np.ndarray, block_times: np.ndarray) -> list[Run]:
    """The runs of sorted mappings whose virtual and data blocks both advance by one and whose
    times are equal."""
    n = vblocks.size
    if n == 0:
        return []
    data, stamps = data_blocks(block_times), times(block_times)
    starts = run_starts(vblocks, data, stamps)
    return list(
        zip(
            vblocks[starts].tolist(),
            data[starts].tolist(),
            run_lengths(starts, n).tolist(),
            stamps[starts].tolist(),
            strict=True,
        )
    )


def write_dump(pool: Pool, out: BinaryIO) -> None:
    for chunk in dump_chunks(pool):
        out.write(chunk.encode("ascii"))
