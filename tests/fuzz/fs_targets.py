"""Fuzz targets of the filesystem readers (:mod:`forensics.fs`): small real ext4 and xfs images
(made once, at first use, by mkfs from a small tree: the smallest that mkfs makes) damaged
where their structures are, then opened, walked, and every file, symlink and xattr read.

The damage is aimed: the fields of each structure the readers meet are listed from the real
image (ext4: the superblock, the group descriptors, every walked inode with its extent header
and extents, every directory record; xfs: the superblock, the AGF and AGI headers, the inode
btree root, every walked inode core with its data fork, every directory block's entries),
and an input sets a few of them to edge values (0, 2**31, 2**32 - 1, …), nudges them, or
writes random bytes over a structure. Three ext4 seeds (today's features; CentOS 7's, with
128-byte inodes; inline data) and two xfs seeds (short-form and block directories; a leaf
directory) are drawn from.

Allowed outcomes: the reader's own answers (``FsOpenError``, a ``Refusal``, a walk problem,
``OSError`` from reading a file); anything else propagates as a crash. A crash of the C
libraries kills the process: atheris then reports it as such.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from draw import Draw
from targets import EDGES

from forensics.fs import FsOpenError, Limits, Refusal, open_tree, walk

SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
#: small caps: a damaged image must not make one input slow
LIMITS = Limits(
    dir_entries=400, dir_bytes=64 << 10, total_entries=600, depth=32, file_size=64 << 10,
    extents=256,
)  # fmt: skip
CHUNK = 1 << 16


@dataclass(frozen=True)
class Field:
    """A field of a structure: ``width`` bytes at ``offset``, in ``order``."""

    offset: int
    width: int
    order: str


@dataclass(frozen=True)
class Seed:
    """A real image as its non-zero 64 KiB chunks, its size, and what is worth damaging:
    fields (set to edge values) and regions (overwritten with random bytes)."""

    chunks: dict[int, bytes]
    size: int
    fields: tuple[Field, ...]
    regions: tuple[tuple[int, int], ...]


# -- the seeds --------------------------------------------------------------------------------


def _source(root: Path, leaf: bool = False) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_bytes(b"box\n")
    (root / "etc/big").write_bytes(bytes(range(256)) * 12)
    (root / "many").mkdir()
    for i in range(40):
        (root / "many" / f"n{i:03d}-{'z' * 16}").write_bytes(b"%d" % i)
    if leaf:
        (root / "leaf").mkdir()
        for i in range(150):
            (root / "leaf" / f"entry-{i:04d}-{'y' * 24}").write_bytes(b"l")
    (root / "link").symlink_to("etc/hostname")
    (root / "long").symlink_to("/" + "/".join(["seg"] * 30))
    (root / "h1").write_bytes(b"h")
    os.link(root / "h1", root / "h2")
    with open(root / "sparse", "wb") as f:
        f.write(b"s" * 100)
        f.seek(6000)
        f.write(b"e")
    with open(root / "frag", "wb") as f:  # 12 runs between holes: an extent tree of depth 1
        for i in range(12):
            f.seek(i * 2048)
            f.write(bytes([65 + i]) * 1024)
    (Path(os.fsdecode(bytes(root) + b"/caf\xe9"))).write_bytes(b"latin-1 name\n")


def _tool(name: str) -> str:
    found = shutil.which(name, path=SBIN)
    if found is None:
        raise RuntimeError(f"{name} is not installed")
    return found


def _chunks(data: bytes) -> dict[int, bytes]:
    return {
        i // CHUNK: data[i : i + CHUNK]
        for i in range(0, len(data), CHUNK)
        if any(data[i : i + CHUNK])
    }


@functools.cache
def ext4_seeds() -> tuple[Seed, ...]:
    """384 KiB ext4 images of 1 KiB blocks: today's features, CentOS 7's with 128-byte
    inodes, and inline data."""
    seeds = []
    for features in ([], ["-O", "^metadata_csum,^64bit", "-I", "128"], ["-O", "inline_data"]):
        work = Path(tempfile.mkdtemp(prefix="fuzz-ext4-"))
        try:
            _source(work / "src")
            image = work / "img"
            with open(image, "wb") as f:
                f.truncate(384 << 10)
            mkfs = [_tool("mkfs.ext4"), "-q", "-F", "-b", "1024", "-N", "64",
                    "-O", "^has_journal,^resize_inode", *features, "-d", str(work / "src"),
                    str(image)]  # fmt: skip
            env = {**os.environ, "E2FSPROGS_FAKE_TIME": "1"}
            subprocess.run(mkfs, check=True, env=env, capture_output=True)
            ea = [_tool("debugfs"), "-w", "-R", "ea_set /etc/hostname user.k value", str(image)]
            subprocess.run(ea, check=True, capture_output=True)
            data = image.read_bytes()
        finally:
            shutil.rmtree(work)
        seeds.append(_ext4_seed(data))
    return tuple(seeds)


def _ext4_seed(data: bytes) -> Seed:
    fields: list[Field] = []
    regions: list[tuple[int, int]] = [(1024, 1024)]
    le = "little"
    for offset, width in _EXT4_SUPERBLOCK:
        fields.append(Field(1024 + offset, width, le))
    with io.BytesIO(data) as f, open_tree(f, len(data)) as tree:
        groups = tree.groups  # type: ignore[attr-defined]
        table = (groups.first_data_block + 1) * groups.block_size
        for g in range(groups.count):
            at = table + g * groups.desc_size
            regions.append((at, groups.desc_size))
            fields += [Field(at + o, w, le) for o, w in _EXT4_DESCRIPTOR if o < groups.desc_size]
        for w in walk(tree, []):
            at = groups.inode_offset(w.stat.ino)
            regions.append((at, groups.inode_size))
            fields += [Field(at + o, wd, le) for o, wd in _EXT4_INODE if o < groups.inode_size]
            fields += _ext4_tree_nodes(data, at + 0x28, groups.block_size, regions)
            if w.stat.mode & 0o170000 == 0o040000:
                entry = tree.entry_of(w.stat.ino)
                extents = tree.extents_of(w.stat.ino, entry, w.stat.size)
                for offset, length, flags in [] if isinstance(extents, Refusal) else extents:
                    if not flags and length:
                        regions.append((offset, length))
                        fields += _ext4_records(data, offset, length)
    return Seed(_chunks(data), len(data), tuple(fields), tuple(regions))


def _ext4_tree_nodes(
    data: bytes, i_block: int, block_size: int, regions: list[tuple[int, int]]
) -> list[Field]:
    """The fields of the extent tree blocks under an inode's root (headers, index entries and
    extents), when its root is an index node."""
    magic, entries, _, depth = struct.unpack_from("<HHHH", data, i_block)
    if magic != 0xF30A or not depth:
        return []
    out = []
    for i in range(min(entries, 4)):
        block = struct.unpack_from("<I", data, i_block + 12 + 12 * i + 4)[0]
        at = block * block_size
        if at + block_size > len(data):
            continue
        regions.append((at, block_size))
        out += [Field(at + o, w, "little") for o, w in ((0, 2), (2, 2), (4, 2), (6, 2))]
        count = min(struct.unpack_from("<H", data, at + 2)[0], 16)
        for e in range(count):
            base = at + 12 + 12 * e
            out += [Field(base + o, w, "little") for o, w in ((0, 4), (4, 2), (6, 2), (8, 4))]
    return out


def _ext4_records(data: bytes, offset: int, length: int) -> list[Field]:
    """The fields of every directory record in a directory's blocks."""
    out = []
    pos = offset
    while pos + 8 <= offset + length:
        rec_len = struct.unpack_from("<H", data, pos + 4)[0]
        out += [Field(pos, 4, "little"), Field(pos + 4, 2, "little"), Field(pos + 6, 1, "little"),
                Field(pos + 7, 1, "little")]  # fmt: skip
        if rec_len < 8:
            break
        pos += rec_len
    return out


