"""``repair`` of a containerd store, on copies of the real containerd-store sample: leftover
snapshot directories and stale ingests quarantined (only on containerd's own rules, and only
while the database that owns them was read whole), a damaged bolt database never written but
salvaged into a valid copy in the quarantine run, ``--dry-run`` writing nothing, ``--undo``
restoring the tree byte for byte, nothing ever written outside the root repaired — for ROOT a
Docker 29 root (its containerd at ``containerd/daemon``), a containerd root alone, and a Docker
root with ``--containerd-root``.

Damage is derived from the sample: an orphan is a copy of a real snapshot directory under a
number no snapshot has, a stale ingest a copy of the sample's real interrupted upload under
another ref, a truncated database cut at its own high-water mark.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

from conftest import run_cli
from sample_paths import (
    BOLT_PAGE,
    CONTAINERD_META_DB,
    CONTAINERD_ROOT,
    CONTAINERD_SNAPSHOTTER_DB,
)
from test_repair import run_repair
from treehash import tree_hash

from forensics.checks import run_checks
from forensics.evidence import Evidence
from forensics.stores import read_host
from forensics.stores.containerd.boltread import read_tree
from forensics.stores.containerd.values import decode_uvarint

SNAPSHOTS = "io.containerd.snapshotter.v1.overlayfs/snapshots"
INGEST = "io.containerd.content.v1.content/ingest"
META_DB = "io.containerd.metadata.v1.bolt/meta.db"
SNAPSHOTTER_DB = "io.containerd.snapshotter.v1.overlayfs/metadata.db"


def findings(root: Path, containerd: Path | None = None) -> list[dict[str, Any]]:
    with Evidence(root) as ev:
        ctd = Evidence(containerd) if containerd is not None else None
        return [f.as_dict() for f in run_checks(read_host(ev, ctd))]


def problems(root: Path, containerd: Path | None = None) -> set[tuple[str, str]]:
    return {
        (f["check"], f["path"])
        for f in findings(root, containerd)
        if f["severity"] in ("error", "warning")
    }


def leftovers(store: Path) -> list[str]:
    """An orphan snapshot directory holding a real layer's files, an empty one, and a stale
    ingest: paths relative to the containerd root ``store``."""
    shutil.copytree(store / SNAPSHOTS / "5", store / SNAPSHOTS / "21", symlinks=True)
    (store / SNAPSHOTS / "22").mkdir()
    (real,) = sorted((store / INGEST).iterdir())
    name = hashlib.sha256(b"a-stale-upload").hexdigest()
    shutil.copytree(real, store / INGEST / name, symlinks=True)
    (store / INGEST / name / "ref").write_text("a-stale-upload")
    return [f"{SNAPSHOTS}/21", f"{SNAPSHOTS}/22", f"{INGEST}/{name}"]


def high_water(data: bytes) -> int:
    """The page count of the meta with the higher txid (page header 16 bytes; meta: magic,
    version, page size, flags, root, sequence, freelist, pgid, txid)."""
    metas = [struct.unpack_from("<QQ", data, p * BOLT_PAGE + 16 + 40) for p in (0, 1)]
    return int(max(metas, key=lambda m: m[1])[0])


def truncate(db: Path) -> None:
    """Cut the file one page short of its high-water mark."""
    data = db.read_bytes()
    db.write_bytes(data[: (high_water(data) - 1) * BOLT_PAGE])


def repair_json(*args: str | os.PathLike[str]) -> tuple[int, dict[str, Any]]:
    result = run_repair(*args, "--format", "json")
    assert result.code in (0, 1, 4), result.stdout + result.stderr
    return result.code, json.loads(result.stdout)


def entries(parent: Path) -> set[str]:
    return {p.name for p in parent.iterdir()}


# -- leftovers ----------------------------------------------------------------------------------


def test_dry_run_plans_the_leftovers_and_writes_nothing(containerd_root: Path) -> None:
    made = {f"{CONTAINERD_ROOT}/{p}" for p in leftovers(containerd_root / CONTAINERD_ROOT)}
    before, around = tree_hash(containerd_root), entries(containerd_root.parent)
    code, doc = repair_json(containerd_root, "--dry-run")
    assert code == 0
    assert {a["path"] for a in doc["actions"]} == made
    assert {a["action"] for a in doc["actions"]} == {"quarantine"}
    checks = {c for a in doc["actions"] for c in a["checks"]}
    assert checks == {
        "containerd.snapshot-dir-orphan",
        "containerd.snapshot-dir-leftover",
        "containerd.ingest-leftover",
    }
    assert tree_hash(containerd_root) == before
    assert entries(containerd_root.parent) == around  # no quarantine made


def test_repair_then_verify_then_undo(containerd_root: Path) -> None:
    made = {f"{CONTAINERD_ROOT}/{p}" for p in leftovers(containerd_root / CONTAINERD_ROOT)}
    found = problems(containerd_root)
    assert {p for _, p in found} == made
    damaged = tree_hash(containerd_root)
    around = entries(containerd_root.parent)

    code, doc = repair_json(containerd_root)
    assert code == 1 and doc["errors_left"] == 0
    assert problems(containerd_root) == set()
    quarantine = Path(f"{containerd_root}.quarantine")
    assert entries(containerd_root.parent) == around | {quarantine.name}
    run = Path(doc["quarantine"])
    assert (run / f"{CONTAINERD_ROOT}/{SNAPSHOTS}/21/fs").is_dir()  # moved whole, files kept

    undo = run_repair("--undo", doc["journal"])
    assert undo.code == 1, undo.stderr
    assert tree_hash(containerd_root) == damaged


def test_the_intact_sample_has_nothing_to_repair(containerd_root: Path) -> None:
    before = tree_hash(containerd_root)
    code, doc = repair_json(containerd_root)
    assert code == 0 and doc["actions"] == [] and doc["skipped"] == []
    assert tree_hash(containerd_root) == before


def test_a_containerd_root_alone(containerd_root: Path, tmp_path: Path) -> None:
    store = tmp_path / "containerd"
    shutil.move(containerd_root / CONTAINERD_ROOT, store)
    made = set(leftovers(store))
    damaged = tree_hash(store)
    code, doc = repair_json(store)
    assert code == 1 and {a["path"] for a in doc["actions"]} == made
    assert problems(store) == set()
    assert Path(doc["quarantine"]).parent == Path(f"{store}.quarantine")
    assert run_repair("--undo", doc["journal"]).code == 1
    assert tree_hash(store) == damaged


def test_a_docker_root_with_containerd_root(containerd_root: Path, tmp_path: Path) -> None:
    """The repair works on the containerd root given apart; ROOT is only read."""
    store = tmp_path / "containerd"
    shutil.move(containerd_root / CONTAINERD_ROOT, store)
    made = set(leftovers(store))
    docker, damaged = tree_hash(containerd_root), tree_hash(store)
    around = entries(tmp_path)

    code, doc = repair_json(containerd_root, "--containerd-root", store, "--dry-run")
    assert code == 0 and {a["path"] for a in doc["actions"]} == made
    assert tree_hash(store) == damaged and entries(tmp_path) == around

    code, doc = repair_json(containerd_root, "--containerd-root", store)
    assert code == 1 and doc["root"] == str(store)
    assert problems(containerd_root, store) == set()
    assert tree_hash(containerd_root) == docker
    assert entries(tmp_path) == around | {f"{store.name}.quarantine"}
    assert run_repair("--undo", doc["journal"]).code == 1
    assert tree_hash(store) == damaged and tree_hash(containerd_root) == docker


def test_verify_advises_the_repair_with_its_containerd_root(
    containerd_root: Path, tmp_path: Path
) -> None:
    store = tmp_path / "containerd"
    shutil.move(containerd_root / CONTAINERD_ROOT, store)
    leftovers(store)
    report = run_cli("verify", containerd_root, "--containerd-root", store)
    assert report.code == 4, report.stderr
    command = f"docker-forensics repair --dry-run {containerd_root} --containerd-root {store}"
    assert f"Next: {command} shows how repair would fix all 3 errors and warnings" in report.stdout


def test_undo_takes_no_containerd_root(tmp_path: Path) -> None:
    result = run_repair("--undo", tmp_path / "journal.jsonl", "--containerd-root", tmp_path)
    assert result.code == 16 and "--containerd-root" in result.stderr


def test_no_ingest_is_moved_while_meta_db_is_damaged(containerd_root: Path) -> None:
    """A live ingest's record may be among what could not be read: ownership in doubt."""
    made = leftovers(containerd_root / CONTAINERD_ROOT)
    truncate(containerd_root / CONTAINERD_META_DB)
    code, doc = repair_json(containerd_root, "--dry-run")
    moved = {a["path"] for a in doc["actions"] if a["action"] == "quarantine"}
    assert f"{CONTAINERD_ROOT}/{made[2]}" not in moved
    assert moved == {f"{CONTAINERD_ROOT}/{p}" for p in made[:2]}
    (left,) = [s for s in doc["skipped"] if s["path"] == f"{CONTAINERD_ROOT}/{made[2]}"]
    assert "ownership in doubt" in left["why"]


