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

On devicemapper both trees are whole root file systems in thin devices of the pool: the
``rootfs/`` of the container's device against its init device's (legacy: the devices named by
the container id and ``<id>-init``; modern: by the mount record's mount-id and init-id), read
through :mod:`forensics.layers.devices`, never mounted. When the older of two whole trees
cannot be read, no change is listed (each file would be "added"): the problem says why.

Every directory is walked through a :class:`~forensics.layers.content.LayerTree` (no symlink
followed), with an explicit stack (one frame per level, never recursion). Each directory of a
view carries down the layers that make it up (the merge of overlay: a whiteout, a file or an
opaque directory hides the layers below), so an entry is looked up in those layers alone, not
from the top again. A path longer than Linux allows from the layer root (``PATH_MAX``) is not
compared: dockerd's own diff fails there; here the rest is compared, and the entries beyond
are named in one problem. :func:`diff_plan` builds the plain inputs from a read Host;
:func:`container_diff` computes the changes from them.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from forensics.drivers import AUFS_WHITEOUTS, OVERLAY_WHITEOUTS, SNAPSHOTTER_NAMES, layout_of
from forensics.evidence import Evidence, ReadFailure
from forensics.layers.confine import PATH_MAX, Parts, Refusal, shorten, too_deep
from forensics.layers.content import LayerTree, StatLike, is_opaque, open_layer_dir
from forensics.layers.devices import (
    ContentError,
    DeviceRef,
    close_pools,
    device_ref,
    open_device_dir,
    pool_in_root,
    rootfs_dir,
)
from forensics.layers.treedir import TreeDir
from forensics.model import Host

__all__ = [
    "Change",
    "DiffPlan",
    "DiffResult",
    "TreeDiff",
    "container_diff",
    "diff_plan",
    "tree_diff",
]

assert AUFS_WHITEOUTS.whiteout_prefix and AUFS_WHITEOUTS.opaque_file and AUFS_WHITEOUTS.own_prefix
_WH = AUFS_WHITEOUTS.whiteout_prefix
_AUFS_META = AUFS_WHITEOUTS.own_prefix
_AUFS_OPAQUE = AUFS_WHITEOUTS.opaque_file
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
    first). ``whiteouts`` is ``overlay``, ``aufs`` or ``none`` (full root file systems, which
    hold no whiteouts). On a driver that keeps a layer's files in a thin device
    (devicemapper), ``devices`` are the devices whose ``rootfs/`` the layer directories name
    (where Docker mounts them), and ``unreadable`` the layer directories known beforehand to
    be unreadable, each with why (a device without a usable record)."""

    root: str
    container_id: str
    driver: str
    new: tuple[str, ...]
    old: tuple[str, ...]
    whiteouts: str = "overlay"
    devices: tuple[DeviceRef, ...] = ()
    unreadable: tuple[tuple[str, str], ...] = ()


@dataclass
class DiffResult:
    container_id: str
    changes: list[Change] = field(default_factory=list)
    #: (path relative to ROOT, message): layer directories that could not be read, and paths
    #: too deep to compare
    problems: list[tuple[str, str]] = field(default_factory=list)
    #: the problems that say paths were too deep to compare (also in ``problems``)
    too_deep: list[tuple[str, str]] = field(default_factory=list)
    #: where the root was read when it is in an archive or disk image (``forensics.api.diff``)
    evidence: dict[str, Any] | None = None
    #: with ``keep_stats``: each added or changed entry's path (as in ``changes``) → its
    #: metadata in the container's tree, and where that tree shows it (relative to ROOT)
    stats: dict[str, tuple[StatLike, str]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [c.line() for c in self.changes]


def diff_plan(host: Host, container_id: str) -> DiffPlan | str:
    """The trees to compare for ``container_id`` on ``host``, or why there are none."""
    container = host.containers.get(container_id)
    if container is not None and container.driver in SNAPSHOTTER_NAMES:  # Docker 29's
        from forensics.layers.containerd_diff import docker_snapshot_plan

        return docker_snapshot_plan(host, container_id)
    mount = host.mounts.get(container_id)
    damaged = _damaged_reference(host, container_id)
    if damaged is not None:
        return f"container {container_id}: {damaged}"
    mount_id = (mount.mount_id if mount else None) or (container.mount_id if container else None)
    init_id = (mount.init_id if mount else None) or (container.init_id if container else None)
    if not mount_id:
        return f"container {container_id}: no read-write layer recorded (no mount-id)"
    driver = host.driver or ""
    layout = layout_of(driver)
    if layout is not None and layout.diff == "rootfs" and layout.thin is not None:
        return _device_plan(host, container_id, driver, mount_id, init_id)
    content = layout.content if layout is not None else None
    if layout is None or layout.diff is None or content is None:
        return f"container {container_id}: the {driver or 'unknown'} driver's files cannot be read"
    caches = [c for c in _image_layers(host, container_id) if c]
    whiteouts = (layout.whiteouts or OVERLAY_WHITEOUTS).name
    upper = layout.upper
    if layout.diff == "layers" and upper is not None:
        lowers = ([upper(init_id)] if init_id else []) + [content(c) for c in caches]
        new = (upper(mount_id), *lowers)
        return DiffPlan(host.root, container_id, driver, new, tuple(lowers), whiteouts)
    if layout.diff == "upper-on-root" and upper is not None:
        roots = (content(caches[0]),) if caches else ()
        init = (upper(init_id),) if init_id else ()
        new = (upper(mount_id), *roots)
        return DiffPlan(host.root, container_id, driver, new, (*init, *roots), whiteouts)
    old = (content(init_id),) if init_id else ()
    return DiffPlan(host.root, container_id, driver, (content(mount_id),), old, whiteouts)


def _device_plan(
    host: Host, container_id: str, driver: str, mount_id: str, init_id: str | None
) -> DiffPlan | str:
    """dockerd's naive diff on devicemapper: the ``rootfs/`` of the container's device
    against that of its init device (named by the mount record's mount-id and init-id;
    legacy: the container id and ``<id>-init``)."""
    if not pool_in_root(host):
        return (
            f"container {container_id}: the devicemapper pool is not a pair of files in ROOT "
            "(a direct-lvm pool): its devices cannot be read"
        )
    device = device_ref(host, mount_id)
    if device is None:
        return (
            f"container {container_id}: its read-write layer {mount_id} has no usable device "
            "record: its files cannot be read"
        )
    init = device_ref(host, init_id) if init_id else None
    old: tuple[str, ...] = ()
    unreadable: tuple[tuple[str, str], ...] = ()
    if init is not None:
        old = (init.mount_dir,)
    elif init_id:
        missing = rootfs_dir(init_id)
        old = (missing,)
        why = f"the init layer {init_id} has no usable device record: its files cannot be read"
        unreadable = ((missing, why),)
    devices = (device, init) if init is not None else (device,)
    return DiffPlan(
        host.root,
        container_id,
        driver,
        (device.mount_dir,),
        old,
        "none",
        devices=devices,
        unreadable=unreadable,
    )


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


def container_diff(
    plan: DiffPlan, ev: Evidence | None = None, *, keep_stats: bool = False
) -> DiffResult:
    """The changes of ``plan``'s container, in ``docker diff`` order (parents first).
    ``ev``: an Evidence of ``plan.root`` to reuse (the pools it opened stay open: the caller's
    to close; an archive's or disk image's root cannot be opened again from ``plan.root``);
    without one, ROOT is opened and let go here. ``keep_stats``: the metadata of
    each added or changed entry kept too (``DiffResult.stats``)."""
    result = DiffResult(plan.container_id)
    own = ev is None
    ev = Evidence(plan.root) if ev is None else ev
    opened = {rel: _open_layer(ev, plan, rel, result) for rel in sorted({*plan.new, *plan.old})}
    try:
        new = _View([opened[r] for r in plan.new], plan.whiteouts)
        old = _View([opened[r] for r in plan.old], plan.whiteouts)
        differing = [
            opened[r] for r in (*plan.new, *plan.old) if (r in plan.new) != (r in plan.old)
        ]
        if opened.get(plan.new[0] if plan.new else "") is None:
            return result  # no read-write layer: nothing can be said
        if plan.whiteouts == "none" and any(opened[r] is None for r in plan.old):
            return result  # a whole root file system against nothing: every file "added"
        differ = _Differ(new, old, [d for d in differing if d is not None], plan.whiteouts)
        if plan.whiteouts == "none" and len(new.layers) == len(old.layers) == 1:
            differ.same = _shared_members(new.layers[0], old.layers[0])
        if keep_stats:
            differ.stats = result.stats
        differ.run(result.changes)
        if differ.deep:
            _too_deep_problem(result, plan.new[0], differ)
        _tree_problems(result, opened.values())
    finally:
        for cdir in opened.values():
            if cdir is not None:
                cdir.close()
        if own:
            close_pools(ev)
    return result


def _open_layer(ev: Evidence, plan: DiffPlan, rel: str, result: DiffResult) -> LayerTree | None:
    """The layer directory ``rel`` of ``plan``: a directory of ROOT, or the ``rootfs/`` of a
    thin device; None (and the problem said) when it cannot be read."""
    why = dict(plan.unreadable).get(rel)
    device = next((d for d in plan.devices if d.mount_dir == rel), None)
    try:
        if why is None and device is not None:
            return open_device_dir(ev, device)
        if why is None:
            return open_layer_dir(ev, rel)
    except ReadFailure as failure:
        why = str(failure)
    except ContentError as exc:
        why = f"its files cannot be read: {exc}"
    result.problems.append((rel, why))
    return None


def _tree_problems(result: DiffResult, trees: Iterable[LayerTree | None]) -> None:
    """What the filesystem readers met besides the entries compared (a damaged directory, a
    damaged mapping of the device), each once."""
    for tree in trees:
        if isinstance(tree, TreeDir):
            result.problems.extend((tree.rel, f"in {tree.source}: {p}") for p in tree.problems)


@dataclass
class TreeDiff:
    """What :func:`tree_diff` found: the changes in ``docker diff`` order; the directories
    whose ``C`` says only that something inside them changed (``inserted``); how many entries
    lay beyond PATH_MAX (not compared) and the first of them."""

    changes: list[Change]
    inserted: set[str]
    deep: int
    first_deep: Parts


def tree_diff(new: LayerTree, old: LayerTree | None) -> TreeDiff:
    """What changed from ``old`` (None: an empty tree) to ``new``, two full root file
    systems (no whiteouts, no opaque directories), by ``docker diff``'s rules."""
    trees = [new] if old is None else [new, old]
    differ = _Differ(_View([new], "none"), _View([old], "none"), trees, "none")
    differ.same = _shared_members(new, old)
    changes: list[Change] = []
    differ.run(changes)
    return TreeDiff(changes, differ.inserted, differ.deep, differ.first_deep)


