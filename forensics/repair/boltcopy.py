"""The salvaged copy of a damaged containerd bolt database (``meta.db``, a snapshotter's
``metadata.db``), for the repair plan and its run.

The database is never written in place: every bucket and key that can still be read
(:mod:`forensics.stores.containerd.boltread`) is carried over into a valid bbolt file written
afresh (:mod:`forensics.formats.boltwrite`) in the quarantine run, with the steps that put it in
place. Bucket sequences are carried over too, raised where containerd draws names from them so
that nothing it creates next can take a name already in use:

- a snapshotter's ``v1/snapshots`` sequence numbers the directories ``snapshots/<id>/``
  (containerd ``snapshots/storage/bolt.go``): raised to the highest id the copy records and to
  the highest directory number the plan found on disk;
- meta.db's ``v1/<ns>/snapshots/<snapshotter>`` sequence is the ``<seq>`` of the backend names
  ``<ns>/<seq>/<key>`` (``createKey``, ``core/metadata/snapshot.go``): raised to the highest
  ``<seq>`` of the names the copy holds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

from forensics.errors import OperationalError
from forensics.formats.boltwrite import BoltWriteError, encode_bolt
from forensics.repair.fsops import write_new_file
from forensics.stores.containerd.boltread import BoltTree, Bucket, read_tree
from forensics.stores.containerd.values import ValueDamage, decode_uvarint

#: a bolt file larger than this is not salvaged (the reader's own limit)
BOLT_LIMIT = 1024 * 1024 * 1024

Kind = Literal["meta", "snapshotter"]

__all__ = ["BoltCopyError", "BoltSalvage", "salvage_bolt", "write_bolt_copy"]


class BoltCopyError(OperationalError):
    """No copy can be made; the message says why."""


@dataclass
class BoltSalvage:
    """What a copy carries: the tree to write, and what was lost on the way."""

    tree: BoltTree
    buckets: int = 0
    keys: int = 0
    #: ``<bucket path>: <kind>: <detail>`` of each part that could not be read
    lost: list[str] = field(default_factory=list)
    #: bucket paths whose sequence was raised: path → (read, written)
    raised: dict[str, tuple[int, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "buckets": self.buckets,
            "keys": self.keys,
            "lost": self.lost,
            "sequences_raised": {p: list(v) for p, v in sorted(self.raised.items())},
        }


def salvage_bolt(data: bytes, kind: Kind, dir_floor: int = 0) -> BoltSalvage:
    """What a copy of the bolt file ``data`` would carry (nothing written). ``dir_floor``: the
    highest snapshot directory number on disk (a snapshotter's database)."""
    tree = read_tree(data, (b"v1",))
    if tree.unreadable or not tree.root.count():
        why = "; ".join(p.detail for p in tree.problems) or "no bucket in it"
        raise BoltCopyError(f"nothing can be read of it ({why}): no copy can be made")
    salvage = BoltSalvage(tree, *_count(tree.root))
    for p in tree.problems:
        where = "/".join(b.decode("utf-8", "backslashreplace") for b in p.bucket) or "(root)"
        salvage.lost.append(f"{where}: {p.kind}: {p.detail}")
    if kind == "snapshotter":
        _raise_snapshot_ids(tree.root, dir_floor, salvage)
    else:
        _raise_backend_names(tree.root, salvage)
    return salvage


def _count(bucket: Bucket) -> tuple[int, int]:
    buckets, keys, stack = 0, 0, [bucket]
    while stack:
        b = stack.pop()
        keys += len(b.values)
        buckets += len(b.buckets)
        stack.extend(b.buckets.values())
    return buckets, keys


def _raise(bucket: Bucket, path: str, floor: int, salvage: BoltSalvage) -> None:
    if floor > bucket.sequence:
        salvage.raised[path] = (bucket.sequence, floor)
        bucket.sequence = floor


def _raise_snapshot_ids(root: Bucket, dir_floor: int, salvage: BoltSalvage) -> None:
    snapshots = root.bucket(b"v1", b"snapshots")
    if snapshots is None:
        return
    ids = [dir_floor]
    for record in snapshots.buckets.values():
        raw = record.values.get(b"id")
        try:
            ids.append(decode_uvarint(raw) if raw is not None else 0)
        except ValueDamage:
            continue
    _raise(snapshots, "v1/snapshots", max(ids), salvage)


def _raise_backend_names(root: Bucket, salvage: BoltSalvage) -> None:
    v1 = root.bucket(b"v1")
    for ns_name, ns in sorted(v1.buckets.items()) if v1 is not None else ():
        snapshotters = ns.bucket(b"snapshots")
        for sn_name, sn in sorted(snapshotters.buckets.items()) if snapshotters else ():
            seqs = [0]
            for record in sn.buckets.values():
                parts = record.values.get(b"name", b"").split(b"/", 2)
                if len(parts) == 3 and parts[1].isdigit():
                    seqs.append(int(parts[1]))
            path = b"/".join((b"v1", ns_name, b"snapshots", sn_name))
            _raise(sn, path.decode("utf-8", "backslashreplace"), max(seqs), salvage)


def encode_salvage(salvage: BoltSalvage) -> bytes:
    """The copy's bytes, at the next transaction after the one read."""
    tree = salvage.tree
    try:
        encoded = encode_bolt(
            tree.root, page_size=tree.page_size or 4096, txid=(tree.txid or 0) + 1
        )
    except BoltWriteError as exc:
        raise BoltCopyError(f"the copy cannot be written: {exc}") from None
    return encoded.data


def write_bolt_copy(source_fd: int, run_fd: int, name: str, values: dict[str, Any]) -> None:
    """Write the salvaged copy of the bolt file open at ``source_fd`` as ``name`` into the run
    directory held at ``run_fd`` (replaced if a crashed run left part of it). ``values``: the
    plan's ``kind`` and ``dir_floor``."""
    data = _read_all(source_fd)
    salvage = salvage_bolt(data, values.get("kind", "meta"), int(values.get("dir_floor", 0)))
    write_new_file(run_fd, name, encode_salvage(salvage), 0o600)


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    if size > BOLT_LIMIT:
        raise BoltCopyError(f"{size} bytes: larger than the {BOLT_LIMIT} bytes salvaged")
    chunks, left = [], size
    while left > 0:
        chunk = os.pread(fd, min(left, 1 << 24), size - left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
