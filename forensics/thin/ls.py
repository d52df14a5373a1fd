"""``thin ls``: per device, mapped, exclusive and shared blocks, with creation and snapshot times.

The numbers are thin_ls 0.9.0's: ``mapped`` is the device's ``mapped_blocks`` from the details
tree; a mapping is *exclusive* when its data block is mapped exactly once in the whole pool
(counting every device's mappings, shared subtrees included), and ``shared`` is mapped minus
exclusive. The text output is thin_ls's grid for the fields
``DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,TRANSACTION,CREATE_TIME,SNAP_TIME``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from forensics.formats import thin as fmt
from forensics.thin.pool import Pool

#: past this many data blocks, sharing is counted by sorting instead of through a table
TABLE_LIMIT = 1 << 28

HEADERS = (
    "DEV",
    "MAPPED_BLOCKS",
    "EXCLUSIVE_BLOCKS",
    "SHARED_BLOCKS",
    "TRANSACTION",
    "CREATE_TIME",
    "SNAP_TIME",
)


@dataclass(frozen=True)
class DeviceUsage:
    dev_id: int
    mapped_blocks: int
    exclusive_blocks: int
    shared_blocks: int
    transaction: int
    creation_time: int
    snap_time: int
    #: mappings actually found in the device's tree (mapped_blocks is the details' word)
    counted_mappings: int

    def row(self) -> list[int]:
        return [
            self.dev_id,
            self.mapped_blocks,
            self.exclusive_blocks,
            self.shared_blocks,
            self.transaction,
            self.creation_time,
            self.snap_time,
        ]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def exclusive_per_owner(pool: Pool) -> tuple[np.ndarray, np.ndarray]:
    """Exclusive and counted mappings per tree of the mapping forest."""
    forest = pool.mappings
    assert forest is not None
    n = len(forest.owners)
    if forest.keys.size == 0:
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    refs_per_leaf = np.bincount(forest.ref_leaf, minlength=forest.leaf_nr.size)
    leaf = forest.leaf_of_entry()
    data = (forest.values >> np.uint64(fmt.TIME_BITS)).astype(np.int64)
    once = _mapped_once(data, refs_per_leaf[leaf], pool.nr_data_blocks)
    exclusive_per_leaf = np.bincount(leaf[once], minlength=forest.leaf_nr.size)
    weights = exclusive_per_leaf[forest.ref_leaf].astype(np.float64)
    exclusive = np.bincount(forest.ref_owner, weights=weights, minlength=n).astype(np.int64)
    return exclusive, forest.entries_per_owner()


def _mapped_once(data: np.ndarray, weights: np.ndarray, nr_data_blocks: int) -> np.ndarray:
    """For each entry, whether its data block is mapped exactly once in the pool; an entry
    stands for ``weights`` mappings (the trees that reach its leaf). Counting goes through a
    table of the data device's size; blocks past its end (damage) through a sort."""
    once = np.zeros(data.size, dtype=bool)
    size = min(nr_data_blocks, TABLE_LIMIT)
    inside = data < size
    table = np.bincount(data[inside], weights=weights[inside], minlength=size)
    once[inside] = table[data[inside]] == 1
    if not inside.all():
        uniq, inverse = np.unique(data[~inside], return_inverse=True)
        counts = np.bincount(inverse, weights=weights[~inside], minlength=uniq.size)
        once[~inside] = counts[inverse] == 1
    return once


def device_usage(pool: Pool) -> list[DeviceUsage]:
    exclusive, counted = exclusive_per_owner(pool)
    assert pool.mappings is not None
    index = {dev_id: i for i, dev_id in enumerate(pool.mappings.owners)}
    out = []
    for dev_id, dev in pool.details.items():
        i = index.get(dev_id)
        excl = int(exclusive[i]) if i is not None else 0
        out.append(
            DeviceUsage(
                dev_id,
                dev.mapped_blocks,
                excl,
                dev.mapped_blocks - excl,
                dev.transaction_id,
                dev.creation_time,
                dev.snapshotted_time,
                int(counted[i]) if i is not None else 0,
            )
        )
    return out


def usage_text(usage: list[DeviceUsage]) -> str:
    """thin_ls's grid: every field right-aligned to its column and followed by a space."""
    rows = [list(HEADERS)] + [[str(v) for v in u.row()] for u in usage]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    return "".join(
        "".join(field.rjust(w) + " " for field, w in zip(row, widths, strict=True)) + "\n"
        for row in rows
    )
