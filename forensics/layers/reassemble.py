"""Deep verification of one layer: the original tar rebuilt from tar-split + the layer's files.

The tar stream is rebuilt the way tar-split's ``WriteOutputTarStream`` does (segments verbatim,
file data read from the layer's directory), hashed with sha256 for the DiffID, and every file
checked against its crc64 and size (``shared/reference/tar-split.md`` §5). On top of what
dockerd does, every entry is checked, not only those with data: each tar header is decoded and
its checksum verified, directories, symlinks (and their targets), devices and whiteouts are
looked up, permission bits compared, and — where the directory holds exactly the layer's diff
(overlay2, aufs) — files that the tar does not hold are reported as extra.

Every read goes through the layer's :class:`~forensics.layers.content.LayerTree`: its directory
(:class:`~forensics.layers.confine.ConfinedDir`) or, on devicemapper, the filesystem inside its
thin device (:mod:`forensics.layers.devices`). A name that climbs out of the layer, or a
symlink anywhere on the way, is reported and never read. Where the tree keeps owners, times and
xattrs exactly (a filesystem read as it is), those are held against each tar header too; and
a full-rootfs layer in a device is held against its parent layer's
(:mod:`forensics.layers.changes`).

What a crafted layer can make this cost is bounded: the tar-split stream by
:class:`~forensics.formats.tarsplit.Limits` (from the layer's recorded size), paths by
``PATH_MAX`` (a deeper member is reported, not looked up), and nothing recurses; per member
the pass keeps its record and its cleaned name, and the diff directory's listing is a tree of
names (:mod:`forensics.layers.listing`).

:func:`verify_layer` takes plain, picklable inputs (a :class:`LayerJob`) and opens its own
:class:`~forensics.evidence.Evidence`, so layers can be spread over worker processes.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from forensics.drivers import (
    AUFS_WHITEOUTS,
    OVERLAY_WHITEOUTS,
    TAR_OPAQUE,
    TAR_WHITEOUT_PREFIX,
    Whiteouts,
    layout_of,
)
from forensics.evidence import Evidence, ReadFailure, RootError
from forensics.formats.crc64 import crc64_iso as _crc64
from forensics.formats.tarsplit import FILE, SEGMENT, Limits, TarSplitDamage, iter_fields
from forensics.formats.ustar import BLOCK, HeaderError, Member, plain_member, read_member
from forensics.layers.changes import check_changes
from forensics.layers.confine import (
    PATH_MAX,
    Parts,
    Refusal,
    clean_name,
    kind_of,
    shorten,
    too_deep,
)
from forensics.layers.content import (
    DISK_TYPE,
    FileHandle,
    LayerTree,
    StatLike,
    close_handle,
    disk_type,
    is_opaque,
    open_layer_dir,
    read_into,
)
from forensics.layers.devices import ContentError, DeviceRef, layer_devices, open_device_dir
from forensics.layers.listing import Listing, walk
from forensics.layers.report import FileRecord, LayerProblem, LayerReport
from forensics.layers.tarsum import TarSum, TarSumError, parse_label
from forensics.layers.treedir import TreeDir
from forensics.model import Host, Layer

__all__ = [
    "LayerJob",
    "Skipped",
    "content_dir",
    "layer_jobs",
    "plan_layers",
    "verify_layer",
]

#: tar-split files are metadata; this bounds what is read of one (compressed)
TAR_SPLIT_LIMIT = 1024 * 1024 * 1024
#: read size for file data
CHUNK = 1024 * 1024
#: segment bytes kept to decode the next header (PAX records with big xattrs fit easily)
_PENDING_LIMIT = 16 * 1024 * 1024
#: the image JSON hashed into a pushed TarSum is metadata too
_JSON_LIMIT = 64 * 1024 * 1024
#: problems of one kind named per layer (duplicates, damaged headers: one per member of a
#: crafted stream); the rest are counted in one more
_PROBLEMS_PER_KIND = 1000

_OPAQUE = TAR_OPAQUE
_CAPABILITY = "security.capability"
_CAPABILITY_PAX = "SCHILY.xattr." + _CAPABILITY
#: names as text: bytes that are not UTF-8 kept as surrogate escapes
_ESCAPED = ("utf-8", "surrogateescape")
_WH = TAR_WHITEOUT_PREFIX
#: aufs keeps its own bookkeeping at the top of each branch
_AUFS_META = AUFS_WHITEOUTS.own_files


@dataclass(frozen=True)
class LayerJob:
    """Everything :func:`verify_layer` needs, as plain values (paths relative to ``root``).

    ``driver`` is the storage driver (``overlay2``, ``aufs``, ``overlay``, ``vfs``, …): it says
    whether ``content_dir`` holds only the layer's diff (overlay2, aufs: whiteouts on disk,
    extra files detectable) or a full root file system (overlay ``root/``, vfs: only the files
    the tar-split names are looked at).

    ``tarsum`` (legacy layers): the TarSum that the file ``checksum`` records, and
    ``tarsum_payload`` the image JSON file that a v1 registry push hashed with it.

    ``recorded_size``: the layer's recorded size (layerdb ``size``, legacy ``layersize``),
    None when none is recorded; it bounds what the tar-split may hold
    (:class:`~forensics.formats.tarsplit.Limits`).

    ``device`` (devicemapper): the thin device whose ``rootfs/`` holds the layer's files
    (``content_dir`` is then where Docker mounts it, for messages). Such a layer is a full
    root file system: with ``compare_parent`` it is also held against its parent layer's,
    ``parent_device`` (None: an empty tree, for a first layer — or, with ``parent_problem``
    saying why, a parent whose device is not known).
    """

    root: str
    layer_id: str
    driver: str
    tar_split: str
    content_dir: str
    recorded_diff_id: str | None = None
    tarsum: str | None = None
    checksum: str | None = None
    tarsum_payload: str | None = None
    recorded_size: int | None = None
    device: DeviceRef | None = None
    parent_device: DeviceRef | None = None
    compare_parent: bool = False
    parent_problem: str | None = None


@dataclass(frozen=True)
class Skipped:
    """A layer that :func:`verify_layer` cannot rebuild, and why (``reason``): ``driver`` (a
    driver without a known place for its files), ``no-tar-data`` (a legacy layer without
    ``tar-data.json.gz``: created by Docker ≤ 1.7), ``no-pool`` (devicemapper on a pool that
    is no pair of files in ROOT: direct-lvm) or ``no-device`` (devicemapper without a usable
    device record for the layer)."""

    layer_id: str
    driver: str
    reason: str


def content_dir(driver: str, cache_id: str) -> str | None:
    """The directory (relative to ROOT) holding the files of the layer ``cache_id`` under
    ``driver``, or None for drivers whose files are not plain files (devicemapper) or that
    have no row in the driver table."""
    layout = layout_of(driver)
    return layout.content(cache_id) if layout is not None and layout.content else None


def layer_jobs(host: Host) -> list[LayerJob]:
    """One job per layer of ``host`` (and of the legacy era of a migrated root) that has a
    tar-split and a content directory, in the host's layer order."""
    return plan_layers(host)[0]


