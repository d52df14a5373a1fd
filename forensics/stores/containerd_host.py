"""The containerd store of a Docker root (or a containerd root alone) read into the host.

Where the store lies: ``ROOT/containerd/daemon`` (dockerd's own containerd), ROOT itself (a
containerd root: it holds ``io.containerd.metadata.v1.bolt/``), or a directory given apart
(``--containerd-root``: a system containerd's ``/var/lib/containerd``), read through its own
:class:`~forensics.evidence.Evidence`. dockerd's own containerd also runs beside a graph-driver
store, with container records and nothing else: its store is read only when Docker uses it
(the layout is ``containerd``) or when its content store or snapshotter holds data (a host
that keeps both stores after an upgrade).

Besides the store itself, every image target is followed through the content store once per
digest (the documents are shared by the namespaces), and the moment the store was last written
is found (its newest recorded time, or ``meta.db``'s modification time when later): expiries
and garbage are judged then, unless another moment is asked for (:func:`judge_at`).
"""

from __future__ import annotations

from collections.abc import Iterator

from forensics.containerd_model import ContainerdHost, ContainerdStore, GoTime
from forensics.drivers import (
    CONTAINERD_METADATA,
    CONTAINERD_SHA256_BLOBS,
    DOCKERS_CONTAINERD,
    SNAPSHOTTERS,
)
from forensics.evidence import Evidence
from forensics.model import Host

# the readers (bbolt through construct) are imported when a store is read: a root without one
# never loads them

__all__ = [
    "attach_containerd",
    "containerd_note",
    "judge_at",
    "read_containerd_host",
    "store_times",
]


def attach_containerd(ev: Evidence, host: Host, external: Evidence | None = None) -> None:
    """Read the containerd store that goes with ``host`` into ``host.containerd``: the one in
    ``external`` (a containerd root given apart), else the one below ROOT when Docker uses it or
    it holds data. ROOT that is a containerd root alone makes the layout ``containerd``."""
    if external is not None:
        host.containerd = read_containerd_host(external, "", external=True)
        _containerd_layout(host)
    else:
        location = _location(ev)
        if location is None:
            return
        if location == "" or host.layout == "containerd" or _holds_data(ev, location):
            host.containerd = read_containerd_host(ev, location)
            if location == "":
                _containerd_layout(host)
    if host.containerd is not None and (external is not None or host.containerd.location):
        host.containerd.beside = _docker_beside(ev)


def _docker_beside(ev: Evidence) -> dict[str, int]:
    """Bytes of Docker's ``buildkit/`` (its databases: on the containerd store, the build
    cache's layers are the store's own snapshots and blobs)."""
    from forensics.stores.containerd.snapshotter import measure_tree

    return {"buildkit": measure_tree(ev, "buildkit")[0]} if ev.is_dir("buildkit") else {}


def _location(ev: Evidence) -> str | None:
    """The containerd root below ROOT: ROOT itself, or dockerd's own; None when neither
    holds a metadata database."""
    for root in ("", DOCKERS_CONTAINERD):
        if ev.is_dir(f"{root}/{CONTAINERD_METADATA}" if root else CONTAINERD_METADATA):
            return root
    return None


def _containerd_layout(host: Host) -> None:
    if host.layout in ("empty", "unknown"):
        host.layout = "containerd"


def _holds_data(ev: Evidence, location: str) -> bool:
    prefix = f"{location}/" if location else ""
    if ev.listdir_or_empty(f"{prefix}{CONTAINERD_SHA256_BLOBS}"):
        return True
    return any(ev.listdir_or_empty(f"{prefix}{row.layers}") for row in SNAPSHOTTERS.values())


def read_containerd_host(ev: Evidence, location: str, *, external: bool = False) -> ContainerdHost:
    """The store at ``location`` (relative to ``ev``'s root), its images followed."""
    from forensics.stores.containerd import read_containerd_store
    from forensics.stores.containerd.content import resolve_image

    store = read_containerd_store(ev, location)
    found = ContainerdHost(store, str(ev.root) if external else location, external)
    for ns in store.namespaces.values():
        for image in ns.images.values():
            target = image.target
            if target.digest and target.digest not in found.images:
                found.images[target.digest] = resolve_image(ev, store, target)
    found.as_of = max([*store_times(store), *_written(ev, store)], default=None)
    found.reference = found.as_of
    return found


def _written(ev: Evidence, store: ContainerdStore) -> Iterator[GoTime]:
    """When ``meta.db`` was last written (bbolt rewrites it at every commit): later than any
    time the store records when the last change was a delete, which records none. As true as
    the copy examined: one that did not keep modification times says when it was made."""
    if store.meta is not None:
        st = ev.lstat(store.meta.path)
        if st is not None:
            yield GoTime(st.st_mtime_ns // 1_000_000_000, st.st_mtime_ns % 1_000_000_000)


def judge_at(host: Host, ns_since_epoch: int) -> None:
    """Judge the store's expiries and garbage at this moment rather than when it was last
    written (``verify --now``)."""
    if host.containerd is not None:
        host.containerd.reference = GoTime(*divmod(ns_since_epoch, 1_000_000_000))


def store_times(store: ContainerdStore) -> Iterator[GoTime]:
    """Every time the store records of its objects (not expiries: those lie ahead)."""
    for ns in store.namespaces.values():
        for group in (ns.images, ns.containers, ns.snapshots, ns.content, ns.sandboxes):
            for obj in group.values():
                yield from (t for t in (obj.created, obj.updated) if t is not None)
        yield from (lease.created for lease in ns.leases.values() if lease.created is not None)
    for sn in store.snapshotters.values():
        for s in sn.snapshots.values():
            yield from (t for t in (s.created, s.updated) if t is not None)
    for ingest in store.ingests.values():
        yield from (t for t in (ingest.started, ingest.updated) if t is not None)


def containerd_note(host: Host) -> str:
    """What the layout note says of the containerd store: where it was read from, or why it
    was not."""
    ctd = host.containerd
    if ctd is None:
        return (
            "Docker's containerd image store is in use, but no containerd root was found under "
            f"ROOT ({DOCKERS_CONTAINERD}): a host whose dockerd used the system containerd "
            "keeps it in /var/lib/containerd; give it with --containerd-root to read the "
            "images and layers. Containers and volumes are listed from containers/ and volumes/"
        )
    if not ctd.external and ctd.location == "":
        return "ROOT is a containerd root: its namespaces, images, containers and snapshots"
    return (
        "Docker's containerd image store is in use: images and layers live in containerd's "
        f"content store and snapshotter ({ctd.location}), read with the Docker root"
    )
