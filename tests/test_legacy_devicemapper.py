"""The Docker 1.8.2 devicemapper host: inventory against the sample's truth, and each kind of
damage to the graph and to devicemapper's records reported with its check id and path."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

NAME = "legacy-1.8-devicemapper"
META = "devicemapper/metadata"


def test_inventory_of_the_article_host(cli, dm_master: Path, dm_truth: dict[str, Any]) -> None:
    doc = cli("inventory", dm_master, "--format", "json").json()
    assert doc["layout"] == "legacy" and doc["driver"] == "devicemapper"
    (image,) = [i for i in doc["images"] if not i["intermediate"]]
    (expected,) = dm_truth["images"]
    assert image["id"] == expected["id"] and image["tags"] == ["nginx:latest"]
    assert [layer["id"] for layer in image["layers"]] == expected["layers"]
    assert [layer["device_id"] for layer in image["layers"]] == list(range(2, 12))
    (container,) = doc["containers"]
    (truth_c,) = dm_truth["containers"]
    assert (container["id"], container["name"], container["state"]) == (
        truth_c["id"],
        "nginx",
        "running",
    )
    assert container["command"] == "nginx -g daemon off;"
    assert container["device_ids"] == [truth_c["device_ids"]["rw"], truth_c["device_ids"]["init"]]
    devices = {d["hash"]: d for d in doc["devices"]}
    assert devices["base"]["device_id"] == 1 and devices["base"]["initialized"] is True
    assert {d["size"] for d in devices.values()} == {107374182400}
    data = doc["pool"]["files"]["data"]
    assert data["size"] == 107374182400 and data["allocated"] < data["size"]


def test_inventory_text_shows_one_image(cli, dm_master: Path) -> None:
    text = cli("inventory", dm_master).stdout
    assert "IMAGES (1, and 9 intermediate)" in text and "nginx:latest" in text


def test_verify_finds_no_error(cli, dm_master: Path) -> None:
    result = cli("verify", dm_master, "--format", "json")
    assert result.code == 0, result.stdout
    checks = {f["check"] for f in result.json()["findings"]}
    assert checks <= {"container.was-running", "devicemapper.next-id-stale"}


def test_devices_table(cli, dm_master: Path, tmp_path: Path) -> None:
    out = tmp_path / "dm.db"
    assert cli("verify", dm_master, "--sqlite", out).code == 0
    db = sqlite_utils.Database(out)
    assert db["devices"].count == 13
    rows = list(
        db.query("SELECT l.id, d.device_id FROM layers l JOIN devices d ON d.hash = l.cache_id")
    )
    assert len(rows) == 10 and {r["device_id"] for r in rows} == set(range(2, 12))


def _record(root: Path, name: str) -> Path:
    return root / META / name


def _top(truth: dict[str, Any]) -> str:
    return str(truth["images"][0]["id"])


def _cid(truth: dict[str, Any]) -> str:
    return str(truth["containers"][0]["id"])


def truncated_record(root: Path, t: dict[str, Any]) -> str:
    path = _record(root, _top(t))
    path.write_bytes(path.read_bytes()[:30])
    return f"{META}/{_top(t)}"


def record_without_size(root: Path, t: dict[str, Any]) -> str:
    path = _record(root, _top(t))
    doc = json.loads(path.read_bytes())
    del doc["size"]
    path.write_text(json.dumps(doc))
    return f"{META}/{_top(t)}"


def duplicate_device_id(root: Path, t: dict[str, Any]) -> str:
    path = _record(root, _top(t))
    doc = json.loads(path.read_bytes())
    doc["device_id"] = 2
    path.write_text(json.dumps(doc))
    return f"{META}/{_top(t)}"


def device_id_out_of_range(root: Path, t: dict[str, Any]) -> str:
    path = _record(root, _top(t))
    doc = json.loads(path.read_bytes())
    doc["device_id"] = 1 << 24
    path.write_text(json.dumps(doc))
    return f"{META}/{_top(t)}"


def damaged_transaction(root: Path, t: dict[str, Any]) -> str:
    _record(root, "transaction-metadata").write_text('{"open_transaction_id":')
    return f"{META}/transaction-metadata"


def damaged_deviceset(root: Path, t: dict[str, Any]) -> str:
    _record(root, "deviceset-metadata").write_bytes(b"\0" * 64)
    return f"{META}/deviceset-metadata"


def unreferenced_record(root: Path, t: dict[str, Any]) -> str:
    name = "f" * 64
    _record(root, name).write_text(
        '{"device_id":14,"size":107374182400,"transaction_id":14,"initialized":false}'
    )
    return f"{META}/{name}"


def missing_init_record(root: Path, t: dict[str, Any]) -> str:
    _record(root, f"{_cid(t)}-init").unlink()
    return f"containers/{_cid(t)}"


def missing_layer_record(root: Path, t: dict[str, Any]) -> str:
    layer = t["images"][0]["layers"][4]
    _record(root, layer).unlink()
    return f"graph/{layer}"


def graph_json_changed_id(root: Path, t: dict[str, Any]) -> str:
    rel = f"graph/{_top(t)}/json"
    doc = json.loads((root / rel).read_bytes())
    doc["id"] = "a" * 64
    (root / rel).write_text(json.dumps(doc))
    return rel


def missing_parent(root: Path, t: dict[str, Any]) -> str:
    layers = t["images"][0]["layers"]
    shutil.rmtree(root / f"graph/{layers[3]}")
    return f"graph/{layers[4]}"


def container_image_missing(root: Path, t: dict[str, Any]) -> str:
    rel = f"containers/{_cid(t)}/config.json"
    (root / rel).write_text((root / rel).read_text().replace(_top(t), "b" * 64))
    return rel


DAMAGE: list[tuple[Callable[[Path, dict[str, Any]], str], str]] = [
    (truncated_record, "devicemapper.record-damaged"),
    (record_without_size, "devicemapper.record-damaged"),
    (duplicate_device_id, "devicemapper.device-id-duplicate"),
    (device_id_out_of_range, "devicemapper.device-id-range"),
    (damaged_transaction, "devicemapper.transaction-damaged"),
    (damaged_deviceset, "devicemapper.deviceset-damaged"),
    (unreferenced_record, "driver.orphan-dir"),
    (missing_init_record, "container.layer-missing"),
    (missing_layer_record, "layer.driver-dir-missing"),
    (graph_json_changed_id, "graph.id-mismatch"),
    (missing_parent, "layer.parent-missing"),
    (container_image_missing, "container.image-missing"),
]


@pytest.mark.parametrize(("damage", "check"), DAMAGE, ids=[d[0].__name__ for d in DAMAGE])
def test_damage(cli, dm_root: Path, dm_truth: dict[str, Any], damage, check: str) -> None:  # type: ignore[no-untyped-def]
    path = damage(dm_root, dm_truth)
    result = cli("verify", dm_root, "--format", "json")
    assert result.code == 4, result.stdout
    found = [(f["check"], f["path"], f["severity"]) for f in result.json()["findings"]]
    assert (check, path, "error") in found, found


def test_pending_transaction_is_named(cli, dm_root: Path, dm_truth: dict[str, Any]) -> None:
    """A crash between writing transaction-metadata and the device record: dockerd rolls back.
    Without the pool's metadata (direct-lvm: the pool is an LV) the records alone tell it."""
    (dm_root / "devicemapper/devicemapper/metadata").unlink()
    _record(dm_root, "transaction-metadata").write_text(
        '{"open_transaction_id":14,"device_hash":"' + "c" * 64 + '","device_id":14}'
    )
    result = cli("verify", dm_root, "--format", "json")
    pending = [
        f for f in result.json()["findings"] if f["check"] == "devicemapper.transaction-pending"
    ]
    assert pending and "device 14" in pending[0]["message"] and pending[0]["severity"] == "warning"


