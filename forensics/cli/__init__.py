"""The command line: each command parses its arguments, calls one function of
:mod:`forensics.api`, renders what it returns, and returns the exit status.

Exit codes follow e2fsck: 0 clean, 1 repaired, 4 errors found, 8 operational error, 16 usage error,
32 interrupted. Only the requested output goes to stdout; progress and messages go to stderr.

The main command is :mod:`forensics.cli.app`; each verb has its module, imported when it runs
(``docker-forensics = "forensics.cli:main"``).
"""

from __future__ import annotations

# isort: off
# first of all, before the imports that take most of the start-up: Ctrl-C from here on exits 32
from forensics.interrupt import python_handles_interrupts

# isort: on
import sys
from pathlib import Path

from forensics.cli.app import cli, main

__all__ = ["cli", "main"]


def _run_as_the_program() -> bool:
    """True when this process is docker-forensics itself (its console script, the Docker CLI
    plugin, ``python -m forensics``), not a program that imports the library."""
    return Path(sys.argv[0] if sys.argv else "").name in ("docker-forensics", "__main__.py")


if not _run_as_the_program():
    python_handles_interrupts()  # a library import leaves Ctrl-C as Python has it
