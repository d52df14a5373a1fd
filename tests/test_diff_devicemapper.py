"""``diff`` of a devicemapper container, both eras: dockerd's naive diff (the container device's
``rootfs/`` against its init device's) read from the pool files, without a kernel or a mount.

On the samples as made, every container's changes are what ``docker diff`` printed (the truth
files' ``diff``), and ``verify --deep --sqlite`` writes them into ``container_changes``. On
copies damaged through the real tools (``dm_damage``), a missing or unreadable device is one
line, never a traceback; the pool files are never written.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dm_damage as dd
import pytest
from test_samples_dm import needs

pytestmark = needs("thin_dump", "thin_restore", "thin_check")

SAMPLES = {"legacy": ("dm_master", "dm_truth"), "modern": ("modern_dm_master", "modern_dm_truth")}
CONTAINERS = [
    ("legacy", "814ec8083966fcc5f1cbcc4da0a5613041e7951f24f74c687d91aff854fbd361"),
    ("modern", "dceb0a074f2529d6bcee33228b9d830fda522e3e3bd6ac88220e2350e13b771d"),
    ("modern", "cfa6d6fe158da338ae531068e973699c42c80a145c382058d9b35def7834dd36"),
]


def sample(era: str, request: pytest.FixtureRequest) -> tuple[Path, dict[str, Any]]:
    master, truth = SAMPLES[era]
    return request.getfixturevalue(master), request.getfixturevalue(truth)


def truth_of(truth: dict[str, Any], cid: str) -> dict[str, Any]:
    return next(c for c in truth["containers"] if c["id"] == cid)


def test_every_container_of_the_truth_is_tested(dm_truth, modern_dm_truth) -> None:
    listed = {("legacy", c["id"]) for c in dm_truth["containers"]}
    listed |= {("modern", c["id"]) for c in modern_dm_truth["containers"]}
    assert listed == set(CONTAINERS)


@pytest.mark.parametrize(("era", "cid"), CONTAINERS)
def test_diff_is_what_docker_diff_printed(
    era: str, cid: str, cli, request: pytest.FixtureRequest
) -> None:
    root, truth = sample(era, request)
    before = dd.pool_digest(root)
    result = cli("diff", cid, root, "--format", "json")
    assert result.code == 0, result.stdout + result.stderr
    doc = result.json()
    assert [f"{c['kind']} {c['path']}" for c in doc["changes"]] == truth_of(truth, cid)["diff"]
    assert doc["problems"] == []
    text = cli("diff", cid[:12], root)
    assert text.code == 0 and text.stdout.splitlines() == truth_of(truth, cid)["diff"]
    assert dd.pool_digest(root) == before


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_container_changes_in_the_sqlite_export(
    era: str, cli, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    root, truth = sample(era, request)
    out = tmp_path / "case.db"
    result = cli("verify", root, "--deep", "--format", "json", "--sqlite", out)
    assert result.code == 0, result.stdout
    rows = sqlite3.connect(out).execute(
        "SELECT container_id, kind, path FROM container_changes ORDER BY rowid"
    )
    got: dict[str, list[str]] = {c["id"]: [] for c in truth["containers"]}
    for cid, kind, path in rows:
        got[cid].append(f"{kind} {path}")
    assert got == {c["id"]: c["diff"] for c in truth["containers"]}
    assert result.json()["diffs"] == {c["id"]: c["diff"] for c in truth["containers"]}


# -- damage -------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["rw", "init"])
def test_device_record_missing(role: str, cli, modern_dm_root: Path, modern_dm_truth) -> None:
    """The container's device record gone: one line, exit 8. Its init device's: the init
    layer named unreadable, exit 4, and no change listed against nothing."""
    container = modern_dm_truth["containers"][0]
    name = container["mount_id"] if role == "rw" else container["init_id"]
    (modern_dm_root / "devicemapper/metadata" / name).unlink()
    result = cli("diff", container["id"], modern_dm_root, "--format", "json")
    assert "Traceback" not in result.stderr
    if role == "rw":
        assert result.code == 8 and result.stdout == ""
        (line,) = result.stderr.strip().splitlines()
        assert name in line and "no usable device record" in line
        return
    assert result.code == 4, result.stdout
    doc = result.json()
    assert doc["changes"] == []
    ((where, why),) = doc["problems"]
    assert where == f"devicemapper/mnt/{name}/rootfs" and "no usable device record" in why


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_zeroed_superblock_of_the_container_device(
    era: str, cli, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The filesystem superblock of the container's device zeroed (written copy-on-write):
    its rootfs named unreadable in one line, exit 4, the pool files otherwise as they were."""
    root: Path = request.getfixturevalue("dm_root" if era == "legacy" else "modern_dm_root")
    truth = request.getfixturevalue("dm_truth" if era == "legacy" else "modern_dm_truth")
    container = truth["containers"][0]
    dev = container["device_ids"]["rw"]
    before = dd.extract_device(root, dev, tmp_path / "before.img")
    after = tmp_path / "after.img"
    subprocess.run(["cp", "--sparse=always", str(before), str(after)], check=True)
    with after.open("r+b") as f:
        f.seek(0 if era == "modern" else 1024)
        f.write(bytes(512 if era == "modern" else 1024))
    dd.write_device(dd.PoolXml(root), dev, before, after, tmp_path)
    digest = dd.pool_digest(root)
    result = cli("diff", container["id"], root, "--format", "json")
    assert result.code == 4 and "Traceback" not in result.stderr
    doc = result.json()
    assert doc["changes"] == []
    ((where, why),) = doc["problems"]
    name = container.get("mount_id") or container["id"]
    assert where == f"devicemapper/mnt/{name}/rootfs"
    assert f"thin device {dev}" in why and "zeros" in why
    (line,) = result.stderr.strip().splitlines()
    assert where in line
    assert dd.pool_digest(root) == digest


