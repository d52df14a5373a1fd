"""A private dockerd for tests that need a real daemon.

"A test that needs dockerd must start its own private daemon and stop it by its pid."

    from dockerd_util import dockerd_available, private_dockerd

    @pytest.mark.dockerd
    @pytest.mark.skipif(not dockerd_available(), reason="needs root and Debian's docker.io")
    def test_something(tmp_path):
        with private_dockerd(tmp_path / "docker", tmp_path) as daemon:
            out = daemon.docker("ps", "-a", "--format", "{{.Names}}", check=True).stdout

The daemon runs with its own data root, exec root, socket and pidfile and never touches the
default socket, /var/lib/docker or /etc/docker. Its flags are those of
samples/make-real-sample.sh (DOCKERD_FLAGS there): keep ``dockerd_command`` and that array in
sync. On exit it is stopped by its pid (SIGTERM, then SIGKILL after a timeout); processes left
behind (containerd, shims, container processes) are found through its exec root, never by name,
and mounts under its exec root and data root are removed.

Manual self-test: ``python3 tests/dockerd_util.py samples/modern-overlay2.tar.gz`` unpacks the
sample (``.tar.gz`` or ``.tar.xz``) into a temp dir, starts a daemon on it with the storage
driver the tree was written by (``image/<driver>/``) and prints ``docker ps -a``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Debian's 20.10 client. A newer client found first in PATH (e.g. /usr/local/bin/docker 28.x)
#: may refuse the 20.10 daemon's API version.
DOCKER_CLI = Path(os.environ.get("DOCKER_CLI", "/usr/bin/docker"))
DOCKERD = os.environ.get("DOCKERD", "dockerd")
#: dockerd 20.10 uses a system containerd instead of its own private one when this socket exists.
SYSTEM_CONTAINERD_SOCK = Path("/run/containerd/containerd.sock")
#: containerd 1.6 puts shim sockets here, named sha256("<address>/<namespace>/<id>").
SHIM_SOCKET_DIR = Path("/run/containerd/s")
NAMESPACE = "moby"
#: sun_path is 108 bytes; the deepest socket under the exec root is
#: containerd/containerd.sock.ttrpc (33 bytes), so keep the exec root short.
_MAX_EXEC_ROOT_LEN = 60


def dockerd_command(
    data_root: Path,
    exec_root: Path,
    sock: Path,
    pidfile: Path,
    config_file: Path,
    storage_driver: str = "overlay2",
) -> list[str]:
    """dockerd's command line. KEEP IN SYNC with DOCKERD_FLAGS in samples/make-real-sample.sh
    (``storage_driver`` is its ``--driver``: overlay2, vfs or overlay)."""
    return [
        DOCKERD,
        "--data-root", str(data_root),
        "--exec-root", str(exec_root),
        "-H", f"unix://{sock}",
        "--pidfile", str(pidfile),
        # Its only key, deprecated-key-path, keeps dockerd 20.10 out of /etc/docker/key.json.
        "--config-file", str(config_file),
        "--storage-driver", storage_driver,
        # No docker0, no iptables rules, no sysctl changes on the host.
        "--bridge=none", "--iptables=false", "--ip6tables=false",
        "--ip-forward=false", "--ip-masq=false",
        "--userland-proxy=false",
    ]  # fmt: skip


def dockerd_available() -> bool:
    """True when a private dockerd can be started here (root, docker.io installed, overlayfs,
    and no system containerd that dockerd would latch onto)."""
    if os.name != "posix" or os.geteuid() != 0:
        return False
    if shutil.which(DOCKERD) is None or not os.access(DOCKER_CLI, os.X_OK):
        return False
    if SYSTEM_CONTAINERD_SOCK.exists():
        return False
    try:
        return "overlay" in Path("/proc/filesystems").read_text().split()
    except OSError:
        return False


@dataclass
class PrivateDockerd:
    """A running private daemon; ``docker()`` runs the client against its socket."""

    data_root: Path
    exec_root: Path
    sock: Path
    log_path: Path
    pid: int
    client_config: Path
    _proc: subprocess.Popen[bytes] = field(repr=False)

    def docker(
        self,
        *args: str,
        input: str | bytes | None = None,
        check: bool = False,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[Any]:
        """Run ``docker ARGS…`` against this daemon. Text mode unless ``input`` is bytes."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
        }
        env["DOCKER_HOST"] = f"unix://{self.sock}"
        env["DOCKER_CONFIG"] = str(self.client_config)
        return subprocess.run(
            [str(DOCKER_CLI), *args],
            input=input,
            capture_output=True,
            text=not isinstance(input, bytes),
            env=env,
            check=check,
            timeout=timeout,
        )

    def alive(self) -> bool:
        return self._proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextlib.contextmanager
