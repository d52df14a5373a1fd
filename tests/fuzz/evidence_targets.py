"""Fuzz targets of the evidence sources: the tar index (:mod:`forensics.fs.tar`), the
partition tables and the LVM label (:mod:`forensics.image`), and the Docker-root locator.

Inputs: a small real archive written by GNU tar (PAX, with xattrs, a sparse member, a symlink,
a hard link, a device node, a long name), damaged, plain or gzip-compressed; any bytes; a real
GPT and MBR disk head written by sfdisk, damaged field by field, CRCs resealed three times in
four; archives of drawn member names for the locator. Allowed outcomes: the readers' own
answers (``TarOpenError``, a ``Refusal``, a problem, ``OSError`` from reading a member);
anything else propagates as a crash.
"""

from __future__ import annotations

import copy
import functools
import gzip
import io
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
import zlib
from pathlib import Path

from draw import Draw
from targets import EDGES, mutate_bytes

from forensics.fs import Limits, Refusal, walk
from forensics.fs.compressed import StreamLimits
from forensics.fs.tar import TarLimits, TarOpenError, open_tar
from forensics.image.device import FileDevice
from forensics.image.locate import LocateError, choose, search
from forensics.image.lvm import find_label
from forensics.image.partitions import read_partitions

SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
LIMITS = Limits(total_entries=2000, depth=64, file_size=8 << 20)
TAR_LIMITS = TarLimits(
    members=2000,
    index_bytes=8 << 20,
    sparse_entries=1000,
    stream=StreamLimits(ratio_floor=16 << 20, max_size=64 << 20, cache_blocks=4),
)


def _tool(name: str) -> str:
    found = shutil.which(name, path=SBIN)
    if found is None:
        raise RuntimeError(f"{name} is not installed")
    return found


@functools.cache
def _archive() -> bytes:
    work = Path(tempfile.mkdtemp(prefix="fuzz-tar-"))
    root = work / "docker"
    (root / "image/overlay2/layerdb/sha256").mkdir(parents=True)
    (root / "containers").mkdir()
    (root / "image/overlay2/repositories.json").write_bytes(b'{"Repositories":{}}')
    (root / "f").write_bytes(bytes(range(256)) * 8)
    os.setxattr(root / "f", "user.k", b"value")
    (root / "link").symlink_to("../../etc/passwd")
    os.link(root / "f", root / "hard")
    with open(root / "sparse", "wb") as f:
        f.seek(100_000)
        f.write(b"end")
    (root / ("long-" + "n" * 150)).write_bytes(b"long name")
    out = work / "a.tar"
    subprocess.run([_tool("tar"), "--format=posix", "--xattrs", "-S", "-cf", str(out),
                    "-C", str(work), "docker"], check=True)  # fmt: skip
    data = out.read_bytes()
    shutil.rmtree(work)
    return data


def _read_all(data: bytes) -> None:
    try:
        tree = open_tar(io.BytesIO(data), len(data), LIMITS, TAR_LIMITS)
    except TarOpenError:
        return
    with tree:
        for w in walk(tree, [], LIMITS):
            tree.xattrs(w.parts)
            tree.readlink(w.parts)
            tree.listdir(w.parts)
            f = tree.open_file(w.parts)
            if isinstance(f, Refusal):
                continue
            try:
                while f.read(1 << 16):
                    pass
            except OSError:
                pass
        try:
            choose(search([("archive", tree)]))
        except LocateError:
            pass


def tar_mutations(draw: Draw) -> None:
    """The real archive damaged (header fields, PAX records, data), plain or gzipped."""
    data = mutate_bytes(draw, _archive(), 12)
    if draw.boolean():
        data = gzip.compress(data, 1)
        if draw.boolean():
            data = mutate_bytes(draw, data, 2)
    _read_all(data)


def tar_bytes(draw: Draw) -> None:
    """Any bytes as an archive (behind a real first header half the time)."""
    head = _archive()[:512] if draw.boolean() else b""
    _read_all(head + draw.rest(4096))


def locator_trees(draw: Draw) -> None:
    """Archives of drawn members: names around docker roots, a daemon.json of drawn text."""
    names = [
        "docker/", "var/lib/docker/", "h/var/lib/docker/", "etc/docker/", "docker/image/",
        "var/lib/containerd/io.containerd.metadata.v1.bolt/", "lib/docker/containers/",
    ]  # fmt: skip
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for _ in range(draw.integer(1, 12)):
            name = draw.choice(names) + draw.choice(["", "image/overlay2", "containers", "x"])
            info = tarfile.TarInfo(name.rstrip("/") or ".")
            info.type = draw.choice([tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE])
            info.linkname = "../" * draw.integer(0, 3) + "etc"
            tar.addfile(info, io.BytesIO(b"") if info.type == tarfile.REGTYPE else None)
        config = draw.text(80).encode("utf-8", "surrogatepass")
        info = tarfile.TarInfo("etc/docker/daemon.json")
        info.size = len(config)
        tar.addfile(info, io.BytesIO(config))
    _read_all(buf.getvalue())


# -- partition tables and LVM ---------------------------------------------------------------------


@functools.cache
def _disks() -> dict[str, bytes]:
    """The first 64 KiB and the last sectors of a GPT disk and the first MiB of an MBR disk
    with an extended partition, all written by sfdisk."""
    work = Path(tempfile.mkdtemp(prefix="fuzz-disk-"))
    found = {}
    for label, script in (
        ("gpt", "label: gpt\nsize=1MiB\nsize=2MiB\nsize=2MiB\n"),
        ("dos", "label: dos\nsize=1MiB,type=83\ntype=5\nsize=1MiB,type=83\nsize=1MiB,type=8e\n"),
    ):
        disk = work / label
        with open(disk, "wb") as f:
            f.truncate(8 << 20)
        subprocess.run([_tool("sfdisk"), "-q", str(disk)], input=script.encode(), check=True,
                       capture_output=True)  # fmt: skip
        found[label] = disk.read_bytes()
    shutil.rmtree(work)
    return found


