"""dm-thin pool metadata: the on-disk structures, declared once.

Every structure is a construct declaration. The superblock is parsed with construct; the
structures that come by the thousand (btree node headers, device details, index entries) are
decoded in bulk through numpy dtypes derived from the *same* declarations by :func:`numpy_dtype`,
so offsets are never written twice.

Every metadata block is 4096 bytes and starts with a checksum over bytes ``[4, 4096)``:
``stored = crc32c(block[4:]) ^ 0xFFFFFFFF ^ XOR`` where crc32c is the ordinary CRC-32C (initial
value and final xor 0xFFFFFFFF) and XOR depends on the block type. The extra ``0xFFFFFFFF``
converts the kernel's raw-register convention to the ordinary one.
"""

from __future__ import annotations

from typing import Any

import construct as cs
import google_crc32c
import numpy as np

BLOCK_SIZE = 4096
SUPERBLOCK_LOCATION = 0
SUPERBLOCK_MAGIC = 27022010
SUPERBLOCK_USED = 364

#: checksum xor constants by block type
SUPERBLOCK_CSUM_XOR = 160774
BTREE_CSUM_XOR = 121107
BITMAP_CSUM_XOR = 240779
INDEX_CSUM_XOR = 160478
BLOCK_TYPE_BY_XOR = {
    SUPERBLOCK_CSUM_XOR: "thin superblock",
    BTREE_CSUM_XOR: "btree node",
    BITMAP_CSUM_XOR: "space-map bitmap",
    INDEX_CSUM_XOR: "metadata space-map index",
    9031977: "dm-cache superblock",
    146538381: "dm-era superblock",
    595846735: "dm-cache/era array block",
}

#: superblock flags
NEEDS_CHECK = 1
#: btree node flags
INTERNAL_NODE = 1
LEAF_NODE = 2

MAX_METADATA_BITMAPS = 255
MAX_DEV_ID = (1 << 24) - 1
TIME_BITS = 24
TIME_MASK = (1 << TIME_BITS) - 1

SpaceMapRoot = cs.Struct(
    "nr_blocks" / cs.Int64ul,
    "nr_allocated" / cs.Int64ul,
    "bitmap_root" / cs.Int64ul,
    "ref_count_root" / cs.Int64ul,
)

Superblock = cs.Struct(
    "csum" / cs.Int32ul,
    "flags" / cs.Int32ul,
    "blocknr" / cs.Int64ul,
    "uuid" / cs.Bytes(16),
    "magic" / cs.Int64ul,
    "version" / cs.Int32ul,
    "time" / cs.Int32ul,
    "trans_id" / cs.Int64ul,
    "held_root" / cs.Int64ul,
    "data_space_map_root" / SpaceMapRoot,
    cs.Padding(96),
    "metadata_space_map_root" / SpaceMapRoot,
    cs.Padding(96),
    "data_mapping_root" / cs.Int64ul,
    "device_details_root" / cs.Int64ul,
    "data_block_size" / cs.Int32ul,
    "metadata_block_size" / cs.Int32ul,
    "metadata_nr_blocks" / cs.Int64ul,
    "compat_flags" / cs.Int32ul,
    "compat_ro_flags" / cs.Int32ul,
    "incompat_flags" / cs.Int32ul,
)

#: a btree node: this header, then ``max_entries`` keys, then ``max_entries`` values (of the
#: tree's value size); the first ``nr_entries`` of each are in use
NodeHeader = cs.Struct(
    "csum" / cs.Int32ul,
    "flags" / cs.Int32ul,
    "blocknr" / cs.Int64ul,
    "nr_entries" / cs.Int32ul,
    "max_entries" / cs.Int32ul,
    "value_size" / cs.Int32ul,
    "padding" / cs.Int32ul,
)
#: a key of every btree (a virtual block, a device id, a bitmap or block number)
NodeKey = cs.Int64ul
#: the value of an internal node and of the top level of the mapping tree: a child's block
ChildPointer = cs.Int64ul
#: the value of the bottom level of the mapping tree: ``data_block << TIME_BITS | time``
BlockTime = cs.Int64ul
#: the value of a ref-count tree: a block's count, when it is 3 or more
RefCount = cs.Int32ul

#: the value of the device details tree
DeviceDetails = cs.Struct(
    "mapped_blocks" / cs.Int64ul,
    "transaction_id" / cs.Int64ul,
    "creation_time" / cs.Int32ul,
    "snapshotted_time" / cs.Int32ul,
)

