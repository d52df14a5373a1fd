"""The superblock values of a repaired copy: the damaged pool's own when its checksum holds,
else those the operator gives (``thin_repair``'s ``--transaction-id``, ``--data-block-size``,
``--nr-data-blocks``); what is not carried over is noted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import construct as cs

from forensics.drivers import DEVICEMAPPER_POOL as THIN
from forensics.errors import Damage
from forensics.formats import thin as fmt
from forensics.thin.blocks import MetadataFile
from forensics.thin.pool import Pool


class NothingSalvageable(Damage):
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
class Header:
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


def _metadata_size(sm_blocks: int, file_blocks: int) -> int:
    """The metadata device's size: what its space map says (a truncated file is not the
    device), else the file's, within what a space map can cover."""
    if 0 < sm_blocks <= fmt.MAX_METADATA_BLOCKS:
        return sm_blocks
    return min(file_blocks, fmt.MAX_METADATA_BLOCKS)


def _valid_data_block_size(value: int) -> bool:
    return 128 <= value <= 2097152 and value % 128 == 0


def trusted_header(pool: Pool, overrides: Overrides) -> Header:
    sb = pool.superblock
    assert sb is not None
    header = Header(
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


def _carry_notes(header: Header, sb: cs.Container) -> None:
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


def _apply_overrides(header: Header, overrides: Overrides) -> None:
    for name in ("transaction_id", "data_block_size", "nr_data_blocks"):
        value = getattr(overrides, name)
        if value is not None and value != getattr(header, name):
            header.notes.append(
                f"{name.replace('_', ' ')} {value} as given (the superblock says "
                f"{getattr(header, name)})"
            )
            setattr(header, name, value)


def rebuilt_header(meta: MetadataFile, pool: Pool, overrides: Overrides) -> Header:
    """The superblock's values when its checksum fails (or block 0 is zero, or its magic is
    wrong): from the command line, as thin_repair takes them. A superblock whose checksum holds
    but whose magic is wrong is believed for everything but the magic."""
    block = meta.block(0)
    sb = fmt.parse_superblock(block)
    if fmt.checksum_ok(block, fmt.SUPERBLOCK_CSUM_XOR):
        header = trusted_header(_as_usable(pool, sb), overrides)
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
    header = Header(
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
        text + f"; on a Docker host: the transaction id of {THIN.transaction}, 128 "
        "(dm.blocksize), and the data file's size / 65536"
    )
