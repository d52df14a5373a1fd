"""verify --deep on the devicemapper samples of both eras: every layer's files read from its
thin device, without a kernel, a mount or root.

On the samples as made, every layer's checksum recomputes (legacy: the graph ``checksum``
TarSum, with the image json; modern: the DiffID, whose ChainIDs name the layers), exit 0. On
copies damaged through the real tools (``thin_dump``/``thin_restore`` for the pool, ``debugfs``
and ``xfs_db`` for the filesystems, the changed blocks written back copy-on-write as dm-thin
does: ``dm_damage``), each damage is reported naming the layer and the file in it, exit 4. And
the files the tool reads from each device are what e2fsprogs and xfsprogs read from the same
device cut out with ``thin extract``.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
from pathlib import Path
from typing import Any

import dm_damage as dd
import pytest
from conftest import copy_tree
from test_samples_dm import ext4_tree, needs, rootfs, xfs_tree
from unprivileged import reachable_tmpdir, run_cli_unprivileged

from forensics.evidence import Evidence
from forensics.fs import walk
from forensics.layers.confine import Refusal
from forensics.layers.devices import DeviceRef, close_pools, open_device_dir

pytestmark = needs("thin_dump", "thin_restore", "thin_check", "debugfs", "dumpe2fs", "xfs_db")

LEGACY_BASE = "22f3bf58cd096c53c39f7d7b7558eeb83e7b95afcd59c6bd882ccf77f20f9ed6"
#: a legacy layer whose tar is empty (Docker 1.8's layer of a CMD), and its child
LEGACY_EMPTY = "120aa13c9429aacc9263b6e55cea72661fb0ac9b531f36f6e878af7387f09cf5"
LEGACY_EMPTY_CHILD = "ecb6b23741bc9bc8749b2e56b1ad5067d7faa4cfdd18e0c44c05e997543f6ec6"
#: the legacy layers above the base: their tars are empty too
LEGACY_SECOND = "76408ff4c05dda155bdf86b73eae53b2789fa83875e0ad9621731a2706b65603"
LEGACY_THIRD = "3e10c548c89977dfe17ce29e4cded715e118b73a26a1efe26ba5e6ad009854bd"


def layer_findings(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in doc["findings"] if f["check"].startswith("layer.")]


def named(doc: dict[str, Any], check: str, layer: str, path: str) -> dict[str, Any]:
    """The one finding of ``check`` on ``layer`` naming ``path`` inside it."""
    hits = [
        f
        for f in doc["findings"]
        if f["check"] == check
        and f["object_id"] == layer
        and f["path"].endswith(f"/rootfs/{path}")
        and f"/{path}:" in f["message"]
        and layer in f["message"]
    ]
    assert len(hits) == 1, (check, layer, path, layer_findings(doc))
    return hits[0]


# -- the samples as made ------------------------------------------------------------------------


def test_legacy_every_checksum_recomputes(
    cli, dm_master: Path, dm_truth: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "case.db"
    result = cli("verify", dm_master, "--deep", "--format", "json", "--sqlite", out)
    assert result.code == 0, result.stdout
    doc = result.json()
    assert layer_findings(doc) == []
    layers = {layer["layer_id"]: layer for layer in doc["layers"]}
    assert set(layers) == {layer["id"] for layer in dm_truth["layers"]}
    db = sqlite3.connect(out)
    for truth in dm_truth["layers"]:
        got = layers[truth["id"]]
        assert got["complete"] and got["diff_id"] == truth["diff_id"], truth["id"]
        assert got["tarsum"] == got["recorded_tarsum"] == truth["checksum"]
        assert got["tarsum_payload"] == "json"
        assert got["source"] == f"thin device {truth['device_id']} of {dd.POOL} (ext4)"
        rows = db.execute(
            "SELECT path, status FROM layer_files WHERE layer_id = ?", (truth["id"],)
        ).fetchall()
        names = {"/" + m["name"].rstrip("/") for m in truth["tar_members"]}
        assert {p for p, _ in rows} == names and {s for _, s in rows} <= {"ok"}
        (source,) = db.execute(
            "SELECT source FROM layer_checks WHERE layer_id = ?", (truth["id"],)
        ).fetchone()
        assert source == got["source"]
    db.close()


def test_modern_every_diff_id_recomputes(
    cli, modern_dm_master: Path, modern_dm_truth: dict[str, Any]
) -> None:
    result = cli("verify", modern_dm_master, "--deep", "--format", "json")
    assert result.code == 0, result.stdout
    doc = result.json()
    assert layer_findings(doc) == []
    layers = {layer["layer_id"]: layer for layer in doc["layers"]}
    for truth in modern_dm_truth["layers"]:
        got = layers[truth["chain_id"]]  # the layer's ChainID: recomputed by the quick checks
        assert got["diff_id"] == got["recorded_diff_id"] == truth["diff_id"]
        assert got["diff_id_matches"] and got["counts"]["ok"] == len(truth["tar_members"])
        assert got["source"] == f"thin device {truth['device_id']} of {dd.POOL} (xfs)"


@pytest.mark.parametrize("sample", ["dm_master", "modern_dm_master"])
def test_unprivileged_and_the_pool_unchanged(sample: str, request: pytest.FixtureRequest) -> None:
    """As nobody, on a copy readable by all: exit 0, and the pool files are the same bytes."""
    master: Path = request.getfixturevalue(sample)
    with reachable_tmpdir() as tmp:
        root = copy_tree(master, tmp / "docker")
        subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
        before = dd.pool_digest(root)
        result = run_cli_unprivileged("verify", root, "--deep", "--format", "json")
        assert result.code == 0, result.stdout + result.stderr
        assert result.json()["layers"] and layer_findings(result.json()) == []
        assert dd.pool_digest(root) == before


# -- damage -------------------------------------------------------------------------------------


def _flip_first_byte(root: Path, dev_id: int, path: str, tmp: Path, xfs: bool) -> None:
    """One byte of the file's first data block changed in the pool's data file, found through
    the filesystem's block map (debugfs / xfs_db) and the pool's mapping (thin_dump)."""
    image = dd.extract_device(root, dev_id, tmp / f"dev{dev_id}.img")
    offset = dd.file_offset_xfs(image, path) if xfs else dd.file_offsets_ext4(image, path)[0]
    where = dd.PoolXml(root).data_offset(dev_id, offset)
    image.unlink()
    with (root / dd.POOL / "data").open("r+b") as data:
        data.seek(where)
        byte = data.read(1)
        data.seek(where)
        data.write(bytes([byte[0] ^ 0x20]))


def test_byte_changed_in_a_data_block_legacy(
    cli, dm_root: Path, dm_truth: dict[str, Any], tmp_path: Path
) -> None:
    _flip_first_byte(dm_root, 2, "/rootfs/bin/dash", tmp_path, xfs=False)
    result = cli("verify", dm_root, "--deep", "--format", "json")
    assert result.code == 4
    doc = result.json()
    named(doc, "layer.file-modified", LEGACY_BASE, "bin/dash")
    (tarsum,) = [f for f in doc["findings"] if f["check"] == "layer.tarsum-mismatch"]
    assert tarsum["object_id"] == LEGACY_BASE
    assert {f["object_id"] for f in layer_findings(doc)} == {LEGACY_BASE}


def test_byte_changed_in_a_data_block_modern(
    cli, modern_dm_root: Path, modern_dm_truth: dict[str, Any], tmp_path: Path
) -> None:
    first = modern_dm_truth["layers"][0]
    _flip_first_byte(modern_dm_root, first["device_id"], "/rootfs/bin/busybox", tmp_path, True)
    result = cli("verify", modern_dm_root, "--deep", "--format", "json")
    assert result.code == 4
    doc = result.json()
    named(doc, "layer.file-modified", first["chain_id"], "bin/busybox")
    (mismatch,) = [f for f in doc["findings"] if f["check"] == "layer.diff-id-mismatch"]
    assert mismatch["object_id"] == first["chain_id"]


def _change(root: Path, dev_id: int, tmp: Path, *commands: str, xfs: bool = False) -> None:
    """Run debugfs -w (or xfs_db -x) commands on the device, written back copy-on-write."""
    before = dd.extract_device(root, dev_id, tmp / f"before{dev_id}.img")
    after = tmp / f"after{dev_id}.img"
    subprocess.run(["cp", "--sparse=always", str(before), str(after)], check=True)
    if xfs:
        args = [dd.sbin("xfs_db") or "xfs_db", "-x"]
        for command in commands:
            args += ["-c", command]
        subprocess.run([*args, str(after)], check=True, capture_output=True)
    else:
        dd.debugfs_write(after, *commands)
    dd.write_device(dd.PoolXml(root), dev_id, before, after, tmp)
    before.unlink()
    after.unlink()


def test_file_removed_from_a_layer_device(cli, dm_root: Path, tmp_path: Path) -> None:
    """A file of the layer's own tar gone: missing; a file it inherits gone without a
    whiteout in its tar: removed (its child, which still holds it, points at the cause)."""
    _change(dm_root, 2, tmp_path, "rm /rootfs/etc/debian_version")
    _change(dm_root, 3, tmp_path, "rm /rootfs/etc/hostname")
    result = cli("verify", dm_root, "--deep", "--format", "json")
    assert result.code == 4
    doc = result.json()
    named(doc, "layer.file-missing", LEGACY_BASE, "etc/debian_version")
    removed = named(doc, "layer.file-removed", LEGACY_SECOND, "etc/hostname")
    assert "no whiteout" in removed["message"]
    echo = named(doc, "layer.file-extra", LEGACY_THIRD, "etc/hostname")
    assert echo["caused_by"] == f"layer.file-removed:{removed['path']}"
    assert removed["affects"] == [f"layer:{LEGACY_THIRD}"]


def test_file_added_to_a_layer_device(cli, dm_root: Path, tmp_path: Path) -> None:
    """Added behind Docker's back: in a layer whose tar is empty, and in the base layer."""
    (tmp_path / "evil").write_bytes(b"evil\n")
    _change(dm_root, 7, tmp_path, "cd /rootfs/etc", f"write {tmp_path / 'evil'} evil")
    _change(dm_root, 2, tmp_path, "cd /rootfs/bin", f"write {tmp_path / 'evil'} evil")
    result = cli("verify", dm_root, "--deep", "--format", "json")
    assert result.code == 4
    doc = result.json()
    named(doc, "layer.file-extra", LEGACY_EMPTY, "etc/evil")
    named(doc, "layer.file-extra", LEGACY_BASE, "bin/evil")
    echo = named(doc, "layer.file-removed", LEGACY_EMPTY_CHILD, "etc/evil")
    cause = f"layer.file-extra:devicemapper/mnt/{LEGACY_EMPTY}/rootfs/etc/evil"
    assert echo["caused_by"] == cause


