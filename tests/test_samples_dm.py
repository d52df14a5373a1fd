"""The devicemapper samples judged by the real programs alone (not by this project's readers).

Shared by ``test_samples_dm_legacy.py`` and ``test_samples_dm_modern.py``: each thin device is
cut out of the pool's data file by the mappings Debian's ``thin_dump`` prints, its filesystem
is checked by ``e2fsck -fn`` / ``xfs_repair -n``, and its files are read with e2fsprogs'
``debugfs`` or xfsprogs' ``xfs_db`` to be held against the truth file. Also here: the
generators' own TarSum against moby's published vectors.
"""

from __future__ import annotations

import calendar
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import SAMPLES
from sparse_files import data_extents

BLOCK_SECTORS_TO_BYTES = 512
NS = 1_000_000_000


def sbin(name: str) -> str | None:
    """e2fsprogs, xfsprogs and thin-provisioning-tools live in sbin, which a non-root PATH
    may lack."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))


def needs(*names: str) -> pytest.MarkDecorator:
    missing = [n for n in names if sbin(n) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")


def run(*args: str | os.PathLike[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    tool = sbin(str(args[0])) or str(args[0])
    proc = subprocess.run(
        [tool, *map(str, args[1:])], capture_output=True, text=True, errors="surrogateescape"
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args[0]} exit {proc.returncode}: {proc.stdout}{proc.stderr}")
    return proc


# --- the pool --------------------------------------------------------------------------------


def pool_mappings(metadata: Path) -> tuple[int, dict[int, list[list[int]]]]:
    """``thin_dump``'s data block size (bytes) and each device's runs ``[vbegin, dbegin, n,
    time]``."""
    root = ET.fromstring(run("thin_dump", metadata).stdout)
    block = int(root.get("data_block_size", "")) * BLOCK_SECTORS_TO_BYTES
    devices: dict[int, list[list[int]]] = {}
    for dev in root.iter("device"):
        runs = []
        for m in dev:
            t = int(m.get("time", ""))
            if m.tag == "single_mapping":
                runs.append([int(m.get("origin_block", "")), int(m.get("data_block", "")), 1, t])
            else:
                runs.append(
                    [int(m.get(k, "")) for k in ("origin_begin", "data_begin", "length")] + [t]
                )
        devices[int(dev.get("dev_id", ""))] = runs
    return block, devices


def extract(data: Path, runs: list[list[int]], block: int, size: int, image: Path) -> None:
    """The device as a sparse raw image: each mapped block's bytes from the data file, read
    only where the data file holds data (its holes are zeros either way)."""
    extents = data_extents(data)
    with data.open("rb") as src, image.open("wb") as dst:
        dst.truncate(size)
        for vbegin, dbegin, length, _ in runs:
            lo, hi = dbegin * block, (dbegin + length) * block
            for start, end in extents:
                a, b = max(lo, start), min(hi, end)
                if a >= b:
                    continue
                src.seek(a)
                dst.seek(vbegin * block + (a - lo))
                dst.write(src.read(b - a))


# --- ext4 through debugfs --------------------------------------------------------------------

_TIME = re.compile(r"^\s*(\w+): 0x([0-9a-f]+)(?::([0-9a-f]+))? --")
_LS = re.compile(r"^/(\d+)/(\d+)/(\d+)/(\d+)/(.*)/(\d*)/$")


def debugfs(image: Path, commands: list[str]) -> dict[str, list[str]]:
    """Run ``commands`` in one read-only debugfs; each command's output lines."""
    script = image.with_suffix(".cmds")
    script.write_text("\n".join(commands) + "\n")
    out = run("debugfs", "-f", script, image).stdout
    script.unlink()
    result: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("debugfs: "):
            current = line[len("debugfs: ") :]
            result[current] = []
        elif current is not None:
            result[current].append(line)
    return result


def ext4_walk(image: Path, top: str) -> dict[str, dict[str, Any]]:
    """Every name below ``top`` (``""``: ``top`` itself) with ``ls -p``'s inode and mode."""
    found: dict[str, dict[str, Any]] = {}
    level = [""]
    while level:
        cmds = {f"ls -p {'/' + '/'.join(p for p in (top, d) if p) or '/'}": d for d in level}
        out = debugfs(image, list(cmds))
        level = []
        for cmd, lines in out.items():
            parent = cmds[cmd]
            for line in lines:
                m = _LS.match(line)
                if not m:
                    continue
                ino, mode, name = int(m[1]), int(m[2], 8), m[5]
                if name in ("..", "") or ino == 0:
                    continue
                path = parent if name == "." else f"{parent}/{name}" if parent else name
                if name == "." and path in found:
                    continue
                found[path] = {"ino": ino, "st_mode": mode}
                if name != "." and mode & 0o170000 == 0o040000:
                    level.append(path)
    return found


