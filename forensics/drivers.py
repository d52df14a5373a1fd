"""One table of the storage drivers' layouts: where each keeps what of a layer.

Every path of a driver's layout is spelled here and nowhere else (``tests/test_driver_table.py``
searches the package for them). Paths are relative to the Docker root (a containerd
snapshotter's: to the containerd root, but for ``mount_point`` and ``evidence``), with ``{id}``
where a name goes: a layer's directory name (a cache-id, a mount-id, ``<mount-id>-init``), or a
link id in a short link. The facts are those of moby's ``daemon/graphdriver/*`` and
containerd's ``snapshots/overlay``.

A row (:class:`DriverLayout`) holds, and is read by:

- ``layer``, ``lists``, ``reads``, ``lower``, ``links``, ``committed``, ``thin``: where a
  layer's entry is and what names the layers below it: the store named by ``reader``
  (``forensics/stores/<reader>.py``, dispatched in ``stores/host.py``) lists and reads them,
  and ``stores/dockerroot.py`` probes ``lists``/``reads`` for readability;
- ``evidence``, ``preference``, ``marks``: the detection of the driver in use and of a Docker
  root (``stores/host.py``, ``stores/dockerroot.py``);
- ``checks``, ``lower.key``/``words``, ``links``: the check ids and the files that the driver
  rules (``checks/drivers.py``, ``checks/devicemapper.py``) name; the ids themselves are in
  ``checks/catalog.py``;
- ``content``, ``holds``, ``whiteouts``: where ``verify --deep`` finds a layer's files and how
  it compares them with the layer's tar stream (``layers/reassemble.py``); ``content`` None
  means the files are inside a thin device (``thin``: the pool's records and files, and the
  device's ``rootfs/``);
- ``upper``, ``diff``, ``whiteouts``: how ``diff`` stacks a container's layers
  (``layers/diff.py``) and where inventory says a container's changes are;
- ``parts``, ``repair``, ``links``: what repair quarantines of a layer, in the order the
  driver's ``Remove`` deletes them, and on which drivers it plans at all (``repair/plan*.py``).

containerd's own plugin directories beside the snapshotters' (its metadata database, its
content store) are spelled here too, after :data:`SNAPSHOTTERS`: the paths of a containerd
root that no row holds.

To add a driver: write its row (a builder like :func:`_plain` when it shares a layout), put
it in :data:`DRIVERS` (or :data:`SNAPSHOTTERS`), and give it a ``reader``: an existing store
when the layout is one it reads, else a new ``stores/<reader>.py`` taking
``(ev, host, layout)`` and registered in ``stores/host.py``. Checks of its own bookkeeping go
in ``checks/drivers.py`` (by what the row has: ``links``, ``lower.reach``), their ids in
``checks/catalog.py`` under the row's ``checks`` prefix. ``repair=True`` only with a repair
test on a real sample of it. ``tests/test_driver_table.py`` then holds the new row's paths to
the rule above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

#: the place of a layer's name in a template
ID = "{id}"
#: the init layer of a container is its read-write layer's name with this suffix (the layer
#: store names it so for every driver: moby ``layer_store.initMount``; 1.8/1.9
#: ``daemon.createRootfs``; the containerd image store's init snapshot key too)
INIT_SUFFIX = "-init"
#: a legacy container's ``Driver`` left empty meant aufs (Docker ≤ 1.9 wrote none for it)
LEGACY_EMPTY_DRIVER = "aufs"
#: dockerd's own containerd keeps its root here, inside the Docker root
DOCKERS_CONTAINERD = "containerd/daemon"
#: in a mark, a component that matches a name of 64 lower-case hex digits (an id)
HEX64 = "<hex64>"

#: what a layer's content directory holds: the layer's changes alone (whiteouts included), or
#: the whole root file system as of that layer
Holds = Literal["diff", "rootfs"]
#: how ``diff`` compares a container: ``layers``: its upper directory stacked on its init and
#: image layers against those layers (overlay semantics with the row's whiteouts);
#: ``upper-on-root``: overlay v1, the container's upper over its image's top ``root/`` against
#: the init layer's upper over the same; ``rootfs``: the container's whole root file system
#: against its init layer's (dockerd's "naive diff")
DiffMethod = Literal["layers", "upper-on-root", "rootfs"]


def init_name(name: str) -> str:
    """The init layer's name of the read-write layer ``name``."""
    return name + INIT_SUFFIX


