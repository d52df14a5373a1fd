"""The slow tier: a real, private dockerd accepts what repair leaves, and refuses nothing.

On a copy of the real-daemon sample with every repairable damage at once: repair, then verify
shows those findings gone; a dockerd started on (a copy of) the repaired root starts, lists every
container whose config was intact, logs no ``failed to load`` for them, runs a container through
the relinked layer, and knows the recovered tag; then ``repair --undo`` restores the tree byte
for byte. A repair while that dockerd runs on a root is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import copy_tree
from dockerd_util import private_dockerd, require_dockerd
from sample_paths import SamplePaths
from test_repair import (
    ORPHAN,
    damage_many,
    errors,
    flip_config_id,
    orphan_with_link,
    run_repair,
    verify,
)
from treehash import tree_hash

pytestmark = pytest.mark.dockerd


@pytest.fixture(autouse=True)
def _need_dockerd() -> None:
    require_dockerd()


def test_a_real_dockerd_starts_on_the_repaired_root(
    sample_root: Path, truth: dict[str, Any], tmp_path: Path
) -> None:
    s = SamplePaths(sample_root, truth)
    broken = {s.container_id(name) for name in ("exited", "with-volume", "anon-volume")}
    intact = {c["Id"]: c["Name"][1:] for c in truth["inspect_containers"] if c["Id"] not in broken}
    made = damage_many(s)
    found = {(f["check"], f["path"]) for f in verify(sample_root) if f["severity"] != "info"}
    assert {p for _, p in found} >= set(made)
    damaged = tree_hash(sample_root)

    result = run_repair(sample_root, "--format", "json")
    assert result.code == 1, result.stdout + result.stderr
    assert errors(sample_root) == set()
    assert not [f for f in verify(sample_root) if f["severity"] == "warning"]
    after = {(f["check"], f["path"]) for f in verify(sample_root)}
    assert not found & after
    repaired = tree_hash(sample_root)

    run_root = copy_tree(sample_root, tmp_path / "run-root")  # dockerd writes into its root
    with private_dockerd(run_root, tmp_path / "d") as daemon:
        listed = daemon.docker("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}")
        assert listed.returncode == 0, listed.stderr
        assert dict(line.split() for line in listed.stdout.splitlines()) == intact
        tag = daemon.docker("image", "inspect", "--format", "{{.Id}}", "sample/app:1.0")
        assert tag.stdout.strip() == s.image_id("sample/app:1.0"), tag.stderr
        started = daemon.docker("start", "-a", "created")  # its layers include the relinked one
        assert started.returncode == 0 and started.stdout.strip() == "never-started", started
        log = daemon.log_path.read_text(errors="replace")
    failures = [line for line in log.splitlines() if "failed to load" in line.lower()]
    assert not [line for line in failures for cid in intact if cid[:12] in line], failures
    assert "Couldn't create reference store" not in log

    assert tree_hash(sample_root) == repaired, "the daemon ran on a copy"
    undo = run_repair("--undo", result.json()["journal"])
    assert undo.code == 1, undo.stderr
    assert tree_hash(sample_root) == damaged


def test_repair_refuses_while_dockerd_runs_on_root(
    sample_root: Path, truth: dict[str, Any], tmp_path: Path
) -> None:
    s = SamplePaths(sample_root, truth)
    orphan_with_link(s)
    with private_dockerd(sample_root, tmp_path / "d") as daemon:
        result = run_repair(sample_root)
        assert daemon.alive()
    assert result.code == 8, result.stdout + result.stderr
    assert "is in use" in result.stderr and "--force" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (sample_root.parent / "docker.quarantine").exists()
    assert (sample_root / "overlay2" / ORPHAN).is_dir()


def test_a_real_dockerd_starts_on_each_driver_sample_after_repair(
    driver_sample: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """On every driver of the samples: a broken container and an orphan driver dir repaired;
    dockerd, started with that driver, lists the intact containers and starts one."""
    master, truth = driver_sample
    root = copy_tree(master, tmp_path / "docker")
    s = SamplePaths(root, truth)
    broken = s.container_id("exited")
    config = root / f"containers/{broken}/config.v2.json"
    config.write_bytes(config.read_bytes()[:100])
    driver = truth["driver"]
    orphan = {"overlay2": "overlay2", "vfs": "vfs/dir", "overlay": "overlay"}[driver]
    (root / orphan / ORPHAN / "diff").mkdir(parents=True)
    result = run_repair(root, "--format", "json")
    assert result.code == 1, result.stdout + result.stderr
    assert errors(root) == set()
    intact = {c["Id"]: c["Name"][1:] for c in truth["inspect_containers"] if c["Id"] != broken}
    with private_dockerd(root, tmp_path / "d", storage_driver=driver) as daemon:
        listed = daemon.docker("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}")
        assert listed.returncode == 0, listed.stderr
        assert dict(line.split() for line in listed.stdout.splitlines()) == intact
        started = daemon.docker("start", "created")
        assert started.returncode == 0, started.stderr


def test_a_real_dockerd_loads_containers_whose_config_id_was_set_back(
    sample_root: Path, truth: dict[str, Any], tmp_path: Path
) -> None:
    """The ID inside the configs of "created" and "exited" changed: dockerd skips both ("is
    stored at"); after repair it lists them under their own IDs and starts one."""
    s = SamplePaths(sample_root, truth)
    flipped = {s.container_id(name): name for name in ("created", "exited")}
    for name in flipped.values():
        flip_config_id(s, name)
    damaged = tree_hash(sample_root)
    everyone = {c["Id"]: c["Name"][1:] for c in truth["inspect_containers"]}

    before = copy_tree(sample_root, tmp_path / "before")
    with private_dockerd(before, tmp_path / "d0") as daemon:
        listed = daemon.docker("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}")
        assert listed.returncode == 0, listed.stderr
    seen = dict(line.split() for line in listed.stdout.splitlines())
    assert not set(seen) & set(flipped), "dockerd skips a config whose ID is not its directory's"

    result = run_repair(sample_root, "--format", "json")
    assert result.code == 1, result.stdout + result.stderr
    assert {a["action"] for a in result.json()["actions"]} == {"rewrite"}
    assert errors(sample_root) == set()
    run_root = copy_tree(sample_root, tmp_path / "run-root")
    with private_dockerd(run_root, tmp_path / "d") as daemon:
        listed = daemon.docker("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}")
        assert listed.returncode == 0, listed.stderr
        assert dict(line.split() for line in listed.stdout.splitlines()) == everyone
        started = daemon.docker("start", "-a", "created")
        assert started.returncode == 0 and started.stdout.strip() == "never-started", started
        log = daemon.log_path.read_text(errors="replace")
    assert "is stored at" not in log
    assert run_repair("--undo", result.json()["journal"]).code == 1
    assert tree_hash(sample_root) == damaged
