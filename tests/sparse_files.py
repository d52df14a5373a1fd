"""Where a sparse file holds data: the devicemapper samples' tests and the deep bench read the
pool's data file and the devices' images by these ranges (a 100 GiB device is mostly holes)."""

from __future__ import annotations

import os
from pathlib import Path


def data_extents(path: Path) -> list[tuple[int, int]]:
    """``(start, end)`` byte ranges of ``path`` that hold data (``SEEK_DATA``/``SEEK_HOLE``);
    the rest reads as zeros."""
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size, pos = os.fstat(fd).st_size, 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after pos
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end))
            pos = end
    finally:
        os.close(fd)
    return out
