"""What is there: the inventory of a Host as a document (for JSON and SQLite) and as text.

The document's keys are an interface that people's scripts rely on: keys are added, never
changed. :func:`inventory_document` gives the long lists (images, containers) as iterators whose
records are made as the JSON writer asks for them (:mod:`forensics.jsonstream`), so that a root
of a million containers is never held twice, once as the model and once as records.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from forensics import psview
from forensics.drivers import layout_of
from forensics.model import (
    Container,
    Device,
    DeviceSet,
    Host,
    Image,
    MountPoint,
    Network,
    PortBinding,
    RunConfig,
)
from forensics.report import printable

#: docker ps cuts its COMMAND to this many characters unless --no-trunc
COMMAND_WIDTH = 20


def intermediate_images(host: Host) -> set[str]:
    """Untagged images that another image names as its parent (``docker images`` hides them)."""
    parents = {image.parent for image in host.images.values() if image.parent}
    return {i for i in parents if i in host.images and not host.images[i].tags}


def image_size(host: Host, image: Image) -> int | None:
    sizes = [host.layers[c].size for c in image.layers if c in host.layers]
    if not sizes or any(s is None for s in sizes) or len(sizes) != len(image.layers):
        return None
    return sum(s for s in sizes if s is not None)


def image_record(host: Host, image: Image, hidden: set[str]) -> dict[str, Any]:
    return {
        "id": image.id,
        "tags": sorted(image.tags),
        "digests": sorted(image.digests),
        "created": image.created,
        "os": image.os,
        "architecture": image.architecture,
        "size": image_size(host, image),
        "parent": image.parent,
        "last_updated": image.last_updated,
        "intermediate": image.id in hidden,
        "path": image.path,
        "layers": [layer_record(host, chain) for chain in image.layers],
        "config": run_config_record(image.run_config),
    }


def run_config_record(config: RunConfig | None) -> dict[str, Any] | None:
    """An image's ``config`` or a container's ``Config``: what it runs and with what."""
    if config is None:
        return None
    return {
        "env": config.env,
        "entrypoint": config.entrypoint,
        "cmd": config.cmd,
        "labels": config.labels,
        "working_dir": config.working_dir,
        "user": config.user,
        "exposed_ports": config.exposed_ports,
        "healthcheck": config.healthcheck,
    }


def layer_record(host: Host, layer_id: str) -> dict[str, Any]:
    layer = host.layers.get(layer_id)
    if layer is None:
        return {"id": layer_id, "present": False}
    device = host.devices.get(layer.cache_id or "")
    return {
        "id": layer.id,
        "present": True,
        "diff_id": layer.diff_id,
        "parent": layer.parent,
        "cache_id": layer.cache_id,
        "device_id": device.device_id if device else None,
        "size": layer.size,
        "path": layer.path,
    }


def container_record(host: Host, c: Container, now: int | None = None) -> dict[str, Any]:
    """One container; ``now`` (ns since the epoch) makes ``status`` docker's relative words."""
    devices = [host.devices.get(i or "") for i in (c.mount_id, c.init_id)]
    details = c.details
    return {
        "id": c.id,
        "name": c.name,
        "image": c.image,
        "image_id": c.image_id,
        "state": c.state,
        "exit_code": c.exit_code,
        "pid": c.pid,
        "created": c.created,
        "started": c.started,
        "finished": c.finished,
        "driver": c.driver,
        "command": c.command,
        "mount_id": c.mount_id,
        "init_id": c.init_id,
        "device_ids": [d.device_id for d in devices if d is not None],
        "path": c.path,
        "config_ok": c.config_ok,
        "volumes": [
            {"destination": p.destination, "type": p.type, "name": p.name, "source": p.source}
            for p in c.mount_points
        ],
        "status": psview.status(c, now),
        "ps_command": psview.ps_command(c),
        "upper_dir": upper_dir(host, c),
        "config": run_config_record(c.run_config),
        "mounts": [mount_record(p) for p in c.mount_points],
        "oom_killed": details.oom_killed if details else None,
        "error": details.error if details else None,
        "restart_count": details.restart_count if details else None,
        "restart_policy": _restart_policy(c),
        "health": _health(c),
        "log_path": details.log_path if details else None,
        "log_driver": details.log_driver if details else None,
        "hostname": details.hostname if details else None,
        "network_mode": details.network_mode if details else None,
        "networks": [
            {"name": n.name, "ip_address": n.ip_address, "mac_address": n.mac_address}
            for n in (details.networks if details else ())
        ],
        "ports": [port_record(p) for p in (details.ports if details else ())],
        "port_bindings": [port_record(p) for p in (details.port_bindings if details else ())],
    }


