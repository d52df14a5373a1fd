"""inventory against the daemon's own view (the sample's truth) and against the real corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import CORPUS


def _tags_by_image(rows: list[dict[str, Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for row in rows:
        tags = out.setdefault(row["ID"], set())
        if row["Tag"] != "<none>":
            tags.add(f"{row['Repository']}:{row['Tag']}")
    return out


def test_sample_containers_match_the_daemon(
    cli, sample_master: Path, truth: dict[str, Any]
) -> None:
    result = cli("inventory", sample_master, "--format", "json")
    assert result.code == 0, result.stderr
    doc = result.json()
    ours = {(c["id"], c["name"], c["state"]) for c in doc["containers"]}
    daemon = {(p["ID"], p["Names"], p["State"]) for p in truth["ps"]}
    assert ours == daemon
    assert doc["layout"] == "modern" and doc["driver"] == truth["driver"]


def test_sample_container_details_match_inspect(
    cli, sample_master: Path, truth: dict[str, Any]
) -> None:
    doc = cli("inventory", sample_master, "--format", "json").json()
    ours = {c["id"]: c for c in doc["containers"]}
    for inspected in truth["inspect_containers"]:
        mine = ours[inspected["Id"]]
        assert mine["image_id"] == inspected["Image"]
        assert mine["created"] == inspected["Created"]
        assert mine["exit_code"] == inspected["State"]["ExitCode"]
        graph = inspected["GraphDriver"]
        assert graph["Name"] == mine["driver"] == doc["driver"]
        if "UpperDir" in graph["Data"]:
            assert mine["mount_id"] == graph["Data"]["UpperDir"].split("/")[-2]
        names = sorted(m["Name"] for m in inspected["Mounts"] if m["Type"] == "volume")
        assert sorted(v["name"] for v in mine["volumes"] if v["type"] == "volume") == names


def test_sample_images_match_the_daemon(cli, driver_sample: tuple[Path, dict[str, Any]]) -> None:
    root, truth = driver_sample
    doc = cli("inventory", root, "--format", "json").json()
    ours_all = {i["id"]: set(i["tags"]) for i in doc["images"]}
    ours_top = {i["id"]: set(i["tags"]) for i in doc["images"] if not i["intermediate"]}
    assert ours_top == _tags_by_image(truth["images"])
    assert ours_all == _tags_by_image(truth["images_all"])
    layers = {i["id"]: [layer["diff_id"] for layer in i["layers"]] for i in doc["images"]}
    for inspected in truth["inspect_images"]:
        assert layers[inspected["Id"]] == inspected["RootFS"]["Layers"]


def test_sample_volumes_match_the_daemon(cli, driver_sample: tuple[Path, dict[str, Any]]) -> None:
    root, truth = driver_sample
    doc = cli("inventory", root, "--format", "json").json()
    assert {v["name"] for v in doc["volumes"]} == {v["Name"] for v in truth["volumes"]}


def _expected(name: str, what: str) -> Any:
    return json.loads((CORPUS / "expected" / f"{name}.de-list-{what}.json").read_text())


def test_corpus_containers_match_docker_explorer(cli, corpus_roots: dict[str, Path]) -> None:
    for name, root in corpus_roots.items():
        doc = cli("inventory", root, "--format", "json").json()
        ours = {c["id"]: c for c in doc["containers"]}
        peer = _expected(name, "all-containers")
        assert set(ours) == {p["container_id"] for p in peer}, name
        for p in peer:
            mine = ours[p["container_id"]]
            assert mine["image_id"].removeprefix("sha256:") == p["image_id"]
            if "mount_id" in p:
                assert mine["mount_id"] == p["mount_id"]
            assert all(mine["name"] for mine in ours.values()), "every container has its name"


def test_corpus_images_match_docker_explorer(cli, corpus_roots: dict[str, Path]) -> None:
    for name, root in corpus_roots.items():
        doc = cli("inventory", root, "--format", "json").json()
        tagged = {
            i["id"].removeprefix("sha256:"): set(i["tags"]) for i in doc["images"] if i["tags"]
        }
        expected: dict[str, set[str]] = {}
        for store in _expected(name, "repositories"):
            for repo, refs in store["Repositories"].items():
                for ref, target in refs.items():
                    if "@" in ref:
                        continue
                    tag = ref if ":" in ref else f"{repo}:{ref}"
                    expected.setdefault(target.removeprefix("sha256:"), set()).add(tag)
        assert tagged == expected, name


def test_legacy_corpus_names_and_layers(cli, corpus_roots: dict[str, Path]) -> None:
    doc = cli("inventory", corpus_roots["aufs.v1"], "--format", "json").json()
    assert doc["layout"] == "legacy" and doc["driver"] == "aufs"
    names = {c["id"][:12]: c["name"] for c in doc["containers"]}
    assert names == {
        "3b03d0958390": "insane_rosalind",
        "fbb6711cefc7": "kickass_mestorf",
        "de44dd97cfd1": "angry_rosalind",
    }
    (busybox,) = [i for i in doc["images"] if i["tags"]]
    assert busybox["tags"] == ["busybox:latest"]
    assert [layer["id"][:12] for layer in busybox["layers"]] == ["df557f39d413", "1cee97b18f87"]


def test_inventory_text_lists_everything(cli, sample_master: Path, truth: dict[str, Any]) -> None:
    result = cli("inventory", sample_master)
    assert result.code == 0
    for p in truth["ps"]:
        assert p["ID"][:12] in result.stdout and p["Names"] in result.stdout
    assert "sample/app:1.0" in result.stdout
