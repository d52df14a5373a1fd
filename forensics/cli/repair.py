"""``docker-forensics repair``: plan, apply and undo repairs of a stopped Docker root.

``repair ROOT --dry-run`` prints the plan and changes nothing; ``repair ROOT`` applies it
(quarantine, never delete; every step journaled first) or completes an interrupted run;
``repair --undo JOURNAL`` reverses a run. Exit codes as e2fsck: 0 nothing to do, 1 repaired
(or undone), 4 errors left (``--dry-run``: errors the plan does not fix, as ``e2fsck -n``), 8
operational error, 16 usage, 32 interrupted.

The main command imports this module when ``repair`` runs (:class:`forensics.cli.app.LazyGroup`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from forensics.api import repair as api
from forensics.api.root import DEFAULT_ROOT
from forensics.cli.common import Command, containerd_root_option, emit, warn
from forensics.report import printable, to_json


@click.command("repair", cls=Command)
@click.argument("root", required=False)
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--quarantine",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where quarantined files go (default: ROOT.quarantine beside ROOT).",
)
@click.option(
    "--undo",
    "undo_journal",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="JOURNAL",
    help="Reverse the repair that wrote JOURNAL.",
)
@click.option(
    "--sqlite",
    "sqlite_out",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="OUT.db",
    help="Also write the findings, the inventory and the plan (or run) to a SQLite database.",
)
@click.option("--overwrite", is_flag=True, help="Replace the --sqlite database if it exists.")
@click.option("--force", is_flag=True, help="Repair even though ROOT appears to be in use.")
@click.option(
    "--pidfile",
    "pidfiles",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A daemon pid file to check besides /var/run/docker.pid (repeatable).",
)
@containerd_root_option
def repair(
    root: str | None,
    dry_run: bool,
    fmt: str,
    quarantine: Path | None,
    undo_journal: Path | None,
    sqlite_out: Path | None,
    overwrite: bool,
    force: bool,
    pidfiles: tuple[Path, ...],
    containerd_root: str | None,
) -> int:
    """Repair a stopped Docker root (default /var/lib/docker): quarantine what is broken or
    orphaned, recreate missing overlay2 links, rewrite a damaged repositories.json; in a
    containerd store, quarantine leftover snapshot directories and stale ingests, and write a
    salvaged copy of a damaged bolt database beside it (with --containerd-root, the repair
    works on that root)."""
    if undo_journal is not None:
        if quarantine is not None or sqlite_out is not None or containerd_root is not None:
            raise click.UsageError(
                "--quarantine, --sqlite and --containerd-root have no meaning with --undo"
            )
        undone = api.undo(
            undo_journal, root=root, dry_run=dry_run, force=force, pidfiles=pidfiles, notify=warn
        )
        emit(to_json(undone.as_dict()) if fmt == "json" else undo_text(undone))
        return undone.status
    sqlite = None if sqlite_out is None else api.SqliteTarget(sqlite_out, overwrite)
    where = root or DEFAULT_ROOT
    if dry_run:
        result = api.plan(
            where,
            quarantine=quarantine,
            pidfiles=pidfiles,
            sqlite=sqlite,
            notify=warn,
            containerd_root=containerd_root,
        )
    else:
        result = api.apply(
            where,
            quarantine=quarantine,
            force=force,
            pidfiles=pidfiles,
            sqlite=sqlite,
            notify=warn,
            containerd_root=containerd_root,
        )
    doc = result.as_dict()
    emit(to_json(doc) if fmt == "json" else plan_text(doc))
    return result.status


# -- text -------------------------------------------------------------------------------------

_VERBS = {"move": "restore", "put": "set aside", "symlink": "set aside"}


def plan_text(doc: dict[str, Any]) -> str:
    """A plan or a run (:meth:`forensics.api.repair.RepairResult.as_dict`) for people."""
    lines = []
    for a in doc["actions"]:
        target = f" -> {a['target']}" if a.get("target") else ""
        lines.append(f"{a['action']:<10} {a['path']}{target}")
        lines.append(f"    why:  {', '.join(a['checks'])}: {a.get('summary') or a['reason']}")
        lines.append(f"    safe: {a['safety']}")
        for ref, kept in a.get("details", {}).get("kept", {}).items():
            lines.append(f"    kept: {ref} -> {kept['image']} (from the {kept['from']})")
        for lost in a.get("details", {}).get("lost", []):
            lines.append(f"    lost: {lost}")
        for name in a.get("details", {}).get("removed", []):
            lines.append(f"    name: {name}")
        if a.get("details", {}).get("reclaim"):
            lines.append(f"    then: {a['details']['reclaim']}")
        for n, step in enumerate(a.get("details", {}).get("steps", []), 1):
            command = f": {step['command']}" if step.get("command") else ""
            lines.append(f"    step {n}: {step['what']}{command}")
    for s in doc["skipped"]:
        lines.append(f"{'left':<10} {s['path'] or '.'}")
        lines.append(f"    why:  {s['check']}: {s['why']}")
    verb = "applied" if doc.get("applied") else "planned"
    n = len(doc["actions"])
    lines.append(f"{n} action{'s' if n != 1 else ''} {verb}, {len(doc['skipped'])} left alone")
    if doc.get("dry_run") and doc.get("errors_left"):
        lines.append(f"errors the plan does not fix: {doc['errors_left']}")
    if doc.get("applied"):
        if doc.get("resumed"):
            lines.append(f"completed the interrupted run {doc['run']}")
        lines.append(f"journal: {doc['journal']}")
        lines.append(f"manifest of the quarantine: {doc['manifest']}")
        for copy in doc.get("copies", []):
            lines.append(f"repaired copy: {copy} (RUN in the steps above)")
        lines.append(f"undo with: docker-forensics repair --undo {doc['journal']}")
        lines.append(f"errors left: {doc['errors_left']}")
    return "".join(printable(line) + "\n" for line in lines)


def undo_text(result: api.UndoResult) -> str:
    lines = [f"{_VERBS.get(s['op'], s['op']):<10} {s['path']}" for s in result.steps]
    verb = "undone" if not result.dry_run else "to undo"
    lines.append(f"run {result.run}: {len(result.steps)} steps {verb}")
    return "".join(printable(line) + "\n" for line in lines)