# -- damaged databases --------------------------------------------------------------------------


def test_a_truncated_meta_db_is_salvaged_beside_never_in_place(containerd_root: Path) -> None:
    db = containerd_root / CONTAINERD_META_DB
    truncate(db)
    damaged_read = read_tree(db.read_bytes())
    assert any(p.kind == "truncated" for p in damaged_read.problems)
    damaged = tree_hash(containerd_root)

    code, plan = repair_json(containerd_root, "--dry-run")
    (action,) = plan["actions"]
    assert code == 4 and plan["errors_left"] == 1
    assert action["action"] == "copy-out" and action["checks"] == ["containerd.db-damaged"]
    assert [s["command"] for s in action["details"]["steps"]][2] == (
        f"cp RUN/meta.db.salvaged {db}"
    )
    assert tree_hash(containerd_root) == damaged

    code, doc = repair_json(containerd_root)
    assert code == 4 and doc["errors_left"] == 1
    assert tree_hash(containerd_root) == damaged  # the database is never written
    (copy,) = doc["copies"]
    written = read_tree(Path(copy).read_bytes())
    assert written.problems == [] and written.salvage is None
    assert _flat(written.root) == _flat(damaged_read.root)

    shutil.copyfile(copy, db)  # step 3 of the plan
    assert not [f for f in findings(containerd_root) if f["check"] == "containerd.db-damaged"]


