"""--sqlite OUT: written whole or not at all, and never through what is already at OUT.

Only nothing, or a regular file with --overwrite, may be replaced; a device node, a FIFO, a
symlink (to /dev/full, to a file, dangling) or a directory at OUT is refused with exit 8 and left
as it was. A full disk while the database is written is one line and exit 8, and leaves no
file. The full disk is a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) set in the child
process: it needs no privilege and no mount, and makes the writes fail as a full disk does.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Result

from forensics.outfile import OutputRefused, staged_file

SQLITE_MAGIC = b"SQLite format 3\0"


def _run(*args: str | os.PathLike[str], file_size_limit: int | None = None) -> Result:
    """The console script as a user runs it; with ``file_size_limit``, no file it writes may
    grow past that many bytes (what a full disk does to the database)."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        assert file_size_limit is not None
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    exe = shutil.which("docker-forensics")
    cmd = [exe] if exe else [sys.executable, "-m", "forensics"]
    proc = subprocess.run(
        [*cmd, *map(str, args)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        preexec_fn=limit if file_size_limit is not None else None,
        timeout=300,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _char_device(path: Path) -> str:
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 7))  # what /dev/full is
    except PermissionError:
        pytest.skip("mknod needs CAP_MKNOD")
    return "character device"


def _fifo(path: Path) -> str:
    os.mkfifo(path)
    return "FIFO"


def _symlink_to_dev_full(path: Path) -> str:
    path.symlink_to("/dev/full")
    return "symlink"


def _symlink_to_file(path: Path) -> str:
    target = path.with_name("target.db")
    target.write_bytes(b"precious")
    path.symlink_to(target.name)
    return "symlink"


def _dangling_symlink(path: Path) -> str:
    path.symlink_to("nowhere.db")
    return "symlink"


NOT_REPLACEABLE: list[Callable[[Path], str]] = [
    _char_device,
    _fifo,
    _symlink_to_dev_full,
    _symlink_to_file,
    _dangling_symlink,
]


def _snapshot(directory: Path) -> dict[str, tuple[int, int, str, bytes]]:
    """What each name in ``directory`` is: mode, inode, link target, contents of a file."""
    seen = {}
    for entry in sorted(directory.rglob("*")):
        st = entry.lstat()
        target = os.readlink(entry) if entry.is_symlink() else ""
        data = entry.read_bytes() if stat.S_ISREG(st.st_mode) else b""
        seen[str(entry.relative_to(directory))] = (st.st_mode, st.st_ino, target, data)
    return seen


@pytest.mark.parametrize("make", NOT_REPLACEABLE, ids=[m.__name__[1:] for m in NOT_REPLACEABLE])
@pytest.mark.parametrize("overwrite", [True, False], ids=["overwrite", "no-overwrite"])
def test_only_a_regular_file_is_replaced(
    sample_master: Path, tmp_path: Path, make: Callable[[Path], str], overwrite: bool
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "case.db"
    kind = make(out)
    before = _snapshot(out_dir)
    result = _run("verify", sample_master, "--sqlite", out, *(["--overwrite"] if overwrite else []))
    assert result.code == 8, result
    assert result.stderr.splitlines() == [
        f"docker-forensics: {out}: is a {kind}: only a regular file is ever replaced"
    ]
    assert result.stdout == ""
    assert _snapshot(out_dir) == before


def test_a_directory_is_a_usage_error(sample_master: Path, tmp_path: Path) -> None:
    out = tmp_path / "case.db"
    out.mkdir()
    (out / "kept").write_bytes(b"kept")
    before = _snapshot(tmp_path)
    result = _run("verify", sample_master, "--sqlite", out, "--overwrite")
    assert result.code == 16 and "is a directory" in result.stderr
    assert _snapshot(tmp_path) == before


def test_a_regular_file_is_replaced_not_written_through(
    sample_master: Path, tmp_path: Path
) -> None:
    out = tmp_path / "case.db"
    out.write_bytes(b"old case")
    other_name = tmp_path / "hard-link.db"
    os.link(out, other_name)
    result = _run("verify", sample_master, "--sqlite", out, "--overwrite")
    assert result.code == 0, result
    assert out.read_bytes().startswith(SQLITE_MAGIC)
    assert other_name.read_bytes() == b"old case"  # a new file took the name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.db", "hard-link.db"]


@pytest.mark.parametrize("existing", [False, True], ids=["new", "overwrite"])
def test_full_disk_is_one_line_and_leaves_nothing(
    sample_master: Path, tmp_path: Path, existing: bool
) -> None:
    out = tmp_path / "case.db"
    args = ["verify", sample_master, "--sqlite", out]
    if existing:
        out.write_bytes(b"old case")
        args.append("--overwrite")
    result = _run(*args, file_size_limit=64 * 1024)
    assert result.code == 8, result
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"docker-forensics: {out}: not written: "), line
    assert "internal error" not in line and "Traceback" not in result.stderr
    assert result.stdout == ""
    expected = ["case.db"] if existing else []
    assert sorted(p.name for p in tmp_path.iterdir()) == expected
    if existing:
        assert out.read_bytes() == b"old case"


def test_success_leaves_only_the_database(sample_master: Path, tmp_path: Path) -> None:
    out = tmp_path / "case.db"
    assert _run("verify", sample_master, "--sqlite", out).code == 0
    assert [p.name for p in tmp_path.iterdir()] == ["case.db"]
    with sqlite3.connect(out) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# -- what appears at OUT while the database is written ----------------------------------------


@pytest.mark.parametrize("overwrite", [True, False], ids=["overwrite", "no-overwrite"])
def test_a_symlink_planted_meanwhile_is_refused(tmp_path: Path, overwrite: bool) -> None:
    out = tmp_path / "case.db"
    victim = tmp_path / "victim"
    victim.write_bytes(b"victim")
    with (
        pytest.raises(OutputRefused, match="is a symlink"),
        staged_file(out, overwrite=overwrite) as path,
    ):
        path.write_bytes(b"new")
        out.symlink_to(victim)
    assert out.is_symlink() and victim.read_bytes() == b"victim"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.db", "victim"]


def test_a_file_created_meanwhile_is_kept_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "case.db"
    with pytest.raises(OutputRefused, match="exists"), staged_file(out, overwrite=False) as path:
        path.write_bytes(b"new")
        out.write_bytes(b"someone else's")
    assert out.read_bytes() == b"someone else's"
    assert [p.name for p in tmp_path.iterdir()] == ["case.db"]


def test_the_staged_file_is_private_and_new(tmp_path: Path) -> None:
    out = tmp_path / "case.db"
    with staged_file(out, overwrite=False) as path:
        assert path.parent.parent == tmp_path and path.name == "case.db"
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert path.stat().st_size == 0 and not out.exists()
        path.write_bytes(b"done")
    assert out.read_bytes() == b"done"
    assert [p.name for p in tmp_path.iterdir()] == ["case.db"]
