"""The metadata writer against the real tools: every fixture read by our reader, written afresh
by ``forensics.thin.write``, must pass thin_check 0.9.0 without a word and dump exactly as the
input dumps; our own ``thin check`` must find nothing at all (not even a note)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import thin_fixtures as tf
from click.testing import CliRunner
from test_thin_dump import POOLS

from forensics.cli.thin import thin
from forensics.formats import thin as fmt
from forensics.thin.blocks import MetadataFile
from forensics.thin.pool import read_pool
from forensics.thin.write import (
    DeviceRecord,
    MetadataModel,
    WriteError,
    chunks,
    encode_metadata,
    model_from_pool,
    write_metadata,
)

#: thin_check's progress lines on stderr: anything else is a complaint
PROGRESS = {
    "examining superblock",
    "examining devices tree",
    "examining mapping tree",
    "checking space map counts",
}


def _deep_pool() -> tf.Pool:
    """One device of 70,000 mappings: more leaves than one internal node holds (3 levels)."""
    pool = tf.Pool()
    pool.create_thin(5)
    pool.write(5, np.arange(70000))
    return pool


WRITE_POOLS: dict[str, tuple[Callable[[], tf.Pool], Callable[[Path], None] | None]] = {
    **POOLS,
    "three levels": (_deep_pool, None),
}


@pytest.fixture(scope="module", params=sorted(WRITE_POOLS))
def fixture(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    make, derive = WRITE_POOLS[request.param]
    path = tf.restore(make().xml(), tmp_path_factory.mktemp("thin-write") / "meta.bin")
    if derive is not None:
        derive(path)
    return path


def read_model(path: Path) -> MetadataModel:
    with MetadataFile(path) as meta:
        return model_from_pool(read_pool(meta, space_maps=False))


def assert_thin_check_silent(path: Path) -> None:
    result = tf.run_tool("thin_check", path)
    assert result.returncode == 0, result.stderr.decode()
    complaints = set(result.stderr.decode().splitlines()) - PROGRESS
    assert not complaints, complaints


def our_findings(path: Path) -> list[str]:
    result = CliRunner().invoke(thin, ["check", "--format", "json", str(path)])
    return [f"{e['check']}: {e['message']}" for e in json.loads(result.stdout)["findings"]]


@pytest.mark.parametrize("share", [True, False], ids=["shared", "unshared"])
def test_roundtrip(fixture: Path, tmp_path: Path, share: bool) -> None:
    """Reader → model → writer: thin_check is silent, thin_dump is byte-identical, thin_ls
    agrees, and our checker finds nothing."""
    out = tmp_path / "written.bin"
    write_metadata(read_model(fixture), out, share=share)
    assert_thin_check_silent(out)
    theirs = tf.run_tool("thin_dump", fixture).stdout
    assert tf.run_tool("thin_dump", out).stdout == theirs
    assert CliRunner().invoke(thin, ["dump", str(out)]).stdout_bytes == theirs
    ls = ("--no-headers", "-o", "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS")
    assert tf.run_tool("thin_ls", *ls, out).stdout == tf.run_tool("thin_ls", *ls, fixture).stdout
    flags = int(fmt.parse_superblock(bytes(tf.read_block(out, 0))).flags)
    expected = [] if not flags & fmt.NEEDS_CHECK else ["superblock.needs-check"]
    assert [f.split(":")[0] for f in our_findings(out)] == expected, our_findings(out)


def test_output_is_sparse_and_sized_as_the_device(fixture: Path, tmp_path: Path) -> None:
    model = read_model(fixture)
    model.metadata_blocks = 524288  # Docker's default: a 2 GiB metadata file
    out = tmp_path / "docker-sized.bin"
    stats = write_metadata(model, out)
    assert out.stat().st_size == 524288 * fmt.BLOCK_SIZE
    assert out.stat().st_blocks * 512 <= (stats.used_blocks + 64) * fmt.BLOCK_SIZE
    assert_thin_check_silent(out)
    index = tf.read_block(out, 1)
    nr_bitmaps = -(-524288 // fmt.ENTRIES_PER_BITMAP)
    entries = np.frombuffer(bytes(index), fmt.INDEX_ENTRY_DTYPE, count=255, offset=16)
    assert (entries["blocknr"][:nr_bitmaps] > 0).all() and not entries["blocknr"][nr_bitmaps:].any()


def test_every_block_checksums_as_its_type(tmp_path: Path) -> None:
    path = tf.restore(tf.big_pool().xml(), tmp_path / "big.bin")
    encoded = encode_metadata(read_model(path))
    blocks = encoded.blocks
    kinds = [fmt.block_type(bytes(blocks[b])) for b in range(blocks.shape[0])]
    meta_bitmaps = -(-encoded.stats.metadata_blocks // fmt.ENTRIES_PER_BITMAP)
    data_bitmaps = -(-1638400 // fmt.ENTRIES_PER_BITMAP)
    assert kinds[0] == "thin superblock"
    assert kinds[1] == "metadata space-map index"
    assert set(kinds[2 : 2 + meta_bitmaps + data_bitmaps]) == {"space-map bitmap"}
    assert set(kinds[2 + meta_bitmaps + data_bitmaps :]) == {"btree node"}
    for b in range(blocks.shape[0]):
        assert int.from_bytes(bytes(blocks[b, 8:16]), "little") == b


def test_sharing_as_the_kernel_shares(tmp_path: Path) -> None:
    """Identical nodes are written once: a node reached from more than two parents needs the
    metadata ref-count tree, and the metadata counts follow every pointer."""
    path = tf.restore(tf.big_pool().xml(), tmp_path / "big.bin")
    model = read_model(path)
    shared, unshared = tmp_path / "shared.bin", tmp_path / "unshared.bin"
    s = write_metadata(model, shared)
    u = write_metadata(model, unshared, share=False)
    assert s.shared_nodes > 0 and u.shared_nodes == 0
    assert s.used_blocks < u.used_blocks
    with MetadataFile(shared) as meta:
        pool = read_pool(meta)
        assert (
            pool.metadata_sm is not None and int(pool.metadata_sm.dense(meta.nr_blocks).max()) >= 3
        )
        rc_root = int(pool.superblock.metadata_space_map_root.ref_count_root)
        assert tf.get(shared, rc_root, "I", 16) > 0, "the metadata ref-count tree has entries"
    with MetadataFile(unshared) as meta:
        pool = read_pool(meta)
        assert (
            pool.data_sm is not None and int(pool.data_sm.dense(pool.data_sm.nr_blocks).max()) >= 3
        )
    for out in (shared, unshared):
        assert_thin_check_silent(out)
        assert not our_findings(out)


def test_snapshot_sharing_is_kept_small(tmp_path: Path) -> None:
    """Snapshots that share their origin's subtrees stay shared: the copy uses no more
    metadata blocks than the kernel-like input (thin_repair's XML route un-shares them)."""
    path = tf.restore(tf.sharing_pool().xml(), tmp_path / "meta.bin")
    tf.share_subtree(path, 1, 2)
    tf.share_subtree(path, 3, 4, child=2)
    with MetadataFile(path) as meta:
        pool = read_pool(meta)
        assert pool.metadata_sm is not None
        used_before = pool.metadata_sm.used
        model = model_from_pool(pool)
    stats = write_metadata(model, tmp_path / "out.bin")
    assert stats.used_blocks <= used_before
    assert stats.shared_nodes >= 1


def test_encoding_is_deterministic(tmp_path: Path) -> None:
    path = tf.restore(tf.docker_like_pool(4).xml(), tmp_path / "meta.bin")
    model = read_model(path)
    first = encode_metadata(model).blocks
    assert hashlib.sha256(first).digest() == hashlib.sha256(encode_metadata(model).blocks).digest()


@pytest.mark.parametrize("n", [0, 1, 83, 84, 252, 253, 252 + 83, 252 + 84, 504, 100000])
def test_chunks_fill_nodes_as_the_kernel_accepts(n: int) -> None:
    parts = chunks(n, 252)
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
    sizes = [end - start for start, end in parts]
    assert all(size <= 252 for size in sizes)
    if len(parts) > 1:
        assert all(size >= 84 for size in sizes)


def test_empty_pool(tmp_path: Path) -> None:
    out = tmp_path / "empty.bin"
    write_metadata(MetadataModel(128, 1000, 64, transaction_id=9), out)
    assert_thin_check_silent(out)
    dump = tf.run_tool("thin_dump", out).stdout.decode()
    assert dump == (
        '<superblock uuid="" time="0" transaction="9" flags="0" version="2" '
        'data_block_size="128" nr_data_blocks="1000">\n</superblock>\n'
    )


def _model(**device: object) -> MetadataModel:
    dev = DeviceRecord(1, vblocks=np.array([1, 2], np.uint64), block_times=np.array([0, 1 << 24]))
    for name, value in device.items():
        setattr(dev, name, value)
    return MetadataModel(128, 100, 64, devices=[dev])


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (_model(block_times=np.array([0, 100 << 24], np.uint64)), "past the end"),
        (_model(vblocks=np.array([2, 1], np.uint64)), "strictly ascending"),
        (_model(vblocks=np.array([1], np.uint64)), "as many"),
        (MetadataModel(128, 100, 0), "metadata device"),
        (MetadataModel(128, 100, 8, devices=[DeviceRecord(1), DeviceRecord(1)]), "distinct"),
        (MetadataModel(128, 1 << 30, 64), "need"),
        (
            MetadataModel(128, 16320 * 60, 64, devices=[DeviceRecord(i) for i in range(200)]),
            "needs",
        ),
    ],
    ids=[
        "data block past the end",
        "unsorted",
        "lengths",
        "no space",
        "duplicate id",
        "space maps too big",
        "trees too big",
    ],
)
def test_model_errors_are_refused(model: MetadataModel, message: str, tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    with pytest.raises(WriteError, match=message):
        write_metadata(model, out)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_never_overwrites_unless_asked(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    out.write_bytes(b"keep me")
    model = MetadataModel(128, 100, 64)
    with pytest.raises(WriteError, match="exists"):
        write_metadata(model, out)
    assert out.read_bytes() == b"keep me"
    write_metadata(model, out, overwrite=True)
    assert out.stat().st_size == 64 * fmt.BLOCK_SIZE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"], "no temporary file left"


def test_never_writes_into_the_input_or_a_non_file(tmp_path: Path) -> None:
    source = tf.restore(tf.three_device_pool().xml(), tmp_path / "meta.bin")
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    model = read_model(source)
    link = tmp_path / "link.bin"
    os.symlink(source, link)
    for target in (source, link):
        with pytest.raises(WriteError, match="input"):
            write_metadata(model, target, overwrite=True, inputs=[source])
    (tmp_path / "dir").mkdir()
    with pytest.raises(WriteError, match="not a regular file"):
        write_metadata(model, tmp_path / "dir", overwrite=True)
    with pytest.raises(WriteError, match="no such directory"):
        write_metadata(model, tmp_path / "nowhere" / "out.bin")
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before
