"""Where the bytes of a containerd store go: the ``df`` of the inventory.

Every blob file, every snapshot directory, every ingest and both databases of the store are
given to exactly one category, the first that holds them:

- ``images``: the blobs an image uses (target, index, present manifests, configs, layers) and
  the committed snapshots its layers are unpacked to;
- ``containers``: the snapshots of containerd's container records and of Docker's containers
  (``<id>`` and ``<id>-init``), with their parents that no image holds;
- ``build_cache``: what BuildKit's leases hold, and Docker's ``buildkit/``;
- ``leases``: what other leases hold (a pull in progress, ``ctr`` leases);
- ``ingests``: unfinished writes of the content store;
- ``unreferenced``: what nothing above holds — blob files and snapshots no image, container or
  lease holds, and snapshot directories that no snapshot owns; each listed;
- ``metadata``: ``meta.db`` and the snapshotters' ``metadata.db``.

Sizes are a blob's file size, a committed snapshot's usage as containerd recorded it, and the
bytes of the files of any other snapshot directory, measured when the store was read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from forensics.containerd_graph import (
    docker_containers,
    image_blobs,
    image_chain,
    init_key,
    present_manifests,
    snapshot_chain,
    unpacked_top,
)
from forensics.containerd_model import ContainerdHost, CtrLease, CtrNamespace
from forensics.model import Host
from forensics.stores.containerd.gc import dir_size

CATEGORIES = (
    "images",
    "containers",
    "build_cache",
    "leases",
    "ingests",
    "unreferenced",
    "metadata",
)


@dataclass(frozen=True)
class UsageItem:
    """One thing that takes space: ``kind`` blob, snapshot, ingest, database or buildkit;
    ``key`` its digest, ``<namespace>/<snapshotter>/<key>`` (a snapshot directory
    that no snapshot owns: its directory name), ingest ref or name; ``path`` where it lies."""

    category: str
    kind: str
    key: str
    path: str
    size: int | None


@dataclass
class Usage:
    items: list[UsageItem] = field(default_factory=list)

    def total(self, category: str | None = None) -> int:
        return sum(i.size or 0 for i in self.items if category in (None, i.category))

    def count(self, category: str) -> int:
        return sum(1 for i in self.items if i.category == category)

    def items_in(self, category: str) -> list[UsageItem]:
        return [i for i in self.items if i.category == category]


@dataclass
class _Owners:
    """Who holds what: blob digest → category; (namespace, snapshotter, key) → category."""

    blobs: dict[str, str] = field(default_factory=dict)
    snapshots: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def blob(self, digest: str, category: str) -> None:
        self.blobs.setdefault(digest, category)

    def chain(self, ns: CtrNamespace, snapshotter: str, key: str, category: str) -> None:
        for k in snapshot_chain(ns, snapshotter, key):
            self.snapshots.setdefault((ns.name, snapshotter, k), category)


def store_usage(host: Host) -> Usage:
    """Every byte of ``host``'s containerd store, by category."""
    ctd = host.containerd
    usage = Usage()
    if ctd is None:
        return usage
    owners = _owners(host, ctd)
    store = ctd.store
    for digest, blob in sorted(store.blobs.items()):
        category = owners.blobs.get(digest, "unreferenced")
        usage.items.append(UsageItem(category, "blob", digest, blob.path, max(blob.size, 0)))
    for name, sn in sorted(store.snapshotters.items()):
        by_id = {str(s.id): s for s in sn.snapshots.values() if s.id is not None}
        for dir_name in sorted(sn.dirs, key=_numeric):
            owner = by_id.get(dir_name)
            category, key = "unreferenced", dir_name
            if owner is not None:
                key = f"{owner.namespace}/{name}/{owner.key}"
                held = owners.snapshots.get((owner.namespace, name, owner.key))
                category = held or "unreferenced"
            size = dir_size(sn, dir_name, owner)
            usage.items.append(UsageItem(category, "snapshot", key, sn.dirs[dir_name].path, size))
    for ingest_name, ingest in sorted(store.ingests.items()):
        key = ingest.ref or ingest_name
        usage.items.append(UsageItem("ingests", "ingest", key, ingest.path, ingest.data_size))
    for db in _databases(ctd):
        usage.items.append(UsageItem("metadata", "database", db[0], db[0], db[1]))
    for path, size in sorted(ctd.beside.items()):
        usage.items.append(UsageItem("build_cache", "buildkit", path, path, size))
    return usage


def _numeric(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 62, name)


def _databases(ctd: ContainerdHost) -> Iterable[tuple[str, int]]:
    if ctd.store.meta is not None:
        yield ctd.store.meta.path, ctd.store.meta.size
    for sn in ctd.store.snapshotters.values():
        if sn.db is not None:
            yield sn.db.path, sn.db.size


def _owners(host: Host, ctd: ContainerdHost) -> _Owners:
    owners = _Owners()
    for ns in ctd.store.namespaces.values():
        _image_owners(ns, ctd, owners)
    for ns in ctd.store.namespaces.values():
        for c in ns.containers.values():
            if c.snapshotter and c.snapshot_key:
                owners.chain(ns, c.snapshotter, c.snapshot_key, "containers")
    moby = ctd.store.namespaces.get("moby")
    if moby is not None:
        for c in docker_containers(host):
            for key in (c.id, init_key(c.id)):
                owners.chain(moby, c.driver or "", key, "containers")
    for ns in ctd.store.namespaces.values():
        for lease in ns.leases.values():
            category = "build_cache" if is_buildkit_lease(lease) else "leases"
            for digest in lease.content:
                owners.blob(digest, category)
            for snapshotter, keys in lease.snapshots.items():
                for key in keys:
                    owners.chain(ns, snapshotter, key, category)
    return owners


def _image_owners(ns: CtrNamespace, ctd: ContainerdHost, owners: _Owners) -> None:
    for image in ns.images.values():
        resolved = ctd.images.get(image.target.digest)
        if resolved is None:
            continue
        for digest in image_blobs(resolved):
            owners.blob(digest, "images")
        for m in present_manifests(resolved):
            chain = image_chain(m)
            for snapshotter in ns.snapshot_keyed(chain[-1]) if chain else ():
                owners.chain(ns, snapshotter, chain[-1], "images")
            for snapshotter, top in unpacked_top(ns, m).items():
                owners.chain(ns, snapshotter, top, "images")


def is_buildkit_lease(lease: CtrLease) -> bool:
    """A lease of BuildKit's (its id or a label key names it)."""
    return "buildkit" in lease.id or any("buildkit" in key for key in lease.labels)
