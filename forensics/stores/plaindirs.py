"""Drivers that keep one plain directory per layer: vfs (``dir/<id>``), btrfs
(``subvolumes/<id>``) and zfs (``graph/<id>``). None of them records parents on disk."""

from __future__ import annotations

from forensics.evidence import Evidence
from forensics.model import DriverDir, Host
from forensics.progress import track

LAYER_DIRS = {"vfs": "vfs/dir", "btrfs": "btrfs/subvolumes", "zfs": "zfs/graph"}


def read_plain_dirs(ev: Evidence, host: Host, driver: str) -> None:
    base = LAYER_DIRS[driver]
    entries = ev.scandir_types(base)
    for name in track(sorted(entries), "driver dirs"):
        rel = f"{base}/{name}"
        if entries[name] != "dir":
            host.add_leftover("driver-stray", rel)
            continue
        host.driver_dirs[name] = DriverDir(id=name, path=rel, has_diff=True)
