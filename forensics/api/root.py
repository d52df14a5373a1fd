"""What every command does first: ROOT opened as evidence, and its output files checked
before any work is done."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from forensics.errors import OperationalError, UsageError

if TYPE_CHECKING:  # loaded when a command opens ROOT: ``thin`` never does (a quicker start)
    from forensics.evidence import Evidence

#: where dockerd keeps its root unless told otherwise
DEFAULT_ROOT = "/var/lib/docker"


def open_root(root: str, *, record_reads: bool = False) -> Evidence:
    """ROOT opened as evidence, once it is known to be a Docker root that can be read whole:
    a directory that is none (naming any Docker root below it), or one with parts that cannot
    be read, is an operational error rather than an empty, clean report."""
    from forensics.evidence import Evidence
    from forensics.stores.dockerroot import judge_root

    ev = Evidence(root, record_reads=record_reads)  # RootError: an operational error
    try:
        complaint = judge_root(ev.root).complaint(root)
    except OSError as exc:  # ROOT went away or changed since it was opened
        raise OperationalError(f"{root}: {exc.strerror or exc}") from None
    if complaint is not None:
        raise OperationalError(complaint)
    return ev


def check_output_path(out: Path, root: Path, overwrite: bool) -> None:
    """An output file (``--sqlite OUT``) must lie outside ROOT, in a directory that exists, and
    may replace only a regular file, and that only when ``overwrite`` asks for it: a symlink,
    a device node, a FIFO, a socket or a directory at OUT is refused. Checked before the run,
    and again when the file is moved into place (:mod:`forensics.outfile`)."""
    from forensics.outfile import check_replaceable

    placed = Path(os.path.realpath(out.parent)) / out.name
    for target in (placed, Path(os.path.realpath(out))):  # a symlink at OUT into ROOT, too
        if target == root or root in target.parents:
            raise UsageError(f"{out} is inside ROOT: nothing is ever written into the evidence")
    if not placed.parent.is_dir():
        raise OperationalError(f"{out.parent}: no such directory")
    try:
        check_replaceable(placed, overwrite)
    except OSError as exc:
        raise OperationalError(f"{out}: {exc.strerror or exc}") from None
