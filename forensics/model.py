"""The model of a Docker root: plain dataclasses that stores fill and checks read.

A store never decides severity: what it could not read or parse it records as a :class:`Problem`
on the object concerned, under the role of the file (``config``, ``mount-id``, …). Checks turn
problems and cross-references into findings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from sys import intern
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the containerd store's model: loaded by the stores that read one
    from forensics.containerd_model import ContainerdHost


@dataclass(frozen=True, slots=True)
class Problem:
    """A file that a store could not read or decode.

    ``damage``: missing, symlink, not-regular, not-directory, unreadable, too-large (reading);
    empty, nul-filled, truncated, invalid, not-utf8 (JSON); bad-value, wrong-type (content).
    """

    path: str
    damage: str
    detail: str


@dataclass(slots=True)
class Layer:
    """One read-only layer: a modern layerdb entry, or a legacy graph image (which is a layer)."""

    id: str  # ChainID ("sha256:<hex>") or legacy graph id
    path: str  # the layerdb/graph directory, relative to ROOT
    diff_id: str | None = None
    parent: str | None = None
    cache_id: str | None = None  # driver directory name
    size: int | None = None
    has_tar_split: bool = False
    created: str | None = None
    # legacy graph only
    config_id: str | None = None  # the id inside graph/<id>/json
    computed_digest: str | None = None  # sha256 of graph/<id>/json
    layer_digest: str | None = None  # json layer_id: set by 1.8.3+ v2 pulls (strong ids)
    checksum: str | None = None
    has_v1_compatibility: bool = False
    parent_from_file: bool = False  # a graph/<id>/parent file named the parent
    migration: list[str] = field(default_factory=list)  # .migration-* files of the 1.10 upgrade
    migration_diff_id: str | None = None  # the DiffID the migration computed
    problems: dict[str, Problem] = field(default_factory=dict)


@dataclass(slots=True)
class Image:
    id: str  # "sha256:<hex>" (modern) or 64 hex (legacy graph id)
    path: str  # the config file, relative to ROOT
    config_ok: bool = False
    computed_digest: str | None = None
    created: str | None = None
    os: str | None = None
    architecture: str | None = None
    diff_ids: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)  # layer ids, base first
    history_layers: int | None = None  # non-empty history entries
    parent: str | None = None
    last_updated: str | None = None  # imagedb metadata: when it was last tagged
    tags: list[str] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    has_rootfs: bool = False
    problems: dict[str, Problem] = field(default_factory=dict)
    run_config: RunConfig | None = None  # the image config's ``config``


@dataclass(slots=True)
class RunConfig:
    """Docker's ``container.Config`` as far as people ask for it: what an image says to run
    (``config`` of an image config) and what a container was created with (``Config`` of its
    config.v2.json). Only values of the right JSON type are kept."""

    env: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    working_dir: str = ""
    user: str = ""
    exposed_ports: list[str] = field(default_factory=list)  # "80/tcp", sorted
    healthcheck: list[str] | None = None  # Healthcheck.Test


def share_run_config(config: RunConfig | None) -> None:
    """``config``'s strings made the one object of their value (``sys.intern``): a host's
    images and containers repeat the same environment, labels and commands thousands of times
    (on bench's 5,000-container host ≈ 12 MB of copies), each decoded apart."""
    if config is None:
        return
    config.env = [intern(value) for value in config.env]
    config.labels = {intern(key): intern(value) for key, value in config.labels.items()}
    if config.cmd:
        config.cmd = [intern(value) for value in config.cmd]
    if config.entrypoint:
        config.entrypoint = [intern(value) for value in config.entrypoint]
    config.working_dir, config.user = intern(config.working_dir), intern(config.user)


@dataclass(slots=True)
class PortBinding:
    """A container port and where it is published (``NetworkSettings.Ports``,
    ``HostConfig.PortBindings``); host_ip and host_port are None for a port not published."""

    container_port: str  # "80/tcp"
    host_ip: str | None = None
    host_port: str | None = None


@dataclass(slots=True)
class Network:
    """One network the container is attached to (``NetworkSettings.Networks``)."""

    name: str
    ip_address: str | None = None
    mac_address: str | None = None


@dataclass(slots=True)
class ContainerDetails:
    """What a container's config and hostconfig say beyond its identity and state word, for
    ``docker ps``/``docker inspect``-like views. Made only when a config could be read, so that a
    container directory without one costs nothing here."""

    process_path: str | None = None  # Path: the program that was run
    args: list[str] = field(default_factory=list)  # Args
    oom_killed: bool = False
    error: str | None = None  # State.Error: why the last start failed
    restart_count: int | None = None
    health: str | None = None  # State.Health.Status as Docker reports it
    health_failing_streak: int | None = None
    log_path: str | None = None  # LogPath as recorded (a path on the original host)
    log_driver: str | None = None  # HostConfig.LogConfig.Type
    hostname: str | None = None
    network_mode: str | None = None
    restart_policy: str | None = None  # HostConfig.RestartPolicy.Name
    restart_retries: int | None = None  # HostConfig.RestartPolicy.MaximumRetryCount
    ports: list[PortBinding] = field(default_factory=list)  # what docker ps shows
    port_bindings: list[PortBinding] = field(default_factory=list)  # what was asked for
    networks: list[Network] = field(default_factory=list)
    #: the digest of ``ImageManifest`` (Docker 29, containerd image store)
    image_manifest: str | None = None


@dataclass(slots=True)
class Mount:
    """``layerdb/mounts/<cid>``: a container's read-write layer record."""

    container_id: str
    path: str
    mount_id: str | None = None
    init_id: str | None = None
    parent: str | None = None
    problems: dict[str, Problem] = field(default_factory=dict)


@dataclass(slots=True)
class MountPoint:
    destination: str
    type: str | None
    name: str | None
    driver: str | None
    source: str | None
    rw: bool | None = None
    mode: str | None = None  # Relabel ("z", "Z", ""), what docker inspect calls Mode
    propagation: str | None = None


@dataclass(slots=True)
class Container:
    id: str  # the directory name
    path: str
    config_file: str | None = None
    config_ok: bool = False
    config_id: str | None = None  # the ID recorded inside the config
    name: str | None = None
    image: str | None = None  # what the user asked for (Config.Image)
    image_id: str | None = None
    state: str = "unknown"
    exit_code: int | None = None
    pid: int | None = None
    created: str | None = None
    started: str | None = None
    finished: str | None = None
    driver: str | None = None
    command: str | None = None
    mount_id: str | None = None
    init_id: str | None = None
    #: set once, and a tuple: a container without any costs no list (a million empty
    #: container directories would otherwise hold two million empty lists)
    mount_points: tuple[MountPoint, ...] = ()
    leftovers: tuple[str, ...] = ()  # .tmp-* files of interrupted writes
    problems: dict[str, Problem] = field(default_factory=dict)
    run_config: RunConfig | None = None  # Config of config.v2.json
    details: ContainerDetails | None = None


@dataclass(slots=True)
class Volume:
    name: str
    path: str
    driver: str = "local"
    has_data: bool = False
    anonymous: bool = False


@dataclass(slots=True)
class DriverDir:
    """A directory of the storage driver (overlay2/<id>, aufs/diff/<id>, vfs/dir/<id>, …)."""

    id: str
    path: str
    link: str | None = None  # overlay2 link id
    lower: list[str] | None = None  # overlay2 lower entries ("l/<LINK>") or overlay lower-id
    has_diff: bool = False
    committed: bool = False
    problems: dict[str, Problem] = field(default_factory=dict)


@dataclass(slots=True)
class Device:
    """A devicemapper thin device as Docker records it: ``devicemapper/metadata/<hash>``."""

    hash: str  # "base" for the base device, else the layer / container id it backs
    path: str
    device_id: int | None = None
    size: int | None = None
    transaction_id: int | None = None
    initialized: bool | None = None
    deleted: bool | None = None
    problems: dict[str, Problem] = field(default_factory=dict)


@dataclass(slots=True)
class PoolFile:
    """A loop-lvm pool file (``devicemapper/devicemapper/{data,metadata}``), as a file."""

    path: str
    size: int
    allocated: int  # bytes really on disk: st_blocks × 512


@dataclass(slots=True)
class PoolDevice:
    """A thin device as the pool's own metadata records it."""

    device_id: int
    mapped_blocks: int
    transaction_id: int
    highest_block: int | None  # the highest virtual block mapped, None when none


@dataclass(slots=True)
class PoolState:
    """What the thin pool's binary metadata says (``devicemapper/devicemapper/metadata``)."""

    path: str
    readable: bool = False
    problem: str | None = None  # why it could not be read, when it could not
    damaged: bool = False  # the trees have damage (thin check tells what)
    #: the errors met reading the superblock and the trees, in thin check's words
    #: ("block 111: bad checksum in btree node 111; the mapping tree of device 2: …")
    errors: list[str] = field(default_factory=list)
    transaction_id: int | None = None
    data_block_size: int | None = None  # in 512-byte sectors
    nr_data_blocks: int | None = None
    devices: dict[int, PoolDevice] = field(default_factory=dict)


@dataclass(slots=True)
class DeviceSet:
    """devicemapper's ``deviceset-metadata`` and ``transaction-metadata``."""

    next_device_id: int | None = None
    base_uuid: str | None = None
    base_filesystem: str | None = None
    open_transaction_id: int | None = None
    transaction_hash: str | None = None
    transaction_device_id: int | None = None
    has_transaction: bool = False
    pool_files: dict[str, PoolFile] = field(default_factory=dict)
    mount_points: list[str] = field(default_factory=list)  # names under devicemapper/mnt/
    pool: PoolState | None = None
    problems: dict[str, Problem] = field(default_factory=dict)


@dataclass(slots=True)
class Host:
    """Everything read from one Docker root."""

    root: str
    layout: str = "unknown"  # modern, legacy, containerd, empty, unknown
    driver: str | None = None
    image_store: str | None = None  # image/<driver>, relative to ROOT, or graph
    images: dict[str, Image] = field(default_factory=dict)
    layers: dict[str, Layer] = field(default_factory=dict)
    mounts: dict[str, Mount] = field(default_factory=dict)
    containers: dict[str, Container] = field(default_factory=dict)
    volumes: dict[str, Volume] = field(default_factory=dict)
    driver_dirs: dict[str, DriverDir] = field(default_factory=dict)
    devices: dict[str, Device] = field(default_factory=dict)
    deviceset: DeviceSet | None = None
    #: overlay2 ``l/<LINK>`` → its symlink target (None when it is no symlink)
    links: dict[str, str | None] = field(default_factory=dict)
    #: repository references (``name:tag`` or ``name@digest``) → image id
    references: dict[str, str] = field(default_factory=dict)
    references_path: str | None = None
    #: linkgraph.db edges (entity, parent, name): names under "0", links under containers
    link_edges: list[tuple[str, str, str]] = field(default_factory=list)
    #: other ``image/<driver>`` stores that are present but not in use
    stale_stores: list[str] = field(default_factory=list)
    #: leftovers of interrupted operations, by kind (``layer-removing``, ``layerdb-tmp``, …)
    leftovers: dict[str, list[str]] = field(default_factory=dict)
    #: names that a BuildKit database under buildkit/ mentions
    buildkit_present: bool = False
    buildkit_keys: set[str] = field(default_factory=set)
    #: BuildKit databases that exist but cannot be read or decoded, by path
    buildkit_damaged: dict[str, Problem] = field(default_factory=dict)
    #: facts about the layout that are neither objects nor damage (containerd store, …)
    notes: list[tuple[str, str, str]] = field(default_factory=list)  # (check, path, message)
    problems: dict[str, Problem] = field(default_factory=dict)  # root-level files, by role
    #: a migrated root: the 1.8/1.9 store that the 1.10 migration left beside the modern one
    legacy: Host | None = None
    #: legacy graph id → the 1.10+ image id it was migrated to (.migration-v1-images.json)
    migrated_images: dict[str, str] = field(default_factory=dict)
    #: the containerd store read with the root (Docker 29's image store, or ROOT itself)
    containerd: ContainerdHost | None = None

    def add_leftover(self, kind: str, path: str) -> None:
        self.leftovers.setdefault(kind, []).append(path)
