"""``repair``: a plan of the repairs of a stopped Docker root (:func:`plan`, the dry run), the plan
carried out (:func:`apply`: quarantine, never delete; every step journaled first; an interrupted
run completed), and a run reversed (:func:`undo`).

Each returns what it did or would do; :meth:`RepairResult.as_dict` and
:meth:`UndoResult.as_dict` are the JSON documents of ``repair --format json``. Warnings met on
the way (ROOT in use, an interrupted run, a quarantine changed since) go to ``notify`` as they
are met, and into the result's ``notes``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forensics.api.root import (
    check_output_path,
    open_containerd_root,
    open_root,
    refuse_file_root,
)
from forensics.checks import run_checks
from forensics.clock import now_iso
from forensics.errors import OperationalError, UsageError
from forensics.evidence import Evidence
from forensics.exitstatus import EXIT_ERRORS, EXIT_OK, EXIT_REPAIRED
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
from forensics.report import Finding, count_by_severity
from forensics.stores import read_host

Notify = Callable[[str], None]


@dataclass
class AppliedRun:
    """A run carried out: where its journal, quarantine and manifest are, the repaired copies
    it wrote into the quarantine, and the errors ROOT has after it."""

    run: str
    journal: str
    quarantine: str
    manifest: str
    copies: list[str]
    resumed: bool
    findings_left: list[Finding]

    @classmethod
    def of(cls, results: list[RunResult], left: list[Finding]) -> AppliedRun:
        last = results[-1]
        return cls(
            run=last.run,
            journal=str(last.journal),
            quarantine=str(last.run_dir),
            manifest=str(last.run_dir / MANIFEST_NAME),
            copies=last.copies,
            resumed=any(r.resumed for r in results),
            findings_left=left,
        )


@dataclass
class RepairResult:
    """A plan (``dry_run``), a plan with nothing to do, or a run carried out (``applied``)."""

    root: str
    #: the actions planned or carried out, and the findings left alone (as their JSON records:
    #: a resumed run's come from its journal)
    actions: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    status: int
    dry_run: bool = False
    #: the errors the plan does not fix (dry run), or that ROOT still has (applied)
    errors_left: int | None = None
    applied: AppliedRun | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"root": self.root, "actions": self.actions, "skipped": self.skipped}
        if self.dry_run:
            doc.update(dry_run=True, errors_left=self.errors_left)
        elif self.applied is None:
            doc["applied"] = False
        else:
            run = self.applied
            doc.update(
                applied=True,
                resumed=run.resumed,
                run=run.run,
                journal=run.journal,
                quarantine=run.quarantine,
                manifest=run.manifest,
                copies=run.copies,
                errors_left=self.errors_left,
                findings_left=[f.as_dict() for f in run.findings_left],
            )
        return doc


@dataclass
class SqliteTarget:
    """Where the findings, the inventory and the plan (or run) are also written."""

    database: Path
    overwrite: bool = False


class _Notes:
    """The warnings of one call: said to ``notify`` as they come, and kept for the result."""

    def __init__(self, notify: Notify | None) -> None:
        self.notify = notify
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        if self.notify is not None:
            self.notify(line)


# -- plan -------------------------------------------------------------------------------------


def plan(
    root: str,
    *,
    quarantine: Path | None = None,
    pidfiles: Sequence[Path] = (),
    sqlite: SqliteTarget | None = None,
    notify: Notify | None = None,
    containerd_root: str | None = None,
) -> RepairResult:
    """The plan that :func:`apply` would carry out on ROOT; nothing is changed. Its status:
    4 when it leaves errors unfixed (as ``e2fsck -n``), else 0. ``containerd_root``: the
    containerd root that goes with ROOT; the plan then works on it (see :func:`apply`)."""
    started, notes = now_iso(), _Notes(notify)
    ev, ctd, qbase = _open(root, quarantine, sqlite, containerd_root)
    target = _target(ev, ctd)
    for where in _roots(ev, ctd):
        usage = root_in_use(where, list(pidfiles))
        if usage:
            notes(f"warning: {describe(usage, where)} (the plan may be out of date)")
    for state in _existing_journals(target, qbase):
        if state.incomplete and state.root == str(target):
            notes(f"note: run {state.run} was interrupted; a repair completes it first")
    planned, host, findings = _plan(ev, ctd)
    left = planned.errors_left(findings)
    result = RepairResult(
        str(target),
        **planned.as_dict(),
        status=EXIT_ERRORS if left else EXIT_OK,
        dry_run=True,
        errors_left=len(left),
        notes=notes.lines,
    )
    _export(sqlite, ev, host, findings, result, started)
    return result


def _open(
    root: str, quarantine: Path | None, sqlite: SqliteTarget | None, containerd_root: str | None
) -> tuple[Evidence, Evidence | None, Path]:
    """ROOT, the containerd root given apart (if any), and the quarantine of the root the
    repair works on: the containerd root when one is given, else ROOT."""
    refuse_file_root(root, "repair")
    ev = open_root(root, record_reads=sqlite is not None)
    ctd = open_containerd_root(containerd_root)
    if sqlite is not None:
        for where in _roots(ev, ctd):
            check_output_path(sqlite.database, where, sqlite.overwrite)
    return ev, ctd, quarantine_dir(_target(ev, ctd), quarantine)


def _target(ev: Evidence, ctd: Evidence | None) -> Path:
    """The root a repair changes: the containerd root given with ROOT, else ROOT."""
    return ctd.root if ctd is not None else ev.root


def _roots(ev: Evidence, ctd: Evidence | None) -> list[Path]:
    return [ev.root] if ctd is None else [ev.root, ctd.root]


def quarantine_dir(root: Path, given: Path | None) -> Path:
    """The quarantine's absolute path, as given: it is opened without following a symlink at
    any component (a symlink planted as ``ROOT.quarantine`` is refused, never resolved)."""
    beside = Path(f"{root}{QUARANTINE_SUFFIX}")
    path = Path(os.path.abspath(given)) if given is not None else beside
    if path == root or root in path.parents:
        raise UsageError(f"{path} is inside ROOT: the quarantine must lie outside it")
    if path.name.endswith(QUARANTINE_SUFFIX) and path != beside:
        raise UsageError(
            f"{path}: a quarantine named *{QUARANTINE_SUFFIX} must be {beside} (an undo tells "
            "the ROOT of a journal by that name); choose another name"
        )
    return path


def _plan(ev: Evidence, ctd: Evidence | None = None) -> tuple[Plan, Host, list[Finding]]:
    host = read_host(ev, ctd)
    findings = run_checks(host)
    return make_plan(ev, host, findings), host, findings


def _existing_journals(root: Path, qbase: Path) -> list[JournalState]:
    """The journals of an existing quarantine (none when it cannot be opened safely)."""
    try:
        with workspace(root, qbase, create=False) as ws:
            return ws.journals()
    except (RepairError, OSError):
        return []


# -- apply ------------------------------------------------------------------------------------


def apply(
    root: str,
    *,
    quarantine: Path | None = None,
    force: bool = False,
    pidfiles: Sequence[Path] = (),
    sqlite: SqliteTarget | None = None,
    arguments: Sequence[str] | None = None,
    notify: Notify | None = None,
    containerd_root: str | None = None,
) -> RepairResult:
    """Carry out the plan on ROOT, or first complete a run that was interrupted; refused while
    ROOT is in use unless ``force``. ``arguments`` (the command line, by default this
    process's) go into the journal. Its status: 1 repaired, 4 errors left, 0 nothing to do.
    ``containerd_root``: the containerd root that goes with ROOT; the repair then changes that
    root alone (its quarantine lies beside it), ROOT only read."""
    started, notes = now_iso(), _Notes(notify)
    ev, ctd, qbase = _open(root, quarantine, sqlite, containerd_root)
    target = _target(ev, ctd)
    for where in _roots(ev, ctd):
        _refuse_if_in_use(where, pidfiles, force, notes)
    argv = list(sys.argv[1:] if arguments is None else arguments)
    switch = StopSwitch.from_env()
    try:
        with workspace(target, qbase) as ws:
            ws.lock()
            pending = pending_runs(ws)
            if pending:
                host = read_host(ev, ctd)  # the state the interrupted run left, for --sqlite
                findings = run_checks(host)
                results = [resume_run(ws, state, switch) for state in pending]
                actions = [a for s in pending for a in s.actions]
                skipped: list[dict[str, Any]] = []
            else:
                planned, host, findings = _plan(ev, ctd)
                if not planned.actions:
                    errors = count_by_severity(findings)["error"]
                    result = RepairResult(
                        str(target),
                        **planned.as_dict(),
                        status=EXIT_ERRORS if errors else EXIT_OK,
                        notes=notes.lines,
                    )
                    _export(sqlite, ev, host, findings, result, started)
                    return result
                results = [start_run(ws, planned.actions, argv, switch)]
                actions, skipped = planned.as_dict()["actions"], planned.as_dict()["skipped"]
    except (RepairError, UnsafePath, JournalError):
        raise  # operational errors, said as they are; any other OSError is said below
    except OSError as exc:
        raise OperationalError(f"repair stopped: {exc}; the journal tells what was done") from None
    after = read_host(open_root(str(ev.root)), open_containerd_root(containerd_root))
    left = [f for f in run_checks(after) if f.severity == "error"]
    result = RepairResult(
        str(target),
        actions,
        skipped,
        status=EXIT_ERRORS if left else EXIT_REPAIRED,
        errors_left=sum(1 for f in left if f.caused_by is None),  # each cause once, as verify
        applied=AppliedRun.of(results, left),
        notes=notes.lines,
    )
    _export(sqlite, ev, host, findings, result, started)
    return result


def _refuse_if_in_use(root: Path, pidfiles: Sequence[Path], force: bool, notes: _Notes) -> None:
    usage = root_in_use(root, list(pidfiles))
    if usage.unseen and os.geteuid() != 0:
        notes(f"warning: the open files of {usage.unseen} processes could not be checked")
    if not usage:
        return
    if not force:
        raise OperationalError(describe(usage, root))
    notes(f"warning: --force: {describe(usage, root)}")


def _export(
    sqlite: SqliteTarget | None,
    ev: Evidence,
    host: Host,
    findings: list[Finding],
    result: RepairResult,
    started: str,
) -> None:
    if sqlite is None:
        return
    from forensics.export import RepairRecord, RunInfo, export_sqlite  # loads slowly

    applied = result.applied
    record = RepairRecord(
        actions=result.actions,
        skipped=result.skipped,
        applied=applied is not None,
        run=applied.run if applied else None,
        journal=applied.journal if applied else None,
        quarantine=applied.quarantine if applied else None,
        manifest=applied.manifest if applied else None,
        errors_left=result.errors_left,
    )
    run = RunInfo.collect("repair", ev, started, result.status)
    try:
        export_sqlite(
            sqlite.database, host, findings, run, repair=record, overwrite=sqlite.overwrite
        )
    except OSError as exc:
        raise OperationalError(f"{sqlite.database}: {exc.strerror or exc}") from None


# -- undo -------------------------------------------------------------------------------------


@dataclass
class UndoResult:
    """The steps of a run to reverse (``dry_run``) or reversed, and how the quarantine differs
    from the run's manifest."""

    root: str
    run: str
    dry_run: bool
    steps: list[dict[str, Any]]
    quarantine_changed: list[str]
    #: steps reversed by this call (None: a dry run)
    undone: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> int:
        """1 when steps were reversed, else 0."""
        return EXIT_REPAIRED if self.undone else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "root": self.root,
            "run": self.run,
            "dry_run": self.dry_run,
            "undo": self.steps,
            "quarantine_changed": self.quarantine_changed,
        }
        if not self.dry_run:
            doc["undone"] = self.undone
        return doc


