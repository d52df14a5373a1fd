"""Walking persistent-data btrees with bounds, loop and key-range protection.

A :class:`ForestWalker` reads one or more trees of the same value type (all the bottom-level
mapping trees of a pool, or a single details tree) in two phases:

1. the internal nodes, depth first in Python (there are few: about one per 250 leaves), each
   checked like ``thin_check`` checks it; children come out of the node as numpy arrays;
2. the leaves, ``READ_RUN`` at a time: headers through the numpy view of every block, keys
   gathered from the file with index arithmetic (no per-leaf Python work beyond the checksum).

The entries themselves are not kept: a :class:`Forest` holds what each leaf is (block, number of
entries, width) and gathers keys and values from the file when asked: a run of leaves
(:meth:`Forest.chunks`, :meth:`Forest.entry_runs`) or one tree (:meth:`Forest.entries`) at a
time. Every ``READ_RUN`` leaves the pages read are handed back (:meth:`MetadataFile.release`),
so that memory follows the run, not the pool: the file's pages count in the resident size
while they are mapped.

Subtrees shared between trees (snapshots share their origin's nodes) are walked once: a memo
keyed by block hands the second tree the leaves found under it. A node that fails a check is
reported once, with the key range that its parent gives it: what the damage hides. Every child
pointer of a node visited for the first time is a metadata reference (for the space-map check).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forensics.formats import thin as fmt
from forensics.thin.blocks import WORDS_PER_BLOCK, MetadataFile
from forensics.thin.findings import Findings
from forensics.thin.node import (
    INTERNAL,
    NodeError,
    NodeRule,
    describe,
    keys_ascend,
    keys_within,
    leaf_rule,
    node_error,
    node_errors,
    unordered_rows,
)

KEY_MAX = (1 << 64) - 1

MAX_DEPTH = 16


def keys_at(blocks: Any) -> Any:
    """Where the keys of nodes ``blocks`` start in the file's 64-bit words."""
    return blocks * WORDS_PER_BLOCK + fmt.NODE_KEYS_WORD


def values_at(blocks: Any, width: Any, value_size: int) -> Any:
    """Where the values of nodes ``blocks`` (``width`` keys each) start, in units of
    ``value_size``: 64-bit words for 8-byte values, 32-bit words for 4-byte ones, bytes else."""
    start = blocks * fmt.BLOCK_SIZE + fmt.node_values_offset(width)
    return start // value_size if value_size in (4, 8) else start


@dataclass(frozen=True)
class Damage:
    """Keys ``lo..hi`` (inclusive) of tree ``owner`` are unreadable because of ``block``."""

    owner: int
    block: int
    lo: int
    hi: int


#: leaves read between two releases of the file's pages. A read fault maps up to 16 pages
#: around the one read (the kernel's fault-around), so scattered leaves cost up to 64 KiB each:
#: 256 of them at most 16 MiB
READ_RUN = 256
#: leaves handed out at a time by :meth:`Forest.chunks` (about 4,000 × 126 mappings)
CHUNK_LEAVES = 1024


