"""What every command does first: ROOT opened as evidence, and its output files checked
before any work is done."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from forensics.errors import OperationalError, UsageError

if TYPE_CHECKING:  # loaded when a command opens ROOT: ``thin`` never does (a quicker start)
    from forensics.evidence import Evidence
    from forensics.model import Host

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


def open_containerd_root(path: str | None) -> Evidence | None:
    """The containerd root given with ``--containerd-root`` opened as evidence (None when none
    was given); a directory that holds no containerd metadata is an operational error."""
    if path is None:
        return None
    from forensics.evidence import Evidence
    from forensics.stores.containerd import find_containerd_root

    ev = Evidence(path)  # RootError: an operational error
    if find_containerd_root(ev) != "":
        raise OperationalError(
            f"{path}: not a containerd root (no io.containerd.metadata.v1.bolt/ in it)"
        )
    return ev


def read_root(ev: Evidence, containerd: Evidence | None = None) -> Host:
    """ROOT read whole, with its containerd store. A containerd metadata database of which
    nothing can be read is an operational error naming it: none of the store's blobs and
    snapshots could be accounted for."""
    from forensics.stores import read_host
    from forensics.stores.containerd import META_DB

    host = read_host(ev, containerd)
    ctd = host.containerd
    if ctd is not None and ctd.unreadable:
        db = f"{ctd.store.root}/{META_DB}" if ctd.store.root else META_DB
        shown = f"{ctd.location}/{META_DB}" if ctd.external else db
        why = "; ".join(f"{p.kind}: {p.detail}" for p in ctd.store.problems if p.path == db)
        raise OperationalError(f"{shown}: containerd's metadata database cannot be read ({why})")
    return host


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