def is_init_name(name: str) -> bool:
    return name.endswith(INIT_SUFFIX)


def rw_name(init: str) -> str:
    """The read-write layer's name of the init layer ``init`` (``init`` itself if it is none)."""
    return init.removesuffix(INIT_SUFFIX)


@dataclass(frozen=True, slots=True)
class Template:
    """A path with one ``{id}`` in it. ``prefix`` and ``suffix`` are what surrounds the id, so
    that a hot loop can build paths by concatenation."""

    text: str
    prefix: str = field(init=False)
    suffix: str = field(init=False)

    def __post_init__(self) -> None:
        prefix, found, suffix = self.text.partition(ID)
        if not found or ID in suffix:
            raise ValueError(f"a template holds {ID} once: {self.text!r}")
        object.__setattr__(self, "prefix", prefix)
        object.__setattr__(self, "suffix", suffix)

    def __call__(self, name: str) -> str:
        return f"{self.prefix}{name}{self.suffix}"

    def ident(self, path: str) -> str | None:
        """The name that ``path`` holds in the place of ``{id}``; None when ``path`` is not of
        this form (no check that the name is a plain one)."""
        if len(path) < len(self.prefix) + len(self.suffix):
            return None
        if not path.startswith(self.prefix) or not path.endswith(self.suffix):
            return None
        return path[len(self.prefix) : len(path) - len(self.suffix)]

    @property
    def glob(self) -> str:
        """The template with ``*`` for the id (a pattern of every layer's path)."""
        return self("*")

    @property
    def directory(self) -> str:
        """The directory in which the ids are entries (for a template that ends in ``/{id}``)."""
        if self.suffix or not self.prefix.endswith("/"):
            raise ValueError(f"{self.text!r} does not end in /{ID}")
        return self.prefix[:-1]

    @property
    def leaf(self) -> str:
        """The name of the entry inside the layer's directory (for ``…/{id}/<name>``)."""
        name = self.suffix.removeprefix("/")
        if not name or "/" in name or not self.suffix.startswith("/"):
            raise ValueError(f"{self.text!r} does not end in /{ID}/<name>")
        return name


#: a short link as a ``lower`` entry names it, relative to the driver's home (overlay2 and
#: fuse-overlayfs): ``l/<link id>``
LINK_ENTRY = Template(f"l/{ID}")


@dataclass(frozen=True, slots=True)
class Part:
    """What a driver keeps of a layer, as repair quarantines it and calls it."""

    at: Template
    words: str


@dataclass(frozen=True, slots=True)
class Lower:
    """The file in which a layer names the layers below it."""

    file: Template
    #: the role its damage is recorded under (``DriverDir.problems``) and named by in check ids
    #: (``<checks>.<key>-missing``/``-damaged``)
    key: str
    words: str
    #: how an entry names a layer below: by its short link (``l/<link id>``) or its directory
    entry: Template
    by: Literal["link", "dir"]
    #: every layer below, nearest first (``chain``), or the image's top layer alone (``top``)
    reach: Literal["chain", "top"]


@dataclass(frozen=True, slots=True)
class Links:
    """overlay2's short links: ``l/<link id>`` → ``../<id>/diff``, the id in each layer's
    ``link`` file (they keep the mount options short)."""

    directory: str
    link: Template  # {id}: a link id
    file: Template
    target: Template
    key: str = "link"
    words: str = "link file"


@dataclass(frozen=True, slots=True)
class ThinPool:
    """devicemapper: a layer's content inside a thin device of the pool. Docker keeps one JSON
    record per device beside the pool's own records; the device's file system holds the layer's
    whole root file system under ``rootfs/``. The pool keeps no origins: a layer's parent comes
    from Docker's records."""

    #: the directory of the records: one per device, named by its hash, and the pool's own
    records: str
    record: Template
    #: the pool's own records beside the devices' (the next device id and the base device's
    #: file system; the transaction in progress)
    deviceset_name: str
    transaction_name: str
    #: the record of the base device, from which every layer's device is snapshotted
    base: str
    #: the loop-lvm pool's directory and its two sparse files (none on a direct-lvm pool)
    pool: str
    data_name: str
    metadata_name: str
    #: the directory of a device's file system that holds the layer's files
    rootfs: str

    @property
    def pool_records(self) -> tuple[str, str]:
        """The names of the pool's own records (deviceset, transaction)."""
        return (self.deviceset_name, self.transaction_name)

    @property
    def pool_files(self) -> tuple[str, str]:
        """The names of the loop-lvm pool's files (data, metadata)."""
        return (self.data_name, self.metadata_name)

    @property
    def deviceset(self) -> str:
        return f"{self.records}/{self.deviceset_name}"

    @property
    def transaction(self) -> str:
        return f"{self.records}/{self.transaction_name}"

    @property
    def pool_metadata(self) -> str:
        """The loop-lvm pool's metadata file."""
        return f"{self.pool}/{self.metadata_name}"

    @property
    def pool_data(self) -> str:
        """The loop-lvm pool's data file."""
        return f"{self.pool}/{self.data_name}"


