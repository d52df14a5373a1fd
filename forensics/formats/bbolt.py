"""bbolt (etcd-io/bbolt, formerly boltdb) database files: the on-disk structures, declared once,
and a read-only walk over the buckets of a whole file held in memory.

Facts from bbolt's page.go, meta.go, db.go, bucket.go, node.go and freelist.go:

- The file is an array of pages of one size (the OS page size when the file was created; the
  meta page records it). A page starts with a 16-byte header ``id, flags, count, overflow``; a
  page with ``overflow = n`` spans ``n + 1`` pages. ``flags`` is exactly one of branch (0x01),
  leaf (0x02), meta (0x04) or freelist (0x10).
- Pages 0 and 1 are the two meta pages, written alternately (``txid % 2``). A meta is valid when
  its magic is 0xED0CDAED, its version 2, and its checksum the FNV-1a 64 of the meta bytes before
  the checksum. The database is the valid meta with the higher txid, else the other valid one.
- The meta names the root bucket (a bucket header ``root pgid, sequence``), the freelist page
  (``2**64 - 1`` when the freelist is not synced) and the high-water mark ``pgid``: every page
  in use has an id below it.
- A branch page holds ``count`` elements ``pos, ksize, pgid``; a leaf page ``count`` elements
  ``flags, pos, ksize, vsize``. ``pos`` counts from the element's own first byte; the key follows
  at ``pos``, the value right after it. A leaf element with flag 0x01 is a nested bucket: its
  value is a bucket header, and when the header's root is 0 the bucket is *inline*: a leaf page
  (header and elements, id 0) follows the header inside the value.
- A freelist page holds ``count`` page ids; ``count = 0xFFFF`` means the real count is the first
  u64 and the ids follow it.

Everything here is a pure decoder: bytes in, values out. Every problem of a damaged or hostile
file is a :class:`BoltDamage` with a short kind and a one-line detail; the walk visits each
page at most once and caps the bucket nesting and the tree height, so every input ends.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import construct as cs
import numpy as np

from forensics.errors import Damage
from forensics.formats.thin import numpy_dtype

MAGIC = 0xED0CDAED
VERSION = 2

BRANCH_PAGE = 0x01
LEAF_PAGE = 0x02
META_PAGE = 0x04
FREELIST_PAGE = 0x10
PAGE_TYPES = {
    BRANCH_PAGE: "branch",
    LEAF_PAGE: "leaf",
    META_PAGE: "meta",
    FREELIST_PAGE: "freelist",
}

#: leaf element flag: the value is a nested bucket
BUCKET_LEAF_FLAG = 0x01
#: meta.freelist when the freelist is not written to the file (NoFreelistSync)
NO_FREELIST = 0xFFFFFFFFFFFFFFFF
#: freelist page count that means "the real count is the first id slot"
FREELIST_COUNT_ESCAPE = 0xFFFF

#: bbolt looks for the second meta page at 1 KiB << i for i in 0..14 (page sizes up to 16 MiB)
MIN_PAGE_SIZE = 1024
MAX_PAGE_SIZE = 1024 << 14

#: bounds that make every walk end: levels of bucket nesting plus B+tree height (bbolt's own
#: trees are a handful of levels deep), and pages visited
MAX_DEPTH = 256
MAX_PAGES = 1 << 22

PageHeader = cs.Struct(
    "id" / cs.Int64ul,
    "flags" / cs.Int16ul,
    "count" / cs.Int16ul,
    "overflow" / cs.Int32ul,
)

#: a bucket's header: in the meta page (the root bucket) and at the start of a bucket's value
BucketHeader = cs.Struct(
    "root" / cs.Int64ul,
    "sequence" / cs.Int64ul,
)

Meta = cs.Struct(
    "magic" / cs.Int32ul,
    "version" / cs.Int32ul,
    "page_size" / cs.Int32ul,
    "flags" / cs.Int32ul,
    "root" / BucketHeader,
    "freelist" / cs.Int64ul,
    "pgid" / cs.Int64ul,
    "txid" / cs.Int64ul,
    "checksum" / cs.Int64ul,
)

BranchElement = cs.Struct(
    "pos" / cs.Int32ul,
    "ksize" / cs.Int32ul,
    "pgid" / cs.Int64ul,
)

LeafElement = cs.Struct(
    "flags" / cs.Int32ul,
    "pos" / cs.Int32ul,
    "ksize" / cs.Int32ul,
    "vsize" / cs.Int32ul,
)

PAGE_HEADER_SIZE = PageHeader.sizeof()
BUCKET_HEADER_SIZE = BucketHeader.sizeof()
META_SIZE = Meta.sizeof()
#: the checksum covers the meta bytes before the checksum field (its offset in the declaration)
META_CHECKSUM_OFFSET = META_SIZE - 8
BRANCH_ELEMENT_SIZE = BranchElement.sizeof()
LEAF_ELEMENT_SIZE = LeafElement.sizeof()
PGID_SIZE = 8

assert PAGE_HEADER_SIZE == 16 and META_SIZE == 64 and META_CHECKSUM_OFFSET == 56
assert BRANCH_ELEMENT_SIZE == 16 and LEAF_ELEMENT_SIZE == 16 and BUCKET_HEADER_SIZE == 16

#: element arrays come by the hundred per page: decoded in bulk from the same declarations
BRANCH_DTYPE = numpy_dtype(BranchElement)
LEAF_DTYPE = numpy_dtype(LeafElement)
PAGE_HEADER_STRUCT = struct.Struct("<" + "".join(s.subcon.fmtstr[1:] for s in PageHeader.subcons))

FNV64_OFFSET = 0xCBF29CE484222325
FNV64_PRIME = 0x100000001B3
_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class BoltDamage(Damage):
    """A bbolt file that cannot be read as one. ``kind`` is one of ``too-small``, ``bad-meta``
    (both meta pages fail: bad magic, version, checksum or page size), ``truncated``,
    ``page-out-of-range``, ``page-type``, ``page-id``, ``cycle``, ``element-bounds``,
    ``overlap``, ``bucket-header``, ``too-deep``, ``too-many-pages``."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True)
