"""A full-rootfs layer held against its parent layer's files, by Docker's change rules.

On devicemapper a layer's device holds the whole root file system as of that layer: a thin
snapshot of its parent layer's device to which Docker applied the layer's tar, and nothing
else. So what differs between the two trees — computed as ``docker diff`` computes it
(:func:`~forensics.layers.diff.tree_diff`: moby's naive ``ChangesDirs``: an entry only here is
added, only there deleted, in both changed when its mode, owner, device, ``security.capability``
or, not for a directory, its size or mtime differ) — must be what the tar says:

* an added or changed entry is a member of the tar — or a directory that only holds changed
  entries (its ``C`` is docker diff's), or one added to hold members (Docker creates the
  missing parents of a member);
* a deleted entry has its whiteout in the tar (``.wh.NAME``, or ``.wh..wh..opq`` for its
  directory);
* a directory that the tar makes opaque holds nothing but the tar's members.

Anything else was added, removed or changed behind Docker's back, also in a layer whose tar
is empty: a file record of status ``extra``, ``removed`` or ``inherited-changed``. The
contents of the tar's own members are the reassembly's to check (crc64); an inherited file
rewritten with its size and mtime kept is beyond Docker's rules, and beyond these.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING

from forensics.evidence import Evidence
from forensics.layers.confine import Parts, Refusal, kind_of, shorten
from forensics.layers.content import LayerTree, StatLike, disk_type
from forensics.layers.devices import ContentError, open_device_dir
from forensics.layers.diff import TreeDiff, tree_diff
from forensics.layers.report import FileRecord, LayerProblem, LayerReport

if TYPE_CHECKING:
    from forensics.layers.reassemble import LayerJob

__all__ = ["check_changes"]

_WH = b".wh."
_OPAQUE = b".wh..wh..opq"
_CAPABILITY = "security.capability"


def check_changes(
    ev: Evidence, job: LayerJob, report: LayerReport, tree: LayerTree, members: set[bytes]
) -> None:
    """Hold ``tree`` (the layer's) against its parent layer's tree (``job.parent_device``;
    an empty tree for a first layer); what the tar's ``members`` (cleaned names joined by
    ``/``) do not explain goes into ``report.files``."""
    problem = job.parent_problem
    parent = None
    if problem is None and job.parent_device is not None:
        try:
            parent = open_device_dir(ev, job.parent_device)
        except ContentError as exc:
            problem = f"its parent layer's files cannot be read ({exc})"
    if problem is not None:
        what = f"layer {report.layer_id}: {problem}: its files are not held against its parent's"
        report.problems.append(LayerProblem("changes-unchecked", report.content_dir, what))
        return
    try:
        found = tree_diff(tree, parent)
        explained = _Explained(members)
        records = list(_unexplained(found, explained, tree, parent))
        records += _opaque_leftovers(tree, members, {r.path for r in records})
        report.files.extend(records)
        if found.deep:
            _too_deep(report, tree, found)
    finally:
        if parent is not None:
            parent.close()


class _Explained:
    """What the tar's members account for."""

    def __init__(self, members: set[bytes]) -> None:
        self.members = members
        #: every directory above a member (Docker creates a member's missing parents)
        self.parents: set[bytes] = set()
        for name in members:
            head = name.rpartition(b"/")[0]
            while head and head not in self.parents:
                self.parents.add(head)
                head = head.rpartition(b"/")[0]

    def deletion(self, rel: bytes) -> bool:
        head, _, name = rel.rpartition(b"/")
        prefix = head + b"/" if head else b""
        return prefix + _WH + name in self.members or prefix + _OPAQUE in self.members


def _unexplained(
    found: TreeDiff, explained: _Explained, tree: LayerTree, parent: LayerTree | None
) -> Iterator[FileRecord]:
    for change in found.changes:
        rel = change.path[1:].encode("utf-8", "surrogateescape")
        parts = tuple(rel.split(b"/"))
        if change.kind == "D":
            if not explained.deletion(rel):
                yield _removed(tree, parent, parts, change.path[1:])
            continue
        if rel in explained.members or change.path in found.inserted:
            continue
        st = tree.lstat(parts)
        if isinstance(st, Refusal):
            continue  # gone since the comparison
        if change.kind == "A":
            if stat.S_ISDIR(st.st_mode) and rel in explained.parents:
                continue
            what = f"a {kind_of(st.st_mode)} that neither the layer's tar nor its parent layer has"
            yield _record(tree, parts, change.path[1:], st, "extra", f"added: {what}")
        else:
            old = parent.lstat(parts) if parent is not None else None
            what = _what_changed(tree, parent, parts, st, old)
            detail = f"changed since the parent layer ({what}); the layer's tar does not hold it"
            yield _record(tree, parts, change.path[1:], st, "inherited-changed", detail)


