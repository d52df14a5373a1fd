"""The overlay2 driver (and fuse-overlayfs, which keeps the same layout).

``<id>/{diff/,link,lower,work/,merged/,committed}`` and ``l/<LINK> → ../<id>/diff``.
"""

from __future__ import annotations

from forensics.evidence import Evidence
from forensics.model import DriverDir, Host
from forensics.progress import track
from forensics.stores.reading import read_value


def read_overlay2(ev: Evidence, host: Host, base: str = "overlay2") -> None:
    entries = ev.scandir_types(base)
    for link in sorted(ev.listdir_or_empty(f"{base}/l")):
        host.links[link] = ev.readlink(f"{base}/l/{link}")
    for name in track(sorted(entries), "driver dirs"):
        if name == "l":
            continue
        rel = f"{base}/{name}"
        if entries[name] != "dir":
            host.add_leftover("driver-stray", rel)
            continue
        host.driver_dirs[name] = _read_layer_dir(ev, name, rel)


def _read_layer_dir(ev: Evidence, name: str, rel: str) -> DriverDir:
    entries = ev.scandir_types(rel)
    ddir = DriverDir(id=name, path=rel, has_diff=entries.get("diff") == "dir")
    ddir.committed = "committed" in entries
    if "link" in entries:
        ddir.link = read_value(ev, f"{rel}/link", ddir.problems, "link")
    if "lower" in entries:
        lower = read_value(ev, f"{rel}/lower", ddir.problems, "lower")
        ddir.lower = lower.split(":") if lower else None
    return ddir
