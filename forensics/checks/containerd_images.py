"""containerd's images against the content store and the snapshots, without hashing (hashing
every blob is ``verify --deep``'s).

- Each blob that is needed must be present: an image's target; a manifest of an index that a
  namespace records (a platform that was pulled); a present manifest's config; its layers,
  unless the image is unpacked (a Kubernetes node may discard layer blobs once unpacked); and
  every blob a namespace records. An index entry for a platform never pulled (no record, no
  file) is no damage: every real pull leaves such entries.
- A blob's size must be what its records and its descriptors say.
- Documents (index, manifest, config) must be JSON of their kind; a config's DiffIDs as many
  as the manifest's layers, and each layer blob's ``containerd.io/uncompressed`` label (its
  DiffID as containerd computed it at unpack) equal to the config's.
- An unpacked image's snapshots follow its ChainIDs: the top named by the config's
  ``containerd.io/gc.ref.snapshot.<snapshotter>`` label (or the top ChainID when present) is
  the image's own, and each layer's snapshot is the child of the one below.

One finding per blob or per break, naming every image it concerns.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from forensics.checks.catalog import finding
from forensics.containerd_graph import (
    LABEL_UNCOMPRESSED,
    image_chain,
    namespaces,
    present_manifests,
    unpacked_top,
)
from forensics.containerd_model import (
    ContainerdHost,
    CtrNamespace,
    Descriptor,
    ImageManifest,
    ResolvedImage,
)
from forensics.report import Finding

#: how many images a finding names before it counts the rest
SHOWN = 3


@dataclass
class _Blob:
    """What the images and records say of one blob digest."""

    needed_by: list[str] = field(default_factory=list)
    recorded_by: list[str] = field(default_factory=list)
    sizes: dict[int, list[str]] = field(default_factory=dict)
    diff_ids: dict[tuple[str, str], list[str]] = field(default_factory=dict)


@dataclass
class _Facts:
    blobs: dict[str, _Blob] = field(default_factory=dict)
    documents: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    rootfs: dict[str, list[str]] = field(default_factory=dict)
    chains: dict[tuple[str, str, str, str], list[str]] = field(default_factory=dict)

    def blob(self, digest: str) -> _Blob:
        return self.blobs.setdefault(digest, _Blob())


def check_containerd_images(ctd: ContainerdHost) -> Iterator[Finding]:
    facts = _Facts()
    for ns in namespaces(ctd):
        for digest, record in ns.content.items():
            if record.size is not None:
                facts.blob(digest).sizes.setdefault(record.size, []).append(
                    f"the record of namespace {ns.name}"
                )
            facts.blob(digest).recorded_by.append(ns.name)
        for name in sorted(ns.images):
            image = ns.images[name]
            resolved = ctd.images.get(image.target.digest)
            if resolved is not None:
                _image(ctd, ns, f"{ns.name}/{name}", resolved, facts)
    yield from _blob_findings(ctd, facts)
    yield from _document_findings(ctd, facts)
    yield from _chain_findings(ctd, facts)


def _image(
    ctd: ContainerdHost, ns: CtrNamespace, label: str, resolved: ResolvedImage, facts: _Facts
) -> None:
    _needs(facts, resolved.target, f"target of image {label}")
    for p in resolved.problems:
        if p.kind != "missing" and p.where:
            facts.documents.setdefault(p.where, (p.path, f"{p.kind}: {p.detail}", label))
    if resolved.index is not None:
        for m in resolved.manifests:
            if m.present:
                _sized(facts, m.descriptor, f"index of image {label}")
    for m in present_manifests(resolved):
        _manifest(ctd, ns, label, m, facts)


def _manifest(
    ctd: ContainerdHost, ns: CtrNamespace, label: str, m: ImageManifest, facts: _Facts
) -> None:
    where = ctd.store.blobs.get(m.descriptor.digest)
    if m.config is None:
        if where is not None and m.descriptor.digest not in facts.documents:
            facts.documents[m.descriptor.digest] = (where.path, "names no config", label)
        return
    _needs(facts, m.config, f"config of image {label}")
    config = ctd.store.blobs.get(m.config.digest)
    if config is not None and not m.config_read and m.config.digest not in facts.documents:
        facts.documents[m.config.digest] = (config.path, "holds no rootfs.diff_ids", label)
    if m.config_read and len(m.diff_ids) != len(m.layers):
        facts.rootfs.setdefault(m.config.digest, []).append(
            f"{label}: {len(m.diff_ids)} DiffIDs for {len(m.layers)} layers"
        )
    unpacked = _chain_facts(ns, label, m, facts)
    for n, layer in enumerate(m.layers):
        if not unpacked:
            _needs(facts, layer, f"layer {n + 1} of image {label}")
        else:
            _sized(facts, layer, f"layer {n + 1} of image {label}")
        record = ns.content.get(layer.digest)
        label_value = record.labels.get(LABEL_UNCOMPRESSED) if record else None
        if label_value and n < len(m.diff_ids) and label_value != m.diff_ids[n]:
            key = (label_value, m.diff_ids[n])
            facts.blob(layer.digest).diff_ids.setdefault(key, []).append(label)


def _needs(facts: _Facts, desc: Descriptor, why: str) -> None:
    if desc.digest:
        facts.blob(desc.digest).needed_by.append(why)
        _sized(facts, desc, why)


def _sized(facts: _Facts, desc: Descriptor, who: str) -> None:
    if desc.digest and desc.size is not None:
        facts.blob(desc.digest).sizes.setdefault(desc.size, []).append(who)


def _chain_facts(ns: CtrNamespace, label: str, m: ImageManifest, facts: _Facts) -> bool:
    """Note where the image's unpacked snapshots break their ChainIDs; True when one
    snapshotter holds the whole chain."""
    chain = image_chain(m)
    if not chain:
        return False
    tops = unpacked_top(ns, m)
    for sn in ns.snapshot_keyed(chain[-1]):
        tops.setdefault(sn, chain[-1])
    whole = False
    for sn, top in sorted(tops.items()):
        if top != chain[-1]:
            what = f"unpacked to {top!r}, but its top ChainID is {chain[-1]}"
            facts.chains.setdefault((ns.name, sn, top, what), []).append(label)
            continue
        broken = _break(ns, sn, chain)
        if broken is None:
            whole = True
        else:
            facts.chains.setdefault((ns.name, sn, *broken), []).append(label)
    return whole


def _break(ns: CtrNamespace, sn: str, chain: list[str]) -> tuple[str, str] | None:
    """The first snapshot from the top down that is missing or has another parent than its
    ChainID's, with what is wrong; None when the chain is whole."""
    for n in range(len(chain) - 1, -1, -1):
        snap = ns.snapshots.get((sn, chain[n]))
        if snap is None:
            return chain[n], f"layer {n + 1}'s snapshot {chain[n]} is missing"
        want = chain[n - 1] if n else ""
        if snap.parent != want:
            return chain[n], (
                f"layer {n + 1}'s snapshot {chain[n]} has parent {snap.parent or 'none'!r}, "
                f"not {want or 'none'!r}"
            )
    return None


