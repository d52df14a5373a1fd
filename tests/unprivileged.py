"""Running docker-forensics as a user that is not root, as an operator without sudo would.

As root, the command runs in a child Python that imports every module of the package first,
and the filesystem libraries it loads lazily (the interpreter and its site-packages may lie
under /root, which nobody can read), then drops
to nobody's uid and gid and runs ``forensics.cli.main``. As any other user it runs as is.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import Result, run_cli

NOBODY = 65534

_AS_NOBODY = f"""
import importlib, os, pkgutil, sys
import forensics
for module in pkgutil.walk_packages(forensics.__path__, "forensics."):
    if module.name != "forensics.__main__":
        importlib.import_module(module.name)
import pyfsext, pyfsxfs  # the filesystem readers, loaded when a device is opened
import numpy.ma  # numpy loads it lazily, at the first use of some of its functions
import multiprocessing.synchronize, multiprocessing.sharedctypes, multiprocessing.popen_fork
os.setgroups([])
os.setgid({NOBODY})
os.setuid({NOBODY})
forensics.cli.main(sys.argv[1:])
"""


def run_cli_unprivileged(*args: str | os.PathLike[str]) -> Result:
    """The command line run by a user without root's privileges."""
    if os.geteuid() != 0:
        return run_cli(*args)
    proc = subprocess.run(
        [sys.executable, "-c", _AS_NOBODY, *map(str, args)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd="/",
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@contextmanager
def reachable_tmpdir() -> Iterator[Path]:
    """A fresh directory that an unprivileged user can reach (pytest's own lie under a 0700
    directory of root's); removed afterwards, whatever modes were left inside."""
    path = Path(tempfile.mkdtemp(prefix="docker-forensics-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for dirpath, dirnames, _ in os.walk(path):
            for name in dirnames:
                full = Path(dirpath, name)
                if not full.is_symlink():
                    full.chmod(stat.S_IMODE(full.lstat().st_mode) | 0o700)
        shutil.rmtree(path)
