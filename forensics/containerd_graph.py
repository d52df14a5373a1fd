"""How the objects of a containerd store hold together: pure functions over the model, shared
by the inventory, the checks, the disk-usage accounting, the SQLite export and the timeline.

- An image names its target blob; an index names one manifest per platform (only the pulled
  platforms' are present); a manifest names its config and layers; the config's
  ``rootfs.diff_ids`` give the ChainIDs under which the image's layers are unpacked, as
  committed snapshots keyed by ChainID, each the child of the one below.
- A snapshot's parent chain runs from its key down to a base snapshot.
- Docker 29 names a container's writable snapshot and its lease after the container id, the
  snapshot's parent ``<id>-init`` (moby ``daemon/containerd/image_snapshot.go``); the image id
  it shows is the image's target digest.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from forensics.containerd_model import (
    ContainerdHost,
    CtrLease,
    CtrNamespace,
    GoTime,
    ImageManifest,
    ResolvedImage,
)
from forensics.drivers import SNAPSHOTTER_NAMES, init_name
from forensics.formats.ids import chain_ids
from forensics.model import Container, Host
from forensics.stores.containerd.values import ValueDamage, decode_text_time

#: the label on a compressed layer blob giving the digest of its uncompressed tar (its DiffID)
LABEL_UNCOMPRESSED = "containerd.io/uncompressed"
#: the label on an image config naming the top snapshot of its unpacked layers
LABEL_UNPACKED = "containerd.io/gc.ref.snapshot."
LABEL_EXPIRE = "containerd.io/gc.expire"
#: the namespace of Docker's own images and containers
DOCKER_NAMESPACE = "moby"
#: the name moby gives an image whose last name was removed while a container used it
DANGLING_PREFIX = "moby-dangling@"
#: the longest parent chain followed (a loop in damaged records ends there)
MAX_CHAIN = 4096


# -- names --------------------------------------------------------------------------------------


def docker_name(name: str) -> str:
    """An image name as ``docker images`` shows it: without ``docker.io/`` and, for the
    official images (one path component), ``library/``."""
    if not name.startswith("docker.io/"):
        return name
    rest = name[len("docker.io/") :]
    path = rest.split("@", 1)[0].rsplit(":", 1)[0] if "@" in rest or ":" in rest else rest
    if path.startswith("library/") and path.count("/") == 1:
        return rest[len("library/") :]
    return rest


def split_reference(name: str) -> tuple[str, str | None, str | None]:
    """``(repository, tag, digest)`` of an image name (``repo:tag``, ``repo@digest``, or both)."""
    rest, _, digest = name.partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        return rest[:colon], rest[colon + 1 :], digest or None
    return rest, None, digest or None


def is_dangling(name: str) -> bool:
    return name.startswith(DANGLING_PREFIX)


# -- images ---------------------------------------------------------------------------------


def present_manifests(resolved: ResolvedImage) -> list[ImageManifest]:
    return [m for m in resolved.manifests if m.present]


def chosen_manifest(resolved: ResolvedImage) -> ImageManifest | None:
    """The manifest an image is shown by: the first present one whose config was read (the
    host's own platform, on a host that pulled only its own), else the first present one."""
    present = present_manifests(resolved)
    read = [m for m in present if m.config_read]
    return (read or present or [None])[0]


def platforms(resolved: ResolvedImage) -> list[str]:
    """The platforms whose manifests are present: from the index's entries, or from the
    config of a single manifest."""
    out = []
    for m in present_manifests(resolved):
        platform = m.descriptor.platform
        if not platform and m.os:
            platform = "/".join(p for p in (m.os, m.architecture) if p)
        if platform and platform not in out:
            out.append(platform)
    return out


def image_chain(manifest: ImageManifest) -> list[str]:
    """The ChainIDs of the manifest's layers, base first (empty without a readable config)."""
    return chain_ids(manifest.diff_ids) if manifest.diff_ids else []


def image_blobs(resolved: ResolvedImage) -> list[str]:
    """Every blob digest the image uses and that is meant to be present: its target, its
    present manifests, their configs and layers."""
    out = [resolved.target.digest]
    for m in present_manifests(resolved):
        out.append(m.descriptor.digest)
        if m.config is not None:
            out.append(m.config.digest)
        out += [layer.digest for layer in m.layers]
    return list(dict.fromkeys(d for d in out if d))


def unpacked_top(ns: CtrNamespace, manifest: ImageManifest) -> dict[str, str]:
    """snapshotter → the top snapshot the image config's label says it was unpacked to."""
    if manifest.config is None:
        return {}
    blob = ns.content.get(manifest.config.digest)
    if blob is None:
        return {}
    return {
        key[len(LABEL_UNPACKED) :].split("/", 1)[0]: value
        for key, value in sorted(blob.labels.items())
        if key.startswith(LABEL_UNPACKED)
    }


# -- snapshots ----------------------------------------------------------------------------------


def snapshot_chain(ns: CtrNamespace, snapshotter: str, key: str) -> list[str]:
    """``key`` and its parents down to the base, as far as records exist (a loop ends it)."""
    chain: list[str] = []
    seen: set[str] = set()
    while key and key not in seen and len(chain) < MAX_CHAIN:
        seen.add(key)
        chain.append(key)
        snap = ns.snapshots.get((snapshotter, key))
        if snap is None:
            break
        key = snap.parent
    return chain


# -- Docker's containers ----------------------------------------------------------------------


def docker_containers(host: Host) -> list[Container]:
    """The containers of ``containers/`` kept on the containerd store (their ``Driver`` is a
    snapshotter), in id order."""
    return [
        host.containers[cid]
        for cid in sorted(host.containers)
        if host.containers[cid].driver in SNAPSHOTTER_NAMES
    ]


def init_key(container_id: str) -> str:
    """The key of a Docker 29 container's init snapshot."""
    return init_name(container_id)


# -- times ------------------------------------------------------------------------------------


def lease_expiry(lease: CtrLease) -> GoTime | None:
    """When the lease expires (``containerd.io/gc.expire``); None when it never does."""
    value = lease.labels.get(LABEL_EXPIRE)
    if value is None:
        return None
    try:
        return decode_text_time(value.encode())
    except ValueDamage:
        return None


def lease_expire_damaged(lease: CtrLease) -> bool:
    return LABEL_EXPIRE in lease.labels and lease_expiry(lease) is None


def is_before(moment: GoTime | None, reference: GoTime | None) -> bool:
    return moment is not None and reference is not None and moment.unix_ns < reference.unix_ns


def as_datetime(moment: GoTime) -> datetime:
    """A timezone-aware datetime (microseconds: the nanoseconds beyond are dropped)."""
    base = datetime(1970, 1, 1, tzinfo=UTC)
    return base + timedelta(seconds=moment.unix, microseconds=moment.nanos // 1000)


def reference_datetime(ctd: ContainerdHost) -> datetime:
    """The moment expiries are judged at; the epoch for a store that records no time."""
    return as_datetime(ctd.reference) if ctd.reference else datetime(1970, 1, 1, tzinfo=UTC)


def iso(moment: GoTime | None) -> str | None:
    """A time in the project's form: UTC, nine digits of fraction, ``Z``."""
    if moment is None:
        return None
    text = as_datetime(GoTime(moment.unix, 0)).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{moment.nanos:09d}Z"


def namespaces(ctd: ContainerdHost) -> Iterator[CtrNamespace]:
    """The namespaces in name order."""
    for name in sorted(ctd.store.namespaces):
        yield ctd.store.namespaces[name]
