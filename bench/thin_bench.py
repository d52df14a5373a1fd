"""Speed and memory of ``thin dump``/``thin check``/``thin ls`` beside thin_dump/thin_check/thin_ls.

One run: build (or reuse) a Docker-like pool with thin_restore, then run each pair of commands
``--repeat`` times, interleaved, each in a fresh process with its output sent to a file, and
print wall time (best and median), peak RSS (``os.wait4``) and the ratios ours / theirs. The dump
outputs are compared byte for byte.

    python bench/thin_bench.py                          # about 1M mappings, 91 devices
    python bench/thin_bench.py --base-blocks 68000 --write-blocks 14000   # about 7M mappings
    python bench/thin_bench.py --base-blocks 500 --write-blocks 100 --repeat 1   # smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"  # the fixture builders of the tests

WORK = HERE / "work"
OURS = [sys.executable, "-c", "from forensics.cli.thin import thin; thin()"]
PAIRS = {
    "dump": (["dump"], ["thin_dump"]),
    "check": (["check"], ["thin_check"]),
    "ls": (
        ["ls"],
        [
            "thin_ls",
            "-o",
            "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,TRANSACTION,CREATE_TIME,SNAP_TIME",
        ],
    ),
}


@dataclass
class Runs:
    walls: list[float] = field(default_factory=list)
    peaks: list[int] = field(default_factory=list)
    status: int = 0

    def best(self) -> float:
        return min(self.walls)

    def median(self) -> float:
        return statistics.median(self.walls)

    def peak_mib(self) -> float:
        return max(self.peaks) / 1024


def run(argv: list[str], out: Path) -> tuple[float, int, int]:
    """Wall time, peak RSS (KiB) and exit status of one process writing its stdout to ``out``.

    subprocess starts the child with vfork/posix_spawn, so the peak RSS is the child's own, not a
    copy of this process's memory taken at fork time."""
    start = time.perf_counter()
    with open(out, "wb") as stdout:
        child = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_maxrss, child.returncode


def make_fixture(seed: int, base_blocks: int, write_blocks: int, path: Path) -> None:
    """Write the pool (run in a child process: see :func:`fixture`)."""
    sys.path.insert(0, str(TESTS))
    import thin_fixtures as tf

    pool = tf.docker_like_pool(
        seed, chains=10, layers=5, containers=2, base_blocks=base_blocks, write_blocks=write_blocks
    )
    mappings = sum(d.mapped_blocks for d in pool.devices.values())
    if not path.exists():
        print(f"writing {path.name}: {mappings:,} mappings, {len(pool.devices)} devices …")
        started = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        tf.restore(pool.xml(), tmp, size=2 << 30)
        tmp.rename(path)
        print(f"  thin_restore: {time.perf_counter() - started:.1f} s")
    path.with_suffix(".count").write_text(f"{mappings} {len(pool.devices)}\n")


def fixture(args: argparse.Namespace) -> tuple[Path, int, int]:
    """The pool, made by a child process: this process stays small, because a child's peak RSS
    (``ru_maxrss``) includes the memory of the parent it was forked from."""
    path = WORK / f"thin-s{args.seed}-b{args.base_blocks}-w{args.write_blocks}.bin"
    WORK.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        path.unlink(missing_ok=True)
    if not path.with_suffix(".count").exists() or not path.exists():
        code = (
            "import sys; sys.path.insert(0, sys.argv[1]); from thin_bench import make_fixture; "
            "make_fixture(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), "
            "__import__('pathlib').Path(sys.argv[5]))"
        )
        argv = [str(HERE), str(args.seed), str(args.base_blocks), str(args.write_blocks), str(path)]
        subprocess.run([sys.executable, "-c", code, *argv], check=True)
    mappings, devices = map(int, path.with_suffix(".count").read_text().split())
    return path, mappings, devices


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        sys.exit(f"{name} is not installed (Debian: thin-provisioning-tools)")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--base-blocks", type=int, default=6000)
    parser.add_argument("--write-blocks", type=int, default=1200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fresh", action="store_true", help="rewrite the cached fixture")
    args = parser.parse_args()
    path, mappings, devices = fixture(args)
    blocks = path.stat().st_blocks * 512 // 4096
    print(f"pool: {mappings:,} mappings, {devices} devices, {blocks:,} metadata blocks in use")
    print()
    print(f"{'command':<8} {'who':<7} {'best s':>8} {'median s':>9} {'peak MiB':>9} {'exit':>5}")
    verdicts = []
    for name, (ours_args, theirs_argv) in PAIRS.items():
        theirs_argv = [tool(theirs_argv[0]), *theirs_argv[1:]]
        runs = {"ours": Runs(), "theirs": Runs()}
        outs = {who: WORK / f"{name}.{who}.out" for who in runs}
        for _ in range(args.repeat):
            for who, argv in (("ours", [*OURS, *ours_args]), ("theirs", theirs_argv)):
                wall, peak, status = run([*argv, str(path)], outs[who])
                runs[who].walls.append(wall)
                runs[who].peaks.append(peak)
                runs[who].status = status
        for who, r in runs.items():
            print(
                f"{name:<8} {who:<7} {r.best():>8.3f} {r.median():>9.3f} "
                f"{r.peak_mib():>9.1f} {r.status:>5}"
            )
        time_ratio = runs["ours"].best() / runs["theirs"].best()
        mem_ratio = runs["ours"].peak_mib() / runs["theirs"].peak_mib()
        same = ""
        if name in ("dump", "ls"):
            identical = outs["ours"].read_bytes() == outs["theirs"].read_bytes()
            same = ", output identical" if identical else ", OUTPUT DIFFERS"
        verdicts.append(f"{name}: time {time_ratio:.2f}x, peak memory {mem_ratio:.2f}x{same}")
    print()
    for line in verdicts:
        print("ours / theirs  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