def _shared_members(new: LayerTree, old: LayerTree | None) -> Callable[[Parts], bool] | None:
    """How to skip, between two whole trees, a member that both keep in the same bytes of
    one thin pool (a snapshot's member neither device rewrote: identical by construction),
    when the trees can tell (:meth:`~forensics.layers.treedir.TreeDir.shared_members`)."""
    shared = getattr(new, "shared_members", None)
    return shared(old) if shared is not None and old is not None else None


def _too_deep_problem(result: DiffResult, upper: str, differ: _Differ) -> None:
    first = _show(differ.first_deep)
    count = f"{differ.deep:,} entr{'ies lie' if differ.deep != 1 else 'y lies'}"
    problem = (
        f"{upper}{shorten(first)}",
        f"{count} deeper than Linux allows (a path from the layer root longer than PATH_MAX, "
        f"{PATH_MAX} bytes), the first {shorten(first)} ({len(differ.first_deep):,} "
        "components): not compared, nor anything below (the list of changes is incomplete)",
    )
    result.problems.append(problem)
    result.too_deep.append(problem)


@dataclass(frozen=True, slots=True)
class _Node:
    st: StatLike
    cdir: LayerTree
    opaque: bool = False


#: the layers of a view that make up one directory, top first
Layers = list[LayerTree]


