"""SQLite export through sqlite-utils: the inventory, the findings and the run's provenance.

Tables have primary keys and foreign keys, so that sqlite-utils and datasette can join every
finding to the image, layer, container or volume it concerns; the schema, its views and
datasette's metadata are in :mod:`forensics.export_schema`. The database is written whole in a
private directory beside OUT and moved into place when complete (:mod:`forensics.outfile`):
a failure, a full disk included, leaves no file behind.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlite_utils

from forensics import __version__
from forensics.clock import now_iso
from forensics.errors import OperationalError
from forensics.evidence import Evidence, FileRead
from forensics.export_schema import create_schema, datasette_metadata
from forensics.inventory import build_inventory
from forensics.model import Host
from forensics.outfile import staged_file
from forensics.report import Finding, count_by_severity
from forensics.timeline import utc

if TYPE_CHECKING:
    from forensics.deep import DeepResult
    from forensics.timeline import Event


class ExportError(OperationalError, OSError):
    """SQLite could not write the database (``database or disk is full``, …): an operational
    error like any other failure to write OUT."""


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
    uid: int | None = None

    @classmethod
    def collect(cls, command: str, ev: Evidence, started: str, status: int) -> RunInfo:
        """The provenance of this process's run of ``command`` on ``ev``."""
        uid = os.geteuid()
        return cls(
            tool="docker-forensics",
            version=__version__,
            command=command,
            arguments=sys.argv[1:],
            root=str(ev.root),
            host=socket.gethostname(),
            user=user_name(uid),
            started=started,
            finished=now_iso(),
            exit_status=status,
            reads=ev.reads,
            uid=uid,
        )


