"""What a container changed against its image, offline, as ``docker diff`` prints it.

dockerd computes ``docker diff`` by comparing two trees: the container's file system and that
of its parent, the init layer (moby ``archive.ChangesDirs``, the "naive diff" that overlay2
uses whenever the kernel has redirect_dir, overlay v1 and vfs always). Here both trees are
*merged views* of layer directories read from the evidence, with overlay semantics:

* overlay2 / overlay: a whiteout is a 0:0 character device, an opaque directory carries the
  xattr ``trusted.overlay.opaque=y`` (``user.overlay.opaque`` for unprivileged mounts);
* aufs: a whiteout is a ``.wh.NAME`` file, an opaque directory holds ``.wh..wh..opq``.

The rules of ``ChangesDirs`` are kept: a path only in the container is ``A``; only in the
parent ``D`` (not its children); in both, ``C`` when mode, owner, device, or (for non-dirs)
mtime or size, or the ``security.capability`` xattr differ; a directory with a change inside
is ``C`` and listed before its children. Only paths that some differing layer holds can
differ, so only those are looked at (the container's upper dir on overlay2, not the image).
dockerd lists children in Go map order (random); here they come sorted.

Every directory is walked through :class:`~forensics.layers.confine.ConfinedDir` (no symlink
followed). :func:`diff_plan` builds the plain inputs from a read Host; :func:`container_diff`
computes the changes from them.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from forensics.evidence import Evidence, ReadFailure
from forensics.layers.confine import ConfinedDir, Parts, Refusal
from forensics.layers.reassemble import is_opaque
from forensics.model import Host

__all__ = ["Change", "DiffPlan", "DiffResult", "container_diff", "diff_plan"]

_WH = b".wh."
_AUFS_META = b".wh..wh."
_AUFS_OPAQUE = b".wh..wh..opq"
_CAPABILITY = "security.capability"


@dataclass(frozen=True, order=True)
class Change:
    """One line of ``docker diff``: ``kind`` is ``A`` (added), ``C`` (changed), ``D`` (deleted)."""

    path: str
    kind: str

    def line(self) -> str:
        return f"{self.kind} {self.path}"


@dataclass(frozen=True)
class DiffPlan:
    """The two trees to compare, as stacks of layer directories (relative to ``root``, top
    first). ``whiteouts`` is ``overlay`` or ``aufs``."""

    root: str
    container_id: str
    driver: str
    new: tuple[str, ...]
    old: tuple[str, ...]
    whiteouts: str = "overlay"


@dataclass
class DiffResult:
    container_id: str
    changes: list[Change] = field(default_factory=list)
    #: (path relative to ROOT, message): layer directories that could not be read
    problems: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [c.line() for c in self.changes]


def diff_plan(host: Host, container_id: str) -> DiffPlan | str:
    """The trees to compare for ``container_id`` on ``host``, or why there are none."""
    container = host.containers.get(container_id)
    mount = host.mounts.get(container_id)
    damaged = _damaged_reference(host, container_id)
    if damaged is not None:
        return f"container {container_id}: {damaged}"
    mount_id = (mount.mount_id if mount else None) or (container.mount_id if container else None)
    init_id = (mount.init_id if mount else None) or (container.init_id if container else None)
    if not mount_id:
        return f"container {container_id}: no read-write layer recorded (no mount-id)"
    driver = host.driver or ""
    chain = _image_layers(host, container_id)
    caches = [c for c in chain if c]
    if driver in ("overlay2", "fuse-overlayfs", "aufs"):
        fmt = {"aufs": "aufs/diff/{}"}.get(driver, driver + "/{}/diff")
        lowers = ([fmt.format(init_id)] if init_id else []) + [fmt.format(c) for c in caches]
        new = (fmt.format(mount_id), *lowers)
        style = "aufs" if driver == "aufs" else "overlay"
        return DiffPlan(host.root, container_id, driver, new, tuple(lowers), style)
    if driver == "overlay":
        roots = (f"overlay/{caches[0]}/root",) if caches else ()
        init = (f"overlay/{init_id}/upper",) if init_id else ()
        new = (f"overlay/{mount_id}/upper", *roots)
        return DiffPlan(host.root, container_id, driver, new, (*init, *roots))
    if driver in ("vfs", "btrfs"):
        fmt = "vfs/dir/{}" if driver == "vfs" else "btrfs/subvolumes/{}"
        old = (fmt.format(init_id),) if init_id else ()
        return DiffPlan(host.root, container_id, driver, (fmt.format(mount_id),), old)
    return f"container {container_id}: the {driver or 'unknown'} driver's files cannot be read"


def _damaged_reference(host: Host, container_id: str) -> str | None:
    """Why a layer directory of the container cannot be named: its mount record's mount-id
    or init-id, or the cache-id of a layer below it, is unreadable or no layer id (the store
    keeps such a value out of the model)."""
    mount = host.mounts.get(container_id)
    for role in ("mount-id", "init-id"):
        problem = mount.problems.get(role) if mount else None
        if problem is not None and problem.damage != "missing":
            return f"{problem.path}: {problem.detail}"
    for layer_id in _layer_chain(host, container_id):
        problem = host.layers[layer_id].problems.get("cache-id")
        if problem is not None:
            return f"{problem.path}: {problem.detail}"
    return None


def _image_layers(host: Host, container_id: str) -> list[str | None]:
    """Cache ids of the container's image layers, top first."""
    out: list[str | None] = []
    for layer_id in _layer_chain(host, container_id):
        layer = host.layers[layer_id]
        out.append(layer.cache_id or (layer.id if layer.path.startswith("graph/") else None))
    return out