def upper_dir(host: Host, c: Container) -> str | None:
    """The directory of the container's own changes, relative to ROOT, where the driver keeps
    one (overlay2, overlay, aufs); None on vfs and devicemapper, whose container layer is a full
    copy or a thin device, and where the mount id is unknown or no plain name (the driver
    table's ``upper``)."""
    layout = layout_of(c.driver or host.driver)
    upper = layout.upper if layout is not None else None
    mount_id = c.mount_id
    if upper is None or not mount_id or "/" in mount_id or mount_id in (".", ".."):
        return None
    return upper(mount_id)


def mount_record(p: MountPoint) -> dict[str, Any]:
    """A mount as ``docker inspect``'s ``Mounts`` lists it (``Mode`` is the SELinux relabel)."""
    return {
        "type": p.type,
        "name": p.name,
        "source": p.source,
        "destination": p.destination,
        "driver": p.driver,
        "mode": p.mode,
        "rw": p.rw,
        "propagation": p.propagation,
    }


def port_record(p: PortBinding) -> dict[str, Any]:
    return {"container_port": p.container_port, "host_ip": p.host_ip, "host_port": p.host_port}


def _restart_policy(c: Container) -> dict[str, Any] | None:
    if c.details is None or c.details.restart_policy is None:
        return None
    return {"name": c.details.restart_policy, "maximum_retry_count": c.details.restart_retries}


def _health(c: Container) -> dict[str, Any] | None:
    if c.details is None or c.details.health is None:
        return None
    return {"status": c.details.health, "failing_streak": c.details.health_failing_streak}


#: the keys of the document that each section of the inventory shows (the others are always
#: there); a document of some sections holds theirs alone
SECTION_KEYS = {
    "images": ("images", "devices", "pool", "legacy", "containerd"),
    "containers": ("containers",),
    "volumes": ("volumes",),
}


