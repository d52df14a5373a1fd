"""The schema of the SQLite export: every table with its columns and keys, the indexes, the
views that answer the common questions, and datasette's metadata describing all of them.

Every table, index and view is created in every database, whether rows follow or not: a
script that queries the ``--deep`` tables of a run without ``--deep``, or the tables of an empty
host, gets no rows rather than an error. No column is named after an SQL keyword (a finding's
``check`` is the column ``check_id``). Times are text in one form, ISO 8601 in UTC with nine
digits of fraction and a ``Z`` (see :mod:`forensics.clock`), so that they sort as text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import sqlite_utils

#: the datasette metadata shipped with the package, for a database named ``METADATA_DATABASE``
METADATA_RESOURCE = "metadata.json"
METADATA_DATABASE = "case"


@dataclass(frozen=True)
class Table:
    name: str
    columns: dict[str, type]
    pk: str | tuple[str, ...]
    foreign_keys: list[tuple[str, str, str]] = field(default_factory=list)


TABLES: tuple[Table, ...] = (
    Table(
        "runs",
        {
            "id": int,
            "tool": str,
            "version": str,
            "command": str,
            "arguments": str,
            "root": str,
            "host": str,
            "user": str,
            "uid": int,
            "started": str,
            "finished": str,
            "exit_status": int,
            "deep": int,
            "layout": str,
            "driver": str,
            "errors": int,
            "warnings": int,
            "infos": int,
            "files_read": int,
        },
        "id",
    ),
    Table(
        "images",
        {
            "id": str,
            "era": str,
            "tags": str,
            "digests": str,
            "created": str,
            "os": str,
            "architecture": str,
            "size": int,
            "parent": str,
            "last_updated": str,
            "intermediate": int,
            "layer_count": int,
            "path": str,
        },
        "id",
    ),
    Table(
        "tags",
        {"ref": str, "image_id": str, "kind": str},
        "ref",
        [("image_id", "images", "id")],
    ),
    Table(
        "layers",
        {
            "id": str,
            "era": str,
            "diff_id": str,
            "parent": str,
            "cache_id": str,
            "device_id": int,
            "size": int,
            "has_tar_split": int,
            "path": str,
        },
        "id",
        [("parent", "layers", "id")],
    ),
    Table(
        "image_layers",
        {"image_id": str, "position": int, "layer_id": str},
        ("image_id", "position"),
        [("image_id", "images", "id"), ("layer_id", "layers", "id")],
    ),
    Table(
        "containers",
        {
            "id": str,
            "name": str,
            "image": str,
            "image_id": str,
            "state": str,
            "exit_code": int,
            "pid": int,
            "created": str,
            "started": str,
            "finished": str,
            "driver": str,
            "command": str,
            "mount_id": str,
            "init_id": str,
            "config_ok": int,
            "path": str,
        },
        "id",
        [("image_id", "images", "id")],
    ),
    Table(
        "volumes",
        {"name": str, "driver": str, "anonymous": int, "has_data": int, "path": str},
        "name",
    ),
    Table(
        "container_volumes",
        {"container_id": str, "destination": str, "type": str, "name": str, "source": str},
        ("container_id", "destination"),
        [("container_id", "containers", "id"), ("name", "volumes", "name")],
    ),
    Table(
        "devices",
        {
            "hash": str,
            "device_id": int,
            "size": int,
            "transaction_id": int,
            "initialized": int,
            "deleted": int,
            "path": str,
        },
        "hash",
    ),
    Table(
        "findings",
        {
            "id": int,
            "run_id": int,
            "check_id": str,
            "severity": str,
            "path": str,
            "message": str,
            "damage": str,
            "object_type": str,
            "object_id": str,
            "image_id": str,
            "layer_id": str,
            "container_id": str,
            "volume_name": str,
            "device_hash": str,
            "caused_by": str,
            "cause_id": int,
            "affects": str,
        },
        "id",
        [
            ("run_id", "runs", "id"),
            ("image_id", "images", "id"),
            ("layer_id", "layers", "id"),
            ("container_id", "containers", "id"),
            ("volume_name", "volumes", "name"),
            ("device_hash", "devices", "hash"),
            ("cause_id", "findings", "id"),
        ],
    ),
    Table(
        "files_read",
        {"run_id": int, "path": str, "size": int, "sha256": str},
        ("run_id", "path"),
        [("run_id", "runs", "id")],
    ),
    Table(
        "layer_checks",
        {
            "layer_id": str,
            "computed_diff_id": str,
            "recorded_diff_id": str,
            "diff_id_matches": int,
            "tar_bytes": int,
            "file_bytes": int,
            "files_read": int,
            "complete": int,
            "recorded_tarsum": str,
            "computed_tarsum": str,
            "tarsum_payload": str,
            "source": str,
        },
        "layer_id",
        [("layer_id", "layers", "id")],
    ),
    Table(
        "layer_files",
        {
            "layer_id": str,
            "path": str,
            "type": str,
            "size": int,
            "mode": int,
            "crc64": str,
            "status": str,
            "detail": str,
            "linkname": str,
            "disk_path": str,
        },
        ("layer_id", "path", "status"),
        [("layer_id", "layers", "id")],
    ),
    Table(
        "container_changes",
        {"container_id": str, "kind": str, "path": str},
        ("container_id", "path"),
        [("container_id", "containers", "id")],
    ),
    Table(
        "timeline",
        {
            "id": int,
            "datetime": str,
            "timestamp": int,
            "timestamp_desc": str,
            "message": str,
            "object_type": str,
            "object_id": str,
            "path": str,
        },
        "id",
    ),
    Table(
        "repair_runs",
        {
            "run_id": int,
            "applied": int,
            "repair_run": str,
            "journal": str,
            "quarantine": str,
            "manifest": str,
            "actions": int,
            "skipped": int,
            "errors_left": int,
        },
        "run_id",
        [("run_id", "runs", "id")],
    ),
    Table(
        "repair_actions",
        {
            "run_id": int,
            "n": int,
            "action_type": str,
            "path": str,
            "kind": str,
            "target": str,
            "unit": str,
            "checks": str,
            "summary": str,
            "reason": str,
            "safety": str,
            "content_sha256": str,
            "details": str,
            "status": str,
        },
        ("run_id", "n"),
        [("run_id", "runs", "id")],
    ),
    Table(
        "repair_skipped",
        {"run_id": int, "n": int, "check_id": str, "path": str, "why": str},
        ("run_id", "n"),
        [("run_id", "runs", "id")],
    ),
    # the containerd store (Docker 29's image store, a containerd root)
    Table(
        "containerd_store",
        {
            "root": str,
            "external": int,
            "db_version": int,
            "as_of": str,
            "judged_at": str,
            "total_size": int,
        },
        "root",
    ),
    Table(
        "containerd_images",
        {
            "namespace": str,
            "name": str,
            "docker_name": str,
            "digest": str,
            "media_type": str,
            "size": int,
            "created": str,
            "updated": str,
            "built": str,
            "platforms": str,
            "config_digest": str,
            "layer_count": int,
            "snapshot": str,
            "content_size": int,
            "unpacked_size": int,
            "dangling": int,
            "labels": str,
        },
        ("namespace", "name"),
    ),
    Table(
        "containerd_image_layers",
        {
            "namespace": str,
            "name": str,
            "position": int,
            "digest": str,
            "media_type": str,
            "size": int,
            "present": int,
            "diff_id": str,
            "chain_id": str,
        },
        ("namespace", "name", "position"),
    ),
    Table(
        "containerd_containers",
        {
            "namespace": str,
            "id": str,
            "image": str,
            "runtime": str,
            "snapshotter": str,
            "snapshot_key": str,
            "snapshot_present": int,
            "sandbox": str,
            "labels": str,
            "spec_type": str,
            "created": str,
            "updated": str,
        },
        ("namespace", "id"),
    ),
    Table(
        "containerd_snapshots",
        {
            "namespace": str,
            "snapshotter": str,
            "snapshot_key": str,
            "parent": str,
            "chain": str,
            "kind": str,
            "backend_name": str,
            "backend_id": int,
            "path": str,
            "size": int,
            "inodes": int,
            "labels": str,
            "created": str,
            "updated": str,
        },
        ("namespace", "snapshotter", "snapshot_key"),
    ),
    Table(
        "containerd_leases",
        {
            "namespace": str,
            "id": str,
            "created": str,
            "expires": str,
            "expired": int,
            "labels": str,
            "content": str,
            "snapshots": str,
            "ingests": str,
        },
        ("namespace", "id"),
    ),
    Table(
        "containerd_ingests",
        {"namespace": str, "ref": str, "backend_ref": str, "expected": str, "expires": str},
        ("namespace", "ref"),
    ),
    Table(
        "containerd_usage",
        {"path": str, "category": str, "kind": str, "item_key": str, "size": int},
        "path",
    ),
)

INDEXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("findings", ("check_id",)),
    ("findings", ("severity",)),
    ("findings", ("object_type", "object_id")),
    ("findings", ("container_id",)),
    ("findings", ("layer_id",)),
    ("findings", ("cause_id",)),
    ("containers", ("name",)),
    ("tags", ("image_id",)),
    ("image_layers", ("layer_id",)),
    ("layer_files", ("path",)),
    ("timeline", ("datetime",)),
    ("containerd_images", ("digest",)),
    ("containerd_usage", ("category",)),
)

#: the tags (not digests) of an image, sorted, joined by ", "; ``{image}`` is the image id
_TAGS_OF = (
    "(SELECT group_concat(ref, ', ') FROM (SELECT t.ref FROM tags t "
    "WHERE t.image_id = {image} AND t.kind = 'tag' ORDER BY t.ref))"
)

VIEWS: dict[str, str] = {
    # every finding with a readable name for what it concerns
    "findings_named": f"""
