"""The containerd store's own records against its files: the two bolt databases, the content
store's blobs, and the snapshotters' snapshots and directories.

- A bolt database that could not be read whole is an error naming it, with what could still be
  read; one read on its older meta page (the newer is damaged: containerd's bbolt does the same
  and loses the last transaction) a warning.
- A blob file that no namespace records is a leftover of an interrupted delete (blobs that are
  missing or of another size are told with the images, :mod:`.containerd_images`).
- A namespace's snapshot must exist in its snapshotter, with the same parent; each snapshot of
  a snapshotter with a row in the driver table has its directory there, with what the row
  names in it (overlayfs: ``fs/``, and ``work/`` when active; native: the files themselves, and
  no directory for a view on a parent). A directory with no id in the snapshotter's database
  is containerd's own "cleanup directory" (``getCleanupDirectories``) where the snapshotter has
  that cleanup (overlayfs): deleted at its next cleanup — an error when it holds files (a
  layer lost to a rolled-back database), a warning when empty. A snapshot
  that no namespace records is removed at the snapshotter's next cleanup.
"""

from __future__ import annotations

from collections.abc import Iterator

from forensics.checks.catalog import finding
from forensics.containerd_graph import namespaces
from forensics.containerd_model import (
    BoltSummary,
    ContainerdHost,
    Snapshotter,
    StoreProblem,
)
from forensics.drivers import SNAPSHOTTERS
from forensics.report import Finding

#: store problems of the content store's directories, by check
CONTENT_PROBLEMS = {"not-regular", "bad-name"}
#: how many problems of one database its finding names
SHOWN_PROBLEMS = 3


def check_containerd_store(ctd: ContainerdHost) -> Iterator[Finding]:
    yield from _databases(ctd)
    yield from _blobs(ctd)
    for ns in namespaces(ctd):
        yield from _namespace_snapshots(ctd, ns.name)
    for sn in ctd.store.snapshotters.values():
        yield from _backend_snapshots(ctd, sn)
        yield from _directories(ctd, sn)


# -- the databases ------------------------------------------------------------------------------


def _databases(ctd: ContainerdHost) -> Iterator[Finding]:
    store = ctd.store
    dbs: list[tuple[str, BoltSummary | None, str]] = []
    if store.meta is not None:
        dbs.append((store.meta.path, store.meta, _meta_counts(ctd)))
    for sn in store.snapshotters.values():
        path = sn.db_path
        if sn.db is None and not any(p.path == path for p in store.problems):
            if sn.dirs or sn.snapshots:
                yield finding(
                    "containerd.db-damaged",
                    path,
                    f"the {sn.name} snapshotter's database is missing: its "
                    f"{len(sn.dirs)} snapshot directories belong to no snapshot",
                    damage="missing",
                )
            continue
        dbs.append((path, sn.db, f"{len(sn.snapshots)} snapshots"))
    for path, summary, read in dbs:
        problems = [p for p in store.problems if p.path == path]
        if not problems:
            continue
        if summary is not None and summary.fell_back and {p.kind for p in problems} == {"bad-meta"}:
            yield finding(
                "containerd.db-fell-back",
                path,
                f"{problems[0].detail}: the last transaction is lost (containerd opens it so too)",
                damage="bad-meta",
            )
            continue
        yield finding(
            "containerd.db-damaged",
            path,
            f"{_problems_text(problems)}; read: {read}",
            damage=problems[0].kind,
        )


def _meta_counts(ctd: ContainerdHost) -> str:
    nss = ctd.store.namespaces.values()
    images = sum(len(ns.images) for ns in nss)
    containers = sum(len(ns.containers) for ns in nss)
    snapshots = sum(len(ns.snapshots) for ns in nss)
    blobs = sum(len(ns.content) for ns in nss)
    return (
        f"{len(ctd.store.namespaces)} namespaces, {images} images, {containers} containers, "
        f"{snapshots} snapshots, {blobs} blob records"
    )


def _problems_text(problems: list[StoreProblem]) -> str:
    shown = [
        f"{p.kind}: {p.detail}" + (f" (in {p.where})" if p.where else "")
        for p in problems[:SHOWN_PROBLEMS]
    ]
    more = len(problems) - SHOWN_PROBLEMS
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


# -- blobs ----------------------------------------------------------------------------------------


def _blobs(ctd: ContainerdHost) -> Iterator[Finding]:
    store = ctd.store
    recorded = {digest for ns in namespaces(ctd) for digest in ns.content}
    for digest, found in sorted(store.blobs.items()):
        if digest not in recorded and found.size >= 0:
            yield finding(
                "containerd.blob-unrecorded",
                found.path,
                f"no namespace records this blob ({found.size} bytes): left by an interrupted "
                "delete; containerd removes it at its next content cleanup",
                object_type="blob",
                object_id=digest,
            )
    for p in store.problems:
        if p.kind in CONTENT_PROBLEMS:
            yield finding("containerd.blob-damaged", p.path, p.detail, damage=p.kind)


# -- snapshots ------------------------------------------------------------------------------------