def private_dockerd(
    data_root: Path,
    tmp: Path,
    *,
    start_timeout: float = 60.0,
    stop_timeout: float = 30.0,
    storage_driver: str = "overlay2",
) -> Iterator[PrivateDockerd]:
    """Start dockerd on ``data_root`` (existing or new) with ``storage_driver``; its log, config
    and client config go into ``tmp``. Yields a :class:`PrivateDockerd`; on exit stops it by its
    pid and cleans up."""
    if SYSTEM_CONTAINERD_SOCK.exists():
        raise RuntimeError(f"{SYSTEM_CONTAINERD_SOCK} exists: dockerd would use that containerd")
    data_root = Path(data_root).absolute()
    tmp = Path(tmp).absolute()
    data_root.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    short_dir: Path | None = None
    if len(str(tmp)) <= _MAX_EXEC_ROOT_LEN:
        run_dir = tmp
    else:  # pytest's tmp_path can be too long for unix socket paths
        short_dir = run_dir = Path(tempfile.mkdtemp(prefix="dfx-d."))
    exec_root = run_dir / "exec"
    sock = run_dir / "docker.sock"
    pidfile = run_dir / "docker.pid"
    config_file = tmp / "daemon.json"
    config_file.write_text(json.dumps({"deprecated-key-path": str(tmp / "key.json")}) + "\n")
    log_path = tmp / "dockerd.log"
    client_config = tmp / "client"
    client_config.mkdir(exist_ok=True)
    exec_root.mkdir(exist_ok=True)

    cmd = dockerd_command(data_root, exec_root, sock, pidfile, config_file, storage_driver)
    with open(log_path, "ab") as log:
        # Own session: a Ctrl-C in the test runner must not reach dockerd before we stop it.
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    daemon = PrivateDockerd(data_root, exec_root, sock, log_path, proc.pid, client_config, proc)
    try:
        _wait_until_up(daemon, start_timeout)
        yield daemon
    finally:
        _stop(daemon, stop_timeout)
        _cleanup(daemon)
        if short_dir is not None:
            shutil.rmtree(short_dir, ignore_errors=True)