def inventory_document(
    host: Host, now: int | None = None, sections: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The inventory with its images and containers as iterators of records, in id order:
    for :func:`forensics.jsonstream.json_chunks`, which writes them as lists. ``sections``
    (of :data:`SECTION_KEYS`; none: all): only those sections' keys, in the same order."""
    wanted = set(SECTION_KEYS) if not sections else sections
    shown = {key for section in wanted for key in SECTION_KEYS[section]}
    makers = {
        "images": lambda: _image_records(host),
        "containers": lambda: (
            container_record(host, host.containers[c], now) for c in sorted(host.containers)
        ),
        "volumes": lambda: [
            {
                "name": v.name,
                "driver": v.driver,
                "anonymous": v.anonymous,
                "has_data": v.has_data,
                "path": v.path,
            }
            for v in sorted(host.volumes.values(), key=lambda v: v.name)
        ],
        "devices": lambda: [device_record(d) for _, d in sorted(host.devices.items())],
        "pool": lambda: pool_record(host.deviceset) if host.deviceset else None,
        "legacy": lambda: legacy_record(host.legacy, now) if host.legacy else None,
    }
    document: dict[str, Any] = {
        "root": host.root,
        "layout": host.layout,
        "driver": host.driver,
        "image_store": host.image_store,
    }
    for key in ("images", "containers", "volumes", "devices", "pool"):
        if key in shown:
            document[key] = makers[key]()
    document["notes"] = [message for _, _, message in host.notes]
    if "legacy" in shown:
        document["legacy"] = makers["legacy"]()
    if host.containerd and "containerd" in shown:
        document["containerd"] = _containerd_record(host)
    return document


def _image_records(host: Host) -> Iterator[dict[str, Any]]:
    hidden = intermediate_images(host)
    return (image_record(host, host.images[i], hidden) for i in sorted(host.images))


def _containerd_record(host: Host) -> dict[str, Any]:
    from forensics.inventory_containerd import containerd_record  # loads the store's readers

    return containerd_record(host)


def build_inventory(
    host: Host, now: int | None = None, sections: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The whole inventory (or ``sections`` of it) as one document of lists (for the SQLite
    export and for tests)."""
    doc = inventory_document(host, now, sections)
    return {
        key: list(value) if isinstance(value, Iterator) else value for key, value in doc.items()
    }


def legacy_record(legacy: Host, now: int | None = None) -> dict[str, Any]:
    """The 1.8/1.9 era of a migrated root, as its own images and containers."""
    hidden = intermediate_images(legacy)
    return {
        "images": [
            image_record(legacy, legacy.images[i], hidden)
            | {"migrated_to": legacy.migrated_images.get(i)}
            for i in sorted(legacy.images)
        ],
        "containers": [
            container_record(legacy, legacy.containers[c], now) for c in sorted(legacy.containers)
        ],
    }


def device_record(d: Device) -> dict[str, Any]:
    return {
        "hash": d.hash,
        "device_id": d.device_id,
        "size": d.size,
        "transaction_id": d.transaction_id,
        "initialized": d.initialized,
        "deleted": d.deleted,
        "path": d.path,
    }


def pool_record(ds: DeviceSet) -> dict[str, Any]:
    return {
        "next_device_id": ds.next_device_id,
        "base_uuid": ds.base_uuid,
        "base_filesystem": ds.base_filesystem,
        "open_transaction_id": ds.open_transaction_id,
        "transaction_device_hash": ds.transaction_hash,
        "files": {
            name: {"path": f.path, "size": f.size, "allocated": f.allocated}
            for name, f in sorted(ds.pool_files.items())
        },
    }


# -- text -----------------------------------------------------------------------------------


def human_size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.3g}{unit}"
        value /= 1000
    return f"{size}B"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    return [fmt.format(*headers).rstrip()] + [fmt.format(*r).rstrip() for r in rows]


def inventory_text(
    host: Host,
    *,
    now: int | None = None,
    all_images: bool = False,
    no_trunc: bool = False,
    sections: frozenset[str] = frozenset(),
) -> str:
    """The inventory for people: ``docker images`` (``-a``: with the intermediate images),
    ``docker ps -a`` and ``docker volume ls`` one below the other, times absolute with their
    zone unless ``now`` is given; ``sections`` (of :data:`SECTION_KEYS`; none: all): those
    tables alone, below the same heading."""
    wanted = set(SECTION_KEYS) if not sections else sections
    store = f" ({host.image_store})" if host.image_store else ""
    lines = [
        f"root:   {host.root}",
        f"layout: {host.layout}{store}, driver {host.driver or '-'}",
    ]
    lines += [f"note:   {message}" for _, _, message in host.notes]
    if "images" in wanted:
        lines += _images_text(host, now, all_images, no_trunc)
    if "containers" in wanted:
        lines += _containers_text(host, now, no_trunc)
    if "images" in wanted and host.legacy:
        lines += _legacy_text(host.legacy)
    if "images" in wanted and host.containerd is not None:
        from forensics.inventory_containerd import containerd_text

        lines += containerd_text(host)
    if "volumes" in wanted:
        volumes = sorted(host.volumes.values(), key=lambda v: v.name)
        lines += ["", f"VOLUMES ({len(volumes)})"]
        lines += _table(
            ["NAME", "DRIVER", "DATA"],
            [[v.name, v.driver, "yes" if v.has_data else "no"] for v in volumes],
        )
    return "\n".join(printable(line) for line in lines) + "\n"


def _images_text(host: Host, now: int | None, all_images: bool, no_trunc: bool) -> list[str]:
    hidden = intermediate_images(host)
    shown = [host.images[i] for i in sorted(host.images) if all_images or i not in hidden]
    count = len(host.images) - len(hidden)
    title = f"{count}, and {len(hidden)} intermediate" if hidden else str(count)
    rows = [
        [
            _id_text(i.id, no_trunc),
            ", ".join(sorted(i.tags)) or "<none>",
            str(len(i.layers)),
            human_size(image_size(host, i)),
            _image_created(i, now),
        ]
        for i in shown
    ]
    return ["", f"IMAGES ({title})", *_table(["ID", "TAGS", "LAYERS", "SIZE", "CREATED"], rows)]


def _image_created(image: Image, now: int | None) -> str:
    """``docker images``' CREATED: the build time, or how long before ``now`` (CreatedSince)."""
    if now is None:
        return psview.display_time(image.created)
    moment = psview.epoch_ns(image.created)
    return f"{psview.human_duration(now - moment)} ago" if moment is not None else "-"


def _containers_text(host: Host, now: int | None, no_trunc: bool) -> list[str]:
    containers = [host.containers[c] for c in sorted(host.containers)]
    rows = [
        [
            c.id if no_trunc else c.id[:12],
            c.name or "?",
            c.image or _id_text(c.image_id or "?", no_trunc),
            _command_text(c, no_trunc),
            psview.created(c, now),
            psview.status(c, now),
            psview.displayable_ports(c.details.ports) if c.details else "",
        ]
        for c in containers
    ]
    headers = ["ID", "NAME", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS"]
    return ["", f"CONTAINERS ({len(containers)})", *_table(headers, rows)]


def _command_text(c: Container, no_trunc: bool) -> str:
    """docker ps's COMMAND: quoted, cut with ``…`` unless ``no_trunc``."""
    command = psview.ps_command(c)
    if command is None:
        return "-"
    return json.dumps(
        command if no_trunc else psview.ellipsis(command, COMMAND_WIDTH), ensure_ascii=False
    )


def _legacy_text(legacy: Host) -> list[str]:
    hidden = intermediate_images(legacy)
    old = [legacy.images[i] for i in sorted(legacy.images)]
    rows = [
        [
            _id_text(i.id, False),
            ", ".join(sorted(i.tags)) or ("<intermediate>" if i.id in hidden else "<none>"),
            str(len(i.layers)),
            _id_text(legacy.migrated_images.get(i.id) or "-", False),
        ]
        for i in old
    ]
    headers = ["ID", "TAGS", "LAYERS", "MIGRATED TO"]
    return ["", f"LEGACY IMAGES, graph/ ({len(old)})", *_table(headers, rows)]


def _id_text(value: str, no_trunc: bool) -> str:
    return value if no_trunc else value.split(":", 1)[-1][:12]


# -- one container ----------------------------------------------------------------------------


def container_text(host: Host, c: Container, now: int | None = None) -> str:
    """Everything the root records about one container, one fact a line (``--container``)."""
    d = c.details
    image = host.images.get(c.image_id or "")
    facts: list[tuple[str, Any]] = [
        ("ID", c.id),
        ("Name", c.name),
        ("Image", _image_line(c, image)),
        ("Command", psview.ps_command(c)),
        ("Created", psview.display_time(c.created)),
        ("Status", psview.status(c, now)),
        ("State", _state_line(c)),
        ("Started", psview.display_time(c.started) if c.started else None),
        ("Finished", psview.display_time(c.finished) if c.finished else None),
        ("Error", d.error if d else None),
        ("Health", _health_line(c)),
        ("Restarts", _restart_line(c)),
        ("Ports", psview.displayable_ports(d.ports) if d and d.ports else None),
        ("Published", _bindings_line(d.port_bindings) if d and d.port_bindings else None),
        ("Networks", ", ".join(_network_text(n) for n in d.networks) if d else None),
        ("Mounts", [_mount_text(p) for p in c.mount_points]),
    ]
    facts += _run_config_facts(c.run_config)
    facts += [
        ("Hostname", d.hostname if d else None),
        ("Log", _log_line(c)),
        ("Driver", c.driver),
        ("Mount id", c.mount_id),
        ("Upper dir", upper_dir(host, c)),
        ("Devices", _devices_line(host, c)),
        ("Config", c.config_file if c.config_ok else f"{c.config_file} (unreadable)"),
    ]
    width = max(len(label) for label, _ in facts) + 2
    lines: list[str] = []
    for label, value in facts:
        values = value if isinstance(value, list) else [value]
        values = [v for v in values if v not in (None, "")] or ["-"]
        for n, text in enumerate(values):
            lines.append(f"{(label + ':') if n == 0 else '':<{width}}{text}")
    return "\n".join(printable(line) for line in lines) + "\n"


def _image_line(c: Container, image: Image | None) -> str | None:
    tags = ", ".join(sorted(image.tags)) if image else ""
    ref = c.image or tags
    if c.image_id and ref:
        return f"{ref} ({c.image_id})"
    return c.image_id or ref or None


def _state_line(c: Container) -> str:
    parts = [c.state]
    if c.pid:
        parts.append(f"pid {c.pid}")
    if c.exit_code is not None:
        parts.append(f"exit code {c.exit_code}")
    if c.details and c.details.oom_killed:
        parts.append("OOM killed")
    return ", ".join(parts)


def _health_line(c: Container) -> str | None:
    d = c.details
    if d is None or d.health is None:
        return None
    streak = f", failing streak {d.health_failing_streak}" if d.health_failing_streak else ""
    return d.health + streak


def _restart_line(c: Container) -> str | None:
    d = c.details
    if d is None:
        return None
    policy = d.restart_policy or "no"
    if d.restart_retries:
        policy += f":{d.restart_retries}"
    return f"{d.restart_count or 0}, policy {policy}"


def _bindings_line(bindings: list[PortBinding]) -> str:
    return ", ".join(
        f"{p.host_ip or ''}:{p.host_port or ''}->{p.container_port}"
        if p.host_port
        else p.container_port
        for p in bindings
    )


def _network_text(n: Network) -> str:
    address = f" {n.ip_address}" if n.ip_address else ""
    return f"{n.name}{address}"


def _mount_text(p: MountPoint) -> str:
    what = p.name if p.type == "volume" and p.name else (p.source or "?")
    access = "ro" if p.rw is False else "rw"
    return f"{p.type or '?'} {what} -> {p.destination} ({access})"


def _run_config_facts(config: RunConfig | None) -> list[tuple[str, Any]]:
    if config is None:
        return []
    return [
        ("Entrypoint", _argv(config.entrypoint)),
        ("Cmd", _argv(config.cmd)),
        ("Working dir", config.working_dir),
        ("User", config.user),
        ("Env", list(config.env)),
        ("Labels", [f"{k}={v}" for k, v in config.labels.items()]),
        ("Exposed", ", ".join(config.exposed_ports)),
        ("Healthcheck", _argv(config.healthcheck)),
    ]


def _argv(argv: list[str] | None) -> str | None:
    return json.dumps(argv, ensure_ascii=False) if argv is not None else None


def _log_line(c: Container) -> str | None:
    d = c.details
    if d is None or (d.log_path is None and d.log_driver is None):
        return None
    return f"{d.log_path or '-'} ({d.log_driver or 'driver not recorded'})"


def _devices_line(host: Host, c: Container) -> str | None:
    ids = [host.devices[i].device_id for i in (c.mount_id, c.init_id) if i in host.devices]
    return ", ".join(str(i) for i in ids if i is not None) or None
