"""Byte devices read-only: the evidence file itself, a disk image's media through a libyal
library (E01, qcow2, vmdk, VHD/VHDX), a slice of a device (a partition) and a logical volume,
all as seekable read-only file objects that the filesystem readers take.

Every read is bounded by the device's size; a read that the device under it cannot serve
raises ``OSError`` naming the device and the byte range, never anything else.
"""

from __future__ import annotations

import errno
import io
import os
import threading
from typing import Any, BinaryIO

from forensics.fs.libyal import library_reason
from forensics.fs.rawfile import SizedRawFile

_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


def open_readonly(path: str | os.PathLike[str]) -> io.FileIO:
    """The evidence file opened for reading only (``O_NOATIME`` where the kernel lets us:
    reading leaves its access time as it was). The path is resolved once, as a directory ROOT
    is, and the file then opened with ``O_NOFOLLOW``: what is opened is what was resolved."""
    real = os.path.realpath(path)
    flags = _OPEN_FLAGS | getattr(os, "O_NOATIME", 0)
    try:
        fd = os.open(real, flags)
    except PermissionError:  # O_NOATIME needs to own the file
        fd = os.open(real, _OPEN_FLAGS)
    return io.FileIO(fd, "rb", closefd=True)


def size_of(fileobj: BinaryIO) -> int:
    """The size of a file object: its descriptor's, or where its end is."""
    try:
        return os.fstat(fileobj.fileno()).st_size
    except (OSError, AttributeError, io.UnsupportedOperation):
        keep = fileobj.tell()
        end = fileobj.seek(0, io.SEEK_END)
        fileobj.seek(keep)
        return end


class Device(SizedRawFile):
    """A read-only device of ``size`` bytes named ``name``; subclasses give :meth:`pread`."""

    def __init__(self, name: str, size: int) -> None:
        super().__init__()
        self.name, self.size = name, size
        self._pos = 0
        #: what the reads met (a libyal error, a short read): the filesystem readers name it
        self.read_problems: list[str] = []

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        want = max(0, min(len(out), self.size - self._pos))
        if want == 0:
            return 0
        data = self.pread(self._pos, want)
        out[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def read_at(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` (fewer at the end), the position left alone."""
        size = max(0, min(size, self.size - offset))
        return self.pread(offset, size) if size else b""

    def pread(self, offset: int, size: int) -> bytes:
        raise NotImplementedError

    def fail(self, offset: int, size: int, why: str) -> OSError:
        text = f"{self.name}: bytes {offset}-{offset + size} cannot be read: {why}"
        self.read_problems.append(text)
        return OSError(errno.EIO, text)


class FileDevice(Device):
    """A plain file (a raw image, or a device node given as evidence) read by ``pread``."""

    def __init__(self, name: str, fileobj: BinaryIO, size: int | None = None) -> None:
        super().__init__(name, size_of(fileobj) if size is None else size)
        self.fileobj = fileobj
        self._lock = threading.Lock()
        try:
            self._fd: int | None = fileobj.fileno()
        except (OSError, AttributeError, io.UnsupportedOperation):
            self._fd = None

    def pread(self, offset: int, size: int) -> bytes:
        try:
            if self._fd is not None:
                data = os.pread(self._fd, size, offset)
            else:
                with self._lock:
                    self.fileobj.seek(offset)
                    data = self.fileobj.read(size) or b""
        except OSError as exc:
            raise self.fail(offset, size, exc.strerror or str(exc)) from None
        if len(data) < size:
            raise self.fail(offset, size, "the file is shorter than it was")
        return data


class LibyalDevice(Device):
    """A disk image's media through a libyal handle (``read_buffer_at_offset``)."""

    def __init__(self, name: str, handle: Any, size: int, keep: list[Any]) -> None:
        super().__init__(name, size)
        self.handle = handle
        #: the file objects the handle reads (closed with it)
        self.keep = keep
        self._lock = threading.Lock()

    def pread(self, offset: int, size: int) -> bytes:
        try:
            with self._lock:
                data = bytes(self.handle.read_buffer_at_offset(size, offset))
        except (OSError, ValueError, MemoryError) as exc:
            raise self.fail(offset, size, library_reason(exc)) from None
        if len(data) < size:
            raise self.fail(offset, size, f"the image gives {len(data)} bytes")
        return data

    def close(self) -> None:
        try:
            self.handle.close()
        except OSError:
            pass
        for f in self.keep:
            f.close()
        super().close()


class SliceDevice(Device):
    """``size`` bytes of ``base`` from ``start`` (a partition), cut at the base's end."""

    def __init__(self, name: str, base: Device, start: int, size: int) -> None:
        size = max(0, min(size, base.size - start))
        super().__init__(name, size)
        self.base, self.start = base, start
        self.read_problems = base.read_problems

    def pread(self, offset: int, size: int) -> bytes:
        return self.base.read_at(self.start + offset, size)


class VolumeDevice(Device):
    """An LVM logical volume through ``pyvslvm``."""

    def __init__(self, name: str, lv: Any, size: int) -> None:
        super().__init__(name, size)
        self.lv = lv
        self._lock = threading.Lock()

    def pread(self, offset: int, size: int) -> bytes:
        try:
            with self._lock:
                data = bytes(self.lv.read_buffer_at_offset(size, offset))
        except (OSError, ValueError, MemoryError) as exc:
            raise self.fail(offset, size, library_reason(exc)) from None
        if len(data) < size:
            raise self.fail(offset, size, f"the volume gives {len(data)} bytes")
        return data
