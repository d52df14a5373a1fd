"""Names of removed containers taken out of a legacy ``linkgraph.db``, as dockerd 1.x's
``containerGraph.Purge`` does: every edge naming the container or hanging under it, and its
entity row.

The database is changed in memory only (``sqlite3`` deserialize / serialize): SQLite never opens
the file in ROOT, so no journal appears beside it; the new bytes are put in place by the
repair's rewrite step, the original quarantined.
"""

from __future__ import annotations

import sqlite3

from forensics.errors import OperationalError


class LinkgraphError(OperationalError):
    """The database cannot be changed safely."""


def purge_entities(data: bytes, entities: set[str]) -> tuple[bytes, list[tuple[str, str, str]]]:
    """``data`` without the edges and entity rows of ``entities``; also the edges removed
    (entity, parent, name)."""
    db = sqlite3.connect(":memory:")
    db.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
    try:
        db.deserialize(data)
        _check_integrity(db, "is damaged")
        # ids read from a damaged database keep their bytes that are not UTF-8 as surrogates
        # (the text factory above): bound as their raw bytes and cast back to TEXT, they match
        # the rows they came from, where a str parameter could not even be encoded
        ids = [e.encode("utf-8", "surrogateescape") for e in sorted(entities)]
        marks = ",".join(["CAST(? AS TEXT)"] * len(ids))
        removed = db.execute(
            f"SELECT entity_id, parent_id, name FROM edge "  # noqa: S608 (placeholders only)
            f"WHERE entity_id IN ({marks}) OR parent_id IN ({marks}) ORDER BY parent_id, name",
            ids + ids,
        ).fetchall()
        db.execute(f"DELETE FROM edge WHERE entity_id IN ({marks}) OR parent_id IN ({marks})",
                   ids + ids)  # fmt: skip
        db.execute(f"DELETE FROM entity WHERE id IN ({marks})", ids)
        db.commit()
        _check_integrity(db, "would be damaged by the change")
        return db.serialize(), [(str(e), str(p), str(n)) for e, p, n in removed]
    except (sqlite3.Error, MemoryError, UnicodeDecodeError) as exc:
        raise LinkgraphError(f"cannot be changed: {exc}") from None
    finally:
        db.close()


def _check_integrity(db: sqlite3.Connection, what: str) -> None:
    if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
        raise LinkgraphError(f"{what} (SQLite's integrity check fails)")
