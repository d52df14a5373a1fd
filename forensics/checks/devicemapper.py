"""Rules on devicemapper's own records (the JSON beside the pool): device records, device ids,
``deviceset-metadata``, ``transaction-metadata`` and the loop-lvm pool files."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from forensics.checks.catalog import finding
from forensics.checks.common import problem_findings
from forensics.drivers import DEVICEMAPPER, DEVICEMAPPER_POOL
from forensics.model import DeviceSet, Host
from forensics.report import Finding

MAX_DEVICE_ID = 0xFFFFFF
THIN = DEVICEMAPPER_POOL
MOUNT_POINT = DEVICEMAPPER.mount_point
assert MOUNT_POINT is not None


def check_devicemapper(host: Host) -> Iterator[Finding]:
    ds = host.deviceset
    if host.driver != DEVICEMAPPER.name or ds is None:
        return
    for device in host.devices.values():
        yield from problem_findings(
            DEVICEMAPPER.checks, device.problems, {"record": "device record"}, "device", device.hash
        )
    yield from problem_findings(
        DEVICEMAPPER.checks,
        ds.problems,
        {"deviceset": THIN.deviceset_name, "transaction": THIN.transaction_name},
        "pool",
        DEVICEMAPPER.name,
    )
    yield from _check_device_ids(host)
    yield from _check_next_id(host, ds)
    yield from _check_transaction(host, ds)
    yield from _check_base_and_files(host, ds)
    yield from _check_mount_points(host, ds)


def _check_device_ids(host: Host) -> Iterator[Finding]:
    by_id: dict[int, list[str]] = defaultdict(list)
    for device in host.devices.values():
        if device.device_id is None:
            continue
        by_id[device.device_id].append(device.hash)
        if not 0 <= device.device_id <= MAX_DEVICE_ID:
            yield finding(
                "devicemapper.device-id-range",
                device.path,
                f"device id {device.device_id} is outside 0…{MAX_DEVICE_ID} (24 bits)",
                object_type="device",
                object_id=device.hash,
            )
    for device_id, hashes in sorted(by_id.items()):
        if len(hashes) < 2:
            continue
        for h in hashes:
            yield finding(
                "devicemapper.device-id-duplicate",
                host.devices[h].path,
                f"device id {device_id} is also recorded for "
                + ", ".join(x for x in hashes if x != h),
                object_type="device",
                object_id=h,
            )


def _check_next_id(host: Host, ds: DeviceSet) -> Iterator[Finding]:
    ids = [d.device_id for d in host.devices.values() if d.device_id is not None]
    if ds.next_device_id is None or not ids or ds.next_device_id >= max(ids):
        return
    yield finding(
        "devicemapper.next-id-stale",
        THIN.deviceset,
        f"next_device_id {ds.next_device_id} is below the highest id in use, {max(ids)} "
        "(saved only at shutdown; the daemon skips ids in use)",
        object_type="pool",
        object_id=DEVICEMAPPER.name,
    )


def _check_transaction(host: Host, ds: DeviceSet) -> Iterator[Finding]:
    """At rest the transaction file names the last create; an open id above that device's own
    transaction id (or a device without record) is a crashed operation the daemon rolls back."""
    if ds.open_transaction_id is None or ds.transaction_hash is None:
        return
    if ds.pool is not None and ds.pool.readable:
        return  # the pool's own transaction id says it better (checks/thinpool.py)
    name = ds.transaction_hash or THIN.base
    device = host.devices.get(name)
    if device is not None and device.transaction_id is not None:
        if device.transaction_id >= ds.open_transaction_id:
            return
    record = (
        "no record" if device is None else f"its record has transaction {device.transaction_id}"
    )
    yield finding(
        "devicemapper.transaction-pending",
        THIN.transaction,
        f"transaction {ds.open_transaction_id} on device {ds.transaction_device_id} ({name}) was "
        f"not completed ({record}): the daemon will delete that device on start",
        object_type="device",
        object_id=name,
    )


def _check_mount_points(host: Host, ds: DeviceSet) -> Iterator[Finding]:
    for name in ds.mount_points:
        if name not in host.devices:
            yield finding(
                "devicemapper.mnt-orphan",
                MOUNT_POINT(name),
                "a mount point of a device that has no record",
                object_type="device",
                object_id=name,
            )


def _check_base_and_files(host: Host, ds: DeviceSet) -> Iterator[Finding]:
    if host.devices and THIN.base not in host.devices:
        yield finding(
            "devicemapper.base-missing",
            THIN.records,
            "no base device record: the daemon will create a new base device",
            object_type="pool",
            object_id=DEVICEMAPPER.name,
        )
    if host.devices and not ds.pool_files:
        yield finding(
            "devicemapper.pool-files-missing",
            THIN.pool,
            "no loop-lvm data and metadata files: the pool was a real LV (direct-lvm) or the files "
            "are lost",
            object_type="pool",
            object_id=DEVICEMAPPER.name,
        )
