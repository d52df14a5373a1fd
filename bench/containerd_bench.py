#!/usr/bin/env python3
"""Benchmark ``docker-forensics verify`` on a synthetic containerd host, beside the bare read of
the same files.

    python bench/containerd_bench.py [--containers 5000] [--snapshots 20000] [--layers 15]
                                     [--repeat 3] [--keep]

1. writes a containerd root (a Kubernetes node's ``/var/lib/containerd``, namespace
   ``k8s.io``) under /tmp: ``--containers`` containers, each on an active snapshot stacked on its
   image's top layer, and as many images of ``--layers`` layers as make ``--snapshots``
   snapshots in all; every image with its manifest, config and layer blobs (named by their
   sha256), every layer's ``containerd.io/uncompressed`` label and its snapshot keyed by its
   ChainID, the ``gc.ref`` labels containerd's collector follows, and a directory
   ``snapshots/<id>/{fs,work}`` for each snapshot (one small file in each container's ``fs``).
   The two bolt databases are written with the project's bbolt writer; every record's values
   (times, varints, the runtime's and spec's protobuf ``Any``) are copied from the
   containerd-store sample that a real containerd 1.6 wrote, with names, keys and ids replaced;
2. runs, interleaved and ``--repeat`` times each, every command in a fresh process (wall time
   and peak RSS from ``os.wait4``):
   (a) ``docker-forensics verify ROOT --format json``;
   (b) the anchor: a minimal loop (one process: open, read, close) over the files that verify
       reads, listed by its ``--sqlite`` provenance (``files_read``), and one ``scandir`` of
       each directory of the snapshotter (the listing verify needs to find leftovers);
3. prints best/median wall time, peak RSS, the ratio ours/anchor, and verify's findings.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO), str(BENCH)]

from run_bench import (  # noqa: E402  (bench/ is not a package)
    ANCHOR_LOOP,
    Tool,
    find_ours,
    list_files_read,
    report_anchor,
    report_ours,
    run_all,
    say,
)

if TYPE_CHECKING:  # the generator's imports: loaded in the child that writes the host (the
    # peak RSS of a measured command counts from this process's at the fork: it stays small)
    from forensics.stores.containerd.boltread import Bucket

SAMPLE = REPO / "samples" / "containerd-store.tar.xz"
SAMPLE_META = "docker/containerd/daemon/io.containerd.metadata.v1.bolt/meta.db"
SAMPLE_SNAPSHOTTER = "docker/containerd/daemon/io.containerd.snapshotter.v1.overlayfs/metadata.db"
NS = b"k8s.io"
META_DB = "io.containerd.metadata.v1.bolt/meta.db"
PLUGIN = "io.containerd.snapshotter.v1.overlayfs"
BLOBS = "io.containerd.content.v1.content/blobs/sha256"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
KIND_ACTIVE, KIND_COMMITTED = 2, 3

#: the anchor's second part: one scandir of the snapshotter's directory and of each snapshot's
SCAN_LOOP = """
import os, sys
base = os.path.join(sys.argv[1], "io.containerd.snapshotter.v1.overlayfs", "snapshots")
count = 0
for entry in os.scandir(base):
    count += sum(1 for _ in os.scandir(entry.path))
print(count)
"""


def encode_uvarint(n: int) -> bytes:
    from forensics.stores.containerd.values import encode_uvarint as encode

    return encode(n)


def varint(n: int) -> bytes:
    """Go's binary.PutVarint (zig-zag)."""
    return encode_uvarint((n << 1) ^ (n >> 63))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Templates:
    """Records of the sample, as a real containerd wrote them."""

    def __init__(self, work: Path) -> None:
        from forensics.stores.containerd.boltread import read_tree

        with tarfile.open(SAMPLE) as tar:
            tar.extractall(work, members=[tar.getmember(SAMPLE_META),
                                          tar.getmember(SAMPLE_SNAPSHOTTER)],
                           filter="data")  # fmt: skip
        meta = read_tree((work / SAMPLE_META).read_bytes()).root
        backend = read_tree((work / SAMPLE_SNAPSHOTTER).read_bytes()).root
        ns = meta.bucket(b"v1", NS)
        assert ns is not None
        self.version = meta.bucket(b"v1").values[b"version"]  # type: ignore[union-attr]
        self.ns_labels = ns.bucket(b"labels")
        self.container = ns.bucket(b"containers", b"k8s-app-running")
        self.image = next(iter(ns.bucket(b"images").buckets.values()))  # type: ignore[union-attr]
        snaps = ns.bucket(b"snapshots", b"overlayfs")
        assert snaps is not None
        self.snapshot = next(b for b in snaps.buckets.values() if b"parent" in b.values)
        self.blob = next(iter(ns.bucket(b"content", b"blob").buckets.values()))  # type: ignore[union-attr]
        backend_snaps = backend.bucket(b"v1", b"snapshots")
        assert backend_snaps is not None
        records = list(backend_snaps.buckets.values())
        self.committed = next(b for b in records if b.values[b"kind"] == bytes([KIND_COMMITTED]))
        self.active = next(b for b in records if b.values[b"kind"] == bytes([KIND_ACTIVE]))