#: one bitmap's entry in a space map's index (data: btree values; metadata: the index block)
IndexEntry = cs.Struct(
    "blocknr" / cs.Int64ul,
    "nr_free" / cs.Int32ul,
    "none_free_before" / cs.Int32ul,
)

MetadataIndexHeader = cs.Struct(
    "csum" / cs.Int32ul,
    "padding" / cs.Int32ul,
    "blocknr" / cs.Int64ul,
)
MetadataIndex = cs.Struct(
    "header" / MetadataIndexHeader,
    "entries" / cs.Array(MAX_METADATA_BITMAPS, IndexEntry),
)

#: a space-map bitmap block: this header, then two bits per block to the end of the block
BitmapHeader = cs.Struct(
    "csum" / cs.Int32ul,
    "not_used" / cs.Int32ul,
    "blocknr" / cs.Int64ul,
)


def field_offset(declaration: cs.Struct, name: str) -> int:
    """Where field ``name`` of the struct ``declaration`` starts."""
    offset = 0
    for sub in declaration.subcons:
        if sub.name == name:
            return offset
        offset += sub.sizeof()
    raise KeyError(name)


def field_size(declaration: cs.Struct, name: str) -> int:
    (sub,) = [sub for sub in declaration.subcons if sub.name == name]
    return int(sub.sizeof())


# -- offsets, each from its declaration -----------------------------------------------------------

NODE_HEADER_SIZE = NodeHeader.sizeof()
KEY_SIZE = NodeKey.sizeof()
#: where a node's keys start, in bytes and in 64-bit words (they follow the header)
NODE_KEYS_OFFSET = NODE_HEADER_SIZE
NODE_KEYS_WORD = NODE_KEYS_OFFSET // KEY_SIZE
#: every metadata block starts with its checksum, which covers the rest of the block
CSUM_SIZE = field_size(NodeHeader, "csum")
#: every metadata block holds its own block number here (all the headers agree)
BLOCKNR_OFFSET = field_offset(NodeHeader, "blocknr")
BLOCKNR_SIZE = field_size(NodeHeader, "blocknr")
#: the metadata space map index's entries, and a bitmap's two-bit entries
INDEX_ENTRIES_OFFSET = field_offset(MetadataIndex, "entries")
BITMAP_ENTRIES_OFFSET = BitmapHeader.sizeof()
ENTRIES_PER_BITMAP = (BLOCK_SIZE - BITMAP_ENTRIES_OFFSET) * 4  # 16320 two-bit entries
MAX_METADATA_BLOCKS = MAX_METADATA_BITMAPS * ENTRIES_PER_BITMAP
BLOCK_TIME_SIZE = BlockTime.sizeof()

assert Superblock.sizeof() == SUPERBLOCK_USED
assert NODE_HEADER_SIZE == 32 and NODE_HEADER_SIZE % KEY_SIZE == 0
assert MetadataIndex.sizeof() <= BLOCK_SIZE
assert all(
    field_offset(header, "blocknr") == BLOCKNR_OFFSET
    for header in (Superblock, NodeHeader, MetadataIndexHeader, BitmapHeader)
)
assert all(
    field_size(header, "csum") == CSUM_SIZE and field_offset(header, "csum") == 0
    for header in (Superblock, NodeHeader, MetadataIndexHeader, BitmapHeader)
)

#: value sizes of the trees, as written in their nodes
VALUE_SIZE = {
    "internal": ChildPointer.sizeof(),
    "top-level": ChildPointer.sizeof(),
    "mapping": BLOCK_TIME_SIZE,
    "details": DeviceDetails.sizeof(),
    "data-index": IndexEntry.sizeof(),
    "ref-count": RefCount.sizeof(),
}