def test_pool_not_in_root_is_one_line(cli, dm_root: Path, dm_truth) -> None:
    """A direct-lvm pool (no pool files in ROOT): the devices cannot be read, one line."""
    for name in ("data", "metadata"):
        (dm_root / dd.POOL / name).unlink()
    result = cli("diff", dm_truth["containers"][0]["id"], dm_root)
    assert result.code == 8 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "direct-lvm" in line


# -- timeline -----------------------------------------------------------------------------------

#: the inode times a timeline tells of each file a container changed, by their truth fields
INODE_TIMES = {
    "mtime": "Container file modified (mtime)",
    "ctime": "Container file changed (ctime)",
    "crtime": "Container file created (crtime)",
}


def iso(seconds: int, nanos: int) -> str:
    moment = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{nanos:09d}Z"


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_timeline_tells_the_inode_times_of_the_changed_files(
    era: str, cli, request: pytest.FixtureRequest
) -> None:
    """Each file a container added or changed (its ``diff``) gives its mtime, ctime and crtime
    as the truth records them in the container's device; a deleted one has no inode left."""
    root, truth = sample(era, request)
    result = cli("timeline", root, "--format", "jsonl")
    assert result.code == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    got = {
        (e["object_id"], e["timestamp_desc"], e["message"], e["datetime"], e["path"])
        for e in events
        if e["timestamp_desc"].startswith("Container file")
    }
    expected = set()
    for c in truth["containers"]:
        name = c.get("mount_id") or c["id"]
        label = f"container {c.get('name', '?')} ({c['id'][:12]})"
        for line in c["diff"]:
            kind, path = line.split(" ", 1)
            if kind == "D":
                continue
            inode = c["rootfs"][path[1:]]
            for field, desc in INODE_TIMES.items():
                when = iso(inode[field], inode[f"{field}_ns"])
                where = f"devicemapper/mnt/{name}/rootfs{path}"
                expected.add((c["id"], desc, f"{label}: {line}", when, where))
    assert got == expected
    assert any(c["diff"] for c in truth["containers"])
    none = cli("timeline", root, "--format", "jsonl", "--no-file-times")
    assert "Container file" not in none.stdout
