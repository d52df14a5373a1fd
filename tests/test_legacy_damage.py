"""Damage to a real Docker 1.8 aufs host (the docker-explorer corpus) and to the composed 1.9
tree of the reference, each reported with its check id and the path at fault."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import LAYOUT_EXAMPLES, copy_tree
from test_verify_damage import assert_one_cause

TOP = "1cee97b18f87b5fa91633db35f587e2c65c093facfa2cbbe83d5ebe06e1d9125"
BASE = "df557f39d413a1408f5c28d8aab2892f927237ec22e903ef04b331305130ab38"
EXITED = "3b03d0958390ccfb92e9f1ee67de628ab315c532120d4512cb72a1805465fb35"
NEW = "e" * 64
BASE_OF_MIGRATED = "7b989fd5e6b5c65742647ab6d0e0bbe31d9929eb6625a3d02f242f5c65ee3e0e"


def truncate_json(root: Path) -> str:
    rel = f"graph/{TOP}/json"
    (root / rel).write_bytes((root / rel).read_bytes()[:200])
    return rel


def change_json_id(root: Path) -> str:
    rel = f"graph/{TOP}/json"
    text = (root / rel).read_text().replace(f'"id":"{TOP}"', f'"id":"{NEW}"')
    (root / rel).write_text(text)
    return rel


def remove_parent_image(root: Path) -> str:
    shutil.rmtree(root / f"graph/{BASE}")
    return f"graph/{TOP}"


def garble_layersize(root: Path) -> str:
    rel = f"graph/{TOP}/layersize"
    (root / rel).write_text("12kB")
    return rel


def garble_checksum(root: Path) -> str:
    rel = f"graph/{TOP}/checksum"
    (root / rel).write_text("md5:1234")
    return rel


def remove_aufs_layers_file(root: Path) -> str:
    (root / f"aufs/layers/{TOP}").unlink()
    return f"aufs/layers/{TOP}"


def wrong_aufs_chain(root: Path) -> str:
    (root / f"aufs/layers/{TOP}").write_text("")
    return f"aufs/layers/{TOP}"


def tag_to_missing_image(root: Path) -> str:
    (root / "repositories-aufs").write_text(
        f'{{"Repositories":{{"busybox":{{"latest":"{NEW}"}}}}}}'
    )
    return "repositories-aufs"


def truncate_repositories(root: Path) -> str:
    (root / "repositories-aufs").write_text('{"Repositories":{"busy')
    return "repositories-aufs"


def container_of_missing_image(root: Path) -> str:
    rel = f"containers/{EXITED}/config.json"
    (root / rel).write_text((root / rel).read_text().replace(TOP, NEW))
    return rel


def remove_init_layer(root: Path) -> str:
    shutil.rmtree(root / f"aufs/diff/{EXITED}-init")
    (root / f"aufs/layers/{EXITED}-init").unlink()
    return f"containers/{EXITED}"


def name_of_missing_container(root: Path) -> str:
    db = sqlite3.connect(root / "linkgraph.db")
    with db:
        db.execute("INSERT INTO entity (id) VALUES (?)", (NEW,))
        db.execute("INSERT INTO edge (entity_id, name, parent_id) VALUES (?, 'ghost', '0')", (NEW,))
    db.close()
    return "linkgraph.db"


def garble_linkgraph(root: Path) -> str:
    (root / "linkgraph.db").write_bytes(b"SQLite format 3\0" + b"\xff" * 200)
    return "linkgraph.db"


def orphan_aufs_layer(root: Path) -> str:
    (root / f"aufs/diff/{NEW}").mkdir()
    (root / f"aufs/layers/{NEW}").write_text("")
    return f"aufs/diff/{NEW}"


def parent_loop(root: Path) -> str:
    rel = f"graph/{BASE}/json"
    text = (root / rel).read_text()
    (root / rel).write_text(text.replace('"id":', f'"parent":"{TOP}","id":', 1))
    return f"graph/{BASE}"


def malformed_graph_id(root: Path) -> str:
    (root / f"graph/{TOP}").rename(root / f"graph/{TOP[:63]}")
    return f"graph/{TOP[:63]}"


CASES: list[tuple[Callable[[Path], str], str]] = [
    (malformed_graph_id, "graph.id-malformed"),
    (truncate_json, "layer.config-damaged"),
    (change_json_id, "graph.id-mismatch"),
    (remove_parent_image, "layer.parent-missing"),
    (garble_layersize, "layer.layersize-damaged"),
    (garble_checksum, "layer.checksum-damaged"),
    (remove_aufs_layers_file, "aufs.layers-missing"),
    (wrong_aufs_chain, "aufs.lower-mismatch"),
    (tag_to_missing_image, "graph.tag-target-missing"),
    (truncate_repositories, "repositories.damaged"),
    (container_of_missing_image, "container.image-missing"),
    (remove_init_layer, "container.layer-missing"),
    (name_of_missing_container, "linkgraph.container-missing"),
    (garble_linkgraph, "linkgraph.damaged"),
    (orphan_aufs_layer, "driver.orphan-dir"),
    (parent_loop, "graph.parent-loop"),
]


@pytest.mark.parametrize(("damage", "check"), CASES, ids=[c[0].__name__ for c in CASES])
def test_legacy_damage(
    cli, corpus_roots: dict[str, Path], tmp_path: Path, damage, check: str
) -> None:  # type: ignore[no-untyped-def]
    root = copy_tree(corpus_roots["aufs.v1"], tmp_path / "docker")
    path = damage(root)
    result = cli("verify", root, "--format", "json")
    assert result.code == 4, result.stdout
    found = [(f["check"], f["path"], f["severity"]) for f in result.json()["findings"]]
    assert (check, path, "error") in found, found
    # a malformed graph/<id> and the image its containers and tags miss: no record joins them
    assert_one_cause(result.json(), 2 if damage is malformed_graph_id else 1)


def test_graph_tmp_leftover_is_a_warning(
    cli, corpus_roots: dict[str, Path], tmp_path: Path
) -> None:
    root = copy_tree(corpus_roots["aufs.v1"], tmp_path / "docker")
    (root / "graph/_tmp/123456789").mkdir()
    result = cli("verify", root, "--format", "json")
    assert result.code == 0
    found = [(f["check"], f["path"], f["severity"]) for f in result.json()["findings"]]
    assert ("layer.graph-tmp-leftover", "graph/_tmp/123456789", "warning") in found


def test_strong_id_digest_is_checked(cli, tmp_path: Path) -> None:
    """1.8.3+ v2 pulls name graph/<id> by the sha256 of its json (the reference 1.9 tree)."""
    root = copy_tree(LAYOUT_EXAMPLES / "legacy_1.9.1_aufs", tmp_path / "docker")
    gid = "7b989fd5e6b5c65742647ab6d0e0bbe31d9929eb6625a3d02f242f5c65ee3e0e"
    before = cli("verify", root, "--format", "json").json()["findings"]
    assert not [f for f in before if f["check"] == "graph.digest-mismatch"]
    rel = f"graph/{gid}/json"
    (root / rel).write_bytes((root / rel).read_bytes().replace(b'"os":"linux"', b'"os":"plan9"'))
    after = cli("verify", root, "--format", "json").json()["findings"]
    assert ("graph.digest-mismatch", rel) in [(f["check"], f["path"]) for f in after]


@pytest.fixture
def migrated_root(tmp_path: Path) -> Path:
    """The reference 1.9 aufs tree with what Docker 1.10's migration adds to it."""
    root = copy_tree(LAYOUT_EXAMPLES / "legacy_1.9.1_aufs", tmp_path / "docker")
    additions = LAYOUT_EXAMPLES / "legacy_1.9.1_aufs_after_1.10_migration_additions"
    subprocess.run(["cp", "-a", f"{additions}/.", str(root)], check=True)
    subprocess.run(["chmod", "-R", "u+w", str(root)], check=True)
    return root


