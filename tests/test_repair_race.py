"""repair and undo while another process swaps directories and symlinks under ROOT.

Every move holds the entry it moves (never followed) and checks after the rename that what
arrived is that entry and that no directory on its way moved; a swap in the instant between is
reversed and the step refused, never followed. First the swap is made exactly in that instant
(deterministically, from inside the rename); then a helper process swaps at random while many
repairs run: each round is either refused or carried out, the undo then restores the tree byte
for byte, and nothing outside ROOT and the quarantine is ever written.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import test_verify_damage as damage
from sample_paths import STORE, SamplePaths
from test_repair import only_run, run_repair
from treehash import content_hash, tree_hash

import forensics.repair.apply as apply_module
import forensics.repair.fsops as fsops
from forensics.checks import run_checks
from forensics.evidence import Evidence
from forensics.repair.apply import RepairError, StopSwitch, start_run, workspace
from forensics.repair.journal import read_journal
from forensics.repair.plan import make_plan
from forensics.repair.undo import undo_run
from forensics.stores import read_host


@pytest.fixture
def paths(sample_root: Path, truth: dict[str, Any]) -> SamplePaths:
    return SamplePaths(sample_root, truth)


@pytest.fixture
def decoy(tmp_path: Path) -> Path:
    """What a planted symlink points to: a directory outside ROOT that looks like ROOT's."""
    d = tmp_path / "decoy"
    (d / "containers").mkdir(parents=True)
    (d / "config.v2.json").write_text("{")
    (d / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    return d


# -- a swap in the instant between the check and the rename -----------------------------------


@contextmanager
def swap_during_rename(entry: Path, swap: Callable[[], None]) -> Iterator[list[str]]:
    """Make ``swap()`` happen right before the first rename of ``entry`` (out of its directory),
    after the repair has checked it: the worst moment another process could pick."""
    real = fsops.rename_noreplace
    parent = os.stat(entry.parent)
    fired: list[str] = []

    def rename(src_fd: int, src: str, dst_fd: int, dst: str) -> None:
        st = os.fstat(src_fd)
        if src == entry.name and (st.st_dev, st.st_ino) == (parent.st_dev, parent.st_ino):
            if not fired:
                fired.append(src)
                swap()
        real(src_fd, src, dst_fd, dst)

    with (
        mock.patch.object(fsops, "rename_noreplace", rename),
        mock.patch.object(apply_module, "rename_noreplace", rename),
    ):
        yield fired


def test_an_entry_swapped_for_a_symlink_after_its_check_is_not_moved(
    paths: SamplePaths, tmp_path: Path, decoy: Path
) -> None:
    damage.truncate_config(paths)
    damaged, decoy_hash = tree_hash(paths.root), tree_hash(decoy)
    cid = paths.container_id("exited")
    container = paths.path(f"containers/{cid}")
    aside = tmp_path / "aside"

    def swap() -> None:
        container.rename(aside)
        os.symlink(decoy, container)

    with swap_during_rename(container, swap) as fired:
        result = run_repair(paths.root)
    assert fired, "the swap was made"
    assert result.code == 8, result.stdout + result.stderr
    assert "changed while it was moved" in result.stderr and "reversed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert container.is_symlink() and os.readlink(container) == str(decoy), "put back"
    assert not os.path.lexists(only_run(paths.root) / f"containers/{cid}")
    assert tree_hash(decoy) == decoy_hash
    container.unlink()  # the other process puts its swap back
    aside.rename(container)
    undo = run_repair("--undo", only_run(paths.root) / "journal.jsonl")
    assert undo.code == 1, undo.stderr
    assert tree_hash(paths.root) == damaged and tree_hash(decoy) == decoy_hash


def test_an_entry_swapped_for_another_directory_after_its_check_is_not_moved(
    paths: SamplePaths, tmp_path: Path
) -> None:
    """A directory in place of the directory checked: the same kind, another entry."""
    damage.truncate_config(paths)
    damaged = tree_hash(paths.root)
    mount = paths.mount_id("exited")
    layer = paths.path(f"overlay2/{mount}")
    aside = tmp_path / "aside"

    def swap() -> None:
        layer.rename(aside)
        layer.mkdir()
        (layer / "planted").write_text("not the layer")

    with swap_during_rename(layer, swap):
        result = run_repair(paths.root)
    assert result.code == 8 and "changed while it was moved" in result.stderr, result.stderr
    assert (layer / "planted").read_text() == "not the layer", "the stranger is put back"
    assert not os.path.lexists(only_run(paths.root) / f"overlay2/{mount}")
    (layer / "planted").unlink()
    layer.rmdir()
    aside.rename(layer)
    assert run_repair("--undo", only_run(paths.root) / "journal.jsonl").code in (0, 1)
    assert tree_hash(paths.root) == damaged


def test_a_parent_moved_out_of_root_after_the_check_gets_its_entry_back(
    paths: SamplePaths, tmp_path: Path, decoy: Path
) -> None:
    """containers/ moved out of ROOT (and a symlink to a look-alike left in its place) right
    before the rename: what the rename took from it is put back where it was taken from."""
    damage.truncate_config(paths)
    damaged, decoy_hash = tree_hash(paths.root), tree_hash(decoy)
    cid = paths.container_id("exited")
    containers = paths.path("containers")
    moved_out = tmp_path / "moved-out"

    def swap() -> None:
        containers.rename(moved_out)
        os.symlink(decoy / "containers", containers)

    with swap_during_rename(containers / cid, swap):
        result = run_repair(paths.root)
    assert result.code == 8 and "changed while it was moved" in result.stderr, result.stderr
    assert (moved_out / cid / "config.v2.json").is_file(), "put back into the directory it left"
    assert not os.path.lexists(only_run(paths.root) / f"containers/{cid}")
    assert tree_hash(decoy) == decoy_hash
    containers.unlink()
    moved_out.rename(containers)
    assert run_repair("--undo", only_run(paths.root) / "journal.jsonl").code == 1
    assert tree_hash(paths.root) == damaged and tree_hash(decoy) == decoy_hash


def test_a_swap_during_the_undo_is_refused_too(
    paths: SamplePaths, tmp_path: Path, decoy: Path
) -> None:
    damage.truncate_config(paths)
    damaged, decoy_hash = tree_hash(paths.root), tree_hash(decoy)
    cid = paths.container_id("exited")
    journal = run_repair(paths.root, "--format", "json").json()["journal"]
    containers = paths.path("containers")
    moved_out = tmp_path / "moved-out"

    def swap() -> None:
        containers.rename(moved_out)
        os.symlink(decoy / "containers", containers)

    with swap_during_rename(only_run(paths.root) / "containers" / cid, swap):
        undo = run_repair("--undo", journal)
    assert undo.code == 8 and "changed while it was moved" in undo.stderr, undo.stderr
    assert not os.path.lexists(moved_out / cid), "not left in the directory moved out of ROOT"
    assert (only_run(paths.root) / f"containers/{cid}").is_dir(), "back in the quarantine"
    assert tree_hash(decoy) == decoy_hash
    containers.unlink()
    moved_out.rename(containers)
    assert run_repair("--undo", journal).code == 1
    assert tree_hash(paths.root) == damaged


# -- a helper process swapping at random while repairs run -----------------------------------

#: a process that swaps each target in turn for a symlink to the decoy or for an empty
#: directory of its own, and back, until the stop file appears; it never removes anything but
#: what it made, never replaces anything, and prints how many swaps it made
SWAPPER = r"""
import ctypes, os, random, stat, sys, time
root, aside_dir, decoy, stop, seed, *targets = sys.argv[1:]
rnd = random.Random(int(seed))
libc = ctypes.CDLL(None, use_errno=True)

def rename_noreplace(src, dst):
    if libc.renameat2(-100, os.fsencode(src), -100, os.fsencode(dst), 1) != 0:
        raise OSError(ctypes.get_errno(), "renameat2")

def restore(path, aside, made):
    while True:
        try:
            st = os.lstat(path)
            if made == "link" and stat.S_ISLNK(st.st_mode) and os.readlink(path) == decoy:
                os.unlink(path)
            elif st.st_ino == made:
                os.rmdir(path)
            else:
                time.sleep(0.0002)  # the repair is putting something back: wait for it
                continue
        except FileNotFoundError:
            pass
        try:
            rename_noreplace(aside, path)
            return
        except OSError:
            time.sleep(0.0002)

print("ready", flush=True)
swaps = 0
while not os.path.exists(stop):
    time.sleep(rnd.random() * 0.05)
    rel = rnd.choice(targets)
    path, aside = os.path.join(root, rel), os.path.join(aside_dir, rel.replace("/", "_"))
    try:
        rename_noreplace(path, aside)
    except OSError:
        time.sleep(0.0002)
        continue
    if rnd.random() < 0.5:
        os.symlink(decoy, path)
        made = "link"
    else:
        os.mkdir(path)
        made = os.lstat(path).st_ino
    time.sleep(rnd.random() * 0.002)
    restore(path, aside, made)
    swaps += 1
print(swaps, flush=True)
"""


@contextmanager
def swapper(
    root: Path, aside: Path, decoy: Path, targets: list[str], seed: int
) -> Iterator[list[int]]:
    stop = aside / "STOP"
    proc = subprocess.Popen(
        [sys.executable, "-c", SWAPPER, str(root), str(aside), str(decoy), str(stop), str(seed)]
        + targets,
        stdout=subprocess.PIPE,
        text=True,
    )
    swaps: list[int] = []
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield swaps
    finally:
        stop.touch()
        out, _ = proc.communicate(timeout=30)
        stop.unlink()
        swaps.append(int(out.strip() or 0))
    assert proc.returncode == 0


def masked_state(root: Path, unstable: set[str]) -> dict[str, str]:
    """Every entry's type, mode, size, mtime, owner and content (or target), by path; without
    the mtimes of the directories the swapper renames in (its own renames change them; the
    repair's and the undo's are checked exactly elsewhere)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted([*dirnames, *filenames]):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            mtime = "-" if rel in unstable else st.st_mtime_ns
            what = f"{st.st_mode:o} {st.st_size} {mtime} {st.st_uid}:{st.st_gid}"
            if stat.S_ISREG(st.st_mode):
                what += " " + content_hash(path).hex()
            elif stat.S_ISLNK(st.st_mode):
                what += " -> " + os.readlink(path)
            state[rel] = what
    return state


#: a longer run: DOCKER_FORENSICS_RACE_ROUNDS=300 DOCKER_FORENSICS_RACE_SECONDS=600
ROUNDS = int(os.environ.get("DOCKER_FORENSICS_RACE_ROUNDS", "30"))
SECONDS = float(os.environ.get("DOCKER_FORENSICS_RACE_SECONDS", "25"))


def test_repair_and_undo_against_a_swapping_process(
    paths: SamplePaths, tmp_path: Path, decoy: Path
) -> None:
    damage.truncate_config(paths)
    cid = paths.container_id("exited")
    mount = paths.mount_id("exited")
    targets = [
        f"containers/{cid}",
        "containers",
        f"overlay2/{mount}",
        f"overlay2/{mount}-init",
        f"{STORE}/layerdb/mounts/{cid}",
    ]
    unstable = {"containers", "overlay2", f"{STORE}/layerdb/mounts"}
    ev = Evidence(paths.root)
    host = read_host(ev)
    plan = make_plan(ev, host, run_checks(host))
    assert len(plan.actions) == 6
    before, decoy_hash = masked_state(paths.root, unstable), tree_hash(decoy)
    outside = _outside(tmp_path, paths.root)
    aside = tmp_path / "aside"
    aside.mkdir()
    quarantine = tmp_path / "q"
    applied = refused = swaps = 0
    deadline = time.monotonic() + SECONDS
    for n in range(ROUNDS):
        runs = set(os.listdir(quarantine)) if quarantine.exists() else set()
        with swapper(paths.root, aside, decoy, targets, n) as counted:
            try:
                with workspace(paths.root, quarantine) as ws:
                    ws.lock()
                    start_run(ws, plan.actions, [], StopSwitch(None))
                applied += 1
            except RepairError as exc:
                refused += 1
                assert "nothing was changed" in str(exc) or "--undo" in str(exc), exc
        swaps += counted[0]
        assert sorted(os.listdir(aside)) == [], "the swapper put everything back"
        assert tree_hash(decoy) == decoy_hash, f"round {n}: the decoy was written"
        new = set(os.listdir(quarantine)) - runs - {".lock"}
        for run in new:
            state = read_journal(quarantine / run / "journal.jsonl")
            with workspace(paths.root, quarantine, create=False) as ws:
                ws.lock()
                undo_run(ws, state, StopSwitch(None))
        assert masked_state(paths.root, unstable) == before, f"round {n}: not restored"
        if time.monotonic() > deadline:
            break
    assert applied + refused >= 10 and swaps > 0, (applied, refused, swaps)
    assert _outside(tmp_path, paths.root) == outside, "something outside ROOT was written"


def _outside(tmp_path: Path, root: Path) -> str:
    """Everything under tmp_path but ROOT, the quarantine and the swapper's aside directory."""
    keep = {root.name, "q", "aside"}
    return "|".join(
        f"{p.name}:{tree_hash(p) if p.is_dir() else p.stat().st_size}"
        for p in sorted(tmp_path.iterdir())
        if p.name not in keep
    )
