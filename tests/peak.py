"""Run a command in a child process and measure its peak memory (and time), truthfully.

Linux carries the peak RSS of the process that calls exec into the new program's
``ru_maxrss`` (``vfork`` included): a command started straight from pytest would report the size
of pytest itself, which grows past any bound as the suite runs. So the command is started by a
small interpreter of its own, and that interpreter reports what ``os.wait4`` says of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

#: the launcher: runs argv[3:] in a process group of its own with stdout/stderr to the files
#: argv[1]/argv[2], kills the group after the timeout in argv[3], prints one JSON line
_LAUNCHER = """
import json, os, signal, subprocess, sys, threading, time
out, err, timeout, *cmd = sys.argv[1:]
with open(out, "wb") as o, open(err, "wb") as e:
    child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=o, stderr=e,
                             start_new_session=True)
    killed = []
    def kill():
        killed.append(True)
        os.killpg(child.pid, signal.SIGKILL)
    timer = threading.Timer(float(timeout), kill)
    timer.start()
    start = time.monotonic()
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.monotonic() - start
    timer.cancel()
    try:
        os.killpg(child.pid, signal.SIGKILL)  # helpers a killed run left behind
    except ProcessLookupError:
        pass
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "kib": usage.ru_maxrss,
                  "seconds": elapsed, "killed": bool(killed)}))
"""


@dataclass(frozen=True)
class Measured:
    code: int
    stdout: str
    stderr: str
    peak_mib: int
    seconds: float
    killed: bool


def measure(
    command: Sequence[str | os.PathLike[str]],
    *,
    timeout: float = 600,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Measured:
    """Run ``command``; its exit code, output, peak RSS in MiB, seconds, and whether it was
    killed at ``timeout``."""
    with tempfile.TemporaryDirectory() as tmp:
        out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        result = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, out, err, str(timeout), *map(str, command)],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            check=True,
            stdin=subprocess.DEVNULL,
        )
        facts = json.loads(result.stdout)
        with open(out, "rb") as o, open(err, "rb") as e:
            stdout, stderr = o.read(), e.read()
    return Measured(
        facts["code"],
        stdout.decode("utf-8", "replace"),
        stderr.decode("utf-8", "replace"),
        facts["kib"] // 1024,
        facts["seconds"],
        facts["killed"],
    )