def test_migrated_root_is_read_as_both_eras(cli, migrated_root: Path) -> None:
    doc = cli("inventory", migrated_root, "--format", "json").json()
    assert doc["layout"] == "modern" and doc["driver"] == "aufs"
    assert [i["tags"] for i in doc["images"] if i["tags"]] == [["example/hello:1.0"]]
    legacy = doc["legacy"]
    migrated = {i["id"][:12]: (i["migrated_to"] or "")[7:19] for i in legacy["images"]}
    assert migrated == {
        "7b989fd5e6b5": "282c694d405c",
        "0d547a92a596": "8889b6382321",
        "517b4472cd16": "1400ca8c30fa",
    }
    assert [c["name"] for c in legacy["containers"]] == ["legacy_web"]
    result = cli("verify", migrated_root, "--format", "json")
    assert result.code == 0, result.stdout


def test_migration_diffid_is_checked(cli, migrated_root: Path) -> None:
    gid = "0d547a92a596a539744f6ed8ac7f14e1c0bdcee554b03b3ea0fffeddc7c5629a"
    rel = f"graph/{gid}/.migration-diffid"
    (migrated_root / rel).write_text("sha256:" + "0" * 64)
    result = cli("verify", migrated_root, "--format", "json")
    assert result.code == 4
    assert ("migration.diffid-mismatch", rel) in [
        (f["check"], f["path"]) for f in result.json()["findings"]
    ]


