"""``inventory`` of the containerd-store sample, held against what ``ctr`` listed before
containerd was killed (samples/containerd-store.truth.json), for the three forms of ROOT: the
Docker root (its containerd at ``containerd/daemon``), the Docker root with its containerd root
given apart (``--containerd-root``), and the containerd root alone."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import copy_tree
from sample_paths import CONTAINERD_ROOT

KINDS = {"View": "view", "Active": "active", "Committed": "committed"}


@pytest.fixture(scope="module")
def apart(containerd_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sample whose containerd root lies beside the Docker root, as a system
    containerd's does: ``<tmp>/docker`` and ``<tmp>/containerd``."""
    base = tmp_path_factory.mktemp("apart")
    copy_tree(containerd_master, base / "docker")
    shutil.move(base / "docker" / CONTAINERD_ROOT, base / "containerd")
    return base


def forms(master: Path, apart: Path) -> dict[str, tuple[Any, ...]]:
    return {
        "docker-root": (master,),
        "containerd-root-given": (apart / "docker", "--containerd-root", apart / "containerd"),
        "containerd-root-alone": (master / CONTAINERD_ROOT,),
    }


@pytest.mark.parametrize("form", ["docker-root", "containerd-root-given", "containerd-root-alone"])
def test_every_object_ctr_listed_is_inventoried(
    cli, containerd_master: Path, apart: Path, containerd_truth: dict[str, Any], form: str
) -> None:
    result = cli("inventory", *forms(containerd_master, apart)[form], "--format", "json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["layout"] == "containerd"
    ctd = doc["containerd"]
    listed = {ns["name"]: ns for ns in ctd["namespaces"]}
    assert sorted(listed) == sorted(containerd_truth["namespaces"])
    for name, truth in containerd_truth["namespaces"].items():
        ns = listed[name]
        images = {i["name"]: i["digest"] for i in ns["images"]}
        assert images == {i["name"]: i["digest"] for i in truth["images"]}
        assert {i["name"]: i["platforms"] for i in ns["images"]} == {
            i["name"]: [i["platforms"]] for i in truth["images"]
        }
        assert sorted(c["id"] for c in ns["containers"]) == sorted(
            c["ID"] for c in truth["containers"]
        )
        for c in truth["containers"]:
            (got,) = [x for x in ns["containers"] if x["id"] == c["ID"]]
            assert (got["image"] or "", got["snapshot_key"] or "") == (c["Image"], c["SnapshotKey"])
        snapshots = {s["key"]: (s["kind"], s["parent"] or "") for s in ns["snapshots"]}
        assert snapshots == {s["key"]: (KINDS[s["kind"]], s["parent"]) for s in truth["snapshots"]}
        assert sorted(lease["id"] for lease in ns["leases"]) == sorted(
            lease["id"] for lease in truth["leases"]
        )
    if form == "containerd-root-given":
        assert ctd["external"] and ctd["root"] == str(apart / "containerd")
    else:
        assert not ctd["external"]
        assert ctd["root"] == ("" if form == "containerd-root-alone" else CONTAINERD_ROOT)


def test_snapshot_chains_and_sizes(cli, containerd_master: Path) -> None:
    doc = cli("inventory", containerd_master, "--format", "json").json()
    (moby,) = [ns for ns in doc["containerd"]["namespaces"] if ns["name"] == "moby"]
    snaps = {s["key"]: s for s in moby["snapshots"]}
    for s in snaps.values():
        assert s["chain"][:1] == ([s["parent"]] if s["parent"] else [])
        assert all(parent in snaps for parent in s["chain"])
        assert s["size"] is not None and s["path"].endswith(f"/snapshots/{s['id']}")
    # a committed snapshot's size is containerd's recorded usage, an active one's its files'
    (exited,) = [s for k, s in snaps.items() if k.startswith("e0471c7a") and s["kind"] == "active"]
    written = containerd_master / exited["path"] / "fs"
    assert exited["size"] == sum(p.stat().st_size for p in written.rglob("*") if p.is_file()) > 0


def test_docker_view_of_namespace_moby(
    cli, containerd_master: Path, containerd_truth: dict[str, Any]
) -> None:
    """Docker 29 shows an image by its target digest and its name without docker.io/; each
    container of containers/ has its snapshot, init snapshot and lease in namespace moby."""
    doc = cli("inventory", containerd_master, "--format", "json").json()
    view = doc["containerd"]["docker"]
    truth = containerd_truth["namespaces"]["moby"]["images"]
    assert sorted(i["id"] for i in view["images"]) == sorted(i["digest"] for i in truth)
    named = {f"{i['repository']}:{i['tag']}" for i in view["images"] if i["repository"]}
    assert named == {"sample/app:1.0", "sample/busybox:base"}
    (dangling,) = [i for i in view["images"] if i["repository"] is None]
    assert dangling["tag"] is None
    docker = containerd_truth["docker"]["containers"]
    assert sorted(c["id"] for c in view["containers"]) == sorted(c["id"] for c in docker)
    for truth_c in docker:
        (c,) = [x for x in view["containers"] if x["id"] == truth_c["id"]]
        assert c["image_id"] == truth_c["image"]
        assert c["image_manifest"] == truth_c["image_manifest"]["digest"]
        assert c["snapshot"] and c["init_snapshot"] and c["lease"] and c["image_present"]
        assert c["containerd_container"] == (truth_c["state"] == "running")
    (app,) = [i for i in view["images"] if i["repository"] == "sample/app"]
    assert sorted(app["containers"]) == sorted(c["id"] for c in docker)


def test_df_accounts_every_blob_snapshot_and_ingest_once(cli, containerd_master: Path) -> None:
    doc = cli("inventory", containerd_master, "--format", "json").json()
    df = doc["containerd"]["df"]
    items = df["items"]
    assert df["total"] == sum(c["size"] for c in df["categories"].values())
    assert df["total"] == sum(i["size"] or 0 for i in items)
    paths = [i["path"] for i in items]
    assert len(paths) == len(set(paths))
    store = containerd_master / CONTAINERD_ROOT
    blobs = store / "io.containerd.content.v1.content/blobs/sha256"
    dirs = store / "io.containerd.snapshotter.v1.overlayfs/snapshots"
    ingests = store / "io.containerd.content.v1.content/ingest"
    on_disk = {
        *(str(p.relative_to(containerd_master)) for p in blobs.iterdir()),
        *(str(p.relative_to(containerd_master)) for p in dirs.iterdir()),
        *(str(p.relative_to(containerd_master)) for p in ingests.iterdir()),
    }
    assert on_disk <= set(paths)
    blob_total = sum(p.stat().st_size for p in blobs.iterdir())
    assert sum(i["size"] for i in items if i["kind"] == "blob") == blob_total
    categories = {i["path"].rsplit("/", 1)[1]: i["category"] for i in items if i["kind"] == "blob"}
    assert categories["ce4c24b3709b59835c9f466f1b58eb1adc9d2f4cee57876b0661023b62e55e3a"] == (
        "leases"  # held only by the lease hold-blob
    )
    assert df["categories"]["unreferenced"] == {"count": 0, "size": 0}


def test_df_unreferenced_is_what_the_collector_removes(
    cli, containerd_garbage_master: Path, containerd_truth: dict[str, Any]
) -> None:
    """On the garbage variant (an image removed, a container deleted keeping its snapshot),
    what the df calls unreferenced is what containerd removed when it collected."""
    doc = cli("inventory", containerd_garbage_master, "--format", "json").json()
    unreferenced = [i for i in doc["containerd"]["df"]["items"] if i["category"] == "unreferenced"]
    removed = containerd_truth["garbage"]["paths_removed"]
    assert sorted(i["path"] for i in unreferenced) == sorted(removed)


def test_text_inventory_lists_the_store(cli, containerd_master: Path) -> None:
    result = cli("inventory", containerd_master)
    assert result.code == 0, result.stderr
    assert "CONTAINERD STORE (containerd/daemon" in result.stdout
    assert "namespace k8s.io" in result.stdout and "namespace moby" in result.stdout
    assert "DISK USAGE" in result.stdout
    assert result.stderr == ""


def test_a_directory_that_is_no_containerd_root_is_refused(
    cli, containerd_master: Path, tmp_path: Path
) -> None:
    result = cli("inventory", containerd_master, "--containerd-root", tmp_path)
    assert result.code == 8 and result.stdout == ""
    assert result.stderr.strip() == (
        f"docker-forensics: {tmp_path}: not a containerd root (no "
        "io.containerd.metadata.v1.bolt/ in it)"
    )


def test_a_host_with_both_stores(
    cli, sample_root: Path, containerd_master: Path, truth: dict[str, Any]
) -> None:
    """overlay2 left beside a containerd store that holds data (an upgrade to Docker 29 that
    did not migrate): the overlay2 store stays the one in use, and the containerd store is read
    beside it."""
    shutil.rmtree(sample_root / CONTAINERD_ROOT)
    copy_tree(containerd_master / CONTAINERD_ROOT, sample_root / CONTAINERD_ROOT)
    doc = cli("inventory", sample_root, "--format", "json").json()
    assert (doc["layout"], doc["driver"]) == ("modern", "overlay2")
    assert sorted(i["id"] for i in doc["images"]) == sorted(
        i["Id"] for i in truth["inspect_images"]
    )
    ctd = doc["containerd"]
    assert ctd["root"] == CONTAINERD_ROOT
    assert sorted(ns["name"] for ns in ctd["namespaces"]) == ["k8s.io", "moby"]
    # the overlay2 containers are no containerd store's: Docker's view lists none of them
    assert ctd["docker"]["containers"] == []
    code = cli("verify", sample_root, "--format", "json").code
    assert code == 0
