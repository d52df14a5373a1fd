"""Evidence files holding a Docker root, made from a directory by the real tools, for the tests
that read ROOT from a file (tests/test_root_file.py) and the bench: tar archives (GNU tar,
``--format=posix`` with xattrs), a GPT disk whose second partition holds an ext4 root
filesystem with the root at ``var/lib/docker`` (``mkfs.ext4 -d``, ``sfdisk``, ``dd``), its qcow2
(``qemu-img convert``) and E01 (``ewfacquire -u``), and the same on xfs (``mkfs.xfs -p``).

Nothing is mounted and nothing needs root. Where a tool keeps less than the directory holds,
the real debugging tool of that filesystem puts it back, so that the file holds what the
directory does and the tool's outputs can be held against each other byte for byte:

- mke2fs 1.47.0 keeps whole seconds of the times: ``debugfs -w`` sets each entry's
  nanoseconds (``set_inode_field PATH mtime_extra``);
- a proto file keeps no times, no sticky bit, no xattrs and no hard links: ``xfs_db -x`` sets
  each entry's times and mode, and the overlay opaque marks (``attr_set``, then the value
  written); a hard link is made by pointing the second name at the first one's inode.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import disk_images as di

#: a bigtime xfs timestamp counts nanoseconds from 1901-12-13T20:45:52Z (xfs_format.h)
_BIGTIME_EPOCH_OFFSET = (1 << 31) * 1_000_000_000
#: what the root filesystem holds besides the Docker root
HOSTNAME = b"evidence-host\n"


def stage(docker_root: Path, dest: Path) -> Path:
    """A root filesystem's tree: a copy of ``docker_root`` (``cp -a``: xattrs, owners, times,
    hard links kept) at ``dest/var/lib/docker``, and ``etc/hostname``."""
    (dest / "var/lib").mkdir(parents=True)
    subprocess.run(["cp", "-a", str(docker_root), str(dest / "var/lib/docker")], check=True)
    (dest / "etc").mkdir()
    (dest / "etc/hostname").write_bytes(HOSTNAME)
    return dest


def tar_of(top: Path, names: list[str], out: Path, *compress: str) -> Path:
    """``tar -c`` of ``names`` under ``top`` (POSIX format: nanosecond times; xattrs and
    numeric owners kept), compressed by the options ``compress`` (``-z``, ``--zstd``, …)."""
    subprocess.run(
        ["tar", "--format=posix", "--xattrs", "--xattrs-include=*", "--numeric-owner",
         "--sort=name", *compress, "-cf", str(out), "-C", str(top), *names],
        check=True,
    )  # fmt: skip
    return out


def gpt_ext4(root_fs: Path, work: Path, size: int = 48 * di.MIB) -> Path:
    """A GPT disk: a BIOS boot partition, then an ext4 root filesystem of ``root_fs`` with
    every time to the nanosecond."""
    image = di.ext4_of(root_fs, work / "root.ext4", size)
    commands = work / "times.debugfs"
    commands.write_text("".join(_debugfs_times(root_fs)))
    di.run("debugfs", "-w", "-f", commands, image)
    di.run("e2fsck", "-fn", image)
    return di.disk_with(
        work / "disk.raw", "gpt",
        [(di.BIOS_BOOT, 1 * di.MIB, None), (di.LINUX_FS, size, image)], size + 4 * di.MIB,
    )  # fmt: skip


def _debugfs_times(root_fs: Path) -> list[str]:
    """``set_inode_field`` lines giving each entry the nanoseconds of its mtime and atime
    (mke2fs has set the seconds)."""
    out = []
    for path in _entries(root_fs):
        st = path.lstat()
        shown = "/" + str(path.relative_to(root_fs))
        for field, ns in (("mtime", st.st_mtime_ns), ("atime", st.st_atime_ns)):
            if ns % 1_000_000_000:
                out.append(f'sif "{shown}" {field}_extra {(ns % 1_000_000_000) << 2}\n')
    return out


def gpt_xfs(root_fs: Path, work: Path, size: int = 320 * di.MIB) -> Path:
    """A GPT disk whose one partition holds an xfs root filesystem of ``root_fs`` made from a
    proto file, with what a proto file cannot say put back by ``xfs_db -x``."""
    image = di.xfs_of(root_fs, work / "root.xfs", size, work)
    links = _hard_links(root_fs)
    inodes = _xfs_inodes(image, root_fs, [first for first, _ in links])
    commands = work / "fixes.xfs_db"
    fixes = _xfs_db_fixes(root_fs, {second for _, second in links})
    for first, second in links:
        fixes += _xfs_db_link(root_fs, first, second, inodes[first])
    commands.write_text("".join(fixes))
    di.run("xfs_db", "-x", "-c", f"source {commands}", image)
    return di.disk_with(work / "xfs.raw", "gpt", [(di.LINUX_FS, size, image)], size + 4 * di.MIB)


def _hard_links(root_fs: Path) -> list[tuple[Path, Path]]:
    """(first name, another name) of each regular file with several names, in walk order."""
    first: dict[tuple[int, int], Path] = {}
    out = []
    for path in _entries(root_fs):
        st = path.lstat()
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            if key in first:
                out.append((first[key], path))
            else:
                first[key] = path
    return out


def _xfs_inodes(image: Path, root_fs: Path, paths: list[Path]) -> dict[Path, int]:
    """The inode number of each of ``paths`` (relative to the image's root: the proto file
    made them under the same names)."""
    out: dict[Path, int] = {}
    for path in paths:
        shown = _in_fs(root_fs, path)
        text = di.run("xfs_db", "-r", "-c", f"path {shown}", "-c", "print v3.inumber", image)
        out[path] = int(text.decode().split("=")[1])
    return out


def _xfs_db_fixes(root_fs: Path, skipped: set[Path]) -> list[str]:
    """Each entry's mode (the sticky bit), times and xattrs, as ``xfs_db -x`` commands."""
    out: list[str] = []
    for path in _entries(root_fs):
        if path in skipped:
            continue
        st = path.lstat()
        out.append(f"path {_in_fs(root_fs, path)}\n")
        if not stat.S_ISLNK(st.st_mode):
            out.append(f"write core.mode 0{st.st_mode:o}\n")
        for field, ns in (("mtime", st.st_mtime_ns), ("atime", st.st_atime_ns)):
            # a bigtime timestamp whole (xfs_db 6.1 writes its .sec field wrongly)
            out.append(f"write core.{field} {ns + _BIGTIME_EPOCH_OFFSET}\n")
        for index, name in enumerate(sorted(os.listxattr(path, follow_symlinks=False))):
            value = os.getxattr(path, name, follow_symlinks=False)
            namespace, _, short = name.partition(".")
            flag = {"trusted": "-r", "security": "-s", "user": "-u"}[namespace]
            # attr_set fills the value with "v" bytes; the short form fork lists attributes
            # in the order they were set, so the one just set is written over at its index
            out.append(f"attr_set {flag} -v {len(value)} {short}\n")
            if value:
                out.append(f"write a.sfattr.list[{index}].value #{value.hex()}\n")
    return out


def _xfs_db_link(root_fs: Path, first: Path, second: Path, inode: int) -> list[str]:
    """``second`` made a hard link of ``first`` (inode ``inode``): its entry in its (short
    form) directory pointed at that inode, whose link count goes up by one. The inode the
    proto file gave ``second`` is left without a name."""
    index = sorted(os.listdir(second.parent)).index(second.name)
    return [
        f"path {_in_fs(root_fs, second.parent)}\n",
        f"write u3.sfdir3.list[{index}].inumber.i4 {inode}\n",
        f"path {_in_fs(root_fs, first)}\n",
        f"write core.nlinkv2 {first.lstat().st_nlink}\n",
    ]


def _in_fs(root_fs: Path, path: Path) -> str:
    return "/" + str(path.relative_to(root_fs))


def _entries(root: Path) -> list[Path]:
    """Every entry below ``root``, parents first."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            out.append(Path(dirpath, name))
    return out
