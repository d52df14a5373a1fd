"""Layer trees inside devicemapper thin devices, opened from the pool files of the evidence.

devicemapper keeps every layer's (and container's) files in a filesystem inside a thin device
of the pool ``devicemapper/devicemapper/{metadata,data}``, under ``rootfs/`` (``/id`` and
``lost+found`` are the driver's). :func:`open_device_dir` serves that directory as a
:class:`~forensics.layers.treedir.TreeDir`, read-only and without a kernel:

* both pool files are opened through :class:`~forensics.evidence.Evidence` (regular files
  reached without a symlink, read-only); the metadata is mapped read-only through
  ``/proc/self/fd`` of the very descriptor that was checked, the data file read with
  ``pread`` — nothing is ever written;
* the device is read through its mapping tree (:class:`~forensics.thin.device.ThinDevice`:
  unmapped blocks as zeros, damaged mappings an I/O error naming the device and range);
* its ext4 or xfs filesystem is opened as it is (:func:`forensics.fs.open_tree`: a zeroed
  superblock is an error, never a backup superblock read instead) and walked from its root
  directory, never by scanning inode tables.

A pool is read once per process and Evidence (each forked helper of ``verify --deep`` reads
it once); :func:`close_pools` lets it go. Which device holds a layer is Docker's record's to
say (``devicemapper/metadata/<id>``: legacy graph id, modern cache-id): a :class:`DeviceRef`.
"""

from __future__ import annotations

import os
import stat
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from forensics.drivers import DEVICEMAPPER, DEVICEMAPPER_POOL
from forensics.errors import Damage
from forensics.evidence import Evidence, ReadFailure
from forensics.fs.tree import Refusal
from forensics.layers.treedir import TreeDir
from forensics.model import Host, Layer

if TYPE_CHECKING:  # the thin readers load numpy: imported when a device is opened
    from forensics.thin.blocks import MetadataFile
    from forensics.thin.pool import Pool

__all__ = [
    "POOL",
    "ContentError",
    "DeviceRef",
    "LayerDevices",
    "close_pools",
    "device_ref",
    "layer_devices",
    "open_device_dir",
    "pool_in_root",
    "rootfs_dir",
]

#: where loop-lvm keeps the pool files (a direct-lvm pool is a block device outside ROOT)
POOL = DEVICEMAPPER_POOL.pool
#: the directory of a device's filesystem that is the layer (or container) itself
ROOTFS = DEVICEMAPPER_POOL.rootfs.encode()


class ContentError(Damage):
    """A layer's tree cannot be opened (the message says why, naming the device)."""


@dataclass(frozen=True)
class DeviceRef:
    """A thin device as Docker records it: ``name`` (the record's name: graph id, cache-id,
    container id, ``<id>-init``), its ``dev_id`` and ``size`` (bytes; None when the record
    lacks it), in the pool whose files are under ``pool`` (relative to ROOT)."""

    name: str
    dev_id: int
    size: int | None
    pool: str = POOL

    @property
    def mount_dir(self) -> str:
        """Where Docker mounts the device's ``rootfs/``, relative to ROOT: the layer's files
        are shown there."""
        return rootfs_dir(self.name)

    def describe(self) -> str:
        return f"thin device {self.dev_id} of {self.pool}"


def rootfs_dir(name: str) -> str:
    """Where Docker mounts the ``rootfs/`` of the device its record ``name`` names, relative
    to ROOT (the layer's files are shown there, also when the device cannot be read)."""
    assert DEVICEMAPPER.mount_point is not None
    return f"{DEVICEMAPPER.mount_point(name)}/{DEVICEMAPPER_POOL.rootfs}"


def open_device_dir(ev: Evidence, ref: DeviceRef) -> TreeDir:
    """The ``rootfs/`` directory of ``ref``'s filesystem. Raises :class:`ContentError` when
    the pool, the device or its filesystem cannot be read, or it has no ``rootfs/``."""
    from forensics.fs import FsOpenError
    from forensics.thin.device import DeviceOpenError, ThinDevice
    from forensics.thin.files import open_device_fs

    pool = _pool(ev, ref.pool)
    what = ref.describe()
    try:
        device = ThinDevice(pool.pool, ref.dev_id, pool.data_fd, size=ref.size)
    except DeviceOpenError as exc:
        raise ContentError(f"{what}: {exc}") from None
    try:
        tree = open_device_fs(device, ref.size)
    except FsOpenError as exc:
        problems = "; ".join(str(p) for p in device.read_problems)
        raise ContentError(f"{what}: {problems or exc}") from None
    except OSError as exc:  # the device's bytes under the superblock are unreadable
        raise ContentError(f"{what}: {exc}") from None
    source = f"{what} ({tree.label})"
    top = tree.lstat((ROOTFS,))
    if isinstance(top, Refusal) or not stat.S_ISDIR(top.mode):
        detail = top.detail if isinstance(top, Refusal) else f"a {top.kind}"
        tree.close()
        raise ContentError(f"{source}: no rootfs/ directory ({detail})")
    out = TreeDir(tree, (ROOTFS,), ref.mount_dir, source, tree.close)
    for problem in device.damage():
        out.problems.append(str(problem))
    return out


