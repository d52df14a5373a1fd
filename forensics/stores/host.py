"""Read a whole Docker root: detect its layout and driver from evidence, then read every store.

Detection never trusts one directory entry. The image store in use is the ``image/<driver>``
that holds layers and images and that the containers' ``Driver`` names; the legacy layout is a
``graph/`` of image directories; Docker 29's containerd image store is recognised by its
containerd state and by containers that name a containerd snapshotter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from sys import intern

from forensics.drivers import (
    CONTAINERD_OVERLAYFS,
    CONTAINERD_SHA256_BLOBS,
    DOCKERS_CONTAINERD,
    LEGACY_EMPTY_DRIVER,
    PREFERENCE,
    SNAPSHOTTER_NAMES,
    DriverLayout,
    init_name,
    layout_of,
)
from forensics.evidence import Evidence
from forensics.formats.ids import DRIVER_NAME, is_hex64
from forensics.heap import no_cycle_collection
from forensics.model import Container, Host, share_run_config
from forensics.parallel import shared_workers
from forensics.stores.aufs import read_aufs
from forensics.stores.buildkit import read_buildkit, record_buildkit
from forensics.stores.containerd_host import attach_containerd, containerd_note
from forensics.stores.containers import read_container, read_containers, start_containers
from forensics.stores.devicemapper import read_devicemapper
from forensics.stores.dockerroot import is_docker_root
from forensics.stores.imagestore import start_image_store, store_has_content
from forensics.stores.legacy import (
    read_graph,
    read_linkgraph,
    read_migration_map,
    read_repositories,
)
from forensics.stores.overlay import read_overlay
from forensics.stores.overlay2 import start_overlay2
from forensics.stores.plaindirs import read_plain_dirs
from forensics.stores.volumes import read_volumes

assert CONTAINERD_OVERLAYFS.mount_point is not None
#: directories that hold data only when the containerd image store is in use (dockerd's own
#: containerd keeps an empty content store and snapshotter beside a graphdriver store)
CONTAINERD_EVIDENCE = (
    CONTAINERD_OVERLAYFS.mount_point.directory,
    f"{DOCKERS_CONTAINERD}/{CONTAINERD_SHA256_BLOBS}",
    CONTAINERD_OVERLAYFS.evidence,
)
#: the store that reads each kind of driver row: started at once, finished when called
DRIVER_READERS: dict[str, Callable[[Evidence, Host, DriverLayout], None]] = {
    "overlay": read_overlay,
    "aufs": read_aufs,
    "devicemapper": read_devicemapper,
    "plain": read_plain_dirs,
}


@dataclass
class Detection:
    layout: str
    driver: str | None
    store: str | None = None
    stale_stores: list[str] = field(default_factory=list)
    #: the store directories listed to detect the layout (directory → name → entry type)
    listed: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Scope:
    """What of a root is read. verify, repair and the exports read all of it
    (:data:`EVERYTHING`); inventory reads what it shows (:data:`SHOWN`), and a view of one
    container not even the layers behind the image sizes it does not print
    (:data:`CONTAINERS`). What is read is read the same way, with the same safety rules."""

    #: the driver's own directories and links (overlay2's ``<id>/`` and ``l/``, aufs', vfs'…;
    #: devicemapper's devices are always read) and BuildKit's databases: only checked
    driver_dirs: bool = True
    #: the layerdb entries (DiffIDs, parents, cache ids, sizes)
    layers: bool = True
    #: the names probed for the checks only (a layerdb entry's tar-split)
    probes: bool = True
    #: the image store's images and tags (``repositories.json``, ``imagedb/``, the layerdb
    #: entries when ``layers``; a legacy ``graph/``), and the 1.8/1.9 store of a migrated root
    images: bool = True
    #: the containers' directories and their mount records (``layerdb/mounts/``); without
    #: them the containers' configs are read only when the layout cannot be told otherwise
    containers: bool = True
    #: the local volumes (``volumes/``)
    volumes: bool = True
    #: what only the records show, not the text tables: the containers' host configs and
    #: mount records, the layers' DiffIDs, cache ids and parents (without: a layer's size)
    details: bool = True


EVERYTHING = Scope()
SHOWN = Scope(driver_dirs=False, probes=False)
CONTAINERS = Scope(driver_dirs=False, layers=False, probes=False)
#: what each section of the inventory shows, read alone (``inventory --images`` …)
SECTIONS = ("images", "containers", "volumes")


def shown_sections(sections: frozenset[str], *, tables: bool = False) -> Scope:
    """What inventory reads to show ``sections`` (of :data:`SECTIONS`; none: every one):
    ``docker ps -a``'s view reads no image config nor layer, ``docker images``' no container,
    ``docker volume ls``' neither. ``tables``: only what the text tables print (no host
    config, no mount record, of a layer its size)."""
    unknown = sections - set(SECTIONS)
    if unknown:
        raise ValueError(f"no such inventory section: {', '.join(sorted(unknown))}")
    if not sections and not tables:
        return SHOWN
    return Scope(
        driver_dirs=False,
        probes=False,
        images=not sections or "images" in sections,
        containers=not sections or "containers" in sections,
        volumes=not sections or "volumes" in sections,
        details=not tables,
    )


def read_host(ev: Evidence, containerd: Evidence | None = None, scope: Scope = EVERYTHING) -> Host:
    """Read ROOT (``ev``) whole, or what ``scope`` asks of it; ``containerd``: a containerd
    root given apart from it."""
    # the helpers are forked once, at the first store big enough to need them
    with no_cycle_collection(), shared_workers(ev):
        return _read_host(ev, containerd, scope)


def _read_host(ev: Evidence, containerd: Evidence | None, scope: Scope) -> Host:
    host = Host(root=str(ev.root))
    finish_containers = (
        start_containers(ev, host, host_configs=scope.details) if scope.containers else None
    )
    contents = store_contents(ev)  # listed while the helpers read the containers
    if finish_containers is not None:
        finish_containers()
        _share_container_strings(host)
    found = detect_layout(ev, host, contents, partial(_containers_for_votes, ev, host, scope))
    host.layout, host.driver, host.stale_stores = found.layout, found.driver, found.stale_stores
    if found.layout == "modern" and found.store:
        finish_store = start_image_store(
            ev,
            host,
            found.store,
            images=scope.images,
            layers=scope.layers and scope.images,
            mounts=scope.containers and scope.details,
            probes=scope.probes,
            sizes_only=not scope.details,
            listed=found.listed,
        )
        finish_driver = _start_driver(ev, host, found.driver, scope)
        finish_store()
        share_layer_ids(host)
        _modern_container_layers(host)
        if any(is_hex64(name) for name in ev.listdir_or_empty("graph")):
            host.legacy = (
                read_legacy_era(ev, host, scope.containers) if scope.images else _unread_era(host)
            )
        finish_driver()
    elif found.layout == "legacy":
        host.image_store = "graph"
        if scope.images:
            read_graph(ev, host)
            read_repositories(ev, host, found.driver)
        if scope.containers:
            read_linkgraph(ev, host)
            _legacy_container_layers(host)
        _start_driver(ev, host, found.driver, scope)()
    elif found.driver:
        _start_driver(ev, host, found.driver, scope)()
    if scope.volumes:
        read_volumes(ev, host)
    if scope.driver_dirs:
        _read_buildkit(ev, host)
    attach_containerd(ev, host, containerd)
    if host.containerd is not None and scope.images and not scope.containers:
        # the containerd store's view of Docker's images names them
        read_containers(ev, host, host_configs=scope.details)
    _note_layout(ev, host)
    return host


def _containers_for_votes(ev: Evidence, host: Host, scope: Scope) -> dict[str, Container]:
    """The containers whose ``Driver`` the layout detection weighs: those read already, or,
    outside ``scope``, read now for that alone (only when the stores cannot tell)."""
    if scope.containers:
        return host.containers
    apart = Host(root=host.root)
    read_containers(ev, apart)
    return apart.containers


def _unread_era(host: Host) -> Host:
    """The 1.8/1.9 store of a migrated root, present but not read (its images are not asked
    for): the layout's note still says it is there."""
    return Host(root=host.root, layout="legacy", driver=host.driver)


