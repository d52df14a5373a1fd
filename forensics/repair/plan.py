"""Findings and the host they were found on → a plan: the actions that repair them.

Each action names a path relative to ROOT, what is done to it (``quarantine``: moved whole into
the quarantine; ``relink``: a missing overlay2 ``l/`` link made again; ``rewrite``: a damaged file
replaced, its original quarantined), the findings it answers with their check ids, and why it is
safe. What the plan leaves alone it says so, with the reason (BuildKit's directories, directories
whose owner is in doubt, damage this version does not repair).

Whole units are planned together, in the order dockerd itself removes a container's read-write
layer (``layer_store.ReleaseRWLayer``: the driver directories, then the mount record; then
``cleanupContainer`` removes ``containers/<id>``). Every intermediate state is one that an
interrupted ``docker rm`` leaves and that dockerd starts with; a rerun completes it. The mount
record and its driver directories name each other, so no order can avoid a passing finding
about the unit itself between those steps (``mount.driver-dir-missing`` while the record waits
its turn), but no step ever produces a finding about anything outside the unit: a container's
directory goes last, so its mount record is never left without a container while it exists, and
a link goes after its directory, so a referenced layer never loses its link.
"""

from __future__ import annotations

import hashlib
import stat
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from forensics.checks.common import short
from forensics.evidence import Evidence, ReadFailure, type_of_mode
from forensics.formats.ids import LINK_ID, MOUNT_ID
from forensics.model import Host, Mount
from forensics.repair.linkgraph import LinkgraphError, purge_entities
from forensics.repair.poolcopy import POOL_COPY, PoolCopyError, install_steps, salvage_pool
from forensics.repair.tags import recover
from forensics.report import Finding
from forensics.stores.legacy import LINKGRAPH, LINKGRAPH_LIMIT

#: what a driver keeps of one layer or container directory, in the order its ``Remove`` deletes
#: them (aufs: mnt, diff, layers; devicemapper: the device record, then the mount point)
DRIVER_PARTS: dict[str, tuple[tuple[str, str], ...]] = {
    "overlay2": (("overlay2/{}", "directory"),),
    "overlay": (("overlay/{}", "directory"),),
    "aufs": (
        ("aufs/mnt/{}", "mount point"),
        ("aufs/diff/{}", "files"),
        ("aufs/layers/{}", "parent list"),
    ),  # fmt: skip
    "vfs": (("vfs/dir/{}", "directory"),),
    "devicemapper": (
        ("devicemapper/metadata/{}", "device record"),
        ("devicemapper/mnt/{}", "mount point"),
    ),  # fmt: skip
}
SUPPORTED_DRIVERS = tuple(DRIVER_PARTS)
BROKEN_CONTAINER = (
    "container.config-damaged",
    "container.config-missing",
    "container.hostconfig-damaged",
)
TRANSACTION_FILE = "devicemapper/metadata/transaction-metadata"
LINK_FILE_CHECKS = ("overlay2.link-missing", "overlay2.link-damaged")
LINK_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
LEFTOVER_CHECKS = {
    "layer.removing-leftover": (
        "dockerd ignores a *-removing layer directory and deletes it at shutdown: this is that "
        "clean-up, into the quarantine"
    ),
    "layer.tmp-leftover": (
        "an interrupted layer registration under layerdb/tmp: dockerd never reads it again"
    ),
}
LEFT_ALONE = {
    "driver.buildkit-dir": "BuildKit's own (named in its database): never touched",
    "driver.unknown-dir": (
        "not named like a layer of dockerd's, and maybe BuildKit's: ownership in doubt, never "
        "touched"
    ),
}


@dataclass
class Action:
    """One change to ROOT."""

    action: str  # quarantine, relink, rewrite, create
    path: str  # relative to ROOT
    reason: str
    checks: list[str]
    safety: str
    unit: str  # what the action belongs to: "container <id>", "driver-dir <id>", …
    kind: str | None = None  # what ``path`` is now: dir, file, symlink, other (None: absent)
    summary: str = ""  # the reason in a few words, for the text output
    target: str | None = None  # relink: the symlink's target
    content: bytes | None = None  # rewrite, create: the new contents
    mode: int | None = None  # rewrite, create: the new file's mode
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": self.action,
            "path": self.path,
            "reason": self.reason,
            "checks": self.checks,
            "safety": self.safety,
            "unit": self.unit,
            "summary": self.summary,
        }
        if self.kind is not None:
            out["kind"] = self.kind
        if self.target is not None:
            out["target"] = self.target
        if self.content is not None:
            out["sha256"] = hashlib.sha256(self.content).hexdigest()
        if self.details:
            out["details"] = self.details
        return out