@dataclass(frozen=True, slots=True)
class Whiteouts:
    """How a layer's diff marks on disk a name it deletes and a directory it makes opaque. In
    the tar stream both are aufs' names (``.wh.NAME``, ``DIR/.wh..wh..opq``)."""

    name: str
    #: aufs: a file ``.wh.NAME``; overlay: None (a 0:0 character device named NAME)
    whiteout_prefix: bytes | None
    #: aufs: a file ``DIR/.wh..wh..opq``; overlay: None (an xattr on DIR)
    opaque_file: bytes | None
    #: overlay: the xattrs of an opaque directory, ``y`` (``user.`` on unprivileged mounts)
    opaque_xattrs: tuple[str, ...]
    #: aufs: its own bookkeeping at the top of each branch, and the prefix of their names
    own_files: tuple[bytes, ...] = ()
    own_prefix: bytes | None = None


OVERLAY_WHITEOUTS = Whiteouts(
    "overlay", None, None, ("trusted.overlay.opaque", "user.overlay.opaque")
)
AUFS_WHITEOUTS = Whiteouts(
    "aufs",
    b".wh.",
    b".wh..wh..opq",
    (),
    (b".wh..wh.aufs", b".wh..wh.plnk", b".wh..wh.orph"),
    b".wh..wh.",
)
#: the tar stream's whiteout names (moby ``pkg/archive``): ``.wh.NAME`` and ``DIR/.wh..wh..opq``
TAR_WHITEOUT_PREFIX = b".wh."
TAR_OPAQUE = b".wh..wh..opq"


@dataclass(frozen=True)
class DriverLayout:
    """One driver's row. ``reader`` names the store that reads it (several drivers share one),
    ``checks`` the prefix of its own check ids."""

    name: str
    reader: Literal["overlay2", "overlay", "aufs", "devicemapper", "plain", "containerd"]
    checks: str
    #: the driver's top directory
    home: str
    #: a layer's entry (``DriverDir.path``): where its directory, or its device record, lives
    layer: Template
    #: an image layer's files as plain files; None: inside a thin device (``thin``)
    content: Template | None
    holds: Holds
    #: a container layer's own changes (its upper or diff directory); None where the container
    #: layer is a whole copy or a thin device
    upper: Template | None
    whiteouts: Whiteouts | None
    #: how ``diff`` compares a container; None: not offline (see the row)
    diff: DiffMethod | None
    #: the directory listed for the driver's layers being present at all: non-empty means the
    #: driver has data (moby's "prior driver" test looks at ``<root>/<name>`` the same way)
    evidence: str
    #: place in dockerd's order of preference (28.x, then the drivers removed since)
    preference: int | None
    #: the file that names the layers below; None: parents are only in Docker's records
    lower: Lower | None = None
    links: Links | None = None
    #: the marker a layer gets when a child is made on it
    committed: Template | None = None
    #: overlayfs' work directory beside a layer's upper (its own scratch: nothing reads it)
    work: Template | None = None
    #: where a layer is mounted (relative to the Docker root)
    mount_point: Template | None = None
    thin: ThinPool | None = None
    #: what the driver keeps of one layer, in the order its ``Remove`` deletes them
    parts: tuple[Part, ...] = ()
    #: repair plans on this driver
    repair: bool = False
    #: (pattern, kind) that only Docker's driver leaves: any makes a Docker root (a driver
    #: directory counts by what the driver puts in it, not by its name alone)
    marks: tuple[tuple[str, str], ...] = ()
    #: what the store lists (directories) and reads (files): each that exists must be readable
    lists: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    #: a containerd snapshotter that deletes the layer directories its database has no id for
    #: (overlayfs' ``Cleanup``, ``getCleanupDirectories``): such a directory is a leftover
    cleanup: bool = False

    @property
    def layers(self) -> str:
        """The directory with one entry per layer."""
        return self.layer.directory


