"""Speed and memory of ``thin dump``/``thin check``/``thin ls`` beside the thin-provisioning-tools.

One run: build (or reuse) a Docker-like pool with thin_restore, then run each command ``--repeat``
times, interleaved with its peers — Debian's C++ tools 0.9.0 (installed) and the Rust rewrite
1.1.0 (Debian 13's, unpacked into ``bench/work``, never installed) — each in a fresh process with
its output sent to a file, and print wall time (best and median), CPU time, peak RSS
(``os.wait4``) and the ratios ours / theirs. The outputs of ``dump`` and ``ls`` are compared.

    python bench/thin_bench.py                          # about 1M mappings, 91 devices
    python bench/thin_bench.py --base-blocks 45000 --write-blocks 9000   # about 7M mappings
    python bench/thin_bench.py --base-blocks 500 --write-blocks 100 --repeat 1   # smoke run
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TESTS = REPO / "tests"  # the fixture builders of the tests

WORK = HERE / "work"
OURS = [sys.executable, "-c", "from forensics.cli.thin import thin; thin()"]
LS_FIELDS = "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,TRANSACTION,CREATE_TIME,SNAP_TIME"
#: per command: our arguments, and the peers' program and arguments
COMMANDS = {
    "dump": (["dump"], "thin_dump", []),
    "check": (["check"], "thin_check", []),
    "ls": (["ls"], "thin_ls", ["-o", LS_FIELDS]),
}
#: the Rust rewrite: Debian 13 (trixie) ships it
RUST_VERSION = "1.1.0"
RUST_PACKAGE = "thin-provisioning-tools"
RUST_SUITE = "trixie"
RUST_DIR = WORK / f"thin-provisioning-tools-{RUST_VERSION}"


@dataclass
class Runs:
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    peaks: list[int] = field(default_factory=list)
    status: int = 0

    def best(self) -> float:
        return min(self.walls)

    def median(self) -> float:
        return statistics.median(self.walls)

    def peak_mib(self) -> float:
        return max(self.peaks) / 1024


def run(argv: list[str], out: Path) -> tuple[float, float, int, int]:
    """Wall time, CPU time (user + system), peak RSS (KiB) and exit status of one process
    writing its stdout to ``out``.

    subprocess starts the child with vfork/posix_spawn, so the peak RSS is the child's own, not a
    copy of this process's memory taken at fork time."""
    start = time.perf_counter()
    with open(out, "wb") as stdout:
        child = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, child.returncode


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


# -- the Rust tools, from this machine's Debian mirror ---------------------------------------------


