"""Disk images of a Docker host made by the real tools, unprivileged and without a mount:
``mkfs.ext4 -d`` (a root filesystem holding ``var/lib/docker``), ``sfdisk`` (GPT and MBR
tables on a disk file), ``dd conv=notrunc`` (the filesystem into its partition), ``qemu-img
convert`` (qcow2, vmdk, VHD, VHDX), ``ewfacquire -u`` (an E01), ``mkfs.xfs -p`` (an xfs root
from a proto file).

LVM2 is the exception: Debian's lvm2 tools write a physical volume only onto a block device
(``pvcreate`` on a file: "No device found"), which needs a loop device, so
:func:`lvm_pv` writes one itself, from LVM2's documented on-disk format (the label sector,
the PV header, the metadata area header, and the volume group's text metadata; LVM's CRC):
one PV, one volume group, one linear logical volume holding a filesystem image.

What each loses against the directory it was made from: mke2fs 1.47.0 keeps whole seconds of
the times; a proto file keeps no xattrs, no times, no hard links (each name becomes a file of
its own), no sticky bit and no name with white space.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
MIB = 1 << 20
BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
LINUX_FS = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
LINUX_LVM = "E6D6D379-F507-44C2-A23C-238F2A3DF928"
FIXED_UUID = "6f1c6c1e-52a4-4c8b-9a4e-0d6e5a0b9e13"


def program(name: str) -> str:
    found = shutil.which(name, path=SBIN)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def run(*args: str | Path, stdin: bytes | None = None) -> bytes:
    cmd = [program(str(args[0])), *map(str, args[1:])]
    env = {**os.environ, "TZ": "UTC", "E2FSPROGS_FAKE_TIME": "1600000000"}
    done = subprocess.run(cmd, input=stdin, capture_output=True, env=env, check=False)
    assert done.returncode == 0, (cmd, done.stderr.decode(errors="replace"))
    return done.stdout


def ext4_of(src: Path, out: Path, size: int) -> Path:
    with open(out, "wb") as f:
        f.truncate(size)
    run("mkfs.ext4", "-q", "-F", "-b", "4096", "-U", FIXED_UUID, "-E",
        "nodiscard,root_owner=0:0", "-d", src, out)  # fmt: skip
    return out


def disk_with(
    out: Path, label: str, partitions: list[tuple[str, int, Path | None]], size: int
) -> Path:
    """A disk file of ``size`` bytes with a ``gpt`` or ``dos`` table (sfdisk) of
    ``partitions`` (type, size in bytes, the image to copy in or None), each copied in with
    ``dd conv=notrunc`` at the start sfdisk gave it."""
    with open(out, "wb") as f:
        f.truncate(size)
    script = [f"label: {label}"]
    script += [f"size={psize // 512}, type={ptype}" for ptype, psize, _ in partitions]
    run("sfdisk", "-q", out, stdin="\n".join(script).encode() + b"\n")
    starts = _starts(out)
    for (_, _, image), start in zip(partitions, starts, strict=True):
        if image is not None:
            run("dd", f"if={image}", f"of={out}", "bs=512", f"seek={start}", "conv=notrunc",
                "status=none")  # fmt: skip
    return out


def _starts(disk: Path) -> list[int]:
    import json

    table = json.loads(run("sfdisk", "--json", disk))["partitiontable"]
    return [int(p["start"]) for p in table["partitions"]]


def convert(raw: Path, fmt: str, out: Path, *options: str) -> Path:
    run("qemu-img", "convert", "-f", "raw", "-O", fmt, *options, raw, out)
    return out


def e01_of(raw: Path, target: Path) -> Path:
    """An E01 made by ewfacquire, unattended (``-u``), compressed, with an MD5 of the media."""
    run("ewfacquire", "-u", "-q", "-c", "deflate:fast", "-t", target, "-S", "1GiB", raw)
    return target.with_name(target.name + ".E01")


# -- xfs from a proto file ------------------------------------------------------------------------


def xfs_of(src: Path, out: Path, size: int, work: Path) -> Path:
    """An xfs filesystem of the tree ``src`` made by ``mkfs.xfs -p`` from a proto file."""
    lines = ["/dev/null", "0 0", _proto_mode(os.lstat(src)) + " 0 0"]
    _proto_dir(src, lines)
    lines.append("$")
    proto = work / "proto"
    proto.write_text("\n".join(lines) + "\n")
    with open(out, "wb") as f:
        f.truncate(size)
    run("mkfs.xfs", "-q", "-f", "-m", f"uuid={FIXED_UUID}", "-p", proto, out)
    return out


def _proto_mode(st: os.stat_result) -> str:
    kind = {stat.S_IFREG: "-", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFCHR: "c",
            stat.S_IFBLK: "b", stat.S_IFIFO: "p"}[stat.S_IFMT(st.st_mode)]  # fmt: skip
    suid = "u" if st.st_mode & stat.S_ISUID else "-"
    sgid = "g" if st.st_mode & stat.S_ISGID else "-"
    return f"{kind}{suid}{sgid}{st.st_mode & 0o777:03o}"


def _proto_dir(path: Path, lines: list[str]) -> None:
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        st = entry.stat(follow_symlinks=False)
        head = f"{entry.name} {_proto_mode(st)} {st.st_uid} {st.st_gid}"
        if stat.S_ISREG(st.st_mode):
            lines.append(f"{head} {entry.path}")
        elif stat.S_ISLNK(st.st_mode):
            lines.append(f"{head} {os.readlink(entry.path)}")
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            lines.append(f"{head} {os.major(st.st_rdev)} {os.minor(st.st_rdev)}")
        elif stat.S_ISFIFO(st.st_mode):
            lines.append(head)
        elif stat.S_ISDIR(st.st_mode):
            lines.append(head)
            _proto_dir(Path(entry.path), lines)
            lines.append("$")


# -- LVM2, written from its documented format -----------------------------------------------------

LVM_CRC_INITIAL = 0xF597A6CF
MDA_MAGIC = b" LVM2 x[5A%r0N*>"
SECTOR = 512


def lvm_crc(data: bytes) -> int:
    """LVM's ``calc_crc``: CRC-32 (the reflected 0xEDB88320 table) from 0xf597a6cf, without
    the final inversion; zlib's crc32 inverts before and after."""
    return ~zlib.crc32(data, ~LVM_CRC_INITIAL & 0xFFFFFFFF) & 0xFFFFFFFF


