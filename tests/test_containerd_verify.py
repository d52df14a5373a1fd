"""``verify`` of the containerd-store sample and of damaged copies of it.

The sample verifies clean (exit 0, no error, no warning) for every form of ROOT; what the issue
calls "not damage" stays quiet, each on its own; each damage is reported at its path, with the
exit status it deserves and no traceback. The damage is done to a copy of the real sample: a
file deleted, cut short or added, or a key of ``meta.db`` renamed in place."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import copy_tree
from inotify_watch import Watch
from sample_paths import (
    BOLT_PAGE,
    CONTAINERD_META_DB,
    CONTAINERD_ROOT,
    CONTAINERD_SNAPSHOTTER_DB,
)
from test_containerd_damage import high_water
from treehash import tree_hash

from forensics.checks import run_checks
from forensics.containerd_model import ContainerdHost, CtrNamespace, Descriptor, ImageManifest
from forensics.evidence import Evidence
from forensics.report import Finding
from forensics.stores import read_host

CONTENT = f"{CONTAINERD_ROOT}/io.containerd.content.v1.content"
BLOBS = f"{CONTENT}/blobs/sha256"
SNAPSHOTS = f"{CONTAINERD_ROOT}/io.containerd.snapshotter.v1.overlayfs/snapshots"
#: docker.io/sample/app:1.0 in namespace moby: its manifest (the target) and config
APP_MANIFEST = "01fdb1168cf1524e2bc5f5c9c2e13c2f4edcbfb885bbf060f8c9117ef812362c"
APP_CONFIG = "b52d6544a59f7b84a9f125b38186be27a10f0608112a3ad336bbd0c5c4da7e99"
#: Docker's container "exited": no containerd container record, a snapshot, a lease
EXITED = "e0471c7a0eb7462f94dfd43fddb8199ac668a900a1943864c82ae2e1d35b1aab"
#: Docker's container "running": a containerd container record too
RUNNING = "72566ba435cfb195cde367a262c045cf28534e370588f640129c6dda1bf02b87"


def verify(cli: Any, *args: Any) -> tuple[int, list[dict[str, Any]], str]:
    result = cli("verify", *args, "--format", "json")
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    findings = result.json()["findings"] if result.stdout else []
    return result.code, findings, result.stderr


def serious(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in findings if f["severity"] in ("error", "warning")]


def findings_of(root: Path) -> list[Finding]:
    with Evidence(root) as ev:
        return run_checks(read_host(ev))


# -- the sample -----------------------------------------------------------------------------------


def test_the_sample_verifies_clean(cli, containerd_master: Path, tmp_path: Path) -> None:
    code, findings, stderr = verify(cli, containerd_master)
    assert code == 0 and stderr == ""
    assert serious(findings) == []
    checks = {f["check"] for f in findings}
    assert checks == {
        "layout.containerd-store",
        "container.was-running",
        "containerd.ingest-in-progress",
    }
    # the containerd root alone, and given apart from the Docker root
    code, findings, _ = verify(cli, containerd_master / CONTAINERD_ROOT)
    assert code == 0 and serious(findings) == []
    copy_tree(containerd_master, tmp_path / "docker")
    shutil.move(tmp_path / "docker" / CONTAINERD_ROOT, tmp_path / "containerd")
    code, findings, _ = verify(
        cli, tmp_path / "docker", "--containerd-root", tmp_path / "containerd"
    )
    assert code == 0 and serious(findings) == []
    (ingest,) = [f for f in findings if f["check"] == "containerd.ingest-in-progress"]
    assert ingest["path"].startswith("io.containerd.content.v1.content/ingest/")
    doc = cli(
        "verify",
        tmp_path / "docker",
        "--containerd-root",
        tmp_path / "containerd",
        "--format",
        "json",
    ).json()
    assert doc["containerd_root"] == str(tmp_path / "containerd")


def test_expiries_are_judged_when_the_store_was_last_written(cli, containerd_master: Path) -> None:
    """The lease that expires at once had not expired when meta.db was last written; judged
    now, it has, and the collector would remove it (and nothing else)."""
    _, findings, _ = verify(cli, containerd_master)
    assert "containerd.lease-expired" not in {f["check"] for f in findings}
    code, findings, _ = verify(cli, containerd_master, "--now", "2026-12-07T00:20:00Z")
    assert code == 0
    (expired,) = [f for f in findings if f["check"] == "containerd.lease-expired"]
    assert expired["object_id"] == "moby/expires-at-once"
    (garbage,) = [f for f in findings if f["check"] == "containerd.garbage"]
    assert "1 lease at 2026-12-07T00:20:00" in garbage["message"]
    assert garbage["message"].endswith(": 0 bytes reclaimable")


def test_the_garbage_is_what_containerd_removed(
    cli, containerd_garbage_master: Path, containerd_truth: dict[str, Any]
) -> None:
    code, findings, _ = verify(cli, containerd_garbage_master)
    assert code == 0
    (garbage,) = [f for f in findings if f["check"] == "containerd.garbage"]
    removed = containerd_truth["garbage"]["removed"]
    blobs = [p for p in containerd_truth["garbage"]["paths_removed"] if "/blobs/" in p]
    want = (
        f"1 lease, {len(removed['moby']['content'])} blob records, 1 snapshot, "
        f"{len(blobs)} blob files, 1 snapshot directory"
    )
    assert want in garbage["message"]
    on_disk = sum((containerd_garbage_master / p).stat().st_size for p in blobs)
    assert garbage["message"].endswith(f": {on_disk} bytes reclaimable")


# -- what is no damage ----------------------------------------------------------------------------


def _quiet_about(findings: list[Finding], *words: str) -> None:
    loud = [f for f in findings if f.severity in ("error", "warning")]
    assert not [f for f in loud if any(w in f"{f.path} {f.message} {f.object_id}" for w in words)]
    assert loud == []


def test_index_entries_never_fetched_are_no_damage(containerd_master: Path) -> None:
    """Every real pull leaves the index's other platforms (and attestations) unfetched: no
    record, no file. Added to the sample's index as read."""
    with Evidence(containerd_master) as ev:
        host = read_host(ev)
    assert host.containerd is not None
    index = host.containerd.images[
        "sha256:b880e4782271368ba4822aa41803529de1e5757a504f296e14c8e1313f8d3645"
    ]
    unfetched = [
        Descriptor(
            f"sha256:{'a' * 64}", "application/vnd.oci.image.manifest.v1+json", 500, "linux/arm64"
        ),
        Descriptor(
            f"sha256:{'b' * 64}",
            "application/vnd.oci.image.manifest.v1+json",
            800,
            "unknown/unknown",
            {"vnd.docker.reference.type": "attestation-manifest"},
        ),
    ]
    index.manifests += [ImageManifest(d) for d in unfetched]
    _quiet_about(run_checks(host), "a" * 64, "b" * 64)


