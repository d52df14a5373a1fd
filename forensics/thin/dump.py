"""``thin dump``: the pool as thin_dump 0.9.0's XML, byte for byte on valid metadata.

Devices come in the order of the details tree. Within a device, consecutive mappings whose
virtual and data blocks both advance by one and whose times are equal merge into one
``range_mapping``; a run of one is a ``single_mapping``. The superblock's uuid is always written
empty, and a metadata snapshot (held root) is not mentioned: thin_dump 0.9.0 does the same.
On damaged metadata the readable part is written.

The runs are found by numpy a run of leaves at a time; their lines are joined and written once
per run of leaves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

import numpy as np

from forensics.thin.btree import CHUNK_LEAVES
from forensics.thin.mappings import data_blocks, run_lengths, run_starts, times
from forensics.thin.pool import Pool


def superblock_open(pool: Pool) -> bytes:
    sb = pool.superblock
    assert sb is not None
    return (
        f'<superblock uuid="" time="{sb.time}" transaction="{sb.trans_id}" flags="{sb.flags}" '
        f'version="{sb.version}" data_block_size="{sb.data_block_size}" '
        f'nr_data_blocks="{pool.nr_data_blocks}">\n'
    ).encode()


def dump_chunks(pool: Pool, leaves_per_chunk: int = CHUNK_LEAVES) -> Iterator[bytes]:
    """The XML (ASCII) in pieces: a device's mappings are read ``leaves_per_chunk`` leaves at a
    time, so that memory follows the run, not the biggest device."""
    yield superblock_open(pool)
    forest = pool.mappings
    index = {dev_id: i for i, dev_id in enumerate(forest.owners)} if forest is not None else {}
    for dev_id, dev in pool.details.items():
        yield (
            f'  <device dev_id="{dev_id}" mapped_blocks="{dev.mapped_blocks}" '
            f'transaction="{dev.transaction_id}" creation_time="{dev.creation_time}" '
            f'snap_time="{dev.snapshotted_time}">\n'
        ).encode()
        if forest is not None and dev_id in index and dev_id in pool.roots:
            yield from device_lines(forest.entry_runs(index[dev_id], leaves_per_chunk))
        yield b"  </device>\n"
    yield b"</superblock>\n"


class Runs:
    """Runs of mappings, one per ``range_mapping``/``single_mapping`` line: origin, data block,
    length, time (arrays of the same size)."""

    def __init__(
        self, origin: np.ndarray, data: np.ndarray, length: np.ndarray, time: np.ndarray
    ) -> None:
        self.origin, self.data, self.length, self.time = origin, data, length, time

    @classmethod
    def of(cls, vblocks: np.ndarray, block_times: np.ndarray) -> Runs:
        """The runs of sorted mappings whose virtual and data blocks both advance by one and
        whose times are equal."""
        data, stamps = data_blocks(block_times), times(block_times)
        starts = run_starts(vblocks, data, stamps)
        lengths = run_lengths(starts, vblocks.size).astype(np.uint64)
        return cls(vblocks[starts], data[starts], lengths, stamps[starts])

    def __len__(self) -> int:
        return int(self.origin.size)

    def part(self, lo: int, hi: int) -> Runs:
        return Runs(self.origin[lo:hi], self.data[lo:hi], self.length[lo:hi], self.time[lo:hi])

    def continued_by(self, after: Runs) -> bool:
        """Whether the last run goes on in the first of ``after`` (a run cut by a chunk)."""
        length = int(self.length[-1])
        return (
            int(after.origin[0]) == int(self.origin[-1]) + length
            and int(after.data[0]) == int(self.data[-1]) + length
            and int(after.time[0]) == int(self.time[-1])
        )


def device_lines(entry_runs: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[bytes]:
    """The mapping lines of one device whose sorted mappings come in runs of entries: a run of
    mappings that goes on across the end of one run of entries merges with the next one's. Each
    run of entries is written when the next is known (its last line may change)."""
    held: Runs | None = None
    for vblocks, block_times in entry_runs:
        runs = Runs.of(vblocks, block_times)
        if not len(runs):
            continue
        if held is not None:
            if held.continued_by(runs):
                runs.length[0] += held.length[-1]
                runs.origin[0], runs.data[0] = held.origin[-1], held.data[-1]
                held = held.part(0, len(held) - 1)
            if len(held):
                yield mapping_lines(held)
        held = runs
    if held is not None:
        yield mapping_lines(held)


def mapping_lines(runs: Runs) -> bytes:
    """The ``range_mapping``/``single_mapping`` lines of ``runs``, as thin_dump writes them."""
    lines = [
        f'    <single_mapping origin_block="{o}" data_block="{d}" time="{t}"/>\n'
        if k == 1
        else f'    <range_mapping origin_begin="{o}" data_begin="{d}" length="{k}" time="{t}"/>\n'
        for o, d, k, t in zip(
            runs.origin.tolist(),
            runs.data.tolist(),
            runs.length.tolist(),
            runs.time.tolist(),
            strict=True,
        )
    ]
    return "".join(lines).encode()


def write_dump(pool: Pool, out: BinaryIO) -> None:
    for chunk in dump_chunks(pool):
        out.write(chunk)
