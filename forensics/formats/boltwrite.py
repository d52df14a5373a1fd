"""A bbolt database file written afresh from a tree of buckets: the encoder that goes with
:mod:`forensics.formats.bbolt` (same declarations, same facts from bbolt's page.go, node.go,
bucket.go and db.go).

The file is laid out as a freshly compacted bbolt database would be:

- pages 0 and 1: the two meta pages, both valid (txids ``t`` and ``t + 1``: bbolt opens the
  newer), each with its FNV-1a 64 checksum;
- page 2: an empty freelist (every page below the high-water mark is in use);
- pages 3…: each bucket's B+tree, written bottom-up: leaf pages filled in key order (a value
  larger than a page gets overflow pages), then branch pages over them until one root remains.

A nested bucket with no buckets of its own whose leaf fits in a quarter page is stored
*inline* in its parent's value (bbolt's ``inlineable``/``maxInlineBucketSize``), as bbolt itself
stores small buckets; any other is written as its own tree and its header names the root page.
Keys are written in bytewise order, values and nested buckets sharing one key space. Every
bucket keeps its sequence (``NextSequence``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from forensics.errors import OperationalError
from forensics.formats.bbolt import (
    BRANCH_ELEMENT_SIZE,
    BRANCH_PAGE,
    BUCKET_LEAF_FLAG,
    FREELIST_PAGE,
    LEAF_ELEMENT_SIZE,
    LEAF_PAGE,
    MAGIC,
    MAX_DEPTH,
    META_CHECKSUM_OFFSET,
    META_PAGE,
    PAGE_HEADER_SIZE,
    VERSION,
    BranchElement,
    BucketHeader,
    LeafElement,
    Meta,
    PageHeader,
    fnv1a_64,
)

#: the page size bbolt uses on Linux (the OS page size)
DEFAULT_PAGE_SIZE = 4096
#: the first page of the bucket trees (0, 1: meta; 2: freelist)
FIRST_DATA_PAGE = 3
FREELIST_PGID = 2
#: bbolt's limits on a key and a value (bucket.go: MaxKeySize, MaxValueSize)
MAX_KEY_SIZE = 32768
MAX_VALUE_SIZE = (1 << 31) - 2


class BoltBucket(Protocol):
    """What the encoder needs of a bucket: its keys, its nested buckets, its sequence."""

    @property
    def values(self) -> Mapping[bytes, bytes]: ...

    @property
    def buckets(self) -> Mapping[bytes, BoltBucket]: ...

    @property
    def sequence(self) -> int: ...


class BoltWriteError(OperationalError, ValueError):
    """The tree cannot be written as a bbolt file (a key or value beyond bbolt's limits, or
    nesting deeper than any reader accepts)."""


@dataclass
class EncodedBolt:
    """The file's bytes and what went into it."""

    data: bytes
    pages: int
    buckets: int
    keys: int


