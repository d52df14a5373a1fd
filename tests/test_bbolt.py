"""The bbolt decoder on every real bbolt file of the real-daemon sample, on damaged copies derived
from them, and BuildKit's ownership of driver directories read through it.

The damage is written with plain ``struct`` at the offsets bbolt's page.go gives (16-byte page
header, 16-byte branch and leaf elements, the meta after the page header), not through the
decoder under test.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest
from sample_paths import BOLT_DBS, BOLT_PAGE

from forensics.checks import run_checks
from forensics.evidence import Evidence
from forensics.formats.bbolt import (
    FREELIST_PAGE,
    BoltDamage,
    Entry,
    fnv1a_64,
    open_bolt,
    read_entries,
)
from forensics.formats.ids import MOUNT_ID
from forensics.stores.buildkit import (
    SNAPSHOTS_DB,
    buildkit_damaged,
    buildkit_doubt,
    buildkit_mentions,
    snapshot_dirs,
)
from forensics.stores.host import read_host

HEADER = 16
ELEMENT = 16
META_TXID = HEADER + 48  # magic, version, page size, flags, root bucket (16), freelist, pgid
META_CHECKSUM = HEADER + 56


def db_bytes(root: Path, rel: str) -> bytes:
    return (root / rel).read_bytes()


def header(data: bytes | bytearray, pgid: int) -> tuple[int, int, int, int]:
    fields: tuple[int, int, int, int] = struct.unpack_from("<QHHI", data, pgid * BOLT_PAGE)
    return fields


def txid(data: bytes | bytearray, index: int) -> int:
    value: int = struct.unpack_from("<Q", data, index * BOLT_PAGE + META_TXID)[0]
    return value


def newer_meta(data: bytes) -> int:
    return 0 if txid(data, 0) > txid(data, 1) else 1


def meta_root(data: bytes) -> int:
    value: int = struct.unpack_from("<Q", data, newer_meta(data) * BOLT_PAGE + HEADER + 16)[0]
    return value


def first_page(data: bytes, flags: int) -> int:
    """The first page reached from the current root whose flags are ``flags``: found by reading
    the tree with struct (branch children, and nested buckets' roots in leaf values)."""
    todo, seen = [meta_root(data)], set()
    while todo:
        pgid = todo.pop(0)
        if pgid in seen:
            continue
        seen.add(pgid)
        _, pflags, count, _ = header(data, pgid)
        if pflags == flags:
            return pgid
        base = pgid * BOLT_PAGE + HEADER
        for i in range(count):
            at = base + i * ELEMENT
            if pflags == 0x01:
                todo.append(struct.unpack_from("<Q", data, at + 8)[0])
            else:
                eflags, pos, ksize, _ = struct.unpack_from("<IIII", data, at)
                if eflags & 1:
                    root = struct.unpack_from("<Q", data, at + pos + ksize)[0]
                    if root:
                        todo.append(root)
    raise AssertionError(f"no page with flags {flags:#x}")


def damage(data: bytes, pgid: int, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, pgid * BOLT_PAGE + offset, value)
    return bytes(out)


def listing(entries: list[Entry]) -> list[tuple[tuple[bytes, ...], bytes, bool]]:
    return [(e.bucket, e.key, e.is_bucket) for e in entries]


def expect_damage(data: bytes, kind: str) -> BoltDamage:
    with pytest.raises(BoltDamage) as caught:
        read_entries(data)
    assert caught.value.kind == kind, str(caught.value)
    assert str(caught.value) and "\n" not in str(caught.value)
    return caught.value


# -- the checksum ---------------------------------------------------------------------------------


def test_fnv1a_64_matches_the_published_vectors() -> None:
    # the FNV reference vectors (and Go's hash/fnv tests) for FNV-1a 64
    assert fnv1a_64(b"") == 0xCBF29CE484222325
    assert fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a_64(b"foobar") == 0x85944171F73967E8


# -- every real file ------------------------------------------------------------------------------


@pytest.mark.parametrize("rel", BOLT_DBS)
def test_real_file_decodes_and_every_page_is_accounted_for(sample_master: Path, rel: str) -> None:
    """bbolt's own consistency rule: each page below the high-water mark is a meta page, the
    freelist, a page of the bucket trees (with its overflow) or free; never two of these."""
    data = db_bytes(sample_master, rel)
    db = open_bolt(data)
    assert db.page_size == BOLT_PAGE
    assert not db.fell_back
    assert db.meta.txid == max(txid(data, 0), txid(data, 1))
    entries = list(db.entries())
    assert entries
    owners: dict[int, str] = {0: "meta", 1: "meta"}
    freelist = db.page(db.meta.freelist, (FREELIST_PAGE,))
    for p in range(freelist.id, freelist.id + freelist.overflow + 1):
        assert owners.setdefault(p, "freelist") == "freelist"
    for pgid, overflow in db.tree_pages.items():
        for p in range(pgid, pgid + overflow + 1):
            assert owners.setdefault(p, "tree") == "tree", f"page {p} is used twice"
    for p in db.freelist():
        assert owners.setdefault(p, "free") == "free", f"free page {p} is in use"
    assert sorted(owners) == list(range(db.meta.pgid))


def test_overflow_pages_are_read(sample_master: Path) -> None:
    """containerd's meta.db keeps container specs in leaf pages with overflow pages."""
    db = open_bolt(db_bytes(sample_master, BOLT_DBS[4]))
    specs = [e for e in db.entries() if e.key == b"spec"]
    assert any(overflow for overflow in db.tree_pages.values())
    assert specs and all(len(e.value) > BOLT_PAGE for e in specs)
    for e in specs:  # a protobuf Any around the OCI spec's JSON: the JSON ends the value
        doc = json.loads(e.value[e.value.index(b'{"ociVersion"') :])
        assert doc["ociVersion"]


def test_volumes_db_lists_the_sample_volumes(sample_master: Path, truth: dict[str, Any]) -> None:
    entries = read_entries(db_bytes(sample_master, "volumes/metadata.db"))
    volumes = {e.key.decode(): json.loads(e.value) for e in entries if e.bucket == (b"volumes",)}
    assert set(volumes) == {v["Name"] for v in truth["volumes"]}
    for name, doc in volumes.items():
        assert doc["Name"] == name and doc["Driver"] == "local"
    assert listing(entries)[0] == ((), b"volumes", True)


def test_local_kv_holds_the_network_objects(sample_master: Path, truth: dict[str, Any]) -> None:
    entries = read_entries(db_bytes(sample_master, "network/files/local-kv.db"))
    objects: dict[str, dict[str, Any]] = {}
    for e in entries:
        if e.bucket == (b"libnetwork",):
            # libkv's boltdb store: an 8-byte index before the JSON object
            objects[e.key.decode()] = json.loads(e.value[8:]) if e.value[8:] else {}
    networks = {k.rstrip("/").rsplit("/", 1)[1] for k in objects if "/v1.0/network/" in k}
    assert networks == {n["Id"] for n in truth["inspect_networks"]}
    sandboxes = {
        k.rstrip("/").rsplit("/", 1)[1]: doc for k, doc in objects.items() if "/v1.0/sandbox/" in k
    }
    live = [c for c in truth["inspect_containers"] if c["State"]["Status"] in ("running", "paused")]
    assert live
    for container in live:  # the sandboxes of the containers that were up at the crash
        assert sandboxes[container["NetworkSettings"]["SandboxID"]]["Cid"] == container["Id"]


def test_containerd_meta_names_the_live_containers(
    sample_master: Path, truth: dict[str, Any]
) -> None:
    entries = read_entries(db_bytes(sample_master, BOLT_DBS[4]))
    tasks = {e.key.decode() for e in entries if e.bucket == (b"v1", b"moby", b"containers")}
    states = {c["Id"]: c["State"]["Status"] for c in truth["inspect_containers"]}
    live = {cid for cid, state in states.items() if state in ("running", "paused")}
    assert live and live <= tasks <= set(states)


def test_snapshots_db_maps_every_buildkit_directory(sample_master: Path) -> None:
    """Every overlay2 directory that is not named like dockerd's (and is not l/) is a snapshot
    that BuildKit's snapshots.db maps to it, and every directory it maps exists."""
    entries = read_entries(db_bytes(sample_master, SNAPSHOTS_DB))
    foreign = {
        n for n in os.listdir(sample_master / "overlay2") if n != "l" and not MOUNT_ID.fullmatch(n)
    }
    assert foreign
    assert snapshot_dirs(entries) == foreign


def test_buildkit_mentions_exactly_buildkit_dirs(sample_master: Path) -> None:
    ev = Evidence(sample_master)
    names = sorted(os.listdir(sample_master / "overlay2"))
    owned = snapshot_dirs(read_entries(db_bytes(sample_master, SNAPSHOTS_DB)))
    assert buildkit_mentions(ev, names) == owned
    assert buildkit_mentions(ev, []) == set()
    assert buildkit_damaged(ev) == {}


# -- damaged copies -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def snapshots(sample_master: Path) -> bytes:
    return db_bytes(sample_master, SNAPSHOTS_DB)


@pytest.fixture(scope="module")
def local_kv(sample_master: Path) -> bytes:
    return db_bytes(sample_master, "network/files/local-kv.db")


def test_bad_magic_on_both_metas(snapshots: bytes) -> None:
    data = damage(damage(snapshots, 0, HEADER, "<I", 0x12345678), 1, HEADER, "<I", 0x12345678)
    assert "bad magic" in str(expect_damage(data, "bad-meta"))


def test_both_checksums_broken(snapshots: bytes) -> None:
    data = snapshots
    for index in (0, 1):
        stored = struct.unpack_from("<Q", data, index * BOLT_PAGE + META_CHECKSUM)[0]
        data = damage(data, index, META_CHECKSUM, "<Q", stored ^ 1)
    err = expect_damage(data, "bad-meta")
    assert "meta 0: checksum mismatch" in str(err)
    assert f"meta 1 at byte {BOLT_PAGE}: checksum mismatch" in str(err)


@pytest.mark.parametrize("rel", BOLT_DBS)
def test_a_broken_newer_meta_falls_back_to_the_older(sample_master: Path, rel: str) -> None:
    data = db_bytes(sample_master, rel)
    newer, older = newer_meta(data), 1 - newer_meta(data)
    # a torn write: the txid field of the newer meta changed, its checksum no longer holds
    broken = damage(data, newer, META_TXID, "<Q", txid(data, newer) + 7)
    db = open_bolt(broken)
    assert db.fell_back and db.meta.index == older and db.meta.txid == txid(data, older)
    # the pages the newer transaction freed stay pending until a later one: the older tree is
    # whole
    assert list(db.entries())


def test_a_broken_older_meta_changes_nothing(snapshots: bytes) -> None:
    older = 1 - newer_meta(snapshots)
    broken = damage(snapshots, older, HEADER, "<I", 0)
    db = open_bolt(broken)
    assert not db.fell_back and db.meta.index == newer_meta(snapshots)
    assert listing(list(db.entries())) == listing(read_entries(snapshots))


def test_branch_child_out_of_range(local_kv: bytes) -> None:
    branch = first_page(local_kv, 0x01)
    data = damage(local_kv, branch, HEADER + 8, "<Q", 10**9)
    assert "page 1000000000 is out of range" in str(expect_damage(data, "page-out-of-range"))


def test_branch_child_is_a_meta_page(local_kv: bytes) -> None:
    branch = first_page(local_kv, 0x01)
    expect_damage(damage(local_kv, branch, HEADER + 8, "<Q", 1), "page-out-of-range")


def test_loop_between_pages(local_kv: bytes) -> None:
    branch = first_page(local_kv, 0x01)
    data = damage(local_kv, branch, HEADER + ELEMENT + 8, "<Q", branch)
    assert f"page {branch} is reached twice" in str(expect_damage(data, "cycle"))


def test_page_of_the_wrong_type(snapshots: bytes) -> None:
    root = meta_root(snapshots)
    data = damage(snapshots, root, 8, "<H", FREELIST_PAGE)
    assert "a freelist page, not a branch or leaf page" in str(expect_damage(data, "page-type"))


def test_page_that_calls_itself_another(snapshots: bytes) -> None:
    root = meta_root(snapshots)
    expect_damage(damage(snapshots, root, 0, "<Q", root + 1), "page-id")


def test_element_past_the_page(snapshots: bytes) -> None:
    root = meta_root(snapshots)
    data = damage(snapshots, root, HEADER + 4, "<I", 0x7FFFFFF0)  # first leaf element's pos
    assert "past the page" in str(expect_damage(data, "element-bounds"))


def test_elements_that_overlap(snapshots: bytes) -> None:
    """200 elements that all name the same 796 bytes: 20 times more keys and values than the
    file has bytes (overlapping elements could otherwise make a small file decode for ever)."""
    root = meta_root(snapshots)
    data = damage(snapshots, root, 10, "<H", 200)
    for i in range(200):
        at = HEADER + i * ELEMENT
        data = damage(data, root, at, "<I", 0)
        data = damage(data, root, at + 4, "<I", 3300 - at)
        data = damage(data, root, at + 8, "<I", 0)
        data = damage(data, root, at + 12, "<I", BOLT_PAGE - 3300)
    expect_damage(data, "overlap")


def test_more_elements_than_the_page_holds(snapshots: bytes) -> None:
    root = meta_root(snapshots)
    expect_damage(damage(snapshots, root, 10, "<H", 0xFFFF), "element-bounds")


def test_inline_bucket_of_the_wrong_type(sample_master: Path) -> None:
    """cache.db's _backlinks/<id> buckets are inline: a leaf page inside the bucket's value."""
    data = db_bytes(sample_master, "buildkit/cache.db")
    entries = read_entries(data)
    inline = next(e for e in entries if e.is_bucket and e.value[:8] == bytes(8))
    at = data.index(inline.key + inline.value)
    page_flags = at + len(inline.key) + 16 + 8  # bucket header, then the page header's flags
    broken = bytearray(data)
    struct.pack_into("<H", broken, page_flags, 0x01)
    assert "inline bucket" in str(expect_damage(bytes(broken), "page-type"))


@pytest.mark.parametrize("rel", ["buildkit/snapshots.db", "network/files/local-kv.db"])
def test_every_truncation_is_damage_or_a_whole_file(sample_master: Path, rel: str) -> None:
    data = db_bytes(sample_master, rel)
    hwm = open_bolt(data).meta.pgid
    for size in range(0, len(data), 256):
        if size >= hwm * BOLT_PAGE:
            assert listing(read_entries(data[:size])) == listing(read_entries(data))
            continue
        with pytest.raises(BoltDamage) as caught:
            read_entries(data[:size])
        assert caught.value.kind in {"too-small", "bad-meta", "truncated"}


def test_freelist_count_escape(snapshots: bytes) -> None:
    """A freelist page with count 0xFFFF keeps its real count in the first id slot."""
    db = open_bolt(snapshots)
    free = db.freelist()
    page = db.meta.freelist
    data = damage(snapshots, page, 10, "<H", 0xFFFF)
    data = damage(data, page, HEADER, "<Q", len(free))
    for i, pgid in enumerate(free):
        data = damage(data, page, HEADER + 8 * (i + 1), "<Q", pgid)
    assert open_bolt(data).freelist() == free
    too_many = damage(data, page, HEADER, "<Q", 2**40)
    with pytest.raises(BoltDamage):
        open_bolt(too_many).freelist()


def test_page_cap_ends_the_walk(sample_master: Path) -> None:
    data = db_bytes(sample_master, "buildkit/containerdmeta.db")
    db = open_bolt(data, max_pages=3)
    with pytest.raises(BoltDamage) as caught:
        list(db.entries())
    assert caught.value.kind == "too-many-pages"


def test_random_garbage_is_not_a_database() -> None:
    for data in (b"", b"\0" * 64, b"\0" * 8192, os.urandom(16384)):
        with pytest.raises(BoltDamage):
            read_entries(data)


# -- BuildKit ownership through the store and verify ---------------------------------------------


def _findings(root: Path) -> list[Any]:
    return run_checks(read_host(Evidence(root)))


def test_a_damaged_snapshots_db_is_a_finding_and_doubt(sample_root: Path) -> None:
    path = sample_root / SNAPSHOTS_DB
    data = path.read_bytes()
    path.write_bytes(damage(damage(data, 0, HEADER, "<I", 0), 1, HEADER, "<I", 0))
    host = read_host(Evidence(sample_root))
    findings = run_checks(host)
    (bad,) = [f for f in findings if f.check == "buildkit.db-damaged"]
    assert bad.path == SNAPSHOTS_DB and bad.severity == "warning" and bad.damage == "bad-meta"
    doubt = buildkit_doubt(host)
    assert doubt is not None and SNAPSHOTS_DB in doubt
    # the other databases still name the uncommitted snapshots' directories
    named = {f.object_id for f in findings if f.check == "driver.buildkit-dir"}
    assert named and named <= snapshot_dirs(read_entries(data))


def test_a_newer_meta_lost_is_doubt_too(sample_root: Path) -> None:
    path = sample_root / SNAPSHOTS_DB
    data = path.read_bytes()
    newer = newer_meta(data)
    path.write_bytes(damage(data, newer, META_TXID, "<Q", txid(data, newer) + 2))
    host = read_host(Evidence(sample_root))
    (bad,) = [f for f in run_checks(host) if f.check == "buildkit.db-damaged"]
    assert f"transaction {txid(data, newer) + 2}" in bad.message
    assert buildkit_doubt(host) is not None


def test_a_symlinked_db_is_not_followed(sample_root: Path, tmp_path: Path) -> None:
    path = sample_root / SNAPSHOTS_DB
    outside = tmp_path / "elsewhere.db"
    outside.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(outside)
    (bad,) = [f for f in _findings(sample_root) if f.check == "buildkit.db-damaged"]
    assert bad.damage == "symlink"


def test_no_doubt_and_no_finding_on_the_real_sample(sample_master: Path) -> None:
    host = read_host(Evidence(sample_master))
    assert buildkit_doubt(host) is None
    assert not [f for f in run_checks(host) if f.check == "buildkit.db-damaged"]


def test_a_name_only_in_a_freed_page_is_not_buildkits(sample_root: Path) -> None:
    """The byte scan counted stale bytes of freed pages; the decoder reads live keys only."""
    name = "zzzzzzzzzzzzzzzzzzzzzzzzz"
    (sample_root / "overlay2" / name / "diff").mkdir(parents=True)
    path = sample_root / SNAPSHOTS_DB
    data = bytearray(path.read_bytes())
    free = open_bolt(bytes(data)).freelist()[0]
    data[free * BOLT_PAGE + 200 : free * BOLT_PAGE + 200 + len(name)] = name.encode()
    path.write_bytes(bytes(data))
    findings = {f.object_id: f.check for f in _findings(sample_root) if f.object_id == name}
    assert findings == {name: "driver.unknown-dir"}


def test_verify_reports_damage_without_a_traceback(sample_root: Path, cli: Any) -> None:
    path = sample_root / "buildkit/metadata_v2.db"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    result = cli("verify", sample_root, "--format", "json")
    assert "Traceback" not in result.stderr
    checks = {(f["check"], f["path"]) for f in result.json()["findings"]}
    assert ("buildkit.db-damaged", "buildkit/metadata_v2.db") in checks
