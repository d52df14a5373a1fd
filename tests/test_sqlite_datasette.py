"""The database opened in datasette (in this process, through its test client: no network)
with the metadata that ``verify --datasette-metadata`` writes from the copy the package ships:
every table and view titled and described, every column described, sizes in bytes."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import copy_tree, run_cli
from datasette.app import Datasette  # the test extra
from datasette.views.base import ureg  # the units registry datasette shows sizes with
from sample_paths import SamplePaths

from forensics.export_schema import METADATA_DATABASE, TABLES, VIEWS, datasette_metadata

#: datasette names a database after its file
DB_NAME = "host-42"


@pytest.fixture(scope="module")
def case(
    tmp_path_factory: pytest.TempPathFactory, sample_master: Path, truth: dict[str, Any]
) -> tuple[Path, dict[str, Any], SamplePaths]:
    """The real sample with a truncated container config, verified with --deep into
    ``host-42.db``, and the metadata written beside it."""
    work = tmp_path_factory.mktemp("datasette")
    root = copy_tree(sample_master, work / "docker")
    s = SamplePaths(root, truth)
    config = s.path(f"containers/{s.container_id('exited')}/config.v2.json")
    config.write_bytes(config.read_bytes()[:10])
    db, meta = work / f"{DB_NAME}.db", work / "metadata.json"
    result = run_cli("verify", root, "--deep", "--sqlite", db, "--datasette-metadata", meta)
    assert result.code == 4, result.stderr
    return db, json.loads(meta.read_text()), s


def _serve(db: Path, metadata: dict[str, Any], paths: list[str]) -> list[Any]:
    """GET each of ``paths`` from datasette serving ``db`` with ``metadata``: JSON for a
    ``.json`` path, else the HTML page's text."""

    async def get_all() -> list[Any]:
        ds = Datasette(immutables=[str(db)], metadata=metadata)
        await ds.invoke_startup()
        out = []
        for path in paths:
            response = await ds.client.get(path)
            assert response.status_code == 200, (path, response.text[:500])
            out.append(response.json() if ".json" in path else response.text)
        return out

    return asyncio.run(get_all())


def test_metadata_names_the_database_and_matches_the_shipped_copy(
    case: tuple[Path, dict[str, Any], SamplePaths],
) -> None:
    _, meta, _ = case
    assert list(meta["databases"]) == [DB_NAME]
    shipped = datasette_metadata(METADATA_DATABASE)
    assert meta["databases"][DB_NAME] == shipped["databases"][METADATA_DATABASE]


def test_metadata_describes_every_table_view_and_column(
    case: tuple[Path, dict[str, Any], SamplePaths],
) -> None:
    """Every relation of the database is titled and described, every column described, and
    the metadata names nothing that is not there."""
    db, meta, _ = case
    described = meta["databases"][DB_NAME]["tables"]
    with sqlite3.connect(db) as con:
        relations = {
            name: [row[1] for row in con.execute(f"PRAGMA table_info('{name}')")]
            for (name,) in con.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                "AND name NOT LIKE 'sqlite_%'"
            )
        }
    assert set(relations) == {t.name for t in TABLES} | set(VIEWS) == set(described)
    for name, columns in relations.items():
        entry = described[name]
        assert entry["title"] and entry["description"], name
        assert set(entry["columns"]) == set(columns), name
        assert all(entry["columns"].values()), name
        for key in ("units", "facets", "label_column"):
            named = entry.get(key, [])
            names = [named] if isinstance(named, str) else list(named)
            assert set(names) <= set(columns), (name, key)
    sized = {n for n, cs in relations.items() if "size" in cs}
    assert {n for n in sized if described[n].get("units", {}).get("size") == "B"} == sized


def test_datasette_serves_the_tables_and_views(
    case: tuple[Path, dict[str, Any], SamplePaths],
) -> None:
    db, meta, s = case
    exited = s.container_id("exited")
    index, findings, named, overview, layers, page, sizes = _serve(
        db,
        meta,
        [
            f"/{DB_NAME}.json",
            f"/{DB_NAME}/findings.json?_shape=array&check_id=container.config-damaged",
            f"/{DB_NAME}/findings_named.json?_shape=array&object_id={exited}",
            f"/{DB_NAME}/containers_overview.json?_shape=array",
            f"/{DB_NAME}/layers_by_size.json?_shape=array",
            f"/{DB_NAME}/findings",
            f"/{DB_NAME}/layers_by_size",
        ],
    )
    tables = {t["name"] for t in index["tables"]}
    views = {v["name"] for v in index["views"]}
    assert tables >= {t.name for t in TABLES} and views == set(VIEWS)
    assert [f["container_id"] for f in findings] == [exited]
    assert named and {r["object_type"] for r in named} <= {"container", "mount"}
    assert {r["severity"] for r in named} >= {"error"}
    by_id = {r["id"]: r for r in overview}
    assert by_id[exited]["errors"] >= 1 and len(by_id) == len(s.truth["ps"])
    assert [r["size"] for r in layers] == sorted((r["size"] for r in layers), reverse=True)
    # the HTML pages carry the metadata: title, description, a column's description, units
    described = meta["databases"][DB_NAME]["tables"]
    assert described["findings"]["title"] in page
    assert described["findings"]["description"] in page
    assert described["findings"]["columns"]["check_id"].split(" (")[0] in page
    shown = round((layers[0]["size"] * ureg("B")).to_compact(), 6)  # as datasette shows units
    assert f"{shown:~P}".replace(" ", "&nbsp;") in sizes
    assert shown.units != ureg("B").units  # 1.98 MB, not 1983000 B


def test_metadata_file_follows_the_output_rules(sample_master: Path, tmp_path: Path) -> None:
    db, meta = tmp_path / "case.db", tmp_path / "case.metadata.json"
    alone = run_cli("verify", sample_master, "--datasette-metadata", meta)
    same = run_cli("verify", sample_master, "--sqlite", db, "--datasette-metadata", db)
    inside = run_cli(
        "verify", sample_master, "--sqlite", db, "--datasette-metadata", sample_master / "m.json"
    )
    assert (alone.code, same.code, inside.code) == (16, 16, 16)
    assert not db.exists() and not meta.exists() and not (sample_master / "m.json").exists()
    meta.symlink_to("/dev/full")
    refused = run_cli("verify", sample_master, "--sqlite", db, "--datasette-metadata", meta)
    assert refused.code == 8 and "is a symlink" in refused.stderr
    assert meta.is_symlink() and not db.exists()  # refused before anything was written
    meta.unlink()
    meta.write_text("{}")
    again = run_cli(
        "verify", sample_master, "--sqlite", db, "--datasette-metadata", meta, "--overwrite"
    )
    assert again.code == 0, again.stderr
    assert json.loads(meta.read_text())["databases"].keys() == {"case"}
