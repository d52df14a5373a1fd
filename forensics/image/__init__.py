"""Evidence held as a file: a disk image taken apart into volumes whose filesystems are trees,
or a tar archive that is a tree itself; and where the Docker root lies in it.

Layers, each its own module:

- :mod:`~forensics.image.device` — the evidence file opened read-only, slices and volumes as
  read-only file objects;
- :mod:`~forensics.image.formats` — the container: raw, E01 (``pyewf``), qcow2 (``pyqcow``),
  vmdk (``pyvmdk``), VHD/VHDX (``pyvhdi``), recognised from its bytes;
- :mod:`~forensics.image.partitions` — MBR and GPT, decoded here with construct;
- :mod:`~forensics.image.lvm` — LVM2 through ``pyvslvm``;
- :mod:`~forensics.image.volumes` — the volumes and their ext4/xfs trees
  (:mod:`forensics.fs`);
- :mod:`~forensics.image.locate` — the Docker and containerd roots found in the trees.

**Why not dfvfs.** dfvfs (Apache-2.0, what plaso uses) layers these same libyal bindings, and
was weighed for this job (dfvfs 20260924, measured here):

- *install*: 34 packages, 124 MB in a fresh environment (every libyal binding — BitLocker,
  FileVault, APFS, NTFS, HFS, VSS, … — plus pytsk3, dtfabric, dfdatetime, PyYAML, xattr),
  against 5 bindings and 33 MB here;
- *start-up*: lazy imports (70 ms), but a volume scan runs its signature scanner over every
  volume; ours tries the two filesystems the tool reads;
- *names and attributes*: its ext and xfs file entries take names from libfsext/libfsxfs,
  which give UTF-8 text only — a name that is not UTF-8 cannot be had — and its tar support
  is the standard library's ``tarfile`` (no zstd, no PAX xattrs on its file entries); this
  tool needs names as bytes, overlayfs' ``trusted.*`` xattrs, whiteout device numbers and
  sparse members exactly as :mod:`forensics.fs` already gives them;
- *hostile input*: its errors are ``BackEndError`` raised from deep in a path-spec resolver,
  with no bound on what a hostile table makes it open; here every step has its caps and says
  what it met (a GPT entry past the end, an EBR or LVM loop) as a problem of that volume.

So the tool uses the libyal bindings directly, as dfvfs does, with its own thin layer.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import BinaryIO

from forensics.errors import OperationalError
from forensics.fs.compressed import read_at, sniff
from forensics.fs.tar import TarLimits, TarOpenError, TarTree, open_tar
from forensics.fs.tree import Limits, Tree
from forensics.image.device import open_readonly, size_of
from forensics.image.formats import ImageError, open_disk
from forensics.image.volumes import DiskLayout, open_volumes

__all__ = ["Source", "SourceError", "is_archive", "open_source"]


class SourceError(OperationalError):
    """The evidence file cannot be read: the one line that says why."""


@dataclass
class Source:
    """Evidence opened: ``kind`` ``archive`` or ``disk``, and its trees by volume name (an
    archive is the one volume ``archive``)."""

    kind: str
    path: str
    size: int
    trees: list[tuple[str, Tree]] = field(default_factory=list)
    archive: TarTree | None = None
    layout: DiskLayout | None = None
    #: the evidence file when this opened it (closed with the source)
    owned: BinaryIO | None = None

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()
        if self.layout is not None:
            self.layout.close()
        if self.owned is not None:
            self.owned.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_archive(head: bytes) -> bool:
    """Whether a file starting with ``head`` (512 bytes) is read as a tar archive: compressed
    (gzip, xz, zstd, bzip2: a compressed disk image is not read) or a tar header."""
    return sniff(head) is not None or head[257:262] == b"ustar"


def open_source(
    path: str | os.PathLike[str],
    limits: Limits | None = None,
    tar_limits: TarLimits | None = None,
    fileobj: BinaryIO | None = None,
) -> Source:
    """The evidence file at ``path`` as trees: opened here read-only, or given as ``fileobj``
    (opened read-only by the caller; ``path`` then names it, and finds an E01's further
    segments). Raises :class:`SourceError`."""
    name = os.fspath(path)
    owned = None
    if fileobj is None:
        try:
            fileobj = owned = open_readonly(path)
        except OSError as exc:
            raise SourceError(f"{name}: {exc.strerror or exc}") from None
    size = size_of(fileobj)
    head = read_at(fileobj, threading.Lock(), 0, 512)
    if is_archive(head):
        try:
            tree = open_tar(fileobj, size, limits, tar_limits)
        except TarOpenError as exc:
            if owned is not None:
                owned.close()
            raise SourceError(f"{name}: {exc}") from None
        return Source("archive", name, size, [("archive", tree)], archive=tree, owned=owned)
    try:
        disk = open_disk(path, fileobj)
    except ImageError as exc:
        raise SourceError(str(exc)) from None
    layout = open_volumes(disk, limits)
    trees: list[tuple[str, Tree]] = [(v.name, v.tree) for v in layout.volumes if v.tree is not None]
    return Source("disk", name, size, trees, layout=layout, owned=owned)
