"""``thin check``: everything thin_check 0.9.0 verifies, and what it does not.

thin_check 0.9.0 checks the superblock checksum, every btree node, the device and mapping trees
and the metadata space map. It never compares the data space map (its comparison reads the same
map twice), nor ``mapped_blocks``, nor data blocks against the end of the data device, nor times
and transaction ids. This checker does all of it.

Reference counts are recomputed the way the kernel keeps them (``dm-thin-metadata.c``): a
metadata block counts once per pointer from a node visited for the first time (a subtree shared
by snapshots is walked once); a data block counts once per distinct leaf that maps it.

When a node is unreadable, what lies below it is invisible: its blocks look leaked. Those leaks
are summed up in one finding that names the damage, instead of one finding per block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forensics.formats import thin as fmt
from forensics.thin.btree import Forest
from forensics.thin.findings import ERROR, INFO, WARNING, Findings
from forensics.thin.mappings import data_blocks
from forensics.thin.pool import Pool
from forensics.thin.spacemap import CHUNK_BITMAPS, SpaceMap

#: per-block findings up to this many; past it, one summary finding per kind
PER_BLOCK_LIMIT = 10


@dataclass
class CheckResult:
    pool: Pool
    findings: Findings

    def exit_damage(self) -> bool:
        return self.findings.damaging()


def check_pool(pool: Pool) -> CheckResult:
    """Run every check on a pool read with its space maps; findings are added to the pool's."""
    findings = pool.findings
    if pool.usable:
        uses = _DataUses(pool)
        _check_devices(pool)
        _check_mappings(pool, uses)
        _check_metadata_counts(pool)
        _check_data_counts(pool, uses)
    return CheckResult(pool, findings)


# -- devices -------------------------------------------------------------------------------------


def _check_devices(pool: Pool) -> None:
    sb = pool.superblock
    assert sb is not None and pool.details_forest is not None and pool.top_forest is not None
    details, mapped = set(pool.details), set(pool.roots)
    hidden_details = _hidden(pool.details_forest)
    hidden_top = _hidden(pool.top_forest)
    for dev_id in sorted(details - mapped):
        if not _covered(hidden_top, dev_id):
            pool.findings.add(
                "device.no-mappings",
                None,
                f"device {dev_id} has details but no mapping tree in the top level "
                "(its mappings are lost, or the device was half deleted)",
            )
    for dev_id in sorted(mapped - details):
        if not _covered(hidden_details, dev_id):
            pool.findings.add(
                "device.no-details",
                pool.roots[dev_id],
                f"device {dev_id} has a mapping tree (root {pool.roots[dev_id]}) but no details: "
                "the kernel cannot open it and thin_dump leaves it out",
            )
    for dev_id in sorted(details | mapped):
        if dev_id > fmt.MAX_DEV_ID:
            pool.findings.add("device.id-range", None, f"device id {dev_id} exceeds 24 bits")
    for dev in pool.details.values():
        times = (dev.creation_time, dev.snapshotted_time)
        if dev.creation_time > dev.snapshotted_time or max(times) > sb.time:
            pool.findings.add(
                "device.times",
                None,
                f"device {dev.dev_id}: creation time {dev.creation_time}, snapshot time "
                f"{dev.snapshotted_time}, pool time {sb.time} (expected creation <= snapshot "
                "<= pool)",
            )
        if dev.transaction_id > sb.trans_id:
            pool.findings.add(
                "device.transaction",
                None,
                f"device {dev.dev_id} was created in transaction {dev.transaction_id}, after the "
                f"pool's transaction {sb.trans_id}",
            )


def _hidden(forest: Forest) -> list[tuple[int, int]]:
    return [(d.lo, d.hi) for d in forest.damage]


def _covered(ranges: list[tuple[int, int]], key: int) -> bool:
    return any(lo <= key <= hi for lo, hi in ranges)


# -- mappings ------------------------------------------------------------------------------------


def _check_mappings(pool: Pool, uses: _DataUses) -> None:
    forest = pool.mappings
    sb = pool.superblock
    assert forest is not None and sb is not None
    counted = forest.entries_per_owner()
    damaged = forest.damaged_owners()
    for index, dev_id in enumerate(forest.owners):
        dev = pool.details.get(dev_id)
        if dev is None or dev.mapped_blocks == counted[index]:
            continue
        if index in damaged:
            if counted[index] > dev.mapped_blocks:
                pool.findings.add(
                    "device.mapped-blocks",
                    None,
                    f"device {dev_id}: mapped_blocks is {dev.mapped_blocks} but even the readable "
                    f"part of its tree holds {counted[index]} mappings",
                )
            continue
        pool.findings.add(
            "device.mapped-blocks",
            None,
            f"device {dev_id}: mapped_blocks is {dev.mapped_blocks} but its tree holds "
            f"{counted[index]} mappings",
        )
    checks = _entry_checks(pool.nr_data_blocks, int(sb.time))
    bad = _bad_entries_per_leaf(forest, checks, uses)
    for check, bad_per_leaf in zip(checks, bad, strict=True):
        _report_entries(pool, check, bad_per_leaf)


