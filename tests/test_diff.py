"""Offline ``docker diff``: the real samples against what dockerd printed, and overlay / aufs /
full-tree semantics (whiteouts, opaque directories) on small trees."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from forensics.evidence import Evidence
from forensics.layers import DiffPlan, container_diff, diff_plan
from forensics.stores.host import read_host

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts and trusted.* need root")


def test_sample_diffs_equal_docker_diff(driver_sample: tuple[Path, dict[str, Any]]) -> None:
    root, truth = driver_sample
    host = read_host(Evidence(root))
    assert truth["diff"]
    for cid, printed in truth["diff"].items():
        plan = diff_plan(host, cid)
        assert isinstance(plan, DiffPlan), plan
        result = container_diff(plan)
        assert not result.problems
        assert sorted(result.lines()) == sorted(printed), cid
        assert_parents_first(result.lines())


def assert_parents_first(lines: list[str]) -> None:
    """A changed directory comes before what changed inside it (as in moby's addChanges)."""
    seen: list[str] = []
    for line in lines:
        path = line[2:]
        parent = path.rpartition("/")[0]
        if parent and any(p[2:] == parent for p in lines):
            assert any(s[2:] == parent for s in seen), (line, lines)
        seen.append(line)


def test_diff_plan_of_an_unknown_container_says_why(
    driver_sample: tuple[Path, dict[str, Any]],
) -> None:
    root, _ = driver_sample
    plan = diff_plan(read_host(Evidence(root)), "0" * 64)
    assert isinstance(plan, str) and "mount-id" in plan


# -- small trees -----------------------------------------------------------------------------------


def write(path: Path, data: str = "x\n", mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    os.chmod(path, mode)
    os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))


def image_layer(root: Path, base: str) -> None:
    layer = root / base
    write(layer / "etc/passwd", "root:x:0:0::/root:/bin/sh\n")
    write(layer / "etc/motd", "hello\n")
    write(layer / "opt/old/a.txt")
    write(layer / "opt/old/b.txt")
    write(layer / "usr/bin/tool", "#!/bin/sh\n", 0o755)
    write(layer / "var/dir/x")
    write(layer / "keep/same.txt")


def copy_up(lower: Path, upper: Path, rel: str) -> None:
    """What overlayfs does before a change: the parents (and the file) copied with their stat."""
    src, dst = lower / rel, upper / rel
    for parent in reversed(Path(rel).parents[:-1]):
        (upper / parent).mkdir(exist_ok=True)
        shutil.copystat(lower / parent, upper / parent)
    if src.is_file():
        shutil.copy2(src, dst)


def whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(0, 0))


EXPECTED = {
    "C /etc",
    "C /etc/passwd",
    "D /etc/motd",
    "C /opt",
    "C /opt/old",
    "A /opt/old/new.txt",
    "D /opt/old/a.txt",
    "D /opt/old/b.txt",
    "C /usr",
    "C /usr/bin",
    "C /usr/bin/tool",
    "C /var",
    "D /var/dir",
    "A /new",
    "A /new/file",
}


