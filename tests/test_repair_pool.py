"""repair of a devicemapper root whose thin pool metadata is damaged: a repaired copy is written
into the quarantine run, never over the original, and the plan says how to put it in place.
Judged by Debian's thin_check and thin_dump."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_repair import run_repair

DM = "legacy-1.8-devicemapper"
POOL = "devicemapper/devicemapper/metadata"

pytestmark = pytest.mark.skipif(not shutil.which("thin_check"), reason="thin-provisioning-tools")


def _dump(path: Path) -> str:
    out = subprocess.run(["thin_dump", str(path)], capture_output=True, text=True, check=True)
    return re.sub(r' (time|transaction|creation_time|snap_time)="\d+"', "", out.stdout)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _zero_superblock(root: Path) -> None:
    with open(root / POOL, "r+b") as f:
        f.write(b"\0" * 4096)


def test_lost_superblock_is_rebuilt_from_dockers_records(dm_root: Path) -> None:
    original = _dump(dm_root / POOL)
    _zero_superblock(dm_root)
    damaged = _sha(dm_root / POOL)
    planned = run_repair(dm_root, "--dry-run", "--format", "json")
    assert planned.code == 4, "a copy written aside leaves the pool in ROOT damaged"
    plan = planned.json()
    assert plan["errors_left"] >= 1
    (copy,) = [a for a in plan["actions"] if a["action"] == "copy-out"]
    assert copy["path"] == POOL and copy["checks"] == ["thinpool.unreadable"]
    assert copy["details"]["superblock_from_docker"] == {
        "transaction_id": 13,
        "data_block_size": 128,
        "nr_data_blocks": 1638400,
    }
    assert copy["details"]["devices"] == 13 and not copy["details"]["lost"]
    assert any("thin_check" in (s["command"] or "") for s in copy["details"]["steps"])

    result = run_repair(dm_root, "--format", "json")
    assert result.code == 4, result.stdout + result.stderr  # the pool in ROOT is still damaged
    doc = result.json()
    (written,) = doc["copies"]
    assert _sha(dm_root / POOL) == damaged, "the original is never written"
    check = subprocess.run(["thin_check", written], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    assert _dump(Path(written)) == original
    text = run_repair(dm_root, "--dry-run").stdout
    assert "step 1: Stop the Docker daemon" in text


def test_damaged_mapping_node_gives_a_copy_thin_check_accepts(dm_root: Path) -> None:
    from forensics.thin.blocks import MetadataFile
    from forensics.thin.pool import read_pool

    with MetadataFile(dm_root / POOL) as meta:
        pool = read_pool(meta)
        root = int(pool.superblock.data_mapping_root)
    with open(dm_root / POOL, "r+b") as f:  # the top level of the mapping tree: a bad checksum
        f.seek(root * 4096 + 100)
        f.write(b"\xff" * 8)
    plan = run_repair(dm_root, "--dry-run", "--format", "json").json()
    (copy,) = [a for a in plan["actions"] if a["action"] == "copy-out"]
    assert copy["checks"] == ["thinpool.damaged"]
    result = run_repair(dm_root, "--format", "json")
    (written,) = result.json()["copies"]
    check = subprocess.run(["thin_check", written], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    undo = run_repair("--undo", result.json()["journal"])
    assert undo.code == 0, undo.stderr  # nothing in ROOT was changed: nothing to reverse
    assert Path(written).exists(), "the copy stays in the quarantine"
