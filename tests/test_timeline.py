"""docker-forensics timeline: the times of the real-daemon sample against what that daemon
reported (its truth file), the legacy stores, the output forms, and hostile logs."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import LAYOUT_EXAMPLES, copy_tree
from hypothesis import given, settings
from hypothesis import strategies as st

from forensics.timeline import utc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28T01:14:45.123456789Z", "2026-11-28T01:14:45.123456789Z"),
        ("2026-11-28T01:14:45.01103789Z", "2026-11-28T01:14:45.011037890Z"),  # Go trims zeros
        ("2026-11-28T01:14:45Z", "2026-11-28T01:14:45.000000000Z"),
        ("2015-10-13T04:16:40.418337615+02:00", "2015-10-13T02:16:40.418337615Z"),
        ("2015-10-12T23:16:40.5-03:00", "2015-10-13T02:16:40.500000000Z"),
        ("0001-01-01T00:00:00Z", None),  # Go's zero time: never happened
        ("yesterday", None),
        ("2026-13-40T99:00:00Z", None),
        (12, None),
    ],
)
def test_times_in_utc_with_nine_digits(text: Any, expected: str | None) -> None:
    assert utc(text) == expected


def _events(cli: Any, root: Path, *args: str) -> list[dict[str, Any]]:
    result = cli("timeline", root, "--format", "jsonl", *args)
    assert result.code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _at(events: list[dict[str, Any]], desc: str, oid: str) -> list[str]:
    return [e["datetime"] for e in events if e["timestamp_desc"] == desc and e["object_id"] == oid]


def test_container_times_are_the_daemons(cli: Any, sample_master: Path, truth: dict) -> None:
    events = _events(cli, sample_master)
    for c in truth["inspect_containers"]:
        state = c["State"]
        assert _at(events, "Container created", c["Id"]) == [utc(c["Created"])]
        started = utc(state["StartedAt"])
        assert _at(events, "Container started", c["Id"]) == ([started] if started else [])
        finished = utc(state["FinishedAt"])
        assert _at(events, "Container finished", c["Id"]) == ([finished] if finished else [])
        if finished:
            (message,) = [
                e["message"]
                for e in events
                if e["timestamp_desc"] == "Container finished" and e["object_id"] == c["Id"]
            ]
            assert message.endswith(f", exit code {state['ExitCode']}")


def test_image_times_and_build_steps_are_the_daemons(
    cli: Any, sample_master: Path, truth: dict
) -> None:
    events = _events(cli, sample_master)
    for image in truth["inspect_images"]:
        assert _at(events, "Image created", image["Id"]) == [utc(image["Created"])]
        tagged = utc(image["Metadata"]["LastTagTime"])
        assert _at(events, "Image last tagged", image["Id"]) == ([tagged] if tagged else [])
    steps = {
        (e["datetime"][:19], e["message"])
        for e in events
        if e["timestamp_desc"] == "Image build step"
    }
    expected = {
        (h["CreatedAt"][:19], h["CreatedBy"] or h["Comment"])
        for history in truth["history"].values()
        for h in history
        if h["CreatedBy"] or h["Comment"]
    }
    # docker history prints seconds; "(no layer)" marks the steps that made no layer
    assert {(when, text.removesuffix(" (no layer)")) for when, text in steps} == expected
    assert len(steps) == len(expected), "each step once, not once per image that repeats it"
    # told as the image that made it: of those whose history holds it, the shortest history
    for e in (e for e in events if e["timestamp_desc"] == "Image build step"):
        text = e["message"].removesuffix(" (no layer)")
        holders = [
            (len(history), image_id)
            for image_id, history in truth["history"].items()
            if any((h["CreatedBy"] or h["Comment"]) == text for h in history)
        ]
        assert e["object_id"] == min(holders)[1], text


def test_first_and_last_log_lines(cli: Any, sample_master: Path, truth: dict) -> None:
    events = _events(cli, sample_master)
    logged = 0
    for c in truth["inspect_containers"]:
        log = sample_master / "containers" / c["Id"] / f"{c['Id']}-json.log"
        lines = [json.loads(x) for x in log.read_bytes().splitlines()] if log.exists() else []
        if not lines:
            assert not _at(events, "Container log first line", c["Id"])
            continue
        logged += 1
        for desc, line in (
            ("Container log first line", lines[0]),
            ("Container log last line", lines[-1]),
        ):
            (event,) = [
                e for e in events if e["timestamp_desc"] == desc and e["object_id"] == c["Id"]
            ]
            assert event["datetime"] == utc(line["time"])
            assert event["message"].endswith(f"{line['stream']}: {line['log'].rstrip()}")
    assert logged, "the sample has containers that logged"


def test_forms_and_determinism(cli: Any, sample_master: Path) -> None:
    jsonl = cli("timeline", sample_master, "--format", "jsonl")
    assert jsonl.stdout == cli("timeline", sample_master, "--format", "jsonl").stdout
    events = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert events == sorted(
        events, key=lambda e: (e["datetime"], e["timestamp_desc"], e["message"])
    )
    for e in events:
        assert {"message", "datetime", "timestamp_desc", "timestamp", "path"} <= e.keys()
        assert e["timestamp"] // 1_000_000 == int(
            __import__("datetime").datetime.fromisoformat(e["datetime"][:19] + "+00:00").timestamp()
        )
        assert not e["path"].startswith("/")
    rows = list(
        csv.DictReader(io.StringIO(cli("timeline", sample_master, "--format", "csv").stdout))
    )
    assert [r["message"] for r in rows] == [e["message"] for e in events]
    text = cli("timeline", sample_master).stdout.splitlines()
    assert text[-1] == f"{len(events)} events" and len(text) == len(events) + 1
    recorded = _events(cli, sample_master, "--no-file-times")
    assert recorded == [e for e in events if not e["timestamp_desc"].endswith("(mtime)")]
    assert len(recorded) < len(events)


def test_verify_sqlite_holds_the_same_timeline(
    cli: Any, sample_master: Path, tmp_path: Path
) -> None:
    db = tmp_path / "case.db"
    assert cli("verify", sample_master, "--sqlite", db).code == 0
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT datetime, timestamp_desc, message FROM timeline ORDER BY id"
        ).fetchall()
    events = _events(cli, sample_master)
    assert rows == [(e["datetime"], e["timestamp_desc"], e["message"]) for e in events]


def test_legacy_and_migrated_stores(cli: Any, dm_master: Path, tmp_path: Path) -> None:
    events = _events(cli, dm_master, "--no-file-times")
    created = [e for e in events if e["timestamp_desc"] == "Legacy image created"]
    graph = sorted(p.name for p in (dm_master / "graph").iterdir() if len(p.name) == 64)
    assert sorted(e["object_id"] for e in created) == graph
    assert any(e["timestamp_desc"] == "Container started" for e in events)
    root = copy_tree(LAYOUT_EXAMPLES / "legacy_1.9.1_aufs", tmp_path / "docker")
    additions = LAYOUT_EXAMPLES / "legacy_1.9.1_aufs_after_1.10_migration_additions"
    subprocess.run(["cp", "-a", f"{additions}/.", str(root)], check=True)
    kinds = {e["timestamp_desc"] for e in _events(cli, root)}
    assert {"Legacy image created", "Image created"} <= kinds, "both stores of a migrated root"


def test_hostile_logs(cli: Any, sample_root: Path, truth: dict, tmp_path: Path) -> None:
    ids = [c["Id"] for c in truth["inspect_containers"]]
    fifo, link, big = ids[:3]
    for cid in ids[:3]:
        (sample_root / "containers" / cid / f"{cid}-json.log").unlink(missing_ok=True)
    os.mkfifo(sample_root / "containers" / fifo / f"{fifo}-json.log")
    outside = tmp_path / "outside.log"
    outside.write_text('{"log":"DECOY\\n","stream":"stdout","time":"2020-01-01T00:00:00Z"}\n')
    os.symlink(outside, sample_root / "containers" / link / f"{link}-json.log")
    first = '{"log":"first\\n","stream":"stdout","time":"2026-01-01T00:00:00.5Z"}\n'
    last = '{"log":"last\\n","stream":"stderr","time":"2026-01-02T00:00:00Z"}\n'
    with open(sample_root / "containers" / big / f"{big}-json.log", "w") as f:
        f.write(first)
        f.truncate(1 << 30)  # 1 GiB, sparse: only its two ends are read
        f.seek(1 << 30)
        f.write('":"half a line"}\n' + last)
    events = _events(cli, sample_root)
    assert not [e for e in events if "DECOY" in e["message"]]
    assert not _at(events, "Container log first line", fifo)
    assert _at(events, "Container log first line", big) == ["2026-01-01T00:00:00.500000000Z"]
    assert _at(events, "Container log last line", big) == ["2026-01-02T00:00:00.000000000Z"]


def test_empty_and_missing_roots(cli: Any, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("timeline", empty)
    assert (result.code, result.stdout) == (8, "")
    assert "not a Docker root" in result.stderr
    assert cli("timeline", tmp_path / "nowhere").code == 8


_TIMES = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,12})?(Z|[+-]\d\d:\d\d)"


@settings(max_examples=500)
@given(st.one_of(st.text(max_size=40), st.from_regex(_TIMES, fullmatch=True)))
def test_any_text_is_a_utc_time_or_none(text: str) -> None:
    when = utc(text)
    assert when is None or (len(when) == 30 and when.endswith("Z") and when[19] == ".")
