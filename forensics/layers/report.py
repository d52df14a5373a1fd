"""What deep verification found in one layer: the computed DiffID, sizes, and every file.

Plain dataclasses (picklable, so a worker process can send them back), with ``to_dict`` for
JSON/SQLite and :meth:`LayerReport.issues` to turn the bad parts into findings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

__all__ = [
    "BAD_STATUSES",
    "STATUSES",
    "FileRecord",
    "Issue",
    "LayerProblem",
    "LayerReport",
]

#: per-file status, from good to bad:
#: ``ok``               content (crc64 and size) or, for entries without data, type and link
#:                      target as the tar-split says
#: ``unverifiable``     cannot be checked from files (GNU sparse member; an opaque-dir marker
#:                      whose xattr only root may read)
#: ``modified``         crc64 differs (same size), or a symlink points elsewhere
#: ``size-changed``     the file on disk has another size than the tar says
#: ``mode-changed``     the permission bits on disk differ from the tar header's
#: ``type-changed``     on disk it is another kind of file (e.g. a symlink or a directory where
#:                      the tar has a regular file); never followed, never read
#: ``missing``          absent from the layer's directory
#: ``extra``            on disk but not in the tar-split (only where the directory holds the
#:                      layer's diff: overlay2, aufs), or deleted by the layer yet present
#: ``unreadable``       an I/O or permission error while reading it
#: ``unreadable-header`` its tar header in the tar-split does not decode (checksum, numbers) or
#:                      does not match the entry (another name or size)
#: ``unsafe-path``      its name climbs out of the layer dir, or a directory on the way is a
#:                      symlink: refused, never read
#: ``too-deep``         its path from the layer root is longer than Linux allows (PATH_MAX):
#:                      dockerd could not have written it; not looked up
#:
#: and, where the layer's files are a filesystem read as it is (a thin device: owners, times
#: and xattrs exact; the layer a full root file system held against its parent layer's):
#: ``metadata-changed`` its owner, mtime (not of a directory) or ``security.capability``
#:                      differs from its tar header
#: ``removed``          in the parent layer's files, absent from this layer's, and its tar
#:                      holds no whiteout for it
#: ``inherited-changed`` an entry of the parent layer that differs here (by Docker's change
#:                      rules: mode, owner, device, size, mtime, capability) though the
#:                      layer's tar does not hold it
STATUSES = (
    "ok",
    "unverifiable",
    "modified",
    "size-changed",
    "mode-changed",
    "type-changed",
    "missing",
    "extra",
    "unreadable",
    "unreadable-header",
    "unsafe-path",
    "too-deep",
)
TREE_STATUSES = ("metadata-changed", "removed", "inherited-changed")
BAD_STATUSES = frozenset(STATUSES + TREE_STATUSES) - {"ok", "unverifiable"}

#: per-file status → the check id of the finding it becomes (its severity is the catalogue's,
#: forensics/checks/catalog.py)
_FILE_CHECKS = {
    "modified": "layer.file-modified",
    "size-changed": "layer.file-size-changed",
    "mode-changed": "layer.file-mode-changed",
    "type-changed": "layer.file-type-changed",
    "missing": "layer.file-missing",
    "extra": "layer.file-extra",
    "unreadable": "layer.file-unreadable",
    "unreadable-header": "layer.tar-header-damaged",
    "unsafe-path": "layer.unsafe-path",
    "too-deep": "layer.path-too-deep",
    "unverifiable": "layer.file-unverifiable",
    "metadata-changed": "layer.file-metadata-changed",
    "removed": "layer.file-removed",
    "inherited-changed": "layer.file-inherited-changed",
}


#: layer problems that say none of its files could be read
_NO_CONTENT = ("content-dir-missing", "content-unreadable")


@dataclass(slots=True)
class FileRecord:
    """One member of the layer (every tar entry, plus extra files found on disk).

    ``path`` is the member name without a leading ``/`` (bytes that are not UTF-8 kept as
    surrogate escapes); ``disk_path`` is where it is (or should be), relative to ROOT.
    ``size``, ``mode`` (permission bits with the setuid/setgid/sticky bits), ``type`` and
    ``linkname`` are what the tar says; ``crc64`` is the tar-split's hex crc64 (None for
    entries without data). ``found_*`` are set where the disk differs.
    """

    path: str
    disk_path: str
    type: str
    size: int
    mode: int | None
    crc64: str | None
    status: str = "ok"
    detail: str = ""
    linkname: str | None = None
    found_size: int | None = None
    found_crc64: str | None = None
    found_mode: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LayerProblem:
    """A problem of the layer as a whole. ``kind``: ``tar-split-missing``,
    ``tar-split-damaged`` (``damage`` says how: truncated, corrupt-gzip, bad-json, …),
    ``content-dir-missing``, ``content-unreadable`` (the filesystem or thin device holding the
    layer's files cannot be opened), ``content-damaged`` (damage met in that filesystem or
    device besides its members), ``changes-unchecked`` (a full-rootfs layer that could not be
    held against its parent's files), ``diff-id-mismatch``, ``tarsum-mismatch``, ``position-gap``,
    ``duplicate-path``, ``lossy-name``, ``unknown-entry``, ``tar-header-damaged``,
    ``tar-trailer-damaged``, ``root-unreadable``, ``path-too-deep`` (entries of the layer's
    directory beyond PATH_MAX), ``check-failed`` (the check of the layer stopped on an
    internal error)."""

    kind: str
    path: str
    message: str
    damage: str | None = None


class Issue(NamedTuple):
    """A finding in plain values; ``forensics.deep`` makes a ``forensics.report.Finding`` of it,
    with the severity that the catalogue gives ``check``."""

    check: str
    path: str
    message: str
    damage: str | None


@dataclass(slots=True)
class LayerReport:
    """The result of verifying one layer.

    ``diff_id`` is ``sha256:`` of the reassembled stream, None when the tar-split could not be
    read to its end (a partial stream's hash means nothing). ``tar_bytes`` is the length of
    that stream; ``file_bytes`` the sum of the file sizes the tar-split records (what the 1.10
    migration wrote as the layer size); ``bytes_read`` what was read from the layer's files
    (equal to ``file_bytes`` when nothing is missing); ``files_read`` how many files were read.

    Legacy layers whose ``graph/<id>/checksum`` is a TarSum: ``recorded_tarsum`` is that value,
    ``tarsum`` the TarSum of the rebuilt tar (the variant that matched, else the one without
    payload; None when it could not be computed, ``tarsum_detail`` says why) and
    ``tarsum_payload`` what matched: ``none`` (the tar alone) or ``json`` (the image JSON
    first, as the v1 registry push computed it).
    """

    layer_id: str
    driver: str
    tar_split: str
    content_dir: str
    recorded_diff_id: str | None = None
    diff_id: str | None = None
    tar_bytes: int = 0
    file_bytes: int = 0
    bytes_read: int = 0
    files_read: int = 0
    entries: int = 0
    complete: bool = False
    recorded_tarsum: str | None = None
    tarsum: str | None = None
    tarsum_payload: str | None = None
    tarsum_detail: str = ""
    #: what holds the layer's files when it is no directory of ROOT ("thin device 3 of …")
    source: str = ""
    files: list[FileRecord] = field(default_factory=list)
    problems: list[LayerProblem] = field(default_factory=list)

    @property
    def diff_id_matches(self) -> bool | None:
        """True/False when both DiffIDs are known; None otherwise."""
        if self.diff_id is None or not self.recorded_diff_id:
            return None
        return self.diff_id == self.recorded_diff_id

    @property
    def ok(self) -> bool:
        """No problem and no bad file."""
        return not self.problems and not any(f.status in BAD_STATUSES for f in self.files)

    def counts(self) -> dict[str, int]:
        """Files by status (every status that the layer's kind of content can have, zeros
        included)."""
        found = Counter(f.status for f in self.files)
        statuses = STATUSES + TREE_STATUSES if self.source else STATUSES
        return {s: found.get(s, 0) for s in statuses}

    def bad_files(self) -> list[FileRecord]:
        return [f for f in self.files if f.status in BAD_STATUSES]

    def issues(self) -> Iterator[Issue]:
        """One issue per layer problem and per file whose status is not ok."""
        for p in self.problems:
            yield Issue(f"layer.{p.kind}", p.path, p.message, p.damage)
        if any(p.kind in _NO_CONTENT for p in self.problems):
            return  # one finding says it: not one per file
        for f in self.files:
            check = _FILE_CHECKS.get(f.status)
            if check is None:
                continue
            what = f"layer {self.layer_id}: /{f.path}: {f.status}"
            yield Issue(
                check,
                f.disk_path,
                f"{what}: {f.detail}" if f.detail else what,
                f.status,
            )

    def to_dict(self, *, files: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "layer_id": self.layer_id,
            "driver": self.driver,
            "tar_split": self.tar_split,
            "content_dir": self.content_dir,
            "recorded_diff_id": self.recorded_diff_id,
            "diff_id": self.diff_id,
            "diff_id_matches": self.diff_id_matches,
            "tar_bytes": self.tar_bytes,
            "file_bytes": self.file_bytes,
            "bytes_read": self.bytes_read,
            "files_read": self.files_read,
            "entries": self.entries,
            "complete": self.complete,
            "recorded_tarsum": self.recorded_tarsum,
            "tarsum": self.tarsum,
            "tarsum_payload": self.tarsum_payload,
            "counts": self.counts(),
            "problems": [asdict(p) for p in self.problems],
        }
        if self.source:
            out["source"] = self.source
        if files:
            out["files"] = [f.to_dict() for f in self.files]
        return out
