"""What every command of the CLI shares: exit codes, the default ROOT, opening ROOT, writing
output. Kept apart from :mod:`forensics.cli` so that the sub-command modules (thin, repair) use
the same pieces without importing the main command and everything it loads."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from forensics.evidence import Evidence, RootError
from forensics.stores.dockerroot import judge_root

DEFAULT_ROOT = "/var/lib/docker"
#: e2fsck's exit codes
EXIT_OK = 0
EXIT_REPAIRED = 1
EXIT_ERRORS = 4
EXIT_OPERATIONAL = 8
EXIT_USAGE = 16
EXIT_INTERRUPTED = 32


class OperationalError(click.ClickException):
    """A failure that is not the user's syntax: ROOT unreadable, OUT not writable, …"""

    exit_code = EXIT_OPERATIONAL


def open_root(root: str, *, record_reads: bool = False) -> Evidence:
    """ROOT opened as evidence, once it is known to be a Docker root that can be read whole:
    a directory that is none (naming any Docker root below it), or one with parts that cannot
    be read, is an operational error rather than an empty, clean report."""
    try:
        ev = Evidence(root, record_reads=record_reads)
    except RootError as exc:
        raise OperationalError(str(exc)) from None
    try:
        complaint = judge_root(ev.root).complaint(root)
    except OSError as exc:  # ROOT went away or changed since it was opened
        raise OperationalError(f"{root}: {exc.strerror or exc}") from None
    if complaint is not None:
        raise OperationalError(complaint)
    return ev


def emit(text: str) -> None:
    """Write the requested output. A reader that went away (``| head``) does not change the exit
    status: the rest of the output is dropped."""
    try:
        sys.stdout.buffer.write(text.encode("utf-8", "backslashreplace"))
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def check_output_path(out: Path, root: Path, overwrite: bool) -> None:
    """An output file (``--sqlite OUT``) must lie outside ROOT, and exist only if replacing it
    was asked for."""
    target = out.resolve()
    if target == root or root in target.parents:
        raise click.UsageError(f"{out} is inside ROOT: nothing is ever written into the evidence")
    if target.exists() and not overwrite:
        raise OperationalError(f"{out} exists (use --overwrite to replace it)")
    if not target.parent.is_dir():
        raise OperationalError(f"{out.parent}: no such directory")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