def clone(bucket: Bucket | None, **values: bytes) -> Bucket:
    from forensics.stores.containerd.boltread import Bucket

    b = copy.deepcopy(bucket) if bucket is not None else Bucket()
    b.complete = True
    b.values.update({k.encode(): v for k, v in values.items()})
    return b


def labels(pairs: dict[str, str]) -> Bucket:
    from forensics.stores.containerd.boltread import Bucket

    return Bucket(values={k.encode(): v.encode() for k, v in pairs.items()})


class Host:
    """The synthetic root, written as it is built."""

    def __init__(self, root: Path, t: Templates) -> None:
        from forensics.stores.containerd.boltread import Bucket

        self.root, self.t = root, t
        self.images = Bucket()
        self.containers = Bucket()
        self.snapshots = Bucket()  # meta.db's k8s.io/snapshots/overlayfs
        self.blobs = Bucket()
        self.backend = Bucket()  # metadata.db's v1/snapshots
        self.parents = Bucket()  # metadata.db's v1/parents
        self.seq = 0
        self.snapshot_names: dict[str, str] = {}  # key → backend name
        (root / BLOBS).mkdir(parents=True)
        (root / PLUGIN / "snapshots").mkdir(parents=True)

    def blob(self, data: bytes, refs: dict[str, str]) -> str:
        digest = sha(data)
        (self.root / BLOBS / digest).write_bytes(data)
        record = clone(self.t.blob, size=varint(len(data)))
        record.buckets[b"labels"] = labels(refs)
        self.blobs.buckets[f"sha256:{digest}".encode()] = record
        return f"sha256:{digest}"

    def snapshot(self, key: str, parent: str, parent_id: int | None, active: bool) -> int:
        self.seq += 1
        name = f"{NS.decode()}/{self.seq}/{key}"
        parent_name = self.snapshot_names.get(parent, "") if parent else ""
        meta = clone(self.t.snapshot, name=name.encode(), parent=parent.encode())
        if not parent:
            meta.values.pop(b"parent", None)
        meta.buckets.pop(b"children", None)
        self.snapshots.buckets[key.encode()] = meta
        if parent:
            from forensics.stores.containerd.boltread import Bucket

            children = self.snapshots.buckets[parent.encode()].buckets.setdefault(
                b"children", Bucket()
            )
            children.values[key.encode()] = b""
        template = self.t.active if active else self.t.committed
        record = clone(template, id=encode_uvarint(self.seq), parent=parent_name.encode())
        if not parent_name:
            record.values.pop(b"parent", None)
        self.backend.buckets[name.encode()] = record
        if parent_id is not None:
            self.parents.values[encode_uvarint(parent_id) + b"\0" + encode_uvarint(self.seq)] = (
                name.encode()
            )
        self.snapshot_names[key] = name
        here = self.root / PLUGIN / "snapshots" / str(self.seq)
        (here / "fs").mkdir(parents=True)
        (here / "work").mkdir()
        if active:
            (here / "fs" / "written-by-the-container").write_bytes(b"x" * 512)
        return self.seq

    def image(self, n: int, layers: int) -> tuple[str, str, int]:
        """Image ``n``: its blobs, records and committed snapshots; (name, top ChainID, id)."""
        from forensics.stores.containerd.boltread import Bucket

        diff_ids, layer_descs, chain, top_id = [], [], "", None
        for i in range(layers):
            data = f"image {n} layer {i}\n".encode() * 8
            diff_id = f"sha256:{sha(b'uncompressed ' + data)}"
            digest = self.blob(data, {"containerd.io/uncompressed": diff_id})
            diff_ids.append(diff_id)
            layer_descs.append({"mediaType": LAYER, "digest": digest, "size": len(data)})
            parent = chain
            chain = diff_id if not chain else f"sha256:{sha(f'{chain} {diff_id}'.encode())}"
            top_id = self.snapshot(chain, parent, top_id, active=False)
        rootfs = {"type": "layers", "diff_ids": diff_ids}
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": rootfs}).encode()
        config_digest = self.blob(config, {})
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                               "config": {"mediaType": CONFIG, "digest": config_digest,
                                          "size": len(config)},
                               "layers": layer_descs}).encode()  # fmt: skip
        refs = {"containerd.io/gc.ref.content.config": config_digest}
        refs.update({f"containerd.io/gc.ref.content.l.{i}": d["digest"]
                     for i, d in enumerate(layer_descs)})  # fmt: skip
        refs["containerd.io/gc.ref.snapshot.overlayfs"] = chain
        manifest_digest = self.blob(manifest, refs)
        name = f"docker.io/bench/image-{n}:1.0"
        record = clone(self.t.image)
        record.buckets[b"target"] = Bucket(values={
            b"digest": manifest_digest.encode(), b"mediatype": MANIFEST.encode(),
            b"size": varint(len(manifest))})  # fmt: skip
        record.buckets.pop(b"labels", None)
        self.images.buckets[name.encode()] = record
        assert top_id is not None
        return name, chain, top_id

    def container(self, n: int, image: str, top: str, top_id: int) -> None:
        cid = sha(f"container {n}".encode())
        self.snapshot(cid, top, top_id, active=True)
        record = clone(self.t.container, image=image.encode(), snapshotKey=cid.encode(),
                       snapshotter=b"overlayfs")  # fmt: skip
        self.containers.buckets[cid.encode()] = record

    def write(self) -> None:
        from forensics.formats.boltwrite import encode_bolt
        from forensics.stores.containerd.boltread import Bucket

        ns = Bucket(buckets={b"images": self.images, b"containers": self.containers,
                             b"snapshots": Bucket(buckets={b"overlayfs": self.snapshots},
                                                  sequence=self.seq),
                             b"content": Bucket(buckets={b"blob": self.blobs})})  # fmt: skip
        ns.buckets[b"snapshots"].buckets[b"overlayfs"].sequence = self.seq
        if self.t.ns_labels is not None:
            ns.buckets[b"labels"] = self.t.ns_labels
        meta = Bucket(buckets={b"v1": Bucket(values={b"version": self.t.version},
                                             buckets={NS: ns})})  # fmt: skip
        (self.root / META_DB).parent.mkdir(parents=True)
        (self.root / META_DB).write_bytes(encode_bolt(meta).data)
        self.backend.sequence = self.seq
        backend = Bucket(buckets={b"v1": Bucket(buckets={b"snapshots": self.backend,
                                                         b"parents": self.parents})})  # fmt: skip
        (self.root / PLUGIN / "metadata.db").write_bytes(encode_bolt(backend).data)


