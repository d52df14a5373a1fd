"""``verify --deep`` of the containerd-store sample and of damaged copies of it: every blob
hashed, every layer blob decompressed and its tar held against the committed snapshot it was
unpacked to, file by file.

The sample verifies clean; a file changed inside a snapshot's ``fs/`` is named (snapshot and
file) with exit 4; a byte flipped in a layer blob gives its digest and its DiffID; hostile
blobs (a decompression bomb, a member ``../x``, a stream cut short, a damaged header) are
findings, never a traceback. Every damage is done to a copy of the real sample."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from conftest import copy_tree
from inotify_watch import Watch
from sample_paths import CONTAINERD_ROOT
from test_containerd_verify import BLOBS, SNAPSHOTS, serious, verify
from treehash import tree_hash

from forensics.containerd_graph import LABEL_UNCOMPRESSED
from forensics.evidence import Evidence
from forensics.fs.compressed import StreamLimits
from forensics.layers.containerd_deep import BlobJob, check_blob, check_store, plan_blobs
from forensics.stores import read_host

#: moby's second layer of sample/app (gzip): snapshot 2 holds its files, with a whiteout
#: (etc/motd) and an opaque directory (opt/olddir)
APP_LAYER_2 = "8bf393cf2efb6ffd3ddf3d90958d38ab02b5f97ca92f62bad0fde591495e0457"
#: moby's third layer (plain tar): snapshot 3, with a hard link, a symlink and a file of
#: owner 1234
APP_LAYER_3 = "28c0d0125448cb0f1519fafb1854fd50bfc0d9b1c1816bdbdc40d0e5272e34a6"
#: the busybox base layer: gzip in moby (snapshot 1), a plain tar in k8s.io (snapshot 7)
BASE_GZIP = "6923a48f1797668112333cd3f36174798c4191b6352f9f4e9e8584b77af5488e"
BASE_PLAIN = "dd836c008f24ab003465dc7d76a3ece9a0434f31caa12b8816d8e74e436a149d"
#: sample/tiny's only layer (gzip of hello.txt; snapshot 5) and k8s.io's etc/note.txt (plain)
TINY_GZIP = "193908f21d23b25569da767c7622bd984917f67db96c2aa293aaaf9359ff5635"
NOTE_PLAIN = "9e4c043a5d007c5a4728443cfee4496836c371b2aebd4c475a412e4abf29946f"


def deep(cli: Any, root: Path, *args: Any) -> tuple[int, list[dict[str, Any]], str]:
    return verify(cli, root, "--deep", *args)


def of(findings: list[dict[str, Any]], check: str) -> list[dict[str, Any]]:
    return [f for f in findings if f["check"] == check]


# -- the sample ---------------------------------------------------------------------------------


def test_the_sample_stays_clean_under_deep(cli, containerd_master: Path, tmp_path: Path) -> None:
    code, findings, stderr = deep(cli, containerd_master)
    assert code == 0 and stderr == ""
    assert serious(findings) == []
    assert not [f for f in findings if f["check"].startswith("containerd.layer-")]
    code, findings, _ = deep(cli, containerd_master / CONTAINERD_ROOT)
    assert code == 0 and serious(findings) == []
    copy_tree(containerd_master / CONTAINERD_ROOT, tmp_path / "containerd")
    code, findings, _ = deep(cli, containerd_master, "--containerd-root", tmp_path / "containerd")
    assert code == 0 and serious(findings) == []


def test_every_layer_is_read_and_its_diff_id_recomputed(containerd_master: Path) -> None:
    """Every layer blob of the sample is decompressed to its end, and the DiffID computed
    equals what containerd recorded when it unpacked it (the label), which for a plain tar is
    its own digest; each is held against a committed snapshot."""
    with Evidence(containerd_master) as ev:
        ctd = read_host(ev).containerd
        assert ctd is not None
        reports, skipped = check_store(ev, ctd)
    assert skipped == []
    labels = {
        digest: record.labels[LABEL_UNCOMPRESSED]
        for ns in ctd.store.namespaces.values()
        for digest, record in ns.content.items()
        if LABEL_UNCOMPRESSED in record.labels
    }
    layers = [r for r in reports if r.layer]
    assert {r.digest for r in layers} == set(labels)
    for report in layers:
        assert report.diff_id == labels[report.digest], report.digest
        assert report.problems == [] and report.members > 0
        if report.codec is None:
            assert report.diff_id == report.digest
    assert {r.codec for r in layers} == {None, "gzip"}
    jobs, _ = plan_blobs(ctd)
    assert all(job.targets for job in jobs if job.layer)
    assert all(r.sha256 == r.digest[7:] for r in reports)


def test_the_text_header_counts_the_layers_read(cli, containerd_master: Path) -> None:
    """The header says what --deep read of a containerd store: its layer blobs and their
    members (not the empty graphdriver store's "0 files of 0 layers"), and leaves the images and
    layers to the store's own line."""
    with Evidence(containerd_master) as ev:
        ctd = read_host(ev).containerd
        assert ctd is not None
        reports, _ = check_store(ev, ctd)
    layers = [r for r in reports if r.layer]
    result = cli("verify", "--deep", containerd_master)
    checked = result.stdout.splitlines()[2]
    files = sum(r.members for r in layers)
    assert checked.startswith("  checked: 3 containers, "), checked
    assert f"deep: {files} files (" in checked and f"of {len(layers)} layers read" in checked
    assert files > 0 and " images" not in checked


# -- a file changed in a snapshot ---------------------------------------------------------------


def _fs(n: int, rel: str = "") -> str:
    return f"{SNAPSHOTS}/{n}/fs" + (f"/{rel}" if rel else "")


def content_changed(root: Path) -> str:
    path = root / _fs(2, "data/nested/file.txt")
    data = bytearray(path.read_bytes())
    data[0] ^= 0x20  # the same size: only its bytes differ
    path.write_bytes(bytes(data))
    return _fs(2, "data/nested/file.txt")


def content_grown(root: Path) -> str:
    with (root / _fs(4, "app/hello.txt")).open("ab") as out:
        out.write(b"appended\n")
    return _fs(4, "app/hello.txt")


def mode_changed(root: Path) -> str:
    os.chmod(root / _fs(2, "opt/olddir/new.txt"), 0o4755)
    return _fs(2, "opt/olddir/new.txt")


def owner_changed(root: Path) -> str:
    path = root / _fs(3, "data/owned")
    mode = path.stat().st_mode
    os.lchown(path, 0, 0)
    os.chmod(path, mode)  # chown cleared its set-uid bit: put back
    return _fs(3, "data/owned")


def xattr_added(root: Path) -> str:
    os.setxattr(root / _fs(1, "bin/busybox"), "security.capability", b"\x01\x00\x00\x02" * 5)
    return _fs(1, "bin/busybox")


def symlink_retargeted(root: Path) -> str:
    link = root / _fs(3, "data/link.txt")
    link.unlink()
    link.symlink_to("/etc/shadow")
    return _fs(3, "data/link.txt")


def file_deleted(root: Path) -> str:
    (root / _fs(6, "etc/note.txt")).unlink()
    return _fs(6, "etc/note.txt")


def file_planted(root: Path) -> str:
    (root / _fs(1, "bin/backdoor")).write_bytes(b"#!/bin/sh\n")
    return _fs(1, "bin/backdoor")


def whiteout_undone(root: Path) -> str:
    """The deletion of etc/motd undone: a regular file where the 0:0 device was."""
    path = root / _fs(2, "etc/motd")
    path.unlink()
    path.write_text("welcome back\n")
    return _fs(2, "etc/motd")


def opaque_cleared(root: Path) -> str:
    os.removexattr(root / _fs(2, "opt/olddir"), "trusted.overlay.opaque")
    return _fs(2, "opt/olddir")


def hard_link_broken(root: Path) -> str:
    """data/original.txt is a hard link of data/hardlink.txt in the layer: now a copy."""
    path = root / _fs(3, "data/original.txt")
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data)
    os.chmod(path, 0o644)
    return _fs(3, "data/original.txt")


