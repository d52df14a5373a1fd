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
from pathlib import Path
from typing import Any

from forensics.evidence import type_of_mode

MANIFEST_NAME = "manifest.jsonl"
CHUNK = 1 << 20


def entry_record(path: Path, rel: str) -> dict[str, Any]:
    """The manifest record of the entry at ``path`` (``rel``: its path relative to ROOT)."""
    st = os.lstat(path)
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
        record["sha256"] = _file_sha256(path)
    elif stat.S_ISLNK(st.st_mode):
        record["target"] = os.readlink(path)
    return record


def records_under(run_dir: Path, moved: list[str]) -> Iterator[dict[str, Any]]:
    """Records of every moved entry and everything below it, sorted by path."""
    for rel in sorted(moved):
        top = run_dir / rel
        if not os.path.lexists(top):
            continue
        yield entry_record(top, rel)
        if stat.S_ISDIR(os.lstat(top).st_mode):
            yield from _records_below(top, rel)


def _records_below(top: Path, rel: str) -> Iterator[dict[str, Any]]:
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirnames.sort()
        base = Path(dirpath)
        sub = os.path.relpath(dirpath, top)
        prefix = rel if sub == "." else f"{rel}/{sub}"
        for name in sorted([*dirnames, *filenames]):
            yield entry_record(base / name, f"{prefix}/{name}")


def write_manifest(run_dir: Path, moved: list[str]) -> str:
    """Write the manifest of ``moved`` (paths relative to ROOT, now under ``run_dir``) durably
    and return its sha256."""
    lines = [_line(r) for r in records_under(run_dir, moved)]
    data = "".join(lines).encode()
    tmp = run_dir / f".{MANIFEST_NAME}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, run_dir / MANIFEST_NAME)
    dfd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return hashlib.sha256(data).hexdigest()


def check_manifest(run_dir: Path, moved: list[str], expected_sha256: str) -> list[str]:
    """Differences between the quarantine and its manifest, in words (empty: it is intact)."""
    try:
        data = (run_dir / MANIFEST_NAME).read_bytes()
    except OSError as exc:
        return [f"{MANIFEST_NAME}: cannot be read ({exc.strerror or exc})"]
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        return [f"{MANIFEST_NAME}: changed since the journal recorded its sha256"]
    recorded = {}
    for line in data.decode("utf-8", "surrogateescape").splitlines():
        record = json.loads(line)
        recorded[record["path"]] = record
    now = {r["path"]: r for r in records_under(run_dir, moved)}
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


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        while chunk := os.read(fd, CHUNK):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()
