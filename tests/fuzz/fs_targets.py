"""Fuzz targets of the filesystem readers (:mod:`forensics.fs`): a real ext4 and a real xfs
image (made once, at first use, by mkfs from a small tree) damaged where their structures
are — superblock, group descriptors and inode tables, inodes, directory blocks — with edge
values, then opened, walked, and every file, symlink and xattr read. Allowed outcomes: the
reader's own answers (``FsOpenError``, a ``Refusal``, a walk problem, ``OSError`` from reading
a file); anything else propagates as a crash. A crash of the C libraries kills the process:
atheris then reports it as such.
"""

from __future__ import annotations

import functools
import io
import mmap
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from draw import Draw
from targets import EDGES

from forensics.fs import FsOpenError, Limits, Refusal, open_tree, walk

SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
#: small caps: a damaged image must not make one input slow
LIMITS = Limits(
    dir_entries=2000, dir_bytes=1 << 20, total_entries=5000, depth=64, file_size=4 << 20
)


def _tree(root: Path) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_bytes(b"box\n")
    (root / "etc/big").write_bytes(bytes(range(256)) * 300)
    (root / "many").mkdir()
    for i in range(120):
        (root / "many" / f"n{i:03d}-{'z' * 12}").write_bytes(b"%d" % i)
    (root / "link").symlink_to("etc/hostname")
    (root / "long").symlink_to("/" + "/".join(["seg"] * 30))
    (root / "h1").write_bytes(b"h")
    os.link(root / "h1", root / "h2")


def _tool(name: str) -> str:
    found = shutil.which(name, path=SBIN)
    if found is None:
        raise RuntimeError(f"{name} is not installed")
    return found


@functools.cache
def _ext4() -> tuple[bytes, list[tuple[int, int]]]:
    """A 2 MiB ext4 image of 1 KiB blocks, and its regions worth damaging."""
    work = Path(tempfile.mkdtemp(prefix="fuzz-ext4-"))
    _tree(work / "src")
    image = work / "img"
    with open(image, "wb") as f:
        f.truncate(2 << 20)
    mkfs = [_tool("mkfs.ext4"), "-q", "-F", "-b", "1024", "-d", str(work / "src"), str(image)]
    subprocess.run(mkfs, check=True, env={**os.environ, "E2FSPROGS_FAKE_TIME": "1"})
    subprocess.run([_tool("debugfs"), "-w", "-R", "ea_set /etc/hostname user.k value", str(image)],
                   check=True, capture_output=True)  # fmt: skip
    data = image.read_bytes()
    shutil.rmtree(work)
    used = [i for i in range(0, len(data), 1024) if any(data[i : i + 1024])]
    return data, [(i, 1024) for i in used[:400]]


@functools.cache
def _xfs() -> tuple[Path, list[tuple[int, int]]]:
    """A 300 MiB xfs image (sparse on disk; read through an overlay), and the regions worth
    damaging: the superblock and every block that holds a walked inode or directory."""
    work = Path(tempfile.mkdtemp(prefix="fuzz-xfs-"))
    _tree(work / "src")
    proto = work / "proto"
    lines = ["/dev/null", "0 0", "d--755 0 0", "etc d--755 0 0"]
    lines += [f"hostname ---644 0 0 {work / 'src/etc/hostname'}"]
    lines += [f"big ---644 0 0 {work / 'src/etc/big'}", "$", "many d--755 0 0"]
    lines += [f"n{i:03d}-{'z' * 12} ---644 0 0 {work / 'src/h1'}" for i in range(120)]
    lines += ["$", "link l--777 0 0 etc/hostname", "long l--777 0 0 /" + "/".join(["seg"] * 30)]
    lines += ["$", ""]
    proto.write_text("\n".join(lines))
    image = work / "img"
    with open(image, "wb") as f:
        f.truncate(300 << 20)
    subprocess.run([_tool("mkfs.xfs"), "-q", "-f", "-p", str(proto), str(image)], check=True)
    regions = [(0, 512)]
    with open(image, "rb") as f, open_tree(f, 300 << 20) as tree:
        for w in walk(tree, []):
            at = tree.inode_offset(w.stat.ino)  # type: ignore[attr-defined]
            regions.append((at, 512))
            entry = tree.entry_of(w.stat.ino)
            try:
                for i in range(entry.number_of_extents):
                    offset, size, _ = entry.get_extent(i)
                    real = tree.device_offset(offset)  # type: ignore[attr-defined]
                    if real is not None and w.stat.mode & 0o170000 == 0o040000:
                        regions.append((real, min(size, 4096)))
            except OSError:
                pass
    return image, regions


class Overlay(io.RawIOBase):
    """A read-only file of ``base`` bytes with ``patches`` (offset → bytes) laid over them."""

    def __init__(self, base: bytes | mmap.mmap, patches: dict[int, bytes]) -> None:
        super().__init__()
        self.base, self.patches, self.pos = base, patches, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: 0, 1: self.pos, 2: len(self.base)}[whence] + offset
        if self.pos < 0:
            raise OSError(22, "negative seek")
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        chunk = bytearray(self.base[self.pos : self.pos + len(out)])
        for at, data in self.patches.items():
            lo, hi = max(at, self.pos), min(at + len(data), self.pos + len(chunk))
            if lo < hi:
                chunk[lo - self.pos : hi - self.pos] = data[lo - at : hi - at]
        out[: len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)


def _damage(draw: Draw, regions: list[tuple[int, int]]) -> dict[int, bytes]:
    patches: dict[int, bytes] = {}
    for _ in range(draw.integer(1, 6)):
        start, size = draw.choice(regions)
        at = start + draw.integer(0, max(0, size - 1))
        how = draw.integer(0, 3)
        if how == 0:
            width = draw.choice((1, 2, 4, 8))
            value = draw.choice(EDGES) & ((1 << (8 * width)) - 1)
            order = draw.choice(("little", "big"))
            patches[at] = value.to_bytes(width, order)
        elif how == 1:
            patches[at] = draw.bytes(64, 1)
        elif how == 2:
            patches[at] = bytes(draw.integer(1, 512))
        else:
            patches[at] = bytes([draw.integer(0, 255)])
    return patches


def read_everything(fileobj: io.RawIOBase, size: int) -> None:
    """Open, walk, and read every member: what the verbs and the layer checks do."""
    try:
        tree = open_tree(fileobj, size, LIMITS)
    except FsOpenError:
        return
    with tree:
        problems: list = []
        for w in walk(tree, problems, LIMITS):
            tree.xattrs(w.parts)
            tree.listdir(w.parts)
            tree.readlink(w.parts)
            f = tree.open_file(w.parts)
            if isinstance(f, Refusal):
                continue
            try:
                while f.read(1 << 16):
                    pass
            except OSError:
                pass


def ext4_image(draw: Draw) -> None:
    base, regions = _ext4()
    read_everything(Overlay(base, _damage(draw, regions)), len(base))


def xfs_image(draw: Draw) -> None:
    image, regions = _xfs()
    with open(image, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as base:
        read_everything(Overlay(base, _damage(draw, regions)), len(base))