def test_mount_point_without_device(cli, dm_root: Path) -> None:
    (dm_root / "devicemapper/mnt" / ("d" * 64)).mkdir()
    found = cli("verify", dm_root, "--format", "json").json()["findings"]
    assert ("devicemapper.mnt-orphan", f"devicemapper/mnt/{'d' * 64}") in [
        (f["check"], f["path"]) for f in found
    ]


LEGACY_FILES = [
    "repositories-devicemapper",
    "linkgraph.db",
    f"{META}/deviceset-metadata",
    f"{META}/transaction-metadata",
    f"{META}/base",
]
CONTENTS = [
    b"",
    b"\0" * 40,
    b"[]",
    b"null",
    b'{"a":',
    b"\xff\xfe",
    b'{"device_id": "x", "size": -1}',
]


@pytest.mark.parametrize("rel", LEGACY_FILES)
def test_hostile_content_in_legacy_files(
    cli, dm_root: Path, dm_truth: dict[str, Any], rel: str
) -> None:
    top, cid = _top(dm_truth), _cid(dm_truth)
    targets = [rel, f"graph/{top}/json", f"graph/{top}/layersize", f"containers/{cid}/config.json"]
    for content in CONTENTS:
        for target in targets:
            (dm_root / target).write_bytes(content)
        result = cli("verify", dm_root, "--format", "json")
        assert result.code == 4, (rel, content, result.stderr)
        assert "internal error" not in result.stderr
        paths = {f["path"] for f in result.json()["findings"]}
        assert any(p == rel or p.startswith(rel) for p in paths) or rel == "linkgraph.db", (
            rel,
            content,
        )