SELECT f.id, f.severity, f.check_id, f.object_type, f.object_id,
  CASE
    WHEN f.object_type IN ('container', 'mount')
      THEN (SELECT c.name FROM containers c WHERE c.id = f.object_id)
    WHEN f.object_type = 'image' THEN {_TAGS_OF.format(image="f.object_id")}
    WHEN f.object_type = 'layer' THEN (
      SELECT group_concat(ref, ', ') FROM (
        SELECT DISTINCT t.ref FROM image_layers il
        JOIN tags t ON t.image_id = il.image_id AND t.kind = 'tag'
        WHERE il.layer_id = f.object_id ORDER BY t.ref))
    ELSE f.object_id
  END AS object_name,
  f.path, f.message, f.damage, f.run_id
FROM findings f""",
    # one row per object with findings, the worst first
    "findings_per_object": """
SELECT object_type, object_id, object_name,
  count(*) AS findings,
  sum(severity = 'error') AS errors,
  sum(severity = 'warning') AS warnings,
  sum(severity = 'info') AS infos,
  group_concat(DISTINCT check_id) AS check_ids
FROM findings_named
GROUP BY object_type, object_id
ORDER BY errors DESC, warnings DESC, infos DESC, object_type, object_id""",
    # each container with its image's tags and its findings
    "containers_overview": f"""
