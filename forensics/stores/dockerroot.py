"""Is ROOT a Docker root, can it be read, and where does one lie below it?

A directory is taken for a Docker root only on evidence that dockerd wrote it (:data:`MARKS`):
an image store of its shape, a container directory with its config, a legacy ``graph/``, a
storage driver's own directories, ``volumes/metadata.db``, ``network/files/local-kv.db``, its
containerd state. An empty directory, ``/etc``, the mount point of a disk, or a directory with a
lone ``tmp/`` or an empty ``containers/`` has none: reading it would report an empty host and
exit 0, the silent clean that e2fsck avoids by exiting 8 on a bad magic number. A root just
initialised by dockerd (an empty ``image/<driver>/`` with its ``repositories.json``,
``volumes/metadata.db``, ``overlay2/l/``) has several.

The directories and files that the stores read (:data:`READ`) are also tried, a bounded number
of each kind: one that exists and cannot be read (Docker keeps them 0700, and a copy read as
another user keeps that) would be taken for an empty one.

Everything here goes through directory descriptors held from ROOT down, opened without
following a symlink at any component: nothing outside ROOT is read, and no file's contents
either (a file is opened to know that it can be, and closed). Every listing is bounded
(:data:`ENTRY_LIMIT`, :data:`SAMPLE`), and so is the search for a Docker root below ROOT
(:data:`SEARCH_DEPTH`, :data:`SEARCH_DIRS`).
"""

from __future__ import annotations

import errno
import os
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from itertools import islice
from pathlib import Path

from forensics.drivers import (
    CONTAINERD_BLOBS,
    CONTAINERD_CONTENT,
    CONTAINERD_INGEST,
    CONTAINERD_META_DB,
    CONTAINERD_METADATA,
    CONTAINERD_SHA256_BLOBS,
    DOCKERS_CONTAINERD,
    HEX64,
    SNAPSHOTTER_DB,
    SNAPSHOTTERS,
    driver_marks,
    driver_reads,
)
from forensics.evidence import Evidence, entry_type, type_of_mode

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DENIED = (errno.EACCES, errno.EPERM)
_HEX64 = re.compile(r"[0-9a-f]{64}")

#: the most entries looked at in one directory (a listing stops there)
ENTRY_LIMIT = 4096
#: the most entries of one kind tried where a pattern says ``*`` (or ``<hex64>``)
SAMPLE = 16
#: the most directory descriptors held open at once while probing
HELD_OPEN = 128
#: how deep below ROOT a Docker root is looked for, and how many directories are listed
SEARCH_DEPTH = 4
SEARCH_DIRS = 1000
#: where a Docker root usually lies below a disk's root, a ``/var`` or a ``/var/lib``
#: (looked at first, on any file system)
USUAL_PLACES = (
    "var/lib/docker",
    "lib/docker",
    "docker",
    "var/snap/docker/common/var-lib-docker",
    "@/var/lib/docker",
    "@rootfs/var/lib/docker",
)

#: what the containerd store lists and reads, relative to a containerd root
_CONTAINERD_LISTS = (
    CONTAINERD_METADATA,
    CONTAINERD_CONTENT,
    CONTAINERD_BLOBS,
    CONTAINERD_SHA256_BLOBS,
    CONTAINERD_INGEST,
    *(path for row in SNAPSHOTTERS.values() for path in (row.home, row.layers)),
)
_CONTAINERD_READS = (
    CONTAINERD_META_DB,
    *(f"{row.home}/{SNAPSHOTTER_DB}" for row in SNAPSHOTTERS.values()),
)


def _containerd(paths: tuple[str, ...]) -> tuple[str, ...]:
    """``paths`` of a containerd root, both in dockerd's own (under ROOT) and in ROOT itself."""
    return (*paths, *(f"{DOCKERS_CONTAINERD}/{p}" for p in paths))


