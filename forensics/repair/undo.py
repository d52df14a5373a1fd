"""Reversing a repair from its journal: every step that began is undone, last first.

A quarantined path is renamed back; a file put in place of a rewritten one, and a link made by
a relink, are moved aside into ``<run>/.undone/`` (nothing is deleted, not even what the repair
made); then the times of the directories the step changed, and of the entry itself, are set
back to what the ``begin`` record kept. The tree is then byte for byte, name for name, mode for
mode and mtime for mtime what it was before the repair — as long as nothing else changed it
meanwhile: a path that exists again in ROOT stops the undo with a message, nothing overwritten.

The undo is journaled in the same file (``undo-begin``/``undo-done``), so an undo that is killed
can be run again and completes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forensics.evidence import type_of_mode
from forensics.repair.apply import (
    STAGED,
    UNDONE,
    RepairError,
    Step,
    StopSwitch,
    Workspace,
    _now,
    _sync,
)
from forensics.repair.fsops import entry, parent_of, rename_noreplace, set_times
from forensics.repair.journal import Journal, JournalState
from forensics.repair.manifest import check_manifest


@dataclass
class UndoResult:
    run: str
    undone: int  # steps reversed by this call
    already: bool  # the journal had been undone before
    quarantine_changed: list[str] = field(default_factory=list)  # differences to the manifest


def undo_run(ws: Workspace, state: JournalState, switch: StopSwitch) -> UndoResult:
    """Reverse the run of ``state`` (the workspace must be locked, on the journal's ROOT)."""
    if state.undo_ended:
        return UndoResult(state.run, 0, True)
    changed = quarantine_changes(state)
    run_fd = ws.open_run(state.run_dir.name)
    journal = Journal.reopen(run_fd, state.path, switch.event)
    undone = 0
    try:
        if not state.undo_started:
            journal.append({"record": "undo-start", "pid": os.getpid(), "time": _now()})
        reverser = _Reverser(ws, run_fd, switch)
        for raw in reversed(state.steps):
            step = Step.from_dict(raw)
            begin = state.begun.get(step.n)
            if begin is None or step.n in state.undo_done:
                continue
            if step.n not in state.undo_begun:
                journal.append({"record": "undo-begin", "step": step.n, "time": _now()})
            reverser.reverse(step, begin)
            journal.append({"record": "undo-done", "step": step.n})
            undone += step.op not in ("stage", "copyout")  # what changed ROOT
        journal.append({"record": "undo-end", "time": _now()})
    finally:
        journal.close()
    return UndoResult(state.run, undone, False, changed)


def quarantine_changes(state: JournalState) -> list[str]:
    """How the quarantine differs from the manifest the run wrote (nothing to hold it against
    once an undo has begun, or for a run that never ended)."""
    if state.manifest_sha256 is None or state.undo_started:
        return []
    moved = [s["path"] for s in state.steps if s["op"] == "move"]
    return check_manifest(state.run_dir, moved, state.manifest_sha256)


class _Reverser:
    def __init__(self, ws: Workspace, run_fd: int, switch: StopSwitch) -> None:
        self.ws, self.run_fd, self.switch = ws, run_fd, switch

    def reverse(self, step: Step, begin: dict[str, Any]) -> None:
        if step.op in ("stage", "copyout"):
            return  # the staged file, the repaired copy: they stay in the quarantine
        with parent_of(self.ws.root_fd, step.path) as (rfd, name):
            if step.op == "move":
                self._move_back(step, rfd, name)
            elif step.op == "put":
                self._set_aside(step, rfd, name, "file", None)
            elif step.op == "symlink":
                self._set_aside(step, rfd, name, "symlink", step.target)
            self._restore_times(rfd, name, begin)

    def _move_back(self, step: Step, rfd: int, name: str) -> None:
        with parent_of(self.run_fd, step.path, create=True) as (qfd, _):
            in_q, in_root = entry(qfd, name), entry(rfd, name)
            if in_q is not None and in_root is None:
                rename_noreplace(qfd, name, rfd, name)
                _sync(rfd, qfd)
                self.switch.event()
            elif in_q is not None:
                raise RepairError(
                    f"{step.path}: exists again in ROOT; move it aside and run --undo again"
                )
            elif in_root is None:
                raise RepairError(f"{step.path}: missing from the quarantine and from ROOT")

    def _set_aside(self, step: Step, rfd: int, name: str, kind: str, target: str | None) -> None:
        """Move what the repair made at ``step.path`` into ``.undone/`` (never deleted)."""
        st = entry(rfd, name)
        if st is None:
            return  # the step never took effect, or was reversed before a crash
        if type_of_mode(st.st_mode) != kind or (
            target is not None and os.readlink(name, dir_fd=rfd) != target
        ):
            raise RepairError(f"{step.path}: is not what the repair made; left as it is")
        with parent_of(self.run_fd, f"{UNDONE}/{step.path}", create=True) as (ufd, _):
            aside = name
            while entry(ufd, aside) is not None:
                aside += ".again"
            rename_noreplace(rfd, name, ufd, aside)
            _sync(ufd, rfd)
            self.switch.event()

    def _restore_times(self, rfd: int, name: str, begin: dict[str, Any]) -> None:
        entry_times = begin.get("entry_times")
        st = entry(rfd, name)
        if entry_times and st is not None and [st.st_atime_ns, st.st_mtime_ns] != entry_times:
            set_times(rfd, name, entry_times)
        parent_times = begin.get("parent_times")
        if parent_times:
            set_times(rfd, None, parent_times)
            os.fsync(rfd)


def journal_run_dir(journal: Path) -> tuple[Path, str]:
    """The quarantine directory and run id of a journal file."""
    run_dir = journal.parent
    return run_dir.parent, run_dir.name


__all__ = ["STAGED", "UndoResult", "journal_run_dir", "undo_run"]