def test_whiteout_target_present(cli, dm_root: Path, tmp_path: Path) -> None:
    """The layer's tar deletes var/lib/apt/lists/lock (``.wh.lock``): put back in its device,
    it is named as present though deleted (its child, which lacks it, points at the cause)."""
    (tmp_path / "lock").write_bytes(b"")
    _change(dm_root, 8, tmp_path, "cd /rootfs/var/lib/apt/lists", f"write {tmp_path / 'lock'} lock")
    result = cli("verify", dm_root, "--deep", "--format", "json")
    assert result.code == 4
    doc = result.json()
    hit = named(doc, "layer.file-extra", LEGACY_EMPTY_CHILD, "var/lib/apt/lists/.wh.lock")
    assert "deleted by this layer, but present" in hit["message"]


def test_mode_changed_legacy(cli, dm_root: Path, tmp_path: Path) -> None:
    _change(dm_root, 2, tmp_path, "sif /rootfs/bin/su mode 0100755")
    result = cli("verify", dm_root, "--deep", "--format", "json")
    assert result.code == 4
    hit = named(result.json(), "layer.file-mode-changed", LEGACY_BASE, "bin/su")
    assert "mode 0755 on disk, 4755 in the layer" in hit["message"]


def test_mode_changed_modern(
    cli, modern_dm_root: Path, modern_dm_truth: dict[str, Any], tmp_path: Path
) -> None:
    first = modern_dm_truth["layers"][0]
    image = dd.extract_device(modern_dm_root, first["device_id"], tmp_path / "probe.img")
    ino = dd.run("xfs_db", "-r", "-c", "path /rootfs/bin/su", "-c", "inode", image).stdout
    image.unlink()
    number = int(ino.split("current inode number is ")[1].split()[0])
    dev = first["device_id"]
    _change(modern_dm_root, dev, tmp_path, f"inode {number}", "write core.mode 0100755", xfs=True)
    result = cli("verify", modern_dm_root, "--deep", "--format", "json")
    assert result.code == 4
    named(result.json(), "layer.file-mode-changed", first["chain_id"], "bin/su")