#: (pattern, kind): any one found makes a Docker root. The shapes are dockerd's own; a driver
#: directory counts only with what Docker's driver puts in it, not by its name alone (podman's
#: containers/storage has ``overlay/<id>`` and ``vfs/dir`` too, but not ``overlay/<id>/root``
#: or ``overlay2/l``): the drivers' marks are columns of their rows (:mod:`forensics.drivers`).
MARKS: tuple[tuple[str, str], ...] = (
    ("image/*/repositories.json", "file"),
    ("image/*/imagedb", "dir"),
    ("image/*/layerdb", "dir"),
    (f"containers/{HEX64}/config.v2.json", "file"),
    (f"containers/{HEX64}/config.json", "file"),
    (f"containers/{HEX64}/hostconfig.json", "file"),
    (f"graph/{HEX64}", "dir"),
    ("repositories-*", "file"),
    ("linkgraph.db", "file"),
    *driver_marks(),
    ("volumes/metadata.db", "file"),
    ("network/files/local-kv.db", "file"),
    (f"{DOCKERS_CONTAINERD}/{CONTAINERD_META_DB}", "file"),
    *(mark for row in SNAPSHOTTERS.values() for mark in row.marks),
    # a containerd root alone (a system containerd's, a Kubernetes node's)
    (CONTAINERD_META_DB, "file"),
)
#: the names at the top of a Docker root that a mark starts with: a directory without any of
#: them is not looked at closer while searching below ROOT
MARK_TOPS = tuple(sorted({pattern.split("/")[0] for pattern, _ in MARKS}))

_IMAGE = "image/*"
_LAYERDB = f"{_IMAGE}/layerdb"
_DRIVER_LISTS, _DRIVER_READS = driver_reads()
_BUILDKIT_DBS = ("snapshots.db", "metadata_v2.db", "metadata.db", "containerdmeta.db", "cache.db")
#: what the stores list (directories) and read (files): each that exists must be readable
READ: tuple[tuple[str, str], ...] = (
    *(
        (pattern, "dir")
        for pattern in (
            "image",
            _IMAGE,
            f"{_IMAGE}/imagedb",
            f"{_IMAGE}/imagedb/content",
            f"{_IMAGE}/imagedb/content/sha256",
            f"{_IMAGE}/imagedb/metadata",
            f"{_IMAGE}/imagedb/metadata/sha256",
            f"{_IMAGE}/imagedb/metadata/sha256/*",
            _LAYERDB,
            f"{_LAYERDB}/sha256",
            f"{_LAYERDB}/sha256/*",
            f"{_LAYERDB}/mounts",
            f"{_LAYERDB}/mounts/*",
            f"{_LAYERDB}/tmp",
            "containers",
            "containers/*",
            "graph",
            "graph/*",
            "volumes",
            *_DRIVER_LISTS,
            "network",
            "network/files",
            "containerd",
            DOCKERS_CONTAINERD,
            *_containerd(_CONTAINERD_LISTS),
            "rootfs",
        )
    ),
    *(
        (pattern, "file")
        for pattern in (
            f"{_IMAGE}/repositories.json",
            f"{_IMAGE}/imagedb/content/sha256/*",
            f"{_LAYERDB}/sha256/*/diff",
            f"{_LAYERDB}/sha256/*/cache-id",
            f"{_LAYERDB}/mounts/*/mount-id",
            "containers/*/config.v2.json",
            "containers/*/config.json",
            "containers/*/hostconfig.json",
            "graph/*/json",
            "repositories-*",
            "linkgraph.db",
            *_DRIVER_READS,
            "volumes/metadata.db",
            "network/files/local-kv.db",
            *(f"buildkit/{name}" for name in _BUILDKIT_DBS),
            *_containerd(_CONTAINERD_READS),
        )
    ),
)


@dataclass
class RootVerdict:
    """What :func:`judge_root` found: the first mark of a Docker root (a path relative to
    ROOT) or None, the parts that exist but could not be read, and, when ROOT is no Docker root,
    the Docker roots found below it."""

    mark: str | None
    unreadable: list[str] = field(default_factory=list)
    below: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.mark is not None and not self.unreadable

    def complaint(self, shown: str) -> str | None:
        """One line saying what is wrong with ROOT (shown as ``shown``), or None."""
        if self.unreadable:
            parts = _listed(self.unreadable, 6)
            why = (
                "this report would be incomplete"
                if self.mark is not None
                else "whether it is a Docker root cannot be told"
            )
            return (
                f"{shown}: cannot read {parts} (permission denied): {why}; run as root, or on "
                "a copy you can read"
            )
        if self.mark is not None:
            return None
        what = (
            f"{shown}: not a Docker root (no image store, container, legacy graph, storage "
            "driver directory or volume database of Docker's)"
        )
        if not self.below:
            return what
        base = shown.rstrip("/")
        return f"{what}; did you mean {' or '.join(f'{base}/{rel}' for rel in self.below)}?"


def judge_root(root: Path) -> RootVerdict:
    """Whether ``root`` (an existing, readable directory) is a Docker root that can be read
    whole; when it is none, the Docker roots below it."""
    with _Probe(root) as probe:
        mark = probe.first_mark("")
        unreadable = probe.unreadable_parts()
        below = [] if mark is not None or unreadable else _roots_below(probe)
    return RootVerdict(mark, unreadable, below)


