"""ext4 read through a thin device, held against e2fsprogs' own reading of the same image:
``debugfs rdump`` for every file's bytes, symlink and type, ``debugfs stat`` for inode, mode,
owner, links, size, the four times to the nanosecond, rdev and xattr names; ``debugfs ls -p``
for each directory's names as bytes. Then hostile images derived from the real one."""

from __future__ import annotations

import io
import os
import re
import stat
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import fs_images as fi
import pytest

from forensics.fs import FsOpenError, Limits, Refusal, Stat, open_tree, walk
from forensics.fs.libyal import LibyalTree
from forensics.thin.blocks import MetadataFile
from forensics.thin.device import ThinDevice
from forensics.thin.pool import read_pool


@dataclass
class Ext4Case:
    pool: fi.PoolFiles
    image: Path
    base: Path
    tmp: Path


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Ext4Case:
    tmp = tmp_path_factory.mktemp("ext4")
    base, image = fi.make_ext4(tmp)
    return Ext4Case(fi.pool_of(tmp, [base, image]), image, base, tmp)


@contextmanager
def device_tree(pool: fi.PoolFiles, dev_id: int, **limits: int) -> Iterator[LibyalTree]:
    size = pool.images[dev_id].stat().st_size
    fd = os.open(pool.data, os.O_RDONLY)
    try:
        with MetadataFile(pool.metadata) as meta:
            device = ThinDevice(read_pool(meta, space_maps=False), dev_id, fd, size=size)
            with open_tree(io.BufferedReader(device, 1 << 16), size, Limits(**limits)) as tree:
                yield tree
    finally:
        os.close(fd)


@contextmanager
def image_tree(image: Path) -> Iterator[LibyalTree]:
    with open(image, "rb") as f, open_tree(f, image.stat().st_size) as tree:
        yield tree


# -- what e2fsprogs reads -------------------------------------------------------------------


def debugfs(image: Path, *commands: bytes) -> bytes:
    script = image.with_suffix(".cmds")
    script.write_bytes(b"".join(c + b"\n" for c in commands))
    return fi.run("debugfs", "-f", script, image)


_TIME = re.compile(rb"^\s*(a|m|c|cr)time: 0x([0-9a-f]+):([0-9a-f]+)", re.M)


def debugfs_stats(image: Path, inodes: list[int]) -> dict[int, dict[str, object]]:
    """``stat <ino>`` of each inode, parsed: what the assertions compare."""
    out = debugfs(image, *(b"stat <%d>" % i for i in inodes))
    parts = re.split(rb"^Inode: ", out, flags=re.M)[1:]
    stats: dict[int, dict[str, object]] = {}
    for part in parts:
        head = part.split(b"\n", 1)[0]
        ino = int(head.split()[0])
        kind = re.search(rb"Type: (.+?)\s+Mode:", part).group(1)  # type: ignore[union-attr]
        fields = {
            "type": _TYPES[kind.decode()],
            "mode": int(re.search(rb"Mode:\s+(\d+)", part).group(1), 8),  # type: ignore[union-attr]
            "uid": int(re.search(rb"User:\s+(\d+)", part).group(1)),  # type: ignore[union-attr]
            "gid": int(re.search(rb"Group:\s+(\d+)", part).group(1)),  # type: ignore[union-attr]
            "size": int(re.search(rb"Size: (\d+)", part).group(1)),  # type: ignore[union-attr]
            "nlink": int(re.search(rb"Links: (\d+)", part).group(1)),  # type: ignore[union-attr]
        }
        for which, lo, extra in _TIME.findall(part):
            seconds = int(lo, 16) - ((int(lo, 16) & 0x80000000) << 1)
            extra_value = int(extra, 16)
            seconds += (extra_value & 3) << 32
            fields[which.decode() + "time"] = seconds * 1_000_000_000 + (extra_value >> 2)
        xattrs = part.split(b"Extended attributes:\n", 1)
        names = set()
        if len(xattrs) > 1:
            for line in xattrs[1].split(b"\n"):
                if not line.startswith(b"  "):
                    break
                names.add(line.strip().split(b" (")[0])
        fields["xattrs"] = names
        device = re.search(rb"Device major/minor number: ([0-9a-f]+):([0-9a-f]+)", part)
        if device:
            fields["rdev"] = os.makedev(int(device.group(1)), int(device.group(2)))
        stats[ino] = fields
    return stats