@needs_root
def test_overlay_whiteouts_opaque_dirs_and_copy_ups(tmp_path: Path) -> None:
    lower, init, top = "overlay2/L/diff", "overlay2/I/diff", "overlay2/T/diff"
    image_layer(tmp_path, lower)
    write(tmp_path / init / "etc/hosts")  # the init layer: never part of the diff
    shutil.copystat(tmp_path / lower / "etc", tmp_path / init / "etc")
    up, lo = tmp_path / top, tmp_path / lower
    up.mkdir(parents=True)
    copy_up(lo, up, "etc/passwd")
    write(up / "etc/passwd", "root:x:0:0::/root:/bin/sh\nevil::0:0::/:/bin/sh\n")
    whiteout(up / "etc/motd")
    copy_up(lo, up, "opt/old/a.txt")
    shutil.rmtree(up / "opt/old")
    (up / "opt/old").mkdir()
    shutil.copystat(lo / "opt/old", up / "opt/old")
    os.setxattr(up / "opt/old", "trusted.overlay.opaque", b"y")
    write(up / "opt/old/new.txt")
    copy_up(lo, up, "usr/bin/tool")
    os.chmod(up / "usr/bin/tool", 0o4755)
    copy_up(lo, up, "var/dir/x")
    shutil.rmtree(up / "var/dir")
    whiteout(up / "var/dir")
    write(up / "new/file")
    copy_up(lo, up, "keep/same.txt")  # copied up, unchanged: no line (naive diff)
    plan = DiffPlan(str(tmp_path), "c", "overlay2", (top, init, lower), (init, lower))
    lines = container_diff(plan).lines()
    assert set(lines) == EXPECTED
    assert len(lines) == len(EXPECTED)
    assert_parents_first(lines)


@needs_root
def test_user_xattr_opaque_dir(tmp_path: Path) -> None:
    lower, top = "overlay2/L/diff", "overlay2/T/diff"
    write(tmp_path / lower / "d/old")
    (tmp_path / top / "d").mkdir(parents=True)
    shutil.copystat(tmp_path / lower / "d", tmp_path / top / "d")
    try:
        os.setxattr(tmp_path / top / "d", "user.overlay.opaque", b"y")
    except OSError:
        pytest.skip("no user xattrs on this file system")
    write(tmp_path / top / "d/new")
    plan = DiffPlan(str(tmp_path), "c", "overlay2", (top, lower), (lower,))
    assert set(container_diff(plan).lines()) == {"C /d", "A /d/new", "D /d/old"}


def test_aufs_whiteout_files_and_opaque_marker(tmp_path: Path) -> None:
    lower, top = "aufs/diff/L", "aufs/diff/T"
    image_layer(tmp_path, lower)
    up, lo = tmp_path / top, tmp_path / lower
    up.mkdir(parents=True)
    for meta in (".wh..wh.aufs", ".wh..wh.plnk", ".wh..wh.orph"):
        (up / meta).mkdir() if meta != ".wh..wh.aufs" else write(up / meta, "")
    copy_up(lo, up, "etc/passwd")
    write(up / "etc/passwd", "changed and longer\n")
    write(up / "etc/.wh.motd", "")
    copy_up(lo, up, "opt/old/a.txt")
    shutil.rmtree(up / "opt/old")
    (up / "opt/old").mkdir()
    shutil.copystat(lo / "opt/old", up / "opt/old")
    write(up / "opt/old/.wh..wh..opq", "")
    write(up / "opt/old/new.txt")
    copy_up(lo, up, "usr/bin/tool")
    os.chmod(up / "usr/bin/tool", 0o4755)
    (up / "var").mkdir()
    shutil.copystat(lo / "var", up / "var")
    write(up / "var/.wh.dir", "")
    write(up / "new/file")
    plan = DiffPlan(str(tmp_path), "c", "aufs", (top, lower), (lower,), "aufs")
    lines = container_diff(plan).lines()
    assert set(lines) == EXPECTED
    assert_parents_first(lines)


def test_full_trees_vfs_style(tmp_path: Path) -> None:
    init, cont = "vfs/dir/I", "vfs/dir/C"
    image_layer(tmp_path, init)
    shutil.copytree(tmp_path / init, tmp_path / cont, symlinks=True)
    c = tmp_path / cont
    (c / "etc/motd").unlink()
    write(c / "etc/passwd", "changed and longer\n")
    shutil.rmtree(c / "var/dir")
    write(c / "tmp/new.txt")
    os.symlink("/proc/mounts", c / "etc/mtab")
    plan = DiffPlan(str(tmp_path), "c", "vfs", (cont,), (init,))
    assert set(container_diff(plan).lines()) == {
        "C /etc",
        "D /etc/motd",
        "C /etc/passwd",
        "A /etc/mtab",
        "C /var",
        "D /var/dir",
        "A /tmp",
        "A /tmp/new.txt",
    }


