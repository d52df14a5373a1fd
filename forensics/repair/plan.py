"""Findings and the host they were found on → a plan: the actions that repair them.

Each action names a path relative to ROOT, what is done to it (``quarantine``: moved whole into
the quarantine; ``relink``: a missing overlay2 ``l/`` link made again; ``rewrite``: a damaged file
replaced, its original quarantined; ``create``: a missing file written; ``copy-out``: a repaired
copy written into the quarantine, ROOT only read), the findings it answers with their check ids,
and why it is safe. What the plan leaves alone it says so, with the reason (BuildKit's
directories, directories whose owner is in doubt, damage this version does not repair).

Whole units are planned together, in the order dockerd itself removes a container's read-write
layer (``layer_store.ReleaseRWLayer``: the driver directories, then the mount record; then
``cleanupContainer`` removes ``containers/<id>``). Every intermediate state is one that an
interrupted ``docker rm`` leaves and that dockerd starts with; a rerun completes it. The mount
record and its driver directories name each other, so no order can avoid a passing finding
about the unit itself between those steps (``mount.driver-dir-missing`` while the record waits
its turn), but no step ever produces a finding about anything outside the unit: a container's
directory goes last, so its mount record is never left without a container while it exists, and
a link goes after its directory, so a referenced layer never loses its link.

This module plans what every driver shares; overlay2's links (:mod:`.plan_overlay2`),
devicemapper's records and pool (:mod:`.plan_devicemapper`), the legacy ``linkgraph.db``
(:mod:`.plan_legacy`) and configs that name another ID than their directory
(:mod:`.plan_config_id`) are planned by the parts the planner is made of.
"""

from __future__ import annotations

from collections.abc import Iterator

from forensics.drivers import DRIVERS, init_name, is_init_name, rw_name
from forensics.evidence import Evidence, ReadFailure, type_of_mode
from forensics.formats.ids import LINK_ID, MOUNT_ID, short
from forensics.model import Host, Mount
from forensics.repair.actions import Action, Plan, Skipped
from forensics.repair.plan_config_id import MISMATCH_SAFETY, ConfigIdPlanning
from forensics.repair.plan_devicemapper import DeviceMapperPlanning
from forensics.repair.plan_legacy import LegacyPlanning
from forensics.repair.plan_overlay2 import Overlay2Planning
from forensics.repair.planbase import (
    DEVICELESS_SAFETY,
    ORPHAN_SAFETY,
    RECORD_SAFETY,
    RW_SAFETY,
    UNLOADABLE_SAFETY,
    Part,
    Unit,
    ancestors,
    ownership_doubt,
    plural,
    quarantine_found,
    reason_of,
)
from forensics.repair.tags import recover
from forensics.report import Finding

__all__ = ["Action", "Plan", "Skipped", "make_plan"]

#: the drivers whose rows say repair plans on them (what it quarantines of a layer or container
#: directory is the row's ``parts``, in the order the driver's ``Remove`` deletes them)
SUPPORTED_DRIVERS = tuple(name for name, layout in DRIVERS.items() if layout.repair)
BROKEN_CONTAINER = (
    "container.config-damaged",
    "container.config-missing",
    "container.hostconfig-damaged",
)
LEFTOVER_CHECKS = {
    "layer.removing-leftover": (
        "dockerd ignores a *-removing layer directory and deletes it at shutdown: this is that "
        "clean-up, into the quarantine"
    ),
    "layer.tmp-leftover": (
        "an interrupted layer registration under layerdb/tmp: dockerd never reads it again"
    ),
    "layer.graph-tmp-leftover": (
        "an entry of an interrupted image registration under graph/_tmp: dockerd never reads it"
    ),
    "container.tmp-leftover": (
        "a temporary file of an interrupted config write: dockerd reads only the renamed config"
    ),
    "devicemapper.tmp-leftover": (
        "a temporary file of an interrupted device record write: dockerd reads only the renamed "
        "record"
    ),
    "devicemapper.mnt-orphan": (
        "the mount point of a device that has no record: dockerd never uses it"
    ),
}
LEFT_ALONE = {
    "driver.buildkit-dir": "BuildKit's own (named in its database): never touched",
    "buildkit.db-damaged": (
        "BuildKit's databases are never written; while one cannot be decoded, no orphan driver "
        "directory is quarantined (it may be BuildKit's)"
    ),
    "driver.unknown-dir": (
        "not named like a layer of dockerd's, and maybe BuildKit's: ownership in doubt, never "
        "touched"
    ),
}


