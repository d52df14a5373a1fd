"""Carrying out a plan: step by step, each step journaled before it is made.

An action becomes one or more low-level steps:

``move``     rename ``ROOT/<path>`` to ``<run>/<path>`` in the quarantine (a quarantine)
``stage``    write a new file's contents to ``<run>/.staged/<path>`` (a rewrite, first)
``put``      rename ``<run>/.staged/<path>`` to ``ROOT/<path>`` (a rewrite, last)
``symlink``  create the symlink ``ROOT/<path>`` (a relink)

A rewrite is ``stage``, ``move`` (the original), ``put``; a create (a file that is missing) is
``stage``, ``put``. Nothing is ever deleted. Every path is
reached from descriptors of ROOT and of the run directory, one component at a time, without
following a symlink (see :mod:`forensics.repair.fsops`), and renames never replace anything.

Each step is idempotent against the state a crash can leave: a ``move`` whose source is gone and
whose destination exists was made. A rerun after a crash therefore resumes the journal where it
stopped, and ends in the state an uninterrupted run reaches.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from forensics import __version__
from forensics.evidence import type_of_mode
from forensics.repair.actions import Action
from forensics.repair.fsops import (
    DIR_FLAGS,
    UnsafePath,
    entry,
    open_dir,
    parent_of,
    read_file,
    rename_noreplace,
    times_of,
    write_new_file,
)
from forensics.repair.journal import FORMAT, Journal, JournalState, find_journals
from forensics.repair.manifest import MANIFEST_NAME, write_manifest

STAGED = ".staged"
UNDONE = ".undone"
LOCK_NAME = ".lock"
#: test switch: stop (SIGKILL) after the N-th journal event; ``N:stop`` sends SIGSTOP instead
STOP_ENV = "DOCKER_FORENSICS_REPAIR_STOP_AFTER"


class RepairError(Exception):
    """The repair cannot go on (the tree changed since planning, a lock is held, …)."""


@dataclass
class Step:
    n: int
    op: str  # move, stage, put, symlink
    path: str
    action: int  # index of the action it carries out
    kind: str | None = None  # move: what the path is
    target: str | None = None  # symlink
    data: str | None = None  # stage: base64 of the contents
    sha256: str | None = None  # stage, put: of the contents
    mode: int | None = None  # stage
    values: dict[str, Any] | None = None  # copyout: superblock values from Docker's records

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def expand(actions: list[Action]) -> list[Step]:
    """The low-level steps of ``actions``, numbered from 1."""
    steps: list[Step] = []

    def add(**kw: Any) -> None:
        steps.append(Step(n=len(steps) + 1, **kw))

    for i, a in enumerate(actions):
        if a.action == "quarantine":
            add(op="move", path=a.path, action=i, kind=a.kind)
        elif a.action == "relink":
            add(op="symlink", path=a.path, action=i, target=a.target)
        elif a.action == "copy-out":
            values = a.details.get("superblock_from_docker")
            add(op="copyout", path=a.path, action=i, kind=a.kind, target=a.target, values=values)
        elif a.action in ("rewrite", "create"):
            content = a.content or b""
            digest = hashlib.sha256(content).hexdigest()
            data = base64.b64encode(content).decode()
            add(op="stage", path=a.path, action=i, data=data, sha256=digest, mode=a.mode)
            if a.action == "rewrite":
                add(op="move", path=a.path, action=i, kind=a.kind)
            add(op="put", path=a.path, action=i, sha256=digest)
        else:
            raise ValueError(f"unknown action {a.action!r}")
    return steps


# -- the stop switch (tests) ------------------------------------------------------------------


class StopSwitch:
    """Counts journal events (records written, file-system changes made) and stops the process
    after the N-th, as if it were killed there. For tests only."""

    def __init__(self, after: int | None, on_stop: Callable[[], None] | None = None) -> None:
        self.after, self.count = after, 0
        self.on_stop = on_stop or _kill_self

    @classmethod
    def from_env(cls) -> StopSwitch:
        value = os.environ.get(STOP_ENV, "")
        number, _, how = value.partition(":")
        if not number.isdigit():
            return cls(None)
        sig = signal.SIGSTOP if how == "stop" else signal.SIGKILL
        return cls(int(number), lambda: os.kill(os.getpid(), sig))

    def event(self) -> None:
        self.count += 1
        if self.after is not None and self.count == self.after:
            self.on_stop()


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


# -- ROOT and the quarantine, held open --------------------------------------------------------


class Workspace:
    """ROOT and the quarantine directory, opened without following symlinks, and locked."""

    def __init__(self, root: Path, quarantine: Path) -> None:
        self.root, self.quarantine = root, quarantine
        self._stack = ExitStack()
        self.root_fd = self._open(root)
        try:
            self.q_fd = self._open_quarantine(quarantine)
        except BaseException:
            self.close()
            raise

    def _open(self, path: Path) -> int:
        try:
            fd = os.open(path, DIR_FLAGS)
        except OSError as exc:
            raise RepairError(f"{path}: {exc.strerror or exc}") from None
        self._stack.callback(os.close, fd)
        return fd

    def _open_quarantine(self, path: Path) -> int:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise RepairError(f"cannot make the quarantine {path}: {exc.strerror or exc}") from None
        fd = self._open(path)
        if os.fstat(fd).st_dev != os.fstat(self.root_fd).st_dev:
            raise RepairError(
                f"the quarantine {path} is on another file system than ROOT: nothing can be "
                "moved there without copying; give --quarantine DIR on ROOT's file system"
            )
        return fd

    def lock(self) -> None:
        """Lock ROOT (flock on its directory: nothing is written into it) and the quarantine's
        lock file; both are released when the process ends, however it ends."""
        try:
            fcntl.flock(self.root_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RepairError(f"another repair is running on {self.root}") from None
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(LOCK_NAME, flags, 0o600, dir_fd=self.q_fd)
        except OSError as exc:
            raise RepairError(f"{self.quarantine}/{LOCK_NAME}: {exc.strerror or exc}") from None
        self._stack.callback(os.close, fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            raise RepairError(
                f"another repair holds {self.quarantine}/{LOCK_NAME} ({holder or 'unknown'})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)

    def new_run(self) -> tuple[str, int]:
        """A new run directory in the quarantine: its id and descriptor."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        run = f"{stamp}-{secrets.token_hex(3)}"
        os.mkdir(run, 0o700, dir_fd=self.q_fd)
        os.fsync(self.q_fd)
        return run, self.open_run(run)

    def open_run(self, run: str) -> int:
        fd = open_dir(self.q_fd, [run])
        self._stack.callback(os.close, fd)
        return fd

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the run -----------------------------------------------------------------------------------


