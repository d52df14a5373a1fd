"""BuildKit's state under ``buildkit/``.

BuildKit keeps snapshots as real driver directories that no layerdb entry names. Its snapshot
database is a bbolt file whose keys are stored verbatim in its leaf pages, so a driver directory
name that occurs in the file's bytes is (very likely) BuildKit's.
"""

from __future__ import annotations

from forensics.evidence import Evidence, ReadFailure
from forensics.model import Host

SNAPSHOT_DBS = ("buildkit/snapshots.db", "buildkit/containerdmeta.db", "buildkit/cache.db")
DB_LIMIT = 512 * 1024 * 1024


def read_buildkit(ev: Evidence, host: Host) -> None:
    host.buildkit_present = ev.is_dir("buildkit")


def buildkit_mentions(ev: Evidence, names: list[str]) -> set[str]:
    """Those of ``names`` that occur in one of BuildKit's databases."""
    if not names:
        return set()
    found: set[str] = set()
    for db in SNAPSHOT_DBS:
        try:
            data = ev.read_bytes(db, DB_LIMIT)
        except ReadFailure:
            continue
        found.update(n for n in names if n.encode() in data)
    return found
