"""``verify --deep`` on a containerd store: each blob hashed, each layer blob decompressed and
its tar held against the committed snapshots it was unpacked to.

containerd keeps no tar-split: a layer's tar is its blob in the content store (gzip, zstd or
plain), and its files are the committed snapshot that the image's ChainID names. So one pass
over the blob does it all, with bounded memory:

- the blob file is hashed (sha256 against its name: containerd's content store is
  content-addressed);
- its bytes are decompressed as a stream (:mod:`forensics.fs.compressed`, the project's one
  decompressor: the codec sniffed from the magic, a decompression bomb capped by
  :class:`~forensics.fs.compressed.StreamLimits`) and the uncompressed tar hashed — the DiffID,
  held against the image config's ``rootfs.diff_ids`` and the blob's
  ``containerd.io/uncompressed`` label;
- every tar member (headers decoded by :mod:`forensics.formats.ustar`, as Go's reader does) is
  held against ``snapshots/<id>/fs/`` of each committed snapshot the blob was unpacked to: a
  regular file's size and sha256, each entry's type, mode, owner and xattrs, a symlink's
  target, a device's numbers, a hard link's inode; whiteouts as containerd's overlayfs applier
  writes them (``DIR/.wh.NAME``: a 0:0 character device ``DIR/NAME`` owned as the header says;
  ``DIR/.wh..wh..opq``: ``trusted.overlay.opaque=y`` on DIR); and, once the tar was read
  whole, every entry of ``fs/`` that no member accounts for (a directory above a member
  counts: containerd makes missing parents).

Every read of a snapshot goes through :class:`~forensics.layers.confine.ConfinedDir` (no
symlink followed, nothing but a regular file opened); a member whose name climbs out of the
layer (``../x``) or lies beyond ``PATH_MAX`` is reported and never looked up. A hostile blob —
a gzip bomb, a stream cut short or damaged, a tar header that does not decode — is a problem of
the report, never an exception. What the report says is turned into findings by
:mod:`forensics.checks.containerd_deep`.

Times are not compared (a copy of the evidence made without ``-p`` changes them all); xattrs
that overlayfs writes itself (``trusted.overlay.*``, ``user.overlay.*``) and the SELinux label
that a host gives every file are not held against the tar.

This module is the pass over one blob and the run over the store; the jobs and the report's
values are :mod:`~forensics.layers.containerd_blobs`', the tar stream
:mod:`~forensics.layers.containerd_tar`'s, one member against its snapshot's entry
:mod:`~forensics.layers.containerd_compare`'s.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import traceback
from typing import BinaryIO

from forensics.containerd_graph import LABEL_UNCOMPRESSED
from forensics.containerd_model import ContainerdHost
from forensics.drivers import OVERLAY_WHITEOUTS, TAR_OPAQUE, TAR_WHITEOUT_PREFIX
from forensics.evidence import Evidence, ReadFailure
from forensics.formats.ustar import BLOCK, Member
from forensics.fs.compressed import BombError, StreamLimits, open_stream
from forensics.layers.confine import ConfinedDir, Parts, Refusal, clean_name, kind_of, too_deep
from forensics.layers.containerd_blobs import (
    BlobJob,
    BlobReport,
    DeepProblem,
    Skip,
    SnapshotTarget,
    plan_blobs,
)
from forensics.layers.containerd_compare import (
    DISK_TYPE,
    REFUSED_CHECK,
    TarEntry,
    content_change,
    hardlink_type,
    metadata_changes,
    refused_message,
    shown_name,
    word,
)
from forensics.layers.containerd_tar import CHUNK, HEADER_ONLY, TarReader, next_member
from forensics.layers.content import is_opaque
from forensics.layers.listing import walk

__all__ = [
    "BlobJob",
    "BlobReport",
    "DeepProblem",
    "Skip",
    "SnapshotTarget",
    "check_blob",
    "check_store",
    "plan_blobs",
]

#: problems of one kind named per blob; the rest are counted in one more
_PROBLEMS_PER_KIND = 1000
#: per-file problems held at once (a later member may replace one); past it they are counted
_FOUND_LIMIT = 20 * _PROBLEMS_PER_KIND
_WH = TAR_WHITEOUT_PREFIX


def check_store(
    ev: Evidence, ctd: ContainerdHost, limits: StreamLimits | None = None
) -> tuple[list[BlobReport], list[Skip]]:
    """Every blob of the store checked (:func:`check_blob`, spread over the cores), with a
    progress bar in bytes; and the layer snapshots that could not be."""
    from forensics.parallel import map_entries
    from forensics.progress import ByteBar

    jobs, skipped = plan_blobs(ctd, limits)
    reports = []
    bar = ByteBar("blobs", sum(job.size for job in jobs))
    try:
        for report in map_entries(ev, _check_one, jobs, min_parallel=2, chunk=4):
            bar.update(report.bytes_read)
            reports.append(report)
    finally:
        bar.close()
    return reports, skipped


def _check_one(ev: Evidence, job: BlobJob) -> BlobReport:
    """One blob checked; an exception (a bug: bad evidence is reported, never raised) is a
    problem of that blob, so that one blob's failure never ends the run."""
    try:
        return check_blob(ev, job)
    except Exception as exc:  # any bug in one blob's check
        if os.environ.get("DOCKER_FORENSICS_DEBUG", "").lower() in ("1", "true", "yes"):
            traceback.print_exc(file=sys.stderr)
        what = f"{type(exc).__name__}: {exc}"[:300]
        report = BlobReport(job.digest, job.path, job.layer)
        report.problems.append(
            DeepProblem(
                "layer-check-failed",
                job.path,
                f"blob {job.digest}: the check stopped on an internal error ({what}); it was "
                "not checked whole (set DOCKER_FORENSICS_DEBUG=1 to see the traceback)",
            )
        )
        return report


