"""Real ext4 and xfs images made without mounting (e2fsprogs' ``mkfs.ext4 -d`` and ``debugfs
-w``, xfsprogs' ``mkfs.xfs -p``), put into a thin pool by ``thin_restore`` the way Docker's
devices are: the image's non-zero 64 KiB blocks mapped, a second device a snapshot that shares
every block it did not change. Nothing binary is committed: the images are made at test time
from a seed.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import thin_fixtures as tf

BLOCK = 128 * 512
SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
FAKE_TIME = "1600000000"


def program(name: str) -> str:
    found = shutil.which(name, path=SBIN)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def run(*args: str | Path, env: dict[str, str] | None = None) -> bytes:
    cmd = [program(str(args[0])), *map(str, args[1:])]
    full_env = {**os.environ, "TZ": "UTC", "E2FSPROGS_FAKE_TIME": FAKE_TIME, **(env or {})}
    done = subprocess.run(cmd, capture_output=True, env=full_env, check=False)
    assert done.returncode == 0, (cmd, done.stderr.decode(errors="replace"))
    return done.stdout


# -- ext4 -------------------------------------------------------------------------------------


def sparse_copy(src: Path, dst: Path) -> Path:
    """A copy of the image ``src`` that keeps its holes (``shutil.copyfile`` fills them: a 320 MB
    xfs image holding 20 MB of data would take 320 MB of disk per damaged copy)."""
    run("cp", "--sparse=always", src, dst)
    return dst


def ext4_source(root: Path, seed: int) -> None:
    """A small tree of the kinds Docker layers hold: nested dirs, files of many sizes, a setuid
    binary, symlinks short and long, hard links, a sparse file, a directory of 400 names, a
    name with a space, owners other than root, times with nanoseconds."""
    rng = random.Random(seed)
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_bytes(b"box\n")
    (root / "etc/passwd").write_bytes(b"root:x:0:0:root:/root:/bin/sh\n" * 20)
    (root / "bin").mkdir()
    tool = root / "bin/tool"
    tool.write_bytes(rng.randbytes(200_000))
    tool.chmod(0o4755)
    (root / "data").mkdir(mode=0o750)
    (root / "data/big").write_bytes(rng.randbytes(3_000_000))
    (root / "data/empty").write_bytes(b"")
    (root / "data/with space").write_bytes(b"spaced\n")
    for owned in (root / "data", root / "data/big"):
        try:
            os.chown(owned, 1000, 1001)
        except PermissionError:  # not root: the images keep the owner mkfs is given
            pass
    many = root / "many"
    many.mkdir()
    for i in range(400):
        (many / f"entry-{i:04d}-{'x' * 20}").write_bytes(str(i).encode())
    (root / "link").symlink_to("etc/hostname")
    (root / "longlink").symlink_to("/" + "/".join(["segment"] * 12))
    (root / "hard1").write_bytes(b"linked\n")
    os.link(root / "hard1", root / "hard2")
    with open(root / "sparse", "wb") as f:
        f.seek(5 << 20)
        f.write(b"end of a sparse file\n")
    sticky = root / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    for i, path in enumerate(sorted(root.rglob("*"))):
        os.utime(path, ns=(1_500_000_000_123_456_789 + i, 1_400_000_000_987_654_321 + i),
                 follow_symlinks=False)  # fmt: skip


def make_ext4(
    tmp: Path, seed: int = 1, size: int = 48 << 20, *, centos7: bool = False
) -> tuple[Path, Path]:
    """An ext4 image of :func:`ext4_source` (the base), and a copy changed by debugfs the way a
    layer would change it: a FIFO, a device node, a name that is not UTF-8, xattrs, a birth
    time. Returns both images."""
    src = tmp / "src"
    ext4_source(src, seed)
    image = tmp / "ext4.img"
    with open(image, "wb") as f:
        f.truncate(size)
    features = ["-O", "^metadata_csum,^64bit,uninit_bg"] if centos7 else []
    run(
        "mkfs.ext4", "-q", "-F", "-b", "4096", "-U", "6f1c6c1e-52a4-4c8b-9a4e-0d6e5a0b9e11",
        "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0,"
        "hash_seed=0b9e7a60-3d3f-4a56-8a53-6f6c4d1f0c2a",
        *features, "-d", src, image,
    )  # fmt: skip
    base = tmp / "ext4-base.img"
    shutil.copyfile(image, base)
    capability = tmp / "cap"
    capability.write_bytes(bytes.fromhex("0100000200200000000000000000000000000000"))
    commands = tmp / "debugfs.cmds"
    commands.write_bytes(
        b"set_current_time 20200913122640\n"
        b"cd /\n"
        b"mknod fifo p\n"
        b"mknod null c 1 3\n"
        b"cd /etc\n"
        b"write /etc/hostname caf\xe9-latin1\n"
        b"cd /\n"
        b"ea_set /etc/passwd user.comment shadowed\n"
        b"ea_set -f " + str(capability).encode() + b" /bin/tool security.capability\n"
        b"sif /etc/passwd crtime 20190102030405\n"
        b"sif /etc/passwd mtime_extra 2000\n"
    )
    run("debugfs", "-w", "-f", commands, image)
    run("e2fsck", "-fn", image)
    return base, image


# -- xfs --------------------------------------------------------------------------------------

#: a symlink target that is not UTF-8
RAW_LINK = b"caf\xe9"


def make_xfs(tmp: Path, seed: int = 2, size: int = 320 << 20) -> tuple[Path, dict[bytes, bytes]]:
    """An xfs image from a proto file: short-form, block, leaf and node directories, files of
    many sizes, setuid and setgid modes, owners, symlinks (one whose target is not UTF-8), a
    FIFO, device nodes, a name that is not UTF-8. Returns the image and the source bytes of
    each regular file by path."""
    rng = random.Random(seed)
    src = tmp / "xsrc"
    src.mkdir()
    files: dict[bytes, bytes] = {}
    counter = iter(range(1 << 30))

    def source(data: bytes) -> Path:
        path = src / f"f{next(counter)}"
        path.write_bytes(data)
        return path

    def file_line(name: bytes, path: bytes, data: bytes, mode: bytes = b"---644 0 0") -> bytes:
        files[path] = data
        return name + b" " + mode + b" " + str(source(data)).encode() + b"\n"

    lines = [b"/dev/null\n", b"0 0\n", b"d--755 0 0\n"]
    lines.append(file_line(b"hostname", b"hostname", b"box\n"))
    lines.append(file_line(b"tool", b"tool", rng.randbytes(150_000), b"-u-755 0 0"))
    lines.append(file_line(b"group", b"group", rng.randbytes(9000), b"--g750 0 42"))
    lines.append(file_line(b"caf\xe9", b"caf\xe9", b"latin-1 name\n"))
    lines.append(file_line(b"empty", b"empty", b""))
    lines.append(b"link l--777 0 0 hostname\n")
    lines.append(b"longlink l--777 0 0 /" + b"/".join([b"segment"] * 12) + b"\n")
    lines.append(b"rawlink l--777 0 0 " + RAW_LINK + b"\n")
    lines.append(b"fifo p--644 0 0\n")
    lines.append(b"null c--666 0 0 1 3\n")
    lines.append(b"disk b--660 0 6 8 0\n")
    lines.append(b"data d--750 1000 1001\n")
    lines.append(file_line(b"big", b"data/big", rng.randbytes(4_000_000), b"---640 1000 1001"))
    lines.append(b"few d--755 0 0\n")
    lines.append(file_line(b"one", b"data/few/one", b"1\n"))
    lines.append(b"$\n$\n")
    for name, count in ((b"block", 40), (b"leaf", 300), (b"node", 3000)):
        lines.append(name + b" d--755 0 0\n")
        for i in range(count):
            entry = b"entry-%05d-%s" % (i, b"y" * 30)
            lines.append(file_line(entry, name + b"/" + entry, b"%d\n" % i))
        lines.append(b"$\n")
    lines.append(b"$\n")
    proto = tmp / "proto"
    proto.write_bytes(b"".join(lines))
    image = tmp / "xfs.img"
    with open(image, "wb") as f:
        f.truncate(size)
    run("mkfs.xfs", "-q", "-f", "-m", "uuid=6f1c6c1e-52a4-4c8b-9a4e-0d6e5a0b9e12", "-p", proto,
        image)  # fmt: skip
    run("xfs_repair", "-n", image)
    return image, files


# -- pools ------------------------------------------------------------------------------------


@dataclass
class PoolFiles:
    metadata: Path
    data: Path
    #: device id → the plain image it holds
    images: dict[int, Path]


def pool_of(tmp: Path, images: list[Path]) -> PoolFiles:
    """A pool whose device 1 holds ``images[0]`` and each device ``n + 1`` a snapshot of device
    ``n`` holding ``images[n]``: blocks equal to the origin's stay shared, the others get new
    data blocks. All-zero blocks are left unmapped (they read as zeros all the same)."""
    model = tf.Pool()
    data_blocks: list[bytes] = []
    previous: list[bytes] | None = None
    for index, image in enumerate(images):
        dev_id = index + 1
        blocks = _blocks(image)
        if previous is None:
            model.create_thin(dev_id)
            changed = [v for v, b in enumerate(blocks) if any(b)]
        else:
            model.create_snap(dev_id, dev_id - 1)
            changed = [v for v, b in enumerate(blocks) if b != previous[v]]
        if changed:
            start = len(data_blocks)
            data_blocks += [blocks[v] for v in changed]
            model.next_data = len(data_blocks)
            model.write(dev_id, np.array(changed), np.arange(start, start + len(changed)))
        previous = blocks
    metadata = tf.restore(model.xml(), tmp / "metadata")
    data = tmp / "data"
    with open(data, "wb") as f:
        for block in data_blocks:
            f.write(block)
    return PoolFiles(metadata, data, {i + 1: image for i, image in enumerate(images)})


def _blocks(image: Path) -> list[bytes]:
    raw = image.read_bytes()
    return [raw[i : i + BLOCK] for i in range(0, len(raw), BLOCK)]
