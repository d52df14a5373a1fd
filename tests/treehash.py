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
                with open(path, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
            elif stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(path).encode("utf-8", "surrogateescape"))
    return h.hexdigest()
