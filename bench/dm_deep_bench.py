#!/usr/bin/env python3
"""Throughput of ``verify --deep`` on a devicemapper root, beside read + sha256 of the same
files' bytes from the extracted device images.

    python bench/dm_deep_bench.py                          # 4 layers × 300 MiB (1.2 GiB)
    python bench/dm_deep_bench.py --layers 2 --layer-mib 64 --repeat 1   # a quick look

The root is a Docker 1.10+ layerdb on devicemapper, made for real and cached in bench/work:
each layer's files are random (log-normal sizes around 8 KiB, as deep_bench.py), its tar and
tar-split are bench/tarsplit.py's, and each layer's thin device holds an ext4 (``mkfs.ext4
-d``) whose ``rootfs/`` is the whole root file system as of that layer — its parent's files and
its own, as Docker's snapshots hold them — with the owners, modes and times of the tar headers.
The pool's metadata is written by Debian's ``thin_restore`` (64 KiB blocks; a 64 KiB block
equal in two devices shares one data block, as snapshots share what they did not change). Run
it as root: the files must belong to root as the tar headers say.

Measured, the page cache warm for all, each the best of ``--repeat`` runs:

* ``verify --deep``: the command line (``docker-forensics --no-progress verify ROOT --deep
  --format json``) with one worker process, and with one per core: the tar-split rebuilt and
  hashed, every file read through the pool's mapping and its ext4 with crc64, every entry held
  against its inode, every layer's tree held against its parent's;
* ``read + sha256``: the same files' bytes read from device images cut out of the pool with
  ``docker-forensics thin extract`` (setup, not timed) at the extents their inodes give (found
  once, not timed) and fed to hashlib.sha256 — the limit of any tool that must read the files
  from the devices and hash them.

Throughput is bytes of layer content (the files that ``verify --deep`` reads) per second; the
goal is ours ≥ 0.6 × the anchor, one process each.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import tarsplit  # noqa: E402
from sparse_files import data_extents  # noqa: E402
from tarsplit import Entry, build_layer  # noqa: E402

from forensics.formats.crc64 import crc64_iso, to_bytes  # noqa: E402

WORK = HERE / "work"
GOAL = 0.6
MTIME = 1_700_000_000
BLOCK = 64 * 1024
DEVICE_SIZE = 10 << 30  # dm.basesize of Docker 1.10+
UUID = "6d1c2a63-1b47-4f6e-9a57-5e0c1f3b2d10"
SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])

# the generator's own crc64 is pure Python: the project's (C speed) gives the same bytes
tarsplit.crc64_iso = lambda data: to_bytes(crc64_iso(data))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--layer-mib", type=int, default=300, help="MiB of files per layer")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args(argv)


def tool(name: str) -> str:
    found = shutil.which(name, path=SBIN)
    if found is None:
        raise SystemExit(f"{name} is not installed")
    return found


def cli() -> list[str]:
    found = shutil.which("docker-forensics")
    if found is None:
        raise SystemExit("the docker-forensics console script is not installed")
    return [found, "--no-progress"]


# -- the root ---------------------------------------------------------------------------------


@dataclass
class Layer:
    chain: str
    diff_id: str
    cache_id: str
    dev_id: int
    tar_split_gz: bytes
    size: int


def make_root(layers: int, mib: int, seed: int) -> Path:
    """The devicemapper root, made once per shape and cached under bench/work."""
    base = WORK / f"dm-deep-l{layers}-m{mib}-s{seed}"
    root = base / "docker"
    if (base / "COMPLETE").exists():
        return root
    shutil.rmtree(base, ignore_errors=True)
    stage, images = base / "stage", base / "images"
    (stage / "rootfs").mkdir(parents=True)
    images.mkdir()
    rng = random.Random(seed)
    made: list[Layer] = []
    paths: list[Path] = [_mkfs(images / "1.img", None)]  # the base device: an empty ext4
    parent_chain: str | None = None
    for n in range(layers):
        entries = _entries(rng, n, mib << 20)
        blob = build_layer(entries, MTIME)
        _stage(stage / "rootfs", entries)
        cache_id = hashlib.sha256(f"cache {seed} {n}".encode()).hexdigest()
        if n == 0:
            (stage / "id").write_text(cache_id)
            os.chmod(stage / "id", 0o600)
        chain = blob.diff_id
        if parent_chain is not None:
            pair = f"{parent_chain} {blob.diff_id}".encode()
            chain = "sha256:" + hashlib.sha256(pair).hexdigest()
        made.append(Layer(chain, blob.diff_id, cache_id, n + 2, blob.tar_split_gz, blob.size))
        paths.append(_mkfs(images / f"{n + 2}.img", stage))
        parent_chain = chain
        what = f"{blob.size >> 20} MiB in {len(entries)} entries"
        print(f"  layer {n + 1}/{layers}: {what}", file=sys.stderr)
    _write_pool(root, paths, base)
    _write_records(root, made)
    shutil.rmtree(stage)
    shutil.rmtree(images)
    (base / "COMPLETE").write_text("ok\n")
    return root


def _entries(rng: random.Random, n: int, budget: int) -> list[Entry]:
    entries = [Entry(f"l{n}", None)]
    used = i = 0
    while used < budget:
        if i % 200 == 0:
            entries.append(Entry(f"l{n}/s{i // 200}", None))
        size = min(int(rng.lognormvariate(math.log(8192), 2.2)), 64 << 20, budget - used)
        entries.append(Entry(f"l{n}/s{i // 200}/f{i}", rng.randbytes(max(size, 1))))
        used += max(size, 1)
        i += 1
    return entries


def _stage(rootfs: Path, entries: list[Entry]) -> None:
    """The layer's files added to the staged root file system as the tar headers say
    (bench/tarsplit.py: directories 0755, files 0644, root's, one mtime)."""
    for entry in entries:
        path = rootfs / entry.name
        if entry.data is None:
            path.mkdir()
            os.chmod(path, 0o755)
        else:
            path.write_bytes(entry.data)
            os.chmod(path, 0o644)
            os.utime(path, (MTIME, MTIME))


def _mkfs(image: Path, stage: Path | None) -> Path:
    with image.open("wb") as f:
        f.truncate(DEVICE_SIZE)
    args = [tool("mkfs.ext4"), "-q", "-F", "-b", "4096", "-U", UUID]
    args += ["-E", f"nodiscard,lazy_itable_init=0,lazy_journal_init=0,hash_seed={UUID}"]
    if stage is not None:
        args += ["-d", str(stage)]
    env = {**os.environ, "E2FSPROGS_FAKE_TIME": str(MTIME)}
    subprocess.run([*args, str(image)], check=True, env=env)
    return image


def _data_blocks(image: Path) -> list[int]:
    """The 64 KiB blocks of ``image`` that hold data (holes read as zeros: left unmapped)."""
    out: set[int] = set()
    for start, end in data_extents(image):
        out.update(range(start // BLOCK, -(-end // BLOCK)))
    return sorted(out)


def _write_pool(root: Path, images: list[Path], scratch: Path) -> None:
    """The pool: each device's non-zero 64 KiB blocks mapped to data blocks, equal blocks
    shared; the metadata written by thin_restore."""
    pool = root / "devicemapper" / "devicemapper"
    pool.mkdir(parents=True)
    shared: dict[bytes, int] = {}
    devices: list[list[tuple[int, int]]] = []
    with (pool / "data").open("wb") as data:
        for image in images:
            mappings = []
            with image.open("rb") as f:
                for vblock in _data_blocks(image):
                    f.seek(vblock * BLOCK)
                    chunk = f.read(BLOCK).ljust(BLOCK, b"\0")
                    if not any(chunk):
                        continue
                    key = hashlib.sha256(chunk).digest()
                    if key not in shared:
                        shared[key] = len(shared)
                        data.seek(shared[key] * BLOCK)
                        data.write(chunk)
                    mappings.append((vblock, shared[key]))
            devices.append(mappings)
        nr_blocks = max(len(shared) * 2, 1 << 16)
        data.truncate(nr_blocks * BLOCK)
    sb = ET.Element(
        "superblock",
        {
            "uuid": "",
            "time": str(len(images)),
            "transaction": str(len(images)),
            "flags": "0",
            "version": "2",
            "data_block_size": str(BLOCK // 512),
            "nr_data_blocks": str(nr_blocks),
        },
    )
    for dev_id, mappings in enumerate(devices, 1):
        dev = ET.SubElement(
            sb,
            "device",
            {
                "dev_id": str(dev_id),
                "mapped_blocks": str(len(mappings)),
                "transaction": str(dev_id),
                "creation_time": str(dev_id - 1),
                "snap_time": str(dev_id - 1),
            },
        )
        for vblock, dblock in mappings:
            attrs = {"origin_block": str(vblock), "data_block": str(dblock), "time": "0"}
            ET.SubElement(dev, "single_mapping", attrs)
    xml = scratch / "pool.xml"
    xml.write_bytes(ET.tostring(sb))
    with (pool / "metadata").open("wb") as f:
        f.truncate(256 << 20)
    subprocess.run([tool("thin_restore"), "-i", str(xml), "-o", str(pool / "metadata")], check=True)
    subprocess.run([tool("thin_check"), str(pool / "metadata")], check=True, capture_output=True)
    xml.unlink()


def _write_records(root: Path, layers: list[Layer]) -> None:
    """Docker's records: layerdb, one image, devicemapper's device records."""
    store = root / "image" / "devicemapper"
    parent = None
    for layer in layers:
        d = store / "layerdb" / "sha256" / layer.chain.removeprefix("sha256:")
        d.mkdir(parents=True)
        (d / "diff").write_text(layer.diff_id)
        (d / "size").write_text(str(layer.size))
        (d / "cache-id").write_text(layer.cache_id)
        (d / "tar-split.json.gz").write_bytes(layer.tar_split_gz)
        if parent is not None:
            (d / "parent").write_text(parent)
        parent = layer.chain
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2023-11-14T22:13:20Z",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [la.diff_id for la in layers]},
            "history": [{"created": "2023-11-14T22:13:20Z"} for _ in layers],
        },
        separators=(",", ":"),
    ).encode()
    image_id = hashlib.sha256(config).hexdigest()
    content = store / "imagedb" / "content" / "sha256"
    content.mkdir(parents=True)
    (content / image_id).write_bytes(config)
    refs = {"Repositories": {"bench": {"bench:latest": f"sha256:{image_id}"}}}
    (store / "repositories.json").write_text(json.dumps(refs))
    meta = root / "devicemapper" / "metadata"
    meta.mkdir(parents=True)
    records = [("base", 1)] + [(la.cache_id, la.dev_id) for la in layers]
    for name, dev_id in records:
        record = {
            "device_id": dev_id,
            "size": DEVICE_SIZE,
            "transaction_id": dev_id,
            "initialized": name == "base",
            "deleted": False,
        }
        (meta / name).write_text(json.dumps(record, separators=(",", ":")))
        if name != "base":
            (root / "devicemapper" / "mnt" / name).mkdir(parents=True)
    deviceset = {"next_device_id": len(records) + 1, "BaseDeviceUUID": UUID}
    (meta / "deviceset-metadata").write_text(
        json.dumps({**deviceset, "BaseDeviceFilesystem": "ext4"})
    )
    (root / "containers").mkdir()


# -- the anchor: the same files' bytes from the extracted device images -------------------------


@dataclass
class FileExtents:
    image: Path
    size: int
    extents: list[tuple[int, int]]  # (offset in the image, bytes)


def anchor_files(root: Path, scratch: Path, verified: dict) -> list[FileExtents]:
    """The files ``verify --deep`` read (tar members with data), located in their layer's
    device image cut out with ``thin extract``, at the extents their ext4 inodes give."""
    import pyfsext

    pool = root / "devicemapper" / "devicemapper"
    out: list[FileExtents] = []
    scratch.mkdir(parents=True, exist_ok=True)
    for layer in verified["layers"]:
        cache = (root / layer["tar_split"]).parent.joinpath("cache-id").read_text()
        record = json.loads((root / "devicemapper" / "metadata" / cache).read_text())
        image = scratch / f"{record['device_id']}.img"
        if not image.exists():
            cmd = [*cli(), "thin", "extract", str(pool / "metadata"), str(pool / "data")]
            cmd += ["--dev", str(record["device_id"]), "-o", str(image)]
            subprocess.run(cmd, check=True, capture_output=True)
        volume = pyfsext.volume()
        volume.open(str(image))
        for name in _member_files(root / layer["tar_split"]):
            entry = volume.get_file_entry_by_path("/rootfs/" + name)
            extents = []
            for i in range(entry.number_of_extents):
                offset, size, flags = entry.get_extent(i)
                extents.append((int(offset), int(size)))
            out.append(FileExtents(image, int(entry.size), extents))
        volume.close()
    return out


def _member_files(tar_split: Path) -> list[str]:
    names = []
    for line in gzip.decompress(tar_split.read_bytes()).splitlines():
        entry = json.loads(line)
        if entry["type"] == 1 and entry.get("size"):
            names.append(entry["name"])
    return names


def run_anchor(files: list[FileExtents]) -> tuple[float, float, int]:
    """Wall and CPU seconds, bytes read."""
    start, cpu = time.perf_counter(), time.process_time()
    total = 0
    fds: dict[Path, int] = {}
    try:
        for f in files:
            fd = fds.get(f.image)
            if fd is None:
                fd = fds[f.image] = os.open(f.image, os.O_RDONLY)
            h = hashlib.sha256()
            left = f.size
            for offset, size in f.extents:
                pos, end = offset, offset + min(size, left)
                while pos < end:
                    chunk = os.pread(fd, min(1 << 20, end - pos), pos)
                    h.update(chunk)
                    pos += len(chunk)
                left -= min(size, left)
            h.hexdigest()
            total += f.size
    finally:
        for fd in fds.values():
            os.close(fd)
    return time.perf_counter() - start, time.process_time() - cpu, total


def run_ours(root: Path, workers: int) -> tuple[float, float, dict]:
    """Wall and CPU seconds (the command's processes, user and system), its JSON."""
    env = {**os.environ, "DOCKER_FORENSICS_WORKERS": str(workers)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [*cli(), "verify", str(root), "--deep", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
    )
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if proc.returncode not in (0, 4):
        raise SystemExit(f"verify --deep exit {proc.returncode}: {proc.stderr}")
    return seconds, cpu, json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"devicemapper root: {args.layers} layers × {args.layer_mib} MiB", file=sys.stderr)
    root = make_root(args.layers, args.layer_mib, args.seed)
    _, _, doc = run_ours(root, 1)  # also warms the page cache
    errors = [f for f in doc["findings"] if f["severity"] == "error"]
    nbytes = sum(layer["bytes_read"] for layer in doc["layers"])
    files = anchor_files(root, root.parent / "extracted", doc)
    cores = len(os.sched_getaffinity(0))
    wall: dict[str, list[float]] = {"ours": [], "ours-n": [], "anchor": []}
    cpu: dict[str, list[float]] = {"ours": [], "ours-n": [], "anchor": []}
    for _ in range(args.repeat):  # interleaved: a burst of load elsewhere hits all alike
        for key, workers in (("ours", 1), ("ours-n", cores)):
            if key == "ours-n" and cores < 2:
                continue
            seconds, used, _ = run_ours(root, workers)
            wall[key].append(seconds)
            cpu[key].append(used)
        seconds, used, read = run_anchor(files)
        assert read == nbytes, (read, nbytes)
        wall["anchor"].append(seconds)
        cpu["anchor"].append(used)
    best = {k: min(v) for k, v in wall.items() if v}
    best_cpu = {k: min(v) for k, v in cpu.items() if v}
    mib = nbytes / (1 << 20)
    print(f"root      {root}")
    print(f"content   {mib:,.0f} MiB in {len(files):,} files of {len(doc['layers'])} layers")
    print(f"findings  {len(errors)} errors (expected 0)")
    print(f"load      {os.getloadavg()[0]:.1f} on {cores} cores (1-minute average)")
    print(f"{'':<30}{'wall s':>8}{'MiB/s':>8}{'ratio':>7}{'cpu s':>8}{'MiB/s':>8}{'ratio':>7}")
    rows = [("verify --deep, 1 worker", "ours")]
    if "ours-n" in best:
        rows.append((f"verify --deep, {cores} workers", "ours-n"))
    rows.append(("read + sha256 (the limit)", "anchor"))
    for label, key in rows:
        w, c = best[key], best_cpu[key]
        print(
            f"{label:<30}{w:>8.2f}{mib / w:>8.0f}{best['anchor'] / w:>7.2f}"
            f"{c:>8.2f}{mib / c:>8.0f}{best_cpu['anchor'] / c:>7.2f}"
        )
    ratio = best["anchor"] / best["ours"]
    verdict = "reached" if ratio >= GOAL else "NOT reached"
    print(f"goal: ours ≥ {GOAL} × the limit (wall, 1 process each): {ratio:.2f}, {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
