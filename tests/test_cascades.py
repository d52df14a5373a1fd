"""One cause, one finding: a damage that shows in many places, made on a copy of a real sample,
is one error for its cause, naming what it breaks; each consequence keeps its finding and names
the cause in ``caused_by``."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import DRIVER_SAMPLES, SAMPLES, copy_tree, unpack
from sample_paths import STORE, SamplePaths
from test_legacy_damage import BASE, EXITED, TOP
from test_verify_damage import (
    APP,
    cache_id_to_missing_dir,
    empty_layer_dir,
    empty_link_file,
    mount_id_to_missing_dir,
    remove_container_dir,
    remove_image_of_containers,
    remove_init_dir,
    remove_mount_record,
    wrong_layer_parent,
    wrong_mount_parent,
)

from forensics.formats.ids import chain_ids

RANK = {"error": 0, "warning": 1, "info": 2}
#: every container of the overlay2 sample is made from sample/app:1.0
APP_CONTAINERS = {
    "anon-volume",
    "running",
    "with-volume",
    "exited",
    "created",
    "paused",
    "restarting",
}


def key(f: dict[str, Any]) -> str:
    return f"{f['check']}:{f['path']}"


def verify(cli, root: Path, *extra: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    result = cli("verify", root, "--format", "json", *extra)
    assert result.code == 4, result.stdout + result.stderr
    return result.json()


def the_cause(doc: dict[str, Any], check: str, path: str) -> dict[str, Any]:
    """The finding (check, path), the one error of the run that is not a consequence; checks
    that every ``caused_by`` names one finding, a cause as grave as its consequence."""
    findings = doc["findings"]
    keys = Counter(key(f) for f in findings)
    for f in findings:
        if f["caused_by"] is not None:
            assert keys[f["caused_by"]] == 1, f["caused_by"]
            (cause,) = [g for g in findings if key(g) == f["caused_by"]]
            assert cause["caused_by"] is None, "a consequence names the first cause"
            assert RANK[cause["severity"]] <= RANK[f["severity"]]
    causes = [f for f in findings if f["severity"] == "error" and f["caused_by"] is None]
    assert [(f["check"], f["path"]) for f in causes] == [(check, path)], causes
    assert doc["summary"]["error"] == 1
    return causes[0]


def consequences(doc: dict[str, Any], cause: dict[str, Any]) -> set[tuple[str, str]]:
    return {(f["check"], f["path"]) for f in doc["findings"] if f["caused_by"] == key(cause)}


# -- overlay2 ---------------------------------------------------------------------------------


@pytest.fixture
def s(sample_root: Path, truth: dict[str, Any]) -> SamplePaths:
    return SamplePaths(sample_root, truth)


def _links(s: SamplePaths) -> set[str]:
    return {p.name for p in s.path("overlay2/l").iterdir()}


def _buildkit_links(s: SamplePaths, doc: dict[str, Any]) -> set[str]:
    """The links of BuildKit's own directories: no record of Docker's names them, so no
    finding says their link dangles, but the cause lists them."""
    dirs = [f["object_id"] for f in doc["findings"] if f["check"] == "driver.buildkit-dir"]
    assert dirs, "the sample has BuildKit directories"
    return {s.path(f"overlay2/{d}/link").read_text() for d in dirs}


def test_missing_l_dir_is_one_error_listing_its_links(cli, s: SamplePaths) -> None:
    links = _links(s)
    shutil.rmtree(s.path("overlay2/l"))
    doc = verify(cli, s.root)
    cause = the_cause(doc, "overlay2.links-dir-missing", "overlay2/l")
    assert cause["damage"] == "missing"
    dangling = links - _buildkit_links(s, doc)
    assert consequences(doc, cause) == {
        ("overlay2.link-dangling", f"overlay2/l/{n}") for n in dangling
    }
    assert cause["affects"] == sorted(f"link:{n}" for n in links)
    assert f"it breaks {len(links)} links (" in cause["message"]
    assert f"… {len(links) - 5} more)" in cause["message"]


def test_l_that_is_a_file_is_one_error(cli, s: SamplePaths) -> None:
    links = _links(s)
    shutil.rmtree(s.path("overlay2/l"))
    s.path("overlay2/l").write_text("not a directory")
    doc = verify(cli, s.root)
    cause = the_cause(doc, "overlay2.links-dir-damaged", "overlay2/l")
    assert cause["damage"] == "not-directory"
    assert len(consequences(doc, cause)) == len(links - _buildkit_links(s, doc))
    assert len(cause["affects"]) == len(links)


def _images_using(s: SamplePaths, chain: str) -> set[str]:
    return {i["Id"] for i in s.truth["inspect_images"] if chain in chain_ids(i["RootFS"]["Layers"])}


def test_missing_layer_lists_images_layers_and_containers(cli, s: SamplePaths) -> None:
    chain = s.chain(APP)
    cache = s.cache_id(chain[1])
    shutil.rmtree(s.path(s.layer_dir(chain[1])))
    doc = verify(cli, s.root)
    cause = the_cause(doc, "layer.missing", s.layer_dir(chain[1]))
    images = _images_using(s, chain[1])
    assert len(images) > 1
    image_paths = {f"{STORE}/imagedb/content/sha256/{i.removeprefix('sha256:')}" for i in images}
    assert consequences(doc, cause) == {
        *(("image.layer-missing", p) for p in image_paths),
        ("layer.parent-missing", s.layer_dir(chain[2])),
        ("driver.orphan-dir", f"overlay2/{cache}"),  # its lower file names it as chain[1]'s
    }
    containers = {f"container:{s.container_id(n)}" for n in APP_CONTAINERS}
    assert set(cause["affects"]) == {
        *(f"image:{i}" for i in images),
        f"layer:{chain[2]}",
        *containers,
        f"driver-dir:{cache}",
    }
    assert f"it breaks {len(images)} images (sample/app:1.0, " in cause["message"], "names first"
    assert f"layer {chain[2][7:19]}" in cause["message"]
    assert f"it leaves driver directory {cache[:12]} orphaned" in cause["message"]


def test_missing_top_layer_lists_the_containers_on_it(cli, s: SamplePaths) -> None:
    top = s.chain(APP)[-1]
    shutil.rmtree(s.path(s.layer_dir(top)))
    doc = verify(cli, s.root)
    cause = the_cause(doc, "layer.missing", s.layer_dir(top))
    mounts = {
        ("mount.parent-missing", f"{STORE}/layerdb/mounts/{s.container_id(n)}/parent")
        for n in APP_CONTAINERS
    }
    assert mounts <= consequences(doc, cause)
    assert (
        "it breaks" in cause["message"]
        and "7 containers (anon-volume, created," in cause["message"]
    )


def test_missing_image_lists_its_containers_and_tags(cli, s: SamplePaths) -> None:
    remove_image_of_containers(s)
    doc = verify(cli, s.root)
    image = s.image_id(APP)
    cause = the_cause(doc, "image.missing", s.image_config(APP))
    assert cause["object_id"] == image
    found = consequences(doc, cause)
    assert {
        ("container.image-missing", f"containers/{s.container_id(n)}/config.v2.json")
        for n in APP_CONTAINERS
    } <= found
    tags = [f for f in doc["findings"] if f["check"] == "repositories.target-missing"]
    assert {f["object_id"] for f in tags} == {"sample/app:1.0", "sample/app:latest"}
    assert all(f["caused_by"] == key(cause) for f in tags)
    assert doc["summary"]["warning"] == 0, "the tags' warnings are consequences"
    assert cause["message"].startswith(f"image {image[7:19]} (sample/app:1.0) is not in")
    assert "2 tags (sample/app:1.0, sample/app:latest)" in cause["message"]


def test_image_named_only_by_its_tag_stays_a_warning(cli, s: SamplePaths) -> None:
    """No container uses sample/bk:1.0: its tag alone is no error (1.10+ keeps it harmlessly)."""
    s.path(s.image_config("sample/bk:1.0")).unlink()
    result = cli("verify", s.root, "--format", "json")
    assert result.code == 0
    checks = {f["check"] for f in result.json()["findings"]}
    assert "repositories.target-missing" in checks and "image.missing" not in checks


def test_wrong_layer_parent_explains_the_lower_files(cli, s: SamplePaths) -> None:
    path = wrong_layer_parent(s)
    doc = verify(cli, s.root)
    cause = the_cause(doc, "layer.parent-mismatch", path)
    found = consequences(doc, cause)
    assert ("layer.chain-id-mismatch", path) in found
    lowers = {p for c, p in found if c == "overlay2.lower-mismatch"}
    assert len(lowers) > 10
    assert {f"driver-dir:{p.split('/')[1]}" for p in lowers} == set(cause["affects"])
    assert f"it disagrees with {len(lowers)} driver directories" in cause["message"]


def test_wrong_mount_parent_explains_its_lower_files(cli, s: SamplePaths) -> None:
    path = wrong_mount_parent(s)
    mount = s.mount_id("exited")
    doc = verify(cli, s.root)
    cause = the_cause(doc, "mount.parent-mismatch", path)
    assert consequences(doc, cause) == {
        ("overlay2.lower-mismatch", f"overlay2/{mount}/lower"),
        ("overlay2.lower-mismatch", f"overlay2/{mount}-init/lower"),
    }


def test_changed_cache_id_explains_the_orphan(cli, s: SamplePaths) -> None:
    cache = s.cache_id(s.chain(APP)[1])
    path = cache_id_to_missing_dir(s)
    doc = verify(cli, s.root)
    cause = the_cause(doc, "layer.driver-dir-missing", path)
    assert consequences(doc, cause) == {("driver.orphan-dir", f"overlay2/{cache}")}
    assert cause["affects"] == [f"driver-dir:{cache}"]


def test_emptied_layer_entry_explains_the_orphan(cli, s: SamplePaths) -> None:
    cache = s.cache_id(s.chain(APP)[-1])
    path = empty_layer_dir(s)
    doc = verify(cli, s.root)
    cause = the_cause(doc, "layer.empty-dir", path)
    assert consequences(doc, cause) == {("driver.orphan-dir", f"overlay2/{cache}")}


def test_changed_mount_id_explains_the_orphan(cli, s: SamplePaths) -> None:
    mount = s.mount_id("created")
    path = mount_id_to_missing_dir(s)
    doc = verify(cli, s.root)
    cause = the_cause(doc, "mount.driver-dir-missing", path)
    assert consequences(doc, cause) == {("driver.orphan-dir", f"overlay2/{mount}")}


def test_lost_mount_record_explains_both_orphans(cli, s: SamplePaths) -> None:
    mount = s.mount_id("created")
    path = remove_mount_record(s)
    doc = verify(cli, s.root)
    cause = the_cause(doc, "container.mount-missing", path)
    assert consequences(doc, cause) == {
        ("driver.orphan-dir", f"overlay2/{mount}"),
        ("driver.orphan-dir", f"overlay2/{mount}-init"),
    }
    assert f"2 driver directories ({mount[:12]}, {mount[:12]}-init) orphaned" in cause["message"]


def test_record_without_container_has_no_false_lower_mismatch(cli, s: SamplePaths) -> None:
    """The container's own directory gone: its init layer is still known from the record."""
    path = remove_container_dir(s)
    doc = verify(cli, s.root)
    cause = the_cause(doc, "mount.container-missing", path)
    assert not [f for f in doc["findings"] if f["check"].endswith("lower-mismatch")]
    assert cause["affects"] == []


