#!/usr/bin/env python3
"""Benchmark ``docker-forensics verify`` and ``inventory`` against docker-explorer on one
synthetic host.

    python bench/run_bench.py [--containers 5000] [--layers 20000] [--seed 1] [--repeat 3]
                              [--keep] [--fresh] [--check]

1. makes bench/.venv-peer with docker-explorer==20230719 (the peer, ``de.py``);
2. generates the host with bench/make_host.py, cached under bench/work/ (reused while the
   generator's sources and the parameters are unchanged);
3. runs, interleaved and ``--repeat`` times each, every command in a fresh process and records its
   wall time and peak RSS (``os.wait4``, the call ``/usr/bin/time -v`` makes):
   (a) ``docker-forensics verify ROOT --format json``, ``inventory ROOT --format json`` and
       ``inventory ROOT`` (text) from the environment running this script, and the
       like-for-like pair of the peer's listing: ``inventory ROOT --containers`` (JSON and
       text: ``docker ps -a``'s view, which reads no image config nor layer); with
       ``--before DIR`` the same commands of the code in DIR too (``PYTHONPATH=DIR``),
   (b) ``de.py -r ROOT list all_containers`` from the peer's venv,
   (c) the physical-limit anchor: a minimal loop (one process: open, read, close) over the
       files that our verify reads, listed by its ``--sqlite`` provenance (``files_read``),
   (d) the same files read with verify's own system calls (the kind of each file before it is
       opened, opens relative to a directory held open, the probes and the l/ links);
4. prints best/median wall time, peak RSS, the ratios of each of ours to the peer (with a
   verdict against the goal, ours ≤ 1.0× the peer's time) and to the anchors, the CPU time
   (user + system) of each, our exit codes,
   verify's findings by severity, and how many containers the peer and our inventory listed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
WORK = BENCH / "work"
PEER_VENV = BENCH / ".venv-peer"
PEER_PACKAGE = "docker-explorer"
PEER_VERSION = "20230719"
GENERATOR_SOURCES = [
    "make_host.py",
    "hostplan.py",
    "hostmodel.py",
    "hostwrite.py",
    "catalog.py",
    "containerplan.py",
    "containerdocs.py",
    "tarsplit.py",
]
GOAL_RATIO = 1.0
#: our commands, each measured beside the peer and the anchors: label, verb and arguments
OURS = (
    ("verify", ("verify", "--format", "json")),
    ("inv-json", ("inventory", "--format", "json")),
    ("inv-text", ("inventory",)),
    ("ps-json", ("inventory", "--containers", "--format", "json")),
    ("ps-text", ("inventory", "--containers")),
)
#: ours that list what the peer lists (the containers alone): the like-for-like pair
LIKE_FOR_LIKE = ("ps-json", "ps-text")
#: the anchor: open and read each listed file (paths relative to ROOT), nothing else
ANCHOR_LOOP = """
import os, sys
os.chdir(sys.argv[2])
with open(sys.argv[1], "rb") as listing:
    names = listing.read().split(b"\\n")
flags = os.O_RDONLY | os.O_NOFOLLOW
buffer = 1 << 16  # one read for all but the rare big file (a bigger one costs an mmap each)
count = size = 0
for name in names:
    if name:
        fd = os.open(name, flags)
        got = len(os.read(fd, buffer))
        size += got
        while got == buffer:
            got = len(os.read(fd, buffer))
            size += got
        os.close(fd)
        count += 1
