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
from collections.abc import Iterator
from contextlib import contextmanager
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
    open_run_dir,
    park_in_run,
    trust_dir,
)
from forensics.repair.fsops import (
    Held,
    UnsafePath,
    entry,
    held,
    move_checked,
    open_path_dir,
    set_times,
)
from forensics.repair.journal import (
    JOURNAL_NAME,
    Journal,
    JournalError,
    JournalState,
    read_journal_at,
)
from forensics.repair.manifest import check_manifest

#: the name a quarantine beside its ROOT has: ``ROOT.quarantine``
QUARANTINE_SUFFIX = ".quarantine"


@dataclass
class UndoResult:
    run: str
    undone: int  # steps reversed by this call
    already: bool  # the journal had been undone before
    quarantine_changed: list[str] = field(default_factory=list)  # differences to the manifest


# -- which journal, which ROOT -----------------------------------------------------------------


@dataclass
class Located:
    """A journal given to ``--undo``, read and validated, and where it lies."""

    state: JournalState
    quarantine: Path
    run: str


def locate_journal(journal: Path) -> Located:
    """Open ``journal`` (``<quarantine>/<run>/journal.jsonl``) without following a symlink at
    any component, refuse a quarantine or run directory another user owns or others may write,
    and read and validate the journal whole."""
    journal = Path(os.path.abspath(journal))
    run_dir = journal.parent
    quarantine, run = run_dir.parent, run_dir.name
    if journal.name != JOURNAL_NAME:
        raise JournalError(f"{journal}: a repair journal is named {JOURNAL_NAME}")
    if run in ("", ".", "..") or quarantine == run_dir:
        raise JournalError(f"{journal}: not in the run directory of a quarantine")
    with opened_run(quarantine, run) as run_fd:
        return Located(read_journal_at(run_fd, run_dir, run), quarantine, run)


@contextmanager
def opened_run(quarantine: Path, run: str) -> Iterator[int]:
    """The run directory, held open (see :func:`locate_journal`)."""
    try:
        q_fd = open_path_dir(str(quarantine))
    except UnsafePath as exc:
        raise JournalError(f"the quarantine {quarantine} is refused: {exc}") from None
    except OSError as exc:
        raise JournalError(f"{quarantine}: {exc.strerror or exc}") from None
    try:
        try:
            trust_dir(q_fd, f"the quarantine {quarantine}")
            run_fd = open_run_dir(q_fd, quarantine, run)
        except RepairError as exc:
            raise JournalError(str(exc)) from None
        try:
            yield run_fd
        finally:
            os.close(run_fd)
    finally:
        os.close(q_fd)


def root_beside(quarantine: Path) -> Path | None:
    """The ROOT a quarantine named ``ROOT.quarantine`` lies beside (None for another name)."""
    name = quarantine.name
    if not name.endswith(QUARANTINE_SUFFIX) or name == QUARANTINE_SUFFIX:
        return None
    return quarantine.with_name(name[: -len(QUARANTINE_SUFFIX)])


# -- the undo ----------------------------------------------------------------------------------


def undo_run(ws: Workspace, state: JournalState, switch: StopSwitch) -> UndoResult:
    """Reverse the run of ``state`` (the workspace must be locked, on the journal's ROOT)."""
    if state.undo_ended:
        return UndoResult(state.run, 0, True)
    run_fd = ws.open_run(state.run)
    changed = quarantine_changes(run_fd, state)
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


def quarantine_changes(run_fd: int, state: JournalState) -> list[str]:
    """How the quarantine differs from the manifest the run wrote (nothing to hold it against
    once an undo has begun, or for a run that never ended)."""
    if state.manifest_sha256 is None or state.undo_started:
        return []
    moved = [s["path"] for s in state.steps if s["op"] == "move"]
    return check_manifest(run_fd, moved, state.manifest_sha256)


class _Reverser:
    def __init__(self, ws: Workspace, run_fd: int, switch: StopSwitch) -> None:
        self.ws, self.run_fd, self.switch = ws, run_fd, switch

    def reverse(self, step: Step, begin: dict[str, Any]) -> None:
        if step.op in ("stage", "copyout"):
            return  # the staged file, the repaired copy: they stay in the quarantine
        with held(self.ws.root_fd, step.path) as root_side:
            if step.op == "move":
                self._move_back(step, root_side)
            elif step.op == "put":
                self._set_aside(step, root_side, "file", None)
            elif step.op == "symlink":
                self._set_aside(step, root_side, "symlink", step.target)
            self._restore_times(root_side, begin)

    def _park(self, from_fd: int, name: str) -> str:
        return park_in_run(self.run_fd, from_fd, name)

    def _move_back(self, step: Step, dst: Held) -> None:
        with held(self.run_fd, step.path, create=True) as src:
            in_q, in_root = entry(src.fd, src.name), entry(dst.fd, dst.name)
            if in_q is not None and in_root is None:

                def check(_fd: int, st: Any) -> None:
                    if type_of_mode(st.st_mode) != step.kind:
                        raise RepairError(
                            f"{step.path}: is a {type_of_mode(st.st_mode)} in the quarantine, "
                            f"the repair moved a {step.kind}; left as it is"
                        )

                move_checked(src, dst, check, park=self._park)
                _sync(dst.fd, src.fd)
                self.switch.event()
            elif in_q is not None:
                raise RepairError(
                    f"{step.path}: exists again in ROOT; move it aside and run --undo again"
                )
            elif in_root is None:
                raise RepairError(f"{step.path}: missing from the quarantine and from ROOT")

    def _set_aside(self, step: Step, src: Held, kind: str, target: str | None) -> None:
        """Move what the repair made at ``step.path`` into ``.undone/`` (never deleted)."""
        if entry(src.fd, src.name) is None:
            return  # the step never took effect, or was reversed before a crash

        def check(efd: int, st: Any) -> None:
            if type_of_mode(st.st_mode) != kind or (
                target is not None and os.readlink("", dir_fd=efd) != target
            ):
                raise RepairError(f"{step.path}: is not what the repair made; left as it is")

        with held(self.run_fd, f"{UNDONE}/{step.path}", create=True) as dst:
            aside = dst.name
            while entry(dst.fd, aside) is not None:
                aside += ".again"
            move_checked(src, dst, check, dst_name=aside, park=self._park)
            _sync(dst.fd, src.fd)
            self.switch.event()

    def _restore_times(self, root_side: Held, begin: dict[str, Any]) -> None:
        if not root_side.still_there():
            return  # a directory on the way moved: its times are not ours to set
        entry_times = begin.get("entry_times")
        st = entry(root_side.fd, root_side.name)
        if entry_times and st is not None and [st.st_atime_ns, st.st_mtime_ns] != entry_times:
            set_times(root_side.fd, root_side.name, entry_times)
        parent_times = begin.get("parent_times")
        if parent_times:
            set_times(root_side.fd, None, parent_times)
            os.fsync(root_side.fd)


__all__ = [
    "STAGED",
    "Located",
    "UndoResult",
    "locate_journal",
    "opened_run",
    "quarantine_changes",
    "root_beside",
    "undo_run",
]
