"""The legacy Docker 1.8.2 devicemapper sample judged by e2fsprogs and thin-provisioning-tools:
every thin device cut out of the pool is a clean ext4 whose files are the truth's, the
container's files differ from its init layer's as ``docker diff`` says, and every layer's
tar-split rebuilds from its device the tar whose DiffID and TarSum the truth records."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import DM_SAMPLE, SAMPLES
from test_samples_dm import (
    ext4_tree,
    extract,
    lsdel,
    naive_diff,
    needs,
    pool_mappings,
    rootfs,
    run,
)

from forensics.layers.tarsum import TarSum

SCRIPT = SAMPLES / "make-legacy-devicemapper-sample.py"
POOL = "devicemapper/devicemapper"

pytestmark = needs("thin_dump", "debugfs", "e2fsck", "dumpe2fs")


@pytest.fixture(scope="module")
def devices(
    dm_master: Path, dm_truth: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Every device of the pool as a sparse image, by its metadata file name."""
    out = tmp_path_factory.mktemp("legacy-devices")
    block, runs = pool_mappings(dm_master / POOL / "metadata")
    images = {}
    for name, dev in dm_truth["devices"].items():
        image = out / f"{dev['device_id']}.img"
        extract(dm_master / POOL / "data", runs[dev["device_id"]], block, dev["size"], image)
        images[name] = image
    return images


