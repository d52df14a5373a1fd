"""What ``verify --deep`` checks of a containerd store, and the values its pass returns.

:func:`plan_blobs` makes a job (:class:`BlobJob`, plain values a worker process can take) per
blob file of the content store: every blob is hashed; a blob that is some image's layer is also
read as a tar, with the DiffIDs that image configs and the ``containerd.io/uncompressed`` label
expect of it, and the committed snapshots it was unpacked to (:class:`SnapshotTarget`). A layer
unpacked to a snapshot whose blob is not in the store is a :class:`Skip`. The pass over one
blob (:mod:`forensics.layers.containerd_deep`) returns a :class:`BlobReport` of
:class:`DeepProblem` s.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from forensics.containerd_graph import (
    LABEL_UNCOMPRESSED,
    image_chain,
    namespaces,
    present_manifests,
)
from forensics.containerd_model import ContainerdHost, CtrNamespace, Descriptor
from forensics.drivers import SNAPSHOTTERS
from forensics.fs.compressed import StreamLimits
from forensics.layers.containerd_diff import snapshot_fs

#: the snapshotters whose committed snapshots are directories a layer's tar is held against
DIRECTORY_SNAPSHOTTERS = frozenset(SNAPSHOTTERS)


@dataclass(frozen=True)
class SnapshotTarget:
    """A committed snapshot that a layer blob was unpacked to: its ``fs/`` (relative to the
    evidence root of the store) and its name for messages (``<ns>/<snapshotter>/<key>``)."""

    fs: str
    snapshot: str


@dataclass(frozen=True)
class BlobJob:
    """One blob of the content store to check (plain values: a worker process can take it).

    ``layer``: whether it is some image's layer (decompressed and read as a tar); ``diff_ids``
    (DiffID, who expects it) from image configs; ``labels`` (DiffID, namespace) from the
    ``containerd.io/uncompressed`` label of its records; ``targets`` the committed snapshots to
    hold its members against."""

    digest: str
    path: str
    size: int
    layer: bool = False
    diff_ids: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    targets: tuple[SnapshotTarget, ...] = ()
    limits: StreamLimits | None = None


@dataclass(frozen=True)
class DeepProblem:
    """Something the pass found: ``kind`` is the check's name within ``containerd.``, ``path``
    the file at fault (relative to the store's evidence root), ``snapshot`` the snapshot it
    concerns (empty: the blob)."""

    kind: str
    path: str
    message: str
    snapshot: str = ""
    damage: str | None = None


@dataclass
class BlobReport:
    digest: str
    path: str
    layer: bool = False
    sha256: str | None = None
    codec: str | None = None
    #: the DiffID recomputed (None: the stream was not read to its end)
    diff_id: str | None = None
    tar_bytes: int = 0
    members: int = 0
    problems: list[DeepProblem] = field(default_factory=list)
    #: bytes of the blob file read (for a progress bar)
    bytes_read: int = 0


@dataclass(frozen=True)
class Skip:
    """A committed layer snapshot that cannot be deep-checked, and why."""

    snapshot: str
    path: str
    why: str


# -- the plan -------------------------------------------------------------------------------------


@dataclass
class _Plan:
    size: int
    layer: bool = False
    diff_ids: dict[tuple[str, str], None] = field(default_factory=dict)
    labels: dict[tuple[str, str], None] = field(default_factory=dict)
    targets: dict[SnapshotTarget, None] = field(default_factory=dict)


def plan_blobs(
    ctd: ContainerdHost, limits: StreamLimits | None = None
) -> tuple[list[BlobJob], list[Skip]]:
    """A job per blob file of the store (every blob is hashed; a layer's is also read as a
    tar against its snapshots), in digest order; and the unpacked layers whose blob is not in
    the content store (nothing to hold their snapshot against)."""
    plans = {d: _Plan(blob.size) for d, blob in ctd.store.blobs.items() if blob.size >= 0}
    skipped: dict[str, Skip] = {}
    for ns in namespaces(ctd):
        for name in sorted(ns.images):
            resolved = ctd.images.get(ns.images[name].target.digest)
            if resolved is None:
                continue
            for m in present_manifests(resolved):
                chain = image_chain(m)
                for n, layer in enumerate(m.layers):
                    diff_id = m.diff_ids[n] if n < len(m.diff_ids) else None
                    targets = list(_targets(ctd, ns, chain[n])) if n < len(chain) else []
                    plan = plans.get(layer.digest)
                    if plan is None:
                        for target in targets:
                            skipped.setdefault(target.fs, _no_blob(target, layer))
                        continue
                    plan.layer = True
                    if diff_id:
                        plan.diff_ids[(diff_id, f"the config of image {ns.name}/{name}")] = None
                    record = ns.content.get(layer.digest)
                    label = record.labels.get(LABEL_UNCOMPRESSED) if record else None
                    if label:
                        plan.labels[(label, ns.name)] = None
                    plan.targets.update(dict.fromkeys(targets))
    jobs = [
        BlobJob(
            digest,
            ctd.store.blobs[digest].path,
            plan.size,
            plan.layer,
            tuple(plan.diff_ids),
            tuple(plan.labels),
            tuple(plan.targets),
            limits,
        )
        for digest, plan in sorted(plans.items())
    ]
    return jobs, sorted(skipped.values(), key=lambda s: s.path)


def _no_blob(target: SnapshotTarget, layer: Descriptor) -> Skip:
    return Skip(target.snapshot, target.fs, f"its layer blob {layer.digest} is not in the store")


def _targets(ctd: ContainerdHost, ns: CtrNamespace, chain_id: str) -> Iterator[SnapshotTarget]:
    """The committed snapshots of ``chain_id`` in ``ns`` whose ``fs/`` is on disk."""
    for sn_name in ns.snapshot_keyed(chain_id):
        sn = ctd.store.snapshotters.get(sn_name)
        record = ns.snapshots[(sn_name, chain_id)]
        if sn is None or sn_name not in DIRECTORY_SNAPSHOTTERS:
            continue
        backend = sn.snapshots.get(record.name)
        if backend is None or backend.id is None or backend.kind != "committed":
            continue
        found = sn.dirs.get(str(backend.id))
        if found is None or not found.has_fs:
            continue  # reported by the quick checks
        fs = snapshot_fs(ctd, sn_name, backend.id)
        yield SnapshotTarget(fs, f"{ns.name}/{sn_name}/{chain_id}")