def _xattr_value(text: str) -> bytes:
    text = text.strip()
    if text.startswith('"'):
        return text[1:-1].encode().decode("unicode_escape").encode("latin-1")
    return bytes.fromhex(text.replace(" ", ""))


def parse_stat(lines: list[str]) -> dict[str, Any]:
    rec: dict[str, Any] = {}
    in_xattrs = False
    for line in lines:
        if m := re.match(r"Inode: (\d+)\s+Type: ([\w ]+?)\s+Mode:\s+(\d+)", line):
            rec["ino"], rec["type_name"], rec["perm"] = int(m[1]), m[2], int(m[3], 8)
        elif m := re.match(r"User:\s+(\d+)\s+Group:\s+(\d+).*Size: (\d+)", line):
            rec["uid"], rec["gid"], rec["size"] = int(m[1]), int(m[2]), int(m[3])
        elif m := re.match(r"Links: (\d+)", line):
            rec["nlink"] = int(m[1])
        elif m := _TIME.match(line):
            sec = int(m[2], 16)
            extra = int(m[3] or "0", 16)
            rec[m[1]] = sec + ((extra & 3) << 32)
            rec[f"{m[1]}_ns"] = extra >> 2
        elif m := re.match(r'Fast link dest: "(.*)"$', line):
            rec["target"] = m[1]
        elif m := re.match(r"Device major/minor number: (\d+):(\d+)", line):
            rec["rdev"] = [int(m[1]), int(m[2])]
        elif line.startswith("Extended attributes:"):
            in_xattrs = True
            rec["xattrs"] = {}
        elif in_xattrs and (m := re.match(r"\s+(\S+) \((\d+)\) = (.*)$", line)):
            rec["xattrs"][m[1]] = _xattr_value(m[3]).hex()
        elif in_xattrs and not line.startswith(" "):
            in_xattrs = False
    return rec


EXT4_TYPES = {
    "regular": "file",
    "directory": "dir",
    "symlink": "symlink",
    "character special": "char",
    "block special": "block",
    "FIFO": "fifo",
}


def ext4_tree(image: Path, top: str, scratch: Path) -> dict[str, dict[str, Any]]:
    """Every file below ``top`` as debugfs reads it, in the truth's record shape."""
    names = ext4_walk(image, top)
    disk = {p: "/" + "/".join(x for x in (top, p) if x) for p in names}
    stats = debugfs(image, [f"stat {disk[p] or '/'}" for p in names])
    dump = scratch / "rdump"
    if dump.exists():
        shutil.rmtree(dump)
    dump.mkdir()
    run("debugfs", "-R", f"rdump {'/' + top if top else '/'} {dump}", image)
    base = dump / (top.rsplit("/", 1)[-1] if top else "")
    out: dict[str, dict[str, Any]] = {}
    for path in names:
        st = parse_stat(stats[f"stat {disk[path] or '/'}"])
        kind = EXT4_TYPES[st["type_name"]]
        rec: dict[str, Any] = {
            "type": kind,
            "mode": f"{names[path]['st_mode']:o}",
            "uid": st["uid"],
            "gid": st["gid"],
            "nlink": st["nlink"],
        }
        if kind != "dir":
            rec["size"] = st["size"]
        if kind == "file":
            rec["sha256"] = hashlib.sha256((base / path).read_bytes()).hexdigest()
        if kind == "symlink":
            rec["target"] = st.get("target") or os.readlink(base / path)
        if kind in ("char", "block"):
            rec["rdev"] = st["rdev"]
        if st.get("xattrs"):
            rec["xattrs"] = dict(sorted(st["xattrs"].items()))
        for name in ("mtime", "atime", "ctime", "crtime"):
            rec[name], rec[f"{name}_ns"] = st[name], st[f"{name}_ns"]
        out[path] = rec
    return out


def lsdel(image: Path) -> list[int]:
    """Inode numbers of deleted inodes that still own blocks (debugfs ``lsdel``)."""
    lines = run("debugfs", "-R", "lsdel", image).stdout.splitlines()
    return [int(m[1]) for line in lines if (m := re.match(r"\s*(\d+)\s+\d+\s+\d+", line))]


# --- xfs through xfs_db -----------------------------------------------------------------------

_XFS_LS = re.compile(r"^\s*\d+\s+(\d+)\s+(\S+)\s+\S+\s+\d+\s+(.+) \((?:good|bad)\)$")
_XFS_KINDS = {
    "directory": "dir",
    "regular": "file",
    "symlink": "symlink",
    "chardev": "char",
    "blkdev": "block",
    "fifo": "fifo",
}
_XFS_NAMESPACES = {0: "user.", 2: "trusted.", 4: "security."}