@pytest.mark.parametrize(
    "what",
    [
        "docker-container-without-record",
        "init-snapshots",
        "blob-held-by-a-lease-only",
        "no-snapshot-key",
    ],
)
def test_what_is_no_damage(
    containerd_master: Path, containerd_truth: dict[str, Any], what: str
) -> None:
    with Evidence(containerd_master) as ev:
        host = read_host(ev)
    ctd = host.containerd
    assert ctd is not None
    moby, k8s = ctd.store.namespaces["moby"], ctd.store.namespaces["k8s.io"]
    if what == "docker-container-without-record":
        words = [
            c["id"] for c in containerd_truth["docker"]["containers"] if c["state"] != "running"
        ]
        assert words and not set(words) & set(moby.containers)  # as dockerd leaves them
    elif what == "init-snapshots":
        words = [key for _, key in moby.snapshots if key.endswith("-init")]
        assert len(words) == 3
    elif what == "blob-held-by-a-lease-only":
        words = moby.leases["hold-blob"].content
        held = {i.target.digest for ns in ctd.store.namespaces.values() for i in ns.images.values()}
        assert words and not set(words) & held
    else:
        words = ["k8s-no-snapshot"]
        assert k8s.containers["k8s-no-snapshot"].snapshot_key == ""
    _quiet_about(run_checks(host), *words)


# -- damage ---------------------------------------------------------------------------------------


def delete_config(root: Path) -> str:
    (root / BLOBS / APP_CONFIG).unlink()
    return f"{BLOBS}/{APP_CONFIG}"


def delete_manifest(root: Path) -> str:
    (root / BLOBS / APP_MANIFEST).unlink()
    return f"{BLOBS}/{APP_MANIFEST}"


def cut_a_layer_blob(root: Path) -> str:
    layer = "6923a48f1797668112333cd3f36174798c4191b6352f9f4e9e8584b77af5488e"
    path = root / BLOBS / layer
    path.write_bytes(path.read_bytes()[:1000])
    return f"{BLOBS}/{layer}"