def test_missing_driver_dir_explains_its_link_and_deep_findings(cli, s: SamplePaths) -> None:
    chain = s.chain(APP)[1]
    cache = s.cache_id(chain)
    link = s.link(cache)
    shutil.rmtree(s.path(f"overlay2/{cache}"))
    doc = verify(cli, s.root, "--deep")
    cause = the_cause(doc, "layer.driver-dir-missing", f"{s.layer_dir(chain)}/cache-id")
    assert consequences(doc, cause) == {
        ("overlay2.link-orphan", f"overlay2/l/{link}"),
        ("layer.content-dir-missing", f"overlay2/{cache}/diff"),
        ("layer.diff-id-mismatch", f"{s.layer_dir(chain)}/tar-split.json.gz"),
    }
    assert doc["summary"]["warning"] == 0
    assert f"it leaves link l/{link} orphaned" in cause["message"]


def test_damaged_link_file_explains_the_orphan_link(cli, s: SamplePaths) -> None:
    link = s.link(s.cache_id(s.chain(APP)[1]))
    path = empty_link_file(s)
    doc = verify(cli, s.root)
    cause = the_cause(doc, "overlay2.link-damaged", path)
    assert consequences(doc, cause) == {("overlay2.link-orphan", f"overlay2/l/{link}")}


