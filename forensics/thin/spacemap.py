"""The two space maps of a pool: reference counts as the metadata records them.

Both keep two bits per block in bitmap blocks (count 0, 1, 2, or 3 = "see the ref-count tree")
and an overflow btree (block → u32 count) for counts of 3 and more. The metadata space map
indexes its bitmaps with one index block; the data space map with a btree keyed by bitmap
number. See thin-metadata.md §7.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from forensics.formats import thin as fmt
from forensics.thin.blocks import MetadataFile
from forensics.thin.btree import Forest, ForestWalker
from forensics.thin.findings import Findings


@dataclass
class SpaceMap:
    """Counts read from one space map. ``known`` is False where a bitmap was unreadable."""

    name: str
    nr_blocks: int
    nr_allocated: int
    counts: np.ndarray
    known: np.ndarray
    #: metadata blocks this space map occupies, once per reference (for the metadata count)
    references: np.ndarray
    damaged: bool = False
    bitmaps: list[int] = field(default_factory=list)


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
    entries = np.frombuffer(block, dtype=fmt.INDEX_ENTRY_DTYPE, count=nr_bitmaps, offset=16)
    bitmaps = entries["blocknr"].astype(np.int64)
    sm = _assemble(meta, "metadata", nr_blocks, root, bitmaps, findings, "metasm", limit)
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
    bitmaps = np.full(nr_bitmaps, -1, dtype=np.int64)
    # compare the keys as the unsigned numbers they are: a key of 2**63 or more is no bitmap
    inside = forest.keys < np.uint64(nr_bitmaps)
    keys = forest.keys[inside].astype(np.int64)
    bitmaps[keys] = forest.values["blocknr"][inside].astype(np.int64)
    hidden = _hidden_keys(forest, nr_bitmaps)
    missing = np.flatnonzero((bitmaps < 0) & ~hidden)
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
    sm = _assemble(meta, "data", nr_blocks, root, bitmaps, findings, "datasm", limit)
    sm.references = np.concatenate([forest.references, sm.references])
    sm.damaged |= bool(forest.damage) or bool(missing.size)
    return sm


def _hidden_keys(forest: Forest, n: int) -> np.ndarray:
    hidden = np.zeros(n, dtype=bool)
    for d in forest.damage:
        if d.lo < n:
            hidden[d.lo : min(d.hi, n - 1) + 1] = True
    return hidden


def _assemble(
    meta: MetadataFile,
    name: str,
    nr_blocks: int,
    root: object,
    bitmaps: np.ndarray,
    findings: Findings,
    prefix: str,
    limit: int,
) -> SpaceMap:
    per = fmt.ENTRIES_PER_BITMAP
    good = np.zeros(bitmaps.size, dtype=bool)
    bad: list[tuple[int | None, str]] = []
    for i, b in enumerate(bitmaps.tolist()):
        if b < 0:
            continue
        if not 0 <= b < limit:
            bad.append((None, f"bitmap {i} is at block {b}, past the end of the metadata"))
            continue
        problem = _block_problem(meta.block(b), b, fmt.BITMAP_CSUM_XOR, f"{name} space map bitmap")
        if problem:
            bad.append((b, f"{problem}; counts of {name} blocks {_span(i, nr_blocks)} unknown"))
            continue
        good[i] = True
    if len(bad) > 3:
        shown = "; ".join(message for _, message in bad[:3])
        findings.add(
            f"{prefix}.bitmap",
            bad[0][0],
            f"{len(bad)} of the {bitmaps.size} {name} space map "
            f"bitmaps are unreadable, their counts unknown: {shown}; …",
        )
    else:
        for blocknr, message in bad:
            findings.add(f"{prefix}.bitmap", blocknr, f"{name} space map {message}")
    raw = np.zeros((bitmaps.size, per), dtype=np.uint8)
    if good.any():
        raw[good] = fmt.decode_bitmaps(meta.bytes[bitmaps[good], 16:])
    raw = raw.reshape(-1)[:nr_blocks]
    known = np.repeat(good, per)[:nr_blocks]
    counts = raw.astype(np.uint32)
    refs = _overflow(meta, name, prefix, root, raw, known, counts, findings, limit)
    used = bitmaps[good]
    listed = bitmaps[bitmaps >= 0]
    return SpaceMap(
        name=name,
        nr_blocks=nr_blocks,
        nr_allocated=int(root.nr_allocated),  # type: ignore[attr-defined]
        counts=counts,
        known=known,
        references=np.concatenate([listed, refs]),
        damaged=not bool(good.all()),
        bitmaps=used.tolist(),
    )


def _overflow(
    meta: MetadataFile,
    name: str,
    prefix: str,
    root: object,
    raw: np.ndarray,
    known: np.ndarray,
    counts: np.ndarray,
    findings: Findings,
    limit: int,
) -> np.ndarray:
    """Fill counts of 3 and more from the ref-count tree; check it against the bitmaps."""
    walker = ForestWalker(
        meta,
        findings,
        value_size=4,
        label=lambda _: f"the {name} ref-count tree",
        key_name="counts of blocks",
        limit=limit,
    )
    forest = walker.walk([0], [int(root.ref_count_root)])  # type: ignore[attr-defined]
    inside = forest.keys < np.uint64(raw.size)  # unsigned: keys of 2**63 and more are stray
    stray = forest.keys[~inside]
    keys = forest.keys[inside].astype(np.int64)
    values = forest.values[inside].astype(np.uint32)
    not_three = keys[(raw[keys] != 3) & known[keys]]
    small = keys[values < 3]
    counts[keys] = np.where(raw[keys] == 3, values, counts[keys])
    has_entry = np.zeros(raw.size, dtype=bool)
    has_entry[keys] = True
    hidden = _hidden_keys(forest, raw.size)
    lacking = np.flatnonzero((raw == 3) & known & ~has_entry & ~hidden)
    # a count of "3 or more" without its entry is unknown: compare nothing there
    known &= ~((raw == 3) & ~has_entry)
    problems = []
    if lacking.size:
        problems.append(f"blocks {_some(lacking)} have count 3+ in the bitmap but no entry")
    if not_three.size:
        problems.append(f"blocks {_some(not_three)} have entries but a count below 3 in the bitmap")
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


def _block_problem(block: bytes, blocknr: int, xor: int, what: str) -> str | None:
    if not fmt.checksum_ok(block, xor):
        kind = fmt.block_type(block)
        also = f" (the block checksums as a {kind})" if kind else ""
        return f"bad checksum in {what} block {blocknr}{also}"
    claimed = int.from_bytes(block[8:16], "little")
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
