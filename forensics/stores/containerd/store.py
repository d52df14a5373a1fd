"""Where a containerd root lies below an evidence root, and the store read whole (see the
package's docstring)."""

from __future__ import annotations

from forensics.containerd_model import (
    BoltSummary,
    ContainerdStore,
    Snapshotter,
    StoreProblem,
)
from forensics.drivers import (
    CONTAINERD_META_DB,
    CONTAINERD_METADATA,
    DOCKERS_CONTAINERD,
    SNAPSHOTTER_DB,
    SNAPSHOTTERS,
)
from forensics.evidence import Evidence, ReadFailure
from forensics.stores.containerd.boltread import BoltTree, read_tree
from forensics.stores.containerd.content import read_blobs, read_ingests
from forensics.stores.containerd.metadata import decode_namespaces
from forensics.stores.containerd.snapshotter import (
    PLUGIN_PREFIX,
    decode_snapshotter_db,
    read_snapshot_dirs,
)

#: bbolt files larger than this are not read into memory
DB_LIMIT = 1024 * 1024 * 1024

__all__ = [
    "find_containerd_root",
    "read_bolt",
    "read_containerd_store",
]


def find_containerd_root(ev: Evidence) -> str | None:
    """The containerd root below ``ev``'s root: "" when the root is one (it holds
    ``io.containerd.metadata.v1.bolt/``), ``containerd/daemon`` for a Docker root whose
    dockerd ran its own containerd; None when neither holds a metadata database."""
    for root in ("", DOCKERS_CONTAINERD):
        if ev.exists(_join(root, CONTAINERD_META_DB)) or ev.is_dir(
            _join(root, CONTAINERD_METADATA)
        ):
            return root
    return None


def _join(root: str, rel: str) -> str:
    return f"{root}/{rel}" if root else rel


def read_bolt(
    ev: Evidence, path: str, problems: list[StoreProblem], root_keys: tuple[bytes, ...]
) -> tuple[BoltTree | None, BoltSummary | None]:
    """The bucket tree of the bbolt file ``path`` and how it was opened; None when it cannot be
    read at all (a problem says why)."""
    try:
        data = ev.read_bytes(path, DB_LIMIT)
    except ReadFailure as exc:
        problems.append(StoreProblem(path, exc.kind, exc.detail))
        return None, None
    tree = read_tree(data, root_keys)
    summary = BoltSummary(path, len(data), tree.page_size, tree.txid, tree.fell_back, tree.salvage)
    for p in tree.problems:
        where = "/".join(b.decode("utf-8", "backslashreplace") for b in p.bucket)
        problems.append(StoreProblem(path, p.kind, p.detail, where))
    if tree.salvage:
        problems.append(StoreProblem(path, "salvaged", tree.salvage))
    return tree, summary


def read_containerd_store(ev: Evidence, root: str = "") -> ContainerdStore:
    """The containerd root ``root`` (relative to ``ev``'s root) read whole."""
    store = ContainerdStore(root)
    meta_path = _join(root, CONTAINERD_META_DB)
    tree, store.meta = read_bolt(ev, meta_path, store.problems, (b"v1",))
    if tree is not None:
        store.namespaces, store.db_version = decode_namespaces(tree.root, meta_path, store.problems)
    for plugin, kind in sorted(ev.scandir_types(root).items()):
        if kind == "dir" and plugin.startswith(PLUGIN_PREFIX):
            _read_snapshotter(ev, store, plugin)
    read_blobs(ev, store)
    read_ingests(ev, store)
    return store


def _read_snapshotter(ev: Evidence, store: ContainerdStore, plugin: str) -> None:
    name = plugin.removeprefix(PLUGIN_PREFIX)
    path = _join(store.root, plugin)
    db_path = f"{path}/{SNAPSHOTTER_DB}"
    if not ev.exists(db_path) and not ev.is_dir(f"{path}/snapshots"):
        return  # a plugin directory that never held a snapshot (btrfs, native, … unused)
    sn = Snapshotter(name, path)
    store.snapshotters[name] = sn
    if ev.exists(db_path):
        tree, sn.db = read_bolt(ev, db_path, store.problems, (b"v1",))
        if tree is not None:
            decode_snapshotter_db(sn, tree.root, store.problems)
    row = SNAPSHOTTERS.get(name)
    if row is not None:
        read_snapshot_dirs(ev, sn, row, store.root)
