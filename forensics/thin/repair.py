"""``thin repair``: a repaired copy of damaged pool metadata, written to a new file.

The input is only read. What the readers can reach is salvaged, then written afresh by
:mod:`forensics.thin.write` (new space maps, new checksums, every count recomputed):

* the superblock's numbers, when its checksum holds. When it does not (or block 0 is zeroed),
  the three values ``thin_repair`` asks for must be given (``transaction_id``,
  ``data_block_size``, ``nr_data_blocks``); the trees are then found from the damaged
  superblock's roots when they still walk cleanly, else by scanning every block for btree nodes
  that nothing references (as ``thin_repair`` does);
* every device of the details tree and of the top level of the mapping tree, with the mappings
  of its tree that are readable. A leaf whose only fault is one the kernel does not check (too
  few entries) is read all the same, as ``thin_repair`` reads it;
* subtrees cut off by the damage: mapping-tree nodes that the metadata space map counts as in
  use but that no readable node points at. Each is put back where exactly one device has a
  hole that its keys fit (or as many devices as the space map says share it), and a device
  that lost its whole tree takes a subtree whose size equals its ``mapped_blocks``. This
  recovers what ``thin_repair`` 0.9.0 drops: a damaged top-level leaf, a top level that lost
  entries, a mapping root that points elsewhere, an internal node that points at itself;
* a device whose details are lost but whose mappings are readable keeps them, with rebuilt
  details (transaction 0, creation time 0, snapshot time the pool's: the kernel then copies
  before it writes any block mapped before now, which is always safe).

Mappings to data blocks past the end of the data device are dropped (``thin_repair`` aborts on
them); ``mapped_blocks`` is recounted; the NEEDS_CHECK flag, incompatible feature flags and a
metadata snapshot are not carried over. Times and transaction ids are kept as found.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import construct as cs
import numpy as np

from forensics.formats import thin as fmt
from forensics.thin.blocks import MetadataFile, MetadataOpenError
from forensics.thin.btree import (
    KEY_MAX,
    Damage,
    Forest,
    ForestWalker,
    key_range,
    keys_at,
    values_at,
)
from forensics.thin.check import check_pool
from forensics.thin.findings import ERROR, WARNING, Findings, ThinFinding
from forensics.thin.node import (
    WRITTEN,
    WRITTEN_MAPPING_LEAF,
    NodeError,
    keys_ascend,
    keys_within,
    node_error,
    sound_nodes,
)
from forensics.thin.pool import DeviceDetails, Pool, read_pool
from forensics.thin.spacemap import read_metadata_space_map
from forensics.thin.write import (
    DeviceRecord,
    MetadataModel,
    WriteError,
    WriteStats,
    check_output_path,
    encode_metadata,
    write_encoded,
)


class RepairError(Exception):
    """The input cannot be read, or the copy cannot be written (operational)."""


class NothingSalvageable(Exception):
    """No copy is written: nothing could be salvaged, or the values needed are missing."""

    def __init__(self, reason: str, needs: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        #: the options that would let the repair go on (``--transaction-id`` …)
        self.needs = needs


@dataclass(frozen=True)
class Overrides:
    """The superblock values ``thin_repair`` takes on its command line; they replace what the
    superblock says, and are needed when it is damaged."""

    transaction_id: int | None = None
    data_block_size: int | None = None
    nr_data_blocks: int | None = None


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
class RepairSummary:
    """What was salvaged and lost; ``output`` is set once the copy is written."""

    metadata: str
    superblock: str
    transaction_id: int
    time: int
    data_block_size: int
    nr_data_blocks: int
    metadata_blocks: int
    devices: list[DeviceOutcome]
    #: things lost that belong to no known device (unreadable device ids, unplaced subtrees)
    lost: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: the input's damage as ``thin check`` reports it (errors and warnings)
    damage: list[ThinFinding] = field(default_factory=list)
    output: str | None = None
    stats: WriteStats | None = None

    @property
    def losses(self) -> bool:
        return bool(self.lost) or any(not d.complete or d.details_rebuilt for d in self.devices)

    @property
    def mappings_written(self) -> int:
        return sum(d.written for d in self.devices)

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["damage"] = [f.as_dict() for f in self.damage]
        doc["losses"] = self.losses
        doc["mappings_written"] = self.mappings_written
        return doc


@dataclass
class Salvage:
    """The salvaged pool, ready to write, and the account of it."""

    model: MetadataModel
    summary: RepairSummary


# -- entry points ---------------------------------------------------------------------------------


def salvage_metadata(
    source: str | os.PathLike[str] | bytes, overrides: Overrides | None = None
) -> Salvage:
    """Read ``source`` (a path, or the metadata's bytes) and salvage it; nothing is written.
    Raises :class:`RepairError` when it cannot be read, :class:`NothingSalvageable` when no copy
    can be made."""
    with _opened(source) as (meta, name):
        return _salvage(meta, name, overrides or Overrides())


def write_repaired_copy(
    source: str | os.PathLike[str] | bytes,
    out_path: str | os.PathLike[str],
    *,
    force: bool = False,
    overrides: Overrides | None = None,
) -> RepairSummary:
    """Salvage ``source`` and write the repaired copy to the new file ``out_path`` (replaced
    only with ``force``, and never the input). Returns the account of what was salvaged and
    lost; see :func:`install_steps` for putting the copy in place."""
    inputs = [] if isinstance(source, bytes) else [source]
    try:
        check_output_path(out_path, overwrite=force, inputs=inputs)
    except WriteError as exc:
        raise RepairError(str(exc)) from None
    salvage = salvage_metadata(source, overrides)
    try:
        encoded = encode_metadata(salvage.model)
        write_encoded(encoded, out_path, overwrite=force, inputs=inputs)
    except WriteError as exc:
        raise RepairError(str(exc)) from None
    except OSError as exc:
        raise RepairError(f"{exc.filename or out_path}: {exc.strerror or exc}") from None
    salvage.summary.output = str(out_path)
    salvage.summary.stats = encoded.stats
    return salvage.summary


@contextmanager
def _opened(source: str | os.PathLike[str] | bytes) -> Iterator[tuple[MetadataFile, str]]:
    if isinstance(source, bytes):
        with tempfile.TemporaryDirectory(prefix="thin-repair-") as tmp:
            path = Path(tmp) / "metadata"
            path.write_bytes(source)
            with _opened(path) as (meta, _):
                yield meta, "<bytes>"
        return
    try:
        meta = MetadataFile(source)
    except MetadataOpenError as exc:
        raise RepairError(str(exc)) from None
    try:
        yield meta, str(source)
    finally:
        meta.close()


# -- the salvage ----------------------------------------------------------------------------------


@dataclass
class _Header:
    """The superblock values the copy gets, and where the trees start."""

    state: str
    transaction_id: int
    time: int | None
    data_block_size: int
    nr_data_blocks: int
    metadata_blocks: int
    flags: int = 0
    version: int = 2
    notes: list[str] = field(default_factory=list)


@dataclass
class _Trees:
    """The readable trees of the pool, however their roots were found."""

    details: dict[int, DeviceDetails]
    details_damage: list[Damage]
    roots: dict[int, int]
    top_damage: list[Damage]
    mappings: Forest
    #: node blocks that a readable node (or the superblock) points at, or that were walked
    reached: set[int]
    #: metadata counts (None where unknown), to tell live cut-off nodes from stale ones
    counts: np.ndarray | None


def _salvage(meta: MetadataFile, name: str, overrides: Overrides) -> Salvage:
    if meta.nr_blocks == 0:
        raise RepairError(
            f"{name}: {meta.size} bytes, less than one 4096-byte block: not thin pool metadata"
        )
    pool = read_pool(meta)
    check_pool(pool)
    damage = [f for f in pool.findings if f.severity in (ERROR, WARNING)]
    sb_block = meta.block(0)
    if pool.usable and fmt.checksum_ok(sb_block, fmt.SUPERBLOCK_CSUM_XOR):
        header = _trusted_header(pool, overrides)
        trees = _trees_of_pool(pool)
    else:
        header = _rebuilt_header(meta, pool, overrides)
        trees = _found_trees(meta, sb_block, header)
    devices, outcomes, lost = _assemble(meta, trees, header)
    if not devices and (lost or trees.details_damage or trees.top_damage):
        raise NothingSalvageable(
            "no device could be salvaged: " + ("; ".join(lost) or "the trees are unreadable")
        )
    model = MetadataModel(
        data_block_size=header.data_block_size,
        nr_data_blocks=header.nr_data_blocks,
        metadata_blocks=header.metadata_blocks,
        transaction_id=header.transaction_id,
        time=header.time or 0,
        flags=header.flags,
        version=header.version,
        devices=devices,
    )
    summary = RepairSummary(
        metadata=name,
        superblock=header.state,
        transaction_id=model.transaction_id,
        time=model.time,
        data_block_size=model.data_block_size,
        nr_data_blocks=model.nr_data_blocks,
        metadata_blocks=model.metadata_blocks,
        devices=outcomes,
        lost=lost,
        notes=header.notes,
        damage=damage,
    )
    return Salvage(model, summary)


def _latest_time(devices: list[_Device]) -> int:
    """The pool's time when the superblock is lost: no device or mapping is from later."""
    latest = 0
    for dev in devices:
        if dev.details is not None:
            latest = max(latest, dev.details.creation_time, dev.details.snapshotted_time)
        for values in dev.values:
            latest = max(latest, int((values & np.uint64(fmt.TIME_MASK)).max()))
    return latest


# -- the superblock -------------------------------------------------------------------------------


def _metadata_size(sm_blocks: int, file_blocks: int) -> int:
    """The metadata device's size: what its space map says (a truncated file is not the
    device), else the file's, within what a space map can cover."""
    if 0 < sm_blocks <= fmt.MAX_METADATA_BLOCKS:
        return sm_blocks
    return min(file_blocks, fmt.MAX_METADATA_BLOCKS)


def _valid_data_block_size(value: int) -> bool:
    return 128 <= value <= 2097152 and value % 128 == 0


def _trusted_header(pool: Pool, overrides: Overrides) -> _Header:
    sb = pool.superblock
    assert sb is not None
    header = _Header(
        state="intact",
        transaction_id=int(sb.trans_id),
        time=int(sb.time),
        data_block_size=int(sb.data_block_size),
        nr_data_blocks=pool.nr_data_blocks,
        metadata_blocks=_metadata_size(
            int(sb.metadata_space_map_root.nr_blocks), pool.meta.nr_blocks
        ),
        flags=int(sb.flags) & ~fmt.NEEDS_CHECK,
        version=int(sb.version) if sb.version in (1, 2) else 2,
    )
    _carry_notes(header, sb)
    _apply_overrides(header, overrides)
    needs = []
    if not _valid_data_block_size(header.data_block_size):
        needs.append("--data-block-size")
    if header.nr_data_blocks <= 0:
        needs.append("--nr-data-blocks")
    if needs:
        raise NothingSalvageable(
            f"the superblock's data block size ({header.data_block_size} sectors) or number of "
            f"data blocks ({header.nr_data_blocks}) is unusable: give {' and '.join(needs)}",
            tuple(needs),
        )
    return header


def _carry_notes(header: _Header, sb: cs.Container) -> None:
    notes = header.notes
    if sb.flags & fmt.NEEDS_CHECK:
        notes.append("the NEEDS_CHECK flag is cleared in the copy")
    if sb.version not in (1, 2):
        notes.append(f"metadata version {sb.version} is written as 2")
    if sb.incompat_flags or sb.compat_ro_flags or sb.compat_flags:
        notes.append("feature flags are cleared in the copy (no feature flags are defined)")
    if sb.held_root:
        notes.append(
            f"the metadata snapshot (held root {sb.held_root}) is not carried over: the copy "
            "has none (thin_dump and thin_repair leave it out too)"
        )


def _apply_overrides(header: _Header, overrides: Overrides) -> None:
    for name in ("transaction_id", "data_block_size", "nr_data_blocks"):
        value = getattr(overrides, name)
        if value is not None and value != getattr(header, name):
            header.notes.append(
                f"{name.replace('_', ' ')} {value} as given (the superblock says "
                f"{getattr(header, name)})"
            )
            setattr(header, name, value)


def _rebuilt_header(meta: MetadataFile, pool: Pool, overrides: Overrides) -> _Header:
    """The superblock's values when its checksum fails (or block 0 is zero, or its magic is
    wrong): from the command line, as thin_repair takes them. A superblock whose checksum holds
    but whose magic is wrong is believed for everything but the magic."""
    block = meta.block(0)
    sb = fmt.parse_superblock(block)
    if fmt.checksum_ok(block, fmt.SUPERBLOCK_CSUM_XOR):
        header = _trusted_header(_as_usable(pool, sb), overrides)
        header.state = "magic-rewritten"
        header.notes.append(
            f"the superblock's magic {sb.magic} is written as {fmt.SUPERBLOCK_MAGIC}"
        )
        return header
    values = {
        "transaction_id": overrides.transaction_id,
        "data_block_size": overrides.data_block_size,
        "nr_data_blocks": overrides.nr_data_blocks,
    }
    missing = tuple(f"--{k.replace('_', '-')}" for k, v in values.items() if v is None)
    if missing:
        raise NothingSalvageable(_needs_message(sb, any(block), missing), missing)
    dbs = int(overrides.data_block_size or 0)
    if not _valid_data_block_size(dbs):
        raise NothingSalvageable(
            f"--data-block-size {dbs}: the kernel takes multiples of 128 from 128 to 2097152",
            ("--data-block-size",),
        )
    header = _Header(
        state="rebuilt",
        transaction_id=int(overrides.transaction_id or 0),
        time=None,
        data_block_size=dbs,
        nr_data_blocks=int(overrides.nr_data_blocks or 0),
        metadata_blocks=_metadata_size(0, meta.nr_blocks),
    )
    header.notes.append(
        "the superblock is rebuilt from the values given; the pool's time is the latest time "
        "found in the devices and mappings; the metadata device's size is the file's"
    )
    return header


def _as_usable(pool: Pool, sb: cs.Container) -> Pool:
    return Pool(pool.meta, superblock=sb, usable=True, limit=pool.meta.nr_blocks)


def _needs_message(sb: cs.Container, nonzero: bool, missing: tuple[str, ...]) -> str:
    what = "is all zeros" if not nonzero else "fails its checksum"
    text = f"the superblock {what}: give {', '.join(missing)} (as thin_repair asks)"
    if sb.magic == fmt.SUPERBLOCK_MAGIC:
        text += (
            f"; the damaged superblock says transaction {sb.trans_id}, data block size "
            f"{sb.data_block_size}, {sb.data_space_map_root.nr_blocks} data blocks"
        )
    return (
        text + "; on a Docker host: the transaction id of devicemapper/metadata/"
        "transaction-metadata, 128 (dm.blocksize), and the data file's size / 65536"
    )


# -- trees ----------------------------------------------------------------------------------------


def _trees_of_pool(pool: Pool) -> _Trees:
    assert pool.details_forest is not None and pool.top_forest is not None
    assert pool.mappings is not None
    reached: set[int] = {0}
    for forest in (pool.details_forest, pool.top_forest, pool.mappings, pool.snapshot_mappings):
        if forest is not None:
            reached |= forest.visited
            reached.update(forest.references.tolist())
    reached.update(pool.snapshot_references.tolist())
    sb = pool.superblock
    assert sb is not None
    reached.add(int(sb.held_root))
    sm = pool.metadata_sm
    counts = None
    if sm is not None:
        counts = sm.dense(pool.meta.nr_blocks)
    return _Trees(
        details=dict(pool.details),
        details_damage=list(pool.details_forest.damage),
        roots=dict(pool.roots),
        top_damage=list(pool.top_forest.damage),
        mappings=pool.mappings,
        reached=reached,
        counts=counts,
    )


def _walk(meta: MetadataFile, limit: int, root: int, value_size: int, label: str) -> Forest:
    return ForestWalker(
        meta,
        Findings(),
        value_size=value_size,
        label=lambda _: label,
        key_name="device ids",
        limit=limit,
    ).walk([0], [root])


def _walk_devices(meta: MetadataFile, limit: int, owners: list[int], roots: list[int]) -> Forest:
    return ForestWalker(
        meta,
        Findings(),
        value_size=fmt.BLOCK_TIME_SIZE,
        label=lambda i: f"the mapping tree of device {owners[i]}",
        key_name="virtual blocks",
        share=True,
        limit=limit,
    ).walk(owners, roots)


def _found_trees(meta: MetadataFile, sb_block: bytes, header: _Header) -> _Trees:
    """The trees when the superblock cannot be believed: its roots if they still walk cleanly,
    else the roots that a scan of every block finds."""
    limit = min(meta.nr_blocks, header.metadata_blocks)
    sb = fmt.parse_superblock(sb_block)
    hinted = sb.magic == fmt.SUPERBLOCK_MAGIC or fmt.checksum_ok(sb_block, fmt.SUPERBLOCK_CSUM_XOR)
    counts = _found_counts(meta, sb if hinted else None, limit)
    scan = _NodeScan.of(meta, limit, counts)
    details_root = _pick_root(
        meta, scan, int(sb.device_details_root) if hinted else None, "details"
    )
    top_root = _pick_root(meta, scan, int(sb.data_mapping_root) if hinted else None, "top")
    details: dict[int, DeviceDetails] = {}
    details_damage: list[Damage] = []
    reached: set[int] = {0}
    if details_root is not None:
        forest = _walk(meta, limit, details_root, fmt.DeviceDetails.sizeof(), "details")
        details = _details_of(forest)
        details_damage = forest.damage
        reached |= forest.visited
    roots: dict[int, int] = {}
    top_damage: list[Damage] = []
    if top_root is not None:
        top = _walk(meta, limit, top_root, 8, "the top level")
        roots = dict(zip(top.keys.tolist(), top.values.astype(np.int64).tolist(), strict=True))
        top_damage = top.damage
        reached |= top.visited | set(top.references.tolist())
    devices = list(roots)
    mappings = _walk_devices(meta, limit, devices, list(roots.values()))
    reached |= mappings.visited | set(mappings.references.tolist())
    if details_root is None:
        header.notes.append("no device details tree was found")
    if top_root is None:
        header.notes.append("no top level of the mapping tree was found")
    return _Trees(details, details_damage, roots, top_damage, mappings, reached, counts)


def _details_of(forest: Forest) -> dict[int, DeviceDetails]:
    out = {}
    for i, dev_id in enumerate(forest.keys.tolist()):
        v = forest.values[i]
        out[dev_id] = DeviceDetails(
            dev_id,
            int(v["mapped_blocks"]),
            int(v["transaction_id"]),
            int(v["creation_time"]),
            int(v["snapshotted_time"]),
        )
    return out


def _found_counts(meta: MetadataFile, sb: cs.Container | None, limit: int) -> np.ndarray | None:
    """Metadata counts from the metadata space map, its index block found through the damaged
    superblock or, failing that, as the one block in the file that checksums as an index."""
    index = int(sb.metadata_space_map_root.bitmap_root) if sb is not None else -1
    if not (0 < index < limit and _is_index(meta, index)):
        found = [b for b in _self_located(meta, limit).tolist() if _is_index(meta, b)]
        if len(found) != 1:
            return None
        index = found[0]
    rc_root = int(sb.metadata_space_map_root.ref_count_root) if sb is not None else 0
    root = cs.Container(
        nr_blocks=limit,
        nr_allocated=0,
        bitmap_root=index,
        ref_count_root=rc_root,
    )
    sm = read_metadata_space_map(meta, root, Findings(), limit)
    if sm is None:
        return None
    return sm.dense(meta.nr_blocks)


def _is_index(meta: MetadataFile, block: int) -> bool:
    data = meta.block(block)
    return fmt.checksum_ok(data, fmt.INDEX_CSUM_XOR) and fmt.stored_blocknr(data) == block


def _self_located(meta: MetadataFile, limit: int) -> np.ndarray:
    """Blocks that hold their own number at offset 8 (every metadata block type does)."""
    blocknr = meta.headers["blocknr"][:limit]
    return np.flatnonzero(blocknr == np.arange(limit, dtype=np.uint64))


@dataclass
class _NodeScan:
    """Every block of the file that is a sound btree node: checksum, own block number, flags,
    ``max_entries`` as the kernel writes it for its value size, ``nr_entries`` within it."""

    meta: MetadataFile
    limit: int
    valid: np.ndarray
    live: np.ndarray

    @classmethod
    def of(cls, meta: MetadataFile, limit: int, counts: np.ndarray | None) -> _NodeScan:
        blocks = _self_located(meta, limit)
        valid = np.zeros(limit, dtype=bool)
        valid[blocks[sound_nodes(meta, blocks, WRITTEN)]] = True
        live = valid.copy()
        if counts is not None:
            known = np.full(limit, -1, dtype=np.int64)
            known[: min(limit, counts.size)] = counts[:limit]
            live &= known > 0
        return cls(meta, limit, valid, live)

    def flags(self, block: int) -> int:
        return int(self.meta.headers["flags"][block])

    def value_size(self, block: int) -> int:
        return int(self.meta.headers["value_size"][block])

    def entries(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """Keys and 64-bit values of a node (internal, or a leaf of value size 8)."""
        return _node_entries(self.meta, block)

    def leaf_kind(self, block: int, depth: int = 0) -> int:
        """The value size of the leftmost leaf under ``block`` (0: none found)."""
        if depth > 16 or not self.valid[block]:
            return 0
        if self.flags(block) == fmt.LEAF_NODE:
            return self.value_size(block)
        _, children = self.entries(block)
        if children.size == 0 or int(children[0]) >= self.limit:
            return 0
        return self.leaf_kind(int(children[0]), depth + 1)

    def top_like(self, block: int) -> bool:
        """A leaf of the top level: device ids as keys, every value a sound mapping node."""
        if self.flags(block) != fmt.LEAF_NODE or self.value_size(block) != 8:
            return False
        keys, values = self.entries(block)
        if values.size == 0 or int(keys.max()) > fmt.MAX_DEV_ID:
            return False
        inside = values < np.uint64(self.limit)
        if not inside.all():
            return False
        targets = values.astype(np.int64)
        return bool(self.valid[targets].all()) and all(
            self.value_size(t) == 8 for t in targets.tolist()
        )

    def roots(self, among: np.ndarray) -> list[int]:
        """The blocks of ``among`` (a mask) that no other block of ``among`` points at."""
        pointed = np.zeros(self.limit, dtype=bool)
        for block in np.flatnonzero(among).tolist():
            if self.flags(block) == fmt.INTERNAL_NODE or self.top_like(block):
                _, children = self.entries(block)
                children = children[children < np.uint64(self.limit)].astype(np.int64)
                pointed[children] = True
        return np.flatnonzero(among & ~pointed).tolist()


def _pick_root(meta: MetadataFile, scan: _NodeScan, hint: int | None, kind: str) -> int | None:
    """The root of the details tree (``kind`` "details") or of the top level ("top"): the
    damaged superblock's, if it walks cleanly; else the one live unreferenced root of its kind,
    the one with most entries when there are several."""
    size = fmt.DeviceDetails.sizeof() if kind == "details" else 8
    if hint is not None and 0 < hint < scan.limit and scan.valid[hint]:
        forest = _walk(meta, scan.limit, hint, size, kind)
        if not forest.damage and scan.leaf_kind(hint) == size and _kind_fits(scan, hint, kind):
            return hint
    best: tuple[int, int] | None = None
    for root in scan.roots(scan.live):
        if scan.leaf_kind(root) != size or not _kind_fits(scan, root, kind):
            continue
        forest = _walk(meta, scan.limit, root, size, kind)
        entries = int(forest.keys.size)
        if entries and (best is None or entries > best[0]):
            best = (entries, root)
    return best[1] if best else None


def _kind_fits(scan: _NodeScan, root: int, kind: str) -> bool:
    if kind != "top":
        return True
    block = root
    for _ in range(16):
        if scan.flags(block) == fmt.LEAF_NODE:
            return scan.top_like(block)
        _, children = scan.entries(block)
        if children.size == 0 or int(children[0]) >= scan.limit:
            return False
        block = int(children[0])
    return False


# -- devices --------------------------------------------------------------------------------------


@dataclass
class _Device:
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


def _assemble(
    meta: MetadataFile, trees: _Trees, header: _Header
) -> tuple[list[DeviceRecord], list[DeviceOutcome], list[str]]:
    forest = trees.mappings
    index = {dev_id: i for i, dev_id in enumerate(forest.owners)}
    devices: dict[int, _Device] = {}
    for dev_id in sorted(set(trees.details) | set(trees.roots)):
        dev = _Device(dev_id, trees.details.get(dev_id))
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


def _drop_borrowed_trees(trees: _Trees, devices: dict[int, _Device]) -> None:
    """A mapping root that points at another device's tree is no tree of this device.

    Devices share a root legitimately (a snapshot not written to since), and then the metadata
    space map counts the root once per device. A root that more devices name than the space
    map counts was borrowed by the devices whose ``mapped_blocks`` it does not fit: their trees
    are dropped here, to be looked for among the cut-off subtrees (whose size then equals their
    ``mapped_blocks``) or reported lost, never written as theirs. Without the counts nothing is
    dropped (``mapped_blocks`` alone may be the damaged part)."""
    sharers: dict[int, list[_Device]] = {}
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
    if node_error(meta, block, WRITTEN_MAPPING_LEAF, root=True) != NodeError.NONE:
        return empty, empty
    keys, values = _node_entries(meta, block)
    if keys.size == 0 or not keys_ascend(keys):
        return empty, empty
    if not keys_within(int(keys[0]), int(keys[-1]), damage.lo, damage.hi):
        return empty, empty
    return keys.copy(), values.copy()


def _node_entries(meta: MetadataFile, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Keys and 64-bit values of a node (internal, or a leaf of value size 8)."""
    nr = int(meta.headers["nr_entries"][block])
    width = int(meta.headers["max_entries"][block])
    keys = keys_at(block)
    values = values_at(block, width, fmt.ChildPointer.sizeof())
    return meta.words[keys : keys + nr], meta.words[values : values + nr]


@dataclass
class _Orphan:
    block: int
    keys: np.ndarray
    values: np.ndarray
    count: int


def _reattach(meta: MetadataFile, trees: _Trees, devices: dict[int, _Device]) -> list[str]:
    """Put cut-off mapping subtrees back where they fit; say what could not be placed."""
    if trees.counts is None:
        return ["the metadata space map is unreadable: cut-off subtrees are not searched for"]
    limit = min(meta.nr_blocks, trees.counts.size)
    scan = _NodeScan.of(meta, limit, trees.counts)
    candidates = scan.live.copy()
    for block in trees.reached:
        if 0 <= block < limit:
            candidates[block] = False
    roots = [r for r in scan.roots(candidates) if scan.leaf_kind(r) == 8]
    tops = [r for r in roots if _kind_fits(scan, r, "top")]
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
    scan: _NodeScan,
    tops: list[int],
    devices: dict[int, _Device],
    details_hidden: bool,
) -> None:
    """Devices without a mapping tree take their root from a cut-off top level that names them
    (a superblock pointing at the wrong top level, a top-level leaf cut off). Devices that only
    such a top level names are added when the details tree is damaged (they may be hidden
    there)."""
    found: dict[int, set[int]] = {}
    for top in tops:
        forest = _walk(meta, scan.limit, top, 8, "a cut-off top level")
        for dev_id, root in zip(forest.keys.tolist(), forest.values.tolist(), strict=True):
            found.setdefault(dev_id, set()).add(int(root))
    owners = []
    for dev_id, candidates in sorted(found.items()):
        dev = devices.get(dev_id)
        if dev is None and details_hidden:
            dev = devices[dev_id] = _Device(dev_id, None, holes=[(0, KEY_MAX, None)], tree=False)
        if dev is not None and not dev.tree and len(candidates) == 1:
            owners.append(dev_id)
    if not owners:
        return
    roots = [next(iter(found[d])) for d in owners]
    forest = _walk_devices(meta, scan.limit, owners, roots)
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
    forest = _walk_devices(meta, limit, roots, roots)
    damaged = forest.damaged_owners()
    out = []
    for i, root in enumerate(roots):
        keys, values = forest.entries(i)
        if keys.size and i not in damaged:
            out.append(_Orphan(root, keys.copy(), values.copy(), int(counts[root])))
    return out


def _place(group: list[_Orphan], devices: dict[int, _Device]) -> bool:
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


def _hidden_devices(trees: _Trees) -> list[str]:
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


def _entries(dev: _Device) -> tuple[np.ndarray, np.ndarray]:
    """The device's pieces as one sorted run of mappings (a key read twice, once)."""
    keys = np.concatenate(dev.keys) if dev.keys else np.zeros(0, np.uint64)
    values = np.concatenate(dev.values) if dev.values else np.zeros(0, np.uint64)
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    if keys.size > 1:
        keep = np.concatenate(([True], keys[1:] != keys[:-1]))
        keys, values = keys[keep], values[keep]
    return keys, values


def _finish(dev: _Device, header: _Header) -> tuple[DeviceRecord, DeviceOutcome]:
    """The device as written, and the account of it."""
    keys, values = _entries(dev)
    past = (values >> np.uint64(fmt.TIME_BITS)) >= np.uint64(header.nr_data_blocks)
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


def _complete(dev: _Device, keys: np.ndarray) -> bool:
    """True when nothing of the device's tree is missing: no hole, or every hole filled by the
    subtrees put back (their number of mappings then matches the details' count)."""
    if not dev.holes:
        return True
    if not dev.reattached or dev.details is None:
        return False
    return int(keys.size) == dev.details.mapped_blocks


# -- putting the copy in place --------------------------------------------------------------------

DOCKER_METADATA = Path("/var/lib/docker/devicemapper/devicemapper/metadata")


@dataclass(frozen=True)
class InstallStep:
    """One step of putting a repaired copy in place: what to do, and a command for it."""

    what: str
    command: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


def install_steps(
    metadata: str | os.PathLike[str], out: str | os.PathLike[str]
) -> list[InstallStep]:
    """The steps that put the repaired copy ``out`` in place of the pool's metadata, for a
    Docker devicemapper pool. ``metadata`` names the pool's metadata file when it is Docker's
    (``…/devicemapper/devicemapper/metadata``); for a copy of it, Docker's default path is
    shown."""
    source = Path(metadata).absolute()
    docker = source.parts[-3:] == ("devicemapper", "devicemapper", "metadata")
    target = source if docker else DOCKER_METADATA
    data = target.with_name("data")
    copy = Path(out).absolute()
    return [
        InstallStep(
            "Stop the Docker daemon (and anything else that uses the pool)", "systemctl stop docker"
        ),
        InstallStep(
            "If the pool is still active, remove its thin devices, then the pool itself "
            "(Docker names them docker-MAJ:MIN-INODE-*)",
            "dmsetup ls --target thin; dmsetup ls --target thin-pool; dmsetup remove NAME",
        ),
        InstallStep(
            "Detach the loop devices of a loop-lvm pool",
            f"losetup -j {target}; losetup -j {data}; losetup -d /dev/loopN",
        ),
        InstallStep(
            "Keep the original metadata",
            f"cp --sparse=always {target} {target}.before-repair",
        ),
        InstallStep(
            "Put the repaired copy in place (for a direct-lvm pool, write it to a new volume "
            "and swap it in: lvconvert --thinpool VG/POOL --poolmetadata VG/NEW)",
            f"cp --sparse=always {copy} {target}",
        ),
        InstallStep("Check it", f"thin_check {target}"),
        InstallStep(
            "Start the Docker daemon, then compare Docker's records with the pool",
            f"systemctl start docker; docker-forensics verify {target.parents[2]}",
        ),
    ]
