"""A snapshotter's own records: ``io.containerd.snapshotter.v1.<name>/metadata.db`` and, for a
snapshotter with a row in the driver table (overlayfs, native), its layer directories, where
the row says they are (:data:`forensics.drivers.SNAPSHOTTERS`).

The database (containerd ``snapshots/storage/bolt.go``)::

    v1/snapshots/<name>/{id: uvarint, kind: 1 byte (1 view, 2 active, 3 committed),
                         parent: name, labels/, createdat, updatedat, inodes: varint,
                         size: varint}
    v1/parents/<uvarint parent id> 0x00 <uvarint child id> : child name

``<name>`` is the metadata database's backend name of a snapshot, ``<ns>/<seq>/<key>``; ``id``
comes from the ``snapshots`` bucket's sequence and names the directory ``snapshots/<id>/``
holding ``fs/`` (the layer's files) and ``work/`` (overlayfs' work directory; committed
snapshots keep it too).
"""

from __future__ import annotations

from forensics.containerd_model import (
    SNAPSHOT_KINDS,
    BackendSnapshot,
    GoTime,
    SnapshotDir,
    Snapshotter,
    StoreProblem,
)
from forensics.drivers import SNAPSHOTTER_PLUGIN, DriverLayout, Template
from forensics.evidence import Evidence
from forensics.stores.containerd.boltread import Bucket
from forensics.stores.containerd.metadata import labels, text
from forensics.stores.containerd.values import (
    ValueDamage,
    decode_binary_time,
    decode_uvarint,
    decode_varint,
    split_uvarint,
)

PLUGIN_PREFIX = SNAPSHOTTER_PLUGIN
#: directories walked at most to measure one snapshot directory
MEASURE_LIMIT = 1_000_000


def decode_snapshotter_db(sn: Snapshotter, root: Bucket, problems: list[StoreProblem]) -> None:
    """Fill ``sn.snapshots`` and ``sn.parents`` from the database's bucket tree."""
    path = sn.db_path
    v1 = root.bucket(b"v1")
    if v1 is None:
        if root.complete:
            problems.append(StoreProblem(path, "no-schema", "no v1 bucket: not a snapshotter's"))
        return
    snapshots = v1.bucket(b"snapshots") or Bucket()
    if not snapshots.complete or not v1.complete:
        problems.append(StoreProblem(path, "incomplete", "snapshots could not all be read", "v1"))
    for name, bucket in sorted(snapshots.buckets.items()):
        record = _snapshot(text(name), bucket, path, problems)
        sn.snapshots[record.name] = record
    parents = v1.bucket(b"parents")
    for key, value in sorted(parents.values.items()) if parents else ():
        try:
            parent_id, used = split_uvarint(key)
            if key[used : used + 1] != b"\0":
                raise ValueDamage("varint", "no 0 byte between the two ids")
            child_id = decode_uvarint(key[used + 1 :])
        except ValueDamage as exc:
            problems.append(StoreProblem(path, "bad-value", f"parents key {key.hex()}: {exc}"))
            continue
        sn.parents[(parent_id, child_id)] = text(value)


def _snapshot(name: str, b: Bucket, path: str, problems: list[StoreProblem]) -> BackendSnapshot:
    where = f"snapshots/{name}"
    s = BackendSnapshot(name, parent=text(b.values.get(b"parent")), labels=labels(b))
    if not b.complete:
        problems.append(StoreProblem(path, "incomplete", "part of its record is unreadable", where))
    raw_id = b.values.get(b"id")
    kind = b.values.get(b"kind", b"")
    try:
        s.id = decode_uvarint(raw_id) if raw_id is not None else None
        s.inodes = decode_varint(b.values[b"inodes"]) if b"inodes" in b.values else None
        s.size = decode_varint(b.values[b"size"]) if b"size" in b.values else None
        s.created = _time(b, b"createdat")
        s.updated = _time(b, b"updatedat")
    except ValueDamage as exc:
        problems.append(StoreProblem(path, "bad-value", str(exc), where))
    if raw_id is None:
        problems.append(StoreProblem(path, "no-id", "the snapshot has no id", where))
    s.kind = SNAPSHOT_KINDS.get(kind[0], f"unknown<{kind[0]}>") if len(kind) == 1 else "unknown"
    return s


def _time(b: Bucket, key: bytes) -> GoTime | None:
    raw = b.values.get(key)
    return decode_binary_time(raw) if raw is not None else None


def read_snapshot_dirs(ev: Evidence, sn: Snapshotter, row: DriverLayout, root: str) -> None:
    """The layer directories of a snapshotter with a row (``row.layers`` under the containerd
    root ``root``): which exist, with the entries the row names inside one (overlayfs' ``fs``
    and ``work``; native's files are the directory itself); those whose usage containerd does
    not record are measured (see :class:`SnapshotDir`)."""
    base = f"{root}/{row.layers}" if root else row.layers
    files_in = _entry_inside(row.content)
    work_in = _entry_inside(row.work)
    recorded = {
        str(s.id) for s in sn.snapshots.values() if s.kind == "committed" and s.size is not None
    }
    for name, kind in sorted(ev.scandir_types(base).items()):
        if kind != "dir":
            sn.dirs[name] = SnapshotDir(name, f"{base}/{name}")
            continue
        inside = ev.scandir_types(f"{base}/{name}")
        found = SnapshotDir(
            name,
            f"{base}/{name}",
            files_in is None or inside.get(files_in) == "dir",
            work_in is not None and inside.get(work_in) == "dir",
        )
        if name not in recorded:
            found.size, found.files = measure_tree(ev, found.path)
        sn.dirs[name] = found


def _entry_inside(template: Template | None) -> str | None:
    """The entry of a layer directory that a row's template names (``fs`` of
    ``…/snapshots/{id}/fs``); None when the template is the layer directory itself."""
    if template is None:
        return None
    return template.suffix.strip("/").split("/")[0] or None


def measure_tree(ev: Evidence, rel: str) -> tuple[int, int]:
    """Bytes and number of the regular files below ``rel`` (each inode counted once), never
    following a symlink; a directory that cannot be read counts as empty. Apparent sizes, not
    blocks: the same tree measures the same on any file system it is copied to."""
    total, files, seen_inodes, stack, walked = 0, 0, set(), [rel], 0
    while stack and walked < MEASURE_LIMIT:
        path = stack.pop()
        walked += 1
        for name, kind in ev.scandir_types(path).items():
            child = f"{path}/{name}"
            if kind == "dir":
                stack.append(child)
            elif kind == "file":
                st = ev.lstat(child)
                if st is not None and (st.st_dev, st.st_ino) not in seen_inodes:
                    seen_inodes.add((st.st_dev, st.st_ino))
                    total += st.st_size
                    files += 1
    return total, files
