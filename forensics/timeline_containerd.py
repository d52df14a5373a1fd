"""The containerd store's times for the timeline: what ``meta.db`` records of each object
(``createdat``, and ``updatedat`` when it differs), when each image was built (its config's
``created``), and when each unfinished download started and was last written (the ingest's
``startedat`` and ``updatedat`` files).

Objects are named as the inventory names them: ``<namespace>/<name>`` for images, containers,
leases and ingests, ``<namespace>/<snapshotter>/<key>`` for snapshots, the digest for blobs.
"""

from __future__ import annotations

from collections.abc import Iterator

from forensics.containerd_graph import chosen_manifest, iso, namespaces
from forensics.containerd_model import ContainerdHost, GoTime
from forensics.model import Host
from forensics.timeline import Event, utc

#: object kind → (its object_type, the words of its two times)
KINDS = {
    "image": ("containerd-image", "Image record created", "Image record updated"),
    "container": ("containerd-container", "Container record created", "Container record updated"),
    "snapshot": ("snapshot", "Snapshot created", "Snapshot updated"),
    "blob": ("blob", "Blob recorded", "Blob record updated"),
    "sandbox": ("sandbox", "Sandbox created", "Sandbox updated"),
}


def containerd_events(host: Host) -> Iterator[Event]:
    ctd = host.containerd
    if ctd is None:
        return
    meta = ctd.store.meta.path if ctd.store.meta else ""
    for ns in namespaces(ctd):
        for name, image in sorted(ns.images.items()):
            label = f"image {name} ({ns.name}) {image.target.digest[7:19]}"
            yield from _times(
                "image", f"{ns.name}/{name}", label, image.created, image.updated, meta
            )
            yield from _built(ctd, ns.name, name, image.target.digest, label)
        for cid, c in sorted(ns.containers.items()):
            label = f"container {cid} ({ns.name})" + (f" from {c.image}" if c.image else "")
            yield from _times("container", f"{ns.name}/{cid}", label, c.created, c.updated, meta)
        for (sn, key), snap in sorted(ns.snapshots.items()):
            label = f"snapshot {key} ({ns.name}, {sn})"
            yield from _times(
                "snapshot", f"{ns.name}/{sn}/{key}", label, snap.created, snap.updated, meta
            )
        for digest, blob in sorted(ns.content.items()):
            label = f"blob {digest[7:19]} ({ns.name})"
            yield from _times("blob", digest, label, blob.created, blob.updated, meta)
        for sid, sandbox in sorted(ns.sandboxes.items()):
            label = f"sandbox {sid} ({ns.name})"
            yield from _times(
                "sandbox", f"{ns.name}/{sid}", label, sandbox.created, sandbox.updated, meta
            )
        for lid, lease in sorted(ns.leases.items()):
            when = iso(lease.created)
            if when is not None:
                yield Event(
                    when,
                    "Lease created",
                    f"lease {lid} ({ns.name})",
                    "lease",
                    f"{ns.name}/{lid}",
                    meta,
                )
    for _, ingest in sorted(ctd.store.ingests.items()):
        ref = ingest.ref or ingest.name
        label = f"unfinished download {ref}"
        for moment, desc, file in (
            (ingest.started, "Download started", "startedat"),
            (ingest.updated, "Download last written", "updatedat"),
        ):
            when = iso(moment)
            if when is not None:
                yield Event(when, desc, label, "ingest", ref, f"{ingest.path}/{file}")


def _times(
    kind: str,
    object_id: str,
    label: str,
    created: GoTime | None,
    updated: GoTime | None,
    path: str,
) -> Iterator[Event]:
    object_type, made, changed = KINDS[kind]
    if created is not None:
        yield Event(iso(created) or "", made, label, object_type, object_id, path)
    if updated is not None and updated != created:
        yield Event(iso(updated) or "", changed, label, object_type, object_id, path)


def _built(
    ctd: ContainerdHost, namespace: str, name: str, digest: str, label: str
) -> Iterator[Event]:
    resolved = ctd.images.get(digest)
    manifest = chosen_manifest(resolved) if resolved else None
    when = utc(manifest.created) if manifest else None
    if manifest is not None and when is not None and manifest.config is not None:
        config = ctd.store.blobs.get(manifest.config.digest)
        path = config.path if config else ""
        yield Event(when, "Image created", label, "containerd-image", f"{namespace}/{name}", path)
