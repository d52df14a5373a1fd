"""The bbolt writer behind repair's salvaged copies: what it writes, the decoder reads back
whole and alike — both real databases of the containerd-store sample, and trees shaped to need
every page kind (branches, overflow pages, inline and paged buckets, empty buckets). Whether
containerd itself opens such a file is the slow tier's test
(``test_containerd_repair_dockerd.py``)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from sample_paths import CONTAINERD_META_DB, CONTAINERD_SNAPSHOTTER_DB

from forensics.formats.bbolt import FREELIST_PAGE, open_bolt
from forensics.formats.boltwrite import BoltWriteError, encode_bolt
from forensics.repair.boltcopy import salvage_bolt
from forensics.stores.containerd.boltread import Bucket, read_tree


def flat(bucket: Bucket, path: tuple[bytes, ...] = ()) -> dict[tuple[bytes, ...], Any]:
    out: dict[tuple[bytes, ...], Any] = {path: (dict(bucket.values), bucket.sequence)}
    for name, child in bucket.buckets.items():
        out.update(flat(child, path + (name,)))
    return out


def every_page_used(data: bytes) -> None:
    """The file opens on a valid meta, its freelist is empty, and the trees use every data
    page exactly once (the walk refuses a page reached twice)."""
    db = open_bolt(data)
    assert not db.fell_back and db.freelist() == []
    assert db.page(2, (FREELIST_PAGE,)).count == 0
    for _ in db.entries():
        pass
    used = {p + i for p, overflow in db.tree_pages.items() for i in range(overflow + 1)}
    assert used == set(range(3, db.meta.pgid))
    assert len(data) == db.meta.pgid * db.page_size


@pytest.mark.parametrize("rel", [CONTAINERD_META_DB, CONTAINERD_SNAPSHOTTER_DB])
def test_the_sample_databases_written_again_read_alike(containerd_master: Path, rel: str) -> None:
    original = read_tree((containerd_master / rel).read_bytes())
    assert original.problems == []
    written = encode_bolt(original.root, txid=(original.txid or 0) + 1)
    every_page_used(written.data)
    again = read_tree(written.data)
    assert again.problems == [] and again.txid == (original.txid or 0) + 2
    assert flat(again.root) == flat(original.root)


def test_branches_overflow_and_buckets_of_every_shape() -> None:
    rng = random.Random(17)
    v1 = Bucket(sequence=5)
    for i in range(4000):  # many leaves under branch pages
        v1.values[b"key-%06d" % i] = rng.randbytes(rng.randrange(0, 120))
    v1.values[b"a-large-value"] = rng.randbytes(20_000)  # overflow pages
    small = Bucket(sequence=3, values={b"x": b"y"})  # inline
    large = Bucket(sequence=2**40, values={b"k%d" % i: b"v" * 300 for i in range(10)})  # paged
    nested = Bucket(buckets={b"empty": Bucket(), b"small": small})  # has buckets: paged
    v1.buckets.update({b"small": small, b"large": large, b"nested": nested, b"empty": Bucket()})
    for i in range(1500):  # many buckets: a branch over leaves of bucket headers
        v1.buckets[b"n%05d" % i] = Bucket(sequence=i, values={b"id": bytes([i % 256])})
    root = Bucket(buckets={b"v1": v1})
    written = encode_bolt(root)
    every_page_used(written.data)
    assert flat(read_tree(written.data).root) == flat(root)
    assert written.keys == sum(len(v) for v, _ in flat(root).values())


@pytest.mark.parametrize("page_size", [1024, 16384])
def test_other_page_sizes(page_size: int) -> None:
    root = Bucket(buckets={b"v1": Bucket(values={b"k%d" % i: b"v" * i for i in range(300)})})
    data = encode_bolt(root, page_size=page_size).data
    every_page_used(data)
    assert open_bolt(data).page_size == page_size
    assert flat(read_tree(data).root) == flat(root)


@pytest.mark.parametrize(
    "root",
    [
        Bucket(values={b"": b"empty key"}),
        Bucket(values={b"k" * 40000: b""}),
        Bucket(values={b"same": b"1"}, buckets={b"same": Bucket()}),
    ],
    ids=["empty-key", "key-too-long", "key-and-bucket"],
)
def test_what_bbolt_cannot_hold_is_refused(root: Bucket) -> None:
    with pytest.raises(BoltWriteError):
        encode_bolt(root)


def test_salvage_raises_the_snapshot_id_sequence(containerd_master: Path) -> None:
    data = (containerd_master / CONTAINERD_SNAPSHOTTER_DB).read_bytes()
    intact = read_tree(data).root.bucket(b"v1", b"snapshots")
    assert intact is not None
    salvage = salvage_bolt(data, "snapshotter", dir_floor=intact.sequence + 7)
    assert salvage.raised == {"v1/snapshots": (intact.sequence, intact.sequence + 7)}
    assert salvage_bolt(data, "snapshotter").raised == {}  # the sequence is the highest id


def test_salvage_keeps_meta_db_sequences_past_every_backend_name(containerd_master: Path) -> None:
    data = (containerd_master / CONTAINERD_META_DB).read_bytes()
    salvage = salvage_bolt(data, "meta")
    assert salvage.raised == {}  # containerd's own sequences are already past every name
    v1 = salvage.tree.root.bucket(b"v1")
    assert v1 is not None
    for ns in v1.buckets.values():
        for sn in (ns.bucket(b"snapshots") or Bucket()).buckets.values():
            seqs = [int(b.values[b"name"].split(b"/")[1]) for b in sn.buckets.values()]
            assert sn.sequence >= max(seqs)