def user_name(uid: int) -> str:
    """The name the password database gives ``uid``, or the uid itself in decimal when it has
    none (a container's arbitrary uid, a CI runner), as ``ls -l`` shows such an owner."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


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
    *,
    overwrite: bool = False,
) -> None:
    """Write the database ``out``: whole, or not at all. Replaces only a regular file, and that
    only with ``overwrite``. Raises OSError (:class:`ExportError` for SQLite's own failures)."""
    try:
        with staged_file(out, overwrite=overwrite) as path:
            db = sqlite_utils.Database(path)
            try:
                _write_all(db, host, findings, run, deep, repair, timeline)
            finally:
                db.close()
    except sqlite3.Error as exc:
        raise ExportError(f"not written: {exc}") from None


def write_datasette_metadata(out: Path, database: Path, *, overwrite: bool = False) -> None:
    """datasette's metadata for ``database`` (titles, descriptions, units of every table and
    view), written to ``out`` under the same rules as the database itself:
    ``datasette case.db --metadata case.metadata.json``."""
    text = json.dumps(datasette_metadata(database.stem), indent=2, ensure_ascii=False) + "\n"
    with staged_file(out, overwrite=overwrite) as path:
        path.write_text(text, encoding="utf-8")


def _write_all(
    db: sqlite_utils.Database,
    host: Host,
    findings: list[Finding],
    run: RunInfo,
    deep: DeepResult | None,
    repair: RepairRecord | None,
    timeline: list[Event] | None,
) -> None:
    create_schema(db)
    run_id = _write(db, host, findings, run, deep=deep is not None)
    if deep is not None:
        _write_deep(db, deep)
    if timeline is not None:
        _write_timeline(db, timeline)
    if repair is not None:
        _write_repair(db, repair, run_id)


def _write(
    db: sqlite_utils.Database, host: Host, findings: list[Finding], run: RunInfo, *, deep: bool
) -> int:
    doc = build_inventory(host)
    run_id = _insert_run(db, host, findings, run, deep)
    db["images"].insert_all(_utf8_rows(_image_rows(doc["images"], host.layout)))
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
    if host.containerd is not None:
        from forensics.export_containerd import containerd_rows

        for table, rows in containerd_rows(host).items():
            db[table].insert_all(_utf8_rows(rows))
    db["findings"].insert_all(_utf8_rows(_finding_rows(host, findings, run_id)))
    db["files_read"].insert_all(
        _utf8_rows(
            {"run_id": run_id, "path": r.path, "size": r.size, "sha256": r.sha256}
            for r in sorted(run.reads.values(), key=lambda r: r.path)
        )
    )
    return run_id


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
    db: sqlite_utils.Database, host: Host, findings: list[Finding], run: RunInfo, deep: bool
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
        "uid": run.uid,
        "started": utc(run.started),
        "finished": utc(run.finished),
        "exit_status": run.exit_status,
        "deep": int(deep),
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
            "created": utc(i["created"]),
            "os": i["os"],
            "architecture": i["architecture"],
            "size": i["size"],
            "parent": i["parent"],
            "last_updated": utc(i["last_updated"]),
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
                "era": era,
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


_CONTAINER_COLUMNS = (
    "id name image image_id state exit_code pid driver command mount_id init_id path"
).split()
_CONTAINER_TIMES = ("created", "started", "finished")


def _container_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Times in UTC (Docker's zero time, "never", is null); ``config_ok`` as 0 or 1."""
    return [
        {
            **{k: c[k] for k in _CONTAINER_COLUMNS},
            **{k: utc(c[k]) for k in _CONTAINER_TIMES},
            "config_ok": int(c["config_ok"]),
        }
        for c in doc["containers"]
    ]


def _finding_rows(host: Host, findings: list[Finding], run_id: int) -> list[dict[str, Any]]:
    """One row per finding: its fields (``check`` in the column ``check_id``), the object it
    concerns again in the column that is a foreign key to that object's table, and for a
    consequence the row of its cause (``cause_id``, numbered here: one run per database)."""
    numbers = {f.key: n for n, f in enumerate(findings, 1) if f.caused_by is None}
    rows = []
    for n, f in enumerate(findings, 1):
        kind, oid = f.object_type, f.object_id
        rows.append(
            {
                "id": n,
                "run_id": run_id,
                "check_id": f.check,
                "severity": f.severity,
                "path": f.path,
                "message": f.message,
                "damage": f.damage,
                "object_type": kind,
                "object_id": oid,
                "image_id": oid if kind == "image" else None,
                "layer_id": oid if kind == "layer" else None,
                "container_id": (
                    oid if kind in ("container", "mount") and oid in host.containers else None
                ),
                "volume_name": oid if kind == "volume" else None,
                "device_hash": oid if kind == "device" else None,
                "caused_by": f.caused_by,
                "cause_id": numbers.get(f.caused_by) if f.caused_by else None,
                "affects": json.dumps(list(f.affects)) if f.affects else None,
            }
        )
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
                "source": r.source or None,
            }
            for r in deep.layers
        )
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
        batch_size=5000,
        replace=True,
    )
    db["container_changes"].insert_all(
        _utf8_rows(
            {"container_id": d.container_id, "kind": c.kind, "path": c.path}
            for d in deep.diffs
            for c in d.changes
        )
    )


def _write_timeline(db: sqlite_utils.Database, events: list[Event]) -> None:
    """``docker-forensics timeline``'s events, oldest first (``id`` keeps their order)."""
    db["timeline"].insert_all(
        _utf8_rows({"id": n, **e.as_dict()} for n, e in enumerate(events, 1)), batch_size=5000
    )


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
        )
    )
    status = "applied" if repair.applied else "planned"
    db["repair_actions"].insert_all(
        _utf8_rows(_action_row(run_id, n, a, status) for n, a in enumerate(repair.actions, 1))
    )
    db["repair_skipped"].insert_all(
        _utf8_rows(
            {"run_id": run_id, "n": n, "check_id": s["check"], "path": s["path"], "why": s["why"]}
            for n, s in enumerate(repair.skipped, 1)
        )
    )


def _action_row(run_id: int, n: int, a: dict[str, Any], status: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "n": n,
        "action_type": a["action"],
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
