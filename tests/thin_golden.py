"""Golden outputs of the ``thin`` commands: what each command prints (and the files it writes)
on every pool the thin tests make, on their damaged copies, and on the two devicemapper samples.

``tests/golden/make_thin_golden.py`` runs every subject and writes the outputs to
``tests/golden/thin/<group>.json``; ``tests/test_thin_golden.py`` runs them again and compares.
A change of any output is then deliberate: the generator is re-run and the diff of the golden
files reviewed with the change.

A subject is a recipe: a pristine pool written by the real ``thin_restore`` (the builders of
``thin_fixtures``), a damage derived from it (the damage functions of the thin tests), and the
commands to run on it. Paths are written relative to the subject's work directory (``{WORK}``),
so the outputs do not depend on where they were made. Outputs larger than ``INLINE_LIMIT`` and
every file a command writes (repaired copies, extracted images) are kept as a digest of their
content (holes and zeros read alike: :func:`content_digest`).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import thin_fixtures as tf
from click.testing import CliRunner

from forensics.formats import thin as fmt

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden" / "thin"
SAMPLES = HERE.parent / "samples"
#: outputs up to this size are kept verbatim, larger ones as a digest
INLINE_LIMIT = 16 * 1024
#: a data file is made (each block numbered) for pools that use at most this many data blocks
DATA_LIMIT = 2048
BLOCK = 128 * 512

Outputs = dict[str, Any]


# -- digests ---------------------------------------------------------------------------------------

_CHUNK = 1 << 20
_ZEROS = bytes(_CHUNK)


def content_digest(path: Path) -> str:
    """The sha256 of a file's size and of every 1 MiB-aligned chunk that holds a byte other
    than zero, with its offset: two files with the same bytes have the same digest however
    their holes lie, and a sparse image of many GiB is read only where it holds data."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(f"size {size}\n".encode())
    fd = os.open(path, os.O_RDONLY)
    try:
        done = -1  # the last chunk hashed
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break  # only a hole is left
            end = os.lseek(fd, start, os.SEEK_HOLE)
            for index in range(start // _CHUNK, -(-end // _CHUNK)):
                if index <= done:
                    continue
                chunk = os.pread(fd, _CHUNK, index * _CHUNK)
                done = index
                if chunk != _ZEROS[: len(chunk)]:
                    digest.update(f"{index * _CHUNK}\n".encode())
                    digest.update(chunk)
            pos = end
    finally:
        os.close(fd)
    return f"sha256:{digest.hexdigest()}"


def _kept(text: str) -> str:
    data = text.encode()
    if len(data) <= INLINE_LIMIT:
        return text
    return f"sha256:{hashlib.sha256(data).hexdigest()} ({len(data)} bytes)"


# -- running the commands --------------------------------------------------------------------------


@dataclass
class Subject:
    """One metadata file (and maybe a data file) and what to run on it."""

    name: str
    work: Path
    meta: Path
    data: Path | None = None
    #: repair arguments that let a damaged superblock be rebuilt (run when the first asks)
    overrides: tuple[str, ...] = ()
    #: the model the pool was built from: its devices are extracted and read as files
    model: tf.Pool | None = None
    #: devices to extract and whose files to list (the samples; the model's devices otherwise)
    extract: tuple[int, ...] = ()
    files: tuple[int, ...] = ()
    #: where the commands write (repaired copies, images); the work directory by default
    out: Path | None = None

    @property
    def outdir(self) -> Path:
        return self.out or self.work


def _invoke(subject: Subject, *argv: str | Path) -> dict[str, Any]:
    from forensics.cli.thin import thin

    result = CliRunner().invoke(thin, [str(a) for a in argv])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return {
        "exit": result.exit_code,
        "stdout": _kept(_relative(subject, result.stdout)),
        "stderr": _kept(_relative(subject, result.stderr)),
    }


def _relative(subject: Subject, text: str) -> str:
    names = {str(subject.work): "{WORK}", str(subject.outdir): "{OUT}"}
    if subject.data is not None:
        names[str(subject.data)] = "{DATA}"
    for path in sorted(names, key=len, reverse=True):
        text = text.replace(path, names[path])
    return text


def outputs_of(subject: Subject) -> Outputs:
    """Every command's output on ``subject``."""
    meta = subject.meta
    out: Outputs = {
        "check": _invoke(subject, "check", meta),
        "check --format json": _invoke(subject, "check", "--format", "json", meta),
        "dump": _invoke(subject, "dump", meta),
        "ls": _invoke(subject, "ls", meta),
        "ls --format json": _invoke(subject, "ls", "--format", "json", meta),
    }
    out.update(_repair_outputs(subject))
    if subject.data is not None:
        out.update(_extract_outputs(subject))
        out.update(_files_outputs(subject))
        if subject.model is not None:
            out.update(_device_reads(subject))
    return out


def _repair_outputs(subject: Subject) -> Outputs:
    out: Outputs = {}
    for fmt_name in ("text", "json"):
        copy = subject.outdir / f"repaired-{fmt_name}.bin"
        args: list[str | Path] = ["repair", subject.meta, "-o", copy, "--format", fmt_name]
        key = f"repair --format {fmt_name}"
        out[key] = _invoke(subject, *args)
        if out[key]["exit"] == 4 and subject.overrides and not copy.exists():
            key += " " + " ".join(subject.overrides)
            out[key] = _invoke(subject, *args, *subject.overrides)
        out[f"{key}: copy"] = content_digest(copy) if copy.exists() else None
        copy.unlink(missing_ok=True)
    return out


#: model devices extracted and read as files, at most (the first by id)
MODEL_DEVICES = 12


def _devices(subject: Subject, chosen: tuple[int, ...]) -> list[int]:
    if chosen:
        return list(chosen)
    return sorted(subject.model.devices)[:MODEL_DEVICES] if subject.model is not None else []


def _extract_outputs(subject: Subject) -> Outputs:
    out: Outputs = {}
    assert subject.data is not None
    for dev_id in _devices(subject, subject.extract):
        image = subject.outdir / f"dev{dev_id}.img"
        key = f"extract --dev {dev_id}"
        out[key] = _invoke(
            subject, "extract", subject.meta, subject.data, "--dev", dev_id, "-o", image
        )
        out[f"{key}: image"] = content_digest(image) if image.exists() else None
        image.unlink(missing_ok=True)
    return out


def _files_outputs(subject: Subject) -> Outputs:
    out: Outputs = {}
    assert subject.data is not None
    for dev_id in subject.files:
        args = ("files", subject.meta, subject.data, "--dev", dev_id, "--format", "json")
        out[f"files --dev {dev_id} --format json"] = _invoke(subject, *args)
    return out


def _probes(dev: tf.Device) -> list[tuple[int, int]]:
    """Reads of a model device: in mapped blocks, across their edges, in holes, of many
    sizes (deterministic: every k-th mapping)."""
    mapped = dev.origin.tolist()
    step = max(1, len(mapped) // 24)
    starts = [int(v) * BLOCK for v in mapped[::step]]
    starts += [s - 1 for s in starts[:6] if s] + [s + 12345 for s in starts[6:12]]
    starts += [0, BLOCK - 8, 7 << 30]
    sizes = [1, 7, BLOCK, BLOCK + 9, 3 * BLOCK - 5, 40 * BLOCK]
    return [(s, sizes[i % len(sizes)]) for i, s in enumerate(starts)]


def _device_reads(subject: Subject) -> Outputs:
    """Each model device read through :class:`ThinDevice`: its damage, a scan, and the probes
    (a digest of the bytes each returns, or the error it raises)."""
    from forensics.thin.blocks import MetadataFile
    from forensics.thin.device import DeviceOpenError, DeviceReadError, ThinDevice
    from forensics.thin.pool import read_pool

    assert subject.model is not None and subject.data is not None
    out: Outputs = {}
    with MetadataFile(subject.meta) as meta:
        pool = read_pool(meta, space_maps=False)
        fd = os.open(subject.data, os.O_RDONLY)
        try:
            for dev_id in _devices(subject, ()):
                dev = subject.model.devices[dev_id]
                try:
                    device = ThinDevice(pool, dev_id, fd, size=None if dev_id % 2 else 1 << 37)
                except DeviceOpenError as exc:
                    out[f"device {dev_id}"] = f"open: {exc}"
                    continue
                reads, errors = hashlib.sha256(), []
                for offset, length in _probes(dev):
                    device.seek(offset)
                    try:
                        got = device.read(length) or b""
                    except DeviceReadError as exc:
                        got = f"{offset}+{length}: {exc}".encode()
                        errors.append(got.decode())
                    reads.update(len(got).to_bytes(8, "little") + got)
                out[f"device {dev_id}"] = {
                    "size": device.size,
                    "damage": [str(p) for p in device.damage()],
                    "scan": [p.as_dict() for p in device.scan()],
                    "reads": f"sha256:{reads.hexdigest()}",
                    "read errors": errors,
                    "read problems": [str(p) for p in device.read_problems],
                }
        finally:
            os.close(fd)
    return out


# -- the pools -------------------------------------------------------------------------------------


def write_data(path: Path, nr_blocks: int) -> None:
    """A data file whose blocks are made of 8-byte words: the block number, then the word's
    index (as ``test_thin_device`` makes it)."""
    words = np.arange(BLOCK // 8, dtype="<u8")
    with open(path, "wb") as f:
        for b in range(nr_blocks):
            f.write((words + (np.uint64(b) << np.uint64(32))).tobytes())


@dataclass
class Pristine:
    """A pool written by thin_restore (and maybe changed as the kernel would change it)."""

    model: tf.Pool
    meta: Path
    data: Path | None = None


def _shared(path: Path) -> None:
    tf.share_subtree(path, 1, 2)
    tf.share_subtree(path, 3, 4, child=2)


def _pool_recipes() -> dict[str, tuple[Callable[[], tf.Pool], Callable[[Path], None] | None]]:
    from test_thin_write import WRITE_POOLS

    return {
        **WRITE_POOLS,
        "snapshots, unshared": (tf.sharing_pool, None),
        "docker-like, seed 5": (lambda: tf.docker_like_pool(5), None),
        "docker-like, seed 5, small": (
            lambda: tf.docker_like_pool(5, chains=2, layers=2, containers=1, base_blocks=600),
            None,
        ),
    }


#: the pristine pools of the damage cases (``test_thin_check``'s fixture names)
CASE_POOLS = {
    "three": "three devices",
    "big": "150k mappings",
    "shared": "snapshots sharing subtrees",
    "snap": "metadata snapshot",
    "unshared": "snapshots, unshared",
}


class Pools:
    """The pristine pools, written on first use into ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.recipes = _pool_recipes()
        self._made: dict[str, Pristine] = {}

    def get(self, name: str) -> Pristine:
        if name not in self._made:
            make, derive = self.recipes[name]
            model = make()
            where = self.root / _slug(name)
            where.mkdir(parents=True, exist_ok=True)
            meta = tf.restore(model.xml(), where / "meta.bin")
            if derive is not None:
                derive(meta)
            data = None
            if model.next_data <= DATA_LIMIT:
                data = where / "data"
                write_data(data, model.next_data)
            self._made[name] = Pristine(model, meta, data)
        return self._made[name]


def sparse_copy(src: Path, dst: Path) -> None:
    """A copy of ``src`` whose zero blocks are holes (the pools are mostly empty)."""
    data = memoryview(src.read_bytes())
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for at in range(0, len(data), _CHUNK):
            chunk = data[at : at + _CHUNK]
            if chunk != _ZEROS[: len(chunk)]:
                os.pwrite(fd, chunk, at)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def _copy(pristine: Pristine, work: Path, name: str) -> Subject:
    work.mkdir(parents=True, exist_ok=True)
    meta = work / "meta.bin"
    sparse_copy(pristine.meta, meta)
    shutil.copyfile(pristine.meta.with_suffix(".xml"), meta.with_suffix(".xml"))
    return Subject(name, work, meta, data=pristine.data, model=pristine.model)


# -- the subjects, by group ----------------------------------------------------------------------

#: a recipe: (pools, work directory) → the subject, its damage done
Recipe = Callable[[Pools, Path], Subject]


@dataclass
class Group:
    name: str
    recipes: dict[str, Recipe] = field(default_factory=dict)


def _pool_group() -> Group:
    group = Group("pools")
    for name in _pool_recipes():
        group.recipes[name] = lambda pools, work, name=name: _copy(pools.get(name), work, name)
    return group


def _case_group() -> Group:
    from test_thin_check import CASES
    from test_thin_repair import EXPECT

    group = Group("cases")
    for case in CASES:
        overrides = EXPECT[case.name].overrides

        def recipe(pools: Pools, work: Path, case=case, overrides=overrides) -> Subject:
            subject = _copy(pools.get(CASE_POOLS[case.fixture]), work, case.name)
            case.damage(subject.meta)
            subject.overrides = _override_args(overrides)
            return subject

        group.recipes[case.name] = recipe
    return group


def _override_args(overrides: Any) -> tuple[str, ...]:
    if overrides is None:
        return ()
    args: list[str] = []
    for name in ("transaction_id", "data_block_size", "nr_data_blocks"):
        value = getattr(overrides, name)
        if value is not None:
            args += [f"--{name.replace('_', '-')}", str(value)]
    return tuple(args)


def _damage(pool: str, edit: Callable[[Path], None], overrides: tuple[str, ...] = ()) -> Recipe:
    def recipe(pools: Pools, work: Path) -> Subject:
        subject = _copy(pools.get(pool), work, work.name)
        edit(subject.meta)
        subject.overrides = overrides
        return subject

    return recipe


def _damage_group() -> Group:
    """The named damage that single tests make beside the corruption set."""
    import test_thin_check as tc
    import test_thin_repair as tr

    three = _override_args(tr.THREE)

    def key_2_63(tree: str) -> Callable[[Path], None]:
        def edit(p: Path) -> None:
            sm = tc.superblock(p).data_space_map_root
            root = int(sm.bitmap_root if tree == "index" else sm.ref_count_root)
            leaf = tc.first_leaf(p, root)
            last = len(tc.node_keys(p, leaf)) - 1
            tf.edit_block(p, leaf, tf.put("Q", 32 + 8 * last, 1 << 63), xor=tc.BT)

        return edit

    def internal_root_empty(p: Path) -> None:
        tf.edit_block(p, tc._internal_root(p), tf.put("I", 16, 0), xor=tc.BT)

    def huge_claims(p: Path) -> None:
        sb = tc.superblock(p)
        tf.edit_block(p, 0, tf.put("Q", 0xC0, (1 << 64) - 1), xor=tc.SB)
        tf.edit_block(p, 0, tf.put("Q", 0x40, 1 << 40), xor=tc.SB)
        tc._garbage(lambda _: int(sb.data_space_map_root.bitmap_root))(p)

    def claimed_bitmaps(p: Path) -> None:
        index = int(tc.superblock(p).data_space_map_root.bitmap_root)
        tf.edit_block(p, 0, tf.put("Q", 0x40, 4096 * fmt.ENTRIES_PER_BITMAP), xor=tc.SB)
        tc._garbage(lambda _: index)(p)

    def bitmap_2_63(p: Path) -> None:
        index = int(tc.superblock(p).data_space_map_root.bitmap_root)
        offset = tc.node_value_offset(p, index, 0)
        tf.edit_block(p, index, tf.put("Q", offset, 1 << 63), xor=tc.BT)

    def snapshot_keeps_old_tree(p: Path) -> None:
        sb = tc.superblock(p)
        held, live_root = int(sb.held_root), int(sb.data_mapping_root)
        tf.edit_block(p, held, tf.put("Q", 0x140, live_root + 1), xor=tc.SB)
        bitmap = tc.metadata_bitmap(p)
        tf.edit_block(p, bitmap, tc.set_bitmap_count(live_root + 1, 1), xor=tc.BM)
        tf.edit_block(p, bitmap, tc.set_bitmap_count(live_root, 1), xor=tc.BM)

    def garbage_everywhere(p: Path) -> None:
        data = bytearray(p.read_bytes())
        for b in range(1, 200):
            data[b * 4096 : (b + 1) * 4096] = bytes([(b * 7 + i) % 251 for i in range(4096)])
        p.write_bytes(bytes(data))

    def ambiguous(p: Path) -> None:
        _case_damage("top-level leaf byte flipped")(p)
        details = int(tc.superblock(p).device_details_root)
        tf.edit_block(p, details, tf.put("Q", 32 + 8 * 126, 104), xor=fmt.BTREE_CSUM_XOR)

    def stale_node(p: Path) -> None:
        _case_damage("top-level leaf byte flipped")(p)
        stale = tf.read_block(p, 110)
        stale[8:16] = (3000).to_bytes(8, "little")
        stale[32 + 8 * 252 : 32 + 8 * 253] = (7 << 24).to_bytes(8, "little")
        fmt.seal_block(stale, fmt.BTREE_CSUM_XOR)
        tf.write_block(p, 3000, stale)

    def details_and_top(p: Path) -> None:
        _case_damage("details leaf byte flipped")(p)
        top = int(tc.superblock(p).data_mapping_root)
        tf.edit_block(p, top, lambda b: b.__setitem__(300, b[300] ^ 0x5A))

    def borrowed(p: Path) -> None:
        tr._borrow_root(p, 2, 1)

    def borrowed_lost(p: Path) -> None:
        own = tr._borrow_root(p, 2, 1)
        tf.write_block(p, own, bytes(fmt.BLOCK_SIZE))

    def top_flipped(p: Path) -> None:
        top = int(tc.superblock(p).data_mapping_root)
        tf.edit_block(p, top, lambda b: b.__setitem__(500, b[500] ^ 1))

    def device2_leaf_flipped(p: Path) -> None:
        top = int(tc.superblock(p).data_mapping_root)
        leaf = tf.get(p, top, "Q", 32 + 8 * 252 + 8)
        tf.edit_block(p, leaf, lambda b: b.__setitem__(700, b[700] ^ 1))

    def far_claim(p: Path) -> None:
        tf.edit_block(p, 0, tf.put("Q", 0x40, 1 << 40), xor=tc.SB)
        root = tc.device_root(p, 3)
        keys, values, width = tf._node_entries(tf.read_block(p, root))
        at = keys.index(5000)
        far = (1 << 30) << fmt.TIME_BITS | (values[at] & fmt.TIME_MASK)
        tf.edit_block(p, root, tf.put("Q", 32 + 8 * width + 8 * at, far), xor=tc.BT)

    def leaf3_nr_entries(p: Path) -> None:
        tf.edit_block(p, tc.device_root(p, 3), tf.put("I", 16, 999))

    def past_pool(p: Path) -> None:
        leaf = tc.device_root(p, 2)
        keys, _, width = tf._node_entries(tf.read_block(p, leaf))
        bad = (1638400 + 5) << fmt.TIME_BITS
        offset = 32 + 8 * width + 8 * keys.index(55)
        tf.edit_block(p, leaf, tf.put("Q", offset, bad), xor=fmt.BTREE_CSUM_XOR)

    def inner_leaf_flags(p: Path) -> None:
        _, children, _ = tf._node_entries(tf.read_block(p, tc.device_root(p, 1)))
        tf.edit_block(p, children[1], tf.put("I", 4, 7))

    def truncated_data(pools: Pools, work: Path) -> Subject:
        subject = _copy(pools.get("three devices"), work, work.name)
        assert subject.data is not None
        data = work / "data"
        with open(subject.data, "rb") as src, open(data, "wb") as dst:
            dst.write(src.read(100 * BLOCK + 10))
        subject.data = data
        return subject

    group = Group("damage")
    group.recipes.update(
        {
            "data index key 2**63": _damage("three devices", key_2_63("index")),
            "data ref-count key 2**63": _damage("three devices", key_2_63("ref-count")),
            "internal root without entries": _damage("150k mappings", internal_root_empty),
            "huge claimed space map sizes": _damage("three devices", huge_claims),
            "4096 claimed data bitmaps, index garbage": _damage("three devices", claimed_bitmaps),
            "bitmap block 2**63": _damage("three devices", bitmap_2_63),
            "metadata snapshot keeps an old tree": _damage(
                "metadata snapshot", snapshot_keeps_old_tree
            ),
            "garbage in blocks 1..199": _damage("three devices", garbage_everywhere),
            "ambiguous cut-off subtrees": _damage("three devices", ambiguous),
            "a stale node beside a lost leaf": _damage("three devices", stale_node),
            "details and top level lost": _damage("three devices", details_and_top),
            "block 0 zeroed, 150k mappings": _zeroed("150k mappings", three[2:]),
            "block 0 zeroed, shared subtrees": _zeroed("snapshots sharing subtrees", three[2:]),
            "a borrowed mapping root": _damage("three devices", borrowed),
            "a borrowed mapping root, own tree lost": _damage("three devices", borrowed_lost),
            "top-level leaf byte 500 flipped": _damage("three devices", top_flipped),
            "device 2's leaf byte 700 flipped": _damage("three devices", device2_leaf_flipped),
            "2**40 data blocks claimed, a mapping far out": _damage("three devices", far_claim),
            "device 3's leaf nr_entries 999": _damage("three devices", leaf3_nr_entries),
            "a mapping past the pool's data blocks": _damage("three devices", past_pool),
            "a leaf under an internal root, flags 7": _damage(
                "docker-like, seed 5, small", inner_leaf_flags
            ),
            "the data file truncated": truncated_data,
        }
    )
    return group


def _zeroed(pool: str, sizes: tuple[str, ...]) -> Recipe:
    """Block 0 zeroed; the repair is given the pool's own transaction id and sizes."""

    def recipe(pools: Pools, work: Path) -> Subject:
        subject = _copy(pools.get(pool), work, work.name)
        trans_id = int(fmt.parse_superblock(bytes(tf.read_block(subject.meta, 0))).trans_id)
        tf.write_block(subject.meta, 0, bytes(fmt.BLOCK_SIZE))
        subject.overrides = ("--transaction-id", str(trans_id), *sizes)
        return subject

    return recipe


def _case_damage(name: str) -> Callable[[Path], None]:
    from test_thin_check import CASES

    return next(c for c in CASES if c.name == name).damage


def _random_edits(seed: int, kind: str, count: int, size: int) -> list[list[tuple[str, int, int]]]:
    """The seeded random damage of ``test_thin_check`` (``kind`` "check": byte edits and
    truncations) or of ``test_thin_repair`` ("repair") for a file of ``size`` bytes, as lists of
    edits: ``("truncate", length, 0)``, ``("byte", offset, value)``, ``("seal", block, xor)``."""
    rng = random.Random(seed)
    blocks = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 110, 111, 112]
    xors = {0: fmt.SUPERBLOCK_CSUM_XOR, 1: fmt.INDEX_CSUM_XOR, 3: fmt.BITMAP_CSUM_XOR}
    xors[9] = fmt.BITMAP_CSUM_XOR
    variants = []
    for _ in range(count):
        edits: list[tuple[str, int, int]] = []
        length = size
        if kind == "check" and rng.random() < 0.1:
            length = rng.randrange(size // 200)
            edits.append(("truncate", length, 0))
        for _ in range(rng.randrange(1, 4)):
            block = rng.choice(blocks)
            at = block * 4096 + rng.randrange(4096)
            if kind == "check" and at >= length:
                continue
            edits.append(("byte", at, rng.randrange(256)))
            if rng.random() < 0.5 and (block + 1) * 4096 <= length:
                edits.append(("seal", block, xors.get(block, fmt.BTREE_CSUM_XOR)))
        variants.append(edits)
    return variants


def _apply_edits(path: Path, edits: list[tuple[str, int, int]]) -> None:
    data = bytearray(path.read_bytes())
    for what, at, value in edits:
        if what == "truncate":
            del data[at:]
        elif what == "byte":
            data[at] = value
        else:
            raw = data[at * 4096 : (at + 1) * 4096]
            fmt.seal_block(raw, value)
            data[at * 4096 : (at + 1) * 4096] = raw
    path.write_bytes(bytes(data))


def _random_group(kind: str, count: int, keep: Callable[[int], bool]) -> Group:
    import test_thin_repair as tr

    group = Group(f"random-{kind}")
    for i in range(count):
        if not keep(i):
            continue

        def recipe(pools: Pools, work: Path, i: int = i) -> Subject:
            subject = _copy(pools.get("three devices"), work, work.name)
            size = subject.meta.stat().st_size
            _apply_edits(subject.meta, _random_edits(20261128, kind, i + 1, size)[i])
            if kind == "repair" and i % 2:
                subject.overrides = _override_args(tr.THREE)
            elif kind == "check":
                subject.overrides = _override_args(tr.THREE)
            return subject

        group.recipes[f"{kind} variant {i}"] = recipe
    return group


# -- the samples ---------------------------------------------------------------------------------

DM_SAMPLES = {
    "legacy-1.8-devicemapper": "legacy-1.8-devicemapper.tar.gz",
    "modern-devicemapper": "modern-devicemapper.tar.gz",
}
POOL = Path("devicemapper/devicemapper")
#: devices extracted from each sample (the legacy sample's are 1.7 GB each: the container's)
SAMPLE_EXTRACT = {
    "legacy-1.8-devicemapper": (13,),
    "modern-devicemapper": (1, 2, 3, 4, 5, 6, 7, 8, 9),
}


def unpack_sample(name: str, dest: Path) -> Path:
    """The sample's Docker root, unpacked by tar (sparse files stay sparse)."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-xf", str(SAMPLES / DM_SAMPLES[name]), "-C", str(dest)], check=True)
    return dest / "docker"


def _sample_group(roots: Callable[[str], Path]) -> Group:
    """Each sample's pool as it is, and with the container's mapping root damaged."""
    group = Group("samples")
    for name in DM_SAMPLES:

        def recipe(_pools: Pools, work: Path, name: str = name) -> Subject:
            root = roots(name)
            pool = root / POOL
            devices = tuple(range(1, 14 if name.startswith("legacy") else 10))
            work.mkdir(parents=True, exist_ok=True)
            return Subject(
                name,
                root.parent,
                pool / "metadata",
                data=pool / "data",
                extract=SAMPLE_EXTRACT[name],
                files=devices,
                out=work,
            )

        group.recipes[name] = recipe

        def damaged(_pools: Pools, work: Path, name: str = name) -> Subject:
            from forensics.thin.blocks import MetadataFile
            from forensics.thin.pool import read_pool

            work.mkdir(parents=True, exist_ok=True)
            meta = work / "metadata"
            source = roots(name) / POOL / "metadata"
            subprocess.run(["cp", "--sparse=always", str(source), str(meta)], check=True)
            with MetadataFile(meta) as mf:
                root = max(read_pool(mf, space_maps=False).roots.items())[1]
            with open(meta, "r+b") as f:
                f.seek(root * fmt.BLOCK_SIZE + 100)
                byte = f.read(1)
                f.seek(root * fmt.BLOCK_SIZE + 100)
                f.write(bytes([byte[0] ^ 0xFF]))
            return Subject(f"{name}, last device's root flipped", work, meta)

        group.recipes[f"{name}, last device's root flipped"] = damaged
    return group


def groups(sample_roots: Callable[[str], Path]) -> list[Group]:
    return [
        _pool_group(),
        _case_group(),
        _damage_group(),
        _random_group("check", 120, lambda i: i % 3 == 0),
        _random_group("repair", 60, lambda i: True),
        _sample_group(sample_roots),
    ]


def golden_file(group: str) -> Path:
    return GOLDEN / f"{group}.json"


def canonical(outputs: Outputs) -> str:
    """How an output is compared and written: JSON with sorted keys."""
    import json

    return json.dumps(outputs, indent=1, sort_keys=True, ensure_ascii=False)
