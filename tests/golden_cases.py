"""The machine-readable output of every command on every sample and on the damaged copies the
tests make: what a refactoring must leave byte for byte as it was.

Each case is a root (a sample, a corpus tree or a reference tree, possibly damaged by one of the
damage functions of the damage tests); each command's output is taken with the console script
the way a user runs it. The absolute path of the case's root is written as ``<ROOT>`` so that
outputs compare across runs. :func:`render_all` makes them all; ``tests/golden/make_golden.py``
stores them and ``tests/test_golden.py`` compares.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import test_driver_damage as driver_damage
import test_legacy_damage as legacy_damage
import test_verify_damage as verify_damage
from conftest import CORPUS, DRIVER_SAMPLES, LAYOUT_EXAMPLES, SAMPLES, copy_tree, unpack
from sample_paths import SamplePaths

#: stable key -> what the golden file holds for it
Outputs = dict[str, str]

#: the tarballs of the samples, by case name (the dockerd samples, both devicemapper samples,
#: the containerd store)
SAMPLE_TARBALLS = {
    **{name: SAMPLES / tarball for name, tarball in DRIVER_SAMPLES.items()},
    "legacy-1.8-devicemapper": SAMPLES / "legacy-1.8-devicemapper.tar.gz",
    "modern-devicemapper": SAMPLES / "modern-devicemapper.tar.gz",
    "containerd-store": SAMPLES / "containerd-store.tar.xz",
}
CORPUS_TARBALLS = {f"corpus-{name}": CORPUS / f"{name}.tgz" for name in ("aufs.v1", "overlay2.v2")}
REFERENCE_TREES = {
    f"reference-{path.name}": path
    for path in sorted(LAYOUT_EXAMPLES.iterdir())
    if path.is_dir() and path.name != "legacy_1.9.1_aufs_after_1.10_migration_additions"
}


@dataclass
class Case:
    """One root: where it comes from and the damage done to a copy of it (None: as it is)."""

    name: str
    source: str
    damage: Callable[[Path], Any] | None = None
    #: the commands that run on it, by name (see COMMANDS)
    commands: tuple[str, ...] = ("inventory", "verify", "verify-deep", "repair-dry-run")
    diffs: bool = False
    timeline: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _with_paths(fn: Callable[[SamplePaths], Any], truth: dict[str, Any]) -> Callable[[Path], Any]:
    return lambda root: fn(SamplePaths(root, truth))


def _truth(sample: str) -> dict[str, Any]:
    name = SAMPLE_TARBALLS[sample].name.split(".tar")[0]
    return json.loads((SAMPLES / f"{name}.truth.json").read_text())


def cases() -> list[Case]:
    out = [Case(name, name, diffs=True) for name in SAMPLE_TARBALLS]
    out += [Case(name, name, diffs=True) for name in CORPUS_TARBALLS]
    out += [Case(name, name) for name in REFERENCE_TREES]
    truth = _truth("overlay2")
    for fn, _check, _how in verify_damage.DAMAGE:
        out.append(Case(f"overlay2-{fn.__name__}", "overlay2", _with_paths(fn, truth)))
    for index, (fn, _check) in enumerate(verify_damage.LEFTOVERS):
        out.append(Case(f"overlay2-leftover-{index}", "overlay2", _with_paths(fn, truth)))
    for driver, fn in driver_damage.CASES:
        out.append(Case(f"{driver}-{fn.__name__}", driver, _with_paths(fn, _truth(driver))))
    for fn, _check in legacy_damage.CASES:
        out.append(Case(f"aufs.v1-{fn.__name__}", "corpus-aufs.v1", fn))
    return out


#: command name -> the arguments after the console script's name (ROOT is appended)
COMMANDS = {
    "inventory": ("inventory", "--format", "json"),
    "inventory-all": ("inventory", "-a", "--format", "json"),
    "verify": ("verify", "--format", "json"),
    "verify-jsonl": ("verify", "--format", "jsonl"),
    "verify-deep": ("verify", "--deep", "--format", "json"),
    "repair-dry-run": ("repair", "--dry-run", "--format", "json"),
    "timeline": ("timeline", "--format", "jsonl"),
    "timeline-recorded": ("timeline", "--format", "jsonl", "--no-file-times"),
}


def _source_root(name: str, scratch: Path) -> Path:
    """An unpacked copy of a sample, corpus tree or reference tree."""
    dest = scratch / "sources" / name
    if (dest / "docker").exists():
        return dest / "docker"
    if name in SAMPLE_TARBALLS:
        return unpack(SAMPLE_TARBALLS[name], dest)
    if name in CORPUS_TARBALLS:
        return unpack(CORPUS_TARBALLS[name], dest)
    dest.mkdir(parents=True)
    return _with_fixed_times(copy_tree(REFERENCE_TREES[name], dest / "docker"))


#: the file times given to a copy of a reference tree (2016-02-04T00:00:00Z): a checkout keeps
#: no file times, so the times a timeline reports must not be the checkout's
REFERENCE_TIME_NS = 1_454_544_000 * 10**9


def _with_fixed_times(root: Path) -> Path:
    """``root`` with every entry's access and modification times set to REFERENCE_TIME_NS
    (symlinks themselves, not their targets; directories after what they hold)."""
    times = (REFERENCE_TIME_NS, REFERENCE_TIME_NS)
    for top, dirs, files in os.walk(root, topdown=False):
        for name in (*files, *dirs):
            os.utime(os.path.join(top, name), ns=times, follow_symlinks=False)
    os.utime(root, ns=times)
    return root


def _prepare(case: Case, scratch: Path) -> Path:
    source = _source_root(case.source, scratch)
    if case.damage is None:
        return source
    dest = scratch / "cases" / case.name
    dest.mkdir(parents=True)
    root = copy_tree(source, dest / "docker")
    case.damage(root)
    return root


def _run(args: tuple[str, ...], root: Path) -> str:
    exe = shutil.which("docker-forensics")
    assert exe, "the console script is not installed"
    proc = subprocess.run(
        [exe, "--no-progress", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    text = f"exit {proc.returncode}\n{proc.stdout}"
    text = text.replace(str(root.parent), "<ROOT>/..").replace(str(root), "<ROOT>")
    return _ALLOCATED.sub(r'\1"<ALLOCATED>"', text)


#: a file's bytes on disk (``st_blocks``): how the file system of the machine that unpacked the
#: sample allocated a sparse file, not what the tool computed
_ALLOCATED = re.compile(r'("allocated": )\d+')


def _jobs(case: Case, root: Path) -> Iterator[tuple[str, tuple[str, ...]]]:
    for command in case.commands:
        yield f"{case.name}/{command}", (*COMMANDS[command], str(root))
    if case.timeline:
        # the modification times of a damaged copy are those of the moment it was made
        command = "timeline" if case.damage is None else "timeline-recorded"
        yield f"{case.name}/{command}", (*COMMANDS[command], str(root))
    if case.diffs:
        for cid in _container_ids(root):
            yield f"{case.name}/diff-{cid[:12]}", ("diff", cid, str(root), "--format", "json")


def _container_ids(root: Path) -> list[str]:
    doc = json.loads(_run(("inventory", "--format", "json", str(root)), root).split("\n", 1)[1])
    return sorted(c["id"] for c in doc.get("containers", []))


def render_all(workers: int = 2) -> Outputs:
    """Every case's outputs, keyed ``<case>/<command>``."""
    with tempfile.TemporaryDirectory(prefix="df-golden-") as tmp:
        scratch = Path(tmp)
        jobs: list[tuple[str, tuple[str, ...], Path]] = []
        for case in cases():
            root = _prepare(case, scratch)
            jobs += [(key, args, root) for key, args in _jobs(case, root)]
        with ThreadPoolExecutor(workers) as pool:
            texts = pool.map(lambda job: _run(job[1], job[2]), jobs)
            return {key: text for (key, _, _), text in zip(jobs, texts, strict=True)}