def _overlay2(name: str, preference: int, *, repair: bool, probed: bool) -> DriverLayout:
    """overlay2 and fuse-overlayfs (the same layout under another home):
    ``<id>/{diff/,link,lower,work/,merged/,committed}`` and ``l/<link id>`` → ``../<id>/diff``.
    ``probed``: its link and lower files are among those tried for readability."""
    home = name
    layer = Template(f"{home}/{ID}")
    link = Template(f"{home}/{LINK_ENTRY.text}")
    links = Links(
        link.directory,
        link,
        Template(f"{home}/{ID}/link"),
        Template(f"../{ID}/diff"),
    )
    diff = Template(f"{home}/{ID}/diff")
    lower = Lower(
        Template(f"{home}/{ID}/lower"),
        "lower",
        "lower file",
        LINK_ENTRY,
        "link",
        "chain",
    )
    return DriverLayout(
        name=name,
        reader="overlay2",
        checks="overlay2",
        home=home,
        layer=layer,
        content=diff,
        holds="diff",
        upper=diff,
        whiteouts=OVERLAY_WHITEOUTS,
        diff="layers",
        evidence=home,
        preference=preference,
        lower=lower,
        links=links,
        committed=Template(f"{home}/{ID}/committed"),
        work=Template(f"{home}/{ID}/work"),
        mount_point=Template(f"{home}/{ID}/merged"),
        parts=(Part(layer, "directory"),),
        repair=repair,
        marks=((links.directory, "dir"),),
        lists=(home, links.directory, layer.glob),
        reads=(links.file.glob, lower.file.glob) if probed else (),
    )


OVERLAY2 = _overlay2("overlay2", 0, repair=True, probed=True)
FUSE_OVERLAYFS = _overlay2("fuse-overlayfs", 1, repair=False, probed=False)


def _overlay() -> DriverLayout:
    """overlay (v1): an image layer's ``root/`` is a whole root file system (a hardlinked copy
    of its parent's plus its diff); a container or init layer has ``upper/``, ``work/``,
    ``merged/`` and ``lower-id`` naming the image's top layer (the init layer's upper is copied
    into the container's, so both name the same lower)."""
    layer = Template(f"overlay/{ID}")
    root = Template(f"overlay/{ID}/root")
    lower = Lower(Template(f"overlay/{ID}/lower-id"), "lower-id", "lower-id file",
                  Template(ID), "dir", "top")  # fmt: skip
    return DriverLayout(
        name="overlay",
        reader="overlay",
        checks="overlay",
        home="overlay",
        layer=layer,
        content=root,
        holds="rootfs",
        upper=Template(f"overlay/{ID}/upper"),
        whiteouts=OVERLAY_WHITEOUTS,
        diff="upper-on-root",
        evidence="overlay",
        preference=6,
        lower=lower,
        work=Template(f"overlay/{ID}/work"),
        mount_point=Template(f"overlay/{ID}/merged"),
        parts=(Part(layer, "directory"),),
        repair=True,
        marks=((root(HEX64), "dir"), (lower.file(HEX64), "file")),
        lists=("overlay", layer.glob),
    )


def _aufs() -> DriverLayout:
    """aufs: ``diff/<id>/`` the layer's files, ``layers/<id>`` its parents (nearest first, one
    per line; its existence is what the daemon calls "exists"), ``mnt/<id>/`` its mount point."""
    diff = Template(f"aufs/diff/{ID}")
    lower = Lower(Template(f"aufs/layers/{ID}"), "layers", "aufs layers file", Template(ID),
                  "dir", "chain")  # fmt: skip
    mnt = Template(f"aufs/mnt/{ID}")
    return DriverLayout(
        name="aufs",
        reader="aufs",
        checks="aufs",
        home="aufs",
        layer=diff,
        content=diff,
        holds="diff",
        upper=diff,
        whiteouts=AUFS_WHITEOUTS,
        diff="layers",
        evidence=lower.file.directory,
        preference=5,
        lower=lower,
        mount_point=mnt,
        parts=(Part(mnt, "mount point"), Part(diff, "files"), Part(lower.file, "parent list")),
        repair=True,
        marks=((lower.file.directory, "dir"),),
        lists=("aufs", lower.file.directory, diff.directory),
        reads=(lower.file.glob,),
    )


