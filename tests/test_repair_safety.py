"""repair refuses while anything uses ROOT, never follows a symlink, and writes nothing outside
ROOT and the quarantine."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import test_verify_damage as damage
from sample_paths import STORE, SamplePaths
from test_repair import only_run, quarantine_of, run_repair, tmp_leftover
from treehash import tree_hash

from forensics.repair.apply import StopSwitch
from forensics.repair.safety import root_in_use


@pytest.fixture
def paths(sample_root: Path, truth: dict[str, Any]) -> SamplePaths:
    return SamplePaths(sample_root, truth)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(**kw: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["sleep", "300"], stdin=kw.pop("stdin", subprocess.DEVNULL), **kw)
        procs.append(proc)
        return proc

    yield start  # type: ignore[misc]
    for proc in procs:
        proc.kill()
        proc.wait()


def assert_refused(result: Any, root: Path, before: str, words: str) -> None:
    assert result.code == 8, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "--force" in lines[0], lines
    assert tree_hash(root) == before
    assert not quarantine_of(root).exists()


# -- a daemon or a process uses ROOT -----------------------------------------------------------


def test_live_pid_file_refuses_and_force_overrides(
    paths: SamplePaths, tmp_path: Path, sleeper: Any
) -> None:
    damage.add_orphan_overlay2_dir(paths)
    before = tree_hash(paths.root)
    pidfile = tmp_path / "docker.pid"
    pidfile.write_text(f"{sleeper().pid}\n")
    result = run_repair(paths.root, "--pidfile", pidfile)
    assert_refused(result, paths.root, before, f"pid file {pidfile}")
    forced = run_repair(paths.root, "--pidfile", pidfile, "--force")
    assert forced.code == 1, forced.stderr
    assert "--force" in forced.stderr and "warning" in forced.stderr


def test_stale_pid_file_does_not_refuse(paths: SamplePaths, tmp_path: Path) -> None:
    damage.add_orphan_overlay2_dir(paths)
    proc = subprocess.Popen(["true"])
    proc.wait()
    pidfile = tmp_path / "docker.pid"
    pidfile.write_text(str(proc.pid))
    assert run_repair(paths.root, "--pidfile", pidfile).code == 1


def test_process_with_cwd_under_root_refuses(paths: SamplePaths, sleeper: Any) -> None:
    damage.add_orphan_overlay2_dir(paths)
    before = tree_hash(paths.root)
    proc = sleeper(cwd=paths.root / "containers")
    result = run_repair(paths.root)
    assert_refused(result, paths.root, before, f"process {proc.pid} (sleep)")
    assert "containers" in result.stderr


def test_process_holding_a_file_open_refuses(paths: SamplePaths, sleeper: Any) -> None:
    damage.add_orphan_overlay2_dir(paths)
    before = tree_hash(paths.root)
    with open(paths.root / STORE / "repositories.json", "rb") as held:
        proc = sleeper(stdin=held)
    result = run_repair(paths.root)
    assert_refused(result, paths.root, before, f"process {proc.pid} (sleep)")
    assert "repositories.json" in result.stderr
    assert run_repair(paths.root, "--force").code == 1


def test_undo_refuses_too(paths: SamplePaths, tmp_path: Path, sleeper: Any) -> None:
    damage.add_orphan_overlay2_dir(paths)
    journal = run_repair(paths.root, "--format", "json").json()["journal"]
    repaired = tree_hash(paths.root)
    pidfile = tmp_path / "docker.pid"
    pidfile.write_text(str(sleeper().pid))
    result = run_repair("--undo", journal, "--pidfile", pidfile)
    assert result.code == 8 and "pid file" in result.stderr
    assert tree_hash(paths.root) == repaired


class _Info(http.server.BaseHTTPRequestHandler):
    root: str | None = None

    def do_GET(self) -> None:  # noqa: N802 — the http.server protocol
        body = (
            b"not json" if self.root is None else json.dumps({"DockerRootDir": self.root}).encode()
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@contextmanager
def fake_daemon(sock: Path, root: str | None) -> Iterator[None]:
    """A server on ``sock`` that answers ``GET /info`` as dockerd does, with ``root``."""
    handler = type("Handler", (_Info,), {"root": root})
    server = _UnixServer(str(sock), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        sock.unlink()


def test_listening_socket_of_a_daemon_on_root_refuses(paths: SamplePaths) -> None:
    damage.add_orphan_overlay2_dir(paths)
    before = tree_hash(paths.root)
    sock = paths.root.parent / "docker.sock"
    with fake_daemon(sock, str(paths.root)):
        result = run_repair(paths.root)
    assert_refused(result, paths.root, before, f"a daemon listens on {sock} and serves it")


def test_listening_socket_that_does_not_say_refuses(paths: SamplePaths) -> None:
    before = tree_hash(paths.root)
    with fake_daemon(paths.root.parent / "docker.sock", None):
        usage = root_in_use(paths.root, default_pidfiles=())
    assert usage and "does not say its root" in usage.reasons[0]
    assert tree_hash(paths.root) == before


def test_listening_socket_of_a_daemon_on_another_root_is_fine(
    paths: SamplePaths, tmp_path: Path
) -> None:
    damage.add_orphan_overlay2_dir(paths)
    with fake_daemon(paths.root.parent / "docker.sock", str(tmp_path / "elsewhere")):
        assert run_repair(paths.root).code == 1


def test_a_stale_socket_is_fine(paths: SamplePaths) -> None:
    sock = paths.root.parent / "docker.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))  # bound, never listening: what a crashed daemon leaves
    s.close()
    assert not root_in_use(paths.root, default_pidfiles=())


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
def test_a_mount_under_root_refuses(paths: SamplePaths) -> None:
    damage.add_orphan_overlay2_dir(paths)
    before_mount = paths.root / "tmp"
    subprocess.run(["mount", "-t", "tmpfs", "none", str(before_mount)], check=True)
    try:
        result = run_repair(paths.root)
        assert result.code == 8 and f"{before_mount} is mounted" in result.stderr
    finally:
        subprocess.run(["umount", str(before_mount)], check=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
def test_quarantine_on_another_file_system_refuses(paths: SamplePaths, tmp_path: Path) -> None:
    damage.add_orphan_overlay2_dir(paths)
    before = tree_hash(paths.root)
    q = tmp_path / "q"
    q.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "none", str(q)], check=True)
    try:
        result = run_repair(paths.root, "--quarantine", q)
        assert result.code == 8 and "another file system" in result.stderr
        assert tree_hash(paths.root) == before
    finally:
        subprocess.run(["umount", str(q)], check=True)


def test_a_second_repair_at_once_is_refused(paths: SamplePaths) -> None:
    import fcntl

    damage.add_orphan_overlay2_dir(paths)
    before = tree_hash(paths.root)
    fd = os.open(paths.root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = run_repair(paths.root)
    finally:
        os.close(fd)
    assert result.code == 8 and "another repair is running" in result.stderr
    assert tree_hash(paths.root) == before
    quarantine_of(paths.root).mkdir(exist_ok=True)
    fd = os.open(quarantine_of(paths.root) / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = run_repair(paths.root)
    finally:
        os.close(fd)
    assert result.code == 8 and "another repair holds" in result.stderr
    assert tree_hash(paths.root) == before


# -- symlinks ----------------------------------------------------------------------------------


@pytest.fixture
def decoy(tmp_path: Path) -> Path:
    """A directory outside ROOT that looks like a layer, a container and a layerdb."""
    d = tmp_path / "decoy"
    (d / "diff").mkdir(parents=True)
    (d / "link").write_text("DECOYDECOYDECOYDECOYDECOYD")
    (d / "config.v2.json").write_text("{")
    (d / "mounts").mkdir()
    (d / "tmp" / "write-set-424242").mkdir(parents=True)
    return d


def outside(tmp_path: Path, root: Path) -> str:
    """A fingerprint of everything under tmp_path except ROOT and its quarantine."""
    keep = {root.name, quarantine_of(root).name}
    parts = []
    for entry in sorted(tmp_path.iterdir()):
        if entry.name not in keep:
            parts.append(f"{entry.name}:{tree_hash(entry) if entry.is_dir() else entry.stat()}")
    return "|".join(parts)


def test_planted_symlinks_out_of_root_are_never_followed(
    paths: SamplePaths, tmp_path: Path, decoy: Path
) -> None:
    os.symlink(decoy, paths.path(f"overlay2/{'d' * 64}"))
    os.symlink(decoy, paths.path(f"containers/{'c' * 64}"))
    os.symlink(decoy, paths.path(f"{STORE}/layerdb/mounts/{'b' * 64}"))
    os.symlink(decoy / "diff", paths.path("overlay2/l/DECOYDECOYDECOYDECOYDECOYD"))
    damage.truncate_config(paths)
    before = outside(tmp_path, paths.root)
    damaged = tree_hash(paths.root)
    plan = run_repair(paths.root, "--dry-run", "--format", "json").json()
    planned = {a["path"] for a in plan["actions"]}
    assert f"overlay2/{'d' * 64}" not in planned and f"containers/{'c' * 64}" not in planned
    result = run_repair(paths.root, "--format", "json")
    assert result.code in (1, 4), result.stderr
    assert outside(tmp_path, paths.root) == before, "something outside ROOT changed"
    for link in (f"overlay2/{'d' * 64}", f"containers/{'c' * 64}"):
        assert paths.path(link).is_symlink()
    assert run_repair("--undo", result.json()["journal"]).code == 1
    assert tree_hash(paths.root) == damaged and outside(tmp_path, paths.root) == before


@contextmanager
def at_event(n: int, action: Any) -> Iterator[None]:
    """Run ``action`` when the repair reaches journal event ``n`` (it then goes on)."""
    made = StopSwitch(n, action)
    with mock.patch.object(StopSwitch, "from_env", classmethod(lambda cls: made)):
        yield


def test_a_directory_swapped_for_a_symlink_mid_run_stops_the_run(
    paths: SamplePaths, tmp_path: Path, decoy: Path
) -> None:
    """After the first step, containers/<id> (moved last) becomes a symlink to the decoy: the
    step finds a symlink where it planned a directory and stops; the decoy is untouched."""
    damage.truncate_config(paths)
    cid = paths.container_id("exited")
    decoy_hash = tree_hash(decoy)
    aside = tmp_path / "real-container"

    def swap() -> None:
        paths.path(f"containers/{cid}").rename(aside)
        os.symlink(decoy, paths.path(f"containers/{cid}"))

    with at_event(4, swap):  # start, begin 1, move 1, done 1
        result = run_repair(paths.root)
    assert result.code == 8 and "is a symlink now" in result.stderr, result.stderr
    assert "--undo" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert tree_hash(decoy) == decoy_hash
    assert paths.path(f"containers/{cid}").is_symlink()
    again = run_repair(paths.root)  # resumes the journal, stops at the same place
    assert again.code == 8 and tree_hash(decoy) == decoy_hash
    journal = only_run(paths.root) / "journal.jsonl"
    assert run_repair("--undo", journal).code == 1
    assert tree_hash(decoy) == decoy_hash
    assert paths.path(f"overlay2/{paths.mount_id('exited')}").is_dir(), "moved back"


def test_a_parent_swapped_for_a_symlink_mid_run_stops_the_run(
    paths: SamplePaths, tmp_path: Path, decoy: Path
) -> None:
    """layerdb/ replaced by a symlink to a look-alike outside ROOT: the move of a leftover under
    layerdb/tmp is refused, not redirected into the decoy."""
    damage.add_orphan_overlay2_dir(paths)
    tmp_leftover(paths)
    decoy_hash = tree_hash(decoy)
    layerdb = paths.path(f"{STORE}/layerdb")

    def swap() -> None:
        layerdb.rename(tmp_path / "real-layerdb")
        os.symlink(decoy, layerdb)

    with at_event(4, swap):
        result = run_repair(paths.root)
    assert result.code == 8 and "not followed" in result.stderr, result.stderr
    assert tree_hash(decoy) == decoy_hash
    assert not (only_run(paths.root) / STORE / "layerdb" / "tmp").exists()


def test_a_symlink_on_the_way_before_the_run_changes_nothing(
    paths: SamplePaths, tmp_path: Path, decoy: Path
) -> None:
    """A plan made, then a directory on its way swapped for a symlink: preflight refuses
    before anything is written."""
    from forensics.checks import run_checks
    from forensics.evidence import Evidence
    from forensics.repair.apply import RepairError, start_run, workspace
    from forensics.repair.plan import make_plan
    from forensics.stores import read_host

    tmp_leftover(paths)
    ev = Evidence(paths.root)
    host = read_host(ev)
    plan = make_plan(ev, host, run_checks(host))
    assert plan.actions
    tmp_dir = paths.path(f"{STORE}/layerdb/tmp")
    shutil.move(tmp_dir, tmp_path / "real-tmp")
    os.symlink(decoy / "tmp", tmp_dir)
    decoy_hash = tree_hash(decoy)
    with workspace(paths.root, quarantine_of(paths.root)) as ws:
        ws.lock()
        with pytest.raises(RepairError, match="nothing was changed"):
            start_run(ws, plan.actions, [], StopSwitch(None))
    assert tree_hash(decoy) == decoy_hash
    assert [p for p in quarantine_of(paths.root).iterdir() if p.is_dir()] == []


# -- the quarantine is never reached through a symlink ---------------------------------------


def _refused_quarantine(result: Any, root: Path, before: str, words: str) -> None:
    assert result.code == 8, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], lines
    assert tree_hash(root) == before


def test_a_planted_quarantine_symlink_is_refused(
    paths: SamplePaths, tmp_path: Path, decoy: Path
) -> None:
    """ROOT.quarantine planted as a symlink beside ROOT: never followed, nothing written."""
    damage.add_orphan_overlay2_dir(paths)
    before, decoy_hash = tree_hash(paths.root), tree_hash(decoy)
    os.symlink(decoy, quarantine_of(paths.root))
    result = run_repair(paths.root)
    _refused_quarantine(result, paths.root, before, "a symlink (not followed)")
    assert tree_hash(decoy) == decoy_hash and sorted(os.listdir(decoy)) == sorted(
        ["diff", "link", "config.v2.json", "mounts", "tmp"]
    )
    dangling = tmp_path / "nowhere"
    quarantine_of(paths.root).unlink()
    os.symlink(dangling, quarantine_of(paths.root))  # a dangling link is not made real either
    _refused_quarantine(run_repair(paths.root), paths.root, before, "not followed")
    assert not dangling.exists()


def test_a_symlink_anywhere_on_the_quarantine_path_is_refused(
    paths: SamplePaths, tmp_path: Path
) -> None:
    damage.add_orphan_overlay2_dir(paths)
    before = tree_hash(paths.root)
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "via")
    result = run_repair(paths.root, "--quarantine", tmp_path / "via" / "q")
    _refused_quarantine(result, paths.root, before, f"{tmp_path / 'via'}: a symlink")
    assert list(real.iterdir()) == []
    # a symlink into ROOT is refused the same way, never resolved to a path inside it
    os.symlink(paths.root / "tmp", tmp_path / "into-root")
    inside = run_repair(paths.root, "--quarantine", tmp_path / "into-root")
    _refused_quarantine(inside, paths.root, before, "a symlink")


def test_a_quarantine_others_may_write_is_refused(paths: SamplePaths, tmp_path: Path) -> None:
    damage.add_orphan_overlay2_dir(paths)
    before = tree_hash(paths.root)
    q = quarantine_of(paths.root)
    q.mkdir()
    q.chmod(0o777)
    _refused_quarantine(run_repair(paths.root), paths.root, before, "writable by others")
    q.chmod(0o700)
    os.chown(q, 12345, 12345)
    if os.geteuid() == 0:  # only root can give the directory away
        _refused_quarantine(run_repair(paths.root), paths.root, before, "owned by uid 12345")


def test_a_lock_file_that_is_not_a_plain_file_is_refused(
    paths: SamplePaths, tmp_path: Path
) -> None:
    damage.add_orphan_overlay2_dir(paths)
    before = tree_hash(paths.root)
    q = quarantine_of(paths.root)
    q.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(victim, q / ".lock")
    _refused_quarantine(run_repair(paths.root), paths.root, before, ".lock")
    (q / ".lock").unlink()
    os.link(victim, q / ".lock")  # a hard link: the lock would truncate the file it names
    _refused_quarantine(run_repair(paths.root), paths.root, before, "not a plain file")
    assert victim.read_text() == "precious\n"