@dataclass
class Skipped:
    """A finding the plan does not act on, and why."""

    check: str
    path: str
    why: str

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "path": self.path, "why": self.why}


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "actions": [a.as_dict() for a in self.actions],
            "skipped": [s.as_dict() for s in self.skipped],
        }


@dataclass
class _Part:
    path: str
    kind: str
    role: str
    safety: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Unit:
    """Actions that belong together (a container with its layers, an orphan with its link)."""

    name: str
    label: str  # for people: "container 87b3f612a130 (its config is truncated)"
    order: int
    primary: Finding
    parts: list[_Part] = field(default_factory=list)
    dirs: set[str] = field(default_factory=set)  # driver dirs it quarantines


class _Planner:
    def __init__(self, ev: Evidence, host: Host, findings: list[Finding]) -> None:
        self.ev, self.host, self.findings = ev, host, findings
        self.base = host.driver or "overlay2"
        self.by_check: dict[str, list[Finding]] = defaultdict(list)
        self.under: dict[str, list[Finding]] = defaultdict(list)  # path → findings at or below
        for f in findings:
            self.by_check[f.check].append(f)
            for ancestor in _ancestors(f.path):
                self.under[ancestor].append(f)
        self.owners = _owners(host)
        self.dirs_by_link: dict[str, list[str]] = defaultdict(list)
        for ddir in host.driver_dirs.values():
            if ddir.link:
                self.dirs_by_link[ddir.link].append(ddir.id)
        self.lower_users = _lower_users(host)
        self.skipped: list[Skipped] = []
        self.answered: set[tuple[str, str]] = set()  # findings answered besides action paths

    # -- the plan ----------------------------------------------------------------------------

    def plan(self) -> Plan:
        units = self._container_units() + self._mount_units() + self._orphan_units()
        units = self._keep_lower_layers(units)
        removed = {d for u in units for d in u.dirs}
        purged = {
            u.name.split()[1]: u.primary.check for u in units if u.name.startswith("container ")
        }
        actions = self._rewrite_repositories() + self._rewrite_linkgraph(purged)
        actions += self._link_files(removed) + self._relinks(removed)
        for unit in sorted(units, key=lambda u: u.order):
            actions += self._unit_actions(unit)
        actions += self._orphan_links(removed) + self._leftovers() + self._empty_layer_dirs()
        actions += self._mnt_orphans()
        actions += self._settle_transaction({a.path for a in actions})
        actions += self._pool_copy()
        self._say_left_alone(actions)
        return Plan(actions=actions, skipped=self.skipped)

    # -- a container or mount record, whole --------------------------------------------------

    def _container_units(self) -> list[_Unit]:
        units = []
        seen: set[str] = set()
        for f, cid, why in self._broken_containers():
            container = self.host.containers.get(cid)
            if container is None or cid in seen:
                continue
            seen.add(cid)
            unit = _Unit(f"container {cid}", f"container {short(cid)}", 1, f)
            if self.host.layout == "legacy":
                if not self._add_legacy_rw_layer(unit, cid):
                    continue
            elif not self._add_rw_layer(unit, cid, self.host.mounts.get(cid)):
                continue
            unit.parts.append(_Part(container.path, "dir", "the directory", why))
            units.append(unit)
        return units

    def _broken_containers(self) -> Iterator[tuple[Finding, str, str]]:
        """(finding, container id, why moving it whole is safe) of every container to remove:
        those dockerd cannot load, and on devicemapper those whose thin device is gone from
        the pool (dockerd loads them but can neither start nor remove them)."""
        for check in BROKEN_CONTAINER:
            for f in self.by_check[check]:
                yield f, f.object_id or "", _UNLOADABLE_SAFETY
        for f in self.by_check["thinpool.device-missing"]:
            cid = self._container_of_device(f.object_id or "")
            if cid is not None:
                yield f, cid, _DEVICELESS_SAFETY

    def _container_of_device(self, name: str) -> str | None:
        if self.host.layout == "legacy":
            cid = name.removesuffix("-init")
            return cid if cid in self.host.containers else None
        for mount in self.host.mounts.values():
            if (
                name in (mount.mount_id, mount.init_id)
                and mount.container_id in self.host.containers
            ):
                return mount.container_id
        return None

    def _add_legacy_rw_layer(self, unit: _Unit, cid: str) -> bool:
        """A legacy container's driver dirs are named after it: ``<id>`` and ``<id>-init``."""
        for name, role in ((cid, "the read-write layer"), (f"{cid}-init", "the init layer")):
            if name not in self.host.driver_dirs:
                continue
            others = self.owners.get(name, set()) - {f"mount:{cid}", f"init:{cid}"}
            if others:
                self._skip(
                    unit.primary,
                    f"{self.host.driver_dirs[name].path} is also referenced by "
                    f"{', '.join(sorted(others))}: ownership in doubt, the container is left alone",
                )
                return False
            self._add_dir(unit, name, role, _RW_SAFETY)
        return True

    def _mount_units(self) -> list[_Unit]:
        units = []
        for f in self.by_check["mount.container-missing"]:
            cid = f.object_id or ""
            mount = self.host.mounts.get(cid)
            if mount is None:
                continue
            if self.ev.lstat(f"containers/{cid}") is not None:
                self._skip(f, f"containers/{cid} exists but is no container directory: left alone")
                continue
            unit = _Unit(f"mount {cid}", f"the removed container {short(cid)}", 2, f)
            if self._add_rw_layer(unit, cid, mount):
                units.append(unit)
        return units

    def _add_rw_layer(self, unit: _Unit, cid: str, mount: Mount | None) -> bool:
        """Add a container's driver dirs, their links and its mount record to ``unit``, in
        dockerd's order. False (and the finding skipped) when ownership is in doubt."""
        if mount is None:
            return True
        if "dir" in mount.problems:
            kind = self._kind(mount.path)
            if kind is not None:
                unit.parts.append(_Part(mount.path, kind, "the mount record", _RECORD_SAFETY))
            return True
        for name, role in self._rw_dirs(mount):
            others = self.owners.get(name, set()) - {f"mount:{cid}", f"init:{cid}"}
            if others:
                self._skip(
                    unit.primary,
                    f"{self.base}/{name} is also referenced by {', '.join(sorted(others))}: "
                    "ownership in doubt, the container is left alone",
                )
                return False
            self._add_dir(unit, name, role, _RW_SAFETY)
        unit.parts.append(_Part(mount.path, "dir", "the mount record", _RECORD_SAFETY))
        return True

    def _rw_dirs(self, mount: Mount) -> list[tuple[str, str]]:
        """The container's driver dirs that exist: its RW layer, then its init layer."""
        out = []
        rw = mount.mount_id if mount.mount_id and MOUNT_ID.fullmatch(mount.mount_id) else None
        init = mount.init_id if mount.init_id and MOUNT_ID.fullmatch(mount.init_id) else None
        if init is None and rw and not rw.endswith("-init") and "init-id" not in mount.problems:
            init = f"{rw}-init"  # no init-id file: the daemon's own naming
        for name, role in ((rw, "the read-write layer"), (init, "the init layer")):
            if name and name in self.host.driver_dirs:
                out.append((name, role))
        return out

    def _add_dir(self, unit: _Unit, name: str, role: str, safety: str) -> None:
        ddir = self.host.driver_dirs[name]
        parts = DRIVER_PARTS[self.base]
        for template, what in parts:
            path = template.format(name)
            kind = self._kind(path)
            if kind is None:
                continue
            details = self._device_details(name) if path == ddir.path else {}
            label = role if len(parts) == 1 else f"{role} ({what})"
            unit.parts.append(_Part(path, kind, label, safety, details))
        unit.dirs.add(name)
        if self.base != "overlay2":
            return
        link = ddir.link
        if link and LINK_ID.fullmatch(link) and self.host.links.get(link) == f"../{name}/diff":
            unit.parts.append(
                _Part(
                    f"{self.base}/l/{link}",
                    "symlink",
                    f"the short link of {short(name)}",
                    "a symlink to the quarantined directory's diff/: moved, never followed",
                )
            )

    # -- orphans -----------------------------------------------------------------------------

    def _orphan_units(self) -> list[_Unit]:
        doubt = _ownership_doubt(self.host)
        units = []
        for f in self.by_check["driver.orphan-dir"]:
            name = f.object_id or ""
            if name not in self.host.driver_dirs:
                continue
            if doubt:
                self._skip(f, f"ownership in doubt: {doubt}")
                continue
            unit = _Unit(f"driver-dir {name}", "", 3, f)
            self._add_dir(unit, name, "an orphan driver directory", _ORPHAN_SAFETY)
            units.append(unit)
        return units

    def _keep_lower_layers(self, units: list[_Unit]) -> list[_Unit]:
        """Drop units whose directories another directory that stays still stacks on (its link
        is in that directory's ``lower``), until no such unit is left."""
        active = list(units)
        while True:
            removed = {d for u in active for d in u.dirs}
            keep = []
            for unit in active:
                users = self._stacked_on(unit.dirs) - removed
                if users:
                    self._skip(
                        unit.primary,
                        f"{', '.join(sorted(f'{self.base}/{u}' for u in users))} still stacks on "
                        "it (its link is in their lower file): left alone",
                    )
                else:
                    keep.append(unit)
            if len(keep) == len(active):
                return keep
            active = keep

    def _stacked_on(self, dirs: set[str]) -> set[str]:
        """Driver dirs whose lower list names one of ``dirs`` (overlay2 by link id, aufs and
        overlay by directory name; vfs and devicemapper layers are full copies)."""
        users: set[str] = set()
        for name in dirs:
            link = self.host.driver_dirs[name].link
            if link:
                users |= self.lower_users.get(link, set())
            if self.base in ("aufs", "overlay"):
                users |= self.lower_users.get(name, set())
        return users

    def _orphan_links(self, removed: set[str]) -> list[Action]:
        actions = []
        for f in self.by_check["overlay2.link-orphan"]:
            if (f.check, f.path) in self.answered:
                continue
            link = f.path.rsplit("/", 1)[-1]
            target = self.host.links.get(link)
            owner = _link_owner(target)
            if owner is None:
                self._skip(f, "not a symlink of the form ../<id>/diff: left alone")
            elif owner in removed:
                continue  # quarantined with its directory
            elif self.ev.lstat(f"{self.base}/{owner}") is not None:
                self._skip(f, f"its target {self.base}/{owner} exists: left alone")
            else:
                actions.append(
                    Action(
                        "quarantine",
                        f.path,
                        _reason(f, "a short link whose layer directory is gone"),
                        [f.check],
                        f"points to {target!r}, which does not exist: no layer can use it",
                        f"link {link}",
                        kind="symlink",
                        summary="a short link whose layer directory is gone",
                    )
                )
        return actions

    # -- relink ------------------------------------------------------------------------------

    def _relinks(self, removed: set[str]) -> list[Action]:
        actions = []
        for f in self.by_check["overlay2.link-dangling"]:
            name = f.object_id or ""
            ddir = self.host.driver_dirs.get(name)
            if ddir is None or name in removed:
                continue
            link = ddir.link or ""
            why = self._relink_refusal(name, link)
            if why:
                self._skip(f, why)
                continue
            actions.append(self._relink_action(f, name, link, f"recreated from {ddir.path}/link"))
        return actions

    def _relink_action(self, f: Finding, name: str, link: str, how: str) -> Action:
        return Action(
            "relink",
            f"{self.base}/l/{link}",
            _reason(f, how),
            [f.check],
            "makes the link overlay2 made for this layer, from the layer's own link file (as "
            "containers/storage does); nothing that exists is changed",
            f"driver-dir {name}",
            target=f"../{name}/diff",
            summary=f"the missing short link of layer directory {short(name)}",
        )

    def _relink_refusal(self, name: str, link: str) -> str | None:
        ddir = self.host.driver_dirs[name]
        if not LINK_ID.fullmatch(link):
            return "the layer's link file holds no valid link id: nothing to link"
        if not ddir.has_diff:
            return f"{ddir.path}/diff is missing: a link to it would dangle"
        if link in self.host.links or self.ev.lstat(f"{self.base}/l/{link}") is not None:
            return f"{self.base}/l/{link} exists and points elsewhere: left alone"
        if not self.ev.is_dir(f"{self.base}/l"):
            return f"{self.base}/l is no directory: left alone"
        sharing = [d for d in self.dirs_by_link.get(link, []) if d != name]
        if sharing:
            return f"{self.base}/{sharing[0]} has the same link id: ownership in doubt"
        return None

    # -- legacy names ------------------------------------------------------------------------

    def _rewrite_linkgraph(self, purged: dict[str, str]) -> list[Action]:
        """One rewrite of ``linkgraph.db`` without the names and links of the containers that
        are quarantined and of those that no longer exist (dockerd's ``Purge``)."""
        if self.host.layout != "legacy":
            return []
        stale = {
            e for e, _, _ in self.host.link_edges if e != "0" and e not in self.host.containers
        }
        named = {e for e, _, _ in self.host.link_edges} | {p for _, p, _ in self.host.link_edges}
        entities = (purged.keys() & named) | stale
        findings = self.by_check["linkgraph.container-missing"]
        if not entities:
            return []
        if self._kind(LINKGRAPH) != "file":
            for f in findings:
                self._skip(f, f"{LINKGRAPH} is no regular file: left alone")
            return []
        try:
            new, removed = purge_entities(self.ev.read_bytes(LINKGRAPH, LINKGRAPH_LIMIT), entities)
        except (ReadFailure, LinkgraphError) as exc:
            for f in findings:
                self._skip(f, f"{LINKGRAPH} {exc}: left alone")
            return []
        for f in findings:
            self.answered.add((f.check, f.path))
        names = [f"{'' if p == '0' else short(p) + '/'}{n} -> {short(e)}" for e, p, n in removed]
        return [
            Action(
                "rewrite",
                LINKGRAPH,
                f"{', '.join(names)} taken out, as dockerd's containerGraph.Purge does when it "
                "removes a container",
                sorted({f.check for f in findings} | {purged[e] for e in entities & purged.keys()}),
                "only the rows of containers that are gone or quarantined are deleted (in a copy "
                "in memory, checked with SQLite's integrity check); the original is quarantined",
                "linkgraph",
                kind="file",
                summary=f"{_n(len(removed), 'name')} of removed containers taken out",
                content=new,
                mode=self._mode(LINKGRAPH),
                details={"removed": names},
            )
        ]

    # -- devicemapper ------------------------------------------------------------------------

    def _device_details(self, name: str) -> dict[str, Any]:
        """For a device record: the thin device it names, which stays in the pool."""
        device = self.host.devices.get(name)
        ds = self.host.deviceset
        if self.base != "devicemapper" or device is None or device.device_id is None:
            return {}
        pool = ds.pool if ds is not None else None
        if pool is None or not pool.readable or device.device_id not in pool.devices:
            return {"pool_device": device.device_id, "in_pool": False}
        return {
            "pool_device": device.device_id,
            "in_pool": True,
            "reclaim": (
                f"thin device {device.device_id} stays in the pool (its metadata is never "
                "rewritten here): with the pool active and dockerd stopped, "
                f"'dmsetup message <pool> 0 \"delete {device.device_id}\"' frees its blocks "
                "(<pool>: the docker-…-pool of 'dmsetup ls')"
            ),
        }

    def _mnt_orphans(self) -> list[Action]:
        actions = []
        for f in self.by_check["devicemapper.mnt-orphan"]:
            kind = self._kind(f.path)
            if kind != "dir":
                self._skip(f, f"not a directory ({kind or 'absent'}): left alone")
                continue
            actions.append(
                Action(
                    "quarantine",
                    f.path,
                    _reason(f),
                    [f.check],
                    "the mount point of a device that has no record: dockerd never uses it",
                    f"mount point {f.object_id}",
                    kind=kind,
                    summary="a mount point without a device record",
                )
            )
        return actions

    def _settle_transaction(self, planned: set[str]) -> list[Action]:
        """A pending devicemapper transaction settled as dockerd's rollbackTransaction does,
        where that needs no live pool: the device it created is not in the pool, so its record
        and the transaction file go (dockerd then finds no open transaction)."""
        findings = self.by_check["thinpool.transaction-pending"]
        findings += self.by_check["devicemapper.transaction-pending"]
        ds = self.host.deviceset
        if not findings or ds is None:
            return []
        pool = ds.pool
        device_id = ds.transaction_device_id
        if pool is None or not pool.readable or pool.damaged or device_id is None:
            for f in findings:
                self._skip(f, "the pool's metadata cannot be read cleanly: dockerd settles it")
            return []
        if device_id in pool.devices:
            for f in findings:
                self._skip(
                    f,
                    f"thin device {device_id} is in the pool: dockerd deletes it and its record "
                    "when it starts (that needs the live pool)",
                )
            return []
        checks = sorted({f.check for f in findings})
        actions = []
        record = f"devicemapper/metadata/{ds.transaction_hash}" if ds.transaction_hash else None
        if record and self._kind(record) == "file" and record not in planned:
            actions.append(
                Action(
                    "quarantine",
                    record,
                    _reason(findings[0], f"the record of device {device_id}"),
                    checks,
                    f"the record of thin device {device_id}, which the pool does not have: the "
                    "unfinished transaction's device; dockerd removes this record itself",
                    "transaction",
                    kind="file",
                    summary=f"the record of the never-created device {device_id}",
                )
            )
        actions.append(
            Action(
                "quarantine",
                TRANSACTION_FILE,
                _reason(findings[0], "the transaction is closed"),
                checks,
                "dockerd removes this file when it rolls a transaction back; without it, it "
                "finds no open transaction",
                "transaction",
                kind=self._kind(TRANSACTION_FILE),
                summary=f"the open transaction {ds.open_transaction_id}, settled",
            )
        )
        return actions

    def _pool_copy(self) -> list[Action]:
        """Damaged pool metadata: a repaired copy written into the quarantine run (never over
        the original), with the steps that put it in place."""
        findings = self.by_check["thinpool.damaged"] + self.by_check["thinpool.unreadable"]
        ds = self.host.deviceset
        if not findings or ds is None or ds.pool is None:
            return []
        path = ds.pool.path
        if self._kind(path) != "file":
            for f in findings:
                self._skip(f, f"{path} is no regular file: no copy can be made")
            return []
        try:
            salvage, overrides = salvage_pool(self.ev.abspath(path), self.host)
        except PoolCopyError as exc:
            for f in findings:
                self._skip(f, str(exc))
            return []
        summary = salvage.summary
        details: dict[str, Any] = {
            "copy": POOL_COPY,
            "devices": len(summary.devices),
            "mappings": summary.mappings_written,
            "losses": summary.losses,
            "lost": summary.lost + [n for d in summary.devices for n in d.notes if not d.complete],
            "steps": [
                s.as_dict() for s in install_steps(self.ev.abspath(path), f"RUN/{POOL_COPY}")
            ],
        }
        if overrides:
            details["superblock_from_docker"] = overrides
        loss = "with losses" if summary.losses else "nothing lost"
        what = f"{_n(len(summary.devices), 'device')}, {summary.mappings_written} mappings, {loss}"
        return [
            Action(
                "copy-out",
                path,
                _reason(findings[0], f"a repaired copy: {what}"),
                sorted({f.check for f in findings}),
                "the pool's metadata is only read: the repaired copy is written into the "
                "quarantine run, and putting it in place is left to you (see the steps)",
                "pool",
                kind="file",
                target=POOL_COPY,
                summary=f"a repaired copy of the thin pool's metadata ({what})",
                details=details,
            )
        ]

    # -- link files --------------------------------------------------------------------------

    def _link_files(self, removed: set[str]) -> list[Action]:
        """A layer directory whose ``link`` file is missing or damaged gets it back: with the
        id its ``l/`` symlink or its children's ``lower`` files still name, else a new one."""
        actions: list[Action] = []
        for check in LINK_FILE_CHECKS:
            for f in self.by_check[check]:
                name = f.object_id or ""
                if name not in self.host.driver_dirs or name in removed:
                    continue
                actions += self._link_file_actions(f, name)
        return actions

    def _link_file_actions(self, f: Finding, name: str) -> list[Action]:
        ddir = self.host.driver_dirs[name]
        rel = f"{ddir.path}/link"
        kind = self._kind(rel)
        if kind not in (None, "file"):
            self._skip(f, f"{rel} is a {kind}, not a file: left alone")
            return []
        link, source = self._recover_link_id(name)
        if link is None:
            self._skip(f, source)
            return []
        new_link = link not in self.host.links
        if new_link and not ddir.has_diff:
            self._skip(f, f"{ddir.path}/diff is missing: a link to it would dangle")
            return []
        checks = [f.check]
        for orphan in self.by_check["overlay2.link-orphan"]:
            if orphan.path == f"{self.base}/l/{link}":
                self.answered.add((orphan.check, orphan.path))
                checks.append(orphan.check)
        what = f"link id {link}, {source}"
        action = Action(
            "rewrite" if kind else "create",
            rel,
            _reason(f, what),
            sorted(checks),
            "overlay2 reads a layer's link file to stack other layers on it; the file gets the "
            "id that still names the layer"
            + ("" if kind is None else ", the original is quarantined"),
            f"driver-dir {name}",
            kind=kind,
            summary=f"the link file of layer directory {short(name)}: {what}",
            content=link.encode(),
            mode=0o644,
            details={"link": link, "from": source},
        )
        actions = [action]
        if new_link:
            actions.append(self._relink_action(f, name, link, "made with the new link file"))
        return actions

    def _recover_link_id(self, name: str) -> tuple[str | None, str]:
        """(link id, where it comes from), or (None, why none can be trusted)."""
        target = f"../{name}/diff"
        pointing = sorted(k for k, v in self.host.links.items() if v == target)
        if len(pointing) > 1:
            return None, f"{len(pointing)} links in {self.base}/l point to it: ownership in doubt"
        if pointing:
            return pointing[0], f"from {self.base}/l/{pointing[0]}, which points to its diff/"
        named = self._links_named_by_children(name)
        if len(named) > 1:
            return None, "its children's lower files name different links: in doubt"
        if named:
            (link,) = named
            if link in self.host.links:
                return None, f"{self.base}/l/{link} points elsewhere: in doubt"
            return link, "from the lower files of the layers stacked on it"
        if self._children(name):
            return None, "layers stacked on it name no link: in doubt"
        return self._new_link_id(name), "a new id (nothing names the old one)"

    def _children(self, name: str) -> list[str]:
        """Driver dirs stacked directly on ``name`` (layers and init layers)."""
        layers = {lay.id for lay in self.host.layers.values() if lay.cache_id == name}
        out = [lay.cache_id for lay in self.host.layers.values()
               if lay.parent in layers and lay.cache_id]  # fmt: skip
        for mount in self.host.mounts.values():
            if mount.parent in layers:
                out.append(mount.init_id or f"{mount.mount_id}-init")
        if name.endswith("-init"):
            out.append(name.removesuffix("-init"))
        return [d for d in out if d in self.host.driver_dirs]

    def _links_named_by_children(self, name: str) -> set[str]:
        named = set()
        for child in self._children(name):
            lower = self.host.driver_dirs[child].lower or []
            if lower and lower[0].startswith("l/"):
                named.add(lower[0].removeprefix("l/"))
        return {n for n in named if LINK_ID.fullmatch(n)}

    def _new_link_id(self, name: str) -> str:
        """A link id of overlay2's form, derived from the directory name (so that two dry runs
        print the same plan) and not used yet."""
        seed = name.encode()
        while True:
            digest = hashlib.sha256(seed).digest()
            link = "".join(LINK_ALPHABET[b % 32] for b in digest[:26])
            if link not in self.host.links and link not in self.dirs_by_link:
                return link
            seed = digest

    # -- empty layer directories -------------------------------------------------------------

    def _empty_layer_dirs(self) -> list[Action]:
        actions = []
        for f in self.by_check["layer.empty-dir"]:
            layer = self.host.layers.get(f.object_id or "")
            problem = layer.problems.get("dir") if layer else None
            if problem is None or problem.damage != "empty" or self._kind(f.path) != "dir":
                self._skip(f, "not an empty directory: left alone")
                continue
            actions.append(
                Action(
                    "quarantine",
                    f.path,
                    _reason(f, "an empty layer directory"),
                    [f.check],
                    "it holds nothing: dockerd cannot load it, and while it exists a pull of "
                    "the layer fails ('file exists')",
                    f"layer {f.object_id}",
                    kind="dir",
                    summary="an empty layer directory (an interrupted pull)",
                )
            )
        return actions

    # -- leftovers and the tag store ---------------------------------------------------------

    def _leftovers(self) -> list[Action]:
        actions = []
        for check, safety in LEFTOVER_CHECKS.items():
            for f in self.by_check[check]:
                kind = self._kind(f.path)
                if kind is None:
                    continue
                actions.append(
                    Action(
                        "quarantine",
                        f.path,
                        _reason(f),
                        [f.check],
                        safety,
                        f"leftover {f.path}",
                        kind=kind,
                        summary=f.message,
                    )  # fmt: skip
                )
        return actions

    def _rewrite_repositories(self) -> list[Action]:
        actions = []
        for f in self.by_check["repositories.damaged"]:
            kind = self._kind(f.path)
            if kind is None or f.path != self.host.references_path:
                continue
            try:
                damaged: bytes | None = self.ev.read_bytes(f.path)
            except ReadFailure:
                damaged = None
            rec = recover(self.host, damaged)
            counts = f"{_n(len(rec.references), 'reference')} kept, {len(rec.lost)} lost"
            details = {
                "kept": {ref: {"image": image, "from": rec.sources[ref]}
                         for ref, image in sorted(rec.references.items())},
                "lost": rec.lost,
            }  # fmt: skip
            mode = self._mode(f.path)
            actions.append(
                Action(
                    "rewrite",
                    f.path,
                    _reason(f, counts),
                    [f.check],
                    "dockerd does not start on a tag store it cannot parse; the new file holds "
                    "only references to images that exist, and the original is quarantined",
                    "repositories",
                    kind=kind,
                    summary=f"a tag store dockerd cannot parse ({f.damage}): {counts}",
                    content=rec.document(),
                    mode=mode,
                    details=details,
                )
            )
        return actions

    # -- helpers -----------------------------------------------------------------------------

    def _unit_actions(self, unit: _Unit) -> list[Action]:
        actions = []
        for part in unit.parts:
            answered = self._answered(part.path)
            checks = sorted({f.check for f in answered} | {unit.primary.check})
            what = f"{part.role} of {unit.label}" if unit.label else part.role
            actions.append(
                Action(
                    "quarantine",
                    part.path,
                    _reason(unit.primary, what),
                    checks,
                    part.safety,
                    unit.name,
                    kind=part.kind,
                    summary=what,
                    details=part.details,
                )
            )
        return actions

    def _answered(self, path: str) -> list[Finding]:
        return self.under.get(path, [])

    def _say_left_alone(self, actions: list[Action]) -> None:
        """Every warning or error no action answers is listed with the reason."""
        covered = {a.path for a in actions}
        removed = {a.unit.rpartition(" ")[2] for a in actions if a.action == "quarantine"}
        skipped = {(s.check, s.path) for s in self.skipped}
        for f in self.findings:
            if (f.check, f.path) in skipped | self.answered or any(
                a in covered for a in _ancestors(f.path)
            ):
                continue
            if f.check in LEFT_ALONE:
                self._skip(f, LEFT_ALONE[f.check])
            elif f.severity in ("error", "warning") and f.object_id not in removed:
                # (a finding about an object whose unit is quarantined is answered by it)
                self._skip(f, "no repair for this check in this version")

    def _skip(self, f: Finding, why: str) -> None:
        self.skipped.append(Skipped(f.check, f.path, why))

    def _kind(self, rel: str) -> str | None:
        st = self.ev.lstat(rel)
        return None if st is None else type_of_mode(st.st_mode)

    def _mode(self, rel: str) -> int:
        st = self.ev.lstat(rel)
        return stat.S_IMODE(st.st_mode) if st is not None and stat.S_ISREG(st.st_mode) else 0o600