OVERLAY = _overlay()
AUFS = _aufs()


def _plain(
    name: str, layers: str, preference: int, *, diff: DiffMethod | None, repair: bool
) -> DriverLayout:
    """vfs, btrfs and zfs: one directory per layer holding the whole root file system as of
    that layer (a copy, a subvolume snapshot, a dataset's mount point); no parents on disk."""
    layer = Template(f"{layers}/{ID}")
    return DriverLayout(
        name=name,
        reader="plain",
        checks=name,
        home=name,
        layer=layer,
        content=layer,
        holds="rootfs",
        upper=None,
        whiteouts=None,
        diff=diff,
        evidence=layers,
        preference=preference,
        parts=(Part(layer, "directory"),),
        repair=repair,
        lists=(name, layers),
    )


VFS = _plain("vfs", "vfs/dir", 4, diff="rootfs", repair=True)
BTRFS = _plain("btrfs", "btrfs/subvolumes", 2, diff="rootfs", repair=False)
#: zfs: each layer is a dataset, mounted at ``graph/<id>`` only while in use, so an offline copy
#: holds empty mount points: no diff is computed from them
ZFS = _plain("zfs", "zfs/graph", 3, diff=None, repair=False)


#: devicemapper's thin pool: Docker's records of its devices and the loop-lvm pool's files
DEVICEMAPPER_POOL = ThinPool(
    records="devicemapper/metadata",
    record=Template(f"devicemapper/metadata/{ID}"),
    deviceset_name="deviceset-metadata",
    transaction_name="transaction-metadata",
    base="base",
    pool="devicemapper/devicemapper",
    data_name="data",
    metadata_name="metadata",
    rootfs="rootfs",
)


def _devicemapper(thin: ThinPool) -> DriverLayout:
    """devicemapper: ``metadata/<id>`` the record of the layer's thin device (beside the
    pool's ``base``, ``deviceset-metadata`` and ``transaction-metadata``), ``mnt/<id>/`` its
    mount point, ``devicemapper/{data,metadata}`` the loop-lvm pool files; the layer's files
    are inside its device (``thin``)."""
    mnt = Template(f"devicemapper/mnt/{ID}")
    return DriverLayout(
        name="devicemapper",
        reader="devicemapper",
        checks="devicemapper",
        home="devicemapper",
        layer=thin.record,
        content=None,
        holds="rootfs",
        upper=None,
        whiteouts=None,
        diff="rootfs",
        evidence=thin.records,
        preference=7,
        mount_point=mnt,
        thin=thin,
        parts=(Part(thin.record, "device record"), Part(mnt, "mount point")),
        repair=True,
        marks=((thin.records, "dir"), (thin.pool, "dir")),
        lists=("devicemapper", thin.records, thin.pool),
        reads=(thin.record.glob,),
    )


DEVICEMAPPER = _devicemapper(DEVICEMAPPER_POOL)

#: Docker's storage drivers, in the order of the table (repair names them in it)
DRIVERS: dict[str, DriverLayout] = {
    row.name: row
    for row in (OVERLAY2, FUSE_OVERLAYFS, OVERLAY, AUFS, VFS, DEVICEMAPPER, BTRFS, ZFS)
}
#: the daemon's own order of preference (28.x), then the drivers removed since
PREFERENCE: tuple[str, ...] = tuple(
    sorted((r.name for r in DRIVERS.values() if r.preference is not None),
           key=lambda n: DRIVERS[n].preference or 0)
)  # fmt: skip

