"""Which findings of ``verify --deep`` follow from which: a full-rootfs layer's echo of its
parent layer's damage.

On devicemapper each layer's device is held against its parent layer's (:mod:`forensics.layers.
changes`). A file tampered with in one layer's device therefore shows twice: in that layer
(its tar disagrees), and in its child, whose device still holds what the parent held before —
seen from the child, a change that its own tar does not explain (``layer.file-extra``,
``layer.file-removed``, ``layer.file-inherited-changed`` at the same path). The child's finding
is a consequence of the parent's: one cause, one finding.
"""

from __future__ import annotations

from collections.abc import Iterator

from forensics.checks.cascade import CONTRADICTS, Cascade, FindingIndex
from forensics.drivers import DEVICEMAPPER, DEVICEMAPPER_POOL
from forensics.model import Host, Layer
from forensics.report import Finding

#: what a layer held against its parent layer finds when the parent is the one damaged
ECHOES = ("layer.file-extra", "layer.file-removed", "layer.file-inherited-changed")
#: what a layer's damaged file is reported as
FILE_CHECKS = (
    "layer.file-modified",
    "layer.file-size-changed",
    "layer.file-mode-changed",
    "layer.file-type-changed",
    "layer.file-missing",
    "layer.file-metadata-changed",
    *ECHOES,
)
#: where a layer's files inside a thin device are shown: <mount point of id>/rootfs/<path>
_MOUNTS = DEVICEMAPPER.mount_point.prefix if DEVICEMAPPER.mount_point else "\0"
_ROOTFS = f"/{DEVICEMAPPER_POOL.rootfs}/"


def inherited_echoes(host: Host, index: FindingIndex) -> Iterator[Cascade]:
    """Each echo in a child layer of a damaged file of its parent layer, as a cascade."""
    echoes = index.of(*ECHOES)
    if not echoes:
        return
    layers: dict[str, Layer] = {}
    for h in (host, host.legacy):
        if h is not None:
            layers.update(h.layers)
    damaged: dict[tuple[str | None, str], Finding] = {}
    for f in index.of(*FILE_CHECKS):
        tail = _in_device(f.path)
        if tail is not None:
            damaged.setdefault((f.object_id, tail), f)
    for f in echoes:
        tail = _in_device(f.path)
        layer = layers.get(f.object_id or "")
        if tail is None or layer is None or not layer.parent:
            continue
        cause = damaged.get((layer.parent, tail))
        if cause is not None and cause is not f:
            cascade = Cascade(cause)
            cascade.add(f, f"layer:{layer.id}", CONTRADICTS)
            yield cascade


def _in_device(path: str) -> str | None:
    """The path inside the layer of a file shown in a device's rootfs, else None."""
    if not path.startswith(_MOUNTS):
        return None
    _, sep, tail = path.partition(_ROOTFS)
    return tail if sep else None
