"""Damage to the vfs and overlay (v1) drivers' directories, made from their real samples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import DRIVER_SAMPLES, SAMPLES, copy_tree, unpack
from sample_paths import SamplePaths
from test_verify_damage import assert_one_cause

APP = "sample/app:1.0"
NEW_HEX = "a" * 64


@pytest.fixture(scope="module")
def masters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    out = {}
    for driver in ("vfs", "overlay"):
        tarball = SAMPLES / DRIVER_SAMPLES[driver]
        name = tarball.name.split(".tar")[0]
        root = unpack(tarball, tmp_path_factory.mktemp(name))
        out[driver] = (root, json.loads((SAMPLES / f"{name}.truth.json").read_text()))
    return out


def _copy(
    masters: dict[str, tuple[Path, dict[str, Any]]], driver: str, tmp_path: Path
) -> SamplePaths:
    root, truth = masters[driver]
    return SamplePaths(copy_tree(root, tmp_path / "docker"), truth)


def _layer_dir_of(s: SamplePaths, driver: str, index: int) -> str:
    cache = s.cache_id(s.chain(APP)[index])
    return f"vfs/dir/{cache}" if driver == "vfs" else f"overlay/{cache}"


def vfs_remove_layer_dir(s: SamplePaths) -> tuple[str, str]:
    shutil.rmtree(s.path(_layer_dir_of(s, "vfs", -1)))
    return "layer.driver-dir-missing", f"{s.layer_dir(s.chain(APP)[-1])}/cache-id"


def vfs_orphan_dir(s: SamplePaths) -> tuple[str, str]:
    s.path(f"vfs/dir/{NEW_HEX}").mkdir()
    return "driver.orphan-dir", f"vfs/dir/{NEW_HEX}"


def vfs_remove_container_dir(s: SamplePaths) -> tuple[str, str]:
    shutil.rmtree(s.path(f"vfs/dir/{s.mount_id('exited')}"))
    return (
        "mount.driver-dir-missing",
        f"{s.store}/layerdb/mounts/{s.container_id('exited')}/mount-id",
    )


def overlay_remove_root(s: SamplePaths) -> tuple[str, str]:
    rel = _layer_dir_of(s, "overlay", 0)
    shutil.rmtree(s.path(f"{rel}/root"))
    return "overlay.data-missing", rel


def overlay_remove_upper(s: SamplePaths) -> tuple[str, str]:
    rel = f"overlay/{s.mount_id('exited')}"
    shutil.rmtree(s.path(f"{rel}/upper"))
    return "overlay.data-missing", rel


def overlay_wrong_lower_id(s: SamplePaths) -> tuple[str, str]:
    rel = f"overlay/{s.mount_id('exited')}/lower-id"
    s.path(rel).write_text(s.cache_id(s.chain(APP)[0]))
    return "overlay.lower-mismatch", rel


def overlay_empty_lower_id(s: SamplePaths) -> tuple[str, str]:
    rel = f"overlay/{s.mount_id('created')}-init/lower-id"
    s.path(rel).write_bytes(b"")
    return "overlay.lower-id-damaged", rel


CASES = [
    ("vfs", vfs_remove_layer_dir),
    ("vfs", vfs_orphan_dir),
    ("vfs", vfs_remove_container_dir),
    ("overlay", overlay_remove_root),
    ("overlay", overlay_remove_upper),
    ("overlay", overlay_wrong_lower_id),
    ("overlay", overlay_empty_lower_id),
]


@pytest.mark.parametrize(("driver", "damage"), CASES, ids=[c[1].__name__ for c in CASES])
def test_driver_damage(cli, masters, tmp_path: Path, driver: str, damage) -> None:  # type: ignore[no-untyped-def]
    s = _copy(masters, driver, tmp_path)
    check, path = damage(s)
    result = cli("verify", s.root, "--format", "json")
    assert result.code == 4, result.stdout
    found = [(f["check"], f["path"]) for f in result.json()["findings"]]
    assert (check, path) in found, found
    assert_one_cause(result.json())
