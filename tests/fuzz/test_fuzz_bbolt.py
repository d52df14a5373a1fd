"""Fuzzing of the bbolt decoder: any bytes, real databases of the sample with random bytes
written over them, and random pages behind valid meta pages (so the walk itself is exercised,
not only the meta check). The only outcomes allowed are entries or :class:`BoltDamage`."""

from __future__ import annotations

import struct
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from forensics.formats.bbolt import BoltDamage, Entry, fnv1a_64, open_bolt

#: the real bbolt files of the real-daemon sample
REAL_DBS = [
    "buildkit/cache.db",
    "buildkit/containerdmeta.db",
    "buildkit/metadata_v2.db",
    "buildkit/snapshots.db",
    "containerd/daemon/io.containerd.metadata.v1.bolt/meta.db",
    "network/files/local-kv.db",
    "volumes/metadata.db",
]
PAGE = 4096


def walk(data: bytes) -> None:
    """Open and walk ``data`` completely, freelist included; BoltDamage is the one way out."""
    try:
        db = open_bolt(data)
        entries = list(db.entries())
        free = db.freelist()
    except BoltDamage as damage:
        assert damage.kind and str(damage) and "\n" not in str(damage)
        return
    assert all(isinstance(e, Entry) for e in entries)
    assert all(isinstance(p, int) for p in free)


def _tiled(pattern: bytes) -> bytes:
    """``pattern`` repeated over three pages: page-sized files without drawing 12 KiB each."""
    return (pattern * (3 * PAGE // max(1, len(pattern)) + 1))[: 3 * PAGE]


@given(st.binary(max_size=1024) | st.binary(min_size=1, max_size=512).map(_tiled))
def test_any_bytes(data: bytes) -> None:
    walk(data)


@given(st.sampled_from(REAL_DBS), st.data())
def test_real_db_mutations(sample_master: Path, rel: str, data: st.DataObject) -> None:
    """Random bytes over a real database; half the time the meta pages are spared, so the
    damage lands in the tree and the freelist behind a meta that still validates."""
    original = bytearray((sample_master / rel).read_bytes())
    start = data.draw(st.sampled_from([0, 2 * PAGE]))
    for _ in range(data.draw(st.integers(1, 16))):
        at = data.draw(st.integers(start, len(original) - 1))
        if data.draw(st.booleans()):
            original[at] = data.draw(st.integers(0, 255))
        else:  # a whole field: a page id, a count, an element position
            width = data.draw(st.sampled_from([2, 4, 8]))
            value = data.draw(st.integers(0, (1 << (8 * width)) - 1))
            original[at : at + width] = value.to_bytes(width, "little")[: len(original) - at]
    if data.draw(st.booleans()):
        del original[data.draw(st.integers(0, len(original))) :]
    walk(bytes(original))


def _meta_page(index: int, root: int, freelist: int, hwm: int, txid: int) -> bytes:
    """A page holding a meta that validates (magic, version 2, FNV-1a checksum)."""
    meta = struct.pack("<IIII", 0xED0CDAED, 2, PAGE, 0) + struct.pack(
        "<QQQQQ", root, 0, freelist, hwm, txid
    )
    meta += struct.pack("<Q", fnv1a_64(meta))
    return (struct.pack("<QHHI", index, 0x04, 0, 0) + meta).ljust(PAGE, b"\0")


def mostly(value: int, other: st.SearchStrategy[int]) -> st.SearchStrategy[int]:
    """``value`` seven times in eight, else anything ``other`` draws."""
    return st.integers(0, 7).flatmap(lambda k: other if k == 0 else st.just(value))


@st.composite
def random_page(draw: st.DrawFn, pgid: int, pages: int) -> bytes:
    """A page that is mostly well formed (its own id, a leaf or branch, elements that point into
    it), with any field liable to be anything."""
    flags = draw(st.sampled_from([0x01, 0x02, 0x02, 0x02, 0x01, 0x02, 0x04, 0x10, 0x03]))
    count = draw(mostly(draw(st.integers(0, 8)), st.integers(0, 0xFFFF)))
    overflow = draw(mostly(0, st.integers(0, pages)))
    own = draw(mostly(pgid, st.integers(0, pages + 2)))
    elements = b""
    payload = b""
    n = min(count, 8)
    for i in range(n):
        key = draw(st.binary(max_size=12))
        value = draw(st.binary(max_size=40))
        leaf_flags = draw(st.sampled_from([0, 0, 1]) | st.integers(0, 0xFFFFFFFF))
        if leaf_flags & 1 and draw(st.booleans()):  # a nested bucket: paged root or inline
            root = draw(mostly(0, st.integers(0, pages + 2)))
            value = struct.pack("<QQ", root, 0) + draw(random_inline(pages))
        pos = (n - i) * 16 + len(payload)
        pos = draw(mostly(pos, st.integers(0, (1 << 32) - 1)))
        if flags == 0x01:  # branch: pos, ksize, child pgid
            child = draw(mostly(draw(st.integers(2, pages - 1)), st.integers(0, pages + 2)))
            elements += struct.pack("<IIQ", pos, len(key), child)
            payload += key
        else:
            vsize = draw(mostly(len(value), st.integers(0, (1 << 32) - 1)))
            elements += struct.pack("<IIII", leaf_flags, pos, len(key), vsize)
            payload += key + value
    page = struct.pack("<QHHI", own, flags, count, overflow) + elements + payload
    return page[:PAGE].ljust(PAGE, b"\0")


@st.composite
def random_inline(draw: st.DrawFn, pages: int) -> bytes:
    """The page inside an inline bucket's value: a leaf of a few elements, or any bytes."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=64))
    count = draw(st.integers(0, 3))
    elements, payload = b"", b""
    for i in range(count):
        key, value = draw(st.binary(max_size=8)), draw(st.binary(max_size=16))
        flags = draw(st.sampled_from([0, 1]))
        elements += struct.pack(
            "<IIII", flags, (count - i) * 16 + len(payload), len(key), len(value)
        )
        payload += key + value
    return struct.pack("<QHHI", 0, draw(mostly(0x02, st.integers(0, 0xFFFF))), count, 0) + (
        elements + payload
    )


@given(st.data())
def test_random_pages_behind_valid_metas(data: st.DataObject) -> None:
    pages = data.draw(st.integers(3, 8))
    hwm = data.draw(mostly(pages, st.integers(0, pages + 2)))
    root = data.draw(mostly(data.draw(st.integers(2, pages - 1)), st.integers(0, pages + 1)))
    freelist = data.draw(mostly(0xFFFFFFFFFFFFFFFF, st.integers(0, pages + 1)))
    txids = data.draw(st.tuples(st.integers(0, 5), st.integers(0, 5)))
    body = b"".join(data.draw(random_page(pgid, pages)) for pgid in range(2, pages))
    metas = [_meta_page(i, root, freelist, hwm, txids[i]) for i in (0, 1)]
    walk(metas[0] + metas[1] + body)