@dataclass
class RunResult:
    run: str
    journal: Path
    run_dir: Path
    steps: int
    resumed: bool = False


class Runner:
    """Carries out steps against a workspace, journaling each before it is made."""

    def __init__(
        self, ws: Workspace, run: str, run_fd: int, journal: Journal, switch: StopSwitch
    ) -> None:
        self.ws, self.run_name, self.run_fd = ws, run, run_fd
        self.journal, self.switch = journal, switch

    def run(self, steps: list[Step], begun: set[int], done: set[int]) -> None:
        for step in steps:
            if step.n in done:
                continue
            getattr(self, f"_{step.op}")(step, step.n in begun)
            self.journal.append({"record": "done", "step": step.n})
        moved = [s.path for s in steps if s.op == "move"]
        digest = write_manifest(self.ws.quarantine / self.run_name, moved)
        self.journal.append({"record": "manifest", "file": MANIFEST_NAME, "sha256": digest})
        self.journal.append({"record": "end", "time": _now()})

    def _begin(self, step: Step, parent_fd: int | None, name: str | None) -> None:
        record: dict[str, Any] = {"record": "begin", "step": step.n, "time": _now()}
        if parent_fd is not None:
            record["parent_times"] = times_of(os.fstat(parent_fd))
            st = entry(parent_fd, name) if name else None
            if st is not None:
                record["entry_times"] = times_of(st)
        self.journal.append(record)

    def _move(self, step: Step, begun: bool) -> None:
        with parent_of(self.ws.root_fd, step.path) as (rfd, name):
            if not begun:
                self._begin(step, rfd, name)
            with parent_of(self.run_fd, step.path, create=True) as (qfd, _):
                src, dst = entry(rfd, name), entry(qfd, name)
                if src is not None and dst is None:
                    if type_of_mode(src.st_mode) != step.kind:
                        raise RepairError(
                            f"{step.path}: is a {type_of_mode(src.st_mode)} now, was a {step.kind} "
                            "when planned; stopped"
                        )
                    rename_noreplace(rfd, name, qfd, name)
                    _sync(qfd, rfd)
                    self.switch.event()
                elif src is not None or dst is None:
                    raise RepairError(_conflict(step.path, src is not None, dst is not None))

    def _stage(self, step: Step, begun: bool) -> None:
        if not begun:
            self._begin(step, None, None)
        data = base64.b64decode(step.data or "")
        with parent_of(self.run_fd, f"{STAGED}/{step.path}", create=True) as (sfd, name):
            if entry(sfd, name) is not None and _sha256(read_file(sfd, name)) == step.sha256:
                return
            write_new_file(sfd, name, data, step.mode or 0o600)
            self.switch.event()

    def _put(self, step: Step, begun: bool) -> None:
        with parent_of(self.ws.root_fd, step.path) as (rfd, name):
            if not begun:
                self._begin(step, rfd, name)
            with parent_of(self.run_fd, f"{STAGED}/{step.path}") as (sfd, _):
                src, dst = entry(sfd, name), entry(rfd, name)
                if src is not None and dst is None:
                    rename_noreplace(sfd, name, rfd, name)
                    _sync(rfd, sfd)
                    self.switch.event()
                elif src is not None or dst is None:
                    raise RepairError(_conflict(step.path, dst is not None, src is not None))

    def _copyout(self, step: Step, begun: bool) -> None:
        """Write a repaired copy of the file at ``step.path`` into the run (ROOT is only
        read); a rerun writes it again, whole."""
        with parent_of(self.ws.root_fd, step.path) as (rfd, name):
            if not begun:
                self._begin(step, None, None)
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=rfd)
        try:
            from forensics.repair.poolcopy import PoolCopyError, write_pool_copy

            out = self.ws.quarantine / self.run_name / (step.target or "copy")
            try:
                write_pool_copy(fd, str(out), step.values)
            except PoolCopyError as exc:
                raise RepairError(f"{step.path}: {exc}") from None
        finally:
            os.close(fd)
        self.switch.event()

    def _symlink(self, step: Step, begun: bool) -> None:
        with parent_of(self.ws.root_fd, step.path) as (rfd, name):
            if not begun:
                self._begin(step, rfd, name)
            st = entry(rfd, name)
            if st is None:
                os.symlink(step.target or "", name, dir_fd=rfd)
                os.fsync(rfd)
                self.switch.event()
            elif (
                type_of_mode(st.st_mode) != "symlink"
                or os.readlink(name, dir_fd=rfd) != step.target
            ):
                raise RepairError(f"{step.path}: exists and is not the link planned; stopped")


