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
``refused``      a step whose entry was swapped by another process while it was moved: the
                 rename was reversed, the run stopped
``resume``       a rerun that completes an interrupted run
``undo-start``, ``undo-begin``/``undo-done``, ``undo-end``   the same for ``repair --undo``
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forensics.errors import OperationalError
from forensics.formats.ids import HEX64
from forensics.repair.fsops import READ_FLAGS, UnsafePath, open_path_dir, read_fd, split

JOURNAL_NAME = "journal.jsonl"
FORMAT = 1
#: the largest journal read: the start record holds the new contents of rewritten files
JOURNAL_LIMIT = 64 << 20


class JournalError(OperationalError):
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
        flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(JOURNAL_NAME, flags, dir_fd=dir_fd)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise JournalError(f"{path}: not a regular file")
            _terminate_partial_line(fd)
        except BaseException:
            os.close(fd)
            raise
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


def _terminate_partial_line(fd: int) -> None:
    """A record cut short by a crash is ignored on reading; end it so the next one is whole."""
    size = os.fstat(fd).st_size
    last = os.pread(fd, 1, size - 1) if size else b"\n"
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


def read_journal_at(run_fd: int, run_dir: Path, run: str) -> JournalState:
    """Read and validate the journal of the run directory held at ``run_fd`` (``run_dir``:
    its path, ``run``: its name, which the journal must name).

    A journal is untrusted input: it is opened without following a symlink and without blocking
    (a FIFO is refused, never read), must be a regular file of this user's of at most
    JOURNAL_LIMIT bytes, and is validated whole — every record and every field a repair or an
    undo uses — before anything acts on it. A record cut short by a crash (a line that is no
    JSON) is ignored: it was never fsync'd whole, so the change it announced was never made.
    """
    path = run_dir / JOURNAL_NAME
    data = _read_journal_file(run_fd, path)
    try:
        return parse_journal(data, path, run)
    except (ValueError, TypeError, KeyError) as exc:
        raise JournalError(f"{path}: not a valid repair journal: {exc}") from None


def read_journal(path: Path) -> JournalState:
    """Read and validate the journal at ``path`` (``<quarantine>/<run>/journal.jsonl``), its
    run directory reached from ``/`` without following a symlink."""
    run_dir = Path(os.path.abspath(path)).parent
    try:
        fd = open_path_dir(str(run_dir))
    except UnsafePath as exc:
        raise JournalError(f"{path}: refused: {exc}") from None
    except OSError as exc:
        raise JournalError(f"{path}: {exc.strerror or exc}") from None
    try:
        return read_journal_at(fd, run_dir, run_dir.name)
    finally:
        os.close(fd)