#: ext4 superblock fields: counts, geometry, features, sizes
_EXT4_SUPERBLOCK = (
    (0x00, 4), (0x04, 4), (0x14, 4), (0x18, 4), (0x1C, 4), (0x20, 4), (0x24, 4), (0x28, 4),
    (0x38, 2), (0x4C, 4), (0x54, 4), (0x58, 2), (0x5C, 4), (0x60, 4), (0x64, 4), (0xCE, 2),
    (0xFE, 2), (0x104, 4), (0x150, 4), (0x15C, 2), (0x174, 1), (0x175, 1),
)  # fmt: skip
#: group descriptor fields: bitmaps, inode table (low and high halves), counts, flags
_EXT4_DESCRIPTOR = (
    (0x00, 4), (0x04, 4), (0x08, 4), (0x0C, 2), (0x0E, 2), (0x10, 2), (0x12, 2), (0x1C, 2),
    (0x20, 4), (0x24, 4), (0x28, 4),
)  # fmt: skip
#: inode fields: mode, owner, size, times, links, flags, i_block (extent header and extents,
#: or a short target), the high halves, the extra size and times
_EXT4_INODE = (
    (0x00, 2), (0x02, 2), (0x04, 4), (0x08, 4), (0x10, 4), (0x1A, 2), (0x1C, 4), (0x20, 4),
    (0x28, 2), (0x2A, 2), (0x2C, 2), (0x2E, 2), (0x34, 4), (0x38, 2), (0x3A, 2), (0x3C, 4),
    (0x40, 4), (0x44, 2), (0x48, 4), (0x68, 4), (0x6C, 4), (0x78, 2), (0x80, 2), (0x88, 4),
    (0x90, 4),
)  # fmt: skip


