"""repair --undo trusts no journal: it is opened without following a link, never blocks, is
size-capped, validated whole before anything moves, and its moves stay in the ROOT and the
quarantine it lies in — whatever root the journal names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import test_verify_damage as damage
from peak import measure
from sample_paths import SamplePaths
from test_repair import BOOTSTRAP, quarantine_of, repair_process, run_repair
from treehash import tree_hash


@pytest.fixture
def paths(sample_root: Path, truth: dict[str, Any]) -> SamplePaths:
    return SamplePaths(sample_root, truth)


@pytest.fixture
def repaired(paths: SamplePaths) -> tuple[SamplePaths, Path, str]:
    """A repair of a broken container (6 moves): the root, its journal, the state after."""
    damage.truncate_config(paths)
    result = run_repair(paths.root, "--format", "json")
    assert result.code == 1, result.stderr
    return paths, Path(result.json()["journal"]), tree_hash(paths.root)


def records(journal: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in journal.read_text().splitlines()]


def rewrite(journal: Path, change: Callable[[list[dict[str, Any]]], None]) -> None:
    recs = records(journal)
    change(recs)
    journal.write_text("".join(json.dumps(r) + "\n" for r in recs))


def refused(result: Any, words: str, code: int = 8) -> None:
    """Refused with ``code`` and one line saying why (a usage error: click's usage lines, then
    that line)."""
    assert result.code == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 or code == 16, lines
    assert words in lines[-1], lines
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


def test_a_journal_naming_another_root_moves_nothing(
    repaired: tuple[SamplePaths, Path, str], tmp_path: Path
) -> None:
    """The start record rewritten to name a decoy standing in for /etc: the undo would move
    the quarantined entries into it. Refused: the journal lies beside another root."""
    paths, journal, after = repaired
    decoy = tmp_path / "etc"
    for sub in ("overlay2", "containers", "image/overlay2/layerdb/mounts"):
        (decoy / sub).mkdir(parents=True)
    (decoy / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    decoy_hash = tree_hash(decoy)
    rewrite(journal, lambda recs: recs[0].update(root=str(decoy)))
    refused(run_repair("--undo", journal), f"names the root {decoy}")
    refused(run_repair("--undo", journal, "--dry-run"), "but lies in the quarantine of")
    refused(run_repair(decoy, "--undo", journal), f"names the root {decoy}")
    assert tree_hash(decoy) == decoy_hash and tree_hash(paths.root) == after


def test_a_journal_in_a_quarantine_of_another_name_needs_its_root(
    paths: SamplePaths, tmp_path: Path
) -> None:
    damage.add_orphan_overlay2_dir(paths)
    damaged = tree_hash(paths.root)
    q = tmp_path / "case-7"
    journal = run_repair(paths.root, "--quarantine", q, "--format", "json").json()["journal"]
    rewrite(Path(journal), lambda recs: recs[0].update(root=str(tmp_path / "etc")))
    refused(run_repair("--undo", journal), "give the ROOT it was made for", code=16)
    refused(run_repair(paths.root, "--undo", journal), "not", code=16)
    assert tree_hash(paths.root) != damaged
    rewrite(Path(journal), lambda recs: recs[0].update(root=str(paths.root)))
    assert run_repair(paths.root, "--undo", journal).code == 1
    assert tree_hash(paths.root) == damaged


def test_a_quarantine_named_like_another_roots_is_refused(paths: SamplePaths) -> None:
    other = paths.root.parent / "other.quarantine"
    refused(run_repair(paths.root, "--quarantine", other), "must be", code=16)
    assert not other.exists()


def test_a_journal_that_is_a_symlink_is_not_read_through(
    repaired: tuple[SamplePaths, Path, str], tmp_path: Path
) -> None:
    paths, journal, after = repaired
    elsewhere = tmp_path / "journal-elsewhere.jsonl"
    journal.rename(elsewhere)
    os.symlink(elsewhere, journal)
    refused(run_repair("--undo", journal), "symlink")
    assert tree_hash(paths.root) == after
    journal.unlink()
    elsewhere.rename(journal)
    run = journal.parent
    os.symlink(run, tmp_path / "via")  # a symlink on the way to it is not followed either
    refused(run_repair("--undo", tmp_path / "via" / "journal.jsonl"), "a symlink")
    assert tree_hash(paths.root) == after


def test_a_journal_that_is_a_fifo_does_not_hang(repaired: tuple[SamplePaths, Path, str]) -> None:
    paths, journal, after = repaired
    journal.unlink()
    os.mkfifo(journal)
    proc = repair_process("--undo", journal)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("repair --undo hangs on a FIFO")
    assert proc.returncode == 8 and "not a regular file" in err, err
    assert tree_hash(paths.root) == after


def _max_rss_of(*args: str | os.PathLike[str]) -> tuple[int, str, int]:
    """Run ``repair ARGS`` as its own process: its exit status, stderr and peak RSS in MiB
    (measured as tests/peak.py says)."""
    run = measure([sys.executable, "-c", BOOTSTRAP, "repair", *args], timeout=120)
    assert not run.killed
    return run.code, run.stderr, run.peak_mib


def test_a_huge_journal_is_refused_and_blank_lines_cost_nothing(
    repaired: tuple[SamplePaths, Path, str],
) -> None:
    paths, journal, after = repaired
    original = journal.read_bytes()
    journal.write_bytes(original + b"\n" * (200 << 20))
    code, err, _ = _max_rss_of("--undo", journal)
    assert code == 8 and "larger than 64 MiB" in err, err
    assert tree_hash(paths.root) == after
    journal.write_bytes(original + b"\n" * (60 << 20))  # under the cap: read, lines not kept
    code, err, rss = _max_rss_of("--undo", journal)
    assert code == 1, err
    assert rss < 200, f"peak RSS {rss} MiB for a 60 MiB journal"


#: journals broken in the ways a crash never breaks them, each with the words that refuse it
BROKEN: list[tuple[str, Callable[[list[dict[str, Any]]], None], str]] = [
    ("no steps", lambda r: r[0].pop("steps"), "steps is not a list"),
    ("steps not a list", lambda r: r[0].update(steps={"1": {}}), "steps is not a list"),
    ("a step of the wrong type", lambda r: r[0]["steps"].__setitem__(2, "move"), "no object"),
    ("n as a string", lambda r: r[0]["steps"][0].update(n="1"), "n is not 1"),
    ("an unknown op", lambda r: r[0]["steps"][0].update(op="unlink"), "unknown op"),
    ("a path out of ROOT", lambda r: r[0]["steps"][-1].update(path="../../etc"), "plain"),
    ("an absolute path", lambda r: r[0]["steps"][-1].update(path="/etc/passwd"), "plain"),
    ("a path of the wrong type", lambda r: r[0]["steps"][-1].update(path=["a"]), "plain"),
    ("a move without a kind", lambda r: r[0]["steps"][-1].pop("kind"), "without a kind"),
    ("no root", lambda r: r[0].pop("root"), "root is not an absolute path"),
    ("another run", lambda r: r[0].update(run="20990101T000000Z-000000"), "names run"),
    ("actions not a list", lambda r: r[0].update(actions=None), "actions is not a list"),
    ("a begin out of range", lambda r: r[1].update(step=99), "out of range"),
    ("times of the wrong type", lambda r: r[1].update(parent_times="now"), "two integers"),
    ("an unknown record", lambda r: r.append({"record": "rm -rf"}), "unknown record"),
    ("a record that is a list", lambda r: r.append([1, 2]), "no JSON object"),  # type: ignore[arg-type]
    ("format 2", lambda r: r[0].update(format=2), "journal format 2"),
]


@pytest.mark.parametrize(("what", "change", "words"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_journal_is_refused_whole_before_any_move(
    repaired: tuple[SamplePaths, Path, str],
    what: str,
    change: Callable[[list[dict[str, Any]]], None],
    words: str,
) -> None:
    paths, journal, after = repaired
    rewrite(journal, change)
    for args in (("--undo", journal), ("--undo", journal, "--dry-run")):
        refused(run_repair(*args), words)
    assert tree_hash(paths.root) == after, "nothing moved"


def test_a_broken_journal_of_an_interrupted_run_is_not_resumed(paths: SamplePaths) -> None:
    """The journals a repair finds in its quarantine are validated too: a broken one is not
    taken for an interrupted run."""
    damage.add_orphan_overlay2_dir(paths)
    journal = Path(run_repair(paths.root, "--format", "json").json()["journal"])
    undo = run_repair("--undo", journal)
    assert undo.code == 1
    rewrite(journal, lambda recs: [recs.pop() for _ in range(len(recs) - 1)])  # start only
    rewrite(journal, lambda recs: recs[0]["steps"][0].update(path="../outside"))
    damaged = tree_hash(paths.root)
    result = run_repair(paths.root, "--format", "json")
    assert result.code == 1 and result.json()["resumed"] is False, result.stderr
    assert tree_hash(paths.root) != damaged
    assert not (paths.root.parent / "outside").exists()


def test_a_journal_of_another_user_is_refused(repaired: tuple[SamplePaths, Path, str]) -> None:
    paths, journal, after = repaired
    if os.geteuid() != 0:
        pytest.skip("only root can give a file away")
    os.chown(journal, 12345, 12345)
    refused(run_repair("--undo", journal), "owned by uid 12345")
    run_dir = journal.parent
    os.chown(journal, 0, 0)
    run_dir.chmod(0o777)
    refused(run_repair("--undo", journal), "writable by others")
    assert tree_hash(paths.root) == after


def test_a_journal_is_named_so(repaired: tuple[SamplePaths, Path, str]) -> None:
    paths, journal, after = repaired
    copy = journal.with_name("copy.jsonl")
    copy.write_bytes(journal.read_bytes())
    refused(run_repair("--undo", copy), "is named journal.jsonl")
    assert tree_hash(paths.root) == after
    assert quarantine_of(paths.root).is_dir()
