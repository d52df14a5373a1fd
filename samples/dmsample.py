"""Shared parts of the devicemapper sample generators (``make-*-devicemapper-sample.py``).

A root-filesystem model (:class:`Tree`: paths to :class:`Inode`, hardlinks sharing one inode)
that both the device builders and the truth files are made from; Docker's naive diff over two
such trees (``docker diff`` of a devicemapper container, and the changes a layer tar holds); the
tar side (a reader with Go's ``archive/tar`` semantics, TarSum, tar-split); ext4 devices changed
with ``debugfs -w`` and xfs devices made with ``mkfs.xfs -p``; and the thin pool: each device's
64 KiB blocks held against its origin's, the XML for Debian's ``thin_restore`` and the sparse
``data`` file. Nothing here needs a kernel, a mount or a loop device.

Python 3.11 standard library only; the programs are e2fsprogs, xfsprogs, thin-provisioning-tools
(and strace, which records what mkfs wrote to a fresh device).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECTOR = 512
BLOCK_BYTES = 65536  # Docker's dm.blocksize default: 128 sectors
BLOCK_SECTORS = BLOCK_BYTES // SECTOR
NS = 1_000_000_000
PAGE = 4096  # the data file is written page by page, zero pages left as holes

TYPE_BITS = {
    "fifo": 0o010000,
    "char": 0o020000,
    "dir": 0o040000,
    "block": 0o060000,
    "file": 0o100000,
    "symlink": 0o120000,
}
KIND_OF_BITS = {bits: kind for kind, bits in TYPE_BITS.items()}


# --- small helpers -------------------------------------------------------------------------


def gojson(obj: Any) -> str:
    """encoding/json.Marshal: compact, keys in the given order, HTML-safe escapes."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def tool(name: str, package: str) -> str:
    """A program from PATH or an sbin directory (a non-root PATH may lack them)."""
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/sbin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    sys.exit(f"{name} not found: apt-get install -y {package}")