def debugfs_listing(image: Path, path: bytes) -> set[tuple[bytes, int]]:
    """Names and inodes of a directory by ``ls -p`` (``/ino/mode/uid/gid/name/size/``)."""
    out = debugfs(image, b"ls -p " + (path or b"/"))
    names = set()
    for line in out.split(b"\n"):
        if line.startswith(b"/"):
            fields = line.split(b"/")
            name = b"/".join(fields[5:-2])
            if name not in (b".", b"..") and int(fields[1]):
                names.add((name, int(fields[1])))
    return names


_TYPES = {
    "regular": stat.S_IFREG,
    "directory": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "FIFO": stat.S_IFIFO,
    "character special": stat.S_IFCHR,
    "block special": stat.S_IFBLK,
    "socket": stat.S_IFSOCK,
}


def _stat_fields(st: Stat) -> dict[str, object]:
    fields: dict[str, object] = {
        "type": stat.S_IFMT(st.mode),
        "mode": stat.S_IMODE(st.mode),
        "uid": st.uid,
        "gid": st.gid,
        "size": st.size,
        "nlink": st.nlink,
        "atime": st.atime_ns,
        "mtime": st.mtime_ns,
        "ctime": st.ctime_ns,
        "crtime": st.crtime_ns,
    }
    return fields


# -- the cross-check -----------------------------------------------------------------------


def test_every_file_reads_as_e2fsprogs_reads_it(case: Ext4Case) -> None:
    dump = case.tmp / "rdump"
    dump.mkdir()
    fi.run("debugfs", "-R", f"rdump / {dump}", case.image)
    problems: list = []
    with device_tree(case.pool, 2) as tree:
        walked = list(walk(tree, problems))
        assert problems == [] and tree.notes == []
        stats = debugfs_stats(case.image, sorted({w.stat.ino for w in walked}))
        regular = 0
        for w in walked:
            expected = stats[w.stat.ino]
            ours = _stat_fields(w.stat)
            for key, value in expected.items():
                if key == "xattrs":
                    xattrs = tree.xattrs(w.parts)
                    assert not isinstance(xattrs, Refusal)
                    assert set(xattrs) == value, w.parts
                elif key == "rdev":
                    assert w.stat.rdev == value
                else:
                    assert ours[key] == value, (w.parts, key)
            if stat.S_ISDIR(w.stat.mode):
                listing = tree.listdir(w.parts)
                assert not isinstance(listing, Refusal)
                got = {(e.name, e.ino) for e in listing.entries}
                assert got == debugfs_listing(case.image, b"/" + b"/".join(w.parts)), w.parts
                continue
            host = Path(os.fsdecode(os.path.join(bytes(dump), *w.parts)))
            if stat.S_ISREG(w.stat.mode):
                regular += 1
                f = tree.open_file(w.parts)
                assert not isinstance(f, Refusal)
                assert f.read() == host.read_bytes(), w.parts
            elif stat.S_ISLNK(w.stat.mode):
                assert tree.readlink(w.parts) == os.readlink(bytes(host)), w.parts
        assert regular > 400
    names = {w.parts for w in walked}
    assert (b"etc", b"caf\xe9-latin1") in names
    assert (b"data", b"with space") in names


def test_base_device_and_snapshot_differ_as_debugfs_changed_them(case: Ext4Case) -> None:
    with device_tree(case.pool, 1) as base, device_tree(case.pool, 2) as layer:
        base_names = {w.parts for w in walk(base, [])}
        layer_names = {w.parts for w in walk(layer, [])}
    assert layer_names - base_names == {(b"fifo",), (b"null",), (b"etc", b"caf\xe9-latin1")}
    assert base_names <= layer_names


