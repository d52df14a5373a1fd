"""The modern (Docker 20.10 layerdb) devicemapper sample judged by xfsprogs and
thin-provisioning-tools: every thin device cut out of the pool is a clean xfs whose files are
the truth's, the records name the devices, the containers differ from their init layers as the
real daemon's ``docker diff`` said, and every layer's tar-split (written by that daemon)
rebuilds its DiffID from the files of its device."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import MODERN_DM_SAMPLE, SAMPLES
from sample_paths import DmSamplePaths
from test_samples_dm import (
    extract,
    naive_diff,
    needs,
    pool_mappings,
    rootfs,
    run,
    xfs_db,
    xfs_tree,
)

STORE = "image/devicemapper"

pytestmark = needs("thin_dump", "thin_check", "xfs_db", "xfs_repair")


@pytest.fixture(scope="module")
def paths(modern_dm_master: Path, modern_dm_truth: dict[str, Any]) -> DmSamplePaths:
    return DmSamplePaths(modern_dm_master, modern_dm_truth)


@pytest.fixture(scope="module")
def devices(paths: DmSamplePaths, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every device of the pool as a sparse image, by its metadata file name."""
    out = tmp_path_factory.mktemp("modern-devices")
    block, runs = pool_mappings(paths.metadata)
    images = {}
    for name, dev in paths.truth["devices"].items():
        image = out / f"{dev['device_id']}.img"
        extract(paths.data, runs[dev["device_id"]], block, dev["size"], image)
        images[name] = image
    return images


@pytest.fixture(scope="module")
def trees(
    devices: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, dict[str, Any]]]:
    scratch = tmp_path_factory.mktemp("modern-xfs")
    return {name: xfs_tree(image, scratch) for name, image in devices.items()}


def test_archive_is_small() -> None:
    assert (SAMPLES / f"{MODERN_DM_SAMPLE}.tar.gz").stat().st_size < 4_000_000