class _View:
    """A merged (overlay) view of layer directories, top first, read one directory at a time."""

    def __init__(self, layers: list[LayerTree | None], whiteouts: str) -> None:
        self.layers = [c for c in layers if c is not None]
        self.aufs = whiteouts == "aufs"
        self.overlay = whiteouts == "overlay"

    def root(self) -> tuple[_Node | None, Layers]:
        """The root of the view, and the layers that make it up (all of them)."""
        for cdir in self.layers:
            st = cdir.lstat(())
            if not isinstance(st, Refusal):
                return _Node(st, cdir), list(self.layers)
        return None, []

    def child(self, layers: Layers, parts: Parts) -> tuple[_Node | None, Layers]:
        """The entry ``parts`` of the directory made up of ``layers``: its node (None when
        absent or whited out) and, for a directory, the layers that make it up — from the
        top down, until a whiteout, a non-directory or an opaque directory hides the rest."""
        node: _Node | None = None
        below: Layers = []
        for cdir in layers:
            st = cdir.lstat(parts)
            if isinstance(st, Refusal):
                if self.aufs and _aufs_whiteout(cdir, parts):
                    break
                continue
            if self.overlay and _is_whiteout(st):
                break
            if not stat.S_ISDIR(st.st_mode):
                if node is None:
                    node = _Node(st, cdir)
                break  # a file hides everything below, and a directory above hides it
            opaque = (self.aufs or self.overlay) and _is_opaque_dir(cdir, parts, self.aufs)
            if node is None:
                node = _Node(st, cdir, opaque)
            below.append(cdir)
            if opaque:
                break
        return node, below

    def names(self, layers: Layers, parts: Parts) -> set[bytes]:
        """Names in the directory ``parts`` made up of ``layers`` (whited-out ones included:
        :meth:`child` tells)."""
        out: set[bytes] = set()
        for cdir in layers:
            out |= _listdir(cdir, parts, self.aufs)
        return out