@dataclass
class _Pages:
    """The data pages written so far, each padded to whole pages, from page 3 on."""

    page_size: int
    chunks: list[bytes] = field(default_factory=list)
    next_id: int = FIRST_DATA_PAGE

    def add(self, flags: int, elements: bytes, data: bytes, count: int) -> int:
        body = elements + data
        pages = -(-(PAGE_HEADER_SIZE + len(body)) // self.page_size)
        pgid = self.next_id
        header = PageHeader.build({"id": pgid, "flags": flags, "count": count,
                                   "overflow": pages - 1})  # fmt: skip
        chunk = header + body
        self.chunks.append(chunk + bytes(pages * self.page_size - len(chunk)))
        self.next_id += pages
        return pgid


@dataclass
class _Counts:
    buckets: int = 0
    keys: int = 0


def encode_bolt(
    root: BoltBucket, *, page_size: int = DEFAULT_PAGE_SIZE, txid: int = 1
) -> EncodedBolt:
    """``root`` (the root bucket: its keys and buckets) as the bytes of a valid bbolt file,
    its meta pages at transactions ``txid`` and ``txid + 1``."""
    pages = _Pages(page_size)
    counts = _Counts()
    root_pgid = _write_tree(_items(root, pages, counts, 0), pages)
    high_water = pages.next_id
    metas = b"".join(
        _meta_page(i, page_size, root_pgid, root.sequence, high_water, txid + i) for i in (0, 1)
    )
    freelist = PageHeader.build({"id": FREELIST_PGID, "flags": FREELIST_PAGE, "count": 0,
                                 "overflow": 0})  # fmt: skip
    data = metas + freelist + bytes(page_size - len(freelist)) + b"".join(pages.chunks)
    assert len(data) == high_water * page_size
    return EncodedBolt(data, high_water, counts.buckets, counts.keys)


def _items(
    bucket: BoltBucket, pages: _Pages, counts: _Counts, depth: int
) -> list[tuple[int, bytes, bytes]]:
    """``(flags, key, value)`` of a bucket's keys and nested buckets, in key order; each nested
    bucket written first (its value is its header, and its inline page when it has one)."""
    if depth > MAX_DEPTH:
        raise BoltWriteError(f"buckets nested over {MAX_DEPTH} levels")
    items: dict[bytes, tuple[int, bytes, bytes]] = {}
    for key, value in bucket.values.items():
        _check_sizes(key, value)
        items[key] = (0, key, bytes(value))
        counts.keys += 1
    for key, child in bucket.buckets.items():
        _check_sizes(key, b"")
        if key in items:
            raise BoltWriteError(f"key {key!r} is both a value and a bucket")
        items[key] = (BUCKET_LEAF_FLAG, key, _bucket_value(child, pages, counts, depth + 1))
        counts.buckets += 1
    return [items[k] for k in sorted(items)]


def _check_sizes(key: bytes, value: bytes) -> None:
    if not key or len(key) > MAX_KEY_SIZE:
        raise BoltWriteError(f"a key of {len(key)} bytes (bbolt allows 1 to {MAX_KEY_SIZE})")
    if len(value) > MAX_VALUE_SIZE:
        raise BoltWriteError(f"a value of {len(value)} bytes is beyond bbolt's limit")


def _bucket_value(child: BoltBucket, pages: _Pages, counts: _Counts, depth: int) -> bytes:
    items = _items(child, pages, counts, depth)
    if not child.buckets and _leaf_size(items) <= pages.page_size // 4:
        elements, data = _leaf_body(items)
        page = PageHeader.build({"id": 0, "flags": LEAF_PAGE, "count": len(items),
                                 "overflow": 0})  # fmt: skip
        return BucketHeader.build({"root": 0, "sequence": child.sequence}) + page + elements + data
    pgid = _write_tree(items, pages)
    return BucketHeader.build({"root": pgid, "sequence": child.sequence})


def _leaf_size(items: list[tuple[int, bytes, bytes]]) -> int:
    return PAGE_HEADER_SIZE + sum(LEAF_ELEMENT_SIZE + len(k) + len(v) for _, k, v in items)


def _write_tree(items: list[tuple[int, bytes, bytes]], pages: _Pages) -> int:
    """Write a bucket's leaves, then branch levels over them; the root page's id."""
    level = [(first, pgid) for first, pgid in _write_leaves(items, pages)]
    while len(level) > 1:
        level = _write_branches(level, pages)
    return level[0][1]


def _write_leaves(items: list[tuple[int, bytes, bytes]], pages: _Pages) -> list[tuple[bytes, int]]:
    out: list[tuple[bytes, int]] = []
    for group in _groups([LEAF_ELEMENT_SIZE + len(k) + len(v) for _, k, v in items], pages):
        chunk = items[group[0] : group[1]]
        elements, data = _leaf_body(chunk)
        pgid = pages.add(LEAF_PAGE, elements, data, len(chunk))
        out.append((chunk[0][1] if chunk else b"", pgid))
    return out


def _leaf_body(items: list[tuple[int, bytes, bytes]]) -> tuple[bytes, bytes]:
    """The element array and the keys and values after it (``pos`` counts from each element's
    own first byte, as bbolt's node.write sets it)."""
    elements, data = bytearray(), bytearray()
    n = len(items)
    for i, (flags, key, value) in enumerate(items):
        pos = (n - i) * LEAF_ELEMENT_SIZE + len(data)
        elements += LeafElement.build({"flags": flags, "pos": pos, "ksize": len(key),
                                       "vsize": len(value)})  # fmt: skip
        data += key + value
    return bytes(elements), bytes(data)


def _write_branches(children: list[tuple[bytes, int]], pages: _Pages) -> list[tuple[bytes, int]]:
    out: list[tuple[bytes, int]] = []
    for group in _groups([BRANCH_ELEMENT_SIZE + len(k) for k, _ in children], pages):
        chunk = children[group[0] : group[1]]
        elements, data = bytearray(), bytearray()
        n = len(chunk)
        for i, (key, pgid) in enumerate(chunk):
            pos = (n - i) * BRANCH_ELEMENT_SIZE + len(data)
            elements += BranchElement.build({"pos": pos, "ksize": len(key), "pgid": pgid})
            data += key
        out.append((chunk[0][0], pages.add(BRANCH_PAGE, bytes(elements), bytes(data), n)))
    return out


def _groups(sizes: list[int], pages: _Pages) -> list[tuple[int, int]]:
    """``[start, end)`` runs of elements, each filling one page (a run of one element may
    need overflow pages); an empty bucket is one empty leaf. Pages are filled to the brim:
    bbolt splits and merges nodes by its own fill rules when it next writes them."""
    room = pages.page_size - PAGE_HEADER_SIZE
    groups: list[tuple[int, int]] = []
    start, used = 0, 0
    for i, size in enumerate(sizes):
        if i > start and used + size > room:
            groups.append((start, i))
            start, used = i, 0
        used += size
    groups.append((start, len(sizes)))
    return groups


def _meta_page(
    index: int, page_size: int, root: int, sequence: int, high_water: int, txid: int
) -> bytes:
    fields = {
        "magic": MAGIC,
        "version": VERSION,
        "page_size": page_size,
        "flags": 0,
        "root": {"root": root, "sequence": sequence},
        "freelist": FREELIST_PGID,
        "pgid": high_water,
        "txid": txid,
        "checksum": 0,
    }
    raw = Meta.build(fields)
    fields["checksum"] = fnv1a_64(raw[:META_CHECKSUM_OFFSET])
    header = PageHeader.build({"id": index, "flags": META_PAGE, "count": 0, "overflow": 0})
    page = header + Meta.build(fields)
    return page + bytes(page_size - len(page))