def plan_layers(host: Host) -> tuple[list[LayerJob], list[Skipped]]:
    """The jobs of :func:`layer_jobs`, and the layers that cannot be rebuilt. A modern layer
    without tar-split or cache-id is in neither: the quick checks report it already."""
    jobs: list[LayerJob] = []
    skipped: list[Skipped] = []
    for h in (host, host.legacy):
        if h is None or not h.driver:
            continue
        for layer in h.layers.values():
            job = _job_for(h, layer)
            if isinstance(job, LayerJob):
                jobs.append(job)
            elif job is not None:
                skipped.append(job)
    return jobs, skipped


def _job_for(host: Host, layer: Layer) -> LayerJob | Skipped | None:
    legacy = host.image_store == "graph" or layer.path.startswith("graph/")
    cache_id = layer.id if legacy else layer.cache_id
    driver = host.driver or ""
    content = content_dir(driver, cache_id) if cache_id else None
    devices = None
    layout = layout_of(driver)
    if layout is not None and layout.thin is not None and cache_id:
        devices = layer_devices(host, layer, cache_id, legacy)
        if isinstance(devices, str):
            return Skipped(layer.id, driver, devices)
        content = devices.device.mount_dir
    if cache_id and content is None:
        return Skipped(layer.id, driver, "driver")
    if not layer.has_tar_split or content is None:
        return Skipped(layer.id, driver, "no-tar-data") if legacy else None
    name = "tar-data.json.gz" if legacy else "tar-split.json.gz"
    recorded = layer.migration_diff_id if legacy else layer.diff_id
    label = parse_label(layer.checksum or "") if legacy else None
    return LayerJob(
        root=host.root,
        layer_id=layer.id,
        driver=driver,
        tar_split=f"{layer.path}/{name}",
        content_dir=content,
        recorded_diff_id=recorded,
        tarsum=str(label) if label else None,
        checksum=f"{layer.path}/checksum" if label else None,
        tarsum_payload=f"{layer.path}/json" if label else None,
        recorded_size=layer.size if layer.size is not None and layer.size >= 0 else None,
        device=devices.device if devices else None,
        parent_device=devices.parent if devices else None,
        compare_parent=devices is not None,
        parent_problem=devices.parent_problem if devices else None,
    )


