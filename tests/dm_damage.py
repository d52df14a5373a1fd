"""Damage done to a copy of a devicemapper sample through the real tools, as a kernel would.

The pool's mappings are read and written by Debian's ``thin_dump`` and ``thin_restore`` (the
XML, edited here); a device is cut out of the data file with ``docker-forensics thin extract``
and its filesystem changed with e2fsprogs' ``debugfs -w`` or xfsprogs' ``xfs_db -x``; the
64 KiB blocks that changed are then written back the way dm-thin writes a snapshot: each into
a data block of its own (copy on write), the device's mapping pointed at it. So a change to
one device leaves every other device as it was.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from sparse_files import data_extents
from test_samples_dm import debugfs, run, sbin

POOL = "devicemapper/devicemapper"
SECTOR = 512


@dataclass
class Run:
    """``length`` mappings from virtual block ``vbegin`` to data block ``dbegin``."""

    vbegin: int
    dbegin: int
    length: int
    time: int


class PoolXml:
    """The pool's metadata as ``thin_dump`` prints it, with each device's runs editable."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.metadata = root / POOL / "metadata"
        self.data = root / POOL / "data"
        self.xml = ET.fromstring(run("thin_dump", self.metadata).stdout)
        self.block = int(self.xml.get("data_block_size", "0")) * SECTOR
        self.runs: dict[int, list[Run]] = {}
        for dev in self.xml.iter("device"):
            runs = []
            for m in dev:
                t = int(m.get("time", "0"))
                if m.tag == "single_mapping":
                    runs.append(
                        Run(int(m.get("origin_block", "")), int(m.get("data_block", "")), 1, t)
                    )
                else:
                    runs.append(
                        Run(
                            int(m.get("origin_begin", "")),
                            int(m.get("data_begin", "")),
                            int(m.get("length", "")),
                            t,
                        )
                    )
            self.runs[int(dev.get("dev_id", ""))] = runs

    def data_block(self, dev_id: int, vblock: int) -> int | None:
        for r in self.runs[dev_id]:
            if r.vbegin <= vblock < r.vbegin + r.length:
                return r.dbegin + vblock - r.vbegin
        return None

    def data_offset(self, dev_id: int, offset: int) -> int:
        """Where byte ``offset`` of device ``dev_id`` lies in the data file."""
        vblock, within = divmod(offset, self.block)
        data = self.data_block(dev_id, vblock)
        assert data is not None, f"device {dev_id}: block {vblock} is not mapped"
        return data * self.block + within

    def remap(self, dev_id: int, vblock: int, data: int | None) -> None:
        """Point virtual block ``vblock`` of the device at data block ``data`` (None: unmap)."""
        out: list[Run] = []
        for r in self.runs[dev_id]:
            if not r.vbegin <= vblock < r.vbegin + r.length:
                out.append(r)
                continue
            head = vblock - r.vbegin
            if head:
                out.append(Run(r.vbegin, r.dbegin, head, r.time))
            if r.length - head - 1:
                out.append(Run(vblock + 1, r.dbegin + head + 1, r.length - head - 1, r.time))
        if data is not None:
            out.append(Run(vblock, data, 1, int(self.xml.get("time", "0"))))
        self.runs[dev_id] = sorted(out, key=lambda r: r.vbegin)

    def free_data_block(self) -> int:
        used = {r.dbegin + i for runs in self.runs.values() for r in runs for i in range(r.length)}
        return max(used) + 1

    def save(self, scratch: Path) -> None:
        """Write the runs back with ``thin_restore`` (counts recomputed), checked by
        ``thin_check``."""
        for dev in self.xml.iter("device"):
            runs = self.runs[int(dev.get("dev_id", ""))]
            for child in list(dev):
                dev.remove(child)
            for r in runs:
                if r.length == 1:
                    attrs = {"origin_block": r.vbegin, "data_block": r.dbegin, "time": r.time}
                    ET.SubElement(dev, "single_mapping", {k: str(v) for k, v in attrs.items()})
                else:
                    attrs = {
                        "origin_begin": r.vbegin,
                        "data_begin": r.dbegin,
                        "length": r.length,
                        "time": r.time,
                    }
                    ET.SubElement(dev, "range_mapping", {k: str(v) for k, v in attrs.items()})
            dev.set("mapped_blocks", str(sum(r.length for r in runs)))
        xml = scratch / "pool.xml"
        xml.write_bytes(ET.tostring(self.xml))
        run("thin_restore", "-i", xml, "-o", self.metadata)
        run("thin_check", self.metadata)


