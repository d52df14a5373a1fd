"""Damaged copies of the containerd-store sample's two bolt files (meta.db and the overlayfs
snapshotter's metadata.db): truncated, a page out of range, a loop, both meta pages bad, a bad
checksum, garbage bytes. Each gives typed problems naming the file, what can still be read, no
traceback, and memory bounded by the file's size.

The damage is written at the offsets bbolt's page.go gives (16-byte page header ``id, flags,
count, overflow``; leaf elements ``flags, pos, ksize, vsize`` of 16 bytes; a nested bucket's
value starts with its root page id)."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from sample_paths import (
    BOLT_PAGE,
    CONTAINERD_META_DB,
    CONTAINERD_ROOT,
    CONTAINERD_SNAPSHOTTER_DB,
)

from forensics.containerd_model import ContainerdStore
from forensics.evidence import Evidence
from forensics.formats.bbolt import LEAF_PAGE, open_bolt
from forensics.stores.containerd import read_containerd_store
from forensics.stores.containerd.boltread import read_tree


def read(root: Path) -> ContainerdStore:
    with Evidence(root) as ev:
        return read_containerd_store(ev, CONTAINERD_ROOT)


def kinds(store: ContainerdStore, path: str) -> set[str]:
    return {p.kind for p in store.problems if p.path == path}


def count(store: ContainerdStore) -> int:
    return sum(
        len(ns.images) + len(ns.containers) + len(ns.snapshots) + len(ns.content) + len(ns.leases)
        for ns in store.namespaces.values()
    )


def paged_buckets(data: bytes) -> list[tuple[int, int, bytes]]:
    """``(offset of the root pgid in the file, the page holding it, bucket name)`` of every
    nested bucket of the live tree that has pages of its own (not inline)."""
    db = open_bolt(data)
    for _ in db.entries():
        pass
    out = []
    for pgid in sorted(db.tree_pages):
        base = pgid * BOLT_PAGE
        pid, flags, n, _ = struct.unpack_from("<QHHI", data, base)
        if pid != pgid or flags != LEAF_PAGE:
            continue
        for i in range(n):
            at = base + 16 + i * 16
            eflags, pos, ksize, _ = struct.unpack_from("<IIII", data, at)
            if eflags & 1:
                value_at = at + pos + ksize
                if struct.unpack_from("<Q", data, value_at)[0]:
                    out.append((value_at, pgid, data[at + pos : at + pos + ksize]))
    return out


def rewrite(path: Path, edit: Any) -> None:
    data = bytearray(path.read_bytes())
    edit(data)
    path.write_bytes(bytes(data))


@pytest.fixture
def intact(containerd_master: Path) -> ContainerdStore:
    return read(containerd_master)


def high_water(data: bytes) -> int:
    """The page count of the meta with the higher txid (meta: magic, version, page size,
    flags, root, sequence, freelist, pgid, txid)."""
    metas = [struct.unpack_from("<QQ", data, p * BOLT_PAGE + 16 + 40) for p in (0, 1)]
    return int(max(metas, key=lambda m: m[1])[0])


@pytest.mark.parametrize("keep", [1, 2], ids=["last-page-cut", "root-page-cut"])
def test_meta_db_truncated(containerd_root: Path, intact: ContainerdStore, keep: int) -> None:
    """Cut short inside the tree: what the remaining pages hold is read. With the root page
    itself gone (bbolt writes new pages last), an older root left in the file is found."""
    db = containerd_root / CONTAINERD_META_DB
    pages = high_water(db.read_bytes()) - keep
    rewrite(db, lambda d: d.__delitem__(slice(pages * BOLT_PAGE, None)))
    store = read(containerd_root)
    assert "truncated" in kinds(store, CONTAINERD_META_DB)
    assert sorted(store.namespaces) == sorted(intact.namespaces)
    assert 0 < count(store) <= count(intact)


def test_meta_db_cut_in_half(containerd_root: Path) -> None:
    """Nothing of the tree is left: a problem naming the file, no namespace, no traceback;
    the snapshotter and the content store are still read."""
    db = containerd_root / CONTAINERD_META_DB
    rewrite(db, lambda d: d.__delitem__(slice(len(d) // 2, None)))
    store = read(containerd_root)
    assert "truncated" in kinds(store, CONTAINERD_META_DB)
    assert store.snapshotters["overlayfs"].snapshots and store.blobs


@pytest.mark.parametrize("db", [CONTAINERD_META_DB, CONTAINERD_SNAPSHOTTER_DB])
def test_a_page_out_of_range(containerd_root: Path, intact: ContainerdStore, db: str) -> None:
    path = containerd_root / db
    value_at, _, name = paged_buckets(path.read_bytes())[0]
    rewrite(path, lambda d: d.__setitem__(slice(value_at, value_at + 8), struct.pack("<Q", 999999)))
    store = read(containerd_root)
    problems = [p for p in store.problems if p.path == db and p.kind == "page-out-of-range"]
    assert problems and name.decode() in problems[0].where
    assert count(store) + sum(len(s.snapshots) for s in store.snapshotters.values()) > 0


def test_a_loop(containerd_root: Path, intact: ContainerdStore) -> None:
    """A nested bucket whose root is the page that holds it: each page is read once."""
    path = containerd_root / CONTAINERD_META_DB
    value_at, holder, _ = paged_buckets(path.read_bytes())[0]
    rewrite(path, lambda d: d.__setitem__(slice(value_at, value_at + 8), struct.pack("<Q", holder)))
    store = read(containerd_root)
    assert "cycle" in kinds(store, CONTAINERD_META_DB)
    assert store.namespaces


def test_both_meta_pages_bad_the_tree_is_found_by_scanning(
    containerd_root: Path, intact: ContainerdStore
) -> None:
    path = containerd_root / CONTAINERD_META_DB

    def zero_metas(d: bytearray) -> None:
        for page in (0, 1):
            d[page * BOLT_PAGE + 16 : page * BOLT_PAGE + 24] = bytes(8)  # magic and version

    rewrite(path, zero_metas)
    store = read(containerd_root)
    assert {"bad-meta", "salvaged"} <= kinds(store, CONTAINERD_META_DB)
    assert store.meta is not None and store.meta.salvage is not None
    assert "scanned" in store.meta.salvage
    for name, ns in intact.namespaces.items():
        assert sorted(store.namespaces[name].images) == sorted(ns.images)
        assert sorted(store.namespaces[name].snapshots) == sorted(ns.snapshots)


def test_both_checksums_bad_the_better_meta_is_used(
    containerd_root: Path, intact: ContainerdStore
) -> None:
    path = containerd_root / CONTAINERD_SNAPSHOTTER_DB

    def spoil(d: bytearray) -> None:
        for page in (0, 1):
            d[page * BOLT_PAGE + 16 + 56] ^= 0xFF  # the checksum's first byte

    rewrite(path, spoil)
    store = read(containerd_root)
    assert {"bad-meta", "salvaged"} <= kinds(store, CONTAINERD_SNAPSHOTTER_DB)
    sn = store.snapshotters["overlayfs"]
    assert sn.db is not None and "bad checksum" in (sn.db.salvage or "")
    assert sorted(sn.snapshots) == sorted(intact.snapshotters["overlayfs"].snapshots)


def test_the_newer_meta_damaged_falls_back(containerd_root: Path) -> None:
    path = containerd_root / CONTAINERD_META_DB
    data = path.read_bytes()
    txids = [struct.unpack_from("<Q", data, p * BOLT_PAGE + 16 + 48)[0] for p in (0, 1)]
    newer = txids.index(max(txids))
    rewrite(path, lambda d: d.__setitem__(newer * BOLT_PAGE + 16, 0))
    store = read(containerd_root)
    assert store.meta is not None and store.meta.fell_back
    assert "bad-meta" in kinds(store, CONTAINERD_META_DB)


@pytest.mark.parametrize(
    "content", [b"", b"\0" * 8192, b"not a bolt file at all" * 500], ids=["empty", "nul", "text"]
)
def test_no_bolt_file_at_all(containerd_root: Path, content: bytes) -> None:
    (containerd_root / CONTAINERD_META_DB).write_bytes(content)
    store = read(containerd_root)
    assert kinds(store, CONTAINERD_META_DB)
    assert store.namespaces == {}
    assert store.snapshotters["overlayfs"].snapshots  # the rest is still read


def test_a_missing_meta_db_is_a_problem(containerd_root: Path) -> None:
    (containerd_root / CONTAINERD_META_DB).unlink()
    store = read(containerd_root)
    assert kinds(store, CONTAINERD_META_DB) == {"missing"}


def test_memory_is_bounded_by_the_file(containerd_master: Path) -> None:
    """A loop of every bucket onto one page, read: the walk's memory stays within a small
    multiple of the file."""
    data = bytearray((containerd_master / CONTAINERD_META_DB).read_bytes())
    buckets = paged_buckets(bytes(data))
    for value_at, _, _ in buckets:
        data[value_at : value_at + 8] = struct.pack("<Q", buckets[0][1])
    tracemalloc.start()
    try:
        tree = read_tree(bytes(data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tree.problems
    assert peak < 8 * len(data)