def directory_made_a_symlink(root: Path) -> str:
    shutil.rmtree(root / _fs(2, "data/nested"))
    (root / _fs(2, "data/nested")).symlink_to("/etc")
    return _fs(2, "data/nested")


SNAPSHOT_DAMAGE = [
    (content_changed, "containerd.snapshot-file-modified", "sha256 "),
    (content_grown, "containerd.snapshot-file-modified", "bytes in the snapshot"),
    (mode_changed, "containerd.snapshot-file-mode-changed", "mode 4755 in the snapshot, 0644"),
    (owner_changed, "containerd.snapshot-file-metadata-changed", "owner 0:0 in the snapshot"),
    (xattr_added, "containerd.snapshot-file-metadata-changed", "xattr security.capability"),
    (symlink_retargeted, "containerd.snapshot-file-modified", "points to '/etc/shadow'"),
    (file_deleted, "containerd.snapshot-file-missing", "the snapshot has none"),
    (file_planted, "containerd.snapshot-file-extra", "not in the layer"),
    (whiteout_undone, "containerd.snapshot-whiteout-changed", "a regular file where"),
    (opaque_cleared, "containerd.snapshot-whiteout-changed", "carries no"),
    (hard_link_broken, "containerd.snapshot-file-modified", "not a hard link of"),
    (directory_made_a_symlink, "containerd.snapshot-file-type-changed", "is a symlink"),
]
#: damage that names the files below the path too
BELOW = {directory_made_a_symlink: ["nested/file.txt"]}


