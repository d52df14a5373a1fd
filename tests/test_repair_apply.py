"""repair applied: each repairable damage repaired and gone from verify, every step journaled
first, a crash after any journal event completed by a rerun, and --undo byte-identical."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import test_verify_damage as damage
from conftest import copy_tree
from sample_paths import STORE, SamplePaths
from test_repair import (
    ACTIONS_OF_DAMAGE_MANY,
    APP,
    REPAIRABLE,
    REPAIRABLE_IDS,
    damage_many,
    errors,
    only_run,
    quarantine_of,
    remove_link_file_and_symlink,
    repair_process,
    run_repair,
    state_hash,
    verify,
)
from treehash import tree_hash

from forensics.formats.ids import LINK_ID
from forensics.repair.apply import STOP_ENV, StopSwitch
from forensics.repair.journal import read_journal
from forensics.repair.undo import opened_run, quarantine_changes


class SimulatedKill(BaseException):
    """Raised at the stop point: nothing catches it, as nothing survives a SIGKILL."""


@contextmanager
def switch(after: int | None) -> Iterator[StopSwitch]:
    """Make the command's stop switch stop after event ``after`` (None: count only)."""

    def stop() -> None:
        raise SimulatedKill

    made = StopSwitch(after, stop)
    with mock.patch.object(StopSwitch, "from_env", classmethod(lambda cls: made)):
        yield made


def crash_after(root: Path, n: int, *args: str) -> None:
    with switch(n), pytest.raises(SimulatedKill):
        run_repair(root, *args)


def fresh(sample_master: Path, where: Path, truth: dict[str, Any]) -> SamplePaths:
    where.mkdir(parents=True)
    return SamplePaths(copy_tree(sample_master, where / "docker"), truth)


def run_dir_state(root: Path) -> str:
    """The quarantine run's contents, but not its journal and manifest (which hold times and
    paths); the manifest must match what the run holds."""
    run = only_run(root)
    state = read_journal(run / "journal.jsonl")
    if state.ended:
        with opened_run(run.parent, run.name) as run_fd:
            assert quarantine_changes(run_fd, state) == []
    aside = [(p, p.rename(run.parent / f"{p.name}.aside")) for p in run.glob("*.jsonl")]
    try:
        return state_hash(run)
    finally:
        for original, moved in aside:
            moved.rename(original)


@pytest.fixture
def paths(sample_root: Path, truth: dict[str, Any]) -> SamplePaths:
    return SamplePaths(sample_root, truth)


# -- each damage -------------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "check", "action"), REPAIRABLE, ids=REPAIRABLE_IDS)
def test_each_damage_is_repaired_and_undone(
    paths: SamplePaths, make: Callable[[SamplePaths], str], check: str, action: str
) -> None:
    path = make(paths)
    assert any(f["check"] == check for f in verify(paths.root))
    damaged = tree_hash(paths.root)
    result = run_repair(paths.root, "--format", "json")
    assert result.code == 1, result.stdout + result.stderr
    doc = result.json()
    assert doc["applied"] and doc["errors_left"] == 0 and doc["findings_left"] == []
    after = verify(paths.root)
    assert not [f for f in after if f["check"] == check], after
    assert not [f for f in after if f["severity"] in ("error", "warning")], after
    assert not [f for f in after if f["path"] == path or f["path"].startswith(path + "/")]
    undo = run_repair("--undo", doc["journal"])
    assert undo.code == 1, undo.stderr
    assert tree_hash(paths.root) == damaged
    again = run_repair("--undo", doc["journal"])
    assert again.code == 0 and tree_hash(paths.root) == damaged


def test_every_damage_at_once(paths: SamplePaths) -> None:
    made = damage_many(paths)
    before = errors(paths.root)
    damaged = tree_hash(paths.root)
    result = run_repair(paths.root, "--format", "json")
    assert result.code == 1, result.stdout
    doc = result.json()
    assert len(doc["actions"]) == ACTIONS_OF_DAMAGE_MANY
    assert errors(paths.root) == set() and before
    remaining = {f["path"] for f in verify(paths.root)}
    assert not [p for p in made if p in remaining]
    run = Path(doc["quarantine"])
    assert run.parent == quarantine_of(paths.root) and run.name == doc["run"]
    for a in doc["actions"]:  # quarantined with their relative paths
        if a["action"] == "quarantine":
            assert os.path.lexists(run / a["path"]), a["path"]
            assert not os.path.lexists(paths.root / a["path"])
    assert (run / ".staged" / STORE / "repositories.json").exists() is False
    assert (run / STORE / "repositories.json").read_bytes()[:20] == b'{"Repositories":{"sa'
    assert run_repair(paths.root).code == 0, "a second repair finds nothing to do"
    assert run_repair("--undo", doc["journal"]).code == 1
    assert tree_hash(paths.root) == damaged


