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

from forensics.thin.btree import Forest
from forensics.thin.mappings import data_blocks
from forensics.thin.pool import Pool

#: the table of data blocks covers at least this many blocks (1 MiB), else four per mapping
TABLE_MIN = 1 << 20

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
    """Exclusive and counted mappings per tree of the mapping forest.

    A data block is mapped once in the pool when exactly one distinct leaf holds it once and
    that leaf is reached by one tree only (a leaf shared by snapshots maps its blocks once per
    tree). Two passes over the leaves, a run at a time: the first counts each data block's
    entries in a table, the second picks the entries whose block counts one."""
    forest = pool.mappings
    assert forest is not None
    n = len(forest.owners)
    if forest.nr_entries == 0:
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    refs_per_leaf = np.bincount(forest.ref_leaf, minlength=forest.leaf_nr.size)
    table = _EntryTable.of(forest, pool.nr_data_blocks)
    exclusive_per_leaf = np.zeros(forest.leaf_nr.size, dtype=np.int64)
    for part, values in forest.value_chunks():
        leaf = forest.chunk_leaf_of_entry(part)
        once = table.once(data_blocks(values)) & (refs_per_leaf[leaf] == 1)
        exclusive_per_leaf += np.bincount(leaf[once], minlength=exclusive_per_leaf.size)
    weights = exclusive_per_leaf[forest.ref_leaf].astype(np.float64)
    exclusive = np.bincount(forest.ref_owner, weights=weights, minlength=n).astype(np.int64)
    return exclusive, forest.entries_per_owner()


@dataclass
class _EntryTable:
    """How many entries of distinct leaves hold each data block, saturated at 2 (one byte a
    block). The table covers the data device, or fewer blocks when the device claims more than
    the mappings could use: the table then stays a small multiple of the mappings, and blocks
    past it (damage) are counted by sorting."""

    counts: np.ndarray
    outside: np.ndarray
    outside_counts: np.ndarray

    @classmethod
    def of(cls, forest: Forest, nr_data_blocks: int) -> _EntryTable:
        size = min(nr_data_blocks, max(TABLE_MIN, 4 * forest.nr_entries))
        counts = np.zeros(size, dtype=np.uint8)
        beyond: list[np.ndarray] = []
        for _, values in forest.value_chunks():
            data = data_blocks(values)
            inside = data < np.uint64(size)
            # by sorting the run: np.bincount would need 8 bytes per block of the table
            blocks, seen = np.unique(data[inside], return_counts=True)
            counts[blocks] = np.minimum(counts[blocks] + np.minimum(seen, 2), 2)
            if not inside.all():
                beyond.append(data[~inside])
        outside, outside_counts = np.unique(
            np.concatenate(beyond) if beyond else np.zeros(0, np.uint64), return_counts=True
        )
        return cls(counts, outside, outside_counts)

    def once(self, data: np.ndarray) -> np.ndarray:
        """Whether each data block is held by exactly one entry."""
        inside = data < np.uint64(self.counts.size)
        out = np.zeros(data.size, dtype=bool)
        out[inside] = self.counts[data[inside]] == 1
        if not inside.all():
            at = np.searchsorted(self.outside, data[~inside])
            out[~inside] = self.outside_counts[at] == 1
        return out


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
    """thin_ls's grid: every field right-aligned to its column and followed by a space. No
    devices, no grid (not even its header)."""
    if not usage:
        return ""
    rows = [list(HEADERS)] + [[str(v) for v in u.row()] for u in usage]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    return "".join(
        "".join(field.rjust(w) + " " for field, w in zip(row, widths, strict=True)) + "\n"
        for row in rows
    )
