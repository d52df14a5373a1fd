"""The containerd store in a repair plan (Docker 29's image store, or any containerd root).

What is planned, each only on containerd's own rule for it:

- **leftover snapshot directories**: ``snapshots/<n>/`` of a directory snapshotter whose
  ``metadata.db`` names no snapshot with id ``n`` — containerd's ``getCleanupDirectories``
  (``plugins/snapshots/overlay/overlay.go``) deletes exactly these at its next cleanup; here they
  are quarantined instead. Only while that database was read whole: a directory whose record
  may be among what could not be read is never moved.
- **stale ingests**: ``ingest/<hash>/`` of the content store that no live ingest record of
  ``meta.db`` names — the content store's cleanup aborts them. Only while ``meta.db`` was read
  whole, for the same reason.
- **a damaged bolt database** (``meta.db``, a snapshotter's ``metadata.db``): never rewritten in
  place. A salvaged copy (every bucket and key that can be read, as a valid bbolt file) is
  written into the quarantine run, with the steps that put it in place
  (:mod:`forensics.repair.boltcopy`), as for a thin pool's metadata.

Records inside ``meta.db`` (an expired ingest or lease, an unrecorded snapshot) are containerd's
collector's to remove: the database is never written. Paths are relative to the root the
store's findings are (``ev``): ROOT, or the containerd root given apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forensics.containerd_model import ContainerdHost, Snapshotter
from forensics.drivers import SNAPSHOTTERS
from forensics.evidence import Evidence, ReadFailure
from forensics.repair.actions import Action, Plan
from forensics.repair.planbase import (
    StorePlanner,
    ancestors,
    plural,
    quarantine_found,
    reason_of,
)
from forensics.report import Finding

#: the prefix of the containerd store's check ids
CONTAINERD_CHECKS = "containerd."
#: the salvaged copy of ``meta.db`` in the quarantine run
META_COPY = "meta.db.salvaged"
COPY_SUFFIX = "-metadata.db.salvaged"

ORPHAN_DIR_SAFETY = (
    "no snapshot of the snapshotter's database (read whole) has this id: containerd's own "
    "cleanup (getCleanupDirectories) deletes it; it is moved into the quarantine instead, and "
    "--undo puts it back"
)
INGEST_SAFETY = (
    "no live ingest record of meta.db (read whole) names this unfinished write: containerd's "
    "content cleanup aborts it and removes its directory; nothing reads it"
)
COPY_SAFETY = (
    "the database is only read: the salvaged copy is written into the quarantine run, and "
    "putting it in place is left to you (see the steps)"
)
LEFT_ALONE = {
    "containerd.db-fell-back": (
        "containerd opens it on its older meta page, as this tool did, and its next commit "
        "writes the damaged meta page afresh: nothing to copy"
    ),
    "containerd.snapshot-unrecorded": (
        "a record of the snapshotter's database: containerd removes it, with its directory, at "
        "its next cleanup; the database is never rewritten"
    ),
    "containerd.blob-unrecorded": (
        "containerd's content cleanup removes a blob no namespace records; left to it"
    ),
    "containerd.lease-expire-damaged": "a record of meta.db: never rewritten in place",
}
RECORD_INGEST = (
    "a record of meta.db: containerd's collector removes it at its next collection; meta.db is "
    "never rewritten in place"
)
NO_REPAIR = "no repair for this check in this version"


def is_containerd_finding(f: Finding) -> bool:
    return f.check.startswith(CONTAINERD_CHECKS)


class ContainerdPlanner(StorePlanner):
    """The plan of one containerd store's findings (those of :func:`is_containerd_finding`)."""

    def __init__(self, ev: Evidence, ctd: ContainerdHost, findings: list[Finding]) -> None:
        super().__init__(ev, [f for f in findings if is_containerd_finding(f)])
        self.ctd = ctd

    def plan(self) -> Plan:
        actions = self._snapshot_dirs() + self._ingest_dirs() + self._database_copies()
        self._say_left_alone(actions)
        return Plan(actions=actions, skipped=self.skipped)

    # -- snapshot directories ----------------------------------------------------------------

    def _snapshot_dirs(self) -> list[Action]:
        actions = []
        checks = ("containerd.snapshot-dir-orphan", "containerd.snapshot-dir-leftover")
        for f in (f for check in checks for f in self.by_check[check]):
            sn = self._snapshotter_of(f.path)
            name = f.path.rpartition("/")[2]
            kind = self._kind(f.path)
            if sn is None or name not in sn.dirs or kind is None:
                self._skip(f, "not a directory of a snapshotter this store read: left alone")
            elif not self._read_whole(sn.db_path):
                self._skip(f, f"{sn.db_path} was not read whole: ownership in doubt")
            elif name in {str(s.id) for s in sn.snapshots.values() if s.id is not None}:
                self._skip(f, f"snapshot id {name} is in the database now: left alone")
            else:
                found = sn.dirs[name]
                held = plural(found.files or 0, "file")
                actions.append(
                    quarantine_found(
                        f,
                        ORPHAN_DIR_SAFETY,
                        f"snapshot-dir {sn.name}/{name}",
                        kind=kind,
                        summary=f"a snapshot directory of {sn.name} that no snapshot owns ({held}, "
                        f"{found.size or 0} bytes)",
                    )
                )
        return actions

    def _snapshotter_of(self, path: str) -> Snapshotter | None:
        """The snapshotter whose layer directories ``path`` is among, when containerd itself
        deletes the ones without an id (the row's ``cleanup``)."""
        root, parent = self.ctd.store.root, path.rpartition("/")[0]
        for sn in self.ctd.store.snapshotters.values():
            row = SNAPSHOTTERS.get(sn.name)
            if row is None or not row.cleanup:
                continue
            if parent == (f"{root}/{row.layers}" if root else row.layers):
                return sn
        return None

    # -- ingests -----------------------------------------------------------------------------

    def _ingest_dirs(self) -> list[Action]:
        actions = []
        dirs = {i.path: i for i in self.ctd.store.ingests.values()}
        meta = self.ctd.store.meta.path if self.ctd.store.meta else ""
        for f in self.by_check["containerd.ingest-leftover"]:
            ingest = dirs.get(f.path)
            kind = self._kind(f.path)
            if ingest is None:
                self._skip(f, RECORD_INGEST if f.path == meta else NO_REPAIR)
            elif not meta or not self._read_whole(meta):
                self._skip(
                    f,
                    "meta.db was not read whole: the record of a live ingest may be among what "
                    "was lost, ownership in doubt",
                )
            elif kind is None:
                self._skip(f, "gone since it was read: left alone")
            else:
                actions.append(
                    quarantine_found(
                        f,
                        INGEST_SAFETY,
                        f"ingest {ingest.name}",
                        kind=kind,
                        summary=f"an unfinished write ({ingest.data_size or 0} bytes) that no "
                        "live ingest names",
                    )
                )
        return actions

    # -- damaged databases -------------------------------------------------------------------

    def _database_copies(self) -> list[Action]:
        from forensics.repair.boltcopy import BOLT_LIMIT, BoltCopyError, salvage_bolt

        actions = []
        for f in self.by_check["containerd.db-damaged"]:
            kind, target, sn = self._database(f.path)
            if target is None:
                self._skip(f, NO_REPAIR)
                continue
            if self._kind(f.path) != "file":
                self._skip(f, f"{f.path} is missing or no regular file: no copy can be made")
                continue
            floor = _dir_floor(sn) if sn is not None else 0
            try:
                salvage = salvage_bolt(self.ev.read_bytes(f.path, BOLT_LIMIT), kind, floor)
            except ReadFailure as exc:
                self._skip(f, f"{f.path} cannot be read ({exc.detail}): no copy can be made")
                continue
            except BoltCopyError as exc:
                self._skip(f, str(exc))
                continue
            carried = f"{plural(salvage.buckets, 'bucket')} and {plural(salvage.keys, 'key')}"
            details: dict[str, Any] = {
                "copy": target,
                **salvage.as_dict(),
                "copy_values": {"format": "bbolt", "kind": kind, "dir_floor": floor},
                "steps": install_steps(
                    self.ev.abspath(f.path), f"RUN/{target}", self.ev.root, sn is None
                ),
            }
            actions.append(
                Action(
                    "copy-out",
                    f.path,
                    reason_of(f, f"a salvaged copy: {carried} carried over"),
                    [f.check],
                    COPY_SAFETY,
                    f"database {f.path}",
                    kind="file",
                    target=target,
                    summary=f"a salvaged copy of {f.path.rpartition('/')[2]} ({carried}, "
                    f"{plural(len(salvage.lost), 'part')} unreadable)",
                    details=details,
                )
            )
        return actions

    def _database(self, path: str) -> tuple[Any, str | None, Snapshotter | None]:
        """What the damaged database at ``path`` is: (kind, copy name, its snapshotter)."""
        meta = self.ctd.store.meta
        if meta is not None and path == meta.path:
            return "meta", META_COPY, None
        for sn in self.ctd.store.snapshotters.values():
            if path == sn.db_path:
                return "snapshotter", f"{sn.name}{COPY_SUFFIX}", sn
        return "meta", None, None

    # -- helpers -----------------------------------------------------------------------------

    def _read_whole(self, db: str) -> bool:
        return not any(p.path == db for p in self.ctd.store.problems) and self._kind(db) == "file"

    def _say_left_alone(self, actions: list[Action]) -> None:
        covered = {a.path for a in actions if a.action == "quarantine"}
        copied = {(c, a.path) for a in actions if a.action == "copy-out" for c in a.checks}
        skipped = {(s.check, s.path) for s in self.skipped}
        for f in self.findings:
            if f.severity not in ("error", "warning") or (f.check, f.path) in skipped | copied:
                continue
            if any(a in covered for a in ancestors(f.path)):
                continue
            self._skip(f, LEFT_ALONE.get(f.check, NO_REPAIR))


