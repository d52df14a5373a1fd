"""verify --sqlite: the tables, their keys, and findings joined to their objects."""

from __future__ import annotations

import _sqlite3
import ast
import ctypes
import ctypes.util
import hashlib
import importlib.util
import json
import os
import pwd
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
import test_verify_damage as damage
from conftest import copy_tree, run_cli
from sample_paths import SamplePaths
from test_manpages import VERIFY_PAGE, entries_of, mentions, sections

from forensics.clock import now_iso
from forensics.deep import DeepResult
from forensics.export import RepairRecord, RunInfo, export_sqlite, user_name
from forensics.export_schema import TABLES, VIEWS
from forensics.model import Host
from forensics.timeline import utc


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
            "SELECT findings.check_id AS c, containers.id AS cid FROM findings "
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


# -- every table, index and view, rows or not ------------------------------------------------


def _schema(db: Path) -> dict[str, set[str]]:
    """Each table, view and index of ``db``, by kind."""
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
        found: dict[str, set[str]] = {}
        for kind, name in rows:
            found.setdefault(kind, set()).add(name)
    return found


def _every_relation_answers(db: Path) -> dict[str, int]:
    """Every table and view queried by every column: its row count."""
    counts = {}
    with sqlite3.connect(db) as con:
        for (name,) in con.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite_%'"
        ).fetchall():
            columns = [row[1] for row in con.execute(f"PRAGMA table_info('{name}')")]
            assert columns, name
            rows = con.execute(f"SELECT {', '.join(columns)} FROM {name}").fetchall()
            counts[name] = len(rows)
    return counts


def test_empty_host_has_the_whole_schema(tmp_path: Path) -> None:
    """An empty directory reads as a host with nothing in it: every table, index and view is
    there all the same, and answers with no rows."""
    out = tmp_path / "empty.db"
    run = RunInfo("docker-forensics", "0", "verify", [], "/nowhere", "h", "u", now_iso())
    export_sqlite(
        out, Host(root="/nowhere"), [], run, DeepResult(), RepairRecord([], [], False), []
    )
    schema = _schema(out)
    assert schema["table"] == {t.name for t in TABLES}
    assert schema["view"] == set(VIEWS)
    assert {"findings_check_id", "layer_files_path", "timeline_datetime"} <= {
        name.removeprefix("idx_") for name in schema["index"]
    }
    counts = _every_relation_answers(out)
    assert counts.pop("runs") == 1 and counts.pop("repair_runs") == 1
    assert set(counts.values()) == {0}


@pytest.mark.parametrize("deep", [True, False], ids=["deep", "not-deep"])
def test_devicemapper_root_exports_deep(cli, dm_master: Path, tmp_path: Path, deep: bool) -> None:
    """Docker 1.8 on devicemapper: with --deep, layer_files holds every member of every layer
    (read from the thin devices), without it no row (the export used to stop at the index of
    an empty layer_files)."""
    out = tmp_path / "dm.db"
    result = cli("verify", dm_master, *(["--deep"] if deep else []), "--sqlite", out)
    assert result.code == 0, result.stderr
    assert _schema(out)["table"] == {t.name for t in TABLES}
    counts = _every_relation_answers(out)
    assert counts["layers"] > 0 and counts["devices"] > 0
    assert (counts["layer_files"] > 0) == deep and (counts["layer_checks"] > 0) == deep
    with sqlite3.connect(out) as con:
        assert con.execute("SELECT deep FROM runs").fetchone() == (int(deep),)


def test_host_without_images_or_containers(cli, sample_root: Path, tmp_path: Path) -> None:
    """A real root emptied as ``docker system prune -a`` leaves it: the deep tables, the
    views and their indexes all exist, with no rows."""
    for sub in ("containers", "overlay2", "image/overlay2/imagedb", "image/overlay2/layerdb"):
        shutil.rmtree(sample_root / sub)
        (sample_root / sub).mkdir()
    (sample_root / "overlay2" / "l").mkdir()
    (sample_root / "image/overlay2/repositories.json").write_text('{"Repositories":{}}')
    out = tmp_path / "case.db"
    result = cli("verify", sample_root, "--deep", "--sqlite", out)
    assert result.code in (0, 4), result.stderr
    counts = _every_relation_answers(out)
    for name in ("images", "layers", "containers", "layer_files", "layer_checks", *VIEWS):
        assert counts[name] == 0, name


# -- who ran it -------------------------------------------------------------------------------


def _free_uid() -> int:
    uid = 54321
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1


def test_user_without_a_name_is_its_uid() -> None:
    uid = _free_uid()
    assert user_name(uid) == str(uid)
    assert user_name(0) == pwd.getpwuid(0).pw_name


