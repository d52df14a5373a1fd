"""The containerd store readers on the containerd-store sample, held against what the real
``ctr`` listed before containerd was killed (samples/containerd-store.truth.json): every
namespace, image, container, snapshot, lease, blob and ingest, with labels and times; the
snapshotter's records and directories; the image documents; and what containerd's own collector
removed from the garbage variant."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sample_paths import CONTAINERD_ROOT

from forensics.containerd_model import ContainerdStore
from forensics.evidence import Evidence
from forensics.stores.containerd import find_containerd_root, read_containerd_store
from forensics.stores.containerd.content import resolve_image
from forensics.stores.containerd.gc import collect
from forensics.stores.containerd.values import decode_text_time

KINDS = {"View": "view", "Active": "active", "Committed": "committed"}


@pytest.fixture(scope="module")
def store(containerd_master: Path) -> ContainerdStore:
    with Evidence(containerd_master) as ev:
        return read_containerd_store(ev, CONTAINERD_ROOT)


def namespaces(truth: dict[str, Any]) -> dict[str, dict[str, Any]]:
    ns: dict[str, dict[str, Any]] = truth["namespaces"]
    return ns


def test_the_containerd_root_is_found_in_a_docker_root_and_alone(containerd_master: Path) -> None:
    with Evidence(containerd_master) as ev:
        assert find_containerd_root(ev) == CONTAINERD_ROOT
    with Evidence(containerd_master / CONTAINERD_ROOT) as ev:
        assert find_containerd_root(ev) == ""
        alone = read_containerd_store(ev, "")
    assert sorted(alone.namespaces) == ["k8s.io", "moby"]
    assert alone.problems == []
    with Evidence(containerd_master / "containers") as ev:
        assert find_containerd_root(ev) is None


def test_the_sample_reads_without_problems(store: ContainerdStore) -> None:
    assert store.problems == []
    assert store.db_version == 3
    assert store.meta is not None and store.meta.salvage is None and not store.meta.fell_back


def test_namespaces_and_images(store: ContainerdStore, containerd_truth: dict[str, Any]) -> None:
    truth = namespaces(containerd_truth)
    assert sorted(store.namespaces) == sorted(truth)
    for name, listed in truth.items():
        images = store.namespaces[name].images
        want = {i["name"]: (i["digest"], i["media_type"]) for i in listed["images"]}
        got = {n: (i.target.digest, i.target.media_type) for n, i in images.items()}
        assert got == want
        assert all(i.created is not None and i.updated is not None for i in images.values())


def test_containers(store: ContainerdStore, containerd_truth: dict[str, Any]) -> None:
    for name, listed in namespaces(containerd_truth).items():
        containers = store.namespaces[name].containers
        assert sorted(containers) == sorted(c["ID"] for c in listed["containers"])
        for info in listed["containers"]:
            c = containers[info["ID"]]
            assert c.image == info["Image"]
            assert c.runtime == info["Runtime"]["Name"]
            assert c.snapshotter == info["Snapshotter"]
            assert c.snapshot_key == info["SnapshotKey"]
            assert c.labels == info["Labels"]
            assert c.created is not None and c.created.iso() == info["CreatedAt"]
            assert c.updated is not None and c.updated.iso() == info["UpdatedAt"]
            assert c.spec_type == "types.containerd.io/opencontainers/runtime-spec/1/Spec"
            assert json.loads(c.spec)["process"]["args"] == info["Spec"]["args"]


def test_snapshots(store: ContainerdStore, containerd_truth: dict[str, Any]) -> None:
    backend = store.snapshotters["overlayfs"].snapshots
    for name, listed in namespaces(containerd_truth).items():
        snaps = store.namespaces[name].snapshots
        assert sorted(snaps) == sorted(("overlayfs", s["key"]) for s in listed["snapshots"])
        for row in listed["snapshots"]:
            s = snaps[("overlayfs", row["key"])]
            info = row["info"]
            assert s.parent == row["parent"]
            assert s.labels == info.get("Labels", {})
            assert s.created is not None and s.created.iso() == info["Created"]
            assert s.updated is not None and s.updated.iso() == info["Updated"]
            # the backend record: its kind, and its parent is the parent's backend name
            b = backend[s.name]
            assert b.kind == KINDS[row["kind"]]
            assert b.namespace == name and b.key == row["key"]
            if s.parent:
                assert b.parent == snaps[("overlayfs", s.parent)].name


def test_snapshot_directories_and_ids(
    store: ContainerdStore, containerd_truth: dict[str, Any]
) -> None:
    sn = store.snapshotters["overlayfs"]
    dirs = containerd_truth["snapshot_dirs"]
    assert sorted(sn.dirs, key=int) == dirs["dirs"]
    assert all(d.has_fs and d.has_work for d in sn.dirs.values())
    assert sorted(str(s.id) for s in sn.snapshots.values()) == sorted(dirs["dirs"])
    for name, ids in dirs["active_ids"].items():
        for key, dir_id in ids.items():
            backend = sn.snapshots[store.namespaces[name].snapshots[("overlayfs", key)].name]
            assert str(backend.id) == dir_id
    # every parent link of the backend is in v1/parents, by ids
    by_name = sn.snapshots
    links = {(by_name[s.parent].id, s.id): s.name for s in by_name.values() if s.parent in by_name}
    assert sn.parents == links


def test_content_and_blobs(store: ContainerdStore, containerd_truth: dict[str, Any]) -> None:
    for name, listed in namespaces(containerd_truth).items():
        content = store.namespaces[name].content
        assert sorted(content) == sorted(c["digest"] for c in listed["content"])
        for row in listed["content"]:
            blob = content[row["digest"]]
            assert blob.labels == row["labels"]
            assert blob.size == store.blobs[row["digest"]].size
    assert sorted(d.removeprefix("sha256:") for d in store.blobs) == sorted(
        containerd_truth["content_blobs"]
    )


def test_leases(store: ContainerdStore, containerd_truth: dict[str, Any]) -> None:
    for name, listed in namespaces(containerd_truth).items():
        leases = store.namespaces[name].leases
        assert sorted(leases) == sorted(row["id"] for row in listed["leases"])
        for row in listed["leases"]:
            lease = leases[row["id"]]
            assert lease.labels == row["labels"]
            assert lease.created is not None
            assert lease.created.unix == decode_text_time(row["created"].encode()).unix
            held = sorted(
                [{"id": d, "type": "content"} for d in lease.content]
                + [
                    {"id": k, "type": f"snapshots/{sn}"}
                    for sn, keys in lease.snapshots.items()
                    for k in keys
                ],
                key=lambda r: (r["type"], r["id"]),
            )
            assert held == sorted(row["resources"], key=lambda r: (r["type"], r["id"]))


def test_ingests(store: ContainerdStore, containerd_truth: dict[str, Any]) -> None:
    for name, listed in namespaces(containerd_truth).items():
        assert sorted(store.namespaces[name].ingests) == sorted(listed["ingests"])
    (ingest,) = store.namespaces["moby"].ingests.values()
    (on_disk,) = store.ingests.values()
    assert on_disk.ref == ingest.backend_ref
    assert on_disk.total == 60000 and on_disk.started is not None
    assert ingest.expire_at is not None and ingest.expire_at.unix > on_disk.started.unix


def test_docker_29_containers_have_their_lease_and_snapshots(
    store: ContainerdStore, containerd_truth: dict[str, Any]
) -> None:
    moby = store.namespaces["moby"]
    for c in containerd_truth["docker"]["containers"]:
        assert c["lease"] in moby.leases
        assert moby.snapshots[("overlayfs", c["snapshot_key"])].parent == c["init_snapshot"]
        assert moby.images[c["image_name"]].target.digest == c["image"]
    running = [c["id"] for c in containerd_truth["docker"]["containers"] if c["state"] == "running"]
    assert sorted(moby.containers) == running


def test_image_documents_resolve(containerd_master: Path, store: ContainerdStore) -> None:
    with Evidence(containerd_master) as ev:
        for ns in store.namespaces.values():
            for image in ns.images.values():
                resolved = resolve_image(ev, store, image.target)
                assert resolved.problems == []
                present = [m for m in resolved.manifests if m.present]
                assert present, image.name
                for m in present:
                    assert m.config is not None and m.config.digest in store.blobs
                    assert len(m.diff_ids) == len(m.layers) > 0
                    assert m.os == "linux"
                    assert all(layer.digest in store.blobs for layer in m.layers)
    index = store.namespaces["k8s.io"].images["docker.io/sample/index:all"]
    assert index.target.media_type == "application/vnd.oci.image.index.v1+json"


def test_a_collection_of_the_sample_removes_only_the_expired_lease(
    containerd_master: Path, store: ContainerdStore, containerd_truth: dict[str, Any]
) -> None:
    now = datetime.fromisoformat(containerd_truth["garbage"]["collected_at"])
    with Evidence(containerd_master) as ev:
        c = collect(store, now, ev)
    assert c.leases == {"k8s.io": [], "moby": ["expires-at-once"]}
    assert not any(c.content.values()) and not any(c.snapshots.values())
    assert c.blob_files == [] and c.snapshot_dirs == {} and c.reclaimable == 0


def test_the_collection_equals_what_containerd_removed(
    containerd_garbage_master: Path, containerd_truth: dict[str, Any]
) -> None:
    """On the garbage variant (an image removed with the collector paused), what the rules
    remove is what the real containerd removed when it collected on a copy."""
    garbage = containerd_truth["garbage"]
    with Evidence(containerd_garbage_master) as ev:
        store = read_containerd_store(ev, CONTAINERD_ROOT)
        assert store.problems == []
        c = collect(store, datetime.fromisoformat(garbage["collected_at"]), ev)
    for name in store.namespaces:
        removed = garbage["removed"][name]
        assert c.content[name] == removed["content"]
        assert [key for _, key in c.snapshots[name]] == removed["snapshots"]
        assert c.leases[name] == removed["leases"]
        assert c.ingests[name] == removed["ingests"]
    blobs = f"{CONTAINERD_ROOT}/io.containerd.content.v1.content/blobs/"
    dirs = f"{CONTAINERD_ROOT}/io.containerd.snapshotter.v1.overlayfs/snapshots/"
    paths = garbage["paths_removed"]
    assert [store.blobs[d].path for d in c.blob_files] == [p for p in paths if p.startswith(blobs)]
    assert c.snapshot_dirs["overlayfs"] == [
        p.removeprefix(dirs) for p in paths if p.startswith(dirs)
    ]
    assert c.snapshot_dirs["overlayfs"] == garbage["removed"]["snapshot_dirs"]
    on_disk = sum(
        (containerd_garbage_master / p).stat().st_size for p in paths if p.startswith(blobs)
    )
    assert c.reclaimable >= on_disk > 0


def test_an_unexpired_lease_keeps_what_it_holds(
    containerd_garbage_master: Path, containerd_truth: dict[str, Any]
) -> None:
    """Before the lease's expiry nothing of it is garbage; the blob held only by a lease is
    never garbage while the lease lasts."""
    with Evidence(containerd_garbage_master) as ev:
        store = read_containerd_store(ev, CONTAINERD_ROOT)
    lease = store.namespaces["moby"].leases["expires-at-once"]
    assert lease.created is not None
    before = datetime.fromisoformat(lease.created.iso())
    c = collect(store, before)
    assert c.leases["moby"] == []
    held = store.namespaces["moby"].leases["hold-blob"].content
    assert held and not set(held) & set(c.content["moby"])