def make_host(root: Path, containers: int, snapshots: int, layers: int) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="ctd-bench-sample-"))
    try:
        host = Host(root, Templates(scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    images = max(1, (snapshots - containers) // layers)
    tops = [host.image(n, layers) for n in range(images)]
    for n in range(containers):
        name, top, top_id = tops[n % len(tops)]
        host.container(n, name, top, top_id)
    host.write()
    say(f"host: {images} images of {layers} layers, {containers} containers, {host.seq} snapshots")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--containers", type=int, default=5000)
    p.add_argument("--snapshots", type=int, default=20000)
    p.add_argument("--layers", type=int, default=15)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--keep", action="store_true", help="keep the host and the runs' output")
    p.add_argument("--make", type=Path, metavar="ROOT", help=argparse.SUPPRESS)  # the child
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.make is not None:
        make_host(args.make, args.containers, args.snapshots, args.layers)
        return 0
    ours_argv, why = find_ours()
    if ours_argv is None:
        say(f"ours: SKIPPED - {why}")
        return 1
    home = Path(tempfile.mkdtemp(prefix="ctd-repair-bench-"))
    root, out_dir = home / "containerd", home / "runs"
    out_dir.mkdir()
    try:
        sizes = ["--containers", str(args.containers), "--snapshots", str(args.snapshots),
                 "--layers", str(args.layers)]  # fmt: skip
        subprocess.run([sys.executable, __file__, "--make", str(root), *sizes], check=True)
        listing, files, size = list_files_read(ours_argv, root, home)
        say(f"anchor: the {files} files ({size} bytes) that verify reads, from its --sqlite run")
        ours = Tool("ours", ours_argv + ["verify", str(root), "--format", "json"],
                    ["docker-forensics", "verify", "ROOT", "--format", "json"])  # fmt: skip
        anchor = Tool("anchor", [sys.executable, "-c", ANCHOR_LOOP, str(listing), str(root)],
                      ["anchor: open+read+close", "of", "the", "same", "files"])  # fmt: skip
        scan = Tool("scan", [sys.executable, "-c", SCAN_LOOP, str(root)],
                    ["anchor: scandir", "of", "each", "snapshot", "directory"])  # fmt: skip
        tools = [ours, anchor, scan]
        say(f"ROOT = {root}  ({os.cpu_count()} CPUs, Python {sys.version.split()[0]})")
        run_all(tools, args.repeat, out_dir)
        say()
        width = max(len(" ".join(t.display)) for t in tools)
        say(f"{'command':<{width}}  {'runs':>4}  {'best s':>7}  {'median s':>8}  {'peak MiB':>8}")
        for tool in tools:
            say(f"{' '.join(tool.display):<{width}}  {len(tool.runs):>4}  {tool.best():>7.2f}  "
                f"{tool.median():>8.2f}  {tool.peak_mib():>8.1f}")  # fmt: skip
        bare = anchor.best() + scan.best()
        say(f"{'ratio ours/anchor (files read + directories listed)':<{width}}  {'':>4}  "
            f"{ours.best() / bare:>6.2f}x")  # fmt: skip
        say()
        report_ours(ours)
        report_anchor(anchor, files, size)
        say(f"scan: {scan.runs[-1].stdout.read_text().strip()} entries listed")
    finally:
        if args.keep:
            say(f"kept: {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
