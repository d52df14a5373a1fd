"""Oracle tests of the legacy Docker 1.8.2 devicemapper sample itself (not of our readers).

They need only ``samples/legacy-1.8-devicemapper.tar.gz``, its truth file, GNU tar and, for the
pool, Debian's thin-provisioning-tools (skipped when ``thin_check``/``thin_dump`` are missing).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import sqlite3
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLES, unpack

NAME = "legacy-1.8-devicemapper"
TARBALL = SAMPLES / f"{NAME}.tar.gz"
TRUTH = SAMPLES / f"{NAME}.truth.json"
SCRIPT = "samples/make-legacy-devicemapper-sample.py"
BOOKKEEPING = {"deviceset-metadata", "transaction-metadata"}


def thin_tool(name: str) -> str | None:
    """thin-provisioning-tools live in sbin, which a non-root PATH may lack."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))


def needs(name: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        thin_tool(name) is None, reason=f"{name} not installed (thin-provisioning-tools)"
    )


@pytest.fixture(scope="module")
def truth() -> dict[str, Any]:
    return json.loads(TRUTH.read_text())


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert TARBALL.is_file(), f"{TARBALL} is missing: run {SCRIPT}"
    return unpack(TARBALL, tmp_path_factory.mktemp(NAME))


@pytest.fixture(scope="module")
def device_json(root: Path) -> dict[str, dict[str, Any]]:
    meta = root / "devicemapper" / "metadata"
    return {
        p.name: json.loads(p.read_bytes())
        for p in sorted(meta.iterdir())
        if p.name not in BOOKKEEPING
    }


@pytest.fixture(scope="module")
def pool(root: Path) -> ET.Element:
    tool = thin_tool("thin_dump")
    if tool is None:
        pytest.skip("thin_dump not installed (thin-provisioning-tools)")
    metadata = root / "devicemapper" / "devicemapper" / "metadata"
    out = subprocess.run([tool, str(metadata)], capture_output=True, text=True, check=True)
    return ET.fromstring(out.stdout)


def test_tarball_is_small() -> None:
    """Real ext4 filesystems in 13 devices of 100 GiB: about 2 MB packed."""
    assert TARBALL.stat().st_size < 3_000_000


def test_unpacks_with_the_tree_of_the_article(root: Path) -> None:
    for rel in (
        "containers",
        "devicemapper/devicemapper/data",
        "devicemapper/devicemapper/metadata",
        "devicemapper/metadata/base",
        "devicemapper/metadata/deviceset-metadata",
        "devicemapper/metadata/transaction-metadata",
        "graph/_tmp",
        "linkgraph.db",
        "repositories-devicemapper",
        "tmp",
        "trust",
        "volumes",
    ):
        assert (root / rel).exists(), rel
    for empty in ("tmp", "trust", "volumes", "graph/_tmp"):
        assert not any((root / empty).iterdir()), empty


def test_loopback_files_are_sparse_at_nominal_size(root: Path, truth: dict[str, Any]) -> None:
    data = root / "devicemapper" / "devicemapper" / "data"
    metadata = root / "devicemapper" / "devicemapper" / "metadata"
    assert data.stat().st_size == truth["pool"]["data_file_size"] == 107374182400
    assert metadata.stat().st_size == truth["pool"]["metadata_file_size"] == 2 * 1024**3
    # the ext4 metadata and files the devices hold, not 100 GiB of zeros (zero pages are holes)
    assert data.stat().st_blocks * 512 < 16 * 1024 * 1024
    assert metadata.stat().st_blocks * 512 < 32 * 1024 * 1024


