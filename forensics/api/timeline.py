"""``timeline``: every time ROOT records, oldest first (rendered by :mod:`forensics.timeline`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from forensics.api.root import (
    Notify,
    open_containerd_root,
    open_root,
    read_root,
    refuse_incomplete,
)

if TYPE_CHECKING:
    from forensics.timeline import Event


def timeline(
    root: str,
    *,
    file_times: bool = True,
    containerd_root: str | None = None,
    pick: str | None = None,
    notify: Notify | None = None,
) -> list[Event]:
    """The events of ROOT, oldest first, each with the file it comes from; ``file_times``: the
    modification times of Docker's records too, not only the times Docker wrote in them;
    ``containerd_root``: the containerd root that goes with ROOT. ``pick`` and ``notify``: as
    for :func:`~forensics.api.root.open_root`."""
    from forensics.timeline import build_timeline

    ev = open_root(root, pick=pick, notify=notify)
    host = read_root(ev, open_containerd_root(containerd_root))
    events = build_timeline(ev, host, file_times=file_times)
    refuse_incomplete(ev)
    return events
