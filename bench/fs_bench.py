"""Reading every file of a filesystem that lies in a thin device, beside the limit.

Builds (once, under ``--work``) an ext4 image with ``mkfs.ext4 -d`` (or an xfs image with
``mkfs.xfs -p``, at least 512 MiB) from generated files: ``--set small``, 5,697 files of 205 MB
in a 256 MiB image; ``--set big``, 30,000 files of about 1 GB in a 1.5 GiB image, sizes drawn
alike (a long tail, the median a few KB, as in image layers). Puts it in a pool with
``thin_restore`` as device 1 (its non-zero 64 KiB blocks mapped), then times, in one run, best
of ``--repeat``:

- **limit**: the same files' bytes read from the plain image (the device extracted) with one
  ``os.preadv`` per extent into one buffer, the extents listed beforehand, untimed: what any
  reader must at least do;
- **ours**: the device read through the pool's mapping (:class:`ThinDevice`), the filesystem
  through :mod:`forensics.fs`, every regular file found by a walk from the root, opened and
  read whole into one buffer;
- **plain image**: ours on the plain image file (no pool mapping);

each once reading only and once with a sha256 of every file (what a check of the contents
costs). Prints the seconds and the ratios limit / ours (1.0: as fast as the limit).

    python bench/fs_bench.py [--work DIR] [--set small|big] [--fs ext4|xfs] [--repeat 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from forensics.fs import open_tree, walk  # noqa: E402
from forensics.thin.blocks import MetadataFile  # noqa: E402
from forensics.thin.device import ThinDevice  # noqa: E402
from forensics.thin.pool import read_pool  # noqa: E402

#: files, image size, seed of each set
SETS = {"small": (5697, 256 << 20, 7), "big": (30000, 1536 << 20, 8)}
#: mkfs.xfs makes nothing smaller than 300 MB
XFS_SMALLEST = 512 << 20
BUFFER = bytearray(1 << 20)
VIEW = memoryview(BUFFER)
SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def build(work: Path, which: str, fs: str) -> tuple[Path, Path, Path, int]:
    import fs_images as fi

    count, size, seed = SETS[which]
    if fs == "xfs":
        size = max(size, XFS_SMALLEST)
    image = work / f"{fs}.img"
    if image.exists() and (work / "metadata").exists():
        return image, work / "metadata", work / "data", size
    shutil.rmtree(work, ignore_errors=True)
    src = work / "src"
    rng = random.Random(seed)
    total = 0
    files = []
    for i in range(count):
        d = src / f"d{i % 97:02d}" / f"s{i % 13}"
        d.mkdir(parents=True, exist_ok=True)
        length = int(rng.lognormvariate(8.5, 2.0)) % (4 << 20)
        (d / f"f{i:05d}").write_bytes(rng.randbytes(length))
        files.append(d / f"f{i:05d}")
        total += length
    with open(image, "wb") as f:
        f.truncate(size)
    if fs == "ext4":
        mkfs = [shutil.which("mkfs.ext4", path=SBIN) or "mkfs.ext4", "-q", "-F", "-b", "4096",
                "-d", str(src), str(image)]  # fmt: skip
    else:
        proto = work / "proto"
        proto.write_text(_proto(src))
        mkfs = [shutil.which("mkfs.xfs", path=SBIN) or "mkfs.xfs", "-q", "-f", "-p", str(proto),
                str(image)]  # fmt: skip
    subprocess.run(mkfs, check=True)
    shutil.rmtree(src)
    pool = fi.pool_of(work, [image])
    print(f"built: {total / 1e6:.0f} MB in {count:,} files, {fs} image {size >> 20} MiB")
    return image, pool.metadata, pool.data, size


def _proto(src: Path) -> str:
    lines = ["/dev/null", "0 0", "d--755 0 0"]

    def directory(path: Path) -> None:
        for child in sorted(path.iterdir()):
            if child.is_dir():
                lines.append(f"{child.name} d--755 0 0")
                directory(child)
                lines.append("$")
            else:
                lines.append(f"{child.name} ---644 0 0 {child}")

    directory(src)
    lines += ["$", ""]
    return "\n".join(lines)


# -- ours -------------------------------------------------------------------------------------


def read_tree(tree, digest: bool) -> int:
    n = 0
    for w in walk(tree, []):
        if stat.S_ISREG(w.stat.mode):
            f = tree.open_file(w.parts)
            if digest:
                h = hashlib.sha256()
                while got := f.readinto(BUFFER):
                    h.update(VIEW[:got])
                    n += got
                h.digest()
            else:
                while got := f.readinto(BUFFER):
                    n += got
            f.close()
    return n


def ours(metadata: Path, data: Path, size: int, digest: bool) -> int:
    fd = os.open(data, os.O_RDONLY)
    try:
        with MetadataFile(metadata) as meta:
            device = ThinDevice(read_pool(meta, space_maps=False), 1, fd, size=size)
            with open_tree(device, size) as tree:
                return read_tree(tree, digest)
    finally:
        os.close(fd)


def plain(image: Path, size: int, digest: bool) -> int:
    with open(image, "rb") as f, open_tree(f, size) as tree:
        return read_tree(tree, digest)


# -- the limit --------------------------------------------------------------------------------


def extents_of(image: Path, size: int) -> list[list[tuple[int, int]]]:
    """Each regular file's data extents on the plain image (device offset, length)."""
    out = []
    with open(image, "rb") as f, open_tree(f, size) as tree:
        for w in walk(tree, []):
            if stat.S_ISREG(w.stat.mode):
                entry = tree.entry_of(w.stat.ino)
                layout = tree.layout(w.stat.ino, entry, w.stat.size)
                if layout is None or not hasattr(layout, "device"):
                    raise SystemExit(f"{w.parts}: no layout ({layout})")
                spans = [
                    (at, length)
                    for at, length in zip(layout.device, layout.lengths, strict=True)
                    if at >= 0
                ]
                out.append(spans)
    return out


