"""Plain dataclasses for containerd's store: Docker 29's image store, or any containerd root.

One :class:`ContainerdStore` per containerd root: the namespaces of its metadata database
(``io.containerd.metadata.v1.bolt/meta.db``), each with its images, containers, snapshots,
content blobs, ingests and leases; the snapshotters' own records and directories; the content
store's blobs and ingests on disk. Paths are relative to the evidence root the store was read
from. Times are kept exactly as containerd stored them (:class:`GoTime`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import cached_property

from forensics.drivers import SNAPSHOTTER_DB

#: snapshot kinds (containerd snapshots.Kind): the byte the snapshotter's database stores
SNAPSHOT_KINDS = {1: "view", 2: "active", 3: "committed"}


@dataclass(frozen=True, order=True)
class GoTime:
    """A Go ``time.Time`` as ``MarshalBinary``/``MarshalText`` wrote it: seconds since the Unix
    epoch (may be negative), nanoseconds, and the zone offset in seconds (None: UTC)."""

    unix: int
    nanos: int
    offset: int | None = None

    def iso(self) -> str:
        """RFC 3339 with nanoseconds, as Go's ``time.RFC3339Nano`` prints it (trailing zeros of
        the fraction dropped; ``Z`` for UTC)."""
        offset = self.offset or 0
        zone = timezone(timedelta(seconds=offset)) if self.offset is not None else UTC
        base = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=self.unix)
        stamp = base.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S")
        fraction = f".{self.nanos:09d}".rstrip("0") if self.nanos else ""
        if self.offset is None:
            return f"{stamp}{fraction}Z"
        sign = "-" if offset < 0 else "+"
        hours, minutes = divmod(abs(offset) // 60, 60)
        return f"{stamp}{fraction}{sign}{hours:02d}:{minutes:02d}"

    @property
    def unix_ns(self) -> int:
        return self.unix * 1_000_000_000 + self.nanos


@dataclass(frozen=True)
class StoreProblem:
    """Something of the store that could not be read or decoded: ``path`` the file at fault
    (relative to the evidence root), ``kind`` a short word, ``detail`` one line, ``where`` the
    bucket or object concerned (empty for the file as a whole)."""

    path: str
    kind: str
    detail: str
    where: str = ""


@dataclass(frozen=True)
class Descriptor:
    """An OCI descriptor (image target, manifest, config or layer)."""

    digest: str
    media_type: str = ""
    size: int | None = None
    platform: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class CtrImage:
    name: str
    target: Descriptor
    labels: dict[str, str] = field(default_factory=dict)
    created: GoTime | None = None
    updated: GoTime | None = None


@dataclass
class CtrContainer:
    id: str
    image: str = ""
    runtime: str = ""
    #: the type URL of the runtime options and of the spec (protobuf ``Any``)
    runtime_options_type: str = ""
    spec_type: str = ""
    spec: bytes = b""
    snapshotter: str = ""
    snapshot_key: str = ""
    sandbox: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    extensions: list[str] = field(default_factory=list)
    created: GoTime | None = None
    updated: GoTime | None = None


@dataclass
class CtrSnapshot:
    """A snapshot as the metadata database records it for a namespace; ``name`` is the backend
    snapshotter's key (``<ns>/<seq>/<key>``)."""

    snapshotter: str
    key: str
    name: str = ""
    parent: str = ""
    children: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    created: GoTime | None = None
    updated: GoTime | None = None


@dataclass
class CtrBlob:
    """A content blob as a namespace's metadata records it (the bytes are shared by all)."""

    digest: str
    size: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    created: GoTime | None = None
    updated: GoTime | None = None


@dataclass
class CtrIngest:
    """An unfinished write as the metadata records it; ``backend_ref`` names its directory's
    ``ref`` in the content store."""

    ref: str
    backend_ref: str = ""
    expire_at: GoTime | None = None
    expected: str = ""


@dataclass
class CtrLease:
    id: str
    labels: dict[str, str] = field(default_factory=dict)
    created: GoTime | None = None
    content: list[str] = field(default_factory=list)
    #: snapshotter → snapshot keys
    snapshots: dict[str, list[str]] = field(default_factory=dict)
    ingests: list[str] = field(default_factory=list)


@dataclass
class CtrSandbox:
    id: str
    labels: dict[str, str] = field(default_factory=dict)
    created: GoTime | None = None
    updated: GoTime | None = None


@dataclass
class CtrNamespace:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    images: dict[str, CtrImage] = field(default_factory=dict)
    containers: dict[str, CtrContainer] = field(default_factory=dict)
    #: (snapshotter, key) → snapshot
    snapshots: dict[tuple[str, str], CtrSnapshot] = field(default_factory=dict)
    content: dict[str, CtrBlob] = field(default_factory=dict)
    ingests: dict[str, CtrIngest] = field(default_factory=dict)
    leases: dict[str, CtrLease] = field(default_factory=dict)
    sandboxes: dict[str, CtrSandbox] = field(default_factory=dict)

    @cached_property
    def snapshotters(self) -> frozenset[str]:
        """The snapshotters the namespace has snapshots of (computed once: read the
        namespace's snapshots before asking)."""
        return frozenset(sn for sn, _ in self.snapshots)

    def snapshot_keyed(self, key: str) -> list[str]:
        """The snapshotters holding a snapshot of this key."""
        return sorted(sn for sn in self.snapshotters if (sn, key) in self.snapshots)

    @cached_property
    def target_digests(self) -> frozenset[str]:
        """The images' target digests (computed once)."""
        return frozenset(i.target.digest for i in self.images.values())