def test_a_snapshotter_db_copy_never_reuses_a_directory_number(containerd_root: Path) -> None:
    """A page of the snapshotter's database out of range: its copy carries what can be read,
    and its id sequence is raised past every directory on disk (an orphan 30 included)."""
    db = containerd_root / CONTAINERD_SNAPSHOTTER_DB
    store = containerd_root / CONTAINERD_ROOT
    shutil.copytree(store / SNAPSHOTS / "5", store / SNAPSHOTS / "30", symlinks=True)
    _first_paged_bucket_out_of_range(db)
    code, doc = repair_json(containerd_root)
    assert code == 4
    (action,) = doc["actions"]
    assert action["target"] == "overlayfs-metadata.db.salvaged"
    (copy,) = doc["copies"]
    tree = read_tree(Path(copy).read_bytes())
    assert tree.problems == []
    snapshots = tree.root.bucket(b"v1", b"snapshots")
    assert snapshots is not None
    ids = [decode_uvarint(b.values[b"id"]) for b in snapshots.buckets.values()]
    assert snapshots.sequence >= max([30, *ids])
    assert (store / SNAPSHOTS / "30").is_dir()  # no orphan moved while the database is damaged


def test_a_newer_meta_page_lost_is_left_to_containerd(containerd_root: Path) -> None:
    db = containerd_root / CONTAINERD_META_DB
    data = bytearray(db.read_bytes())
    txids = [struct.unpack_from("<Q", data, p * BOLT_PAGE + 16 + 48)[0] for p in (0, 1)]
    data[txids.index(max(txids)) * BOLT_PAGE + 16] ^= 0xFF
    db.write_bytes(bytes(data))
    code, doc = repair_json(containerd_root, "--dry-run")
    assert code == 0 and doc["actions"] == []
    why = {s["check"]: s["why"] for s in doc["skipped"]}
    assert "next commit" in why["containerd.db-fell-back"]
    # the older transaction does not record the sample's upload yet: its directory looks stale,
    # but is never moved on a database that was not read whole
    assert "ownership in doubt" in why["containerd.ingest-leftover"]


def test_nothing_readable_means_no_copy(containerd_root: Path) -> None:
    (containerd_root / CONTAINERD_META_DB).write_bytes(b"\0" * 8192)
    result = run_repair(containerd_root, "--dry-run", "--format", "json")
    assert result.code in (4, 8), result.stderr
    assert "Traceback" not in result.stderr


def _first_paged_bucket_out_of_range(db: Path) -> None:
    """Point the first nested bucket with pages of its own at page 999999."""
    from test_containerd_damage import paged_buckets

    data = bytearray(db.read_bytes())
    value_at, _, _ = paged_buckets(bytes(data))[0]
    data[value_at : value_at + 8] = struct.pack("<Q", 999999)
    db.write_bytes(bytes(data))


def _flat(bucket: Any, path: tuple[bytes, ...] = ()) -> dict[tuple[bytes, ...], Any]:
    out: dict[tuple[bytes, ...], Any] = {path: (dict(bucket.values), bucket.sequence)}
    for name, child in bucket.buckets.items():
        out.update(_flat(child, path + (name,)))
    return out
