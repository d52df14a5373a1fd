"""The containerd store in the SQLite export: the rows of the ``containerd_*`` tables (their
schema in :mod:`forensics.export_schema`), made from the inventory's records of the store so
that the database says what ``inventory --format json`` says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from forensics.containerd_graph import iso
from forensics.inventory_containerd import containerd_record
from forensics.model import Host
from forensics.timeline import utc

Row = dict[str, Any]


def containerd_rows(host: Host) -> dict[str, list[Row]]:
    """Each ``containerd_*`` table's rows (none without a store)."""
    ctd = host.containerd
    if ctd is None:
        return {}
    doc = containerd_record(host)
    namespaces = doc["namespaces"]
    return {
        "containerd_store": [
            {
                "root": doc["root"],
                "external": int(doc["external"]),
                "db_version": doc["db_version"],
                "as_of": doc["as_of"],
                "judged_at": iso(ctd.reference),
                "total_size": doc["df"]["total"],
            }
        ],
        "containerd_images": list(_images(namespaces)),
        "containerd_image_layers": [
            {"namespace": ns["name"], "name": i["name"], "position": n, **layer}
            | {"present": int(layer["present"])}
            for ns in namespaces
            for i in ns["images"]
            for n, layer in enumerate(i["layers"])
        ],
        "containerd_containers": [
            {"namespace": ns["name"], **c}
            | {
                "labels": json.dumps(c["labels"], sort_keys=True),
                "snapshot_present": _flag(c["snapshot_present"]),
            }
            for ns in namespaces
            for c in ns["containers"]
        ],
        "containerd_snapshots": [
            {
                "namespace": ns["name"],
                **{k: v for k, v in s.items() if k not in ("id", "key")},
                "snapshot_key": s["key"],
                "backend_id": s["id"],
                "chain": json.dumps(s["chain"]),
                "labels": json.dumps(s["labels"], sort_keys=True),
            }
            for ns in namespaces
            for s in ns["snapshots"]
        ],
        "containerd_leases": [
            {
                "namespace": ns["name"],
                **lease,
                "expired": int(lease["expired"]),
                **{
                    k: json.dumps(lease[k], sort_keys=True)
                    for k in ("labels", "content", "snapshots", "ingests")
                },
            }
            for ns in namespaces
            for lease in ns["leases"]
        ],
        "containerd_ingests": [
            {"namespace": ns["name"], **i} for ns in namespaces for i in ns["ingests"]
        ],
        "containerd_usage": [
            {k: item[k] for k in ("path", "category", "kind", "size")} | {"item_key": item["key"]}
            for item in doc["df"]["items"]
        ],
    }


def _images(namespaces: list[dict[str, Any]]) -> Iterator[Row]:
    for ns in namespaces:
        for i in ns["images"]:
            yield {
                "namespace": ns["name"],
                "name": i["name"],
                "docker_name": i["docker_name"],
                "digest": i["digest"],
                "media_type": i["media_type"],
                "size": i["size"],
                "created": i["created"],
                "updated": i["updated"],
                "built": utc(i["built"]),
                "platforms": json.dumps(i["platforms"]),
                "config_digest": i["config"]["digest"] if i["config"] else None,
                "layer_count": len(i["layers"]),
                "snapshot": i["snapshot"],
                "content_size": i["content_size"],
                "unpacked_size": i["unpacked_size"],
                "dangling": int(i["dangling"]),
                "labels": json.dumps(i["labels"], sort_keys=True),
            }


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(value)
