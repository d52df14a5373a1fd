#!/usr/bin/env python3
"""What one object costs: verify and inventory on a root of N empty container directories.

    python bench/empty_dirs_bench.py [--count 100000] [--commands verify inventory] [--keep]

Makes a temporary root as a freshly started dockerd leaves it, plus ``containers/<64 hex>/`` N
times (each directory is a container whose config is missing: one finding per container for
verify), runs
each command on it and on the same root with no container (the baseline), each in a child
process with its output sent to a file, and prints the wall time, the peak RSS (``ru_maxrss``
from ``os.wait4``) and the cost per directory: (peak - baseline peak) / N.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: what each command is asked to print (the machine-readable form that scripts use)
COMMANDS = {
    "verify": ["verify", "--format", "json"],
    "inventory": ["inventory", "--format", "json"],
}


#: what a dockerd that was just started leaves (an empty overlay2 image store): what makes the
#: tree a Docker root and not a directory that merely holds ``containers/``
FRESH_ROOT_DIRS = (
    "image/overlay2/imagedb/content/sha256",
    "image/overlay2/imagedb/metadata/sha256",
    "image/overlay2/layerdb/sha256",
    "overlay2/l",
)


def make_root(parent: Path, count: int) -> Path:
    """A fresh Docker root with ``count`` empty container directories, ids like Docker's."""
    root = parent / "docker"
    for rel in FRESH_ROOT_DIRS:
        (root / rel).mkdir(parents=True)
    (root / "image/overlay2/repositories.json").write_text('{"Repositories":{}}')
    containers = root / "containers"
    containers.mkdir()
    for n in range(count):
        os.mkdir(containers / hashlib.sha256(b"%d" % n).hexdigest())
    return root


def find_ours() -> str:
    beside = Path(sys.executable).with_name("docker-forensics")
    found = str(beside) if beside.exists() else shutil.which("docker-forensics")
    if not found:
        raise SystemExit("docker-forensics is not installed beside this python nor on PATH")
    return found


def run(exe: str, command: str, root: Path, out: Path) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MiB and exit code of one run in a child process."""
    with open(out, "wb") as stdout:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [exe, "--no-progress", *COMMANDS[command][:1], str(root), *COMMANDS[command][1:]],
            stdout=stdout,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    return wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="empty container directories")
    parser.add_argument("--commands", nargs="+", choices=sorted(COMMANDS), default=list(COMMANDS))
    parser.add_argument("--keep", action="store_true", help="keep the roots and the outputs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exe = find_ours()
    work = Path(tempfile.mkdtemp(prefix="dfx-empty-dirs-"))
    try:
        empty = make_root(work / "empty", 0)
        start = time.perf_counter()
        full = make_root(work / "full", args.count)
        print(
            f"{args.count:,} empty container directories made in "
            f"{time.perf_counter() - start:.1f} s under {work}"
        )
        print(f"{'command':<10} {'wall s':>8} {'peak MiB':>9} {'baseline':>9} {'per dir':>9}  exit")
        for command in args.commands:
            _, base, _ = run(exe, command, empty, work / f"{command}-empty.out")
            wall, peak, code = run(exe, command, full, work / f"{command}-full.out")
            per_dir = (peak - base) * 1024 * 1024 / max(args.count, 1)
            print(f"{command:<10} {wall:8.2f} {peak:9.1f} {base:9.1f} {per_dir:8.0f}B  {code}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