def test_text_output_of_a_repair(paths: SamplePaths) -> None:
    damage.truncate_config(paths)
    result = run_repair(paths.root)
    assert result.code == 1
    assert "6 actions applied" in result.stdout
    assert "undo with: docker-forensics repair --undo " in result.stdout
    assert "errors left: 0" in result.stdout


def test_errors_left_exit_4(paths: SamplePaths) -> None:
    damage.edit_image_config(paths)  # no repair for this
    result = run_repair(paths.root, "--format", "json")
    assert result.code == 4 and result.json()["actions"] == []
    damage.truncate_config(paths)
    result = run_repair(paths.root, "--format", "json")
    assert result.code == 4
    doc = result.json()
    assert doc["applied"] and doc["errors_left"] == 1
    assert doc["findings_left"][0]["check"] == "image.digest-mismatch"
    assert any(s["check"] == "image.digest-mismatch" for s in doc["skipped"])


def test_custom_quarantine(paths: SamplePaths, tmp_path: Path) -> None:
    damage.add_orphan_overlay2_dir(paths)
    damaged = tree_hash(paths.root)
    q = tmp_path / "elsewhere"
    result = run_repair(paths.root, "--quarantine", q, "--format", "json")
    assert result.code == 1
    journal = Path(result.json()["journal"])
    assert journal.parent.parent == q and not quarantine_of(paths.root).exists()
    assert (journal.parent / "overlay2" / damage.NEW_HEX / "link").is_file()
    assert oct((q).stat().st_mode & 0o777) == "0o700"
    # a quarantine not beside its ROOT says nothing of which ROOT it serves: ROOT is asked for
    unsaid = run_repair("--undo", journal)
    assert unsaid.code == 16 and "give the ROOT it was made for" in unsaid.stderr
    assert tree_hash(paths.root) != damaged
    assert run_repair(paths.root, "--undo", journal).code == 1
    assert tree_hash(paths.root) == damaged


# -- the journal -------------------------------------------------------------------------------


def test_journal_announces_each_step_before_it_is_made(paths: SamplePaths) -> None:
    damage.truncate_config(paths)
    cid = paths.container_id("exited")
    mount = paths.mount_id("exited")
    crash_after(paths.root, 2)  # the start record, then the first step's begin
    journal = only_run(paths.root) / "journal.jsonl"
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [r["record"] for r in records] == ["start", "begin"]
    start = records[0]
    assert start["root"] == str(paths.root) and start["format"] == 1
    layer = os.lstat(paths.root / "overlay2" / mount)
    identity = [layer.st_dev, layer.st_ino]  # the entry planned: the move takes no other
    assert start["steps"][0] == {"n": 1, "op": "move", "path": f"overlay2/{mount}", "action": 0,
                                 "kind": "dir", "identity": identity}  # fmt: skip
    assert [s["path"] for s in start["steps"]][-1] == f"containers/{cid}"
    assert "parent_times" in records[1] and "entry_times" in records[1]
    assert (paths.root / "overlay2" / mount).is_dir(), "announced, not yet made"


def test_journal_is_complete_after_a_run(paths: SamplePaths) -> None:
    damage_many(paths)
    doc = run_repair(paths.root, "--format", "json").json()
    state = read_journal(Path(doc["journal"]))
    assert state.ended and not state.incomplete
    assert state.done == set(range(1, len(state.steps) + 1)) == set(state.begun)
    # the rewrite is three steps, the created link file two
    assert len(state.actions) == ACTIONS_OF_DAMAGE_MANY
    assert len(state.steps) == ACTIONS_OF_DAMAGE_MANY + 3
    lines = Path(doc["journal"]).read_text().splitlines()
    assert all(json.loads(line) for line in lines)


# -- interrupted runs --------------------------------------------------------------------------


def _events(root: Path) -> tuple[int, str, str]:
    """Repair ``root`` uninterrupted: how many journal events it takes, and the states of ROOT
    and of the quarantine run it ends in."""
    with switch(None) as counter:
        assert run_repair(root).code == 1
    return counter.count, state_hash(root), run_dir_state(root)


def test_a_rerun_after_a_crash_at_any_event_completes_the_repair(
    sample_master: Path, tmp_path: Path, truth: dict[str, Any]
) -> None:
    reference = fresh(sample_master, tmp_path / "ref", truth)
    damage_many(reference)
    total, root_state, run_state = _events(reference.root)
    # start, manifest, end, and begin/change/done per step
    assert total == 3 + 3 * (ACTIONS_OF_DAMAGE_MANY + 3)
    for n in range(1, total + 1):
        s = fresh(sample_master, tmp_path / f"n{n}", truth)
        damage_many(s)
        crash_after(s.root, n)
        result = run_repair(s.root, "--format", "json")
        if n < total:
            assert result.code == 1, (n, result.stdout, result.stderr)
            assert result.json()["resumed"] is True
        else:  # killed after its end record: the run was complete
            assert result.code == 0 and result.json()["actions"] == []
        assert state_hash(s.root) == root_state, n
        assert run_dir_state(s.root) == run_state, n
        assert run_repair(s.root).code == 0, n


