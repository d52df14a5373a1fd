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

from forensics.errors import OperationalError
from forensics.formats import thin as fmt
from forensics.thin.blocks import MetadataFile, MetadataOpenError
from forensics.thin.check import check_pool
from forensics.thin.findings import ERROR, WARNING, ThinFinding
from forensics.thin.pool import read_pool
from forensics.thin.salvage.devices import DeviceOutcome, assemble_devices
from forensics.thin.salvage.superblock import (
    NothingSalvageable,
    Overrides,
    rebuilt_header,
    trusted_header,
)
from forensics.thin.salvage.trees import found_trees, trees_of_pool
from forensics.thin.write import (
    MetadataModel,
    WriteError,
    WriteStats,
    check_output_path,
    encode_metadata,
    write_encoded,
)

__all__ = [
    "DeviceOutcome",
    "NothingSalvageable",
    "Overrides",
    "CopyError",
    "RepairSummary",
    "Salvage",
    "salvage_metadata",
    "write_repaired_copy",
]


class CopyError(OperationalError):
    """The input cannot be read, or the copy cannot be written (operational)."""


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
    Raises :class:`CopyError` when it cannot be read, :class:`NothingSalvageable` when no copy
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
    lost; :func:`forensics.repair.plan_devicemapper.install_steps` says how to put the copy in
    place on a Docker host."""
    inputs = [] if isinstance(source, bytes) else [source]
    try:
        check_output_path(out_path, overwrite=force, inputs=inputs)
    except WriteError as exc:
        raise CopyError(str(exc)) from None
    salvage = salvage_metadata(source, overrides)
    try:
        encoded = encode_metadata(salvage.model)
        write_encoded(encoded, out_path, overwrite=force, inputs=inputs)
    except WriteError as exc:
        raise CopyError(str(exc)) from None
    except OSError as exc:
        raise CopyError(f"{exc.filename or out_path}: {exc.strerror or exc}") from None
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
        raise CopyError(str(exc)) from None
    try:
        yield meta, str(source)
    finally:
        meta.close()


# -- the salvage ----------------------------------------------------------------------------------


def _salvage(meta: MetadataFile, name: str, overrides: Overrides) -> Salvage:
    if meta.nr_blocks == 0:
        raise CopyError(
            f"{name}: {meta.size} bytes, less than one 4096-byte block: not thin pool metadata"
        )
    pool = read_pool(meta)
    check_pool(pool)
    damage = [f for f in pool.findings if f.severity in (ERROR, WARNING)]
    sb_block = meta.block(0)
    if pool.usable and fmt.checksum_ok(sb_block, fmt.SUPERBLOCK_CSUM_XOR):
        header = trusted_header(pool, overrides)
        trees = trees_of_pool(pool)
    else:
        header = rebuilt_header(meta, pool, overrides)
        trees = found_trees(meta, sb_block, header)
    devices, outcomes, lost = assemble_devices(meta, trees, header)
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
