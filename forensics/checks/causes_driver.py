"""Which findings on the storage driver's directories follow from which.

A driver directory that Docker's records no longer name is reported as an orphan; one they name
but that is gone, as missing. Often both are one damage: the record lost its way (a cache-id,
a mount-id, a layer directory emptied) and the directory it named is the orphan. The driver's
own bookkeeping tells: the directories stacked above a layer name the one below them in their
lower file (overlay2 ``lower`` by link, aufs ``layers/<id>``, overlay ``lower-id``), and an init
layer is named after its container's layer (``<mount-id>-init``). Only what that evidence names
is joined; a guess is not made.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from functools import cached_property

from forensics.checks.cascade import ORPHANS, Cascade, FindingIndex
from forensics.checks.drivers import referenced_driver_dirs
from forensics.drivers import init_name, is_init_name, layout_of, rw_name
from forensics.formats.ids import LINK_ID
from forensics.model import Host
from forensics.report import Finding

#: findings that say a layer's own driver directory is lost to it (object: the layer)
LAYER_DIR_LOST = (
    "layer.driver-dir-missing",
    "layer.empty-dir",
    "layer.cache-id-missing",
    "layer.cache-id-damaged",
)
#: the layer's contents cannot be rebuilt because its directory is gone (verify --deep)
DEEP_CONSEQUENCES = ("layer.content-dir-missing", "layer.diff-id-mismatch", "layer.tarsum-mismatch")


class StackedDirs:
    """The directory each driver directory stacks on, read from its own lower file."""

    def __init__(self, host: Host) -> None:
        self.host = host
        layout = layout_of(host.driver)
        self.links = layout.links if layout is not None else None
        lower = layout.lower if layout is not None else None
        #: what a lower entry holds before the link id, where entries name short links
        self.entry = lower.entry.prefix if lower is not None and lower.by == "link" else None

    @cached_property
    def by_link(self) -> dict[str, str]:
        """overlay2 link id → the directory it names (its ``l/`` symlink, or its link file)."""
        out: dict[str, str] = {}
        target_of = self.links.target if self.links is not None else None
        for link, target in self.host.links.items():
            owner = target_of.ident(target) if target_of and target else None
            if owner is not None:
                out[link] = owner
        for ddir in self.host.driver_dirs.values():
            if ddir.link:
                out[ddir.link] = ddir.id
        return out

    @cached_property
    def children(self) -> dict[str, list[str]]:
        """Layer id → the cache ids of the layers whose parent it is."""
        out: dict[str, list[str]] = defaultdict(list)
        for layer in self.host.layers.values():
            if layer.parent and layer.cache_id:
                out[layer.parent].append(layer.cache_id)
        return out

    @cached_property
    def containers(self) -> dict[str, list[tuple[str | None, str | None]]]:
        """Layer id → (read-write dir, init dir) of each container stacked right on it."""
        out: dict[str, list[tuple[str | None, str | None]]] = defaultdict(list)
        if self.host.layout == "modern":
            for mount in self.host.mounts.values():
                if mount.parent:
                    out[mount.parent].append((mount.mount_id, mount.init_id))
        else:
            for c in self.host.containers.values():
                if c.image_id:
                    out[c.image_id].append((c.id, init_name(c.id)))
        return out

    def below(self, name: str | None, skip: str | None = None) -> str | None:
        """The directory right below ``name`` (its init layer ``skip`` passed over)."""
        ddir = self.host.driver_dirs.get(name or "")
        entries = (ddir.lower or []) if ddir is not None else []
        for entry in entries:
            below = self.by_link.get(entry[len(self.entry) :]) if self.entry else entry
            if below != skip:
                return below
        return None

    def layer_dir(self, layer_id: str) -> str | None:
        """The directory of layer ``layer_id`` as the directories stacked on it name it: one
        name, or None when none or several are named."""
        named: set[str | None] = set()
        for cache_id in self.children.get(layer_id, ()):
            named.add(self.below(cache_id))
        for rw, init in self.containers.get(layer_id, ()):
            named.add(self.below(rw, skip=init))
            named.add(self.below(init))
        named.discard(None)
        return named.pop() if len(named) == 1 else None


def driver_cascades(host: Host, index: FindingIndex, stacked: StackedDirs) -> Iterator[Cascade]:
    orphans = {f.object_id: f for f in index.of("driver.orphan-dir")}
    yield from _layer_dirs_found_orphaned(index, stacked, orphans)
    yield from _mount_dirs_found_orphaned(host, index, orphans)
    yield from _unrecorded_container_dirs(host, index, stacked, orphans)
    yield from _lost_dirs(host, index)
    yield from _links_dir(host, index)


def _layer_dirs_found_orphaned(
    index: FindingIndex, stacked: StackedDirs, orphans: dict[str | None, Finding]
) -> Iterator[Cascade]:
    """A layer that lost its directory (cache-id changed, layerdb entry emptied), and the
    orphan that the directories stacked on the layer name as its directory."""
    for check in LAYER_DIR_LOST:
        for cause in index.of(check):
            found = stacked.layer_dir(cause.object_id or "")
            orphan = orphans.get(found)
            if orphan is not None:
                cascade = Cascade(cause)
                cascade.add(orphan, f"driver-dir:{found}", ORPHANS)
                yield cascade


def _mount_dirs_found_orphaned(
    host: Host, index: FindingIndex, orphans: dict[str | None, Finding]
) -> Iterator[Cascade]:
    """A mount record whose mount-id (init-id) names no directory, and the orphan that the
    init-id (mount-id) names: Docker names the init layer ``<mount-id>-init``."""
    for check in ("mount.driver-dir-missing", "mount.mount-id-damaged"):
        for cause in index.of(check):
            mount = host.mounts.get(cause.object_id or "")
            if mount and mount.init_id and is_init_name(mount.init_id):
                yield from _orphaned(cause, orphans, rw_name(mount.init_id))
    for check in ("mount.init-dir-missing", "mount.init-id-damaged"):
        for cause in index.of(check):
            mount = host.mounts.get(cause.object_id or "")
            if mount and mount.mount_id:
                yield from _orphaned(cause, orphans, init_name(mount.mount_id))


def _orphaned(cause: Finding, orphans: dict[str | None, Finding], name: str) -> Iterator[Cascade]:
    orphan = orphans.get(name)
    if orphan is not None:
        cascade = Cascade(cause)
        cascade.add(orphan, f"driver-dir:{name}", ORPHANS)
        yield cascade


def _unrecorded_container_dirs(
    host: Host, index: FindingIndex, stacked: StackedDirs, orphans: dict[str | None, Finding]
) -> Iterator[Cascade]:
    """A container without mount record, and the orphan pair ``<id>``/``<id>-init`` stacked on
    its image's top layer: joined when that top layer has one such container and one pair."""
    by_top: dict[str | None, list[Finding]] = defaultdict(list)
    for cause in index.of("container.mount-missing"):
        container = host.containers.get(cause.object_id or "")
        image = host.images.get(container.image_id or "") if container else None
        top = host.layers.get(image.layers[-1]) if image and image.layers else None
        if top is not None and top.cache_id:
            by_top[top.cache_id].append(cause)
    pairs: dict[str | None, list[str]] = defaultdict(list)
    for name in orphans:
        if name and init_name(name) in orphans:
            pairs[stacked.below(name, skip=init_name(name))].append(name)
    for top_dir, causes in by_top.items():
        found = pairs.get(top_dir, [])
        if len(causes) == 1 and len(found) == 1:
            cascade = Cascade(causes[0])
            for name in (found[0], init_name(found[0])):
                cascade.add(orphans[name], f"driver-dir:{name}", ORPHANS)
            yield cascade