def _namespace_snapshots(ctd: ContainerdHost, ns_name: str) -> Iterator[Finding]:
    ns = ctd.store.namespaces[ns_name]
    meta = ctd.store.meta.path if ctd.store.meta else ""
    for (sn_name, key), snap in sorted(ns.snapshots.items()):
        ident = {"object_type": "snapshot", "object_id": f"{ns_name}/{sn_name}/{key}"}
        sn = ctd.store.snapshotters.get(sn_name)
        backend = sn.snapshots.get(snap.name) if sn else None
        if sn is None or (backend is None and _complete(ctd, sn)):
            where = sn.db_path if sn else meta
            yield finding(
                "containerd.snapshot-backend-missing",
                where,
                f"snapshot {key!r} of namespace {ns_name} ({snap.name}) is not in the "
                f"{sn_name} snapshotter: it cannot be mounted",
                **ident,
            )
        if snap.parent and (sn_name, snap.parent) not in ns.snapshots:
            yield finding(
                "containerd.snapshot-parent-missing",
                meta,
                f"snapshot {key!r} of namespace {ns_name}: its parent {snap.parent!r} does not "
                "exist",
                **ident,
            )
        elif snap.parent and backend is not None:
            parent = ns.snapshots[(sn_name, snap.parent)]
            if backend.parent != parent.name:
                yield finding(
                    "containerd.snapshot-parent-mismatch",
                    sn.db_path if sn else meta,
                    f"snapshot {key!r} of namespace {ns_name}: its parent is {parent.name!r} in "
                    f"meta.db but {backend.parent or 'none'!r} in the snapshotter",
                    **ident,
                )


def _complete(ctd: ContainerdHost, sn: Snapshotter) -> bool:
    """Whether the snapshotter's database was read whole (a record lost to its damage is
    told by the database's own finding)."""
    path = sn.db_path
    return sn.db is not None and not any(p.path == path for p in ctd.store.problems)


def _backend_snapshots(ctd: ContainerdHost, sn: Snapshotter) -> Iterator[Finding]:
    named = {
        snap.name
        for ns in ctd.store.namespaces.values()
        for (sn_name, _), snap in ns.snapshots.items()
        if sn_name == sn.name
    }
    meta_whole = ctd.store.meta is not None and not any(
        p.path == ctd.store.meta.path for p in ctd.store.problems
    )
    row = SNAPSHOTTERS.get(sn.name)
    for name, snap in sorted(sn.snapshots.items()):
        ident = {"object_type": "snapshot", "object_id": f"{sn.name}/{name}"}
        if name not in named and meta_whole:
            yield finding(
                "containerd.snapshot-unrecorded",
                sn.db_path,
                f"snapshot {name!r} ({snap.kind}, id {snap.id}) is in no namespace: the "
                "snapshotter removes it, with its directory, at its next cleanup",
                **ident,
            )
        if row is None or snap.id is None:
            continue
        found = sn.dirs.get(str(snap.id))
        base = _at(ctd, row.layer(str(snap.id)))
        if found is None and row.holds == "rootfs" and snap.kind == "view" and snap.parent:
            continue  # a whole-copy snapshotter's view mounts its parent's directory
        if found is None:
            yield finding(
                "containerd.snapshot-dir-missing",
                base,
                f"snapshot {name!r} ({snap.kind}) has no directory",
                damage="missing",
                **ident,
            )
            continue
        if not found.has_fs:
            yield finding(
                "containerd.snapshot-fs-missing",
                _at(ctd, row.content(str(snap.id))) if row.content else base,
                f"snapshot {name!r} ({snap.kind}) has no fs/: its files are gone",
                damage="missing",
                **ident,
            )
        if snap.kind == "active" and row.work is not None and not found.has_work:
            yield finding(
                "containerd.snapshot-work-missing",
                _at(ctd, row.work(str(snap.id))) if row.work else base,
                f"active snapshot {name!r} has no work/: overlayfs cannot mount it",
                damage="missing",
                **ident,
            )


def _at(ctd: ContainerdHost, rel: str) -> str:
    """A path of the containerd root (as the driver table spells it) relative to the root the
    store was read from."""
    return f"{ctd.store.root}/{rel}" if ctd.store.root else rel


def _directories(ctd: ContainerdHost, sn: Snapshotter) -> Iterator[Finding]:
    row = SNAPSHOTTERS.get(sn.name)
    if row is None or not row.cleanup or not _complete(ctd, sn):
        # a directory whose record was lost to damage is told by the database's finding; a
        # snapshotter without a cleanup (native) leaves its directories to nobody
        return
    ids = {str(s.id) for s in sn.snapshots.values() if s.id is not None}
    for name, found in sorted(sn.dirs.items()):
        if name in ids:
            continue
        ident = {"object_type": "snapshot-dir", "object_id": f"{sn.name}/{name}"}
        if found.files:
            yield finding(
                "containerd.snapshot-dir-orphan",
                found.path,
                f"no snapshot has id {name}, yet it holds {found.files} "
                f"{'file' if found.files == 1 else 'files'} ({found.size} bytes): containerd "
                "deletes it at its next cleanup",
                **ident,
            )
        else:
            yield finding(
                "containerd.snapshot-dir-leftover",
                found.path,
                f"no snapshot has id {name} and it holds no file: left by an interrupted "
                "prepare or remove",
                **ident,
            )
