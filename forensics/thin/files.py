"""The filesystem inside one thin device of a pool, opened for the ``thin files|cat|export``
verbs: the pool's metadata read, the data file opened read-only, the device served as a file
(:class:`~forensics.thin.device.ThinDevice`) and its ext4 or xfs filesystem opened on it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from forensics.errors import OperationalError
from forensics.fs import FsOpenError, Limits, Stat, display, open_tree
from forensics.fs.libyal import LibyalTree
from forensics.report import printable
from forensics.thin.blocks import MetadataFile, MetadataOpenError
from forensics.thin.device import DeviceOpenError, DeviceProblem, ThinDevice
from forensics.thin.pool import Pool, read_pool


class FilesError(OperationalError):
    """The device's filesystem cannot be opened (the message says why)."""


@dataclass
class DeviceTree:
    pool: Pool
    device: ThinDevice
    tree: LibyalTree

    def device_problems(self) -> list[DeviceProblem]:
        """The device's damage and what its reads met, each once."""
        out = list(self.device.damage())
        out += [p for p in self.device.read_problems if p not in out]
        return out


@contextmanager
def open_device_tree(
    metadata: Path, data: Path, dev_id: int, *, size: int | None = None
) -> Iterator[DeviceTree]:
    """The filesystem of device ``dev_id``; ``size`` the device's length (Docker's record),
    else the larger of its last mapped block's end and the size its filesystem claims."""
    try:
        meta = MetadataFile(metadata)
    except MetadataOpenError as exc:
        raise FilesError(str(exc)) from None
    try:
        fd = os.open(data, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        meta.close()
        raise FilesError(f"{data}: {exc.strerror or exc}") from None
    try:
        pool = read_pool(meta, space_maps=False)
        try:
            device = ThinDevice(pool, dev_id, fd, size=size)
        except DeviceOpenError as exc:
            raise FilesError(str(exc)) from None
        try:
            tree = open_device_fs(device, size)
        except FsOpenError as exc:
            problems = "; ".join(str(p) for p in device.read_problems)
            raise FilesError(f"device {dev_id}: {problems or exc}") from None
        with tree:
            yield DeviceTree(pool, device, tree)
    finally:
        os.close(fd)
        meta.close()


def open_device_fs(device: ThinDevice, recorded_size: int | None) -> LibyalTree:
    """The ext4 or xfs filesystem of ``device`` (read unbuffered: the libraries read the sizes
    they need, bench/fs_bench.py). ``recorded_size``: the device's length as Docker records
    it; without one the device is read up to the end its filesystem claims, but no file is
    trusted to be larger than what is known of the device — the end of its last mapped block
    — so that a crafted inode size cannot make a reader walk gigabytes of holes. Raises
    :class:`~forensics.fs.FsOpenError` (and ``OSError`` for unreadable bytes under the
    superblock)."""
    known = device.size  # Docker's record, or the end of the last mapped block
    if recorded_size is None:
        device.size = max(device.size, claimed_size(device))
    return open_tree(device, device.size, Limits(file_size=known))


def claimed_size(reader: ThinDevice) -> int:
    """The size the device's filesystem claims (0 when none is recognised)."""
    from forensics.fs import ext4, xfs

    try:
        xsb = xfs.read_superblock(reader)
        if not isinstance(xsb, str):
            return int(xsb.dblocks) * int(xsb.blocksize)
        esb = ext4.read_superblock(reader)
        if not isinstance(esb, str):
            return ext4.blocks_count(esb) * (1024 << int(esb.log_block_size))
    except OSError:
        pass
    return 0


# -- rendering ----------------------------------------------------------------------------


def member_doc(
    parts: tuple[bytes, ...], st: Stat, target: bytes | None, xattrs: dict[bytes, bytes]
) -> dict[str, Any]:
    """One member as ``thin files --format json`` prints it (bytes as hex where they need not
    be text: xattr values; a name that is not UTF-8 escaped as ``\\xNN``)."""
    doc: dict[str, Any] = {
        "path": display(parts),
        "type": _TYPE_WORD.get(stat.S_IFMT(st.mode), "unknown"),
        "mode": f"{stat.S_IMODE(st.mode):04o}",
        "ino": st.ino,
        "nlink": st.nlink,
        "uid": st.uid,
        "gid": st.gid,
        "size": st.size,
        "atime_ns": st.atime_ns,
        "mtime_ns": st.mtime_ns,
        "ctime_ns": st.ctime_ns,
        "crtime_ns": st.crtime_ns,
        "xattrs": {
            k.decode("utf-8", "backslashreplace"): v.hex() for k, v in sorted(xattrs.items())
        },
    }
    if stat.S_ISCHR(st.mode) or stat.S_ISBLK(st.mode):
        doc["rdev"] = [os.major(st.rdev), os.minor(st.rdev)]
    if target is not None:
        doc["target"] = target.decode("utf-8", "backslashreplace")
    return doc


def member_line(
    parts: tuple[bytes, ...], st: Stat, target: bytes | None, xattrs: dict[bytes, bytes]
) -> str:
    """One member as ``ls -li`` would print it, with the mtime to the nanosecond in UTC and
    the xattr names in brackets; what the filesystem names (the path, a symlink's target, the
    xattr names) with terminal controls escaped, as every text output escapes them."""

    if stat.S_ISCHR(st.mode) or stat.S_ISBLK(st.mode):
        size = f"{os.major(st.rdev)}, {os.minor(st.rdev)}"
    else:
        size = str(st.size)
    seconds, nanos = divmod(st.mtime_ns, 1_000_000_000)
    try:
        when = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, ValueError, OSError):
        when = f"@{seconds}"
    line = (
        f"{st.ino:>9} {stat.filemode(st.mode)} {st.nlink:>3} {st.uid:>5} {st.gid:>5} "
        f"{size:>10} {when}.{nanos:09d} {display(parts)}"
    )
    if target is not None:
        line += " -> " + target.decode("utf-8", "backslashreplace")
    if xattrs:
        line += " [" + ",".join(k.decode("utf-8", "backslashreplace") for k in sorted(xattrs)) + "]"
    return printable(line)


_TYPE_WORD = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "chardev",
    stat.S_IFBLK: "blockdev",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}