def test_the_stat_of_what_debugfs_set(case: Ext4Case) -> None:
    with device_tree(case.pool, 2) as tree:
        passwd = tree.lstat((b"etc", b"passwd"))
        tool = tree.lstat((b"bin", b"tool"))
        null = tree.lstat((b"null",))
        tmp = tree.lstat((b"tmp",))
        assert isinstance(passwd, Stat) and isinstance(tool, Stat) and isinstance(null, Stat)
        assert passwd.crtime_ns == 1546398245 * 10**9  # 2019-01-02 03:04:05 UTC
        assert passwd.mtime_ns % 10**9 == 500  # mtime_extra 2000 = 500 ns
        assert tree.xattrs((b"etc", b"passwd")) == {b"user.comment": b"shadowed"}
        cap = tree.xattrs((b"bin", b"tool"))
        assert cap == {b"security.capability": (case.tmp / "cap").read_bytes()}
        assert stat.S_IMODE(tool.mode) == 0o4755
        assert stat.S_ISCHR(null.mode) and null.rdev == os.makedev(1, 3)
        assert isinstance(tmp, Stat) and stat.S_IMODE(tmp.mode) == 0o1777
        hard1, hard2 = tree.lstat((b"hard1",)), tree.lstat((b"hard2",))
        assert isinstance(hard1, Stat) and isinstance(hard2, Stat)
        assert hard1.ino == hard2.ino and hard1.nlink == 2


def test_refusals(case: Ext4Case) -> None:
    with device_tree(case.pool, 2) as tree:
        assert _kind(tree.lstat((b"nope",))) == "missing"
        assert _kind(tree.lstat((b"link", b"x"))) == "unsafe-path"  # never followed
        assert _kind(tree.open_file((b"link",))) == "not-regular"
        assert _kind(tree.open_file((b"etc",))) == "not-regular"
        assert _kind(tree.listdir((b"etc", b"hostname"))) == "not-directory"
        assert _kind(tree.readlink((b"etc", b"hostname"))) == "not-regular"
        assert _kind(tree.lstat((b"etc", b"hostname", b"x"))) == "missing"
    with device_tree(case.pool, 2, file_size=1_000_000, dir_entries=100) as tree:
        assert _kind(tree.open_file((b"data", b"big"))) == "too-large"
        listing = tree.listdir((b"many",))
        assert not isinstance(listing, Refusal)
        assert len(listing.entries) == 100
        assert "more than 100 entries" in listing.problems[-1]


def _kind(value: object) -> str | None:
    return value.kind if isinstance(value, Refusal) else None


# -- hostile images, derived from the real one ----------------------------------------------


def _copy(case: Ext4Case, name: str) -> Path:
    return fi.sparse_copy(case.image, case.tmp / name)


def _dir_block(image: Path, path: str) -> int:
    out = fi.run("debugfs", "-R", f"bmap {path} 0", image)
    return int(out.split()[0]) * 4096


def _patch_name(image: Path, path: str, old: bytes, new: bytes) -> None:
    """Rewrite a name inside directory ``path``'s first block (same length)."""
    at = _dir_block(image, path)
    with open(image, "r+b") as f:
        f.seek(at)
        block = f.read(4096)
        i = block.index(old)
        f.seek(at + i)
        f.write(new)


def test_zeroed_superblock_is_refused_not_a_backup_read(case: Ext4Case) -> None:
    """Two block groups of 1 KiB blocks: a backup superblock at block 8193 that e2fsprogs
    would use; ours reports the primary one zeroed."""
    image = case.tmp / "zeroed.img"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    fi.run("mkfs.ext4", "-q", "-F", "-b", "1024", "-d", case.tmp / "src" / "etc", image)
    with open(image, "r+b") as f:
        f.seek(1024)
        f.write(bytes(1024))
    fi.run("dumpe2fs", "-o", "superblock=8193", "-o", "blocksize=1024", "-h", image)
    with open(image, "rb") as f, pytest.raises(FsOpenError, match="are zeros"):
        open_tree(f, image.stat().st_size)


