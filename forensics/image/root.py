"""A Docker root read from an evidence file: the archive or disk image opened read-only
(:func:`~forensics.image.open_source`), the root located in it (:mod:`~forensics.image.locate`)
and served as :class:`~forensics.treeevidence.TreeEvidence`, with its :class:`Origin` — which
file, which archive member or partition and volume, which path — for stderr, the JSON
documents and the SQLite ``runs`` table.

Nothing is mounted, no loop device is made, nothing is written: the file is opened with
``O_RDONLY`` (``O_NOATIME`` where the kernel lets us), and an E01's further segments likewise.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from typing import Any

from forensics.fs.tree import display
from forensics.image import Source, SourceError, open_source
from forensics.image.locate import Candidate, LocateError, NoDockerRoot, choose, search
from forensics.treeevidence import TreeEvidence

__all__ = [
    "LocateError",
    "Origin",
    "SourceError",
    "file_digests",
    "is_evidence_file",
    "open_file_root",
    "stored_hash_check",
]


@dataclass
class Origin:
    """Where a Docker root read from a file lies: ``file`` (its real path) of ``size`` bytes,
    ``container`` (``tar``, ``tar+gzip``, …, ``raw``, ``ewf``, ``qcow``, ``vmdk``, ``vhd``,
    ``vhdx``), the ``volume`` (``archive``, ``p2``, ``vg0/root``, ``whole``) and what it is,
    its ``filesystem`` (``tar``, ``ext4``, ``xfs``) and the root's ``path`` in it."""

    file: str
    size: int
    container: str
    volume: str
    volume_what: str
    filesystem: str
    path: str
    reason: str
    #: what the container stores of its own media (an E01's MD5/SHA1)
    stored_hashes: dict[str, str] = field(default_factory=dict)
    #: what is wrong in the container: damaged archive members, partitions past the end
    problems: list[str] = field(default_factory=list)
    #: why the file does not hold the whole root (an archive that ends early); None when it
    #: may (what its reads then meet damaged is :attr:`TreeEvidence.damage`)
    incomplete: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The top-level ``evidence`` key of the JSON documents."""
        return {
            "file": self.file,
            "size": self.size,
            "container": self.container,
            "volume": self.volume,
            "volume_description": self.volume_what,
            "filesystem": self.filesystem,
            "path": self.path,
        }

    def describe(self) -> str:
        """One line for stderr: which root was read, where."""
        if self.volume == "archive":
            return (
                f"reading the Docker root {self.path} of the archive {self.file} ({self.container})"
            )
        return (
            f"reading the Docker root {self.path} on {self.volume} ({self.volume_what}, "
            f"{self.filesystem}) of the disk image {self.file} ({self.container})"
        )


def is_evidence_file(path: str) -> bool:
    """Whether ROOT names a file (a regular file or a block device, through symlinks) rather
    than a directory."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) or stat.S_ISBLK(mode)


def open_file_root(
    path: str, pick: str | None = None, *, record_reads: bool = False
) -> tuple[TreeEvidence, Origin]:
    """The Docker root in the evidence file ``path`` (the one found, or the one ``pick``
    names: ``VOLUME:/PATH`` or ``/PATH``). Raises :class:`SourceError` (the file cannot be
    read as an archive or a disk image) or :class:`LocateError` (``NoDockerRoot``,
    ``SeveralDockerRoots``)."""
    source = open_source(path)
    try:
        if not source.trees:
            why = _volume_problems(source) or "none was found"
            if source.layout is not None and source.layout.table.scheme is None:
                raise NoDockerRoot(
                    f"{path}: not a directory, nor a tar archive or a disk image holding a "
                    f"filesystem that this tool reads ({why})"
                )
            raise NoDockerRoot(f"{path}: no filesystem that this tool reads: {why}")
        try:
            found = choose(search(source.trees), pick, evidence=path)
        except NoDockerRoot as exc:
            unread = _volume_problems(source)
            if unread:
                raise NoDockerRoot(f"{exc}; {unread}") from None
            raise
        tree = dict(source.trees)[found.volume]
        origin = _origin(source, found)
    except BaseException:
        source.close()
        raise
    ev = TreeEvidence(tree, found.parts, path, record_reads=record_reads, on_close=source.close)
    return ev, origin


def _volume_problems(source: Source) -> str:
    """What is wrong with the volumes (each with its first problem: why its filesystem could
    not be read, or how it is damaged), for the message that says no root was found; empty
    when nothing is."""
    if source.layout is None:
        return "; ".join(source.archive.stream.problems[:1]) if source.archive else ""
    out = []
    for volume in source.layout.volumes:
        if volume.problems and "LVM2 PV" not in volume.what:
            out.append(f"{volume.name}: {volume.problems[0]}")
    out += source.layout.problems[:3]
    return "; ".join(out)


#: the archive problems after which it holds no more members (a member or headers cut short,
#: no end-of-archive marker, headers that do not decode)
_ENDS_EARLY = ("cut-short", "header")


def _ends_early(detail: str, stream_problems: list[str]) -> str:
    """Why an archive holds only part of what it held: its stream's problem first (a
    compressed stream cut short or damaged is why the tar ends early), then the tar's."""
    return f"{stream_problems[0]}; {detail}" if stream_problems else detail


def _origin(source: Source, found: Candidate) -> Origin:
    real = os.path.realpath(source.path)
    if source.archive is not None:
        codec = source.archive.codec
        problems = [f"{display(p.path)}: {p.detail}" for p in source.archive.problems]
        problems += list(source.archive.stream.problems)
        ends = [p for p in source.archive.problems if p.kind in _ENDS_EARLY]
        incomplete = _ends_early(ends[0].detail, source.archive.stream.problems) if ends else None
        return Origin(
            real,
            source.size,
            f"tar+{codec}" if codec else "tar",
            "archive",
            "the archive's members",
            "tar",
            found.path,
            found.reason,
            problems=problems,
            incomplete=incomplete,
        )
    layout = source.layout
    assert layout is not None
    volume = layout.volume(found.volume)
    what = volume.what if volume is not None else found.volume
    problems = list(layout.problems)
    if volume is not None:
        problems += volume.problems
    return Origin(
        real,
        source.size,
        layout.disk.format,
        found.volume,
        what,
        (volume.filesystem if volume is not None else None) or "unknown",
        found.path,
        found.reason,
        stored_hashes=dict(layout.disk.stored_hashes),
        problems=problems,
    )


def file_digests(path: str) -> dict[str, str]:
    """The sha256 of the evidence file (read whole, read-only)."""
    from forensics.image.device import open_readonly

    digest = hashlib.sha256()
    with open_readonly(path) as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return {"sha256": digest.hexdigest()}


def stored_hash_check(origin: Origin) -> tuple[str, str, str] | None:
    """An E01's stored hash of its media and the one computed now (reading the whole media
    through the container, read-only): (algorithm, stored, computed); None when the container
    stores none."""
    from forensics.image.formats import ewf_hash_check, open_disk

    algorithm = next((a for a in ("md5", "sha1") if a in origin.stored_hashes), None)
    if algorithm is None:
        return None
    disk = open_disk(origin.file)
    try:
        checked = ewf_hash_check(disk, algorithm)
    finally:
        disk.close()
    if checked is None:
        return None
    return algorithm, checked[0], checked[1]