class MetaPage:
    """One decoded meta page and what is wrong with it (``problem`` is None when it is valid)."""

    index: int
    magic: int
    version: int
    page_size: int
    flags: int
    root: int
    sequence: int
    freelist: int
    pgid: int
    txid: int
    checksum: int
    problem: str | None


@dataclass(frozen=True)
class Page:
    """A page (or an inline bucket's page): its header fields and its bytes."""

    id: int
    flags: int
    count: int
    overflow: int
    data: memoryview

    @property
    def type(self) -> str:
        return page_type(self.flags)


def page_type(flags: int) -> str:
    return PAGE_TYPES.get(flags, f"unknown<{flags:02x}>")


@dataclass(frozen=True)
class Entry:
    """One key of a bucket: ``bucket`` is the path of bucket names from the root bucket (empty
    for the root bucket's own keys). A nested bucket appears as an entry with ``is_bucket`` set
    and its raw bucket-header value, before the entries inside it."""

    bucket: tuple[bytes, ...]
    key: bytes
    value: bytes
    is_bucket: bool = False


# -- checksums and meta pages --------------------------------------------------------------------


def fnv1a_64(data: bytes) -> int:
    """FNV-1a 64 (Go's hash/fnv New64a); used only on the 56 meta bytes."""
    h = FNV64_OFFSET
    for byte in data:
        h = ((h ^ byte) * FNV64_PRIME) & _U64
    return h


def decode_meta(data: bytes | memoryview, offset: int, index: int) -> MetaPage | None:
    """The meta at ``offset`` (page header skipped), or None when the file ends before it."""
    start = offset + PAGE_HEADER_SIZE
    raw = bytes(data[start : start + META_SIZE])
    if len(raw) < META_SIZE:
        return None
    m = Meta.parse(raw)
    problem = _meta_problem(m, raw)
    return MetaPage(
        index,
        m.magic,
        m.version,
        m.page_size,
        m.flags,
        m.root.root,
        m.root.sequence,
        m.freelist,
        m.pgid,
        m.txid,
        m.checksum,
        problem,
    )


def _meta_problem(m: cs.Container, raw: bytes) -> str | None:
    if m.magic != MAGIC:
        return f"bad magic {m.magic:#010x} (not a bbolt meta page)"
    if m.version != VERSION:
        return f"unsupported version {m.version}"
    if m.checksum != fnv1a_64(raw[:META_CHECKSUM_OFFSET]):
        return f"checksum mismatch (stored {m.checksum:#018x})"
    size = m.page_size
    if size < MIN_PAGE_SIZE or size > MAX_PAGE_SIZE or size & (size - 1):
        return f"implausible page size {size}"
    return None