def test_unmapped_data_block_reads_as_zeros(
    cli, dm_root: Path, dm_truth: dict[str, Any], tmp_path: Path
) -> None:
    """The pool's mapping of a 64 KiB block in the middle of usr/sbin/nginx (nginx's files
    alone) removed from its layer's device (thin_dump, edited, thin_restore): that part of it
    reads as zeros."""
    layer = next(la for la in dm_truth["layers"] if "usr/sbin/nginx" in la["files"])
    dev = layer["device_id"]
    image = dd.extract_device(dm_root, dev, tmp_path / "dev.img")
    path = "/rootfs/usr/sbin/nginx"
    offsets = dd.file_offsets_ext4(image, path, range(160))
    image.unlink()
    pool = dd.PoolXml(dm_root)
    # a pool block whose 16 filesystem blocks are 16 consecutive blocks of the file
    start = next(
        i for i in range(len(offsets) - 15)
        if offsets[i] % pool.block == 0
        and offsets[i : i + 16] == list(range(offsets[i], offsets[i] + pool.block, 4096))
    )  # fmt: skip
    pool.remap(dev, offsets[start] // pool.block, None)
    pool.save(tmp_path)
    result = cli("verify", dm_root, "--deep", "--format", "json")
    assert result.code == 4
    doc = result.json()
    hit = named(doc, "layer.file-modified", layer["id"], "usr/sbin/nginx")
    assert "crc64" in hit["message"]
    assert {f["object_id"] for f in layer_findings(doc)} == {layer["id"]}


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_zeroed_superblock_is_that_layer_unreadable(
    era: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The filesystem superblock of one layer's device zeroed: that layer is unreadable
    (never read through a backup superblock), every other layer still checked."""
    cli = request.getfixturevalue("cli")
    root: Path = request.getfixturevalue("dm_root" if era == "legacy" else "modern_dm_root")
    truth = request.getfixturevalue("dm_truth" if era == "legacy" else "modern_dm_truth")
    victim = truth["layers"][1]
    dev = victim["device_id"]
    before = dd.extract_device(root, dev, tmp_path / "before.img")
    after = tmp_path / "after.img"
    subprocess.run(["cp", "--sparse=always", str(before), str(after)], check=True)
    with after.open("r+b") as f:
        f.seek(0 if era == "modern" else 1024)
        f.write(bytes(512 if era == "modern" else 1024))
    dd.write_device(dd.PoolXml(root), dev, before, after, tmp_path)
    result = cli("verify", root, "--deep", "--format", "json")
    assert result.code == 4
    doc = result.json()
    victim_id = victim.get("id") or victim["chain_id"]
    (hit,) = [f for f in doc["findings"] if f["check"] == "layer.content-unreadable"]
    assert hit["object_id"] == victim_id and victim_id in hit["message"]
    assert f"thin device {dev}" in hit["message"] and "zeros" in hit["message"]
    errors = {f["object_id"] for f in doc["findings"] if f["severity"] == "error"}
    assert errors == {victim_id}
    others = [layer for layer in doc["layers"] if layer["layer_id"] != victim_id]
    assert len(others) == len(truth["layers"]) - 1
    assert all(layer["complete"] and layer["counts"]["missing"] == 0 for layer in others)
    if era == "legacy":
        assert all(layer["tarsum"] == layer["recorded_tarsum"] for layer in others)
    else:
        assert all(layer["diff_id_matches"] for layer in others)


# -- the files read, held against e2fsprogs and xfsprogs ------------------------------------------


def tool_tree(root: Path, ref: DeviceRef) -> dict[str, dict[str, Any]]:
    """Every member of the device's rootfs/ as the tool reads it (the tree verify --deep
    reads), in the truth's record shape."""
    ev = Evidence(root)
    try:
        tree = open_device_dir(ev, ref)
        out: dict[str, dict[str, Any]] = {}
        problems: list[Any] = []
        with tree:
            for walked in walk(tree.tree, problems, top=tree.top):
                parts = walked.parts[1:]
                st = walked.stat
                out[b"/".join(parts).decode()] = _record(tree, parts, st)
        assert problems == []
        return out
    finally:
        close_pools(ev)
        ev.close()


_KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink",
          stat.S_IFCHR: "char", stat.S_IFBLK: "block", stat.S_IFIFO: "fifo"}  # fmt: skip


