#!/usr/bin/env python3
"""How verify and inventory grow with the host: containers up to 50,000, and layers.

    python bench/scale_bench.py [--containers 5000 12500 25000 50000] [--layers 20000]
                                [--repeat 2] [--seed 1] [--min-free-gb 25] [--drop-hosts]

Hosts come from make_host.py (cached by run_bench.py's rules under bench/work/). ``--containers``
and ``--layers`` each take one value (held fixed) or as many values as the other (paired), so
the default grows the containers with the layers held at 20,000, and
``--layers 5000 20000 50000 --containers 1250 5000 12500`` grows both as the default host's
shape does (one container for every four layers).

For each size, after one untimed ``verify`` that brings the host into the page cache,
``verify --format json``, ``inventory --format json`` and ``inventory`` (text) run ``--repeat``
times, interleaved, each in a fresh process: best and median wall time, CPU time (user + sys of
the process and the helpers it waited for, from ``os.wait4``; the run with the least), peak RSS
(``ru_maxrss``) and what the machine read from disk meanwhile (``pgpgin``: not zero means the
host did not stay in the cache, and the system time then grows).

Then, step by step, each figure's growth divided by the growth in objects (containers + layers +
images): ≤ 1.0 is "no worse than linear" when every object costs alike; and, while the layers
are held fixed, what each added container cost (CPU ms and KiB of peak RSS per container) and
that cost divided by the step before's: it stays near 1.0 when growth is linear, also where a
container costs more than a layer (which lifts the first ratio above 1.0 on that axis).

Before a host is generated, its size is estimated from what one container and one layer of
make_host.py take on ext4 (measured: ≈ 143 KiB and 43 inodes per container, ≈ 65 KiB per layer);
the script stops if fewer than ``--min-free-gb`` would stay free on the disk. ``--drop-hosts``
deletes each host once it is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_bench import ensure_host, find_ours  # noqa: E402

WORK = Path(__file__).resolve().parent / "work"
#: what make_host.py's host takes on ext4, measured at 1,000 and 2,000 containers / 4,000 layers
KIB_PER_CONTAINER = 143
KIB_PER_LAYER = 65
#: label, verb and arguments of each command measured
COMMANDS = (
    ("verify json", ("verify", "--format", "json")),
    ("inventory json", ("inventory", "--format", "json")),
    ("inventory text", ("inventory",)),
)


@dataclass
class Run:
    wall: float
    user: float
    sys: float
    peak_kib: int
    rc: int
    stdout: Path
    read_kib: int

    @property
    def cpu(self) -> float:
        return self.user + self.sys


@dataclass
class Size:
    containers: int
    layers: int
    images: int = 0
    load: tuple[float, float] = (0.0, 0.0)
    runs: dict[str, list[Run]] = field(default_factory=dict)

    @property
    def objects(self) -> int:
        return self.containers + self.layers + self.images

    def best(self, label: str) -> float:
        return min(run.wall for run in self.runs[label])

    def median(self, label: str) -> float:
        return statistics.median(run.wall for run in self.runs[label])

    def fastest(self, label: str) -> Run:
        """The run with the least CPU time (the one least disturbed by other work)."""
        return min(self.runs[label], key=lambda run: run.cpu)

    def cpu(self, label: str) -> float:
        return self.fastest(label).cpu

    def read_mib(self, label: str) -> float:
        return max(run.read_kib for run in self.runs[label]) / 1024

    def peak_mib(self, label: str) -> float:
        return max(run.peak_kib for run in self.runs[label]) / 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, nargs="+", default=[5000, 12500, 25000, 50000])
    parser.add_argument("--layers", type=int, nargs="+", default=[20000])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--min-free-gb", type=float, default=25.0)
    parser.add_argument("--drop-hosts", action="store_true", help="delete each host once measured")
    args = parser.parse_args(argv)
    try:
        args.sizes = pair_sizes(args.containers, args.layers)
    except ValueError as error:
        parser.error(str(error))
    return args


def pair_sizes(containers: list[int], layers: list[int]) -> list[tuple[int, int]]:
    """(containers, layers) per size: a single value is held fixed, equal lengths pair up."""
    count = max(len(containers), len(layers))
    if {len(containers), len(layers)} - {1, count}:
        raise ValueError("--containers and --layers need one value or the same number of values")
    cs = containers * count if len(containers) == 1 else containers
    ls = layers * count if len(layers) == 1 else layers
    return sorted(zip(cs, ls, strict=True))


def host_home(containers: int, layers: int, seed: int) -> Path:
    return WORK / f"host-c{containers}-l{layers}-s{seed}"


def estimated_gib(containers: int, layers: int) -> float:
    return (containers * KIB_PER_CONTAINER + layers * KIB_PER_LAYER) / 2**20


def check_room(containers: int, layers: int, seed: int, min_free_gb: float) -> None:
    """Stop before a host that would leave less than ``min_free_gb`` free on the disk."""
    if (host_home(containers, layers, seed) / "COMPLETE.json").exists():
        return
    WORK.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(WORK).free / 2**30
    need = estimated_gib(containers, layers)
    print(f"disk: {free:.1f} GiB free, the host needs ≈ {need:.1f} GiB", flush=True)
    if free - need < min_free_gb:
        raise SystemExit(
            f"not generating {containers} containers / {layers} layers: ≈ {need:.1f} GiB "
            f"would leave {free - need:.1f} GiB free (< {min_free_gb:g} GiB)"
        )


def pages_read_kib() -> int:
    """KiB the whole machine has read from its disks so far (``pgpgin`` of /proc/vmstat)."""
    try:
        with open("/proc/vmstat") as stats:
            return next(int(line.split()[1]) for line in stats if line.startswith("pgpgin "))
    except (OSError, StopIteration):
        return 0


def measure(argv: list[str], out: Path) -> Run:
    """One run in a fresh process: wall clock around it, CPU time and peak RSS from wait4, and
    what the machine read from disk meanwhile (nonzero when the host was not in the cache)."""
    with out.open("wb") as sink:
        read_before = pages_read_kib()
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        read = pages_read_kib() - read_before
    rc = os.waitstatus_to_exitcode(status)
    return Run(wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss, rc, out, read)


def warm_up(ours: list[str], root: Path) -> None:
    """Write back a just generated host and read it once, untimed: every size is measured
    from the page cache (a host written moments before still has gigabytes in writeback)."""
    os.sync()
    with open(os.devnull, "wb") as sink:
        subprocess.run([*ours, "verify", str(root), "--format", "json"], stdout=sink, check=False)


def count_images(root: Path) -> int:
    with os.scandir(root / "image/overlay2/imagedb/content/sha256") as listing:
        return sum(1 for _ in listing)


def check_output(label: str, run: Run, containers: int) -> str:
    """A note when the output is not what a consistent host gives, else ""."""
    if label == "inventory text":
        text = run.stdout.read_text(errors="replace")
        heading = next((ln for ln in text.splitlines() if ln.startswith("CONTAINERS (")), "")
        listed = int(heading.removeprefix("CONTAINERS (").rstrip(")") or -1)
        return "" if listed == containers else f"listed {listed} containers"
    try:
        doc = json.loads(run.stdout.read_bytes())
    except ValueError as error:
        return f"not JSON ({error})"
    if label == "verify json":
        errors = sum(1 for f in doc["findings"] if f.get("severity") == "error")
        return f"{errors} error findings" if errors or run.rc else ""
    listed = len(doc["containers"])
    return "" if listed == containers else f"listed {listed} containers"


def measure_size(ours: list[str], size: Size, root: Path, repeat: int) -> None:
    out_dir = WORK / "runs"
    out_dir.mkdir(parents=True, exist_ok=True)
    before = os.getloadavg()[0]
    for turn in range(repeat):
        for label, args in COMMANDS:
            name = f"scale-c{size.containers}-l{size.layers}-{label.replace(' ', '-')}-{turn}"
            run = measure([*ours, args[0], str(root), *args[1:]], out_dir / f"{name}.out")
            size.runs.setdefault(label, []).append(run)
            note = check_output(label, run, size.containers)
            if note:
                print(f"!!! {label} on {root}: rc {run.rc}, {note}", flush=True)
            run.stdout.unlink()
    size.load = (before, os.getloadavg()[0])


def print_size(size: Size) -> None:
    print(
        f"\n{size.containers:,} containers, {size.layers:,} layers, {size.images:,} images "
        f"({size.objects:,} objects), load {size.load[0]:.1f} → {size.load[1]:.1f}"
    )
    for label, _ in COMMANDS:
        fastest = size.fastest(label)
        print(
            f"  {label:<15} best {size.best(label):6.2f} s  median {size.median(label):6.2f} s"
            f"  CPU {fastest.cpu:6.2f} s (user {fastest.user:6.2f})"
            f"  peak {size.peak_mib(label):6.1f} MiB  disk read {size.read_mib(label):6.1f} MiB",
            flush=True,
        )


def mark(ratio: float) -> str:
    return f"{ratio:5.2f}{' !' if ratio > 1.0 else '  '}"


def print_growth(sizes: list[Size]) -> None:
    """Each step's growth in time and memory, divided by its growth in objects; while the
    layers are held, what each added container cost, and that cost against the step before
    (a per-container cost that rises from step to step is growth worse than linear)."""
    print("\ngrowth per step ÷ growth in objects (≤ 1.0 = no worse than linear; ! = above)")
    print(f"{'step':<26}{'command':<16}{'objects':>8}  {'wall':>7}{'CPU':>7}{'peak':>7}", end="")
    print(f"{'CPU ms/ctr':>12}{'÷ before':>9}{'KiB/ctr':>9}{'÷ before':>9}")
    before: dict[str, tuple[float, float]] = {}
    for prev, cur in zip(sizes, sizes[1:], strict=False):
        grow = cur.objects / prev.objects
        step = f"{prev.containers:,}c/{prev.layers:,}l → {cur.containers:,}c"
        added = cur.containers - prev.containers
        for label, _ in COMMANDS:
            wall = cur.best(label) / prev.best(label) / grow
            cpu = cur.cpu(label) / prev.cpu(label) / grow
            peak = cur.peak_mib(label) / prev.peak_mib(label) / grow
            line = f"{step:<26}{label:<16}{grow:7.2f}×  {mark(wall)}{mark(cpu)}{mark(peak)}"
            if cur.layers == prev.layers and added > 0:
                ms = (cur.cpu(label) - prev.cpu(label)) * 1000 / added
                kib = (cur.peak_mib(label) - prev.peak_mib(label)) * 1024 / added
                ms_before, kib_before = before.get(label, (0.0, 0.0))
                line += f"{ms:12.3f}{ratio_text(ms, ms_before)}{kib:9.2f}"
                line += ratio_text(kib, kib_before)
                before[label] = (ms, kib)
            print(line)


def ratio_text(now: float, earlier: float) -> str:
    return f"{now / earlier:9.2f}" if earlier > 0 else f"{'':9}"


def save(sizes: list[Size]) -> Path:
    path = WORK / "scale-results.json"
    rows = [
        {
            "containers": s.containers,
            "layers": s.layers,
            "images": s.images,
            "load": s.load,
            "commands": {
                label: {
                    "best_s": s.best(label),
                    "median_s": s.median(label),
                    "cpu_s": s.cpu(label),
                    "user_s": s.fastest(label).user,
                    "disk_read_mib": s.read_mib(label),
                    "peak_mib": s.peak_mib(label),
                    "rc": [r.rc for r in s.runs[label]],
                }
                for label, _ in COMMANDS
            },
        }
        for s in sizes
    ]
    path.write_text(json.dumps(rows, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ours, why = find_ours()
    if ours is None:
        print(f"docker-forensics is not usable: {why}", file=sys.stderr)
        return 1
    sizes = []
    for containers, layers in args.sizes:
        check_room(containers, layers, args.seed, args.min_free_gb)
        root = ensure_host(containers, layers, args.seed, fresh=False)
        size = Size(containers, layers, count_images(root))
        warm_up(ours, root)
        measure_size(ours, size, root, args.repeat)
        print_size(size)
        sizes.append(size)
        if args.drop_hosts:
            shutil.rmtree(root.parent)
    print_growth(sizes)
    print(f"\nfigures written to {save(sizes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