def debian_mirror() -> str:
    """The Debian archive this machine's apt uses (its sources, deb822 or one-line)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file() or path.suffix not in ("", ".list", ".sources"):
            continue
        text = path.read_text(errors="replace")
        for uri in re.findall(r"^URIs:\s*(\S+)", text, re.M) + re.findall(
            r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M
        ):
            if "security" not in uri and "debian" in uri:
                return uri
    sys.exit("no Debian mirror in /etc/apt/sources.list*: give --rust DIR")


def fetch_rust_tools(dest: Path) -> Path:
    """Debian 13's thin-provisioning-tools, downloaded by apt from this machine's mirror with a
    private state directory (the system's apt lists and sources are neither read nor changed)
    and unpacked by ``dpkg -x`` into ``dest``: never installed."""
    state = WORK / "apt-trixie"
    for sub in ("lists/partial", "cache/archives/partial", "sources.list.d"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "sources.list").write_text("")
    (state / "sources.list.d" / f"{RUST_SUITE}.sources").write_text(
        f"Types: deb\nURIs: {debian_mirror()}\nSuites: {RUST_SUITE}\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    options = [
        f"-o=Dir::State::Lists={state / 'lists'}",
        f"-o=Dir::Etc::SourceList={state / 'sources.list'}",
        f"-o=Dir::Etc::SourceParts={state / 'sources.list.d'}",
        f"-o=Dir::Cache={state / 'cache'}",
        "-o=APT::Sandbox::User=root",
    ]
    print(f"fetching {RUST_PACKAGE} {RUST_VERSION} from {RUST_SUITE} (apt, private state) …")
    subprocess.run(["apt-get", *options, "-qq", "update"], check=True)
    downloads = state / "debs"
    downloads.mkdir(exist_ok=True)
    spec = f"{RUST_PACKAGE}={RUST_VERSION}*"
    subprocess.run(["apt-get", *options, "-qq", "download", spec], check=True, cwd=downloads)
    (deb,) = sorted(downloads.glob(f"{RUST_PACKAGE}_{RUST_VERSION}*.deb"))
    tmp = dest.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(["dpkg", "-x", str(deb), str(tmp)], check=True)
    tmp.rename(dest)
    return dest


def rust_tools(args: argparse.Namespace) -> Path | None:
    """The directory of the Rust tools' programs (``usr/sbin`` of the unpacked package)."""
    if args.no_rust:
        return None
    root = Path(args.rust) if args.rust else RUST_DIR
    if not (root / "usr/sbin/pdata_tools").exists():
        if args.rust:
            sys.exit(f"{root}: no usr/sbin/pdata_tools (an unpacked {RUST_PACKAGE} .deb)")
        fetch_rust_tools(root)
    sbin = root / "usr/sbin"
    version = subprocess.run([str(sbin / "thin_check"), "-V"], capture_output=True, text=True)
    if version.returncode != 0 or version.stdout.strip() != RUST_VERSION:
        sys.exit(f"{sbin / 'thin_check'} does not run as {RUST_VERSION}: {version.stderr.strip()}")
    return sbin


def output_digest(path: Path, *, dump_1x: bool = False) -> str:
    """The sha256 of an output file, read in pieces (this process must stay small: a child's
    peak RSS counts from its parent's). ``dump_1x``: the dump as 0.9.0 writes it, from 1.x's,
    which leaves out ``flags="0"`` (in the first line) and the last newline."""
    digest = hashlib.sha256()
    last = b""
    with open(path, "rb") as f:
        first = f.readline()
        if dump_1x and b' flags="' not in first:
            first = first.replace(b'" version="', b'" flags="0" version="', 1)
        digest.update(first)
        last = first[-1:]
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            last = chunk[-1:]
    if dump_1x and last != b"\n":
        digest.update(b"\n")
    return digest.hexdigest()


# -- the run -------------------------------------------------------------------------------------


def compile_package() -> None:
    """Byte-compile ``forensics`` as an install does, so that start-up is measured as users get
    it (with ``PYTHONDONTWRITEBYTECODE`` set, every run would compile the modules again)."""
    import forensics

    compileall.compile_dir(str(Path(forensics.__file__).parent), quiet=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--base-blocks", type=int, default=6000)
    parser.add_argument("--write-blocks", type=int, default=1200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fresh", action="store_true", help="rewrite the cached fixture")
    parser.add_argument("--rust", metavar="DIR", help="an unpacked thin-provisioning-tools 1.x")
    parser.add_argument("--no-rust", action="store_true", help="measure 0.9.0 only")
    parser.add_argument("--commands", default="dump,check,ls", help="comma-separated")
    args = parser.parse_args()
    path, mappings, devices = fixture(args)
    rust = rust_tools(args)
    compile_package()
    blocks = path.stat().st_blocks * 512 // 4096
    print(f"pool: {mappings:,} mappings, {devices} devices, {blocks:,} metadata blocks in use")
    print()
    print(
        f"{'command':<8} {'who':<7} {'best s':>8} {'median s':>9} {'cpu s':>7} {'peak MiB':>9} "
        f"{'exit':>5}"
    )
    verdicts = []
    for name in args.commands.split(","):
        ours_args, program, peer_args = COMMANDS[name]
        argvs = {"ours": [*OURS, *ours_args], "0.9.0": [tool(program), *peer_args]}
        if rust is not None:
            argvs[RUST_VERSION] = [str(rust / program), *peer_args]
        runs = {who: Runs() for who in argvs}
        outs = {who: WORK / f"{name}.{who}.out" for who in argvs}
        for _ in range(args.repeat):
            for who, argv in argvs.items():
                wall, cpu, peak, status = run([*argv, str(path)], outs[who])
                runs[who].walls.append(wall)
                runs[who].cpus.append(cpu)
                runs[who].peaks.append(peak)
                runs[who].status = status
        for who, r in runs.items():
            print(
                f"{name:<8} {who:<7} {r.best():>8.3f} {r.median():>9.3f} {min(r.cpus):>7.3f} "
                f"{r.peak_mib():>9.1f} {r.status:>5}"
            )
        ours = runs["ours"]
        for who in argvs:
            if who == "ours":
                continue
            theirs = runs[who]
            same = ""
            if name in ("dump", "ls"):
                mine = output_digest(outs["ours"])
                their = output_digest(outs[who], dump_1x=name == "dump" and who != "0.9.0")
                same = ", output identical" if mine == their else ", OUTPUT DIFFERS"
            verdicts.append(
                f"ours / {who:<6} {name}: time {ours.best() / theirs.best():.2f}x (median "
                f"{ours.median() / theirs.median():.2f}x), peak memory "
                f"{ours.peak_mib() / theirs.peak_mib():.2f}x{same}"
            )
    print()
    for line in verdicts:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