def test_unmigrated_graph_image_is_noted(cli, migrated_root: Path) -> None:
    src = (
        migrated_root / "graph" / "7b989fd5e6b5c65742647ab6d0e0bbe31d9929eb6625a3d02f242f5c65ee3e0e"
    )
    shutil.copytree(src, migrated_root / "graph" / NEW)
    (migrated_root / "graph" / NEW / "json").write_text(f'{{"id":"{NEW}","os":"linux"}}')
    (migrated_root / "aufs/layers" / NEW).write_text("")
    (migrated_root / "aufs/diff" / NEW).mkdir()
    result = cli("verify", migrated_root, "--format", "json")
    assert result.code == 0, "graph/ still owns the driver data of what it did not migrate"
    found = result.json()["findings"]
    assert ("migration.not-migrated", f"graph/{NEW}", "info") in [
        (f["check"], f["path"], f["severity"]) for f in found
    ]


def test_legacy_tags_the_migration_could_not_carry(cli, migrated_root: Path) -> None:
    graph = migrated_root / "graph"
    shutil.copytree(graph / BASE_OF_MIGRATED, graph / NEW)
    (graph / NEW / "json").write_text(f'{{"id":"{NEW}","os":"linux"}}')
    (migrated_root / "aufs/layers" / NEW).write_text("")
    (migrated_root / "aufs/diff" / NEW).mkdir()
    tags = migrated_root / "repositories-aufs"
    gone = "f" * 64
    tags.write_text(
        tags.read_text().replace(
            '"1.0":', f'"unmigrated":"{NEW}","gone":"{gone}","latest":"{gone}","1.0":'
        )
    )
    (migrated_root / "image/aufs/repositories.json").write_text(
        (migrated_root / "image/aufs/repositories.json")
        .read_text()
        .replace(
            '{"example/hello:1.0"', '{"docker.io/example/hello:latest":"x","example/hello:1.0"'
        )
    )
    result = cli("verify", migrated_root, "--format", "json")
    found = {
        (f["object_id"], f["severity"], f["message"])
        for f in result.json()["findings"]
        if f["check"] == "migration.tag-not-migrated"
    }
    assert found == {
        (
            "example/hello:unmigrated",
            "warning",
            f"example/hello:unmigrated: its graph image {NEW[:12]} was never migrated, "
            "so 1.10+ has no such tag",
        ),
        (
            "example/hello:gone",
            "warning",
            f"example/hello:gone: its graph image {gone[:12]} does not exist, "
            "so 1.10+ has no such tag",
        ),
    }, "example/hello:latest is in the 1.10+ store (retagged there), 1.0 was migrated"
    assert {
        f["path"] for f in result.json()["findings"] if f["object_id"] == "example/hello:gone"
    } == {"repositories-aufs"}


def test_linkgraph_with_a_damaged_schema(
    cli, corpus_roots: dict[str, Path], tmp_path: Path
) -> None:
    """Found by fuzzing: one byte of the schema made column names undecodable (a traceback)."""
    root = copy_tree(corpus_roots["aufs.v1"], tmp_path / "docker")
    reference = LAYOUT_EXAMPLES / "legacy_1.9.1_aufs" / "linkgraph.db"
    data = bytearray(reference.read_bytes())
    data[3761] = 128
    (root / "linkgraph.db").write_bytes(bytes(data))
    result = cli("verify", root, "--format", "json")
    assert result.code == 4 and "internal error" not in result.stderr
    assert "linkgraph.damaged" in {f["check"] for f in result.json()["findings"]}
