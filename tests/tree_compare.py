"""A :class:`~forensics.fs.tree.Tree` held against a directory of the host, member by member:
names, types, bytes, modes, owners, modification times, device numbers, symlink targets,
xattrs (``trusted.*`` too where the reader may see them), and which names are hard links of
one another."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from forensics.fs import Refusal, Tree, walk
from forensics.fs.tree import Parts


def host_xattrs(path: Path) -> dict[bytes, bytes]:
    names = os.listxattr(path, follow_symlinks=False)
    return {
        n.encode("utf-8", "surrogateescape"): os.getxattr(path, n, follow_symlinks=False)
        for n in names
    }


def compare(
    tree: Tree,
    directory: Path,
    top: Parts = (),
    *,
    xattrs: bool = True,
    times: str | None = "ns",
    owners: bool = True,
    mode_mask: int = 0o7777,
    hardlinks: bool = True,
) -> int:
    """Assert that ``top`` of ``tree`` holds what ``directory`` holds; the members compared."""
    problems: list = []
    seen: set[bytes] = set()
    links_tree: dict[int, set[bytes]] = {}
    links_host: dict[int, set[bytes]] = {}
    count = 0
    for walked in walk(tree, problems, top=top):
        rel = b"/".join(walked.parts[len(top) :])
        seen.add(rel)
        host = Path(os.fsdecode(os.path.join(os.fsencode(directory), rel))) if rel else directory
        st = os.lstat(host)
        ours = walked.stat
        where = os.fsdecode(rel) or "."
        assert stat.S_IFMT(ours.mode) == stat.S_IFMT(st.st_mode), where
        assert stat.S_IMODE(ours.mode) & mode_mask == stat.S_IMODE(st.st_mode) & mode_mask, where
        if owners:
            assert (ours.uid, ours.gid) == (st.st_uid, st.st_gid), where
        if times == "ns":
            assert ours.mtime_ns == st.st_mtime_ns, where
        elif times == "s":  # a format that keeps whole seconds
            assert ours.mtime_ns == st.st_mtime_ns // 10**9 * 10**9, where
        if stat.S_ISREG(st.st_mode):
            assert ours.size == st.st_size, where
            f = tree.open_file(walked.parts)
            assert not isinstance(f, Refusal), (where, f)
            with f:
                assert f.read() == host.read_bytes(), where
            if hardlinks and st.st_nlink > 1:
                links_tree.setdefault(ours.ino, set()).add(rel)
                links_host.setdefault(st.st_ino, set()).add(rel)
            if hardlinks:
                assert ours.nlink == st.st_nlink, where
        elif stat.S_ISLNK(st.st_mode):
            assert tree.readlink(walked.parts) == os.readlink(os.fsencode(host)), where
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            assert ours.rdev == st.st_rdev, where
        elif stat.S_ISDIR(st.st_mode):
            listed = tree.listdir(walked.parts)
            assert not isinstance(listed, Refusal)
            assert sorted(e.name for e in listed.entries) == sorted(os.listdir(os.fsencode(host)))
        if xattrs and not stat.S_ISLNK(st.st_mode):
            assert tree.xattrs(walked.parts) == host_xattrs(host), where
        count += 1
    assert not problems, problems[:5]
    assert sorted(map(sorted, links_tree.values())) == sorted(map(sorted, links_host.values()))
    return count
