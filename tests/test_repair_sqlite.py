"""repair --sqlite: the plan or the run beside the findings and inventory it was made from."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import test_verify_damage as damage
from sample_paths import SamplePaths
from test_repair import ACTIONS_OF_DAMAGE_MANY, damage_many, run_repair
from treehash import tree_hash


@pytest.fixture
def paths(sample_root: Path, truth: dict[str, Any]) -> SamplePaths:
    return SamplePaths(sample_root, truth)


def _rows(db: Path, sql: str) -> list[sqlite3.Row]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_dry_run_plan_goes_to_sqlite_and_root_stays(paths: SamplePaths, tmp_path: Path) -> None:
    damage_many(paths)
    before = tree_hash(paths.root)
    out = tmp_path / "plan.db"
    result = run_repair(paths.root, "--dry-run", "--format", "json", "--sqlite", out)
    assert result.code == 0, result.stderr
    assert tree_hash(paths.root) == before
    doc = result.json()
    (run,) = _rows(out, "select * from runs")
    assert run["command"] == "repair" and run["root"] == str(paths.root)
    assert run["files_read"] > 0 and run["errors"] > 0
    (rep,) = _rows(out, "select * from repair_runs")
    assert rep["run_id"] == run["id"] and rep["applied"] == 0 and rep["journal"] is None
    assert rep["actions"] == ACTIONS_OF_DAMAGE_MANY == len(doc["actions"])
    actions = _rows(out, "select * from repair_actions order by n")
    assert [(a["action_type"], a["path"]) for a in actions] == [
        (a["action"], a["path"]) for a in doc["actions"]
    ]
    assert {a["status"] for a in actions} == {"planned"}
    assert [json.loads(a["checks"]) for a in actions] == [a["checks"] for a in doc["actions"]]
    rewrite = [a for a in actions if a["action_type"] == "rewrite" and a["path"].endswith(".json")]
    assert rewrite[0]["content_sha256"] and json.loads(rewrite[0]["details"])["lost"]
    skipped = _rows(out, "select * from repair_skipped order by n")
    assert [(s["check_id"], s["path"]) for s in skipped] == [
        (s["check"], s["path"]) for s in doc["skipped"]
    ]
    # every error of the findings table is answered by an action or said to be left alone
    answered = {c for a in actions for c in json.loads(a["checks"])}
    answered |= {s["check_id"] for s in skipped}
    found = {f["check_id"] for f in _rows(out, "select * from findings where severity = 'error'")}
    assert found and found <= answered


def test_applied_run_goes_to_sqlite(paths: SamplePaths, tmp_path: Path) -> None:
    damage.truncate_config(paths)
    out = tmp_path / "run.db"
    result = run_repair(paths.root, "--format", "json", "--sqlite", out)
    assert result.code == 1, result.stderr
    doc = result.json()
    (rep,) = _rows(out, "select * from repair_runs")
    assert rep["applied"] == 1 and rep["journal"] == doc["journal"]
    assert rep["manifest"] == doc["manifest"] and rep["errors_left"] == 0
    assert {a["status"] for a in _rows(out, "select status from repair_actions")} == {"applied"}
    checks = {f["check_id"] for f in _rows(out, "select * from findings")}
    assert "container.config-damaged" in checks  # the state the plan was made on


def test_sqlite_output_rules(paths: SamplePaths, tmp_path: Path) -> None:
    inside = run_repair(paths.root, "--dry-run", "--sqlite", paths.root / "x.db")
    assert inside.code == 16 and not (paths.root / "x.db").exists()
    existing = tmp_path / "there.db"
    existing.write_bytes(b"keep")
    refused = run_repair(paths.root, "--dry-run", "--sqlite", existing)
    assert refused.code == 8 and existing.read_bytes() == b"keep"
    assert run_repair(paths.root, "--dry-run", "--sqlite", existing, "--overwrite").code == 0
    undo = run_repair("--undo", tmp_path / "j", "--sqlite", tmp_path / "u.db")
    assert undo.code == 16
