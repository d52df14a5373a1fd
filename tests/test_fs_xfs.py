"""xfs read through a thin device, held against the proto file's sources (every regular file's
bytes) and against ``xfs_db`` reading the same image: each directory's names and inodes
(``ls``), each inode's type, mode, owner, links, size and the four times to the nanosecond
(``inode N`` + ``print``). Then hostile images derived from the real one."""

from __future__ import annotations

import io
import os
import re
import stat
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import fs_images as fi
import google_crc32c
import pytest

from forensics.fs import FsOpenError, Refusal, Stat, open_tree, walk
from forensics.fs.libyal import LibyalTree
from forensics.thin.blocks import MetadataFile
from forensics.thin.device import ThinDevice
from forensics.thin.pool import read_pool


@dataclass
class XfsCase:
    pool: fi.PoolFiles
    image: Path
    files: dict[bytes, bytes]
    tmp: Path


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> XfsCase:
    tmp = tmp_path_factory.mktemp("xfs")
    image, files = fi.make_xfs(tmp)
    return XfsCase(fi.pool_of(tmp, [image]), image, files, tmp)


@contextmanager
def device_tree(pool: fi.PoolFiles, dev_id: int) -> Iterator[LibyalTree]:
    size = pool.images[dev_id].stat().st_size
    fd = os.open(pool.data, os.O_RDONLY)
    try:
        with MetadataFile(pool.metadata) as meta:
            device = ThinDevice(read_pool(meta, space_maps=False), dev_id, fd, size=size)
            with open_tree(io.BufferedReader(device, 1 << 16), size) as tree:
                yield tree
    finally:
        os.close(fd)


def xfs_db(image: Path, *commands: str) -> bytes:
    args: list[str | Path] = ["xfs_db", "-r"]
    for c in commands:
        args += ["-c", c]
    return fi.run(*args, image)


def xfs_db_listing(image: Path, ino: int) -> set[tuple[bytes, int]]:
    """``ls`` of directory inode ``ino``: (name, inode) pairs."""
    out = xfs_db(image, f"inode {ino}", "ls")
    names = set()
    for line in out.split(b"\n"):
        m = re.match(rb"\s*\d+\s+(\d+)\s+\S+\s+0x[0-9a-f]+\s+(\d+) (.*) \((good|bad)\)$", line)
        if m:
            name = m.group(3)
            assert len(name) == int(m.group(2))
            if name not in (b".", b".."):
                names.add((name, int(m.group(1))))
    return names


def _when(text: bytes) -> int:
    moment = datetime.strptime(text.decode().strip(), "%a %b %d %H:%M:%S %Y")
    return int(moment.replace(tzinfo=UTC).timestamp())


def xfs_db_inode(image: Path, ino: int) -> dict[str, int | None]:
    out = xfs_db(image, f"inode {ino}", "print")
    values = dict(re.findall(rb"^([\w.]+) = (.*)$", out, re.M))
    fields = {
        "mode": int(values[b"core.mode"], 8),
        "uid": int(values[b"core.uid"]),
        "gid": int(values[b"core.gid"]),
        "nlink": int(values[b"core.nlinkv2"]),
        "size": int(values[b"core.size"]),
    }
    for name, key in (("atime", b"core.atime"), ("mtime", b"core.mtime"), ("ctime", b"core.ctime")):
        fields[name] = _when(values[key + b".sec"]) * 10**9 + int(values[key + b".nsec"])
    fields["crtime"] = None  # a version 2 inode (v4 filesystem) keeps no birth time
    if b"v3.crtime.sec" in values:
        crtime = _when(values[b"v3.crtime.sec"]) * 10**9 + int(values[b"v3.crtime.nsec"])
        fields["crtime"] = crtime
    return fields


def _stat_fields(st: Stat) -> dict[str, int | None]:
    return {
        "mode": st.mode,
        "uid": st.uid,
        "gid": st.gid,
        "nlink": st.nlink,
        "size": st.size,
        "atime": st.atime_ns,
        "mtime": st.mtime_ns,
        "ctime": st.ctime_ns,
        "crtime": st.crtime_ns,
    }


def test_every_file_reads_as_its_source_and_xfs_db_reads_it(case: XfsCase) -> None:
    problems: list = []
    with device_tree(case.pool, 1) as tree:
        walked = list(walk(tree, problems))
        assert problems == []
        regular = {}
        for w in walked:
            if stat.S_ISREG(w.stat.mode):
                f = tree.open_file(w.parts)
                assert not isinstance(f, Refusal)
                regular[b"/".join(w.parts)] = f.read()
            elif stat.S_ISDIR(w.stat.mode):
                listing = tree.listdir(w.parts)
                assert not isinstance(listing, Refusal)
                got = {(e.name, e.ino) for e in listing.entries}
                assert got == xfs_db_listing(case.image, w.stat.ino), w.parts
        assert regular == case.files
        checked = [w for w in walked if not w.parts or len(w.parts) == 1 or w.parts[0] == b"data"]
        checked += [w for w in walked if w.parts[:1] == (b"node",)][:5]
        for w in checked:
            assert _stat_fields(w.stat) == xfs_db_inode(case.image, w.stat.ino), w.parts
    assert (b"caf\xe9",) in {w.parts for w in walked}