def close_pools(ev: Evidence) -> None:
    """Let go of the pools opened for ``ev`` in this process."""
    for pool in _POOLS.pop(ev, {}).values():
        if isinstance(pool, _OpenPool):
            pool.close()


# -- the pools of one Evidence ---------------------------------------------------------------


@dataclass
class _OpenPool:
    meta: MetadataFile
    pool: Pool
    data_fd: int

    def close(self) -> None:
        os.close(self.data_fd)
        self.meta.close()


#: per Evidence (a forked helper has its own copy): pool directory → the open pool, or why
#: it cannot be read (said once, to every layer in it)
_POOLS: weakref.WeakKeyDictionary[Evidence, dict[str, _OpenPool | str]] = (
    weakref.WeakKeyDictionary()
)


def _pool(ev: Evidence, rel: str) -> _OpenPool:
    pools = _POOLS.setdefault(ev, {})
    found = pools.get(rel)
    if found is None:
        try:
            found = _open_pool(ev, rel)
        except ContentError as exc:
            found = str(exc)
        pools[rel] = found
    if isinstance(found, str):
        raise ContentError(found)
    return found


def _open_pool(ev: Evidence, rel: str) -> _OpenPool:
    from forensics.thin.blocks import MetadataFile, MetadataOpenError
    from forensics.thin.pool import read_pool

    meta_rel = f"{rel}/{DEVICEMAPPER_POOL.metadata_name}"
    data_rel = f"{rel}/{DEVICEMAPPER_POOL.data_name}"
    try:
        fd, _ = ev.open_regular(meta_rel)
    except ReadFailure as failure:
        raise ContentError(f"the pool's metadata: {failure}") from None
    try:
        meta = MetadataFile(f"/proc/self/fd/{fd}")
    except MetadataOpenError as exc:
        raise ContentError(f"the pool's metadata {meta_rel}: {exc}") from None
    finally:
        os.close(fd)  # the map keeps the file
    pool = read_pool(meta, space_maps=False)
    if not pool.usable or pool.mappings is None:
        meta.close()
        why = pool.not_metadata or "its superblock cannot be read"
        raise ContentError(f"the pool's metadata {meta_rel}: {why}")
    try:
        data_fd, _ = ev.open_regular(data_rel)
    except ReadFailure as failure:
        meta.close()
        raise ContentError(f"the pool's data file: {failure}") from None
    return _OpenPool(meta, pool, data_fd)


# -- which device holds a layer --------------------------------------------------------------


@dataclass(frozen=True)
class LayerDevices:
    """The devices of one layer: its own, and its parent layer's (None for a first layer: it
    is held against an empty tree), or why the parent's is not known."""

    device: DeviceRef
    parent: DeviceRef | None
    parent_problem: str | None = None


def layer_devices(host: Host, layer: Layer, name: str, legacy: bool) -> LayerDevices | str:
    """The devices of ``layer`` (its device record is ``name``: the graph id or cache-id), or
    why it cannot be read: ``no-pool`` (the pool is not a pair of files in ROOT: direct-lvm)
    or ``no-device`` (no usable device record)."""
    if not pool_in_root(host):
        return "no-pool"
    device = device_ref(host, name)
    if device is None:
        return "no-device"
    if not layer.parent:
        return LayerDevices(device, None)
    parent = host.layers.get(layer.parent)
    parent_name = layer.parent if legacy else (parent.cache_id if parent else None)
    if parent is None or not parent_name:
        why = "is not in the layer store" if parent is None else "has no cache-id"
        return LayerDevices(device, None, f"its parent layer {layer.parent} {why}")
    parent_device = device_ref(host, parent_name)
    if parent_device is None:
        problem = f"its parent layer {layer.parent} has no usable device record ({parent_name})"
        return LayerDevices(device, None, problem)
    return LayerDevices(device, parent_device)


def pool_in_root(host: Host) -> bool:
    """True when the pool is a pair of files in ROOT (loop-lvm); a direct-lvm pool is a block
    device outside it, whose devices cannot be read from the evidence."""
    ds = host.deviceset
    return ds is not None and set(DEVICEMAPPER_POOL.pool_files) <= set(ds.pool_files)


def device_ref(host: Host, name: str) -> DeviceRef | None:
    """The device Docker's record ``name`` names (a graph id, cache-id, mount-id or
    ``<id>-init``); None when there is no usable record (missing, without a device id, or
    marked deleted)."""
    record = host.devices.get(name)
    if record is None or record.device_id is None or record.deleted:
        return None
    return DeviceRef(name, record.device_id, record.size)