def xfs_db(image: Path, commands: list[str]) -> str:
    args = ["xfs_db", "-r"]
    for cmd in commands:
        args += ["-c", cmd]
    tool = sbin("xfs_db") or "xfs_db"
    proc = subprocess.run(
        [tool, *args[1:], str(image)],
        capture_output=True,
        text=True,
        errors="surrogateescape",
        env={**os.environ, "TZ": "UTC"},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def xfs_walk(image: Path) -> dict[str, int]:
    """Every path of the filesystem (``""`` the root) with its inode number (``xfs_db ls``)."""
    found: dict[str, int] = {}
    level = [""]
    while level:
        out = xfs_db(image, [f"ls /{d}" for d in level])
        level = []
        current = ""
        for line in out.splitlines():
            if line.startswith("/") and line.endswith(":"):
                current = line[1:-1]
                continue
            m = _XFS_LS.match(line)
            if not m or m[3] == "..":
                continue
            path = current if m[3] == "." else f"{current}/{m[3]}" if current else m[3]
            found[path] = int(m[1])
            if m[3] != "." and m[2] == "directory":
                level.append(path)
    return found


def _xfs_time(text: str) -> int:
    return calendar.timegm(time.strptime(text.strip(), "%a %b %d %H:%M:%S %Y"))


def _xfs_fields(block: str) -> dict[str, str]:
    return dict(
        (k.strip(), v.strip()) for k, _, v in (line.partition(" = ") for line in block.splitlines())
    )


def xfs_tree(image: Path, scratch: Path) -> dict[str, dict[str, Any]]:
    """Every file of the filesystem as xfs_db reads it, in the truth's record shape: the core
    fields as xfs_db prints them (its CRC check must say ``correct``), the data through the
    block map, a short-form attribute's value from the inode's own bytes."""
    sb = _xfs_fields(xfs_db(image, ["sb 0", "print blocksize agblocks"]))
    block, agblocks = int(sb["blocksize"]), int(sb["agblocks"])
    names = xfs_walk(image)
    cmds = []
    for ino in names.values():
        cmds += [f"echo @@ {ino}", f"inode {ino}", "print", "bmap", f"convert inode {ino} byte"]
    chunks = xfs_db(image, cmds).split("@@ ")[1:]
    by_ino = {int(c.split("\n", 1)[0]): c.split("\n", 1)[1] for c in chunks}
    out: dict[str, dict[str, Any]] = {}
    with image.open("rb") as fh:
        for path, ino in names.items():
            text = by_ino[ino]
            f = _xfs_fields(text)
            assert f["v3.crc"].endswith("(correct)"), (path, f["v3.crc"])
            mode = int(f["core.mode"], 8)
            kind = {0o04: "dir", 0o10: "file", 0o12: "symlink", 0o02: "char", 0o06: "block",
                    0o01: "fifo"}[mode >> 12]  # fmt: skip
            rec: dict[str, Any] = {
                "type": kind,
                "mode": f"{mode:o}",
                "uid": int(f["core.uid"]),
                "gid": int(f["core.gid"]),
                "nlink": int(f["core.nlinkv2"]),
            }
            size = int(f["core.size"])
            if kind != "dir":
                rec["size"] = size
            if kind == "file":
                data = bytearray(size)
                for m in re.finditer(
                    r"data offset (\d+) startblock \d+ \((\d+)/(\d+)\) count (\d+) flag (\d)",
                    text,
                ):
                    off, agno, agbno, count, flag = (int(x) for x in m.groups())
                    if flag:
                        continue  # unwritten: zeros
                    fh.seek((agno * agblocks + agbno) * block)
                    chunk = fh.read(count * block)
                    data[off * block : off * block + len(chunk)] = chunk
                rec["sha256"] = hashlib.sha256(bytes(data[:size])).hexdigest()
            if kind == "symlink":
                rec["target"] = f["u3.symlink"][1:-1]
            if kind in ("char", "block"):
                dev = int(f["u3.dev"], 0) if "u3.dev" in f else int(f["u.dev"], 0)
                rec["rdev"] = [dev >> 18, dev & 0x3FFFF]
            where = int(re.search(r"\((\d+)\)\s*$", text.strip()).group(1))  # type: ignore[union-attr]
            xattrs = _xfs_shortform_attrs(fh, where, int(f["core.forkoff"]), f["core.aformat"])
            if xattrs:
                rec["xattrs"] = xattrs
            for name, key in (("mtime", "core.mtime"), ("atime", "core.atime"),
                              ("ctime", "core.ctime"), ("crtime", "v3.crtime")):  # fmt: skip
                rec[name], rec[f"{name}_ns"] = _xfs_time(f[f"{key}.sec"]), int(f[f"{key}.nsec"])
            out[path] = rec
    return out


def _xfs_shortform_attrs(fh: Any, offset: int, forkoff: int, aformat: str) -> dict[str, str]:
    if not forkoff or not aformat.startswith("1"):
        return {}
    fh.seek(offset + 176 + forkoff * 8)
    area = fh.read(512)
    count = area[2]
    pos, attrs = 4, {}
    for _ in range(count):
        namelen, valuelen, flags = area[pos], area[pos + 1], area[pos + 2]
        name = area[pos + 3 : pos + 3 + namelen].decode()
        value = area[pos + 3 + namelen : pos + 3 + namelen + valuelen]
        attrs[_XFS_NAMESPACES[flags & 6] + name] = value.hex()
        pos += 3 + namelen + valuelen
    return dict(sorted(attrs.items()))


# --- trees and Docker's naive diff ----------------------------------------------------------


def rootfs(tree: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {p.removeprefix("rootfs/"): rec for p, rec in tree.items() if p.startswith("rootfs/")}
    out[""] = tree["rootfs"]
    return out


def naive_diff(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> list[str]:
    """Docker's ChangesDirs over two listings (rootfs-relative paths): A, C, D, and each
    directory holding a change as C; ``docker diff``'s lines sorted by path."""
    kids: dict[str, dict[str, list[str]]] = {"old": defaultdict(list), "new": defaultdict(list)}
    for side, listing in (("old", old), ("new", new)):
        for path in listing:
            if path:
                kids[side][path.rpartition("/")[0]].append(path)

    def differs(a: dict[str, Any], b: dict[str, Any]) -> bool:
        keys = ("mode", "uid", "gid", "rdev")
        if any(a.get(k) != b.get(k) for k in keys):
            return True
        cap_a = a.get("xattrs", {}).get("security.capability")
        if cap_a != b.get("xattrs", {}).get("security.capability"):
            return True
        if b["type"] == "dir":
            return False
        same = a["mtime"] == b["mtime"] and (
            a["mtime_ns"] == b["mtime_ns"] or 0 in (a["mtime_ns"], b["mtime_ns"])
        )
        return not same or a["size"] != b["size"]

    out: list[tuple[str, str]] = []

    def walk(path: str, in_old: bool, reported: bool) -> None:
        start = len(out)
        gone = set(kids["old"][path]) if in_old else set()
        for child in sorted(kids["new"][path]):
            mine = False
            if child not in gone:
                out.append(("A", child))
                mine = True
            else:
                gone.discard(child)
                if differs(old[child], new[child]):
                    out.append(("C", child))
                    mine = True
            if new[child]["type"] == "dir":
                walk(child, child in old and old[child]["type"] == "dir", mine)
        out.extend(("D", g) for g in sorted(gone))
        if len(out) > start and path and not reported:
            out.insert(start, ("C", path))

    walk("", True, True)
    return [f"{k} /{p}" for k, p in sorted(out, key=lambda c: c[1])]


# --- TarSum of the generators against moby's published vectors ------------------------------


@pytest.fixture(scope="module")
def dmsample() -> Iterator[ModuleType]:
    sys.path.insert(0, str(SAMPLES))
    import dmsample as module

    yield module


def test_generator_tarsum_reproduces_mobys_version0_vectors(dmsample: ModuleType) -> None:
    """The generators' TarSum against the sums moby's Go TarSum published (version 0, which
    the legacy sample's checksum files use), on tars written by Python's tarfile."""
    from test_tarsum import ITERATION, SIZED, info, make_tar

    version0 = [case for case in ITERATION if case[0] == 0]
    assert len(version0) == 2
    for _, header, xattrs, data, first, _ in version0:
        tar = make_tar([(info(pax_headers=dict(xattrs), **header), data)])
        assert dmsample.tarsum(dmsample.read_tar(tar), None) == f"tarsum+sha256:{first}"
    member = info("/testdata0", mode=0o755, type=tarfile.AREGTYPE)  # Typeflag left unset
    tar = make_tar([(member, bytes(1024 * 1024))], tarfile.USTAR_FORMAT)
    assert dmsample.tarsum(dmsample.read_tar(tar), None) == f"tarsum+sha256:{SIZED['sha256']}"


def test_generator_crcs(dmsample: ModuleType) -> None:
    derp = bytes([2, 116, 164, 177, 171, 236, 107, 78])
    assert dmsample.crc64_iso(b"imma hurr til I derp") == derp
    assert dmsample.crc32c(b"123456789") == 0xE3069283