@pytest.mark.parametrize(
    ("damage", "check", "words"), SNAPSHOT_DAMAGE, ids=[d.__name__ for d, _, _ in SNAPSHOT_DAMAGE]
)
def test_a_file_changed_in_a_snapshot_is_named(
    cli, containerd_root: Path, damage: Any, check: str, words: str
) -> None:
    path = damage(containerd_root)
    code, findings, stderr = deep(cli, containerd_root)
    assert code == 4 and stderr == ""
    (hit,) = [f for f in of(findings, check) if f["path"] == path]
    assert hit["object_type"] == "snapshot"
    assert hit["message"].startswith(f"snapshot {hit['object_id']}, /")
    assert words in hit["message"]
    # only the file at fault (and what lies below it), nothing about the blob: it is intact
    below = [f"{path.rsplit('/', 1)[0]}/{rel}" for rel in BELOW.get(damage, [])]
    assert [f["path"] for f in serious(findings)] == [path, *below]


def test_a_changed_file_names_each_snapshot_and_only_deep_finds_it(
    cli, containerd_root: Path
) -> None:
    path = content_changed(containerd_root)
    code, findings, _ = verify(cli, containerd_root)
    assert code == 0 and serious(findings) == []
    _, findings, _ = deep(cli, containerd_root)
    (hit,) = of(findings, "containerd.snapshot-file-modified")
    assert hit["object_id"].startswith("moby/overlayfs/sha256:")
    assert "/data/nested/file.txt: sha256 " in hit["message"]
    assert hit["path"] == path


