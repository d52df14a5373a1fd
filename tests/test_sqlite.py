"""verify --sqlite: the tables, their keys, and findings joined to their objects."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import sqlite_utils
from sample_paths import SamplePaths


def test_tables_keys_and_joins(
    cli, sample_root: Path, truth: dict[str, Any], tmp_path: Path
) -> None:
    s = SamplePaths(sample_root, truth)
    exited = s.container_id("exited")
    config = s.path(f"containers/{exited}/config.v2.json")
    config.write_bytes(config.read_bytes()[:10])
    out = tmp_path / "case.db"
    result = cli("verify", sample_root, "--sqlite", out)
    assert result.code == 4
    db = sqlite_utils.Database(out)
    expected = {"runs", "findings", "images", "tags", "layers", "containers", "volumes"}
    assert expected <= set(db.table_names())
    assert db["images"].pks == ["id"] and db["containers"].pks == ["id"]
    fks = {(fk.column, fk.other_table) for fk in db["findings"].foreign_keys}
    assert {("container_id", "containers"), ("image_id", "images"), ("run_id", "runs")} <= fks
    rows = list(
        db.query(
            'SELECT findings."check" AS c, containers.id AS cid FROM findings '
            "JOIN containers ON findings.container_id = containers.id"
        )
    )
    assert {"c": "container.config-damaged", "cid": exited} in rows
    assert db["containers"].count == len(truth["ps"])
    tags = {r["ref"]: r["image_id"] for r in db["tags"].rows}
    assert tags["sample/app:1.0"] == s.image_id("sample/app:1.0")


def test_run_provenance(cli, sample_master: Path, tmp_path: Path) -> None:
    out = tmp_path / "case.db"
    assert cli("verify", sample_master, "--sqlite", out).code == 0
    db = sqlite_utils.Database(out)
    (run,) = db["runs"].rows
    assert run["tool"] == "docker-forensics" and run["version"]
    assert run["root"] == str(sample_master.resolve())
    assert "--sqlite" in json.loads(run["arguments"])
    assert run["started"] <= run["finished"] and run["exit_status"] == 0
    reads = {r["path"]: r for r in db["files_read"].rows}
    assert run["files_read"] == len(reads) > 0
    for rel, row in list(reads.items())[:50]:
        data = (sample_master / rel).read_bytes()
        assert row["sha256"] == hashlib.sha256(data).hexdigest() and row["size"] == len(data)


def test_legacy_root_exports(cli, corpus_roots: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "legacy.db"
    assert cli("verify", corpus_roots["aufs.v1"], "--sqlite", out).code == 0
    db = sqlite_utils.Database(out)
    assert db["containers"].count == 3
    names = {r["name"] for r in db["containers"].rows}
    assert names == {"insane_rosalind", "kickass_mestorf", "angry_rosalind"}
    assert db["image_layers"].count >= 2
