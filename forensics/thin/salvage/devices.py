"""The devices of a repaired copy, put together from the readable pieces: each device's readable
mappings, the leaves the kernel would still read (too few entries), cut-off subtrees put back
where they fit, a borrowed mapping root given back to its owner; and the account of each
device (:class:`DeviceOutcome`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from forensics.thin.blocks import MetadataFile
from forensics.thin.btree import KEY_MAX, Damage, key_range
from forensics.thin.mappings import data_blocks, times
from forensics.thin.node import (
    WRITTEN_MAPPING_LEAF,
    NodeError,
    keys_ascend,
    keys_within,
    node_error,
)
from forensics.thin.pool import DeviceDetails
from forensics.thin.salvage.scan import (
    MAPPING_VALUE_SIZE,
    TOP_VALUE_SIZE,
    NodeScan,
    kind_fits,
    node_entries,
    walk_devices,
    walk_tree,
)
from forensics.thin.salvage.superblock import Header
from forensics.thin.salvage.trees import Trees
from forensics.thin.write import DeviceRecord


@dataclass
class DeviceOutcome:
    """What became of one device. ``lost`` is None when how many mappings were lost is not
    known (its details, which count them, are lost too)."""

    dev_id: int
    written: int
    expected: int | None
    lost: int | None
    complete: bool
    details_rebuilt: bool = False
    #: metadata blocks of cut-off subtrees put back into this device's tree
    reattached: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Device:
    """One device being put together from readable pieces."""

    dev_id: int
    details: DeviceDetails | None
    keys: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
    #: unreadable key ranges, with the metadata block at fault (None: the tree is gone)
    holes: list[tuple[int, int, int | None]] = field(default_factory=list)
    reattached: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tree: bool = True

    def count(self) -> int:
        return sum(k.size for k in self.keys)

    def add(self, keys: np.ndarray, values: np.ndarray) -> None:
        if keys.size:
            self.keys.append(keys.astype(np.uint64))
            self.values.append(values.astype(np.uint64))

    def overlaps(self, first: int, last: int) -> bool:
        return any(
            bool(((k >= np.uint64(first)) & (k <= np.uint64(last))).any()) for k in self.keys
        )

    def hole_for(self, first: int, last: int) -> bool:
        return any(lo <= first and last <= hi for lo, hi, _ in self.holes)


def assemble_devices(
    meta: MetadataFile, trees: Trees, header: Header
) -> tuple[list[DeviceRecord], list[DeviceOutcome], list[str]]:
    """Every device the trees name, as written into the copy, with the account of each and
    what was lost that belongs to no known device. Sets ``header.time`` when the superblock's
    is lost (the latest time found)."""
    forest = trees.mappings
    index = {dev_id: i for i, dev_id in enumerate(forest.owners)}
    devices: dict[int, Device] = {}
    for dev_id in sorted(set(trees.details) | set(trees.roots)):
        dev = Device(dev_id, trees.details.get(dev_id))
        i = index.get(dev_id)
        if i is None:
            dev.tree = False
            dev.holes.append((0, KEY_MAX, None))
        else:
            dev.add(*forest.entries(i))
            for d in forest.damage:
                if d.owner == i:
                    dev.holes.append((d.lo, d.hi, d.block))
                    dev.add(*_lenient_leaf(meta, d))
        devices[dev_id] = dev
    _drop_borrowed_trees(trees, devices)
    lost: list[str] = []
    if any(d.holes for d in devices.values()):
        lost += _reattach(meta, trees, devices)
    lost += _hidden_devices(trees)
    if header.time is None:
        header.time = _latest_time(list(devices.values()))
    records, outcomes = [], []
    for dev in devices.values():
        record, outcome = _finish(dev, header)
        records.append(record)
        outcomes.append(outcome)
    return records, outcomes, lost


def _drop_borrowed_trees(trees: Trees, devices: dict[int, Device]) -> None:
    """A mapping root that points at another device's tree is no tree of this device.

    Devices share a root legitimately (a snapshot not written to since), and then the metadata
    space map counts the root once per device. A root that more devices name than the space
    map counts was borrowed by the devices whose ``mapped_blocks`` it does not fit: their trees
    are dropped here, to be looked for among the cut-off subtrees (whose size then equals their
    ``mapped_blocks``) or reported lost, never written as theirs. Without the counts nothing is
    dropped (``mapped_blocks`` alone may be the damaged part)."""
    sharers: dict[int, list[Device]] = {}
    for dev in devices.values():
        root = trees.roots.get(dev.dev_id)
        if root is not None and dev.tree and not dev.holes:
            sharers.setdefault(root, []).append(dev)
    for root, group in sharers.items():
        if len(group) < 2:
            continue
        fits = [d for d in group if d.details is not None and d.count() == d.details.mapped_blocks]
        misfits = [d for d in group if d.details is not None and d not in fits]
        counted = _count_of(trees.counts, root)
        if not fits or not misfits or counted is None or counted >= len(group):
            continue  # shared as the space map says, or no telling whose it is
        owners = ", ".join(str(d.dev_id) for d in fits)
        for dev in misfits:
            assert dev.details is not None
            dev.notes.append(
                f"its mapping root (block {root}) is the tree of device {owners}, not its own: "
                f"{dev.count()} mappings where its details count {dev.details.mapped_blocks}, "
                f"and the space map counts the root {counted} time(s) for {len(group)} devices"
            )
            dev.keys, dev.values = [], []
            dev.tree = False
            dev.holes = [(0, KEY_MAX, None)]


def _count_of(counts: np.ndarray | None, block: int) -> int | None:
    if counts is None or not 0 <= block < counts.size:
        return None
    value = int(counts[block])
    return value if value >= 0 else None


def _lenient_leaf(meta: MetadataFile, damage: Damage) -> tuple[np.ndarray, np.ndarray]:
    """The entries of a damaged mapping leaf whose only fault is one the kernel ignores (too
    few entries for a non-root node): sound checksum, block number, flags, value size and
    ``max_entries``, keys ascending inside the range its parent gives."""
    empty = np.zeros(0, dtype=np.uint64)
    block = damage.block
    if not meta.contains(block):
        return empty, empty
    if node_error(meta, block, WRITTEN_MAPPING_LEAF, root=False) != NodeError.NONE:
        return empty, empty
    keys, values = node_entries(meta, block)
    if keys.size == 0 or not keys_ascend(keys):
        return empty, empty
    if not keys_within(int(keys[0]), int(keys[-1]), damage.lo, damage.hi):
        return empty, empty
    return keys.copy(), values.copy()


@dataclass
class _Orphan:
    block: int
    keys: np.ndarray
    values: np.ndarray
    count: int


def _reattach(meta: MetadataFile, trees: Trees, devices: dict[int, Device]) -> list[str]:
    """Put cut-off mapping subtrees back where they fit; say what could not be placed."""
    if trees.counts is None:
        return ["the metadata space map is unreadable: cut-off subtrees are not searched for"]
    limit = min(meta.nr_blocks, trees.counts.size)
    scan = NodeScan.of(meta, limit, trees.counts)
    candidates = scan.live.copy()
    for block in trees.reached:
        if 0 <= block < limit:
            candidates[block] = False
    # a top level or a bottom-level subtree (their leaves' values are both 8 bytes)
    roots = [r for r in scan.roots(candidates) if scan.leaf_kind(r) == MAPPING_VALUE_SIZE]
    tops = [r for r in roots if kind_fits(scan, r, "top")]
    hidden = bool(trees.details_damage) or not trees.details
    _adopt_top_levels(meta, scan, tops, devices, hidden)
    bottoms = [r for r in roots if r not in tops]
    orphans = _walk_orphans(meta, limit, bottoms, trees.counts)
    unplaced = []
    for group in sorted(_identical(orphans), key=lambda g: -g[0].keys.size):
        if not _place(group, devices):
            first, last = int(group[0].keys[0]), int(group[0].keys[-1])
            blocks = ", ".join(str(o.block) for o in group)
            unplaced.append(
                f"cut-off subtree {blocks} ({group[0].keys.size} mappings, virtual blocks "
                f"{first}..{last}) fits no single device: its mappings are lost"
            )
    return unplaced


def _identical(orphans: list[_Orphan]) -> list[list[_Orphan]]:
    """Cut-off subtrees grouped by content: identical ones are interchangeable."""
    groups: dict[bytes, list[_Orphan]] = {}
    for orphan in orphans:
        key = orphan.keys.tobytes() + b"/" + orphan.values.tobytes()
        groups.setdefault(key, []).append(orphan)
    return list(groups.values())


def _adopt_top_levels(
    meta: MetadataFile,
    scan: NodeScan,
    tops: list[int],
    devices: dict[int, Device],
    details_hidden: bool,
) -> None:
    """Devices without a mapping tree take their root from a cut-off top level that names them
    (a superblock pointing at the wrong top level, a top-level leaf cut off). Devices that only
    such a top level names are added when the details tree is damaged (they may be hidden
    there)."""
    found: dict[int, set[int]] = {}
    for top in tops:
        forest = walk_tree(meta, scan.limit, top, TOP_VALUE_SIZE, "a cut-off top level")
        for dev_id, root in zip(forest.keys.tolist(), forest.values.tolist(), strict=True):
            found.setdefault(dev_id, set()).add(int(root))
    owners = []
    for dev_id, candidates in sorted(found.items()):
        dev = devices.get(dev_id)
        if dev is None and details_hidden:
            dev = devices[dev_id] = Device(dev_id, None, holes=[(0, KEY_MAX, None)], tree=False)
        if dev is not None and not dev.tree and len(candidates) == 1:
            owners.append(dev_id)
    if not owners:
        return
    roots = [next(iter(found[d])) for d in owners]
    forest = walk_devices(meta, scan.limit, owners, roots)
    for i, dev_id in enumerate(owners):
        dev = devices[dev_id]
        dev.tree = True
        dev.holes = [(d.lo, d.hi, d.block) for d in forest.damage if d.owner == i]
        dev.add(*forest.entries(i))
        dev.reattached.append(roots[i])
        dev.notes.append(f"its mapping tree (root {roots[i]}) is found through a cut-off top level")


def _walk_orphans(
    meta: MetadataFile, limit: int, roots: list[int], counts: np.ndarray
) -> list[_Orphan]:
    if not roots:
        return []
    forest = walk_devices(meta, limit, roots, roots)
    damaged = forest.damaged_owners()
    out = []
    for i, root in enumerate(roots):
        keys, values = forest.entries(i)
        if keys.size and i not in damaged:
            out.append(_Orphan(root, keys.copy(), values.copy(), int(counts[root])))
    return out


def _place(group: list[_Orphan], devices: dict[int, Device]) -> bool:
    """Attach a cut-off subtree (or identical ones) to the device whose hole its keys fit, or
    to as many devices as the space map counts references to it. A device whose details count
    its mappings takes no more than it lost; one that it makes whole is preferred."""
    sample = group[0]
    first, last = int(sample.keys[0]), int(sample.keys[-1])
    n = int(sample.keys.size)
    references = sum(o.count for o in group)
    fits = [
        d
        for d in devices.values()
        if d.hole_for(first, last)
        and not d.overlaps(first, last)
        and (d.details is None or d.count() + n <= d.details.mapped_blocks)
    ]
    exact = [d for d in fits if d.details is not None and d.count() + n == d.details.mapped_blocks]
    chosen = exact if exact and len(exact) in (1, references) else fits
    if not chosen or len(chosen) not in (1, references):
        return False
    pieces = group if len(group) == len(chosen) else [sample] * len(chosen)
    for dev, orphan in zip(chosen, pieces, strict=True):
        dev.add(orphan.keys, orphan.values)
        dev.tree = True
        dev.reattached.append(orphan.block)
        dev.notes.append(
            f"a cut-off subtree (block {orphan.block}, {n} mappings, virtual blocks "
            f"{first}..{last}) is put back"
        )
    return True


def _hidden_devices(trees: Trees) -> list[str]:
    """Device ids that both the details tree and the top level hide: devices may be lost there
    without a trace."""
    out = []
    for a in trees.details_damage:
        for b in trees.top_damage:
            lo, hi = max(a.lo, b.lo), min(a.hi, b.hi)
            if lo <= hi:
                out.append(
                    f"device ids {key_range(lo, hi)} are unreadable in both the details tree "
                    "and the top level: devices there are lost"
                )
    return out


def _entries(dev: Device) -> tuple[np.ndarray, np.ndarray]:
    """The device's pieces as one sorted run of mappings (a key read twice, once)."""
    keys = np.concatenate(dev.keys) if dev.keys else np.zeros(0, np.uint64)
    values = np.concatenate(dev.values) if dev.values else np.zeros(0, np.uint64)
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    if keys.size > 1:
        keep = np.concatenate(([True], keys[1:] != keys[:-1]))
        keys, values = keys[keep], values[keep]
    return keys, values