def find_page_size(data: bytes | memoryview) -> int | None:
    """The page size, as bbolt finds it: from a valid first meta, else from the first valid meta
    at 1 KiB << i (where the second meta lies for that page size)."""
    first = decode_meta(data, 0, 0)
    if first is not None and first.problem is None:
        return first.page_size
    for i in range(15):
        pos = MIN_PAGE_SIZE << i
        if pos >= len(data) - MIN_PAGE_SIZE:
            break
        second = decode_meta(data, pos, 1)
        if second is not None and second.problem is None:
            return second.page_size
    return None


def _why_no_meta(data: bytes | memoryview) -> str:
    """What is wrong with meta 0, and with the first page-aligned meta 1 that has the magic."""
    first = decode_meta(data, 0, 0)
    why = [f"meta 0: {first.problem if first is not None else 'unreadable'}"]
    for i in range(15):
        pos = MIN_PAGE_SIZE << i
        second = decode_meta(data, pos, 1)
        if second is None:
            break
        if second.magic == MAGIC:
            why.append(f"meta 1 at byte {pos}: {second.problem}")
            return "; ".join(why)
    why.append("meta 1: no meta page at 1 KiB to 16 MiB")
    return "; ".join(why)


def choose_meta(metas: list[MetaPage]) -> MetaPage | None:
    """bbolt's rule: the meta with the higher txid when it is valid, else the other if valid."""
    for meta in sorted(metas, key=lambda m: m.txid, reverse=True):
        if meta.problem is None:
            return meta
    return None


# -- pages ---------------------------------------------------------------------------------------


def decode_page_header(data: bytes | memoryview, offset: int = 0) -> tuple[int, int, int, int]:
    """``(id, flags, count, overflow)`` of the page header at ``offset``."""
    fields: tuple[int, int, int, int] = PAGE_HEADER_STRUCT.unpack_from(data, offset)
    return fields


def branch_elements(page: Page, budget: Budget | None = None) -> list[tuple[bytes, int]]:
    """``(key, child pgid)`` of a branch page's elements."""
    elems = _element_array(page, BRANCH_DTYPE, BRANCH_ELEMENT_SIZE)
    if budget is not None:
        budget.spend(page.count, int(elems["ksize"].sum(dtype=np.uint64)))
    out = []
    for i, (pos, ksize, pgid) in enumerate(elems.tolist()):
        start = PAGE_HEADER_SIZE + i * BRANCH_ELEMENT_SIZE + pos
        _within(page, i, start + ksize)
        out.append((bytes(page.data[start : start + ksize]), pgid))
    return out


def leaf_elements(page: Page, budget: Budget | None = None) -> list[tuple[int, bytes, bytes]]:
    """``(flags, key, value)`` of a leaf page's elements."""
    elems = _element_array(page, LEAF_DTYPE, LEAF_ELEMENT_SIZE)
    if budget is not None:
        size = elems["ksize"].sum(dtype=np.uint64) + elems["vsize"].sum(dtype=np.uint64)
        budget.spend(page.count, int(size))
    out = []
    for i, (flags, pos, ksize, vsize) in enumerate(elems.tolist()):
        start = PAGE_HEADER_SIZE + i * LEAF_ELEMENT_SIZE + pos
        _within(page, i, start + ksize + vsize)
        key = bytes(page.data[start : start + ksize])
        value = bytes(page.data[start + ksize : start + ksize + vsize])
        out.append((flags, key, value))
    return out


