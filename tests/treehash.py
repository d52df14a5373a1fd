"""A fingerprint of a whole tree: every name, type, mode, size, mtime and content."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted([*dirnames, *filenames]):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root).encode("utf-8", "surrogateescape")
            h.update(rel + b"\0")
            h.update(
                f"{st.st_mode:o} {st.st_size} {st.st_mtime_ns} {st.st_uid}:{st.st_gid}\0".encode()
            )
            if stat.S_ISREG(st.st_mode):
                h.update(content_hash(path))
            elif stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(path).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def content_hash(path: str) -> bytes:
    """sha256 of a file's data regions with their offsets: the same for two files with the same
    bytes, and quick on the sparse 100 GiB pool files of a devicemapper root."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        size, offset = os.fstat(fd).st_size, 0
        while offset < size:
            try:
                offset = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # no data after offset: the rest is a hole
                break
            end = os.lseek(fd, offset, os.SEEK_HOLE)
            h.update(f"@{offset}\0".encode())
            while offset < end:
                chunk = os.pread(fd, min(1 << 20, end - offset), offset)
                if not chunk:
                    break
                h.update(chunk)
                offset += len(chunk)
    finally:
        os.close(fd)
    return h.digest()