def _layer_chain(host: Host, container_id: str) -> list[str]:
    """Ids of the container's image layers that the layer store holds, top first."""
    mount = host.mounts.get(container_id)
    top = mount.parent if mount else None
    if top is None:
        container = host.containers.get(container_id)
        image = host.images.get(container.image_id or "") if container else None
        if image is not None and image.layers:
            top = image.layers[-1]
        elif container is not None and container.image_id in host.layers:
            top = container.image_id  # legacy: the image is the top layer
    out: list[str] = []
    seen: set[str] = set()
    while top and top not in seen and top in host.layers:
        seen.add(top)
        out.append(top)
        top = host.layers[top].parent
    return out


def container_diff(plan: DiffPlan) -> DiffResult:
    """The changes of ``plan``'s container, in ``docker diff`` order (parents first)."""
    result = DiffResult(plan.container_id)
    ev = Evidence(plan.root)
    opened: dict[str, ConfinedDir | None] = {}
    for rel in {*plan.new, *plan.old}:
        try:
            opened[rel] = ConfinedDir(ev, rel)
        except ReadFailure as failure:
            opened[rel] = None
            result.problems.append((rel, str(failure)))
    try:
        new = _Stack([opened[r] for r in plan.new], plan.whiteouts)
        old = _Stack([opened[r] for r in plan.old], plan.whiteouts)
        differing = [
            opened[r] for r in (*plan.new, *plan.old) if (r in plan.new) != (r in plan.old)
        ]
        if opened.get(plan.new[0] if plan.new else "") is None:
            return result  # no read-write layer: nothing can be said
        _Differ(new, old, [d for d in differing if d is not None], plan.whiteouts).run(result)
    finally:
        for cdir in opened.values():
            if cdir is not None:
                cdir.close()
    return result


@dataclass(frozen=True, slots=True)
class _Node:
    st: os.stat_result
    cdir: ConfinedDir
    opaque: bool = False


