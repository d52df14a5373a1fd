"""``thin repair`` against thin_repair 0.9.0 on the corruption set of ``test_thin_check``.

For every damaged case: our repaired copy passes thin_check; the input is unchanged to the byte;
and our copy's thin_dump is compared with thin_dump of thin_repair's copy of the same input.
Where they differ, the difference is the documented one (``Expect`` below): we put back
subtrees that the damage cut off (thin_repair 0.9.0 drops them), keep a device whose details
are lost with rebuilt details (thin_repair drops every device), drop mappings past the data
device (thin_repair aborts), clear the NEEDS_CHECK flag and write version 2, and ask for a data
block size the kernel accepts.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import thin_fixtures as tf
from click.testing import CliRunner
from test_thin_check import CASES, Case, derive, pristine  # noqa: F401 (pristine: a fixture)

from forensics.cli.thin import thin
from forensics.formats import thin as fmt
from forensics.repair.plan_devicemapper import install_steps
from forensics.thin.blocks import MetadataFile
from forensics.thin.check import check_pool
from forensics.thin.pool import read_pool
from forensics.thin.repair import (
    CopyError,
    NothingSalvageable,
    Overrides,
    salvage_metadata,
    write_repaired_copy,
)

THREE = Overrides(transaction_id=3, data_block_size=128, nr_data_blocks=1638400)

# -- thin_dump's XML, parsed for comparison --------------------------------------------------------

_ATTRS = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class Dump:
    superblock: dict[str, str]
    devices: dict[int, dict[str, str]]
    #: (dev_id, virtual block) → (data block, time), ranges expanded
    mappings: dict[tuple[int, int], tuple[int, int]]


def parse_dump(xml: bytes) -> Dump:
    dump = Dump({}, {}, {})
    dev = -1
    for line in xml.decode().splitlines():
        attrs = dict(_ATTRS.findall(line))
        tag = line.strip().split(" ")[0].lstrip("<")
        if tag == "superblock":
            dump.superblock = attrs
        elif tag == "device":
            dev = int(attrs["dev_id"])
            dump.devices[dev] = attrs
        elif tag == "single_mapping":
            key = (dev, int(attrs["origin_block"]))
            dump.mappings[key] = (int(attrs["data_block"]), int(attrs["time"]))
        elif tag == "range_mapping":
            o, d, t = (int(attrs[k]) for k in ("origin_begin", "data_begin", "time"))
            for i in range(int(attrs["length"])):
                dump.mappings[(dev, o + i)] = (d + i, t)
    return dump


def thin_dump(path: Path) -> bytes:
    result = tf.run_tool("thin_dump", path)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def thin_repair(src: Path, out: Path, overrides: Overrides | None = None) -> int:
    with open(out, "wb") as f:
        f.truncate(16 << 20)
    extra: list[str] = []
    if overrides is not None:
        extra = [
            "--transaction-id",
            str(overrides.transaction_id),
            "--data-block-size",
            str(overrides.data_block_size),
            "--nr-data-blocks",
            str(overrides.nr_data_blocks),
        ]
    return tf.run_tool("thin_repair", "-i", src, "-o", out, *extra).returncode


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- what we expect, case by case ------------------------------------------------------------------

SAME = "same as thin_repair"
RECOVERED = "recovered what thin_repair drops"
DETAILS_REBUILT = "details rebuilt; thin_repair keeps no device"
PAST_END = "mapping past the data device dropped; thin_repair aborts"
SUPERBLOCK = "superblock normalised; thin_repair copies it"
NEEDS = "superblock values needed"
UNREADABLE = "not metadata"


@dataclass(frozen=True)
class Expect:
    kind: str
    #: what ``thin repair`` does: 0 a copy without losses, 1 a copy with losses, 4 nothing
    #: written, 8 not metadata. Its exit status: 1 for a copy (a repaired copy is written), 4, 8
    outcome: int
    #: for NEEDS: the options asked for, and the values that let the repair go on
    needs: tuple[str, ...] = ()
    overrides: Overrides | None = None


EXPECT: dict[str, Expect] = {
    "superblock byte flipped": Expect(
        NEEDS, 4, ("--transaction-id", "--data-block-size", "--nr-data-blocks"), THREE
    ),
    "block 0 zeroed": Expect(
        NEEDS, 4, ("--transaction-id", "--data-block-size", "--nr-data-blocks"), THREE
    ),
    "NEEDS_CHECK set": Expect(SUPERBLOCK, 0),
    "superblock magic": Expect(SAME, 0),
    "version 7": Expect(SUPERBLOCK, 0),
    "incompat flags": Expect(SAME, 0),
    "data block size 100": Expect(NEEDS, 4, ("--data-block-size",), Overrides(data_block_size=128)),
    "mapping root at an empty leaf": Expect(RECOVERED, 0),
    "device leaf byte flipped": Expect(SAME, 1),
    "mapping to another data block": Expect(SAME, 0),
    "mapping past the data device": Expect(PAST_END, 1),
    "mapping time after the pool's": Expect(SAME, 0),
    "keys out of order": Expect(SAME, 1),
    "wrong node block number": Expect(SAME, 1),
    "node flags 0": Expect(SAME, 1),
    "node value size 4": Expect(SAME, 1),
    "max_entries 250": Expect(SAME, 1),
    "nr_entries above max": Expect(SAME, 1),
    "mapped_blocks 104 -> 200": Expect(SAME, 0),
    "creation time after the pool's": Expect(SAME, 0),
    "device transaction above the pool's": Expect(SAME, 0),
    "details leaf byte flipped": Expect(DETAILS_REBUILT, 1),
    "top-level leaf byte flipped": Expect(RECOVERED, 0),
    "top-level nr_entries 3 -> 2": Expect(RECOVERED, 0),
    "data count 1 -> 2": Expect(SAME, 0),
    "free data block marked used": Expect(SAME, 0),
    "used data block marked free": Expect(SAME, 0),
    "data bitmap byte flipped": Expect(SAME, 0),
    "metadata block leaked": Expect(SAME, 0),
    "metadata block in use marked free": Expect(SAME, 0),
    "metadata index byte flipped": Expect(SAME, 0),
    "data space map index byte flipped": Expect(SAME, 0),
    "data overflow count 3 -> 7": Expect(SAME, 0),
    "garbage in a device leaf": Expect(SAME, 1),
    "truncated file": Expect(SAME, 1),
    "empty file": Expect(UNREADABLE, 8),
    "XML instead of metadata": Expect(UNREADABLE, 8),
    "internal node points at itself": Expect(RECOVERED, 0),
    "two internal nodes point at each other": Expect(RECOVERED, 0),
    "non-root leaf with 3 entries": Expect(SAME, 1),
    "shared subtree, data counts left double": Expect(SAME, 0),
    "leaf shared by two devices flipped": Expect(SAME, 1),
    "metadata snapshot copy damaged": Expect(SAME, 0),
}


def test_every_case_has_an_expectation() -> None:
    assert set(EXPECT) == {c.name for c in CASES}


def run_repair(path: Path, out: Path, *extra: str) -> tuple[int, dict]:
    result = CliRunner().invoke(thin, ["repair", str(path), "-o", str(out), "--format", "json"])
    if extra:
        args = ["repair", str(path), "-o", str(out), "--format", "json", *extra]
        result = CliRunner().invoke(thin, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.stderr
    return result.exit_code, json.loads(result.stdout) if result.stdout else {}


def _override_args(overrides: Overrides) -> list[str]:
    args = []
    for name in ("transaction_id", "data_block_size", "nr_data_blocks"):
        value = getattr(overrides, name)
        if value is not None:
            args += [f"--{name.replace('_', '-')}", str(value)]
    return args


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_repair_case(case: Case, pristine: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    expect = EXPECT[case.name]
    path = derive(pristine, case, tmp_path)
    before = sha256(path)
    ours, theirs = tmp_path / "ours.bin", tmp_path / "theirs.bin"
    status, doc = run_repair(path, ours)
    assert sha256(path) == before, "the input is never written"
    assert status == (1 if expect.outcome in (0, 1) else expect.outcome), doc
    if expect.kind == UNREADABLE:
        assert not ours.exists()
        assert thin_repair(path, theirs) != 0
        return
    if expect.kind == NEEDS:
        assert not ours.exists() and doc["written"] is False
        assert tuple(doc["needs"]) == expect.needs
        assert expect.overrides is not None
        status, doc = run_repair(path, ours, *_override_args(expect.overrides))
        assert status == 1 and doc["written"] and doc["repaired"], doc
        assert sha256(path) == before
    assert tf.run_tool("thin_check", ours).returncode == 0
    assert doc["losses"] is (expect.outcome == 1)
    _compare(case, expect, path, ours, theirs, pristine[case.fixture])
    with MetadataFile(ours) as meta:
        findings = check_pool(read_pool(meta)).findings
    assert not [f for f in findings if f.severity == "error"], findings


def _compare(case: Case, expect: Expect, path: Path, ours: Path, theirs: Path, original: Path):
    mine = thin_dump(ours)
    first = thin_dump(original)
    if expect.kind == NEEDS:
        assert mine == first
        if thin_repair(path, theirs, THREE if "size" not in case.name else None) == 0:
            assert parse_dump(thin_dump(theirs)).mappings == parse_dump(mine).mappings
        return
    rc = thin_repair(path, theirs)
    if expect.kind == PAST_END:
        assert rc != 0, "thin_repair 0.9.0 aborts on a mapping past the data device"
        want, got = parse_dump(first), parse_dump(mine)
        assert set(want.mappings) - set(got.mappings) == {(2, 0)}
        return
    assert rc == 0
    repaired = thin_dump(theirs)
    if expect.kind == SAME:
        assert mine == repaired
        return
    if expect.kind == SUPERBLOCK:
        assert mine == first
        assert mine.splitlines()[1:] == repaired.splitlines()[1:]
        assert parse_dump(repaired).superblock != parse_dump(mine).superblock
        return
    if expect.kind == RECOVERED:
        assert mine == first, "every device and mapping recovered"
        got, lesser = parse_dump(mine), parse_dump(repaired)
        assert lesser.mappings.items() < got.mappings.items(), "thin_repair loses some"
        return
    assert expect.kind == DETAILS_REBUILT
    assert parse_dump(repaired).devices == {}, "thin_repair 0.9.0 keeps no device"
    want, got = parse_dump(first), parse_dump(mine)
    assert got.mappings == want.mappings
    for dev_id, attrs in got.devices.items():
        assert attrs["mapped_blocks"] == want.devices[dev_id]["mapped_blocks"]
        assert (attrs["transaction"], attrs["creation_time"]) == ("0", "0")
        assert attrs["snap_time"] == got.superblock["time"]


# -- salvage details -------------------------------------------------------------------------------


def _case(name: str) -> Case:
    return next(c for c in CASES if c.name == name)


def test_losses_are_named(pristine: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    path = derive(pristine, _case("non-root leaf with 3 entries"), tmp_path)
    summary = salvage_metadata(path).summary
    lossy = [d for d in summary.devices if not d.complete]
    assert [(d.dev_id, d.written, d.expected, d.lost) for d in lossy] == [(1, 5877, 6000, 123)]
    assert any("virtual blocks 0..125 are unreadable" in n for n in lossy[0].notes)
    assert summary.losses


def test_reattached_subtrees_are_named(pristine: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    path = derive(pristine, _case("top-level nr_entries 3 -> 2"), tmp_path)
    summary = salvage_metadata(path).summary
    (dev3,) = [d for d in summary.devices if d.reattached]
    assert dev3.dev_id == 3 and dev3.complete and dev3.written == 105
    assert not summary.losses


def test_ambiguous_subtrees_are_left_out(pristine: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    """Two devices that lost their whole trees and have the same mapped_blocks: a cut-off
    subtree referenced once could belong to either, so neither gets it."""
    path = derive(pristine, _case("top-level leaf byte flipped"), tmp_path)
    details = int(fmt.parse_superblock(bytes(tf.read_block(path, 0))).device_details_root)
    offset = 32 + 8 * 126 + 24 * 0  # device 1's mapped_blocks := device 2's
    tf.edit_block(path, details, tf.put("Q", offset, 104), xor=fmt.BTREE_CSUM_XOR)
    summary = salvage_metadata(path).summary
    by_id = {d.dev_id: d for d in summary.devices}
    assert by_id[3].complete and by_id[3].written == 105
    assert by_id[1].written == 0 and by_id[2].written == 0
    assert any("fits no single device" in item for item in summary.lost)


def test_stale_nodes_are_never_put_back(pristine: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    """A kernel pool is full of sound but stale nodes (copies from earlier transactions, free in
    the space map). One that would fit device 1 as well as its real tree is ignored: only
    nodes that the metadata space map counts as in use are put back."""
    path = derive(pristine, _case("top-level leaf byte flipped"), tmp_path)
    leaf = 110  # device 1's tree in the three-device fixture
    stale = tf.read_block(path, leaf)
    stale[8:16] = (3000).to_bytes(8, "little")
    stale[32 + 8 * 252 : 32 + 8 * 253] = (7 << 24).to_bytes(8, "little")  # an older mapping
    fmt.seal_block(stale, fmt.BTREE_CSUM_XOR)
    tf.write_block(path, 3000, stale)
    summary = write_repaired_copy(path, tmp_path / "out.bin")
    by_id = {d.dev_id: d for d in summary.devices}
    assert by_id[1].reattached == [leaf] and not summary.losses
    assert thin_dump(tmp_path / "out.bin") == thin_dump(pristine["three"])


def test_details_and_top_level_both_lost(pristine: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    """Nothing names a device any more: no copy (thin_repair writes an empty pool)."""
    path = derive(pristine, _case("details leaf byte flipped"), tmp_path)
    top = int(fmt.parse_superblock(bytes(tf.read_block(path, 0))).data_mapping_root)
    tf.edit_block(path, top, lambda b: b.__setitem__(300, b[300] ^ 0x5A))
    with pytest.raises(NothingSalvageable, match="no device"):
        salvage_metadata(path)
    status, doc = run_repair(path, tmp_path / "out.bin")
    assert status == 4 and doc["written"] is False
    assert not (tmp_path / "out.bin").exists()


def test_zeroed_superblock_roots_found_by_scanning(
    pristine: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    """Block 0 zeroed on a pool with internal nodes and shared subtrees: the trees are found by
    their nodes alone (the metadata space map found by its index block tells live from
    stale), and the copy dumps as the original."""
    for name in ("big", "shared"):
        path = tmp_path / f"{name}.bin"
        path.write_bytes(pristine[name].read_bytes())
        sb = fmt.parse_superblock(bytes(tf.read_block(path, 0)))
        tf.write_block(path, 0, bytes(fmt.BLOCK_SIZE))
        out = tmp_path / f"{name}-out.bin"
        given = Overrides(int(sb.trans_id), 128, 1638400)
        summary = write_repaired_copy(path, out, overrides=given)
        assert summary.superblock == "rebuilt" and not summary.losses
        assert thin_dump(out) == thin_dump(pristine[name])


def test_bytes_in_library_call(pristine: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    data = pristine["three"].read_bytes()
    summary = write_repaired_copy(data, tmp_path / "out.bin")
    assert summary.metadata == "<bytes>" and summary.stats is not None
    assert thin_dump(tmp_path / "out.bin") == thin_dump(pristine["three"])


# -- the command -----------------------------------------------------------------------------------


def test_clean_pool_exits_0_nothing_to_repair(pristine: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    """No damage: nothing to repair (exit 0); the copy is written all the same, and there is
    nothing to put in place."""
    out = tmp_path / "out.bin"
    result = CliRunner().invoke(thin, ["repair", str(pristine["three"]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "has no damage: nothing to repair" in result.stdout
    assert "systemctl stop docker" not in result.stdout
    assert thin_dump(out) == thin_dump(pristine["three"])
    status, doc = run_repair(pristine["three"], tmp_path / "again.bin")
    assert status == 0 and doc["written"] and not doc["repaired"] and doc["steps"] == []


def test_a_repaired_copy_exits_1_with_steps(pristine: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    """Damage repaired without a loss still exits 1: a repaired copy was written."""
    path = derive(pristine, _case("data count 1 -> 2"), tmp_path)
    out = tmp_path / "out.bin"
    result = CliRunner().invoke(thin, ["repair", str(path), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert "nothing is lost" in result.stdout
    assert f"cp --sparse=always {out.absolute()} " in result.stdout
    assert "thin_check" in result.stdout and "systemctl stop docker" in result.stdout


def test_output_is_never_overwritten_without_force(
    pristine: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.bin"
    out.write_bytes(b"precious")
    args = ["repair", str(pristine["three"]), "-o", str(out)]
    result = CliRunner().invoke(thin, args)
    assert result.exit_code == 8 and "exists" in result.stderr
    assert out.read_bytes() == b"precious"
    result = CliRunner().invoke(thin, [*args, "--force"])
    assert result.exit_code == 0
    assert thin_dump(out) == thin_dump(pristine["three"])


def test_input_is_never_the_output(pristine: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "meta.bin"
    path.write_bytes(pristine["three"].read_bytes())
    before = sha256(path)
    result = CliRunner().invoke(thin, ["repair", str(path), "-o", str(path), "--force"])
    assert result.exit_code == 8 and "input" in result.stderr
    assert sha256(path) == before


@pytest.mark.parametrize(
    "argv",
    [["repair", "m"], ["repair", "m", "-o", "x", "--format", "xml"], ["repair", "-o", "x"]],
)
def test_usage_errors_exit_16(argv: list[str], tmp_path: Path) -> None:
    from forensics.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["thin", *argv])
    assert exit_.value.code == 16
    assert not (tmp_path / "x").exists()


def test_missing_input_exits_8(tmp_path: Path) -> None:
    result = CliRunner().invoke(thin, ["repair", str(tmp_path / "no"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 8
    assert not (tmp_path / "o").exists()


def test_docker_paths_in_the_steps(tmp_path: Path) -> None:
    metadata = tmp_path / "docker" / "devicemapper" / "devicemapper" / "metadata"
    steps = install_steps(metadata, tmp_path / "out.bin")
    commands = " ; ".join(s.command or "" for s in steps)
    assert f"cp --sparse=always {tmp_path / 'out.bin'} {metadata}" in commands
    assert f"thin_check {metadata}" in commands
    assert f"docker-forensics verify {tmp_path / 'docker'}" in commands
    generic = install_steps(tmp_path / "copy.bin", tmp_path / "out.bin")
    assert any(
        "/var/lib/docker/devicemapper/devicemapper/metadata" in (s.command or "") for s in generic
    )


def test_random_damage_repairs_or_refuses(pristine: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    """Seeded random damage (checksums recomputed half the time): the repair writes a copy that
    thin_check accepts, or says why it cannot; never a traceback."""
    rng = random.Random(20261128)
    source = pristine["three"].read_bytes()
    path = tmp_path / "meta.bin"
    blocks = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 110, 111, 112]
    xors = {0: fmt.SUPERBLOCK_CSUM_XOR, 1: fmt.INDEX_CSUM_XOR, 3: fmt.BITMAP_CSUM_XOR}
    written = 0
    for i in range(60):
        data = bytearray(source)
        for _ in range(rng.randrange(1, 4)):
            block = rng.choice(blocks)
            data[block * 4096 + rng.randrange(4096)] = rng.randrange(256)
            if rng.random() < 0.5:
                raw = data[block * 4096 : (block + 1) * 4096]
                fmt.seal_block(
                    raw, xors.get(block, fmt.BITMAP_CSUM_XOR if block == 9 else fmt.BTREE_CSUM_XOR)
                )
                data[block * 4096 : (block + 1) * 4096] = raw
        path.write_bytes(bytes(data))
        out = tmp_path / f"out{i}.bin"
        try:
            write_repaired_copy(path, out, overrides=THREE if i % 2 else None)
        except (NothingSalvageable, CopyError):
            assert not out.exists()
            continue
        written += 1
        result = tf.run_tool("thin_check", out)
        assert result.returncode == 0, result.stderr.decode()
        out.unlink()
    assert written > 30


def _borrow_root(path: Path, dev_id: int, lender: int) -> int:
    """The top level's value for ``dev_id`` pointed at ``lender``'s mapping root (checksum
    recomputed); returns ``dev_id``'s own root, now cut off."""
    from test_thin_check import device_root, node_keys, node_value_offset

    top = int(fmt.parse_superblock(bytes(tf.read_block(path, 0))).data_mapping_root)
    own = device_root(path, dev_id)
    offset = node_value_offset(path, top, node_keys(path, top).index(dev_id))
    tf.edit_block(path, top, tf.put("Q", offset, device_root(path, lender)), xor=fmt.BTREE_CSUM_XOR)
    return own


