"""A thin device as a file: bytes mapped through the pool's real metadata (thin_restore), held
against the model the pool was built from and against ``thin extract``'s image; damage reported
with the device and the byte range, never read as zeros."""

from __future__ import annotations

import hashlib
import io
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import thin_fixtures as tf

from forensics.formats import thin as fmt
from forensics.thin.blocks import MetadataFile
from forensics.thin.device import (
    DATA_PAST_FILE,
    DATA_PAST_POOL,
    MAPPING_UNREADABLE,
    DeviceOpenError,
    DeviceReadError,
    ThinDevice,
    open_device,
)
from forensics.thin.extract import extract_device
from forensics.thin.pool import Pool, read_pool

BLOCK = 128 * 512
WORDS = BLOCK // 8


def _write_data(path: Path, nr_blocks: int) -> None:
    """Each data block made of 8-byte words: the block number, then the word's index (so that
    an offset inside a block is checked too)."""
    words = np.arange(WORDS, dtype="<u8")
    with open(path, "wb") as f:
        for b in range(nr_blocks):
            f.write((words + (np.uint64(b) << np.uint64(32))).tobytes())


def _expected(dev: tf.Device, offset: int, length: int) -> bytes:
    """What device ``dev`` holds at ``offset`` (from the model, not from the metadata)."""
    mapped = dict(zip(dev.origin.tolist(), dev.data.tolist(), strict=True))
    out = bytearray()
    words = np.arange(WORDS, dtype="<u8")
    pos = offset
    while pos < offset + length:
        vblock, within = divmod(pos, BLOCK)
        take = min(BLOCK - within, offset + length - pos)
        data = mapped.get(vblock)
        if data is None:
            out += bytes(take)
        else:
            block = (words + (np.uint64(data) << np.uint64(32))).tobytes()
            out += block[within : within + take]
        pos += take
    return bytes(out)


@contextmanager
def _pool(meta: Path) -> Iterator[Pool]:
    with MetadataFile(meta) as mf:
        yield read_pool(mf, space_maps=False)