def _reseal_gpt(disk: bytearray, header_lba: int) -> None:
    at = header_lba * 512
    size = struct.unpack_from("<I", disk, at + 12)[0]
    entries_lba, count, entry_size = struct.unpack_from("<QII", disk, at + 72)
    length = min(count * entry_size, 1 << 20)
    if entries_lba * 512 + length <= len(disk):
        array = bytes(disk[entries_lba * 512 : entries_lba * 512 + length])
        struct.pack_into("<I", disk, at + 88, zlib.crc32(array))
    if 92 <= size <= 512:
        struct.pack_into("<I", disk, at + 16, 0)
        struct.pack_into("<I", disk, at + 16, zlib.crc32(bytes(disk[at : at + size])))


def partition_tables(draw: Draw) -> None:
    """A real GPT or MBR disk with header, entry or EBR fields set to edge values."""
    label = draw.choice(("gpt", "dos"))
    disk = bytearray(_disks()[label])
    regions = (
        [(512, 92), (1024, 512), (len(disk) - 512, 92)]
        if label == "gpt"
        else [(446, 64)]
        + [(at, 512) for at in range(512, len(disk), 512) if any(disk[at : at + 512])][:8]
    )
    for _ in range(draw.integer(1, 6)):
        start, size = draw.choice(regions)
        at = start + draw.integer(0, size - 1)
        width = draw.choice((1, 4, 8))
        value = draw.choice(EDGES) & ((1 << (8 * width)) - 1)
        disk[at : at + width] = value.to_bytes(width, "little")[: len(disk) - at]
    if label == "gpt" and draw.integer(0, 3):
        _reseal_gpt(disk, 1)
    if draw.boolean():
        disk = disk[: draw.integer(0, len(disk))]
    device = FileDevice("disk", io.BytesIO(bytes(disk)), len(disk))
    table = read_partitions(device)
    for part in table.partitions:
        assert part.start >= 0 and part.size >= 0


def lvm_label(draw: Draw) -> None:
    """Any bytes, or a label sector of drawn fields, where an LVM label is looked for."""
    sector = bytearray(draw.bytes(512).ljust(512, b"\0"))
    if draw.boolean():
        sector[:8] = b"LABELONE"
        struct.pack_into("<QII", sector, 8, 1, 0, draw.choice(EDGES) & 0xFFFFFFFF)
        sector[24:32] = b"LVM2 001"
    data = bytes(512) + bytes(sector)
    find_label(FileDevice("pv", io.BytesIO(data), len(data)))


# -- a Docker root read from an archive -----------------------------------------------------------

#: the sample's members that the stores read (layer contents left out: small and quick)
_ROOT_PARTS = ("containers/", "image/", "volumes/", "network/", "buildkit/", "overlay2/l/")


@functools.cache
def _root_members() -> list[tuple[tarfile.TarInfo, bytes]]:
    """The real-daemon sample's metadata members (and each overlay2 directory's ``link``,
    ``lower`` and empty ``diff/``), with their contents."""
    sample = Path(__file__).resolve().parents[2] / "samples/modern-overlay2.tar.gz"
    out = []
    with tarfile.open(sample) as tar:
        for info in tar:
            rel = info.name.removeprefix("docker/")
            parts = rel.split("/")
            keep = info.name == "docker" or rel.startswith(_ROOT_PARTS)
            keep = keep or (parts[0] == "overlay2" and len(parts) <= 3)
            if not keep:
                continue
            f = tar.extractfile(info) if info.isfile() else None
            out.append((info, f.read() if f is not None else b""))
    return out


def tree_root(draw: Draw) -> None:
    """The sample's root as an archive, members damaged (contents, types, a symlink out, a
    name that climbs, one gone): read whole through TreeEvidence — the stores, the checks, the
    inventory and the timeline. Allowed: no root found (LocateError)."""
    from forensics.checks import run_checks
    from forensics.inventory import inventory_document
    from forensics.stores import read_host
    from forensics.timeline import build_timeline
    from forensics.treeevidence import TreeEvidence

    members = list(_root_members())
    for _ in range(draw.integer(1, 6)):
        index = draw.integer(0, len(members) - 1)
        original, data = members[index]
        info = copy.copy(original)  # the cached members are never changed
        how = draw.integer(0, 5)
        if how == 0 and data:
            data = mutate_bytes(draw, data, 4)
        elif how == 1:
            info.type, info.linkname = (
                tarfile.SYMTYPE,
                draw.choice(
                    ["/etc/passwd", "../../../../etc", "/", ".", info.name.rsplit("/", 1)[-1]]
                ),
            )
            data = b""
        elif how == 2:
            info.type, data = draw.choice([tarfile.DIRTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE]), b""
        elif how == 3:
            info.name = draw.choice(["../", "/", "docker/../", "docker/./"]) + info.name
        elif how == 4:
            del members[index]
            continue
        else:
            data = draw.bytes(64)
        info.size = len(data) if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
        members[index] = (info, data)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    archive = buf.getvalue()
    try:
        tree = open_tar(io.BytesIO(archive), len(archive), LIMITS, TAR_LIMITS)
    except TarOpenError:
        return
    with tree:
        try:
            found = choose(search([("archive", tree)]))
        except LocateError:
            return
        ev = TreeEvidence(tree, found.parts, "evidence.tar")
        host = read_host(ev)
        run_checks(host)
        for value in inventory_document(host).values():
            if not isinstance(value, (str, list, dict, type(None))):
                list(value)
        build_timeline(ev, host)