@pytest.fixture(scope="module")
def trees(
    devices: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every device's whole tree as debugfs reads it."""
    scratch = tmp_path_factory.mktemp("legacy-rdump")
    return {name: ext4_tree(image, "", scratch) for name, image in devices.items()}


def test_archive_is_small() -> None:
    """Real filesystems in 13 devices of 100 GiB: about 2 MB packed (thin_restore writes one
    unshared mapping tree per device)."""
    assert (SAMPLES / f"{DM_SAMPLE}.tar.gz").stat().st_size < 3_000_000


def test_pool_mappings_are_the_truths(dm_master: Path, dm_truth: dict[str, Any]) -> None:
    _, runs = pool_mappings(dm_master / POOL / "metadata")
    for name, dev in dm_truth["devices"].items():
        assert runs[dev["device_id"]] == dev["mappings"], name
        assert sum(r[2] for r in dev["mappings"]) == dev["mapped_blocks"]


def test_every_device_is_a_clean_ext4(devices: dict[str, Path]) -> None:
    for name, image in devices.items():
        proc = run("e2fsck", "-fn", image, check=False)
        assert proc.returncode == 0, (name, proc.stdout, proc.stderr)


def test_filesystems_are_centos7_ext4(devices: dict[str, Path], dm_truth: dict[str, Any]) -> None:
    """No metadata_csum and no 64bit (e2fsprogs 1.42), uninit_bg; one UUID (snapshots); each
    superblock as the mounts left it."""
    for name, image in devices.items():
        head = run("dumpe2fs", "-h", image).stdout
        fields = dict(re.findall(r"^([^:\n]+):\s*(.*)$", head, re.M))
        features = set(fields["Filesystem features"].split())
        assert {"has_journal", "extent", "flex_bg", "uninit_bg", "dir_nlink"} <= features
        assert not features & {"metadata_csum", "64bit", "orphan_file"}, name
        assert fields["Filesystem UUID"] == dm_truth["filesystem"]["uuid"]
        assert int(fields["Block count"]) * 4096 == dm_truth["devices"][name]["size"]
        assert fields["Maximum mount count"] == "-1" and fields["Check interval"].startswith("0")
        sb = dm_truth["devices"][name]["superblock"]
        assert int(fields["Mount count"]) == sb["mount_count"], name
        assert fields["Last mounted on"] == (sb["last_mounted"] or "<not available>"), name


def test_layer_devices_hold_the_truths_rootfs(
    trees: dict[str, dict[str, dict[str, Any]]], dm_truth: dict[str, Any]
) -> None:
    for layer in dm_truth["layers"]:
        assert rootfs(trees[layer["id"]]) == layer["rootfs"], layer["id"]


def test_driver_files_outside_rootfs(
    trees: dict[str, dict[str, dict[str, Any]]], dm_truth: dict[str, Any]
) -> None:
    """``id`` (the first layer's id, 0600), ``lost+found``, ``rootfs`` itself and the root."""
    base_layer = dm_truth["layers"][0]["id"]
    for name, dev in dm_truth["devices"].items():
        outside = {p: r for p, r in trees[name].items() if not p.startswith("rootfs/")}
        assert outside == dev["outside_rootfs"], name
        if name != "base":
            assert outside["id"]["mode"] == "100600"
            assert outside["id"]["size"] == len(base_layer)


def test_container_and_init_devices(
    trees: dict[str, dict[str, dict[str, Any]]], dm_truth: dict[str, Any]
) -> None:
    (ctr,) = dm_truth["containers"]
    assert rootfs(trees[ctr["id"]]) == ctr["rootfs"]
    assert rootfs(trees[ctr["init_device"]]) == ctr["init_rootfs"]


def test_container_diff_from_the_devices(
    trees: dict[str, dict[str, dict[str, Any]]], dm_truth: dict[str, Any]
) -> None:
    """``docker diff`` of a devicemapper container: its device's rootfs/ against its -init's."""
    (ctr,) = dm_truth["containers"]
    init, rw = rootfs(trees[ctr["init_device"]]), rootfs(trees[ctr["id"]])
    assert naive_diff(init, rw) == ctr["diff"]
    assert {line[0] for line in ctr["diff"]} == {"A", "C", "D"}
    top = rootfs(trees[dm_truth["layers"][-1]["id"]])
    assert naive_diff(top, init) == ctr["init_changes"]


def test_each_layer_device_differs_from_its_parent_by_its_tar(
    trees: dict[str, dict[str, dict[str, Any]]], dm_truth: dict[str, Any]
) -> None:
    """The naive diff of a layer's device against its parent's is exactly its tar's members
    (a whiteout standing for the path it deletes), which is absent from the device."""
    parent: dict[str, dict[str, Any]] = {"": {"type": "dir", "mode": "40755", "uid": 0, "gid": 0}}
    for layer in dm_truth["layers"]:
        mine = rootfs(trees[layer["id"]])
        want = []
        for m in layer["tar_members"]:
            name = m["name"].rstrip("/")
            head, _, base = name.rpartition("/")
            if base.startswith(".wh."):
                gone = "/".join(p for p in (head, base[4:]) if p)
                assert gone not in mine, (layer["id"], gone)
                want.append(f"D /{gone}")
            else:
                want.append(f"{'C' if name in parent else 'A'} /{name}")
        assert naive_diff(parent, mine) == sorted(want, key=lambda w: w[2:]), layer["id"]
        parent = mine


def test_tar_split_rebuilds_the_layer_tar_from_its_device(
    dm_master: Path, devices: dict[str, Path], dm_truth: dict[str, Any], tmp_path: Path
) -> None:
    """Every tar-data.json.gz reassembled with the files read from the layer's device gives
    the truth's DiffID, and its TarSum (computed here by forensics' own TarSum, with the
    image json as payload) is the graph checksum file."""
    for layer in dm_truth["layers"]:
        graph = dm_master / "graph" / layer["id"]
        stream = gzip.decompress((graph / "tar-data.json.gz").read_bytes())
        entries = [json.loads(line) for line in stream.decode().splitlines()]
        tar = bytearray()
        for e in entries:
            if e["type"] == 2:
                tar += base64.b64decode(e["payload"] or "")
            elif e["size"]:
                dump = tmp_path / "file"
                run("debugfs", "-R", f"dump /rootfs/{e['name']} {dump}", devices[layer["id"]])
                data = dump.read_bytes()
                assert len(data) == e["size"], e["name"]
                tar += data
        assert "sha256:" + hashlib.sha256(tar).hexdigest() == layer["diff_id"], layer["id"]
        assert len(tar) == layer["tar_size"]
        ts = TarSum(0)
        ts.update(bytes(tar))
        ts.close()
        checksum = (graph / "checksum").read_text()
        assert ts.sum((graph / "json").read_bytes()) == checksum == layer["checksum"]
        assert checksum.startswith("tarsum+sha256:")
        assert int((graph / "layersize").read_text()) == layer["layersize"]
        assert json.loads((graph / "json").read_bytes())["Size"] == layer["layersize"]


def test_special_files_of_the_layers(dm_truth: dict[str, Any]) -> None:
    """The features the readers are judged on are in the sample: setuid, a capability, a
    hardlink pair, a device, a fifo, an empty file, a whiteout, a file across several 64 KiB
    blocks with holes, a non-root owner."""
    base = dm_truth["layers"][0]["rootfs"]
    assert base["bin/su"]["mode"] == "104755"
    assert base["bin/ping"]["xattrs"]["security.capability"].startswith("01000002")
    assert base["bin/gunzip"]["nlink"] == 2 and base["bin/uncompress"]["nlink"] == 2
    assert base["dev/null"]["rdev"] == [1, 3] and base["run/initctl"]["type"] == "fifo"
    assert base["etc/.pwd.lock"]["size"] == 0 and base["tmp"]["mode"] == "41777"
    assert base["etc/shadow"]["gid"] == 42
    top = dm_truth["layers"][-1]["rootfs"]
    assert top["usr/sbin/nginx"]["size"] > 8 * 65536
    assert "var/lib/apt/lists/lock" not in top and "var/lib/apt/lists/partial" not in top
    names = [m["name"] for la in dm_truth["layers"] for m in la["tar_members"]]
    assert "var/lib/apt/lists/.wh.lock" in names


def test_deleted_files_are_recoverable_from_the_container_device(
    devices: dict[str, Path], dm_truth: dict[str, Any], tmp_path: Path
) -> None:
    """What the container wrote and deleted is still in its device (debugfs keeps a deleted
    inode's extents): lsdel finds it, dump reads the bytes back."""
    (ctr,) = dm_truth["containers"]
    image = devices[ctr["id"]]
    recovered = set()
    for ino in lsdel(image):
        out = tmp_path / f"{ino}"
        run("debugfs", "-R", f"dump <{ino}> {out}", image)
        recovered.add(hashlib.sha256(out.read_bytes()).hexdigest())
    wanted = [d for d in dm_truth["devices"][ctr["id"]]["deleted_inodes"] if d.get("size")]
    assert wanted and {d["sha256"] for d in wanted} <= recovered


@needs("strace", "mkfs.ext4", "tune2fs", "thin_restore")
def test_the_script_makes_the_same_bytes(tmp_path: Path) -> None:
    """Reproducible: the generator run again writes the committed archive and truth byte for
    byte (fixed ids, times, UUIDs, hash seed; e2fsprogs' fake time)."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    for suffix in (".tar.gz", ".truth.json"):
        made = (tmp_path / f"{DM_SAMPLE}{suffix}").read_bytes()
        assert made == (SAMPLES / f"{DM_SAMPLE}{suffix}").read_bytes(), suffix
