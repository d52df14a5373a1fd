"""The manifest of a repair run: what the quarantine holds, hashed, when the run ends.

Evidence that leaves ROOT must stay provably what it was. When every step of a run is made,
``manifest.jsonl`` is written into the run directory: one record per entry moved into the
quarantine and per entry inside it (path as in ROOT, type, mode, owner, size, mtime, sha256 of
a file's bytes, target of a symlink), sorted by path. Its own sha256 goes into the journal, so
that the manifest cannot be changed unnoticed either. ``repair --undo`` holds the quarantine
against it before anything is moved back and names every difference.

Nothing is followed: entries are read with ``lstat`` and files opened with ``O_NOFOLLOW``.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from typing import Any

from forensics.evidence import type_of_mode
from forensics.repair.fsops import (
    DIR_FLAGS,
    READ_FLAGS,
    UnsafePath,
    entry,
    open_dir,
    parent_of,
    read_file,
    same_entry,
    write_new_file,
)

MANIFEST_NAME = "manifest.jsonl"
CHUNK = 1 << 20
#: the largest manifest read back (one line of ~200 bytes per entry quarantined)
MANIFEST_LIMIT = 512 << 20


def entry_record(dir_fd: int, name: str, rel: str) -> dict[str, Any]:
    """The manifest record of the entry ``name`` in ``dir_fd`` (``rel``: its path relative to
    ROOT)."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    record: dict[str, Any] = {
        "path": rel,
        "type": type_of_mode(st.st_mode),
        "mode": f"{stat.S_IMODE(st.st_mode):04o}",
        "uid": st.st_uid,
        "gid": st.st_gid,
        "mtime_ns": st.st_mtime_ns,
    }
    if stat.S_ISREG(st.st_mode):
        record["size"] = st.st_size
        record["sha256"] = _file_sha256(dir_fd, name, st)
    elif stat.S_ISLNK(st.st_mode):
        record["target"] = os.readlink(name, dir_fd=dir_fd)
    return record


def records_under(run_fd: int, moved: list[str]) -> Iterator[dict[str, Any]]:
    """Records of every moved entry and everything below it, sorted by path; every entry is
    reached from the run's descriptor, nothing followed."""
    for rel in sorted(moved):
        try:
            with parent_of(run_fd, rel) as (fd, name):
                st = entry(fd, name)
                if st is None:
                    continue
                yield entry_record(fd, name, rel)
                if stat.S_ISDIR(st.st_mode):
                    yield from _records_below(fd, name, rel)
        except UnsafePath:
            continue  # not in the quarantine (a step that never took effect)


def _records_below(parent_fd: int, name: str, rel: str) -> Iterator[dict[str, Any]]:
    """Records of everything below the directory ``name``, in the order of a top-down walk
    with sorted names. Iterative, holding one descriptor at a time (a deep tree needs neither
    recursion nor a descriptor per level); a directory is left through ``..``, checked to be
    the one entered from."""
    fd = open_dir(parent_fd, [name])
    frames: list[tuple[os.stat_result, str, list[str]]] = []
    try:
        prefix = rel
        while True:
            subdirs = []
            for child in sorted(os.listdir(fd)):
                record = entry_record(fd, child, f"{prefix}/{child}")
                yield record
                if record["type"] == "dir":
                    subdirs.append(child)
            frames.append((os.fstat(fd), prefix, subdirs[::-1]))
            while frames and not frames[-1][2]:
                frames.pop()
                if frames:
                    fd = _up(fd, frames[-1][0])
            if not frames:
                return
            _, prefix, todo = frames[-1]
            child = todo.pop()
            fd = _down(fd, child)
            prefix = f"{prefix}/{child}"
    finally:
        os.close(fd)


def _down(fd: int, child: str) -> int:
    new = open_dir(fd, [child])
    os.close(fd)
    return new


def _up(fd: int, expected: os.stat_result) -> int:
    new = os.open("..", DIR_FLAGS, dir_fd=fd)
    if not same_entry(os.fstat(new), expected):
        os.close(new)
        raise UnsafePath("a directory of the quarantine moved while it was walked")
    os.close(fd)
    return new


def write_manifest(run_fd: int, moved: list[str]) -> str:
    """Write the manifest of ``moved`` (paths relative to ROOT, now in the run held at
    ``run_fd``) durably and return its sha256."""
    data = "".join(_line(r) for r in records_under(run_fd, moved)).encode()
    write_new_file(run_fd, MANIFEST_NAME, data, 0o600)
    return hashlib.sha256(data).hexdigest()


def check_manifest(run_fd: int, moved: list[str], expected_sha256: str) -> list[str]:
    """Differences between the quarantine and its manifest, in words (empty: it is intact)."""
    try:
        data = read_file(run_fd, MANIFEST_NAME, MANIFEST_LIMIT)
    except (OSError, UnsafePath) as exc:
        return [f"{MANIFEST_NAME}: cannot be read ({getattr(exc, 'strerror', None) or exc})"]
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        return [f"{MANIFEST_NAME}: changed since the journal recorded its sha256"]
    recorded = {}
    for line in data.decode("utf-8", "surrogateescape").splitlines():
        try:
            record = json.loads(line)
            recorded[str(record["path"])] = record
        except (ValueError, TypeError, KeyError):
            return [f"{MANIFEST_NAME}: not a manifest"]
    now = {r["path"]: r for r in records_under(run_fd, moved)}
    problems = []
    for path in sorted(recorded.keys() | now.keys()):
        was, is_ = recorded.get(path), now.get(path)
        if is_ is None:
            problems.append(f"{path}: missing from the quarantine")
        elif was is None:
            problems.append(f"{path}: added to the quarantine after the repair")
        elif was != is_:
            fields = sorted(k for k in was.keys() | is_.keys() if was.get(k) != is_.get(k))
            problems.append(f"{path}: {', '.join(fields)} changed")
    return problems


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=True, separators=(",", ":")) + "\n"


def _file_sha256(dir_fd: int, name: str, st: os.stat_result) -> str:
    h = hashlib.sha256()
    fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    try:
        if not same_entry(os.fstat(fd), st):
            raise UnsafePath(f"{name}: replaced while it was read")
        while chunk := os.read(fd, CHUNK):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()