def _finish(dev: Device, header: Header) -> tuple[DeviceRecord, DeviceOutcome]:
    """The device as written, and the account of it."""
    keys, values = _entries(dev)
    past = data_blocks(values) >= np.uint64(header.nr_data_blocks)
    notes = list(dev.notes)
    if past.any():
        notes.append(
            f"{int(past.sum())} mappings to data blocks past the end of the data device "
            f"({header.nr_data_blocks} blocks) are dropped"
        )
        keys, values = keys[~past], values[~past]
    details = dev.details
    rebuilt = details is None
    if details is None:
        details = DeviceDetails(dev.dev_id, int(keys.size), 0, 0, header.time or 0)
        notes.append(
            "its details are lost: rebuilt with transaction 0, creation time 0 and the pool's "
            "time as snapshot time"
        )
    record = DeviceRecord(
        dev.dev_id,
        details.transaction_id,
        details.creation_time,
        details.snapshotted_time,
        keys,
        values,
    )
    complete = _complete(dev, keys) and not past.any()
    expected = None if rebuilt else details.mapped_blocks
    if complete and expected is not None and expected != keys.size:
        notes.append(f"mapped_blocks was {expected}; the tree holds {keys.size}")
    if not dev.tree:
        notes.append("its mapping tree is lost")
    elif not _complete(dev, keys):
        notes += [
            f"virtual blocks {key_range(lo, hi)} are unreadable (damage at metadata block {b})"
            for lo, hi, b in dev.holes
        ]
    lost = 0 if complete else (max(expected - int(keys.size), 0) if expected is not None else None)
    return record, DeviceOutcome(
        dev.dev_id,
        int(keys.size),
        expected,
        lost,
        complete,
        details_rebuilt=rebuilt,
        reattached=dev.reattached,
        notes=notes,
    )


def _complete(dev: Device, keys: np.ndarray) -> bool:
    """True when nothing of the device's tree is missing: no hole, or every hole filled by the
    subtrees put back (their number of mappings then matches the details' count)."""
    if not dev.holes:
        return True
    if not dev.reattached or dev.details is None:
        return False
    return int(keys.size) == dev.details.mapped_blocks


def _latest_time(devices: list[Device]) -> int:
    """The pool's time when the superblock is lost: no device or mapping is from later."""
    latest = 0
    for dev in devices:
        if dev.details is not None:
            latest = max(latest, dev.details.creation_time, dev.details.snapshotted_time)
        for values in dev.values:
            latest = max(latest, int(times(values).max()))
    return latest
