"""What containerd's own garbage collector would remove from a store, and the bytes it frees.

The rules are those of containerd 1.6/1.7 (``metadata/gc.go``, ``metadata/db.go``,
``metadata/content.go``, ``metadata/snapshot.go``, ``snapshots/overlay/overlay.go``), applied
to the model read offline:

**Roots**, per namespace:

- every lease not expired (label ``containerd.io/gc.expire``, RFC 3339, before *now*: expired)
  and the content, snapshots and ingests it holds; a lease labelled ``containerd.io/gc.flat``
  holds them *flat*: their labels are not followed (a flat snapshot's parent still is);
- every image's target blob, and the references in the image's labels;
- every ingest whose ``expireat`` is still ahead (an ingest without one is no root);
- every blob and snapshot labelled ``containerd.io/gc.root``;
- every container's snapshot (``<snapshotter>/<snapshotKey>``) and its labels' references;
- (1.7) every sandbox's labels' references.

**References**: a blob's labels ``containerd.io/gc.ref.content`` (alone, or followed by ``.``
or ``/`` and any name) name blobs; ``containerd.io/gc.ref.snapshot.<snapshotter>[/…]`` name
snapshots. A snapshot references its parent and its labels' references; an ingest its
expected blob. References are followed from the roots (tricolor marking); a reference to an
object that does not exist leads nowhere.

**Sweep**: every lease, snapshot, ingest and blob record of a namespace that is not marked is
removed (images and containers never are). Then, only if the sweep removed a blob or an ingest
record, the content store deletes every blob file that no namespace's record (nor any remaining
ingest's expected digest) names, and aborts every ingest directory whose ref no remaining
ingest record names; only if it removed a snapshot of a snapshotter, that snapshotter removes
every snapshot of its own database that no namespace's record names (children before parents;
one with a remaining child stays), and overlayfs then removes every ``snapshots/<dir>`` whose
name is no id of its database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from forensics.containerd_model import (
    BackendSnapshot,
    ContainerdStore,
    CtrNamespace,
    Snapshotter,
    StoreProblem,
)
from forensics.evidence import Evidence
from forensics.stores.containerd.snapshotter import measure_tree
from forensics.stores.containerd.values import ValueDamage, decode_text_time

LABEL_ROOT = "containerd.io/gc.root"
LABEL_CONTENT_REF = "containerd.io/gc.ref.content"
LABEL_SNAPSHOT_REF = "containerd.io/gc.ref.snapshot."
LABEL_EXPIRE = "containerd.io/gc.expire"
LABEL_FLAT = "containerd.io/gc.flat"

CONTENT, SNAPSHOT, LEASE, INGEST = "content", "snapshot", "lease", "ingest"


@dataclass(frozen=True, order=True)
class Node:
    """A resource of a namespace: ``key`` is a digest, a lease id, an ingest ref, or
    ``<snapshotter>/<key>`` for a snapshot. ``flat`` nodes do not follow their labels."""

    kind: str
    namespace: str
    key: str
    flat: bool = False

    def plain(self) -> Node:
        return Node(self.kind, self.namespace, self.key)


@dataclass
class Collection:
    """What a collection at ``now`` removes. Metadata records per namespace; then, in the
    shared stores, blob files, ingest directories, backend snapshots (per snapshotter) and
    snapshot directories; ``reclaimable`` bytes of the files and directories removed."""

    now: datetime
    marked: set[Node] = field(default_factory=set)
    leases: dict[str, list[str]] = field(default_factory=dict)
    content: dict[str, list[str]] = field(default_factory=dict)
    snapshots: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    ingests: dict[str, list[str]] = field(default_factory=dict)
    blob_files: list[str] = field(default_factory=list)
    ingest_dirs: list[str] = field(default_factory=list)
    backend_snapshots: dict[str, list[str]] = field(default_factory=dict)
    snapshot_dirs: dict[str, list[str]] = field(default_factory=dict)
    reclaimable: int = 0
    problems: list[StoreProblem] = field(default_factory=list)

    def removes_anything(self) -> bool:
        return bool(
            any(self.leases.values())
            or any(self.content.values())
            or any(self.snapshots.values())
            or any(self.ingests.values())
            or self.blob_files
            or self.ingest_dirs
            or any(self.snapshot_dirs.values())
        )


def collect(store: ContainerdStore, now: datetime, ev: Evidence | None = None) -> Collection:
    """What containerd would remove if it collected at ``now`` (timezone-aware). With ``ev``,
    the removed snapshot directories are measured for :attr:`Collection.reclaimable`."""
    out = Collection(now)
    roots = [n for ns in store.namespaces.values() for n in _roots(ns, now, out)]
    out.marked = _mark(store, roots)
    for ns in store.namespaces.values():
        _sweep(ns, out)
    _content_cleanup(store, out)
    _snapshotter_cleanup(store, out)
    out.reclaimable = _reclaimable(store, out, ev)
    return out


# -- roots and references -------------------------------------------------------------------------


def _roots(ns: CtrNamespace, now: datetime, out: Collection) -> list[Node]:
    name = ns.name
    roots: list[Node] = []
    for lease in ns.leases.values():
        if _expired(lease.labels.get(LABEL_EXPIRE), now, f"{name}/leases/{lease.id}", out):
            continue
        flat = LABEL_FLAT in lease.labels
        roots.append(Node(LEASE, name, lease.id))
        roots += [Node(CONTENT, name, d, flat) for d in lease.content]
        for snapshotter, keys in lease.snapshots.items():
            roots += [Node(SNAPSHOT, name, f"{snapshotter}/{k}", flat) for k in keys]
        roots += [Node(INGEST, name, ref) for ref in lease.ingests]
    for image in ns.images.values():
        if image.target.digest:
            roots.append(Node(CONTENT, name, image.target.digest))
        roots += label_refs(name, image.labels)
    now_ns = int(now.timestamp()) * 1_000_000_000 + now.microsecond * 1000
    for ingest in ns.ingests.values():
        if ingest.expire_at is not None and ingest.expire_at.unix_ns >= now_ns:
            roots.append(Node(INGEST, name, ingest.ref))
    roots += [Node(CONTENT, name, b.digest) for b in ns.content.values() if LABEL_ROOT in b.labels]
    for container in ns.containers.values():
        if container.snapshotter:
            key = f"{container.snapshotter}/{container.snapshot_key}"
            roots.append(Node(SNAPSHOT, name, key))
        roots += label_refs(name, container.labels)
    for (snapshotter, key), snap in ns.snapshots.items():
        if LABEL_ROOT in snap.labels:
            roots.append(Node(SNAPSHOT, name, f"{snapshotter}/{key}"))
    for sandbox in ns.sandboxes.values():
        roots += label_refs(name, sandbox.labels)
    return roots


def _expired(value: str | None, now: datetime, where: str, out: Collection) -> bool:
    """True when a lease's ``gc.expire`` is before ``now``; an invalid value is ignored (the
    lease is kept), as containerd does."""
    if value is None:
        return False
    try:
        expire = decode_text_time(value.encode())
    except ValueDamage:
        out.problems.append(StoreProblem("", "bad-value", f"{LABEL_EXPIRE} {value!r}", where))
        return False
    now_ns = int(now.timestamp()) * 1_000_000_000 + now.microsecond * 1000
    return expire.unix_ns < now_ns


def label_refs(ns: str, labels: dict[str, str]) -> list[Node]:
    """The blobs and snapshots that ``labels`` reference (containerd's sendLabelRefs)."""
    out = []
    for key, value in sorted(labels.items()):
        if key.startswith(LABEL_CONTENT_REF):
            rest = key[len(LABEL_CONTENT_REF) :]
            if not rest or rest[0] in "./":
                out.append(Node(CONTENT, ns, value))
        elif key.startswith(LABEL_SNAPSHOT_REF):
            snapshotter = key[len(LABEL_SNAPSHOT_REF) :].split("/", 1)[0]
            out.append(Node(SNAPSHOT, ns, f"{snapshotter}/{value}"))
    return out


def references(store: ContainerdStore, node: Node) -> list[Node]:
    ns = store.namespaces.get(node.namespace)
    if ns is None:
        return []
    if node.kind == CONTENT and not node.flat:
        blob = ns.content.get(node.key)
        return label_refs(ns.name, blob.labels) if blob else []
    if node.kind == SNAPSHOT:
        snapshotter, _, key = node.key.partition("/")
        snap = ns.snapshots.get((snapshotter, key))
        if snap is None:
            return []
        out = (
            [Node(SNAPSHOT, ns.name, f"{snapshotter}/{snap.parent}", node.flat)]
            if snap.parent
            else []
        )
        return out if node.flat else out + label_refs(ns.name, snap.labels)
    if node.kind == INGEST:
        ingest = ns.ingests.get(node.key)
        return [Node(CONTENT, ns.name, ingest.expected)] if ingest and ingest.expected else []
    return []


def _mark(store: ContainerdStore, roots: list[Node]) -> set[Node]:
    """Tricolor marking; the marks drop the flat bit, as containerd's do."""
    seen: set[Node] = set()
    marked: set[Node] = set()
    grays = list(roots)
    while grays:
        node = grays.pop()
        seen.add(node)
        grays += [n for n in references(store, node) if n not in seen]
        marked.add(node.plain())
    return marked


# -- the sweep and the backends -----------------------------------------------------------------


def _sweep(ns: CtrNamespace, out: Collection) -> None:
    name = ns.name

    def unmarked(kind: str, keys: list[str]) -> list[str]:
        return sorted(k for k in keys if Node(kind, name, k) not in out.marked)

    out.leases[name] = unmarked(LEASE, list(ns.leases))
    out.content[name] = unmarked(CONTENT, list(ns.content))
    out.ingests[name] = unmarked(INGEST, list(ns.ingests))
    out.snapshots[name] = sorted(
        (sn, key)
        for sn, key in ns.snapshots
        if Node(SNAPSHOT, name, f"{sn}/{key}") not in out.marked
    )


def _content_cleanup(store: ContainerdStore, out: Collection) -> None:
    if not any(out.content.values()) and not any(out.ingests.values()):
        return  # containerd cleans the content store only after removing a blob or ingest
    seen: set[str] = set()
    refs: set[str] = set()
    for name, ns in store.namespaces.items():
        gone_blobs, gone_ingests = set(out.content[name]), set(out.ingests[name])
        seen.update(d for d in ns.content if d not in gone_blobs)
        for ref, ingest in ns.ingests.items():
            if ref in gone_ingests:
                continue
            if ingest.expected:
                seen.add(ingest.expected)
            if ingest.backend_ref:
                refs.add(ingest.backend_ref)
    out.blob_files = sorted(d for d in store.blobs if d not in seen)
    out.ingest_dirs = sorted(
        n for n, i in store.ingests.items() if i.ref is None or i.ref not in refs
    )


def _snapshotter_cleanup(store: ContainerdStore, out: Collection) -> None:
    dirty = {sn for removed in out.snapshots.values() for sn, _ in removed}
    for name in sorted(dirty):
        sn = store.snapshotters.get(name)
        if sn is None:
            continue
        seen: set[str] = set()
        for ns_name, ns in store.namespaces.items():
            gone = set(out.snapshots[ns_name])
            seen.update(s.name for k, s in ns.snapshots.items() if k[0] == name and k not in gone)
        removed = _prune(sn.snapshots, seen)
        out.backend_snapshots[name] = removed
        dropped = set(removed)
        ids = {str(s.id) for n, s in sn.snapshots.items() if n not in dropped and s.id is not None}
        if sn.dirs:
            out.snapshot_dirs[name] = sorted((d for d in sn.dirs if d not in ids), key=_dir_order)


def _prune(snapshots: dict[str, BackendSnapshot], seen: set[str]) -> list[str]:
    """Backend snapshots that are neither seen nor an ancestor of one (containerd's
    pruneBranch removes children first; a parent with a remaining child cannot go)."""
    kept: set[str] = set()
    for name in seen:
        while name in snapshots and name not in kept:
            kept.add(name)
            name = snapshots[name].parent
    return sorted(n for n in snapshots if n not in kept)


def _dir_order(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 62, name)


def _reclaimable(store: ContainerdStore, out: Collection, ev: Evidence | None) -> int:
    total = sum(max(store.blobs[d].size, 0) for d in out.blob_files)
    for name in out.ingest_dirs:
        total += store.ingests[name].data_size or 0
    for sn_name, dirs in out.snapshot_dirs.items():
        sn = store.snapshotters[sn_name]
        if ev is not None:
            total += sum(measure(ev, sn.dirs[d].path) for d in dirs)
        else:
            by_id = {str(s.id): s for s in sn.snapshots.values() if s.id is not None}
            total += sum(dir_size(sn, d, by_id.get(d)) or 0 for d in dirs)
    return total


def dir_size(sn: Snapshotter, name: str, owner: BackendSnapshot | None) -> int | None:
    """The bytes of ``snapshots/<name>`` (whose snapshot is ``owner``): what was measured when
    the store was read, else containerd's recorded usage of a committed snapshot."""
    d = sn.dirs.get(name)
    if d is not None and d.size is not None:
        return d.size
    if owner is not None and owner.kind == "committed":
        return owner.size
    return None


def measure(ev: Evidence, rel: str) -> int:
    """Bytes of the regular files below ``rel`` (see
    :func:`~forensics.stores.containerd.snapshotter.measure_tree`)."""
    return measure_tree(ev, rel)[0]