def preflight(ws: Workspace, steps: list[Step]) -> None:
    """Before anything is written: every path is where the plan saw it, reachable without a
    symlink, on the quarantine's file system, and no step works inside another's path."""
    q_dev = os.fstat(ws.q_fd).st_dev
    moved = [s.path for s in steps if s.op == "move"]
    for step in steps:
        if step.op == "stage":
            continue
        nested = [p for p in moved if step.path.startswith(p + "/")]
        if nested:
            raise RepairError(f"{step.path}: lies inside {nested[0]}, which is moved too")
        try:
            with parent_of(ws.root_fd, step.path) as (fd, name):
                st = entry(fd, name)
                if os.fstat(fd).st_dev != q_dev:
                    raise RepairError(f"{step.path}: on another file system than the quarantine")
        except UnsafePath as exc:
            raise RepairError(f"{step.path}: {exc}; nothing was changed") from None
        if step.op == "put" and step.path in moved:
            continue  # the original is moved out by the step before
        now = None if st is None else type_of_mode(st.st_mode)
        expected = step.kind if step.op in ("move", "copyout") else None
        if now != expected:
            raise RepairError(
                f"{step.path}: is {now or 'absent'} now, {expected or 'absent'} when planned; "
                "nothing was changed"
            )


def start_run(
    ws: Workspace,
    actions: list[Action],
    argv: list[str],
    switch: StopSwitch,
) -> RunResult:
    """Carry out ``actions`` in a new run of the quarantine (the workspace must be locked)."""
    steps = expand(actions)
    preflight(ws, steps)
    run, run_fd = ws.new_run()
    run_dir = ws.quarantine / run
    journal = Journal.create(run_fd, run_dir / "journal.jsonl", switch.event)
    try:
        journal.append(
            {
                "record": "start",
                "format": FORMAT,
                "run": run,
                "tool": "docker-forensics",
                "version": __version__,
                "root": str(ws.root),
                "quarantine": str(run_dir),
                "argv": argv,
                "pid": os.getpid(),
                "time": _now(),
                "actions": [a.as_dict() for a in actions],
                "steps": [s.as_dict() for s in steps],
            }
        )
        _run_or_explain(Runner(ws, run, run_fd, journal, switch), steps, set(), set())
    finally:
        journal.close()
    return RunResult(run, journal.path, run_dir, len(steps))


