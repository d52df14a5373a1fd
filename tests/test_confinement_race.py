"""Reading while the tree changes: another process swaps directories of ROOT for symlinks to a
decoy tree (a copy of the same directories outside ROOT) and back, as fast as it can, while
verify, inventory and timeline run, round after round. inotify watches every directory of the
decoy: nothing in it is ever opened, and every run ends with its documented exit code.

``DOCKER_FORENSICS_RACE_ROUNDS`` sets the number of rounds (default 8; each runs the three
commands once)."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from inotify_watch import Watch
from sample_paths import STORE, SamplePaths

ROUNDS = int(os.environ.get("DOCKER_FORENSICS_RACE_ROUNDS", "") or 8)
COMMANDS = (
    ("verify", "--format", "json"),
    ("inventory", "--format", "json"),
    ("timeline", "--format", "jsonl"),
)


def _targets(s: SamplePaths) -> list[str]:
    """Directories that the readers enter, from the top of a store to a single record."""
    exited, running = s.container_id("exited"), s.container_id("running")
    chain = s.chain("sample/app:1.0")
    return [
        "buildkit",
        "containers",
        f"containers/{exited}",
        f"containers/{running}",
        STORE,
        f"{STORE}/imagedb",
        f"{STORE}/imagedb/content/sha256",
        f"{STORE}/layerdb",
        f"{STORE}/layerdb/sha256/{chain[1].removeprefix('sha256:')}",
        f"{STORE}/layerdb/mounts/{exited}",
        f"overlay2/{s.cache_id(chain[2])}",
        "overlay2/l",
        "volumes",
    ]


def _swapper(root: Path, decoy: Path, targets: list[str], stop: Any) -> None:
    """Swap each target for a symlink to its decoy copy and back, until told to stop; the tree
    is left as it was."""
    while not stop.is_set():
        for n, rel in enumerate(targets):
            path = root / rel
            away = path.with_name(path.name + ".away")
            os.rename(path, away)
            os.symlink(decoy / str(n), path)
            time.sleep(0.0003)
            os.unlink(path)
            os.rename(away, path)


def _decoy(root: Path, decoy: Path, targets: list[str]) -> list[Path]:
    """A copy of each target outside ROOT (``decoy/<n>``); the directories to watch."""
    watched = []
    for n, rel in enumerate(targets):
        decoy.mkdir(exist_ok=True)
        subprocess.run(["cp", "-a", str(root / rel), str(decoy / str(n))], check=True)
        for top, _dirs, _files in os.walk(decoy / str(n)):
            if "diff" in Path(top).parts:
                continue  # layer contents: no reader of metadata goes there
            watched.append(Path(top))
    return watched


def test_swapping_directories_for_symlinks_never_leads_outside(
    sample_root: Path, truth: dict[str, Any], tmp_path: Path
) -> None:
    s = SamplePaths(sample_root, truth)
    targets = _targets(s)
    decoy = tmp_path / "decoy"
    watch = Watch(*_decoy(sample_root, decoy, targets))
    exe = shutil.which("docker-forensics")
    assert exe
    ctx = multiprocessing.get_context("fork")
    failures: list[str] = []
    opened_rounds = 0
    try:
        for _ in range(ROUNDS):
            stop = ctx.Event()
            swapper = ctx.Process(target=_swapper, args=(sample_root, decoy, targets, stop))
            swapper.start()
            try:
                runs = [
                    subprocess.run([exe, verb, str(sample_root), *args], capture_output=True)
                    for verb, *args in COMMANDS
                ]
            finally:
                stop.set()
                swapper.join(timeout=30)
            assert swapper.exitcode == 0, "the swapper failed: the tree may be left swapped"
            opened_rounds += bool(watch.events())
            for (verb, *_), run in zip(COMMANDS, runs, strict=True):
                if run.returncode not in (0, 4) or b"Traceback" in run.stderr:
                    failures.append(f"{verb}: exit {run.returncode}: {run.stderr[-400:]!r}")
        (decoy / "0" / "snapshots.db").read_bytes()  # the control: an open the watch must see
        control = watch.events()
    finally:
        watch.close()
    assert control, "the inotify watch sees nothing: this test would prove nothing"
    assert opened_rounds == 0, f"files outside ROOT were opened in {opened_rounds}/{ROUNDS} rounds"
    assert not failures, failures
    assert not any((sample_root / rel).is_symlink() for rel in targets)