@dataclass
class BoltSummary:
    """How a bbolt file was opened: the meta page in use, or how its tree was found."""

    path: str
    size: int
    page_size: int | None = None
    txid: int | None = None
    #: the meta with the higher txid was damaged; the older one was used
    fell_back: bool = False
    #: how the tree was found when no meta page was valid (None: from a valid meta)
    salvage: str | None = None


@dataclass
class BackendSnapshot:
    """A snapshot in a snapshotter's own database (``metadata.db``): ``name`` is
    ``<ns>/<seq>/<key>``, ``id`` its directory under ``snapshots/``."""

    name: str
    id: int | None = None
    kind: str = "unknown"
    parent: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    created: GoTime | None = None
    updated: GoTime | None = None
    inodes: int | None = None
    size: int | None = None

    @property
    def namespace(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def key(self) -> str:
        """The namespace's key: what follows ``<ns>/<seq>/``."""
        parts = self.name.split("/", 2)
        return parts[2] if len(parts) == 3 else self.name


@dataclass
class SnapshotDir:
    """A directory ``snapshots/<name>/`` of the overlayfs snapshotter and what it holds.
    ``size`` and ``files`` (bytes and count of its regular files) are measured only where
    containerd records no usage: active and view snapshots, committed ones without a recorded
    size, and directories that no snapshot owns."""

    name: str
    path: str
    has_fs: bool = False
    has_work: bool = False
    size: int | None = None
    files: int | None = None


@dataclass
class Snapshotter:
    name: str
    path: str
    db: BoltSummary | None = None
    snapshots: dict[str, BackendSnapshot] = field(default_factory=dict)
    #: (parent id, child id) → child name, from ``v1/parents``
    parents: dict[tuple[int, int], str] = field(default_factory=dict)
    dirs: dict[str, SnapshotDir] = field(default_factory=dict)

    def by_id(self) -> dict[int, BackendSnapshot]:
        return {s.id: s for s in self.snapshots.values() if s.id is not None}

    @property
    def db_path(self) -> str:
        """Its bolt database (``metadata.db`` in its home)."""
        return f"{self.path}/{SNAPSHOTTER_DB}"


@dataclass
class ContentFile:
    """A blob file of the content store: ``blobs/<algorithm>/<hex>``."""

    digest: str
    path: str
    size: int


@dataclass
class IngestDir:
    """A directory of ``ingest/``: an unfinished write (``ref`` is the backend reference)."""

    name: str
    path: str
    ref: str | None = None
    total: int | None = None
    data_size: int | None = None
    started: GoTime | None = None
    updated: GoTime | None = None


@dataclass
class ImageManifest:
    """One platform's manifest of an image and what it names."""

    descriptor: Descriptor
    present: bool = False
    config: Descriptor | None = None
    layers: list[Descriptor] = field(default_factory=list)
    diff_ids: list[str] = field(default_factory=list)
    created: str | None = None
    architecture: str | None = None
    os: str | None = None
    #: the config was read and holds ``rootfs.diff_ids`` (an empty list then means none)
    config_read: bool = False


@dataclass
class ResolvedImage:
    """An image's target followed through the content store: the index (if any), each
    manifest (present or not: a pull fetches only its platform's), configs and layers."""

    target: Descriptor
    index: Descriptor | None = None
    manifests: list[ImageManifest] = field(default_factory=list)
    problems: list[StoreProblem] = field(default_factory=list)


@dataclass
class ContainerdStore:
    """A containerd root: ``root`` is its path relative to the evidence root ("" for the
    evidence root itself)."""

    root: str
    meta: BoltSummary | None = None
    db_version: int | None = None
    namespaces: dict[str, CtrNamespace] = field(default_factory=dict)
    snapshotters: dict[str, Snapshotter] = field(default_factory=dict)
    blobs: dict[str, ContentFile] = field(default_factory=dict)
    ingests: dict[str, IngestDir] = field(default_factory=dict)
    problems: list[StoreProblem] = field(default_factory=list)


@dataclass
class ContainerdHost:
    """The containerd store read with a Docker root (or alone). ``location`` is where its
    root lies: relative to ROOT (``containerd/daemon``, or "" when ROOT is the containerd
    root), or, ``external``, the directory given with ``--containerd-root`` (the store's
    paths are then relative to that directory). ``images`` holds each image target followed
    through the content store, by digest (blobs are shared by the namespaces). ``as_of`` is
    when the store was last written (its newest recorded time, or ``meta.db``'s modification
    time when later); expiries (leases, ingests) and garbage are judged at ``reference``,
    which is ``as_of`` unless another time was asked for."""

    store: ContainerdStore
    location: str
    external: bool = False
    images: dict[str, ResolvedImage] = field(default_factory=dict)
    as_of: GoTime | None = None
    reference: GoTime | None = None
    #: bytes of Docker's own directories beside the store (``buildkit``), relative to ROOT
    beside: dict[str, int] = field(default_factory=dict)

    @property
    def unreadable(self) -> bool:
        """No part of the metadata database could be read: nothing can be accounted for."""
        return self.store.meta is None or (
            not self.store.namespaces and self.store.db_version is None
        )