@functools.cache
def xfs_seeds() -> tuple[Seed, ...]:
    """300 MiB xfs images (the smallest mkfs.xfs makes; kept as their non-zero chunks) in
    two allocation groups: short-form and block directories; and a leaf directory too."""
    return tuple(_xfs_seed(leaf) for leaf in (False, True))


def _xfs_seed(leaf: bool) -> Seed:
    work = Path(tempfile.mkdtemp(prefix="fuzz-xfs-"))
    try:
        src = work / "src"
        _source(src, leaf)
        lines = ["/dev/null", "0 0", "d--755 0 0", "etc d--755 0 0"]
        lines += [f"hostname ---644 0 0 {src / 'etc/hostname'}"]
        lines += [f"big ---644 0 0 {src / 'etc/big'}", "$", "many d--755 0 0"]
        lines += [f"n{i:03d}-{'z' * 16} ---644 0 0 {src / 'h1'}" for i in range(16)]
        if leaf:
            lines += ["$", "leaf d--755 0 0"]
            lines += [f"entry-{i:04d}-{'y' * 24} ---644 0 0 {src / 'h1'}" for i in range(150)]
        lines += ["$", "few d--755 0 0", f"one ---644 0 0 {src / 'h1'}", "$"]
        lines += ["link l--777 0 0 etc/hostname", "long l--777 0 0 /" + "/".join(["seg"] * 30)]
        lines += ["fifo p--644 0 0", "null c--666 0 0 1 3", "$", ""]
        proto = work / "proto"
        proto.write_text("\n".join(lines))
        image = work / "img"
        with open(image, "wb") as f:
            f.truncate(300 << 20)
        mkfs = [_tool("mkfs.xfs"), "-q", "-f", "-d", "agcount=2", "-p", str(proto), str(image)]
        subprocess.run(mkfs, check=True, capture_output=True)
        chunks, size = _image_chunks(image)
    finally:
        shutil.rmtree(work)
    return _xfs_fields(Seed(chunks, size, (), ()))