@dataclass
class Forest:
    """The readable leaves of a set of trees, in key order per tree.

    ``leaf_*`` describe each distinct readable leaf; their entries stay in the file until asked
    for (:meth:`chunks`, :meth:`entries`, :attr:`keys`). ``ref_owner``/``ref_leaf`` list, tree by
    tree and in key order, the leaves each tree reaches (a shared leaf once per tree).
    """

    meta: MetadataFile
    owners: list[int]
    value_size: int
    leaf_blocks: np.ndarray
    leaf_nr: np.ndarray
    #: max_entries of each leaf: where its values start
    leaf_width: np.ndarray
    ref_owner: np.ndarray
    ref_leaf: np.ndarray
    references: np.ndarray
    damage: list[Damage] = field(default_factory=list)
    nodes: int = 0
    #: the internal nodes walked, and every leaf block walked (readable or not)
    internal_nodes: set[int] = field(default_factory=set)
    walked_leaves: np.ndarray = field(default_factory=lambda: _EMPTY)

    @functools.cached_property
    def visited(self) -> set[int]:
        """Every node block walked, internal nodes and leaves (made when first asked: only
        the metadata snapshot's walk and repair need it)."""
        return self.internal_nodes | set(self.walked_leaves.tolist())

    @property
    def keys(self) -> np.ndarray:
        """The keys of every distinct leaf, flat (for small trees: it gathers them all)."""
        return self._all_entries[0]

    @property
    def values(self) -> np.ndarray:
        """The values of every distinct leaf, flat, as :attr:`keys`."""
        return self._all_entries[1]

    @functools.cached_property
    def _all_entries(self) -> tuple[np.ndarray, np.ndarray]:
        return self.gather(np.arange(self.leaf_nr.size))

    @property
    def nr_entries(self) -> int:
        return int(self.leaf_nr.sum())

    def entries_per_owner(self) -> np.ndarray:
        """How many entries each tree holds (shared leaves counted in every tree)."""
        weights = self.leaf_nr[self.ref_leaf].astype(np.float64)
        counts = np.bincount(self.ref_owner, weights=weights, minlength=len(self.owners))
        return counts.astype(np.int64)

    def damaged_owners(self) -> set[int]:
        return {d.owner for d in self.damage}

    def leaves_of(self, owner: int) -> np.ndarray:
        """The leaves of tree ``owner``, in key order."""
        return self.ref_leaf[self.ref_owner == owner]

    def gather(self, leaves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keys and values of ``leaves`` (indices of distinct leaves), flat, in that order; the
        file's pages are released every ``READ_RUN`` leaves."""
        keys, values = self._collect(leaves, with_keys=True)
        assert keys is not None
        return keys, values

    def values_of(self, leaves: np.ndarray) -> np.ndarray:
        """The values of ``leaves``, as :meth:`gather` (the keys are not read)."""
        return self._collect(leaves, with_keys=False)[1]

    def _collect(
        self, leaves: np.ndarray, *, with_keys: bool
    ) -> tuple[np.ndarray | None, np.ndarray]:
        if leaves.size <= READ_RUN:
            out = self._gather_run(leaves, with_keys)
            self._release(leaves)
            return out
        total = int(self.leaf_nr[leaves].sum())
        keys = np.empty(total, dtype=np.uint64) if with_keys else None
        values = np.empty(total, dtype=_value_dtype(self.value_size))
        at = 0
        for i in range(0, leaves.size, READ_RUN):
            run = leaves[i : i + READ_RUN]
            run_keys, run_values = self._gather_run(run, with_keys)
            if keys is not None and run_keys is not None:
                keys[at : at + run_keys.size] = run_keys
            values[at : at + run_values.size] = run_values
            at += run_values.size
            self._release(run)
        return keys, values

    def _gather_run(
        self, leaves: np.ndarray, with_keys: bool
    ) -> tuple[np.ndarray | None, np.ndarray]:
        return leaf_entries(
            self.meta,
            self.leaf_blocks[leaves],
            self.leaf_width[leaves],
            self.leaf_nr[leaves],
            self.value_size,
            with_keys=with_keys,
        )

    def _release(self, leaves: np.ndarray) -> None:
        """Hand back the pages of the blocks of ``leaves`` just read."""
        if leaves.size:
            blocks = self.leaf_blocks[leaves]
            self.meta.release(int(blocks.min()), int(blocks.max()) + 1)

    def first_keys(self, leaves: np.ndarray) -> np.ndarray:
        """The first key of each of ``leaves`` (indices of distinct leaves holding entries)."""
        return self.meta.words[keys_at(self.leaf_blocks[leaves].astype(np.int64))]

    def entries(self, owner: int) -> tuple[np.ndarray, np.ndarray]:
        """Keys and values of tree ``owner``, in key order."""
        return self.gather(self.leaves_of(owner))

    def entry_runs(
        self, owner: int, size: int = CHUNK_LEAVES
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Keys and values of tree ``owner``, in key order, ``size`` leaves at a time."""
        leaves = self.leaves_of(owner)
        for start in range(0, leaves.size, size):
            yield self.gather(leaves[start : start + size])

    def chunks(self, size: int = CHUNK_LEAVES) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
        """The distinct leaves ``size`` at a time: their index range, keys and values."""
        for start in range(0, self.leaf_nr.size, size):
            part = slice(start, min(start + size, self.leaf_nr.size))
            keys, values = self.gather(np.arange(part.start, part.stop))
            yield part, keys, values

    def value_chunks(self, size: int = CHUNK_LEAVES) -> Iterator[tuple[slice, np.ndarray]]:
        """As :meth:`chunks`, without the keys."""
        for start in range(0, self.leaf_nr.size, size):
            part = slice(start, min(start + size, self.leaf_nr.size))
            yield part, self.values_of(np.arange(part.start, part.stop))

    def chunk_leaf_of_entry(self, part: slice) -> np.ndarray:
        """For each entry of the run ``part`` of :meth:`chunks`, the index of its leaf."""
        return np.repeat(np.arange(part.start, part.stop), self.leaf_nr[part])


@dataclass
class _Refs:
    """Leaf references gathered by phase 1, in runs of numpy arrays: one run per internal node
    whose children are all leaves (most of them), one per leaf reached any other way. A Python
    list of ints per field took ~100 bytes a reference, and the memory stayed with the
    interpreter's allocator after the walk."""

    block: list[np.ndarray] = field(default_factory=list)
    lo: list[np.ndarray] = field(default_factory=list)
    hi: list[np.ndarray] = field(default_factory=list)
    owner: list[np.ndarray] = field(default_factory=list)
    root: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        """The number of runs."""
        return len(self.block)

    def add(self, block: int, lo: int, hi: int, owner: int, root: bool) -> None:
        self.add_run(
            np.array([block], dtype=np.int64),
            np.array([lo], dtype=np.uint64),
            np.array([hi], dtype=np.uint64),
            owner,
            root=root,
        )

    def add_run(
        self, block: np.ndarray, lo: np.ndarray, hi: np.ndarray, owner: int, *, root: bool = False
    ) -> None:
        self.block.append(block)
        self.lo.append(lo)
        self.hi.append(hi)
        self.owner.append(np.full(block.size, owner, dtype=np.int64))
        self.root.append(np.full(block.size, root, dtype=bool))

    def copy_runs(self, start: int, end: int, owner: int, lo: int, hi: int) -> None:
        """Runs ``start..end-1`` again for tree ``owner``, their key ranges within ``lo..hi``."""
        for i in range(start, end):
            run_lo, run_hi = self.lo[i], self.hi[i]
            if lo != 0 or hi != KEY_MAX:
                run_lo = np.maximum(run_lo, np.uint64(lo))
                run_hi = np.minimum(run_hi, np.uint64(hi))
            self.add_run(self.block[i], run_lo, run_hi, owner)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self.block:
            u64 = np.zeros(0, dtype=np.uint64)
            return _EMPTY, u64, u64, _EMPTY, np.zeros(0, dtype=bool)
        return (
            np.concatenate(self.block),
            np.concatenate(self.lo),
            np.concatenate(self.hi),
            np.concatenate(self.owner),
            np.concatenate(self.root),
        )


class ForestWalker:
    """Reads trees whose leaves hold values of ``value_size`` bytes.

    ``label(owner)`` names a tree in messages ("the mapping tree of device 2"); ``key_name``
    names its keys ("virtual blocks"). With ``share`` set, a subtree reached from a second tree is
    not walked again (snapshot sharing); otherwise reaching it again is a loop.
    """

    def __init__(
        self,
        meta: MetadataFile,
        findings: Findings,
        *,
        value_size: int,
        label: Callable[[int], str],
        key_name: str,
        share: bool = False,
        limit: int | None = None,
        stop_at: set[int] | None = None,
    ) -> None:
        self.meta = meta
        self.findings = findings
        self.value_size = value_size
        self.label = label
        self.key_name = key_name
        self.share = share
        #: blocks past this are outside the metadata device (the space map's size)
        self.limit = meta.nr_blocks if limit is None else min(limit, meta.nr_blocks)
        self._refs = _Refs()
        self._references: list[np.ndarray] = []
        self._damage: list[Damage] = []
        self._memo: dict[int, tuple[int, int, int, int]] = {}
        self._memo_keys: dict[int, tuple[int, int]] = {}
        self._seen: set[int] = set()
        self._nodes = 0
        #: nodes walked by an earlier walk (the live trees, for a metadata snapshot's): pointers
        #: to them count as references, but they are not walked again
        self.stop_at = stop_at or set()
        self._visited: set[int] = set()
        self._read_since_release = 0

    # -- phase 1: roots and internal nodes -------------------------------------------------------

    def walk(self, owners: list[int], roots: list[int]) -> Forest:
        """Read the trees rooted at ``roots``; ``owners`` are their keys (device ids, or 0)."""
        fits = [r if 0 <= r < 1 << 63 else -1 for r in roots]  # -1: out of bounds, uncounted
        self._references.append(np.asarray(fits, dtype=np.int64))
        for index, root in enumerate(roots):
            self._seen = set()
            self._child(index, root, 0, KEY_MAX, root=True, depth=0)
        return self._read_leaves(owners)

    def _child(self, owner: int, block: int, lo: int, hi: int, *, root: bool, depth: int) -> None:
        if not 0 <= block < self.limit:
            self._bad(
                "node.out-of-bounds",
                owner,
                block,
                lo,
                hi,
                f"points at block {block}, past the end of the metadata ({self.limit} blocks)",
            )
            return
        if block in self.stop_at:
            return
        if block in self._seen:
            self._bad("node.loop", owner, block, lo, hi, f"reaches block {block} a second time")
            return
        memo = self._memo.get(block)
        if memo is not None:
            first, last = self._memo_keys[block]
            if not keys_within(first, last, lo, hi):
                what = (
                    f"shares btree node {block}, whose keys {first}..{last} lie outside the "
                    f"range {key_range(lo, hi)} its parent gives"
                )
                self._bad("node.key-range", owner, block, lo, hi, what)
            else:
                self._copy_memo(memo, owner, lo, hi)
            return
        if depth > MAX_DEPTH:
            self._bad("node.loop", owner, block, lo, hi, f"is deeper than {MAX_DEPTH} levels")
            return
        if int(self.meta.headers["flags"][block]) & fmt.INTERNAL_NODE:
            self._internal(owner, block, lo, hi, root=root, depth=depth)
        else:
            self._refs.add(block, lo, hi, owner, root)

    def _copy_memo(self, memo: tuple[int, int, int, int], owner: int, lo: int, hi: int) -> None:
        start, end, dstart, dend = memo
        self._refs.copy_runs(start, end, owner, lo, hi)
        for d in self._damage[dstart:dend]:
            self._damage.append(Damage(owner, d.block, max(d.lo, lo), min(d.hi, hi)))

    def _internal(
        self, owner: int, block: int, lo: int, hi: int, *, root: bool, depth: int
    ) -> None:
        self._nodes += 1
        self._seen.add(block)
        self._visited.add(block)
        problem = self._header_problem(block, root=root)
        nr = int(self.meta.headers["nr_entries"][block])
        width = int(self.meta.headers["max_entries"][block])
        if problem is None:
            start = keys_at(block)
            keys = self.meta.words[start : start + nr]
            problem = _key_problem(keys, lo, hi)
        if problem is not None:
            self._bad(problem[0], owner, block, lo, hi, problem[1])
            return
        start = values_at(block, width, fmt.ChildPointer.sizeof())
        children = self.meta.words[start : start + nr].astype(np.int64)
        self._references.append(children)
        self._note_read(nr)
        start, dstart = len(self._refs), len(self._damage)
        inside = (children >= 0) & (children < self.limit)
        flags = np.zeros(nr, dtype=np.uint32)
        flags[inside] = self.meta.headers["flags"][children[inside]]
        child_list = children.tolist()
        plain = self._seen.isdisjoint(child_list) and self.stop_at.isdisjoint(child_list)
        if inside.all() and not (flags & fmt.INTERNAL_NODE).any() and plain:
            child_hi = np.append(keys[1:] - np.uint64(1), np.uint64(hi))
            self._refs.add_run(children, keys.copy(), child_hi, owner)
        else:
            child_lo = keys.tolist()
            child_hi_list = [k - 1 for k in child_lo[1:]] + [hi]
            for child, clo, chi in zip(child_list, child_lo, child_hi_list, strict=True):
                self._child(owner, child, clo, chi, root=False, depth=depth + 1)
        if self.share:
            self._memo[block] = (start, len(self._refs), dstart, len(self._damage))
            self._memo_keys[block] = (int(keys[0]), int(keys[-1]))

    def _note_read(self, blocks: int) -> None:
        """Count blocks whose header was read; past ``READ_RUN``, release the pages."""
        self._read_since_release += blocks
        if self._read_since_release >= READ_RUN:
            self.meta.release()
            self._read_since_release = 0

    def _header_problem(self, block: int, *, root: bool) -> tuple[str, str] | None:
        """The check id and message of what internal node ``block`` fails, if anything."""
        error = node_error(self.meta, block, INTERNAL, root=root)
        if error == NodeError.NONE:
            return None
        return error.check, describe(self.meta, block, error, INTERNAL)

    def _bad(self, check: str, owner: int, block: int, lo: int, hi: int, what: str) -> None:
        self._damage.append(Damage(owner, block, lo, hi))
        self.findings.add(
            check, block, f"{self.label(owner)}: {what}; {self._hides(lo, hi)} unreadable"
        )

    def _hides(self, lo: int, hi: int) -> str:
        return f"{self.key_name} {key_range(lo, hi)} are"

    # -- phase 2: the leaves, a run at a time ----------------------------------------------------

    def _read_leaves(self, owners: list[int]) -> Forest:
        block, lo, hi, owner, is_root = self._refs.arrays()
        uniq, inverse = np.unique(block, return_inverse=True)
        all_root = np.ones(uniq.size, dtype=bool)
        np.logical_and.at(all_root, inverse, is_root)
        leaves = _LeafScan.of(self.meta, leaf_rule(self.value_size), uniq, all_root)
        self._report_bad_headers(leaves, uniq, inverse, owner, lo, hi)
        self._report_key_order(leaves, uniq, inverse, owner, lo, hi)
        leaf_ok = leaves.sane & leaves.ordered
        ref_ok = leaf_ok[inverse] & self._check_ref_ranges(uniq, inverse, owner, lo, hi, leaves)
        ref_ok &= self._check_duplicates(block, owner, lo, hi, ref_ok)
        # keep the readable leaves only, renumbered
        keep = np.flatnonzero(leaf_ok)
        renumber = np.full(uniq.size, -1, dtype=np.int64)
        renumber[keep] = np.arange(keep.size)
        return Forest(
            meta=self.meta,
            owners=owners,
            value_size=self.value_size,
            leaf_blocks=uniq[keep],
            leaf_nr=leaves.nr[keep],
            leaf_width=leaves.width[keep],
            ref_owner=owner[ref_ok],
            ref_leaf=renumber[inverse[ref_ok]],
            references=np.concatenate(self._references) if self._references else _EMPTY,
            damage=self._damage,
            nodes=self._nodes + int(uniq.size),
            internal_nodes=self._visited,
            walked_leaves=uniq,
        )

    def _leaf_damage(
        self,
        u: int,
        blk: int,
        inverse: np.ndarray,
        owner: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
    ) -> list[str]:
        """Record damage for every tree that reaches leaf ``u``; their descriptions."""
        hidden = []
        for r in np.flatnonzero(inverse == u).tolist():
            d = Damage(int(owner[r]), blk, int(lo[r]), int(hi[r]))
            hidden.append(f"{self.label(d.owner)}: {self._hides(d.lo, d.hi)} unreadable")
            self._damage.append(d)
        return hidden

    def _report_leaf(
        self,
        check: str,
        u: int,
        uniq: np.ndarray,
        inverse: np.ndarray,
        owner: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        what: str,
    ) -> None:
        blk = int(uniq[u])
        hidden = self._leaf_damage(u, blk, inverse, owner, lo, hi)
        self.findings.add(check, blk, f"{what}; " + "; ".join(hidden))

    def _report_bad_headers(
        self,
        leaves: _LeafScan,
        uniq: np.ndarray,
        inverse: np.ndarray,
        owner: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
    ) -> None:
        for u in np.flatnonzero(~leaves.sane).tolist():
            b = int(uniq[u])
            error = NodeError(int(leaves.errors[u]))
            what = describe(self.meta, b, error, leaves.rule)
            self._report_leaf(error.check, u, uniq, inverse, owner, lo, hi, what)

    def _report_key_order(
        self,
        leaves: _LeafScan,
        uniq: np.ndarray,
        inverse: np.ndarray,
        owner: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
    ) -> None:
        for u in np.flatnonzero(leaves.sane & ~leaves.ordered).tolist():
            b = int(uniq[u])
            what = f"keys are out of order in btree node {b}"
            self._report_leaf("node.key-order", u, uniq, inverse, owner, lo, hi, what)

    def _check_ref_ranges(
        self,
        uniq: np.ndarray,
        inverse: np.ndarray,
        owner: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        leaves: _LeafScan,
    ) -> np.ndarray:
        has = leaves.nr[inverse] > 0
        first = leaves.first[inverse]
        last = leaves.last[inverse]
        ok = ~has | keys_within(first, last, lo, hi)
        for r in np.flatnonzero(~ok).tolist():
            b = int(uniq[inverse[r]])
            d = Damage(int(owner[r]), b, int(lo[r]), int(hi[r]))
            self._damage.append(d)
            self.findings.add(
                "node.key-range",
                b,
                f"{self.label(d.owner)}: btree node {b} holds keys {int(first[r])}..{int(last[r])}"
                f" outside the range {key_range(d.lo, d.hi)} its parent gives; "
                f"{self._hides(d.lo, d.hi)} unreadable",
            )
        return ok

    def _check_duplicates(
        self,
        block: np.ndarray,
        owner: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        ref_ok: np.ndarray,
    ) -> np.ndarray:
        """A leaf reached twice from one tree is a cross-link: keep the first reference."""
        if block.size < 2:
            return np.ones(block.size, dtype=bool)
        pair = owner * (1 << 40) + block
        _, first = np.unique(pair, return_index=True)
        ok = np.zeros(block.size, dtype=bool)
        ok[first] = True
        for r in np.flatnonzero(~ok).tolist():
            b, o = int(block[r]), int(owner[r])
            self._damage.append(Damage(o, b, int(lo[r]), int(hi[r])))
            self.findings.add(
                "node.loop",
                b,
                f"{self.label(o)}: reaches leaf {b} a second time; "
                f"{self._hides(int(lo[r]), int(hi[r]))} unreadable",
            )
        return ok


@dataclass
class _LeafScan:
    """What phase 2 learns of each distinct leaf, read ``READ_RUN`` leaves at a time: the first
    check its header fails (:class:`NodeError`), the number of entries and width, whether the
    keys ascend, the first and last key."""

    rule: NodeRule
    errors: np.ndarray
    all_root: np.ndarray
    nr: np.ndarray
    width: np.ndarray
    ordered: np.ndarray
    first: np.ndarray
    last: np.ndarray

    @property
    def sane(self) -> np.ndarray:
        return self.errors == NodeError.NONE

    @classmethod
    def of(
        cls, meta: MetadataFile, rule: NodeRule, uniq: np.ndarray, all_root: np.ndarray
    ) -> _LeafScan:
        n = uniq.size
        scan = cls(
            rule=rule,
            errors=np.zeros(n, dtype=np.uint8),
            all_root=all_root,
            nr=np.zeros(n, dtype=np.int64),
            width=np.zeros(n, dtype=np.int64),
            ordered=np.ones(n, dtype=bool),
            first=np.zeros(n, dtype=np.uint64),
            last=np.zeros(n, dtype=np.uint64),
        )
        for start in range(0, n, READ_RUN):
            part = slice(start, min(start + READ_RUN, n))
            scan._read(meta, uniq, part)
            meta.release(int(uniq[part.start]), int(uniq[part.stop - 1]) + 1)  # uniq ascends
        return scan

    def _read(self, meta: MetadataFile, uniq: np.ndarray, part: slice) -> None:
        blocks = uniq[part]
        errors, h = node_errors(meta, blocks, self.rule, self.all_root[part])
        nr = np.where(errors == NodeError.NONE, h["nr_entries"], 0)
        self.errors[part], self.nr[part] = errors, nr
        self.width[part] = h["max_entries"]
        take = int(nr.max()) if nr.size else 0
        if take == 0:
            return
        keys = _window(meta, blocks, fmt.NODE_KEYS_OFFSET, take, _KEY_DTYPE)
        self.ordered[part] = ~unordered_rows(keys, nr)
        has = np.flatnonzero(nr > 0)
        self.first[part][has] = keys[has, 0]
        self.last[part][has] = keys[has, nr[has] - 1]


def leaf_entries(
    meta: MetadataFile,
    blocks: np.ndarray,
    width: np.ndarray,
    nr: np.ndarray,
    value_size: int,
    *,
    with_keys: bool = True,
) -> tuple[np.ndarray | None, np.ndarray]:
    """The keys (unless not ``with_keys``) and values of sound leaves ``blocks`` (their header
    checked: ``nr`` entries each, values after ``width`` keys, all inside the block); flat, leaf
    after leaf. Each leaf's keys and values are copied as one window of its block (a row of the
    file), then cut to its entries."""
    blocks = blocks.astype(np.int64)
    take = int(nr.max()) if nr.size else 0
    inside = np.arange(take) < nr[:, None]
    keys = None
    if with_keys:
        keys = _window(meta, blocks, fmt.NODE_KEYS_OFFSET, take, _KEY_DTYPE)[inside]
    dtype = _value_dtype(value_size)
    first = int(width[0]) if width.size else 0
    if bool((width == first).all()):  # one width (every node of a tree, as written): one window
        start = fmt.node_values_offset(first)
        return keys, _window(meta, blocks, start, take, dtype)[inside]
    values = np.empty(int(nr.sum()), dtype=dtype)
    at = np.cumsum(nr) - nr
    for w in np.unique(width).tolist():
        group = np.flatnonzero(width == w)
        count = int(nr[group].max())
        got = _window(meta, blocks[group], fmt.node_values_offset(w), count, dtype)
        for row, node in enumerate(group.tolist()):
            n = int(nr[node])
            values[at[node] : at[node] + n] = got[row, :n]
    return keys, values


def _window(
    meta: MetadataFile, blocks: np.ndarray, start: int, count: int, dtype: np.dtype
) -> np.ndarray:
    """``count`` items of ``dtype`` from byte ``start`` of each of ``blocks``: one row each."""
    rows = meta.bytes[blocks, start : start + count * dtype.itemsize]
    return rows.view(dtype).reshape(blocks.size, count)


_EMPTY = np.zeros(0, dtype=np.int64)
_KEY_DTYPE = np.dtype("<u8")
_VALUE_DTYPES = {
    fmt.RefCount.sizeof(): np.dtype("<u4"),
    fmt.IndexEntry.sizeof(): fmt.INDEX_ENTRY_DTYPE,
    fmt.DeviceDetails.sizeof(): fmt.DETAILS_DTYPE,
}


def _value_dtype(value_size: int) -> np.dtype:
    return np.dtype("<u8") if value_size == 8 else _VALUE_DTYPES[value_size]


def key_range(lo: int, hi: int) -> str:
    if hi == KEY_MAX:
        return f"{lo} and above"
    return f"{lo}..{hi}"


def _key_problem(keys: np.ndarray, lo: int, hi: int) -> tuple[str, str] | None:
    if keys.size and not keys_ascend(keys):
        return "node.key-order", "keys are out of order"
    if keys.size and not keys_within(int(keys[0]), int(keys[-1]), lo, hi):
        return (
            "node.key-range",
            f"keys {int(keys[0])}..{int(keys[-1])} lie outside the range "
            f"{key_range(lo, hi)} its parent gives",
        )
    return None
