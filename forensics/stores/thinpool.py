"""The thin pool's own metadata, read for the cross-check with Docker's device records.

The pool file is opened by the evidence reader (a regular file reached without any symlink) and
mapped read-only through ``/proc/self/fd`` of that descriptor: the very file that was checked,
whatever happens to its path meanwhile. The space maps are not read here: that is
``thin check``'s job, and verify only needs the devices, their mappings and the transaction id.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from forensics.drivers import DEVICEMAPPER_POOL
from forensics.evidence import Evidence, ReadFailure
from forensics.model import DeviceSet, PoolDevice, PoolState

if TYPE_CHECKING:  # the thin reader loads numpy: imported when a pool file exists
    from forensics.thin.blocks import MetadataFile


def read_thin_pool(ev: Evidence, ds: DeviceSet) -> None:
    pool_file = ds.pool_files.get(DEVICEMAPPER_POOL.metadata_name)
    if pool_file is None:
        return
    state = ds.pool = PoolState(path=pool_file.path)
    meta = _open_metadata(ev, pool_file.path, state)
    if meta is None:
        return
    from forensics.thin.pool import read_pool

    with meta:
        pool = read_pool(meta, space_maps=False)
        state.errors = [
            f"{'' if f.block is None else f'block {f.block}: '}{f.message}"
            for f in pool.findings
            if f.severity == "error"
        ]
        if pool.superblock is None or not pool.usable:
            state.problem = "the superblock cannot be read"
            if pool.not_metadata:
                state.problem = f"not thin-pool metadata ({pool.not_metadata})"
            return
        state.readable = True
        state.damaged = pool.tree_damage()
        state.transaction_id = int(pool.superblock.trans_id)
        state.data_block_size = int(pool.superblock.data_block_size)
        state.nr_data_blocks = pool.nr_data_blocks
        for dev_id, details in pool.details.items():
            blocks, _times = pool.device_mappings(dev_id)
            state.devices[dev_id] = PoolDevice(
                device_id=dev_id,
                mapped_blocks=details.mapped_blocks,
                transaction_id=details.transaction_id,
                highest_block=int(blocks.max()) if len(blocks) else None,
            )


def _open_metadata(ev: Evidence, rel: str, state: PoolState) -> MetadataFile | None:
    """The pool's metadata file mapped read-only; None with ``state.problem`` said when it is
    no regular file (never opened then) or cannot be mapped."""
    from forensics.thin.blocks import MetadataFile, MetadataOpenError

    try:
        fd, _st = ev.open_regular(rel)
    except ReadFailure as failure:
        regular = failure.kind not in ("symlink", "not-regular")
        state.problem = failure.detail if regular else "not a regular file"
        return None
    handle = f"/proc/self/fd/{fd}"
    try:
        return MetadataFile(handle)
    except MetadataOpenError as exc:
        state.problem = str(exc).removeprefix(f"{handle}: ")
        return None
    finally:
        os.close(fd)  # the map keeps the file
