"""Proof that a file is never opened: Linux inotify (through ctypes) reports every open and read
of a watched path, whatever flags (O_NOATIME included) the opener used."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
from pathlib import Path

IN_ACCESS = 0x001
IN_OPEN = 0x020
IN_NONBLOCK = os.O_NONBLOCK

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class Watch:
    """Watches paths for opens and reads until closed; ``events()`` drains what happened."""

    def __init__(self, *paths: Path) -> None:
        self.fd = _libc.inotify_init1(IN_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        for path in paths:
            wd = _libc.inotify_add_watch(self.fd, os.fsencode(path), IN_OPEN | IN_ACCESS)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")

    def events(self) -> list[int]:
        masks = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return masks
            offset = 0
            while offset < len(data):
                _wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
                masks.append(mask)
                offset += 16 + length

    def close(self) -> None:
        os.close(self.fd)
