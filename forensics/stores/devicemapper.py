"""The devicemapper driver's records: ``devicemapper/metadata/{base,<hash>,deviceset-metadata,
transaction-metadata}``, ``mnt/``, and the loop-lvm pool files as files (where the row of
:mod:`forensics.drivers` says).

Layer contents live inside the thin pool (its binary metadata is read elsewhere); here a layer
"exists" when its device record does.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from typing import Any

from forensics.drivers import DEVICEMAPPER, DriverLayout, ThinPool
from forensics.evidence import DirHandle, Evidence, ReadFailure
from forensics.formats.ids import DRIVER_DIR_ID, id_problem
from forensics.formats.jsonfile import field, go_int, go_uint
from forensics.model import Device, DeviceSet, DriverDir, Host, PoolFile, Problem
from forensics.progress import track
from forensics.stores.reading import read_json_object
from forensics.stores.thinpool import read_thin_pool


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


#: the fields of a device record as devmapper's ``devInfo`` types them (int, uint64, bool)
DEVICE_FIELDS: dict[str, Callable[[Any], Any]] = {
    "device_id": go_int,
    "size": go_uint,
    "transaction_id": go_uint,
    "initialized": _bool,
}


def read_devicemapper(ev: Evidence, host: Host, layout: DriverLayout = DEVICEMAPPER) -> None:
    thin = layout.thin
    assert thin is not None and layout.mount_point is not None
    host.deviceset = DeviceSet()
    try:
        with ev.opendir(thin.records) as d:
            _read_records(d, host, thin)
    except ReadFailure as failure:
        host.deviceset.problems["metadata-dir"] = Problem(
            failure.path, failure.kind, failure.detail
        )
    _read_pool_files(ev, host.deviceset, thin)
    host.deviceset.mount_points = sorted(ev.names(layout.mount_point.directory))
    read_thin_pool(ev, host.deviceset)


def _read_records(d: DirHandle, host: Host, thin: ThinPool) -> None:
    assert host.deviceset is not None
    for name in track(sorted(d.types), "devices"):
        rel = d.path_of(name)
        if name.startswith(".") or name.endswith(".migrated"):
            if name.startswith(".tmp"):
                host.add_leftover("devicemapper-tmp", rel)
            continue
        if name in thin.pool_records:
            continue
        if d.types[name] != "file":
            host.add_leftover("driver-stray", rel)
            continue
        device = Device(hash=name, path=rel)
        _fill_device(device, read_json_object(d, name, device.problems, "record"))
        host.devices[name] = device
        if name != thin.base:
            host.driver_dirs[name] = DriverDir(id=name, path=rel, has_diff=True)
    deviceset, transaction = thin.pool_records
    _read_deviceset(d, host.deviceset, deviceset)
    _read_transaction(d, host.deviceset, transaction)


def _fill_device(device: Device, doc: dict[str, Any] | None) -> None:
    if doc is None:
        return
    wrong = []
    for key, convert in DEVICE_FIELDS.items():
        if convert(field(doc, key)) is None:
            wrong.append(key)
    deleted = field(doc, "deleted")
    if deleted is None:
        deleted = False  # absent before 1.9
    if not isinstance(deleted, bool):
        wrong.append("deleted")
    if wrong:
        device.problems["record"] = Problem(
            device.path, "bad-value", f"missing or mistyped field(s): {', '.join(wrong)}"
        )
    device.device_id = go_int(field(doc, "device_id"))
    device.size = go_uint(field(doc, "size"))
    device.transaction_id = go_uint(field(doc, "transaction_id"))
    device.initialized = _bool(field(doc, "initialized"))
    device.deleted = deleted if isinstance(deleted, bool) else None


def _read_deviceset(d: DirHandle, ds: DeviceSet, name: str) -> None:
    doc = read_json_object(d, name, ds.problems, "deviceset", optional=True)
    if doc is None:
        return
    ds.next_device_id = go_int(field(doc, "next_device_id"))
    if ds.next_device_id is None:
        ds.problems["deviceset"] = Problem(
            d.path_of(name), "bad-value", "no integer next_device_id"
        )
    uuid = field(doc, "BaseDeviceUUID")
    ds.base_uuid = uuid if isinstance(uuid, str) else None
    fs = field(doc, "BaseDeviceFilesystem")
    ds.base_filesystem = fs if isinstance(fs, str) else None


def _read_transaction(d: DirHandle, ds: DeviceSet, name: str) -> None:
    ds.has_transaction = d.exists(name)
    doc = read_json_object(d, name, ds.problems, "transaction", optional=True)
    if doc is None:
        return
    ds.open_transaction_id = go_uint(field(doc, "open_transaction_id"))
    ds.transaction_device_id = go_int(field(doc, "device_id"))
    device_hash = field(doc, "device_hash")
    ds.transaction_hash = device_hash if isinstance(device_hash, str) else None
    why = id_problem(ds.transaction_hash, DRIVER_DIR_ID) if ds.transaction_hash else None
    if why is not None:  # it names the record metadata/<device_hash>: never a path out
        ds.transaction_hash = None
        ds.problems["transaction"] = Problem(d.path_of(name), "bad-value", f"device_hash is {why}")
        return
    if (
        ds.open_transaction_id is None
        or ds.transaction_hash is None
        or ds.transaction_device_id is None
    ):
        ds.problems["transaction"] = Problem(
            d.path_of(name),
            "bad-value",
            "needs open_transaction_id, device_hash and device_id",
        )


def _read_pool_files(ev: Evidence, ds: DeviceSet, thin: ThinPool) -> None:
    for name in thin.pool_files:
        rel = f"{thin.pool}/{name}"
        st = ev.lstat(rel)
        if st is None or not stat.S_ISREG(st.st_mode):
            continue
        ds.pool_files[name] = PoolFile(rel, st.st_size, st.st_blocks * 512)
