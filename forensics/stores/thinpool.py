"""The thin pool's own metadata, read for the cross-check with Docker's device records.

The pool file is opened only when it is a regular file reached without any symlink (checked by
the evidence reader first); it is mapped read-only. The space maps are not read here: that is
``thin check``'s job, and verify only needs the devices, their mappings and the transaction id.
"""

from __future__ import annotations

from forensics.evidence import Evidence
from forensics.model import DeviceSet, PoolDevice, PoolState


def read_thin_pool(ev: Evidence, ds: DeviceSet) -> None:
    pool_file = ds.pool_files.get("metadata")
    if pool_file is None:
        return
    state = ds.pool = PoolState(path=pool_file.path)
    if not ev.is_file(pool_file.path):  # a symlink or special file: never opened
        state.problem = "not a regular file"
        return
    from forensics.thin.blocks import MetadataFile, MetadataOpenError
    from forensics.thin.pool import read_pool

    try:
        meta = MetadataFile(ev.abspath(pool_file.path))
    except MetadataOpenError as exc:
        state.problem = str(exc)
        return
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