def _lost_dirs(host: Host, index: FindingIndex) -> Iterator[Cascade]:
    """What a lost driver directory (or record) leaves behind: its ``l/`` link, its mount point
    under devicemapper's ``mnt/``, the layer contents ``--deep`` cannot rebuild, and the thin
    devices left without a record."""
    lost = _lost_dir_causes(host, index)
    layout = layout_of(host.driver)
    target_of = layout.links.target if layout is not None and layout.links else None
    for f in index.of("overlay2.link-orphan"):
        link = f.path.rpartition("/")[2]
        target = host.links.get(link) or ""
        owner = target_of.ident(target) if target_of else None
        cause = lost.get(owner) if owner is not None else None
        if cause is not None:
            yield _one(cause, f, f"link:{link}", ORPHANS)
    for f in index.of("devicemapper.mnt-orphan"):
        cause = lost.get(f.object_id or "")
        if cause is not None:
            yield _one(cause, f, f"mount-point:{f.object_id}", ORPHANS)
    for f in index.of(*DEEP_CONSEQUENCES):
        layer = host.layers.get(f.object_id or "")
        cause = lost.get(layer.cache_id or "") if layer else None
        if cause is not None:
            yield _one(cause, f, None, ORPHANS)
    yield from _leaked_device(host, index, lost)


