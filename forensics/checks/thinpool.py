"""Docker's device records against the thin pool's own metadata, in both directions.

Rules from devicemapper's transaction protocol: a create or delete first writes
``transaction-metadata`` with the pool's transaction id + 1, then talks to the pool, then writes
the device record, then moves the pool's transaction id on. At rest the two ids are equal.
"""

from __future__ import annotations

from collections.abc import Iterator

from forensics.checks.catalog import finding
from forensics.drivers import DEVICEMAPPER, DEVICEMAPPER_POOL
from forensics.model import Device, DeviceSet, Host, PoolState
from forensics.report import Finding

POOL = {"object_type": "pool", "object_id": DEVICEMAPPER.name}
TRANSACTION = DEVICEMAPPER_POOL.transaction


def check_thin_pool(host: Host) -> Iterator[Finding]:
    ds = host.deviceset
    if host.driver != DEVICEMAPPER.name or ds is None or ds.pool is None:
        return
    pool = ds.pool
    if not pool.readable:
        said = _what_thin_check_says(pool, skip=pool.problem)
        yield finding("thinpool.unreadable", pool.path, f"{pool.problem}{said}", **POOL)
        return
    if pool.damaged:
        said = _what_thin_check_says(pool)
        yield finding("thinpool.damaged", pool.path, f"the pool's trees are damaged{said}", **POOL)
    pending = _pending_device(ds, pool)
    yield from _check_transaction(ds, pool)
    yield from _check_records(host, pool, pending)
    yield from _check_leaks(host, pool, pending)
    yield from _check_data_file(ds, pool)


#: errors quoted in a finding; thin check lists the rest
SHOWN_ERRORS = 3


def _what_thin_check_says(pool: PoolState, skip: str | None = None) -> str:
    """The pool's errors as thin check words them (which node, which device, which blocks are
    unreadable), the first few, and where the rest are."""
    errors = [e for e in pool.errors if e != skip]
    shown = "; ".join(errors[:SHOWN_ERRORS])
    more = f" and {len(errors) - SHOWN_ERRORS} more" if len(errors) > SHOWN_ERRORS else ""
    where = f"docker-forensics thin check {pool.path}"
    return f": {shown}{more} ({where} lists everything)" if shown else f" ({where} tells more)"


def _pending_device(ds: DeviceSet, pool: PoolState) -> int | None:
    if ds.open_transaction_id is None or pool.transaction_id is None:
        return None
    return ds.transaction_device_id if ds.open_transaction_id == pool.transaction_id + 1 else None


def _check_transaction(ds: DeviceSet, pool: PoolState) -> Iterator[Finding]:
    if ds.open_transaction_id is None or pool.transaction_id is None:
        return
    opened, current = ds.open_transaction_id, pool.transaction_id
    if opened == current + 1:
        yield finding(
            "thinpool.transaction-pending",
            TRANSACTION,
            f"transaction {opened} on device {ds.transaction_device_id} never completed (the pool "
            f"is at {current}): on start the daemon deletes that device and its record",
            **POOL,
        )
    elif opened > current + 1:
        yield finding(
            "thinpool.transaction-ahead",
            TRANSACTION,
            f"open transaction {opened} is {opened - current} ahead of the pool's {current}: "
            "the records and the pool do not belong together",
            **POOL,
        )
    elif opened < current:
        yield finding(
            "thinpool.transaction-behind",
            TRANSACTION,
            f"open transaction {opened} is behind the pool's {current} (the daemon only logs it)",
            **POOL,
        )


def _check_records(host: Host, pool: PoolState, pending: int | None) -> Iterator[Finding]:
    block_bytes = (pool.data_block_size or 0) * 512
    for device in host.devices.values():
        if device.device_id is None or device.device_id == pending:
            continue
        ident = {"object_type": "device", "object_id": device.hash}
        found = pool.devices.get(device.device_id)
        if found is None:
            yield finding(
                "thinpool.device-missing",
                device.path,
                f"thin device {device.device_id} is not in the pool: its layer cannot be mounted",
                **ident,
            )
            continue
        yield from _check_record_against(device, pool, ident)
        if block_bytes and device.size and found.highest_block is not None:
            blocks = device.size // block_bytes
            if found.highest_block >= blocks:
                yield finding(
                    "thinpool.mapping-beyond-size",
                    device.path,
                    f"thin device {device.device_id} maps block {found.highest_block}, past its "
                    f"{device.size}-byte size ({blocks} blocks)",
                    **ident,
                )


def _check_record_against(
    device: Device, pool: PoolState, ident: dict[str, str]
) -> Iterator[Finding]:
    if device.transaction_id is None or pool.transaction_id is None:
        return
    if device.transaction_id > pool.transaction_id:
        yield finding(
            "thinpool.record-ahead",
            device.path,
            f"the record says transaction {device.transaction_id}, the pool is only at "
            f"{pool.transaction_id}",
            **ident,
        )


def _check_leaks(host: Host, pool: PoolState, pending: int | None) -> Iterator[Finding]:
    recorded = {d.device_id for d in host.devices.values() if d.device_id is not None}
    for dev_id, found in sorted(pool.devices.items()):
        if dev_id in recorded or dev_id == pending:
            continue
        yield finding(
            "thinpool.device-leaked",
            pool.path,
            f"thin device {dev_id} ({found.mapped_blocks} blocks mapped) has no Docker record: "
            "leaked space, and the daemon's id allocator trips on it",
            object_type="pool",
            object_id=f"device-{dev_id}",
        )


def _check_data_file(ds: DeviceSet, pool: PoolState) -> Iterator[Finding]:
    data = ds.pool_files.get(DEVICEMAPPER_POOL.data_name)
    if data is None or not pool.nr_data_blocks or not pool.data_block_size:
        return
    needed = pool.nr_data_blocks * pool.data_block_size * 512
    if data.size < needed:
        yield finding(
            "thinpool.data-file-short",
            data.path,
            f"{data.size} bytes, but the pool has {pool.nr_data_blocks} data blocks "
            f"({needed} bytes): blocks past the end are lost",
            **POOL,
        )
