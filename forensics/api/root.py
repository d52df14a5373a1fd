"""What every command does first: ROOT opened as evidence, and its output files checked
before any work is done."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from forensics.drivers import CONTAINERD_META_DB, CONTAINERD_METADATA
from forensics.errors import OperationalError, UsageError

if TYPE_CHECKING:  # loaded when a command opens ROOT: ``thin`` never does (a quicker start)
    from forensics.evidence import Evidence
    from forensics.model import Host
    from forensics.stores.host import Scope

#: where warnings met on the way go (a line each)
Notify = Callable[[str], None]
#: where dockerd keeps its root unless told otherwise
DEFAULT_ROOT = "/var/lib/docker"


def open_root(
    root: str,
    *,
    record_reads: bool = False,
    pick: str | None = None,
    notify: Notify | None = None,
) -> Evidence:
    """ROOT opened as evidence, once it is known to be a Docker root that can be read whole:
    a directory that is none (naming any Docker root below it), or one with parts that cannot
    be read, is an operational error rather than an empty, clean report.

    ROOT may be a file: a tar archive or a disk image, read in place, in which the Docker root
    is located (``pick``, ``[VOLUME:]/PATH``, names one when several are found:
    :class:`~forensics.image.locate.SeveralDockerRoots` otherwise); which root was read, and
    what is wrong with the file's container, go to ``notify``."""
    from forensics.evidence import Evidence
    from forensics.stores.dockerroot import judge_root

    if _is_evidence_file(root):
        return _open_file_root(root, pick, record_reads, notify)
    if pick is not None:
        raise UsageError(
            f"--path picks a Docker root inside an archive or disk image; {root} is no file"
        )
    ev = Evidence(root, record_reads=record_reads)  # RootError: an operational error
    try:
        complaint = judge_root(ev.root).complaint(root)
    except OSError as exc:  # ROOT went away or changed since it was opened
        raise OperationalError(f"{root}: {exc.strerror or exc}") from None
    if complaint is not None:
        raise OperationalError(complaint)
    return ev


def _is_evidence_file(root: str) -> bool:
    """Whether ROOT is an archive or disk image (:func:`forensics.image.root.is_evidence_file`);
    a directory is none, and is told without loading the image and filesystem readers."""
    if os.path.isdir(root):
        return False
    from forensics.image.root import is_evidence_file

    return is_evidence_file(root)


#: problems of the evidence file's container said, at most
_PROBLEMS_SAID = 20


def _open_file_root(
    root: str, pick: str | None, record_reads: bool, notify: Notify | None
) -> Evidence:
    from forensics.image.root import open_file_root

    ev, origin = open_file_root(root, pick, record_reads=record_reads)
    ev.origin = origin
    if notify is not None:
        notify(origin.describe())
        for problem in origin.problems[:_PROBLEMS_SAID]:
            notify(f"warning: {root}: {problem}")
        if len(origin.problems) > _PROBLEMS_SAID:
            notify(f"warning: {root}: and {len(origin.problems) - _PROBLEMS_SAID} more problems")
    return ev


def refuse_incomplete(ev: Evidence) -> None:
    """A root read from an archive or disk image that the file does not hold whole — the
    archive ends early, or a part read met damage — is an operational error for a command whose
    output cannot name what is missing (inventory, timeline, diff), as a directory with parts
    that cannot be read is; ``verify`` names each such part (``layout.evidence-damaged``)."""
    origin = ev.origin
    if origin is None:
        return
    damage = sorted(getattr(ev, "damage", {}).items())
    if origin.incomplete is not None:
        why = origin.incomplete
    elif damage:
        rel, detail = damage[0]
        more = f" (and {len(damage) - 1} more)" if len(damage) > 1 else ""
        why = f"it holds {rel or '.'} damaged{more}: {detail}"
    else:
        return
    raise OperationalError(
        f"{origin.file}: {why}: this report would be incomplete; verify names what the file "
        "could not give"
    )


def refuse_file_root(root: str, command: str) -> None:
    """``command`` writes into ROOT: an archive or disk image is read in place, never written."""
    if _is_evidence_file(root):
        raise OperationalError(
            f"{root} is a file (an archive or disk image), which is read in place and never "
            f"written: {command} works on a directory (unpack or restore the root first, "
            "then repair the copy)"
        )


def open_containerd_root(path: str | None) -> Evidence | None:
    """The containerd root given with ``--containerd-root`` opened as evidence (None when none
    was given); a directory that holds no containerd metadata is an operational error."""
    if path is None:
        return None
    from forensics.evidence import Evidence
    from forensics.stores.containerd import find_containerd_root

    ev = Evidence(path)  # RootError: an operational error
    if find_containerd_root(ev) != "":
        raise OperationalError(f"{path}: not a containerd root (no {CONTAINERD_METADATA}/ in it)")
    return ev


def read_root(ev: Evidence, containerd: Evidence | None = None, scope: Scope | None = None) -> Host:
    """ROOT read whole (or what ``scope`` asks of it), with its containerd store. A containerd
    metadata database of which nothing can be read is an operational error naming it: none of
    the store's blobs and snapshots could be accounted for."""
    from forensics.stores.host import EVERYTHING, read_host

    host = read_host(ev, containerd, scope or EVERYTHING)
    ctd = host.containerd
    if ctd is not None and ctd.unreadable:
        db = f"{ctd.store.root}/{CONTAINERD_META_DB}" if ctd.store.root else CONTAINERD_META_DB
        shown = f"{ctd.location}/{CONTAINERD_META_DB}" if ctd.external else db
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
