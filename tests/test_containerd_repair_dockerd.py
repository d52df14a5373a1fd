"""The slow tier for the containerd store: a real containerd (Debian's 1.6, as made the sample)
accepts what repair leaves.

On a copy of the containerd-store sample with leftover snapshot directories and a stale ingest:
repair, then verify shows them gone; a private containerd started on (a copy of) the repaired
root lists every image and container ``ctr`` listed when the sample was made, per namespace;
then ``repair --undo`` restores the tree byte for byte. And a truncated ``meta.db``: its salvaged
copy, put in place as the plan's steps say, is a database containerd opens and lists from.

containerd runs with a private config, root, state directory and socket (no system service,
its collector paused so that it changes nothing it was not asked to) and is stopped by its pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import copy_tree
from sample_paths import CONTAINERD_META_DB, CONTAINERD_ROOT
from test_containerd_repair import findings, leftovers, problems, repair_json, truncate
from test_repair import run_repair
from treehash import tree_hash

from forensics.evidence import Evidence

pytestmark = pytest.mark.dockerd

#: the collector paused (as the sample's maker does): its first run a year away
CONFIG = """version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[plugins."io.containerd.gc.v1.scheduler"]
  startup_delay = "8760h"
  deletion_threshold = 0
  mutation_threshold = 100000000
