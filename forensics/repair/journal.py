"""The repair journal: an append-only JSON-lines file in the quarantine run directory.

Every record is written and fsync'd before the change it announces is made, so after a crash at
any point the journal tells what may have happened: a step with a ``begin`` record and no
``done`` record was in flight (its file-system state says whether it took effect). Records:

``start``        the run: tool version, ROOT, quarantine, arguments, the planned actions and the
                 low-level steps that carry them out
``begin``/``done``  one step, before and after; ``begin`` keeps the times of the directories the
                 step changes, so that an undo can put them back
``manifest``     the sha256 of ``manifest.jsonl``, which hashes what the quarantine holds
                 (:mod:`forensics.repair.manifest`); written once every step is made
``end``          the run completed
``undo-start``, ``undo-begin``/``undo-done``, ``undo-end``   the same for ``repair --undo``
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JOURNAL_NAME = "journal.jsonl"
FORMAT = 1


class JournalError(Exception):
    """A journal that cannot be read or does not describe a repair run."""


class Journal:
    """An open journal; :meth:`append` returns once the record is on disk."""

    def __init__(self, fd: int, path: Path, on_event: Callable[[], None] | None = None) -> None:
        self.fd, self.path, self.on_event = fd, path, on_event

    @classmethod
    def create(cls, dir_fd: int, path: Path, on_event: Callable[[], None] | None = None) -> Journal:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(JOURNAL_NAME, flags, 0o600, dir_fd=dir_fd)
        os.fsync(dir_fd)  # the journal's own name is durable before any record counts
        return cls(fd, path, on_event)

    @classmethod
    def reopen(cls, dir_fd: int, path: Path, on_event: Callable[[], None] | None = None) -> Journal:
        flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(JOURNAL_NAME, flags, dir_fd=dir_fd)
        _terminate_partial_line(fd, dir_fd)
        return cls(fd, path, on_event)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
        data = (line + "\n").encode()
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        os.fsync(self.fd)
        if self.on_event is not None:
            self.on_event()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _terminate_partial_line(fd: int, dir_fd: int) -> None:
    """A record cut short by a crash is ignored on reading; end it so the next one is whole."""
    rfd = os.open(JOURNAL_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        size = os.fstat(rfd).st_size
        last = os.pread(rfd, 1, size - 1) if size else b"\n"
    finally:
        os.close(rfd)
    if last != b"\n":
        os.write(fd, b"\n")
        os.fsync(fd)


@dataclass
class JournalState:
    """What a journal says about its run."""

    path: Path
    start: dict[str, Any]
    begun: dict[int, dict[str, Any]] = field(default_factory=dict)  # step → its begin record
    done: set[int] = field(default_factory=set)
    ended: bool = False
    manifest_sha256: str | None = None
    undo_started: bool = False
    undo_begun: set[int] = field(default_factory=set)
    undo_done: set[int] = field(default_factory=set)
    undo_ended: bool = False

    @property
    def run(self) -> str:
        return str(self.start["run"])

    @property
    def root(self) -> str:
        return str(self.start["root"])

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    @property
    def steps(self) -> list[dict[str, Any]]:
        return list(self.start["steps"])

    @property
    def actions(self) -> list[dict[str, Any]]:
        return list(self.start["actions"])

    @property
    def incomplete(self) -> bool:
        """A repair that stopped before its end and was not undone: a rerun completes it."""
        return not self.ended and not self.undo_started


def read_journal(path: Path) -> JournalState:
    """Parse a journal. A record cut short by a crash is ignored: it was never fsync'd whole,
    so the change it announced was never made."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise JournalError(f"{path}: {exc.strerror or exc}") from None
    records = []
    for line in data.split(b"\n"):
        # a line that is no JSON object is a record torn by a crash: its step never began
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    if not records or records[0].get("record") != "start" or records[0].get("format") != FORMAT:
        raise JournalError(f"{path}: not a docker-forensics repair journal")
    state = JournalState(path=path, start=records[0])
    for record in records[1:]:
        _apply_record(state, record)
    return state


def _apply_record(state: JournalState, record: dict[str, Any]) -> None:
    kind = record.get("record")
    step = record.get("step")
    if kind == "begin" and isinstance(step, int):
        state.begun.setdefault(step, record)
    elif kind == "done" and isinstance(step, int):
        state.done.add(step)
    elif kind == "manifest" and isinstance(record.get("sha256"), str):
        state.manifest_sha256 = record["sha256"]
    elif kind == "end":
        state.ended = True
    elif kind == "undo-start":
        state.undo_started = True
    elif kind == "undo-begin" and isinstance(step, int):
        state.undo_begun.add(step)
    elif kind == "undo-done" and isinstance(step, int):
        state.undo_done.add(step)
    elif kind == "undo-end":
        state.undo_ended = True


def find_journals(quarantine: Path) -> list[JournalState]:
    """The journals of the runs under the quarantine directory, oldest first (unreadable ones
    are skipped)."""
    out = []
    try:
        names = sorted(os.listdir(quarantine))
    except OSError:
        return []
    for name in names:
        path = quarantine / name / JOURNAL_NAME
        if os.path.islink(quarantine / name) or not path.is_file():
            continue
        try:
            out.append(read_journal(path))
        except JournalError:
            continue
    return out
