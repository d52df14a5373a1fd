"""A tree copied out to a directory of the host: files, directories, symlinks, hard links,
FIFOs and device nodes, with owners, modes, times and extended attributes kept where the
target allows (owners and device nodes need root; ``security.*`` xattrs too).

Nothing is written outside the target: every name comes from a walk that refused names with
``/``, NUL, ``.`` or ``..``; every directory on the way is one this export created (a name that
already exists in the target is reported and its subtree left out, never written through), and
every final component is created exclusively, without following a symlink. A file that cannot
be read whole is removed and reported, not left half-written.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field

from forensics.fs.tree import Limits, Parts, Problem, Refusal, Stat, Tree, display, walk

_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class ExportResult:
    members: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    #: what the target did not allow (owners, device nodes, some xattrs), once per kind
    not_kept: set[str] = field(default_factory=set)


def export_tree(tree: Tree, target_fd: int, limits: Limits | None = None) -> ExportResult:
    """Copy ``tree`` into the directory open as ``target_fd``."""
    result = ExportResult()
    exporter = _Exporter(tree, target_fd, result)
    for walked in walk(tree, result.problems, limits):
        if walked.parts:
            exporter.member(walked.parts, walked.stat)
    exporter.finish()
    return result


class _Exporter:
    def __init__(self, tree: Tree, root: int, result: ExportResult) -> None:
        self.tree, self.root, self.result = tree, root, result
        self.skipped: list[Parts] = []
        self.first_path: dict[int, Parts] = {}
        self.dirs: list[tuple[Parts, Stat]] = []

    def member(self, parts: Parts, st: Stat) -> None:
        if any(parts[: len(s)] == s for s in self.skipped):
            return
        name = b"/".join(parts)
        try:
            if stat.S_ISDIR(st.mode):
                os.mkdir(name, 0o700, dir_fd=self.root)
                self.dirs.append((parts, st))
                self.result.members += 1
                return
            if st.nlink > 1 and st.ino in self.first_path:  # a hard link to a member written
                first = b"/".join(self.first_path[st.ino])
                root = self.root
                os.link(first, name, src_dir_fd=root, dst_dir_fd=root, follow_symlinks=False)
                self.result.members += 1
                return
            if not self._create(parts, name, st):
                return
        except OSError as exc:
            if stat.S_ISDIR(st.mode):
                self.skipped.append(parts)
            self._problem(parts, f"not written: {_reason(exc)}")
            return
        self.result.members += 1
        self._keep_metadata(parts, name, st)

    def _create(self, parts: Parts, name: bytes, st: Stat) -> bool:
        """Create a non-directory member; False when it was not (and is reported)."""
        mode = st.mode
        if stat.S_ISREG(mode):
            if not self._copy_file(parts, name):
                return False
        elif stat.S_ISLNK(mode):
            target = self.tree.readlink(parts)
            if isinstance(target, Refusal):
                self._problem(parts, target.detail)
                return False
            os.symlink(target, name, dir_fd=self.root)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(name, 0o600, dir_fd=self.root)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            try:
                os.mknod(name, stat.S_IFMT(mode) | 0o600, st.rdev, dir_fd=self.root)
            except PermissionError:
                self.result.not_kept.add("device nodes (they need root)")
                self._problem(parts, "a device node: not created (the target does not allow it)")
                return False
        else:
            self._problem(parts, "a socket: not created")
            return False
        if st.nlink > 1:
            self.first_path[st.ino] = parts
        return True

    def _copy_file(self, parts: Parts, name: bytes) -> bool:
        source = self.tree.open_file(parts)
        if isinstance(source, Refusal):
            self._problem(parts, source.detail)
            return False
        fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=self.root)
        try:
            with source:
                at = 0
                while chunk := source.read(_CHUNK):
                    if chunk.count(0) != len(chunk):  # zeros are left as a hole
                        os.pwrite(fd, chunk, at)
                    at += len(chunk)
                    self.result.bytes += len(chunk)
                os.ftruncate(fd, at)
        except OSError as exc:
            os.close(fd)
            os.unlink(name, dir_fd=self.root)
            self._problem(parts, f"not written: {_reason(exc)}")
            return False
        os.close(fd)
        return True

    def _keep_metadata(self, parts: Parts, name: bytes, st: Stat) -> None:
        link = stat.S_ISLNK(st.mode)
        try:
            os.chown(name, st.uid, st.gid, dir_fd=self.root, follow_symlinks=False)
        except PermissionError:
            self.result.not_kept.add("owners (they need root)")
        if not link:
            os.chmod(name, stat.S_IMODE(st.mode), dir_fd=self.root)
            self._xattrs(parts, name)
        os.utime(name, ns=(st.atime_ns, st.mtime_ns), dir_fd=self.root, follow_symlinks=False)

    def _xattrs(self, parts: Parts, name: bytes) -> None:
        xattrs = self.tree.xattrs(parts)
        if isinstance(xattrs, Refusal):
            self._problem(parts, xattrs.detail)
            return
        if not xattrs:
            return
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     dir_fd=self.root)  # fmt: skip
        try:
            for key, value in xattrs.items():
                try:
                    os.setxattr(fd, key, value)
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EACCES, errno.EINVAL):
                        raise
                    self.result.not_kept.add(f"xattrs such as {key.decode(errors='replace')}")
        finally:
            os.close(fd)

    def finish(self) -> None:
        """Directories get their metadata last, deepest first (writing into a directory
        changes its times; a read-only mode would stop the writes)."""
        for parts, st in reversed(self.dirs):
            if any(parts[: len(s)] == s for s in self.skipped):
                continue
            self._keep_metadata(parts, b"/".join(parts), st)

    def _problem(self, parts: Parts, detail: str) -> None:
        self.result.problems.append(Problem(parts, "export", detail))


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


def display_problem(problem: Problem) -> str:
    return f"{display(problem.path)}: {problem.detail}"