def verify_layer(
    job: LayerJob,
    *,
    progress: Callable[[int], None] | None = None,
    sink: Callable[[memoryview], object] | None = None,
    ev: Evidence | None = None,
) -> LayerReport:
    """Rebuild and check the layer of ``job``; never raises for bad evidence.

    ``progress(n)`` is called with the byte count of each file read (for a progress bar in
    bytes); ``sink(chunk)``, if given, receives the rebuilt tar stream (e.g. ``out.write``;
    the chunk is only valid during the call). ``ev``: an Evidence of ``job.root`` to reuse
    (saves opening ROOT again per layer, which matters on hosts of many small layers).
    """
    report = LayerReport(
        layer_id=job.layer_id,
        driver=job.driver,
        tar_split=job.tar_split,
        content_dir=job.content_dir,
        recorded_diff_id=job.recorded_diff_id,
    )
    if ev is None:
        try:
            ev = Evidence(job.root)
        except RootError as exc:  # the CLI has checked ROOT already: a vanished root
            report.problems.append(LayerProblem("root-unreadable", "", str(exc)))
            return report
    try:
        data = ev.read_bytes(job.tar_split, TAR_SPLIT_LIMIT)
    except ReadFailure as failure:
        report.problems.append(
            LayerProblem("tar-split-missing", job.tar_split, str(failure), failure.kind)
        )
        return report
    layout = layout_of(job.driver)
    style = layout.holds if layout is not None and layout.content else "rootfs"
    whiteouts = layout.whiteouts if layout is not None else None
    cdir = _open_content(ev, job, report)
    tarsum = _tarsum_for(job, report)
    if tarsum is not None:
        sink = _tee(tarsum, sink)
    try:
        pass_ = _Reassembly(report, cdir, style, whiteouts or OVERLAY_WHITEOUTS, progress, sink)
        if job.device is not None:
            pass_.absent = "the layer's device cannot be read"
        pass_.run(io.BytesIO(data), job.recorded_size)
        if cdir is not None and job.compare_parent and report.complete:
            check_changes(ev, job, report, cdir, pass_.seen)
        if isinstance(cdir, TreeDir):
            _tree_problems(report, cdir)
    finally:
        if cdir is not None:
            cdir.close()
    if tarsum is not None and report.complete:
        _check_tarsum(job, report, tarsum, ev)
    return report


def _open_content(ev: Evidence, job: LayerJob, report: LayerReport) -> LayerTree | None:
    """The layer's tree: its directory, or the filesystem in its thin device; None (and a
    problem said) when it cannot be opened."""
    if job.device is not None:
        try:
            tree = open_device_dir(ev, job.device)
        except ContentError as exc:
            what = f"layer {job.layer_id}: its files cannot be read: {exc}"
            report.problems.append(LayerProblem("content-unreadable", job.content_dir, what))
            return None
        report.source = tree.source
        return tree
    try:
        return open_layer_dir(ev, job.content_dir)
    except ReadFailure as failure:
        report.problems.append(
            LayerProblem("content-dir-missing", job.content_dir, str(failure), failure.kind)
        )
        return None


def _tree_problems(report: LayerReport, tree: TreeDir) -> None:
    """What the filesystem reader met besides the members (damaged directories, damaged
    mappings of the device): one problem each."""
    for problem in tree.problems:
        what = f"layer {report.layer_id}: in {tree.source}: {problem}"
        report.problems.append(LayerProblem("content-damaged", report.content_dir, what))


# -- TarSum (legacy graph checksums) -------------------------------------------------------------


def _tarsum_for(job: LayerJob, report: LayerReport) -> TarSum | None:
    label = parse_label(job.tarsum or "")
    if label is None:
        return None
    report.recorded_tarsum = str(label)
    return TarSum(label.version, label.hash)


def _tee(
    tarsum: TarSum, sink: Callable[[memoryview], object] | None
) -> Callable[[memoryview], object]:
    """A sink that feeds the TarSum (which keeps its own error) and then ``sink``."""

    def feed(chunk: memoryview) -> None:
        if tarsum.error is None:
            try:
                tarsum.update(chunk)
            except TarSumError:
                pass  # kept in tarsum.error, reported at the end
        if sink is not None:
            sink(chunk)

    return feed


def _check_tarsum(job: LayerJob, report: LayerReport, tarsum: TarSum, ev: Evidence) -> None:
    """Hold the TarSum of the rebuilt tar against ``graph/<id>/checksum``, computed for the tar
    alone and with the image JSON first (``Sum(jsonRaw)`` of the v1 registry push)."""
    where = job.checksum or report.tar_split
    try:
        tarsum.close()
    except TarSumError as exc:
        report.tarsum_detail = str(exc)
        if exc.kind != "unsupported":  # a GNU sparse member is reported as unverifiable
            _tarsum_problem(report, where, f"the rebuilt tar is no readable tar ({exc})")
        return
    candidates = {"none": tarsum.sum()}
    if job.tarsum_payload:
        try:
            candidates["json"] = tarsum.sum(ev.read_bytes(job.tarsum_payload, _JSON_LIMIT))
        except ReadFailure as failure:
            report.tarsum_detail = f"the image JSON is unreadable: {failure}"
    for payload, value in candidates.items():
        if value == report.recorded_tarsum:
            report.tarsum, report.tarsum_payload = value, payload
            return
    report.tarsum = candidates["none"]
    found = " or ".join(f"{v} ({_PAYLOADS[k]})" for k, v in candidates.items())
    _tarsum_problem(report, where, f"the rebuilt tar's TarSum is {found}")