def delete_committed_fs(root: Path) -> str:
    shutil.rmtree(root / SNAPSHOTS / "1" / "fs")  # moby's base layer, committed
    return f"{SNAPSHOTS}/1/fs"


def delete_a_snapshot_dir(root: Path) -> str:
    shutil.rmtree(root / SNAPSHOTS / "7")  # k8s.io's base layer
    return f"{SNAPSHOTS}/7"


def orphan_dir_with_files(root: Path) -> str:
    (root / SNAPSHOTS / "21" / "fs" / "etc").mkdir(parents=True)
    (root / SNAPSHOTS / "21" / "work").mkdir()
    (root / SNAPSHOTS / "21" / "fs" / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    return f"{SNAPSHOTS}/21"


def empty_orphan_dir(root: Path) -> str:
    (root / SNAPSHOTS / "new-123456").mkdir()
    return f"{SNAPSHOTS}/new-123456"


def leftover_ingest(root: Path) -> str:
    ingest = root / CONTENT / "ingest"
    (source,) = ingest.iterdir()
    copy = ingest / ("0" * 64)
    shutil.copytree(source, copy)
    (copy / "ref").write_text("moby/7/an-upload-nobody-finishes")
    return f"{CONTENT}/ingest/{'0' * 64}"


def meta_db_truncated(root: Path) -> str:
    """Cut short by a page inside its tree (the pages its meta counts)."""
    path = root / CONTAINERD_META_DB
    data = path.read_bytes()
    path.write_bytes(data[: (high_water(data) - 1) * BOLT_PAGE])
    return CONTAINERD_META_DB


def edit_in_place(
    root: Path, db: str, needle: str, accept: Callable[[ContainerdHost], bool], at: int = -1
) -> None:
    """Change one character (at ``at`` of ``needle``) of one occurrence of ``needle`` in the
    bolt file ``db``: the first after which ``accept`` holds of the store read back and the
    store still reads without a problem (a key or value changed in place, as by a rolled-back
    or stray write; bbolt keeps no checksum of its pages)."""
    path = root / db
    data = path.read_bytes()
    for match in re.finditer(re.escape(needle.encode()), data):
        where = (match.end() if at < 0 else match.start()) + at
        edited = bytearray(data)
        edited[where] = ord("c") if edited[where] != ord("c") else ord("d")
        path.write_bytes(bytes(edited))
        with Evidence(root) as ev:
            ctd = read_host(ev).containerd
        assert ctd is not None
        if not ctd.store.problems and accept(ctd):
            return
        path.write_bytes(data)
    raise AssertionError(f"no occurrence of {needle!r} in {db} gives what was wanted")


def rename_in_meta_db(root: Path, gone: Callable[[CtrNamespace], bool]) -> None:
    """Container "exited"'s id renamed where ``gone(moby)`` then holds."""
    edit_in_place(root, CONTAINERD_META_DB, EXITED, lambda c: gone(c.store.namespaces["moby"]))


def writable_snapshot_missing(root: Path) -> str:
    rename_in_meta_db(root, lambda moby: ("overlayfs", EXITED) not in moby.snapshots)
    return f"containers/{EXITED}"


def lease_missing(root: Path) -> str:
    rename_in_meta_db(root, lambda moby: EXITED not in moby.leases)
    return f"containers/{EXITED}"


#: damage, the check it gives (at the path the damage returns), and the exit status
DAMAGE: list[tuple[Callable[[Path], str], str, int]] = [
    (delete_config, "containerd.blob-missing", 4),
    (delete_manifest, "containerd.blob-missing", 4),
    (cut_a_layer_blob, "containerd.blob-size-mismatch", 4),
    (delete_committed_fs, "containerd.snapshot-fs-missing", 4),
    (delete_a_snapshot_dir, "containerd.snapshot-dir-missing", 4),
    (orphan_dir_with_files, "containerd.snapshot-dir-orphan", 4),
    (empty_orphan_dir, "containerd.snapshot-dir-leftover", 0),
    (leftover_ingest, "containerd.ingest-leftover", 0),
    (meta_db_truncated, "containerd.db-damaged", 4),
    (writable_snapshot_missing, "containerd.docker-snapshot-missing", 4),
    (lease_missing, "containerd.docker-lease-missing", 4),
]


@pytest.mark.parametrize(
    ("damage", "check", "status"), DAMAGE, ids=[fn.__name__ for fn, _, _ in DAMAGE]
)
def test_damage_is_reported_at_its_path(
    cli, containerd_root: Path, damage: Callable[[Path], str], check: str, status: int
) -> None:
    path = damage(containerd_root)
    code, findings, stderr = verify(cli, containerd_root)
    assert code == status, (stderr, serious(findings))
    assert stderr == ""
    got = [f for f in findings if f["check"] == check]
    assert [f["path"] for f in got] == [path], serious(findings)
    if status == 0:
        assert not [f for f in findings if f["severity"] == "error"]
    assert cli("inventory", containerd_root, "--format", "json").code == 0


def test_a_missing_manifest_names_the_images_it_breaks(cli, containerd_root: Path) -> None:
    delete_manifest(containerd_root)
    _, findings, _ = verify(cli, containerd_root)
    (missing,) = [f for f in findings if f["check"] == "containerd.blob-missing"]
    assert missing["message"] == (
        "the target of image moby/docker.io/sample/app:1.0, recorded by namespace moby: "
        "not in the content store"
    )


def test_a_truncated_meta_db_still_reports_what_it_read(cli, containerd_root: Path) -> None:
    meta_db_truncated(containerd_root)
    _, findings, _ = verify(cli, containerd_root)
    (damaged,) = [f for f in findings if f["check"] == "containerd.db-damaged"]
    assert damaged["message"].startswith("truncated: ")
    assert re.search(r"read: 2 namespaces, \d+ images", damaged["message"])


def test_a_meta_db_of_which_nothing_can_be_read_exits_8(cli, containerd_root: Path) -> None:
    path = containerd_root / CONTAINERD_META_DB
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    for verb in (("verify",), ("inventory",), ("timeline",)):
        result = cli(*verb, containerd_root)
        assert result.code == 8 and result.stdout == ""
        (line,) = result.stderr.splitlines()
        assert line.startswith(
            f"docker-forensics: {CONTAINERD_META_DB}: containerd's metadata database cannot be "
            "read (truncated: "
        )


# -- more damage, each check once -----------------------------------------------------------------

#: the second layer of docker.io/sample/app:1.0 (moby) and its DiffID
APP_LAYER_2 = "sha256:8bf393cf2efb6ffd3ddf3d90958d38ab02b5f97ca92f62bad0fde591495e0457"
APP_DIFF_2 = "sha256:248c053934ad216ab52f5fa6950e46e1917381ef3cf983c274959ccf7e02499e"
#: a ChainID in the middle of sample/app's and sample/busybox's chains
MIDDLE_CHAIN = "sha256:a7204001b2f885a155bfb137b615f845a80afe6f9947540658f7eaf1ef0c1517"


def config_not_json(root: Path) -> str:
    path = root / BLOBS / APP_CONFIG
    size = path.stat().st_size
    path.write_bytes(b"{" + b" " * (size - 1))  # the same size: only its contents are wrong
    return f"{BLOBS}/{APP_CONFIG}"


def unrecorded_blob(root: Path) -> str:
    data = b"a blob that no namespace records\n"
    name = hashlib.sha256(data).hexdigest()
    (root / BLOBS / name).write_bytes(data)
    return f"{BLOBS}/{name}"


def active_without_work(root: Path) -> str:
    shutil.rmtree(root / SNAPSHOTS / "18" / "work")  # Docker's running container
    return f"{SNAPSHOTS}/18/work"


def label_diff_id_changed(root: Path) -> str:
    def changed(ctd: ContainerdHost) -> bool:
        record = ctd.store.namespaces["moby"].content[APP_LAYER_2]
        return record.labels["containerd.io/uncompressed"] != APP_DIFF_2

    edit_in_place(root, CONTAINERD_META_DB, APP_DIFF_2, changed)
    return f"{BLOBS}/{APP_LAYER_2[7:]}"


def middle_snapshot_gone(root: Path) -> str:
    def gone(ctd: ContainerdHost) -> bool:
        snaps = ctd.store.namespaces["k8s.io"].snapshots
        return ("overlayfs", MIDDLE_CHAIN) not in snaps and len(snaps) == 8

    edit_in_place(root, CONTAINERD_META_DB, MIDDLE_CHAIN, gone)
    return CONTAINERD_META_DB


def backend_record_gone(root: Path) -> str:
    def gone(ctd: ContainerdHost) -> bool:
        names = ctd.store.snapshotters["overlayfs"].snapshots
        return not any(name.endswith(f"/{RUNNING}") for name in names)

    edit_in_place(root, CONTAINERD_SNAPSHOTTER_DB, RUNNING, gone)
    return CONTAINERD_SNAPSHOTTER_DB


def container_snapshot_gone(root: Path) -> str:
    def gone(ctd: ContainerdHost) -> bool:
        k8s = ctd.store.namespaces["k8s.io"]
        return (
            ("overlayfs", "k8s-app-running") not in k8s.snapshots
            and k8s.containers.get("k8s-app-running") is not None
            and k8s.containers["k8s-app-running"].snapshot_key == "k8s-app-running"
        )

    edit_in_place(root, CONTAINERD_META_DB, "k8s-app-running", gone)
    return CONTAINERD_META_DB


def lease_expiry_not_a_time(root: Path) -> str:
    def damaged(ctd: ContainerdHost) -> bool:
        lease = ctd.store.namespaces["moby"].leases["expires-at-once"]
        return lease.labels["containerd.io/gc.expire"] == "2026-12-07T00:19:1cZ"

    edit_in_place(root, CONTAINERD_META_DB, "2026-12-07T00:19:16Z", damaged, at=-2)
    return CONTAINERD_META_DB


def newer_meta_damaged(root: Path) -> str:
    path = root / CONTAINERD_META_DB
    data = bytearray(path.read_bytes())
    txids = [
        int.from_bytes(data[p * BOLT_PAGE + 64 : p * BOLT_PAGE + 72], "little") for p in (0, 1)
    ]
    data[txids.index(max(txids)) * BOLT_PAGE + 16] ^= 0xFF  # its magic
    path.write_bytes(bytes(data))
    return CONTAINERD_META_DB


#: damage, the check it gives at the path returned (besides others it may cause), the status
MORE_DAMAGE: list[tuple[Callable[[Path], str], str, int]] = [
    (config_not_json, "containerd.document-damaged", 4),
    (unrecorded_blob, "containerd.blob-unrecorded", 0),
    (active_without_work, "containerd.snapshot-work-missing", 4),
    (label_diff_id_changed, "containerd.diffid-mismatch", 4),
    (middle_snapshot_gone, "containerd.snapshot-chain-broken", 4),
    (middle_snapshot_gone, "containerd.snapshot-parent-missing", 4),
    (backend_record_gone, "containerd.snapshot-backend-missing", 4),
    (backend_record_gone, "containerd.snapshot-unrecorded", 4),
    (container_snapshot_gone, "containerd.container-snapshot-missing", 4),
    (lease_expiry_not_a_time, "containerd.lease-expire-damaged", 0),
    (newer_meta_damaged, "containerd.db-fell-back", 0),
]


@pytest.mark.parametrize(
    ("damage", "check", "status"),
    MORE_DAMAGE,
    ids=[f"{fn.__name__}-{check.split('.')[1]}" for fn, check, _ in MORE_DAMAGE],
)
def test_more_damage_is_reported_at_its_path(
    cli, containerd_root: Path, damage: Callable[[Path], str], check: str, status: int
) -> None:
    path = damage(containerd_root)
    code, findings, stderr = verify(cli, containerd_root)
    assert code == status, (stderr, serious(findings))
    assert stderr == ""
    assert path in [f["path"] for f in findings if f["check"] == check], serious(findings)


# -- the evidence ---------------------------------------------------------------------------------


def test_the_block_device_of_volumes_is_never_opened(
    cli, containerd_master: Path, tmp_path: Path
) -> None:
    device = containerd_master / "volumes" / "backingFsBlockDev"
    assert device.is_block_device()
    watch = Watch(device)
    try:
        assert cli("inventory", containerd_master, "--format", "json").code == 0
        assert cli("verify", containerd_master, "--sqlite", tmp_path / "c.db").code == 0
        assert cli("timeline", containerd_master).code == 0
        assert watch.events() == []
    finally:
        watch.close()


def test_the_commands_leave_the_tree_unchanged(cli, containerd_root: Path, tmp_path: Path) -> None:
    orphan_dir_with_files(containerd_root)
    before = tree_hash(containerd_root)
    assert cli("inventory", containerd_root, "--format", "json").code == 0
    assert cli("inventory", containerd_root).code == 0
    assert cli("verify", containerd_root).code == 4
    assert cli("verify", containerd_root, "--sqlite", tmp_path / "case.db").code == 4
    assert cli("timeline", containerd_root).code == 0
    assert tree_hash(containerd_root) == before
