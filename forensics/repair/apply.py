"""Carrying out a plan: step by step, each step journaled before it is made.

An action becomes one or more low-level steps:

``move``     rename ``ROOT/<path>`` to ``<run>/<path>`` in the quarantine (a quarantine)
``stage``    write a new file's contents to ``<run>/.staged/<path>`` (a rewrite, first)
``put``      rename ``<run>/.staged/<path>`` to ``ROOT/<path>`` (a rewrite, last)
``symlink``  create the symlink ``ROOT/<path>`` (a relink)

A rewrite is ``stage``, ``move`` (the original), ``put``; a create (a file that is missing) is
``stage``, ``put``. Nothing is ever deleted. ROOT and the quarantine are opened from ``/``, and
every path below them is reached from their descriptors, one component at a time, without
following a symlink (see :mod:`forensics.repair.fsops`); renames never replace anything, and each
checks after the fact that it moved the entry it held and that no directory on the way moved: a
swap by another process is reversed and refused, never followed.

Each step is idempotent against the state a crash can leave: a ``move`` whose source is gone and
whose destination exists was made. A rerun after a crash therefore resumes the journal where it
stopped, and ends in the state an uninterrupted run reaches.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import secrets
import signal
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from forensics import __version__
from forensics.errors import OperationalError
from forensics.evidence import type_of_mode
from forensics.repair.actions import Action
from forensics.repair.fsops import (
    READ_FLAGS,
    Held,
    Swapped,
    UnsafePath,
    entry,
    held,
    move_checked,
    open_dir,
    open_path_dir,
    parent_of,
    read_file,
    rename_noreplace,
    times_of,
    write_new_file,
)
from forensics.repair.journal import (
    FORMAT,
    JOURNAL_LIMIT,
    Journal,
    JournalError,
    JournalState,
    read_journal_at,
)
from forensics.repair.manifest import MANIFEST_NAME, write_manifest

STAGED = ".staged"
UNDONE = ".undone"
#: where an entry goes that arrived in place of the one a step held and could not be put back
SWAPPED = ".swapped"
LOCK_NAME = ".lock"
#: test switch: stop (SIGKILL) after the N-th journal event; ``N:stop`` sends SIGSTOP instead
STOP_ENV = "DOCKER_FORENSICS_REPAIR_STOP_AFTER"


class RepairError(OperationalError):
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
    identity: list[int] | None = None  # move, copyout: [st_dev, st_ino] of the entry planned

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
        identity = list(a.identity) if a.identity else None
        if a.action == "quarantine":
            add(op="move", path=a.path, action=i, kind=a.kind, identity=identity)
        elif a.action == "relink":
            add(op="symlink", path=a.path, action=i, target=a.target)
        elif a.action == "copy-out":
            # a bolt database's salvage: what the copy needs; a thin pool's: the superblock
            # values taken from Docker's records
            values = a.details.get("copy_values") or a.details.get("superblock_from_docker")
            add(
                op="copyout",
                path=a.path,
                action=i,
                kind=a.kind,
                target=a.target,
                values=values,
                identity=identity,
            )
        elif a.action in ("rewrite", "create"):
            content = a.content or b""
            digest = hashlib.sha256(content).hexdigest()
            data = base64.b64encode(content).decode()
            add(op="stage", path=a.path, action=i, data=data, sha256=digest, mode=a.mode)
            if a.action == "rewrite":
                add(op="move", path=a.path, action=i, kind=a.kind, identity=identity)
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
    """ROOT and the quarantine directory, opened from ``/`` without following a symlink at any
    component, and locked. The quarantine must be this user's own and writable by nobody else:
    whoever else can write into it could plant what a repair or an undo then trusts."""

    def __init__(self, root: Path, quarantine: Path, *, create: bool = True) -> None:
        self.root, self.quarantine = root, quarantine
        self._stack = ExitStack()
        try:
            self.root_fd = self._open(root, "ROOT", create=False)
            self.q_fd = self._open(quarantine, "the quarantine", create=create)
            if os.fstat(self.q_fd).st_dev != os.fstat(self.root_fd).st_dev:
                raise RepairError(
                    f"the quarantine {quarantine} is on another file system than ROOT: nothing "
                    "can be moved there without copying; give --quarantine DIR on ROOT's file "
                    "system"
                )
            trust_dir(self.q_fd, f"the quarantine {quarantine}")
        except BaseException:
            self.close()
            raise

    def _open(self, path: Path, what: str, *, create: bool) -> int:
        try:
            fd = open_path_dir(str(path), create=create)
        except UnsafePath as exc:
            raise RepairError(f"{what} {path} is refused: {exc}") from None
        except OSError as exc:
            raise RepairError(f"{what} {path}: {exc.strerror or exc}") from None
        self._stack.callback(os.close, fd)
        return fd

    def lock(self) -> None:
        """Lock ROOT (flock on its directory: nothing is written into it) and the quarantine's
        lock file; both are released when the process ends, however it ends."""
        try:
            fcntl.flock(self.root_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RepairError(f"another repair is running on {self.root}") from None
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(LOCK_NAME, flags, 0o600, dir_fd=self.q_fd)
        except OSError as exc:
            raise RepairError(f"{self.quarantine}/{LOCK_NAME}: {exc.strerror or exc}") from None
        self._stack.callback(os.close, fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise RepairError(
                f"{self.quarantine}/{LOCK_NAME} is not a plain file of its own: refused"
            )
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
        """The run directory ``run`` of the quarantine, held open until the workspace closes."""
        fd = open_run_dir(self.q_fd, self.quarantine, run)
        self._stack.callback(os.close, fd)
        return fd

    def read_journal(self, run: str) -> JournalState:
        """The journal of run ``run``, read and validated (see
        :func:`~forensics.repair.journal.read_journal_at`)."""
        fd = open_run_dir(self.q_fd, self.quarantine, run)
        try:
            return read_journal_at(fd, self.quarantine / run, run)
        finally:
            os.close(fd)

    def journals(self) -> list[JournalState]:
        """The valid journals of the runs in the quarantine, oldest first."""
        out = []
        for name in sorted(os.listdir(self.q_fd)):
            st = entry(self.q_fd, name)
            if st is None or not stat.S_ISDIR(st.st_mode) or name.startswith("."):
                continue
            try:
                out.append(self.read_journal(name))
            except (RepairError, JournalError):
                continue
        return out

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_run_dir(q_fd: int, quarantine: Path, run: str) -> int:
    """The run directory ``run`` of the quarantine held at ``q_fd``, opened without following a
    symlink, and trusted (:func:`trust_dir`); the caller closes it."""
    try:
        fd = open_dir(q_fd, [run])
    except UnsafePath as exc:
        raise RepairError(f"{quarantine}/{run} is refused: {exc}") from None
    try:
        trust_dir(fd, f"{quarantine}/{run}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def trust_dir(fd: int, what: str) -> None:
    """Refuse a directory of the quarantine that another user owns or that others may write."""
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        raise RepairError(f"{what} is owned by uid {st.st_uid}, not by this user: refused")
    if st.st_mode & 0o022:
        raise RepairError(
            f"{what} is writable by others (mode {stat.S_IMODE(st.st_mode):04o}): refused"
        )


# -- the run -----------------------------------------------------------------------------------


@dataclass
class RunResult:
    run: str
    journal: Path
    run_dir: Path
    steps: int
    resumed: bool = False
    copies: list[str] = field(default_factory=list)


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
            try:
                getattr(self, f"_{step.op}")(step, step.n in begun)
            except Swapped as exc:
                self.journal.append({"record": "refused", "step": step.n, "why": str(exc)})
                raise
            self.journal.append({"record": "done", "step": step.n})
        moved = [s.path for s in steps if s.op == "move"]
        digest = write_manifest(self.run_fd, moved)
        self.journal.append({"record": "manifest", "file": MANIFEST_NAME, "sha256": digest})
        self.journal.append({"record": "end", "time": _now()})

    def _begin(self, step: Step, parent_fd: int | None, st: os.stat_result | None) -> None:
        """Journal the step; keep the times of the directory it changes, and of the entry it
        moves (taken from the entry held, not from its name)."""
        record: dict[str, Any] = {"record": "begin", "step": step.n, "time": _now()}
        if parent_fd is not None:
            record["parent_times"] = times_of(os.fstat(parent_fd))
            if st is not None:
                record["entry_times"] = times_of(st)
        self.journal.append(record)

    def _park(self, from_fd: int, name: str) -> str:
        return park_in_run(self.run_fd, from_fd, name)

    def _move(self, step: Step, begun: bool) -> None:
        with held(self.ws.root_fd, step.path) as src:
            with held(self.run_fd, step.path, create=True) as dst:
                in_root, in_q = entry(src.fd, src.name), entry(dst.fd, dst.name)
                if in_root is not None and in_q is None:
                    self._move_held(step, begun, src, dst)
                    _sync(dst.fd, src.fd)
                    self.switch.event()
                    return
                if not begun:
                    self._begin(step, src.fd, None)
                if in_root is not None or in_q is None:
                    raise RepairError(_conflict(step.path, in_root is not None, in_q is not None))

    def _move_held(self, step: Step, begun: bool, src: Held, dst: Held) -> None:
        def check(_fd: int, st: os.stat_result) -> None:
            _is_as_planned(step, st)
            if not begun:
                self._begin(step, src.fd, st)

        move_checked(src, dst, check, park=self._park)

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
        with held(self.ws.root_fd, step.path) as dst:
            if not begun:
                self._begin(step, dst.fd, entry(dst.fd, dst.name))
            with held(self.run_fd, f"{STAGED}/{step.path}") as src:
                staged, there = entry(src.fd, src.name), entry(dst.fd, dst.name)
                if staged is not None and there is None:
                    move_checked(src, dst, _regular_file(step.path), park=self._park)
                    _sync(dst.fd, src.fd)
                    self.switch.event()
                elif staged is not None or there is None:
                    raise RepairError(_conflict(step.path, there is not None, staged is not None))

    def _copyout(self, step: Step, begun: bool) -> None:
        """Write a repaired copy of the file at ``step.path`` into the run (ROOT is only
        read); a rerun writes it again, whole."""
        with parent_of(self.ws.root_fd, step.path) as (rfd, name):
            if not begun:
                self._begin(step, None, None)
            try:
                fd = os.open(name, READ_FLAGS, dir_fd=rfd)
            except OSError as exc:
                raise RepairError(f"{step.path}: {exc.strerror or exc}") from None
        try:
            _is_as_planned(step, os.fstat(fd))
            _write_copy(fd, self.run_fd, step)
        finally:
            os.close(fd)
        self.switch.event()

    def _symlink(self, step: Step, begun: bool) -> None:
        with held(self.ws.root_fd, step.path) as dst:
            if not begun:
                self._begin(step, dst.fd, entry(dst.fd, dst.name))
            st = entry(dst.fd, dst.name)
            if st is None:
                if not dst.still_there():
                    raise Swapped(f"{step.path}: a directory on its way moved; not linked")
                os.symlink(step.target or "", dst.name, dir_fd=dst.fd)
                if not dst.still_there():
                    where = self._park(dst.fd, dst.name)
                    raise Swapped(f"{step.path}: a directory on its way moved; {where}")
                os.fsync(dst.fd)
                self.switch.event()
            elif (
                type_of_mode(st.st_mode) != "symlink"
                or os.readlink(dst.name, dir_fd=dst.fd) != step.target
            ):
                raise RepairError(f"{step.path}: exists and is not the link planned; stopped")


def _write_copy(fd: int, run_fd: int, step: Step) -> None:
    """The repaired copy a ``copyout`` step writes: a containerd bolt database's salvage, or a
    thin pool's metadata."""
    from forensics.repair.boltcopy import BoltCopyError, write_bolt_copy
    from forensics.repair.poolcopy import PoolCopyError, write_pool_copy

    values = step.values or {}
    try:
        if values.get("format") == "bbolt":
            write_bolt_copy(fd, run_fd, step.target or "copy", values)
        else:
            write_pool_copy(fd, run_fd, step.target or "copy", step.values)
    except (PoolCopyError, BoltCopyError) as exc:
        raise RepairError(f"{step.path}: {exc}") from None


