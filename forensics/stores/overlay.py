"""The overlay (v1) driver: ``<id>/root`` for image layers (a full copy of the rootfs),
``<id>/{upper,work,merged,lower-id}`` for container layers (its row in
:mod:`forensics.drivers`)."""

from __future__ import annotations

from forensics.drivers import DriverLayout
from forensics.evidence import Evidence
from forensics.formats.ids import CACHE_ID
from forensics.model import DriverDir, Host
from forensics.progress import track
from forensics.stores.reading import checked_id, read_value


def read_overlay(ev: Evidence, host: Host, layout: DriverLayout) -> None:
    assert layout.content is not None and layout.upper is not None and layout.lower is not None
    base = layout.layers
    root, upper = layout.content.leaf, layout.upper.leaf
    lower_id, key = layout.lower.file.leaf, layout.lower.key
    entries = ev.scandir_types(base)
    for name in track(sorted(entries), "driver dirs"):
        rel = f"{base}/{name}"
        if entries[name] != "dir":
            host.add_leftover("driver-stray", rel)
            continue
        inner = ev.scandir_types(rel)
        ddir = DriverDir(id=name, path=rel)
        ddir.has_diff = inner.get(root) == "dir" or inner.get(upper) == "dir"
        if lower_id in inner:
            file = f"{rel}/{lower_id}"
            lower = read_value(ev, file, ddir.problems, key)
            lower = checked_id(lower, CACHE_ID, ddir.problems, key, file)
            ddir.lower = [lower] if lower else None
        host.driver_dirs[name] = ddir
