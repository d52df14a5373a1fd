"""The rules of one btree node, in one place: what its header must hold and how its keys must
run. Every reader asks here — the tree walker of ``thin check``/``dump``/``ls`` for each node it
reaches, ``thin repair`` for the nodes it scans the file for and for the leaves it reads leniently
— and gets a typed answer (:class:`NodeError`, as thin-provisioning-tools' ``NodeError``) that
:func:`describe` words.

The header checks run in thin_check's order, and a node is reported by the first it fails:
checksum, block number, flags, value size, ``max_entries``, ``nr_entries``, too few entries for a
non-root node (the kernel keeps every non-root node at least a third full). A :class:`NodeRule`
says what a node of a tree must be: the value size of the tree, the flags allowed, and whether
``max_entries`` must be exactly what the kernel writes for that value size (when nodes are
found by scanning the file, not by following a tree).

The checks are written once, over numpy arrays of header fields (a run of leaves at a time);
one node is a run of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from forensics.formats import thin as fmt
from forensics.thin.blocks import MetadataFile


class NodeError(IntEnum):
    """Why a btree node is unreadable (``NONE``: it is sound), in the order of the checks."""

    NONE = 0
    CHECKSUM = 1
    BLOCKNR = 2
    FLAGS = 3
    VALUE_SIZE = 4
    MAX_ENTRIES = 5
    NR_ENTRIES = 6
    UNDERFULL = 7
    EMPTY = 8

    @property
    def check(self) -> str:
        """The ``thin check`` id of the finding that reports it."""
        return _CHECK_IDS[self]


_CHECK_IDS = {
    NodeError.NONE: "",
    NodeError.CHECKSUM: "node.checksum",
    NodeError.BLOCKNR: "node.blocknr",
    NodeError.FLAGS: "node.flags",
    NodeError.VALUE_SIZE: "node.value-size",
    NodeError.MAX_ENTRIES: "node.max-entries",
    NodeError.NR_ENTRIES: "node.nr-entries",
    NodeError.UNDERFULL: "node.nr-entries",
    NodeError.EMPTY: "node.nr-entries",
}


@dataclass(frozen=True)
class NodeRule:
    """What the nodes of a tree must be.

    ``value_size``: the tree's; None for a scan that takes any leaf (internal nodes hold 8-byte
    child pointers whatever the tree). ``flags``: the flag values allowed. ``kernel_width``:
    ``max_entries`` must be the kernel's for the value size, not merely fit the block in
    multiples of 3. ``nonempty``: an internal node must hold an entry. ``third_full``: a
    non-root node must be at least a third full (thin_check's rule; the kernel reads a node
    that is not, and so does a scan for the nodes it wrote)."""

    value_size: int | None
    flags: tuple[int, ...]
    kernel_width: bool = False
    nonempty: bool = False
    third_full: bool = True

    def expected_value_size(self) -> int:
        """The value size named in messages (a rule of one tree has one)."""
        assert self.value_size is not None
        return self.value_size


#: an internal node of any tree, as the walker reaches it (its flags have the internal bit)
INTERNAL = NodeRule(value_size=fmt.ChildPointer.sizeof(), flags=(1, 2, 3), nonempty=True)
#: a node as the kernel writes it, of any tree: the scan of ``thin repair``
WRITTEN = NodeRule(
    value_size=None,
    flags=(fmt.LEAF_NODE, fmt.INTERNAL_NODE),
    kernel_width=True,
    third_full=False,
)
#: a mapping leaf as the kernel writes it (``thin repair`` reads one whose only fault is that
#: it holds too few entries)
WRITTEN_MAPPING_LEAF = NodeRule(
    value_size=fmt.BLOCK_TIME_SIZE, flags=(fmt.LEAF_NODE,), kernel_width=True, third_full=False
)


def leaf_rule(value_size: int) -> NodeRule:
    """A leaf of a tree whose values are ``value_size`` bytes."""
    return NodeRule(value_size=value_size, flags=(fmt.LEAF_NODE,))


_HEADER_FIELDS = ("blocknr", "flags", "nr_entries", "max_entries", "value_size")


def _failures(block: Any, h: dict[str, Any], rule: NodeRule, below_root: Any) -> list[tuple]:
    """The header checks of ``rule`` in thin_check's order, each as ``(failed, error)``. Written
    with operators that numbers and numpy arrays share: for one node (``block``, ``h`` and
    ``below_root`` numbers) each ``failed`` is a bool, for many an array."""
    flags, nr, width, vs = h["flags"], h["nr_entries"], h["max_entries"], h["value_size"]
    bad_flags: Any = True
    for allowed in rule.flags:
        bad_flags = bad_flags & (flags != allowed)
    if rule.value_size is None:  # internal nodes hold child pointers, leaves anything
        expected = vs + (flags == fmt.INTERNAL_NODE) * (fmt.ChildPointer.sizeof() - vs)
    else:
        expected = rule.value_size
    if rule.kernel_width:  # the kernel's max_entries for the value size; -1 if none fits
        writable = (vs > 0) & (vs <= fmt.BLOCK_SIZE - fmt.NODE_HEADER_SIZE)
        bad_width = width != writable * (fmt.max_entries(vs) + 1) - 1
    else:
        fits = fmt.NODE_HEADER_SIZE + width * (fmt.KEY_SIZE + vs) <= fmt.BLOCK_SIZE
        bad_width = np.logical_not(fits) | (width % 3 != 0)
    failures = [
        (h["blocknr"] != block, NodeError.BLOCKNR),
        (bad_flags, NodeError.FLAGS),
        (vs != expected, NodeError.VALUE_SIZE),
        (bad_width, NodeError.MAX_ENTRIES),
        (nr > width, NodeError.NR_ENTRIES),
    ]
    if rule.third_full:
        failures.append((below_root & (nr < width // 3), NodeError.UNDERFULL))
    if rule.nonempty:
        failures.append((nr == 0, NodeError.EMPTY))
    return failures


def header_fields(meta: MetadataFile, blocks: np.ndarray) -> dict[str, np.ndarray]:
    """The header fields of ``blocks`` (inside the file) as int64, gathered field by field (an
    item of the headers' view is a whole 4 KiB block)."""
    headers = meta.headers
    return {name: headers[name][blocks].astype(np.int64) for name in _HEADER_FIELDS}


def header_errors(
    blocks: np.ndarray, h: dict[str, np.ndarray], rule: NodeRule, root: np.ndarray | bool
) -> np.ndarray:
    """The first header check that each node fails (a :class:`NodeError` value, 0 if none),
    the checksum aside. ``h``: :func:`header_fields`; ``root``: whether each node is a root
    (a root may hold few entries)."""
    errors = np.zeros(blocks.shape, dtype=np.uint8)
    for failed, error in reversed(_failures(blocks, h, rule, np.logical_not(root))):
        if not isinstance(failed, np.ndarray) or failed.shape != blocks.shape:
            failed = np.broadcast_to(failed, blocks.shape)
        errors[failed] = error  # the checks run backwards: the first failed is kept
    return errors


def node_errors(
    meta: MetadataFile, blocks: np.ndarray, rule: NodeRule, root: np.ndarray | bool
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The first check that each of ``blocks`` (inside the file) fails, checksum first, and
    their header fields."""
    blocks = np.asarray(blocks, dtype=np.int64)
    h = header_fields(meta, blocks)
    errors = header_errors(blocks, h, rule, root)
    errors[~meta.checksums_ok(blocks, fmt.BTREE_CSUM_XOR)] = NodeError.CHECKSUM
    return errors, h


def node_error(meta: MetadataFile, block: int, rule: NodeRule, *, root: bool) -> NodeError:
    """The first check that node ``block`` (inside the file) fails, ``NONE`` if it is sound:
    the same checks as :func:`node_errors`, on numbers."""
    if not meta.checksum_ok(block, fmt.BTREE_CSUM_XOR):
        return NodeError.CHECKSUM
    record = meta.headers[block]
    h = {name: int(record[name]) for name in _HEADER_FIELDS}
    for failed, error in _failures(block, h, rule, not root):
        if failed:
            return error
    return NodeError.NONE


def sound_nodes(meta: MetadataFile, blocks: np.ndarray, rule: NodeRule) -> np.ndarray:
    """Which of ``blocks`` (inside the file, none a known root) pass every check of ``rule``;
    checksums are computed for the nodes whose header passes."""
    blocks = np.asarray(blocks, dtype=np.int64)
    sound = header_errors(blocks, header_fields(meta, blocks), rule, False) == NodeError.NONE
    if sound.any():
        sound[sound] = meta.checksums_ok(blocks[sound], fmt.BTREE_CSUM_XOR)
    return sound


def describe(meta: MetadataFile, block: int, error: NodeError, rule: NodeRule) -> str:
    """The message that names ``error`` of node ``block``."""
    h = meta.headers[block]
    blocknr, flags = int(h["blocknr"]), int(h["flags"])
    nr, width, value_size = int(h["nr_entries"]), int(h["max_entries"]), int(h["value_size"])
    if error == NodeError.CHECKSUM:
        return f"bad checksum in btree node {block}{_kind(meta, block)}"
    if error == NodeError.BLOCKNR:
        return f"bad block nr in btree node: block {block} claims {blocknr}"
    if error == NodeError.FLAGS:
        return f"btree node {block} has flags {flags}"
    if error == NodeError.VALUE_SIZE:
        expected = rule.expected_value_size()
        return f"btree node {block} has value size {value_size}, expected {expected}"
    if error == NodeError.MAX_ENTRIES:
        return f"btree node {block} has max_entries {width}"
    if error == NodeError.NR_ENTRIES:
        return f"btree node {block} has {nr} entries, max_entries {width}"
    if error == NodeError.UNDERFULL:
        return f"too few entries in btree node {block}: {nr}, expected at least {width // 3}"
    if error == NodeError.EMPTY:
        return f"internal btree node {block} has no entries"
    raise ValueError(f"node {block} has no error to describe")


def _kind(meta: MetadataFile, block: int) -> str:
    """What a block whose btree checksum fails checksums as, if it is another kind of block."""
    kind = fmt.block_type(meta.block(block))
    if kind is None or kind == "btree node":
        return ""
    return f" (the block checksums as a {kind})"


# -- keys -----------------------------------------------------------------------------------------


def keys_ascend(keys: np.ndarray) -> bool:
    """Whether a node's keys are strictly ascending."""
    return not bool((keys[1:] <= keys[:-1]).any())


def unordered_rows(keys: np.ndarray, nr: np.ndarray) -> np.ndarray:
    """For nodes whose keys are the rows of ``keys`` (the first ``nr`` of each in use), whether
    they fail to ascend strictly."""
    if keys.shape[1] < 2:
        return np.zeros(keys.shape[0], dtype=bool)
    in_use = np.arange(1, keys.shape[1]) < nr[:, None]
    return ((keys[:, 1:] <= keys[:, :-1]) & in_use).any(axis=1)


def keys_within(first: Any, last: Any, lo: Any, hi: Any) -> Any:
    """Whether a node's keys ``first..last`` lie inside the range ``lo..hi`` its parent gives
    (numbers, or numpy arrays: one answer per node)."""
    return (first >= lo) & (last <= hi)