def test_undo_after_a_crash_at_any_event_restores_the_tree(
    sample_master: Path, tmp_path: Path, truth: dict[str, Any]
) -> None:
    reference = fresh(sample_master, tmp_path / "ref", truth)
    damage_many(reference)
    total, _, _ = _events(reference.root)
    for n in range(1, total + 1):
        s = fresh(sample_master, tmp_path / f"n{n}", truth)
        damage_many(s)
        damaged = tree_hash(s.root)
        crash_after(s.root, n)
        journal = only_run(s.root) / "journal.jsonl"
        result = run_repair("--undo", journal)
        assert result.code in (0, 1), (n, result.stderr)
        assert tree_hash(s.root) == damaged, n


def test_an_interrupted_undo_completes_when_run_again(
    sample_master: Path, tmp_path: Path, truth: dict[str, Any]
) -> None:
    for n in (1, 2, 3, 5, 8, 13, 21, 34):
        s = fresh(sample_master, tmp_path / f"n{n}", truth)
        damage_many(s)
        damaged = tree_hash(s.root)
        journal = run_repair(s.root, "--format", "json").json()["journal"]
        with switch(n), pytest.raises(SimulatedKill):
            run_repair("--undo", journal)
        assert run_repair("--undo", journal).code == 1
        assert tree_hash(s.root) == damaged, n


def test_each_intermediate_state_adds_no_error_outside_the_unit(
    sample_master: Path, tmp_path: Path, truth: dict[str, Any]
) -> None:
    """After any step, the only errors verify has not seen before are about the mount record of
    the container being removed (its directories go first, as dockerd removes them)."""
    reference = fresh(sample_master, tmp_path / "ref", truth)
    damage.truncate_config(reference)
    cid = reference.container_id("with-volume")
    (reference.root / "containers" / cid).rename(tmp_path / "gone")
    total, _, _ = _events(reference.root)
    units = {reference.container_id("exited"), cid}
    allowed = {"mount.driver-dir-missing", "mount.init-dir-missing"}
    for n in range(1, total + 1):
        s = fresh(sample_master, tmp_path / f"n{n}", truth)
        damage.truncate_config(s)
        (s.root / "containers" / cid).rename(tmp_path / f"gone{n}")
        before = {(f["check"], f["path"]) for f in verify(s.root) if f["severity"] == "error"}
        crash_after(s.root, n)
        for f in verify(s.root):
            if f["severity"] != "error" or (f["check"], f["path"]) in before:
                continue
            assert f["check"] in allowed and f["object_id"] in units, (n, f)


def test_sigkill_of_a_real_process_then_rerun(
    sample_master: Path, tmp_path: Path, truth: dict[str, Any]
) -> None:
    reference = fresh(sample_master, tmp_path / "ref", truth)
    damage_many(reference)
    total, root_state, run_state = _events(reference.root)
    for n in (1, total // 2, total - 1):
        s = fresh(sample_master, tmp_path / f"kill{n}", truth)
        damage_many(s)
        proc = repair_process(s.root, env={STOP_ENV: str(n)})
        proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL, n
        rerun = repair_process(s.root, "--format", "json")
        out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 1, err
        assert json.loads(out)["resumed"] is True
        assert state_hash(s.root) == root_state and run_dir_state(s.root) == run_state


def test_sigkill_sent_by_another_process(
    sample_master: Path, tmp_path: Path, truth: dict[str, Any]
) -> None:
    """The repair stops itself (SIGSTOP) after event 30; this test kills it with SIGKILL."""
    reference = fresh(sample_master, tmp_path / "ref", truth)
    damage_many(reference)
    _, root_state, run_state = _events(reference.root)
    s = fresh(sample_master, tmp_path / "victim", truth)
    damage_many(s)
    proc = repair_process(s.root, env={STOP_ENV: "30:stop"})
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status)
    journal = only_run(s.root) / "journal.jsonl"
    assert not read_journal(journal).ended
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    rerun = run_repair(s.root, "--format", "json")
    assert rerun.code == 1 and rerun.json()["resumed"]
    assert state_hash(s.root) == root_state and run_dir_state(s.root) == run_state


# -- undo refusals -----------------------------------------------------------------------------