_PAYLOADS = {"none": "the tar alone", "json": "with the image JSON"}


def _tarsum_problem(report: LayerReport, where: str, found: str) -> None:
    report.problems.append(
        LayerProblem(
            "tarsum-mismatch",
            where,
            f"layer {report.layer_id}: {found}; {where} records {report.recorded_tarsum}",
        )
    )


class _Reassembly:
    """One pass over a tar-split stream: hash, read, check, record."""

    def __init__(
        self,
        report: LayerReport,
        cdir: LayerTree | None,
        style: str,
        whiteouts: Whiteouts,
        progress: Callable[[int], None] | None,
        sink: Callable[[memoryview], object] | None,
    ) -> None:
        self.r = report
        self.cdir = cdir
        #: owners, times and xattrs can be held against the tar headers
        self.exact = cdir is not None and cdir.exact_metadata
        #: why a member is missing when the layer's files cannot be read at all
        self.absent = "the layer directory is missing"
        self.style = style
        #: how the diff marks deletions and opaque directories on disk (``overlay``, ``aufs``)
        self.whiteouts = whiteouts.name
        self.progress = progress
        self.sink = sink
        self.hash = hashlib.sha256()
        self.buf = bytearray(CHUNK)
        self.view = memoryview(self.buf)
        self.pending = bytearray()
        self.pad = 0  # padding that follows the previous file's data
        #: the cleaned name of every member (``a/b``): duplicates, and at the end extras
        self.seen: set[bytes] = set()
        #: the diff dir's entries and their types (overlay2, aufs): for extras, and to open
        #: listed regular files without an lstat each
        self.listing: Listing | None = walk(cdir) if cdir is not None and style == "diff" else None
        self.lossy = 0
        self.unknown_entries = 0
        self.position_gap = False
        #: problems by kind, named or not (:data:`_PROBLEMS_PER_KIND`)
        self.problem_counts: Counter[str] = Counter()

    # -- the stream --------------------------------------------------------------------------

    def run(self, stream: io.BytesIO, recorded_size: int | None) -> None:
        """The entries in order, within the bounds that the layer's ``recorded_size`` and
        its listing set. Segments are handled inline (one per member, and the hot loop of a
        layer of many small files): hashed, passed on, kept for the next header."""
        r = self.r
        update, sink, pending, file_entry = self.hash.update, self.sink, self.pending, self._file
        limits = Limits.for_layer(recorded_size, self.listing.count if self.listing else 0)
        try:
            for kind, position, payload, name, size, lossy in iter_fields(stream, limits):
                if position != r.entries:
                    self._position_gap(position)
                r.entries += 1
                if kind == FILE:
                    file_entry(payload, name or b"", size, lossy)
                    continue
                if kind != SEGMENT:
                    self._unknown_entry(kind, position)
                    continue
                payload = payload or b""
                update(payload)
                r.tar_bytes += len(payload)
                if sink is not None:
                    sink(memoryview(payload))
                if len(pending) < _PENDING_LIMIT:
                    pending += payload
        except TarSplitDamage as damage:
            r.problems.append(
                LayerProblem(
                    "tar-split-damaged",
                    r.tar_split,
                    f"tar-split of layer {r.layer_id}: {damage}",
                    damage.kind,
                )
            )
        else:
            r.complete = True
            r.diff_id = "sha256:" + self.hash.hexdigest()
            self._check_trailer()
            if r.diff_id_matches is False:
                self._problem(
                    "diff-id-mismatch",
                    r.tar_split,
                    f"the rebuilt tar hashes to {r.diff_id}, recorded {r.recorded_diff_id}",
                )
        self._finish()

    def _unknown_entry(self, kind: int, position: int) -> None:
        """An entry of a type tar-split never writes: its reassembly skips it, and so do we
        (named once per layer, at the first)."""
        self.unknown_entries += 1
        if self.unknown_entries == 1:
            self._problem(
                "unknown-entry",
                self.r.tar_split,
                f"the entry at position {position} has type {kind}, which tar-split never "
                "writes: skipped, as Docker's reassembly skips it",
            )

    def _position_gap(self, position: int) -> None:
        r = self.r
        if not self.position_gap:
            self.position_gap = True
            r.problems.append(
                LayerProblem(
                    "position-gap",
                    r.tar_split,
                    f"entry {r.entries} has position {position}: entries lost or reordered",
                )
            )

    def _file(self, crc: bytes | None, name: bytes, size: int, lossy: bool) -> None:
        """A file entry (the fields of :data:`~forensics.formats.tarsplit.Fields`): its header,
        its record and checks."""
        member, header_error = self._header(name, size, lossy)
        self.pending.clear()
        self.pad = -size % BLOCK
        if lossy:
            self.lossy += 1
            if member is not None:  # the header keeps the true bytes that the JSON lost
                name = member.name
        self.r.file_bytes += size
        record = self._record(crc, name, size, member, header_error)
        self.r.files.append(record)

    def _header(self, name: bytes, size: int, lossy: bool) -> tuple[Member | None, str]:
        """The tar member described by the segment bytes before the file entry ``name``, or
        an error."""
        pending = bytes(self.pending)
        member = plain_member(pending, self.pad)  # read_member's first step, without a call
        end = self.pad + BLOCK
        if member is None:
            try:
                member, end = read_member(pending, self.pad)
            except HeaderError as exc:
                return None, f"tar header: {exc}"
        if end != len(pending):
            return member, f"{len(pending) - end} unexpected bytes after the tar header"
        if member.size != size and member.typeflag != b"S":
            return member, f"tar header says {member.size} bytes, tar-split {size}"
        if member.name != name and not lossy:
            shown = member.name.decode("utf-8", "backslashreplace")
            return member, f"tar header names {shown!r}"
        return member, ""

    def _check_trailer(self) -> None:
        """After the last member: its padding, then two zero blocks (trailing bytes may
        follow: record padding)."""
        tail = bytes(self.pending[self.pad : self.pad + 2 * BLOCK])
        if len(tail) < 2 * BLOCK or tail.strip(b"\0"):
            self.r.problems.append(
                LayerProblem(
                    "tar-trailer-damaged",
                    self.r.tar_split,
                    f"layer {self.r.layer_id}: the tar stream does not end with two zero blocks",
                )
            )

    # -- one entry ---------------------------------------------------------------------------

    def _record(
        self, crc: bytes | None, name: bytes, size: int, member: Member | None, header_error: str
    ) -> FileRecord:
        parts = clean_name(name)
        joined = b"/".join(parts) if parts is not None else name
        deep = parts is not None and too_deep(len(joined))
        shown = joined.decode("utf-8", "surrogateescape")
        if deep:
            shown = shorten(shown)
        kind = _entry_type(name, member, size)
        base = self.r.content_dir
        rec = FileRecord(  # positional (FileRecord's field order): one per member, hot
            shown,  # path
            f"{base}/{shown}" if parts else base,  # disk_path
            kind,  # type
            size,
            member.mode & 0o7777 if member is not None else None,  # mode
            crc.hex() if crc else None,  # crc64
            "ok",  # status
            "",  # detail
            member.linkname.decode(*_ESCAPED) if member and member.linkname else None,
        )
        if parts is None:
            rec.status, rec.detail = "unsafe-path", "the name climbs out of the layer directory"
        else:
            seen = self.seen
            known = len(seen)
            seen.add(joined)
            if len(seen) == known:
                self._problem("duplicate-path", rec.disk_path, f"/{shown} is in the tar twice")
            if deep:
                rec.status = "too-deep"
                rec.detail = _too_deep_detail(len(joined), joined.count(b"/") + 1)
            elif self.cdir is None:
                rec.status, rec.detail = "missing", self.absent
            elif size:
                self._check_data(rec, parts, member)
            else:
                self._check_empty(rec, parts, member, kind)
        if header_error:
            self._problem("tar-header-damaged", self.r.tar_split, f"/{shown}: {header_error}")
            if rec.status == "ok":
                rec.status, rec.detail = "unreadable-header", header_error
        return rec

    def _problem(self, kind: str, path: str, message: str) -> None:
        counts = self.problem_counts
        counts[kind] += 1
        if counts[kind] <= _PROBLEMS_PER_KIND:
            self.r.problems.append(LayerProblem(kind, path, f"layer {self.r.layer_id}: {message}"))

    def _problems_not_named(self) -> None:
        """One more problem per kind that had more than :data:`_PROBLEMS_PER_KIND`."""
        for kind, count in self.problem_counts.items():
            if count > _PROBLEMS_PER_KIND:
                self.r.problems.append(
                    LayerProblem(
                        kind,
                        self.r.tar_split,
                        f"layer {self.r.layer_id}: {count - _PROBLEMS_PER_KIND:,} more "
                        f"{kind} problems (the first {_PROBLEMS_PER_KIND:,} are named)",
                    )
                )

    def _check_data(self, rec: FileRecord, parts: Parts, member: Member | None) -> None:
        """A member with data: read it into the stream; crc64, size and mode compared. A file
        longer than the layer records is not read: a sparse file of terabytes would take hours
        to read as zeros, and its size alone makes it ``size-changed``."""
        assert self.cdir is not None
        listed = self.listing is not None and self.listing.kind(parts) == "file"
        opened = self.cdir.open_regular(parts, listed_regular=listed)
        if isinstance(opened, Refusal):
            _refused(rec, opened)
            return
        handle, st = opened
        if st.st_size > rec.size and (member is None or member.typeflag != b"S"):
            close_handle(handle)  # longer than the layer records: its size says it all
            rec.status, rec.found_size = "size-changed", st.st_size
            rec.detail = f"{st.st_size} bytes on disk, {rec.size} in the layer"
            return
        try:
            size, crc = self._stream_file(handle)
        except OSError as exc:
            rec.status, rec.detail = "unreadable", (exc.strerror or str(exc)).lower()
            return
        finally:
            close_handle(handle)
        self.r.files_read += 1
        self.r.bytes_read += size
        if self.progress is not None:
            self.progress(size)
        found = f"{crc:016x}"
        if member is not None and member.typeflag == b"S":
            rec.status, rec.detail = "unverifiable", "GNU sparse member: the tar holds it compacted"
        elif size != rec.size:
            rec.status, rec.found_size, rec.found_crc64 = "size-changed", size, found
            rec.detail = f"{size} bytes on disk, {rec.size} in the layer"
        elif found != rec.crc64:
            rec.status, rec.found_crc64 = "modified", found
            rec.detail = (
                f"crc64 {found}, the layer recorded {rec.crc64}"
                if rec.crc64 is not None
                else f"crc64 {found}, the layer recorded none (Go's reassembly fails on that)"
            )
        elif rec.mode is not None and st.st_mode & 0o7777 != rec.mode:  # no call when equal
            self._check_mode(rec, st.st_mode)
        if self.exact and rec.status == "ok" and member is not None:
            self._check_metadata(rec, parts, st, member)

    def _stream_file(self, handle: FileHandle) -> tuple[int, int]:
        """Read a whole file into the stream; its length and crc64. Reads go into one reused
        buffer (a fresh ``bytes`` per read costs more than the copy); most files of a
        directory take one ``readv``."""
        if not isinstance(handle, int):
            return self._stream_object(handle)
        fd = handle
        buf, view, update, sink = self.buf, self.view, self.hash.update, self.sink
        n = os.readv(fd, (buf,))
        chunk = view[:n]
        update(chunk)
        crc = _crc64(chunk, 0)
        if sink is not None:
            sink(chunk)
        size = n
        while n == CHUNK:  # a short read of a regular file is its end
            n = os.readv(fd, (buf,))
            chunk = view[:n]
            update(chunk)
            crc = _crc64(chunk, crc)
            if sink is not None:
                sink(chunk)
            size += n
        self.r.tar_bytes += size
        return size, crc

    def _stream_object(self, handle: BinaryIO) -> tuple[int, int]:
        """:meth:`_stream_file` for a file object (a file of a tree): read to its end."""
        buf, view, update, sink = self.buf, self.view, self.hash.update, self.sink
        size = crc = 0
        while n := read_into(handle, buf):
            chunk = view[:n]
            update(chunk)
            crc = _crc64(chunk, crc)
            if sink is not None:
                sink(chunk)
            size += n
        self.r.tar_bytes += size
        return size, crc

    def _check_empty(self, rec: FileRecord, parts: Parts, member: Member | None, kind: str) -> None:
        """A member without data (directory, link, device, whiteout, empty file)."""
        assert self.cdir is not None
        if kind == "opaque":
            self._check_opaque(rec, parts)
        elif kind == "whiteout":
            self._check_whiteout(rec, parts)
        else:
            self._check_present(rec, parts, member, kind)

    def _check_present(
        self, rec: FileRecord, parts: Parts, member: Member | None, kind: str
    ) -> None:
        assert self.cdir is not None
        st = self.cdir.lstat(parts)
        if isinstance(st, Refusal):
            _refused(rec, st)
            return
        want = DISK_TYPE.get(kind)
        fmt = stat.S_IFMT(st.st_mode)
        if kind == "hardlink":
            want = fmt if fmt != stat.S_IFDIR else stat.S_IFREG
        if want is None:  # unknown type (no header): presence is all we can check
            return
        if fmt != want:
            rec.status, rec.found_mode = "type-changed", st.st_mode & 0o7777
            rec.detail = f"is a {kind_of(st.st_mode)}, the layer has a {kind}"
            return
        if kind == "file" and st.st_size:
            rec.status, rec.found_size = "size-changed", st.st_size
            rec.detail = f"{st.st_size} bytes on disk, an empty file in the layer"
        elif kind == "symlink":
            self._check_link(rec, parts)
        elif kind in ("char", "block") and member is not None:
            dev = (os.major(st.st_rdev), os.minor(st.st_rdev))
            if dev != (member.devmajor, member.devminor):
                rec.status = "modified"
                rec.detail = f"device {dev[0]}:{dev[1]}, the layer has "
                rec.detail += f"{member.devmajor}:{member.devminor}"
        if rec.status == "ok" and kind != "symlink" and parts:
            self._check_mode(rec, st.st_mode)
        if self.exact and rec.status == "ok" and member is not None and parts:
            self._check_metadata(rec, parts, st, member)

    def _check_metadata(self, rec: FileRecord, parts: Parts, st: StatLike, member: Member) -> None:
        """Where the tree keeps them exactly: owner, mtime (not of a directory: Docker's
        changes ignore it) and a regular file's ``security.capability``, held against the tar
        header."""
        found = []
        if (st.st_uid, st.st_gid) != (member.uid, member.gid):
            found.append(
                f"owner {st.st_uid}:{st.st_gid} on disk, {member.uid}:{member.gid} in the layer"
            )
        if not stat.S_ISDIR(st.st_mode) and not _same_mtime(st.st_mtime_ns, member.mtime):
            found.append(
                f"mtime {_seconds(st.st_mtime_ns)} on disk, {member.mtime:.9g} in the layer"
            )
        if stat.S_ISREG(st.st_mode):
            assert self.cdir is not None
            disk = self.cdir.xattr(parts, _CAPABILITY)
            tar = member.pax.get(_CAPABILITY_PAX) if member.pax else None
            if disk != tar:
                found.append(f"{_CAPABILITY} {_hex(disk)} on disk, {_hex(tar)} in the layer")
        if found:
            rec.status, rec.found_mode = "metadata-changed", st.st_mode & 0o7777
            rec.detail = "; ".join(found)

    def _check_link(self, rec: FileRecord, parts: Parts) -> None:
        assert self.cdir is not None
        target = self.cdir.readlink(parts)
        if isinstance(target, Refusal):
            _refused(rec, target)
            return
        found = _text(target)
        if rec.linkname is not None and found != rec.linkname:
            rec.status = "modified"
            rec.detail = f"points to {found!r}, the layer has {rec.linkname!r}"

    def _check_mode(self, rec: FileRecord, disk_mode: int) -> None:
        if rec.mode is not None and disk_mode & 0o7777 != rec.mode:
            rec.status, rec.found_mode = "mode-changed", disk_mode & 0o7777
            rec.detail = f"mode {disk_mode & 0o7777:04o} on disk, {rec.mode:04o} in the layer"

    def _check_whiteout(self, rec: FileRecord, parts: Parts) -> None:
        """``.wh.NAME``: overlay keeps a 0:0 char device NAME, aufs the ``.wh.NAME`` file
        itself; in a full rootfs (vfs, overlay v1) NAME must simply be absent."""
        assert self.cdir is not None
        if self.style == "diff" and self.whiteouts == "aufs":
            self._check_present(rec, parts, None, "file")
            return
        target = (*parts[:-1], parts[-1][len(_WH) :])
        st = self.cdir.lstat(target)
        if self.style == "rootfs":
            if not isinstance(st, Refusal):
                rec.status = "extra"
                rec.detail = f"deleted by this layer, but present ({kind_of(st.st_mode)})"
            return
        if isinstance(st, Refusal):
            _refused(rec, st)
            if rec.status == "missing":
                rec.detail = "the whiteout (a 0:0 character device) is missing"
        elif not stat.S_ISCHR(st.st_mode) or st.st_rdev != 0:
            rec.status = "type-changed"
            rec.detail = f"a {kind_of(st.st_mode)} where the whiteout (0:0 char device) should be"

    def _check_opaque(self, rec: FileRecord, parts: Parts) -> None:
        """``DIR/.wh..wh..opq``: aufs keeps the file, overlay an xattr on DIR."""
        assert self.cdir is not None
        if self.style == "rootfs":
            return  # the old contents are simply absent from the copy
        if self.whiteouts == "aufs":
            self._check_present(rec, parts, None, "file")
            return
        st = self.cdir.lstat(parts[:-1])
        if not isinstance(st, Refusal) and not stat.S_ISDIR(st.st_mode):
            st = _not_a_directory(self.cdir, parts[:-1], st.st_mode)
        if isinstance(st, Refusal):
            _refused(rec, st)
            return
        if is_opaque(self.cdir, parts[:-1]):
            return
        if os.geteuid() != 0:
            rec.status = "unverifiable"
            rec.detail = "the opaque xattr (trusted.overlay.opaque) is readable by root only"
            return
        rec.status = "missing"
        rec.detail = (
            "the directory is not marked opaque (no trusted.overlay.opaque=y; a copy made "
            "without xattrs loses it)"
        )

    # -- the end -------------------------------------------------------------------------------

    def _finish(self) -> None:
        if self.lossy:
            self._problem(
                "lossy-name",
                self.r.tar_split,
                f"{self.lossy} names were stored with replacement characters (tar-split < 0.9.10)",
            )
        listing = self.listing
        if listing is not None and listing.deep:
            self._listed_too_deep(listing)
        if listing is not None and self.cdir is not None and self.r.complete:
            self._expect_members(listing)
            self.r.files.extend(self._extras(listing))
        self._problems_not_named()

    def _listed_too_deep(self, listing: Listing) -> None:
        """Entries of the diff directory beyond PATH_MAX: one problem names the first."""
        first = _text(b"/".join(listing.first_deep))
        where = f"{self.r.content_dir}/{shorten(first)}"
        count = f"{listing.deep:,} entr{'ies lie' if listing.deep != 1 else 'y lies'}"
        self._problem(
            "path-too-deep",
            where,
            f"{count} deeper than Linux allows (a path from the layer root longer than "
            f"PATH_MAX, {PATH_MAX} bytes), the first /{shorten(first)} "
            f"({len(listing.first_deep):,} components): not checked, nor anything below",
        )

    def _expect_members(self, listing: Listing) -> None:
        """Mark in the listing what the members account for: every member (an overlay
        whiteout as the name it hides, an opaque marker as its directory) and every directory
        above one."""
        overlay = self.whiteouts == "overlay"
        expect = listing.expect
        for joined in self.seen:
            parts = tuple(joined.split(b"/")) if joined else ()
            if overlay and parts and parts[-1].startswith(_WH):
                parts = _on_overlay(parts)
            expect(parts)

    def _extras(self, listing: Listing) -> Iterator[FileRecord]:
        """Files in the diff directory that the tar-split does not account for."""
        assert self.cdir is not None
        skip = _AUFS_META if self.whiteouts == "aufs" else ()
        for parts in listing.unexpected(skip):
            st = self.cdir.lstat(parts)
            if isinstance(st, Refusal):
                continue  # gone since the listing
            shown = _text(b"/".join(parts))
            yield FileRecord(
                path=shown,
                disk_path=f"{self.r.content_dir}/{shown}",
                type=disk_type(st.st_mode),
                size=st.st_size if stat.S_ISREG(st.st_mode) else 0,
                mode=None,
                crc64=None,
                status="extra",
                detail=f"a {kind_of(st.st_mode)} that is not in the layer",
                found_size=st.st_size if stat.S_ISREG(st.st_mode) else None,
                found_mode=st.st_mode & 0o7777,
            )


