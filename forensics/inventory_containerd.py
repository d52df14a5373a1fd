"""The containerd store in the inventory: every namespace with its images, containers,
snapshots, leases and ingests; Docker's own view of namespace ``moby`` (what ``docker images``
and ``docker ps -a`` show on Docker 29); and the ``df`` of the store.

The document's keys are an interface, as the rest of the inventory's: added, never changed.
"""

from __future__ import annotations

from typing import Any

from forensics.containerd_df import CATEGORIES, Usage, store_usage
from forensics.containerd_graph import (
    DOCKER_NAMESPACE,
    chosen_manifest,
    docker_containers,
    docker_name,
    image_blobs,
    image_chain,
    init_key,
    is_before,
    is_dangling,
    iso,
    lease_expiry,
    namespaces,
    platforms,
    snapshot_chain,
    split_reference,
)
from forensics.containerd_model import (
    ContainerdHost,
    CtrContainer,
    CtrImage,
    CtrLease,
    CtrNamespace,
    CtrSnapshot,
    Descriptor,
    ResolvedImage,
)
from forensics.model import Container, Host
from forensics.stores.containerd.gc import dir_size

#: how many items of a category the text's df lists
TEXT_ITEMS = 10


def containerd_record(host: Host) -> dict[str, Any]:
    """The containerd part of the inventory document."""
    ctd = host.containerd
    assert ctd is not None
    usage = store_usage(host)
    return {
        "root": ctd.location,
        "external": ctd.external,
        "db_version": ctd.store.db_version,
        "as_of": iso(ctd.as_of),
        "namespaces": [namespace_record(ctd, ns) for ns in namespaces(ctd)],
        "docker": docker_view(host, ctd),
        "blobs": [
            {"digest": b.digest, "size": b.size, "path": b.path}
            for _, b in sorted(ctd.store.blobs.items())
        ],
        "df": df_record(usage),
        "problems": [
            {"path": p.path, "kind": p.kind, "detail": p.detail, "where": p.where}
            for p in ctd.store.problems
        ],
    }


# -- namespaces ----------------------------------------------------------------------------------


def namespace_record(ctd: ContainerdHost, ns: CtrNamespace) -> dict[str, Any]:
    return {
        "name": ns.name,
        "labels": ns.labels,
        "images": [image_record(ctd, ns, ns.images[n]) for n in sorted(ns.images)],
        "containers": [container_record(ns, ns.containers[c]) for c in sorted(ns.containers)],
        "snapshots": [snapshot_record(ctd, ns, ns.snapshots[k]) for k in sorted(ns.snapshots)],
        "leases": [lease_record(ctd, ns.leases[i]) for i in sorted(ns.leases)],
        "ingests": [
            {
                "ref": i.ref,
                "backend_ref": i.backend_ref,
                "expected": i.expected or None,
                "expires": iso(i.expire_at),
            }
            for _, i in sorted(ns.ingests.items())
        ],
        "content": len(ns.content),
    }


