"""Rules on containers and their layerdb mount records, in both directions."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from forensics.checks.catalog import finding
from forensics.checks.common import problem_findings, short
from forensics.drivers import LEGACY_EMPTY_DRIVER, init_name
from forensics.formats.ids import MOUNT_ID
from forensics.model import Container, Host, Mount
from forensics.report import Finding

CONTAINER_LABELS = {"config": "container config", "hostconfig": "hostconfig.json"}
MOUNT_LABELS = {"mount-id": "mount-id file", "init-id": "init-id file", "parent": "parent file"}
LIVE_STATES = {"running", "paused", "restarting"}


def check_containers(host: Host) -> Iterator[Finding]:
    for container in host.containers.values():
        yield from _check_container(host, container)
    yield from _check_duplicate_names(host)


def check_mounts(host: Host) -> Iterator[Finding]:
    if host.layout != "modern":
        return
    for mount in host.mounts.values():
        yield from _check_mount(host, mount)


def _check_container(host: Host, c: Container) -> Iterator[Finding]:
    ident = {"object_type": "container", "object_id": c.id}
    yield from problem_findings("container", c.problems, CONTAINER_LABELS, "container", c.id)
    for leftover in c.leftovers:
        yield finding(
            "container.tmp-leftover", leftover, "left by an interrupted config write", **ident
        )
    if not c.config_ok:
        return
    config = c.config_file or c.path
    if c.config_id != c.id:
        yield finding(
            "container.id-mismatch",
            config,
            f"the config says ID {c.config_id!r}: the daemon will not load it from here",
            **ident,
        )
    if c.state in LIVE_STATES:
        pid = f" (pid {c.pid})" if c.pid else ""
        yield finding(
            "container.was-running",
            config,
            f"recorded as {c.state}{pid}: the host stopped while it ran",
            **ident,
        )
    if host.layout in ("modern", "legacy"):
        yield from _check_container_refs(host, c, config)


def _check_container_refs(host: Host, c: Container, config: str) -> Iterator[Finding]:
    ident = {"object_type": "container", "object_id": c.id}
    if c.image_id and c.image_id not in host.images:
        yield finding(
            "container.image-missing",
            config,
            f"its image {short(c.image_id)} ({c.image or 'no name'}) does not exist",
            **ident,
        )
    driver = LEGACY_EMPTY_DRIVER if host.layout == "legacy" and c.driver == "" else c.driver
    if host.driver and driver != host.driver:
        yield finding(
            "container.driver-mismatch",
            config,
            f"made with driver {c.driver!r}, but {host.driver} is in use: the daemon skips it",
            **ident,
        )
    elif host.layout == "modern" and c.id not in host.mounts:
        yield finding(
            "container.mount-missing",
            c.path,
            "no layerdb/mounts record: the daemon does not restore this container",
            **ident,
        )
    elif host.layout == "legacy" and host.driver:
        missing = [layer for layer in (c.id, init_name(c.id)) if layer not in host.driver_dirs]
        if missing:  # one finding for both: a later cause names it by its path
            yield finding(
                "container.layer-missing",
                c.path,
                f"{host.driver} has no layer {' and no layer '.join(missing)}",
                **ident,
            )
    for point in c.mount_points:
        local = point.driver in (None, "", "local")
        if (
            point.type in (None, "volume")
            and point.name
            and local
            and point.name not in host.volumes
        ):
            yield finding(
                "container.volume-missing",
                config,
                f"volume {point.name!r} (mounted at {point.destination}) does not exist",
                **ident,
            )


def _check_duplicate_names(host: Host) -> Iterator[Finding]:
    by_name: dict[str, list[Container]] = defaultdict(list)
    for c in host.containers.values():
        if c.name:
            by_name[c.name].append(c)
    for name, same in sorted(by_name.items()):
        if len(same) < 2:
            continue
        for c in same:
            yield finding(
                "container.name-duplicate",
                c.config_file or c.path,
                f"name {name!r} is also used by {len(same) - 1} other container(s)",
                object_type="container",
                object_id=c.id,
            )


def _check_mount(host: Host, m: Mount) -> Iterator[Finding]:
    ident = {"object_type": "mount", "object_id": m.container_id}
    if m.container_id not in host.containers:
        yield finding(
            "mount.container-missing",
            m.path,
            "mount record of a container that does not exist: it keeps its layers alive",
            **ident,
        )
    if "dir" in m.problems:
        yield finding("mount.dir-missing", m.path, m.problems["dir"].detail, **ident)
        return
    yield from problem_findings("mount", m.problems, MOUNT_LABELS, "mount", m.container_id)
    yield from _check_mount_ids(host, m)
    yield from _check_mount_parent(host, m)


def _check_mount_ids(host: Host, m: Mount) -> Iterator[Finding]:
    ident = {"object_type": "mount", "object_id": m.container_id}
    for role, value, check in (
        ("mount-id", m.mount_id, "mount.driver-dir-missing"),
        ("init-id", m.init_id, "mount.init-dir-missing"),
    ):
        if value is None:
            continue
        path = f"{m.path}/{role}"
        if not MOUNT_ID.fullmatch(value):
            yield finding(
                f"mount.{role}-damaged", path, f"malformed {role} {value[:80]!r}", **ident
            )
        elif host.driver and value not in host.driver_dirs:
            yield finding(check, path, f"{host.driver} has no directory {value}", **ident)


def _check_mount_parent(host: Host, m: Mount) -> Iterator[Finding]:
    ident = {"object_type": "mount", "object_id": m.container_id}
    path = f"{m.path}/parent"
    if m.parent and m.parent not in host.layers and "parent" not in m.problems:
        yield finding(
            "mount.parent-missing",
            path,
            f"layer {short(m.parent)} is not in the layer store",
            **ident,
        )
    container = host.containers.get(m.container_id)
    image = host.images.get(container.image_id) if container and container.image_id else None
    if image is None or not image.has_rootfs or "parent" in m.problems:
        return
    top = image.layers[-1] if image.layers else None
    if m.parent != top:
        yield finding(
            "mount.parent-mismatch",
            path,
            f"parent {short(m.parent or 'none')} is not the top layer {short(top or 'none')} "
            f"of image {short(image.id)}",
            **ident,
        )