def _is_whiteout(st: StatLike) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _aufs_whiteout(cdir: LayerTree, parts: Parts) -> bool:
    marker = (*parts[:-1], _WH + parts[-1])
    return not isinstance(cdir.lstat(marker), Refusal)


def _is_opaque_dir(cdir: LayerTree, parts: Parts, aufs: bool) -> bool:
    if aufs:
        return not isinstance(cdir.lstat((*parts, _AUFS_OPAQUE)), Refusal)
    return is_opaque(cdir, parts)


def _listdir(cdir: LayerTree, parts: Parts, aufs: bool) -> set[bytes]:
    found = cdir.listdir(parts)
    if isinstance(found, Refusal):
        return set()
    names = {name for name, _ in found}
    if aufs:
        names = {n[len(_WH) :] if n.startswith(_WH) else n for n in names}
        names = {n for n in names if not n.startswith(_AUFS_META) and n}
    return names


@dataclass(slots=True)
class _Frame:
    """A directory present in the new view, being compared (moby ``addChanges``): its nodes,
    the layers of each view that make it up, and what is left to do."""

    new: _Node
    old: _Node | None
    added: bool  # its own line is out (A or C): no C to insert for a change inside
    length: int  # bytes of its path from the layer root
    new_layers: Layers
    old_layers: Layers
    names: Iterator[bytes]
    prune: bool
    start: int  # where its lines begin in the output
    deleted: list[bytes] = field(default_factory=list)


