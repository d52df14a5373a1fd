"""``thin dump`` against thin_dump 0.9.0, byte for byte, on pools written by thin_restore."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import thin_fixtures as tf
from click.testing import CliRunner

from forensics.cli.thin import thin
from forensics.thin.blocks import MetadataFile
from forensics.thin.dump import Runs, dump_chunks, mapping_lines, write_dump
from forensics.thin.pool import read_pool


def _shared(path: Path) -> None:
    tf.share_subtree(path, 1, 2)
    tf.share_subtree(path, 3, 4, child=2)


POOLS: dict[str, tuple[Callable[[], tf.Pool], Callable[[Path], None] | None]] = {
    "three devices": (tf.three_device_pool, None),
    "empty pool": (tf.Pool, None),
    "device without mappings": (lambda: _empty_device_pool(), None),
    "300 devices": (tf.many_devices_pool, None),
    "docker-like, seed 1": (lambda: tf.docker_like_pool(1), None),
    "docker-like, seed 2, small data device": (
        lambda: tf.docker_like_pool(2, base_blocks=900, nr_data_blocks=20000),
        None,
    ),
    "150k mappings": (tf.big_pool, None),
    "snapshots sharing subtrees": (tf.sharing_pool, _shared),
    "metadata snapshot": (tf.three_device_pool, tf.add_metadata_snapshot),
    "flags and version 1": (lambda: _flags_pool(), None),
}


def _empty_device_pool() -> tf.Pool:
    pool = tf.three_device_pool()
    pool.create_thin(77)
    return pool


def _flags_pool() -> tf.Pool:
    pool = tf.three_device_pool()
    pool.version = 1
    pool.flags = 1
    return pool


@pytest.fixture(scope="module", params=sorted(POOLS))
def fixture(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    make, derive = POOLS[request.param]
    path = tf.restore(make().xml(), tmp_path_factory.mktemp("thin-dump") / "meta.bin")
    if derive is not None:
        derive(path)
    assert tf.run_tool("thin_check", path).returncode == 0
    return path


def test_dump_is_byte_identical(fixture: Path) -> None:
    theirs = tf.run_tool("thin_dump", fixture)
    assert theirs.returncode == 0
    result = CliRunner().invoke(thin, ["dump", str(fixture)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == theirs.stdout


@pytest.mark.parametrize("leaves", [1, 3])
def test_dump_in_runs_of_few_leaves(fixture: Path, leaves: int) -> None:
    """A device's mappings read a few leaves at a time: a range that goes on past the end of a
    run of leaves is still one ``range_mapping``, as thin_dump writes it."""
    theirs = tf.run_tool("thin_dump", fixture).stdout
    with MetadataFile(fixture) as meta:
        pool = read_pool(meta, space_maps=False)
        assert b"".join(dump_chunks(pool, leaves_per_chunk=leaves)) == theirs


def test_dump_roundtrips_through_thin_restore(fixture: Path, tmp_path: Path) -> None:
    """Our XML, restored again, dumps the same: it is thin_restore's input format."""
    with MetadataFile(fixture) as meta:
        out = io.BytesIO()
        write_dump(read_pool(meta, space_maps=False), out)
    again = tf.restore(out.getvalue().decode(), tmp_path / "again.bin")
    assert tf.run_tool("thin_dump", again).stdout == out.getvalue()


def test_generated_xml_is_what_thin_dump_prints(tmp_path: Path) -> None:
    pool = tf.docker_like_pool(3)
    path = tf.restore(pool.xml(), tmp_path / "meta.bin")
    assert tf.run_tool("thin_dump", path).stdout.decode() == pool.xml()


def test_damaged_dump_exits_4_with_the_readable_part(tmp_path: Path) -> None:
    path = tf.restore(tf.three_device_pool().xml(), tmp_path / "meta.bin")
    top = int(tf.fmt.parse_superblock(bytes(tf.read_block(path, 0))).data_mapping_root)
    leaf = tf.get(path, top, "Q", 32 + 8 * 252 + 8)  # device 2's root
    tf.edit_block(path, leaf, lambda b: b.__setitem__(700, b[700] ^ 1))
    result = CliRunner().invoke(thin, ["dump", str(path)])
    assert result.exit_code == 4
    assert '<device dev_id="3"' in result.stdout
    assert "bad checksum in btree node" in result.stderr


def test_dump_of_zeroed_superblock_writes_nothing(tmp_path: Path) -> None:
    path = tf.restore(tf.three_device_pool().xml(), tmp_path / "meta.bin")
    tf.write_block(path, 0, bytes(4096))
    result = CliRunner().invoke(thin, ["dump", str(path)])
    assert result.exit_code == 4
    assert result.stdout == ""
    assert "all zeros" in result.stderr


def test_check_is_clean(fixture: Path) -> None:
    """thin check passes every valid pool; a set NEEDS_CHECK flag is its only complaint."""
    result = CliRunner().invoke(thin, ["check", "--format", "json", str(fixture)])
    doc = json.loads(result.stdout)
    flagged = {e["check"] for e in doc["findings"] if e["severity"] != "info"}
    if doc["superblock"]["flags"] & 1:
        assert flagged == {"superblock.needs-check"} and result.exit_code == 4
    else:
        assert not flagged and result.exit_code == 0, doc["findings"]


def test_mapping_lines_write_every_number_as_thin_dump_does() -> None:
    """The lines are built as a byte matrix: every width of number (0, one digit, 2**64 - 1),
    single and range lines mixed, each as thin_dump's format writes it."""
    rng = np.random.default_rng(5)
    n = 2000
    big = np.array([0, 9, 10, 99, 100, (1 << 64) - 1, (1 << 40) - 1, 1], dtype=np.uint64)
    origin = np.concatenate([big, rng.integers(0, 1 << 63, n, dtype=np.uint64)])
    data = np.concatenate([big[::-1], rng.integers(0, 1 << 40, n, dtype=np.uint64)])
    length = np.concatenate([big % np.uint64(3) + np.uint64(1), rng.integers(1, 4, n, np.uint64)])
    stamp = np.concatenate([big % np.uint64(1 << 24), rng.integers(0, 1 << 24, n, np.uint64)])
    expected = "".join(
        f'    <single_mapping origin_block="{o}" data_block="{d}" time="{t}"/>\n'
        if k == 1
        else f'    <range_mapping origin_begin="{o}" data_begin="{d}" length="{k}" time="{t}"/>\n'
        for o, d, k, t in zip(
            origin.tolist(), data.tolist(), length.tolist(), stamp.tolist(), strict=True
        )
    )
    assert mapping_lines(Runs(origin, data, length, stamp)) == expected.encode()
