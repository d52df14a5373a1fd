"""repair on the legacy layout (Docker 1.8 on devicemapper and on aufs) and on the other modern
drivers: each repairable damage planned, applied, verified and undone.

The devicemapper host is the sample built with Debian's thin_restore; the aufs host is a real
Docker 1.8 root from the docker-explorer corpus. The thin pool itself is never written: a device
whose record is quarantined stays in the pool, and the plan says how to free it.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import copy_tree
from test_repair import dry_run, errors, run_repair, verify
from treehash import tree_hash

DM = "legacy-1.8-devicemapper"
META = "devicemapper/metadata"
AUFS_EXITED = "3b03d0958390ccfb92e9f1ee67de628ab315c532120d4512cb72a1805465fb35"
NEW = "e" * 64


@pytest.fixture
def aufs_root(corpus_roots: dict[str, Path], tmp_path: Path) -> Path:
    return copy_tree(corpus_roots["aufs.v1"], tmp_path / "docker")


def _cid(truth: dict[str, Any]) -> str:
    return str(truth["containers"][0]["id"])


def _set_record(root: Path, name: str, **fields: Any) -> None:
    path = root / META / name
    doc = json.loads(path.read_bytes())
    doc.update(fields)
    path.write_text(json.dumps(doc))


def _names(root: Path) -> set[str]:
    db = sqlite3.connect(root / "linkgraph.db")
    try:
        return {n for (n,) in db.execute("SELECT name FROM edge WHERE parent_id = '0'")}
    finally:
        db.close()


def _plan(root: Path) -> dict[str, Any]:
    return dry_run(root)


def _repair_verify_undo(root: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Repair; return the run and what verify says after it; then undo and check the tree is
    back byte for byte."""
    damaged = tree_hash(root)
    result = run_repair(root, "--format", "json")
    assert result.code == 1, result.stdout + result.stderr
    after = verify(root)
    undo = run_repair("--undo", result.json()["journal"])
    assert undo.code == 1, undo.stderr
    assert tree_hash(root) == damaged
    return result.json(), after


# -- devicemapper --------------------------------------------------------------------------------


def test_broken_container_on_devicemapper_whole(dm_root: Path, dm_truth: dict[str, Any]) -> None:
    cid = _cid(dm_truth)
    (dm_root / f"containers/{cid}/config.json").write_bytes(b"\0" * 64)
    plan = _plan(dm_root)
    assert [(a["action"], a["path"]) for a in plan["actions"]] == [
        ("rewrite", "linkgraph.db"),
        ("quarantine", f"{META}/{cid}"),
        ("quarantine", f"devicemapper/mnt/{cid}"),
        ("quarantine", f"{META}/{cid}-init"),
        ("quarantine", f"devicemapper/mnt/{cid}-init"),
        ("quarantine", f"containers/{cid}"),
    ]
    record = plan["actions"][1]
    assert record["details"]["in_pool"] and "dmsetup message" in record["details"]["reclaim"]
    assert plan["actions"][0]["details"]["removed"] == [f"nginx -> {cid[:12]}"]

    doc, after = _repair_verify_undo(dm_root)
    assert doc["errors_left"] == 0
    leaked = [f for f in after if f["check"] == "thinpool.device-leaked"]
    assert len(leaked) == 2, after  # the container's two devices stay in the pool
    assert not [f for f in after if f["severity"] == "error"]


def test_container_whose_device_left_the_pool(dm_root: Path, dm_truth: dict[str, Any]) -> None:
    """The classic devicemapper hang: docker rm fails because the device is gone."""
    cid = _cid(dm_truth)
    _set_record(dm_root, cid, device_id=99)
    plan = _plan(dm_root)
    unit = [a for a in plan["actions"] if a["unit"] == f"container {cid}"]
    assert unit and all("thinpool.device-missing" in a["checks"] for a in unit)
    assert "failed to remove root filesystem" in unit[-1]["safety"]
    assert not plan["actions"][1]["details"]["in_pool"]
    doc, after = _repair_verify_undo(dm_root)
    assert not [f for f in after if f["severity"] == "error"], after
    assert f"containers/{cid}" in {a["path"] for a in doc["actions"]}


