"""What every read-only file of this package that is served from something else shares (a
disk image's device, its block cache, a file of an ext4/xfs tree or of a tar archive): a size,
a position of its own, and seeking as Python's files seek."""

from __future__ import annotations

import errno
import io


class SizedRawFile(io.RawIOBase):
    """A readable, seekable file of ``size`` bytes at position ``_pos`` (both set by the
    subclass, which reads with ``readinto``). ``SEEK_END`` counts from ``size``; a position
    past the end is allowed (a read there gives nothing), one before the start is not."""

    size: int
    _pos: int

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, "negative seek position")
        self._pos = base + offset
        return self._pos