# -- the thin pool against the records -----------------------------------------------------------


def _set(root: Path, name: str, **fields: Any) -> None:
    path = _record(root, name)
    doc = json.loads(path.read_bytes())
    doc.update(fields)
    path.write_text(json.dumps(doc))


def test_pool_agrees_with_the_records(cli, dm_master: Path) -> None:
    checks = {f["check"] for f in cli("verify", dm_master, "--format", "json").json()["findings"]}
    assert not {c for c in checks if c.startswith("thinpool.")}


def test_record_of_a_device_the_pool_lacks(cli, dm_root: Path, dm_truth: dict[str, Any]) -> None:
    _set(dm_root, _top(dm_truth), device_id=99)
    found = cli("verify", dm_root, "--format", "json").json()["findings"]
    hits = [(f["check"], f["path"]) for f in found]
    assert ("thinpool.device-missing", f"{META}/{_top(dm_truth)}") in hits
    assert ("thinpool.device-leaked", "devicemapper/devicemapper/metadata") in hits  # device 11


def test_pending_transaction_against_the_pool(cli, dm_root: Path, dm_truth: dict[str, Any]) -> None:
    _set(
        dm_root, "transaction-metadata", open_transaction_id=14, device_id=14, device_hash="x" * 64
    )
    found = cli("verify", dm_root, "--format", "json").json()["findings"]
    pending = [f for f in found if f["check"] == "thinpool.transaction-pending"]
    assert pending and "device 14" in pending[0]["message"]
    assert not [f for f in found if f["check"] == "devicemapper.transaction-pending"]


def test_transaction_far_ahead(cli, dm_root: Path) -> None:
    _set(dm_root, "transaction-metadata", open_transaction_id=40)
    result = cli("verify", dm_root, "--format", "json")
    assert result.code == 4
    assert "thinpool.transaction-ahead" in {f["check"] for f in result.json()["findings"]}


def test_record_ahead_of_the_pool(cli, dm_root: Path, dm_truth: dict[str, Any]) -> None:
    _set(dm_root, _top(dm_truth), transaction_id=50)
    found = cli("verify", dm_root, "--format", "json").json()["findings"]
    assert ("thinpool.record-ahead", f"{META}/{_top(dm_truth)}") in [
        (f["check"], f["path"]) for f in found
    ]


def test_mappings_past_the_device_size(cli, dm_root: Path, dm_truth: dict[str, Any]) -> None:
    _set(dm_root, "base", size=65536)  # one data block; the base maps more
    found = cli("verify", dm_root, "--format", "json").json()["findings"]
    assert ("thinpool.mapping-beyond-size", f"{META}/base") in [
        (f["check"], f["path"]) for f in found
    ]


def test_short_data_file(cli, dm_root: Path) -> None:
    data = dm_root / "devicemapper/devicemapper/data"
    with open(data, "r+b") as f:
        f.truncate(1 << 30)
    result = cli("verify", dm_root, "--format", "json")
    assert result.code == 4
    found = [(f["check"], f["path"]) for f in result.json()["findings"]]
    assert ("thinpool.data-file-short", "devicemapper/devicemapper/data") in found


def test_damaged_pool_superblock(cli, dm_root: Path) -> None:
    meta = dm_root / "devicemapper/devicemapper/metadata"
    with open(meta, "r+b") as f:
        f.write(b"\0" * 4096)
    result = cli("verify", dm_root, "--format", "json")
    assert result.code == 4
    assert "thinpool.unreadable" in {f["check"] for f in result.json()["findings"]}
