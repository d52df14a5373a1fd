"""The planned host: plain records that ``hostplan`` fills and ``hostwrite`` puts on disk."""

from __future__ import annotations

from dataclasses import dataclass, field

from tarsplit import Entry, LayerBlob


@dataclass(eq=False)
class Layer:
    parent: Layer | None
    diff_id: str
    chain_id: str
    cache_id: str
    link: str
    entries: list[Entry]
    blob: LayerBlob
    created_ns: int
    source_repo: str | None
    blob_digest: str | None
    depth: int = 1
    stack: str = ""  # "l/<own link>:l/<parent link>:…", what a child's ``lower`` holds
    children: int = 0
    empty_child: bool = False

    def __post_init__(self) -> None:
        own = f"l/{self.link}"
        self.stack = f"{own}:{self.parent.stack}" if self.parent else own
        self.depth = self.parent.depth + 1 if self.parent else 1
        if self.parent:
            self.parent.children += 1


@dataclass
class Settings:
    """The runnable part of an image config (``config`` in the image JSON)."""

    env: list[str]
    cmd: list[str]
    entrypoint: list[str] | None = None
    workdir: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    ports: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    user: str = ""


@dataclass(eq=False)
class Image:
    id: str  # 64 hex
    top: Layer
    config: bytes
    created_ns: int
    kind: str
    settings: Settings
    history: list[dict[str, object]]
    refs: list[str]  # familiar refs: "name:tag" and "name@sha256:…"
    repo: str
    parent: Image | None = None  # imagedb/metadata parent (classic builder)
    built_locally: bool = False
    last_updated: str | None = None

    def diff_ids(self) -> list[str]:
        ids = []
        layer: Layer | None = self.top
        while layer:
            ids.append(layer.diff_id)
            layer = layer.parent
        return ids[::-1]

    def run_ref(self) -> str:
        """What ``docker run`` was given (``Config.Image``)."""
        tags = [r for r in self.refs if "@" not in r]
        return tags[0] if tags else f"sha256:{self.id}"


@dataclass
class MountSpec:
    kind: str  # "volume" or "bind"
    source: str  # volume name, or host path for a bind
    destination: str
    rw: bool = True


@dataclass(eq=False)
class Volume:
    name: str
    anonymous: bool
    files: list[tuple[str, bytes]]


@dataclass(eq=False)
class Container:
    id: str
    name: str
    image: Image
    mount_id: str
    init_link: str
    rw_link: str
    state: str  # running / paused / restarting / exited / created / dead
    created_ns: int
    started_ns: int = 0
    finished_ns: int = 0
    exit_code: int = 0
    pid: int = 0
    oom_killed: bool = False
    healthy: bool | None = None
    mounts: list[MountSpec] = field(default_factory=list)
    project: str = ""
    service: str = ""
    number: int = 0
    restart: str = "no"
    network: str = "bridge"
    network_id: str = ""
    ip: str = ""
    sandbox_id: str = ""
    endpoint_id: str = ""
    mac: str = ""
    rw_entries: list[Entry] = field(default_factory=list)
    logs: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def started(self) -> bool:
        return self.state != "created"


@dataclass
class HostPlan:
    layers: list[Layer]
    images: list[Image]
    containers: list[Container]
    volumes: dict[str, Volume]
    engine_id: str
