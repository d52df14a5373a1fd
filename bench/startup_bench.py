#!/usr/bin/env python3
"""Start-up of docker-forensics: ``--version``, ``--help`` and a verb's ``--help``, beside the
interpreter's own start-up, best and median of interleaved runs.

    python bench/startup_bench.py [--repeat 30] [--before DIR]

Each command is a fresh process of the console script beside ``sys.executable`` (no pyenv
shim); ``--before DIR`` also runs every command with ``PYTHONPATH=DIR`` (another checkout of the
project, the code before a change), interleaved with ours, so that both see the same load.
The anchors are the interpreter doing nothing (``python3 -c pass``: its start-up with the
environment's ``site``, which the console script pays too) and without ``site`` (``-S``).
hyperfine would do the same; this loop needs nothing installed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (("--version",), ("--help",), ("inventory", "--help"), ("thin", "--help"))


def console_script() -> str:
    beside = Path(sys.executable).parent / "docker-forensics"
    return str(beside) if beside.exists() else "docker-forensics"


def once(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--before", metavar="DIR", help="the code before, run interleaved")
    args = parser.parse_args(argv)
    here = str(Path(__file__).resolve().parent.parent)
    trees = [("ours", here)] + ([("before", args.before)] if args.before else [])
    runs: list[tuple[str, list[str], dict[str, str]]] = [
        ("python3 -c pass", [sys.executable, "-c", "pass"], dict(os.environ)),
        ("python3 -S -c pass", [sys.executable, "-S", "-c", "pass"], dict(os.environ)),
    ]
    for label, tree in trees:
        env = {**os.environ, "PYTHONPATH": tree}
        for command in COMMANDS:
            runs.append((f"{label}: {' '.join(command)}", [console_script(), *command], env))
    times: dict[str, list[float]] = {label: [] for label, _, _ in runs}
    for _ in range(args.repeat):
        for label, command_line, env in runs:
            times[label].append(once(command_line, env))
    load = os.getloadavg()[0]
    print(f"{args.repeat} runs each, interleaved; load average {load:.2f} at the end")
    print(f"{'command':<34} {'best s':>7} {'median s':>9}")
    for label, measured in times.items():
        print(f"{label:<34} {min(measured):>7.3f} {statistics.median(measured):>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
