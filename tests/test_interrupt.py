"""Ctrl-C at any moment of a run, from the first import on, exits 32 (interrupted) with one line
on stderr and no traceback."""

from __future__ import annotations

import hashlib
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import copy_tree
from inotify_watch import IN_OPEN, Watch

import forensics

PACKAGE = Path(forensics.__file__).parent
#: imported by forensics.cli right after the SIGINT handler is in place (and by nothing before)
AFTER_THE_HANDLER = PACKAGE / "checks"


def _console_script() -> list[str]:
    """The console script as pip installs it (not a shell shim in front of it), else -m."""
    beside = Path(sys.executable).parent / "docker-forensics"
    exe = str(beside) if beside.is_file() else shutil.which("docker-forensics")
    return [exe] if exe else [sys.executable, "-m", "forensics"]


def _interrupt(args: list[str], delay: float) -> subprocess.CompletedProcess[bytes]:
    """Start docker-forensics, wait until it imports what comes after the handler, wait
    ``delay`` seconds more, and send SIGINT."""
    dirs = [d for d in (AFTER_THE_HANDLER, AFTER_THE_HANDLER / "__pycache__") if d.is_dir()]
    watch = Watch(*dirs)
    try:
        proc = subprocess.Popen(
            [*_console_script(), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not [m for m in watch.events() if m & IN_OPEN]:
            assert proc.poll() is None, "ended before importing forensics.checks"
            assert time.monotonic() < deadline, "forensics.checks never imported"
            select.select([watch.fd], [], [], 0.5)
    finally:
        watch.close()
    time.sleep(delay)
    assert proc.poll() is None, f"ended before the signal (after {delay} s): pick a longer run"
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


#: empty container directories added to the sample so that a run lasts (a second or more on a
#: fast machine), well past the longest delay: the sample alone is checked in a fraction of one
EXTRA_CONTAINERS = 40_000


@pytest.fixture(scope="module")
def long_root(sample_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sample with EXTRA_CONTAINERS container directories whose config is
    missing (one finding each): a run that works long enough to be interrupted at any delay."""
    root = copy_tree(sample_master, tmp_path_factory.mktemp("long") / "docker")
    containers = root / "containers"
    for n in range(EXTRA_CONTAINERS):
        os.mkdir(containers / hashlib.sha256(b"interrupted %d" % n).hexdigest())
    return root


@pytest.mark.parametrize("delay", [0.0, 0.005, 0.02, 0.05, 0.1, 0.2, 0.5])
def test_ctrl_c_while_starting_or_working_exits_32(long_root: Path, delay: float) -> None:
    result = _interrupt(["verify", "--deep", str(long_root)], delay)
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    assert result.stderr.endswith(b"docker-forensics: interrupted\n"), result.stderr.decode()
    assert result.returncode == 32


def test_a_library_import_leaves_ctrl_c_to_python() -> None:
    """A program that imports the command line (without running it) keeps Python's own
    KeyboardInterrupt."""
    code = (
        "import os, signal\n"
        "import forensics.cli\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    signal.pause()\n"
        "except KeyboardInterrupt:\n"
        "    print('caught')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout) == (0, "caught\n"), out.stderr


def test_an_interrupt_that_python_wrapped_exits_32(monkeypatch, capsys) -> None:
    """Ctrl-C while a module defines a dataclass reaches us as ``RuntimeError: Error calling
    __set_name__ …`` with the KeyboardInterrupt as its cause: still "interrupted", exit 32."""
    from forensics.cli import app

    def wrapped(*args: object, **kwargs: object) -> int:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            raise RuntimeError("Error calling __set_name__ on 'Field' instance") from interrupt

    monkeypatch.setattr(app.cli, "main", wrapped)
    with pytest.raises(SystemExit) as ended:
        app.main(["verify", "/nonexistent"])
    assert ended.value.code == 32
    assert capsys.readouterr().err == "docker-forensics: interrupted\n"