def test_names_with_slash_and_nul_and_dots_are_problems(case: Ext4Case) -> None:
    image = _copy(case, "names.img")
    _patch_name(image, "/etc", b"hostname", b"host/ame")
    _patch_name(image, "/etc", b"passwd", b"pa\0swd")
    _patch_name(image, "/", b"hard2", b"..\0\0\0")  # name_len stays 5: "..\0\0\0"
    with image_tree(image) as tree:
        listing = tree.listdir((b"etc",))
        assert not isinstance(listing, Refusal)
        names = {e.name for e in listing.entries}
        assert b"host/ame" not in names and b"pa\0swd" not in names
        assert any("holds a '/'" in p for p in listing.problems)
        assert any("holds a NUL byte" in p for p in listing.problems)
        problems: list = []
        walked = list(walk(tree, problems))
        assert all(b"/" not in p and b"\0" not in p for w in walked for p in w.parts)
        assert {p.kind for p in problems} == {"listing"}


def _set_entry_inode(image: Path, path: str, name: bytes, ino: int) -> None:
    at = _dir_block(image, path)
    with open(image, "r+b") as f:
        f.seek(at)
        block = f.read(4096)
        i = block.index(name)
        f.seek(at + i - 8)
        f.write(struct.pack("<I", ino))


def test_a_directory_that_is_its_own_ancestor_is_not_walked_twice(case: Ext4Case) -> None:
    image = _copy(case, "loop.img")
    _set_entry_inode(image, "/data", b"big", 2)  # /data/big → the root directory
    with image_tree(image) as tree:
        problems: list = []
        walked = list(walk(tree, problems))
        assert [(p.path, p.kind) for p in problems] == [((b"data", b"big"), "loop")]
        assert len(walked) == len({w.parts for w in walked})


def test_huge_sizes_and_broken_inodes_are_refusals(case: Ext4Case) -> None:
    image = _copy(case, "huge.img")
    fi.run("debugfs", "-w", "-R", "sif /etc/hostname size 0x10000000000", image)  # 1 TiB
    fi.run("debugfs", "-w", "-R", "sif /etc/passwd size 0x7fffffffffffffff", image)
    fi.run("debugfs", "-w", "-R", "sif /data/big block[1] 0x00050004", image)  # depth 5
    fi.run("debugfs", "-w", "-R", "sif /bin/tool block[1] 0xffff0004", image)  # depth 65535
    with image_tree(image) as tree:
        assert _kind(tree.open_file((b"etc", b"hostname"))) == "too-large"
        assert _kind(tree.open_file((b"etc", b"passwd"))) == "damaged"
        assert _kind(tree.lstat((b"etc", b"passwd"))) == "damaged"
        assert "depth value out of bounds" in tree.lstat((b"bin", b"tool")).detail
        assert _kind(tree.open_file((b"data", b"big"))) == "damaged"
        problems: list = []
        walked = list(walk(tree, problems))
        assert len(walked) > 400
        refused = {p.path for p in problems if p.kind == "refused"}
        assert refused == {(b"etc", b"passwd"), (b"bin", b"tool"), (b"data", b"big")}