def is_docker_root(root: Path | Evidence) -> bool:
    """True when ``root`` (a directory, or a root already opened as evidence: a directory
    inside an archive or disk image) holds any mark of a Docker root (readable or not in
    full)."""
    if isinstance(root, Evidence):
        return _EvidenceProbe(root).first_mark("") is not None
    with _Probe(root) as probe:
        return probe.first_mark("") is not None


class _Patterns:
    """The marks' patterns expanded through two calls that a probe gives: the kind of a path,
    and the names of a directory's entries that a test wants."""

    def kind(self, rel: str) -> str | None:
        raise NotImplementedError

    def scan(self, rel: str, wanted: Callable[[str, str], bool], most: int) -> list[str]:
        raise NotImplementedError

    def expand(self, base: str, pattern: str, kind: str, most: int) -> list[str]:
        """The paths under ``base`` that ``pattern`` names and that are of ``kind``; where it
        says ``*``, ``<hex64>`` or another glob, the first ``most`` entries that match."""
        nodes = [base]
        parts = pattern.split("/")
        for depth, part in enumerate(parts):
            wanted = kind if depth == len(parts) - 1 else "dir"
            nodes = [child for node in nodes for child in self._children(node, part, wanted, most)]
        return nodes

    def _children(self, node: str, part: str, kind: str, most: int) -> list[str]:
        prefix = f"{node}/" if node else ""
        if part != HEX64 and not any(c in part for c in "*?["):
            return [prefix + part] if self.kind(prefix + part) == kind else []
        if part == HEX64:
            names = self.scan(node, lambda n, k: k == kind and bool(_HEX64.fullmatch(n)), most)
        elif part == "*":
            names = self.scan(node, lambda n, k: k == kind, most)
        else:
            names = self.scan(node, lambda n, k: k == kind and fnmatchcase(n, part), most)
        return [prefix + name for name in names]

    def first_mark(self, base: str) -> str | None:
        for pattern, kind in MARKS:
            for path in self.expand(base, pattern, kind, 1):
                return path.removeprefix(f"{base}/") if base else path
        return None


class _EvidenceProbe(_Patterns):
    """The marks looked for through an opened :class:`~forensics.evidence.Evidence` (a root
    inside a file: nothing there is denied to the reader)."""

    def __init__(self, ev: Evidence) -> None:
        self.ev = ev

    def kind(self, rel: str) -> str | None:
        st = self.ev.lstat(rel)
        return None if st is None else type_of_mode(st.st_mode)

    def scan(self, rel: str, wanted: Callable[[str, str], bool], most: int) -> list[str]:
        found = self.ev.scandir_types(rel)
        names = [n for n, k in islice(found.items(), ENTRY_LIMIT) if wanted(n, k)]
        return sorted(names[:most])