# -- findings -------------------------------------------------------------------------------------


def _names(items: list[str]) -> str:
    unique = list(dict.fromkeys(items))
    text = ", ".join(unique[:SHOWN])
    return text + (f" and {len(unique) - SHOWN} more" if len(unique) > SHOWN else "")


def _blob_findings(ctd: ContainerdHost, facts: _Facts) -> Iterator[Finding]:
    from forensics.stores.containerd.content import blob_path

    for digest, blob in sorted(facts.blobs.items()):
        ident = {"object_type": "blob", "object_id": digest}
        found = ctd.store.blobs.get(digest)
        if found is None:
            if blob.needed_by or blob.recorded_by:
                what = f"the {_names(blob.needed_by)}" if blob.needed_by else "a blob"
                recorded = (
                    f", recorded by namespace {', '.join(blob.recorded_by)}"
                    if blob.recorded_by
                    else ""
                )
                yield finding(
                    "containerd.blob-missing",
                    blob_path(ctd.store, digest),
                    f"{what}{recorded}: not in the content store",
                    damage="missing",
                    **ident,
                )
            continue
        other = {size: who for size, who in blob.sizes.items() if size != found.size}
        for size, who in sorted(other.items()):
            yield finding(
                "containerd.blob-size-mismatch",
                found.path,
                f"{found.size} bytes, but {size} according to {_names(who)}",
                damage="size",
                **ident,
            )
        for (recorded, diff_id), images in sorted(blob.diff_ids.items()):
            yield finding(
                "containerd.diffid-mismatch",
                found.path,
                f"its {LABEL_UNCOMPRESSED} label is {recorded}, but the config of "
                f"{_names(images)} gives DiffID {diff_id}",
                **ident,
            )


def _document_findings(ctd: ContainerdHost, facts: _Facts) -> Iterator[Finding]:
    for digest, (path, what, image) in sorted(facts.documents.items()):
        yield finding(
            "containerd.document-damaged",
            path,
            f"{what} (a document of image {image})",
            object_type="blob",
            object_id=digest,
        )
    for digest, what in sorted(facts.rootfs.items()):
        found = ctd.store.blobs.get(digest)
        yield finding(
            "containerd.rootfs-mismatch",
            found.path if found else digest,
            f"the config's DiffIDs do not match the manifest's layers: {_names(what)}",
            object_type="blob",
            object_id=digest,
        )


def _chain_findings(ctd: ContainerdHost, facts: _Facts) -> Iterator[Finding]:
    meta = ctd.store.meta.path if ctd.store.meta else ""
    for (ns, sn, key, what), images in sorted(facts.chains.items()):
        yield finding(
            "containerd.snapshot-chain-broken",
            meta,
            f"namespace {ns}, {sn}: {what} (image {_names(images)})",
            object_type="snapshot",
            object_id=f"{ns}/{sn}/{key}",
        )
