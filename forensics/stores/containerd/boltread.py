"""A bbolt file read as a tree of buckets, keeping what can be read when parts cannot.

:mod:`forensics.formats.bbolt` decodes the structures and stops at the first damage. containerd's
two databases are read here with the same declarations, one page at a time, so that a damaged
page costs only the keys on it: the problem is recorded with the bucket it belongs to, that
bucket is marked incomplete, and the walk goes on with the rest of the tree.

When the file cannot be opened on a meta page:

- **truncated** (the meta counts more pages than the file has): the tree is walked; the pages
  past the end are damage of their own buckets. When the root page itself is past the end, the
  pages that remain are scanned as below.
- **no valid meta page**: a meta page whose magic, version and page size are sound but whose
  checksum is wrong is used, as the better of the two; when neither has the magic, the pages
  are scanned for a leaf holding one of the root bucket's known keys (``root_keys``), and the
  candidate from which the most keys can be read is taken as the root. Either way the salvage
  is said (:attr:`BoltTree.salvage`) and every value read from it is a reading, not a proof.

Every walk ends: each page is visited once (a page reached again is a loop or a shared page),
nesting is capped, and the element budget of :class:`~forensics.formats.bbolt.Budget` bounds
what a file of n bytes can yield.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from forensics.formats.bbolt import (
    BRANCH_PAGE,
    BUCKET_LEAF_FLAG,
    LEAF_PAGE,
    MAGIC,
    MAX_DEPTH,
    MAX_PAGE_SIZE,
    MIN_PAGE_SIZE,
    VERSION,
    BoltDamage,
    BoltFile,
    Budget,
    MetaPage,
    Page,
    branch_elements,
    decode_meta,
    decode_page_header,
    leaf_elements,
    nested_bucket,
    open_bolt,
)

#: page sizes tried, most likely first, when no meta page tells it
PAGE_SIZE_GUESSES = (4096, 16384, 8192, 65536, 1024, 2048, 32768)
#: root candidates walked at most when the tree is found by scanning
MAX_CANDIDATES = 32


@dataclass
class Bucket:
    """A bucket's keys (``values``) and nested buckets. ``complete`` is False when a part of
    its tree could not be read (its own pages or a nested bucket's header)."""

    values: dict[bytes, bytes] = field(default_factory=dict)
    buckets: dict[bytes, Bucket] = field(default_factory=dict)
    sequence: int = 0
    complete: bool = True

    def bucket(self, *names: bytes) -> Bucket | None:
        node: Bucket | None = self
        for name in names:
            node = node.buckets.get(name) if node is not None else None
        return node

    def count(self) -> int:
        """Keys and buckets in this bucket and below it."""
        return len(self.values) + sum(1 + b.count() for b in self.buckets.values())


@dataclass(frozen=True)
class TreeProblem:
    """Damage met in the walk: the bucket path it belongs to, a kind, one line."""

    kind: str
    detail: str
    bucket: tuple[bytes, ...] = ()


@dataclass
class BoltTree:
    """What could be read of a bbolt file."""

    root: Bucket
    problems: list[TreeProblem] = field(default_factory=list)
    page_size: int | None = None
    txid: int | None = None
    fell_back: bool = False
    salvage: str | None = None
    #: nothing at all could be read (no root found)
    unreadable: bool = False


def read_tree(data: bytes, root_keys: tuple[bytes, ...] = (b"v1",)) -> BoltTree:
    """Read every bucket of the bbolt file ``data`` that can be read. Never raises."""
    try:
        db = open_bolt(data)
    except BoltDamage as damage:
        return _read_damaged(data, damage, root_keys)
    tree = BoltTree(Bucket(), page_size=db.page_size, txid=db.meta.txid, fell_back=db.fell_back)
    if db.fell_back:
        newer = max(db.metas, key=lambda m: m.txid)
        tree.problems.append(
            TreeProblem("bad-meta", f"meta {newer.index} is damaged ({newer.problem}); "
                        f"read on the older meta {db.meta.index} (txid {db.meta.txid})")
        )  # fmt: skip
    _walk(db, db.meta.root, tree)
    return tree


def _read_damaged(data: bytes, damage: BoltDamage, root_keys: tuple[bytes, ...]) -> BoltTree:
    problem = TreeProblem(damage.kind, str(damage))
    if damage.kind == "truncated":
        db = _open_truncated(data)
        if db is not None:
            tree = BoltTree(Bucket(), [problem], db.page_size, db.meta.txid, db.fell_back)
            _walk(db, db.meta.root, tree)
            if tree.root.count():
                return tree
            # the root itself is past the end (bbolt writes new pages at the end): older
            # copies of the tree may still lie in the pages that remain
            return _scan_for_root(memoryview(data), problem, root_keys)
    if damage.kind == "bad-meta":
        return _salvage(data, problem, root_keys)
    return BoltTree(Bucket(complete=False), [problem], unreadable=True)


def _open_truncated(data: bytes) -> BoltFile | None:
    """The file opened on its valid meta although it is shorter than the meta says."""
    view = memoryview(data)
    for size in _page_sizes(view):
        metas = [m for m in (decode_meta(view, i * size, i) for i in (0, 1)) if m is not None]
        valid = [m for m in metas if m.problem is None and m.page_size == size]
        if valid:
            meta = max(valid, key=lambda m: m.txid)
            return BoltFile(view, size, meta, metas)
    return None


def _page_sizes(view: memoryview) -> list[int]:
    first = decode_meta(view, 0, 0)
    sizes = [first.page_size] if first is not None and _plausible_size(first.page_size) else []
    return sizes + [s for s in PAGE_SIZE_GUESSES if s not in sizes]


def _plausible_size(size: int) -> bool:
    return MIN_PAGE_SIZE <= size <= MAX_PAGE_SIZE and not size & (size - 1)


# -- salvage without a valid meta page -----------------------------------------------------------


def _salvage(data: bytes, problem: TreeProblem, root_keys: tuple[bytes, ...]) -> BoltTree:
    view = memoryview(data)
    meta = _checksum_only_meta(view)
    if meta is not None:
        db = BoltFile(view, meta.page_size, meta, [meta])
        how = (f"meta {meta.index} read despite its bad checksum (txid {meta.txid}, "
               f"root page {meta.root})")  # fmt: skip
        tree = BoltTree(Bucket(), [problem], meta.page_size, meta.txid, salvage=how)
        _walk(db, meta.root, tree)
        if tree.root.count():
            return tree
    return _scan_for_root(view, problem, root_keys)


def _checksum_only_meta(view: memoryview) -> MetaPage | None:
    """Of the meta pages whose only fault is the checksum, the one with the higher txid."""
    found = []
    for size in _page_sizes(view):
        for index in (0, 1):
            meta = decode_meta(view, index * size, index)
            if meta is None or meta.magic != MAGIC or meta.version != VERSION:
                continue
            if meta.page_size == size and meta.problem and meta.problem.startswith("checksum"):
                found.append(meta)
        if found:
            break
    return max(found, key=lambda m: m.txid) if found else None


def _scan_for_root(
    view: memoryview, problem: TreeProblem, root_keys: tuple[bytes, ...]
) -> BoltTree:
    size = _guess_page_size(view)
    if size is None:
        return BoltTree(Bucket(complete=False), [problem], unreadable=True)
    pages = len(view) // size
    best: BoltTree | None = None
    for pgid in _root_candidates(view, size, pages, root_keys):
        meta = MetaPage(-1, MAGIC, VERSION, size, 0, pgid, 0, 0, pages, 0, 0, "salvaged")
        how = (f"no valid meta page: the pages were scanned and page {pgid} taken as the root "
               "(the candidate from which the most keys could be read)")  # fmt: skip
        tree = BoltTree(Bucket(), [problem], size, salvage=how)
        _walk(BoltFile(view, size, meta, [meta]), pgid, tree)
        if best is None or tree.root.count() > best.root.count():
            best = tree
    if best is None:
        return BoltTree(Bucket(complete=False), [problem], size, unreadable=True)
    return best


def _guess_page_size(view: memoryview) -> int | None:
    """The page size under which the most pages carry their own id in their header."""
    best, best_hits = None, 0
    for size in PAGE_SIZE_GUESSES:
        pages = len(view) // size
        hits = 0
        for pgid in range(2, min(pages, 4096)):
            pid, flags, _, _ = decode_page_header(view, pgid * size)
            hits += pid == pgid and flags in (BRANCH_PAGE, LEAF_PAGE)
        if hits > best_hits:
            best, best_hits = size, hits
    return best


def _root_candidates(
    view: memoryview, size: int, pages: int, root_keys: tuple[bytes, ...]
) -> list[int]:
    """Leaf pages holding a nested bucket named one of ``root_keys``, newest (highest) first."""
    found: list[int] = []
    for pgid in range(pages - 1, 1, -1):
        pid, flags, count, overflow = decode_page_header(view, pgid * size)
        if pid != pgid or flags != LEAF_PAGE or count == 0:
            continue
        end = (pgid + overflow + 1) * size
        page = Page(pid, flags, count, overflow, view[pgid * size : end])
        try:
            elements = leaf_elements(page)
        except BoltDamage:
            continue
        if any(f & BUCKET_LEAF_FLAG and k in root_keys for f, k, _ in elements):
            found.append(pgid)
            if len(found) >= MAX_CANDIDATES:
                break
    return found


# -- the walk ------------------------------------------------------------------------------------


@dataclass
class _Work:
    node: Bucket
    path: tuple[bytes, ...]
    pgid: int
    inline: Page | None
    depth: int


def _walk(db: BoltFile, root: int, tree: BoltTree) -> None:
    """Fill ``tree.root`` from the root bucket at page ``root``; damage recorded, not raised."""
    seen: set[int] = set()
    budget = Budget.for_file(len(db.data))
    stack = [_Work(tree.root, (), root, None, 0)]
    while stack:
        work = stack.pop()
        try:
            stack.extend(_step(db, work, seen, budget))
        except BoltDamage as damage:
            work.node.complete = False
            tree.problems.append(TreeProblem(damage.kind, str(damage), work.path))
            if damage.kind == "overlap":  # the budget is spent: nothing more can be trusted
                return


def _step(db: BoltFile, work: _Work, seen: set[int], budget: Budget) -> list[_Work]:
    if work.depth > MAX_DEPTH:
        raise BoltDamage("too-deep", f"buckets and trees nested over {MAX_DEPTH} levels")
    page = work.inline
    if page is None:
        if work.pgid in seen:
            raise BoltDamage(
                "cycle", f"page {work.pgid} is reached twice (a loop or a shared page)"
            )
        seen.add(work.pgid)
        page = db.page(work.pgid, (BRANCH_PAGE, LEAF_PAGE))
    if page.flags == BRANCH_PAGE:
        children = branch_elements(page, budget)
        return [_Work(work.node, work.path, c, None, work.depth + 1) for _, c in reversed(children)]
    more: list[_Work] = []
    for flags, key, value in leaf_elements(page, budget):
        if not flags & BUCKET_LEAF_FLAG:
            work.node.values[key] = value
            continue
        child = work.node.buckets.setdefault(key, Bucket())
        path = work.path + (key,)
        try:
            name = b"/".join(path)[:60].decode("utf-8", "backslashreplace")
            pgid, inline, sequence = nested_bucket(name, value)
        except BoltDamage as damage:
            child.complete = False
            raise BoltDamage(damage.kind, str(damage)) from None
        child.sequence = sequence
        more.append(_Work(child, path, pgid, inline, work.depth + 1))
    return more