def extract_device(root: Path, dev_id: int, image: Path) -> Path:
    """The device as a sparse image, cut out by ``docker-forensics thin extract``."""
    from conftest import run_cli

    result = run_cli(
        "thin", "extract", root / POOL / "metadata", root / POOL / "data", "--dev", dev_id,
        "-o", image,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    return image


def write_device(pool: PoolXml, dev_id: int, before: Path, after: Path, scratch: Path) -> None:
    """The 64 KiB blocks of ``after`` that differ from ``before`` (the device's image before a
    change) written into new data blocks of the pool, the device's mapping pointed at them."""
    with before.open("rb") as old, after.open("rb") as new, pool.data.open("r+b") as data:
        for vblock in _blocks_with_data(pool.block, before, after):
            old.seek(vblock * pool.block)
            new.seek(vblock * pool.block)
            was, now = old.read(pool.block), new.read(pool.block)
            if was == now:
                continue
            target = pool.free_data_block()
            data.seek(target * pool.block)
            data.write(now.ljust(pool.block, b"\0"))
            pool.remap(dev_id, vblock, target)
    pool.save(scratch)


def _blocks_with_data(block: int, *images: Path) -> list[int]:
    """The blocks where any of the sparse ``images`` holds data (elsewhere all read zeros)."""
    found: set[int] = set()
    for image in images:
        for start, end in data_extents(image):
            found.update(range(start // block, -(-end // block)))
    return sorted(found)


def debugfs_write(image: Path, *commands: str) -> None:
    """Run ``debugfs -w`` commands on the image (each must succeed)."""
    script = image.with_suffix(".cmds")
    script.write_text("\n".join(commands) + "\n")
    proc = subprocess.run(
        [sbin("debugfs") or "debugfs", "-w", "-f", str(script), str(image)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "debugfs:" in proc.stdout, proc.stderr
    bad = [line for line in proc.stderr.splitlines() if line and not line.startswith("debugfs ")]
    assert not bad, bad


def file_offsets_ext4(image: Path, path: str, blocks: range = range(1)) -> list[int]:
    """The byte offsets on the device of data blocks ``blocks`` of ``path`` (``debugfs
    bmap``, one run; 0 for a hole)."""
    block_size = int(
        next(
            line.split(":")[1]
            for line in run("dumpe2fs", "-h", image).stdout.splitlines()
            if line.startswith("Block size:")
        )
    )
    out = debugfs(image, [f"bmap {path} {n}" for n in blocks])
    return [int(out[f"bmap {path} {n}"][0]) * block_size for n in blocks]


def file_offset_xfs(image: Path, path: str) -> int:
    """The byte offset on the device of the first data block of ``path`` (``xfs_db``)."""
    out = run("xfs_db", "-r", "-c", f"path {path}", "-c", "bmap", image).stdout
    # "data offset 0 startblock 12345 (0/12345) count 8 flag 0"
    start = int(out.split("startblock ")[1].split()[0])
    conv = run("xfs_db", "-r", "-c", f"convert fsblock {start} byte", image).stdout
    return int(conv.split("(")[0].strip(), 0)


def pool_digest(root: Path) -> str:
    """A digest of the pool files' bytes: their sizes, and each region holding data (a hole
    reads as zeros: a write into one makes it data). Byte for byte, without reading 100 GiB of
    holes."""
    h = hashlib.sha256()
    for name in ("metadata", "data"):
        path = root / POOL / name
        st = path.stat()
        h.update(f"{name} {st.st_size} {st.st_mtime_ns}\n".encode())
        fd = os.open(path, os.O_RDONLY)
        try:
            for start, end in data_extents(path):
                h.update(f"{start}-{end}\n".encode())
                pos = start
                while pos < end:
                    chunk = os.pread(fd, min(1 << 20, end - pos), pos)
                    h.update(chunk)
                    pos += len(chunk)
        finally:
            os.close(fd)
    return h.hexdigest()