def test_missing_init_dir_explains_its_link(cli, s: SamplePaths) -> None:
    link = s.link(f"{s.mount_id('exited')}-init")
    path = remove_init_dir(s)
    doc = verify(cli, s.root)
    cause = the_cause(doc, "mount.init-dir-missing", path)
    assert consequences(doc, cause) == {("overlay2.link-orphan", f"overlay2/l/{link}")}


def test_sqlite_carries_the_cause(cli, s: SamplePaths, tmp_path: Path) -> None:
    links = _links(s)
    shutil.rmtree(s.path("overlay2/l"))
    out = tmp_path / "case.db"
    doc = verify(cli, s.root, "--sqlite", out)
    db = sqlite3.connect(out)
    db.row_factory = sqlite3.Row
    (cause,) = db.execute(
        "SELECT * FROM findings WHERE check_id = 'overlay2.links-dir-missing'"
    ).fetchall()
    assert cause["caused_by"] is None and cause["cause_id"] is None
    assert json.loads(cause["affects"]) == sorted(f"link:{n}" for n in links)
    rows = db.execute(
        "SELECT f.caused_by, c.check_id, c.path FROM findings f JOIN findings c "
        "ON c.id = f.cause_id WHERE f.check_id = 'overlay2.link-dangling'"
    ).fetchall()
    assert len(rows) == len(links - _buildkit_links(s, doc))
    assert {tuple(r) for r in rows} == {
        ("overlay2.links-dir-missing:overlay2/l", "overlay2.links-dir-missing", "overlay2/l")
    }
    assert db.execute("PRAGMA foreign_key_check(findings)").fetchall() == []
    (errors,) = db.execute("SELECT errors FROM runs").fetchone()
    assert errors == doc["summary"]["error"] == 1
    db.close()


