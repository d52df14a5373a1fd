"""The two space maps of a pool: reference counts as the metadata records them.

Both keep two bits per block in bitmap blocks (count 0, 1, 2, or 3 = "see the ref-count tree")
and an overflow btree (block → u32 count) for counts of 3 and more. The metadata space map
indexes its bitmaps with one index block; the data space map with a btree keyed by bitmap
number (the kernel's ``drivers/md/persistent-data/dm-space-map-common.c`` and
``dm-space-map-metadata.c``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from forensics.formats import thin as fmt
from forensics.thin.blocks import MetadataFile
from forensics.thin.btree import Damage, ForestWalker
from forensics.thin.findings import Findings

#: bitmaps decoded at a time when counts are read or compared (unless a caller asks for longer
#: spans): about a quarter of a million blocks, so that the counts in memory never depend on
#: how many blocks the space map claims
CHUNK_BITMAPS = 16


@dataclass
class Sample:
    """The first few of a set of block numbers found span by span, and how many there are."""

    shown: list[int] = field(default_factory=list)
    total: int = 0

    def add(self, blocks: np.ndarray, limit: int = 10) -> None:
        self.total += int(blocks.size)
        if len(self.shown) < limit:
            self.shown.extend(blocks[: limit - len(self.shown)].tolist())

    def __str__(self) -> str:
        text = ", ".join(str(b) for b in self.shown)
        return text + (f" … ({self.total} in all)" if self.total > len(self.shown) else "")


@dataclass
class SpaceMap:
    """One space map as the file holds it: its readable bitmaps and its overflow entries.

    Counts are decoded span by span (:meth:`spans`, :meth:`counts_in`), never for the whole
    claimed size at once: a space map may claim far more blocks than the file has bitmaps for,
    and a span holds ``CHUNK_BITMAPS`` bitmaps' worth of counts unless the caller asks for more."""

    name: str
    nr_blocks: int
    nr_allocated: int
    meta: MetadataFile
    #: the block of each bitmap, by bitmap number; -1 where it is missing or unreadable
    bitmap_blocks: np.ndarray
    #: blocks with an entry in the ref-count tree (ascending) and their counts
    overflow_keys: np.ndarray
    overflow_values: np.ndarray
    #: metadata blocks this space map occupies, once per reference (for the metadata count)
    references: np.ndarray
    damaged: bool = False
    #: blocks whose count is not zero (unreadable bitmaps count none)
    used: int = 0

    @property
    def bitmaps(self) -> list[int]:
        """The readable bitmap blocks."""
        return self.bitmap_blocks[self.bitmap_blocks >= 0].tolist()

    def spans(self, bitmaps: int = CHUNK_BITMAPS) -> Iterator[tuple[int, int]]:
        """``(lo, hi)`` block ranges of ``bitmaps`` bitmaps each that hold a readable bitmap."""
        step = bitmaps * fmt.ENTRIES_PER_BITMAP
        readable = self.bitmap_blocks >= 0
        for first in range(0, readable.size, bitmaps):
            if readable[first : first + bitmaps].any():
                lo = first * fmt.ENTRIES_PER_BITMAP
                yield lo, min(lo + step, self.nr_blocks)

    def raw_in(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """The bitmap values (0, 1, 2, 3 = "see the ref-count tree") of blocks ``lo..hi-1``
        (``lo`` at a bitmap's start) and whether each is known."""
        per = fmt.ENTRIES_PER_BITMAP
        blocks = self.bitmap_blocks[lo // per : _ceil_div(hi, per)]
        good = blocks >= 0
        raw = np.zeros((blocks.size, per), dtype=np.uint8)
        if good.any():
            raw[good] = fmt.decode_bitmaps(
                self.meta.bytes[blocks[good], fmt.BITMAP_ENTRIES_OFFSET :]
            )
        return raw.reshape(-1)[: hi - lo], np.repeat(good, per)[: hi - lo]

    def overflow_in(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """The ref-count tree's entries for blocks ``lo..hi-1``: offsets from ``lo``, counts."""
        a, b = np.searchsorted(self.overflow_keys, [lo, hi])
        return self.overflow_keys[a:b] - lo, self.overflow_values[a:b]

    def counts_in(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """The counts of blocks ``lo..hi-1`` and whether each is known: a block is unknown when
        its bitmap is unreadable, or its bitmap says "3 or more" and the tree has no entry."""
        raw, known = self.raw_in(lo, hi)
        keys, values = self.overflow_in(lo, hi)
        counts = raw.astype(np.uint32)
        three = raw[keys] == 3
        counts[keys[three]] = values[three]
        has_entry = np.zeros(raw.size, dtype=bool)
        has_entry[keys] = True
        known &= ~((raw == 3) & ~has_entry)
        return counts, known

    def dense(self, upto: int) -> np.ndarray:
        """The counts of blocks ``0..min(upto, nr_blocks)-1``, -1 where unknown (callers bound
        ``upto`` by the file's own size)."""
        out = np.full(min(upto, self.nr_blocks), -1, dtype=np.int64)
        for lo, hi in self.spans():
            if lo >= out.size:
                break
            counts, known = self.counts_in(lo, min(hi, out.size))
            out[lo : lo + counts.size] = np.where(known, counts, -1)
        return out


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def read_metadata_space_map(
    meta: MetadataFile, root: object, findings: Findings, limit: int
) -> SpaceMap | None:
    """The metadata space map of superblock root ``root`` (its ``sm_root`` container)."""
    nr_blocks = int(root.nr_blocks)  # type: ignore[attr-defined]
    index_block = int(root.bitmap_root)  # type: ignore[attr-defined]
    if not 0 < nr_blocks <= fmt.MAX_METADATA_BLOCKS:
        findings.add(
            "metasm.root",
            None,
            f"the metadata space map claims {nr_blocks} blocks (at most "
            f"{fmt.MAX_METADATA_BLOCKS} are possible); metadata counts are not checked",
        )
        return None
    if not 0 <= index_block < limit:
        findings.add(
            "metasm.index",
            None,
            f"the metadata space map index is at block {index_block}, "
            "past the end of the metadata; metadata counts are not checked",
        )
        return None
    block = meta.block(index_block)
    problem = _block_problem(block, index_block, fmt.INDEX_CSUM_XOR, "metadata space map index")
    if problem:
        findings.add("metasm.index", index_block, problem + "; metadata counts are not checked")
        return None
    nr_bitmaps = _ceil_div(nr_blocks, fmt.ENTRIES_PER_BITMAP)
    entries = np.frombuffer(
        block, dtype=fmt.INDEX_ENTRY_DTYPE, count=nr_bitmaps, offset=fmt.INDEX_ENTRIES_OFFSET
    )
    listed = np.ones(nr_bitmaps, dtype=bool)
    sm = _assemble(
        meta, "metadata", nr_blocks, root, entries["blocknr"], listed, findings, "metasm", limit
    )
    sm.references = np.concatenate([[index_block], sm.references])
    return sm


def read_data_space_map(
    meta: MetadataFile, root: object, findings: Findings, limit: int, metadata_blocks: int
) -> SpaceMap | None:
    """The data space map of superblock root ``root``: its index is a btree of index entries.
    ``metadata_blocks`` (the metadata device's size) bounds the number of bitmaps, and so does
    the file's own block count: every bitmap is a block of it, so a claimed size past that is
    damage, not a reason to allocate counts for 2**64 blocks."""
    nr_blocks = int(root.nr_blocks)  # type: ignore[attr-defined]
    nr_bitmaps = _ceil_div(nr_blocks, fmt.ENTRIES_PER_BITMAP)
    metadata_blocks = min(metadata_blocks, meta.nr_blocks)
    if nr_bitmaps > metadata_blocks:
        findings.add(
            "datasm.root",
            None,
            f"the data space map claims {nr_blocks} data blocks: {nr_bitmaps} bitmaps, more "
            f"than the {metadata_blocks} blocks of the metadata device; data counts are not "
            "checked",
        )
        return None
    walker = ForestWalker(
        meta,
        findings,
        value_size=fmt.IndexEntry.sizeof(),
        label=lambda _: "the data space map index",
        key_name="bitmaps",
        limit=limit,
    )
    forest = walker.walk([0], [int(root.bitmap_root)])  # type: ignore[attr-defined]
    if nr_bitmaps > forest.keys.size + 64 and not forest.damage:
        findings.add(
            "datasm.root",
            None,
            f"the data space map claims {nr_blocks} data blocks ({nr_bitmaps} bitmaps) but its "
            f"index holds {forest.keys.size} bitmaps; data counts are not checked",
        )
        return None
    # compare the keys as the unsigned numbers they are: a key of 2**63 or more is no bitmap
    inside = forest.keys < np.uint64(nr_bitmaps)
    keys = forest.keys[inside].astype(np.int64)
    blocks = np.zeros(nr_bitmaps, dtype=np.uint64)
    blocks[keys] = forest.values["blocknr"][inside]
    listed = np.zeros(nr_bitmaps, dtype=bool)
    listed[keys] = True
    hidden = _hidden_keys(forest.damage, 0, nr_bitmaps)
    missing = np.flatnonzero(~listed & ~hidden)
    extra = forest.keys[~inside]
    if missing.size or extra.size:
        findings.add(
            "datasm.index",
            int(root.bitmap_root),  # type: ignore[attr-defined]
            f"the data space map index lacks bitmaps {_some(missing)} and has entries "
            f"{_some(extra)} beyond the {nr_bitmaps} it needs"
            if extra.size
            else f"the data space map index lacks bitmaps {_some(missing)} of {nr_bitmaps}",
        )
    sm = _assemble(meta, "data", nr_blocks, root, blocks, listed, findings, "datasm", limit)
    sm.references = np.concatenate([forest.references, sm.references])
    sm.damaged |= bool(forest.damage) or bool(missing.size)
    return sm


def _hidden_keys(damage: list[Damage], lo: int, hi: int) -> np.ndarray:
    """Which keys ``lo..hi-1`` lie in a range that damage hides."""
    hidden = np.zeros(hi - lo, dtype=bool)
    for d in damage:
        if d.lo < hi and d.hi >= lo:
            hidden[max(d.lo, lo) - lo : min(d.hi, hi - 1) + 1 - lo] = True
    return hidden


def _assemble(
    meta: MetadataFile,
    name: str,
    nr_blocks: int,
    root: object,
    blocks: np.ndarray,
    listed: np.ndarray,
    findings: Findings,
    prefix: str,
    limit: int,
) -> SpaceMap:
    """The space map whose index gives bitmap ``i`` at ``blocks[i]`` where ``listed[i]``.
    Block numbers are compared unsigned: one of 2**63 or more is past the end, like any other."""
    good = np.full(blocks.size, -1, dtype=np.int64)
    bad: list[tuple[int | None, str]] = []
    for i in np.flatnonzero(listed).tolist():
        b = int(blocks[i])
        if not b < limit:
            bad.append((None, f"bitmap {i} is at block {b}, past the end of the metadata"))
            continue
        problem = _block_problem(meta.block(b), b, fmt.BITMAP_CSUM_XOR, f"{name} space map bitmap")
        if problem:
            bad.append((b, f"{problem}; counts of {name} blocks {_span(i, nr_blocks)} unknown"))
            continue
        good[i] = b
    if len(bad) > 3:
        shown = "; ".join(message for _, message in bad[:3])
        findings.add(
            f"{prefix}.bitmap",
            bad[0][0],
            f"{len(bad)} of the {blocks.size} {name} space map "
            f"bitmaps are unreadable, their counts unknown: {shown}; …",
        )
    else:
        for blocknr, message in bad:
            findings.add(f"{prefix}.bitmap", blocknr, f"{name} space map {message}")
    fits = blocks[listed & (blocks < np.uint64(limit))].astype(np.int64)
    sm = SpaceMap(
        name=name,
        nr_blocks=nr_blocks,
        nr_allocated=int(root.nr_allocated),  # type: ignore[attr-defined]
        meta=meta,
        bitmap_blocks=good,
        overflow_keys=_EMPTY,
        overflow_values=np.zeros(0, dtype=np.uint32),
        references=fits,
        damaged=not bool((good >= 0).all()),
    )
    refs = _overflow(sm, prefix, root, findings, limit)
    sm.references = np.concatenate([fits, refs])
    return sm


def _overflow(
    sm: SpaceMap, prefix: str, root: object, findings: Findings, limit: int
) -> np.ndarray:
    """Read the ref-count tree (counts of 3 and more) into ``sm``; check it against the
    bitmaps span by span, counting the used blocks on the way."""
    name = sm.name
    walker = ForestWalker(
        sm.meta,
        findings,
        value_size=fmt.RefCount.sizeof(),
        label=lambda _: f"the {name} ref-count tree",
        key_name="counts of blocks",
        limit=limit,
    )
    forest = walker.walk([0], [int(root.ref_count_root)])  # type: ignore[attr-defined]
    inside = forest.keys < np.uint64(sm.nr_blocks)  # unsigned: keys of 2**63 and more are stray
    stray = forest.keys[~inside]
    sm.overflow_keys, sm.overflow_values = _ascending(forest.keys, forest.values, inside)
    lacking, not_three = Sample(), Sample()
    for lo, hi in sm.spans():
        raw, known = sm.raw_in(lo, hi)
        offsets, _ = sm.overflow_in(lo, hi)
        not_three.add(lo + offsets[(raw[offsets] != 3) & known[offsets]])
        has_entry = np.zeros(raw.size, dtype=bool)
        has_entry[offsets] = True
        hidden = _hidden_keys(forest.damage, lo, hi)
        lacking.add(lo + np.flatnonzero((raw == 3) & known & ~has_entry & ~hidden))
        sm.used += int(np.count_nonzero(sm.counts_in(lo, hi)[0]))
    small = sm.overflow_keys[sm.overflow_values < 3]
    problems = []
    if lacking.total:
        problems.append(f"blocks {lacking} have count 3+ in the bitmap but no entry")
    if not_three.total:
        problems.append(f"blocks {not_three} have entries but a count below 3 in the bitmap")
    if small.size:
        problems.append(f"blocks {_some(small)} have entries below 3")
    if stray.size:
        problems.append(f"blocks {_some(stray)} are past the space map's end")
    if problems:
        findings.add(
            f"{prefix}.overflow",
            int(root.ref_count_root),  # type: ignore[attr-defined]
            f"the {name} ref-count tree disagrees with the bitmaps: " + "; ".join(problems),
        )
    return forest.references


def _ascending(
    keys: np.ndarray, values: np.ndarray, inside: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The entries whose keys are ``inside``, keys as int64, in key order. A sound tree's keys
    ascend already and all lie inside: then the arrays are taken as they are, without copies
    (the data ref-count tree of a pool with many snapshots holds an entry for most blocks)."""
    if bool(inside.all()) and bool((keys[1:] > keys[:-1]).all()):
        return keys.view(np.int64), values.astype(np.uint32, copy=False)
    kept = keys[inside].astype(np.int64)
    order = np.argsort(kept, kind="stable")
    return kept[order], values[inside].astype(np.uint32)[order]


_EMPTY = np.zeros(0, dtype=np.int64)


def _block_problem(block: bytes, blocknr: int, xor: int, what: str) -> str | None:
    if not fmt.checksum_ok(block, xor):
        kind = fmt.block_type(block)
        also = f" (the block checksums as a {kind})" if kind else ""
        return f"bad checksum in {what} block {blocknr}{also}"
    claimed = fmt.stored_blocknr(block)
    if claimed != blocknr:
        return f"bad block nr in {what}: block {blocknr} claims {claimed}"
    return None


def _span(bitmap: int, nr_blocks: int) -> str:
    lo = bitmap * fmt.ENTRIES_PER_BITMAP
    hi = min(lo + fmt.ENTRIES_PER_BITMAP, nr_blocks) - 1
    return f"{lo}..{hi}"


def _some(values: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (f" … ({values.size} in all)" if values.size > limit else "")
