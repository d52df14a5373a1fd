"""BuildKit's state under ``buildkit/``: which driver directories are BuildKit's own.

dockerd's BuildKit keeps its snapshots as real driver directories that no layerdb entry names
(moby's builder-next snapshot adapter). Its ``snapshots.db`` is a bbolt file with one top-level
bucket per snapshot key: ``Prepare(key, parent)`` creates the driver directory ``key`` and the
bucket ``key`` holding ``parent``; ``Commit(name, key)`` creates the bucket ``name`` holding
``committed = key``, the driver directory's name. Those two are the snapshot → directory map.
BuildKit's other databases (cache records in ``metadata_v2.db``, leases in ``containerdmeta.db``,
the solver cache in ``cache.db``) name the same snapshot keys in their keys and values.

Every database is decoded (:mod:`forensics.formats.bbolt`): only live keys and values count,
never stale bytes of freed pages. A database that exists but cannot be read or decoded leaves
ownership in doubt; it is recorded in ``host.buildkit_damaged`` and reported
as ``buildkit.db-damaged``, and :func:`buildkit_doubt` tells the repair planner to touch no
unreferenced directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from forensics.evidence import Evidence, ReadFailure
from forensics.model import Host, Problem

if TYPE_CHECKING:  # the decoder loads numpy and construct: imported when a database exists
    from forensics.formats.bbolt import Entry

SNAPSHOTS_DB = "buildkit/snapshots.db"
#: BuildKit's databases that name snapshot keys (metadata.db: the cache metadata before v2)
OTHER_DBS = (
    "buildkit/metadata_v2.db",
    "buildkit/metadata.db",
    "buildkit/containerdmeta.db",
    "buildkit/cache.db",
)
SNAPSHOT_DBS = (SNAPSHOTS_DB, *OTHER_DBS)
DB_LIMIT = 512 * 1024 * 1024
#: the words a key or value is made of (snapshot keys are ``[a-z0-9]{25}`` ids, or digests)
_TOKEN = re.compile(rb"[A-Za-z0-9_.\-]+")


@dataclass
class BuildkitDbs:
    """What BuildKit's databases say: ``snapshot_dirs`` from snapshots.db's map, ``tokens`` every
    word of every live key and value, ``damaged`` the databases that exist but cannot be read or
    decoded (path → :class:`Problem`). Entries decoded before damage was met still count."""

    snapshot_dirs: set[str] = field(default_factory=set)
    tokens: set[str] = field(default_factory=set)
    damaged: dict[str, Problem] = field(default_factory=dict)
    #: databases that were decoded (wholly or up to the damage)
    read: list[str] = field(default_factory=list)


def read_buildkit(ev: Evidence, host: Host) -> None:
    host.buildkit_present = ev.is_dir("buildkit")


def read_buildkit_dbs(ev: Evidence) -> BuildkitDbs:
    """Decode every BuildKit database that exists under ROOT."""
    out = BuildkitDbs()
    for rel in SNAPSHOT_DBS:
        entries = _read_db(ev, rel, out)
        if entries is None:
            continue
        out.read.append(rel)
        for entry in entries:
            out.tokens.update(_tokens(entry))
        if rel == SNAPSHOTS_DB:
            out.snapshot_dirs.update(snapshot_dirs(entries))
    return out


def record_buildkit(ev: Evidence, host: Host, names: list[str]) -> None:
    """Fill ``host.buildkit_keys`` with those of ``names`` that BuildKit's databases name, and
    record each damaged database in ``host.buildkit_damaged``."""
    dbs = read_buildkit_dbs(ev)
    host.buildkit_keys = mentioned(dbs, names)
    host.buildkit_damaged = dict(dbs.damaged)


def buildkit_mentions(ev: Evidence, names: list[str]) -> set[str]:
    """Those of ``names`` that one of BuildKit's databases names: a snapshot's driver directory
    in snapshots.db, or a word of a live key or value of any of them."""
    if not names:
        return set()
    return mentioned(read_buildkit_dbs(ev), names)


def buildkit_damaged(ev: Evidence) -> dict[str, Problem]:
    """BuildKit's databases that exist but cannot be read or decoded (path → problem)."""
    return read_buildkit_dbs(ev).damaged


def buildkit_doubt(host: Host) -> str | None:
    """Why BuildKit may own an unreferenced driver directory that it seems not to name: one of
    its databases cannot be read or decoded. None when every database that exists was read."""
    if not host.buildkit_damaged:
        return None
    first = host.buildkit_damaged[min(host.buildkit_damaged)]
    return f"BuildKit's database {first.path} cannot be decoded ({first.detail})"


def mentioned(dbs: BuildkitDbs, names: list[str]) -> set[str]:
    return {n for n in names if n in dbs.snapshot_dirs or n in dbs.tokens}


def snapshot_dirs(entries: list[Entry]) -> set[str]:
    """The driver directories that snapshots.db maps snapshots to: a top-level bucket holding
    ``parent`` is a prepared snapshot's directory; ``committed`` names a committed one's."""
    out: set[str] = set()
    for entry in entries:
        if len(entry.bucket) != 1 or entry.is_bucket:
            continue
        if entry.key == b"parent":
            out.add(entry.bucket[0].decode("utf-8", "surrogateescape"))
        elif entry.key == b"committed" and entry.value:
            out.add(entry.value.decode("utf-8", "surrogateescape"))
    return out


def _read_db(ev: Evidence, rel: str, out: BuildkitDbs) -> list[Entry] | None:
    """The entries of database ``rel``; None when it does not exist or cannot be read at all.
    Damage is recorded in ``out.damaged``; the entries decoded before it are returned."""
    if ev.lstat(rel) is None:
        return None
    try:
        data = ev.read_bytes(rel, DB_LIMIT)
    except ReadFailure as failure:
        out.damaged[rel] = Problem(rel, failure.kind, failure.detail)
        return None
    from forensics.formats.bbolt import BoltDamage, open_bolt

    entries: list[Entry] = []
    try:
        db = open_bolt(data)
        entries.extend(db.entries())
    except BoltDamage as damage:
        out.damaged[rel] = Problem(rel, damage.kind, damage.detail)
        return entries
    if db.fell_back:
        newest = max(m.txid for m in db.metas)
        out.damaged[rel] = Problem(
            rel,
            "bad-meta",
            f"the meta page of transaction {newest} is damaged; read as of transaction "
            f"{db.meta.txid}, so what the lost transaction recorded is unknown",
        )
    return entries


def _tokens(entry: Entry) -> set[str]:
    words = set(_TOKEN.findall(entry.key))
    if not entry.is_bucket:
        words.update(_TOKEN.findall(entry.value))
    return {w.decode("ascii") for w in words}