def _image_chunks(image: Path) -> tuple[dict[int, bytes], int]:
    """A sparse image's non-zero 64 KiB chunks (only its data regions read) and its size."""
    chunks: dict[int, bytes] = {}
    with open(image, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        at = 0
        while at < size:
            try:
                data = os.lseek(f.fileno(), at, os.SEEK_DATA)
            except OSError:  # no data after ``at``
                break
            end = os.lseek(f.fileno(), data, os.SEEK_HOLE)
            at = max(at, data // CHUNK * CHUNK)
            while at < end:
                f.seek(at)
                chunk = f.read(CHUNK)
                if any(chunk):
                    chunks[at // CHUNK] = chunk
                at += CHUNK
    return chunks, size


def _xfs_fields(image: Seed) -> Seed:
    be = "big"
    fields = [Field(o, w, be) for o, w in _XFS_SUPERBLOCK]
    regions: list[tuple[int, int]] = [(0, 512)]
    with open_tree(Overlay(image, {}), image.size) as tree:
        sb = tree.sb  # type: ignore[attr-defined]
        bs, sect = int(sb.blocksize), int(sb.sectsize)
        for ag in range(int(sb.agcount)):
            start = ag * int(sb.agblocks) * bs
            regions += [(start + sect, sect), (start + 2 * sect, sect)]
            fields += [Field(start + sect + o, w, be) for o, w in _XFS_AGF]
            fields += [Field(start + 2 * sect + o, w, be) for o, w in _XFS_AGI]
            root = struct.unpack(">I", _read(image, start + 2 * sect + 20, 4))[0]
            at = start + root * bs
            regions.append((at, 256))
            fields += [Field(at + o, w, be) for o, w in _XFS_BTREE]
        for w in walk(tree, []):
            at = tree.inode_offset(w.stat.ino)  # type: ignore[attr-defined]
            regions.append((at, int(sb.inodesize)))
            fields += [Field(at + o, wd, be) for o, wd in _XFS_INODE]
            entry = tree.entry_of(w.stat.ino)
            if w.stat.mode & 0o170000 != 0o040000:
                continue
            try:
                extents = [entry.get_extent(i) for i in range(entry.number_of_extents)]
            except OSError:  # a short-form directory: no blocks
                extents = []
            for offset, length, _ in extents:
                real = tree.device_offset(offset)  # type: ignore[attr-defined]
                if real is not None:
                    block = _read(image, real, min(length, 4096))
                    regions.append((real, len(block)))
                    fields += _xfs_entries(block, real, tree.data_header)
    return Seed(image.chunks, image.size, tuple(fields), tuple(regions))


def _xfs_entries(block: bytes, at: int, header: int) -> list[Field]:
    """The fields of the entries of one directory block (at device byte ``at``): inode, name
    length, tag; a free region's tag and length."""
    out = [Field(at, 4, "big")]
    pos = header  # within the block
    while pos + 16 <= len(block):
        if block[pos : pos + 2] == b"\xff\xff":
            size = struct.unpack_from(">H", block, pos + 2)[0]
            out += [Field(at + pos, 2, "big"), Field(at + pos + 2, 2, "big")]
        else:
            size = (8 + 1 + block[pos + 8] + 1 + 2 + 7) // 8 * 8
            out += [Field(at + pos, 8, "big"), Field(at + pos + 8, 1, "big"),
                    Field(at + pos + size - 2, 2, "big")]  # fmt: skip
        if size < 8:
            break
        pos += size
    return out


#: xfs superblock fields: geometry, root inode, log, versions, sizes and logs of them, counts,
#: features
_XFS_SUPERBLOCK = (
    (4, 4), (8, 8), (48, 8), (56, 8), (84, 4), (88, 4), (96, 4), (100, 2), (102, 2), (104, 2),
    (106, 2), (120, 1), (121, 1), (122, 1), (123, 1), (124, 1), (128, 8), (192, 1), (200, 4),
    (216, 4),
)  # fmt: skip
#: AGF: magic, version, number, length, btree roots and levels, free list, counts
_XFS_AGF = ((0, 4), (4, 4), (8, 4), (12, 4), (16, 4), (20, 4), (28, 4), (32, 4), (36, 4),
            (40, 4), (44, 4), (48, 4))  # fmt: skip
#: AGI: magic, version, number, length, count, root, level, free count, new inode, dir inode,
#: the first unlinked buckets
_XFS_AGI = ((0, 4), (4, 4), (8, 4), (12, 4), (16, 4), (20, 4), (24, 4), (28, 4), (32, 4),
            (36, 4), (40, 4), (44, 4))  # fmt: skip
#: an inode btree block: magic, level, number of records, siblings, the first records
_XFS_BTREE = ((0, 4), (4, 2), (6, 2), (8, 4), (12, 4), (56, 4), (60, 4), (64, 8), (72, 4),
              (76, 4), (80, 8))  # fmt: skip
#: inode core: magic, mode, version, format, links, owner, times, size, blocks, extents,
#: fork offset, flags, its own number; then the data fork (short-form header and entries,
#: or extent records)
_XFS_INODE = (
    (0, 2), (2, 2), (4, 1), (5, 1), (8, 4), (12, 4), (16, 4), (40, 8), (56, 8), (64, 8),
    (76, 4), (80, 2), (82, 1), (83, 1), (90, 2), (152, 8), (176, 1), (177, 1), (178, 4),
    (182, 1), (183, 2), (176, 8), (184, 8), (192, 8), (200, 8),
)  # fmt: skip


# -- the device -------------------------------------------------------------------------------


class Overlay(io.RawIOBase):
    """A read-only file of a seed's chunks (zeros where none is kept) with ``patches``
    (offset → bytes) laid over them."""

    def __init__(self, seed: Seed, patches: dict[int, bytes]) -> None:
        super().__init__()
        self.seed, self.pos = seed, 0
        self.patches = sorted(patches.items())

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: 0, 1: self.pos, 2: self.seed.size}[whence] + offset
        if self.pos < 0:
            raise OSError(22, "negative seek")
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        pos = self.pos
        n = max(0, min(len(out), self.seed.size - pos))
        done = 0
        while done < n:
            index, within = divmod(pos + done, CHUNK)
            step = min(CHUNK - within, n - done)
            chunk = self.seed.chunks.get(index)
            if chunk is None:
                out[done : done + step] = bytes(step)
            else:
                out[done : done + step] = chunk[within : within + step]
            done += step
        for at, data in self.patches:
            lo, hi = max(at, pos), min(at + len(data), pos + n)
            if lo < hi:
                out[lo - pos : hi - pos] = data[lo - at : hi - at]
        self.pos += n
        return n


def _damage(draw: Draw, seed: Seed) -> dict[int, bytes]:
    patches: dict[int, bytes] = {}
    for _ in range(draw.integer(1, 4)):
        how = draw.integer(0, 7)
        if how <= 4:  # a field of a structure: an edge value, nudged, or anything
            field = draw.choice(seed.fields)
            top = (1 << (8 * field.width)) - 1
            original = int.from_bytes(_read(seed, field.offset, field.width), field.order)
            kind = draw.integer(0, 2)
            if kind == 0:
                value = draw.choice(EDGES) & top
            elif kind == 1:
                value = (original + draw.integer(-2, 2)) & top
            else:
                value = draw.integer(0, top)
            patches[field.offset] = value.to_bytes(field.width, field.order)
        else:  # bytes of a structure: random, zeros, or one byte
            start, size = draw.choice(seed.regions)
            at = start + draw.integer(0, max(0, size - 1))
            if how == 5:
                patches[at] = draw.bytes(32, 1)
            elif how == 6:
                patches[at] = bytes(draw.integer(1, 256))
            else:
                patches[at] = bytes([draw.integer(0, 255)])
    return patches


def _read(seed: Seed, offset: int, width: int) -> bytes:
    index, within = divmod(offset, CHUNK)
    chunk = seed.chunks.get(index, bytes(CHUNK))
    return chunk[within : within + width].ljust(width, b"\0")


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
    seed = draw.choice(ext4_seeds())
    read_everything(Overlay(seed, _damage(draw, seed)), seed.size)


def xfs_image(draw: Draw) -> None:
    seed = xfs_seeds()[draw.integer(0, 3) // 3]  # the leaf directory one time in four
    read_everything(Overlay(seed, _damage(draw, seed)), seed.size)