print(count, size)
"""


@dataclass
class Run:
    wall: float
    peak_kib: int
    rc: int
    stdout: Path
    stderr: Path
    cpu: float = 0.0  # user + system seconds of the process and its children


@dataclass
class Tool:
    label: str
    argv: list[str]
    display: list[str]
    runs: list[Run] = field(default_factory=list)
    #: what the process's environment adds (``PYTHONPATH`` of the code before, ``--before``)
    env: dict[str, str] = field(default_factory=dict)

    def cpu(self) -> float:
        return min(run.cpu for run in self.runs)

    def best(self) -> float:
        return min(run.wall for run in self.runs)

    def median(self) -> float:
        return statistics.median(run.wall for run in self.runs)

    def peak_mib(self) -> float:
        return max(run.peak_kib for run in self.runs) / 1024


def say(text: str = "") -> None:
    print(text, flush=True)


#: the second anchor: the same files read with verify's own system calls and nothing else:
#: an O_NOFOLLOW open of each directory, per file fstatat (its kind before it is opened) +
#: openat + read + close, the probes of a layer's tar-split and an overlay2 dir's diff/ and
#: committed, the readlink of each l/ link. Written for this host's layout (overlay2). An
#: optional third argument takes rules out (comma-separated, see RULES), to price each one.
RULES_LOOP = """
import os, sys
os.chdir(sys.argv[2])
off = set(sys.argv[3].split(",")) if len(sys.argv) > 3 and sys.argv[3] else set()
with open(sys.argv[1], "rb") as listing:
    names = listing.read().split(b"\\n")
by_dir = {}
for name in names:
    if name:
        parent, _, base = name.rpartition(b"/")
        by_dir.setdefault(parent, []).append(base)
dir_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
kind, held = "kind" not in off, "held" not in off
buffer = 1 << 16
count = size = 0
for parent, bases in by_dir.items():
    fd = os.open(parent, dir_flags) if held else None
    for base in bases:
        name = base if held else parent + b"/" + base
        want = buffer
        if kind:
            want = os.stat(name, dir_fd=fd, follow_symlinks=False).st_size + 1
        file = os.open(name, flags, dir_fd=fd)
        got = len(os.read(file, want))
        size += got
        while not kind and got == buffer:
            got = len(os.read(file, buffer))
            size += got
        os.close(file)
        count += 1
    if "probes" in off:
        probes = ()
    elif parent.startswith(b"overlay2/"):
        probes = (b"diff", b"committed")
    elif b"/layerdb/sha256/" in parent:
        probes = (b"tar-split.json.gz",)
    else:
        probes = ()
    for probe in probes:
        try:
            os.stat(probe if held else parent + b"/" + probe, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            pass
    if held:
        os.close(fd)
if "links" not in off:
    links = os.open("overlay2/l", dir_flags)
    for link in os.listdir(links):
        os.readlink(link, dir_fd=links)
    os.close(links)
print(count, size)
"""
#: what each rule of RULES_LOOP is, by the name that takes it out (``--rule-costs``)
RULES = {
    "kind": "the kind of each file before it is opened (an fstatat per file)",
    "held": "opens relative to each directory held open (an O_NOFOLLOW open + close per dir)",
    "probes": "the probes of diff/, committed and tar-split.json.gz (an fstatat each)",
    "links": "the readlink of each l/ link",
}


# ---- setup -----------------------------------------------------------------------------------


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def peer_installed(python: Path) -> bool:
    probe = f"import importlib.metadata as m; print(m.version({PEER_PACKAGE!r}))"
    if not python.exists():
        return False
    found = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    return found.returncode == 0 and found.stdout.strip() == PEER_VERSION


def ensure_peer() -> list[str]:
    """The peer's command prefix: its venv's python and the ``de.py`` that pip installed."""
    python = venv_python(PEER_VENV)
    if not peer_installed(python):
        say(f"creating {PEER_VENV.relative_to(BENCH.parent)} with {PEER_PACKAGE}=={PEER_VERSION}")
        subprocess.run([sys.executable, "-m", "venv", "--clear", PEER_VENV], check=True)
        pip = subprocess.run(
            [
                python,
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                f"{PEER_PACKAGE}=={PEER_VERSION}",
            ],
            capture_output=True,
            text=True,
        )
        if pip.returncode != 0:
            sys.stderr.write(pip.stdout + pip.stderr)
            raise SystemExit(f"pip could not install {PEER_PACKAGE}=={PEER_VERSION}")
    probe = "import sysconfig; print(sysconfig.get_path('scripts'))"
    scripts = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    de_py = Path(scripts.stdout.strip()) / "de.py"
    if not de_py.exists():
        raise SystemExit(f"pip installed {PEER_PACKAGE} but no de.py in {de_py.parent}")
    return [str(python), str(de_py)]


def generator_digest() -> str:
    digest = hashlib.sha256()
    for name in GENERATOR_SOURCES:
        digest.update((BENCH / name).read_bytes())
    return digest.hexdigest()[:16]


def ensure_host(containers: int, layers: int, seed: int, fresh: bool) -> Path:
    """The cached host's root, generated (and timed) when missing or stale."""
    home = WORK / f"host-c{containers}-l{layers}-s{seed}"
    root, marker = home / "docker", home / "COMPLETE.json"
    digest = generator_digest()
    if not fresh and marker.exists() and json.loads(marker.read_text())["generator"] == digest:
        info = json.loads(marker.read_text())
        say(f"host: cached {root.relative_to(BENCH.parent)} (made in {info['seconds']:.1f} s)")
        return root
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    say(f"host: generating {containers} containers / {layers} layers (seed {seed}) …")
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            BENCH / "make_host.py",
            root,
            "--containers",
            str(containers),
            "--layers",
            str(layers),
            "--seed",
            str(seed),
        ],
        check=True,
    )
    seconds = time.perf_counter() - start
    say(f"host: generated in {seconds:.1f} s -> {root.relative_to(BENCH.parent)}")
    info = {
        "containers": containers,
        "layers": layers,
        "seed": seed,
        "seconds": seconds,
        "generator": digest,
    }
    marker.write_text(json.dumps(info) + "\n")
    return root