class _Probe(_Patterns):
    """Directories and files under ROOT, reached one component at a time from ROOT's
    descriptor without following a symlink; what is denied is noted."""

    def __init__(self, root: Path) -> None:
        self.root_fd = os.open(root, _DIR_FLAGS)
        self.device = os.fstat(self.root_fd).st_dev
        self.denied: dict[str, bool] = {}  # path → whether it is a directory
        self._paths: dict[str, int] = {}  # directory → its O_PATH descriptor, least recent first
        self._listings: dict[str, dict[str, str] | None] = {}

    def __enter__(self) -> _Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self._paths.values():
            os.close(fd)
        os.close(self.root_fd)

    # -- reaching things ----------------------------------------------------------------------

    def _path_fd(self, rel: str) -> int:
        """An ``O_PATH`` descriptor of directory ``rel`` (search permission on the way is
        enough), held for the next ones (:data:`HELD_OPEN` at most) until the probe ends. The
        caller uses it at once. Raises OSError, ENOTDIR for a symlink."""
        if not rel:
            return self.root_fd
        fd = self._paths.pop(rel, None)
        if fd is None:
            parent, _, name = rel.rpartition("/")
            fd = os.open(name, _PATH_FLAGS, dir_fd=self._path_fd(parent))
            if len(self._paths) >= HELD_OPEN:  # the least recently used goes (it was used)
                os.close(self._paths.pop(next(iter(self._paths))))
        self._paths[rel] = fd  # the most recently used last
        return fd

    def _note(self, rel: str, exc: OSError, *, is_dir: bool = True) -> None:
        if exc.errno in _DENIED:
            self.denied[rel] = is_dir

    def _open_dir(self, rel: str) -> int | None:
        """Directory ``rel`` opened for reading (a denial noted), or None."""
        try:
            return os.open(".", _DIR_FLAGS, dir_fd=self._path_fd(rel))
        except OSError as exc:
            self._note(rel, exc)
            return None

    def scan(self, rel: str, wanted: Callable[[str, str], bool], most: int) -> list[str]:
        """The names of the first ``most`` entries of directory ``rel`` (at most
        :data:`ENTRY_LIMIT` looked at) for which ``wanted(name, kind)`` holds, sorted."""
        fd = self._open_dir(rel)
        if fd is None:
            return []
        names: list[str] = []
        try:
            with os.scandir(fd) as it:
                for entry in islice(it, ENTRY_LIMIT):
                    if wanted(entry.name, entry_type(entry)):
                        names.append(entry.name)
                        if len(names) == most:
                            break
        except OSError as exc:
            self._note(rel, exc)
        finally:
            os.close(fd)
        return sorted(names)

    def listing(self, rel: str) -> dict[str, str] | None:
        """Name → kind of the first :data:`ENTRY_LIMIT` entries of directory ``rel`` on ROOT's
        own file system; None when it cannot be listed or lies on another one."""
        if rel not in self._listings:
            self._listings[rel] = self._list(rel)
        return self._listings[rel]

    def _list(self, rel: str) -> dict[str, str] | None:
        fd = self._open_dir(rel)
        if fd is None:
            return None
        try:
            if os.fstat(fd).st_dev != self.device:
                return None
            with os.scandir(fd) as it:
                return {entry.name: entry_type(entry) for entry in islice(it, ENTRY_LIMIT)}
        except OSError as exc:
            self._note(rel, exc)
            return None
        finally:
            os.close(fd)

    def kind(self, rel: str) -> str | None:
        """The kind of ``rel`` (never followed), or None when it is absent or out of reach."""
        parent, _, name = rel.rpartition("/")
        try:
            return type_of_mode(
                os.stat(name, dir_fd=self._path_fd(parent), follow_symlinks=False).st_mode
            )
        except OSError as exc:  # denied: a directory on the way cannot be searched
            self._note(parent, exc)
            return None

    def try_reading(self, rel: str, kind: str) -> None:
        """Open directory or regular file ``rel`` for reading and close it; a denial is noted.
        ``rel`` was found of ``kind`` just before: a file is a regular one, never a FIFO or a
        device (opening one could block)."""
        if kind == "dir":
            fd = self._open_dir(rel)
            if fd is not None:
                os.close(fd)
            return
        parent, _, name = rel.rpartition("/")
        try:
            os.close(os.open(name, _FILE_FLAGS, dir_fd=self._path_fd(parent)))
        except OSError as exc:
            self._note(rel, exc, is_dir=False)

    def unreadable_parts(self) -> list[str]:
        """The directories and files that the stores would read and that could not be read,
        without those inside a directory already named."""
        for pattern, kind in READ:
            for path in self.expand("", pattern, kind, SAMPLE):
                self.try_reading(path, kind)
        names = [p for p in self.denied if p]
        names = [p for p in names if not any(p.startswith(f"{d}/") for d in names)]
        names.sort(key=lambda p: (p.count("/"), p))
        return [f"{p}/" if self.denied[p] else p for p in names]


def _roots_below(probe: _Probe) -> list[str]:
    """Docker roots below ROOT: first where they usually are, then breadth first, bounded, on
    ROOT's own file system. A Docker root is not looked into; a symlink is never followed."""
    found = [place for place in USUAL_PLACES if probe.first_mark(place) is not None]
    if found:
        return found
    queue: deque[tuple[str, int]] = deque([("", 0)])
    listed = 0
    while queue and listed < SEARCH_DIRS and len(found) < 3:
        rel, depth = queue.popleft()
        entries = probe.listing(rel)
        listed += 1
        if entries is None:
            continue
        if rel and _may_be_docker(entries) and probe.first_mark(rel) is not None:
            found.append(rel)
            continue
        if depth < SEARCH_DEPTH:
            prefix = f"{rel}/" if rel else ""
            queue.extend((prefix + n, depth + 1) for n in sorted(entries) if entries[n] == "dir")
    return found


def _may_be_docker(entries: dict[str, str]) -> bool:
    """Whether a listing has a name that a mark starts with (cheaply: most have none)."""
    if not entries.keys().isdisjoint(MARK_TOPS):
        return True
    globs = [top for top in MARK_TOPS if "*" in top]
    return any(fnmatchcase(name, top) for top in globs for name in entries)


def _listed(items: list[str], most: int) -> str:
    """``a, b and c`` (and ``… and N more`` past ``most``)."""
    if len(items) > most:
        return ", ".join(items[:most]) + f" and {len(items) - most} more"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]