def test_undo_stops_where_the_path_exists_again(paths: SamplePaths) -> None:
    damage.add_orphan_overlay2_dir(paths)
    journal = run_repair(paths.root, "--format", "json").json()["journal"]
    (paths.root / "overlay2" / damage.NEW_HEX).mkdir()
    result = run_repair("--undo", journal)
    assert result.code == 8 and "exists again in ROOT" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (only_run(paths.root) / "overlay2" / damage.NEW_HEX / "link").is_file()


def test_undo_of_something_that_is_no_journal(tmp_path: Path) -> None:
    bogus = tmp_path / "journal.jsonl"
    bogus.write_text('{"hello": 1}\n')
    result = run_repair("--undo", bogus)
    assert result.code == 8 and "not a docker-forensics repair journal" in result.stderr
    assert run_repair("--undo", tmp_path / "absent.jsonl").code == 8


def test_undo_dry_run_lists_and_changes_nothing(paths: SamplePaths) -> None:
    damage.truncate_config(paths)
    journal = run_repair(paths.root, "--format", "json").json()["journal"]
    repaired = tree_hash(paths.root)
    result = run_repair("--undo", journal, "--dry-run", "--format", "json")
    assert result.code == 0
    doc = result.json()
    assert doc["dry_run"] and len(doc["undo"]) == 6
    assert doc["undo"][0]["path"].startswith("containers/")
    assert tree_hash(paths.root) == repaired
    other = run_repair(paths.root.parent / "other", "--undo", journal)
    assert other.code == 16


def test_link_file_from_the_lower_files_of_its_children(paths: SamplePaths) -> None:
    cache = paths.cache_id(paths.chain(APP)[1])
    link = paths.link(cache)
    remove_link_file_and_symlink(paths)
    result = run_repair(paths.root, "--format", "json")
    assert result.code == 1, result.stdout + result.stderr
    doc = result.json()
    assert [(a["action"], a["path"]) for a in doc["actions"]] == [
        ("create", f"overlay2/{cache}/link"),
        ("relink", f"overlay2/l/{link}"),
    ]
    assert "lower files" in doc["actions"][0]["reason"]
    assert (paths.root / f"overlay2/{cache}/link").read_text() == link
    assert os.readlink(paths.root / f"overlay2/l/{link}") == f"../{cache}/diff"
    assert errors(paths.root) == set()


def test_link_file_of_a_layer_nothing_stacks_on_gets_a_new_id(paths: SamplePaths) -> None:
    overlay = paths.root / "overlay2"
    stacked = {e for p in overlay.glob("*/lower") for e in p.read_text().split(":")}
    cache = next(
        d.name
        for d in sorted(overlay.iterdir())
        if (d / "link").is_file()
        and f"l/{(d / 'link').read_text()}" not in stacked
        and (d / "diff").is_dir()
        and len(d.name) == 64
    )
    old = (overlay / cache / "link").read_text()
    (overlay / cache / "link").unlink()
    (overlay / "l" / old).unlink()
    first = run_repair(paths.root, "--dry-run", "--format", "json").json()
    assert run_repair(paths.root, "--dry-run", "--format", "json").json() == first
    result = run_repair(paths.root, "--format", "json")
    assert result.code == 1, result.stdout + result.stderr
    new = (overlay / cache / "link").read_text()
    assert new != old and LINK_ID.fullmatch(new)
    assert os.readlink(overlay / "l" / new) == f"../{cache}/diff"
    assert errors(paths.root) == set()


def test_the_manifest_hashes_the_quarantine_and_undo_says_what_changed(
    paths: SamplePaths,
) -> None:
    damage.truncate_config(paths)
    cid = paths.container_id("exited")
    doc = run_repair(paths.root, "--format", "json").json()
    manifest = Path(doc["manifest"])
    records = {r["path"]: r for r in map(json.loads, manifest.read_text().splitlines())}
    config = f"containers/{cid}/config.v2.json"
    quarantined = Path(doc["quarantine"]) / config
    assert records[config]["sha256"] == hashlib.sha256(quarantined.read_bytes()).hexdigest()
    assert records[f"containers/{cid}"]["type"] == "dir"
    assert all(os.path.lexists(Path(doc["quarantine"]) / p) for p in records)
    state = read_journal(Path(doc["journal"]))
    assert state.manifest_sha256 == hashlib.sha256(manifest.read_bytes()).hexdigest()

    quarantined.write_bytes(b"{}")  # the quarantine is tampered with
    preview = run_repair("--undo", doc["journal"], "--dry-run", "--format", "json")
    assert preview.json()["quarantine_changed"] == [f"{config}: mtime_ns, sha256, size changed"]
    undo = run_repair("--undo", doc["journal"], "--format", "json")
    assert undo.code == 1 and undo.json()["quarantine_changed"]
    assert "the quarantine changed since the repair" in undo.stderr and config in undo.stderr