def test_orphan_records_and_a_stale_name(dm_root: Path, dm_truth: dict[str, Any]) -> None:
    cid = _cid(dm_truth)
    shutil.rmtree(dm_root / f"containers/{cid}")
    assert "nginx" in _names(dm_root)
    plan = _plan(dm_root)
    paths = [a["path"] for a in plan["actions"]]
    assert (
        paths[0] == "linkgraph.db" and "linkgraph.container-missing" in plan["actions"][0]["checks"]
    )
    assert {f"{META}/{cid}", f"{META}/{cid}-init", f"devicemapper/mnt/{cid}"} <= set(paths)
    result = run_repair(dm_root, "--format", "json")
    assert result.code == 1, result.stdout + result.stderr
    assert errors(dm_root) == set()
    assert "nginx" not in _names(dm_root)
    db = sqlite3.connect(dm_root / "linkgraph.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()


def test_stale_name_whose_entity_id_is_not_utf8(dm_root: Path) -> None:
    """A stale edge whose entity id is not UTF-8 (damage): the planner reads it with surrogates
    and the purge deletes it by its bytes. The purge raised UnicodeEncodeError binding it (found
    by tests/fuzz, target linkgraph-mutations)."""
    bad = b"\xff\xdf" + b"a" * 62
    db = sqlite3.connect(dm_root / "linkgraph.db")
    try:
        db.execute("INSERT INTO entity VALUES (CAST(? AS TEXT))", (bad,))
        db.execute("INSERT INTO edge VALUES (CAST(? AS TEXT), '0', 'not-utf8')", (bad,))
        db.commit()
    finally:
        db.close()
    plan = _plan(dm_root)
    rewrite = next(a for a in plan["actions"] if a["path"] == "linkgraph.db")
    assert "not-utf8" in rewrite["reason"]
    result = run_repair(dm_root, "--format", "json")
    assert result.code == 1, result.stdout + result.stderr
    assert "not-utf8" not in _names(dm_root)


def test_pending_transaction_of_a_device_never_made(dm_root: Path) -> None:
    """Killed between writing transaction-metadata and creating the device: dockerd would
    delete the record and the transaction file; the pool has nothing to delete."""
    pending_hash = "c" * 64
    (dm_root / META / pending_hash).write_text(
        json.dumps(
            {"device_id": 14, "size": 10737418240, "transaction_id": 14, "initialized": False}
        )  # fmt: skip
    )
    _set_record(
        dm_root, "transaction-metadata", open_transaction_id=14, device_id=14,
        device_hash=pending_hash,
    )  # fmt: skip
    plan = _plan(dm_root)
    assert [a["path"] for a in plan["actions"]] == [
        f"{META}/{pending_hash}",
        f"{META}/transaction-metadata",
    ]
    doc, after = _repair_verify_undo(dm_root)
    assert not [f for f in after if "transaction" in f["check"]], after


def test_pending_transaction_of_a_device_in_the_pool_is_left_to_dockerd(
    dm_root: Path, dm_truth: dict[str, Any]
) -> None:
    cid = _cid(dm_truth)
    device = json.loads((dm_root / META / cid).read_bytes())["device_id"]
    _set_record(
        dm_root, "transaction-metadata", open_transaction_id=14, device_id=device, device_hash=cid
    )
    plan = _plan(dm_root)
    assert plan["actions"] == []
    (skip,) = [s for s in plan["skipped"] if s["check"] == "thinpool.transaction-pending"]
    assert "dockerd deletes it" in skip["why"]


def test_mount_point_without_a_record(dm_root: Path) -> None:
    (dm_root / "devicemapper/mnt" / NEW).mkdir()
    plan = _plan(dm_root)
    assert [(a["action"], a["path"]) for a in plan["actions"]] == [
        ("quarantine", f"devicemapper/mnt/{NEW}")
    ]
    doc, after = _repair_verify_undo(dm_root)
    assert not [f for f in after if f["check"] == "devicemapper.mnt-orphan"]


def test_leftovers_of_interrupted_writes_on_devicemapper(dm_root: Path) -> None:
    (dm_root / META / ".tmp123456").write_text('{"device_id":')
    (dm_root / "graph/_tmp/interrupted").mkdir(parents=True)
    plan = _plan(dm_root)
    assert [(a["path"], a["checks"]) for a in plan["actions"]] == [
        ("graph/_tmp/interrupted", ["layer.graph-tmp-leftover"]),
        (f"{META}/.tmp123456", ["devicemapper.tmp-leftover"]),
    ]
    doc, after = _repair_verify_undo(dm_root)
    assert not [f for f in after if "tmp-leftover" in f["check"]], after


# -- aufs (a real Docker 1.8 host) ---------------------------------------------------------------


def test_broken_container_on_aufs_whole(aufs_root: Path) -> None:
    cid = AUFS_EXITED
    (aufs_root / f"containers/{cid}/config.json").write_bytes(b'{"ID": "')
    plan = _plan(aufs_root)
    unit = [a["path"] for a in plan["actions"] if a["unit"] == f"container {cid}"]
    assert unit == [
        f"aufs/mnt/{cid}",
        f"aufs/diff/{cid}",
        f"aufs/layers/{cid}",
        f"aufs/mnt/{cid}-init",
        f"aufs/diff/{cid}-init",
        f"aufs/layers/{cid}-init",
        f"containers/{cid}",
    ]
    names_before = _names(aufs_root)
    doc, after = _repair_verify_undo(aufs_root)
    assert not [f for f in after if f["severity"] in ("error", "warning")], after
    assert doc["errors_left"] == 0 and _names(aufs_root) == names_before  # undone


def test_orphan_aufs_layer(aufs_root: Path) -> None:
    (aufs_root / f"aufs/diff/{NEW}").mkdir()
    (aufs_root / f"aufs/layers/{NEW}").write_text("")
    plan = _plan(aufs_root)
    assert [a["path"] for a in plan["actions"]] == [f"aufs/diff/{NEW}", f"aufs/layers/{NEW}"]
    doc, after = _repair_verify_undo(aufs_root)
    assert not [f for f in after if f["check"] == "driver.orphan-dir"]


def test_aufs_layer_that_another_stacks_on_is_left_alone(aufs_root: Path) -> None:
    (aufs_root / f"aufs/diff/{NEW}").mkdir()
    (aufs_root / f"aufs/layers/{NEW}").write_text("")
    other = "not-a-layer-id"  # an unknown directory: never quarantined
    (aufs_root / f"aufs/diff/{other}").mkdir()
    (aufs_root / f"aufs/layers/{other}").write_text(f"{NEW}\n")
    plan = _plan(aufs_root)
    assert f"aufs/diff/{NEW}" not in [a["path"] for a in plan["actions"]]
    assert any("stacks on it" in s["why"] for s in plan["skipped"])


# -- the other modern drivers --------------------------------------------------------------------

ORPHAN_DIR = {"overlay2": f"overlay2/{NEW}", "vfs": f"vfs/dir/{NEW}", "overlay": f"overlay/{NEW}"}


def test_orphan_dir_on_every_modern_driver(
    driver_sample: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    master, truth = driver_sample
    root = copy_tree(master, tmp_path / "docker")
    orphan = ORPHAN_DIR[truth["driver"]]
    (root / orphan / "diff").mkdir(parents=True)
    plan = _plan(root)
    assert [a["path"] for a in plan["actions"]] == [orphan]
    doc, after = _repair_verify_undo(root)
    assert not [f for f in after if f["severity"] in ("error", "warning")], after
