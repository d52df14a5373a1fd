"""repair of a container whose config names another ID than its directory: the ID set back
(every other byte kept, the original quarantined) when everything else that names the
container agrees with its directory; otherwise the container quarantined whole."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sample_paths import STORE, SamplePaths
from test_repair import dry_run, errors, flip_config_id, run_repair, verify
from treehash import tree_hash

from forensics.repair.jsonedit import NotEditable, read_member_value, replace_member_value


@pytest.fixture
def paths(sample_root: Path, truth: dict[str, Any]) -> SamplePaths:
    return SamplePaths(sample_root, truth)


@pytest.mark.parametrize("name", ["created", "exited"])
def test_the_id_is_set_back_and_every_other_byte_kept(paths: SamplePaths, name: str) -> None:
    """ "created" was never started (no log path, no log file); "exited" has both."""
    cid = paths.container_id(name)
    config = paths.path(f"containers/{cid}/config.v2.json")
    original = config.read_bytes()
    flip_config_id(paths, name)
    damaged_config, damaged = config.read_bytes(), tree_hash(paths.root)
    plan = dry_run(paths.root)
    (action,) = plan["actions"]
    assert action["action"] == "rewrite" and action["unit"] == f"container {cid}"
    assert action["details"] == {"was": json.dumps(cid[::-1]), "now": cid}
    result = run_repair(paths.root, "--format", "json")
    assert result.code == 1, result.stdout + result.stderr
    assert config.read_bytes() == original, "only the ID changed back"
    kept = Path(result.json()["quarantine"]) / f"containers/{cid}/config.v2.json"
    assert kept.read_bytes() == damaged_config, "the original is kept in the quarantine"
    assert errors(paths.root) == set()
    assert run_repair("--undo", result.json()["journal"]).code == 1
    assert tree_hash(paths.root) == damaged


def _copy_of_another_config(s: SamplePaths) -> None:
    """The config of "exited" copied over that of "created": its ID and paths name another
    container that exists."""
    src = s.path(f"containers/{s.container_id('exited')}/config.v2.json")
    shutil.copyfile(src, s.path(f"containers/{s.container_id('created')}/config.v2.json"))


def _log_path_names_the_other_id(s: SamplePaths) -> None:
    cid = s.container_id("exited")
    rel = f"containers/{cid}/config.v2.json"
    flip_config_id(s, "exited")
    config = json.loads(s.path(rel).read_bytes())
    path = config["LogPath"].replace(cid, cid[::-1])
    data = s.path(rel).read_bytes().replace(json.dumps(config["LogPath"]).encode(),
                                             json.dumps(path).encode())  # fmt: skip
    s.path(rel).write_bytes(data)


def _log_path_in_lower_case_names_the_other_id(s: SamplePaths) -> None:
    """As above, under the key ``logpath``: Go's decoder matches keys regardless of case, so
    dockerd reads it as the LogPath."""
    _log_path_names_the_other_id(s)
    rel = f"containers/{s.container_id('exited')}/config.v2.json"
    s.path(rel).write_bytes(s.path(rel).read_bytes().replace(b'"LogPath":', b'"logpath":', 1))


def _no_mount_record(s: SamplePaths) -> None:
    flip_config_id(s)
    shutil.rmtree(s.path(f"{STORE}/layerdb/mounts/{s.container_id('created')}"))


def _log_file_of_another(s: SamplePaths) -> None:
    cid = s.container_id("created")
    flip_config_id(s)
    log = s.path(f"containers/{cid}/{cid}-json.log")
    if not log.exists():
        log.write_bytes(b"")
    log.rename(s.path(f"containers/{cid}/{cid[::-1]}-json.log"))


def _rw_layer_gone(s: SamplePaths) -> None:
    flip_config_id(s)
    shutil.rmtree(s.path(f"overlay2/{s.mount_id('created')}"))


DISAGREEING: list[tuple[Callable[[SamplePaths], None], str]] = [
    (_copy_of_another_config, "which has a directory or a mount record"),
    (_log_path_names_the_other_id, "its LogPath names"),
    (_log_path_in_lower_case_names_the_other_id, "its LogPath names"),
    (_no_mount_record, "its mount record is missing"),
    (_log_file_of_another, "holds the log file of"),
    (_rw_layer_gone, "mount-id names is missing"),
]


@pytest.mark.parametrize(("make", "words"), DISAGREEING, ids=[d[0].__name__ for d in DISAGREEING])
def test_without_agreeing_evidence_the_container_is_quarantined_whole(
    paths: SamplePaths, make: Callable[[SamplePaths], None], words: str
) -> None:
    before = {c: paths.path(f"containers/{c}").exists() for c in _ids(paths)}
    make(paths)
    (cid,) = [f["object_id"] for f in verify(paths.root) if f["check"] == "container.id-mismatch"]
    assert before[cid]
    damaged = tree_hash(paths.root)
    plan = dry_run(paths.root)
    mine = [a for a in plan["actions"] if a["unit"] == f"container {cid}"]
    assert not [a for a in mine if a["action"] == "rewrite"], mine
    (whole,) = [a for a in mine if a["path"] == f"containers/{cid}"]
    assert whole["action"] == "quarantine" and "container.id-mismatch" in whole["checks"]
    assert words in whole["safety"], whole["safety"]
    result = run_repair(paths.root, "--format", "json")
    assert result.code == 1, result.stdout + result.stderr
    assert not os.path.lexists(paths.path(f"containers/{cid}"))
    assert not [f for f in verify(paths.root) if f["object_id"] == cid]
    assert run_repair("--undo", result.json()["journal"]).code == 1
    assert tree_hash(paths.root) == damaged


def _ids(s: SamplePaths) -> list[str]:
    return [c["Id"] for c in s.truth["inspect_containers"]]


# -- the edit in place ---------------------------------------------------------------------------


def test_only_the_top_level_member_go_reads_is_replaced() -> None:
    doc = b'{"A": {"ID": "nested"},\n  "ID" : "old", "id": 7, "z": [1e400, "\\u00e9"]}'
    new, old = replace_member_value(doc, "ID", "new")
    assert old == "7", "Go takes the last member whose key matches, whatever its case"
    assert new == b'{"A": {"ID": "nested"},\n  "ID" : "old", "id": "new", "z": [1e400, "\\u00e9"]}'
    assert read_member_value(new, "ID") == "new"
    escaped = b'{"\\u0049D":"x","Name":"/n"}'  # a key spelled with an escape is the same key
    assert replace_member_value(escaped, "ID", "y")[0] == b'{"\\u0049D":"y","Name":"/n"}'


def test_bytes_that_are_not_utf8_are_kept() -> None:
    doc = b'{"Name":"caf\xe9","ID":"a","Path":"\xff\xfe"}'
    new, _ = replace_member_value(doc, "ID", "b")
    assert new == b'{"Name":"caf\xe9","ID":"b","Path":"\xff\xfe"}'


@pytest.mark.parametrize(
    "doc", [b"[]", b'{"Name":"x"}', b'{"ID":"a"', b'{"ID":"a"} trailing', b'{"ID" "a"}', b""]
)
def test_what_cannot_be_edited_in_place_says_so(doc: bytes) -> None:
    with pytest.raises(NotEditable):
        replace_member_value(doc, "ID", "b")