def park_in_run(run_fd: int, from_fd: int, name: str) -> str:
    """Move ``name`` of ``from_fd`` — what arrived in place of the entry a step held, and
    could not be put back — into ``.swapped/`` of the run held at ``run_fd``; say where."""
    with held(run_fd, f"{SWAPPED}/{name}", create=True) as park:
        aside = name
        while entry(park.fd, aside) is not None:
            aside += ".again"
        rename_noreplace(from_fd, name, park.fd, aside)
    return f"what arrived was set apart as {SWAPPED}/{aside} in the run"


def _is_as_planned(step: Step, st: os.stat_result) -> None:
    """The entry held for ``step`` is the one planned: of its kind, and the same entry."""
    now = type_of_mode(st.st_mode)
    if now != step.kind:
        raise RepairError(f"{step.path}: is a {now} now, was a {step.kind} when planned; stopped")
    if step.identity is not None and [st.st_dev, st.st_ino] != step.identity:
        raise RepairError(
            f"{step.path}: is another {now} now than the one planned (replaced meanwhile); stopped"
        )


def _regular_file(path: str) -> Callable[[int, os.stat_result], None]:
    def check(_fd: int, st: os.stat_result) -> None:
        if not stat.S_ISREG(st.st_mode):
            raise RepairError(f"{path}: is a {type_of_mode(st.st_mode)}, not a file; stopped")

    return check


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
        if st is not None and step.identity and [st.st_dev, st.st_ino] != step.identity:
            raise RepairError(
                f"{step.path}: is another {now} now than the one planned; nothing was changed"
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
    start: dict[str, Any] = {
        "record": "start",
        "format": FORMAT,
        "tool": "docker-forensics",
        "version": __version__,
        "root": str(ws.root),
        "argv": argv,
        "pid": os.getpid(),
        "actions": [a.as_dict() for a in actions],
        "steps": [s.as_dict() for s in steps],
    }
    if len(json.dumps(start)) > JOURNAL_LIMIT // 2:
        raise RepairError(
            "the plan's new file contents are too large to be journaled; nothing was changed"
        )
    run, run_fd = ws.new_run()
    run_dir = ws.quarantine / run
    journal = Journal.create(run_fd, run_dir / "journal.jsonl", switch.event)
    try:
        start.update(run=run, quarantine=str(run_dir), time=_now())
        journal.append(start)
        _run_or_explain(Runner(ws, run, run_fd, journal, switch), steps, set(), set())
    finally:
        journal.close()
    return RunResult(run, journal.path, run_dir, len(steps), copies=_copies(run_dir, steps))


def pending_runs(ws: Workspace) -> list[JournalState]:
    """Runs on this ROOT that stopped before their end (a crash) and were not undone."""
    return [s for s in ws.journals() if s.incomplete and s.root == str(ws.root)]


def resume_run(ws: Workspace, state: JournalState, switch: StopSwitch) -> RunResult:
    """Complete an interrupted run from its journal."""
    run_fd = ws.open_run(state.run)
    journal = Journal.reopen(run_fd, state.path, switch.event)
    try:
        steps = [Step.from_dict(s) for s in state.steps]
        journal.append({"record": "resume", "pid": os.getpid(), "time": _now()})
        runner = Runner(ws, state.run, run_fd, journal, switch)
        _run_or_explain(runner, steps, set(state.begun), state.done)
    finally:
        journal.close()
    steps = [Step.from_dict(s) for s in state.steps]
    copies = _copies(state.run_dir, steps)
    return RunResult(state.run, state.path, state.run_dir, len(steps), True, copies)


def _copies(run_dir: Path, steps: list[Step]) -> list[str]:
    """The repaired copies a run writes into its directory."""
    return [str(run_dir / (s.target or "copy")) for s in steps if s.op == "copyout"]


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
def workspace(root: Path, quarantine: Path, *, create: bool = True) -> Iterator[Workspace]:
    ws = Workspace(root, quarantine, create=create)
    try:
        yield ws
    finally:
        ws.close()