@needs("thin_check")
def test_thin_check_accepts_the_pool(root: Path) -> None:
    tool = thin_tool("thin_check")
    assert tool is not None
    metadata = root / "devicemapper" / "devicemapper" / "metadata"
    proc = subprocess.run([tool, str(metadata)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pool_devices_are_the_json_devices(
    pool: ET.Element, device_json: dict[str, dict[str, Any]]
) -> None:
    details = {int(d.get("dev_id", "")): d for d in pool.iter("device")}
    by_id = {rec["device_id"]: rec for rec in device_json.values()}
    assert len(by_id) == len(device_json) == 13
    assert sorted(details) == sorted(by_id) == list(range(1, 14))
    for dev_id, rec in by_id.items():
        assert int(details[dev_id].get("transaction", "")) == rec["transaction_id"] - 1, dev_id


def test_pool_transaction_is_the_open_transaction(
    root: Path, pool: ET.Element, device_json: dict[str, dict[str, Any]], truth: dict[str, Any]
) -> None:
    txn = json.loads((root / "devicemapper" / "metadata" / "transaction-metadata").read_bytes())
    assert int(pool.get("transaction", "")) == txn["open_transaction_id"]
    assert txn["open_transaction_id"] == max(r["transaction_id"] for r in device_json.values())
    assert device_json[txn["device_hash"] or "base"]["device_id"] == txn["device_id"]
    assert int(pool.get("data_block_size", "")) == truth["pool"]["data_block_size"] == 128
    data = root / "devicemapper" / "devicemapper" / "data"
    assert int(pool.get("nr_data_blocks", "")) == data.stat().st_size // (128 * 512)


def test_device_ids_follow_the_layer_chain(
    device_json: dict[str, dict[str, Any]], truth: dict[str, Any]
) -> None:
    assert device_json["base"] == {
        "device_id": 1,
        "size": 107374182400,
        "transaction_id": 1,
        "initialized": True,
    }
    for n, layer in enumerate(truth["layers"]):
        assert device_json[layer["id"]]["device_id"] == n + 2
    cid = truth["containers"][0]["id"]
    assert device_json[cid + "-init"]["device_id"] == 12
    assert device_json[cid]["device_id"] == 13
    for name, rec in device_json.items():
        assert list(rec) == ["device_id", "size", "transaction_id", "initialized"], name
        assert rec["size"] == 107374182400
        assert rec["initialized"] is (name == "base")


def mappings(device: ET.Element) -> dict[int, tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {}
    for m in device:
        t = int(m.get("time", ""))
        if m.tag == "single_mapping":
            out[int(m.get("origin_block", ""))] = (int(m.get("data_block", "")), t)
        else:
            ob, db, n = (int(m.get(k, "")) for k in ("origin_begin", "data_begin", "length"))
            out.update({ob + i: (db + i, t) for i in range(n)})
    return out


def test_each_snapshot_shares_its_origins_blocks(pool: ET.Element, truth: dict[str, Any]) -> None:
    devices = {int(d.get("dev_id", "")): d for d in pool.iter("device")}
    maps = {dev_id: mappings(d) for dev_id, d in devices.items()}
    for rec in truth["devices"].values():
        dev_id, origin = rec["device_id"], rec["origin_device_id"]
        assert int(devices[dev_id].get("mapped_blocks", "")) == len(maps[dev_id])
        if origin is None:
            continue
        created = int(devices[dev_id].get("creation_time", ""))
        inherited = {vb: m for vb, m in maps[dev_id].items() if m[1] < created}
        own = {vb: m for vb, m in maps[dev_id].items() if m[1] == created}
        assert len(inherited) + len(own) == len(maps[dev_id])
        assert inherited and all(maps[origin][vb] == m for vb, m in inherited.items())
        assert set(maps[origin]) <= set(maps[dev_id])
        assert own, f"device {dev_id} wrote nothing of its own"


def test_graph_json_and_parent_chain(root: Path, truth: dict[str, Any]) -> None:
    repos = json.loads((root / "repositories-devicemapper").read_bytes())
    assert repos == {"Repositories": {"nginx": {"latest": truth["images"][0]["id"]}}}
    graph = root / "graph"
    ids = {p.name for p in graph.iterdir() if p.name != "_tmp"}
    assert ids == {layer["id"] for layer in truth["layers"]}
    chain = []
    current: str | None = repos["Repositories"]["nginx"]["latest"]
    while current:
        raw = (graph / current / "json").read_bytes()
        image = json.loads(raw)
        assert image["id"] == current
        assert image["docker_version"] == "1.8.2"
        assert int((graph / current / "layersize").read_bytes()) == image["Size"]
        chain.append(current)
        current = image.get("parent")
    assert list(reversed(chain)) == [layer["id"] for layer in truth["layers"]]
    assert chain[-1].startswith("22f3bf58cd09") and chain[0].startswith("c2c9e418b22c")


def test_tar_data_streams_are_tar_split(root: Path, truth: dict[str, Any]) -> None:
    for layer in truth["layers"]:
        stream = gzip.decompress((root / "graph" / layer["id"] / "tar-data.json.gz").read_bytes())
        entries = [json.loads(line) for line in stream.decode().splitlines()]
        assert [e["position"] for e in entries] == list(range(len(entries)))
        assert len(entries) == layer["tar_split_entries"]
        tar_bytes = 0
        for e in entries:
            assert list(e) == ["type", "name", "size", "payload", "position"]  # v0.9.4 quirk
            if e["type"] == 2:
                tar_bytes += len(base64.b64decode(e["payload"] or ""))
            else:
                assert e["type"] == 1
                tar_bytes += e["size"]
                assert (e["payload"] is None) == (e["size"] == 0)
        assert tar_bytes == layer["tar_size"]
        checksum = (root / "graph" / layer["id"] / "checksum").read_text()
        assert checksum == layer["checksum"]


def test_container_is_running_nginx(root: Path, truth: dict[str, Any]) -> None:
    want = truth["containers"][0]
    cdir = root / "containers" / want["id"]
    config = json.loads((cdir / "config.json").read_bytes())
    assert list(config)[:3] == ["State", "ID", "Created"]
    assert config["ID"] == want["id"]
    assert config["Name"] == "/nginx"
    assert config["Image"] == want["image_id"]
    assert config["Driver"] == "devicemapper"
    assert [config["Path"], *config["Args"]] == ["nginx", "-g", "daemon off;"]
    assert config["State"]["Running"] is True and config["State"]["Pid"] == want["pid"]
    assert (cdir / "hostname").read_text() == want["id"][:12] + "\n"
    for name in ("hostconfig.json", "hosts", "resolv.conf", f"{want['id']}-json.log"):
        assert (cdir / name).is_file(), name
    assert (root / "devicemapper" / "mnt" / want["id"]).is_dir()


def test_linkgraph_names_the_container(root: Path, truth: dict[str, Any]) -> None:
    cid = truth["containers"][0]["id"]
    uri = f"file:{root / 'linkgraph.db'}?mode=ro&immutable=1"
    conn = sqlite3.connect(uri, uri=True)
    try:
        edges = set(conn.execute("SELECT entity_id, parent_id, name FROM edge"))
        entities = {row[0] for row in conn.execute("SELECT id FROM entity")}
    finally:
        conn.close()
    assert edges == {("0", None, "/"), (cid, "0", "nginx")}
    assert entities == {"0", cid}