class _Stack:
    """A merged (overlay) view of layer directories, top first."""

    def __init__(self, layers: list[ConfinedDir | None], whiteouts: str) -> None:
        self.layers = [c for c in layers if c is not None]
        self.aufs = whiteouts == "aufs"
        self._cache: dict[Parts, _Node | None] = {}

    def lookup(self, parts: Parts) -> _Node | None:
        """The entry at ``parts`` in the merged view, or None when absent or whited out."""
        if parts in self._cache:
            return self._cache[parts]
        found = self._lookup(parts)
        self._cache[parts] = found
        return found

    def _lookup(self, parts: Parts) -> _Node | None:
        if not parts:
            return self._root()
        for cdir in self.layers:
            state = _entry(cdir, parts, self.aufs)
            if state == "whiteout":
                return None
            if isinstance(state, _Node):
                return state
            if state == "hidden":  # a whiteout, a file or an opaque dir above hides the rest
                return None
        return None

    def _root(self) -> _Node | None:
        for cdir in self.layers:
            st = cdir.lstat(())
            if not isinstance(st, Refusal):
                return _Node(st, cdir)
        return None

    def names(self, parts: Parts) -> set[bytes]:
        """Names in the merged directory ``parts`` (whited-out ones included; lookups tell)."""
        out: set[bytes] = set()
        for cdir in self.layers:
            state = _entry(cdir, parts, self.aufs) if parts else _Node(os.fstat(cdir.fd), cdir)
            if state in ("whiteout", "hidden"):
                break
            if state is None:
                continue
            assert isinstance(state, _Node)
            if not stat.S_ISDIR(state.st.st_mode):
                break
            out |= _listdir(cdir, parts, self.aufs)
            if state.opaque:
                break
        return out


def _entry(cdir: ConfinedDir, parts: Parts, aufs: bool) -> _Node | str | None:
    """What one layer says about ``parts``: a node, ``whiteout``, ``hidden`` (lower layers
    must not be looked at: a whiteout, non-dir or opaque dir on the way), or None (absent
    here: look lower)."""
    for i in range(1, len(parts)):
        above = parts[:i]
        st = cdir.lstat(above)
        if isinstance(st, Refusal):
            if _aufs_whiteout(cdir, above) if aufs else False:
                return "hidden"
            return None
        if not stat.S_ISDIR(st.st_mode):
            return "hidden"  # a whiteout device or a file hides everything below
        if _is_opaque_dir(cdir, above, aufs):
            below = cdir.lstat(parts)
            if isinstance(below, Refusal) or _is_whiteout(below):
                return "hidden"
            return _Node(below, cdir, _is_opaque_dir(cdir, parts, aufs))
    st = cdir.lstat(parts)
    if isinstance(st, Refusal):
        return "whiteout" if aufs and _aufs_whiteout(cdir, parts) else None
    if not aufs and _is_whiteout(st):
        return "whiteout"
    opaque = stat.S_ISDIR(st.st_mode) and _is_opaque_dir(cdir, parts, aufs)
    return _Node(st, cdir, opaque)


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _aufs_whiteout(cdir: ConfinedDir, parts: Parts) -> bool:
    marker = (*parts[:-1], _WH + parts[-1])
    return not isinstance(cdir.lstat(marker), Refusal)


def _is_opaque_dir(cdir: ConfinedDir, parts: Parts, aufs: bool) -> bool:
    if aufs:
        return not isinstance(cdir.lstat((*parts, _AUFS_OPAQUE)), Refusal)
    fd = cdir.dir_fd(parts)
    return not isinstance(fd, Refusal) and is_opaque(fd)


def _listdir(cdir: ConfinedDir, parts: Parts, aufs: bool) -> set[bytes]:
    fd = cdir.dir_fd(parts)
    if isinstance(fd, Refusal):
        return set()
    try:
        names = {os.fsencode(n) for n in os.listdir(fd)}
    except OSError:
        return set()
    if aufs:
        names = {n[len(_WH) :] if n.startswith(_WH) else n for n in names}
        names = {n for n in names if not n.startswith(_AUFS_META) and n}
    return names


