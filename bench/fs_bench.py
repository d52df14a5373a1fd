"""Reading every file of an ext4 thin device, beside the limit.

Builds (once, under ``--work``) a 256 MiB ext4 image with ``mkfs.ext4 -d`` from about 5,700
files of 162 MB, puts it in a pool with ``thin_restore`` as device 1 (its non-zero 64 KiB
blocks mapped), then times, in one run, best of ``--repeat``:

- **ours**: the device read through the pool's mapping (:class:`ThinDevice`), the filesystem
  through :mod:`forensics.fs`, every regular file walked from the root and read whole;
- **plain image**: the same reader on the plain image file (no pool mapping);
- **limit**: the same files' bytes read from the plain image with one ``os.preadv`` per extent
  (the extents listed beforehand, untimed): what any reader must at least do.

Prints the seconds and the ratios (limit / ours: 1.0 would be as fast as the limit).

    python bench/fs_bench.py [--work DIR] [--repeat 5]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from forensics.fs import open_tree, walk  # noqa: E402
from forensics.thin.blocks import MetadataFile  # noqa: E402
from forensics.thin.device import ThinDevice  # noqa: E402
from forensics.thin.pool import read_pool  # noqa: E402

IMAGE_SIZE = 256 << 20


def build(work: Path) -> tuple[Path, Path, Path]:
    import fs_images as fi

    image = work / "ext4.img"
    if image.exists() and (work / "metadata").exists():
        return image, work / "metadata", work / "data"
    shutil.rmtree(work, ignore_errors=True)
    src = work / "src"
    rng = random.Random(7)
    total = 0
    for i in range(5697):
        d = src / f"d{i % 97:02d}" / f"s{i % 13}"
        d.mkdir(parents=True, exist_ok=True)
        size = int(rng.lognormvariate(8.5, 2.0)) % (4 << 20)
        (d / f"f{i:05d}").write_bytes(rng.randbytes(size))
        total += size
    with open(image, "wb") as f:
        f.truncate(IMAGE_SIZE)
    subprocess.run(
        [shutil.which("mkfs.ext4", path="/usr/sbin:/sbin") or "mkfs.ext4", "-q", "-F", "-b",
         "4096", "-d", str(src), str(image)],
        check=True,
    )  # fmt: skip
    pool = fi.pool_of(work, [image])
    print(f"built: {total / 1e6:.0f} MB in 5,697 files, image {IMAGE_SIZE >> 20} MiB")
    return image, pool.metadata, pool.data


def read_all(tree) -> int:
    n = 0
    for w in walk(tree, []):
        if w.stat.mode & 0o170000 == 0o100000:
            f = tree.open_file(w.parts)
            while chunk := f.read(1 << 20):
                n += len(chunk)
    return n


def ours(metadata: Path, data: Path) -> int:
    fd = os.open(data, os.O_RDONLY)
    try:
        with MetadataFile(metadata) as meta:
            device = ThinDevice(read_pool(meta, space_maps=False), 1, fd, size=IMAGE_SIZE)
            with open_tree(_buffered(device), IMAGE_SIZE) as tree:
                return read_all(tree)
    finally:
        os.close(fd)


BUFFER = 0


def _buffered(device: ThinDevice) -> io.RawIOBase | io.BufferedReader:
    return io.BufferedReader(device, BUFFER) if BUFFER else device


def plain(image: Path) -> int:
    with open(image, "rb") as f, open_tree(f, IMAGE_SIZE) as tree:
        return read_all(tree)


def extents_of(image: Path) -> list[list[tuple[int, int]]]:
    out = []
    with open(image, "rb") as f, open_tree(f, IMAGE_SIZE) as tree:
        for w in walk(tree, []):
            if w.stat.mode & 0o170000 == 0o100000:
                entry = tree.entry_of(w.stat.ino)
                spans = []
                left = w.stat.size
                for i in range(entry.number_of_extents):
                    offset, size, flags = entry.get_extent(i)
                    take = min(size, left)
                    if not flags & 1:
                        spans.append((offset, take))
                    left -= take
                out.append(spans)
    return out


def limit(image: Path, files: list[list[tuple[int, int]]]) -> int:
    fd = os.open(image, os.O_RDONLY)
    n = 0
    try:
        for spans in files:
            for offset, size in spans:
                buffer = bytearray(size)
                n += os.preadv(fd, [buffer], offset)
    finally:
        os.close(fd)
    return n


def best(repeat: int, call, *args) -> tuple[float, int]:
    times, n = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = call(*args)
        times.append(time.perf_counter() - t0)
    return min(times), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/fs-bench"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--buffer", type=int, default=0, help="BufferedReader size (0: none)")
    args = parser.parse_args()
    global BUFFER
    BUFFER = args.buffer
    image, metadata, data = build(args.work)
    files = extents_of(image)
    t_limit, n_limit = best(args.repeat, limit, image, files)
    t_plain, n_plain = best(args.repeat, plain, image)
    t_ours, n_ours = best(args.repeat, ours, metadata, data)
    print(f"limit (preadv of each extent, plain image): {t_limit:.3f} s, {n_limit / 1e6:.0f} MB")
    print(f"plain image through forensics.fs:           {t_plain:.3f} s, {n_plain / 1e6:.0f} MB")
    print(f"thin device through forensics.fs (ours):    {t_ours:.3f} s, {n_ours / 1e6:.0f} MB")
    print(f"ratio limit/ours {t_limit / t_ours:.2f}, plain/ours {t_plain / t_ours:.2f}")


if __name__ == "__main__":
    main()
