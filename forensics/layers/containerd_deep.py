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
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from forensics.containerd_graph import (
    LABEL_UNCOMPRESSED,
    image_chain,
    namespaces,
    present_manifests,
)
from forensics.containerd_model import ContainerdHost, CtrNamespace, Descriptor
from forensics.drivers import OVERLAY_WHITEOUTS, SNAPSHOTTERS, TAR_OPAQUE, TAR_WHITEOUT_PREFIX
from forensics.evidence import Evidence, ReadFailure
from forensics.formats.ustar import BLOCK, HeaderError, Member, read_member
from forensics.fs.compressed import (
    BombError,
    DecodedStream,
    PlainStream,
    StreamLimits,
    open_stream,
)
from forensics.layers.confine import ConfinedDir, Parts, Refusal, clean_name, kind_of, too_deep
from forensics.layers.containerd_diff import snapshot_fs
from forensics.layers.content import close_handle, is_opaque, read_into
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

#: read size of the blob, the stream and the snapshot's files
CHUNK = 1 << 20
#: extension headers (PAX, GNU long names) in front of one member, and what they may hold
_EXTENSIONS = {b"x", b"L", b"K"}
_MAX_EXTENSIONS = 16
_MAX_EXTENSION_DATA = 1 << 20
#: typeflags whose members carry no data, whatever their size field says (Go's reader)
_HEADER_ONLY = {b"1", b"2", b"3", b"4", b"5", b"6"}
#: problems of one kind named per blob; the rest are counted in one more
_PROBLEMS_PER_KIND = 1000
#: per-file problems held at once (a later member may replace one); past it they are counted
_FOUND_LIMIT = 20 * _PROBLEMS_PER_KIND
_WH = TAR_WHITEOUT_PREFIX
#: xattrs that the snapshot holds of its own, not from the tar
_OWN_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
_SELINUX = "security.selinux"
_PAX_XATTR = "SCHILY.xattr."
_DIRECTORY_SNAPSHOTTERS = frozenset(SNAPSHOTTERS)


@dataclass(frozen=True)
class SnapshotTarget:
    """A committed snapshot that a layer blob was unpacked to: its ``fs/`` (relative to the
    evidence root of the store) and its name for messages (``<ns>/<snapshotter>/<key>``)."""

    fs: str
    snapshot: str


@dataclass(frozen=True)
class BlobJob:
    """One blob of the content store to check (plain values: a worker process can take it).

    ``layer``: whether it is some image's layer (decompressed and read as a tar); ``diff_ids``
    (DiffID, who expects it) from image configs; ``labels`` (DiffID, namespace) from the
    ``containerd.io/uncompressed`` label of its records; ``targets`` the committed snapshots to
    hold its members against."""

    digest: str
    path: str
    size: int
    layer: bool = False
    diff_ids: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    targets: tuple[SnapshotTarget, ...] = ()
    limits: StreamLimits | None = None


@dataclass(frozen=True)
class DeepProblem:
    """Something the pass found: ``kind`` is the check's name within ``containerd.``, ``path``
    the file at fault (relative to the store's evidence root), ``snapshot`` the snapshot it
    concerns (empty: the blob)."""

    kind: str
    path: str
    message: str
    snapshot: str = ""
    damage: str | None = None


@dataclass
class BlobReport:
    digest: str
    path: str
    layer: bool = False
    sha256: str | None = None
    codec: str | None = None
    #: the DiffID recomputed (None: the stream was not read to its end)
    diff_id: str | None = None
    tar_bytes: int = 0
    members: int = 0
    problems: list[DeepProblem] = field(default_factory=list)
    #: bytes of the blob file read (for a progress bar)
    bytes_read: int = 0


@dataclass(frozen=True)
class Skip:
    """A committed layer snapshot that cannot be deep-checked, and why."""

    snapshot: str
    path: str
    why: str


# -- the plan -------------------------------------------------------------------------------------


