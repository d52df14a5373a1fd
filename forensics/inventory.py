"""What is there: the inventory of a Host as a document (for JSON and SQLite) and as text."""

from __future__ import annotations

from typing import Any

from forensics.model import Container, Device, DeviceSet, Host, Image
from forensics.report import printable


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


def container_record(host: Host, c: Container) -> dict[str, Any]:
    devices = [host.devices.get(i or "") for i in (c.mount_id, c.init_id)]
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
    }


def build_inventory(host: Host) -> dict[str, Any]:
    hidden = intermediate_images(host)
    return {
        "root": host.root,
        "layout": host.layout,
        "driver": host.driver,
        "image_store": host.image_store,
        "images": [image_record(host, host.images[i], hidden) for i in sorted(host.images)],
        "containers": [container_record(host, host.containers[c]) for c in sorted(host.containers)],
        "volumes": [
            {
                "name": v.name,
                "driver": v.driver,
                "anonymous": v.anonymous,
                "has_data": v.has_data,
                "path": v.path,
            }
            for v in sorted(host.volumes.values(), key=lambda v: v.name)
        ],
        "devices": [device_record(d) for _, d in sorted(host.devices.items())],
        "pool": pool_record(host.deviceset) if host.deviceset else None,
        "notes": [message for _, _, message in host.notes],
        "legacy": legacy_record(host.legacy) if host.legacy else None,
    }


def legacy_record(legacy: Host) -> dict[str, Any]:
    """The 1.8/1.9 era of a migrated root, as its own images and containers."""
    hidden = intermediate_images(legacy)
    return {
        "images": [
            image_record(legacy, legacy.images[i], hidden)
            | {"migrated_to": legacy.migrated_images.get(i)}
            for i in sorted(legacy.images)
        ],
        "containers": [
            container_record(legacy, legacy.containers[c]) for c in sorted(legacy.containers)
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


def inventory_text(doc: dict[str, Any]) -> str:
    store = f" ({doc['image_store']})" if doc["image_store"] else ""
    lines = [
        f"root:   {doc['root']}",
        f"layout: {doc['layout']}{store}, driver {doc['driver'] or '-'}",
    ]
    lines += [f"note:   {n}" for n in doc["notes"]]
    images = [i for i in doc["images"] if not i["intermediate"]]
    hidden = len(doc["images"]) - len(images)
    count = f"{len(images)}, and {hidden} intermediate" if hidden else str(len(images))
    lines += ["", f"IMAGES ({count})"]
    lines += _table(
        ["ID", "TAGS", "LAYERS", "SIZE", "CREATED"],
        [
            [
                _short_id(i["id"]),
                ", ".join(i["tags"]) or "<none>",
                str(len(i["layers"])),
                human_size(i["size"]),
                (i["created"] or "?")[:19],
            ]
            for i in images
        ],
    )
    containers = doc["containers"]
    lines += ["", f"CONTAINERS ({len(containers)})"]
    lines += _table(
        ["ID", "NAME", "IMAGE", "STATE", "CREATED", "COMMAND"],
        [
            [
                c["id"][:12],
                c["name"] or "?",
                c["image"] or _short_id(c["image_id"] or "?"),
                c["state"],
                (c["created"] or "?")[:19],
                (c["command"] or "")[:40],
            ]
            for c in containers
        ],
    )
    if doc["legacy"]:
        old = doc["legacy"]["images"]
        lines += ["", f"LEGACY IMAGES, graph/ ({len(old)})"]
        lines += _table(
            ["ID", "TAGS", "LAYERS", "MIGRATED TO"],
            [
                [
                    _short_id(i["id"]),
                    ", ".join(i["tags"]) or ("<intermediate>" if i["intermediate"] else "<none>"),
                    str(len(i["layers"])),
                    _short_id(i["migrated_to"] or "-"),
                ]
                for i in old
            ],
        )
    volumes = doc["volumes"]
    lines += ["", f"VOLUMES ({len(volumes)})"]
    lines += _table(
        ["NAME", "DRIVER", "DATA"],
        [[v["name"], v["driver"], "yes" if v["has_data"] else "no"] for v in volumes],
    )
    return "\n".join(printable(line) for line in lines) + "\n"


def _short_id(value: str) -> str:
    return value.split(":", 1)[-1][:12]