def test_text_shows_consequences_under_their_cause(cli, s: SamplePaths) -> None:
    shutil.rmtree(s.path("overlay2/l"))
    doc = verify(cli, s.root)
    dangling = sum(1 for f in doc["findings"] if f["check"] == "overlay2.link-dangling")
    result = cli("verify", s.root)
    assert result.code == 4
    lines = result.stdout.splitlines()
    (heading,) = [n for n, line in enumerate(lines) if line.startswith("ERRORS")]
    assert lines[heading] == "ERRORS (1)", "consequences are not counted"
    assert lines[heading + 2].startswith("    overlay2.links-dir-missing  overlay2/l: ")
    shown = lines[heading + 3 : heading + 6]
    assert all(line.startswith("      error overlay2.link-dangling  overlay2/l/") for line in shown)
    assert lines[heading + 6] == (
        f"      … and {dangling - 3} more caused by overlay2.links-dir-missing "
        "(--format json lists them)"
    )
    assert sum("overlay2.link-dangling" in line for line in lines) == 3
    assert "1 error, 0 warnings, " in result.stdout


def test_json_lines_keep_their_keys_and_gain_the_cause(cli, s: SamplePaths) -> None:
    shutil.rmtree(s.path("overlay2/l"))
    result = cli("verify", s.root, "--format", "jsonl")
    assert result.code == 4
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    old = {"check", "severity", "path", "message", "damage", "object_type", "object_id"}
    assert all(set(r) == old | {"caused_by", "affects"} for r in rows)
    assert Counter(r["caused_by"] for r in rows if r["check"] == "overlay2.link-dangling") == {
        "overlay2.links-dir-missing:overlay2/l": len(_links_of(rows))
    }


def _links_of(rows: list[dict[str, Any]]) -> list[str]:
    return [r["path"] for r in rows if r["check"] == "overlay2.link-dangling"]


