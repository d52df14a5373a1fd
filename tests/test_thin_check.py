"""``thin check`` against thin_check 0.9.0 on valid pools and on a corruption set.

Every damaged case is derived from a pool written by the real thin_restore, by editing bytes at
offsets found from the superblock (with or without recomputing the block's checksum). Beside
each case stands thin_check's own exit status, as measured: every case it flags, we flag; the
cases it misses (data space map, mapped_blocks, data blocks past the end, times) we flag too.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import thin_fixtures as tf
from click.testing import CliRunner

from forensics.cli.thin import thin
from forensics.formats import thin as fmt
from forensics.thin.blocks import MetadataFile
from forensics.thin.check import check_pool
from forensics.thin.pool import read_pool

# -- helpers ---------------------------------------------------------------------------------------


def run_check(path: Path, *extra: str) -> tuple[int, dict]:
    result = CliRunner().invoke(thin, ["check", "--format", "json", *extra, str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def checks_of(doc: dict, *severities: str) -> set[str]:
    wanted = severities or ("error", "warning", "info")
    return {e["check"] for e in doc["findings"] if e["severity"] in wanted}


def superblock(path: Path):
    return fmt.parse_superblock(bytes(tf.read_block(path, 0)))


def node_value_offset(path: Path, blocknr: int, index: int) -> int:
    block = tf.read_block(path, blocknr)
    width, value_size = struct.unpack_from("<II", block, 20)
    return 32 + 8 * width + value_size * index


def node_values(path: Path, blocknr: int) -> list[int]:
    block = tf.read_block(path, blocknr)
    nr, width = struct.unpack_from("<II", block, 16)
    return list(struct.unpack_from(f"<{nr}Q", block, 32 + 8 * width))


def node_keys(path: Path, blocknr: int) -> list[int]:
    block = tf.read_block(path, blocknr)
    (nr,) = struct.unpack_from("<I", block, 16)
    return list(struct.unpack_from(f"<{nr}Q", block, 32))


def device_root(path: Path, dev_id: int) -> int:
    top = int(superblock(path).data_mapping_root)
    return node_values(path, top)[node_keys(path, top).index(dev_id)]


def first_leaf(path: Path, root: int) -> int:
    block = root
    while tf.get(path, block, "I", 4) & fmt.INTERNAL_NODE:
        block = node_values(path, block)[0]
    return block


def data_bitmap(path: Path, index: int = 0) -> int:
    root = int(superblock(path).data_space_map_root.bitmap_root)
    offset = node_value_offset(path, root, index)
    return tf.get(path, root, "Q", offset)


def metadata_bitmap(path: Path) -> int:
    index = int(superblock(path).metadata_space_map_root.bitmap_root)
    return tf.get(path, index, "Q", 16)


def set_bitmap_count(entry: int, count: int) -> Callable[[bytearray], None]:
    raw = {0: 0, 1: 2, 2: 1, 3: 3}[count]

    def edit(block: bytearray) -> None:
        at, shift = 16 + entry // 4, 2 * (entry % 4)
        block[at] = (block[at] & ~(3 << shift) & 0xFF) | (raw << shift)

    return edit


def bitmap_count(path: Path, blocknr: int, entry: int) -> int:
    block = tf.read_block(path, blocknr)
    raw = (block[16 + entry // 4] >> (2 * (entry % 4))) & 3
    return [0, 2, 1, 3][raw]


def flip(offset: int) -> Callable[[bytearray], None]:
    def edit(block: bytearray) -> None:
        block[offset] ^= 0x5A

    return edit


BT, SB, BM, IX = (
    fmt.BTREE_CSUM_XOR,
    fmt.SUPERBLOCK_CSUM_XOR,
    fmt.BITMAP_CSUM_XOR,
    fmt.INDEX_CSUM_XOR,
)


# -- the corruption set --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    damage: Callable[[Path], None]
    #: thin_check 0.9.0's exit status on this case, as measured
    thin_check_rc: int
    #: check ids we must report
    expect: tuple[str, ...]
    fixture: str = "three"


def _sb(edit: Callable[[bytearray], None], *, seal: bool = True) -> Callable[[Path], None]:
    return lambda p: tf.edit_block(p, 0, edit, xor=SB if seal else None)


def _zero_block0(p: Path) -> None:
    tf.write_block(p, 0, bytes(fmt.BLOCK_SIZE))


def _mapping_root_to_orphan(p: Path) -> None:
    # thin_restore leaves an empty leaf right after the top-level leaf (count 0): point at it
    orphan = int(superblock(p).data_mapping_root) + 1
    assert tf.get(p, orphan, "I", 16) == 0 and bitmap_count(p, metadata_bitmap(p), orphan) == 0
    tf.edit_block(p, 0, tf.put("Q", 0x140, orphan), xor=SB)


def _leaf_of(dev_id: int) -> Callable[[Path], int]:
    return lambda p: first_leaf(p, device_root(p, dev_id))


def _node(locate: Callable[[Path], int], edit_of: Callable[[Path, int], Callable], *, seal=True):
    def damage(p: Path) -> None:
        b = locate(p)
        tf.edit_block(p, b, edit_of(p, b), xor=BT if seal else None)

    return damage


def _value(index: int, value: Callable[[int], int]) -> Callable[[Path, int], Callable]:
    def edit_of(p: Path, b: int) -> Callable[[bytearray], None]:
        old = node_values(p, b)[index]
        return tf.put("Q", node_value_offset(p, b, index), value(old))

    return edit_of


def _swap_keys(p: Path, b: int) -> Callable[[bytearray], None]:
    keys = node_keys(p, b)

    def edit(block: bytearray) -> None:
        struct.pack_into("<QQ", block, 32 + 8 * 3, keys[4], keys[3])

    return edit


def _header(offset: int, value: int) -> Callable[[Path, int], Callable]:
    return lambda p, b: tf.put("I", offset, value)


def _details_mapped(value: int) -> Callable[[Path], None]:
    def damage(p: Path) -> None:
        details = int(superblock(p).device_details_root)
        offset = node_value_offset(p, details, 1)  # device 2
        tf.edit_block(p, details, tf.put("Q", offset, value), xor=BT)

    return damage


def _details_field(offset_in_value: int, fmt_char: str, value: int) -> Callable[[Path], None]:
    def damage(p: Path) -> None:
        details = int(superblock(p).device_details_root)
        offset = node_value_offset(p, details, 0) + offset_in_value
        tf.edit_block(p, details, tf.put(fmt_char, offset, value), xor=BT)

    return damage


def _top_nr_entries(p: Path) -> None:
    top = int(superblock(p).data_mapping_root)
    tf.edit_block(p, top, tf.put("I", 16, 2), xor=BT)


def _data_bitmap_edit(entry_of: Callable[[Path], int], count: int) -> Callable[[Path], None]:
    def damage(p: Path) -> None:
        tf.edit_block(p, data_bitmap(p), set_bitmap_count(entry_of(p), count), xor=BM)

    return damage


def _mapped_data_block(p: Path) -> int:
    """Device 1's virtual block 50: the snapshots rewrote it, so only device 1 maps it."""
    return node_values(p, _leaf_of(1)(p))[50] >> 24


