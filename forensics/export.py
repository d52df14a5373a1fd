"""SQLite export through sqlite-utils: the inventory, the findings and the run's provenance.

Tables have primary keys and foreign keys, so that sqlite-utils and datasette can join every
finding to the image, layer, container or volume it concerns. The database is written to a
temporary file beside OUT and renamed into place when complete.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlite_utils

from forensics import __version__
from forensics.cliutil import now_iso
from forensics.evidence import Evidence, FileRead

if TYPE_CHECKING:
    from forensics.deep import DeepResult
    from forensics.timeline import Event
from forensics.inventory import build_inventory
from forensics.model import Host
from forensics.report import Finding, count_by_severity


@dataclass
class RunInfo:
    tool: str
    version: str
    command: str
    arguments: list[str]
    root: str
    host: str
    user: str
    started: str
    finished: str = ""
    exit_status: int | None = None
    reads: dict[str, FileRead] = field(default_factory=dict)

    @classmethod
    def collect(cls, command: str, ev: Evidence, started: str, status: int) -> RunInfo:
        """The provenance of this process's run of ``command`` on ``ev``."""
        return cls(
            tool="docker-forensics",
            version=__version__,
            command=command,
            arguments=sys.argv[1:],
            root=str(ev.root),
            host=socket.gethostname(),
            user=getpass.getuser(),
            started=started,
            finished=now_iso(),
            exit_status=status,
            reads=ev.reads,
        )


@dataclass
class RepairRecord:
    """A repair's plan (``--dry-run``) or run, for the ``repair_*`` tables."""

    actions: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    applied: bool
    run: str | None = None
    journal: str | None = None
    quarantine: str | None = None
    manifest: str | None = None
    errors_left: int | None = None


def export_sqlite(
    out: Path,
    host: Host,
    findings: list[Finding],
    run: RunInfo,
    deep: DeepResult | None = None,
    repair: RepairRecord | None = None,
    timeline: list[Event] | None = None,
) -> None:
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        db = sqlite_utils.Database(tmp)
        try:
            run_id = _write(db, host, findings, run)
            if deep is not None:
                _write_deep(db, deep)
            if timeline is not None:
                _write_timeline(db, timeline)
            if repair is not None:
                _write_repair(db, repair, run_id)
        finally:
            db.close()
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write(db: sqlite_utils.Database, host: Host, findings: list[Finding], run: RunInfo) -> int:
    doc = build_inventory(host)
    _create_tables(db)
    run_id = _insert_run(db, host, findings, run)
    db["images"].insert_all(
        _utf8_rows(_image_rows(doc["images"], "modern" if host.layout == "modern" else host.layout))
    )
    if doc["legacy"]:
        db["images"].insert_all(_utf8_rows(_image_rows(doc["legacy"]["images"], "legacy")))
    db["tags"].insert_all(
        _utf8_rows(
            {"ref": ref, "image_id": target, "kind": "digest" if "@" in ref else "tag"}
            for ref, target in sorted(host.references.items())
        )
    )
    db["layers"].insert_all(_utf8_rows(_layer_rows(host, host.layout)))
    if host.legacy is not None:
        db["layers"].insert_all(_utf8_rows(_layer_rows(host.legacy, "legacy")))
    images = doc["images"] + (doc["legacy"]["images"] if doc["legacy"] else [])
    db["image_layers"].insert_all(
        _utf8_rows(
            {"image_id": i["id"], "position": n, "layer_id": layer["id"]}
            for i in images
            for n, layer in enumerate(i["layers"])
        )
    )
    db["containers"].insert_all(_utf8_rows(_container_rows(doc)))
    db["volumes"].insert_all(_utf8_rows(doc["volumes"]))
    db["container_volumes"].insert_all(
        _utf8_rows({"container_id": c["id"], **v} for c in doc["containers"] for v in c["volumes"])
    )
    db["devices"].insert_all(_utf8_rows(doc["devices"]))
    db["findings"].insert_all(_utf8_rows(_finding_rows(host, findings, run_id)))
    db["files_read"].insert_all(
        _utf8_rows(
            {"run_id": run_id, "path": r.path, "size": r.size, "sha256": r.sha256}
            for r in sorted(run.reads.values(), key=lambda r: r.path)
        )
    )
    return run_id