class _Planner(Overlay2Planning, DeviceMapperPlanning, LegacyPlanning, ConfigIdPlanning):
    """The whole plan: containers and mount records whole, orphans, leftovers, the tag store,
    and what each driver's own part adds."""

    # -- the plan ----------------------------------------------------------------------------

    def plan(self) -> Plan:
        units = self._container_units() + self._mount_units() + self._orphan_units()
        units = self._keep_lower_layers(units)
        removed = {d for u in units for d in u.dirs}
        purged = {
            u.name.split()[1]: u.primary.check for u in units if u.name.startswith("container ")
        }
        actions = self._rewrite_repositories() + self._rewrite_linkgraph(purged)
        actions += self._config_id_rewrites()
        actions += self._link_files(removed) + self._relinks(removed)
        for unit in sorted(units, key=lambda u: u.order):
            actions += self._unit_actions(unit)
        actions += self._orphan_links(removed) + self._leftovers() + self._empty_layer_dirs()
        actions = _outermost(actions)
        actions += self._settle_transaction({a.path for a in actions})
        actions += self._pool_copy()
        self._say_left_alone(actions)
        return Plan(actions=actions, skipped=self.skipped)

    # -- a container or mount record, whole --------------------------------------------------

    def _container_units(self) -> list[Unit]:
        units = []
        seen: set[str] = set()
        for f, cid, why in self._broken_containers():
            container = self.host.containers.get(cid)
            if container is None or cid in seen:
                continue
            seen.add(cid)
            unit = Unit(f"container {cid}", f"container {short(cid)}", 1, f)
            if self.host.layout == "legacy":
                if not self._add_legacy_rw_layer(unit, cid):
                    continue
            elif not self._add_rw_layer(unit, cid, self.host.mounts.get(cid)):
                continue
            unit.parts.append(Part(container.path, "dir", "the directory", why))
            units.append(unit)
        return units

    def _broken_containers(self) -> Iterator[tuple[Finding, str, str]]:
        """(finding, container id, why moving it whole is safe) of every container to remove:
        those dockerd cannot load, and on devicemapper those whose thin device is gone from
        the pool (dockerd loads them but can neither start nor remove them)."""
        for check in BROKEN_CONTAINER:
            for f in self.by_check[check]:
                yield f, f.object_id or "", UNLOADABLE_SAFETY
        for m in self._config_id_whole():
            yield m.finding, m.container.id, f"{MISMATCH_SAFETY}; in doubt: {m.why}"
        for f in self.by_check["thinpool.device-missing"]:
            cid = self._container_of_device(f.object_id or "")
            if cid is not None:
                yield f, cid, DEVICELESS_SAFETY

    def _container_of_device(self, name: str) -> str | None:
        if self.host.layout == "legacy":
            cid = rw_name(name)
            return cid if cid in self.host.containers else None
        for mount in self.host.mounts.values():
            if (
                name in (mount.mount_id, mount.init_id)
                and mount.container_id in self.host.containers
            ):
                return mount.container_id
        return None

    def _add_legacy_rw_layer(self, unit: Unit, cid: str) -> bool:
        """A legacy container's driver dirs are named after it: ``<id>`` and ``<id>-init``."""
        for name, role in ((cid, "the read-write layer"), (init_name(cid), "the init layer")):
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
            self._add_dir(unit, name, role, RW_SAFETY)
        return True

    def _mount_units(self) -> list[Unit]:
        units = []
        for f in self.by_check["mount.container-missing"]:
            cid = f.object_id or ""
            mount = self.host.mounts.get(cid)
            if mount is None:
                continue
            if self.ev.lstat(f"containers/{cid}") is not None:
                self._skip(f, f"containers/{cid} exists but is no container directory: left alone")
                continue
            unit = Unit(f"mount {cid}", f"the removed container {short(cid)}", 2, f)
            if self._add_rw_layer(unit, cid, mount):
                units.append(unit)
        return units

    def _add_rw_layer(self, unit: Unit, cid: str, mount: Mount | None) -> bool:
        """Add a container's driver dirs, their links and its mount record to ``unit``, in
        dockerd's order. False (and the finding skipped) when ownership is in doubt."""
        if mount is None:
            return True
        if "dir" in mount.problems:
            kind = self._kind(mount.path)
            if kind is not None:
                unit.parts.append(Part(mount.path, kind, "the mount record", RECORD_SAFETY))
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
            self._add_dir(unit, name, role, RW_SAFETY)
        unit.parts.append(Part(mount.path, "dir", "the mount record", RECORD_SAFETY))
        return True

    def _rw_dirs(self, mount: Mount) -> list[tuple[str, str]]:
        """The container's driver dirs that exist: its RW layer, then its init layer."""
        out = []
        rw = mount.mount_id if mount.mount_id and MOUNT_ID.fullmatch(mount.mount_id) else None
        init = mount.init_id if mount.init_id and MOUNT_ID.fullmatch(mount.init_id) else None
        if init is None and rw and not is_init_name(rw) and "init-id" not in mount.problems:
            init = init_name(rw)  # no init-id file: the daemon's own naming
        for name, role in ((rw, "the read-write layer"), (init, "the init layer")):
            if name and name in self.host.driver_dirs:
                out.append((name, role))
        return out

    def _add_dir(self, unit: Unit, name: str, role: str, safety: str) -> None:
        ddir = self.host.driver_dirs[name]
        parts = self.layout.parts
        for part in parts:
            path = part.at(name)
            kind = self._kind(path)
            if kind is None:
                continue
            details = self._device_details(name) if path == ddir.path else {}
            label = role if len(parts) == 1 else f"{role} ({part.words})"
            unit.parts.append(Part(path, kind, label, safety, details))
        unit.dirs.add(name)
        links = self.layout.links
        if links is None:
            return
        link = ddir.link
        if link and LINK_ID.fullmatch(link) and self.host.links.get(link) == links.target(name):
            unit.parts.append(
                Part(
                    links.link(link),
                    "symlink",
                    f"the short link of {short(name)}",
                    "a symlink to the quarantined directory's diff/: moved, never followed",
                )
            )

    # -- orphans -----------------------------------------------------------------------------

    def _orphan_units(self) -> list[Unit]:
        doubt = ownership_doubt(self.host)
        units = []
        for f in self.by_check["driver.orphan-dir"]:
            name = f.object_id or ""
            if name not in self.host.driver_dirs:
                continue
            if doubt:
                self._skip(f, f"ownership in doubt: {doubt}")
                continue
            unit = Unit(f"driver-dir {name}", "", 3, f)
            self._add_dir(unit, name, "an orphan driver directory", ORPHAN_SAFETY)
            units.append(unit)
        return units

    def _keep_lower_layers(self, units: list[Unit]) -> list[Unit]:
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
        lower = self.layout.lower
        by_dir = lower is not None and lower.by == "dir"
        for name in dirs:
            link = self.host.driver_dirs[name].link
            if link:
                users |= self.lower_users.get(link, set())
            if by_dir:
                users |= self.lower_users.get(name, set())
        return users

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
                quarantine_found(
                    f,
                    "it holds nothing: dockerd cannot load it, and while it exists a pull of "
                    "the layer fails ('file exists')",
                    f"layer {f.object_id}",
                    kind="dir",
                    summary="an empty layer directory (an interrupted pull)",
                    what="an empty layer directory",
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
                    quarantine_found(f, safety, f"leftover {f.path}", kind=kind, summary=f.message)
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
            counts = f"{plural(len(rec.references), 'reference')} kept, {len(rec.lost)} lost"
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
                    reason_of(f, counts),
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

    def _unit_actions(self, unit: Unit) -> list[Action]:
        actions = []
        for part in unit.parts:
            answered = self._answered(part.path)
            checks = sorted({f.check for f in answered} | {unit.primary.check})
            what = f"{part.role} of {unit.label}" if unit.label else part.role
            actions.append(
                Action(
                    "quarantine",
                    part.path,
                    reason_of(unit.primary, what),
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
                a in covered for a in ancestors(f.path)
            ):
                continue
            if f.check in LEFT_ALONE:
                self._skip(f, LEFT_ALONE[f.check])
            elif f.severity in ("error", "warning") and f.object_id not in removed:
                # (a finding about an object whose unit is quarantined is answered by it)
                self._skip(f, "no repair for this check in this version")


def _outermost(actions: list[Action]) -> list[Action]:
    """Drop an action on a path that another action quarantines whole (a leftover inside a
    broken container's directory goes with it)."""
    moved = {a.path for a in actions if a.action == "quarantine"}
    return [a for a in actions if not any(p in moved for p in ancestors(a.path)[:-1])]


def make_plan(ev: Evidence, host: Host, findings: list[Finding]) -> Plan:
    """The repair plan for ``host`` (read from ``ev``) and its ``findings``; reads only. The
    containerd store's findings are planned by :mod:`.plan_containerd`, on the root they are
    relative to: ROOT, or the containerd root given apart (then the plan works on that root
    alone, and Docker's own findings are left for a repair of ROOT without it)."""
    ctd = host.containerd
    if ctd is None:
        return _docker_plan(ev, host, findings)
    from forensics.repair.plan_containerd import is_containerd_finding, plan_containerd

    docker = [f for f in findings if not is_containerd_finding(f)]
    if not ctd.external:
        plan = _docker_plan(ev, host, docker)
        store = plan_containerd(ev, ctd, findings)
        _pin_identities(ev, store.actions)
        return Plan(plan.actions + store.actions, plan.skipped + store.skipped)
    why = (
        "the repair works on the containerd root given with --containerd-root: repair ROOT "
        "without it for Docker's own files"
    )
    skipped = [Skipped(f.check, f.path, why) for f in docker if f.severity != "info"]
    with Evidence(ctd.location) as store_ev:
        store = plan_containerd(store_ev, ctd, findings)
        _pin_identities(store_ev, store.actions)
    return Plan(store.actions, skipped + store.skipped)


def _docker_plan(ev: Evidence, host: Host, findings: list[Finding]) -> Plan:
    if host.layout not in ("modern", "legacy") or host.driver not in SUPPORTED_DRIVERS:
        what = f"{host.layout} layout" + (f" on {host.driver}" if host.driver else "")
        drivers = ", ".join(SUPPORTED_DRIVERS)
        why = f"repair supports the modern and legacy layouts on {drivers}; this root: {what}"
        skipped = [Skipped(f.check, f.path, why) for f in findings if f.severity != "info"]
        return Plan(skipped=skipped)
    plan = _Planner(ev, host, findings).plan()
    _pin_identities(ev, plan.actions)
    return plan


def _pin_identities(ev: Evidence, actions: list[Action]) -> None:
    """Record which entry each action plans to move or read (device and inode), so that the
    run moves that entry and no other put in its place meanwhile."""
    for action in actions:
        st = ev.lstat(action.path) if action.kind is not None else None
        if st is not None and type_of_mode(st.st_mode) == action.kind:
            action.identity = (st.st_dev, st.st_ino)
