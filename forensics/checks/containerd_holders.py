"""What holds the store's objects — containers, Docker's containers, leases, ingests — and what
nothing holds (what containerd's own collector would remove).

- A containerd container that names a snapshot needs it (one without a snapshot key is no
  damage: a Kubernetes sandbox, a ``ctr`` container made without one).
- A Docker 29 container (``containers/<id>/``, its ``Driver`` a snapshotter) needs its writable
  snapshot ``<id>`` in namespace ``moby`` and the lease ``<id>`` that keeps it: without the
  lease (and no container record, which dockerd deletes when the container stops), the
  snapshot is garbage to containerd (moby/moby#52012, "rw layer snapshot not found"). A
  container without a containerd container record is no damage.
- A lease past its ``containerd.io/gc.expire`` is removed at the next collection; a value that
  is not a time makes containerd keep the lease.
- An ingest directory that no live ingest record names is an interrupted write that the next
  content cleanup aborts; a live one (its record's expiry ahead) is a download containerd
  keeps until then. Either is at most a warning: leftovers of interrupted operations.
- Garbage: what the collector would remove at the reference time (the store's newest
  recorded time), by containerd's own rules (:mod:`forensics.stores.containerd.gc`), with the
  bytes it frees.
"""

from __future__ import annotations

from collections.abc import Iterator

from forensics.checks.catalog import finding
from forensics.containerd_graph import (
    DOCKER_NAMESPACE,
    docker_containers,
    is_before,
    iso,
    lease_expire_damaged,
    lease_expiry,
    namespaces,
    reference_datetime,
)
from forensics.containerd_model import ContainerdHost
from forensics.model import Host
from forensics.report import Finding


def check_containerd_holders(host: Host, ctd: ContainerdHost) -> Iterator[Finding]:
    yield from _containers(ctd)
    yield from _docker_containers(host, ctd)
    yield from _leases(ctd)
    yield from _ingests(ctd)
    yield from _garbage(ctd)


def _containers(ctd: ContainerdHost) -> Iterator[Finding]:
    meta = ctd.store.meta.path if ctd.store.meta else ""
    for ns in namespaces(ctd):
        for cid, c in sorted(ns.containers.items()):
            if (
                c.snapshotter
                and c.snapshot_key
                and (c.snapshotter, c.snapshot_key) not in (ns.snapshots)
            ):
                yield finding(
                    "containerd.container-snapshot-missing",
                    meta,
                    f"container {cid!r} of namespace {ns.name}: its {c.snapshotter} snapshot "
                    f"{c.snapshot_key!r} does not exist",
                    object_type="containerd-container",
                    object_id=f"{ns.name}/{cid}",
                )


def _docker_containers(host: Host, ctd: ContainerdHost) -> Iterator[Finding]:
    ns = ctd.store.namespaces.get(DOCKER_NAMESPACE)
    for c in docker_containers(host):
        ident = {"object_type": "container", "object_id": c.id}
        snapshotter = c.driver or ""
        if ns is None or (snapshotter, c.id) not in ns.snapshots:
            yield finding(
                "containerd.docker-snapshot-missing",
                c.path,
                f"its writable {snapshotter} snapshot {c.id[:12]} is not in namespace moby: "
                "docker cannot start or remove it (rw layer snapshot not found)",
                **ident,
            )
            continue  # its lease and its image matter no more than the snapshot it lacks
        if c.id not in ns.leases:
            consequence = (
                "its container record still holds the snapshot"
                if c.id in ns.containers
                else "nothing keeps its writable snapshot from containerd's collector"
            )
            yield finding(
                "containerd.docker-lease-missing",
                c.path,
                f"no lease {c.id[:12]} in namespace moby: {consequence}",
                **ident,
            )
        if c.image_id and c.image_id.startswith("sha256:") and c.image_id not in ns.target_digests:
            yield finding(
                "containerd.docker-image-missing",
                c.path,
                f"its image {c.image_id[7:19]} ({c.image or 'no name'}) is not in namespace "
                "moby (its snapshots keep the layers it runs on)",
                **ident,
            )