def _read_buildkit(ev: Evidence, host: Host) -> None:
    read_buildkit(ev, host)
    if host.buildkit_present:
        # every name, not only those unlike dockerd's: an orphan is quarantined only when no
        # BuildKit database names it
        record_buildkit(ev, host, sorted(host.driver_dirs))


def read_legacy_era(ev: Evidence, host: Host, containers_read: bool = True) -> Host:
    """The 1.8/1.9 store that a migration to 1.10+ left beside the modern one: graph/, its tags,
    the containers' config.json, the names of linkgraph.db and the migration's bookkeeping.
    ``containers_read``: ``host`` holds the containers (else their directories are listed)."""
    legacy = Host(root=host.root, layout="legacy", driver=host.driver)
    legacy.driver_dirs = host.driver_dirs
    legacy.devices = host.devices
    ids = host.containers if containers_read else sorted(ev.listdir_or_empty("containers"))
    for cid in ids:
        if not containers_read and not is_hex64(cid):
            continue
        rel = f"containers/{cid}"
        if ev.exists(f"{rel}/config.json"):
            legacy.containers[cid] = read_container(ev, rel, cid, legacy_era=True)
    read_graph(ev, legacy)
    read_repositories(ev, legacy, host.driver)
    read_linkgraph(ev, legacy)
    _legacy_container_layers(legacy)
    read_migration_map(ev, legacy)
    return legacy