def test_special_files_and_symlinks(case: XfsCase) -> None:
    with device_tree(case.pool, 1) as tree:
        null, disk, fifo = (tree.lstat((n,)) for n in (b"null", b"disk", b"fifo"))
        assert isinstance(null, Stat) and isinstance(disk, Stat) and isinstance(fifo, Stat)
        assert stat.S_ISCHR(null.mode) and null.rdev == os.makedev(1, 3)
        assert stat.S_ISBLK(disk.mode) and disk.rdev == os.makedev(8, 0) and disk.gid == 6
        assert stat.S_ISFIFO(fifo.mode)
        assert tree.readlink((b"link",)) == b"hostname"
        assert tree.readlink((b"longlink",)) == b"/" + b"/".join([b"segment"] * 12)
        tool, group = tree.lstat((b"tool",)), tree.lstat((b"group",))
        assert isinstance(tool, Stat) and stat.S_IMODE(tool.mode) == 0o4755
        assert isinstance(group, Stat) and stat.S_IMODE(group.mode) == 0o2750
        assert isinstance(tree.lstat((b"link", b"x")), Refusal)


def _copy(case: XfsCase, name: str) -> Path:
    return fi.sparse_copy(case.image, case.tmp / name)


def test_zeroed_superblock_is_refused(case: XfsCase) -> None:
    image = _copy(case, "zeroed.img")
    with open(image, "r+b") as f:
        f.write(bytes(512))
    with open(image, "rb") as f, pytest.raises(FsOpenError, match="zeros"):
        open_tree(f, image.stat().st_size)


def _inode_offset(case: XfsCase, path: bytes) -> int:
    with open(case.image, "rb") as f, open_tree(f, case.image.stat().st_size) as tree:
        st = tree.lstat(tuple(path.split(b"/")))
        assert isinstance(st, Stat)
        at = tree.inode_offset(st.ino)  # type: ignore[attr-defined]
        assert at is not None
        return at


def test_hostile_short_form_names_and_a_loop(case: XfsCase) -> None:
    """``data/few`` is a short-form directory (its names inside its inode): its one name made
    ``o/e``, then its entry's inode pointed at ``data`` (its parent: a loop)."""
    image = _copy(case, "names.img")
    at = _inode_offset(case, b"data/few")
    with open(image, "r+b") as f:
        f.seek(at)
        raw = bytearray(f.read(512))
        i = raw.index(b"one", 176)
        raw[i : i + 3] = b"o/e"
        f.seek(at)
        f.write(raw)
    with open(image, "rb") as f, open_tree(f, image.stat().st_size) as tree:
        listing = tree.listdir((b"data", b"few"))
        assert not isinstance(listing, Refusal)
        assert listing.entries == [] and "holds a '/'" in listing.problems[0]
    loop = _copy(case, "loop.img")
    with open(case.image, "rb") as f, open_tree(f, case.image.stat().st_size) as tree:
        data = tree.lstat((b"data",))
        assert isinstance(data, Stat)
    with open(loop, "r+b") as f:
        f.seek(at)
        raw = bytearray(f.read(512))
        i = raw.index(b"one", 176)
        width = 8 if raw[177] else 4
        start = i + 3 + 1  # name, then the file type byte
        raw[start : start + width] = data.ino.to_bytes(width, "big")
        raw[i + 3] = 2  # a directory
        f.seek(at)
        f.write(raw)
    with open(loop, "rb") as f, open_tree(f, loop.stat().st_size) as tree:
        problems: list = []
        walked = list(walk(tree, problems))
        assert [(p.path, p.kind) for p in problems] == [((b"data", b"few", b"one"), "loop")]
        assert len(walked) == len({w.parts for w in walked})


def _remote_link_image(tmp: Path, *options: str) -> Path:
    """An xfs whose ``long`` is a symlink too long for its inode (kept in a block of its own)
    and ``short`` one kept in it, both targets not UTF-8."""
    proto = tmp / "links.proto"
    proto.write_bytes(
        b"/dev/null\n0 0\nd--755 0 0\nlong l--777 0 0 " + LONG_TARGET + b"\n"
        b"short l--777 0 0 " + fi.RAW_LINK + b"\n$\n"
    )
    image = tmp / "links.img"
    with open(image, "wb") as f:
        f.truncate(320 << 20)
    fi.run("mkfs.xfs", "-q", "-f", *options, "-p", proto, image)
    return image