def max_entries(value_size: int) -> int:
    """The ``max_entries`` that the kernel and the tools write for a node of ``value_size``."""
    return ((BLOCK_SIZE - NODE_HEADER_SIZE) // (KEY_SIZE + value_size)) // 3 * 3


def node_values_offset(max_entries: Any) -> Any:
    """Where a node's values start: after its ``max_entries`` keys (a number or an array)."""
    return NODE_KEYS_OFFSET + KEY_SIZE * max_entries


# -- the checksum rule --------------------------------------------------------------------------


def block_checksum(block: bytes, xor: int) -> int:
    """The checksum that a block of the type of ``xor`` must store in its first four bytes."""
    return google_crc32c.value(bytes(block[CSUM_SIZE:BLOCK_SIZE])) ^ 0xFFFFFFFF ^ xor


def stored_checksum(block: bytes) -> int:
    return int.from_bytes(block[:CSUM_SIZE], "little")


def stored_blocknr(block: bytes) -> int:
    """The block number that a metadata block (of any type) holds."""
    return int.from_bytes(block[BLOCKNR_OFFSET : BLOCKNR_OFFSET + BLOCKNR_SIZE], "little")


def checksum_ok(block: bytes, xor: int) -> bool:
    return len(block) >= BLOCK_SIZE and stored_checksum(block) == block_checksum(block, xor)


def block_type(block: bytes) -> str | None:
    """The kind of block whose checksum rule ``block`` satisfies, if any: the xor constant differs
    per type, so a checksum identifies what a stray block is."""
    if len(block) < BLOCK_SIZE:
        return None
    xor = stored_checksum(block) ^ block_checksum(block, 0)
    return BLOCK_TYPE_BY_XOR.get(xor)


def seal_block(block: bytearray, xor: int) -> None:
    """Write the checksum of ``block`` (4096 bytes) into its first four bytes, in place."""
    block[:CSUM_SIZE] = block_checksum(bytes(block), xor).to_bytes(CSUM_SIZE, "little")


# -- bulk decoding from the declarations ----------------------------------------------------------

_NUMPY_FORMATS = {"<B": "u1", "<H": "<u2", "<I": "<u4", "<L": "<u4", "<Q": "<u8"}


def numpy_dtype(declaration: cs.Construct, itemsize: int | None = None) -> np.dtype[Any]:
    """A numpy structured dtype with the fields and offsets of the construct ``declaration``
    (fixed-size integers, byte strings, padding and nested structs), optionally widened to
    ``itemsize`` bytes so that an array of it strides over whole blocks."""
    names: list[str] = []
    formats: list[Any] = []
    offsets: list[int] = []
    offset = 0
    subcons = declaration.subcons if isinstance(declaration, cs.Struct) else []
    for sub in subcons:
        size = sub.sizeof()
        inner = sub.subcon if isinstance(sub, cs.Renamed) else sub
        if sub.name is not None:
            names.append(sub.name)
            formats.append(_numpy_format(inner, size))
            offsets.append(offset)
        offset += size
    return np.dtype(
        {
            "names": names,
            "formats": formats,
            "offsets": offsets,
            "itemsize": itemsize or offset,
        }
    )


def _numpy_format(sub: cs.Construct, size: int) -> Any:
    if isinstance(sub, cs.FormatField):
        return _NUMPY_FORMATS[sub.fmtstr]
    if isinstance(sub, cs.Struct):
        return numpy_dtype(sub)
    if isinstance(sub, cs.Array):
        return (_numpy_format(sub.subcon, sub.subcon.sizeof()), sub.count)
    return f"V{size}"  # Bytes(n)


#: a whole metadata block seen through the btree node header
NODE_BLOCK_DTYPE = numpy_dtype(NodeHeader, BLOCK_SIZE)
#: a whole metadata block seen through the space-map bitmap header
BITMAP_BLOCK_DTYPE = numpy_dtype(BitmapHeader, BLOCK_SIZE)
DETAILS_DTYPE = numpy_dtype(DeviceDetails)
INDEX_ENTRY_DTYPE = numpy_dtype(IndexEntry)

#: 2-bit bitmap entries → reference count. The first bit of each pair is the *high* bit of the
#: count, so the pair read as a little-endian number gives 0→0, 1→2, 2→1, 3→"3 or more".
BITMAP_RAW_TO_COUNT = np.array([0, 2, 1, 3], dtype=np.uint8)
#: and back: counts 0, 1, 2, 3 ("3 or more") → the two bits as written
COUNT_TO_BITMAP_RAW = np.array([0, 2, 1, 3], dtype=np.uint8)


#: each byte of a bitmap → the counts of its four entries, lowest bits first
_BYTE_TO_COUNTS = BITMAP_RAW_TO_COUNT[
    (np.arange(256, dtype=np.uint8)[:, None] >> np.array([0, 2, 4, 6], dtype=np.uint8)) & 3
]


def decode_bitmaps(areas: np.ndarray) -> np.ndarray:
    """Counts (0, 1, 2, or 3 meaning "look in the ref-count tree") of the bitmap entry areas
    ``areas`` (shape ``(n, 4080)`` uint8: the blocks from ``BITMAP_ENTRIES_OFFSET`` on)."""
    return _BYTE_TO_COUNTS[areas].reshape(areas.shape[0], -1)


def parse_superblock(block: bytes) -> cs.Container:
    return Superblock.parse(bytes(block[:SUPERBLOCK_USED]))
