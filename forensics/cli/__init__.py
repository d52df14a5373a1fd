"""The command line: each command parses its arguments, calls one function of
:mod:`forensics.api`, renders what it returns, and returns the exit status.

Exit codes follow e2fsck: 0 clean, 1 repaired, 4 errors found, 8 operational error, 16 usage error,
32 interrupted. Only the requested output goes to stdout; progress and messages go to stderr.

The main command is :mod:`forensics.cli.app` (click), imported by :func:`main` unless the
command line asks for the version alone; each verb has its module, imported when it runs
(``docker-forensics = "forensics.cli:main"``).
"""

from __future__ import annotations

# isort: off
# first of all, before the imports that take most of the start-up: Ctrl-C from here on exits 32
from forensics.interrupt import python_handles_interrupts

# isort: on
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forensics.cli.app import cli

__all__ = ["cli", "main"]

#: the command lines that ask for the version and nothing else (``forensics`` first: as a
#: Docker CLI plugin); click's ``--version`` says the same
_VERSION_ONLY = (["--version"], ["forensics", "--version"])


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns (and exits with) the e2fsck-style code
    (:func:`forensics.cli.app.main`). ``--version`` alone is answered without loading the
    command line."""
    args = sys.argv[1:] if argv is None else argv
    if args in _VERSION_ONLY:
        from forensics import __version__

        try:
            sys.stdout.write(f"docker-forensics, version {__version__}\n")
            sys.stdout.flush()
        except (AttributeError, OSError, ValueError):
            pass  # no standard output, or a closed one: the command line says so, as always
        else:
            sys.exit(0)
    from forensics.cli.app import main as run

    return run(argv)


def __getattr__(name: str) -> Any:
    if name == "cli":
        from forensics.cli.app import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _run_as_the_program() -> bool:
    """True when this process is docker-forensics itself (its console script, the Docker CLI
    plugin, ``python -m forensics``), not a program that imports the library."""
    return Path(sys.argv[0] if sys.argv else "").name in ("docker-forensics", "__main__.py")


if not _run_as_the_program():
    python_handles_interrupts()  # a library import leaves Ctrl-C as Python has it