#: where containerd keeps a snapshotter's files: ``<containerd root>/<plugin id>``
SNAPSHOTTER_PLUGIN = "io.containerd.snapshotter.v1."
_SNAPSHOTTER = f"{SNAPSHOTTER_PLUGIN}overlayfs"
#: containerd's overlayfs snapshotter (Docker 29's containerd image store): ``snapshots/<id>/``
#: holds ``fs/`` (the layer's diff) and ``work/``; its database names the parents; dockerd
#: mounts a container's root file system at ``rootfs/overlayfs/<container id>``
CONTAINERD_OVERLAYFS = DriverLayout(
    name="overlayfs",
    reader="containerd",
    checks="containerd",
    home=_SNAPSHOTTER,
    layer=Template(f"{_SNAPSHOTTER}/snapshots/{ID}"),
    content=Template(f"{_SNAPSHOTTER}/snapshots/{ID}/fs"),
    holds="diff",
    upper=Template(f"{_SNAPSHOTTER}/snapshots/{ID}/fs"),
    whiteouts=OVERLAY_WHITEOUTS,
    diff="layers",
    evidence=f"{DOCKERS_CONTAINERD}/{_SNAPSHOTTER}/snapshots",
    preference=None,
    work=Template(f"{_SNAPSHOTTER}/snapshots/{ID}/work"),
    mount_point=Template(f"rootfs/overlayfs/{ID}"),
    marks=(("rootfs/overlayfs", "dir"),),
    cleanup=True,
)
_NATIVE = f"{SNAPSHOTTER_PLUGIN}native"
#: containerd's native snapshotter (containerd ``plugins/snapshots/native``), as vfs is to
#: Docker: ``snapshots/<id>/`` is the snapshot's whole root file system (an active snapshot is
#: a copy of its parent's), no ``fs/`` or ``work/``; a view on a parent has no directory of its
#: own (it mounts the parent's). It has no cleanup: a directory without an id (``new-*``,
#: ``rm-*`` of an interrupted prepare or remove among them) is nobody's to delete. dockerd
#: mounts a container at ``rootfs/<snapshotter>/<id>`` (moby ``daemon/snapshotter/mount.go``)
CONTAINERD_NATIVE = DriverLayout(
    name="native",
    reader="containerd",
    checks="containerd",
    home=_NATIVE,
    layer=Template(f"{_NATIVE}/snapshots/{ID}"),
    content=Template(f"{_NATIVE}/snapshots/{ID}"),
    holds="rootfs",
    upper=None,
    whiteouts=None,
    diff="rootfs",
    evidence=f"{DOCKERS_CONTAINERD}/{_NATIVE}/snapshots",
    preference=None,
    mount_point=Template(f"rootfs/native/{ID}"),
)
#: containerd snapshotters with a row
SNAPSHOTTERS: dict[str, DriverLayout] = {
    row.name: row for row in (CONTAINERD_OVERLAYFS, CONTAINERD_NATIVE)
}
#: a snapshotter's own bolt database, in its home (containerd ``snapshots/storage``)
SNAPSHOTTER_DB = "metadata.db"

# -- containerd's other plugins: the store the snapshotters' rows sit in ------------------------

#: containerd's metadata plugin: ``meta.db``, the bolt database of every namespace's images,
#: containers, snapshots, content, leases and ingests (containerd ``metadata/db.go``)
CONTAINERD_METADATA = "io.containerd.metadata.v1.bolt"
CONTAINERD_META_DB = f"{CONTAINERD_METADATA}/meta.db"
#: containerd's content store (``content/local``): ``blobs/<algorithm>/<hex>``, shared by
#: every namespace, and ``ingest/<sha256 of the ref>/`` an unfinished write each
CONTAINERD_CONTENT = "io.containerd.content.v1.content"
CONTAINERD_BLOBS = f"{CONTAINERD_CONTENT}/blobs"
CONTAINERD_SHA256_BLOBS = f"{CONTAINERD_BLOBS}/sha256"
CONTAINERD_INGEST = f"{CONTAINERD_CONTENT}/ingest"


def containerd_blob(digest: str) -> str:
    """Where the content store keeps the blob of ``digest`` (``<algorithm>:<hex>``), relative
    to the containerd root."""
    algorithm, _, hexpart = digest.partition(":")
    return f"{CONTAINERD_BLOBS}/{algorithm}/{hexpart}"


#: the snapshotters that Docker's containerd image store writes into a container's ``Driver``
SNAPSHOTTER_NAMES = frozenset(
    {*SNAPSHOTTERS, "native", "stargz", "fuse-overlayfs-snapshotter", "zfs-snapshotter"}
)


def layout_of(driver: str | None) -> DriverLayout | None:
    """The row of Docker storage driver ``driver``; None for a driver without one."""
    return DRIVERS.get(driver or "")


def driver_marks() -> tuple[tuple[str, str], ...]:
    """The Docker root marks of every driver, in the table's order."""
    return tuple(mark for row in DRIVERS.values() for mark in row.marks)


def driver_reads() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What the drivers' stores list and read, in the table's order."""
    lists = tuple(p for row in DRIVERS.values() for p in row.lists)
    reads = tuple(p for row in DRIVERS.values() for p in row.reads)
    return lists, reads