def find_ours() -> tuple[list[str] | None, str]:
    """Our console script from the environment running this script (not a pyenv shim)."""
    beside = Path(sys.executable).parent / "docker-forensics"
    found = str(beside) if beside.exists() else shutil.which("docker-forensics")
    if found is None:
        return None, "docker-forensics is not installed in this environment"
    probe = subprocess.run([found, "--help"], capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return None, f"docker-forensics does not run yet ({last})"
    return [found], ""


# ---- measuring -------------------------------------------------------------------------------


def measure(
    argv: Sequence[str], out_dir: Path, name: str, env: dict[str, str] | None = None
) -> Run:
    """Run once in a fresh process; wall clock around it, peak RSS from the kernel (wait4),
    CPU time from the children's usage (the process and the helpers it forked and waited
    for)."""
    stdout, stderr = out_dir / f"{name}.out", out_dir / f"{name}.err"
    environment = {**os.environ, **env} if env else None
    before = os.times()
    with stdout.open("wb") as out, stderr.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=environment
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(wall, usage.ru_maxrss, proc.returncode, stdout, stderr, cpu)


def run_all(tools: list[Tool], repeat: int, out_dir: Path) -> None:
    for index in range(repeat):
        for tool in tools:
            run = measure(tool.argv, out_dir, f"{tool.label}-{index + 1}", tool.env)
            tool.runs.append(run)
            say(
                f"  {tool.label:<6} run {index + 1}/{repeat}: {run.wall:7.2f} s  "
                f"{run.peak_kib / 1024:7.1f} MiB  CPU {run.cpu:6.2f} s  rc {run.rc}"
            )


# ---- reporting -------------------------------------------------------------------------------


def table(
    tools: list[Tool], ours: list[Tool], peer: Tool, anchor: Tool | None, rules: Tool | None
) -> None:
    width = max(len(" ".join(t.display)) for t in tools)
    say(
        f"{'command':<{width}}  {'runs':>4}  {'best s':>7}  {'median s':>8}  {'CPU s':>6}  "
        f"{'peak MiB':>8}"
    )
    for tool in tools:
        say(
            f"{' '.join(tool.display):<{width}}  {len(tool.runs):>4}  {tool.best():>7.2f}  "
            f"{tool.median():>8.2f}  {tool.cpu():>6.2f}  {tool.peak_mib():>8.1f}"
        )
    if not ours:
        return
    say()
    columns = ["/ peer", "/ peer CPU", "/ peer MiB"]
    anchors = [a for a in (anchor, rules) if a is not None]
    columns += ["/ anchor", "/ verify's calls"][: len(anchors)]
    say(f"{'ratio of':<{width}}  " + "  ".join(f"{c:>16}" for c in columns))
    for tool in ours:
        ratios = [
            tool.best() / peer.best(),
            tool.cpu() / peer.cpu() if peer.cpu() else float("nan"),
            tool.peak_mib() / peer.peak_mib(),
        ]
        ratios += [tool.best() / a.best() for a in anchors]
        say(f"{' '.join(tool.display):<{width}}  " + "  ".join(f"{r:>15.2f}x" for r in ratios))
    say()
    for tool in ours:
        time_ratio = tool.best() / peer.best()
        met = "met" if time_ratio <= GOAL_RATIO else "NOT met"
        like = " (like-for-like: the containers alone)" if tool.label in LIKE_FOR_LIKE else ""
        say(
            f"verdict: {tool.label}{like} takes {time_ratio:.2f}x the peer's time (best of "
            f"{len(tool.runs)}) -> goal <= {GOAL_RATIO:.1f}x {met}; memory "
            f"{tool.peak_mib() / peer.peak_mib():.2f}x"
        )
    if anchor is not None:
        say(
            f"anchor: one process opening and reading the files that verify reads (ours uses "
            f"{workers_of_ours()})"
        )


def workers_of_ours() -> str:
    """How many processes our verify reads with (``forensics.parallel.workers``)."""
    configured = os.environ.get("DOCKER_FORENSICS_WORKERS", "")
    if configured.isdigit() and int(configured) > 0:
        count = int(configured)
    else:
        count = len(os.sched_getaffinity(0))
    return f"{count} process{'es' if count != 1 else ''}"


# ---- the anchor ------------------------------------------------------------------------------


#: writes the paths of a --sqlite run's files_read table, one a line; prints count and bytes
LIST_FILES_READ = """
import os, sqlite3, sys
count = size = 0
with sqlite3.connect(sys.argv[1]) as db, open(sys.argv[2], "wb") as out:
    for path, length in db.execute("SELECT path, size FROM files_read ORDER BY path"):
        out.write(os.fsencode(path) + b"\\n")
        count, size = count + 1, size + length
print(count, size)
"""


def list_files_read(ours_argv: list[str], root: Path, home: Path) -> tuple[Path, int, int]:
    """The files our verify reads, from the provenance of a ``--sqlite`` run (untimed):
    a listing (one path relative to ROOT a line), their count and their total size.

    Done in child processes: the peak RSS of a child counts from its parent's at the fork,
    so this script must stay small to measure the commands' memory."""
    database, listing = home / "files-read.db", home / "files-read.txt"
    database.unlink(missing_ok=True)
    subprocess.run(
        ours_argv + ["verify", str(root), "--format", "json", "--sqlite", str(database)],
        stdout=subprocess.DEVNULL,
        check=False,
    )
    counted = subprocess.run(
        [sys.executable, "-c", LIST_FILES_READ, str(database), str(listing)],
        capture_output=True,
        text=True,
        check=True,
    )
    database.unlink()
    files, size = (int(n) for n in counted.stdout.split())
    return listing, files, size


def _knows(code: str) -> bool:
    """Whether the code in ``code`` has inventory's section options (``--containers``)."""
    source = Path(code) / "forensics" / "cli" / "inventory.py"
    return source.is_file() and '"--containers"' in source.read_text()


def report_anchor(tool: Tool, files: int, size: int) -> None:
    run = tool.runs[-1]
    read = run.stdout.read_text().split()
    same = read == [str(files), str(size)]
    mark = "" if same else f"  !!! expected {files} files, {size} bytes"
    say(f"{tool.label}: exit code {run.rc}, read {' files, '.join(read)} bytes{mark}")


def report_rule_costs(rules: Tool, without: list[Tool]) -> None:
    """What each rule adds to the anchor with verify's calls: its time with every rule, less
    its time without that one (best and median)."""
    if not without:
        return
    say()
    say(f"what each rule costs (anchor with verify's calls: best {rules.best():.2f} s):")
    for tool in without:
        rule = tool.label.removeprefix("-")
        say(
            f"  {rule:<7} {rules.best() - tool.best():+6.2f} s best, "
            f"{rules.median() - tool.median():+6.2f} s median: {RULES[rule]}"
        )


def report_ours(tool: Tool) -> None:
    run = tool.runs[-1]
    say(f"ours: exit code {run.rc} (0 = no errors, 4 = errors, 8 = operational error)")
    try:
        findings = json.loads(run.stdout.read_text())["findings"]
    except (ValueError, KeyError, TypeError) as error:
        tail = run.stderr.read_text(errors="replace").strip().splitlines()[-5:]
        say(f"!!! WARNING: our output is not the expected JSON ({error!r}); stderr tail:")
        for line in tail:
            say(f"!!!   {line}")
        return
    counts = Counter(str(f.get("severity")) for f in findings)
    summary = ", ".join(f"{k} {counts.get(k, 0)}" for k in ("error", "warning", "info"))
    say(f"ours: {len(findings)} findings ({summary})")
    errors = [f for f in findings if f.get("severity") == "error"]
    if errors or run.rc != 0:
        say("!" * 78)
        say(f"!!! WARNING: a healthy synthetic host gave {len(errors)} error(s), rc {run.rc}:")
        say("!!! either bench/make_host.py or the verifier is wrong. First findings:")
        for finding in errors[:8]:
            say(f"!!!   [{finding.get('check')}] {finding.get('path')}: {finding.get('message')}")
        say("!" * 78)
    for check, count in Counter(str(f.get("check")) for f in findings).most_common(6):
        say(f"      {count:>6}  {check}")


def report_inventory(tool: Tool, containers: int) -> None:
    """Our inventory's exit code, and that it listed every container."""
    run = tool.runs[-1]
    text = run.stdout.read_text(errors="replace")
    if tool.argv[-2:] == ["--format", "json"]:
        try:
            listed = len(json.loads(text)["containers"])
        except (ValueError, KeyError, TypeError) as error:
            say(f"!!! WARNING: {tool.label}: not the expected JSON ({error!r}); rc {run.rc}")
            return
    else:
        heading = next((line for line in text.splitlines() if line.startswith("CONTAINERS (")), "")
        listed = int(heading.removeprefix("CONTAINERS (").rstrip(")") or -1)
    mark = "" if listed == containers else f"  !!! expected {containers}"
    say(f"{tool.label}: exit code {run.rc}, listed {listed} containers{mark}")


def report_peer(tool: Tool, containers: int) -> None:
    run = tool.runs[-1]
    try:
        listed = len(json.loads(run.stdout.read_text()))
    except ValueError as error:
        say(f"!!! WARNING: the peer's output is not JSON ({error!r}); rc {run.rc}")
        return
    mark = "" if listed == containers else f"  !!! expected {containers}"
    say(f"peer: exit code {run.rc}, listed {listed} containers{mark}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=5000)
    parser.add_argument("--layers", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command (best of)")
    parser.add_argument(
        "--keep", action="store_true", help="keep every run's stdout/stderr under bench/work/runs/"
    )
    parser.add_argument("--fresh", action="store_true", help="regenerate the cached host")
    parser.add_argument(
        "--rule-costs",
        action="store_true",
        help="also run the anchor with verify's calls with one rule taken out at a time",
    )
    parser.add_argument(
        "--only",
        metavar="LABELS",
        help="run only these of ours, comma-separated: " + ", ".join(label for label, _ in OURS),
    )
    parser.add_argument(
        "--before",
        metavar="DIR",
        help="also run ours from the code in DIR (PYTHONPATH=DIR), interleaved: before/after",
    )
    parser.add_argument(
        "--no-anchor", action="store_true", help="skip both anchors (and verify's --sqlite run)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="first validate the host with bench/check_host.py (slow-ish)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    known = {label for label, _ in OURS}
    if args.only and not set(args.only.split(",")) <= known:
        parser.error(f"--only takes labels of {', '.join(sorted(known))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    peer_argv = ensure_peer()
    root = ensure_host(args.containers, args.layers, args.seed, args.fresh)
    if args.check:
        subprocess.run(
            [
                sys.executable,
                BENCH / "check_host.py",
                root,
                "--containers",
                str(args.containers),
                "--layers",
                str(args.layers),
            ],
            check=True,
        )
    ours_argv, why = find_ours()
    out_dir = WORK / "runs"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    tools: list[Tool] = []
    ours: list[Tool] = []
    anchor = rules = None
    without: list[Tool] = []
    files = size = 0
    if ours_argv:
        chosen = set(args.only.split(",")) if args.only else {label for label, _ in OURS}
        for label, (verb, *options) in OURS:
            if label not in chosen:
                continue
            argv = [*ours_argv, verb, str(root), *options]
            display = ["docker-forensics", verb, "ROOT", *options]
            if args.before and (label not in LIKE_FOR_LIKE or _knows(args.before)):
                before = Tool(f"b-{label}", argv, ["before:", *display])
                before.env = {"PYTHONPATH": str(Path(args.before).resolve())}
                ours.append(before)
            ours.append(Tool(label, argv, display))
        tools += ours
    else:
        say(f"ours: SKIPPED - {why}; measuring the peer alone")
    peer = Tool(
        "peer",
        peer_argv + ["-r", str(root), "list", "all_containers"],
        ["de.py", "-r", "ROOT", "list", "all_containers"],
    )
    tools.append(peer)
    if ours_argv and not args.no_anchor:
        listing, files, size = list_files_read(ours_argv, root, root.parent)
        say(f"anchor: the {files} files ({size} bytes) that verify reads, from its --sqlite run")
        anchor = Tool(
            "anchor",
            [sys.executable, "-c", ANCHOR_LOOP, str(listing), str(root)],
            ["anchor: open+read+close", "of", "the", "same", "files"],
        )
        rules = Tool(
            "rules",
            [sys.executable, "-c", RULES_LOOP, str(listing), str(root)],
            ["anchor", "with", "verify's", "system", "calls"],
        )
        tools += [anchor, rules]
        if args.rule_costs:
            without = [
                Tool(
                    f"-{rule}",
                    [sys.executable, "-c", RULES_LOOP, str(listing), str(root), rule],
                    ["anchor", "with", "verify's", "calls", "but", rule],
                )
                for rule in RULES
            ]
            tools += without
    say(f"ROOT = {root}  ({os.cpu_count()} CPUs, Python {sys.version.split()[0]})")
    run_all(tools, args.repeat, out_dir)
    say()
    table(tools, ours, peer, anchor, rules)
    say()
    for tool in ours:
        if tool.label.removeprefix("b-") == "verify":
            report_ours(tool)
        else:
            report_inventory(tool, args.containers)
    report_peer(peer, args.containers)
    if anchor and rules:
        report_anchor(anchor, files, size)
        report_anchor(rules, files, size)
        for tool in without:
            report_anchor(tool, files, size)
        report_rule_costs(rules, without)
    if not args.keep:
        shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