def test_verify_as_a_uid_without_passwd_entry(sample_master: Path, tmp_path: Path) -> None:
    """A container's random uid: run in a user namespace where this process is a uid that
    the password database does not know (files owned by the real uid look like its own)."""
    unshare = shutil.which("unshare")
    uid = _free_uid()
    userns = [unshare or "unshare", "--user", f"--map-user={uid}", f"--map-group={uid}"]
    if unshare is None or subprocess.run([*userns, "true"], capture_output=True).returncode:
        pytest.skip("no user namespaces here")
    exe = shutil.which("docker-forensics")
    assert exe
    out = tmp_path / "case.db"
    env = {k: v for k, v in os.environ.items() if k not in ("LOGNAME", "USER", "LNAME", "USERNAME")}
    proc = subprocess.run(
        [*userns, exe, "verify", str(sample_master), "--sqlite", str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode in (0, 4), proc.stderr
    with sqlite3.connect(out) as con:
        assert con.execute("SELECT user, uid FROM runs").fetchone() == (str(uid), uid)


# -- SQLite that reads well -------------------------------------------------------------------


def _sqlite_keywords() -> set[str]:
    """SQLite's own list of keywords (sqlite3_keyword_name), from the library Python uses."""
    lib = ctypes.CDLL(_sqlite3.__file__)
    try:
        count = lib.sqlite3_keyword_count()
    except AttributeError:
        lib = ctypes.CDLL(ctypes.util.find_library("sqlite3"))
        count = lib.sqlite3_keyword_count()
    name, size = ctypes.c_char_p(), ctypes.c_int()
    words = set()
    for i in range(count):
        lib.sqlite3_keyword_name(i, ctypes.byref(name), ctypes.byref(size))
        words.add(ctypes.string_at(name, size.value).decode().lower())
    assert {"check", "action", "select"} <= words
    return words


def _columns(db: Path) -> dict[str, list[str]]:
    with sqlite3.connect(db) as con:
        names = [
            name
            for (name,) in con.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                "AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {n: [r[1] for r in con.execute(f"PRAGMA table_info('{n}')")] for n in names}


@pytest.fixture(scope="module")
def damaged_db(
    tmp_path_factory: pytest.TempPathFactory, sample_master: Path, truth: dict[str, Any]
) -> tuple[Path, SamplePaths, dict[str, Any]]:
    """The real sample with a layer's cache-id and a container's mount-id pointing nowhere,
    verified with --deep, --format json and --sqlite."""
    work = tmp_path_factory.mktemp("damaged")
    root = copy_tree(sample_master, work / "docker")
    s = SamplePaths(root, truth)
    damage.cache_id_to_missing_dir(s)
    damage.mount_id_to_missing_dir(s)
    out = work / "case.db"
    result = run_cli("verify", root, "--deep", "--format", "json", "--sqlite", out)
    assert result.code == 4, result.stderr
    return out, s, result.json()


def test_no_column_is_an_sql_keyword(damaged_db: tuple[Path, SamplePaths, Any]) -> None:
    keywords = _sqlite_keywords()
    for relation, columns in _columns(damaged_db[0]).items():
        assert relation not in keywords
        bad = [c for c in columns if c.lower() in keywords]
        assert not bad, f"{relation}: {bad}"


def test_check_id_holds_the_json_check(damaged_db: tuple[Path, SamplePaths, Any]) -> None:
    out, _, doc = damaged_db
    with sqlite3.connect(out) as con:
        stored = con.execute("SELECT check_id, path, message FROM findings ORDER BY id").fetchall()
    assert stored == [(f["check"], f["path"], f["message"]) for f in doc["findings"]]


#: RFC 3339 / ISO 8601 date-times in any form, and the one form the database keeps
_ANY_TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d)?(\.\d+)?\s*(Z|[+-]\d\d:?\d\d|UTC)?")
_ONE_FORM = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z")
#: the time columns, each of which must hold times
TIME_COLUMNS = {
    "runs": ("started", "finished"),
    "images": ("created", "last_updated"),
    "containers": ("created", "started", "finished"),
    "timeline": ("datetime",),
    "containers_overview": ("created", "started", "finished"),
}
#: what a 1.8/1.9 root records (no imagedb metadata: no last_updated)
LEGACY_TIME_COLUMNS = {
    "runs": ("started", "finished"),
    "images": ("created",),
    "containers": ("created",),
    "timeline": ("datetime",),
}


@pytest.mark.parametrize("root", ["modern", "legacy-devicemapper", "legacy-aufs"])
def test_every_time_is_utc_with_z(
    root: str,
    damaged_db: tuple[Path, SamplePaths, Any],
    dm_master: Path,
    corpus_roots: dict[str, Path],
    tmp_path: Path,
) -> None:
    """Any cell of any table or view that is a date-time is in the one form; every time column
    holds some, and the database agrees with the inventory's times converted to UTC."""
    if root == "modern":
        out = damaged_db[0]
    else:
        out = tmp_path / "case.db"
        source = dm_master if root == "legacy-devicemapper" else corpus_roots["aufs.v1"]
        assert run_cli("verify", source, "--sqlite", out).code == 0
    seen: dict[tuple[str, str], int] = {}
    with sqlite3.connect(out) as con:
        for relation, columns in _columns(out).items():
            for row in con.execute(f"SELECT * FROM {relation}"):
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, str) and _ANY_TIME.fullmatch(value.strip()):
                        assert _ONE_FORM.fullmatch(value), (relation, column, value)
                        seen[relation, column] = seen.get((relation, column), 0) + 1
    required = TIME_COLUMNS if root == "modern" else LEGACY_TIME_COLUMNS
    assert not [(r, c) for r, cs in required.items() for c in cs if not seen.get((r, c))]
    assert {key for key in seen} <= {(r, c) for r, cs in TIME_COLUMNS.items() for c in cs}


def test_container_times_are_the_inventory_in_utc(
    sample_master: Path, damaged_db: tuple[Path, SamplePaths, Any]
) -> None:
    doc = run_cli("inventory", sample_master, "--format", "json").json()
    with sqlite3.connect(damaged_db[0]) as con:
        stored = {
            row[0]: row[1:]
            for row in con.execute("SELECT id, created, started, finished FROM containers")
        }
    for c in doc["containers"]:
        assert stored[c["id"]] == tuple(utc(c[k]) for k in ("created", "started", "finished"))
        assert stored[c["id"]][0] is not None


def test_views_answer_the_common_questions(damaged_db: tuple[Path, SamplePaths, Any]) -> None:
    out, s, _ = damaged_db
    app = "sample/app:1.0"
    broken_layer = s.chain(app)[1]
    created = s.container_id("created")
    with sqlite3.connect(out) as con:
        con.row_factory = sqlite3.Row
        named = con.execute("SELECT * FROM findings_named").fetchall()
        per_object = con.execute("SELECT * FROM findings_per_object").fetchall()
        overview = {r["id"]: r for r in con.execute("SELECT * FROM containers_overview")}
        by_size = con.execute("SELECT id, size, images, image_tags FROM layers_by_size").fetchall()
        layers = {r["id"]: r["size"] for r in con.execute("SELECT id, size FROM layers")}
        findings = con.execute("SELECT count(*) FROM findings").fetchone()[0]
    assert len(named) == findings
    layer_rows = [r for r in named if r["object_id"] == broken_layer]
    assert layer_rows and all(app in r["object_name"].split(", ") for r in layer_rows)
    container_rows = [r for r in named if r["object_id"] == created]
    assert container_rows and {r["object_name"] for r in container_rows} == {"created"}
    assert sum(r["findings"] for r in per_object) == findings
    assert [r["errors"] for r in per_object] == sorted(
        (r["errors"] for r in per_object), reverse=True
    )
    mine = [r for r in per_object if r["object_id"] == created]
    assert mine and mine[0]["object_name"] == "created" and mine[0]["errors"] >= 1
    assert overview[created]["errors"] >= 1 and overview[created]["name"] == "created"
    exited = overview[s.container_id("exited")]
    assert exited["errors"] == 0 and app in exited["image_tags"].split(", ")
    assert len(overview) == len(s.truth["ps"])
    assert {r["id"]: r["size"] for r in by_size} == layers
    sizes = [r["size"] for r in by_size if r["size"] is not None]
    assert sizes == sorted(sizes, reverse=True) and sizes
    used = {r["id"]: r for r in by_size}[broken_layer]
    assert used["images"] >= 1 and app in used["image_tags"].split(", ")


def test_views_and_their_columns_are_documented(damaged_db: tuple[Path, SamplePaths, Any]) -> None:
    documented = entries_of(sections(VERIFY_PAGE)["SQLITE DATABASE"])
    for view in VIEWS:
        assert view in documented, view
        columns = _columns(damaged_db[0])[view]
        missing = [c for c in columns if not mentions(documented[view], c)]
        assert not missing, f"view {view}: columns not described: {missing}"


def _imported_at_load(module: str) -> set[str]:
    """The modules ``module``'s own top-level statements import (not those under ``if``, as
    ``TYPE_CHECKING``), with the packages that hold them."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin
    tree = ast.parse(Path(spec.origin).read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    found = set()
    for name in names:
        parts = name.split(".")
        found.update(".".join(parts[:n]) for n in range(1, len(parts) + 1))
    return {n for n in found if n.split(".")[0] != "forensics" or _is_module(n)}


def _is_module(name: str) -> bool:
    """``forensics.evidence`` is; ``forensics.evidence.Evidence`` is not."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, AttributeError):
        return False


def test_export_loads_without_click() -> None:
    """The library's export may be used without the CLI: none of the project's modules it
    loads imports click (sqlite-utils itself may)."""
    seen, todo = set(), ["forensics.export"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        imports = _imported_at_load(module)
        assert "click" not in imports, module
        todo.extend(n for n in imports if n.startswith("forensics"))
    assert {"forensics.clock", "forensics.outfile", "forensics.export_schema"} <= seen