def _dir_floor(sn: Snapshotter) -> int:
    """The highest snapshot directory number on disk."""
    return max((int(name) for name in sn.dirs if name.isdigit()), default=0)


def plan_containerd(ev: Evidence, ctd: ContainerdHost, findings: list[Finding]) -> Plan:
    """The repair plan of the containerd store ``ctd`` (read from ``ev``); reads only."""
    return ContainerdPlanner(ev, ctd, findings).plan()


# -- putting a salvaged copy in place -----------------------------------------------------------


def install_steps(
    db: str | Path, copy: str, root: str | Path, is_meta: bool
) -> list[dict[str, str]]:
    """The steps that put the salvaged copy ``copy`` in place of the database ``db`` of the
    store read from ``root``."""
    target = Path(db)
    what = "meta.db" if is_meta else "the snapshotter's metadata.db"
    return [
        {
            "what": "Stop dockerd (its own containerd stops with it) or the containerd that "
            "uses this root",
            "command": "systemctl stop docker containerd",
        },
        {"what": f"Keep the damaged {what}", "command": f"cp -p {target} {target}.before-repair"},
        {"what": "Put the salvaged copy in place", "command": f"cp {copy} {target}"},
        {
            "what": "Check the store, then start containerd (or dockerd) again",
            "command": f"docker-forensics verify {root}; systemctl start containerd docker",
        },
    ]