@dataclass
class Budget:
    """What a walk may still decode. In a sound file every element header, key and value occupies
    bytes of its own (an inline bucket's entries lie inside its value: counted twice at most), so
    a file of n bytes holds at most n / 16 elements and 2n bytes of keys and values. Elements
    whose offsets make them overlap could otherwise make a small file decode for ever."""

    elements: int
    nbytes: int

    @classmethod
    def for_file(cls, size: int) -> Budget:
        return cls(size // LEAF_ELEMENT_SIZE, 2 * size)

    def spend(self, elements: int, nbytes: int) -> None:
        self.elements -= elements
        self.nbytes -= nbytes
        if self.elements < 0 or self.nbytes < 0:
            raise BoltDamage(
                "overlap",
                "more elements, keys and values than the file has bytes for: they overlap",
            )


def _element_array(page: Page, dtype: np.dtype, size: int) -> np.ndarray:
    if PAGE_HEADER_SIZE + page.count * size > len(page.data):
        raise BoltDamage(
            "element-bounds",
            f"page {page.id}: {page.count} elements do not fit in its {len(page.data)} bytes",
        )
    return np.frombuffer(page.data, dtype=dtype, count=page.count, offset=PAGE_HEADER_SIZE)


def _within(page: Page, index: int, end: int) -> None:
    if end > len(page.data):
        raise BoltDamage(
            "element-bounds",
            f"page {page.id}: element {index} reaches byte {end}, past the page's "
            f"{len(page.data)} bytes",
        )


def freelist_ids(page: Page) -> list[int]:
    """The page ids of a freelist page (with the 0xFFFF count escape)."""
    count, start = page.count, PAGE_HEADER_SIZE
    if count == FREELIST_COUNT_ESCAPE:
        if len(page.data) < PAGE_HEADER_SIZE + PGID_SIZE:
            raise BoltDamage("element-bounds", f"freelist page {page.id}: no room for its count")
        count = int.from_bytes(page.data[start : start + PGID_SIZE], "little")
        start += PGID_SIZE
    if start + count * PGID_SIZE > len(page.data):
        raise BoltDamage(
            "element-bounds",
            f"freelist page {page.id}: {count} ids do not fit in its {len(page.data)} bytes",
        )
    ids: list[int] = np.frombuffer(page.data, dtype="<u8", count=count, offset=start).tolist()
    return ids


# -- the database --------------------------------------------------------------------------------


@dataclass
class BoltFile:
    """A bbolt file in memory, opened on its current meta page. Build it with :func:`open_bolt`."""

    data: memoryview
    page_size: int
    meta: MetaPage
    metas: list[MetaPage]
    max_pages: int = MAX_PAGES
    #: the pages of the bucket trees that :meth:`entries` read so far: pgid → overflow
    tree_pages: dict[int, int] = field(default_factory=dict)

    @property
    def fell_back(self) -> bool:
        """True when the meta with the higher txid is damaged and the older one is in use."""
        return any(m.txid > self.meta.txid for m in self.metas)

    def page(self, pgid: int, wanted: tuple[int, ...]) -> Page:
        """Page ``pgid`` with its overflow pages, checked for range, id and type."""
        if pgid < 2 or pgid >= self.meta.pgid:
            raise BoltDamage(
                "page-out-of-range",
                f"page {pgid} is out of range (data pages are 2 to {self.meta.pgid - 1})",
            )
        offset = pgid * self.page_size
        if offset + PAGE_HEADER_SIZE > len(self.data):
            raise BoltDamage("truncated", f"page {pgid} lies past the end of the file")
        pid, flags, count, overflow = decode_page_header(self.data, offset)
        if pid != pgid:
            raise BoltDamage("page-id", f"page {pgid} calls itself page {pid}")
        if flags not in wanted:
            want = " or ".join(PAGE_TYPES[w] for w in wanted)
            raise BoltDamage(
                "page-type", f"page {pgid} is a {page_type(flags)} page, not a {want} page"
            )
        if pgid + overflow >= self.meta.pgid:
            raise BoltDamage(
                "page-out-of-range",
                f"page {pgid}'s {overflow} overflow pages reach past the high-water mark "
                f"{self.meta.pgid}",
            )
        end = offset + (overflow + 1) * self.page_size
        if end > len(self.data):
            raise BoltDamage("truncated", f"page {pgid} ends past the end of the file")
        return Page(pid, flags, count, overflow, self.data[offset:end])

    def entries(self) -> Iterator[Entry]:
        """Every key of every bucket, depth first in key order (a bucket's own entry before its
        contents). Raises :class:`BoltDamage` at the first problem met.

        The walk is iterative (an explicit stack, no recursion), visits each page once (a page
        reached twice is a loop or a page shared by two parents: damage either way) and stops at
        ``max_pages`` pages and :data:`MAX_DEPTH` levels, so every input ends."""
        seen = self.tree_pages = {}
        budget = Budget.for_file(len(self.data))
        stack: list[_Work | Entry] = [_Work((), self.meta.root, None, 0)]
        while stack:
            work = stack.pop()
            if isinstance(work, Entry):
                yield work
                continue
            if work.depth > MAX_DEPTH:
                raise BoltDamage("too-deep", f"buckets and trees nested over {MAX_DEPTH} levels")
            page = work.inline
            if page is None:
                page = self._visit(work.pgid, seen)
            if page.flags == BRANCH_PAGE:
                children = [
                    _Work(work.path, c, None, work.depth + 1)
                    for _, c in branch_elements(page, budget)
                ]
                stack.extend(reversed(children))
            else:
                stack.extend(reversed(_leaf_work(work, page, budget)))

    def _visit(self, pgid: int, seen: dict[int, int]) -> Page:
        if pgid in seen:
            raise BoltDamage("cycle", f"page {pgid} is reached twice (a loop or a shared page)")
        if len(seen) >= self.max_pages:
            raise BoltDamage("too-many-pages", f"more than {self.max_pages} pages in the tree")
        seen[pgid] = 0
        page = self.page(pgid, (BRANCH_PAGE, LEAF_PAGE))
        seen[pgid] = page.overflow
        return page

    def freelist(self) -> list[int]:
        """The free page ids recorded in the file (empty when the freelist is not synced)."""
        if self.meta.freelist == NO_FREELIST:
            return []
        return freelist_ids(self.page(self.meta.freelist, (FREELIST_PAGE,)))


@dataclass(frozen=True)
class _Work:
    """A bucket's tree node still to read: a page id, or an inline bucket's page."""

    path: tuple[bytes, ...]
    pgid: int
    inline: Page | None
    depth: int


def _leaf_work(work: _Work, page: Page, budget: Budget) -> list[Entry | _Work]:
    """A leaf's entries in key order, each nested bucket followed by the work of reading it."""
    out: list[Entry | _Work] = []
    for flags, key, value in leaf_elements(page, budget):
        if not flags & BUCKET_LEAF_FLAG:
            out.append(Entry(work.path, key, value))
            continue
        out.append(Entry(work.path, key, value, is_bucket=True))
        path = work.path + (key,)
        root, inline, _ = nested_bucket(_shown(b"/".join(path)), value)
        out.append(_Work(path, root, inline, work.depth + 1))
    return out


def nested_bucket(name: str, value: bytes) -> tuple[int, Page | None, int]:
    """A nested bucket's value: its root pgid (0 for an inline bucket), its inline leaf page
    (None for one with pages of its own), its sequence. Raises :class:`BoltDamage` naming the
    bucket as ``name``."""
    if len(value) < BUCKET_HEADER_SIZE:
        raise BoltDamage("bucket-header", f"bucket {name!r}: value too short for a bucket header")
    root = int.from_bytes(value[:8], "little")  # BucketHeader's two fields, read directly
    sequence = int.from_bytes(value[8:16], "little")
    if root != 0:
        return root, None, sequence
    body = memoryview(value)[BUCKET_HEADER_SIZE:]
    if len(body) < PAGE_HEADER_SIZE:
        raise BoltDamage("bucket-header", f"inline bucket {name!r}: no room for its page header")
    pid, flags, count, overflow = decode_page_header(body)
    if flags != LEAF_PAGE:
        raise BoltDamage(
            "page-type", f"inline bucket {name!r}: a {page_type(flags)} page, not a leaf page"
        )
    return 0, Page(pid, flags, count, overflow, body), sequence


def _shown(name: bytes, limit: int = 60) -> str:
    """A bucket path for a one-line message: decoded with escapes, cut at ``limit`` bytes."""
    text = name[:limit].decode("utf-8", "backslashreplace")
    return text + "…" if len(name) > limit else text


def open_bolt(data: bytes, *, max_pages: int = MAX_PAGES) -> BoltFile:
    """Open the bbolt file ``data`` on its current meta page. Raises :class:`BoltDamage`."""
    view = memoryview(data)
    if len(view) < PAGE_HEADER_SIZE + META_SIZE:
        raise BoltDamage("too-small", f"{len(view)} bytes: too small for a bbolt file")
    page_size = find_page_size(view)
    if page_size is None:
        raise BoltDamage("bad-meta", f"no valid meta page ({_why_no_meta(view)})")
    metas = [m for m in (decode_meta(view, i * page_size, i) for i in (0, 1)) if m is not None]
    metas = [_same_page_size(m, page_size) for m in metas]
    meta = choose_meta(metas)
    if meta is None:
        why = "; ".join(f"meta {m.index}: {m.problem}" for m in metas)
        raise BoltDamage("bad-meta", f"no valid meta page ({why})")
    if meta.pgid * page_size > len(view):
        raise BoltDamage(
            "truncated",
            f"{len(view)} bytes, but the meta page counts {meta.pgid} pages of {page_size} bytes",
        )
    return BoltFile(view, page_size, meta, metas, max_pages)


def _same_page_size(meta: MetaPage, page_size: int) -> MetaPage:
    if meta.problem is None and meta.page_size != page_size:
        problem = f"page size {meta.page_size} differs from the file's {page_size}"
        return replace(meta, problem=problem)
    return meta


def read_entries(data: bytes) -> list[Entry]:
    """Every entry of the bbolt file ``data``, or :class:`BoltDamage`."""
    return list(open_bolt(data).entries())
