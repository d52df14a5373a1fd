"""``docker-forensics repair``: plan, apply and undo repairs of a stopped Docker root.

``repair ROOT --dry-run`` prints the plan and changes nothing; ``repair ROOT`` applies it
(quarantine, never delete; every step journaled first) or completes an interrupted run;
``repair --undo JOURNAL`` reverses a run. Exit codes as e2fsck: 0 nothing to do, 1 repaired
(or undone), 4 errors left (``--dry-run``: errors the plan does not fix, as ``e2fsck -n``), 8
operational error, 16 usage, 32 interrupted.

Registered on the main command by ``cli.add_command(repair)``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from forensics.checks import run_checks
from forensics.cliutil import (
    DEFAULT_ROOT,
    EXIT_ERRORS,
    EXIT_OK,
    EXIT_REPAIRED,
    EXIT_USAGE,
    OperationalError,
    check_output_path,
    emit,
    now_iso,
    open_root,
    refuse_file_root,
)
from forensics.evidence import Evidence
from forensics.model import Host
from forensics.repair.apply import (
    RepairError,
    RunResult,
    StopSwitch,
    pending_runs,
    resume_run,
    start_run,
    workspace,
)
from forensics.repair.fsops import UnsafePath
from forensics.repair.journal import JournalError, JournalState
from forensics.repair.manifest import MANIFEST_NAME
from forensics.repair.plan import Plan, make_plan
from forensics.repair.safety import describe, root_in_use
from forensics.repair.undo import (
    QUARANTINE_SUFFIX,
    Located,
    locate_journal,
    opened_run,
    quarantine_changes,
    root_beside,
    undo_run,
)
from forensics.report import Finding, count_by_severity, printable, to_json
from forensics.stores import read_host

EXIT_NOTHING, EXIT_ERRORS_LEFT = EXIT_OK, EXIT_ERRORS


class RepairUsageError(click.UsageError):
    exit_code = EXIT_USAGE


def _finish(status: int) -> int:
    """Leave with ``status`` whether the command runs standalone or under the main command."""
    click.get_current_context().exit(status)
    return status  # not reached


@click.command("repair")
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
) -> int:
    """Repair a stopped Docker root (default /var/lib/docker): quarantine what is broken or
    orphaned, recreate missing overlay2 links, rewrite a damaged repositories.json."""
    if undo_journal is not None:
        if quarantine is not None or sqlite_out is not None:
            raise RepairUsageError("--quarantine and --sqlite have no meaning with --undo")
        return _finish(_undo(root, undo_journal, dry_run, fmt, force, list(pidfiles)))
    refuse_file_root(root or DEFAULT_ROOT, "repair")
    out = _Output(fmt, sqlite_out, now_iso(), overwrite)
    ev = open_root(root or DEFAULT_ROOT, record_reads=sqlite_out is not None)
    if sqlite_out is not None:
        check_output_path(sqlite_out, ev.root, overwrite)
    qbase = _quarantine_dir(ev.root, quarantine)
    if dry_run:
        return _finish(_dry_run(ev, qbase, out, list(pidfiles)))
    return _finish(_apply(ev, qbase, out, force, list(pidfiles)))


@dataclass
class _Output:
    """Where the plan or the run goes: stdout in ``fmt``, and ``sqlite`` if asked for."""

    fmt: str
    sqlite: Path | None
    started: str
    overwrite: bool = False

    def emit(self, doc: dict[str, Any]) -> None:
        emit(to_json(doc) if self.fmt == "json" else _plan_text(doc))

    def export(
        self, ev: Evidence, host: Host, findings: list[Finding], doc: dict[str, Any], status: int
    ) -> None:
        if self.sqlite is None:
            return
        from forensics.export import RepairRecord, RunInfo, export_sqlite  # loads slowly

        record = RepairRecord(
            actions=doc["actions"],
            skipped=doc["skipped"],
            applied=bool(doc.get("applied")),
            run=doc.get("run"),
            journal=doc.get("journal"),
            quarantine=doc.get("quarantine"),
            manifest=doc.get("manifest"),
            errors_left=doc.get("errors_left"),
        )
        run = RunInfo.collect("repair", ev, self.started, status)
        try:
            export_sqlite(self.sqlite, host, findings, run, repair=record, overwrite=self.overwrite)
        except OSError as exc:
            raise OperationalError(f"{self.sqlite}: {exc.strerror or exc}") from None


# -- plan -------------------------------------------------------------------------------------


def _quarantine_dir(root: Path, given: Path | None) -> Path:
    """The quarantine's absolute path, as given: it is opened without following a symlink at
    any component (a symlink planted as ``ROOT.quarantine`` is refused, never resolved)."""
    beside = Path(f"{root}{QUARANTINE_SUFFIX}")
    path = Path(os.path.abspath(given)) if given is not None else beside
    if path == root or root in path.parents:
        raise RepairUsageError(f"{path} is inside ROOT: the quarantine must lie outside it")
    if path.name.endswith(QUARANTINE_SUFFIX) and path != beside:
        raise RepairUsageError(
            f"{path}: a quarantine named *{QUARANTINE_SUFFIX} must be {beside} (an undo tells "
            "the ROOT of a journal by that name); choose another name"
        )
    return path


def _plan(ev: Evidence) -> tuple[Plan, Host, list[Finding]]:
    host = read_host(ev)
    findings = run_checks(host)
    return make_plan(ev, host, findings), host, findings


def _dry_run(ev: Evidence, qbase: Path, out: _Output, pidfiles: list[Path]) -> int:
    usage = root_in_use(ev.root, pidfiles)
    if usage:
        _warn(f"warning: {describe(usage, ev.root)} (the plan may be out of date)")
    for state in _existing_journals(ev.root, qbase):
        if state.incomplete and state.root == str(ev.root):
            _warn(f"note: run {state.run} was interrupted; a repair completes it first")
    plan, host, findings = _plan(ev)
    left = plan.errors_left(findings)
    doc = {"root": str(ev.root), "dry_run": True, **plan.as_dict(), "errors_left": len(left)}
    status = EXIT_ERRORS_LEFT if left else EXIT_NOTHING
    out.export(ev, host, findings, doc, status)
    out.emit(doc)
    return status


def _existing_journals(root: Path, qbase: Path) -> list[JournalState]:
    """The journals of an existing quarantine (none when it cannot be opened safely)."""
    try:
        with workspace(root, qbase, create=False) as ws:
            return ws.journals()
    except (RepairError, OSError):
        return []


# -- apply ------------------------------------------------------------------------------------


def _apply(ev: Evidence, qbase: Path, out: _Output, force: bool, pidfiles: list[Path]) -> int:
    _refuse_if_in_use(ev.root, pidfiles, force)
    switch = StopSwitch.from_env()
    try:
        with workspace(ev.root, qbase) as ws:
            ws.lock()
            pending = pending_runs(ws)
            if pending:
                host = read_host(ev)  # the state the interrupted run left, for --sqlite
                findings = run_checks(host)
                results = [resume_run(ws, state, switch) for state in pending]
                actions = [a for s in pending for a in s.actions]
                doc: dict[str, Any] = {"actions": actions, "skipped": []}
            else:
                plan, host, findings = _plan(ev)
                if not plan.actions:
                    doc = {"root": str(ev.root), **plan.as_dict(), "applied": False}
                    errors = count_by_severity(findings)["error"]
                    status = EXIT_ERRORS_LEFT if errors else EXIT_NOTHING
                    out.export(ev, host, findings, doc, status)
                    out.emit(doc)
                    return status
                results = [start_run(ws, plan.actions, sys.argv[1:], switch)]
                doc = plan.as_dict()
    except (RepairError, UnsafePath, JournalError) as exc:
        raise OperationalError(str(exc)) from None
    except OSError as exc:
        raise OperationalError(f"repair stopped: {exc}; the journal tells what was done") from None
    left = [f for f in run_checks(read_host(open_root(str(ev.root)))) if f.severity == "error"]
    doc.update(_applied(ev.root, results, left))
    status = EXIT_ERRORS_LEFT if left else EXIT_REPAIRED
    out.export(ev, host, findings, doc, status)
    out.emit(doc)
    return status


def _applied(root: Path, results: list[RunResult], left: list[Finding]) -> dict[str, Any]:
    last = results[-1]
    return {
        "root": str(root),
        "applied": True,
        "resumed": any(r.resumed for r in results),
        "run": last.run,
        "journal": str(last.journal),
        "quarantine": str(last.run_dir),
        "manifest": str(last.run_dir / MANIFEST_NAME),
        "copies": last.copies,
        "errors_left": len(left),
        "findings_left": [f.as_dict() for f in left],
    }


def _refuse_if_in_use(root: Path, pidfiles: list[Path], force: bool) -> None:
    usage = root_in_use(root, pidfiles)
    if usage.unseen and os.geteuid() != 0:
        _warn(f"warning: the open files of {usage.unseen} processes could not be checked")
    if not usage:
        return
    if not force:
        raise OperationalError(describe(usage, root))
    _warn(f"warning: --force: {describe(usage, root)}")


# -- undo -------------------------------------------------------------------------------------


def _undo(
    root: str | None, journal: Path, dry_run: bool, fmt: str, force: bool, pidfiles: list[Path]
) -> int:
    try:
        located = locate_journal(journal)
    except JournalError as exc:
        raise OperationalError(str(exc)) from None
    state = located.state
    root_path = _undo_root(root, journal, located)
    if dry_run:
        try:
            with opened_run(located.quarantine, located.run) as run_fd:
                changes = quarantine_changes(run_fd, state)
        except JournalError as exc:
            raise OperationalError(str(exc)) from None
        doc = _undo_doc(state.root, state.run, _undo_steps(state), done=False)
        doc["quarantine_changed"] = _warn_changes(changes)
        emit(to_json(doc) if fmt == "json" else _undo_text(doc))
        return EXIT_NOTHING
    _refuse_if_in_use(root_path, pidfiles, force)
    try:
        with workspace(root_path, located.quarantine, create=False) as ws:
            ws.lock()
            state = ws.read_journal(located.run)  # again, now that nothing else can change it
            if state.root != str(root_path):
                raise RepairError(f"{journal} changed while it was read; nothing was undone")
            listed = _undo_steps(state)
            result = undo_run(ws, state, StopSwitch.from_env())
    except (RepairError, UnsafePath, JournalError) as exc:
        raise OperationalError(str(exc)) from None
    except OSError as exc:
        raise OperationalError(f"undo stopped: {exc}; run it again to complete it") from None
    doc = _undo_doc(state.root, state.run, listed, done=True)
    doc["undone"] = result.undone
    doc["quarantine_changed"] = _warn_changes(result.quarantine_changed)
    emit(to_json(doc) if fmt == "json" else _undo_text(doc))
    return EXIT_REPAIRED if result.undone else EXIT_NOTHING


def _undo_root(root: str | None, journal: Path, located: Located) -> Path:
    """The ROOT an undo works on: the one the quarantine lies beside (``ROOT.quarantine``), or
    for a quarantine of another name the one given. Never taken from the journal alone: the
    root it names must be that one, or the journal is refused."""
    named = located.state.root
    beside = root_beside(located.quarantine)
    if beside is not None and str(beside) != named:
        raise OperationalError(
            f"{journal} names the root {named}, but lies in the quarantine of {beside}: refused"
        )
    if root is not None:
        given = os.path.realpath(root)
        if given != named:
            raise RepairUsageError(f"{journal} is the journal of a repair of {named}, not {root}")
        return Path(given)
    if beside is None:
        raise RepairUsageError(
            f"{journal} lies in {located.quarantine}, which is not named ROOT.quarantine: "
            "give the ROOT it was made for (repair ROOT --undo JOURNAL)"
        )
    return beside


def _warn_changes(changes: list[str]) -> list[str]:
    """Say on stderr how the quarantine differs from the run's manifest; return the list."""
    if changes:
        _warn(f"warning: the quarantine changed since the repair ({len(changes)} differences):")
        for change in changes[:20]:
            _warn(f"  {change}")
    return changes


def _undo_steps(state: JournalState) -> list[dict[str, Any]]:
    if state.undo_ended:
        return []
    return [
        {"op": s["op"], "path": s["path"]}
        for s in reversed(state.steps)
        if s["n"] in state.begun
        and s["n"] not in state.undo_done
        and s["op"] not in ("stage", "copyout")
    ]


def _undo_doc(root: str, run: str, steps: list[dict[str, Any]], *, done: bool) -> dict[str, Any]:
    return {"root": root, "run": run, "dry_run": not done, "undo": steps}


# -- text -------------------------------------------------------------------------------------

_VERBS = {"move": "restore", "put": "set aside", "symlink": "set aside"}


def _plan_text(doc: dict[str, Any]) -> str:
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


def _undo_text(doc: dict[str, Any]) -> str:
    lines = [f"{_VERBS.get(s['op'], s['op']):<10} {s['path']}" for s in doc["undo"]]
    verb = "undone" if not doc["dry_run"] else "to undo"
    lines.append(f"run {doc['run']}: {len(doc['undo'])} steps {verb}")
    return "".join(printable(line) + "\n" for line in lines)


def _warn(message: str) -> None:
    click.echo(f"docker-forensics: {printable(message)}", err=True)
