"""``thin extract``: a device's blocks, at their offsets, in a sparse image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import thin_fixtures as tf
from click.testing import CliRunner

from forensics.cli.thin import thin

BLOCK = 128 * 512


def _data_file(path: Path, nr_blocks: int) -> None:
    """Each data block filled with its own number (as 8-byte words), so content names origin."""
    with open(path, "wb") as f:
        for b in range(nr_blocks):
            f.write(np.full(BLOCK // 8, b, dtype="<u8").tobytes())


@pytest.fixture()
def pool_files(tmp_path: Path) -> tuple[tf.Pool, Path, Path]:
    pool = tf.three_device_pool()
    meta = tf.restore(pool.xml(), tmp_path / "meta.bin")
    data = tmp_path / "data"
    _data_file(data, pool.next_data)
    return pool, meta, data


@pytest.mark.parametrize("dev_id", [1, 2, 3])
def test_extract_writes_each_mapped_block_at_its_offset(pool_files, tmp_path: Path, dev_id) -> None:
    pool, meta, data = pool_files
    image = tmp_path / f"dev{dev_id}.img"
    result = CliRunner().invoke(
        thin, ["extract", str(meta), str(data), "--dev", str(dev_id), "-o", str(image)]
    )
    assert result.exit_code == 0, result.stderr
    dev = pool.devices[dev_id]
    assert image.stat().st_size == (int(dev.origin[-1]) + 1) * BLOCK
    words = np.memmap(image, dtype="<u8", mode="r").reshape(-1, BLOCK // 8)
    mapped = dict(zip(dev.origin.tolist(), dev.data.tolist(), strict=True))
    for vblock in sorted(mapped)[:50] + sorted(mapped)[-5:]:
        assert (words[vblock] == mapped[vblock]).all()
    unmapped = [v for v in (100, 500, 1500, 163838) if v not in mapped and v < words.shape[0]]
    for vblock in unmapped:
        assert not words[vblock].any()
    # holes are holes: far fewer bytes allocated than the image's length
    assert image.stat().st_blocks * 512 < image.stat().st_size // 4


def test_extract_with_size(pool_files, tmp_path: Path) -> None:
    _, meta, data = pool_files
    image = tmp_path / "dev.img"
    size = 20 << 30
    result = CliRunner().invoke(
        thin,
        ["extract", str(meta), str(data), "--dev", "1", "-o", str(image), "--size", str(size)],
    )
    assert result.exit_code == 0
    assert image.stat().st_size == size


def test_extract_unknown_device(pool_files, tmp_path: Path) -> None:
    _, meta, data = pool_files
    result = CliRunner().invoke(
        thin, ["extract", str(meta), str(data), "--dev", "9", "-o", str(tmp_path / "x.img")]
    )
    assert result.exit_code == 8
    assert "device 9" in result.output


def test_extract_never_overwrites(pool_files, tmp_path: Path) -> None:
    _, meta, data = pool_files
    image = tmp_path / "x.img"
    image.write_bytes(b"keep")
    result = CliRunner().invoke(
        thin, ["extract", str(meta), str(data), "--dev", "1", "-o", str(image)]
    )
    assert result.exit_code == 8
    assert image.read_bytes() == b"keep"


def test_extract_short_data_file_leaves_holes_and_exits_4(pool_files, tmp_path: Path) -> None:
    _, meta, data = pool_files
    with open(data, "r+b") as f:
        f.truncate(100 * BLOCK)  # blocks 100.. (device 1's 1000 and 163839) are gone
    image = tmp_path / "dev1.img"
    result = CliRunner().invoke(
        thin, ["extract", str(meta), str(data), "--dev", "1", "-o", str(image)]
    )
    assert result.exit_code == 4
    assert "past the end" in result.stderr
    words = np.memmap(image, dtype="<u8", mode="r").reshape(-1, BLOCK // 8)
    assert (words[99] == 99).all() and not words[1000].any()


def test_extract_without_size_says_it_guessed(pool_files, tmp_path: Path) -> None:
    """A metadata file that is not Docker's: no record of the device's size, so the image
    ends at its last mapped block, and the command says that this is a guess."""
    pool, meta, data = pool_files
    image = tmp_path / "dev.img"
    result = CliRunner().invoke(
        thin, ["extract", str(meta), str(data), "--dev", "2", "-o", str(image)]
    )
    assert result.exit_code == 0
    assert image.stat().st_size == (int(pool.devices[2].origin[-1]) + 1) * BLOCK
    assert "a guess" in result.stderr and "--size" in result.stderr


def test_extract_sizes_the_image_from_dockers_record(
    dm_master: Path, dm_truth, tmp_path: Path
) -> None:
    """Docker's own metadata file: the device's record in devicemapper/metadata/ gives its
    virtual size (the Docker 1.8 sample's devices are 100 GiB, their last block far below)."""
    pool_dir = dm_master / "devicemapper" / "devicemapper"
    container = dm_truth["containers"][0]
    dev_id = container["device_ids"]["rw"]
    record = dm_master / "devicemapper" / "metadata" / container["id"]
    recorded = json.loads(record.read_text())
    assert recorded["device_id"] == dev_id
    image = tmp_path / "rw.img"
    args = ["extract", str(pool_dir / "metadata"), str(pool_dir / "data"), "--dev", str(dev_id)]
    result = CliRunner().invoke(thin, [*args, "-o", str(image)])
    assert result.exit_code == 0, result.stderr
    assert image.stat().st_size == recorded["size"]
    assert f"Docker's record {record}" in result.stderr


def test_extract_leaves_mapped_blocks_of_zeros_as_holes(
    dm_master: Path, dm_truth: dict, tmp_path: Path
) -> None:
    """A mapped block that reads as zeros (an ext4 inode table Docker's mkfs never wrote, a
    block the data file holds as a hole) is left a hole: a layer of Docker 1.8's 100 GiB
    devices takes the disk space of its data, not gigabytes of zeros."""
    pool = dm_master / "devicemapper" / "devicemapper"
    dev = dm_truth["layers"][1]["device_id"]
    image = tmp_path / "dev.img"
    args = ["extract", str(pool / "metadata"), str(pool / "data"), "--dev", str(dev)]
    result = CliRunner().invoke(thin, [*args, "-o", str(image)])
    assert result.exit_code == 0, result.stderr
    blocks = np.memmap(image, dtype="<u8", mode="r").reshape(-1, BLOCK // 8)
    with_data = sum(
        int(blocks[at : at + 4096].any(axis=1).sum()) for at in range(0, len(blocks), 4096)
    )
    assert with_data, "the device's data is there"
    # (a block of the host filesystem's own extent tree may be counted with the image)
    assert image.stat().st_blocks * 512 <= with_data * BLOCK + BLOCK


def test_files_take_the_device_size_from_dockers_record(
    dm_master: Path, dm_truth, tmp_path: Path
) -> None:
    """``thin files`` without --size reads the device as long as Docker's record says, as
    extract does — not as long as its filesystem claims (here the record says twice that)."""
    sample = dm_master / "devicemapper"
    container = dm_truth["containers"][0]
    dev_id = container["device_ids"]["rw"]
    recorded = json.loads((sample / "metadata" / container["id"]).read_text())
    pool_dir = tmp_path / "devicemapper" / "devicemapper"
    pool_dir.mkdir(parents=True)
    for name in ("metadata", "data"):
        (pool_dir / name).symlink_to(sample / "devicemapper" / name)
    (tmp_path / "devicemapper" / "metadata").mkdir()
    record = {**recorded, "size": 2 * recorded["size"]}
    (tmp_path / "devicemapper" / "metadata" / container["id"]).write_text(json.dumps(record))
    args = ["files", str(pool_dir / "metadata"), str(pool_dir / "data"), "--dev", str(dev_id)]
    result = CliRunner().invoke(thin, [*args, "--format", "json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["size"] == 2 * recorded["size"]
    given = CliRunner().invoke(thin, [*args, "--format", "json", "--size", str(recorded["size"])])
    assert json.loads(given.stdout)["size"] == recorded["size"], given.stderr