# -- a byte flipped in a blob -------------------------------------------------------------------


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_byte_flipped_in_a_gzip_layer_blob(cli, containerd_root: Path) -> None:
    blob = containerd_root / BLOBS / BASE_GZIP
    flip(blob, blob.stat().st_size // 2)
    code, findings, stderr = deep(cli, containerd_root)
    assert code == 4 and stderr == ""
    where = f"{BLOBS}/{BASE_GZIP}"
    (digest,) = of(findings, "containerd.blob-digest-mismatch")
    assert digest["path"] == where and digest["object_id"] == f"sha256:{BASE_GZIP}"
    (damaged,) = of(findings, "containerd.layer-damaged")
    assert damaged["path"] == where and "gzip stream is damaged" in damaged["message"]
    # cut short by the damage: no file beyond it is called extra
    assert not of(findings, "containerd.snapshot-file-extra")


def test_a_byte_flipped_in_a_plain_layer_blob_gives_its_diff_id(cli, containerd_root: Path) -> None:
    """A byte of busybox's data flipped in k8s.io's plain tar: the blob's digest and its
    DiffID are wrong, and the file that now differs from the snapshot is named, saying that
    the blob itself changed."""
    blob = containerd_root / BLOBS / BASE_PLAIN
    data = blob.read_bytes()
    flip(blob, data.index(b"BusyBox") + 2)
    code, findings, _ = deep(cli, containerd_root)
    assert code == 4
    where = f"{BLOBS}/{BASE_PLAIN}"
    assert [f["path"] for f in of(findings, "containerd.blob-digest-mismatch")] == [where]
    diff_ids = of(findings, "containerd.layer-diffid-mismatch")
    assert {f["path"] for f in diff_ids} == {where}
    assert any(f"sha256:{BASE_PLAIN}" in f["message"] for f in diff_ids)
    (file,) = of(findings, "containerd.snapshot-file-modified")
    assert file["path"] == _fs(7, "bin/busybox")
    assert file["object_id"].startswith("k8s.io/overlayfs/")
    assert "the blob itself changed" in file["message"]


# -- hostile blobs ------------------------------------------------------------------------------


def _replace_blob(root: Path, digest: str, data: bytes) -> None:
    """The blob file's bytes replaced, its size kept out of the question (the records are
    not rewritten: the digest, the DiffID and the files are what --deep judges)."""
    (root / BLOBS / digest).write_bytes(data)


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_a_member_that_climbs_out_is_never_looked_up(cli, containerd_root: Path) -> None:
    (containerd_root / "x").write_text("outside the layer\n")
    _replace_blob(containerd_root, TINY_GZIP, gzip.compress(_tar([("../../../../x", b"x\n")])))
    code, findings, stderr = deep(cli, containerd_root)
    assert code == 4 and stderr == ""
    (unsafe,) = of(findings, "containerd.layer-unsafe-path")
    assert unsafe["path"] == f"{BLOBS}/{TINY_GZIP}"
    assert "'../../../../x'" in unsafe["message"] and "never looked up" in unsafe["message"]
    # the layer's own file is no longer in its tar: the snapshot's hello.txt is extra
    (extra,) = of(findings, "containerd.snapshot-file-extra")
    assert extra["path"] == _fs(5, "hello.txt")


def _check_tiny(root: Path) -> Any:
    with Evidence(root) as ev:
        ctd = read_host(ev).containerd
        assert ctd is not None
        jobs, _ = plan_blobs(ctd)
        (job,) = [j for j in jobs if j.digest == f"sha256:{TINY_GZIP}"]
        return check_blob(ev, job)


def test_a_hard_link_out_of_the_layer_is_never_looked_up(containerd_root: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo("hello.txt"), io.BytesIO())
        link = tarfile.TarInfo("escape")
        link.type, link.linkname = tarfile.LNKTYPE, "../../../../etc/passwd"
        tar.addfile(link)
    _replace_blob(containerd_root, TINY_GZIP, gzip.compress(out.getvalue()))
    report = _check_tiny(containerd_root)
    (unsafe,) = [p for p in report.problems if p.kind == "layer-unsafe-path"]
    assert "'escape' is a hard link to '../../../../etc/passwd'" in unsafe.message


def test_a_tar_of_many_members_is_reported_within_bounds(containerd_root: Path) -> None:
    """30,000 members that the snapshot lacks: a thousand named, the rest counted."""
    members = [(f"d/f{n}", b"") for n in range(30_000)]
    _replace_blob(containerd_root, TINY_GZIP, gzip.compress(_tar(members), 1))
    report = _check_tiny(containerd_root)
    missing = [p for p in report.problems if p.kind == "snapshot-file-missing"]
    assert len(missing) == 1001
    assert missing[-1].message.endswith(": 29000 more of these not named one by one")
    assert report.members == 30_000


def test_a_blob_cut_short(cli, containerd_root: Path) -> None:
    blob = containerd_root / BLOBS / BASE_GZIP
    blob.write_bytes(blob.read_bytes()[: blob.stat().st_size // 2])
    code, findings, stderr = deep(cli, containerd_root)
    assert code == 4 and stderr == ""
    (damaged,) = of(findings, "containerd.layer-damaged")
    assert "cut short" in damaged["message"]
    assert not of(findings, "containerd.layer-diffid-mismatch")  # no DiffID of half a stream
    assert not of(findings, "containerd.snapshot-file-extra")


def test_a_damaged_tar_header(cli, containerd_root: Path) -> None:
    blob = containerd_root / BLOBS / NOTE_PLAIN
    flip(blob, 512 + 3)  # the name of the second member (etc/note.txt)
    code, findings, stderr = deep(cli, containerd_root)
    assert code == 4 and stderr == ""
    (damaged,) = of(findings, "containerd.layer-damaged")
    assert "the tar is damaged at byte 512: header checksum mismatch" in damaged["message"]
    assert of(findings, "containerd.layer-diffid-mismatch")  # the stream itself was read whole


def test_a_decompression_bomb_is_capped(containerd_root: Path) -> None:
    """A gzip of 8 MiB of zeros in place of a layer blob, read with caps of 1 MiB past 10
    times its size: reported, not expanded."""
    bomb = gzip.compress(_tar([("hello.txt", bytes(8 << 20))]), 9)
    _replace_blob(containerd_root, TINY_GZIP, bomb)
    limits = StreamLimits(max_ratio=10, ratio_floor=1 << 20)
    with Evidence(containerd_root) as ev:
        ctd = read_host(ev).containerd
        assert ctd is not None
        jobs, _ = plan_blobs(ctd, limits)
        (job,) = [j for j in jobs if j.digest == f"sha256:{TINY_GZIP}"]
        report = check_blob(ev, job)
    kinds = {p.kind: p for p in report.problems}
    assert "decompression bomb" in kinds["layer-damaged"].message
    assert kinds["layer-damaged"].damage == "bomb"
    assert report.diff_id is None and report.tar_bytes <= 2 << 20


def test_a_zstd_layer_is_read_as_the_gzip_one(containerd_root: Path) -> None:
    """k8s.io's plain etc/note.txt layer compressed with zstd (as ``zstd`` writes it): read
    to the same DiffID, and held against the same snapshot without a problem."""
    plain = (containerd_root / BLOBS / NOTE_PLAIN).read_bytes()
    packed = containerd_root / "note.tar.zst"
    packed.write_bytes(plain)
    subprocess.run(["zstd", "-q", "--rm", "-o", str(packed) + ".tmp", str(packed)], check=True)
    data = Path(str(packed) + ".tmp").read_bytes()
    assert data[:4] == b"\x28\xb5\x2f\xfd"
    name = hashlib.sha256(data).hexdigest()
    (containerd_root / BLOBS / name).write_bytes(data)
    with Evidence(containerd_root) as ev:
        ctd = read_host(ev).containerd
        assert ctd is not None
        jobs, _ = plan_blobs(ctd)
        (plain_job,) = [j for j in jobs if j.digest == f"sha256:{NOTE_PLAIN}"]
        job = BlobJob(
            f"sha256:{name}",
            f"{BLOBS}/{name}",
            len(data),
            True,
            plain_job.diff_ids,
            plain_job.labels,
            plain_job.targets,
        )
        report = check_blob(ev, job)
    assert report.codec == "zstd"
    assert report.diff_id == f"sha256:{NOTE_PLAIN}"
    assert report.problems == [] and report.members == 2


# -- read-only ----------------------------------------------------------------------------------


def test_deep_and_diff_leave_the_tree_unchanged(cli, containerd_root: Path) -> None:
    file_planted(containerd_root)
    whiteout_undone(containerd_root)
    before = tree_hash(containerd_root)
    assert deep(cli, containerd_root)[0] == 4
    assert cli("diff", "exited", containerd_root).code == 0
    assert cli("diff", "k8s-app-running", containerd_root).code == 0
    assert tree_hash(containerd_root) == before


def test_whiteout_devices_are_never_opened(cli, containerd_master: Path) -> None:
    """The 0:0 character devices of the snapshots (whiteouts) are looked at, never opened."""
    devices = [containerd_master / _fs(n, rel) for n, rel in ((2, "etc/motd"), (8, "etc/motd"))]
    assert all(_is_char(d) for d in devices)
    watch = Watch(*devices)
    try:
        assert deep(cli, containerd_master)[0] == 0
        assert cli("diff", "exited", containerd_master).code == 0
        assert watch.events() == []
    finally:
        watch.close()


def _is_char(path: Path) -> bool:
    return stat.S_ISCHR(path.lstat().st_mode)