SELECT c.id, c.name, c.state, c.exit_code, c.image, c.image_id,
  {_TAGS_OF.format(image="c.image_id")} AS image_tags,
  c.created, c.started, c.finished,
  (SELECT count(*) FROM findings f
    WHERE f.container_id = c.id AND f.severity = 'error') AS errors,
  (SELECT count(*) FROM findings f
    WHERE f.container_id = c.id AND f.severity = 'warning') AS warnings,
  (SELECT count(*) FROM findings f
    WHERE f.container_id = c.id AND f.severity = 'info') AS infos,
  (SELECT group_concat(DISTINCT f.check_id) FROM findings f
    WHERE f.container_id = c.id) AS check_ids
FROM containers c
ORDER BY c.name, c.id""",
    # the layers, biggest first, with the images that use them
    "layers_by_size": """
SELECT l.id, l.size, l.era, l.cache_id, l.diff_id, l.parent,
  (SELECT count(DISTINCT il.image_id) FROM image_layers il WHERE il.layer_id = l.id) AS images,
  (SELECT group_concat(ref, ', ') FROM (
    SELECT DISTINCT t.ref FROM image_layers il
    JOIN tags t ON t.image_id = il.image_id AND t.kind = 'tag'
    WHERE il.layer_id = l.id ORDER BY t.ref)) AS image_tags,
  (SELECT count(*) FROM findings f WHERE f.layer_id = l.id) AS findings
FROM layers l
ORDER BY l.size IS NULL, l.size DESC, l.id""",
}


def create_schema(db: sqlite_utils.Database) -> None:
    """Every table, index and view, in an empty database."""
    for table in TABLES:
        db[table.name].create(table.columns, pk=table.pk, foreign_keys=table.foreign_keys)
    for table_name, columns in INDEXES:
        db[table_name].create_index(list(columns))
    for name, sql in VIEWS.items():
        db.create_view(name, sql.strip())


def datasette_metadata(database: str) -> dict[str, Any]:
    """datasette's metadata (titles, descriptions, units) for the export opened as
    ``database`` (datasette names a database after its file: ``case`` for ``case.db``)."""
    text = resources.files("forensics").joinpath(METADATA_RESOURCE).read_text("utf-8")
    metadata = json.loads(text)
    databases = metadata.pop("databases")
    return {**metadata, "databases": {database: databases[METADATA_DATABASE]}}