def test_missing_layer_dirs_are_problems_not_tracebacks(tmp_path: Path) -> None:
    write(tmp_path / "overlay2/T/diff/a")
    plan = DiffPlan(
        str(tmp_path),
        "c",
        "overlay2",
        ("overlay2/T/diff", "overlay2/gone/diff"),
        ("overlay2/gone/diff",),
    )
    result = container_diff(plan)
    assert result.lines() == ["A /a"]
    assert [p for p, _ in result.problems] == ["overlay2/gone/diff"]
    plan = DiffPlan(str(tmp_path), "c", "overlay2", ("overlay2/nope/diff",), ())
    assert container_diff(plan).lines() == []


def test_a_symlinked_directory_in_the_upper_dir_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside / "secret")
    top = tmp_path / "overlay2/T/diff"
    top.mkdir(parents=True)
    os.symlink(outside, top / "escape")
    plan = DiffPlan(str(tmp_path), "c", "overlay2", ("overlay2/T/diff",), ())
    assert container_diff(plan).lines() == ["A /escape"]


def test_diff_of_the_example_containers(tmp_path: Path) -> None:
    """The reference examples' containers: the legacy aufs one deleted /etc/os-release (an aufs
    .wh. file), the modern overlay2 one wrote /app/output.log and /root/.ash_history."""
    from conftest import LAYOUT_EXAMPLES
    from test_reassembly import LEGACY, MODERN, realize

    if os.geteuid() != 0:
        pytest.skip("the examples' whiteouts are character devices: mknod needs root")
    found = {}
    for scenario in (LEGACY, MODERN):
        shutil.copytree(LAYOUT_EXAMPLES / scenario, tmp_path / scenario, symlinks=True)
        for path in (tmp_path / scenario).rglob("*"):
            if not path.is_symlink():
                os.chmod(path, 0o755 if path.is_dir() else 0o644)
        realize(tmp_path / scenario)
        host = read_host(Evidence(tmp_path / scenario))
        (cid,) = host.containers
        plan = diff_plan(host, cid)
        assert isinstance(plan, DiffPlan), plan
        found[scenario] = container_diff(plan).lines()
    assert "D /etc/os-release" in found[LEGACY]
    assert {"A /app/output.log", "A /root", "A /root/.ash_history"} <= set(found[MODERN])


def test_a_deep_tree_is_compared_without_recursion_up_to_path_max(tmp_path: Path) -> None:
    """1,500 levels (3,001 bytes: a path Linux can hold) are compared to the bottom; a chain of
    200-byte names is compared as far as PATH_MAX reaches, and the rest is one problem."""
    from deeptree import deep_trees

    lower, top = "overlay2/L/diff", "overlay2/T/diff"
    image_layer(tmp_path, lower)
    upper = tmp_path / top
    upper.mkdir(parents=True)
    long = "x" * 200
    with deep_trees((upper, 1500, "d"), (upper, 30, long)):
        plan = DiffPlan(str(tmp_path), "c", "overlay2", (top, lower), (lower,))
        result = container_diff(plan)
    lines = result.lines()
    assert [x for x in lines if x.startswith("A /d")] == ["A " + "/d" * n for n in range(1, 1501)]
    fitting = (4096 - 2) // (len(long) + 1)  # "/" + name per level, and the NUL
    assert [x for x in lines if x.startswith("A /x")] == [
        "A " + f"/{long}" * n for n in range(1, fitting + 1)
    ]
    ((where, message),) = result.problems
    assert result.too_deep == result.problems
    assert where.startswith(f"{top}/xxxx") and where.endswith("xxxx") and "…" in where
    assert "1 entry lies deeper than Linux allows" in message
    assert f"({fitting + 1} components)" in message
