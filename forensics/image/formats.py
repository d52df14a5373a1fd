"""A disk image's container recognised from its own bytes and opened as a device: raw (dd),
EWF (E01, through ``pyewf``), qcow2 (``pyqcow``), vmdk (``pyvmdk``: a monolithic sparse or
stream-optimised file, the descriptor inside), VHD and VHDX (``pyvhdi``).

The evidence is opened read-only and nothing is written anywhere. Files beside it are opened
only where the format itself spreads the media over several files, and only for reading: the
further segments of an E01 (``.E02``…, found by ``pyewf.glob`` from the path given). An image
that needs another image under it (a qcow2 backing file, a differencing VHD, a vmdk with a
parent) is refused with a message saying which: its media is not whole without it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from forensics.errors import OperationalError
from forensics.fs.libyal import library_reason
from forensics.image.device import Device, FileDevice, LibyalDevice, open_readonly, size_of

EWF_MAGIC = b"EVF\x09\x0d\x0a\xff\x00"
EWF2_MAGIC = b"EVF2\x0d\x0a\x81\x00"
QCOW_MAGIC = b"QFI\xfb"
VMDK_MAGIC = b"KDMV"
VMDK_DESCRIPTOR = b"# Disk DescriptorFile"
VHDX_MAGIC = b"vhdxfile"
VHD_FOOTER = b"conectix"


class ImageError(OperationalError):
    """The image cannot be opened: damaged, incomplete, or of a kind not read."""


@dataclass
class Disk:
    """A disk image opened: its container format, the media as a device, and what the
    container itself says (an EWF's stored hashes and acquisition notes)."""

    format: str
    device: Device
    stored_hashes: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: the image file when :func:`open_disk` opened it (closed with the disk)
    owned: BinaryIO | None = None

    def close(self) -> None:
        self.device.close()
        if self.owned is not None:
            self.owned.close()


def sniff(head: bytes, tail: bytes) -> str:
    """The container format from the file's first 512 and last 512 bytes."""
    if head.startswith(EWF_MAGIC):
        return "ewf"
    if head.startswith(EWF2_MAGIC):
        return "ewf2"
    if head.startswith(QCOW_MAGIC):
        return "qcow"
    if head.startswith(VMDK_MAGIC):
        return "vmdk"
    if head.lstrip().startswith(VMDK_DESCRIPTOR):
        return "vmdk-descriptor"
    if head.startswith(VHDX_MAGIC):
        return "vhdx"
    if tail[-512:].startswith(VHD_FOOTER) or head.startswith(VHD_FOOTER):
        return "vhd"
    return "raw"


def open_disk(path: str | os.PathLike[str] | None = None, fileobj: BinaryIO | None = None) -> Disk:
    """The disk image at ``path`` (or in ``fileobj``, opened read-only by the caller, who
    closes it: the disk closes only the further segments it opened)."""
    if fileobj is None:
        if path is None:
            raise ValueError("a path or a file object")
        owned = open_readonly(path)
        try:
            disk = open_disk(path, owned)
        except BaseException:
            owned.close()
            raise
        disk.owned = owned
        return disk
    name = os.fspath(path) if path is not None else getattr(fileobj, "name", "image")
    size = size_of(fileobj)
    fileobj.seek(0)
    head = fileobj.read(512) or b""
    fileobj.seek(max(0, size - 512))
    tail = fileobj.read(512) or b""
    fileobj.seek(0)
    kind = sniff(head, tail)
    try:
        if kind == "raw":
            return Disk("raw", FileDevice(str(name), fileobj, size))
        if kind in ("ewf", "ewf2"):
            return _open_ewf(str(name), path, fileobj)
        if kind == "vmdk-descriptor":
            raise ImageError(
                "a vmdk descriptor file: its extents are other files (give the image as one "
                "monolithic file: qemu-img convert -O vmdk -o subformat=monolithicSparse)"
            )
        return _OPENERS[kind](str(name), fileobj)
    except (OSError, ValueError, MemoryError) as exc:
        raise ImageError(
            f"{name}: the {kind} image cannot be opened: {library_reason(exc)}"
        ) from None


def _open_ewf(name: str, path: str | os.PathLike[str] | None, fileobj: BinaryIO) -> Disk:
    import pyewf

    files: list[BinaryIO] = [fileobj]
    if path is not None:
        try:
            segments = sorted(pyewf.glob(os.fspath(path)))
        except (OSError, ValueError):
            segments = []
        files += [open_readonly(s) for s in segments if not _same_file(s, fileobj)]
    handle = pyewf.handle()
    handle.open_file_objects(files)
    size = int(handle.get_media_size())
    disk = Disk("ewf", LibyalDevice(name, handle, size, files[1:]))
    disk.stored_hashes = _ewf_hashes(handle)
    if len(files) > 1:
        disk.notes.append(f"{len(files)} segment files read")
    return disk


def _same_file(path: str, fileobj: BinaryIO) -> bool:
    try:
        a, b = os.stat(path), os.fstat(fileobj.fileno())
    except (OSError, AttributeError):
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _ewf_hashes(handle: Any) -> dict[str, str]:
    found = {}
    for algorithm in ("MD5", "SHA1"):
        try:
            value = handle.get_hash_value(algorithm)
        except (OSError, ValueError):
            value = None
        if value:
            found[algorithm.lower()] = str(value).lower()
    return found


def _open_qcow(name: str, fileobj: BinaryIO) -> Disk:
    import pyqcow

    handle = pyqcow.file()
    handle.open_file_object(fileobj)
    backing = handle.get_backing_filename()
    if backing:
        handle.close()
        raise ImageError(
            f"{name}: the qcow2 image has a backing file ({backing}): its media is not whole "
            "without it (qemu-img convert -O qcow2 makes a standalone copy)"
        )
    return Disk("qcow", LibyalDevice(name, handle, int(handle.get_media_size()), []))


def _open_vmdk(name: str, fileobj: BinaryIO) -> Disk:
    import pyvmdk

    handle = pyvmdk.handle()
    handle.open_file_object(fileobj)
    if handle.get_parent_content_identifier() not in (None, 0xFFFFFFFF):
        handle.close()
        raise ImageError(f"{name}: the vmdk image has a parent: its media is not whole alone")
    handle.open_extent_data_files_as_file_objects([fileobj])
    return Disk("vmdk", LibyalDevice(name, handle, int(handle.get_media_size()), []))


def _open_vhdi(name: str, fileobj: BinaryIO, kind: str) -> Disk:
    import pyvhdi

    handle = pyvhdi.file()
    handle.open_file_object(fileobj)
    if handle.get_parent_identifier():
        handle.close()
        raise ImageError(f"{name}: a differencing VHD: its media is not whole without its parent")
    return Disk(kind, LibyalDevice(name, handle, int(handle.get_media_size()), []))


_OPENERS = {
    "qcow": _open_qcow,
    "vmdk": _open_vmdk,
    "vhd": lambda name, f: _open_vhdi(name, f, "vhd"),
    "vhdx": lambda name, f: _open_vhdi(name, f, "vhdx"),
}


def ewf_hash_check(disk: Disk, algorithm: str = "md5") -> tuple[str, str] | None:
    """The EWF's stored hash and the one computed over its media now, or None when the image
    stores none. Reads the whole media once."""
    import hashlib

    stored = disk.stored_hashes.get(algorithm)
    if stored is None:
        return None
    digest = hashlib.new(algorithm)
    step = 1 << 22
    for offset in range(0, disk.device.size, step):
        digest.update(disk.device.read_at(offset, step))
    return stored, digest.hexdigest()