_UNLOADABLE_SAFETY = (
    "dockerd skips a container whose config it cannot read ('failed to load container'): it "
    "is moved whole, logs included, and --undo puts it back"
)
_DEVICELESS_SAFETY = (
    "its thin device is gone from the pool, so dockerd can neither start nor remove it "
    "('Driver devicemapper failed to remove root filesystem'): it is moved whole, logs "
    "included, and --undo puts it back"
)
_RW_SAFETY = (
    "named only by this container's mount record (no layer, no other container), and no "
    "directory that stays stacks on it"
)
_RECORD_SAFETY = (
    "the record of a read-write layer whose container cannot be restored; dockerd removes it "
    "the same way, after the layer's directories"
)
_ORPHAN_SAFETY = (
    "no layer's cache-id, no mount record and no BuildKit database names it, and no directory "
    "that stays stacks on it"
)


def _ancestors(path: str) -> list[str]:
    """``a/b/c`` → ``a``, ``a/b``, ``a/b/c``."""
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _reason(f: Finding, what: str | None = None) -> str:
    text = f"{f.check} ({f.path}): {f.message}"
    return f"{text} — {what}" if what else text


def _owners(host: Host) -> dict[str, set[str]]:
    """Driver dir name → everything that references it (layers, mount records, init layers)."""
    owners: dict[str, set[str]] = defaultdict(set)
    for layer in host.layers.values():
        if layer.cache_id:
            owners[layer.cache_id].add(f"layer:{layer.id}")
    for mount in host.mounts.values():
        if mount.mount_id:
            owners[mount.mount_id].add(f"mount:{mount.container_id}")
        if mount.init_id:
            owners[mount.init_id].add(f"init:{mount.container_id}")
    if host.layout == "legacy":
        for cid in host.containers:
            owners[cid].add(f"mount:{cid}")
            owners[f"{cid}-init"].add(f"init:{cid}")
    return owners


