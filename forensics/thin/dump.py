"""``thin dump``: the pool as thin_dump 0.9.0's XML, byte for byte on valid metadata.

Devices come in the order of the details tree. Within a device, consecutive mappings whose
virtual and data blocks both advance by one and whose times are equal merge into one
``range_mapping``; a run of one is a ``single_mapping``. The superblock's uuid is always written
empty, and a metadata snapshot (held root) is not mentioned: thin_dump 0.9.0 does the same.
On damaged metadata the readable part is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from forensics.formats import thin as fmt
from forensics.thin.pool import Pool


def superblock_open(pool: Pool) -> str:
    sb = pool.superblock
    assert sb is not None
    return (
        f'<superblock uuid="" time="{sb.time}" transaction="{sb.trans_id}" flags="{sb.flags}" '
        f'version="{sb.version}" data_block_size="{sb.data_block_size}" '
        f'nr_data_blocks="{pool.nr_data_blocks}">\n'
    )


def dump_chunks(pool: Pool) -> Iterator[str]:
    """The XML in pieces of about one device each."""
    yield superblock_open(pool)
    for dev_id, dev in pool.details.items():
        head = (
            f'  <device dev_id="{dev_id}" mapped_blocks="{dev.mapped_blocks}" '
            f'transaction="{dev.transaction_id}" creation_time="{dev.creation_time}" '
            f'snap_time="{dev.snapshotted_time}">\n'
        )
        vblocks, block_times = pool.device_mappings(dev_id)
        yield head + "".join(mapping_lines(vblocks, block_times)) + "  </device>\n"
    yield "</superblock>\n"


def mapping_lines(vblocks: np.ndarray, block_times: np.ndarray) -> list[str]:
    """The ``range_mapping``/``single_mapping`` lines of one device's sorted mappings."""
    n = vblocks.size
    if n == 0:
        return []
    data = block_times >> np.uint64(fmt.TIME_BITS)
    times = block_times & np.uint64(fmt.TIME_MASK)
    cont = (
        (vblocks[1:] - vblocks[:-1] == 1) & (data[1:] - data[:-1] == 1) & (times[1:] == times[:-1])
    )
    starts = np.flatnonzero(np.concatenate(([True], ~cont)))
    lengths = np.diff(np.append(starts, n))
    origin = vblocks[starts].tolist()
    begin = data[starts].tolist()
    stamp = times[starts].tolist()
    return [
        f'    <single_mapping origin_block="{o}" data_block="{d}" time="{t}"/>\n'
        if k == 1
        else f'    <range_mapping origin_begin="{o}" data_begin="{d}" length="{k}" time="{t}"/>\n'
        for o, d, k, t in zip(origin, begin, lengths.tolist(), stamp, strict=True)
    ]


def write_dump(pool: Pool, out: BinaryIO) -> None:
    for chunk in dump_chunks(pool):
        out.write(chunk.encode("ascii"))
