"""Hostile roots: symlink loops and symlinks out of ROOT at every level, names with newlines and
bytes that are not UTF-8, a 1 GiB JSON file, 100,000 entries in one directory, FIFOs and device
nodes where files are expected. verify finishes with findings, stays within its memory bound,
and opens nothing outside ROOT (inotify watches a decoy outside and sees no open)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from inotify_watch import Watch
from peak import measure
from sample_paths import STORE, SamplePaths

#: peak memory that verify may use on these roots (the sample alone needs about 60 MiB)
MEMORY_BOUND_MIB = 400


@pytest.fixture
def decoy(tmp_path: Path) -> Path:
    """Files outside ROOT that look like Docker metadata and must never be opened."""
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "config.v2.json").write_text(json.dumps({"ID": "x", "Name": "/DECOY"}))
    (outside / "sub" / "diff").write_text("sha256:" + "d" * 64)
    return outside


def _verify(root: Path, tmp_path: Path) -> tuple[int, dict[str, Any], int]:
    """verify in a child process: exit code, JSON document, peak RSS in MiB (measured as
    tests/peak.py says)."""
    exe = shutil.which("docker-forensics")
    assert exe
    run = measure([exe, "verify", str(root), "--format", "json"])
    return run.code, json.loads(run.stdout), run.peak_mib


def _plant_escapes(s: SamplePaths, decoy: Path) -> None:
    """Symlinks out of ROOT where a directory or a file is expected, at every level."""
    cid = s.container_id("exited")
    chain = s.layer_dir(s.chain("sample/app:1.0")[1])
    for rel in (
        f"containers/{cid}/config.v2.json",
        f"containers/{cid}/hostconfig.json",
        f"{chain}/diff",
        f"{STORE}/repositories.json",
        f"overlay2/{s.cache_id(s.chain('sample/app:1.0')[2])}/link",
    ):
        s.path(rel).unlink()
        os.symlink(decoy / "config.v2.json", s.path(rel))
    for rel in (
        f"containers/{'1' * 64}",
        f"overlay2/{'2' * 64}",
        f"{STORE}/layerdb/sha256/{'3' * 64}",
    ):
        os.symlink(decoy, s.path(rel))
    mounts = s.path(f"{STORE}/layerdb/mounts/{s.container_id('created')}")
    shutil.rmtree(mounts)
    os.symlink(decoy / "sub", mounts)
    shutil.rmtree(s.path("volumes/sample-data"))
    os.symlink(decoy, s.path("volumes/sample-data"))
    s.path("buildkit").rename(s.path("buildkit-moved"))
    os.symlink(decoy, s.path("buildkit"))


def _plant_loops_and_names(s: SamplePaths) -> None:
    os.symlink("loop-b", s.path("overlay2/loop-a"))
    os.symlink("loop-a", s.path("overlay2/loop-b"))
    os.symlink(".", s.path(f"containers/{'4' * 64}"))
    os.mkdir(os.fsencode(s.path("overlay2")) + b"/bad-\xff\xfe-name")
    os.mkdir(s.path("containers") / "line\nbreak")
    (s.path(f"{STORE}/layerdb/tmp") / "write-set-\n\x1b[31m").mkdir(parents=True)


def test_escapes_loops_and_names(
    sample_root: Path, truth: dict[str, Any], decoy: Path, tmp_path: Path
) -> None:
    s = SamplePaths(sample_root, truth)
    _plant_escapes(s, decoy)
    _plant_loops_and_names(s)
    watch = Watch(decoy, decoy / "config.v2.json", decoy / "sub", decoy / "sub" / "diff")
    try:
        code, doc, peak = _verify(sample_root, tmp_path)
        opened = watch.events()
        (decoy / "config.v2.json").read_bytes()  # the control: an open that the watch must see
        control = watch.events()
    finally:
        watch.close()
    assert control, "the inotify watch sees nothing: this test would prove nothing"
    assert opened == [], "something outside ROOT was opened"
    assert code == 4
    assert "DECOY" not in json.dumps(doc)
    damages = {f["damage"] for f in doc["findings"]}
    assert "symlink" in damages
    paths = {f["path"] for f in doc["findings"]}
    assert "overlay2/loop-a" in paths and f"containers/{'4' * 64}" in paths
    assert any("line\nbreak" in p for p in paths)
    assert peak < MEMORY_BOUND_MIB


def test_huge_json_and_special_files(
    sample_root: Path, truth: dict[str, Any], tmp_path: Path
) -> None:
    s = SamplePaths(sample_root, truth)
    config = s.path(f"containers/{s.container_id('exited')}/config.v2.json")
    config.unlink()
    with open(config, "wb") as f:
        f.truncate(1 << 30)  # 1 GiB (sparse): over the read limit, never read into memory
    hostconfig = s.path(f"containers/{s.container_id('created')}/hostconfig.json")
    hostconfig.unlink()
    os.mkfifo(hostconfig)
    size = s.path(f"{s.layer_dir(s.chain('sample/app:1.0')[0])}/size")
    size.unlink()
    if os.geteuid() == 0:
        os.mknod(size, 0o600 | 0o060000, os.makedev(7, 0))  # a block device (loop0's numbers)
    else:
        os.mkfifo(size)
    code, doc, peak = _verify(sample_root, tmp_path)
    found = {f["path"]: f for f in doc["findings"]}
    assert code == 4
    assert found[str(config.relative_to(sample_root))]["damage"] == "too-large"
    assert found[str(hostconfig.relative_to(sample_root))]["damage"] == "not-regular"
    assert found[str(size.relative_to(sample_root))]["damage"] == "not-regular"
    assert peak < MEMORY_BOUND_MIB


def test_100k_entries_in_one_directory(sample_root: Path, tmp_path: Path) -> None:
    links = sample_root / "overlay2" / "l"
    for n in range(100_000):
        os.symlink(f"../x{n}/diff", links / f"X{n:025d}")
    code, doc, peak = _verify(sample_root, tmp_path)
    assert code == 0
    orphans = [f for f in doc["findings"] if f["check"] == "overlay2.link-orphan"]
    assert len(orphans) == 100_000
    assert peak < MEMORY_BOUND_MIB


def test_names_that_are_not_utf8_reach_every_output(
    sample_root: Path, truth: dict[str, Any], tmp_path: Path
) -> None:
    """A name's bytes that are not UTF-8 are shown as escapes in text, JSON and SQLite alike, and
    a lone surrogate escaped in a JSON file is read as Go reads it (U+FFFD): no output stops on
    them."""
    s = SamplePaths(sample_root, truth)
    _plant_loops_and_names(s)
    os.mkdir(os.fsencode(s.path("containers")) + b"/bad-\xff")
    config = s.path(f"containers/{s.container_id('exited')}/config.v2.json")
    doc = json.loads(config.read_text())
    name = doc["Name"]
    doc["Name"] += "\ud800"
    config.write_text(json.dumps(doc))  # written as the escape \ud800
    exe = shutil.which("docker-forensics")
    assert exe
    db = tmp_path / "case.db"
    runs = [
        subprocess.run([exe, "verify", str(sample_root), *args], capture_output=True)
        for args in (["--format", "text"], ["--format", "json"], ["--sqlite", str(db)])
    ]
    assert [r.returncode for r in runs] == [0, 0, 0], [r.stderr for r in runs]  # warnings only
    assert b"containers/bad-\\xff" in runs[0].stdout
    paths = {f["path"] for f in json.loads(runs[1].stdout)["findings"]}
    assert "containers/bad-\udcff" in paths and "overlay2/bad-\udcff\udcfe-name" in paths
    with sqlite3.connect(db) as conn:
        stored = {p for (p,) in conn.execute("SELECT path FROM findings")}
        names = {n for (n,) in conn.execute("SELECT name FROM containers")}
    assert {"containers/bad-\\xff", "overlay2/bad-\\xff\\xfe-name"} <= stored
    # dockerd's Go decoder reads an unpaired surrogate escape as U+FFFD, and so do we
    assert name.lstrip("/") + "\ufffd" in names