@dataclass(frozen=True)
class _EntryCheck:
    """A test of mapping values: ``field`` picks the part tested (data block or time), which
    fails at ``bound`` and above."""

    check: str
    shift: int
    mask: int
    bound: int
    problem: str
    name: str

    def field(self, values: np.ndarray) -> np.ndarray:
        return (values >> np.uint64(self.shift)) & np.uint64(self.mask)

    def fails(self, values: np.ndarray) -> np.ndarray:
        return self.field(values) >= np.uint64(self.bound)


def _entry_checks(nr_data_blocks: int, time: int) -> tuple[_EntryCheck, ...]:
    data_mask = (1 << (64 - fmt.TIME_BITS)) - 1
    return (
        _EntryCheck(
            "mapping.data-block-range",
            fmt.TIME_BITS,
            data_mask,
            nr_data_blocks,
            f"data blocks at or past the end of the data device ({nr_data_blocks} blocks)",
            "data block",
        ),
        _EntryCheck(
            "mapping.time",
            0,
            fmt.TIME_MASK,
            time + 1,
            f"a time after the pool's time {time}",
            "time",
        ),
    )


def _bad_entries_per_leaf(
    forest: Forest, checks: tuple[_EntryCheck, ...], uses: _DataUses
) -> list[np.ndarray]:
    """For each check, how many entries of each distinct leaf fail it (one pass over the leaves,
    a run at a time, which also counts the uses of the first span of data blocks)."""
    out = [np.zeros(forest.leaf_nr.size, dtype=np.int64) for _ in checks]
    for part, values in forest.value_chunks():
        leaf = forest.chunk_leaf_of_entry(part)
        for counts, check in zip(out, checks, strict=True):
            counts += np.bincount(leaf[check.fails(values)], minlength=counts.size)
        uses.add(values)
    return out


def _report_entries(pool: Pool, check: _EntryCheck, bad_per_leaf: np.ndarray) -> None:
    """One finding per device whose mappings include entries failing ``check``; only those
    devices' mappings are read again."""
    forest = pool.mappings
    assert forest is not None
    if not bad_per_leaf.any():
        return
    per_ref = bad_per_leaf[forest.ref_leaf]
    for index in np.unique(forest.ref_owner[per_ref > 0]).tolist():
        dev_id = forest.owners[index]
        leaves = forest.leaves_of(index)
        keys, values = forest.entries(index)
        mask = check.fails(values)
        first = int(np.flatnonzero(mask)[0])
        leaf = np.repeat(leaves, forest.leaf_nr[leaves])[first]
        pool.findings.add(
            check.check,
            int(forest.leaf_blocks[leaf]),
            f"device {dev_id}: {int(mask.sum())} mappings to {check.problem}; the first maps "
            f"virtual block {int(keys[first])} to {check.name} {int(check.field(values)[first])}",
        )


# -- reference counts -----------------------------------------------------------------------------


def metadata_references(pool: Pool) -> np.ndarray:
    """Every reference to a metadata block, ascending (the superblock's own included)."""
    parts: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]  # the superblock
    for forest in (pool.details_forest, pool.top_forest, pool.mappings):
        if forest is not None:
            parts.append(forest.references)
    for sm in (pool.metadata_sm, pool.data_sm):
        if sm is not None:
            parts.append(sm.references)
    parts.append(pool.snapshot_references)
    refs = np.concatenate(parts).astype(np.int64)
    refs = refs[refs >= 0]
    refs.sort()
    return refs