def limit(image: Path, files: list[list[tuple[int, int]]], digest: bool) -> int:
    fd = os.open(image, os.O_RDONLY)
    n = 0
    try:
        for spans in files:
            h = hashlib.sha256() if digest else None
            for offset, length in spans:
                done = 0
                while done < length:
                    step = min(len(BUFFER), length - done)
                    got = os.preadv(fd, [VIEW[:step]], offset + done)
                    if h is not None:
                        h.update(VIEW[:got])
                    done += got
                n += done
            if h is not None:
                h.digest()
    finally:
        os.close(fd)
    return n


def best(repeat: int, call: Callable[..., int], *args: object) -> tuple[float, int]:
    times, n = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = call(*args)
        times.append(time.perf_counter() - t0)
    return min(times), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--set", choices=sorted(SETS), default="small")
    parser.add_argument("--fs", choices=("ext4", "xfs"), default="ext4")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    work = args.work or Path(f"/tmp/fs-bench-{args.set}-{args.fs}")
    image, metadata, data, size = build(work, args.set, args.fs)
    files = extents_of(image, size)
    total = sum(length for spans in files for _, length in spans)
    print(f"{len(files):,} regular files, {total / 1e6:.0f} MB of data, best of {args.repeat}")
    for digest in (False, True):
        what = "read + sha256" if digest else "read"
        t_limit, n_limit = best(args.repeat, limit, image, files, digest)
        t_plain, n_plain = best(args.repeat, plain, image, size, digest)
        t_ours, n_ours = best(args.repeat, ours, metadata, data, size, digest)
        assert n_limit == n_plain == n_ours, (n_limit, n_plain, n_ours)
        print(f"{what}:")
        print(f"  limit (preadv of each extent, plain image): {t_limit:.3f} s")
        print(f"  plain image through forensics.fs:           {t_plain:.3f} s")
        print(f"  thin device through forensics.fs (ours):    {t_ours:.3f} s")
        print(f"  ratio limit/ours {t_limit / t_ours:.2f}, limit/plain {t_limit / t_plain:.2f}")


if __name__ == "__main__":
    main()