def _leases(ctd: ContainerdHost) -> Iterator[Finding]:
    meta = ctd.store.meta.path if ctd.store.meta else ""
    for ns in namespaces(ctd):
        for lid, lease in sorted(ns.leases.items()):
            ident = {"object_type": "lease", "object_id": f"{ns.name}/{lid}"}
            if lease_expire_damaged(lease):
                yield finding(
                    "containerd.lease-expire-damaged",
                    meta,
                    f"lease {lid!r} of namespace {ns.name}: containerd.io/gc.expire "
                    f"{lease.labels.get('containerd.io/gc.expire')!r} is not a time "
                    "(containerd keeps the lease)",
                    **ident,
                )
            expiry = lease_expiry(lease)
            if is_before(expiry, ctd.reference):
                held = len(lease.content) + sum(len(k) for k in lease.snapshots.values())
                what = (
                    f", and what of the {held} objects it holds nothing else holds"
                    if held
                    else " (it holds nothing)"
                )
                yield finding(
                    "containerd.lease-expired",
                    meta,
                    f"lease {lid!r} of namespace {ns.name} expired at {iso(expiry)}: "
                    f"containerd removes it at its next collection{what}",
                    **ident,
                )


def _ingests(ctd: ContainerdHost) -> Iterator[Finding]:
    meta = ctd.store.meta.path if ctd.store.meta else ""
    live: dict[str, tuple[str, str]] = {}
    for ns in namespaces(ctd):
        for ref, ingest in sorted(ns.ingests.items()):
            ident = {"object_type": "ingest", "object_id": f"{ns.name}/{ref}"}
            expired = ingest.expire_at is None or is_before(ingest.expire_at, ctd.reference)
            on_disk = any(i.ref == ingest.backend_ref for i in ctd.store.ingests.values())
            if not expired and on_disk:
                live[ingest.backend_ref] = (ns.name, ref)
            elif expired:
                when = f"expired at {iso(ingest.expire_at)}" if ingest.expire_at else "no expiry"
                yield finding(
                    "containerd.ingest-leftover",
                    meta,
                    f"ingest {ref!r} of namespace {ns.name} ({when}): removed at the next "
                    "collection",
                    **ident,
                )
            else:
                yield finding(
                    "containerd.ingest-leftover",
                    meta,
                    f"ingest {ref!r} of namespace {ns.name} has no data in the content store",
                    **ident,
                )
    for name, ingest in sorted(ctd.store.ingests.items()):
        ident = {"object_type": "ingest", "object_id": ingest.ref or name}
        owner = live.get(ingest.ref or "")
        if owner is not None:
            ns_name, ref = owner
            record = ctd.store.namespaces[ns_name].ingests[ref]
            size = ingest.data_size if ingest.data_size is not None else "?"
            total = f" of {ingest.total}" if ingest.total else ""
            yield finding(
                "containerd.ingest-in-progress",
                ingest.path,
                f"download {ref!r} of namespace {ns_name}, interrupted at {size}{total} bytes: "
                f"containerd keeps it until {iso(record.expire_at)}",
                **ident,
            )
        else:
            yield finding(
                "containerd.ingest-leftover",
                ingest.path,
                f"an unfinished write ({ingest.data_size or 0} bytes) that no live ingest "
                "record names: the next content cleanup aborts it",
                **ident,
            )


def _garbage(ctd: ContainerdHost) -> Iterator[Finding]:
    from forensics.stores.containerd.gc import collect  # the store's readers: loaded with it

    c = collect(ctd.store, reference_datetime(ctd))
    if not c.removes_anything():
        return
    parts = [
        _count(sum(len(v) for v in c.leases.values()), "lease"),
        _count(sum(len(v) for v in c.content.values()), "blob record"),
        _count(sum(len(v) for v in c.snapshots.values()), "snapshot"),
        _count(sum(len(v) for v in c.ingests.values()), "ingest record"),
        _count(len(c.blob_files), "blob file"),
        _count(len(c.ingest_dirs), "ingest directory", "ingest directories"),
        _count(
            sum(len(v) for v in c.snapshot_dirs.values()),
            "snapshot directory",
            "snapshot directories",
        ),  # fmt: skip
    ]
    what = ", ".join(p for p in parts if p)
    yield finding(
        "containerd.garbage",
        ctd.location if not ctd.external else "",
        f"containerd's collector would remove {what} at {iso(ctd.reference)}: "
        f"{c.reclaimable} bytes reclaimable",
    )


def _count(n: int, one: str, many: str | None = None) -> str:
    if not n:
        return ""
    return f"1 {one}" if n == 1 else f"{n} {many or one + 's'}"
