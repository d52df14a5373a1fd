"""``linkgraph.db`` in WAL mode, on copies of the Docker 1.8 devicemapper sample: the names come
from the database with its write-ahead log applied, SQLite never opens a file in ROOT (no
``-shm``, no checkpoint), and a WAL-mode database is not called unreadable.

The WAL databases are made by the real SQLite (Python's sqlite3): the sample's linkgraph.db is
switched to ``journal_mode=WAL`` in a scratch directory, renamed there with the automatic
checkpoint off, and the database and its log copied into ROOT while the writer is still open
(closing the last connection would checkpoint)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from treehash import tree_hash

from forensics.formats.sqlite_wal import apply_wal, is_wal_database


def _wal_copy(root: Path, scratch: Path, sql: str) -> bytes:
    """ROOT's linkgraph.db switched to WAL mode and changed by ``sql`` (not checkpointed):
    linkgraph.db and linkgraph.db-wal put in ROOT. Returns the log."""
    scratch.mkdir()
    work = scratch / "linkgraph.db"
    shutil.copy(root / "linkgraph.db", work)
    db = sqlite3.connect(work)
    try:
        assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
        db.execute("PRAGMA wal_autocheckpoint=0")
        db.execute(sql)
        db.commit()
        shutil.copy(work, root / "linkgraph.db")
        shutil.copy(scratch / "linkgraph.db-wal", root / "linkgraph.db-wal")
    finally:
        db.close()
    return (root / "linkgraph.db-wal").read_bytes()


def _names(cli, root: Path) -> dict[str, str]:
    result = cli("inventory", root, "--format", "json")
    assert result.code == 0, result.stderr
    return {c["id"]: c["name"] for c in result.json()["containers"]}


def test_names_come_from_the_log(
    cli, dm_root: Path, dm_truth: dict[str, Any], tmp_path: Path
) -> None:
    wal = _wal_copy(dm_root, tmp_path / "scratch", "UPDATE edge SET name = name || '-wal'")
    assert wal and is_wal_database((dm_root / "linkgraph.db").read_bytes())
    before = tree_hash(dm_root)
    names = _names(cli, dm_root)
    for container in dm_truth["containers"]:
        assert names[container["id"]] == container["name"] + "-wal"
    result = cli("verify", dm_root, "--format", "json")
    assert "linkgraph.damaged" not in {f["check"] for f in result.json()["findings"]}
    assert tree_hash(dm_root) == before, "ROOT changed"
    assert not (dm_root / "linkgraph.db-shm").exists()


def test_a_wal_database_without_its_log_is_readable(
    cli, dm_root: Path, dm_truth: dict[str, Any], tmp_path: Path
) -> None:
    """After a clean close the log is checkpointed and gone, but the header still says WAL."""
    db = sqlite3.connect(dm_root / "linkgraph.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    assert is_wal_database((dm_root / "linkgraph.db").read_bytes())
    assert not (dm_root / "linkgraph.db-wal").exists()
    names = _names(cli, dm_root)
    assert {c["id"]: c["name"] for c in dm_truth["containers"]}.items() <= names.items()
    result = cli("verify", dm_root, "--format", "json")
    assert "linkgraph.damaged" not in {f["check"] for f in result.json()["findings"]}


def test_uncommitted_and_foreign_frames_are_not_applied(dm_root: Path, tmp_path: Path) -> None:
    """A transaction cut short (its commit frame lost), or frames of an older log (other
    salts), are what SQLite's recovery leaves out too."""
    wal = _wal_copy(dm_root, tmp_path / "scratch", "UPDATE edge SET name = 'x'")
    db = (dm_root / "linkgraph.db").read_bytes()
    whole = apply_wal(db, wal)
    assert whole.transactions == 1 and whole.frames >= 1 and whole.ignored is None
    page = int.from_bytes(wal[8:12], "big")
    cut = apply_wal(db, wal[: len(wal) - 1])  # the commit frame is incomplete
    assert cut.transactions == 0 and cut.data == db[:18] + b"\1\1" + db[20:]
    foreign = bytearray(wal)
    foreign[32 + 8] ^= 0xFF  # the first frame's salt-1
    assert apply_wal(db, bytes(foreign)).transactions == 0
    header = bytearray(wal)
    header[24] ^= 0xFF  # the header's checksum: a log SQLite would not use
    assert apply_wal(db, bytes(header)).ignored is not None
    assert len(wal) >= 32 + 24 + page