def run(
    args: list[str], *, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(
        args, input=stdin, capture_output=True, env={**os.environ, **(env or {})}, check=False
    )
    if proc.returncode != 0:
        sys.exit(
            f"{' '.join(args)} failed ({proc.returncode}):\n"
            + proc.stdout.decode(errors="replace")
            + proc.stderr.decode(errors="replace")
        )
    return proc


def sha256hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _crc_table(poly: int) -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC64 = _crc_table(0xD800000000000000)
_CRC32C = _crc_table(0x82F63B78)


def crc64_iso(data: bytes) -> bytes:
    """Go hash/crc64 with the ISO table, Sum(nil): 8 bytes big-endian (tar-split's payload)."""
    crc = 0xFFFFFFFFFFFFFFFF
    for b in data:
        crc = _CRC64[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return (crc ^ 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as xfs stores it in an inode (little-endian, inverted)."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc64_iso(b"123456789").hex() == "b90956c775a41001"
assert crc32c(b"123456789") == 0xE3069283


def split_ns(t: int) -> tuple[int, int]:
    return t // NS, t % NS


# --- the filesystem model ------------------------------------------------------------------


@dataclass(eq=False)
class Inode:
    """One inode of a modelled filesystem. Times are nanoseconds since the epoch."""

    kind: str  # dir, file, symlink, char, block, fifo
    mode: int  # permission bits with setuid/setgid/sticky (07777)
    uid: int = 0
    gid: int = 0
    data: bytes = b""
    target: str = ""
    rdev: tuple[int, int] = (0, 0)
    xattrs: dict[str, bytes] = field(default_factory=dict)
    mtime: int = 0
    atime: int = 0
    ctime: int = 0
    crtime: int = 0
    ino: int = 0  # the model's identity (hardlinks share it); not the filesystem's number

    @property
    def st_mode(self) -> int:
        return TYPE_BITS[self.kind] | self.mode

    @property
    def size(self) -> int:
        if self.kind == "file":
            return len(self.data)
        if self.kind == "symlink":
            return len(self.target.encode())
        return 0

    def copy(self) -> Inode:
        return Inode(**{**self.__dict__, "xattrs": dict(self.xattrs)})


class Tree:
    """A root filesystem: ``"a/b"``-style paths (``""`` is the root) to inodes.

    The mutating methods behave as the kernel does for the parent directory: adding or
    removing a name sets the parent's mtime and ctime to ``t``.
    """

    def __init__(self, root: Inode) -> None:
        self._next = 1
        self.paths: dict[str, Inode] = {}
        self._adopt(root)
        self.paths[""] = root

    def _adopt(self, inode: Inode) -> Inode:
        if not inode.ino:
            inode.ino = self._next
        self._next = max(self._next, inode.ino + 1)
        return inode

    def clone(self) -> Tree:
        """A snapshot: equal inodes (same ``ino``) in new objects, hardlinks still shared."""
        copies: dict[int, Inode] = {}
        new = Tree.__new__(Tree)
        new._next = self._next
        new.paths = {}
        for path, inode in self.paths.items():
            if inode.ino not in copies:
                copies[inode.ino] = inode.copy()
            new.paths[path] = copies[inode.ino]
        return new

    # -- reading ----------------------------------------------------------------------------

    def __contains__(self, path: str) -> bool:
        return path in self.paths

    def __getitem__(self, path: str) -> Inode:
        return self.paths[path]

    def children(self, path: str) -> list[str]:
        prefix = f"{path}/" if path else ""
        return sorted(
            p for p in self.paths if p and p.startswith(prefix) and "/" not in p[len(prefix) :]
        )

    def below(self, path: str) -> list[str]:
        prefix = f"{path}/" if path else ""
        return sorted(p for p in self.paths if p and p.startswith(prefix))

    def nlink(self, path: str) -> int:
        inode = self.paths[path]
        if inode.kind == "dir":
            return 2 + sum(1 for c in self.children(path) if self.paths[c].kind == "dir")
        return sum(1 for i in self.paths.values() if i is inode)

    # -- changing ---------------------------------------------------------------------------

    def touch_parent(self, path: str, t: int) -> None:
        parent = self.paths[parent_of(path)]
        parent.mtime = parent.ctime = t

    def add(self, path: str, inode: Inode, t: int) -> Inode:
        """A new name for a new inode (all four times ``t`` unless already set)."""
        assert path not in self.paths and parent_of(path) in self.paths, path
        assert self.paths[parent_of(path)].kind == "dir", path
        self._adopt(inode)
        for name in ("mtime", "atime", "ctime", "crtime"):
            if not getattr(inode, name):
                setattr(inode, name, t)
        self.paths[path] = inode
        self.touch_parent(path, t)
        return inode

    def link(self, path: str, existing: str, t: int) -> None:
        inode = self.paths[existing]
        assert inode.kind != "dir" and path not in self.paths
        self.paths[path] = inode
        inode.ctime = t
        self.touch_parent(path, t)

    def remove(self, path: str, t: int) -> None:
        """``rm -rf``: the name and everything below it."""
        for p in [*self.below(path), path]:
            del self.paths[p]
        self.touch_parent(path, t)


def subtree(tree: Tree, top: str) -> Tree:
    """The tree below ``top`` as a tree of its own (same inode objects)."""
    out = Tree.__new__(Tree)
    out._next = tree._next
    prefix = f"{top}/" if top else ""
    out.paths = {"": tree[top]}
    for path in tree.below(top):
        out.paths[path[len(prefix) :]] = tree[path]
    return out


def parent_of(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def base_of(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def clean_path(name: str) -> str:
    """A tar member name as a tree path: no leading ``./`` or ``/``, no trailing ``/``."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    assert ".." not in parts, name
    return "/".join(parts)


# --- Docker's naive diff (pkg/archive ChangesDirs) -----------------------------------------


def _stat_differs(old: Inode, new: Inode) -> bool:
    if (old.st_mode, old.uid, old.gid, old.rdev) != (new.st_mode, new.uid, new.gid, new.rdev):
        return True
    if new.kind == "dir":
        return False  # "Don't look at size for dirs, its not a good measure of change"
    os_, ons = split_ns(old.mtime)
    ns_, nns = split_ns(new.mtime)
    same_time = os_ == ns_ and (ons == nns or ons == 0 or nns == 0)
    return not same_time or old.size != new.size


def naive_changes(old: Tree, new: Tree) -> list[tuple[str, str]]:
    """``(kind, "/path")`` as Docker's ChangesDirs(new, old) lists them: A, C, D, and each
    directory holding a change as C before it (the root excepted), in walk order."""
    out: list[tuple[str, str]] = []

    def walk(path: str, old_exists: bool, reported: bool) -> None:
        start = len(out)
        old_children = set(old.children(path)) if old_exists else set()
        for child in new.children(path):
            child_reported = False
            in_old = child in old_children and old_exists
            if not in_old:
                out.append(("A", "/" + child))
                child_reported = True
            else:
                a, b = old[child], new[child]
                if _stat_differs(a, b) or a.xattrs.get("security.capability") != b.xattrs.get(
                    "security.capability"
                ):
                    out.append(("C", "/" + child))
                    child_reported = True
                old_children.discard(child)
            if new[child].kind == "dir":
                walk(child, in_old and old[child].kind == "dir", child_reported)
        for gone in sorted(old_children):
            out.append(("D", "/" + gone))
        if len(out) > start and path and not reported and new[path].kind == "dir":
            out.insert(start, ("C", "/" + path))

    walk("", True, True)
    return out


def diff_lines(changes: Iterable[tuple[str, str]]) -> list[str]:
    """``docker diff``'s lines, sorted by path."""
    return [f"{k} {p}" for k, p in sorted(changes, key=lambda c: c[1])]


# --- listings for the truth files ----------------------------------------------------------


def record(tree: Tree, path: str) -> dict[str, Any]:
    """What a reader of the device must find at ``path`` (times as seconds + nanoseconds)."""
    inode = tree[path]
    rec: dict[str, Any] = {
        "type": inode.kind,
        "mode": f"{inode.st_mode:o}",
        "uid": inode.uid,
        "gid": inode.gid,
        "nlink": tree.nlink(path),
    }
    if inode.kind != "dir":
        rec["size"] = inode.size
    if inode.kind == "file":
        rec["sha256"] = sha256hex(inode.data)
    if inode.kind == "symlink":
        rec["target"] = inode.target
    if inode.kind in ("char", "block"):
        rec["rdev"] = list(inode.rdev)
    if inode.xattrs:
        rec["xattrs"] = {k: v.hex() for k, v in sorted(inode.xattrs.items())}
    for name in ("mtime", "atime", "ctime", "crtime"):
        sec, nsec = split_ns(getattr(inode, name))
        rec[name] = sec
        rec[f"{name}_ns"] = nsec
    return rec


def listing(tree: Tree, top: str) -> dict[str, dict[str, Any]]:
    """Every path below ``top`` (relative to it) with its :func:`record`; ``""`` is ``top``."""
    prefix = f"{top}/" if top else ""
    out = {"": record(tree, top)}
    for path in tree.below(top):
        out[path[len(prefix) :]] = record(tree, path)
    return out


# --- tar: Go archive/tar's reading, TarSum, tar-split --------------------------------------


@dataclass
class Member:
    """A tar member as Go's archive/tar.Reader presents it (PAX and GNU long names applied)."""

    name: str
    typeflag: bytes
    mode: int  # the header's number (type bits included when the writer put them there)
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime: int = 0  # seconds
    linkname: str = ""
    uname: str = ""
    gname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)
    data: bytes = b""

    @property
    def path(self) -> str:
        return clean_path(self.name)

    @property
    def kind(self) -> str:
        return {
            b"0": "file",
            b"\0": "file",
            b"7": "file",
            b"1": "hardlink",
            b"2": "symlink",
            b"3": "char",
            b"4": "block",
            b"5": "dir",
            b"6": "fifo",
        }[self.typeflag]


def _cstr(field_bytes: bytes) -> bytes:
    return field_bytes.split(b"\0", 1)[0]


def _number(field_bytes: bytes) -> int:
    if field_bytes[0] & 0x80:  # GNU base-256
        return int.from_bytes(bytes([field_bytes[0] & 0x7F]) + field_bytes[1:], "big")
    text = _cstr(field_bytes).strip(b" \0")
    return int(text, 8) if text else 0


def _pax_records(data: bytes) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        records[key.decode()] = value
        pos += length
    return records


def read_tar(tar: bytes) -> list[Member]:
    """The members of ``tar`` as Go's reader gives them: ustar prefix joined, PAX ``path``,
    ``linkpath``, ``uid``, ``gid``, ``size``, ``mtime`` and ``SCHILY.xattr.*`` applied, GNU
    ``L``/``K`` names applied, device numbers only for device entries."""
    members: list[Member] = []
    pos = 0
    pax: dict[str, bytes] = {}
    long_name: str | None = None
    long_link: str | None = None
    while pos + 512 <= len(tar):
        block = tar[pos : pos + 512]
        pos += 512
        if block == bytes(512):
            break
        size = _number(block[124:136])
        typeflag = block[156:157]
        data = tar[pos : pos + size]
        pos += size + (-size) % 512
        if typeflag in (b"x", b"g"):
            if typeflag == b"x":
                pax = _pax_records(data)
            continue
        if typeflag == b"L":
            long_name = _cstr(data).decode()
            continue
        if typeflag == b"K":
            long_link = _cstr(data).decode()
            continue
        name = _cstr(block[0:100]).decode()
        magic = block[257:265]
        if magic[:6] == b"ustar\0":
            prefix = _cstr(block[345:500]).decode()
            if prefix:
                name = f"{prefix}/{name}"
        m = Member(
            name=long_name or name,
            typeflag=typeflag,
            mode=_number(block[100:108]),
            uid=_number(block[108:116]),
            gid=_number(block[116:124]),
            size=size,
            mtime=_number(block[136:148]),
            linkname=long_link or _cstr(block[157:257]).decode(),
            uname=_cstr(block[265:297]).decode(),
            gname=_cstr(block[297:329]).decode(),
            data=data,
        )
        if typeflag in (b"3", b"4"):
            m.devmajor, m.devminor = _number(block[329:337]), _number(block[337:345])
        for key, value in pax.items():
            if key == "path":
                m.name = value.decode()
            elif key == "linkpath":
                m.linkname = value.decode()
            elif key in ("uid", "gid", "size"):
                setattr(m, key, int(value))
            elif key == "mtime":
                m.mtime = int(float(value))
            elif key.startswith("SCHILY.xattr."):
                m.xattrs[key.removeprefix("SCHILY.xattr.")] = value
        members.append(m)
        pax, long_name, long_link = {}, None, None
    return members


def tarsum(members: list[Member], payload: bytes | None, version: int = 0) -> str:
    """moby's pkg/tarsum (Docker 1.x): per member sha256 over ``key + value`` of the header
    fields (mtime in version 0 only; xattrs sorted by key from version 1) and the data; the
    sorted hex digests after ``payload`` into one sha256. ``tarsum+sha256:<hex>``."""
    sums = []
    for m in members:
        fields = [
            ("name", m.name),
            ("mode", str(m.mode)),
            ("uid", str(m.uid)),
            ("gid", str(m.gid)),
            ("size", str(m.size)),
        ]
        if version == 0:
            fields.append(("mtime", str(m.mtime)))
        fields += [
            ("typeflag", m.typeflag.decode("latin-1")),
            ("linkname", m.linkname),
            ("uname", m.uname),
            ("gname", m.gname),
            ("devmajor", str(m.devmajor)),
            ("devminor", str(m.devminor)),
        ]
        h = hashlib.sha256()
        for key, value in fields:
            h.update(key.encode() + value.encode("utf-8", "surrogateescape"))
        if version:
            for key in sorted(m.xattrs):
                h.update(key.encode() + m.xattrs[key])
        h.update(m.data)
        sums.append(h.hexdigest())
    final = hashlib.sha256()
    if payload is not None:
        final.update(payload)
    for s in sorted(sums):
        final.update(s.encode())
    label = {0: "tarsum", 1: "tarsum.v1", 2: "tarsum.dev"}[version]
    return f"{label}+sha256:{final.hexdigest()}"


def tar_split_entries(tar: bytes) -> list[dict[str, Any]]:
    """The entries tar-split's NewInputTarStream packs for ``tar``: raw header segments (with
    the previous member's padding in front), one file entry per header with the crc64 of its
    data (None for size 0), the end-of-archive blocks, then the remainder (always written)."""
    entries: list[dict[str, Any]] = []
    raw = bytearray()
    pos = 0
    pax_path: str | None = None
    long_name: str | None = None
    while True:
        block = tar[pos : pos + 512]
        raw += block
        pos += 512
        if block == bytes(512):
            raw += tar[pos : pos + 512]
            pos += 512
            entries.append({"type": 2, "payload": bytes(raw)})
            break
        size = _number(block[124:136])
        typeflag = block[156:157]
        if typeflag in (b"x", b"g", b"L", b"K"):
            padded = size + (-size) % 512
            data = tar[pos : pos + size]
            raw += tar[pos : pos + padded]
            pos += padded
            if typeflag == b"L":
                long_name = _cstr(data).decode()
            elif typeflag == b"x":
                path = _pax_records(data).get("path")
                pax_path = path.decode() if path is not None else None
            continue
        name = _cstr(block[0:100]).decode()
        prefix = _cstr(block[345:500]).decode()
        if block[257:263] == b"ustar\0" and prefix:
            name = f"{prefix}/{name}"
        name = pax_path or long_name or name
        pax_path = long_name = None
        entries.append({"type": 2, "payload": bytes(raw)})
        raw = bytearray()
        data = tar[pos : pos + size]
        pos += size
        entries.append(
            {"type": 1, "name": name, "size": size, "payload": crc64_iso(data) if size else None}
        )
        pad = (-size) % 512
        raw += tar[pos : pos + pad]
        pos += pad
    entries.append({"type": 2, "payload": tar[pos:]})
    return entries


def tar_split_stream(entries: list[dict[str, Any]], *, legacy_keys: bool) -> bytes:
    """JSON lines as tar-split writes them. ``legacy_keys``: v0.9.4's struct-tag bug (Docker
    1.8.0–1.8.2) gives every entry ``name`` and ``size``."""
    lines = []
    for i, e in enumerate(entries):
        p = e["payload"]
        obj: dict[str, Any] = {"type": e["type"]}
        if legacy_keys or e.get("name"):
            obj["name"] = e.get("name", "")
        if legacy_keys or e.get("size"):
            obj["size"] = e.get("size", 0)
        obj["payload"] = None if p is None else base64.b64encode(p).decode()
        obj["position"] = i
        lines.append(gojson(obj) + "\n")
    return "".join(lines).encode()


def reassemble(entries: list[dict[str, Any]], read: Callable[[str], bytes]) -> bytes:
    """The tar again from tar-split entries and ``read(name)`` for each file's data."""
    out = bytearray()
    for e in entries:
        if e["type"] == 2:
            out += e["payload"]
        elif e.get("size"):
            data = read(e["name"])
            assert crc64_iso(data) == e["payload"], e["name"]
            out += data
    return bytes(out)


# --- which 64 KiB blocks a program wrote (strace) ------------------------------------------

_WRITE = re.compile(r"pwrite64\((\d+), .*, (\d+), (\d+)\) = (\d+)")
_FALLOC = re.compile(r"fallocate\((\d+), ([A-Z_|0-9]+), (\d+), (\d+)\) = 0")


def traced_writes(args: list[str], image: Path, env: dict[str, str], log: Path) -> set[int]:
    """Run ``args`` under strace and return the 64 KiB blocks of ``image`` it wrote to, zeros
    included (fallocate ZERO_RANGE is how e2fsprogs and xfsprogs write zeros to a file; on a
    thin device the same call writes zeros and provisions the blocks). Hole punching is a
    discard: not a write."""
    strace = tool("strace", "strace")
    trace = "trace=openat,close,pwrite64,fallocate,write"
    run([strace, "-f", "-qq", "-e", trace, "-o", str(log), *args], env=env)
    fds: set[str] = set()
    blocks: set[int] = set()
    for line in log.read_text().splitlines():
        line = re.sub(r"^\d+ +", "", line)
        if line.startswith("openat(") and f'"{image}"' in line:
            fd = line.rsplit("= ", 1)[-1]
            if fd.isdigit():
                fds.add(fd)
            continue
        if line.startswith("close("):
            fds.discard(line[6:].split(")", 1)[0])
            continue
        m = _WRITE.match(line)
        if m and m[1] in fds:
            start, length = int(m[3]), int(m[4])
        else:
            f = _FALLOC.match(line)
            if not (f and f[1] in fds):
                if line.startswith("write(") and line[6:].split(",", 1)[0] in fds:
                    sys.exit(f"unexpected sequential write to {image}: {line[:80]}")
                continue
            if "PUNCH_HOLE" in f[2]:
                continue
            start, length = int(f[3]), int(f[4])
        if length:
            blocks.update(range(start // BLOCK_BYTES, (start + length - 1) // BLOCK_BYTES + 1))
    log.unlink()
    return blocks


# --- ext4 through debugfs ------------------------------------------------------------------


def debugfs_time(t: int) -> str:
    return f"@{t // NS}"


def _q(path: str) -> str:
    assert not re.search(r'[\s"\\]', path), f"debugfs cannot take {path!r}"
    return path


class Ext4Script:
    """debugfs commands that turn the device holding the tree ``old`` into ``new``.

    Names are removed deepest first (``rm`` keeps a hardlinked inode until its last name),
    then created shallowest first (a hardlink to an inode already on disk by ``ln`` and a
    ``links_count``), then every new or changed inode gets its exact fields with ``sif``
    and ``ea_set``. Content is staged in ``stage`` (debugfs ``write`` copies a host file and
    leaves all-zero 4 KiB blocks as holes).
    """

    def __init__(self, stage: Path) -> None:
        self.stage = stage
        self.lines: list[str] = []

    def emit(self, line: str) -> None:
        self.lines.append(line)

    def _stage(self, data: bytes) -> Path:
        path = self.stage / sha256hex(data)
        if not path.exists():
            path.write_bytes(data)
        return path

    def transition(self, old: Tree, new: Tree) -> None:
        """Commands that make the device's whole tree ``old`` into ``new``: new inodes first (a
        name that is being replaced gets its new inode under a temporary name, renamed over it
        afterwards, as rename(2) does), then the names that go, deepest first, so a freed inode
        is not reused at once and stays recoverable."""
        gone = [p for p in old.paths if p and (p not in new.paths or new[p].ino != old[p].ino)]
        on_device = {old[p].ino: p for p in old.paths if p not in gone}
        made: dict[int, str] = {}
        changed: dict[int, str] = {}
        renames: list[tuple[str, str]] = []
        for path in sorted(new.paths):
            inode = new[path]
            if path in old.paths and old[path].ino == inode.ino:
                if inode.ino not in changed and _inode_differs(old[path], inode, old, new, path):
                    changed[inode.ino] = path
                continue
            self.emit(f"cd /{_q(parent_of(path))}")
            name = _q(base_of(path))
            if path in old.paths:
                if inode.kind == "dir" or old[path].kind == "dir":
                    raise ValueError(f"{path}: a directory replaced (not modelled)")
                temp = f".dfx-new-{len(renames)}"
                renames.append((temp, path))
                name = temp
            existing = made.get(inode.ino) or on_device.get(inode.ino)
            if existing is not None:
                self.emit(f"ln /{_q(existing)} {name}")
                changed[inode.ino] = existing
                continue
            made[inode.ino] = changed[inode.ino] = path
            if inode.kind == "dir":
                self.emit(f"mkdir {name}")
            elif inode.kind == "file":
                self.emit(f"write {self._stage(inode.data)} {name}")
            elif inode.kind == "symlink":
                self.emit(f"symlink {name} {_q(inode.target)}")
            elif inode.kind == "fifo":
                self.emit(f"mknod {name} p")
            else:
                kind = "c" if inode.kind == "char" else "b"
                self.emit(f"mknod {name} {kind} {inode.rdev[0]} {inode.rdev[1]}")
        for path in sorted(gone, key=lambda p: (-p.count("/"), p)):
            self.emit(f"cd /{_q(parent_of(path))}")
            self.emit(f"{'rmdir' if old[path].kind == 'dir' else 'rm'} {_q(base_of(path))}")
        for temp, path in renames:
            self.emit(f"cd /{_q(parent_of(path))}")
            self.emit(f"ln {temp} {_q(base_of(path))}")
            self.emit(f"unlink {temp}")
        for path in sorted(changed.values()):
            same = path in old.paths and old[path].ino == new[path].ino
            self.set_fields(new, path, "/" + path, old[path] if same else None)

    def set_fields(self, tree: Tree, path: str, disk: str, before: Inode | None) -> None:
        inode = tree[path]
        target = _q(disk)
        self.emit(f"sif {target} mode 0{inode.st_mode:o}")
        self.emit(f"sif {target} uid {inode.uid}")
        self.emit(f"sif {target} gid {inode.gid}")
        if inode.kind != "dir":
            self.emit(f"sif {target} links_count {tree.nlink(path)}")
        for name in ("mtime", "atime", "ctime", "crtime"):
            sec, nsec = split_ns(getattr(inode, name))
            self.emit(f"sif {target} {name} @{sec}")
            self.emit(f"sif {target} {name}_extra {nsec << 2}")
        old_x = before.xattrs if before is not None else {}
        for key in sorted(set(old_x) - set(inode.xattrs)):
            self.emit(f"ea_rm {target} {key}")
        for key, value in sorted(inode.xattrs.items()):
            if old_x.get(key) != value:
                self.emit(f"ea_set -f {self._stage(value)} {target} {key}")

    def run(self, image: Path, now: int) -> None:
        script = self.stage / "debugfs.cmds"
        script.write_text("\n".join([f"set_current_time {debugfs_time(now)}", *self.lines]) + "\n")
        env = {"E2FSPROGS_FAKE_TIME": str(now // NS), "TZ": "UTC"}
        proc = run([tool("debugfs", "e2fsprogs"), "-w", "-f", str(script), str(image)], env=env)
        errors = [
            line
            for line in proc.stderr.decode(errors="replace").splitlines()
            if line.strip() and not line.startswith("debugfs ")
        ]
        if errors:
            sys.exit(f"debugfs on {image}:\n" + "\n".join(errors[:20]))
        self.lines = []


def _inode_differs(a: Inode, b: Inode, ta: Tree, tb: Tree, path: str) -> bool:
    keys = ("kind", "mode", "uid", "gid", "data", "target", "rdev", "xattrs")
    times = ("mtime", "atime", "ctime", "crtime")
    if any(getattr(a, k) != getattr(b, k) for k in keys + times):
        if a.data != b.data or a.kind != b.kind:
            raise ValueError(f"{path}: content changed in place (model it as a new inode)")
        return True
    return a.kind != "dir" and ta.nlink(path) != tb.nlink(path)


def e2fsck_clean(image: Path) -> str:
    proc = subprocess.run(
        [tool("e2fsck", "e2fsprogs"), "-fn", str(image)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        sys.exit(f"e2fsck -fn {image} exit {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc.stdout.strip().splitlines()[-1]


# --- xfs through mkfs.xfs -p ---------------------------------------------------------------


def _proto_mode(inode: Inode) -> str:
    kind = {"dir": "d", "file": "-", "symlink": "l", "char": "c", "block": "b", "fifo": "p"}
    suid = "u" if inode.mode & 0o4000 else "-"
    sgid = "g" if inode.mode & 0o2000 else "-"
    return f"{kind[inode.kind]}{suid}{sgid}{inode.mode & 0o777:03o}"


def xfs_proto(tree: Tree, stage: Path) -> str:
    """A mkfs.xfs protofile for the whole tree, content staged as files under ``stage``."""

    def name_ok(name: str) -> str:
        assert name and not re.search(r"\s", name), f"mkfs.xfs -p cannot take {name!r}"
        return name

    lines = ["/sample-proto", "0 0", f"{_proto_mode(tree[''])} {tree[''].uid} {tree[''].gid}"]

    def emit(path: str, depth: int) -> None:
        for child in tree.children(path):
            inode = tree[child]
            head = f"{'  ' * depth}{name_ok(base_of(child))} {_proto_mode(inode)} "
            head += f"{inode.uid} {inode.gid}"
            if inode.kind == "dir":
                lines.append(head)
                emit(child, depth + 1)
                lines.append(f"{'  ' * depth}$")
            elif inode.kind == "file":
                src = stage / sha256hex(inode.data)
                if not src.exists():
                    src.write_bytes(inode.data)
                lines.append(f"{head} {src}")
            elif inode.kind == "symlink":
                lines.append(f"{head} {name_ok(inode.target)}")
            elif inode.kind in ("char", "block"):
                lines.append(f"{head} {inode.rdev[0]} {inode.rdev[1]}")
            else:
                lines.append(head)
            if inode.kind != "dir" and tree.nlink(child) > 1:
                raise ValueError(f"{child}: mkfs.xfs -p cannot make hardlinks")

    emit("", 1)
    lines.append("$")
    return "\n".join(lines) + "\n"


@dataclass
class XfsGeometry:
    blocksize: int
    agblocks: int
    inodesize: int
    agblklog: int
    inopblog: int

    @classmethod
    def read(cls, image: Path) -> XfsGeometry:
        with image.open("rb") as fh:
            sb = fh.read(512)
        assert sb[:4] == b"XFSB", image
        return cls(
            blocksize=struct.unpack(">I", sb[4:8])[0],
            agblocks=struct.unpack(">I", sb[84:88])[0],
            inodesize=struct.unpack(">H", sb[104:106])[0],
            agblklog=sb[124],
            inopblog=sb[123],
        )

    def inode_offset(self, ino: int) -> int:
        agno = ino >> (self.agblklog + self.inopblog)
        agbno = (ino >> self.inopblog) & ((1 << self.agblklog) - 1)
        return (agno * self.agblocks + agbno) * self.blocksize + (
            ino & ((1 << self.inopblog) - 1)
        ) * self.inodesize


_XFS_LS = re.compile(r"^\s*\d+\s+(\d+)\s+\S+\s+\S+\s+\d+\s+(.+) \((?:good|bad)\)$")


def xfs_inode_numbers(image: Path, tree: Tree) -> dict[str, int]:
    """The filesystem's inode number of every path, from ``xfs_db ls``."""
    xfs_db = tool("xfs_db", "xfsprogs")
    dirs = ["", *(p for p in tree.below("") if tree[p].kind == "dir")]
    args = [xfs_db, "-r"]
    for d in dirs:
        args += ["-c", f"ls /{d}"]
    out = run(args + [str(image)]).stdout.decode()
    numbers: dict[str, int] = {}
    current = ""
    for line in out.splitlines():
        if line.startswith("/") and line.endswith(":"):
            current = line[1:-1]
            continue
        m = _XFS_LS.match(line)
        if not m:
            continue
        name = m[2]
        if name == ".":
            numbers[current] = int(m[1])
        elif name != "..":
            numbers[f"{current}/{name}" if current else name] = int(m[1])
    missing = set(tree.paths) - set(numbers)
    assert not missing, f"xfs_db ls did not show {sorted(missing)[:5]}"
    return numbers


def _xfs_time(t: int, bigtime: bool) -> bytes:
    sec, nsec = split_ns(t)
    if bigtime:
        return struct.pack(">Q", (sec + (1 << 31)) * NS + nsec)
    return struct.pack(">iI", sec, nsec)


def xfs_patch_inodes(image: Path, tree: Tree, numbers: dict[str, int]) -> None:
    """Write what mkfs.xfs -p cannot set into each inode: the four times, the sticky bit and
    the values of extended attributes (made beforehand with ``xfs_db attr_set``), then the
    inode's CRC-32C."""
    geo = XfsGeometry.read(image)
    done: set[int] = set()
    with image.open("r+b") as fh:
        for path, ino in sorted(numbers.items()):
            if ino in done:
                continue
            done.add(ino)
            inode = tree[path]
            off = geo.inode_offset(ino)
            fh.seek(off)
            raw = bytearray(fh.read(geo.inodesize))
            assert raw[:2] == b"IN" and raw[4] == 3, (path, ino)
            assert struct.unpack(">Q", raw[152:160])[0] == ino, (path, ino)
            bigtime = bool(struct.unpack(">Q", raw[120:128])[0] & 0x8)
            struct.pack_into(">H", raw, 2, inode.st_mode)
            raw[32:40] = _xfs_time(inode.atime, bigtime)
            raw[40:48] = _xfs_time(inode.mtime, bigtime)
            raw[48:56] = _xfs_time(inode.ctime, bigtime)
            raw[144:152] = _xfs_time(inode.crtime, bigtime)
            for key, value in inode.xattrs.items():
                _xfs_patch_xattr(raw, key, value, path)
            raw[100:104] = b"\0\0\0\0"
            raw[100:104] = struct.pack("<I", crc32c(bytes(raw)))
            fh.seek(off)
            fh.write(raw)


_XFS_NAMESPACES = {"user.": (0, "-u"), "trusted.": (2, "-r"), "security.": (4, "-s")}


def _xfs_patch_xattr(raw: bytearray, key: str, value: bytes, path: str) -> None:
    """Fill in the value of a short-form attribute that ``xfs_db attr_set -v N`` made."""
    prefix = next(p for p in _XFS_NAMESPACES if key.startswith(p))
    name = key[len(prefix) :].encode()
    forkoff = raw[82] * 8
    area = 176 + forkoff
    totsize, count = struct.unpack(">HB", raw[area : area + 3])
    pos = area + 4
    for _ in range(count):
        namelen, valuelen, flags = raw[pos], raw[pos + 1], raw[pos + 2]
        if raw[pos + 3 : pos + 3 + namelen] == name and flags == _XFS_NAMESPACES[prefix][0]:
            assert valuelen == len(value), (path, key)
            start = pos + 3 + namelen
            raw[start : start + valuelen] = value
            return
        pos += 3 + namelen + valuelen
    raise ValueError(f"{path}: no short-form attribute {key}")


def xfs_set_xattrs(image: Path, tree: Tree, numbers: dict[str, int]) -> None:
    """Create every extended attribute with a placeholder value of the right length."""
    args = [tool("xfs_db", "xfsprogs"), "-x"]
    for path, ino in sorted(numbers.items()):
        for key, value in sorted(tree[path].xattrs.items()):
            prefix = next(p for p in _XFS_NAMESPACES if key.startswith(p))
            flag = _XFS_NAMESPACES[prefix][1]
            args += [
                "-c",
                f"inode {ino}",
                "-c",
                f"attr_set {flag} -v {len(value)} {key[len(prefix) :]}",
            ]
    if len(args) > 2:
        run(args + [str(image)])


def xfs_repair_clean(image: Path) -> None:
    proc = subprocess.run(
        [tool("xfs_repair", "xfsprogs"), "-n", str(image)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        sys.exit(f"xfs_repair -n {image} exit {proc.returncode}:\n{proc.stdout}{proc.stderr}")


# --- images, blocks and the pool -----------------------------------------------------------


def data_extents(path: Path) -> Iterator[tuple[int, int]]:
    """``(start, end)`` byte ranges holding data (SEEK_DATA/SEEK_HOLE)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                return
            end = os.lseek(fd, start, os.SEEK_HOLE)
            yield start, end
            pos = end
    finally:
        os.close(fd)


def candidate_blocks(*images: Path) -> set[int]:
    """The 64 KiB blocks where any of ``images`` may hold non-zero bytes."""
    out: set[int] = set()
    for image in images:
        for start, end in data_extents(image):
            out.update(range(start // BLOCK_BYTES, (end - 1) // BLOCK_BYTES + 1))
    return out


def read_block(fh: Any, vblock: int) -> bytes:
    fh.seek(vblock * BLOCK_BYTES)
    data = fh.read(BLOCK_BYTES)
    return data + bytes(BLOCK_BYTES - len(data))


@dataclass
class Device:
    """One thin device: its Docker record, its image file while building, its mappings."""

    hash: str  # "" for the base device
    device_id: int
    origin: int  # 0 for the base (create_thin); else the snapshot's origin device id
    created: str  # RFC 3339 time of the record file
    size: int
    image: Path | None = None
    transaction_id: int = 0
    initialized: bool = False
    deleted: bool | None = None  # the modern record's key; None: the key is absent (1.8)
    mappings: dict[int, tuple[int, int]] = field(default_factory=dict)  # vblock -> data, time
    creation_time: int = 0
    snap_time: int = 0
    written: set[int] = field(default_factory=set)  # base only: blocks mkfs wrote

    @property
    def file_name(self) -> str:
        return self.hash or "base"

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "device_id": self.device_id,
            "size": self.size,
            "transaction_id": self.transaction_id,
            "initialized": self.initialized,
        }
        if self.deleted is not None:
            rec["deleted"] = self.deleted
        return rec


class Pool:
    """Data blocks handed out in write order; each snapshot shares its origin's blocks where
    its image reads the same, and writes a block of its own where it differs."""

    def __init__(self) -> None:
        self.devices: list[Device] = []
        self.next_data = 0
        self.time = 0
        #: data block -> (image, virtual block) holding its bytes
        self.sources: dict[int, tuple[Path, int]] = {}

    def by_id(self, dev_id: int) -> Device:
        (dev,) = [d for d in self.devices if d.device_id == dev_id]
        return dev

    def add(self, dev: Device) -> None:
        """Map ``dev``'s image (snapshots are added in creation order)."""
        assert dev.image is not None
        if dev.origin:
            origin = self.by_id(dev.origin)
            assert origin.image is not None
            self.time += 1
            origin.snap_time = self.time
            dev.mappings = dict(origin.mappings)
            own = self._differing(origin, dev)
        else:
            own = sorted(dev.written)
        dev.creation_time = dev.snap_time = self.time
        for vblock in own:
            dev.mappings[vblock] = (self.next_data, self.time)
            self.sources[self.next_data] = (dev.image, vblock)
            self.next_data += 1
        self._check_covers(dev)
        self.devices.append(dev)

    def _differing(self, origin: Device, dev: Device) -> list[int]:
        assert origin.image is not None and dev.image is not None
        own = []
        with origin.image.open("rb") as a, dev.image.open("rb") as b:
            for vblock in sorted(candidate_blocks(origin.image, dev.image)):
                if read_block(a, vblock) != read_block(b, vblock):
                    own.append(vblock)
        return own

    def _check_covers(self, dev: Device) -> None:
        """Every non-zero block of the image is mapped (else the device would read zeros)."""
        assert dev.image is not None
        with dev.image.open("rb") as fh:
            for vblock in sorted(candidate_blocks(dev.image)):
                if vblock not in dev.mappings and read_block(fh, vblock) != bytes(BLOCK_BYTES):
                    raise AssertionError(f"device {dev.device_id}: block {vblock} not mapped")

    def runs(self, dev: Device) -> list[list[int]]:
        """``[virtual begin, data begin, length, time]`` of each run of mappings."""
        out: list[list[int]] = []
        for vb in sorted(dev.mappings):
            db, t = dev.mappings[vb]
            last = out[-1] if out else None
            if last and last[0] + last[2] == vb and last[1] + last[2] == db and last[3] == t:
                last[2] += 1
            else:
                out.append([vb, db, 1, t])
        return out

    def xml(self, transaction: int, nr_data_blocks: int, version: int = 2) -> str:
        out = [
            f'<superblock uuid="" time="{self.time}" transaction="{transaction}" flags="0" '
            f'version="{version}" data_block_size="{BLOCK_SECTORS}" '
            f'nr_data_blocks="{nr_data_blocks}">'
        ]
        for dev in sorted(self.devices, key=lambda x: x.device_id):
            out.append(
                f'  <device dev_id="{dev.device_id}" mapped_blocks="{len(dev.mappings)}" '
                f'transaction="{dev.transaction_id - 1}" creation_time="{dev.creation_time}" '
                f'snap_time="{dev.snap_time}">'
            )
            for ob, db, length, t in self.runs(dev):
                if length == 1:
                    out.append(
                        f'    <single_mapping origin_block="{ob}" data_block="{db}" time="{t}"/>'
                    )
                else:
                    out.append(
                        f'    <range_mapping origin_begin="{ob}" data_begin="{db}" '
                        f'length="{length}" time="{t}"/>'
                    )
            out.append("  </device>")
        out.append("</superblock>")
        return "\n".join(out) + "\n"

    def write_data(self, data: Path, size: int) -> int:
        """The sparse data file: every mapped block's bytes at its data block, pages of zeros
        (4 KiB) left as holes. Returns the number of blocks holding data."""
        written = 0
        handles: dict[Path, Any] = {}
        zero_page = bytes(PAGE)
        try:
            with data.open("wb") as out:
                out.truncate(size)
                for dblock in sorted(self.sources):
                    image, vblock = self.sources[dblock]
                    if image not in handles:
                        handles[image] = image.open("rb")
                    chunk = read_block(handles[image], vblock)
                    pages = [
                        (off, chunk[off : off + PAGE])
                        for off in range(0, BLOCK_BYTES, PAGE)
                        if chunk[off : off + PAGE] != zero_page
                    ]
                    for off, page in pages:
                        out.seek(dblock * BLOCK_BYTES + off)
                        out.write(page)
                    written += bool(pages)
        finally:
            for fh in handles.values():
                fh.close()
        return written


def superblock_fields(metadata: Path) -> dict[str, int]:
    with metadata.open("rb") as fh:
        sb = fh.read(512)
    return {
        "version": int.from_bytes(sb[0x28:0x2C], "little"),
        "time": int.from_bytes(sb[0x2C:0x30], "little"),
        "transaction_id": int.from_bytes(sb[0x30:0x38], "little"),
        "data_block_size": int.from_bytes(sb[0x150:0x154], "little"),
        "metadata_nr_blocks": int.from_bytes(sb[0x158:0x160], "little"),
        "nr_data_blocks": int.from_bytes(sb[0x40:0x48], "little"),
        "data_blocks_allocated": int.from_bytes(sb[0x48:0x50], "little"),
    }


def write_pool_metadata(metadata: Path, xml: str, size: int, scratch: Path) -> dict[str, Any]:
    """``thin_restore`` the XML into a sparse metadata file of ``size``; ``thin_check`` must
    pass and ``thin_dump`` must give the XML back byte for byte."""
    with metadata.open("wb") as fh:
        fh.truncate(size)
    xml_path = scratch / "pool.xml"
    xml_path.write_text(xml)
    pkg = "thin-provisioning-tools"
    run([tool("thin_restore", pkg), "-i", str(xml_path), "-o", str(metadata)])
    check = subprocess.run([tool("thin_check", pkg), str(metadata)], capture_output=True, text=True)
    if check.returncode != 0:
        sys.exit(f"thin_check failed ({check.returncode}):\n{check.stdout}{check.stderr}")
    dump = run([tool("thin_dump", pkg), str(metadata)]).stdout.decode()
    if dump != xml:
        sys.exit("thin_dump does not reproduce the generated XML")
    xml_path.unlink()
    return {
        "thin_check_rc": check.returncode,
        "thin_check_stderr": check.stderr.strip().splitlines(),
        "thin_dump_device_ids": [int(x) for x in re.findall(r'<device dev_id="(\d+)"', dump)],
        "superblock": superblock_fields(metadata),
    }


def pack(top: Path, out: Path, *, root_owned: bool) -> None:
    """``tar --sparse`` of ``top/docker`` into ``gzip -9n``: the same bytes on every run.
    ``root_owned``: record every owner as 0:0 (a tree generated by a non-root user too)."""
    part = out.with_name(out.name + ".part")
    args = ["tar", "--format=gnu", "--sparse", "--numeric-owner", "--sort=name"]
    if root_owned:
        args += ["--owner=0", "--group=0"]
    tar = subprocess.Popen(args + ["-C", str(top), "-cf", "-", "docker"], stdout=subprocess.PIPE)
    assert tar.stdout is not None
    with part.open("wb") as fh:
        gz = subprocess.run(["gzip", "-9n"], stdin=tar.stdout, stdout=fh, check=False)
    tar.stdout.close()
    if tar.wait() != 0 or gz.returncode != 0:
        part.unlink(missing_ok=True)
        sys.exit("tar | gzip failed")
    part.replace(out)