def _too_deep_detail(length: int, components: int) -> str:
    return (
        f"its path from the layer root is {length + 1:,} bytes in {components:,} components, "
        f"longer than Linux allows (PATH_MAX, {PATH_MAX} bytes): dockerd could not have "
        "written it; not looked up"
    )


def _on_overlay(parts: Parts) -> Parts:
    """A whiteout member as overlay keeps it: ``DIR/.wh..wh..opq`` is DIR itself (an xattr),
    ``DIR/.wh.NAME`` the character device ``DIR/NAME``."""
    name = parts[-1]
    if name == _OPAQUE:
        return parts[:-1]
    return (*parts[:-1], name[len(_WH) :])


def _same_mtime(disk_ns: int, tar: float) -> bool:
    """The tar's mtime (whole seconds in a ustar header; finer in a PAX record) as the file
    system keeps it: seconds equal, and the fraction too where both have one (moby's
    ``sameFsTimeSpec``)."""
    seconds, nanos = divmod(disk_ns, 1_000_000_000)
    whole = math.floor(tar)
    if seconds != whole:
        return False
    fraction = tar - whole
    return nanos == 0 or fraction == 0 or abs(nanos / 1e9 - fraction) < 1e-6


def _seconds(ns: int) -> str:
    seconds, nanos = divmod(ns, 1_000_000_000)
    return f"{seconds}.{nanos:09d}" if nanos else str(seconds)


