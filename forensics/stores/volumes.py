"""Local volumes: ``volumes/<name>/_data`` (``metadata.db`` is a bbolt file, not read here)."""

from __future__ import annotations

from forensics.evidence import Evidence
from forensics.formats.ids import is_hex64
from forensics.model import Host, Volume

NOT_VOLUMES = {"metadata.db", "backingFsBlockDev"}


def read_volumes(ev: Evidence, host: Host) -> None:
    entries = ev.scandir_types("volumes")
    for name in sorted(entries):
        if name in NOT_VOLUMES or entries[name] != "dir":
            continue
        rel = f"volumes/{name}"
        volume = Volume(name=name, path=rel, anonymous=is_hex64(name))
        volume.has_data = ev.is_dir(f"{rel}/_data")
        host.volumes[name] = volume