def expected_metadata_counts(refs: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Uses of metadata blocks ``lo..hi-1`` among the sorted references ``refs``."""
    a, b = np.searchsorted(refs, [lo, hi])
    return np.bincount(refs[a:b] - lo, minlength=hi - lo)


def expected_data_counts(pool: Pool, lo: int, hi: int) -> np.ndarray:
    """Uses of data blocks ``lo..hi-1``: one per distinct leaf that maps a block, the live
    leaves and those only the metadata snapshot still reaches."""
    counts = np.zeros(hi - lo, dtype=np.uint32)
    for forest in (pool.mappings, pool.snapshot_mappings):
        if forest is not None:
            for _, values in forest.value_chunks():
                _count_uses(counts, values, lo, hi)
    return counts


def _count_uses(counts: np.ndarray, values: np.ndarray, lo: int, hi: int) -> None:
    """Add the uses of data blocks ``lo..hi-1`` by the mapping ``values`` to ``counts``."""
    data = data_blocks(values)
    inside = (data >= np.uint64(lo)) & (data < np.uint64(hi))
    if not inside.all():
        data = data[inside]
    # np.bincount would need 8 bytes per block of the span; add.at with a value of the counts'
    # own type takes numpy's fast path (with a Python int it is 20 times slower)
    np.add.at(counts, (data - np.uint64(lo)).astype(np.intp), np.uint32(1))


class _DataUses:
    """Uses of data blocks, a span of the data space map at a time. The live mappings' uses of
    the first span (for most pools, every data block) are counted on the pass over the leaves
    that checks the mappings' values (:meth:`add`), not on a pass of their own."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        sm = pool.data_sm
        first = next(iter(sm.spans(_span_bitmaps(pool, sm))), None) if sm is not None else None
        self.first = first
        self.counts = np.zeros(first[1] - first[0], dtype=np.uint32) if first else None
        #: whether the pass over the live mappings went through :meth:`add`
        self.added = False

    def add(self, values: np.ndarray) -> None:
        """Count the uses of the first span by a run of the live mappings' values."""
        self.added = True
        if self.first is not None and self.counts is not None:
            _count_uses(self.counts, values, *self.first)

    def __call__(self, lo: int, hi: int) -> np.ndarray:
        """Uses of data blocks ``lo..hi-1`` (a span of :meth:`SpaceMap.spans`)."""
        if (lo, hi) != self.first or self.counts is None or not self.added:
            return expected_data_counts(self.pool, lo, hi)
        counts = self.counts
        if self.pool.snapshot_mappings is not None:
            for _, values in self.pool.snapshot_mappings.value_chunks():
                _count_uses(counts, values, lo, hi)
        return counts


def _check_metadata_counts(pool: Pool) -> None:
    sm = pool.metadata_sm
    if sm is None:
        return
    refs = metadata_references(pool)
    hidden = (
        pool.tree_damage()
        or sm.damaged
        or any(f.check == "device.no-mappings" for f in pool.findings)
    )
    _compare(pool, sm, lambda lo, hi: expected_metadata_counts(refs, lo, hi), "metasm", hidden)


def _check_data_counts(pool: Pool, uses: _DataUses) -> None:
    sm = pool.data_sm
    if sm is None:
        return
    assert pool.mappings is not None
    detached = any(f.check == "device.no-mappings" for f in pool.findings)
    hidden = bool(pool.mappings.damage) or sm.damaged or detached or pool.tree_damage()
    _compare(pool, sm, uses, "datasm", hidden)


@dataclass
class _Differences:
    """Blocks whose count differs one way, gathered span by span: how many, and the first
    ``PER_BLOCK_LIMIT`` with their uses and counts."""

    total: int = 0
    first: list[tuple[int, int, int]] = field(default_factory=list)

    def add(self, lo: int, where: np.ndarray, expected: np.ndarray, actual: np.ndarray) -> None:
        self.total += int(where.size)
        for i in where[: PER_BLOCK_LIMIT - len(self.first)].tolist():
            self.first.append((lo + i, int(expected[i]), int(actual[i])))


def _compare(
    pool: Pool,
    sm: SpaceMap,
    expected_in: Callable[[int, int], np.ndarray],
    prefix: str,
    hidden: bool,
) -> None:
    """Compare the space map's counts with the uses, one span of bitmaps at a time: the uses of
    a span are counted in one pass over the mappings, the counts decoded ``CHUNK_BITMAPS`` at a
    time (decoding takes several bytes a block, the uses four)."""
    low, high = _Differences(), _Differences()
    step = CHUNK_BITMAPS * fmt.ENTRIES_PER_BITMAP
    for lo, hi in sm.spans(_span_bitmaps(pool, sm)):
        uses = expected_in(lo, hi)
        for start in range(lo, hi, step):
            actual, known = sm.counts_in(start, min(start + step, hi))
            expected = uses[start - lo : start - lo + actual.size]
            low.add(start, np.flatnonzero(known & (actual < expected)), expected, actual)
            high.add(start, np.flatnonzero(known & (actual > expected)), expected, actual)
    _report_differences(pool.findings, sm, prefix, low, high, hidden)


def _span_bitmaps(pool: Pool, sm: SpaceMap) -> int:
    """Bitmaps compared at a time: enough that the data space map is compared in a few passes
    over the mappings (each pass reads them all), few enough that a span's counts take no more
    memory than the mappings themselves."""
    if sm.name != "data" or pool.mappings is None:
        return CHUNK_BITMAPS
    entries = int(pool.mappings.leaf_nr.sum())
    return max(CHUNK_BITMAPS, entries // fmt.ENTRIES_PER_BITMAP)


def _report_differences(
    findings: Findings,
    sm: SpaceMap,
    prefix: str,
    low: _Differences,
    high: _Differences,
    hidden: bool,
) -> None:
    name = sm.name
    if low.total:
        _per_block(
            findings,
            f"{prefix}.count",
            low,
            f"{name} block {{b}} is in use {{e}} times but the space map counts {{a}}",
            f"{low.total} {name} blocks are in use more often than the space map counts "
            "(the kernel could hand them out again)",
        )
    if high.total and hidden:
        shown = ", ".join(str(b) for b, _, _ in high.first)
        findings.add(
            f"{prefix}.leak",
            high.first[0][0],
            f"{high.total} {name} blocks are counted higher in the space map than the readable "
            f"trees use them (first: {shown}{', …' if high.total > len(high.first) else ''}); "
            "expected, since the damage reported above hides part of the trees",
        )
    elif high.total:
        _per_block(
            findings,
            f"{prefix}.leak",
            high,
            f"{name} block {{b}} is counted {{a}} times but used {{e}} times (leaked)",
            f"{high.total} {name} blocks are counted higher than they are used (leaked)",
        )
    if sm.nr_allocated != sm.used and not sm.damaged:
        findings.add(
            f"{prefix}.nr-allocated",
            None,
            f"the {name} space map root says {sm.nr_allocated} blocks are allocated, its bitmaps "
            f"{sm.used} (thin_restore 0.9.0 writes one more than its bitmaps hold)",
        )


def _per_block(findings: Findings, check: str, diff: _Differences, one: str, many: str) -> None:
    if diff.total <= PER_BLOCK_LIMIT:
        for b, e, a in diff.first:
            findings.add(check, b, one.format(b=b, e=e, a=a))
        return
    detail = ", ".join(f"{b} ({e} used, {a} counted)" for b, e, a in diff.first)
    findings.add(check, diff.first[0][0], f"{many}: {detail}, …")


# -- rendering ------------------------------------------------------------------------------------


def summary(pool: Pool) -> dict[str, Any]:
    """The superblock in plain numbers, for the report's head."""
    sb = pool.superblock
    if sb is None or not pool.usable:
        return {}
    out: dict[str, Any] = {
        "transaction_id": int(sb.trans_id),
        "time": int(sb.time),
        "flags": int(sb.flags),
        "version": int(sb.version),
        "data_block_size": int(sb.data_block_size),
        "nr_data_blocks": pool.nr_data_blocks,
        "metadata_blocks": int(sb.metadata_space_map_root.nr_blocks),
        "metadata_snapshot": int(sb.held_root) or None,
        "devices": len(pool.details),
    }
    if pool.mappings is not None:
        out["mappings"] = int(pool.mappings.entries_per_owner().sum())
    for key, sm in (("metadata_used", pool.metadata_sm), ("data_used", pool.data_sm)):
        if sm is not None:
            out[key] = sm.used
    return out


def count_line(findings: Findings) -> str:
    """``1 error, 2 warnings, 0 infos``: each severity counted, worded as ``verify`` words it."""
    counts = {s: findings.of_severity(s) for s in (ERROR, WARNING, INFO)}
    return ", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items())


def report_json(result: CheckResult) -> dict[str, Any]:
    findings = result.findings
    return {
        "metadata": str(result.pool.meta.path),
        "superblock": summary(result.pool),
        "summary": {s: findings.of_severity(s) for s in (ERROR, WARNING, INFO)},
        "findings": [f.as_dict() for f in findings],
        "errors": [f.as_dict() for f in findings if f.severity == ERROR],
    }


def report_text(result: CheckResult) -> str:
    lines = []
    head = summary(result.pool)
    if head:
        lines.append(
            "superblock: transaction {transaction_id}, time {time}, {devices} devices, "
            "{nr_data_blocks} data blocks of {data_block_size} sectors, "
            "{metadata_blocks} metadata blocks".format(**head)
        )
    for f in result.findings:
        where = f"block {f.block}" if f.block is not None else "-"
        lines.append(f"{f.severity:<7} {f.check:<26} {where}: {f.message}")
    lines.append(count_line(result.findings))
    return "\n".join(lines) + "\n"