#: each image store's count of layers and images, and the listings that counted them
StoreContents = tuple[dict[str, int], dict[str, dict[str, str]]]


def store_contents(ev: Evidence) -> StoreContents:
    """How many layers and images each ``image/<driver>/`` holds, and the listings of its
    ``layerdb/sha256`` and ``imagedb/content/sha256`` (read again by nobody)."""
    listed: dict[str, dict[str, str]] = {}
    stores = {name: store_has_content(ev, f"image/{name}", listed) for name in _image_stores(ev)}
    return stores, listed


def detect_layout(
    ev: Evidence,
    host: Host,
    contents: StoreContents | None = None,
    containers: Callable[[], dict[str, Container]] | None = None,
) -> Detection:
    """The layout of ROOT, its driver and its image store. ``contents``: what
    :func:`store_contents` found, when it was called already; ``containers``: gives the
    containers whose ``Driver`` votes (default: ``host``'s), asked only when the image stores
    alone cannot tell."""
    stores, listed = store_contents(ev) if contents is None else contents
    with_content = [name for name, count in stores.items() if count]
    if len(with_content) == 1:  # the one store that holds anything is in use, whatever the votes
        driver = with_content[0]
        stale = sorted(f"image/{name}" for name in stores if name != driver)
        return Detection("modern", driver, f"image/{driver}", stale, listed)
    voters = containers() if containers is not None else host.containers
    votes = Counter(c.driver for c in voters.values() if c.driver is not None)
    used = [name for name, count in stores.items() if count] + [d for d in votes if d in stores]
    if used:
        driver = used[0]
        if len(set(used)) > 1:  # more than one candidate: the weighing lists driver dirs
            driver = max(used, key=lambda d: (stores[d], votes[d], _driver_has_data(ev, d)))
        stale = sorted(f"image/{name}" for name in stores if name != driver)
        return Detection("modern", driver, f"image/{driver}", stale, listed)
    if (votes and set(votes) <= SNAPSHOTTER_NAMES) or any(
        ev.listdir_or_empty(p) for p in CONTAINERD_EVIDENCE
    ):
        return Detection("containerd", None, None, sorted(f"image/{s}" for s in stores))
    if any(is_hex64(name) for name in ev.listdir_or_empty("graph")):
        return Detection("legacy", _legacy_driver(ev, votes))
    if stores:
        driver = max(stores, key=lambda d: (_driver_has_data(ev, d), -_priority(d)))
        stale = sorted(f"image/{name}" for name in stores if name != driver)
        return Detection("modern", driver, f"image/{driver}", stale, listed)
    if voters or ev.is_dir("graph"):
        return Detection("legacy", _legacy_driver(ev, votes))
    return Detection("empty" if _looks_like_docker(ev) else "unknown", None)


def _image_stores(ev: Evidence) -> list[str]:
    return [name for name in ev.listdir_or_empty("image") if ev.is_dir(f"image/{name}")]


def _driver_has_data(ev: Evidence, driver: str) -> bool:
    layout = layout_of(driver)
    return bool(layout and ev.listdir_or_empty(layout.evidence))


