#!/usr/bin/env python3
"""Throughput of deep layer verification (``verify --deep``) beside hashlib's sha256.

    python bench/deep_bench.py                          # synthetic layers, realistic file sizes
    python bench/deep_bench.py --root ROOT              # every layer of a Docker root
    python bench/deep_bench.py --sample modern-overlay2 # a real sample, unpacked here
    python bench/deep_bench.py --layers 4 --layer-mib 1 --file-bytes 100 --breakdown
                                                        # many tiny files: the cost per file

Ours is :func:`forensics.layers.verify_layer` over every layer, one after the other in one
process: tar-split decoding, header checks, confined opens, reading every file, sha256 of the
rebuilt stream and crc64 of each file, and the per-file records. The anchors, in the same run on
the same files (the page cache warm for all):

* ``read + sha256``: open each file that ours read, read it, feed hashlib.sha256 — the practical
  limit of any tool that must read the files and hash them;
* ``sha256 in memory``: hashlib.sha256 over the same bytes already in memory (CPU only).

Throughput is bytes of layer content (file data read) per second. The goal is ours ≥ 0.8 × the
``read + sha256`` anchor. Each measure is the best of ``--repeat`` runs.

``--breakdown`` also splits ours' CPU time per file read: the tar-split decoding alone, the tar
header decoding alone (both in ``forensics/formats/``), and the rest (``forensics/layers/``:
records, checks, confined opens, reading, hashing).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from tarsplit import Entry, build_layer  # noqa: E402

from forensics.evidence import Evidence  # noqa: E402
from forensics.formats.tarsplit import FILE, iter_entries, iter_fields  # noqa: E402
from forensics.formats.ustar import HeaderError, read_member  # noqa: E402
from forensics.layers import LayerJob, layer_jobs, verify_layer  # noqa: E402
from forensics.stores.host import read_host  # noqa: E402

WORK = HERE / "work"
SAMPLES = HERE.parent / "samples"
GOAL = 0.8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--root", type=Path, help="a Docker root (sample, generated host, copy)")
    where.add_argument("--sample", help="a sample of samples/ (e.g. modern-overlay2), unpacked")
    parser.add_argument("--layers", type=int, default=8, help="synthetic: number of layers")
    parser.add_argument("--layer-mib", type=int, default=64, help="synthetic: MiB per layer")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--file-bytes", type=int, default=0, help="synthetic: every file this size (0: log-normal)"
    )
    parser.add_argument("--breakdown", action="store_true", help="CPU time per file, by part")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--workers",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="also time ours over this many processes (1: skip); default: the usable cores",
    )
    return parser.parse_args(argv)


# -- what to measure ------------------------------------------------------------------------------


def synthetic_root(layers: int, mib: int, seed: int, file_bytes: int = 0) -> Path:
    """A root with ``layers`` overlay2 layers of about ``mib`` MiB each, cached in bench/work.

    File sizes are log-normal around 8 KiB (σ = 2.2, capped at 64 MiB): many small files and a
    few big ones, as in real images; or all ``file_bytes`` long. The tar-split streams are real
    (bench/tarsplit.py)."""
    shape = f"-b{file_bytes}" if file_bytes else ""
    root = WORK / f"deep-l{layers}-m{mib}-s{seed}{shape}" / "docker"
    done = root.parent / "COMPLETE"
    if done.exists():
        return root
    shutil.rmtree(root.parent, ignore_errors=True)
    rng = random.Random(seed)
    for n in range(layers):
        entries = _layer_entries(rng, n, mib * 1024 * 1024, file_bytes)
        blob = build_layer(entries, 1_700_000_000)
        chain = blob.diff_id.removeprefix("sha256:")  # a ChainID per layer is all we need
        meta = root / "image/overlay2/layerdb/sha256" / chain
        meta.mkdir(parents=True)
        (meta / "tar-split.json.gz").write_bytes(blob.tar_split_gz)
        (meta / "diff").write_text(blob.diff_id)
        (meta / "cache-id").write_text(f"cache{n:04d}")
        diff = root / "overlay2" / f"cache{n:04d}" / "diff"
        for entry in entries:
            path = diff / entry.name
            if entry.data is None:
                path.mkdir(parents=True, exist_ok=True)
                os.chmod(path, 0o755)
            else:
                path.write_bytes(entry.data)
                os.chmod(path, 0o644)
    done.write_text("ok\n")
    return root


def _layer_entries(rng: random.Random, n: int, budget: int, file_bytes: int) -> list[Entry]:
    entries = [Entry(f"d{n}", None)]
    used = i = 0
    while used < budget:
        if i % 200 == 0:
            entries.append(Entry(f"d{n}/s{i // 200}", None))
        size = file_bytes or int(rng.lognormvariate(math.log(8192), 2.2))
        size = min(size, 64 << 20, budget - used)
        entries.append(Entry(f"d{n}/s{i // 200}/f{i}", rng.randbytes(max(size, 1))))
        used += max(size, 1)
        i += 1
    return entries


def sample_root(name: str) -> Path:
    dest = WORK / f"sample-{name}"
    root = dest / "docker"
    if not (dest / "COMPLETE").exists():
        (archive,) = [p for p in SAMPLES.glob(f"{name}.tar.*") if not p.name.endswith(".json")]
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        cmd = ["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xf", str(archive)]
        subprocess.run([*cmd, "-C", str(dest)], check=True)
        (dest / "COMPLETE").write_text("ok\n")
    return root


def jobs_of(root: Path) -> list[LayerJob]:
    jobs = layer_jobs(read_host(Evidence(root)))
    if not jobs:
        raise SystemExit(f"{root}: no layer with a tar-split and readable files")
    return jobs


# -- the runs -------------------------------------------------------------------------------------


def run_ours(jobs: list[LayerJob]) -> tuple[float, int, list[str], int]:
    """Time, bytes read, the files read (paths relative to ROOT) and bad DiffIDs."""
    start = time.perf_counter()
    ev = Evidence(jobs[0].root)  # one per process, as the CLI will hold
    reports = [verify_layer(job, ev=ev) for job in jobs]
    seconds = time.perf_counter() - start
    files = [
        f.disk_path
        for r in reports
        for f in r.files
        if f.size and f.status not in ("missing", "unsafe-path", "type-changed", "extra")
    ]
    bad = sum(1 for r in reports if r.diff_id != r.recorded_diff_id)
    return seconds, sum(r.bytes_read for r in reports), files, bad


def run_read_sha256(root: Path, files: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    total = 0
    for rel in files:
        h = hashlib.sha256()
        with open(root / rel, "rb", buffering=0) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                total += len(chunk)
        h.hexdigest()
    return time.perf_counter() - start, total


def run_memory_sha256(blobs: list[bytes]) -> tuple[float, int]:
    start = time.perf_counter()
    for blob in blobs:
        hashlib.sha256(blob).hexdigest()
    return time.perf_counter() - start, sum(map(len, blobs))


def run_pool(jobs: list[LayerJob], workers: int) -> tuple[float, int]:
    """Ours with layers spread over ``workers`` forked processes (as ``verify --deep`` will)."""
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        nbytes = sum(pool.map(_bytes_read, jobs, chunksize=1))
    return time.perf_counter() - start, nbytes


def _bytes_read(job: LayerJob) -> int:
    return verify_layer(job).bytes_read


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.root:
        root = args.root
    elif args.sample:
        root = sample_root(args.sample)
    else:
        print(f"synthetic host: {args.layers} layers × ~{args.layer_mib} MiB", file=sys.stderr)
        root = synthetic_root(args.layers, args.layer_mib, args.seed, args.file_bytes)
    jobs = jobs_of(root)
    _, nbytes, files, bad = run_ours(jobs)  # also warms the page cache
    blobs = [(root / rel).read_bytes() for rel in files]
    times: dict[str, list[float]] = {"ours": [], "pool": [], "read": [], "mem": []}
    for _ in range(args.repeat):  # interleaved: a burst of load elsewhere hits all alike
        times["ours"].append(run_ours(jobs)[0])
        if args.workers > 1:
            seconds, pooled = run_pool(jobs, args.workers)
            assert pooled == nbytes
            times["pool"].append(seconds)
        seconds, read_bytes = run_read_sha256(root, files)
        assert read_bytes == nbytes, (read_bytes, nbytes)
        times["read"].append(seconds)
        times["mem"].append(run_memory_sha256(blobs)[0])
    best = {k: min(v) for k, v in times.items() if v}
    print_table(root, jobs, files, nbytes, best, bad, args.workers)
    if args.breakdown:
        print_breakdown(jobs, len(files), args.repeat)
    return 0


def print_breakdown(jobs: list[LayerJob], nfiles: int, repeat: int) -> None:
    """CPU time per file read (best of ``repeat``): ours, and the decoders alone."""
    ev = Evidence(jobs[0].root)
    streams = [ev.read_bytes(job.tar_split, 1 << 30) for job in jobs]
    headers = [h for data in streams for h in _header_bytes(data)]

    def cpu(work: Callable[[], object]) -> float:
        times = []
        for _ in range(repeat):
            start = time.process_time()
            work()
            times.append(time.process_time() - start)
        return min(times) / nfiles * 1e6

    ours = cpu(lambda: [verify_layer(job, ev=ev) for job in jobs])
    entries = cpu(lambda: [sum(1 for _ in iter_fields(io.BytesIO(d))) for d in streams])
    member = cpu(lambda: [_try_member(buf, pad) for buf, pad in headers])
    print(f"CPU µs per file read: ours {ours:.1f} = tar-split entries {entries:.1f}", end="")
    print(f" + tar headers {member:.1f} + the rest {ours - entries - member:.1f}")


def _header_bytes(data: bytes) -> list[tuple[bytes, int]]:
    """The segment bytes before each file entry, and the padding they start with, as the
    reassembly hands them to the tar header decoder."""
    out, pending, pad = [], b"", 0
    for entry in iter_entries(io.BytesIO(data)):
        if entry.type == FILE:
            out.append((pending, pad))
            pending, pad = b"", -entry.size % 512
        else:
            pending += entry.payload or b""
    return out


def _try_member(buf: bytes, pad: int) -> object:
    try:
        return read_member(buf, pad)
    except HeaderError:
        return None


def print_table(
    root: Path,
    jobs: list[LayerJob],
    files: list[str],
    nbytes: int,
    best: dict[str, float],
    bad: int,
    workers: int,
) -> None:
    ours = best["ours"]

    def row(label: str, seconds: float, ratio: str = "") -> None:
        rate = f"{nbytes / seconds / 1e6:,.0f} MB/s"
        print(f"{label:40} {seconds:9.3f} {rate:>14} {ratio:>10}")

    print(f"root: {root}")
    print(f"layers: {len(jobs)}, files read: {len(files):,}, bytes: {nbytes:,}")
    print(f"DiffIDs not matching: {bad}")
    print(f"{'':40} {'best s':>9} {'throughput':>14} {'vs read+sha':>10}")
    row("ours: verify_layer, 1 process", ours, f"{best['read'] / ours:.2f}")
    if "pool" in best:
        row(
            f"ours: verify_layer, {workers} processes",
            best["pool"],
            f"{best['read'] / best['pool']:.2f}",
        )
    row("anchor: read + hashlib.sha256", best["read"])
    row("anchor: hashlib.sha256 in memory", best["mem"])
    verdict = "met" if best["read"] / ours >= GOAL else "NOT met"
    print(f"goal: ours (1 process) >= {GOAL} x (read + sha256): {verdict}")


if __name__ == "__main__":
    raise SystemExit(main())
