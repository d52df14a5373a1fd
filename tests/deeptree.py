"""Directory chains deeper than a path can name: made and removed one ``*at`` call at a time
(an absolute path that deep is beyond PATH_MAX, and shutil.rmtree recurses)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def make_deep_tree(top: Path, depth: int, name: str = "d") -> None:
    """A chain of ``depth`` directories ``name/name/…`` in ``top``."""
    fd = os.open(top, _DIR)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, _DIR, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def remove_deep_tree(top: Path, name: str = "d") -> None:
    """Undo :func:`make_deep_tree`: down to the last level, then up through ``..``, removing
    each level on the way (no path, no recursion)."""
    fd = os.open(top, _DIR)
    levels = 0
    while True:
        try:
            child = os.open(name, _DIR, dir_fd=fd)
        except FileNotFoundError:
            break
        os.close(fd)
        fd, levels = child, levels + 1
    for _ in range(levels):
        parent = os.open("..", _DIR, dir_fd=fd)
        os.close(fd)
        os.rmdir(name, dir_fd=parent)
        fd = parent
    os.close(fd)


@contextmanager
def deep_trees(*trees: tuple[Path, int, str]) -> Iterator[None]:
    """Chains of (top, depth, name), removed again afterwards."""
    made: list[tuple[Path, str]] = []
    try:
        for top, depth, name in trees:
            made.append((top, name))
            make_deep_tree(top, depth, name)
        yield
    finally:
        for top, name in made:
            if (top / name).exists():
                remove_deep_tree(top, name)


def remove_tree(top: Path) -> None:
    """Remove ``top`` and everything in it, however deep: one directory at a time through
    descriptors, back up through ``..`` (no path, no recursion)."""
    fd = os.open(top, _DIR)
    names: list[str] = []  # the path from top to where fd is
    while True:
        sub = None
        for name in os.listdir(fd):
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if st.st_mode & 0o170000 == 0o040000:
                sub = name
                break
            os.unlink(name, dir_fd=fd)
        if sub is not None:
            child = os.open(sub, _DIR, dir_fd=fd)
            os.close(fd)
            fd = child
            names.append(sub)
            continue
        if not names:
            break
        parent = os.open("..", _DIR, dir_fd=fd)
        os.close(fd)
        os.rmdir(names.pop(), dir_fd=parent)
        fd = parent
    os.close(fd)
    os.rmdir(top)


def write_at(top: Path, path: str, data: bytes) -> None:
    """Write the file ``path`` (relative to ``top``, of any depth), its directories made as
    needed, one component at a time."""
    *dirs, name = path.split("/")
    fd = os.open(top, _DIR)
    try:
        for d in dirs:
            try:
                os.mkdir(d, dir_fd=fd)
            except FileExistsError:
                pass
            child = os.open(d, _DIR, dir_fd=fd)
            os.close(fd)
            fd = child
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=fd)
        try:
            os.fchmod(out, 0o644)  # whatever the umask
            os.write(out, data)
        finally:
            os.close(out)
    finally:
        os.close(fd)