def _one(cause: Finding, consequence: Finding, obj: str | None, verb: str) -> Cascade:
    cascade = Cascade(cause)
    cascade.add(consequence, obj, verb)
    return cascade


def _lost_dir_causes(host: Host, index: FindingIndex) -> dict[str, Finding]:
    """Driver directory (or device record) name → the finding that says it is gone."""
    lost: dict[str, Finding] = {}
    for f in index.of("layer.driver-dir-missing"):
        layer = host.layers.get(f.object_id or "")
        if layer and layer.cache_id:
            lost.setdefault(layer.cache_id, f)
    for f in index.of("mount.driver-dir-missing", "mount.init-dir-missing"):
        mount = host.mounts.get(f.object_id or "")
        if mount is None:
            continue
        name = mount.mount_id if f.check == "mount.driver-dir-missing" else mount.init_id
        if name:
            lost.setdefault(name, f)
    for f in index.of("container.layer-missing"):
        for name in (f.object_id or "", init_name(f.object_id or "")):
            if name not in host.driver_dirs:
                lost.setdefault(name, f)
    for f in index.of("overlay2.link-missing", "overlay2.link-damaged", "overlay2.diff-missing"):
        lost.setdefault(f.object_id or "", f)
    for f in index.of("devicemapper.base-missing"):
        lost.setdefault("base", f)
    return lost


def _leaked_device(host: Host, index: FindingIndex, lost: dict[str, Finding]) -> Iterator[Cascade]:
    """Device records lost, all to one finding, and as many thin devices without a record:
    the same devices (which record was which device the pool cannot tell)."""
    layout = layout_of(host.driver)
    if layout is None or layout.thin is None:
        return
    records = {name: f for name, f in lost.items() if name not in host.devices}
    causes = {f.key: f for f in records.values()}
    leaked = index.of("thinpool.device-leaked")
    if len(causes) != 1 or len(records) != len(leaked):
        return
    (cause,) = causes.values()
    cascade = Cascade(cause)
    for f in leaked:
        cascade.add(f, f"device:{(f.object_id or '').removeprefix('device-')}", ORPHANS)
    yield cascade


def _links_dir(host: Host, index: FindingIndex) -> Iterator[Cascade]:
    """overlay2's ``l/`` gone: every link is dangling (those of directories no record names,
    BuildKit's among them, too, though no finding of their own says it)."""
    for cause in index.of("overlay2.links-dir-missing", "overlay2.links-dir-damaged"):
        cascade = Cascade(cause)
        for f in index.of("overlay2.link-dangling"):
            link = f.path.rpartition("/")[2]
            if link not in host.links:
                cascade.add(f, f"link:{link}")
        for ddir in host.driver_dirs.values():
            if ddir.link and LINK_ID.fullmatch(ddir.link) and ddir.link not in host.links:
                cascade.affect(f"link:{ddir.link}")
        yield cascade


def lower_mismatches(host: Host, index: FindingIndex) -> Iterator[tuple[Finding, str]]:
    """Each lower-file mismatch with what owns its directory (``layer:<id>``, ``mount:<cid>``,
    ``init:<cid>``; see :func:`forensics.checks.drivers.referenced_driver_dirs`)."""
    found = index.of("overlay2.lower-mismatch", "aufs.lower-mismatch", "overlay.lower-mismatch")
    if not found:
        return
    refs = referenced_driver_dirs(host)
    for f in found:
        owner = refs.get(f.object_id or "")
        if owner is not None:
            yield f, owner