def _removed(tree: LayerTree, parent: LayerTree | None, parts: Parts, shown: str) -> FileRecord:
    old = parent.lstat(parts) if parent is not None else None
    kind = kind_of(old.st_mode) if old is not None and not isinstance(old, Refusal) else "entry"
    detail = f"the parent layer's {kind} is gone, and the layer's tar holds no whiteout for it"
    rec = FileRecord(shown, tree.path_of(parts), "other", 0, None, None, "removed", detail)
    if old is not None and not isinstance(old, Refusal):
        rec.type, rec.mode = disk_type(old.st_mode), old.st_mode & 0o7777
        rec.size = old.st_size if stat.S_ISREG(old.st_mode) else 0
    return rec


def _record(
    tree: LayerTree, parts: Parts, shown: str, st: StatLike, status: str, detail: str
) -> FileRecord:
    regular = stat.S_ISREG(st.st_mode)
    return FileRecord(
        path=shown,
        disk_path=tree.path_of(parts),
        type=disk_type(st.st_mode),
        size=st.st_size if regular else 0,
        mode=None,
        crc64=None,
        status=status,
        detail=detail,
        found_size=st.st_size if regular else None,
        found_mode=st.st_mode & 0o7777,
    )


def _what_changed(
    tree: LayerTree,
    parent: LayerTree | None,
    parts: Parts,
    new: StatLike,
    old: StatLike | Refusal | None,
) -> str:
    """The fields that differ between the parent's entry and this one, in words."""
    if old is None or isinstance(old, Refusal):
        return "the parent's entry is unreadable"
    out = []
    if stat.S_IFMT(old.st_mode) != stat.S_IFMT(new.st_mode):
        out.append(f"a {kind_of(old.st_mode)} there, a {kind_of(new.st_mode)} here")
    elif old.st_mode != new.st_mode:
        out.append(f"mode {old.st_mode & 0o7777:04o} → {new.st_mode & 0o7777:04o}")
    if (old.st_uid, old.st_gid) != (new.st_uid, new.st_gid):
        out.append(f"owner {old.st_uid}:{old.st_gid} → {new.st_uid}:{new.st_gid}")
    if old.st_rdev != new.st_rdev:
        out.append("device number")
    if not stat.S_ISDIR(new.st_mode):
        if old.st_size != new.st_size:
            out.append(f"size {old.st_size} → {new.st_size}")
        if old.st_mtime_ns != new.st_mtime_ns:
            out.append(f"mtime {_ns(old.st_mtime_ns)} → {_ns(new.st_mtime_ns)}")
    if stat.S_ISREG(new.st_mode) and parent is not None:
        if tree.xattr(parts, _CAPABILITY) != parent.xattr(parts, _CAPABILITY):
            out.append(_CAPABILITY)
    return ", ".join(out) or "metadata"


def _ns(value: int) -> str:
    seconds, nanos = divmod(value, 1_000_000_000)
    return f"{seconds}.{nanos:09d}" if nanos else str(seconds)


def _opaque_leftovers(tree: LayerTree, members: set[bytes], named: set[str]) -> list[FileRecord]:
    """Entries of a directory that the tar makes opaque (``DIR/.wh..wh..opq``) that the tar
    does not hold: Docker removed the directory's old contents when it applied the tar."""
    out = []
    for marker in sorted(m for m in members if m == _OPAQUE or m.endswith(b"/" + _OPAQUE)):
        head = marker[: -len(_OPAQUE)].rstrip(b"/")
        where: Parts = tuple(head.split(b"/")) if head else ()
        listing = tree.listdir(where)
        if isinstance(listing, Refusal):
            continue
        for name, _kind in listing:
            rel = head + b"/" + name if head else name
            shown = rel.decode("utf-8", "surrogateescape")
            if rel in members or shown in named:
                continue
            st = tree.lstat((*where, name))
            if isinstance(st, Refusal):
                continue
            detail = (
                f"in /{head.decode('utf-8', 'surrogateescape')}, which the layer's tar makes "
                "opaque (.wh..wh..opq), but not in its tar"
            )
            out.append(_record(tree, (*where, name), shown, st, "extra", detail))
    return out


def _too_deep(report: LayerReport, tree: LayerTree, found: TreeDiff) -> None:
    first = b"/".join(found.first_deep).decode("utf-8", "surrogateescape")
    count = f"{found.deep:,} entr{'ies lie' if found.deep != 1 else 'y lies'}"
    report.problems.append(
        LayerProblem(
            "path-too-deep",
            tree.path_of(found.first_deep),
            f"layer {report.layer_id}: {count} deeper than Linux allows (PATH_MAX from the "
            f"layer root), the first /{shorten(first)}: not held against the parent layer",
        )
    )