def _record(tree: Any, parts: tuple[bytes, ...], st: Any) -> dict[str, Any]:
    kind = _KINDS[stat.S_IFMT(st.mode)]
    rec: dict[str, Any] = {
        "type": kind,
        "mode": f"{st.mode:o}",
        "uid": st.uid,
        "gid": st.gid,
        "nlink": st.nlink,
    }
    if kind != "dir":
        rec["size"] = st.size
    if kind == "file":
        opened = tree.open_regular(parts)
        handle = opened[0]
        with handle:
            rec["sha256"] = hashlib.sha256(handle.read()).hexdigest()
    if kind == "symlink":
        rec["target"] = tree.readlink(parts).decode()
    if kind in ("char", "block"):
        rec["rdev"] = [os.major(st.rdev), os.minor(st.rdev)]
    xattrs = tree.tree.xattrs((*tree.top, *parts))
    if xattrs:
        rec["xattrs"] = {k.decode(): v.hex() for k, v in sorted(xattrs.items())}
    for name in ("mtime", "atime", "ctime", "crtime"):
        value = getattr(st, f"{name}_ns")
        rec[name], rec[f"{name}_ns"] = divmod(value, 1_000_000_000)
    return rec


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_files_read_equal_what_e2fsprogs_and_xfsprogs_read(
    era: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    root: Path = request.getfixturevalue("dm_master" if era == "legacy" else "modern_dm_master")
    truth = request.getfixturevalue("dm_truth" if era == "legacy" else "modern_dm_truth")
    for layer in truth["layers"]:
        name = layer.get("id") or layer["cache_id"]
        record = truth["devices"][name]
        ref = DeviceRef(name, record["device_id"], None)
        image = dd.extract_device(root, record["device_id"], tmp_path / f"{name}.img")
        if era == "legacy":
            theirs = rootfs(ext4_tree(image, "", tmp_path))
        else:
            theirs = rootfs(xfs_tree(image, tmp_path))
        image.unlink()
        assert tool_tree(root, ref) == theirs, name


# -- the file-size cap ----------------------------------------------------------------------------


def test_a_crafted_inode_size_is_capped_without_a_size_record(
    dm_root: Path, tmp_path: Path
) -> None:
    """A device read without Docker's size record, whose last mapped block (the zeros mkfs
    wrote at the device's end) is unmapped, and bin/su's inode claiming 99 GiB: less than the
    100 GiB its filesystem claims, more than the device maps. The layer's tree refuses the
    file as too large, as ``thin files`` does (one cap), instead of reading 99 GiB of holes."""
    pool = dd.PoolXml(dm_root)
    last = pool.runs[2][-1]
    assert last.length == 1 and last.vbegin == (100 << 30) // pool.block - 1
    pool.remap(2, last.vbegin, None)
    pool.save(tmp_path)
    _change(dm_root, 2, tmp_path, f"sif /rootfs/bin/su size {99 << 30}")
    ref = DeviceRef(LEGACY_BASE, 2, None)
    ev = Evidence(dm_root)
    try:
        with open_device_dir(ev, ref) as tree:
            st = tree.lstat((b"bin", b"su"))
            assert not isinstance(st, Refusal) and st.st_size == 99 << 30
            opened = tree.open_regular((b"bin", b"su"))
            assert isinstance(opened, Refusal), "a 99 GiB file opened past the mapped end"
            assert opened.kind == "unreadable" and "more than the" in opened.detail
            dash = tree.open_regular((b"bin", b"dash"))
            assert not isinstance(dash, Refusal)
            dash[0].close()
    finally:
        close_pools(ev)
        ev.close()


# -- a layer held against its parent through the pool's sharing -----------------------------------


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_shared_members_are_skipped_only_when_identical(
    era: str, request: pytest.FixtureRequest
) -> None:
    """Every layer's tree held against its parent's with the members both devices keep in
    the same data blocks skipped, and with every member looked at: the same changes; and
    some members (a snapshot's inherited inodes) are skipped."""
    from forensics.layers import diff as layer_diff
    from forensics.layers import plan_layers
    from forensics.stores import read_host

    root: Path = request.getfixturevalue("dm_master" if era == "legacy" else "modern_dm_master")
    ev = Evidence(root)
    skipped = 0
    try:
        jobs = [j for j in plan_layers(read_host(ev))[0] if j.parent_device is not None]
        assert jobs
        for job in jobs:
            with open_device_dir(ev, job.device) as tree:
                with open_device_dir(ev, job.parent_device) as parent:
                    shared = tree.shared_members(parent)
                    assert shared is not None
                    fast = layer_diff.tree_diff(tree, parent)
                    differ = layer_diff._Differ(
                        layer_diff._View([tree], "none"),
                        layer_diff._View([parent], "none"),
                        [tree, parent],
                        "none",
                    )
                    slow: list[layer_diff.Change] = []
                    differ.run(slow)  # no shortcut: every member stat'ed on both sides
                    assert fast.changes == slow and fast.inserted == differ.inserted
                    skipped += sum(
                        1
                        for w in walk(tree.tree, [], top=tree.top)
                        if len(w.parts) > 1 and shared(w.parts[1:])
                    )
    finally:
        close_pools(ev)
        ev.close()
    assert skipped > 0


def test_inherited_file_changed_in_a_child_device(cli, dm_root: Path, tmp_path: Path) -> None:
    """bin/su's mode changed in the device of a layer whose tar is empty: its inode's block
    is written copy-on-write, no longer shared with the parent's, and the change is found."""
    _change(dm_root, 3, tmp_path, "sif /rootfs/bin/su mode 0100755")
    result = cli("verify", dm_root, "--deep", "--format", "json")
    assert result.code == 4
    hit = named(result.json(), "layer.file-inherited-changed", LEGACY_SECOND, "bin/su")
    assert "mode 4755 → 0755" in hit["message"]