# -- one blob -------------------------------------------------------------------------------------


def check_blob(ev: Evidence, job: BlobJob) -> BlobReport:
    """Hash the blob of ``job`` and, for a layer, read its tar against its snapshots; never
    raises for bad evidence (a problem of the report says what was found)."""
    report = BlobReport(job.digest, job.path, job.layer)
    try:
        fd, st = ev.open_regular(job.path)
    except ReadFailure as failure:
        report.problems.append(
            DeepProblem("blob-damaged", job.path, str(failure), "", failure.kind)
        )
        return report
    with os.fdopen(fd, "rb") as blob:
        report.sha256 = _hash_file(blob.fileno())
        report.bytes_read = st.st_size
        want = job.digest.partition(":")[2]
        if report.sha256 != want:
            report.problems.append(
                DeepProblem(
                    "blob-digest-mismatch",
                    job.path,
                    f"its sha256 is {report.sha256}, not the {want} of its name: the blob "
                    "changed after it was written",
                    damage="digest",
                )
            )
        if job.layer:
            _LayerPass(report, job, ev).run(blob, st.st_size)
    return report


def _hash_file(fd: int) -> str:
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    offset = 0
    while n := os.preadv(fd, (buf,), offset):
        digest.update(view[:n])
        offset += n
    return digest.hexdigest()