def undo(
    journal: Path,
    *,
    root: str | None = None,
    dry_run: bool = False,
    force: bool = False,
    pidfiles: Sequence[Path] = (),
    notify: Notify | None = None,
) -> UndoResult:
    """Reverse the run that wrote ``journal`` (``dry_run``: say what would be reversed). ROOT
    is the one the quarantine lies beside, or for a quarantine of another name ``root``."""
    notes = _Notes(notify)
    located = locate_journal(journal)
    state = located.state
    root_path = _undo_root(root, journal, located)
    if dry_run:
        with opened_run(located.quarantine, located.run) as run_fd:
            changes = quarantine_changes(run_fd, state)
        _note_changes(changes, notes)
        steps = _undo_steps(state)
        return UndoResult(state.root, state.run, True, steps, changes, notes=notes.lines)
    _refuse_if_in_use(root_path, pidfiles, force, notes)
    try:
        with workspace(root_path, located.quarantine, create=False) as ws:
            ws.lock()
            state = ws.read_journal(located.run)  # again, now that nothing else can change it
            if state.root != str(root_path):
                raise RepairError(f"{journal} changed while it was read; nothing was undone")
            listed = _undo_steps(state)
            done = undo_run(ws, state, StopSwitch.from_env())
    except (RepairError, UnsafePath, JournalError):
        raise  # operational errors, said as they are; any other OSError is said below
    except OSError as exc:
        raise OperationalError(f"undo stopped: {exc}; run it again to complete it") from None
    _note_changes(done.quarantine_changed, notes)
    return UndoResult(
        state.root,
        state.run,
        False,
        listed,
        done.quarantine_changed,
        undone=done.undone,
        notes=notes.lines,
    )


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
            raise UsageError(f"{journal} is the journal of a repair of {named}, not {root}")
        return Path(given)
    if beside is None:
        raise UsageError(
            f"{journal} lies in {located.quarantine}, which is not named ROOT.quarantine: "
            "give the ROOT it was made for (repair ROOT --undo JOURNAL)"
        )
    return beside


def _note_changes(changes: list[str], notes: _Notes) -> None:
    """Say how the quarantine differs from the run's manifest (the first 20 differences)."""
    if changes:
        notes(f"warning: the quarantine changed since the repair ({len(changes)} differences):")
        for change in changes[:20]:
            notes(f"  {change}")


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