# -- overlay and vfs --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def masters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    out = {}
    for driver in ("vfs", "overlay"):
        tarball = SAMPLES / DRIVER_SAMPLES[driver]
        name = tarball.name.split(".tar")[0]
        root = unpack(tarball, tmp_path_factory.mktemp(name))
        out[driver] = (root, json.loads((SAMPLES / f"{name}.truth.json").read_text()))
    return out


def _copy(masters, driver: str, tmp_path: Path) -> SamplePaths:  # type: ignore[no-untyped-def]
    root, truth = masters[driver]
    return SamplePaths(copy_tree(root, tmp_path / "docker"), truth)


def test_overlay_lost_mount_record_explains_both_orphans(cli, masters, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s = _copy(masters, "overlay", tmp_path)
    mount = s.mount_id("exited")
    shutil.rmtree(s.path(f"{s.store}/layerdb/mounts/{s.container_id('exited')}"))
    doc = verify(cli, s.root)
    cause = the_cause(doc, "container.mount-missing", f"containers/{s.container_id('exited')}")
    assert consequences(doc, cause) == {
        ("driver.orphan-dir", f"overlay/{mount}"),
        ("driver.orphan-dir", f"overlay/{mount}-init"),
    }


def test_overlay_missing_top_layer(cli, masters, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s = _copy(masters, "overlay", tmp_path)
    top = s.chain(APP)[-1]
    cache = s.cache_id(top)
    shutil.rmtree(s.path(s.layer_dir(top)))
    doc = verify(cli, s.root)
    cause = the_cause(doc, "layer.missing", s.layer_dir(top))
    assert ("driver.orphan-dir", f"overlay/{cache}") in consequences(doc, cause)


def test_vfs_orphan_without_evidence_stays_its_own(cli, masters, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """vfs layers are full copies with no lower file: nothing names the orphan as the missing
    layer's directory, so it is not joined to it by a guess."""
    s = _copy(masters, "vfs", tmp_path)
    chain = s.chain(APP)[1]
    cache = s.cache_id(chain)
    shutil.rmtree(s.path(s.layer_dir(chain)))
    result = cli("verify", s.root, "--format", "json")
    doc = result.json()
    causes = {
        (f["check"], f["path"])
        for f in doc["findings"]
        if f["severity"] == "error"
        if f["caused_by"] is None
    }
    assert causes == {
        ("layer.missing", s.layer_dir(chain)),
        ("driver.orphan-dir", f"vfs/dir/{cache}"),
    }
    assert doc["summary"]["error"] == 2


# -- legacy aufs and devicemapper -------------------------------------------------------------


@pytest.fixture
def aufs_root(corpus_roots: dict[str, Path], tmp_path: Path) -> Path:
    return copy_tree(corpus_roots["aufs.v1"], tmp_path / "docker")


def test_missing_graph_image_lists_containers_tags_and_its_directory(cli, aufs_root: Path) -> None:
    shutil.rmtree(aufs_root / f"graph/{TOP}")
    doc = verify(cli, aufs_root)
    cause = the_cause(doc, "graph.image-missing", f"graph/{TOP}")
    found = consequences(doc, cause)
    assert ("graph.tag-target-missing", "repositories-aufs") in found
    assert ("driver.orphan-dir", f"aufs/diff/{TOP}") in found
    containers = {p for c, p in found if c == "container.image-missing"}
    assert len(containers) == 3 and f"containers/{EXITED}/config.json" in containers
    assert "(busybox:latest) is not in graph/; it breaks 3 containers" in cause["message"]
    assert "tag busybox:latest" in cause["message"]


def test_missing_parent_graph_image(cli, aufs_root: Path) -> None:
    shutil.rmtree(aufs_root / f"graph/{BASE}")
    doc = verify(cli, aufs_root)
    cause = the_cause(doc, "graph.image-missing", f"graph/{BASE}")
    assert consequences(doc, cause) == {
        ("layer.parent-missing", f"graph/{TOP}"),
        ("driver.orphan-dir", f"aufs/diff/{BASE}"),
    }


def test_one_reference_to_a_missing_image_stays_as_it_is(cli, aufs_root: Path) -> None:
    rel = f"containers/{EXITED}/config.json"
    (aufs_root / rel).write_text((aufs_root / rel).read_text().replace(TOP, "e" * 64))
    doc = verify(cli, aufs_root)
    cause = the_cause(doc, "container.image-missing", rel)
    assert consequences(doc, cause) == set()


def test_damaged_graph_json_explains_the_aufs_chains(cli, aufs_root: Path) -> None:
    rel = f"graph/{TOP}/json"
    (aufs_root / rel).write_bytes((aufs_root / rel).read_bytes()[:200])
    doc = verify(cli, aufs_root)
    cause = the_cause(doc, "layer.config-damaged", rel)
    found = consequences(doc, cause)
    assert ("aufs.lower-mismatch", f"aufs/layers/{TOP}") in found
    assert ("aufs.lower-mismatch", f"aufs/layers/{EXITED}-init") in found
    assert {c for c, _ in found} == {"aufs.lower-mismatch"} and len(found) == 7


def test_damaged_legacy_container_config_explains_its_chains(cli, aufs_root: Path) -> None:
    rel = f"containers/{EXITED}/config.json"
    (aufs_root / rel).write_bytes((aufs_root / rel).read_bytes()[:100])
    doc = verify(cli, aufs_root)
    cause = the_cause(doc, "container.config-damaged", rel)
    assert consequences(doc, cause) == {
        ("aufs.lower-mismatch", f"aufs/layers/{EXITED}"),
        ("aufs.lower-mismatch", f"aufs/layers/{EXITED}-init"),
    }


def test_parent_loop_is_one_finding(cli, aufs_root: Path) -> None:
    rel = f"graph/{BASE}/json"
    text = (aufs_root / rel).read_text()
    (aufs_root / rel).write_text(text.replace('"id":', f'"parent":"{TOP}","id":', 1))
    doc = verify(cli, aufs_root)
    first, second = sorted([f"graph/{BASE}", f"graph/{TOP}"])
    cause = the_cause(doc, "graph.parent-loop", first)
    assert consequences(doc, cause) == {("graph.parent-loop", second)}


def _dm_ids(dm_truth: dict[str, Any]) -> tuple[str, str]:
    layer = dm_truth["images"][0]["layers"][-1]
    container = dm_truth["containers"][0]["id"]
    return layer, container


def test_lost_device_record_explains_the_leaked_device(cli, dm_root: Path, dm_truth) -> None:  # type: ignore[no-untyped-def]
    layer, _ = _dm_ids(dm_truth)
    record = json.loads((dm_root / f"devicemapper/metadata/{layer}").read_text())
    (dm_root / f"devicemapper/metadata/{layer}").unlink()
    doc = verify(cli, dm_root)
    cause = the_cause(doc, "layer.driver-dir-missing", f"graph/{layer}")
    found = consequences(doc, cause)
    assert ("thinpool.device-leaked", "devicemapper/devicemapper/metadata") in found
    leaked = [f for f in doc["findings"] if f["check"] == "thinpool.device-leaked"]
    assert [f["object_id"] for f in leaked] == [f"device-{record['device_id']}"]
    assert f"device:{record['device_id']}" in cause["affects"]
    if (dm_root / f"devicemapper/mnt/{layer}").exists():
        assert ("devicemapper.mnt-orphan", f"devicemapper/mnt/{layer}") in found


def test_lost_container_records_are_one_finding(cli, dm_root: Path, dm_truth) -> None:  # type: ignore[no-untyped-def]
    _, cid = _dm_ids(dm_truth)
    ids = []
    for name in (cid, f"{cid}-init"):
        path = dm_root / f"devicemapper/metadata/{name}"
        ids.append(json.loads(path.read_text())["device_id"])
        path.unlink()
    doc = verify(cli, dm_root)
    cause = the_cause(doc, "container.layer-missing", f"containers/{cid}")
    assert f"no layer {cid} and no layer {cid}-init" in cause["message"]
    leaked = {f["object_id"] for f in doc["findings"] if f["caused_by"] == key(cause)}
    assert {f"device-{n}" for n in ids} <= leaked
    assert {f"device:{n}" for n in ids} <= set(cause["affects"])
