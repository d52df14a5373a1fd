#!/usr/bin/env python3
"""verify of the bench host read from a raw ext4 image, beside verify of the same tree as a
directory.

    python bench/root_file_bench.py [--containers 5000] [--layers 20000] [--repeat 3]

The host comes from make_host.py (cached by run_bench.py's rules under bench/work/). Its ext4
image is made once beside it by ``mkfs.ext4 -d`` (the tree copied into a new filesystem, no
mount: the Docker root is the filesystem's root, so that the locator finds it at ``/``), then
``verify --format json`` runs on the directory and on the image, alternately, best of
``--repeat``, each in a child whose peak memory is measured. The two documents must be equal
but for ``root`` and ``evidence``; the script prints both times, both peaks, and the ratio image
/ directory (the goal: 2.0 at most).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_bench import WORK, ensure_host, find_ours, measure  # noqa: E402

SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=5000)
    parser.add_argument("--layers", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args(argv)


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
    best: dict[str, tuple[float, float]] = {}
    outputs: dict[str, Path] = {}
    for _ in range(args.repeat):
        for name, target in (("directory", root), ("ext4 image", image)):
            run = measure([*ours, "verify", str(target), "--format", "json"], out, "rootfile")
            wall, peak = run.wall, run.peak_kib / 1024
            print(f"{name:>10}: {wall:7.2f} s  {peak:7.1f} MiB", flush=True)
            old = best.get(name)
            best[name] = (min(wall, old[0]), max(peak, old[1])) if old else (wall, peak)
            kept = out / f"rootfile-{name.split()[-1]}.json"
            shutil.copyfile(run.stdout, kept)
            outputs[name] = kept
    same = document(outputs["directory"]) == document(outputs["ext4 image"])
    (d_wall, d_peak), (i_wall, i_peak) = best["directory"], best["ext4 image"]
    print(f"\nbest of {args.repeat}: directory {d_wall:.2f} s, {d_peak:.1f} MiB; "
          f"ext4 image {i_wall:.2f} s, {i_peak:.1f} MiB")  # fmt: skip
    print(f"image / directory: {i_wall / d_wall:.2f}x time, {i_peak / d_peak:.2f}x memory "
          "(goal: 2.0x time at most)")  # fmt: skip
    print("the two documents are equal (but root and evidence)" if same else "DOCUMENTS DIFFER")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