def _hex(value: bytes | None) -> str:
    return "none" if value is None else value.hex()


def _not_a_directory(tree: LayerTree, parts: Parts, mode: int) -> Refusal:
    where = tree.path_of(parts)
    if stat.S_ISLNK(mode):
        return Refusal("unsafe-path", f"{where} is a symlink (not followed)", mode)
    return Refusal("missing", f"{where} is a {kind_of(mode)}, not a directory", mode)


def _refused(rec: FileRecord, refusal: Refusal) -> None:
    if refusal.kind == "not-regular":
        rec.status = "type-changed"
        rec.found_mode = refusal.mode & 0o7777 if refusal.mode else None
        rec.detail = f"{refusal.detail} (not followed, not read)"
    else:
        rec.status, rec.detail = refusal.kind, refusal.detail


def _entry_type(name: bytes, member: Member | None, size: int) -> str:
    if member is not None and _WH not in name:  # the usual member: no whiteout
        return member.type
    base = name.rstrip(b"/").rpartition(b"/")[2]
    if base == _OPAQUE:
        return "opaque"
    if base.startswith(_WH):
        return "whiteout"
    if member is not None:
        return member.type
    if name.endswith(b"/"):
        return "dir"
    return "file" if size else "unknown"


def _text(name: bytes | str) -> str:
    if isinstance(name, str):
        return name
    return name.decode("utf-8", "surrogateescape")