def _create_tables(db: sqlite_utils.Database) -> None:
    db["runs"].create(
        {
            "id": int,
            "tool": str,
            "version": str,
            "command": str,
            "arguments": str,
            "root": str,
            "host": str,
            "user": str,
            "started": str,
            "finished": str,
            "exit_status": int,
            "layout": str,
            "driver": str,
            "errors": int,
            "warnings": int,
            "infos": int,
            "files_read": int,
        },
        pk="id",
    )
    db["images"].create(
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
        pk="id",
    )
    db["tags"].create({"ref": str, "image_id": str, "kind": str}, pk="ref")
    db["layers"].create(
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
        pk="id",
    )
    db["image_layers"].create(
        {"image_id": str, "position": int, "layer_id": str},
        pk=("image_id", "position"),
        foreign_keys=[("image_id", "images", "id"), ("layer_id", "layers", "id")],
    )
    db["containers"].create(
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
        pk="id",
        foreign_keys=[("image_id", "images", "id")],
    )
    db["volumes"].create(
        {"name": str, "driver": str, "anonymous": int, "has_data": int, "path": str}, pk="name"
    )
    db["container_volumes"].create(
        {"container_id": str, "destination": str, "type": str, "name": str, "source": str},
        pk=("container_id", "destination"),
        foreign_keys=[("container_id", "containers", "id"), ("name", "volumes", "name")],
    )
    db["devices"].create(
        {
            "hash": str,
            "device_id": int,
            "size": int,
            "transaction_id": int,
            "initialized": int,
            "deleted": int,
            "path": str,
        },
        pk="hash",
    )
    db["findings"].create(
        {
            "id": int,
            "run_id": int,
            "check": str,
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
        },
        pk="id",
        foreign_keys=[
            ("run_id", "runs", "id"),
            ("image_id", "images", "id"),
            ("layer_id", "layers", "id"),
            ("container_id", "containers", "id"),
            ("volume_name", "volumes", "name"),
            ("device_hash", "devices", "hash"),
        ],
    )
    db["files_read"].create(
        {"run_id": int, "path": str, "size": int, "sha256": str},
        pk=("run_id", "path"),
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["tags"].add_foreign_key("image_id", "images", "id")
    db["layers"].add_foreign_key("parent", "layers", "id")
    for table, column in (("findings", "check"), ("findings", "severity"), ("containers", "name")):
        db[table].create_index([column])


def _utf8_text(value: Any) -> Any:
    """SQLite text is UTF-8. A name under ROOT that was not UTF-8 keeps its bytes as surrogates
    (``surrogateescape``); each such byte is stored as ``\\xNN``, as the text report shows it,
    and a lone surrogate read from a JSON file's ``\\udXXX`` escape as that escape. Lists and
    dicts are walked, since sqlite-utils stores them as JSON text."""
    if isinstance(value, str):
        return value if value.isascii() or _is_utf8(value) else _escape_surrogates(value)
    if isinstance(value, list | tuple):
        return [_utf8_text(v) for v in value]
    if isinstance(value, dict):
        return {_utf8_text(k): _utf8_text(v) for k, v in value.items()}
    return value


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escape_surrogates(text: str) -> str:
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _utf8_row(row: dict[str, Any]) -> dict[str, Any]:
    return {key: _utf8_text(value) for key, value in row.items()}


def _utf8_rows(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (_utf8_row(row) for row in rows)


def _insert_run(
    db: sqlite_utils.Database, host: Host, findings: list[Finding], run: RunInfo
) -> int:
    counts = count_by_severity(findings)
    row = {
        "tool": run.tool,
        "version": run.version,
        "command": run.command,
        "arguments": json.dumps(run.arguments),
        "root": run.root,
        "host": run.host,
        "user": run.user,
        "started": run.started,
        "finished": run.finished,
        "exit_status": run.exit_status,
        "layout": host.layout,
        "driver": host.driver,
        "errors": counts["error"],
        "warnings": counts["warning"],
        "infos": counts["info"],
        "files_read": len(run.reads),
    }
    table = db["runs"]
    table.insert(_utf8_row(row))
    return int(table.last_pk)


def _image_rows(images: list[dict[str, Any]], era: str) -> list[dict[str, Any]]:
    return [
        {
            "id": i["id"],
            "era": era,
            "tags": json.dumps(i["tags"]),
            "digests": json.dumps(i["digests"]),
            "created": i["created"],
            "os": i["os"],
            "architecture": i["architecture"],
            "size": i["size"],
            "parent": i["parent"],
            "last_updated": i["last_updated"],
            "intermediate": int(i["intermediate"]),
            "layer_count": len(i["layers"]),
            "path": i["path"],
        }
        for i in images
    ]


def _layer_rows(host: Host, era: str) -> list[dict[str, Any]]:
    rows = []
    for layer in sorted(host.layers.values(), key=lambda layer: layer.id):
        device = host.devices.get(layer.cache_id or "")
        rows.append(
            {
                "id": layer.id,
                "diff_id": layer.diff_id,
                "parent": layer.parent,
                "cache_id": layer.cache_id,
                "device_id": device.device_id if device else None,
                "size": layer.size,
                "has_tar_split": int(layer.has_tar_split),
                "path": layer.path,
            }
        )
    return rows


def _container_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    keep = (
        "id name image image_id state exit_code pid created started finished driver command "
        "mount_id init_id config_ok path"
    ).split()
    return [{k: (int(c[k]) if k == "config_ok" else c[k]) for k in keep} for c in doc["containers"]]


def _finding_rows(host: Host, findings: list[Finding], run_id: int) -> list[dict[str, Any]]:
    rows = []
    for f in findings:
        row = {"run_id": run_id, **f.as_dict()}
        row["image_id"] = f.object_id if f.object_type == "image" else None
        row["layer_id"] = f.object_id if f.object_type == "layer" else None
        row["container_id"] = (
            f.object_id
            if f.object_type in ("container", "mount") and f.object_id in host.containers
            else None
        )
        row["volume_name"] = f.object_id if f.object_type == "volume" else None
        row["device_hash"] = f.object_id if f.object_type == "device" else None
        rows.append(row)
    return rows


def _write_deep(db: sqlite_utils.Database, deep: DeepResult) -> None:
    """What ``verify --deep`` found: every file of every layer, each layer's recomputed DiffID,
    and what each container changed."""
    db["layer_checks"].insert_all(
        _utf8_rows(
            {
                "layer_id": r.layer_id,
                "computed_diff_id": r.diff_id,
                "recorded_diff_id": r.recorded_diff_id,
                "diff_id_matches": r.diff_id_matches,
                "tar_bytes": r.tar_bytes,
                "file_bytes": r.file_bytes,
                "files_read": r.files_read,
                "complete": r.complete,
                "recorded_tarsum": r.recorded_tarsum,
                "computed_tarsum": r.tarsum,
                "tarsum_payload": r.tarsum_payload,
            }
            for r in deep.layers
        ),
        pk="layer_id",
        foreign_keys=[("layer_id", "layers", "id")],
    )
    db["layer_files"].insert_all(
        _utf8_rows(
            {
                "layer_id": r.layer_id,
                "path": "/" + f.path,
                "type": f.type,
                "size": f.size,
                "mode": f.mode,
                "crc64": f.crc64,
                "status": f.status,
                "detail": f.detail,
                "linkname": f.linkname,
                "disk_path": f.disk_path,
            }
            for r in deep.layers
            for f in r.files
        ),
        pk=("layer_id", "path", "status"),
        foreign_keys=[("layer_id", "layers", "id")],
        batch_size=5000,
        replace=True,
    )
    db["layer_files"].create_index(["path"], if_not_exists=True)
    db["container_changes"].insert_all(
        _utf8_rows(
            {"container_id": d.container_id, "kind": c.kind, "path": c.path}
            for d in deep.diffs
            for c in d.changes
        ),
        pk=("container_id", "path"),
        foreign_keys=[("container_id", "containers", "id")],
    )


def _write_timeline(db: sqlite_utils.Database, events: list[Event]) -> None:
    """``docker-forensics timeline``'s events, oldest first (``id`` keeps their order)."""
    db["timeline"].create(
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
        pk="id",
    )
    db["timeline"].insert_all(
        _utf8_rows({"id": n, **e.as_dict()} for n, e in enumerate(events, 1)), batch_size=5000
    )
    db["timeline"].create_index(["datetime"])


def _write_repair(db: sqlite_utils.Database, repair: RepairRecord, run_id: int) -> None:
    """The plan or the run: one row for the repair, one per action and per finding left
    alone. ``status`` says whether an action was only planned or carried out."""
    db["repair_runs"].insert(
        _utf8_row(
            {
                "run_id": run_id,
                "applied": int(repair.applied),
                "repair_run": repair.run,
                "journal": repair.journal,
                "quarantine": repair.quarantine,
                "manifest": repair.manifest,
                "actions": len(repair.actions),
                "skipped": len(repair.skipped),
                "errors_left": repair.errors_left,
            }
        ),
        pk="run_id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    status = "applied" if repair.applied else "planned"
    db["repair_actions"].insert_all(
        _utf8_rows((_action_row(run_id, n, a, status) for n, a in enumerate(repair.actions, 1))),
        pk=("run_id", "n"),
        foreign_keys=[("run_id", "runs", "id")],
        columns=_ACTION_COLUMNS,
    )
    db["repair_skipped"].insert_all(
        _utf8_rows(({"run_id": run_id, "n": n, **s} for n, s in enumerate(repair.skipped, 1))),
        pk=("run_id", "n"),
        foreign_keys=[("run_id", "runs", "id")],
        columns={"run_id": int, "n": int, "check": str, "path": str, "why": str},
    )


_ACTION_COLUMNS = {
    "run_id": int,
    "n": int,
    "action": str,
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
}


def _action_row(run_id: int, n: int, a: dict[str, Any], status: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "n": n,
        "action": a["action"],
        "path": a["path"],
        "kind": a.get("kind"),
        "target": a.get("target"),
        "unit": a.get("unit"),
        "checks": json.dumps(a.get("checks", [])),
        "summary": a.get("summary"),
        "reason": a["reason"],
        "safety": a.get("safety"),
        "content_sha256": a.get("sha256"),
        "details": json.dumps(a["details"], sort_keys=True) if a.get("details") else None,
        "status": status,
    }