class _LayerPass:
    """The tar of one layer blob, member by member, against each of its snapshots."""

    def __init__(self, report: BlobReport, job: BlobJob, ev: Evidence) -> None:
        self.r, self.job, self.ev = report, job, ev
        self.dirs: list[tuple[SnapshotTarget, ConfinedDir]] = []
        #: per snapshot and on-disk path, the last problem found (a later member of the same
        #: name replaces an earlier one, as the applier did)
        self.found: dict[tuple[str, Parts], DeepProblem] = {}
        #: per-file problems past :data:`_FOUND_LIMIT`, counted by kind
        self.unnamed: dict[str, int] = {}
        #: every on-disk path a member accounts for
        self.seen: set[Parts] = set()
        self.complete = False
        #: the member the tar ended inside, if it did
        self.cut: str | None = None
        self.root = os.geteuid() == 0

    def run(self, blob: BinaryIO, size: int) -> None:
        for target in self.job.targets:
            try:
                self.dirs.append((target, ConfinedDir(self.ev, target.fs)))
            except ReadFailure as failure:
                self._problem("snapshot-file-missing", target.fs, str(failure), target.snapshot)
        try:
            stream = open_stream(blob, size, self.job.limits)
        except OSError as exc:
            self._blob_problem(f"cannot be read: {exc.strerror or exc}")
            self._close()
            return
        self.r.codec = stream.codec.name if stream.codec is not None else None
        reader = TarReader(stream)
        drained = False
        try:
            self._members(reader)
            reader.drain()
            drained = True
        except BombError as exc:
            self._blob_problem(f"{exc}: not read further", damage="bomb")
        except OSError as exc:
            self._blob_problem(f"cannot be read: {exc.strerror or exc}")
        finally:
            stream.close()
        for problem in stream.problems:
            self._blob_problem(f"{problem}", damage="stream")
        if self.cut is not None and not stream.problems:  # else the stream's end cut it
            self._blob_problem(self.cut, damage="truncated")
        self.r.tar_bytes = reader.pos
        if drained and not stream.problems:
            self.r.diff_id = "sha256:" + reader.hash.hexdigest()
            self._check_diff_id()
        else:
            self.complete = False
        try:
            if self.complete:
                self._extras()
        finally:
            self._close()
        self.r.problems.extend(self.found.values())
        self._counted()

    def _close(self) -> None:
        for _, cdir in self.dirs:
            cdir.close()

    # -- the tar -------------------------------------------------------------------------------

    def _members(self, reader: TarReader) -> None:
        while True:
            at = reader.pos
            got = next_member(reader)
            if got is None:
                self.complete = True  # the end of the archive (or of the stream, as Go reads)
                return
            if isinstance(got, str):
                self._blob_problem(f"the tar is damaged at byte {at}: {got}", damage="tar")
                return
            member = got
            self.r.members += 1
            data = 0 if member.typeflag in HEADER_ONLY else max(0, member.size)
            entry = self._entry(member, at)
            digest = hashlib.sha256() if entry is not None and entry.kind == "file" else None
            if reader.skip(data, digest) < data:
                self.cut = (
                    f"the tar ends inside member {shown_name(member.name)[:200]!r} (cut short)"
                )
                return
            reader.skip(-data % BLOCK)
            if entry is not None:
                if digest is not None:
                    entry.sha256 = digest.hexdigest()
                self._compare(entry)

    def _entry(self, member: Member, at: int) -> TarEntry | None:
        """The member with its cleaned path; None (and a problem said) when its name climbs
        out of the layer or lies too deep, or it is a member this check does not compare."""
        if member.typeflag == b"g":
            return None  # a PAX global header: no file
        parts = clean_name(member.name.rstrip(b"/") if member.name != b"/" else b"")
        shown = member.name.decode("utf-8", "surrogateescape")
        if parts is None:
            self._blob_problem(
                f"member {shown[:200]!r} (at byte {at} of the tar) names a path outside the "
                "layer: never looked up",
                kind="layer-unsafe-path",
                damage="unsafe-path",
            )
            return None
        if too_deep(len(b"/".join(parts))):
            self._blob_problem(
                f"member {shown[:200]!r} lies deeper than Linux allows (PATH_MAX): containerd "
                "could not have written it; not looked up",
                kind="layer-unsafe-path",
                damage="too-deep",
            )
            return None
        entry = TarEntry(member, parts)
        if any(key.startswith("GNU.sparse.") for key in member.pax):
            entry.kind = "sparse"  # PAX sparse: the data is a map and the runs, not the file
        if entry.kind == "hardlink":
            entry.link = clean_name(member.linkname)
            if entry.link is None:
                self._blob_problem(
                    f"member {shown[:200]!r} is a hard link to "
                    f"{shown_name(member.linkname)[:200]!r}, outside the layer: never looked up",
                    kind="layer-unsafe-path",
                    damage="unsafe-path",
                )
        return entry

    # -- one member against each snapshot ------------------------------------------------------

    def _compare(self, entry: TarEntry) -> None:
        base = entry.parts[-1] if entry.parts else b""
        for target, cdir in self.dirs:
            if base == TAR_OPAQUE:
                self._opaque(target, cdir, entry.parts[:-1])
            elif base.startswith(_WH):
                self._whiteout(target, cdir, entry, (*entry.parts[:-1], base[len(_WH) :]))
            else:
                self._present(target, cdir, entry)

    def _present(self, target: SnapshotTarget, cdir: ConfinedDir, entry: TarEntry) -> None:
        parts = entry.parts
        self.seen.add(parts)
        key = (target.fs, parts)
        self.found.pop(key, None)
        st = cdir.lstat(parts)
        if isinstance(st, Refusal):
            self._file(target, parts, REFUSED_CHECK[st.kind], refused_message(st, entry), st.kind)
            return
        want = DISK_TYPE.get(entry.kind)
        if entry.kind == "hardlink":
            want = hardlink_type(cdir, entry)
        if want is not None and stat.S_IFMT(st.st_mode) != want:
            self._file(
                target,
                parts,
                "snapshot-file-type-changed",
                f"is a {kind_of(st.st_mode)}, the layer has a {word(entry.kind)}",
            )
            return
        what = self._content(cdir, entry, st)
        if what is not None:
            self._file(target, parts, *what)
            return
        if parts:  # the layer root's own metadata is the snapshotter's
            self._metadata(target, cdir, entry, st)

    def _content(
        self, cdir: ConfinedDir, entry: TarEntry, st: os.stat_result
    ) -> tuple[str, str] | None:
        """The check and message of what differs in the entry's content: a file's size or
        sha256, a link's target, a device's numbers, a hard link's inode."""
        what = content_change(cdir, entry, st)
        if what is None:
            return None
        if isinstance(what, Refusal):
            return "snapshot-file-unreadable", f"cannot be read: {what.detail}"
        return "snapshot-file-modified", what

    def _metadata(
        self, target: SnapshotTarget, cdir: ConfinedDir, entry: TarEntry, st: os.stat_result
    ) -> None:
        """The entry's mode, owner and xattrs against the header: one finding."""
        mode_changed, found = metadata_changes(cdir, entry, st, self.root)
        if found:
            kind = (
                "snapshot-file-mode-changed" if mode_changed else "snapshot-file-metadata-changed"
            )
            self._file(target, entry.parts, kind, "; ".join(found))

    def _whiteout(
        self, target: SnapshotTarget, cdir: ConfinedDir, entry: TarEntry, hidden: Parts
    ) -> None:
        """``DIR/.wh.NAME``: containerd's applier makes NAME a 0:0 character device with the
        header's owner."""
        self.seen.add(hidden)
        self.found.pop((target.fs, hidden), None)
        st = cdir.lstat(hidden)
        m = entry.member
        if isinstance(st, Refusal):
            what = "the whiteout (a 0:0 character device) is missing"
            self._file(target, hidden, "snapshot-whiteout-changed", f"{what}: {st.detail}")
        elif not stat.S_ISCHR(st.st_mode) or st.st_rdev != 0:
            what = f"a {kind_of(st.st_mode)} where the layer deletes the name"
            self._file(target, hidden, "snapshot-whiteout-changed", f"{what} (a 0:0 whiteout)")
        elif (st.st_uid, st.st_gid) != (m.uid, m.gid):
            self._file(
                target,
                hidden,
                "snapshot-file-metadata-changed",
                f"whiteout owner {st.st_uid}:{st.st_gid} in the snapshot, {m.uid}:{m.gid} in "
                "the layer",
            )

    def _opaque(self, target: SnapshotTarget, cdir: ConfinedDir, parts: Parts) -> None:
        """``DIR/.wh..wh..opq``: the applier marks DIR ``trusted.overlay.opaque=y``."""
        self.seen.add(parts)
        key = (target.fs, (*parts, TAR_OPAQUE))
        st = cdir.lstat(parts)
        if isinstance(st, Refusal) or not stat.S_ISDIR(st.st_mode):
            what = st.detail if isinstance(st, Refusal) else f"is a {kind_of(st.st_mode)}"
            self._keep(
                key,
                self._make(
                    target, parts, "snapshot-whiteout-changed", f"the opaque directory {what}"
                ),
            )
            return
        if is_opaque(cdir, parts):
            self.found.pop(key, None)
        elif not self.root:
            what = "the opaque xattr (trusted.overlay.opaque) is readable by root only"
            self._keep(key, self._make(target, parts, "snapshot-file-unverifiable", what))
        else:
            what = (
                "the layer makes the directory opaque, but it carries no "
                f"{OVERLAY_WHITEOUTS.opaque_xattrs[0]}=y: the lower layers show through"
            )
            self._keep(key, self._make(target, parts, "snapshot-whiteout-changed", what))

    # -- what the tar does not hold --------------------------------------------------------------

    def _extras(self) -> None:
        for target, cdir in self.dirs:
            listing = walk(cdir)
            for parts in self.seen:
                listing.expect(parts)
            for parts in listing.unexpected():
                st = cdir.lstat(parts)
                if isinstance(st, Refusal):
                    continue
                self._file(
                    target,
                    parts,
                    "snapshot-file-extra",
                    f"a {kind_of(st.st_mode)} that is not in the layer",
                )

    def _check_diff_id(self) -> None:
        computed = self.r.diff_id
        wrong: dict[str, list[str]] = {}
        for diff_id, who in self.job.diff_ids:
            if diff_id != computed:
                wrong.setdefault(diff_id, []).append(who)
        for diff_id, ns in self.job.labels:
            if diff_id != computed:
                wrong.setdefault(diff_id, []).append(f"the {LABEL_UNCOMPRESSED} label in {ns}")
        for diff_id, who in sorted(wrong.items()):
            self._blob_problem(
                f"its uncompressed tar hashes to {computed}, but {_names(who)} gives DiffID "
                f"{diff_id}",
                kind="layer-diffid-mismatch",
                damage="diff-id",
            )

    # -- problems --------------------------------------------------------------------------------

    def _blob_problem(
        self, message: str, *, kind: str = "layer-damaged", damage: str | None = None
    ) -> None:
        self._add(
            DeepProblem(kind, self.job.path, f"layer blob {self.job.digest}: {message}", "", damage)
        )

    def _make(self, target: SnapshotTarget, parts: Parts, kind: str, message: str) -> DeepProblem:
        shown = shown_name(b"/".join(parts))
        path = f"{target.fs}/{shown}" if shown else target.fs
        blame = ""
        if self.r.sha256 is not None and self.r.sha256 != self.job.digest.partition(":")[2]:
            blame = " (the blob itself changed: which side differs cannot be told)"
        text = f"snapshot {target.snapshot}, /{shown}: {message}{blame}"
        return DeepProblem(kind, path, text, target.snapshot)

    def _file(
        self,
        target: SnapshotTarget,
        parts: Parts,
        kind: str,
        message: str,
        damage: str | None = None,
    ) -> None:
        problem = self._make(target, parts, kind, message)
        if damage is not None:
            problem = DeepProblem(
                problem.kind, problem.path, problem.message, problem.snapshot, damage
            )
        self._keep((target.fs, parts), problem)

    def _keep(self, key: tuple[str, Parts], problem: DeepProblem) -> None:
        """Hold the problem of an on-disk path; past :data:`_FOUND_LIMIT` of them (a crafted
        tar of millions of members) only count it."""
        if key not in self.found and len(self.found) >= _FOUND_LIMIT:
            self.unnamed[problem.kind] = self.unnamed.get(problem.kind, 0) + 1
            return
        self.found[key] = problem

    def _problem(self, kind: str, path: str, message: str, snapshot: str) -> None:
        self._add(DeepProblem(kind, path, message, snapshot))

    def _add(self, problem: DeepProblem) -> None:
        self.r.problems.append(problem)

    def _counted(self) -> None:
        """Past :data:`_PROBLEMS_PER_KIND` problems of one kind, the rest in one more."""
        by_kind: dict[str, int] = {}
        kept: list[DeepProblem] = []
        for problem in self.r.problems:
            by_kind[problem.kind] = by_kind.get(problem.kind, 0) + 1
            if by_kind[problem.kind] <= _PROBLEMS_PER_KIND:
                kept.append(problem)
        for kind, count in self.unnamed.items():
            by_kind[kind] = max(by_kind.get(kind, 0), _PROBLEMS_PER_KIND) + count
        for kind, count in sorted(by_kind.items()):
            if count > _PROBLEMS_PER_KIND:
                more = count - _PROBLEMS_PER_KIND
                kept.append(
                    DeepProblem(
                        kind,
                        self.job.path,
                        f"layer blob {self.job.digest}: {more} more of these not named one by one",
                    )
                )
        self.r.problems = kept


def _names(items: list[str]) -> str:
    unique = list(dict.fromkeys(items))
    text = ", ".join(unique[:3])
    return text + (f" and {len(unique) - 3} more" if len(unique) > 3 else "")
