"""Reading evidence: no symlink followed out of ROOT, no FIFO or device opened, damage named."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from sample_paths import STORE, SamplePaths

from forensics.evidence import Evidence, ReadFailure


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A decoy outside ROOT: valid-looking JSON that must never be read."""
    decoy = tmp_path / "outside"
    decoy.mkdir()
    (decoy / "config.v2.json").write_text(json.dumps({"ID": "x", "Name": "/DECOY-NAME"}))
    return decoy


def test_symlinked_files_are_not_followed(
    cli, sample_root: Path, truth: dict[str, Any], outside: Path
) -> None:
    s = SamplePaths(sample_root, truth)
    rel = f"containers/{s.container_id('exited')}/config.v2.json"
    s.path(rel).unlink()
    os.symlink(outside / "config.v2.json", s.path(rel))
    result = cli("verify", sample_root, "--format", "json")
    assert "DECOY-NAME" not in result.stdout
    hits = [f for f in result.json()["findings"] if f["path"] == rel]
    assert (
        hits and hits[0]["check"] == "container.config-damaged" and hits[0]["damage"] == "symlink"
    )


def test_symlinked_directories_are_not_followed(cli, sample_root: Path, outside: Path) -> None:
    os.symlink(outside, sample_root / "overlay2" / ("9" * 64))
    os.symlink(outside, sample_root / "containers" / ("8" * 64))
    result = cli("verify", sample_root, "--format", "json")
    assert "DECOY-NAME" not in result.stdout
    paths = {f["path"]: f["check"] for f in result.json()["findings"]}
    assert paths[f"overlay2/{'9' * 64}"] == "driver.stray-entry"
    assert paths[f"containers/{'8' * 64}"] == "container.stray-entry"


def test_symlinked_store_is_not_entered(cli, sample_root: Path, outside: Path) -> None:
    layerdb = sample_root / STORE / "layerdb"
    layerdb.rename(sample_root / "moved-layerdb")
    os.symlink(sample_root / "moved-layerdb", layerdb)
    result = cli("verify", sample_root, "--format", "json")
    assert result.code == 4
    checks = {f["check"] for f in result.json()["findings"]}
    assert "image.layer-missing" in checks


def test_fifo_and_device_where_files_are_expected(
    cli, sample_root: Path, truth: dict[str, Any]
) -> None:
    s = SamplePaths(sample_root, truth)
    fifo = f"containers/{s.container_id('exited')}/config.v2.json"
    s.path(fifo).unlink()
    os.mkfifo(s.path(fifo))
    layer_diff = f"{s.layer_dir(s.chain('sample/app:1.0')[0])}/diff"
    s.path(layer_diff).unlink()
    if os.geteuid() == 0:
        os.mknod(s.path(layer_diff), 0o600 | 0o020000, os.makedev(1, 3))  # /dev/null's numbers
    else:
        os.mkfifo(s.path(layer_diff))
    result = cli("verify", sample_root, "--format", "json")  # must not block on the FIFO
    found = {f["path"]: f for f in result.json()["findings"]}
    assert found[fifo]["damage"] == "not-regular" and "FIFO" in found[fifo]["message"]
    assert found[layer_diff]["check"] == "layer.diff-damaged"


def test_evidence_refuses_escapes(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    os.symlink(outside, root / "link")
    os.symlink(outside / "config.v2.json", root / "dir" / "file")
    ev = Evidence(root)
    with pytest.raises(ReadFailure) as exc:
        ev.read_bytes("link/config.v2.json")
    assert exc.value.kind == "missing"
    with pytest.raises(ReadFailure) as exc:
        ev.read_bytes("dir/file")
    assert exc.value.kind == "symlink"
    with pytest.raises(ReadFailure) as exc:
        ev.listdir("link")
    assert exc.value.kind == "symlink"
    assert ev.readlink("link") == str(outside)


def test_read_limit(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * 2048)
    with pytest.raises(ReadFailure) as exc:
        Evidence(tmp_path).read_bytes("big", limit=1024)
    assert exc.value.kind == "too-large"


def test_root_that_is_a_symlink_is_resolved_once(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_text("ok")
    os.symlink(tmp_path / "real", tmp_path / "alias")
    assert Evidence(tmp_path / "alias").read_text("f") == "ok"


def test_plain_dir_reads_only_what_is_plain(tmp_path: Path, outside: Path) -> None:
    """The listing-free fast path reads healthy directories and gives up on anything else
    (the careful path then names the damage), without opening a FIFO or a symlink."""
    entry = tmp_path / "root" / "entry"
    entry.mkdir(parents=True)
    (entry / "diff").write_text("sha256:" + "a" * 64)
    (entry / "sub").mkdir()
    ev = Evidence(tmp_path / "root", record_reads=True)
    found = ev.read_plain_dir("entry", ("diff", "parent"), probe=("sub", "nothing"))
    assert found is not None
    assert found.files == {"diff": b"sha256:" + b"a" * 64} and found.kinds == {"sub": "dir"}
    assert set(ev.reads) == {"entry/diff"}
    os.mkfifo(entry / "parent")
    assert ev.read_plain_dir("entry", ("diff", "parent")) is None  # must not block
    (entry / "parent").unlink()
    os.symlink(outside / "config.v2.json", entry / "parent")
    assert ev.read_plain_dir("entry", ("diff", "parent")) is None
    assert ev.read_plain_dir("entry", ("sub",)) is None
    assert ev.read_plain_dir("entry", ("diff",), limit=10) is None
    os.symlink(entry, tmp_path / "root" / "alias")
    assert ev.read_plain_dir("alias", ("diff",)) is None
    assert ev.read_plain_dir("absent", ("diff",)) is None