@dataclass
class _Plan:
    size: int
    layer: bool = False
    diff_ids: dict[tuple[str, str], None] = field(default_factory=dict)
    labels: dict[tuple[str, str], None] = field(default_factory=dict)
    targets: dict[SnapshotTarget, None] = field(default_factory=dict)


def plan_blobs(
    ctd: ContainerdHost, limits: StreamLimits | None = None
) -> tuple[list[BlobJob], list[Skip]]:
    """A job per blob file of the store (every blob is hashed; a layer's is also read as a
    tar against its snapshots), in digest order; and the unpacked layers whose blob is not in
    the content store (nothing to hold their snapshot against)."""
    plans = {d: _Plan(blob.size) for d, blob in ctd.store.blobs.items() if blob.size >= 0}
    skipped: dict[str, Skip] = {}
    for ns in namespaces(ctd):
        for name in sorted(ns.images):
            resolved = ctd.images.get(ns.images[name].target.digest)
            if resolved is None:
                continue
            for m in present_manifests(resolved):
                chain = image_chain(m)
                for n, layer in enumerate(m.layers):
                    diff_id = m.diff_ids[n] if n < len(m.diff_ids) else None
                    targets = list(_targets(ctd, ns, chain[n])) if n < len(chain) else []
                    plan = plans.get(layer.digest)
                    if plan is None:
                        for target in targets:
                            skipped.setdefault(target.fs, _no_blob(target, layer))
                        continue
                    plan.layer = True
                    if diff_id:
                        plan.diff_ids[(diff_id, f"the config of image {ns.name}/{name}")] = None
                    record = ns.content.get(layer.digest)
                    label = record.labels.get(LABEL_UNCOMPRESSED) if record else None
                    if label:
                        plan.labels[(label, ns.name)] = None
                    plan.targets.update(dict.fromkeys(targets))
    jobs = [
        BlobJob(
            digest,
            ctd.store.blobs[digest].path,
            plan.size,
            plan.layer,
            tuple(plan.diff_ids),
            tuple(plan.labels),
            tuple(plan.targets),
            limits,
        )
        for digest, plan in sorted(plans.items())
    ]
    return jobs, sorted(skipped.values(), key=lambda s: s.path)


def _no_blob(target: SnapshotTarget, layer: Descriptor) -> Skip:
    return Skip(target.snapshot, target.fs, f"its layer blob {layer.digest} is not in the store")


def _targets(ctd: ContainerdHost, ns: CtrNamespace, chain_id: str) -> Iterator[SnapshotTarget]:
    """The committed snapshots of ``chain_id`` in ``ns`` whose ``fs/`` is on disk."""
    for sn_name in ns.snapshot_keyed(chain_id):
        sn = ctd.store.snapshotters.get(sn_name)
        record = ns.snapshots[(sn_name, chain_id)]
        if sn is None or sn_name not in _DIRECTORY_SNAPSHOTTERS:
            continue
        backend = sn.snapshots.get(record.name)
        if backend is None or backend.id is None or backend.kind != "committed":
            continue
        found = sn.dirs.get(str(backend.id))
        if found is None or not found.has_fs:
            continue  # reported by the quick checks
        fs = snapshot_fs(ctd, sn_name, backend.id)
        yield SnapshotTarget(fs, f"{ns.name}/{sn_name}/{chain_id}")


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


class _Stream:
    """The decompressed tar read front to back, every byte hashed (the DiffID)."""

    def __init__(self, stream: DecodedStream | PlainStream) -> None:
        self.stream = stream
        self.pos = 0
        self.hash = hashlib.sha256()

    def read(self, size: int) -> bytes:
        data = self.stream.read_at(self.pos, size)
        self.pos += len(data)
        self.hash.update(data)
        return data

    def skip(self, size: int, into: Any = None) -> int:
        """Read ``size`` bytes (fewer at the end), fed to ``into`` too; their count."""
        done = 0
        while done < size:
            data = self.read(min(CHUNK, size - done))
            if not data:
                break
            if into is not None:
                into.update(data)
            done += len(data)
        return done

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


