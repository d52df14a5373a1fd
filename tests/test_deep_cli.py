"""verify --deep and diff from the command line, on the real-daemon samples."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

from sample_paths import SamplePaths


def test_every_diff_id_recomputes(cli, driver_sample: tuple[Path, dict[str, Any]]) -> None:
    root, truth = driver_sample
    result = cli("verify", root, "--deep", "--format", "json")
    assert result.code == 0, result.stdout
    doc = result.json()
    recorded = {layer for i in truth["inspect_images"] for layer in i["RootFS"]["Layers"]}
    layers = doc["layers"]
    assert layers and all(layer["diff_id_matches"] for layer in layers)
    assert recorded <= {layer["diff_id"] for layer in layers}


def test_diff_equals_docker_diff(cli, driver_sample: tuple[Path, dict[str, Any]]) -> None:
    root, truth = driver_sample
    for container in truth["inspect_containers"]:
        name = container["Name"].lstrip("/")
        result = cli("diff", name, root)
        assert result.code == 0, result.stderr
        assert sorted(result.stdout.splitlines()) == sorted(truth["diff"][container["Id"]]), name


def test_tampered_file_is_named(
    cli, sample_root: Path, truth: dict[str, Any], tmp_path: Path
) -> None:
    s = SamplePaths(sample_root, truth)
    cache = s.cache_id(s.chain("sample/app:1.0")[0])
    target = s.path(f"overlay2/{cache}/diff/etc/passwd")
    data = bytearray(target.read_bytes())
    data[0] ^= 1
    target.write_bytes(bytes(data))
    out = tmp_path / "case.db"
    result = cli("verify", sample_root, "--deep", "--format", "json", "--sqlite", out)
    assert result.code == 4
    hits = [f for f in result.json()["findings"] if f["check"] == "layer.file-modified"]
    assert [h["path"] for h in hits] == [f"overlay2/{cache}/diff/etc/passwd"]
    assert hits[0]["object_id"] == s.chain("sample/app:1.0")[0]
    db = sqlite3.connect(out)
    rows = db.execute(
        "SELECT layer_id, status FROM layer_files WHERE path = '/etc/passwd' ORDER BY status"
    ).fetchall()
    assert (s.chain("sample/app:1.0")[0], "modified") in rows
    changes = db.execute("SELECT count(*) FROM container_changes").fetchone()[0]
    assert changes == sum(len(lines) for lines in truth["diff"].values())
    db.close()


def test_diff_of_unknown_container_is_a_usage_error(cli, sample_master: Path) -> None:
    result = cli("diff", "no-such-container", sample_master)
    assert result.code == 16 and "no such container" in result.stderr


def test_every_layer_check_is_in_the_catalogue() -> None:
    """The layer report names checks; the catalogue alone gives their severity."""
    from forensics.checks.catalog import CHECKS
    from forensics.layers import report

    kinds = report.LayerProblem.__doc__ or ""
    problems = {
        f"layer.{k}" for k in re.findall(r"``([a-z-]+)``", kinds) if k not in ("kind", "damage")
    }
    assert set(report._FILE_CHECKS.values()) <= set(CHECKS)
    assert problems and problems <= set(CHECKS)
