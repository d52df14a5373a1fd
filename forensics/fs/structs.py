"""``struct`` layouts derived from construct declarations, for the structures decoded by the
thousand (inodes, attribute entries): the declaration stays the one place that says where a
field lies, and a ``struct.unpack_from`` reads them all at once."""

from __future__ import annotations

import struct

import construct as cs


def layout_of(declaration: cs.Struct, order: str = "<") -> struct.Struct:
    """A ``struct`` layout of ``declaration``'s fields in byte order ``order`` (``<`` or
    ``>``): integers as themselves, named byte strings as bytes, padding skipped."""
    codes = []
    for sub in declaration.subcons:
        inner = sub.subcon if isinstance(sub, cs.Renamed) else sub
        if isinstance(inner, cs.FormatField):
            codes.append(inner.fmtstr[1:])
        elif sub.name is None:
            codes.append(f"{sub.sizeof()}x")
        else:
            codes.append(f"{sub.sizeof()}s")
    return struct.Struct(order + "".join(codes))
