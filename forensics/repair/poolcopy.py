"""The repaired copy of a damaged thin pool's metadata, for the repair plan and its run.

The pool's metadata is never written in place: :mod:`forensics.thin.repair` salvages what it
can and writes a fresh copy into the quarantine run. When the superblock itself is lost, the
values it held are taken from Docker's own records, as an operator would pass them to
``thin_repair``: the transaction id (the highest one Docker recorded for a device), the data
block size (Docker's default, 64 KiB, unless ``dm.blocksize`` was changed) and the number of data
blocks (the data file's size in blocks).
"""

from __future__ import annotations

from typing import Any

from forensics.drivers import DEVICEMAPPER_POOL
from forensics.errors import OperationalError
from forensics.model import Host
from forensics.repair.fsops import write_new_file
from forensics.thin.repair import (
    CopyError,
    NothingSalvageable,
    Overrides,
    RepairSummary,
    Salvage,
    salvage_metadata,
)
from forensics.thin.write import WriteError, encode_metadata

#: Docker's default thin pool block size (dm.blocksize=64K), in 512-byte sectors
DOCKER_BLOCK_SECTORS = 128

__all__ = ["PoolCopyError", "salvage_pool", "write_pool_copy"]


class PoolCopyError(OperationalError):
    """No copy can be made; the message says why."""


def salvage_pool(metadata: str, host: Host) -> tuple[Salvage, dict[str, Any]]:
    """Salvage ``metadata`` (nothing written); also the superblock values taken from Docker's
    records, when the superblock could not give them (empty otherwise)."""
    overrides = _overrides(host)
    try:
        return salvage_metadata(metadata), {}
    except NothingSalvageable as exc:
        if not exc.needs or overrides is None:
            raise PoolCopyError(f"no copy can be made: {exc.reason}") from None
    except CopyError as exc:
        raise PoolCopyError(f"the pool's metadata cannot be read: {exc}") from None
    try:
        return salvage_metadata(metadata, overrides), _values(overrides)
    except (NothingSalvageable, CopyError) as exc:
        raise PoolCopyError(f"no copy can be made, even with Docker's values: {exc}") from None


def write_pool_copy(
    metadata_fd: int, run_fd: int, name: str, values: dict[str, Any] | None
) -> RepairSummary:
    """Write the repaired copy of the metadata open at ``metadata_fd`` as ``name`` into the run
    directory held at ``run_fd`` (replaced if a crashed run left part of it), with the
    superblock ``values`` the plan took from Docker's records, if any."""
    source = f"/proc/self/fd/{metadata_fd}"
    overrides = Overrides(**values) if values else None
    try:
        salvage = salvage_metadata(source, overrides)
        encoded = encode_metadata(salvage.model)
    except (NothingSalvageable, CopyError, WriteError) as exc:
        raise PoolCopyError(f"the repaired copy cannot be written: {exc}") from None
    data = encoded.blocks.reshape(-1).data.cast("B")
    write_new_file(run_fd, name, data, 0o600, size=encoded.size)
    salvage.summary.output = name
    salvage.summary.stats = encoded.stats
    return salvage.summary


def _overrides(host: Host) -> Overrides | None:
    ds = host.deviceset
    ids = [d.transaction_id for d in host.devices.values() if d.transaction_id is not None]
    data = ds.pool_files.get(DEVICEMAPPER_POOL.data_name) if ds is not None else None
    if not ids or data is None or not data.size:
        return None
    return Overrides(
        transaction_id=max(ids),
        data_block_size=DOCKER_BLOCK_SECTORS,
        nr_data_blocks=data.size // (DOCKER_BLOCK_SECTORS * 512),
    )


def _values(overrides: Overrides) -> dict[str, Any]:
    return {
        "transaction_id": overrides.transaction_id,
        "data_block_size": overrides.data_block_size,
        "nr_data_blocks": overrides.nr_data_blocks,
    }
