"""ext4 made by ``mkfs.ext4 -d`` with the feature sets a Docker host or a crafted image may
carry (4 KiB and 1 KiB blocks, CentOS 7's, meta_bg, bigalloc, ext3's block maps, 128-byte
inodes, inline data): every file's bytes read through the extents equal what e2fsprogs reads
(``debugfs rdump``), and the device ranges held as the filesystem's own structures equal the
ones ``dumpe2fs`` lists. Then what the library cannot give as bytes: symlink targets and names
that are not UTF-8, in fast, slow and inline symlinks and in inline directories."""

from __future__ import annotations

import os
import re
import stat
import struct
from pathlib import Path

import fs_images as fi
import pytest
from tree_compare import compare

from forensics.fs import FsOpenError, Refusal, open_tree, walk
from forensics.fs.ext4 import Ext4Tree

SIZE = 48 << 20
FEATURES = {
    "4k": ["-b", "4096"],
    "centos7": ["-b", "4096", "-O", "^metadata_csum,^64bit,uninit_bg"],
    "1k": ["-b", "1024"],
    "meta_bg": ["-b", "1024", "-g", "1024", "-O", "meta_bg,^resize_inode"],
    "bigalloc": ["-b", "1024", "-O", "bigalloc", "-C", "16384"],
    "ext3-block-maps": [
        "-b", "1024", "-O",
        "^extent,^64bit,^flex_bg,^huge_file,^dir_nlink,^extra_isize,^metadata_csum",
    ],
    "128-byte-inodes": ["-b", "1024", "-I", "128"],
}  # fmt: skip


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("ext4-layouts") / "src"
    fi.ext4_source(src, 3)
    return src


def _mkfs(tmp: Path, src: Path, *options: str) -> Path:
    image = tmp / "img"
    with open(image, "wb") as f:
        f.truncate(SIZE)
    fi.run("mkfs.ext4", "-q", "-F", *options, "-d", src, image)
    return image


_DUMPE2FS = re.compile(
    r"(superblock|Group descriptors?|Reserved GDT blocks|Block bitmap|Inode bitmap|Inode table) "
    r"at (\d+)(?:-(\d+))?"
)


def dumpe2fs_blocks(image: Path) -> set[int]:
    """Every block ``dumpe2fs`` names as a superblock, descriptor, reserved descriptor,
    bitmap or inode table block."""
    blocks: set[int] = set()
    for m in _DUMPE2FS.finditer(fi.run("dumpe2fs", image).decode()):
        first = int(m.group(2))
        blocks.update(range(first, int(m.group(3) or first) + 1))
    return blocks