@contextmanager
def _fd(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


@pytest.fixture()
def three(tmp_path: Path) -> tuple[tf.Pool, Path, Path]:
    model = tf.three_device_pool()
    meta = tf.restore(model.xml(), tmp_path / "meta.bin")
    data = tmp_path / "data"
    _write_data(data, model.next_data)
    return model, meta, data


@pytest.fixture(scope="module")
def docker_like(tmp_path_factory: pytest.TempPathFactory) -> tuple[tf.Pool, Path, Path]:
    tmp = tmp_path_factory.mktemp("docker-like")
    model = tf.docker_like_pool(5, chains=2, layers=2, containers=1, base_blocks=600)
    meta = tf.restore(model.xml(), tmp / "meta.bin")
    data = tmp / "data"
    _write_data(data, model.next_data)
    return model, meta, data


def _probe_offsets(dev: tf.Device, rng: random.Random) -> list[tuple[int, int]]:
    """Reads that start in mapped blocks, in holes, on block edges and in runs, of many sizes."""
    starts = [int(v) * BLOCK for v in rng.sample(dev.origin.tolist(), min(40, dev.mapped_blocks))]
    starts += [s - 1 for s in starts[:10] if s] + [s + 12345 for s in starts[10:20]]
    starts += [0, BLOCK - 8, rng.randrange(1 << 36)]
    sizes = [1, 7, BLOCK, BLOCK + 9, 3 * BLOCK - 5, 40 * BLOCK]
    return [(s, rng.choice(sizes)) for s in starts]


def test_every_device_reads_as_the_model(docker_like) -> None:
    model, meta, data = docker_like
    rng = random.Random(3)
    with _pool(meta) as pool, _fd(data) as fd:
        for dev_id, dev in model.devices.items():
            device = ThinDevice(pool, dev_id, fd, size=1 << 37)
            for offset, length in _probe_offsets(dev, rng):
                device.seek(offset)
                assert device.read(length) == _expected(dev, offset, length), (dev_id, offset)
            assert device.read_problems == []
            assert device.scan() == []


def test_a_whole_device_equals_thin_extract_image(tmp_path: Path) -> None:
    model = tf.Pool()
    model.create_thin(1)
    model.write(1, np.arange(300))
    model.create_snap(2, 1)
    model.write(2, np.concatenate([np.arange(50, 60), np.arange(400, 403), [700]]))
    meta = tf.restore(model.xml(), tmp_path / "meta.bin")
    data = tmp_path / "data"
    _write_data(data, model.next_data)
    image = tmp_path / "dev2.img"
    with _pool(meta) as pool, _fd(data) as fd:
        extract_device(pool, 2, data, image)
        device = open_device(pool, 2, fd)
        size = device.raw.size
        assert size == image.stat().st_size == 701 * BLOCK
        digest = hashlib.sha256()
        while chunk := device.read(1 << 22):
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(image.read_bytes()).hexdigest()


def test_small_buffered_reads_and_seeks(three) -> None:
    model, meta, data = three
    dev = model.devices[3]
    with _pool(meta) as pool, _fd(data) as fd:
        f = open_device(pool, 3, fd, buffer_size=4096)
        f.seek(5000 * BLOCK - 3)
        assert f.read(10) == _expected(dev, 5000 * BLOCK - 3, 10)
        assert f.seek(-BLOCK, io.SEEK_END) == 163839 * BLOCK  # inherited from device 1
        assert f.read() == _expected(dev, 163839 * BLOCK, BLOCK)
        assert f.read(5) == b""
        f.seek(55 * BLOCK + 100)
        f.seek(16, io.SEEK_CUR)
        assert f.read(100) == _expected(dev, 55 * BLOCK + 116, 100)
        assert f.raw.pread(8, 60 * BLOCK) == _expected(dev, 60 * BLOCK, 8)
        assert f.raw.tell() != 60 * BLOCK + 8


def test_a_run_of_mapped_blocks_is_one_read(three, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks 0–49 of device 2 map to data blocks 0–49: one preadv for all of them."""
    model, meta, data = three
    calls: list[int] = []
    real = os.preadv

    def counting(fd: int, buffers: list[memoryview], offset: int) -> int:
        calls.append(offset)
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", counting)
    with _pool(meta) as pool, _fd(data) as fd:
        device = ThinDevice(pool, 2, fd)
        buffer = bytearray(50 * BLOCK)
        assert device.readinto(buffer) == 50 * BLOCK
    assert calls == [0]
    assert bytes(buffer) == _expected(model.devices[2], 0, 50 * BLOCK)


def test_size_from_the_caller_and_empty_devices(tmp_path: Path) -> None:
    model = tf.Pool()
    model.create_thin(1)
    model.create_thin(7)
    model.write(7, np.array([3]))
    meta = tf.restore(model.xml(), tmp_path / "meta.bin")
    data = tmp_path / "data"
    _write_data(data, model.next_data)
    with _pool(meta) as pool, _fd(data) as fd:
        empty = ThinDevice(pool, 1, fd)
        assert empty.size == 0 and empty.read() == b""
        sized = ThinDevice(pool, 1, fd, size=3 * BLOCK + 5)
        assert sized.read() == bytes(3 * BLOCK + 5)
        short = ThinDevice(pool, 7, fd, size=3 * BLOCK + 10)  # Docker's size cuts the block
        assert short.read() == _expected(model.devices[7], 0, 3 * BLOCK + 10)


def test_unknown_device_and_unusable_pool(three, tmp_path: Path) -> None:
    _, meta, data = three
    with _pool(meta) as pool, _fd(data) as fd:
        with pytest.raises(DeviceOpenError, match=r"device 9 has no mapping tree.*1, 2, 3"):
            ThinDevice(pool, 9, fd)
    tf.edit_block(meta, 0, lambda b: b.__setitem__(slice(0x20, 0x28), bytes(8)))
    with _pool(meta) as pool, _fd(data) as fd:
        with pytest.raises(DeviceOpenError, match="superblock is unusable"):
            ThinDevice(pool, 1, fd)


def _device_root(meta: Path, dev_id: int) -> int:
    sb = fmt.parse_superblock(bytes(tf.read_block(meta, 0)))
    keys, values, _ = tf._node_entries(tf.read_block(meta, int(sb.data_mapping_root)))
    return values[keys.index(dev_id)]


def test_a_damaged_leaf_is_an_error_with_its_byte_range(three) -> None:
    """Device 3's only leaf damaged: every byte is unreadable, none read as zeros; device 1 is
    still read whole."""
    model, meta, data = three
    leaf = _device_root(meta, 3)
    tf.edit_block(meta, leaf, tf.put("I", 16, 999))  # nr_entries past max, checksum bad too
    with _pool(meta) as pool, _fd(data) as fd:
        device = ThinDevice(pool, 3, fd, size=6000 * BLOCK)
        damage = device.damage()
        assert [(p.kind, p.start, p.end, p.block) for p in damage] == [
            (MAPPING_UNREADABLE, 0, 6000 * BLOCK, leaf)
        ]
        assert str(damage[0]).startswith(f"device 3: bytes 0..{6000 * BLOCK - 1}: ")
        device.seek(1000 * BLOCK)
        with pytest.raises(DeviceReadError) as err:
            device.read(10)
        assert err.value.problem.dev_id == 3 and err.value.problem.block == leaf
        assert device.read_problems == [err.value.problem]
        other = ThinDevice(pool, 1, fd)
        other.seek(50 * BLOCK)
        assert other.read(BLOCK) == _expected(model.devices[1], 50 * BLOCK, BLOCK)


def test_damage_inside_a_device_returns_the_bytes_before_it(docker_like, tmp_path: Path) -> None:
    """A bottom-level leaf under an internal root damaged: a read that runs into its key range
    returns the bytes before it, and the next read raises."""
    model, meta_src, data = docker_like
    meta = tmp_path / "meta.bin"
    meta.write_bytes(meta_src.read_bytes())
    root = _device_root(meta, 1)
    keys, children, _ = tf._node_entries(tf.read_block(meta, root))
    assert len(children) > 1, "the base device needs an internal root"
    tf.edit_block(meta, children[1], tf.put("I", 4, 7))  # bad flags, checksum bad
    lo, hi = keys[1], keys[2] - 1
    dev = model.devices[1]
    with _pool(meta) as pool, _fd(data) as fd:
        device = ThinDevice(pool, 1, fd)
        assert [(p.start, p.end) for p in device.damage()] == [(lo * BLOCK, (hi + 1) * BLOCK)]
        device.seek(lo * BLOCK - 100)
        assert device.read(1000) == _expected(dev, lo * BLOCK - 100, 100)
        with pytest.raises(DeviceReadError, match=f"device 1: bytes {lo * BLOCK}.."):
            device.read(1000)
        device.seek((hi + 1) * BLOCK)
        assert device.read(BLOCK) == _expected(dev, (hi + 1) * BLOCK, BLOCK)


def test_a_truncated_data_file(three, tmp_path: Path) -> None:
    """Data blocks 100.. cut off: device 1's mappings there (vblocks 1000 and 163839) are
    errors naming the truncation; the blocks before read as ever."""
    model, meta, data = three
    with open(data, "r+b") as f:
        f.truncate(100 * BLOCK + 10)  # a partial block counts as missing
    dev = model.devices[1]
    with _pool(meta) as pool, _fd(data) as fd:
        device = ThinDevice(pool, 1, fd)
        problems = device.scan()
        assert [(p.kind, p.start, p.end) for p in problems] == [
            (DATA_PAST_FILE, 1000 * BLOCK, 1001 * BLOCK),
            (DATA_PAST_FILE, 163839 * BLOCK, 163840 * BLOCK),
        ]
        assert "past the end of the data file" in problems[0].detail
        assert device.pread(BLOCK, 99 * BLOCK) == _expected(dev, 99 * BLOCK, BLOCK)
        device.seek(1000 * BLOCK - 5)
        assert device.read(10) == _expected(dev, 1000 * BLOCK - 5, 5)
        with pytest.raises(DeviceReadError, match="past the end of the data file"):
            device.read(10)
        assert device.pread(5, 1001 * BLOCK) == bytes(5)  # unmapped: zeros


def test_a_mapping_past_the_pool_data_blocks(three) -> None:
    """A leaf value rewritten (checksum resealed) to a data block past nr_data_blocks."""
    model, meta, data = three
    leaf = _device_root(meta, 2)
    keys, values, width = tf._node_entries(tf.read_block(meta, leaf))
    at = keys.index(55)
    bad = (model.nr_data_blocks + 5) << fmt.TIME_BITS
    tf.edit_block(meta, leaf, tf.put("Q", 32 + 8 * width + 8 * at, bad), xor=fmt.BTREE_CSUM_XOR)
    with _pool(meta) as pool, _fd(data) as fd:
        device = ThinDevice(pool, 2, fd)
        problems = device.scan()
        assert [(p.kind, p.start, p.end) for p in problems] == [
            (DATA_PAST_POOL, 55 * BLOCK, 56 * BLOCK)
        ]
        buffer = bytearray(3 * BLOCK)
        device.seek(54 * BLOCK)
        assert device.readinto(buffer) == BLOCK
        with pytest.raises(DeviceReadError, match="past the pool's 1638400 data blocks"):
            device.readinto(buffer)
        device.seek(56 * BLOCK)
        assert device.read(BLOCK) == _expected(model.devices[2], 56 * BLOCK, BLOCK)


def test_never_writes(three) -> None:
    _, meta, data = three
    before = (meta.read_bytes(), data.read_bytes())
    with _pool(meta) as pool, _fd(data) as fd:
        device = ThinDevice(pool, 1, fd, size=1100 * BLOCK)
        assert not device.writable()
        with pytest.raises(io.UnsupportedOperation):
            device.write(b"x")
        with pytest.raises(io.UnsupportedOperation):
            device.truncate(0)
        assert len(device.read()) == 1100 * BLOCK
    assert (meta.read_bytes(), data.read_bytes()) == before