def test_pool_is_clean_and_maps_what_the_truth_says(paths: DmSamplePaths) -> None:
    proc = run("thin_check", paths.metadata, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _, runs = pool_mappings(paths.metadata)
    assert sorted(runs) == sorted(d["device_id"] for d in paths.truth["devices"].values())
    for name, dev in paths.truth["devices"].items():
        assert runs[dev["device_id"]] == dev["mappings"], name


def test_every_device_is_a_clean_xfs_of_one_uuid(
    devices: dict[str, Path], paths: DmSamplePaths
) -> None:
    """xfs_repair -n clean, a v5 filesystem (crc, bigtime) of 10 GiB, every device the base's
    UUID (snapshots), which deviceset-metadata records with the filesystem."""
    dsm = json.loads(paths.record("deviceset-metadata").read_bytes())
    assert dsm == paths.truth["deviceset_metadata"]
    assert dsm["BaseDeviceFilesystem"] == "xfs"
    for name, image in devices.items():
        proc = run("xfs_repair", "-n", image, check=False)
        assert proc.returncode == 0, (name, proc.stdout, proc.stderr)
        out = xfs_db(image, ["sb 0", "print uuid dblocks blocksize", "version"])
        fields = dict(re.findall(r"^(\w+) = (.*)$", out, re.M))
        assert fields["uuid"] == dsm["BaseDeviceUUID"], name
        assert int(fields["dblocks"]) * int(fields["blocksize"]) == 10 * 1024**3
        assert "CRC" in out and "BIGTIME" in out


def test_layer_devices_hold_the_truths_rootfs(
    trees: dict[str, dict[str, dict[str, Any]]], paths: DmSamplePaths
) -> None:
    for layer in paths.truth["layers"]:
        assert rootfs(trees[layer["cache_id"]]) == layer["rootfs"], layer["chain_id"]


def test_driver_files_outside_rootfs(
    trees: dict[str, dict[str, dict[str, Any]]], paths: DmSamplePaths
) -> None:
    """The base holds only its root; every other device ``rootfs/`` and ``id`` (0600, the
    cache id of the first layer mounted)."""
    first = paths.truth["layers"][0]["cache_id"]
    for name, dev in paths.truth["devices"].items():
        outside = {p: r for p, r in trees[name].items() if not p.startswith("rootfs/")}
        assert outside == dev["outside_rootfs"], name
        if name == "base":
            assert set(outside) == {""}
        else:
            assert outside["id"]["mode"] == "100600" and outside["id"]["size"] == len(first)


def test_containers_differ_from_their_init_as_docker_diff_said(
    trees: dict[str, dict[str, dict[str, Any]]], paths: DmSamplePaths
) -> None:
    for ctr in paths.truth["containers"]:
        init, rw = ctr["init_id"], ctr["mount_id"]
        assert rootfs(trees[init]) == ctr["init_rootfs"]
        assert rootfs(trees[rw]) == ctr["rootfs"]
        assert naive_diff(rootfs(trees[init]), rootfs(trees[rw])) == ctr["diff"]
        real = paths.truth["daemon"]["diff"][ctr["id"]]
        assert ctr["diff"] == sorted(real, key=lambda line: line[2:])
    web = paths.container("web")
    assert {line[0] for line in web["diff"]} == {"A", "C", "D"}
    assert paths.container("idle")["diff"] == []


def test_records_name_the_devices(paths: DmSamplePaths) -> None:
    """Each layerdb cache-id and mount record has its device record, the device ids follow
    the pool's, the transaction record is the pool's last, mnt/ is empty (20.10 removes a
    mount point when it unmounts), config.v2.json says devicemapper."""
    store = paths.root / STORE
    layers = {layer["chain_id"]: layer for layer in paths.truth["layers"]}
    for chain, layer in layers.items():
        ldb = store / "layerdb" / "sha256" / chain.removeprefix("sha256:")
        assert (ldb / "cache-id").read_text() == layer["cache_id"]
        record = json.loads(paths.record(layer["cache_id"]).read_bytes())
        assert list(record) == ["device_id", "size", "transaction_id", "initialized", "deleted"]
        assert record["device_id"] == layer["device_id"] and record["deleted"] is False
        assert record["size"] == 10 * 1024**3
    for ctr in paths.truth["containers"]:
        mounts = store / "layerdb" / "mounts" / ctr["id"]
        assert (mounts / "mount-id").read_text() == ctr["mount_id"]
        assert (mounts / "init-id").read_text() == ctr["init_id"] == ctr["mount_id"] + "-init"
        for key, name in (("init", ctr["init_id"]), ("rw", ctr["mount_id"])):
            record = json.loads(paths.record(name).read_bytes())
            assert record["device_id"] == ctr["device_ids"][key]
        config = json.loads((paths.root / "containers" / ctr["id"] / "config.v2.json").read_bytes())
        assert config["Driver"] == "devicemapper"
    base = json.loads(paths.record("base").read_bytes())
    assert base["device_id"] == 1 and base["initialized"] is True
    txn = json.loads(paths.record("transaction-metadata").read_bytes())
    assert txn == paths.truth["transaction_metadata"]
    assert txn["open_transaction_id"] == paths.truth["pool"]["transaction_id"]
    assert not any((paths.root / "devicemapper" / "mnt").iterdir())
    assert not (paths.root / "overlay2").exists() and not (paths.root / "image/overlay2").exists()


def test_tar_split_rebuilds_each_diff_id_from_its_device(
    devices: dict[str, Path], trees: dict[str, dict[str, dict[str, Any]]], paths: DmSamplePaths
) -> None:
    """The tar-split dockerd wrote, reassembled with each file read from the layer's device
    (through xfs_db's block map), gives the layer's DiffID; the chain ids and image configs
    agree; layerdb size is what a naive-diff driver reports (the tar's header sizes)."""
    store = paths.root / STORE
    images = {i["id"]: i for i in paths.truth["images"]}
    for image in images.values():
        config = store / "imagedb/content/sha256" / image["id"].removeprefix("sha256:")
        raw = config.read_bytes()
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == image["id"]
        assert json.loads(raw)["rootfs"]["diff_ids"] == image["diff_ids"]
    for layer in paths.truth["layers"]:
        ldb = store / "layerdb" / "sha256" / layer["chain_id"].removeprefix("sha256:")
        entries = [
            json.loads(line)
            for line in gzip.decompress((ldb / "tar-split.json.gz").read_bytes()).splitlines()
        ]
        files = _device_files(devices[layer["cache_id"]], trees[layer["cache_id"]])
        tar = bytearray()
        for e in entries:
            if e["type"] == 2:
                tar += base64.b64decode(e["payload"] or "")
            elif e.get("size"):
                data = files["rootfs/" + e["name"].lstrip("./").rstrip("/")]
                assert len(data) == e["size"], e["name"]
                tar += data
        assert "sha256:" + hashlib.sha256(tar).hexdigest() == layer["diff_id"]
        assert (ldb / "diff").read_text() == layer["diff_id"]
        assert int((ldb / "size").read_text()) == layer["size"]
        assert layer["size"] == sum(e.get("size") or 0 for e in entries if e["type"] == 1)


def _device_files(image: Path, tree: dict[str, dict[str, Any]]) -> dict[str, bytes]:
    """The bytes of the device's regular files, through xfs_db's block map (checked against
    the sha256 the listing found)."""
    out = {}
    sb = dict(
        re.findall(r"^(\w+) = (\d+)$", xfs_db(image, ["sb 0", "print blocksize agblocks"]), re.M)
    )
    block, agblocks = int(sb["blocksize"]), int(sb["agblocks"])
    wanted = [p for p, r in tree.items() if r["type"] == "file" and r["size"]]
    cmds = []
    for path in wanted:
        cmds += [f"echo @@ {path}", f"path /{path}", "bmap"]
    text = xfs_db(image, cmds)
    with image.open("rb") as fh:
        for chunk in text.split("@@ ")[1:]:
            path, _, body = chunk.partition("\n")
            path = path.strip()
            data = bytearray(tree[path]["size"])
            for m in re.finditer(
                r"data offset (\d+) startblock \d+ \((\d+)/(\d+)\) count (\d+)", body
            ):
                off, agno, agbno, count = (int(x) for x in m.groups())
                fh.seek((agno * agblocks + agbno) * block)
                piece = fh.read(count * block)[: len(data) - off * block]
                data[off * block : off * block + len(piece)] = piece
            assert hashlib.sha256(data).hexdigest() == tree[path]["sha256"], path
            out[path] = bytes(data)
    return out


def test_special_files_of_the_layers(paths: DmSamplePaths) -> None:
    """What the readers are judged on is in the sample: setuid, a capability, a device, a fifo,
    a sticky /tmp, an empty file, a non-root owner, a non-ASCII name, a file across several
    64 KiB blocks, a whiteout and an opaque directory in a layer tar."""
    base = paths.truth["layers"][0]["rootfs"]
    assert base["bin/su"]["mode"] == "104755"
    assert base["bin/ping"]["xattrs"]["security.capability"].startswith("01000002")
    assert base["dev/null"]["rdev"] == [1, 3] and base["run/initctl"]["type"] == "fifo"
    assert base["tmp"]["mode"] == "41777" and base["etc/.pwd.lock"]["size"] == 0
    top = paths.truth["layers"][-1]["rootfs"]
    assert top["data/owned"]["uid"] == 1234 and top["data/owned"]["mode"] == "104750"
    assert top["data/big.bin"]["size"] > 4 * 65536
    assert "data/café.txt" in top and "etc/motd" not in top
    assert sorted(p for p in top if p.startswith("opt/olddir/")) == ["opt/olddir/new.txt"]
    names = [m["name"] for la in paths.truth["layers"] for m in la["tar_members"]]
    assert "etc/.wh.motd" in names and "opt/olddir/.wh..wh..opq" in names