LONG_TARGET = b"/" + b"\xff\xfe/" * 200


def test_symlink_targets_that_are_not_utf8_come_out_as_their_bytes(
    case: XfsCase, tmp_path: Path
) -> None:
    """One kept in the inode's data fork (v5), one in a block of its own (v4: mkfs.xfs 6.1
    writes a v5 symlink block without its header, below)."""
    with device_tree(case.pool, 1) as tree:
        assert tree.readlink((b"rawlink",)) == fi.RAW_LINK
    image = _remote_link_image(tmp_path, "-m", "crc=0")
    fi.run("xfs_repair", "-n", image)
    with open(image, "rb") as f, open_tree(f, image.stat().st_size) as tree:
        assert tree.readlink((b"long",)) == LONG_TARGET
        assert tree.readlink((b"short",)) == fi.RAW_LINK
        long = tree.lstat((b"long",))
        assert isinstance(long, Stat)
    assert b"core.format = 2 (extents)" in xfs_db(image, f"inode {long.ino}", "print")
    with open(image, "rb") as f, open_tree(f, image.stat().st_size) as tree:
        for w in walk(tree, []):  # version 2 inodes: times without bigtime, no birth time
            assert _stat_fields(w.stat) == xfs_db_inode(image, w.stat.ino), w.parts


def test_a_v5_symlink_block_without_its_header_is_refused(tmp_path: Path) -> None:
    """mkfs.xfs 6.1's proto file writes a long symlink's block on a v5 filesystem without the
    ``XSLM`` header that xfs_repair wants ("bad symlink header"): damage, not a target."""
    image = _remote_link_image(tmp_path)
    done = fi.subprocess.run(
        [fi.program("xfs_repair"), "-n", str(image)], capture_output=True, check=False
    )
    assert b"bad symlink header" in done.stdout + done.stderr
    with open(image, "rb") as f, open_tree(f, image.stat().st_size) as tree:
        refused = tree.readlink((b"long",))
        assert isinstance(refused, Refusal) and refused.kind == "damaged"
        assert "is not a symlink block" in refused.detail
        assert tree.readlink((b"short",)) == fi.RAW_LINK


def _extent_fork(tree: LibyalTree, name: bytes) -> int:
    """The device offset of the first extent record in ``/name``'s data fork."""
    st = tree.lstat((name,))
    assert isinstance(st, Stat)
    at = tree.inode_offset(st.ino)  # type: ignore[attr-defined]
    assert at is not None
    return at + 176  # after a version 3 inode's core


def test_an_extent_over_an_allocation_group_header_is_refused(case: XfsCase) -> None:
    """``hostname``'s one extent pointed at block 0 (the superblock and the allocation group
    headers): refused, never read as the file's bytes."""
    image = _copy(case, "over.img")
    with open(image, "rb") as f, open_tree(f, image.stat().st_size) as tree:
        at = _extent_fork(tree, b"hostname")
    with open(image, "r+b") as f:
        f.seek(at)
        high, low = struct.unpack(">QQ", f.read(16))
        f.seek(at)
        f.write(struct.pack(">QQ", high & ~0x1FF, low & 0x1FFFFF))  # startblock 0
    with open(image, "rb") as f, open_tree(f, image.stat().st_size) as tree:
        refused = tree.open_file((b"hostname",))
        assert isinstance(refused, Refusal) and refused.kind == "damaged", refused
        assert "covers allocation group 0's headers" in refused.detail


def test_a_data_block_whose_last_entry_starts_at_its_end_is_a_problem(case: XfsCase) -> None:
    """Found by fuzzing: a free region that leaves the last 8 bytes of a data block as an
    entry's start made the reader look for its name length past the block (IndexError)."""
    image = _copy(case, "tail.img")
    with open(image, "rb") as f, open_tree(f, image.stat().st_size) as tree:
        st = tree.lstat((b"leaf",))
        assert isinstance(st, Stat)
        entry = tree.entry_of(st.ino)
        first = tree.device_offset(entry.get_extent(0)[0])  # type: ignore[attr-defined]
        header, size = tree.data_header, tree.dir_block  # type: ignore[attr-defined]
    with open(image, "r+b") as f:
        f.seek(first)
        block = bytearray(f.read(size))
        assert block[:4] == b"XDD3"
        free = size - header - 8
        struct.pack_into(">HH", block, header, 0xFFFF, free)
        struct.pack_into(">H", block, header + free - 2, header)
        block[size - 8 :] = (12345).to_bytes(8, "big")
        f.seek(first)
        f.write(block)
    with open(image, "rb") as f, open_tree(f, image.stat().st_size) as tree:
        listing = tree.listdir((b"leaf",))
        assert not isinstance(listing, Refusal)
        assert any("runs past the block" in p for p in listing.problems)
        problems: list = []
        walked = list(walk(tree, problems))
        assert {p.kind for p in problems} == {"listing"} and len(walked) > 3000


