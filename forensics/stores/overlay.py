"""The overlay (v1) driver: ``<id>/root`` for image layers (a full copy of the rootfs),
``<id>/{upper,work,merged,lower-id}`` for container layers."""

from __future__ import annotations

from forensics.evidence import Evidence
from forensics.formats.ids import CACHE_ID
from forensics.model import DriverDir, Host
from forensics.progress import track
from forensics.stores.reading import checked_id, read_value


def read_overlay(ev: Evidence, host: Host, base: str = "overlay") -> None:
    entries = ev.scandir_types(base)
    for name in track(sorted(entries), "driver dirs"):
        rel = f"{base}/{name}"
        if entries[name] != "dir":
            host.add_leftover("driver-stray", rel)
            continue
        inner = ev.scandir_types(rel)
        ddir = DriverDir(id=name, path=rel)
        ddir.has_diff = inner.get("root") == "dir" or inner.get("upper") == "dir"
        if "lower-id" in inner:
            lower = read_value(ev, f"{rel}/lower-id", ddir.problems, "lower-id")
            lower = checked_id(lower, CACHE_ID, ddir.problems, "lower-id", f"{rel}/lower-id")
            ddir.lower = [lower] if lower else None
        host.driver_dirs[name] = ddir