def _lower_users(host: Host) -> dict[str, set[str]]:
    """overlay2 link id (aufs, overlay: directory name) → the driver dirs whose ``lower`` (aufs:
    ``layers/<id>``) lists it."""
    users: dict[str, set[str]] = defaultdict(set)
    for ddir in host.driver_dirs.values():
        for entry in ddir.lower or []:
            users[entry.removeprefix("l/")].add(ddir.id)
    return users


def _ownership_doubt(host: Host) -> str | None:
    """Why an unreferenced directory may still be somebody's: a layer or mount record whose
    reference to its directory cannot be read."""
    for layer in sorted(host.layers.values(), key=lambda x: x.id):
        if "cache-id" in layer.problems or "dir" in layer.problems:
            return f"the cache-id of layer {short(layer.id)} cannot be read"
    for mount in sorted(host.mounts.values(), key=lambda m: m.container_id):
        for role in ("mount-id", "init-id", "dir"):
            if role in mount.problems:
                return f"the {role} of mount record {short(mount.container_id)} cannot be read"
    return None


def _link_owner(target: str | None) -> str | None:
    """``../<id>/diff`` → ``<id>`` (None for anything else)."""
    if target is None or not target.startswith("../") or not target.endswith("/diff"):
        return None
    name = target[3:-5]
    return name if name and "/" not in name and name not in (".", "..") else None


def make_plan(ev: Evidence, host: Host, findings: list[Finding]) -> Plan:
    """The repair plan for ``host`` (read from ``ev``) and its ``findings``; reads only."""
    if host.layout not in ("modern", "legacy") or host.driver not in SUPPORTED_DRIVERS:
        what = f"{host.layout} layout" + (f" on {host.driver}" if host.driver else "")
        drivers = ", ".join(SUPPORTED_DRIVERS)
        why = f"repair supports the modern and legacy layouts on {drivers}; this root: {what}"
        skipped = [Skipped(f.check, f.path, why) for f in findings if f.severity != "info"]
        return Plan(skipped=skipped)
    return _Planner(ev, host, findings).plan()
