"""A device's mappings as the bottom level of the mapping tree holds them: sorted virtual blocks,
each with a ``block_time`` value (:data:`forensics.formats.thin.BlockTime`: the data block above
``TIME_BITS``, the time below); and the runs they fall into, where virtual and data blocks both
advance by one (``thin dump`` writes a run as one ``range_mapping``, ``thin extract`` copies it
with one read, a thin device read as a file serves it with one ``preadv``).
"""

from __future__ import annotations

import numpy as np

from forensics.formats import thin as fmt


def data_blocks(block_times: np.ndarray) -> np.ndarray:
    """The data block of each ``block_time`` value."""
    return block_times >> np.uint64(fmt.TIME_BITS)


def times(block_times: np.ndarray) -> np.ndarray:
    """The time of each ``block_time`` value."""
    return block_times & np.uint64(fmt.TIME_MASK)


def run_starts(
    vblocks: np.ndarray, data: np.ndarray, stamps: np.ndarray | None = None
) -> np.ndarray:
    """Where each run of sorted mappings starts (indices): a mapping continues the run before it
    when its virtual and data blocks are each one past the previous mapping's (and, with
    ``stamps``, its time is the same)."""
    if vblocks.size == 0:
        return np.zeros(0, dtype=np.int64)
    goes_on = (vblocks[1:] - vblocks[:-1] == 1) & (data[1:] - data[:-1] == 1)
    if stamps is not None:
        goes_on &= stamps[1:] == stamps[:-1]
    return np.flatnonzero(np.concatenate(([True], ~goes_on)))


def run_lengths(starts: np.ndarray, n: int) -> np.ndarray:
    """The length of each run that starts at ``starts``, of ``n`` mappings in all."""
    return np.diff(np.append(starts, n))