def pending_runs(ws: Workspace) -> list[JournalState]:
    """Runs on this ROOT that stopped before their end (a crash) and were not undone."""
    return [s for s in find_journals(ws.quarantine) if s.incomplete and s.root == str(ws.root)]


def resume_run(ws: Workspace, state: JournalState, switch: StopSwitch) -> RunResult:
    """Complete an interrupted run from its journal."""
    run_fd = ws.open_run(state.run_dir.name)
    journal = Journal.reopen(run_fd, state.path, switch.event)
    try:
        steps = [Step.from_dict(s) for s in state.steps]
        journal.append({"record": "resume", "pid": os.getpid(), "time": _now()})
        runner = Runner(ws, state.run, run_fd, journal, switch)
        _run_or_explain(runner, steps, set(state.begun), state.done)
    finally:
        journal.close()
    return RunResult(state.run, state.path, state.run_dir, len(state.steps), resumed=True)


def _run_or_explain(runner: Runner, steps: list[Step], begun: set[int], done: set[int]) -> None:
    """Run the steps; a failure names the journal, which says what was done so far."""
    try:
        runner.run(steps, begun, done)
    except (RepairError, UnsafePath, OSError) as exc:
        path = runner.journal.path
        raise RepairError(
            f"{exc}; the steps made so far are in {path}: rerun once the cause is gone, or "
            f"reverse them with --undo {path}"
        ) from None


def _sync(*fds: int) -> None:
    for fd in fds:
        os.fsync(fd)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _conflict(path: str, in_root: bool, in_quarantine: bool) -> str:
    if in_root and in_quarantine:
        return f"{path}: exists both in ROOT and in the quarantine; stopped"
    return f"{path}: in neither ROOT nor the quarantine; stopped"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@contextmanager
def workspace(root: Path, quarantine: Path) -> Iterator[Workspace]:
    ws = Workspace(root, quarantine)
    try:
        yield ws
    finally:
        ws.close()