def _reseal_inode(image: Path, at: int, size: int) -> None:
    """A v5 inode's crc32c (over the inode with its crc field zeroed, stored little-endian
    at byte 100), after a test changed it."""
    with open(image, "r+b") as f:
        f.seek(at)
        raw = bytearray(f.read(size))
        raw[100:104] = bytes(4)
        raw[100:104] = google_crc32c.value(bytes(raw)).to_bytes(4, "little")
        f.seek(at)
        f.write(raw)


def test_an_unwritten_extent_reads_as_zeros(case: XfsCase) -> None:
    """``group``'s extent marked unwritten (preallocated): xfs_repair finds the filesystem
    clean, and the file reads as zeros, never as the bytes still under it."""
    image = _copy(case, "unwritten.img")
    with open(image, "rb") as f, open_tree(f, image.stat().st_size) as tree:
        at = _extent_fork(tree, b"group")
        inode_size = int(tree.sb.inodesize)  # type: ignore[attr-defined]
    with open(image, "r+b") as f:
        f.seek(at)
        high, low = struct.unpack(">QQ", f.read(16))
        f.seek(at)
        f.write(struct.pack(">QQ", high | 1 << 63, low))
    _reseal_inode(image, at - 176, inode_size)
    fi.run("xfs_repair", "-n", image)
    with open(image, "rb") as f, open_tree(f, image.stat().st_size) as tree:
        data = tree.open_file((b"group",))
        assert not isinstance(data, Refusal) and data.read() == bytes(9000)


def test_extent_records_out_of_order_or_outside_an_allocation_group_are_refused(
    case: XfsCase,
) -> None:
    """``tool``'s one extent record made two (the second a copy of the first: the same file
    blocks twice), then its first one pointed past its allocation group's end."""
    image = _copy(case, "records.img")
    with open(image, "rb") as f, open_tree(f, image.stat().st_size) as tree:
        at = _extent_fork(tree, b"tool")
        inode_size = tree.inode_size
        agblocks = int(tree.sb.agblocks)  # type: ignore[attr-defined]
    core = at - 176
    with open(image, "r+b") as f:
        f.seek(at)
        record = f.read(16)
        f.seek(at + 16)
        f.write(record)
        f.seek(core + 76)
        f.write(struct.pack(">I", 2))  # di_nextents
    _reseal_inode(image, core, inode_size)
    with open(image, "rb") as f, open_tree(f, image.stat().st_size) as tree:
        refused = tree.open_file((b"tool",))
        assert isinstance(refused, Refusal) and refused.kind == "damaged"
        assert "overlaps the one before" in refused.detail
    high, low = struct.unpack(">QQ", record)
    outside = (agblocks - 2) << 21 | (low & 0x1FFFFF)  # block agblocks-2 of group 0, 37 long
    with open(image, "r+b") as f:
        f.seek(at)
        f.write(struct.pack(">QQ", high & ~0x1FF, outside))
        f.seek(core + 76)
        f.write(struct.pack(">I", 1))
    _reseal_inode(image, core, inode_size)
    with open(image, "rb") as f, open_tree(f, image.stat().st_size) as tree:
        refused = tree.open_file((b"tool",))
        assert isinstance(refused, Refusal) and refused.kind == "damaged"
        assert "lies outside the filesystem" in refused.detail


def test_xattr_names_are_linux_names(case: XfsCase) -> None:
    """xfs keeps an attribute's namespace as a flag; libfsxfs prefixes the security
    namespace's names with ``secure.``, Linux (and a tar's ``SCHILY.xattr.``) with
    ``security.``: ``security.capability`` must read as such (xattrs set by ``xfs_db``)."""
    image = _copy(case, "xattrs.img")
    with open(image, "rb") as f, open_tree(f, image.stat().st_size) as tree:
        ino = tree.lstat((b"hostname",))
        assert isinstance(ino, Stat)
    at = f"inode {ino.ino}"
    sets = ["attr_set -s -v 20 capability", "attr_set -r -v 1 opaque", "attr_set -v 3 note"]
    args: list[str | Path] = ["xfs_db", "-x"]
    for command in sets:
        args += ["-c", at, "-c", command]
    fi.run(*args, image)
    with open(image, "rb") as f, open_tree(f, image.stat().st_size) as tree:
        found = tree.xattrs((b"hostname",))
    assert isinstance(found, dict)
    assert {k: len(v) for k, v in found.items()} == {
        b"security.capability": 20,
        b"trusted.opaque": 1,
        b"user.note": 3,
    }