def test_a_truncated_data_file_is_named_in_what_cannot_be_read(case: Ext4Case) -> None:
    """The pool's data file cut to a third (the base device's blocks come first): every file of
    the base device either reads as debugfs reads it or is refused naming the device's byte
    range; nothing reads as zeros silently."""
    dump = case.tmp / "rdump-truncated"
    dump.mkdir()
    fi.run("debugfs", "-R", f"rdump / {dump}", case.base)
    pool = fi.PoolFiles(case.pool.metadata, case.tmp / "data-cut", case.pool.images)
    fi.sparse_copy(case.pool.data, pool.data)
    with open(pool.data, "r+b") as f:
        f.truncate(pool.data.stat().st_size // 3)
    good = bad = 0
    with device_tree(pool, 1) as tree:
        problems: list = []
        for w in walk(tree, problems):
            if not stat.S_ISREG(w.stat.mode):
                continue
            host = Path(os.fsdecode(os.path.join(bytes(dump), *w.parts)))
            f = tree.open_file(w.parts)
            try:
                assert not isinstance(f, Refusal), f
                data = f.read()
            except OSError as exc:
                message = str(exc)
                assert "device 1: bytes " in message and "past the end of the data file" in message
                bad += 1
            else:
                assert data == host.read_bytes()
                good += 1
        for p in problems:
            assert "device 1: bytes " in p.detail, p
    assert good and bad


def test_a_superblock_counting_too_few_inodes_is_refused(case: Ext4Case) -> None:
    """Found by fuzzing: s_inodes_count of 1 made the library hand out no root directory
    (None), which was read as one (AttributeError)."""
    image = _copy(case, "inodes.img")
    with open(image, "r+b") as f:
        f.seek(1024)
        f.write(struct.pack("<I", 1))
    with open(image, "rb") as f, pytest.raises(FsOpenError, match="root directory"):
        open_tree(f, image.stat().st_size)


# -- extent trees, derived from a real one ------------------------------------------------------


@pytest.fixture(scope="module")
def fragmented(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ext4 of 1 KiB blocks whose ``frag`` is 40 runs of 4 KiB with holes between them:
    41 extents, more than ``i_block`` holds, so its tree has a leaf block under the root."""
    tmp = tmp_path_factory.mktemp("frag")
    src = tmp / "src"
    src.mkdir()
    with open(src / "frag", "wb") as f:
        for i in range(40):
            f.seek(i * 8192)
            f.write(bytes([65 + i % 26]) * 4096)
    (src / "plain").write_bytes(b"p" * 3000)
    image = tmp / "frag.img"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    fi.run("mkfs.ext4", "-q", "-F", "-b", "1024", "-O", "^metadata_csum", "-d", src, image)
    assert b"\n 0/ 1   1/  1 " in fi.run("debugfs", "-R", "ex /frag", image)  # depth 1
    return image


def _inode_at(image: Path, name: bytes) -> tuple[int, int]:
    """The inode number of ``/name`` and the device offset of its ``i_block``."""
    with image_tree(image) as tree:
        st = tree.lstat((name,))
        assert isinstance(st, Stat)
        at = tree.groups.inode_offset(st.ino)  # type: ignore[attr-defined]
        assert at is not None
        return st.ino, at + 0x28


def _leaf_block(image: Path) -> int:
    _, at = _inode_at(image, b"frag")
    with open(image, "rb") as f:
        f.seek(at + 12 + 4)  # the root's one index entry: its child's block
        return struct.unpack("<I", f.read(4))[0]


def _derived(image: Path, name: str) -> Path:
    return fi.sparse_copy(image, image.with_name(name))


def test_a_fragmented_file_reads_as_debugfs_cats_it(fragmented: Path) -> None:
    theirs = fi.run("debugfs", "-R", "cat /frag", fragmented)
    with image_tree(fragmented) as tree:
        f = tree.open_file((b"frag",))
        assert not isinstance(f, Refusal)
        assert f.read() == theirs and len(theirs) == 39 * 8192 + 4096
    with open(fragmented, "rb") as f, open_tree(f, 16 << 20, Limits(extents=40)) as tree:
        refused = tree.open_file((b"frag",))
        assert isinstance(refused, Refusal) and refused.kind == "too-large"
        assert "more than 40 extents" in refused.detail


def test_an_extent_loop_is_refused_naming_the_block(fragmented: Path) -> None:
    """The root made two levels deep, its leaf made an index node whose one entry points to
    itself: e2fsck's "cyclic loop in extent tree"."""
    image = _derived(fragmented, "loop.img")
    leaf = _leaf_block(image)
    _, at = _inode_at(image, b"frag")
    with open(image, "r+b") as f:
        f.seek(at + 6)
        f.write(struct.pack("<H", 2))  # the root's depth
        f.seek(leaf * 1024)
        node = bytearray(f.read(1024))
        struct.pack_into("<HHHH", node, 0, 0xF30A, 1, 84, 1)
        struct.pack_into("<III", node, 12, 0, leaf, 0)
        f.seek(leaf * 1024)
        f.write(node)
    done = fi.subprocess.run(
        [fi.program("e2fsck"), "-fn", str(image)], capture_output=True, check=False
    )
    assert b"cyclic loop in extent tree" in done.stdout
    with image_tree(image) as tree:
        problems: list = []
        walked = list(walk(tree, problems))
        assert (b"plain",) in {w.parts for w in walked}
        assert [(p.path, p.kind) for p in problems] == [((b"frag",), "refused")]
        assert f"reaches block {leaf} twice (a loop" in problems[0].detail
        assert _kind(tree.open_file((b"frag",))) == "damaged"


def test_a_leaf_named_twice_is_refused_not_read(fragmented: Path) -> None:
    """A second index entry in the root naming the same leaf for later logical blocks: the
    library lists the leaf's extents twice over; the file is refused, not read from them."""
    image = _derived(fragmented, "twice.img")
    leaf = _leaf_block(image)
    _, at = _inode_at(image, b"frag")
    with open(image, "r+b") as f:
        f.seek(at + 2)
        f.write(struct.pack("<H", 2))  # two index entries
        f.seek(at + 24)
        f.write(struct.pack("<III", 200, leaf, 0))
    assert (
        b"Fix? no"
        in fi.subprocess.run(
            [fi.program("e2fsck"), "-fn", str(image)], capture_output=True, check=False
        ).stdout
    )
    with image_tree(image) as tree:
        refused = tree.open_file((b"frag",))
        assert _kind(refused) == "damaged"
        assert "overlaps another or lies outside its node's range" in refused.detail


def test_an_extent_over_the_filesystem_structures_is_refused(fragmented: Path) -> None:
    """``plain``'s one extent pointed at the inode table, then past the filesystem's end."""
    image = _derived(fragmented, "over.img")
    ino, at = _inode_at(image, b"plain")
    with image_tree(image) as tree:
        table = int(tree.groups.inode_table[0])  # type: ignore[attr-defined]
    for start, words in ((table, "covers an inode table"), (16383, "outside the filesystem")):
        with open(image, "r+b") as f:
            f.seek(at + 12 + 8)
            f.write(struct.pack("<I", start))  # ee_start_lo
        with image_tree(image) as tree:
            refused = tree.open_file((b"plain",))
            assert _kind(refused) == "damaged" and words in refused.detail, refused


def test_unwritten_extents_read_as_zeros_whatever_lies_under_them(fragmented: Path) -> None:
    """``debugfs fallocate`` leaves an unwritten extent; the blocks under it are then filled
    with stale bytes (as a deleted file's would be): the file reads as zeros, as debugfs and
    the kernel read it."""
    image = _derived(fragmented, "unwritten.img")
    commands = image.with_suffix(".cmds")
    commands.write_text("write /dev/null pre\nfallocate /pre 0 9\nsif /pre size 10240\n")
    fi.run("debugfs", "-w", "-f", commands, image)
    extents = fi.run("debugfs", "-R", "ex /pre", image).decode()
    assert "Uninit" in extents
    first = int(extents.split("\n")[1].split()[7])  # the first physical block
    with open(image, "r+b") as f:
        f.seek(first * 1024)
        f.write(b"stale" * 2048)
    theirs = fi.run("debugfs", "-R", "cat /pre", image)
    assert theirs == bytes(10240)
    with image_tree(image) as tree:
        f = tree.open_file((b"pre",))
        assert not isinstance(f, Refusal) and f.read() == theirs
