"""Is a dockerd (or anything else) using ROOT? A repair refuses while it is, unless forced.

Evidence looked at, all read-only:

* pid files: ``/var/run/docker.pid`` and ``/run/docker.pid`` (the daemon's defaults), and any
  given with ``--pidfile``. A given pid file with a live pid counts whatever the process is. A
  default one counts unless the live daemon's data root (its ``--data-root``/``-g`` flag, else
  its config file's ``data-root``, else ``/var/lib/docker``) is plainly another directory.
* listening sockets named ``docker.sock`` (from ``/proc/net/unix``) in ``/run``, ``/var/run``
  or next to ROOT: the daemon is asked ``GET /info`` and counts when its ``DockerRootDir`` is
  ROOT, or when it does not say.
* processes whose open files, working directory or root directory are under ROOT
  (``/proc/*/fd``, ``/proc/*/cwd``, ``/proc/*/root``), other than this one.
* mounts under ROOT (``/proc/self/mountinfo``): a container's overlay, a daemon's own mounts.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PIDFILES = (Path("/var/run/docker.pid"), Path("/run/docker.pid"))
DEFAULT_DATA_ROOT = "/var/lib/docker"
DEFAULT_CONFIG = "/etc/docker/daemon.json"
SOCKET_NAME = "docker.sock"
_LISTENING = 0x10000  # __SO_ACCEPTCON in /proc/net/unix Flags


@dataclass
class Usage:
    """What uses ROOT: one line per finding, and what could not be looked at."""

    reasons: list[str] = field(default_factory=list)
    unseen: int = 0  # processes whose files could not be read (permissions)

    def __bool__(self) -> bool:
        return bool(self.reasons)


def root_in_use(
    root: Path,
    pidfiles: list[Path] | tuple[Path, ...] = (),
    *,
    default_pidfiles: tuple[Path, ...] = DEFAULT_PIDFILES,
    proc: Path = Path("/proc"),
) -> Usage:
    """Everything that shows ``root`` (a real, absolute path) to be in use."""
    usage = Usage()
    root_s = str(root)
    for pidfile in pidfiles:
        pid = _live_pid(pidfile, proc)
        if pid is not None:
            usage.reasons.append(f"pid file {pidfile} names a running process (pid {pid})")
    for pidfile in default_pidfiles:
        pid = _live_pid(pidfile, proc)
        if pid is not None and _data_root_of(pid, proc) in (None, root_s):
            usage.reasons.append(f"dockerd (pid {pid}, {pidfile}) may be using {root}")
    usage.reasons += _listening_daemons(root, proc)
    usage.reasons += _mounts_under(root_s, proc)
    usage.reasons += _processes_under(root_s, proc, usage)
    return usage


# -- pid files ----------------------------------------------------------------------------------


def _live_pid(pidfile: Path, proc: Path) -> int | None:
    try:
        text = pidfile.read_text(errors="replace").strip()
    except OSError:
        return None
    if not text.isdigit() or int(text) <= 0:
        return None
    pid = int(text)
    return pid if (proc / str(pid)).is_dir() and _not_zombie(pid, proc) else None


def _not_zombie(pid: int, proc: Path) -> bool:
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _data_root_of(pid: int, proc: Path) -> str | None:
    """The data root a live dockerd was started with; None when it cannot be told."""
    try:
        args = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    argv = [a.decode(errors="replace") for a in args if a]
    root = _flag(argv, ("--data-root", "--graph", "-g"))
    if root is None:
        config = _flag(argv, ("--config-file",)) or DEFAULT_CONFIG
        try:
            value = json.loads(Path(config).read_text()).get("data-root")
        except (OSError, ValueError, AttributeError):
            value = None
        root = value if isinstance(value, str) else DEFAULT_DATA_ROOT
    try:
        return os.path.realpath(root)
    except OSError:
        return None


def _flag(argv: list[str], names: tuple[str, ...]) -> str | None:
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(name + "="):
                return arg[len(name) + 1 :]
    return None


# -- sockets ------------------------------------------------------------------------------------


def _listening_daemons(root: Path, proc: Path) -> list[str]:
    places = {Path("/run"), Path("/var/run"), root.parent, root.parent / "run"}
    places = {Path(os.path.realpath(p)) for p in places}
    out = []
    for path in _listening_sockets(proc):
        if path.name != SOCKET_NAME or Path(os.path.realpath(path.parent)) not in places:
            continue
        answer = _daemon_root(path)
        if answer is None or answer == str(root):
            said = "does not say its root" if answer is None else "serves it"
            out.append(f"a daemon listens on {path} and {said}")
    return out


def _listening_sockets(proc: Path) -> list[Path]:
    try:
        lines = (proc / "net" / "unix").read_text(errors="replace").splitlines()[1:]
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split(maxsplit=7)
        if len(fields) == 8 and fields[7].startswith("/"):
            with contextlib.suppress(ValueError):
                if int(fields[3], 16) & _LISTENING:
                    out.append(Path(fields[7]))
    return out


def _daemon_root(sock: Path, timeout: float = 2.0) -> str | None:
    """``DockerRootDir`` of the daemon on ``sock`` (``GET /info``), or None."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(sock))
            s.sendall(b"GET /info HTTP/1.0\r\nHost: docker\r\n\r\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
                if sum(map(len, chunks)) > 4 << 20:
                    break
    except OSError:
        return None
    body = b"".join(chunks).partition(b"\r\n\r\n")[2]
    try:
        value = json.loads(body).get("DockerRootDir")
    except (ValueError, AttributeError):
        return None
    return os.path.realpath(value) if isinstance(value, str) else None


# -- processes and mounts -----------------------------------------------------------------------


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def _processes_under(root: str, proc: Path, usage: Usage) -> list[str]:
    out = []
    me = os.getpid()
    try:
        pids = [int(n) for n in os.listdir(proc) if n.isdigit()]
    except OSError:
        return []
    for pid in sorted(pids):
        if pid == me:
            continue
        hit = _open_under(proc / str(pid), root, usage)
        if hit:
            out.append(f"process {pid} ({_comm(proc, pid)}) has {hit} open")
    return out


def _open_under(pdir: Path, root: str, usage: Usage) -> str | None:
    for name in ("cwd", "root"):
        with contextlib.suppress(OSError):
            if _under(os.readlink(pdir / name), root):
                return os.readlink(pdir / name)
    try:
        fds = os.listdir(pdir / "fd")
    except PermissionError:
        usage.unseen += 1
        return None
    except OSError:
        return None
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(pdir / "fd" / fd).removesuffix(" (deleted)")
            if _under(target, root):
                return target
    return None


def _comm(proc: Path, pid: int) -> str:
    try:
        return (proc / str(pid) / "comm").read_text().strip()
    except OSError:
        return "?"


def _mounts_under(root: str, proc: Path) -> list[str]:
    try:
        lines = (proc / "self" / "mountinfo").read_text(errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            point = _unescape(fields[4])
            if _under(point, root) and point != root:
                out.append(f"{point} is mounted")
    return out


def _unescape(field_: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo``."""
    return field_.encode().decode("unicode_escape").encode("latin-1").decode(errors="replace")


def describe(usage: Usage, root: Path) -> str:
    """The one-line refusal."""
    first = usage.reasons[0]
    more = f" (and {len(usage.reasons) - 1} more)" if len(usage.reasons) > 1 else ""
    return f"{root} is in use: {first}{more}; stop the daemon first, or use --force"


__all__ = ["DEFAULT_PIDFILES", "Usage", "describe", "root_in_use"]