def _priority(driver: str) -> int:
    return PREFERENCE.index(driver) if driver in PREFERENCE else len(PREFERENCE)


def _legacy_driver(ev: Evidence, votes: Counter[str | None]) -> str | None:
    """The legacy driver: the containers' ``Driver`` (empty meant aufs), a ``repositories-<driver>``
    file, or a driver directory with entries."""
    named = Counter({(d or LEGACY_EMPTY_DRIVER): n for d, n in votes.items() if d is not None})
    for name in ev.listdir_or_empty(""):
        if name.startswith("repositories-"):
            named[name.removeprefix("repositories-")] += 1
    for name in [d for d in named if not DRIVER_NAME.fullmatch(d)]:
        del named[name]  # it names repositories-<driver>: a config's "../x" is no driver
    for driver in PREFERENCE:
        if _driver_has_data(ev, driver):
            named[driver] += 1
    if not named:
        return None
    return max(named, key=lambda d: (named[d], -_priority(d)))


def _looks_like_docker(ev: Evidence) -> bool:
    """A root with no store to read that still bears a mark of dockerd's (an empty layout), as
    opposed to a directory that is no Docker root at all."""
    from forensics.treeevidence import TreeEvidence  # the file-tree readers: only when asked

    try:
        return is_docker_root(ev if isinstance(ev, TreeEvidence) else ev.root)
    except OSError:
        return False


def _start_driver(ev: Evidence, host: Host, driver: str | None, scope: Scope) -> Callable[[], None]:
    """Start reading the driver's directories, as its row says; the function returned
    finishes it. overlay2's layout is handed to the workers now, so that they read it while
    the image store is taken in; the other drivers are read when the function is called.
    Outside ``scope`` only devicemapper's devices are read (they are shown)."""
    layout = layout_of(driver)
    if layout is None:
        return _nothing
    if not scope.driver_dirs and layout.reader != "devicemapper":
        return _nothing
    if layout.reader == "overlay2":
        return start_overlay2(ev, host, layout)
    return partial(DRIVER_READERS[layout.reader], ev, host, layout)


def _nothing() -> None:
    """A driver without a row, or outside the scope: nothing of it is read."""


def _share_container_strings(host: Host) -> None:
    """The containers' repeated strings made one object each (``sys.intern``): their run
    configurations, image names, drivers, log drivers and network modes. Done before the
    image store is read, which then reuses the memory of the copies."""
    for container in host.containers.values():
        share_run_config(container.run_config)
        if container.image is not None:
            container.image = intern(container.image)
        if container.driver is not None:
            container.driver = intern(container.driver)
        details = container.details
        if details is not None and details.log_driver is not None:
            details.log_driver = intern(details.log_driver)
        if details is not None and details.network_mode is not None:
            details.network_mode = intern(details.network_mode)


def share_layer_ids(host: Host) -> None:
    """One string per layer id: the layers' parents made the same objects as the parents' own
    ids (the images' chains and DiffIDs are shared as they are taken in:
    :func:`forensics.stores.imagestore.share_image_ids`)."""
    layers = host.layers
    for layer in layers.values():
        parent = layers.get(layer.parent) if layer.parent is not None else None
        if parent is not None:
            layer.parent = parent.id


def _modern_container_layers(host: Host) -> None:
    for cid, mount in host.mounts.items():
        container = host.containers.get(cid)
        if container is not None:
            container.mount_id, container.init_id = mount.mount_id, mount.init_id


def _legacy_container_layers(host: Host) -> None:
    """Legacy containers' layers are named by the container id: ``<cid>`` and ``<cid>-init``."""
    for container in host.containers.values():
        container.mount_id = container.id
        container.init_id = init_name(container.id)


def _note_layout(ev: Evidence, host: Host) -> None:
    if host.layout == "containerd":
        host.notes.append(("layout.containerd-store", "", containerd_note(host)))
    if host.legacy is not None:
        host.notes.append(
            (
                "layout.legacy-graph",
                "graph",
                "a legacy graph/ from before the 1.10 migration is still present",
            )
        )
    for store in host.stale_stores:
        host.notes.append(
            (
                "layout.stale-store",
                store,
                "the store of a driver that is not in use (ignored by the daemon)",
            )
        )