def _descriptor(d: Descriptor | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {"digest": d.digest, "media_type": d.media_type, "size": d.size}


def image_record(ctd: ContainerdHost, ns: CtrNamespace, image: CtrImage) -> dict[str, Any]:
    """An image of a namespace: its name (and as Docker shows it), its target — whose digest is
    the id Docker 29 shows —, its platforms, config and layers (of the manifest it is shown by),
    the snapshot its layers are unpacked to, and its sizes."""
    resolved = ctd.images.get(image.target.digest) or ResolvedImage(image.target)
    manifest = chosen_manifest(resolved)
    chain = image_chain(manifest) if manifest else []
    layers = []
    diff_ids = manifest.diff_ids if manifest else []
    for n, layer in enumerate(manifest.layers if manifest else []):
        blob = ctd.store.blobs.get(layer.digest)
        layers.append(
            {
                "digest": layer.digest,
                "media_type": layer.media_type,
                "size": layer.size,
                "present": blob is not None,
                "diff_id": diff_ids[n] if n < len(diff_ids) else None,
                "chain_id": chain[n] if n < len(chain) else None,
            }
        )
    top = chain[-1] if chain else None
    return {
        "name": image.name,
        "docker_name": docker_name(image.name),
        "digest": image.target.digest,
        "media_type": image.target.media_type,
        "size": image.target.size,
        "created": iso(image.created),
        "updated": iso(image.updated),
        "labels": image.labels,
        "platforms": platforms(resolved),
        "manifest": _descriptor(manifest.descriptor) if manifest else None,
        "config": _descriptor(manifest.config) if manifest else None,
        "built": manifest.created if manifest else None,
        "layers": layers,
        "snapshot": top if top and ns.snapshot_keyed(top) else None,
        "content_size": content_size(ctd, resolved),
        "unpacked_size": unpacked_size(ctd, ns, top),
        "dangling": is_dangling(image.name),
    }


def content_size(ctd: ContainerdHost, resolved: ResolvedImage) -> int:
    """Bytes of the image's blobs that are present (manifests, configs, layers)."""
    return sum(
        max(ctd.store.blobs[d].size, 0) for d in image_blobs(resolved) if d in ctd.store.blobs
    )


def unpacked_size(ctd: ContainerdHost, ns: CtrNamespace, top: str | None) -> int | None:
    """Bytes of the snapshots the image's layers are unpacked to (None: not unpacked)."""
    if not top:
        return None
    for snapshotter in ns.snapshot_keyed(top)[:1]:
        chain = snapshot_chain(ns, snapshotter, top)
        return sum(snapshot_size(ctd, ns.snapshots.get((snapshotter, k))) or 0 for k in chain)
    return None


def container_record(ns: CtrNamespace, c: CtrContainer) -> dict[str, Any]:
    return {
        "id": c.id,
        "image": c.image or None,
        "runtime": c.runtime,
        "snapshotter": c.snapshotter or None,
        "snapshot_key": c.snapshot_key or None,
        "snapshot_present": (
            (c.snapshotter, c.snapshot_key) in ns.snapshots if c.snapshot_key else None
        ),
        "sandbox": c.sandbox or None,
        "labels": c.labels,
        "spec_type": c.spec_type or None,
        "created": iso(c.created),
        "updated": iso(c.updated),
    }


def snapshot_size(ctd: ContainerdHost, snap: CtrSnapshot | None) -> int | None:
    """The snapshot's size: containerd's recorded usage when committed, else its files'."""
    if snap is None:
        return None
    sn = ctd.store.snapshotters.get(snap.snapshotter)
    backend = sn.snapshots.get(snap.name) if sn else None
    if sn is None or backend is None:
        return None
    if backend.id is None:
        return backend.size
    return dir_size(sn, str(backend.id), backend)


def snapshot_record(ctd: ContainerdHost, ns: CtrNamespace, snap: CtrSnapshot) -> dict[str, Any]:
    """A snapshot: its key, parent chain (to the base), kind, size and where it lies."""
    sn = ctd.store.snapshotters.get(snap.snapshotter)
    backend = sn.snapshots.get(snap.name) if sn else None
    directory = sn.dirs.get(str(backend.id)) if sn and backend and backend.id is not None else None
    return {
        "key": snap.key,
        "snapshotter": snap.snapshotter,
        "parent": snap.parent or None,
        "chain": snapshot_chain(ns, snap.snapshotter, snap.key)[1:],
        "kind": backend.kind if backend else None,
        "backend_name": snap.name,
        "id": backend.id if backend else None,
        "path": directory.path if directory else None,
        "size": snapshot_size(ctd, snap),
        "inodes": backend.inodes if backend else None,
        "labels": snap.labels,
        "created": iso(snap.created),
        "updated": iso(snap.updated),
    }


def lease_record(ctd: ContainerdHost, lease: CtrLease) -> dict[str, Any]:
    expires = lease_expiry(lease)
    return {
        "id": lease.id,
        "created": iso(lease.created),
        "expires": iso(expires),
        "expired": is_before(expires, ctd.reference),
        "labels": lease.labels,
        "content": lease.content,
        "snapshots": [
            {"snapshotter": sn, "key": key}
            for sn, keys in sorted(lease.snapshots.items())
            for key in keys
        ],
        "ingests": lease.ingests,
    }


# -- Docker's view -------------------------------------------------------------------------------


def docker_view(host: Host, ctd: ContainerdHost) -> dict[str, Any]:
    """Namespace ``moby`` as Docker 29 shows it: ``docker images`` (repository, tag, the
    image id that is its target digest) and the containers of ``containers/`` with their
    snapshots and lease."""
    ns = ctd.store.namespaces.get(DOCKER_NAMESPACE)
    containers = docker_containers(host)
    users_of: dict[str, list[str]] = {}
    for c in containers:
        users_of.setdefault(c.image_id or "", []).append(c.id)
    images = []
    for name in sorted(ns.images) if ns else []:
        image = ns.images[name] if ns else None
        assert image is not None
        repository, tag, digest = split_reference(docker_name(name))
        resolved = ctd.images.get(image.target.digest) or ResolvedImage(image.target)
        manifest = chosen_manifest(resolved)
        users = users_of.get(image.target.digest, [])
        dangling = is_dangling(name)
        images.append(
            {
                "repository": None if dangling else repository,
                "tag": None if dangling else tag,
                "digest": digest if not dangling else None,
                "id": image.target.digest,
                "created": manifest.created if manifest else None,
                "size": content_size(ctd, resolved),
                "containers": users,
            }
        )
    return {"images": images, "containers": [docker_container(ns, c) for c in containers]}


def docker_container(ns: CtrNamespace | None, c: Container) -> dict[str, Any]:
    """A container of ``containers/`` and what it has in namespace ``moby``."""
    snapshotter = c.driver or ""
    manifest = c.details.image_manifest if c.details else None
    return {
        "id": c.id,
        "name": c.name,
        "state": c.state,
        "image": c.image,
        "image_id": c.image_id,
        "image_manifest": manifest,
        "image_present": bool(ns and c.image_id in ns.target_digests),
        "snapshotter": snapshotter,
        "snapshot": bool(ns and (snapshotter, c.id) in ns.snapshots),
        "init_snapshot": bool(ns and (snapshotter, init_key(c.id)) in ns.snapshots),
        "lease": bool(ns and c.id in ns.leases),
        "containerd_container": bool(ns and c.id in ns.containers),
    }


# -- df -----------------------------------------------------------------------------------------


def df_record(usage: Usage) -> dict[str, Any]:
    """Bytes and counts by category, the total, and every item (``which``)."""
    return {
        "total": usage.total(),
        "categories": {c: {"size": usage.total(c), "count": usage.count(c)} for c in CATEGORIES},
        "items": [
            {"category": i.category, "kind": i.kind, "key": i.key, "path": i.path, "size": i.size}
            for i in usage.items
        ],
    }


# -- text ---------------------------------------------------------------------------------------


def containerd_text(host: Host) -> list[str]:
    """The inventory's containerd sections for people."""
    from forensics.inventory import _table as table
    from forensics.inventory import human_size

    ctd = host.containerd
    if ctd is None:
        return []
    where = ctd.location or "ROOT"
    lines = ["", f"CONTAINERD STORE ({where}, as of {iso(ctd.as_of) or '-'})"]
    for ns in namespaces(ctd):
        lines += ["", f"namespace {ns.name}"]
        rows = []
        for name in sorted(ns.images):
            record = image_record(ctd, ns, ns.images[name])
            rows.append(
                [
                    name,
                    record["digest"][7:19],
                    ", ".join(record["platforms"]) or "-",
                    human_size(record["content_size"]),
                    record["created"] or "-",
                ]
            )
        headers = ["IMAGE", "DIGEST", "PLATFORMS", "SIZE", "CREATED"]
        lines += ["  " + r for r in table(headers, rows)]
        rows = [
            [c.id, c.image or "-", c.snapshot_key or "-", c.runtime or "-"]
            for _, c in sorted(ns.containers.items())
        ]
        if rows:
            lines += ["  " + r for r in table(["CONTAINER", "IMAGE", "SNAPSHOT", "RUNTIME"], rows)]
        rows = []
        for key in sorted(ns.snapshots):
            record = snapshot_record(ctd, ns, ns.snapshots[key])
            rows.append(
                [
                    record["key"],
                    record["kind"] or "?",
                    record["parent"] or "-",
                    human_size(record["size"]),
                ]
            )
        lines += ["  " + r for r in table(["SNAPSHOT", "KIND", "PARENT", "SIZE"], rows)]
        rows = [
            [lease.id, iso(lease_expiry(lease)) or "-", str(len(lease.content))]
            for _, lease in sorted(ns.leases.items())
        ]
        if rows:
            lines += ["  " + r for r in table(["LEASE", "EXPIRES", "BLOBS"], rows)]
    usage = store_usage(host)
    lines += ["", f"DISK USAGE ({human_size(usage.total())})"]
    rows = [[c, str(usage.count(c)), human_size(usage.total(c))] for c in CATEGORIES]
    lines += table(["CATEGORY", "ITEMS", "SIZE"], rows)
    unreferenced = usage.items_in("unreferenced")
    for item in unreferenced[:TEXT_ITEMS]:
        lines.append(f"  unreferenced: {item.path} ({human_size(item.size)})")
    if len(unreferenced) > TEXT_ITEMS:
        lines.append(f"  … and {len(unreferenced) - TEXT_ITEMS} more")
    return lines