def reserved_blocks(tree: Ext4Tree) -> set[int]:
    reserved = tree.groups.reserved()
    bs = tree.block_size
    blocks: set[int] = set()
    for start, end in zip(reserved.starts, reserved.ends, strict=True):
        blocks.update(range(start // bs, -(-end // bs)))
    return blocks


@pytest.mark.parametrize("name", sorted(FEATURES))
def test_contents_and_structures_as_e2fsprogs_read_them(
    name: str, source: Path, tmp_path: Path
) -> None:
    image = _mkfs(tmp_path, source, *FEATURES[name])
    dump = tmp_path / "rdump"
    dump.mkdir()
    fi.run("debugfs", "-R", f"rdump / {dump}", image)
    with open(image, "rb") as f, open_tree(f, SIZE) as tree:
        assert isinstance(tree, Ext4Tree) and tree.groups.problem is None
        # block 0 holds the boot sector of 1 KiB filesystems: no data lies there either
        assert reserved_blocks(tree) - {0} == dumpe2fs_blocks(image) - {0}
        # rdump drops setuid, setgid and sticky bits: the full modes are held elsewhere
        checked = compare(
            tree, dump, xattrs=False, times=None, owners=False, hardlinks=False, mode_mask=0o777
        )
    assert checked > 400


def test_a_feature_the_library_does_not_know_is_a_one_line_error(
    source: Path, tmp_path: Path
) -> None:
    image = _mkfs(tmp_path, source, "-b", "1024", "-g", "1024", "-O", "sparse_super2")
    with open(image, "rb") as f, pytest.raises(FsOpenError, match="compatible features"):
        open_tree(f, SIZE)


# -- what the library gives only as UTF-8 -----------------------------------------------------


def _raw_source(root: Path) -> None:
    """Names and symlink targets that are not UTF-8; directories small enough to be kept in
    their inode (inline data), and one that needs a block."""
    root.mkdir()
    os.symlink(b"caf\xe9", bytes(root / "fast"))
    os.symlink(b"/" + b"\xff\xfe/" * 40, bytes(root / "slow"))
    (root / "small").mkdir()
    Path(os.fsdecode(bytes(root / "small") + b"/caf\xe9")).write_bytes(b"latin-1\n")
    (root / "small/tiny").write_bytes(b"kept in the inode\n")
    (root / "small/mid").write_bytes(bytes(range(33, 133)))  # past i_block: in system.data
    (root / "three").mkdir()
    for i in range(3):
        Path(os.fsdecode(bytes(root / "three") + b"/n\xe9-%d" % i)).write_bytes(b"%d" % i)
    (root / "block").mkdir()
    for i in range(60):
        (root / "block" / f"entry-{i:03d}").write_bytes(b"b")


@pytest.mark.parametrize("inline", [False, True], ids=["blocks", "inline-data"])
def test_names_and_targets_that_are_not_utf8_come_out_as_their_bytes(
    inline: bool, tmp_path: Path
) -> None:
    src = tmp_path / "raw"
    _raw_source(src)
    image = _mkfs(tmp_path, src, "-b", "4096", *(["-O", "inline_data"] if inline else []))
    if inline:  # what is meant to be kept in the inodes is
        for path in ("/small", "/three", "/slow", "/small/tiny", "/small/mid"):
            assert b"Flags: 0x10000000\n" in fi.run("debugfs", "-R", f"stat {path}", image)
    with open(image, "rb") as f, open_tree(f, SIZE) as tree:
        assert tree.readlink((b"fast",)) == b"caf\xe9"
        assert tree.readlink((b"slow",)) == b"/" + b"\xff\xfe/" * 40
        # every member against the source tree (debugfs' rdump writes an inline file's whole
        # inline area, so the source is the reference here)
        for top in (b"small", b"three", b"block"):
            compare(tree, src / top.decode(), (top,), xattrs=False, times=None, owners=False)
        problems: list = []
        assert len(list(walk(tree, problems))) == 73 and problems == []


def _debugfs_ls(image: Path, path: str) -> set[tuple[bytes, int, int]]:
    out = fi.run("debugfs", "-R", f"ls -p {path}", image)
    names = set()
    for line in out.split(b"\n"):
        if line.startswith(b"/"):
            fields = line.split(b"/")
            name = b"/".join(fields[5:-2])
            if name not in (b".", b"..") and int(fields[1]):
                names.add((name, int(fields[1]), stat.S_IFMT(int(fields[2], 8))))
    return names


def test_an_inline_directory_lists_as_debugfs_lists_it(tmp_path: Path) -> None:
    """Directories kept in their inode, one of them grown past ``i_block`` the way the kernel
    grows one: more records in the ``system.data`` attribute (e2fsprogs moves a directory to a
    block instead, so the attribute is written with ``debugfs ea_set``, and a hard link to
    ``three/n\xe9-0`` named in it)."""
    src = tmp_path / "raw"
    _raw_source(src)
    image = _mkfs(tmp_path, src, "-b", "4096", "-O", "inline_data")
    with open(image, "rb") as f, open_tree(f, SIZE) as tree:
        target = tree.lstat((b"three", b"n\xe9-0"))
        assert not isinstance(target, Refusal)
    name = b"sp\xe9ll"
    record = struct.pack("<IHBB", target.ino, 16, len(name), 1) + name.ljust(8, b"\0")
    tail = struct.pack("<IHBB", 0, 48, 0, 0) + bytes(40)  # the rest: an empty record
    (tmp_path / "more").write_bytes(record + tail)
    commands = tmp_path / "cmds"
    commands.write_bytes(
        b"ea_set -f %s /three system.data\n" % bytes(tmp_path / "more")
        + b"sif /three size 124\n"
        + b"sif /three/n\xe9-0 links_count 2\n"
    )
    fi.run("debugfs", "-w", "-f", commands, image)
    fi.run("e2fsck", "-fn", image)
    assert b"Size of inline data: 124" in fi.run("debugfs", "-R", "stat /three", image)
    with open(image, "rb") as f, open_tree(f, SIZE) as tree:
        for directory in (b"small", b"three", b"block"):
            listing = tree.listdir((directory,))
            assert not isinstance(listing, Refusal) and listing.problems == []
            ours = {(e.name, e.ino, e.type) for e in listing.entries}
            assert ours == _debugfs_ls(image, "/" + directory.decode()), directory
        three = tree.listdir((b"three",))
        assert not isinstance(three, Refusal)
        assert (name, target.ino) in {(e.name, e.ino) for e in three.entries}
