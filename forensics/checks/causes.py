"""Which findings follow from which: the relations between Docker's records.

- A layer, image or graph image missing from its store, that two or more findings name (images
  that stack on it, child layers, containers, tags, the orphan its directory became): one
  finding for the missing object (``layer.missing``, ``image.missing``, ``graph.image-missing``)
  at the path where it belongs, the others its consequences. One finding alone naming a missing
  object stays as it is: then the reference may as well be the damaged part.
- A layer's parent record that is wrong or unreadable (``layer.parent-mismatch``,
  ``layer.parent-damaged``, a graph json that is damaged), or a mount's: the directory name that
  no longer is its ChainID, and the lower files of every driver directory stacked above it that
  now disagree with the chain.
- A graph parent loop: one finding for the loop, the other images of the loop its consequences.
- A damaged file of a devicemapper layer, and its echo in the child layer held against it
  (:mod:`forensics.checks.causes_layers`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from forensics.checks.cascade import BREAKS, CONTRADICTS, ORPHANS, Cascade, FindingIndex
from forensics.checks.catalog import finding
from forensics.checks.causes_driver import StackedDirs, driver_cascades, lower_mismatches
from forensics.checks.causes_layers import inherited_echoes
from forensics.checks.common import short
from forensics.drivers import INIT_SUFFIX, LINK_ENTRY, is_init_name
from forensics.model import Host
from forensics.report import Finding

#: a layer's parent record wrong or unreadable (object: the layer)
LAYER_PARENT_CAUSES = (
    "layer.parent-mismatch",
    "layer.parent-damaged",
    "layer.config-damaged",
    "layer.config-missing",
)
#: a container's record of what it stacks on wrong or unreadable (object: the container id)
MOUNT_PARENT_CAUSES = (
    "mount.parent-mismatch",
    "mount.parent-damaged",
    "container.config-damaged",
    "container.config-missing",
)

#: a reference to a missing object: the finding and the object that holds the reference
Reference = tuple[Finding, str]


def find_cascades(host: Host, index: FindingIndex) -> Iterator[Cascade]:
    """Every cascade among the findings of ``host``, the surest first (a consequence belongs to
    the first cascade that claims it)."""
    stacked = StackedDirs(host)
    yield from _missing_layers(host, index, stacked)
    yield from _missing_images(host, index)
    yield from _missing_graph_images(host, index)
    yield from _parent_records(host, index)
    yield from _parent_loops(host, index)
    yield from driver_cascades(host, index, stacked)
    yield from inherited_echoes(host, index)


def object_name(host: Host, obj: str) -> str:
    """An affected object (``<type>:<id>``) as a person knows it: an image by its first tag,
    a container by its name, the rest by a short id."""
    kind, _, ident = obj.partition(":")
    if kind == "image":
        image = host.images.get(ident)
        return image.tags[0] if image and image.tags else short(ident)
    if kind == "container":
        container = host.containers.get(ident)
        return (container.name or "").lstrip("/") or short(ident) if container else short(ident)
    if kind == "link":
        return LINK_ENTRY(ident)
    if kind in ("layer", "driver-dir", "mount-point"):
        return short(ident) + (INIT_SUFFIX if is_init_name(ident) else "")
    return ident


# -- missing objects ---------------------------------------------------------------------------


def _missing_layers(host: Host, index: FindingIndex, stacked: StackedDirs) -> Iterator[Cascade]:
    if host.layout != "modern" or not host.image_store:
        return
    named: dict[str, list[Reference]] = defaultdict(list)
    for image in host.images.values():
        gone = [chain for chain in image.layers if chain not in host.layers]
        # the rule makes one finding per missing layer, in the image's order
        for f, chain in zip(index.about("image.layer-missing", image.id), gone, strict=False):
            named[chain].append((f, f"image:{image.id}"))
    for f in index.of("layer.parent-missing"):
        layer = host.layers.get(f.object_id or "")
        if layer is not None and layer.parent:
            named[layer.parent].append((f, f"layer:{layer.id}"))
    for f in index.of("mount.parent-missing"):
        mount = host.mounts.get(f.object_id or "")
        if mount is not None and mount.parent:
            named[mount.parent].append((f, f"container:{mount.container_id}"))
    orphans = {f.object_id: f for f in index.of("driver.orphan-dir")}
    for chain, refs in named.items():
        found = stacked.layer_dir(chain)
        orphan = orphans.get(found)
        if len(refs) + (orphan is not None) < 2:
            continue
        cause = finding(
            "layer.missing",
            f"{host.image_store}/layerdb/sha256/{chain.removeprefix('sha256:')}",
            f"layer {short(chain)} is not in the layer store",
            object_type="layer",
            object_id=chain,
        )
        cascade = _cascade(cause, refs)
        if orphan is not None:
            cascade.add(orphan, f"driver-dir:{found}", ORPHANS)
        for cid in _containers_above(host, chain):
            cascade.affect(f"container:{cid}")
        yield cascade


def _containers_above(host: Host, missing: str) -> list[str]:
    """Containers whose layer chain runs into the missing layer ``missing``."""
    out = []
    for mount in host.mounts.values():
        seen: set[str] = set()
        current = mount.parent
        while current in host.layers and current not in seen:
            seen.add(current)
            current = host.layers[current].parent
        if current == missing:
            out.append(mount.container_id)
    return out


def _missing_images(host: Host, index: FindingIndex) -> Iterator[Cascade]:
    if host.layout != "modern" or not host.image_store:
        return
    named: dict[str, list[Reference]] = defaultdict(list)
    for f in index.of("container.image-missing"):
        container = host.containers.get(f.object_id or "")
        if container is not None and container.image_id:
            named[container.image_id].append((f, f"container:{container.id}"))
    for f in index.of("repositories.target-missing"):
        target = host.references.get(f.object_id or "")
        if target:
            named[target].append((f, f"tag:{f.object_id}"))
    for f in index.of("image.parent-missing"):
        image = host.images.get(f.object_id or "")
        if image is not None and image.parent:
            named[image.parent].append((f, f"image:{image.id}"))
    for image_id, refs in named.items():
        if len(refs) < 2 or not any(f.severity == "error" for f, _ in refs):
            continue
        cause = finding(
            "image.missing",
            f"{host.image_store}/imagedb/content/sha256/{image_id.removeprefix('sha256:')}",
            f"image {short(image_id)}{_known_as(host, image_id)} is not in the image store",
            object_type="image",
            object_id=image_id,
        )
        yield _cascade(cause, refs)


def _known_as(host: Host, image_id: str) -> str:
    """`` (name)``: what a tag or a container calls a missing image."""
    names = sorted(ref for ref, target in host.references.items() if target == image_id)
    names += sorted(c.image for c in host.containers.values() if c.image_id == image_id and c.image)
    return f" ({names[0]})" if names else ""


def _missing_graph_images(host: Host, index: FindingIndex) -> Iterator[Cascade]:
    """A legacy graph image gone: its driver directory (named by the same id) is the orphan."""
    if host.image_store != "graph":
        return
    named: dict[str, list[Reference]] = defaultdict(list)
    for f in index.of("container.image-missing"):
        container = host.containers.get(f.object_id or "")
        if container is not None and container.image_id:
            named[container.image_id].append((f, f"container:{container.id}"))
    for f in index.of("graph.tag-target-missing"):
        target = host.references.get(f.object_id or "")
        if target:
            named[target].append((f, f"tag:{f.object_id}"))
    for f in index.of("layer.parent-missing"):
        layer = host.layers.get(f.object_id or "")
        if layer is not None and layer.parent:
            named[layer.parent].append((f, f"image:{layer.id}"))
    orphans = {f.object_id: f for f in index.of("driver.orphan-dir")}
    for gid, refs in named.items():
        orphan = orphans.get(gid)
        if len(refs) + (orphan is not None) < 2:
            continue
        cause = finding(
            "graph.image-missing",
            f"graph/{gid}",
            f"graph image {short(gid)}{_known_as(host, gid)} is not in graph/",
            object_type="layer",
            object_id=gid,
        )
        cascade = _cascade(cause, refs)
        if orphan is not None:
            cascade.add(orphan, f"driver-dir:{gid}", ORPHANS)
        yield cascade


def _cascade(cause: Finding, refs: list[Reference]) -> Cascade:
    cascade = Cascade(cause)
    for f, obj in refs:
        cascade.add(f, obj, BREAKS)
    return cascade


# -- wrong parents -----------------------------------------------------------------------------


def _parent_records(host: Host, index: FindingIndex) -> Iterator[Cascade]:
    """A wrong or unreadable parent record, and what disagrees with the chain it makes."""
    for check in ("layer.parent-mismatch", "layer.parent-damaged"):
        for cause in index.of(check):
            for f in index.about("layer.chain-id-mismatch", cause.object_id):
                cascade = Cascade(cause)
                cascade.add(f, None, CONTRADICTS)
                yield cascade
    for f, owner in lower_mismatches(host, index):
        cause = _chain_cause(host, index, owner)
        if cause is not None:
            cascade = Cascade(cause)
            cascade.add(f, f"driver-dir:{f.object_id}", CONTRADICTS)
            yield cascade


def _chain_cause(host: Host, index: FindingIndex, owner: str) -> Finding | None:
    """The first wrong parent record on the way down from a driver directory's owner."""
    kind, _, ident = owner.partition(":")
    if kind == "graph":
        return None
    if kind == "layer":
        start: str | None = ident
    else:
        cause = index.first(MOUNT_PARENT_CAUSES, ident)
        if cause is not None:
            return cause
        if host.layout == "modern":
            mount = host.mounts.get(ident)
            start = mount.parent if mount else None
        else:
            container = host.containers.get(ident)
            start = container.image_id if container else None
    seen: set[str] = set()
    while start and start in host.layers and start not in seen:
        seen.add(start)
        cause = index.first(LAYER_PARENT_CAUSES, start)
        if cause is not None:
            return cause
        start = host.layers[start].parent
    return None


def _parent_loops(host: Host, index: FindingIndex) -> Iterator[Cascade]:
    """A parent loop is reported by each of its images: the first one speaks for the loop."""
    loops: dict[frozenset[str], list[Finding]] = defaultdict(list)
    for f in index.of("graph.parent-loop"):
        loops[_loop_of(host, f.object_id or "")].append(f)
    for members in loops.values():
        cause, *others = sorted(members, key=Finding.sort_key)
        cascade = Cascade(cause)
        for f in others:
            cascade.add(f, f"image:{f.object_id}", BREAKS)
        yield cascade


def _loop_of(host: Host, start: str) -> frozenset[str]:
    seen: set[str] = set()
    current: str | None = start
    while current and current in host.layers and current not in seen:
        seen.add(current)
        current = host.layers[current].parent
    return frozenset(seen)