def _free_data_block(p: Path) -> int:
    return 16000  # nothing maps it in the fixtures of this file


def _metadata_bitmap_edit(entry_of: Callable[[Path], int], count: int) -> Callable[[Path], None]:
    def damage(p: Path) -> None:
        tf.edit_block(p, metadata_bitmap(p), set_bitmap_count(entry_of(p), count), xor=BM)

    return damage


def _data_overflow(p: Path) -> None:
    root = int(superblock(p).data_space_map_root.ref_count_root)
    assert tf.get(p, root, "I", 16) > 0, "the fixture has data blocks with 3 references"
    offset = node_value_offset(p, root, 0)
    tf.edit_block(p, root, tf.put("I", offset, 7), xor=BT)


def _truncate(fraction: float) -> Callable[[Path], None]:
    def damage(p: Path) -> None:
        size = p.stat().st_size
        with open(p, "r+b") as f:
            f.truncate(int(size * fraction) // 4096 * 4096 + 100)

    return damage


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _xml(p: Path) -> None:
    p.write_bytes(p.with_suffix(".xml").read_bytes())


def _garbage(locate: Callable[[Path], int]) -> Callable[[Path], None]:
    def damage(p: Path) -> None:
        tf.write_block(p, locate(p), bytes((i * 37 + 11) % 256 for i in range(fmt.BLOCK_SIZE)))

    return damage


def _internal_root(p: Path) -> int:
    for dev_id in node_keys(p, int(superblock(p).data_mapping_root)):
        root = device_root(p, dev_id)
        if tf.get(p, root, "I", 4) & fmt.INTERNAL_NODE:
            return root
    raise AssertionError("no device with an internal root")


def _loop_to_self(p: Path) -> None:
    root = _internal_root(p)
    tf.edit_block(p, root, tf.put("Q", node_value_offset(p, root, 1), root), xor=BT)


def _loop_between(p: Path) -> None:
    """Two internal nodes that point at each other: the root's second child becomes the root of
    another device, whose second child becomes this root."""
    top = int(superblock(p).data_mapping_root)
    roots = [
        device_root(p, d)
        for d in node_keys(p, top)
        if tf.get(p, device_root(p, d), "I", 4) & fmt.INTERNAL_NODE
    ]
    a, b = roots[0], roots[1]
    tf.edit_block(p, a, tf.put("Q", node_value_offset(p, a, 1), b), xor=BT)
    tf.edit_block(p, b, tf.put("Q", node_value_offset(p, b, 1), a), xor=BT)


def _underfull(p: Path) -> None:
    leaf = first_leaf(p, _internal_root(p))
    tf.edit_block(p, leaf, tf.put("I", 16, 3), xor=BT)


def _share_without_data_counts(p: Path) -> None:
    """Device 2 shares device 1's root, the metadata counts follow, the data counts do not."""
    data_before = tf.read_block(p, data_bitmap(p))
    tf.share_subtree(p, 1, 2)
    tf.write_block(p, data_bitmap(p), data_before)


def _flip_shared_leaf(p: Path) -> None:
    leaf = first_leaf(p, device_root(p, 1))
    tf.edit_block(p, leaf, flip(1000))


def _bad_snapshot_copy(p: Path) -> None:
    held = int(superblock(p).held_root)
    tf.edit_block(p, held, flip(0x30))


CASES = [
    Case("superblock byte flipped", _sb(flip(0x30), seal=False), 1, ("superblock.checksum",)),
    Case("block 0 zeroed", _zero_block0, 1, ("superblock.zeroed",)),
    Case("NEEDS_CHECK set", _sb(tf.put("I", 4, 1)), 0, ("superblock.needs-check",)),
    Case("superblock magic", _sb(tf.put("Q", 0x20, 1234)), 0, ("superblock.magic",)),
    Case("version 7", _sb(tf.put("I", 0x28, 7)), 0, ("superblock.version",)),
    Case("incompat flags", _sb(tf.put("I", 0x168, 1)), 0, ("superblock.incompat-flags",)),
    Case("data block size 100", _sb(tf.put("I", 0x150, 100)), 0, ("superblock.block-size",)),
    Case(
        "mapping root at an empty leaf",
        _mapping_root_to_orphan,
        1,
        ("metasm.leak", "device.no-mappings"),
    ),
    Case(
        "device leaf byte flipped",
        _node(_leaf_of(2), lambda p, b: flip(900), seal=False),
        1,
        ("node.checksum", "datasm.leak"),
    ),
    Case(
        "mapping to another data block",
        _node(_leaf_of(2), _value(0, lambda v: v + (5 << 24))),
        0,
        ("datasm.count", "datasm.leak"),
    ),
    Case(
        "mapping past the data device",
        _node(_leaf_of(2), _value(0, lambda v: (1638400 + 9) << 24 | (v & 0xFFFFFF))),
        0,
        ("mapping.data-block-range",),
    ),
    Case(
        "mapping time after the pool's",
        _node(_leaf_of(3), _value(0, lambda v: v | 77)),
        0,
        ("mapping.time",),
    ),
    Case("keys out of order", _node(_leaf_of(2), _swap_keys), 1, ("node.key-order",)),
    Case("wrong node block number", _node(_leaf_of(2), _header(8, 3)), 1, ("node.blocknr",)),
    Case("node flags 0", _node(_leaf_of(2), _header(4, 0)), 1, ("node.flags",)),
    Case("node value size 4", _node(_leaf_of(2), _header(24, 4)), 1, ("node.value-size",)),
    Case("max_entries 250", _node(_leaf_of(2), _header(20, 250)), 1, ("node.max-entries",)),
    Case("nr_entries above max", _node(_leaf_of(2), _header(16, 300)), 1, ("node.nr-entries",)),
    Case("mapped_blocks 104 -> 200", _details_mapped(200), 0, ("device.mapped-blocks",)),
    Case("creation time after the pool's", _details_field(16, "I", 9), 0, ("device.times",)),
    Case(
        "device transaction above the pool's",
        _details_field(8, "Q", 99),
        0,
        ("device.transaction",),
    ),
    Case(
        "details leaf byte flipped",
        _node(
            lambda p: int(superblock(p).device_details_root), lambda p, b: flip(2000), seal=False
        ),
        1,
        ("node.checksum",),
    ),
    Case(
        "top-level leaf byte flipped",
        _node(lambda p: int(superblock(p).data_mapping_root), lambda p, b: flip(300), seal=False),
        1,
        ("node.checksum",),
    ),
    Case(
        "top-level nr_entries 3 -> 2",
        _top_nr_entries,
        1,
        ("device.no-mappings", "metasm.leak", "datasm.leak"),
    ),
    Case("data count 1 -> 2", _data_bitmap_edit(_mapped_data_block, 2), 0, ("datasm.leak",)),
    Case(
        "free data block marked used", _data_bitmap_edit(_free_data_block, 1), 0, ("datasm.leak",)
    ),
    Case(
        "used data block marked free",
        _data_bitmap_edit(_mapped_data_block, 0),
        0,
        ("datasm.count",),
    ),
    Case(
        "data bitmap byte flipped",
        lambda p: tf.edit_block(p, data_bitmap(p), flip(100)),
        1,
        ("datasm.bitmap",),
    ),
    Case("metadata block leaked", _metadata_bitmap_edit(lambda p: 4000, 1), 1, ("metasm.leak",)),
    Case(
        "metadata block in use marked free",
        _metadata_bitmap_edit(lambda p: int(superblock(p).device_details_root), 0),
        1,
        ("metasm.count",),
    ),
    Case(
        "metadata index byte flipped",
        lambda p: tf.edit_block(
            p, int(superblock(p).metadata_space_map_root.bitmap_root), flip(40)
        ),
        1,
        ("metasm.index",),
    ),
    Case(
        "data space map index byte flipped",
        lambda p: tf.edit_block(p, int(superblock(p).data_space_map_root.bitmap_root), flip(600)),
        1,
        ("node.checksum",),
    ),
    Case("data overflow count 3 -> 7", _data_overflow, 0, ("datasm.leak",)),
    Case("garbage in a device leaf", _garbage(_leaf_of(1)), 1, ("node.checksum",)),
    Case("truncated file", _truncate(0.004), 1, ("file.truncated",)),
    Case("empty file", _empty, 1, ("file.too-small",)),
    Case("XML instead of metadata", _xml, 1, ("file.too-small",)),
    Case("internal node points at itself", _loop_to_self, 1, ("node.loop",), "big"),
    # the key ranges that the parents give catch this loop before it closes
    Case("two internal nodes point at each other", _loop_between, 1, ("node.key-range",), "big"),
    Case("non-root leaf with 3 entries", _underfull, 1, ("node.nr-entries",), "big"),
    Case(
        "shared subtree, data counts left double",
        _share_without_data_counts,
        0,
        ("datasm.leak",),
        "unshared",
    ),
    Case("leaf shared by two devices flipped", _flip_shared_leaf, 1, ("node.checksum",), "shared"),
    Case(
        "metadata snapshot copy damaged",
        _bad_snapshot_copy,
        1,
        ("superblock.metadata-snap",),
        "snap",
    ),
]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("thin-pristine")
    shared = tf.restore(tf.sharing_pool().xml(), d / "shared.bin")
    tf.share_subtree(shared, 1, 2)
    tf.share_subtree(shared, 3, 4, child=2)
    snap = tf.restore(tf.three_device_pool().xml(), d / "snap.bin")
    tf.add_metadata_snapshot(snap)
    return {
        "three": tf.restore(tf.three_device_pool().xml(), d / "three.bin"),
        "big": tf.restore(tf.big_pool().xml(), d / "big.bin"),
        "shared": shared,
        "snap": snap,
        "unshared": tf.restore(tf.sharing_pool().xml(), d / "unshared.bin"),
    }


def derive(pristine: dict[str, Path], case: Case, tmp_path: Path) -> Path:
    src = pristine[case.fixture]
    dst = tmp_path / "meta.bin"
    dst.write_bytes(src.read_bytes())
    dst.with_suffix(".xml").write_bytes(src.with_suffix(".xml").read_bytes())
    case.damage(dst)
    return dst


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corruption_case(case: Case, pristine: dict[str, Path], tmp_path: Path) -> None:
    path = derive(pristine, case, tmp_path)
    theirs = tf.run_tool("thin_check", path).returncode
    status, doc = run_check(path)
    found = checks_of(doc)
    assert theirs == case.thin_check_rc, f"thin_check now exits {theirs}"
    assert set(case.expect) <= found, f"{case.name}: expected {case.expect}, found {found}"
    # no superblock magic (or less than a block) is no thin-pool metadata at all: exit 8, as
    # e2fsck exits on a bad magic; the report is written all the same
    assert status == (8 if {"superblock.magic", "file.too-small"} & found else 4), status
    for e in doc["findings"]:
        assert set(e) == {"check", "severity", "block", "message"}


def test_cases_cover_what_thin_check_misses() -> None:
    missed = {c for case in CASES if case.thin_check_rc == 0 for c in case.expect}
    assert {"datasm.count", "datasm.leak", "device.mapped-blocks", "mapping.data-block-range"} <= (
        missed
    )


# -- valid pools -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["three", "big", "shared", "snap", "unshared"])
def test_valid_pool_is_clean(name: str, pristine: dict[str, Path]) -> None:
    assert tf.run_tool("thin_check", pristine[name]).returncode == 0
    status, doc = run_check(pristine[name])
    assert status == 0, doc["findings"]
    assert not checks_of(doc, "error", "warning")


def test_text_report_names_transaction(pristine: dict[str, Path]) -> None:
    result = CliRunner().invoke(thin, ["check", str(pristine["three"])])
    assert result.exit_code == 0
    assert result.stdout.startswith("superblock: transaction 3, time 2, 3 devices")
    assert result.stdout.rstrip().endswith("0 errors, 0 warnings, 1 info")


def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    result = CliRunner().invoke(thin, ["check", str(tmp_path / "nothing")])
    assert result.exit_code == 8


def test_directory_is_unreadable(tmp_path: Path) -> None:
    result = CliRunner().invoke(thin, ["check", str(tmp_path)])
    assert result.exit_code == 8


def test_damaged_subtree_is_reported_once(pristine: dict[str, Path], tmp_path: Path) -> None:
    """A device leaf gone: one node finding naming what it hides, and one summary of the data
    blocks that look leaked because of it — not a hundred refcount findings."""
    case = next(c for c in CASES if c.name == "device leaf byte flipped")
    path = derive(pristine, case, tmp_path)
    _, doc = run_check(path)
    nodes = [e for e in doc["findings"] if e["check"] == "node.checksum"]
    assert len(nodes) == 1
    assert "the mapping tree of device 2" in nodes[0]["message"]
    assert "virtual blocks 0 and above are unreadable" in nodes[0]["message"]
    leaks = [e for e in doc["findings"] if e["check"] == "datasm.leak"]
    assert len(leaks) == 1 and "damage reported above" in leaks[0]["message"]
    assert len(doc["findings"]) <= 4


def test_severities_follow_thin_check(pristine: dict[str, Path], tmp_path: Path) -> None:
    """A leak is non-fatal (warning), a block counted too low is fatal (error)."""
    by_name = {c.name: c for c in CASES}
    leak = derive(pristine, by_name["metadata block leaked"], tmp_path)
    _, doc = run_check(leak)
    assert {(e["check"], e["severity"]) for e in doc["findings"]} >= {("metasm.leak", "warning")}
    low = tmp_path / "low"
    low.mkdir()
    path = derive(pristine, by_name["metadata block in use marked free"], low)
    _, doc = run_check(path)
    assert ("metasm.count", "error") in {(e["check"], e["severity"]) for e in doc["findings"]}


def test_library_never_raises_on_random_blocks(pristine: dict[str, Path], tmp_path: Path) -> None:
    """Garbage in every block but the superblock: findings only."""
    path = tmp_path / "meta.bin"
    data = bytearray(pristine["three"].read_bytes())
    for b in range(1, 200):
        data[b * 4096 : (b + 1) * 4096] = bytes([(b * 7 + i) % 251 for i in range(4096)])
    path.write_bytes(bytes(data))
    with MetadataFile(path) as meta:
        result = check_pool(read_pool(meta))
    assert result.exit_damage()


def test_shared_damage_is_reported_once_for_both_devices(
    pristine: dict[str, Path], tmp_path: Path
) -> None:
    case = next(c for c in CASES if c.name == "leaf shared by two devices flipped")
    _, doc = run_check(derive(pristine, case, tmp_path))
    nodes = [e for e in doc["findings"] if e["check"] == "node.checksum"]
    assert len(nodes) == 1
    assert "device 1" in nodes[0]["message"] and "device 2" in nodes[0]["message"]


def test_metadata_snapshot_keeps_an_old_tree_alive(pristine: dict[str, Path], tmp_path: Path):
    """The snapshot's mapping root is a tree the live superblock no longer names (thin_restore's
    orphan leaf): its count comes from the snapshot alone, which thin_check and we both see."""
    path = tmp_path / "meta.bin"
    path.write_bytes(pristine["snap"].read_bytes())
    sb = superblock(path)
    held, live_root = int(sb.held_root), int(sb.data_mapping_root)
    orphan = live_root + 1
    tf.edit_block(path, held, tf.put("Q", 0x140, orphan), xor=SB)
    bitmap = metadata_bitmap(path)
    tf.edit_block(path, bitmap, set_bitmap_count(orphan, 1), xor=BM)
    tf.edit_block(path, bitmap, set_bitmap_count(live_root, 1), xor=BM)
    assert tf.run_tool("thin_check", path).returncode == 0
    status, doc = run_check(path)
    assert status == 0, doc["findings"]


def test_random_damage_never_raises(pristine: dict[str, Path], tmp_path: Path) -> None:
    """Seeded random byte damage (checksums recomputed half the time) and truncations: every
    command's library path returns findings, never an exception."""
    import random

    from forensics.thin.dump import dump_chunks
    from forensics.thin.ls import device_usage

    rng = random.Random(20261128)
    source = pristine["three"].read_bytes()
    path = tmp_path / "meta.bin"
    for _ in range(120):
        data = bytearray(source)
        if rng.random() < 0.1:
            data = data[: rng.randrange(len(data) // 200)]
        for _ in range(rng.randrange(1, 4)):
            block = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 110, 111, 112])
            at = block * 4096 + rng.randrange(4096)
            if at < len(data):
                data[at] = rng.randrange(256)
                if rng.random() < 0.5 and (block + 1) * 4096 <= len(data):
                    xor = {0: SB, 1: IX, 3: BM, 9: BM}.get(block, BT)
                    raw = data[block * 4096 : (block + 1) * 4096]
                    fmt.seal_block(raw, xor)
                    data[block * 4096 : (block + 1) * 4096] = raw
        path.write_bytes(bytes(data))
        with MetadataFile(path) as meta:
            pool = read_pool(meta)
            check_pool(pool)
            if pool.usable:
                b"".join(dump_chunks(pool))
                device_usage(pool)


# -- crashes found by fuzzing (tests/fuzz/test_fuzz_thin.py) ------------------------------------


def copy_of(pristine: dict[str, Path], name: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{name}.bin"
    path.write_bytes(pristine[name].read_bytes())
    return path


@pytest.mark.parametrize("tree", ["data index", "data ref-count"])
def test_space_map_keys_of_2_63_and_more(
    tree: str, pristine: dict[str, Path], tmp_path: Path
) -> None:
    """A key of 2**63 or more in a space map's trees is a stray entry; read as a signed number
    it became a negative index (IndexError)."""
    path = copy_of(pristine, "three", tmp_path)
    sm = superblock(path).data_space_map_root
    root = int(sm.bitmap_root if tree == "data index" else sm.ref_count_root)
    leaf = first_leaf(path, root)
    last = len(node_keys(path, leaf)) - 1
    tf.edit_block(path, leaf, tf.put("Q", 32 + 8 * last, 1 << 63), xor=BT)
    status, doc = run_check(path)
    assert status == 4
    assert ("datasm.index" if tree == "data index" else "datasm.overflow") in checks_of(doc)


def test_internal_root_without_entries(pristine: dict[str, Path], tmp_path: Path) -> None:
    """An internal root node holding no entries is damage; it made the walker's key ranges and
    leaves disagree in length (ValueError)."""
    path = copy_of(pristine, "big", tmp_path)
    tf.edit_block(path, _internal_root(path), tf.put("I", 16, 0), xor=BT)
    assert tf.run_tool("thin_check", path).returncode == 1
    status, doc = run_check(path)
    assert status == 4
    assert "node.nr-entries" in checks_of(doc)


def test_huge_claimed_space_map_sizes(pristine: dict[str, Path], tmp_path: Path) -> None:
    """Space map sizes near 2**64 in the superblock, with the data space map's index damaged:
    the data bitmaps are bounded by the file's own blocks, not by the metadata space map's
    claimed size (which let 2**40 data blocks through to a MemoryError)."""
    path = copy_of(pristine, "three", tmp_path)
    sb = superblock(path)
    tf.edit_block(path, 0, tf.put("Q", 0xC0, (1 << 64) - 1), xor=SB)  # metadata nr_blocks
    tf.edit_block(path, 0, tf.put("Q", 0x40, 1 << 40), xor=SB)  # data nr_blocks
    _garbage(lambda p: int(sb.data_space_map_root.bitmap_root))(path)
    status, doc = run_check(path)
    assert status == 4
    assert {"metasm.root", "datasm.root"} <= checks_of(doc)


# -- memory on hostile claims --------------------------------------------------------------------

#: peak RSS allowed to ``thin check`` on a 16 MiB file: the interpreter with numpy, construct and
#: click takes about 40 MiB here; the counts the file claims (66,846,720 data blocks) took
#: 1.4 GiB before the space maps were compared a span of bitmaps at a time
HOSTILE_PEAK_MIB = 100


#: run by a small interpreter of its own: it starts ``thin check`` and prints the exit status
#: and ``ru_maxrss`` that ``os.wait4`` gives for it
_MEASURE = """
import os, subprocess, sys
with open(sys.argv[2], "wb") as out:
    child = subprocess.Popen(
        [sys.executable, "-c", "from forensics.cli.thin import thin; thin()", "check",
         "--format", "json", sys.argv[1]],
        stdout=out,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def peak_rss_of_check(path: Path) -> tuple[int, dict, float]:
    """Exit status, JSON report and peak RSS (MiB, ``os.wait4``'s ``ru_maxrss``) of ``thin
    check`` in a child process. The child is started by a small interpreter, not by this test
    process: Linux carries the peak RSS of the process that calls exec into ``ru_maxrss``
    (``vfork`` included), so a child started from pytest would report pytest's size."""
    report = path.with_suffix(".json")
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), str(report)],
        capture_output=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    status, peak_kib = map(int, result.stdout.split())
    return status, json.loads(report.read_text()), peak_kib / 1024


def test_claimed_data_blocks_do_not_set_the_memory(
    pristine: dict[str, Path], tmp_path: Path
) -> None:
    """A 16 MiB file whose data space map claims 4096 bitmaps (one per block of the file) with
    its index damaged: the memory of the check follows the file, not the claim."""
    path = copy_of(pristine, "three", tmp_path)
    assert path.stat().st_size == 16 << 20
    index = int(superblock(path).data_space_map_root.bitmap_root)
    tf.edit_block(path, 0, tf.put("Q", 0x40, 4096 * fmt.ENTRIES_PER_BITMAP), xor=SB)
    _garbage(lambda p: index)(path)
    status, doc, peak = peak_rss_of_check(path)
    assert status == 4
    assert any(
        e["check"] == "node.checksum" and "data space map index" in e["message"]
        for e in doc["findings"]
    )
    assert peak < HOSTILE_PEAK_MIB, f"peak RSS {peak:.0f} MiB"


def test_bitmap_block_of_2_63_is_out_of_range(pristine: dict[str, Path], tmp_path: Path) -> None:
    """An index entry naming block 2**63 names a block past the end of the metadata; read as a
    signed number it was negative and reported as a bitmap the index lacks."""
    path = copy_of(pristine, "three", tmp_path)
    index = int(superblock(path).data_space_map_root.bitmap_root)
    assert tf.get(path, index, "I", 4) == fmt.LEAF_NODE
    tf.edit_block(path, index, tf.put("Q", node_value_offset(path, index, 0), 1 << 63), xor=BT)
    status, doc = run_check(path)
    assert status == 4
    bitmaps = [e for e in doc["findings"] if e["check"] == "datasm.bitmap"]
    assert [e["message"] for e in bitmaps] == [
        f"data space map bitmap 0 is at block {1 << 63}, past the end of the metadata"
    ]
    assert "datasm.index" not in checks_of(doc)