def test_a_borrowed_mapping_root_is_not_kept(pristine: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    """Device 2's mapping root points at device 1's tree: thin check reports device 2's
    mapped_blocks and the root counted once for two devices. The copy must not give device 2
    device 1's mappings as its own: its real tree (cut off, the size its details count) is
    put back, and the copy dumps as the original."""
    path = tmp_path / "meta.bin"
    path.write_bytes(pristine["three"].read_bytes())
    _borrow_root(path, 2, 1)
    with MetadataFile(path) as meta:
        found = {f.check for f in check_pool(read_pool(meta)).findings}
    assert {"device.mapped-blocks", "metasm.count"} <= found
    status, doc = run_repair(path, tmp_path / "out.bin")
    assert status == 1 and doc["repaired"] and not doc["losses"], doc
    (dev2,) = [d for d in doc["devices"] if d["dev_id"] == 2]
    assert dev2["complete"] and dev2["written"] == 104
    assert any("not its own" in note for note in dev2["notes"])
    assert thin_dump(tmp_path / "out.bin") == thin_dump(pristine["three"])


def test_a_borrowed_root_without_its_own_tree_is_a_loss(
    pristine: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    """The same, with device 2's own tree gone too: device 2 is written empty and reported
    lost (104 mappings), never with device 1's mappings; the exit status says a copy was
    written."""
    path = tmp_path / "meta.bin"
    path.write_bytes(pristine["three"].read_bytes())
    own = _borrow_root(path, 2, 1)
    tf.write_block(path, own, bytes(fmt.BLOCK_SIZE))
    status, doc = run_repair(path, tmp_path / "out.bin")
    assert status == 1 and doc["losses"], doc
    (dev2,) = [d for d in doc["devices"] if d["dev_id"] == 2]
    assert (dev2["written"], dev2["expected"], dev2["lost"], dev2["complete"]) == (
        0,
        104,
        104,
        False,
    )
    copy = parse_dump(thin_dump(tmp_path / "out.bin"))
    assert not [key for key in copy.mappings if key[0] == 2]
    assert tf.run_tool("thin_check", tmp_path / "out.bin").returncode == 0
