"""Drivers that keep one plain directory per layer: vfs, btrfs and zfs (their rows in
:mod:`forensics.drivers`). None of them records parents on disk."""

from __future__ import annotations

from forensics.drivers import DriverLayout
from forensics.evidence import Evidence
from forensics.model import DriverDir, Host
from forensics.progress import track


def read_plain_dirs(ev: Evidence, host: Host, layout: DriverLayout) -> None:
    base = layout.layers
    entries = ev.scandir_types(base)
    for name in track(sorted(entries), "driver dirs"):
        rel = f"{base}/{name}"
        if entries[name] != "dir":
            host.add_leftover("driver-stray", rel)
            continue
        host.driver_dirs[name] = DriverDir(id=name, path=rel, has_diff=True)
