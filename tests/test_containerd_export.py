"""The containerd store in ``verify --sqlite`` and in ``timeline``, on the containerd-store
sample, held against what ``ctr`` listed (samples/containerd-store.truth.json)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from forensics.timeline import utc

KINDS = {"View": "view", "Active": "active", "Committed": "committed"}


def test_sqlite_holds_the_store(
    cli, containerd_master: Path, containerd_truth: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "case.db"
    assert cli("verify", containerd_master, "--sqlite", out).code == 0
    db = sqlite3.connect(out)
    try:
        images = set(db.execute("SELECT namespace, name, digest FROM containerd_images"))
        snapshots = set(
            db.execute("SELECT namespace, snapshot_key, kind, parent FROM containerd_snapshots")
        )
        containers = set(db.execute("SELECT namespace, id FROM containerd_containers"))
        leases = set(db.execute("SELECT namespace, id FROM containerd_leases"))
        (total,) = db.execute("SELECT total_size FROM containerd_store").fetchone()
        (usage,) = db.execute("SELECT sum(size) FROM containerd_usage").fetchone()
        checks = {row[0] for row in db.execute("SELECT check_id FROM findings")}
        layers = db.execute(
            "SELECT count(*) FROM containerd_image_layers WHERE namespace = 'moby' "
            "AND name = 'docker.io/sample/app:1.0'"
        ).fetchone()[0]
    finally:
        db.close()
    truth = containerd_truth["namespaces"]
    assert images == {(ns, i["name"], i["digest"]) for ns, t in truth.items() for i in t["images"]}
    assert snapshots == {
        (ns, s["key"], KINDS[s["kind"]], s["parent"] or None)
        for ns, t in truth.items()
        for s in t["snapshots"]
    }
    assert containers == {(ns, c["ID"]) for ns, t in truth.items() for c in t["containers"]}
    assert leases == {(ns, lease["id"]) for ns, t in truth.items() for lease in t["leases"]}
    assert total == usage > 0
    assert "containerd.ingest-in-progress" in checks
    assert layers == 4


def test_timeline_holds_the_store_times(
    cli, containerd_master: Path, containerd_truth: dict[str, Any]
) -> None:
    result = cli("timeline", containerd_master, "--format", "jsonl", "--no-file-times")
    assert result.code == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["datetime"] for e in events] == sorted(e["datetime"] for e in events)
    seen = {(e["object_type"], e["object_id"], e["timestamp_desc"]): e for e in events}
    for ns, t in containerd_truth["namespaces"].items():
        for image in t["images"]:
            assert ("containerd-image", f"{ns}/{image['name']}", "Image record created") in seen
            assert ("containerd-image", f"{ns}/{image['name']}", "Image created") in seen
        for c in t["containers"]:
            event = seen[("containerd-container", f"{ns}/{c['ID']}", "Container record created")]
            assert event["datetime"] == utc(c["CreatedAt"])
        for s in t["snapshots"]:
            event = seen[("snapshot", f"{ns}/overlayfs/{s['key']}", "Snapshot created")]
            assert event["datetime"] == utc(s["info"]["Created"])
            assert event["path"] == "containerd/daemon/io.containerd.metadata.v1.bolt/meta.db"
        for lease in t["leases"]:
            assert ("lease", f"{ns}/{lease['id']}", "Lease created") in seen
    started = [e for e in events if e["timestamp_desc"] == "Download started"]
    assert [e["object_id"] for e in started] == ["moby/1/interrupted-upload"]
    assert started[0]["path"].endswith("/startedat")