class _Differ:
    def __init__(self, new: _View, old: _View, differing: list[LayerTree], whiteouts: str) -> None:
        self.new, self.old, self.differing = new, old, differing
        self.aufs = whiteouts == "aufs"
        #: only where the views share layers can a path be skipped for none of the differing
        #: layers holding it (two full root file systems share none: each path is compared)
        shared = {id(t) for t in new.layers} & {id(t) for t in old.layers}
        self.can_prune = bool(shared)
        #: directories whose ``C`` says only that something inside them changed
        self.inserted: set[str] = set()
        #: entries beyond PATH_MAX: how many, and the first
        self.deep = 0
        self.first_deep: Parts = ()
        #: when kept: each added or changed entry's metadata and where it is shown
        self.stats: dict[str, tuple[StatLike, str]] | None = None
        #: two whole trees that can tell a member they keep in the same bytes: True for
        #: such a member (a non-directory: identical, not looked at)
        self.same: Callable[[Parts], bool] | None = None

    def run(self, out: list[Change]) -> None:
        """The changes, parents first, into ``out``: depth first over the new view with an
        explicit stack; ``parts`` is the path of the innermost frame."""
        root_new, new_layers = self.new.root()
        if root_new is None:
            return
        root_old, old_layers = self.old.root()
        parts: Parts = ()
        stack = [self._frame(parts, root_new, root_old, False, 0, new_layers, old_layers, out)]
        while stack:
            frame = stack[-1]
            entered = self._step(parts, frame, out)
            if entered is not None:
                parts = (*parts, entered.name)
                stack.append(entered.frame)
                continue
            stack.pop()
            out.extend(Change(_show((*parts, name)), "D") for name in frame.deleted)
            if len(out) > frame.start and not frame.added and parts:
                out.insert(frame.start, Change(_show(parts), "C"))
                self.inserted.add(out[frame.start].path)
                self._keep(out[frame.start].path, frame.new, parts)
            parts = parts[:-1]

    def _frame(
        self,
        parts: Parts,
        new: _Node,
        old: _Node | None,
        added: bool,
        length: int,
        new_layers: Layers,
        old_layers: Layers,
        out: list[Change],
    ) -> _Frame:
        old_dir = old is not None and stat.S_ISDIR(old.st.st_mode)
        if not old_dir:
            old_layers = []
        names = self.new.names(new_layers, parts) | self.old.names(old_layers, parts)
        # below an opaque dir a view may hide what no differing layer holds: look at all
        prune = (
            self.can_prune and old_dir and not new.opaque and not (old is not None and old.opaque)
        )
        return _Frame(
            new, old, added, length, new_layers, old_layers, iter(sorted(names)), prune, len(out)
        )

    def _step(self, parts: Parts, frame: _Frame, out: list[Change]) -> _Entered | None:
        """Compare the next children of ``frame`` (directory ``parts``) until one is a
        directory to enter (returned) or none is left (None)."""
        base = frame.length + 1 if parts else 0
        for name in frame.names:
            child = (*parts, name)
            if too_deep(base + len(name)):
                if not self.deep:
                    self.first_deep = child
                self.deep += 1
                continue
            if frame.prune and not self._touched(child):
                continue  # the same layers show it in both views: identical
            if self.same is not None and frame.old_layers and self.same(child):
                continue  # the same inode in the same bytes of the pool: identical
            n, new_layers = self.new.child(frame.new_layers, child)
            o, old_layers = self.old.child(frame.old_layers, child)
            if n is None:
                if o is not None:
                    frame.deleted.append(name)
                continue
            marked = True
            if o is None:
                out.append(Change(_show(child), "A"))
            elif _stat_different(o, n) or _capability(o, child) != _capability(n, child):
                out.append(Change(_show(child), "C"))
            else:
                marked = False
            if marked:
                self._keep(out[-1].path, n, child)
            if stat.S_ISDIR(n.st.st_mode):
                length = base + len(name)
                entered = self._frame(child, n, o, marked, length, new_layers, old_layers, out)
                return _Entered(name, entered)
        return None

    def _keep(self, shown: str, node: _Node, parts: Parts) -> None:
        if self.stats is not None:
            self.stats[shown] = (node.st, node.cdir.path_of(parts))

    def _touched(self, parts: Parts) -> bool:
        """True when a differing layer holds ``parts`` (or its whiteout): only then can the
        two views differ there."""
        for cdir in self.differing:
            if not isinstance(cdir.lstat(parts), Refusal):
                return True
            if self.aufs and _aufs_whiteout(cdir, parts):
                return True
        return False


class _Entered(NamedTuple):
    name: bytes
    frame: _Frame


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
    return node.cdir.xattr(parts, _CAPABILITY)


def _same_time(a: StatLike, b: StatLike) -> bool:
    """moby ``sameFsTimeSpec``: seconds equal, and nanoseconds too unless one of them is 0
    (a file system or archive that keeps whole seconds)."""
    sa, na = divmod(a.st_mtime_ns, 1_000_000_000)
    sb, nb = divmod(b.st_mtime_ns, 1_000_000_000)
    return sa == sb and (na == nb or na == 0 or nb == 0)


def _show(parts: Parts) -> str:
    return "/" + b"/".join(parts).decode("utf-8", "surrogateescape")
