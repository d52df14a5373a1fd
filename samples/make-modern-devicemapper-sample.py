#!/usr/bin/env python3
"""Build the modern devicemapper sample: a Docker 20.10 root on devicemapper with xfs devices.

Docker's layerdb store (1.10 → 24.x, as 17.x/18.x wrote it) on the devicemapper driver
(loop-lvm, removed in 25.0), the base device formatted with xfs as the driver does when
mkfs.xfs is there. Made from real parts where they can be had, transplanted where the machine
has no device mapper:

1. **Real** (needs root, Debian's docker.io and busybox-static): a private dockerd (overlay2;
   ``tests/dockerd_util.py``) imports a busybox rootfs and builds an image with the classic
   builder; ``docker save`` carries it to a second, fresh private dockerd (the "host"), which
   ``docker load``s it, runs a container that writes and deletes files, creates a second one,
   reports what it sees (``docker inspect``, ``docker diff``, …) and is stopped cleanly. Its data
   root gives every record of the sample: ``repositories.json``, image configs, layerdb entries
   (diff ids, chain ids, cache ids, the tar-split files dockerd wrote), mount records,
   ``config.v2.json``, … and its overlay2 directories give every file's bytes and metadata.
2. **Transplanted** (no dockerd from here on, deterministic given the parts; run as root all
   the same: the parts hold files only root may read, and overlay2's trusted.* marks): the
   host's tree gets ``image/devicemapper/`` for ``image/overlay2/``, ``devicemapper/`` for
   ``overlay2/``, ``"Driver":"devicemapper"`` in ``config.v2.json`` and each layer's ``size``
   as a naive-diff driver reports it. Each thin device holds an xfs made by ``mkfs.xfs -p``
   (a protofile of the device's whole tree: ``rootfs/`` = the layer's full root filesystem, the
   overlay2 diffs applied in order with their whiteouts, and the ``id`` file), its inode times,
   sticky bits and extended attributes written into the inodes afterwards (CRC-32C
   recomputed), ``xfs_repair -n`` clean. The pool maps what ``mkfs.xfs`` wrote on the base and,
   for each snapshot, every 64 KiB block that differs from its origin; ``thin_restore`` writes
   its metadata.

Usage: python3 samples/make-modern-devicemapper-sample.py [--keep-parts DIR] [OUTDIR]
       python3 samples/make-modern-devicemapper-sample.py --from-parts DIR [OUTDIR]

``--keep-parts`` saves what the real daemons made (step 1); ``--from-parts`` runs step 2 alone
on such a copy (no dockerd; the same parts give the same bytes). Needs Python 3.11
(stdlib), GNU tar and gzip, xfsprogs, faketime, strace, thin-provisioning-tools; step 1 also
docker.io and busybox-static. Writes OUTDIR/modern-devicemapper.tar.gz and its .truth.json.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
import dmsample as dm  # noqa: E402

NAME = "modern-devicemapper"
SEED = "docker-forensics/" + NAME
DEVICE_SIZE = 10 * 1024**3  # dm.basesize default since 1.9
DATA_FILE_SIZE = 100 * 1024**3  # dm.loopdatasize default
METADATA_FILE_SIZE = 2 * 1024**3  # dm.loopmetadatasize default
NR_DATA_BLOCKS = DATA_FILE_SIZE // dm.BLOCK_BYTES
POOL_VERSION = 2
STORE = "image/devicemapper"
CONTAINER_NAMES = ("web", "idle")
#: struct vfs_cap_data, revision 2, effective: cap_net_raw+ep
CAP_NET_RAW = bytes.fromhex("0100000200200000000000000000000000000000")
IMPORT_MTIME = 1519900000  # 2018-03-01T10:26:40Z: the mtime of every member of the base tar


def hexid(seed: str) -> str:
    return hashlib.sha256(f"{SEED}/{seed}".encode()).hexdigest()


def uuid_from(seed: str) -> str:
    h = bytearray(bytes.fromhex(hexid(seed))[:16])
    h[6] = (h[6] & 0x0F) | 0x40
    h[8] = (h[8] & 0x3F) | 0x80
    s = h.hex()
    return f"{s[:8]}-{s[8:12]}-{s[12:16]}-{s[16:20]}-{s[20:]}"


FS_UUID = uuid_from("base-fs-uuid")


# --- step 1: the real daemons ---------------------------------------------------------------
def base_tar(busybox: Path) -> bytes:
    """The busybox rootfs imported as ``sample/busybox:base``: a tar with a setuid file, a file
    with security.capability, a char device, a fifo, empty files, a sticky /tmp, a directory
    a later layer replaces (opaque) and a file it deletes (whiteout)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:

        def add(name: str, data: bytes = b"", **fields: Any) -> None:
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.mode, ti.uid, ti.gid = IMPORT_MTIME, 0o644, 0, 0
            for key, value in fields.items():
                setattr(ti, key, value)
            if ti.type == tarfile.REGTYPE:
                ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if ti.size else None)

        def d(name: str, mode: int = 0o755) -> None:
            add(name + "/", type=tarfile.DIRTYPE, mode=mode)

        d("bin")
        add("bin/busybox", busybox.read_bytes(), mode=0o755)
        for applet in ("cat", "chmod", "chown", "echo", "head", "ln", "ls", "mkdir", "rm", "sh",
                       "sleep", "touch", "true"):  # fmt: skip
            add(f"bin/{applet}", type=tarfile.SYMTYPE, linkname="busybox", mode=0o777)
        cap = {"SCHILY.xattr.security.capability": CAP_NET_RAW.decode("latin-1")}
        add("bin/ping", b'#!/bin/sh\nexec busybox ping "$@"\n', mode=0o755, pax_headers=cap)
        add("bin/su", b'#!/bin/sh\nexec busybox su "$@"\n', mode=0o4755)
        d("dev")
        add("dev/null", type=tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666)
        d("etc")
        add("etc/.pwd.lock", mode=0o600)
        add("etc/group", b"root:x:0:\nshadow:x:42:\nnogroup:x:65534:\n")
        add("etc/hostname", b"busybox\n")
        add("etc/hosts", b"127.0.0.1\tlocalhost\n")
        add("etc/motd", b"base motd: deleted by a later layer (whiteout)\n")
        add("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
        add("etc/profile", b"export PATH=/bin\n")
        add("etc/shadow", b"root:*:17591:0:99999:7:::\n", mode=0o640, gid=42)
        d("opt")
        d("opt/olddir")
        add("opt/olddir/a.txt", b"a\n")
        add("opt/olddir/b.txt", b"b\n")
        d("root", 0o700)
        d("run")
        add("run/initctl", type=tarfile.FIFOTYPE, mode=0o600)
        d("tmp", 0o1777)
        d("var")
        d("var/log")
        add("var/run", type=tarfile.SYMTYPE, linkname="/run", mode=0o777)
    return buf.getvalue()


DOCKERFILE = """FROM sample/busybox:base
ENV GREETING=hello
# a file in a nested directory, a deleted file (whiteout), a replaced directory (opaque)
RUN mkdir -p /data/nested && echo "nested file" > /data/nested/file.txt && rm /etc/motd \\
 && rm -rf /opt/olddir && mkdir /opt/olddir && echo new > /opt/olddir/new.txt
# 300 000 bytes of busybox (five 64 KiB blocks), a relative symlink, an owner and setuid mode,
# a non-ASCII name, an empty file
RUN head -c 300000 /bin/busybox > /data/big.bin && ln -s nested/file.txt /data/link.txt \\
 && echo owned > /data/owned && chown 1234:5678 /data/owned && chmod 4750 /data/owned \\
 && echo "utf-8 name" > "/data/caf$(printf '\\303\\251').txt" && touch /data/empty
COPY hello.txt /app/hello.txt
WORKDIR /app
CMD ["sh"]
"""
WEB_SCRIPT = (
    'echo "written by web" > /data/web-wrote.txt && mkdir /data/web-dir '
    "&& rm /data/nested/file.txt /app/hello.txt && echo 'export WEB=1' >> /etc/profile "
    "&& echo scratch > /tmp/scratch && rm /tmp/scratch"
)


def capture(parts: Path) -> None:
    """Step 1: build on one private dockerd, load and run on another; keep its data root."""
    from dockerd_util import dockerd_available, private_dockerd

    if not dockerd_available():
        sys.exit("step 1 needs root, Debian's docker.io and no system containerd")
    busybox = Path(os.environ.get("BUSYBOX", "/bin/busybox"))
    if not busybox.is_file():
        sys.exit(f"no {busybox}: apt-get install -y busybox-static")
    parts.mkdir(parents=True)
    scratch = Path(tempfile.mkdtemp(prefix="dfx-mdm."))
    try:
        ctx = scratch / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(DOCKERFILE)
        (ctx / "hello.txt").write_text("hello from the build context\n")
        (scratch / "base.tar").write_bytes(base_tar(busybox))
        with private_dockerd(scratch / "build" / "docker", scratch / "build") as build:
            build.docker(
                "import", "-c", "ENV PATH=/bin", "-c", 'CMD ["/bin/sh"]',
                "-m", "busybox-static rootfs", str(scratch / "base.tar"), "sample/busybox:base",
                check=True,
            )  # fmt: skip
            os.environ["DOCKER_BUILDKIT"] = "0"  # the classic builder
            build.docker("build", "-q", "-t", "sample/app:1.0", str(ctx), check=True)
            build.docker(
                "save",
                "-o",
                str(parts / "save.tar"),
                "sample/busybox:base",
                "sample/app:1.0",
                check=True,
            )
        with private_dockerd(scratch / "host" / "docker", scratch / "host") as host:
            host.docker("load", "-i", str(parts / "save.tar"), check=True)
            run = host.docker(
                "run", "--name", "web", "--network", "none", "sample/app:1.0", "sh", "-c",
                WEB_SCRIPT,
            )  # fmt: skip
            if run.returncode != 0:
                sys.exit(f"docker run web failed: {run.stderr}")
            host.docker(
                "create", "--name", "idle", "--network", "none", "sample/app:1.0", "sleep", "1",
                check=True,
            )  # fmt: skip
            (parts / "daemon.json").write_text(
                json.dumps(record_daemon(host), sort_keys=True, indent=1) + "\n"
            )
            data_root = host.data_root
        # stopped cleanly (SIGTERM): the containers are exited and created, nothing mounted.
        # A copy cannot keep ctimes: the times of every file are written down first.
        (parts / "host-stat.json").write_text(json.dumps(stat_table(data_root), indent=0) + "\n")
        dm.run(["cp", "-a", str(data_root), str(parts / "host")])
        (parts / "host-path").write_text(str(data_root) + "\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def stat_table(root: Path) -> dict[str, list[int]]:
    """lstat of everything under the data root's overlay2/ and image/: mode, uid, gid, rdev,
    atime, mtime, ctime (nanoseconds)."""
    table = {}
    for top in ("overlay2", "image"):
        for path in sorted([root / top, *(root / top).rglob("*")]):
            st = path.lstat()
            table[path.relative_to(root).as_posix()] = [
                st.st_mode, st.st_uid, st.st_gid, st.st_rdev,
                st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns,
            ]  # fmt: skip
    return table


def record_daemon(host: Any) -> dict[str, Any]:
    """What the live host daemon reports (it runs overlay2: the GraphDriver fields say so)."""

    def out(*args: str) -> str:
        return str(host.docker(*args, check=True).stdout)

    def lines(*args: str) -> list[Any]:
        return [json.loads(line) for line in out(*args).splitlines() if line.strip()]

    ps = lines("ps", "-a", "--no-trunc", "--format", "{{json .}}")
    cids = sorted(p["ID"] for p in ps)
    images_all = lines("images", "-a", "--no-trunc", "--format", "{{json .}}")
    image_ids = sorted({i["ID"] for i in images_all})
    return {
        "docker_version": out("version", "--format", "{{.Server.Version}}").strip(),
        "driver": out("info", "--format", "{{.Driver}}").strip(),
        "ps": ps,
        "images": lines("images", "--no-trunc", "--format", "{{json .}}"),
        "images_all": images_all,
        "inspect_containers": json.loads(out("container", "inspect", *cids)),
        "inspect_images": json.loads(out("image", "inspect", *image_ids)),
        "history": {
            i: lines("history", "--no-trunc", "--format", "{{json .}}", i) for i in image_ids
        },
        "diff": {cid: out("diff", cid).splitlines() for cid in cids},
    }


# --- step 2: the layers and containers as trees --------------------------------------------
@dataclass
class Layer:
    chain: str
    diff: str
    parent: str | None
    cache: str
    tar: bytes
    entries: list[dict[str, Any]] = field(default_factory=list)
    device_id: int = 0
    size: int = 0  # what a naive-diff driver's ApplyDiff returns: the sum of header sizes

    @property
    def layerdb(self) -> str:
        return f"{STORE}/layerdb/sha256/{self.chain.removeprefix('sha256:')}"


def chain_ids(diff_ids: list[str]) -> list[str]:
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else "sha256:" + dm.sha256hex(f"{out[-1]} {d}".encode()))
    return out


def read_layers(host: Path, daemon: dict[str, Any], parts: Path) -> list[Layer]:
    """The app image's layers, base first, with the layer tars ``docker save`` wrote."""
    saved: dict[str, bytes] = {}
    with tarfile.open(parts / "save.tar") as save:
        manifest = json.loads(save.extractfile("manifest.json").read())  # type: ignore[union-attr]
        for image in manifest:
            for name in image["Layers"]:
                data = save.extractfile(name).read()  # type: ignore[union-attr]
                saved["sha256:" + dm.sha256hex(data)] = data
    (app,) = [i for i in daemon["inspect_images"] if "sample/app:1.0" in i["RepoTags"]]
    diffs = app["RootFS"]["Layers"]
    layers = []
    for i, (diff, chain) in enumerate(zip(diffs, chain_ids(diffs), strict=True)):
        ldb = host / "image/overlay2/layerdb/sha256" / chain.removeprefix("sha256:")
        assert (ldb / "diff").read_text() == diff, chain
        cache = (ldb / "cache-id").read_text()
        layer = Layer(chain, diff, layers[-1].chain if i else None, cache, saved[diff])
        layer.entries = read_tar_split(ldb / "tar-split.json.gz")
        layer.size = sum(e.get("size") or 0 for e in layer.entries if e["type"] == 1)
        layers.append(layer)
    return layers


def read_tar_split(path: Path) -> list[dict[str, Any]]:
    entries = []
    for line in gzip.decompress(path.read_bytes()).decode().splitlines():
        e = json.loads(line)
        raw = e.get("payload")
        e["payload"] = None if raw is None else base64.b64decode(raw)
        entries.append(e)
    return entries


def _xattrs(path: Path) -> dict[str, bytes]:
    names = os.listxattr(path, follow_symlinks=False)
    return {
        n: os.getxattr(path, n, follow_symlinks=False)
        for n in sorted(names)
        if not n.startswith("trusted.overlay.")
    }


@dataclass
class Stat:
    """One row of the host's stat table (see :func:`stat_table`)."""

    mode: int
    uid: int
    gid: int
    rdev: int
    atime: int
    mtime: int
    ctime: int


def _inode_from(path: Path, st: Stat) -> dm.Inode:
    kind = dm.KIND_OF_BITS[stat.S_IFMT(st.mode)]
    return dm.Inode(
        kind,
        stat.S_IMODE(st.mode),
        st.uid,
        st.gid,
        data=path.read_bytes() if kind == "file" else b"",
        target=os.readlink(path) if kind == "symlink" else "",
        rdev=(os.major(st.rdev), os.minor(st.rdev)) if kind in ("char", "block") else (0, 0),
        xattrs=_xattrs(path),
        mtime=st.mtime,
        atime=st.atime,
        ctime=st.ctime,
        crtime=st.ctime,
    )


def apply_overlay_diff(
    tree: dm.Tree, host: Path, diff: Path, stats: dict[str, Stat], *, unpacked: bool
) -> None:
    """An overlay2 diff directory applied to ``rootfs/`` as the devicemapper driver would hold
    the same change: a whiteout (char 0:0) removes its path, an opaque directory loses what
    the layers below put in it, an existing directory keeps its inode (and crtime) and takes
    the diff's metadata, anything else is a new inode with the diff's metadata.

    ``unpacked``: the diff is a layer tar unpacked by dockerd. Its times are then Docker's
    (mtime from the header; atime the mtime for files, the epoch for directories: Chtimes of
    the header's zero access time) rather than what later reads through overlayfs left."""
    walk = sorted(
        (p.relative_to(diff).as_posix(), p) for p in diff.rglob("*")
    )  # parents sort before their children
    before_top = set(tree.children("rootfs"))
    dirs: list[tuple[str, int, int, int]] = []  # path, mtime, atime, ctime
    for rel, path in walk:
        st = stats[path.relative_to(host).as_posix()]
        target = f"rootfs/{rel}"
        if stat.S_ISCHR(st.mode) and st.rdev == 0:
            if target in tree:
                tree.remove(target, st.ctime)
            continue
        new = _inode_from(path, st)
        if unpacked:  # only what a tar header carries: security.capability
            new.atime = 0 if new.kind == "dir" else new.mtime
            new.xattrs = {k: v for k, v in new.xattrs.items() if k == "security.capability"}
        if target in tree and not (tree[target].kind == "dir" == new.kind):
            tree.remove(target, st.ctime)
        if new.kind == "dir" and target in tree:
            inode = tree[target]
            if _has_opaque_xattr(path):
                for child in tree.children(target):
                    tree.remove(child, st.ctime)
            inode.mode, inode.uid, inode.gid, inode.xattrs = new.mode, new.uid, new.gid, new.xattrs
        else:
            tree.add(target, new, st.ctime)
        if new.kind == "dir":
            dirs.append((target, new.mtime, new.atime, new.ctime))
    for target, mtime, atime, ctime in dirs:  # the kernel moved these as names came and went
        inode = tree[target]
        inode.mtime, inode.atime, inode.ctime = mtime, atime, ctime
    root = stats[diff.relative_to(host).as_posix()]
    if set(tree.children("rootfs")) != before_top:
        tree["rootfs"].mtime = tree["rootfs"].ctime = root.mtime


def _has_opaque_xattr(path: Path) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


@dataclass
class Stage:
    name: str  # the device's hash ("" for the base)
    device_id: int
    origin: int
    tree: dm.Tree
    record_time: int  # ns: when its record was written


def mkfs_tree(t: int) -> dm.Tree:
    return dm.Tree(dm.Inode("dir", 0o755, mtime=t, atime=t, ctime=t, crtime=t))


def build_stages(
    host: Path, stats: dict[str, Stat], layers: list[Layer], daemon: dict[str, Any], t0: int
) -> dict[str, Any]:
    stages = [Stage("", 1, 0, mkfs_tree(t0), t0)]
    overlay = host / "overlay2"
    for i, layer in enumerate(layers):
        parent = stages[-1]
        tree = parent.tree.clone()
        diff = overlay / layer.cache / "diff"
        made = stats[f"overlay2/{layer.cache}/diff"].ctime
        if i == 0:  # Get: rootfs/ and the id file (the first layer's cache id)
            tree.add("rootfs", dm.Inode("dir", 0o755), made)
            tree.add("id", dm.Inode("file", 0o600, data=layer.cache.encode()), made)
        apply_overlay_diff(tree, host, diff, stats, unpacked=True)
        layer.device_id = i + 2
        when = stats[layer.layerdb.replace(STORE, "image/overlay2")].mtime
        stages.append(Stage(layer.cache, layer.device_id, parent.device_id, tree, when))
        check_layer(layer, tree)
    top = stages[-1]
    containers = []
    by_name = {c["Name"].lstrip("/"): c for c in daemon["inspect_containers"]}
    for name in CONTAINER_NAMES:
        c = by_name[name]
        mounts = host / "image/overlay2/layerdb/mounts" / c["Id"]
        mount_id = (mounts / "mount-id").read_text()
        init_id = (mounts / "init-id").read_text()
        created = stats[f"image/overlay2/layerdb/mounts/{c['Id']}/init-id"].mtime
        init_tree = top.tree.clone()
        apply_overlay_diff(init_tree, host, overlay / init_id / "diff", stats, unpacked=False)
        init = Stage(init_id, len(stages) + 1, top.device_id, init_tree, created)
        stages.append(init)
        rw_tree = init_tree.clone()
        apply_overlay_diff(rw_tree, host, overlay / mount_id / "diff", stats, unpacked=False)
        stages.append(Stage(mount_id, len(stages) + 1, init.device_id, rw_tree, created))
        changes = dm.diff_lines(
            dm.naive_changes(dm.subtree(init_tree, "rootfs"), dm.subtree(rw_tree, "rootfs"))
        )
        containers.append((c, mount_id, init_id, init, stages[-1], changes))
    return {"stages": stages, "containers": containers}


def check_layer(layer: Layer, tree: dm.Tree) -> None:
    """The layer tar (``docker save``) has the DiffID, and its tar-split (written by dockerd)
    rebuilds it from the files of the layer's tree: the device holds the layer."""
    assert "sha256:" + dm.sha256hex(layer.tar) == layer.diff, layer.chain
    rootfs = dm.subtree(tree, "rootfs")
    rebuilt = dm.reassemble(layer.entries, lambda name: rootfs[dm.clean_path(name)].data)
    assert rebuilt == layer.tar, layer.chain
    for m in dm.read_tar(layer.tar):
        name = m.path.rpartition("/")[2]
        if name.startswith(".wh."):
            continue
        inode = rootfs[m.path]
        if m.kind == "hardlink":
            continue
        assert (inode.kind, inode.mode, inode.uid, inode.gid) == (
            m.kind,
            m.mode & 0o7777,
            m.uid,
            m.gid,
        ), m.name
        assert inode.mtime // dm.NS == m.mtime and inode.xattrs == m.xattrs, m.name
        assert inode.data == m.data and (inode.target or "") == (
            m.linkname if m.kind == "symlink" else ""
        ), m.name


# --- step 2: the devices and the pool -------------------------------------------------------
def faketime_args(t: int) -> list[str]:
    """faketime, frozen at ``t`` (whole seconds, UTC): every inode mkfs.xfs makes gets it."""
    frozen = subprocess.run(
        ["date", "-u", "-d", f"@{t // dm.NS}", "+%Y-%m-%d %H:%M:%S"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return [dm.tool("faketime", "faketime"), "-f", frozen]


def make_xfs(image: Path, tree: dm.Tree, work: Path, mkfs_time: int, trace: bool) -> set[int]:
    """``mkfs.xfs -p`` of the whole tree (xfsprogs' defaults, as Docker calls it on a kernel
    of 3.16 or later), then the inodes given what a protofile cannot say; xfs_repair -n clean.
    Returns the 64 KiB blocks mkfs wrote when ``trace``."""
    with image.open("wb") as fh:
        fh.truncate(DEVICE_SIZE)
    stage = work / "staging"
    stage.mkdir(exist_ok=True)
    proto = work / "proto"
    proto.write_text(dm.xfs_proto(tree, stage))
    mkfs = [dm.tool("mkfs.xfs", "xfsprogs"), "-q", "-f", "-m", f"uuid={FS_UUID}"]
    args = faketime_args(mkfs_time) + mkfs + ["-p", str(proto), str(image)]
    env = {"TZ": "UTC"}
    written = dm.traced_writes(args, image, env, work / "strace.log") if trace else set()
    if not trace:
        dm.run(args, env=env)
    numbers = dm.xfs_inode_numbers(image, tree)
    dm.xfs_set_xattrs(image, tree, numbers)
    dm.xfs_patch_inodes(image, tree, numbers)
    dm.xfs_repair_clean(image)
    return written


def build_pool(stages: list[Stage], work: Path, mkfs_time: int) -> tuple[dm.Pool, dict]:
    pool = dm.Pool()
    numbers: dict[int, dict[str, int]] = {}
    for n, st in enumerate(stages):
        image = work / f"device-{st.device_id}.img"
        written = make_xfs(image, st.tree, work, mkfs_time, trace=st.device_id == 1)
        numbers[st.device_id] = dm.xfs_inode_numbers(image, st.tree)
        dev = dm.Device(
            st.name,
            st.device_id,
            st.origin,
            "",
            DEVICE_SIZE,
            image=image,
            initialized=st.device_id == 1,
            deleted=False,
            written=written,
        )
        dev.transaction_id = n + 1  # each create is one transaction
        pool.add(dev)
    return pool, numbers


# --- step 2: the tree ------------------------------------------------------------------------
def _keep_times(path: Path) -> tuple[int, int]:
    st = path.lstat()
    return st.st_atime_ns, st.st_mtime_ns


def transplant(host: Path, top: Path, layers: list[Layer]) -> dict[str, Any]:
    """The host's data root with devicemapper in overlay2's place (edited files keep their
    times); returns what was changed."""
    root = top / "docker"
    dm.run(["cp", "-a", str(host), str(root)])
    changed: dict[str, Any] = {"renamed": {}, "removed": [], "edited": {}}
    image_dir = root / "image"
    kept = _keep_times(image_dir)
    (image_dir / "overlay2").rename(image_dir / "devicemapper")
    os.utime(image_dir, ns=kept)
    changed["renamed"]["image/overlay2"] = STORE
    overlay_dir = root / "overlay2"
    kept = _keep_times(root)
    shutil.rmtree(overlay_dir)
    changed["removed"].append("overlay2/")
    for layer in layers:
        size_file = root / layer.layerdb / "size"
        before = size_file.read_text()
        times = _keep_times(size_file)
        size_file.write_text(str(layer.size))
        os.utime(size_file, ns=times)
        changed["edited"][f"{layer.layerdb}/size"] = {"overlay2": before, "naive": layer.size}
    for config in sorted((root / "containers").glob("*/config.v2.json")):
        raw = config.read_bytes()
        assert raw.count(b'"Driver":"overlay2"') == 1, config
        times = _keep_times(config)
        config.write_bytes(raw.replace(b'"Driver":"overlay2"', b'"Driver":"devicemapper"'))
        os.utime(config, ns=times)
        changed["edited"][str(config.relative_to(root))] = '"Driver":"devicemapper"'
    os.utime(root, ns=kept)
    return changed


def write_devicemapper(root: Path, pool: dm.Pool, stages: list[Stage], t0: int) -> dict:
    """``devicemapper/``: device records, deviceset and transaction records, the empty ``mnt/``
    (20.10 removes a mount point at unmount), the pool's two loopback files."""
    dmdir = root / "devicemapper"
    meta = dmdir / "metadata"
    (dmdir / "mnt").mkdir(parents=True, mode=0o755)
    meta.mkdir(mode=0o700)
    times: dict[Path, int] = {}
    for dev, st in zip(pool.devices, stages, strict=True):
        path = meta / dev.file_name
        path.write_text(dm.gojson(dev.record()))
        path.chmod(0o600)
        times[path] = st.record_time
    last = pool.devices[-1]
    txn = {"open_transaction_id": last.transaction_id, "device_hash": last.hash,
           "device_id": last.device_id}  # fmt: skip
    (meta / "transaction-metadata").write_text(dm.gojson(txn))
    times[meta / "transaction-metadata"] = stages[-1].record_time
    # saved at the first start (filesystem, then UUID) and at shutdown: NextDeviceID is the
    # last id handed out
    dsm = {"next_device_id": last.device_id, "BaseDeviceUUID": FS_UUID,
           "BaseDeviceFilesystem": "xfs"}  # fmt: skip
    (meta / "deviceset-metadata").write_text(dm.gojson(dsm))
    stop = max(st.record_time for st in stages) + 2 * dm.NS
    times[meta / "deviceset-metadata"] = stop
    for path in meta.iterdir():
        path.chmod(0o600)
    pool_dir = dmdir / "devicemapper"
    pool_dir.mkdir(mode=0o700)
    xml = pool.xml(last.transaction_id, NR_DATA_BLOCKS, POOL_VERSION)
    result = dm.write_pool_metadata(pool_dir / "metadata", xml, METADATA_FILE_SIZE, root.parent)
    result["data_blocks_written"] = pool.write_data(pool_dir / "data", DATA_FILE_SIZE)
    for name in ("data", "metadata"):
        (pool_dir / name).chmod(0o600)
        times[pool_dir / name] = stop
    times[meta] = times[pool_dir] = times[dmdir / "mnt"] = t0
    times[dmdir] = t0
    for path, t in times.items():
        os.utime(path, ns=(t, t))
    result["deviceset"], result["transaction"] = dsm, txn
    return result


# --- the truth ------------------------------------------------------------------------------
TRANSPLANT = {
    "real": "written by the private host dockerd 20.10.24 (overlay2) itself: every file of the "
    "data root except those named below — repositories.json, imagedb (configs, metadata), "
    "layerdb (diff, cache-id, parent, tar-split.json.gz), layerdb/mounts (mount-id, init-id, "
    "parent), containers/ (config.v2.json, hostconfig.json, hostname, hosts, resolv.conf, "
    "logs), network/, volumes/, buildkit/, containerd/, engine-id; the image tars of "
    "`docker save`; every file's bytes, owner, mode, mtime, ctime and xattrs in the devices "
    "(from the daemon's overlay2 directories); `daemon` in this file",
    "transplanted": "image/overlay2 renamed image/devicemapper; overlay2/ replaced by "
    'devicemapper/ (records, pool, empty mnt/); "Driver" in config.v2.json; each layerdb '
    "size (overlay2 counts the diff directory, a naive-diff driver the tar's header sizes)",
    "why": "no device mapper here (no dm-thin module, no loop devices, no root for them): "
    "dockerd cannot run the devicemapper driver on this machine, so its records are composed "
    "from the formats of moby 20.10's devmapper driver around the real daemon's own files",
    "devices": "each device's xfs made by mkfs.xfs -p of its whole tree (xfsprogs' defaults, "
    f"UUID {FS_UUID} for all as for snapshots, faketime frozen at the pool's creation); inode "
    "times, sticky bits and xattr values written into the inodes afterwards (CRC-32C "
    "recomputed); xfs_repair -n clean. No tool changes an xfs without mounting it, so every "
    "device is rebuilt whole: inode numbers and block placement may differ between a device "
    "and its origin, and blocks are shared only where the two images are equal",
    "times": "image layers: mtime from the tar header, atime the mtime (files) or the epoch "
    "(directories: Chtimes of the header's zero access time), ctime and crtime when the host "
    "daemon unpacked the layer; init and container layers: the kernel's times on the host; "
    "crtime = ctime (this host's filesystem does not report birth times)",
    "not representable": "hardlinks (mkfs.xfs -p makes none; the images have none), a file "
    "written and then deleted by a container (an xfs rebuilt from a tree holds no deleted "
    "inodes: /tmp/scratch of web left no trace)",
    "left as written": "files that name the overlay2 host and are kept as the daemon wrote "
    "them: the paths in config.v2.json and `daemon` (the host's temporary data root), "
    "GraphDriver in `daemon`'s inspect output, and the OCI spec in containerd's meta.db (a "
    "bbolt file) whose root.path is overlay2/<mount-id>/merged",
    "pool": "device 1 maps the 64 KiB blocks mkfs.xfs wrote (strace: its 64 MiB log zeroed "
    "with fallocate included); snapshots in creation order (layers as docker load registered "
    "them, then each container's -init and its own device), each sharing its origin's blocks "
    "where its image reads the same; one transaction per create",
}


def truth(
    daemon: dict[str, Any],
    layers: list[Layer],
    built: dict[str, Any],
    pool: dm.Pool,
    pool_result: dict[str, Any],
    numbers: dict[int, dict[str, int]],
    changed: dict[str, Any],
    t0: int,
) -> dict[str, Any]:
    stages: list[Stage] = built["stages"]
    by_dev = {st.device_id: st for st in stages}
    images = [
        {
            "id": i["Id"],
            "tags": i["RepoTags"],
            "diff_ids": i["RootFS"]["Layers"],
            "chain_ids": chain_ids(i["RootFS"]["Layers"]),
        }
        for i in daemon["inspect_images"]
        if i["RepoTags"]
    ]
    layer_truth = []
    for layer in layers:
        tree = by_dev[layer.device_id].tree
        layer_truth.append(
            {
                "chain_id": layer.chain,
                "diff_id": layer.diff,
                "parent": layer.parent,
                "cache_id": layer.cache,
                "device_id": layer.device_id,
                "size": layer.size,
                "overlay2_size": int(changed["edited"][f"{layer.layerdb}/size"]["overlay2"]),
                "tar_size": len(layer.tar),
                "tar_split_entries": len(layer.entries),
                "tar_members": [_member(m) for m in dm.read_tar(layer.tar)],
                "rootfs": dm.listing(tree, "rootfs"),
            }
        )
    containers = []
    for c, mount_id, init_id, init, rw, changes in built["containers"]:
        overlay2 = sorted(daemon["diff"][c["Id"]], key=lambda line: line[2:])
        containers.append(
            {
                "id": c["Id"],
                "name": c["Name"].lstrip("/"),
                "state": c["State"]["Status"],
                "image_id": c["Image"],
                "mount_id": mount_id,
                "init_id": init_id,
                "device_ids": {"init": init.device_id, "rw": rw.device_id},
                "diff": changes,
                "diff_overlay2": overlay2,
                "rootfs": dm.listing(rw.tree, "rootfs"),
                "init_rootfs": dm.listing(init.tree, "rootfs"),
            }
        )
    devices = {}
    for dev in pool.devices:
        st = by_dev[dev.device_id]
        devices[dev.file_name] = {
            **dev.record(),
            "origin_device_id": dev.origin or None,
            "pool_transaction_id": dev.transaction_id - 1,
            "mapped_blocks": len(dev.mappings),
            "creation_time": dev.creation_time,
            "snap_time": dev.snap_time,
            "mappings": pool.runs(dev),
            "outside_rootfs": {
                p: dm.record(st.tree, p)
                for p in sorted(st.tree.paths)
                if not p.startswith("rootfs/")
            },
            "xfs_inodes": numbers[dev.device_id],
        }
    return {
        "sample": NAME,
        "docker_version": daemon["docker_version"],
        "layout": "modern",
        "driver": "devicemapper",
        "daemon": daemon,
        "images": images,
        "layers": layer_truth,
        "containers": containers,
        "devices": devices,
        "filesystem": {
            "type": "xfs",
            "uuid": FS_UUID,
            "mkfs": "mkfs.xfs (xfsprogs 6.1 defaults: crc, finobt, sparse inodes, reflink, "
            "bigtime, inobtcount), 10 GiB",
            "mkfs_time": t0 // dm.NS,
        },
        "deviceset_metadata": pool_result["deviceset"],
        "transaction_metadata": pool_result["transaction"],
        "pool": {
            "transaction_id": pool.devices[-1].transaction_id,
            "time": pool.time,
            "data_block_size": dm.BLOCK_SECTORS,
            "nr_data_blocks": NR_DATA_BLOCKS,
            "data_blocks_used": pool.next_data,
            "data_blocks_written": pool_result["data_blocks_written"],
            "data_file_size": DATA_FILE_SIZE,
            "metadata_file_size": METADATA_FILE_SIZE,
            "version": POOL_VERSION,
            "thin_check": {
                "rc": pool_result["thin_check_rc"],
                "stderr": pool_result["thin_check_stderr"],
            },
            "thin_dump_device_ids": pool_result["thin_dump_device_ids"],
            "superblock": pool_result["superblock"],
        },
        "transplant": {**TRANSPLANT, "changed": changed},
    }


def _member(m: dm.Member) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "name": m.name,
        "typeflag": m.typeflag.decode("latin-1"),
        "mode": f"{m.mode:o}",
        "uid": m.uid,
        "gid": m.gid,
        "size": m.size,
        "mtime": m.mtime,
    }
    if m.linkname:
        rec["linkname"] = m.linkname
    if m.typeflag in (b"3", b"4"):
        rec["devmajor"], rec["devminor"] = m.devmajor, m.devminor
    if m.xattrs:
        rec["xattrs"] = {k: v.hex() for k, v in sorted(m.xattrs.items())}
    if m.size:
        rec["sha256"] = dm.sha256hex(m.data)
    return rec


# --- main -------------------------------------------------------------------------------------
def make_sample(parts: Path, outdir: Path) -> Path:
    host = parts / "host"
    daemon = json.loads((parts / "daemon.json").read_text())
    assert daemon["driver"] == "overlay2", daemon["driver"]
    layers = read_layers(host, daemon, parts)
    # the daemon's first start, when the graph driver set up the pool and the base device: it
    # comes right after plugins/ is made (dockerd 20.10's NewDaemon)
    t0 = (host / "plugins" / "storage").lstat().st_mtime_ns
    table = json.loads((parts / "host-stat.json").read_text())
    stats = {path: Stat(*row) for path, row in table.items()}
    built = build_stages(host, stats, layers, daemon, t0)
    tmp = Path(tempfile.mkdtemp(prefix="dfx-mdm-build."))
    try:
        top, work = tmp / "top", tmp / "work"
        top.mkdir()
        work.mkdir()
        pool, numbers = build_pool(built["stages"], work, t0)
        root_times = _keep_times(host)
        changed = transplant(host, top, layers)
        pool_result = write_devicemapper(top / "docker", pool, built["stages"], t0)
        os.utime(top / "docker", ns=root_times)
        tarball = outdir / f"{NAME}.tar.gz"
        dm.pack(top, tarball, root_owned=True)
        doc = truth(daemon, layers, built, pool, pool_result, numbers, changed, t0)
        (outdir / f"{NAME}.truth.json").write_text(
            json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
        )
        return tarball
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", nargs="?", type=Path, default=HERE)
    parser.add_argument("--keep-parts", type=Path, help="copy what the real daemons made here")
    parser.add_argument("--from-parts", type=Path, help="skip the daemons: use these parts")
    args = parser.parse_args(argv[1:])
    for name, package in (
        ("mkfs.xfs", "xfsprogs"),
        ("xfs_db", "xfsprogs"),
        ("xfs_repair", "xfsprogs"),
        ("faketime", "faketime"),
        ("strace", "strace"),
        ("thin_restore", "thin-provisioning-tools"),
    ):
        dm.tool(name, package)
    args.outdir.mkdir(parents=True, exist_ok=True)
    if args.from_parts:
        tarball = make_sample(args.from_parts, args.outdir)
    else:
        scratch = Path(tempfile.mkdtemp(prefix="dfx-mdm-parts."))
        try:
            parts = scratch / "parts"
            capture(parts)
            if args.keep_parts:
                dm.run(["cp", "-a", str(parts), str(args.keep_parts)])
            tarball = make_sample(parts, args.outdir)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"{tarball} ({tarball.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
