#!/usr/bin/env python3
"""verify of the bench host read from a raw ext4 image, beside verify of the same tree as a
directory.

    python bench/root_file_bench.py [--containers 5000] [--layers 20000] [--repeat 3]

The host comes from make_host.py (cached by run_bench.py's rules under bench/work/). Its ext4
image is made once beside it by ``mkfs.ext4 -d`` (the tree copied into a new filesystem, no
mount: the Docker root is the filesystem's root, so that the locator finds it at ``/``), then
``verify --format json`` runs on the directory and on the image, alternately, best of
``--repeat``, each in a child whose peak memory and CPU time (user and system, from ``wait4``)
are measured. The two documents must be equal but for ``root`` and ``evidence``; the script
prints both times, both peaks, and the ratio image / directory (the goal: 2.0 at most) of the
wall clock and of the CPU time (on a machine that other work keeps busy, the wall clock of
both runs says more of that work than of ours: the CPU time is then the steadier figure).
``--workers N`` sets ``DOCKER_FORENSICS_WORKERS`` for both (1: one process, no helper).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_bench import WORK, ensure_host, find_ours  # noqa: E402

SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=5000)
    parser.add_argument("--layers", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    return parser.parse_args(argv)


@dataclass
class Run:
    wall: float
    cpu: float
    peak_mib: float
    stdout: Path


def measure(argv: list[str], out_dir: Path, name: str, workers: int | None) -> Run:
    """One run in a fresh process: wall clock around it; CPU time (user + system) and peak
    RSS from the kernel (``wait4``)."""
    env = dict(os.environ)
    if workers is not None:
        env["DOCKER_FORENSICS_WORKERS"] = str(workers)
    stdout, stderr = out_dir / f"{name}.out", out_dir / f"{name}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 4):
        raise SystemExit(f"{' '.join(argv)} failed: see {stderr}")
    cpu = usage.ru_utime + usage.ru_stime
    return Run(wall, cpu, usage.ru_maxrss / 1024, stdout)


def tree_size(root: Path) -> tuple[int, int]:
    """Bytes (rounded up to 4 KiB blocks) and entries under ``root``."""
    blocks = entries = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            blocks += -(-st.st_size // 4096)
            entries += 1
    return blocks * 4096, entries


def ensure_image(root: Path) -> Path:
    """The ext4 image of ``root`` (made once: ``mkfs.ext4 -d``, room for its blocks, its
    directories' blocks and its inodes)."""
    image = root.parent / "docker.ext4"
    marker = root.parent / "IMAGE.json"
    if image.exists() and marker.exists():
        return image
    size, entries = tree_size(root)
    total = size + entries * 4096 // 4 + (256 << 20)  # data, directories, the journal
    with open(image, "wb") as f:
        f.truncate(total)
    mkfs = shutil.which("mkfs.ext4", path=SBIN)
    if mkfs is None:
        raise SystemExit("mkfs.ext4 is not installed (e2fsprogs)")
    print(f"image: mkfs.ext4 -d of {entries} entries, {size >> 20} MiB …", flush=True)
    subprocess.run(
        [mkfs, "-q", "-F", "-b", "4096", "-N", str(entries + 1000), "-E", "root_owner=0:0",
         "-d", str(root), str(image)],
        check=True,
    )  # fmt: skip
    marker.write_text(json.dumps({"entries": entries, "bytes": size}) + "\n")
    return image


def document(path: Path) -> dict[str, object]:
    doc = json.loads(path.read_text())
    doc.pop("root")
    doc.pop("evidence", None)
    return doc


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ours, why = find_ours()
    if ours is None:
        print(f"docker-forensics is not usable: {why}", file=sys.stderr)
        return 1
    root = ensure_host(args.containers, args.layers, args.seed, fresh=False)
    image = ensure_image(root)
    out = WORK / "runs"
    out.mkdir(parents=True, exist_ok=True)
    best: dict[str, tuple[float, float, float]] = {}
    outputs: dict[str, Path] = {}
    for _ in range(args.repeat):
        for name, target in (("directory", root), ("ext4 image", image)):
            argv = [*ours, "verify", str(target), "--format", "json"]
            run = measure(argv, out, "rootfile", args.workers)
            print(f"{name:>10}: {run.wall:7.2f} s  {run.cpu:7.2f} s CPU  {run.peak_mib:7.1f} MiB",
                  flush=True)  # fmt: skip
            old = best.get(name)
            now = (run.wall, run.cpu, run.peak_mib)
            best[name] = (
                (min(now[0], old[0]), min(now[1], old[1]), max(now[2], old[2])) if old else now
            )
            kept = out / f"rootfile-{name.split()[-1]}.json"
            shutil.copyfile(run.stdout, kept)
            outputs[name] = kept
    same = document(outputs["directory"]) == document(outputs["ext4 image"])
    (d_wall, d_cpu, d_peak), (i_wall, i_cpu, i_peak) = best["directory"], best["ext4 image"]
    print(f"\nbest of {args.repeat}: directory {d_wall:.2f} s ({d_cpu:.2f} s CPU), "
          f"{d_peak:.1f} MiB; ext4 image {i_wall:.2f} s ({i_cpu:.2f} s CPU), "
          f"{i_peak:.1f} MiB")  # fmt: skip
    print(f"image / directory: {i_wall / d_wall:.2f}x time, {i_cpu / d_cpu:.2f}x CPU time, "
          f"{i_peak / d_peak:.2f}x memory (goal: 2.0x time at most)")  # fmt: skip
    print(f"load average at the end: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    print("the two documents are equal (but root and evidence)" if same else "DOCUMENTS DIFFER")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