def _wait_until_up(daemon: PrivateDockerd, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not daemon.alive():
            raise RuntimeError(f"dockerd exited during start-up:\n{daemon.log_tail()}")
        if daemon.sock.exists():
            with contextlib.suppress(subprocess.TimeoutExpired):
                if daemon.docker("info", timeout=10).returncode == 0:
                    return
        time.sleep(0.3)
    raise RuntimeError(f"dockerd did not answer within {timeout:.0f} s:\n{daemon.log_tail()}")


def _stop(daemon: PrivateDockerd, timeout: float) -> None:
    """SIGTERM by pid, SIGKILL if it is still there after ``timeout``; reap it."""
    if not daemon.alive():
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(daemon.pid, signal.SIGTERM)
    try:
        daemon._proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon.pid, signal.SIGKILL)
        daemon._proc.wait(10)


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _cleanup(daemon: PrivateDockerd) -> None:
    """Kill what this daemon left running and unmount what it left mounted. Everything is found
    through its own exec root (containerd task bundles, command lines), never by name."""
    tasks = daemon.exec_root / "containerd/daemon/io.containerd.runtime.v2.task" / NAMESPACE
    ids = sorted(p.name for p in tasks.iterdir()) if tasks.is_dir() else []
    # 1. container init processes (pid checked against the container's cgroup) …
    for cid in ids:
        try:
            pid = int((tasks / cid / "init.pid").read_text().strip())
            if cid in Path(f"/proc/{pid}/cgroup").read_text():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
    # … which only die once thawed if they were paused.
    cgroup_dirs = [p for cid in ids for p in Path("/sys/fs/cgroup").glob(f"**/{cid}") if p.is_dir()]
    for d in cgroup_dirs:
        for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            with contextlib.suppress(OSError):
                (d / name).write_text(value)
    # 2. containerd and its shims: their command lines name our exec root.
    marker = f"{daemon.exec_root}/"
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            if marker in _cmdline(int(entry.name)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry.name), signal.SIGKILL)
    if ids:
        time.sleep(1)
    # 3. empty cgroups and stale shim sockets of our containers.
    for d in sorted(cgroup_dirs, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            d.rmdir()
    address = daemon.exec_root / "containerd/containerd.sock"
    for cid in ids:
        digest = hashlib.sha256(f"{address}/{NAMESPACE}/{cid}".encode()).hexdigest()
        with contextlib.suppress(OSError):
            (SHIM_SOCKET_DIR / digest).unlink()
    # 4. mounts under the exec root and the data root, deepest first.
    unmount_under(daemon.exec_root, daemon.data_root)


def _mountpoints() -> list[str]:
    def unescape(s: str) -> str:  # mountinfo escapes space, tab, newline, backslash as \ooo
        return s.encode().decode("unicode_escape").encode("latin-1").decode(errors="replace")

    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        return [unescape(line.split()[4]) for line in f if line.strip()]


def unmount_under(*dirs: Path) -> list[str]:
    """Unmount every mount at or below ``dirs`` (deepest first); return what is still mounted."""
    roots = [str(Path(d).absolute()) for d in dirs]

    def below() -> list[str]:
        return sorted(
            {m for m in _mountpoints() for r in roots if m == r or m.startswith(r + "/")},
            reverse=True,
        )

    for _ in range(5):
        mounts = below()
        if not mounts:
            return []
        for m in mounts:
            if subprocess.run(["umount", m], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", m], capture_output=True)
    return below()


def storage_driver_of(data_root: Path) -> str:
    """The graph driver a data root was written by: the one ``image/<driver>/`` names (a root
    holds one; overlay2 when none or several)."""
    image = Path(data_root) / "image"
    drivers = sorted(p.name for p in image.iterdir() if p.is_dir()) if image.is_dir() else []
    return drivers[0] if len(drivers) == 1 else "overlay2"


def _self_test(sample: Path) -> int:
    """Unpack ``sample`` (a .tar.gz or .tar.xz of docker/), start a daemon on it with the driver
    it was written by, print ``docker ps -a``."""
    if not dockerd_available():
        print("dockerd not available here", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="dfx-selftest.") as t:
        tmp = Path(t)
        subprocess.run(
            ["tar", "-C", str(tmp), "--numeric-owner", "--xattrs", "--xattrs-include=*",
             "-xJf" if sample.name.endswith(".xz") else "-xzf", str(sample.absolute())],
            check=True,
        )  # fmt: skip
        driver = storage_driver_of(tmp / "docker")
        try:
            with private_dockerd(tmp / "docker", tmp / "run", storage_driver=driver) as daemon:
                print(f"dockerd pid {daemon.pid}, storage driver {driver}, log {daemon.log_path}")
                print(daemon.docker("version", "--format", "{{.Server.Version}}").stdout, end="")
                print(daemon.docker("ps", "-a", "--no-trunc", check=True).stdout, end="")
                print(daemon.docker("images", check=True).stdout, end="")
                print(daemon.docker("volume", "ls", check=True).stdout, end="")
                pid = daemon.pid
        finally:
            unmount_under(tmp)  # never let TemporaryDirectory descend into a mount
        alive = Path(f"/proc/{pid}").exists() and "dockerd" in _cmdline(pid)
        print(f"after exit: dockerd pid {pid} {'STILL ALIVE' if alive else 'gone'}")
        return 1 if alive else 0


if __name__ == "__main__":
    default = Path(__file__).resolve().parent.parent / "samples" / "modern-overlay2.tar.gz"
    sys.exit(_self_test(Path(sys.argv[1]) if len(sys.argv) > 1 else default))


def require_dockerd() -> None:
    """Skip the calling test when no private dockerd can run here; fail instead when the run
    demands the real-daemon tier (CI sets DOCKER_FORENSICS_REQUIRE_DOCKERD)."""
    import pytest

    if dockerd_available():
        return
    if os.environ.get("DOCKER_FORENSICS_REQUIRE_DOCKERD"):
        pytest.fail("a private dockerd cannot be started here, but this run requires one")
    pytest.skip("needs root, Debian's docker.io and overlayfs")
