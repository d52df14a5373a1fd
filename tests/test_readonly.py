"""The evidence is never written: not by inventory, not by verify, not by the SQLite export."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from treehash import tree_hash


def test_commands_leave_the_tree_unchanged(cli, sample_root: Path, tmp_path: Path) -> None:
    (sample_root / "overlay2" / ("d" * 64)).mkdir()  # some damage, so that findings are made
    before = tree_hash(sample_root)
    atimes = {p: p.stat().st_atime_ns for p in sample_root.rglob("config.v2.json")}
    assert cli("inventory", sample_root, "--format", "json").code == 0
    assert cli("verify", sample_root).code == 4
    assert cli("verify", sample_root, "--sqlite", tmp_path / "case.db").code == 4
    assert cli("verify", sample_root, "--deep").code == 4
    assert cli("diff", "exited", sample_root).code == 0
    assert tree_hash(sample_root) == before
    assert {p: p.stat().st_atime_ns for p in atimes} == atimes, "O_NOATIME keeps access times"


@pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts need root")
def test_read_only_bind_mount(cli, sample_master: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "ro"
    mnt.mkdir()
    subprocess.run(["mount", "--bind", str(sample_master), str(mnt)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mnt)], check=True)
        with pytest.raises(OSError):
            (mnt / "probe").write_text("x")
        before = tree_hash(mnt)
        doc = cli(
            "verify", mnt, "--deep", "--format", "json", "--sqlite", tmp_path / "case.db"
        ).json()
        assert doc["summary"]["error"] == 0
        assert cli("inventory", mnt, "--format", "json").code == 0
        assert tree_hash(mnt) == before
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
def test_tree_of_another_owner_without_write_bits(cli, sample_root: Path, tmp_path: Path) -> None:
    """Evidence copied from another host: other owners, nothing writable."""
    subprocess.run(["chown", "-R", "--no-dereference", "54321:54321", str(sample_root)], check=True)
    subprocess.run(["chmod", "-R", "a-w", str(sample_root)], check=True)
    try:
        before = tree_hash(sample_root)
        doc = cli("verify", sample_root, "--format", "json", "--sqlite", tmp_path / "c.db").json()
        assert doc["summary"]["error"] == 0
        deep = cli("verify", sample_root, "--deep", "--format", "json").json()["findings"]
        # the layers' files lost their write bits: --deep sees exactly that, once, as the
        # copy's mask, and nothing else
        assert not [f for f in deep if f["severity"] == "error"]
        masks = [f for f in deep if f["check"] == "layout.copy-artefact"]
        assert [(f["damage"], f["path"]) for f in masks] == [("mode-mask", "")]
        assert "a umask of 222" in masks[0]["message"]  # chown dropped the setuid bit too
        assert cli("inventory", sample_root, "--format", "json").code == 0
        assert tree_hash(sample_root) == before
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(sample_root)], check=True)
