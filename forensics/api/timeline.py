"""``timeline``: every time ROOT records, oldest first (rendered by :mod:`forensics.timeline`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from forensics.api.root import open_root
from forensics.stores import read_host

if TYPE_CHECKING:
    from forensics.timeline import Event


def timeline(root: str, *, file_times: bool = True) -> list[Event]:
    """The events of ROOT, oldest first, each with the file it comes from; ``file_times``: the
    modification times of Docker's records too, not only the times Docker wrote in them."""
    from forensics.timeline import build_timeline

    ev = open_root(root)
    return build_timeline(ev, read_host(ev), file_times=file_times)