class _Member:
    """A member as the pass compares it: its cleaned path and what the header says."""

    __slots__ = ("kind", "link", "member", "parts", "sha256")

    def __init__(self, member: Member, parts: Parts) -> None:
        self.member = member
        self.parts = parts
        self.kind = member.type
        self.sha256: str | None = None
        self.link: Parts | None = None


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
        reader = _Stream(stream)
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

    def _members(self, reader: _Stream) -> None:
        while True:
            at = reader.pos
            got = self._header(reader)
            if got is None:
                self.complete = True  # the end of the archive (or of the stream, as Go reads)
                return
            if isinstance(got, str):
                self._blob_problem(f"the tar is damaged at byte {at}: {got}", damage="tar")
                return
            member = got
            self.r.members += 1
            data = 0 if member.typeflag in _HEADER_ONLY else max(0, member.size)
            entry = self._entry(member, at)
            digest = hashlib.sha256() if entry is not None and entry.kind == "file" else None
            if reader.skip(data, digest) < data:
                self.cut = f"the tar ends inside member {_text(member.name)[:200]!r} (cut short)"
                return
            reader.skip(-data % BLOCK)
            if entry is not None:
                if digest is not None:
                    entry.sha256 = digest.hexdigest()
                self._compare(entry)

    def _header(self, reader: _Stream) -> Member | str | None:
        """The next member (its extension headers applied), None at the end of the archive,
        or what is wrong with its headers."""
        buf = reader.read(BLOCK)
        if not buf.strip(b"\0"):
            return None  # the end-of-archive block (or the end of the stream: Go reads so too)
        if len(buf) < BLOCK:
            return f"the archive ends inside a header ({len(buf)} of {BLOCK} bytes)"
        for _ in range(_MAX_EXTENSIONS):
            typeflag = buf[-BLOCK + 156 : -BLOCK + 157]
            if typeflag not in _EXTENSIONS:
                break
            try:
                size = int(buf[-BLOCK + 124 : -BLOCK + 136].strip(b" \0") or b"0", 8)
            except ValueError:
                break  # read_member says what is wrong
            if size > _MAX_EXTENSION_DATA:
                return f"an extension header ({typeflag!r}) of {size} bytes"
            buf += reader.read(size + (-size % BLOCK))
            nxt = reader.read(BLOCK)
            if len(nxt) < BLOCK:
                return "the archive ends inside a member's extension headers"
            buf += nxt
        else:
            return f"more than {_MAX_EXTENSIONS} extension headers in front of one member"
        try:
            member, _ = read_member(buf)
        except HeaderError as exc:
            return str(exc)
        return member

    def _entry(self, member: Member, at: int) -> _Member | None:
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
        entry = _Member(member, parts)
        if any(key.startswith("GNU.sparse.") for key in member.pax):
            entry.kind = "sparse"  # PAX sparse: the data is a map and the runs, not the file
        if entry.kind == "hardlink":
            entry.link = clean_name(member.linkname)
            if entry.link is None:
                self._blob_problem(
                    f"member {shown[:200]!r} is a hard link to "
                    f"{_text(member.linkname)[:200]!r}, outside the layer: never looked up",
                    kind="layer-unsafe-path",
                    damage="unsafe-path",
                )
        return entry

    # -- one member against each snapshot ------------------------------------------------------

    def _compare(self, entry: _Member) -> None:
        base = entry.parts[-1] if entry.parts else b""
        for target, cdir in self.dirs:
            if base == TAR_OPAQUE:
                self._opaque(target, cdir, entry.parts[:-1])
            elif base.startswith(_WH):
                self._whiteout(target, cdir, entry, (*entry.parts[:-1], base[len(_WH) :]))
            else:
                self._present(target, cdir, entry)

    def _present(self, target: SnapshotTarget, cdir: ConfinedDir, entry: _Member) -> None:
        parts = entry.parts
        self.seen.add(parts)
        key = (target.fs, parts)
        self.found.pop(key, None)
        st = cdir.lstat(parts)
        if isinstance(st, Refusal):
            self._file(target, parts, _REFUSED[st.kind], _refused(st, entry), st.kind)
            return
        want = _DISK_TYPE.get(entry.kind)
        if entry.kind == "hardlink":
            want = _hardlink_type(cdir, entry)
        if want is not None and stat.S_IFMT(st.st_mode) != want:
            self._file(
                target,
                parts,
                "snapshot-file-type-changed",
                f"is a {kind_of(st.st_mode)}, the layer has a {_word(entry.kind)}",
            )
            return
        what = self._content(cdir, entry, st)
        if what is not None:
            self._file(target, parts, *what)
            return
        if parts:  # the layer root's own metadata is the snapshotter's
            self._metadata(target, cdir, entry, st)

    def _content(
        self, cdir: ConfinedDir, entry: _Member, st: os.stat_result
    ) -> tuple[str, str] | None:
        """The check and message of what differs in the entry's content: a file's size or
        sha256, a link's target, a device's numbers, a hard link's inode."""
        what = self._content_change(cdir, entry, st)
        if what is None:
            return None
        if isinstance(what, Refusal):
            return "snapshot-file-unreadable", f"cannot be read: {what.detail}"
        return "snapshot-file-modified", what

    def _content_change(
        self, cdir: ConfinedDir, entry: _Member, st: os.stat_result
    ) -> str | Refusal | None:
        m = entry.member
        if entry.kind == "file":
            if st.st_size != m.size:
                return f"{st.st_size} bytes in the snapshot, {m.size} in the layer"
            found = _hash_disk(cdir, entry.parts)
            if isinstance(found, Refusal):
                return found
            if found != entry.sha256:
                return f"sha256 {found} in the snapshot, {entry.sha256} in the layer"
        elif entry.kind == "symlink":
            target = cdir.readlink(entry.parts)
            if isinstance(target, Refusal):
                return target
            if target != m.linkname:
                return f"points to {_text(target)!r}, the layer has {_text(m.linkname)!r}"
        elif entry.kind in ("char", "block"):
            dev = (os.major(st.st_rdev), os.minor(st.st_rdev))
            if dev != (m.devmajor, m.devminor):
                return f"device {dev[0]}:{dev[1]}, the layer has {m.devmajor}:{m.devminor}"
        elif entry.kind == "hardlink" and entry.link is not None:
            linked = cdir.lstat(entry.link)
            if not isinstance(linked, Refusal) and linked.st_ino != st.st_ino:
                return f"not a hard link of {_text(m.linkname)!r} (another inode), as in the layer"
        return None

    def _metadata(
        self, target: SnapshotTarget, cdir: ConfinedDir, entry: _Member, st: os.stat_result
    ) -> None:
        """Mode (not of a link), owner and xattrs (not of a hard link: its inode's are the
        file's it links to) against the header: one finding, a mode change first."""
        m = entry.member
        found = []
        mode_changed = (
            entry.kind not in ("symlink", "hardlink") and st.st_mode & 0o7777 != m.mode & 0o7777
        )
        if mode_changed:
            found.append(
                f"mode {st.st_mode & 0o7777:04o} in the snapshot, {m.mode & 0o7777:04o} in the "
                "layer"
            )
        if entry.kind != "hardlink":
            if (st.st_uid, st.st_gid) != (m.uid, m.gid):
                found.append(
                    f"owner {st.st_uid}:{st.st_gid} in the snapshot, {m.uid}:{m.gid} in the layer"
                )
            found += _xattr_changes(cdir, entry.parts, m, self.root)
        if found:
            kind = (
                "snapshot-file-mode-changed" if mode_changed else "snapshot-file-metadata-changed"
            )
            self._file(target, entry.parts, kind, "; ".join(found))

    def _whiteout(
        self, target: SnapshotTarget, cdir: ConfinedDir, entry: _Member, hidden: Parts
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
        shown = _text(b"/".join(parts))
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


#: the check of a member that the snapshot's directory refuses, by the refusal's kind
_REFUSED = {
    "missing": "snapshot-file-missing",
    "unsafe-path": "snapshot-file-type-changed",
    "not-regular": "snapshot-file-type-changed",
    "unreadable": "snapshot-file-unreadable",
}
_DISK_TYPE = {
    "file": stat.S_IFREG,
    "dir": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "char": stat.S_IFCHR,
    "block": stat.S_IFBLK,
    "fifo": stat.S_IFIFO,
    "sparse": stat.S_IFREG,
}


def _hardlink_type(cdir: ConfinedDir, entry: _Member) -> int | None:
    """A hard link is what it links to (a regular file, mostly)."""
    if entry.link is None:
        return None
    linked = cdir.lstat(entry.link)
    return None if isinstance(linked, Refusal) else stat.S_IFMT(linked.st_mode)


def _word(kind: str) -> str:
    return {"char": "character device", "block": "block device", "dir": "directory"}.get(
        kind, "regular file" if kind == "file" else kind
    )


def _refused(refusal: Refusal, entry: _Member) -> str:
    if refusal.kind == "missing":
        return f"the layer has a {_word(entry.kind)}, the snapshot has none"
    return refusal.detail


def _hash_disk(cdir: ConfinedDir, parts: Parts) -> str | Refusal:
    opened = cdir.open_regular(parts)
    if isinstance(opened, Refusal):
        return opened
    handle, _ = opened
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    try:
        while n := read_into(handle, buf):
            digest.update(view[:n])
    except OSError as exc:
        return Refusal("unreadable", (exc.strerror or str(exc)).lower())
    finally:
        close_handle(handle)
    return digest.hexdigest()


def _xattr_changes(cdir: ConfinedDir, parts: Parts, member: Member, root: bool) -> list[str]:
    """The xattrs that differ between the tar header and the snapshot's entry (those the
    snapshot keeps of its own left out; ``trusted.*`` only when running as root)."""
    tar = {k[len(_PAX_XATTR) :]: v for k, v in member.pax.items() if k.startswith(_PAX_XATTR)}
    disk = _disk_xattrs(cdir, parts)
    if disk is None:
        return []
    out = []
    for name in sorted({*tar, *disk}):
        if name.startswith(_OWN_XATTR_PREFIXES) or (name == _SELINUX and name not in tar):
            continue
        if not root and name.startswith("trusted."):
            continue
        here, there = disk.get(name), tar.get(name)
        if here != there:
            out.append(f"xattr {name} {_value(here)} in the snapshot, {_value(there)} in the layer")
    return out


def _disk_xattrs(cdir: ConfinedDir, parts: Parts) -> dict[str, bytes] | None:
    """Every xattr of the entry (never followed), None when they cannot be listed."""
    parent = cdir.dir_fd(parts[:-1])
    if isinstance(parent, Refusal):
        return None
    where = b"/proc/self/fd/%d/%s" % (parent, parts[-1])
    try:
        names = os.listxattr(where, follow_symlinks=False)
        return {n: os.getxattr(where, n, follow_symlinks=False) for n in names}
    except OSError:
        return None


def _value(value: bytes | None) -> str:
    if value is None:
        return "none"
    text = value.decode("utf-8", "replace")
    return repr(text) if text.isprintable() and len(text) <= 80 else value[:64].hex()


def _names(items: list[str]) -> str:
    unique = list(dict.fromkeys(items))
    text = ", ".join(unique[:3])
    return text + (f" and {len(unique) - 3} more" if len(unique) > 3 else "")


def _text(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")
