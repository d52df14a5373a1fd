"""The state every part of the repair planner shares, and its small helpers: the findings by
check and what was left alone (:class:`StorePlanner`, any store's, containerd's too); for a
Docker driver's store (:class:`PlannerBase`) what references each driver directory and which
directories stack on which; the wording of reasons."""

from __future__ import annotations

import re
import stat
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from forensics.catalog import FindingsByCheck
from forensics.checks.catalog import CHECKS
from forensics.drivers import LINK_ENTRY, DriverLayout, Links, init_name, layout_of
from forensics.evidence import Evidence, type_of_mode
from forensics.formats.ids import MOUNT_ID, short
from forensics.model import Host
from forensics.repair.actions import Action, Skipped
from forensics.report import Finding
from forensics.stores.buildkit import buildkit_doubt


@dataclass
class Part:
    path: str
    kind: str
    role: str
    safety: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Unit:
    """Actions that belong together (a container with its layers, an orphan with its link)."""

    name: str
    label: str  # for people: "container 87b3f612a130 (its config is truncated)"
    order: int
    primary: Finding
    parts: list[Part] = field(default_factory=list)
    dirs: set[str] = field(default_factory=set)  # driver dirs it quarantines


class StorePlanner:
    """What the planner of any store keeps: the evidence it reads (where the findings' paths
    start), the findings by check, what it left alone and why."""

    def __init__(self, ev: Evidence, findings: list[Finding]) -> None:
        self.ev, self.findings = ev, findings
        self.by_check = FindingsByCheck(CHECKS, findings)  # a misspelt id raises
        self.skipped: list[Skipped] = []

    def _skip(self, f: Finding, why: str) -> None:
        self.skipped.append(Skipped(f.check, f.path, why))

    def _kind(self, rel: str) -> str | None:
        st = self.ev.lstat(rel)
        return None if st is None else type_of_mode(st.st_mode)


class PlannerBase(StorePlanner):
    """A Docker driver's store: besides :class:`StorePlanner`'s, the findings by path, who
    owns each driver directory, which stack on which."""

    def __init__(self, ev: Evidence, host: Host, findings: list[Finding]) -> None:
        super().__init__(ev, findings)
        self.host = host
        #: the driver's name; a driver directory is named ``<driver>/<name>`` in messages
        self.base = host.driver or "overlay2"
        layout = layout_of(self.base)
        assert layout is not None, f"no repair planned on {self.base}"
        #: the driver's row: the paths of its parts
        self.layout: DriverLayout = layout
        self.under: dict[str, list[Finding]] = defaultdict(list)  # path → findings at or below
        for f in findings:
            for ancestor in ancestors(f.path):
                self.under[ancestor].append(f)
        self.owners = owners_of(host)
        self.dirs_by_link: dict[str, list[str]] = defaultdict(list)
        for ddir in host.driver_dirs.values():
            if ddir.link:
                self.dirs_by_link[ddir.link].append(ddir.id)
        self.lower_users = lower_users_of(host)
        self.answered: set[tuple[str, str]] = set()  # findings answered besides action paths

    @property
    def links(self) -> Links:
        """The driver's short links (only overlay2's findings ask for them)."""
        links = self.layout.links
        assert links is not None, f"{self.base} keeps no short links"
        return links

    def _mode(self, rel: str) -> int:
        st = self.ev.lstat(rel)
        return stat.S_IMODE(st.st_mode) if st is not None and stat.S_ISREG(st.st_mode) else 0o600


UNLOADABLE_SAFETY = (
    "dockerd skips a container whose config it cannot read ('failed to load container'): it "
    "is moved whole, logs included, and --undo puts it back"
)
DEVICELESS_SAFETY = (
    "its thin device is gone from the pool, so dockerd can neither start nor remove it "
    "('Driver devicemapper failed to remove root filesystem'): it is moved whole, logs "
    "included, and --undo puts it back"
)
RW_SAFETY = (
    "named only by this container's mount record (no layer, no other container), and no "
    "directory that stays stacks on it"
)
RECORD_SAFETY = (
    "the record of a read-write layer whose container cannot be restored; dockerd removes it "
    "the same way, after the layer's directories"
)
ORPHAN_SAFETY = (
    "no layer's cache-id, no mount record and no BuildKit database names it, and no directory "
    "that stays stacks on it"
)


def ancestors(path: str) -> list[str]:
    """``a/b/c`` → ``a``, ``a/b``, ``a/b/c``."""
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def reason_of(f: Finding, what: str | None = None) -> str:
    text = f"{f.check} ({f.path}): {f.message}"
    return f"{text} — {what}" if what else text


def quarantine_found(
    f: Finding, safety: str, unit: str, *, kind: str, summary: str, what: str | None = None
) -> Action:
    """The quarantine of the entry at ``f``'s path, which ``f`` alone asks for."""
    return Action(
        "quarantine", f.path, reason_of(f, what), [f.check], safety, unit,
        kind=kind, summary=summary,
    )  # fmt: skip


def owners_of(host: Host) -> dict[str, set[str]]:
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
            owners[init_name(cid)].add(f"init:{cid}")
    return owners


def lower_users_of(host: Host) -> dict[str, set[str]]:
    """overlay2 link id (aufs, overlay: directory name) → the driver dirs whose ``lower`` (aufs:
    ``layers/<id>``) lists it."""
    users: dict[str, set[str]] = defaultdict(set)
    for ddir in host.driver_dirs.values():
        for entry in ddir.lower or []:
            users[entry.removeprefix(LINK_ENTRY.prefix)].add(ddir.id)
    return users


#: a layer's cache-id as dockerd writes it (a random 64-hex id) or as BuildKit does (its
#: identity.NewID: 25 base-36 digits)
CACHE_ID = re.compile(r"[0-9a-f]{64}|[0-9a-z]{25}")


def ownership_doubt(host: Host) -> str | None:
    """Why an unreferenced directory may still be somebody's: a layer or mount record whose
    reference to its directory cannot be read — missing, empty, or no id of the form the
    daemon writes (a value torn to half its digits names nothing, but was meant to name one of
    the directories) — or a BuildKit database that cannot be decoded."""
    for layer in sorted(host.layers.values(), key=lambda x: x.id):
        torn = layer.cache_id is not None and CACHE_ID.fullmatch(layer.cache_id) is None
        if "cache-id" in layer.problems or "dir" in layer.problems or torn:
            return f"the cache-id of layer {short(layer.id)} cannot be read"
    for mount in sorted(host.mounts.values(), key=lambda m: m.container_id):
        for role in ("mount-id", "init-id", "dir"):
            value = {"mount-id": mount.mount_id, "init-id": mount.init_id}.get(role)
            torn = value is not None and MOUNT_ID.fullmatch(value) is None
            if role in mount.problems or torn:
                return f"the {role} of mount record {short(mount.container_id)} cannot be read"
    return buildkit_doubt(host)


def link_owner(target: str | None, links: Links) -> str | None:
    """``../<id>/diff`` → ``<id>`` (None for anything else)."""
    name = links.target.ident(target) if target is not None else None
    return name if name and "/" not in name and name not in (".", "..") else None
