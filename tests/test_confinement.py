"""Ids read from files never lead out of ROOT: a layer's cache-id, a mount record's mount-id or
init-id of ``../../x/dir`` is damage at the file that holds it, and nothing outside ROOT (a decoy
tree laid out like the layer it pretends to be) is ever opened — proved by inotify."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from inotify_watch import Watch
from sample_paths import SamplePaths

from forensics.checks import run_checks
from forensics.evidence import Evidence
from forensics.model import Host
from forensics.stores.host import read_host

#: the value planted: from ROOT/overlay2/<id>/diff it climbs to ROOT's parent's x/dir/diff
ESCAPE = "../../x/dir"


def _decoy_layer(s: SamplePaths, tmp_path: Path) -> Path:
    """A copy of a real layer's files outside ROOT, where ``overlay2/<ESCAPE>/diff`` leads, with
    an ``etc/shadow`` of its own: what an escape would read and report."""
    assert s.root.parent == tmp_path
    diff = tmp_path / "x" / "dir" / "diff"
    base = s.cache_id(s.chain("sample/app:1.0")[0])
    shutil.copytree(s.path(f"overlay2/{base}/diff"), diff, symlinks=True)
    (diff / "etc").mkdir(exist_ok=True)
    (diff / "etc" / "shadow").write_text("root:DECOY:19000:0:99999:7:::\n")
    assert (s.path(f"overlay2/{ESCAPE}/diff/etc/shadow")).is_file()  # the escape is real
    return tmp_path / "x"


def _watch_tree(top: Path) -> Watch:
    """An inotify watch on every directory of ``top`` (each reports the opens of its files)."""
    dirs = [top] + [Path(d) / n for d, names, _ in os.walk(top) for n in names]
    return Watch(*[d for d in dirs if d.is_dir() and not d.is_symlink()])


def _opens_during(watch: Watch, control: Path, run: Any) -> tuple[Any, list[int]]:
    """``run()``'s result and the decoy's opens meanwhile; a control read proves the watch."""
    try:
        result = run()
        opened = watch.events()
        control.read_bytes()
        assert watch.events(), "the inotify watch sees nothing: this test would prove nothing"
    finally:
        watch.close()
    return result, opened


def _by_check(doc: dict[str, Any], check: str) -> list[dict[str, Any]]:
    return [f for f in doc["findings"] if f["check"] == check]


def test_hostile_cache_id_is_damage_and_deep_reads_nothing_outside(
    cli, sample_root: Path, truth: dict[str, Any], tmp_path: Path
) -> None:
    s = SamplePaths(sample_root, truth)
    decoy = _decoy_layer(s, tmp_path)
    layer = s.layer_dir(s.chain("sample/app:1.0")[1])
    s.path(f"{layer}/cache-id").write_text(ESCAPE)
    watch = _watch_tree(decoy)
    result, opened = _opens_during(
        watch,
        decoy / "dir" / "diff" / "etc" / "shadow",
        lambda: cli("verify", sample_root, "--deep", "--format", "json"),
    )
    assert opened == [], f"verify --deep opened {len(opened)} times outside ROOT"
    assert result.code == 4, result.stderr
    (damaged,) = _by_check(result.json(), "layer.cache-id-damaged")
    assert damaged["path"] == f"{layer}/cache-id" and damaged["damage"] == "bad-value"
    assert ESCAPE in damaged["message"]
    assert "DECOY" not in result.stdout


@pytest.mark.parametrize("role", ["mount-id", "init-id"])
def test_hostile_mount_ids_make_diff_refuse_and_read_nothing_outside(
    cli, sample_root: Path, truth: dict[str, Any], tmp_path: Path, role: str
) -> None:
    s = SamplePaths(sample_root, truth)
    decoy = _decoy_layer(s, tmp_path)
    cid = s.container_id("exited")
    record = f"{s.store}/layerdb/mounts/{cid}/{role}"
    s.path(record).write_text(ESCAPE)
    watch = _watch_tree(decoy)
    result, opened = _opens_during(
        watch,
        decoy / "dir" / "diff" / "etc" / "shadow",
        lambda: cli("diff", cid, sample_root, "--format", "json"),
    )
    assert opened == [], f"diff opened {len(opened)} times outside ROOT"
    assert "shadow" not in result.stdout
    assert result.code == 8 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert record in line and ESCAPE in line

    verified = cli("verify", sample_root, "--format", "json")
    (damaged,) = _by_check(verified.json(), f"mount.{role}-damaged")
    assert damaged["path"] == record and damaged["damage"] == "bad-value"


def test_hostile_cache_id_below_a_container_makes_diff_refuse(
    cli, sample_root: Path, truth: dict[str, Any], tmp_path: Path
) -> None:
    """diff stacks the image's layers under the container's: a layer whose cache-id cannot be
    used is said, rather than a diff against a stack with a layer left out."""
    s = SamplePaths(sample_root, truth)
    decoy = _decoy_layer(s, tmp_path)
    layer = s.layer_dir(s.chain("sample/app:1.0")[0])
    s.path(f"{layer}/cache-id").write_text(ESCAPE)
    watch = _watch_tree(decoy)
    result, opened = _opens_during(
        watch,
        decoy / "dir" / "diff" / "etc" / "shadow",
        lambda: cli("diff", s.container_id("exited"), sample_root),
    )
    assert opened == []
    assert result.code == 8 and f"{layer}/cache-id" in result.stderr


def test_torn_mount_id_is_damage_and_keeps_the_container_layer(
    cli, sample_root: Path, truth: dict[str, Any]
) -> None:
    """32 of 64 hex digits: the record cannot name the container's layer, so that layer is not
    an orphan to quarantine (ownership is in doubt), and diff says why it cannot run."""
    s = SamplePaths(sample_root, truth)
    cid = s.container_id("exited")
    mount_id = s.mount_id("exited")
    record = f"{s.store}/layerdb/mounts/{cid}/mount-id"
    s.path(record).write_text(mount_id[:32])
    doc = cli("verify", sample_root, "--format", "json").json()
    (damaged,) = _by_check(doc, "mount.mount-id-damaged")
    assert damaged["path"] == record
    plan = cli("repair", sample_root, "--dry-run", "--format", "json")
    moved = {a["path"] for a in plan.json()["actions"] if a["action"] == "quarantine"}
    assert not any(mount_id in path for path in moved), moved
    result = cli("diff", cid, sample_root)
    assert result.code == 8 and record in result.stderr and len(result.stderr.splitlines()) == 1


def _read(root: Path) -> tuple[Host, set[tuple[str, str]]]:
    """The model of ``root`` and its findings as (check, path)."""
    host = read_host(Evidence(root))
    return host, {(f.check, f.path) for f in run_checks(host)}


def _findings(root: Path) -> set[tuple[str, str]]:
    return _read(root)[1]


def _plant_link(s: SamplePaths) -> tuple[str, str]:
    rel = f"overlay2/{s.cache_id(s.chain('sample/app:1.0')[1])}/link"
    s.path(rel).write_text(ESCAPE)
    return "overlay2.link-damaged", rel


def _plant_lower(s: SamplePaths) -> tuple[str, str]:
    rel = f"overlay2/{s.cache_id(s.chain('sample/app:1.0')[1])}/lower"
    s.path(rel).write_text(f"l/{s.link(s.cache_id(s.chain('sample/app:1.0')[0]))}:{ESCAPE}")
    return "overlay2.lower-damaged", rel


@pytest.mark.parametrize("plant", [_plant_link, _plant_lower])
def test_overlay2_link_and_lower_that_climb_are_damage(
    sample_root: Path, truth: dict[str, Any], plant: Any
) -> None:
    s = SamplePaths(sample_root, truth)
    check, rel = plant(s)
    host, found = _read(sample_root)
    assert (check, rel) in found
    ddir = host.driver_dirs[rel.split("/")[1]]
    assert ESCAPE not in f"{ddir.link}:{ddir.lower}", "the model carries the value that climbs"


def test_overlay_lower_id_that_climbs_is_damage(tmp_path: Path) -> None:
    from conftest import DRIVER_SAMPLES, SAMPLES, unpack

    root = unpack(SAMPLES / DRIVER_SAMPLES["overlay"], tmp_path)
    inits = sorted((root / "overlay").glob("*-init/lower-id"))
    assert inits, "the overlay sample has no init layer"
    rel = str(inits[0].relative_to(root))
    (root / rel).write_text(ESCAPE)
    assert ("overlay.lower-id-damaged", rel) in _findings(root)


def test_aufs_parent_that_climbs_is_damage(corpus_roots: dict[str, Path], tmp_path: Path) -> None:
    from conftest import copy_tree

    root = copy_tree(corpus_roots["aufs.v1"], tmp_path / "docker")
    layers = sorted((root / "aufs" / "layers").iterdir())
    rel = str(next(p for p in layers if p.read_text().strip()).relative_to(root))
    (root / rel).write_text(f"{ESCAPE}\n")
    assert ("aufs.layers-damaged", rel) in _findings(root)


def test_device_hash_that_climbs_is_damage_and_never_a_repair(cli, dm_root: Path) -> None:
    """transaction-metadata names the record ``metadata/<device_hash>`` that dockerd removes
    on a rollback: a hash that climbs is damage, and repair plans nothing outside ROOT."""
    rel = "devicemapper/metadata/transaction-metadata"
    doc = json.loads((dm_root / rel).read_text())
    (dm_root.parent / "victim").write_text("must stay")
    doc["device_hash"], doc["open_transaction_id"] = "../../../victim", 10**6
    (dm_root / rel).write_text(json.dumps(doc))
    assert ("devicemapper.transaction-damaged", rel) in _findings(dm_root)
    plan = cli("repair", dm_root, "--dry-run", "--format", "json")
    assert not any("victim" in a["path"] for a in plan.json()["actions"])