class _Differ:
    def __init__(
        self, new: _Stack, old: _Stack, differing: list[ConfinedDir], whiteouts: str
    ) -> None:
        self.new, self.old, self.differing = new, old, differing
        self.aufs = whiteouts == "aufs"

    def run(self, result: DiffResult) -> None:
        root_new = self.new.lookup(())
        if root_new is None:
            return
        self._dir((), root_new, self.old.lookup(()), False, result.changes)

    def _touched(self, parts: Parts) -> bool:
        """True when a differing layer holds ``parts`` (or its whiteout): only then can the
        two views differ there."""
        for cdir in self.differing:
            if not isinstance(cdir.lstat(parts), Refusal):
                return True
            if self.aufs and _aufs_whiteout(cdir, parts):
                return True
        return False

    def _dir(
        self, parts: Parts, new: _Node, old: _Node | None, added: bool, out: list[Change]
    ) -> None:
        """moby ``FileInfo.addChanges`` for directory ``parts`` present in the new view."""
        start = len(out)
        old_dir = old is not None and stat.S_ISDIR(old.st.st_mode)
        names = self.new.names(parts) | (self.old.names(parts) if old_dir else set())
        # below an opaque dir a view may hide what no differing layer holds: look at all
        prune = old_dir and not new.opaque and not (old is not None and old.opaque)
        deleted = []
        for name in sorted(names):
            child = (*parts, name)
            if prune and not self._touched(child):
                continue  # the same layers show it in both views: identical
            n = self.new.lookup(child)
            o = self.old.lookup(child) if old_dir else None
            if n is None:
                if o is not None:
                    deleted.append(child)
                continue
            self._child(child, n, o, out)
        out.extend(Change(_show(p), "D") for p in deleted)
        if len(out) > start and not added and parts:
            out.insert(start, Change(_show(parts), "C"))

    def _child(self, parts: Parts, new: _Node, old: _Node | None, out: list[Change]) -> None:
        marked = False
        if old is None:
            out.append(Change(_show(parts), "A"))
            marked = True
        elif _stat_different(old, new) or _capability(old, parts) != _capability(new, parts):
            out.append(Change(_show(parts), "C"))
            marked = True
        if stat.S_ISDIR(new.st.st_mode):
            self._dir(parts, new, old, marked, out)


def _stat_different(old: _Node, new: _Node) -> bool:
    """moby ``statDifferent`` plus the capability comparison of ``addChanges``."""
    a, b = old.st, new.st
    if (a.st_mode, a.st_uid, a.st_gid, a.st_rdev) != (b.st_mode, b.st_uid, b.st_gid, b.st_rdev):
        return True
    if not stat.S_ISDIR(a.st_mode):
        if a.st_size != b.st_size or not _same_time(a, b):
            return True
    return False


def _capability(node: _Node, parts: Parts) -> bytes | None:
    """The ``security.capability`` xattr of a regular file (None when it has none)."""
    if not stat.S_ISREG(node.st.st_mode):
        return None
    opened = node.cdir.open_regular(parts)
    if isinstance(opened, Refusal):
        return None
    fd = opened[0]
    try:
        return os.getxattr(fd, _CAPABILITY)
    except OSError:
        return None
    finally:
        os.close(fd)


def _same_time(a: os.stat_result, b: os.stat_result) -> bool:
    """moby ``sameFsTimeSpec``: seconds equal, and nanoseconds too unless one of them is 0
    (a file system or archive that keeps whole seconds)."""
    sa, na = divmod(a.st_mtime_ns, 1_000_000_000)
    sb, nb = divmod(b.st_mtime_ns, 1_000_000_000)
    return sa == sb and (na == nb or na == 0 or nb == 0)


def _show(parts: Parts) -> str:
    return "/" + b"/".join(parts).decode("utf-8", "surrogateescape")