def _lvm_id(rng: random.Random) -> str:
    chars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return "".join(rng.choice(chars) for _ in range(32))


def _dashed(uid: str) -> str:
    cuts = (6, 4, 4, 4, 4, 4, 6)
    out, pos = [], 0
    for n in cuts:
        out.append(uid[pos : pos + n])
        pos += n
    return "-".join(out)


def lvm_pv(
    out: Path, lv_image: Path, *, vg: str = "vg0", lv: str = "root", pe_start: int = 2048,
    extent_sectors: int = 8192, seed: int = 7,
) -> Path:  # fmt: skip
    """A PV holding one volume group with one linear logical volume whose extents hold
    ``lv_image``. A ``pe_start`` (sectors) of 1 makes the volume begin on the PV's own label
    sector (the image is then not written: it would overwrite the label)."""
    rng = random.Random(seed)
    pv_id, vg_id, lv_id = _lvm_id(rng), _lvm_id(rng), _lvm_id(rng)
    image = lv_image.read_bytes()
    extent = extent_sectors * SECTOR
    lv_extents = -(-len(image) // extent)
    pv_sectors = max(pe_start, 2048) + lv_extents * extent_sectors + 2048
    pe_count = (pv_sectors - pe_start) // extent_sectors
    text = (
        f"""{vg} {{
id = "{_dashed(vg_id)}"
seqno = 1
format = "lvm2"
status = ["RESIZEABLE", "READ", "WRITE"]
flags = []
extent_size = {extent_sectors}
max_lv = 0
max_pv = 0
metadata_copies = 0

physical_volumes {{

pv0 {{
id = "{_dashed(pv_id)}"
device = "/dev/sda3"
status = ["ALLOCATABLE"]
flags = []
dev_size = {pv_sectors}
pe_start = {pe_start}
pe_count = {pe_count}
}}
}}

logical_volumes {{

{lv} {{
id = "{_dashed(lv_id)}"
status = ["READ", "WRITE", "VISIBLE"]
flags = []
creation_time = 1600000000
creation_host = "host"
segment_count = 1

segment1 {{
start_extent = 0
extent_count = {lv_extents}

type = "striped"
stripe_count = 1

stripes = [
"pv0", 0
]
}}
}}
}}

}}
# Generated by LVM2 version 2.03.16(2) (2022-05-18): Sat Sep 13 12:26:40 2020

contents = "Text Format Volume Group"
version = 1

description = ""

creation_host = "host"
creation_time = 1600000000
""".encode()
        + b"\0"
    )
    mda_start, mda_size = 4096, 1 * MIB - 4096
    disk = bytearray(pv_sectors * SECTOR)
    # the label, in sector 1
    pv_header = pv_id.encode() + struct.pack("<Q", pv_sectors * SECTOR)
    pv_header += struct.pack("<QQ", pe_start * SECTOR, 0) + bytes(16)  # data area, end
    pv_header += struct.pack("<QQ", mda_start, mda_size) + bytes(16)  # metadata area, end
    pv_header += struct.pack("<II", 2, 1) + bytes(16)  # extension v2: in use; no boot areas
    label = bytearray(SECTOR)
    label[0:8] = b"LABELONE"
    struct.pack_into("<QII", label, 8, 1, 0, 32)
    label[24:32] = b"LVM2 001"
    label[32 : 32 + len(pv_header)] = pv_header
    struct.pack_into("<I", label, 16, lvm_crc(bytes(label[20:])))
    disk[SECTOR : 2 * SECTOR] = label
    # the metadata area: its header, then the text at 512 bytes into it
    mda = bytearray(SECTOR)
    mda[4:20] = MDA_MAGIC
    struct.pack_into("<IQQ", mda, 20, 1, mda_start, mda_size)
    struct.pack_into("<QQII", mda, 40, SECTOR, len(text), lvm_crc(text), 0)
    struct.pack_into("<I", mda, 0, lvm_crc(bytes(mda[4:])))
    disk[mda_start : mda_start + SECTOR] = mda
    disk[mda_start + SECTOR : mda_start + SECTOR + len(text)] = text
    # the logical volume's extents
    at = pe_start * SECTOR
    if pe_start >= 2048:
        disk[at : at + len(image)] = image
    out.write_bytes(bytes(disk))
    return out