"""


@pytest.fixture(autouse=True)
def _need_containerd() -> None:
    if os.geteuid() != 0 or not (shutil.which("containerd") and shutil.which("ctr")):
        pytest.skip("needs root and Debian's containerd and ctr")


class Ctr:
    """``ctr`` against one private containerd."""

    def __init__(self, sock: str) -> None:
        self.sock = sock

    def run(self, *args: str, ns: str | None = None) -> subprocess.CompletedProcess[str]:
        cmd = ["ctr", "-a", self.sock, *(["-n", ns] if ns else []), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    def names(self, what: str, ns: str) -> set[str]:
        listed = self.run(what, "ls", "-q", ns=ns)
        assert listed.returncode == 0, listed.stderr
        return set(listed.stdout.split())


@contextmanager
def private_containerd(root: Path) -> Iterator[Ctr]:
    """containerd on ``root`` with its own state and socket; stopped by its pid."""
    work = Path(tempfile.mkdtemp(prefix="ctd-"))  # short: a socket path has 108 bytes
    sock = str(work / "c.sock")
    config = work / "config.toml"
    config.write_text(CONFIG.format(root=root, state=work / "state", sock=sock))
    log = work / "containerd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["containerd", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ctr = Ctr(sock)
    try:
        for _ in range(150):
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            if ctr.run("version").returncode == 0:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"containerd did not answer: {log.read_text(errors='replace')[-3000:]}")
        yield ctr
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def listed(truth: dict[str, Any]) -> dict[str, tuple[set[str], set[str]]]:
    """What ctr listed when the sample was made: images and containers per namespace."""
    return {
        ns: ({i["name"] for i in v["images"]}, {c["ID"] for c in v["containers"]})
        for ns, v in truth["namespaces"].items()
    }


def lists(ctr: Ctr, namespaces: list[str]) -> dict[str, tuple[set[str], set[str]]]:
    return {ns: (ctr.names("images", ns), ctr.names("containers", ns)) for ns in namespaces}


def test_a_real_containerd_starts_on_the_repaired_root(
    containerd_root: Path, containerd_truth: dict[str, Any], tmp_path: Path
) -> None:
    made = {f"{CONTAINERD_ROOT}/{p}" for p in leftovers(containerd_root / CONTAINERD_ROOT)}
    assert {p for _, p in problems(containerd_root)} == made
    damaged = tree_hash(containerd_root)

    code, doc = repair_json(containerd_root)
    assert code == 1 and doc["errors_left"] == 0
    assert problems(containerd_root) == set()
    repaired = tree_hash(containerd_root)

    run_root = copy_tree(containerd_root, tmp_path / "run-root")  # containerd writes its root
    expected = listed(containerd_truth)
    with private_containerd(run_root / CONTAINERD_ROOT) as ctr:
        assert lists(ctr, sorted(expected)) == expected
        snapshots = ctr.run("snapshots", "--snapshotter", "overlayfs", "ls", ns="moby")
        assert snapshots.returncode == 0, snapshots.stderr

    assert tree_hash(containerd_root) == repaired, "containerd ran on a copy"
    undo = run_repair("--undo", doc["journal"])
    assert undo.code == 1, undo.stderr
    assert tree_hash(containerd_root) == damaged


def test_containerd_opens_the_salvaged_meta_db(
    containerd_root: Path, containerd_truth: dict[str, Any], tmp_path: Path
) -> None:
    db = containerd_root / CONTAINERD_META_DB
    truncate(db)
    code, doc = repair_json(containerd_root)
    assert code == 4
    (copy,) = doc["copies"]
    (action,) = doc["actions"]
    assert action["details"]["steps"][2]["command"] == f"cp RUN/meta.db.salvaged {db}"

    run_root = copy_tree(containerd_root, tmp_path / "run-root")
    shutil.copyfile(copy, run_root / CONTAINERD_META_DB)  # step 3, on the copy
    expected = listed(containerd_truth)
    with private_containerd(run_root / CONTAINERD_ROOT) as ctr:
        assert lists(ctr, sorted(expected)) == expected


# -- the native snapshotter ---------------------------------------------------------------------

NATIVE = "io.containerd.snapshotter.v1.native"


def native_snapshots(root: Path) -> dict[str, str]:
    """Native snapshots made by a real containerd on ``root``: a committed base with a file, an
    active snapshot on it (a copy of its directory), a view on it (no directory of its own);
    their ids by key."""
    with private_containerd(root) as ctr:

        def snap(*args: str) -> None:
            made = ctr.run("snapshots", "--snapshotter", "native", *args, ns="moby")
            assert made.returncode == 0, made.stderr

        snap("prepare", "base-key")
        (base,) = [p for p in (root / NATIVE / "snapshots").iterdir()]
        (base / "hello.txt").write_text("from the base layer\n")
        snap("commit", "base", "base-key")
        snap("prepare", "on-base", "base")
        snap("view", "a-view", "base")
    from forensics.stores.containerd import read_containerd_store

    with Evidence(root) as ev:
        sn = read_containerd_store(ev).snapshotters["native"]
    return {s.name.split("/", 2)[2]: str(s.id) for s in sn.snapshots.values()}


def test_native_snapshots_are_read_through_their_row(containerd_root: Path) -> None:
    """What a real containerd's native snapshotter leaves is no damage; a snapshot directory
    deleted is, at the path the row gives; a directory no snapshot owns is nobody's to delete
    (native has no cleanup): no finding, and repair never moves it."""
    store = containerd_root / CONTAINERD_ROOT
    ids = native_snapshots(store)
    assert set(ids) == {"base", "on-base", "a-view"}
    assert not (store / NATIVE / "snapshots" / ids["a-view"]).exists()
    assert (store / NATIVE / "snapshots" / ids["on-base"] / "hello.txt").is_file()
    native = [f for f in findings(containerd_root) if NATIVE in f["path"]]
    assert [f for f in native if f["severity"] != "info"] == []

    shutil.copytree(store / NATIVE / "snapshots" / ids["base"], store / NATIVE / "snapshots/99")
    shutil.rmtree(store / NATIVE / "snapshots" / ids["on-base"])
    found = {(f["check"], f["path"]) for f in findings(containerd_root) if NATIVE in f["path"]}
    gone = f"{CONTAINERD_ROOT}/{NATIVE}/snapshots/{ids['on-base']}"
    assert found == {("containerd.snapshot-dir-missing", gone)}
    code, doc = repair_json(containerd_root, "--dry-run")
    assert doc["actions"] == [] and code == 4