def _read_journal_file(run_fd: int, path: Path) -> bytes:
    try:
        fd = os.open(JOURNAL_NAME, READ_FLAGS, dir_fd=run_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise JournalError(f"{path}: a symlink: not followed") from None
        raise JournalError(f"{path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise JournalError(f"{path}: not a regular file")
        if st.st_uid != os.geteuid():
            raise JournalError(f"{path}: owned by uid {st.st_uid}, not by this user: refused")
        if st.st_size > JOURNAL_LIMIT:
            raise JournalError(f"{path}: larger than {JOURNAL_LIMIT >> 20} MiB: no repair journal")
        return read_fd(fd, str(path), JOURNAL_LIMIT)
    except UnsafePath as exc:
        raise JournalError(str(exc)) from None
    except OSError as exc:
        raise JournalError(f"{path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def parse_journal(data: bytes, path: Path, run: str) -> JournalState:
    """The state of the run ``data`` journals; ValueError / TypeError on anything invalid."""
    lines = (m.group() for m in _LINE.finditer(data))
    first = next((r for r in map(_record, lines) if r is not None), None)
    if not isinstance(first, dict) or first.get("record") != "start":
        raise JournalError(f"{path}: not a docker-forensics repair journal")
    if first.get("format") != FORMAT:
        raise JournalError(f"{path}: journal format {first.get('format')!r}, not {FORMAT}")
    _check_start(first, run)
    state = JournalState(path=path, start=first)
    steps = len(first["steps"])
    most = 16 * steps + 10_000  # begin, done, refused, undo… per step; resumes per rerun
    for count, record in enumerate(filter(None, map(_record, lines)), 1):
        if count > most:
            raise ValueError(f"more than {most} records for {steps} steps")
        _apply_record(state, record, steps)
    return state


_LINE = re.compile(rb"[^\n]+")


def _record(line: bytes) -> Any:
    """A line's record; None for a line torn by a crash (no JSON) and for a blank line."""
    if not line.strip():
        return None
    try:
        return json.loads(line)
    except ValueError:
        return None


def _apply_record(state: JournalState, record: Any, steps: int) -> None:
    _need(isinstance(record, dict), "a record that is no JSON object")
    kind = record.get("record")
    if kind in _STEP_RECORDS:
        step = record.get("step")
        _need(_is_int(step) and 1 <= step <= steps, f"{kind}: step {step!r} out of range")
    if kind == "begin":
        for key in ("parent_times", "entry_times"):
            if key in record:
                _need(_is_times(record[key]), f"begin: {key} is not two integers")
        state.begun.setdefault(record["step"], record)
    elif kind == "done":
        state.done.add(record["step"])
    elif kind == "manifest":
        _need(_is_hex64(record.get("sha256")), "manifest: sha256 is not 64 hex digits")
        state.manifest_sha256 = record["sha256"]
    elif kind == "end":
        state.ended = True
    elif kind == "undo-start":
        state.undo_started = True
    elif kind == "undo-begin":
        state.undo_begun.add(record["step"])
    elif kind == "undo-done":
        state.undo_done.add(record["step"])
    elif kind == "undo-end":
        state.undo_ended = True
    elif kind not in ("resume", "refused"):
        raise ValueError(f"unknown record {kind!r}")


_STEP_RECORDS = ("begin", "done", "refused", "undo-begin", "undo-done")
OPS = ("move", "stage", "put", "symlink", "copyout")
KINDS = ("dir", "file", "symlink", "other")


def _check_start(start: dict[str, Any], run: str) -> None:
    _need(start.get("run") == run, f"names run {start.get('run')!r}, but lies in {run!r}")
    root = start.get("root")
    _need(isinstance(root, str) and os.path.isabs(root), "root is not an absolute path")
    actions, steps = start.get("actions"), start.get("steps")
    _need(isinstance(actions, list), "actions is not a list")
    _need(isinstance(steps, list), "steps is not a list")
    for i, action in enumerate(actions):
        _check_action(action, f"actions[{i}]")
    for i, step in enumerate(steps):
        _check_step(step, i + 1, len(actions), f"steps[{i}]")


def _check_step(step: Any, n: int, actions: int, where: str) -> None:
    _need(isinstance(step, dict), f"{where} is no object")
    _need(step.get("n") == n and _is_int(step.get("n")), f"{where}: n is not {n}")
    op = step.get("op")
    _need(op in OPS, f"{where}: unknown op {op!r}")
    _need(_is_plain_path(step.get("path")), f"{where}: path is not a plain relative path")
    action = step.get("action")
    _need(_is_int(action) and 0 <= action < actions, f"{where}: action out of range")
    _need(step.get("kind") in (None, *KINDS), f"{where}: unknown kind")
    for key in ("target", "data", "sha256"):
        _need(step.get(key) is None or isinstance(step[key], str), f"{where}: {key} not a string")
    mode = step.get("mode")
    _need(mode is None or (_is_int(mode) and 0 <= mode <= 0o7777), f"{where}: bad mode")
    values = step.get("values")
    _need(values is None or _is_values(values), f"{where}: bad values")
    identity = step.get("identity")
    _need(identity is None or _is_times(identity), f"{where}: bad identity")
    if op == "move":
        _need(step.get("kind") is not None, f"{where}: a move without a kind")
    elif op == "symlink":
        _need(isinstance(step.get("target"), str), f"{where}: a symlink without a target")
    elif op == "copyout":
        target = step.get("target")
        _need(_is_plain_path(target) and "/" not in target, f"{where}: bad copy name")
    elif op in ("stage", "put"):
        _need(_is_hex64(step.get("sha256")), f"{where}: sha256 is not 64 hex digits")
    if op == "stage":
        try:
            content = base64.b64decode(step.get("data") or "", validate=True)
        except ValueError:
            raise ValueError(f"{where}: data is not base64") from None
        digest = hashlib.sha256(content).hexdigest()
        _need(digest == step["sha256"], f"{where}: data does not hash to sha256")


def _check_action(action: Any, where: str) -> None:
    """An action as the text and JSON output and the SQLite export read it."""
    _need(isinstance(action, dict), f"{where} is no object")
    for key in ("action", "path", "reason", "safety"):
        _need(isinstance(action.get(key), str), f"{where}: {key} is not a string")
    for key in ("summary", "unit", "kind", "target", "sha256"):
        _need(action.get(key) is None or isinstance(action[key], str), f"{where}: bad {key}")
    checks = action.get("checks")
    _need(isinstance(checks, list) and all(isinstance(c, str) for c in checks),
          f"{where}: checks is not a list of strings")  # fmt: skip
    details = action.get("details", {})
    _need(isinstance(details, dict), f"{where}: details is no object")
    _check_details(details, where)


def _check_details(d: dict[str, Any], where: str) -> None:
    kept = d.get("kept", {})
    _need(
        isinstance(kept, dict)
        and all(
            isinstance(v, dict)
            and isinstance(v.get("image"), str)
            and isinstance(v.get("from"), str)
            for v in kept.values()
        ),
        f"{where}: bad details.kept",
    )
    for key in ("lost", "removed"):
        value = d.get(key, [])
        _need(isinstance(value, list) and all(isinstance(x, str) for x in value),
              f"{where}: bad details.{key}")  # fmt: skip
    _need(d.get("reclaim") is None or isinstance(d["reclaim"], str), f"{where}: bad reclaim")
    steps = d.get("steps", [])
    _need(
        isinstance(steps, list)
        and all(
            isinstance(s, dict)
            and isinstance(s.get("what"), str)
            and (s.get("command") is None or isinstance(s["command"], str))
            for s in steps
        ),
        f"{where}: bad details.steps",
    )


def _need(condition: bool, why: str) -> None:
    if not condition:
        raise ValueError(why)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_times(value: Any) -> bool:
    """Two integers: (atime, mtime) in ns, or (st_dev, st_ino)."""
    return isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value)


def _is_hex64(value: Any) -> bool:
    return isinstance(value, str) and HEX64.fullmatch(value) is not None


def _is_plain_path(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > 4096:
        return False
    try:
        split(value)
    except UnsafePath:
        return False
    return True


def _is_values(value: Any) -> bool:
    names = ("transaction_id", "data_block_size", "nr_data_blocks")
    return (
        isinstance(value, dict)
        and set(value) <= set(names)
        and all(_is_int(v) and v >= 0 for v in value.values())
    )