@pytest.mark.parametrize("damage", ["empty", "garbage"])
def test_a_damaged_log_is_no_crash(cli, dm_root: Path, tmp_path: Path, damage: str) -> None:
    _wal_copy(dm_root, tmp_path / "scratch", "UPDATE edge SET name = 'x'")
    log = dm_root / "linkgraph.db-wal"
    log.write_bytes(b"" if damage == "empty" else bytes(range(256)) * 40)
    result = cli("verify", dm_root, "--format", "json")
    assert result.code in (0, 4) and "Traceback" not in result.stderr
    assert "linkgraph.damaged" not in {f["check"] for f in result.json()["findings"]}


def test_repair_leaves_a_database_with_a_log_alone(cli, dm_root: Path, tmp_path: Path) -> None:
    """Rewriting the file without its log would let SQLite lay the log's stale frames over the
    rewrite: the purge of stale names is skipped, with the reason."""
    _wal_copy(
        dm_root,
        tmp_path / "scratch",
        "INSERT INTO edge (entity_id, parent_id, name) VALUES ('" + "e" * 64 + "', '0', 'ghost')",
    )
    result = cli("repair", dm_root, "--dry-run", "--format", "json")
    assert "Traceback" not in result.stderr
    doc = result.json()
    assert not [a for a in doc["actions"] if a["path"] == "linkgraph.db"]
    assert "write-ahead log" in result.stdout


def _resealed(wal: bytearray) -> bytes:
    """``wal`` with every frame's running checksum recomputed (as a crafted log would be)."""
    from forensics.formats.sqlite_wal import FRAME_SIZE, _checksum

    big = bool(int.from_bytes(wal[0:4], "big") & 1)
    step = FRAME_SIZE + int.from_bytes(wal[8:12], "big")
    s0, s1 = _checksum(bytes(wal[:24]), 0, 0, big)
    for at in range(32, len(wal) - step + 1, step):
        s0, s1 = _checksum(bytes(wal[at : at + 8] + wal[at + 24 : at + step]), s0, s1, big)
        wal[at + 16 : at + 24] = s0.to_bytes(4, "big") + s1.to_bytes(4, "big")
    return bytes(wal)


def test_a_crafted_database_size_is_refused(dm_root: Path, tmp_path: Path) -> None:
    """A commit frame that names a database of 2^31 pages (8 TiB) with valid checksums: the
    log is left out, nothing that size is built."""
    wal = bytearray(_wal_copy(dm_root, tmp_path / "scratch", "UPDATE edge SET name = 'x'"))
    db = (dm_root / "linkgraph.db").read_bytes()
    assert apply_wal(db, _resealed(bytearray(wal))).transactions == 1  # resealing alone is fine
    step = 24 + int.from_bytes(wal[8:12], "big")
    last = 32 + ((len(wal) - 32) // step - 1) * step
    wal[last + 4 : last + 8] = (1 << 31).to_bytes(4, "big")
    result = apply_wal(db, _resealed(wal))
    assert result.transactions == 0 and "past what it holds" in (result.ignored or "")
    assert len(result.data) == len(db)


def test_the_log_of_an_empty_database_file_is_left_out(dm_root: Path, tmp_path: Path) -> None:
    """SQLite deletes the log of an empty database file (pager.c pagerOpenWalIfPresent) and
    sees an empty database: so does the reader, without deleting anything."""
    wal = _wal_copy(dm_root, tmp_path / "scratch", "UPDATE edge SET name = 'x'")
    result = apply_wal(b"", wal)
    assert result.data == b"" and result.transactions == 0 and result.ignored
