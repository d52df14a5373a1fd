"""The verbs called as a library (forensics.api), as a program or a test calls them: typed
results, the library's errors raised (never an exit), and the same results the command line
renders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from sample_paths import SamplePaths
from treehash import tree_hash

from forensics.api import diff as diff_api
from forensics.api import inventory as inventory_api
from forensics.api import repair as repair_api
from forensics.api import thin as thin_api
from forensics.api import timeline as timeline_api
from forensics.api import verify as verify_api
from forensics.errors import NotFound, OperationalError, UsageError
from forensics.exitstatus import EXIT_ERRORS, EXIT_OK, EXIT_REPAIRED
from forensics.jsonstream import json_chunks
from forensics.report import Finding

ORPHAN = "e" * 64


def test_verify_returns_the_findings_the_command_prints(sample_master: Path) -> None:
    result = verify_api.verify(str(sample_master))
    assert isinstance(result, verify_api.VerifyResult)
    assert all(isinstance(f, Finding) for f in result.findings)
    assert result.status == EXIT_OK and result.counts["error"] == 0
    printed = run_cli("verify", sample_master, "--format", "json")
    assert printed.code == result.status
    assert "".join(json_chunks(result.document(result.findings))) == printed.stdout


def test_verify_of_a_damaged_root_counts_its_errors(sample_root: Path) -> None:
    (sample_root / "overlay2" / ORPHAN / "diff").mkdir(parents=True)
    result = verify_api.verify(str(sample_root), advise=True)
    orphans = [f for f in result.findings if f.check == "driver.orphan-dir"]
    assert [f.object_id for f in orphans] == [ORPHAN]
    assert result.status == EXIT_ERRORS and result.counts["error"] == 1
    assert result.fixable == 1  # the planner's own count: the orphan is quarantined


def test_a_root_that_is_none_is_an_operational_error(tmp_path: Path) -> None:
    with pytest.raises(OperationalError, match="no such file or directory"):
        verify_api.verify(str(tmp_path / "file"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(OperationalError, match="not a directory"):
        inventory_api.inventory(str(tmp_path / "file"))


def test_inventory_finds_a_container_as_docker_does(
    sample_master: Path, truth: dict[str, Any]
) -> None:
    cid = SamplePaths(sample_master, truth).container_id("exited")
    found = inventory_api.inventory(str(sample_master), container=cid[:12])
    assert found.container is not None and found.container.id == cid
    assert cid in found.host.containers
    with pytest.raises(NotFound, match="No such container: nosuch"):
        inventory_api.inventory(str(sample_master), container="nosuch")


def test_inventory_document_is_what_the_command_prints(sample_master: Path) -> None:
    found = inventory_api.inventory(str(sample_master))
    printed = json.loads(run_cli("inventory", sample_master, "--format", "json").stdout)
    assert found.evidence is None and "evidence" not in printed
    assert json.loads("".join(json_chunks(found.document(), floats=False))) == printed


def test_a_container_argument_that_names_a_path(tmp_path: Path) -> None:
    """ROOT given in CONTAINER's place, told apart from containerd's ``<namespace>/<id>``."""
    (tmp_path / "moby").mkdir()
    assert diff_api.names_a_path(".") and diff_api.names_a_path("/var/lib/docker")
    assert diff_api.names_a_path(str(tmp_path / "moby"))
    assert not diff_api.names_a_path("web") and not diff_api.names_a_path("/web")
    assert not diff_api.names_a_path("moby/0123abc")  # no such path: containerd's container


def test_diff_and_timeline_return_what_the_commands_render(
    sample_master: Path, truth: dict[str, Any]
) -> None:
    cid = SamplePaths(sample_master, truth).container_id("exited")
    changes = diff_api.diff(str(sample_master), cid)
    printed = json.loads(run_cli("diff", cid, sample_master, "--format", "json").stdout)
    assert [{"kind": c.kind, "path": c.path} for c in changes.changes] == printed["changes"]
    assert diff_api.diff_document(changes) == printed
    assert diff_api.diff_status(changes) == EXIT_OK
    events = timeline_api.timeline(str(sample_master), file_times=False)
    assert events and events == sorted(events)
    lines = run_cli("timeline", sample_master, "--format", "jsonl", "--no-file-times")
    assert [json.loads(line)["message"] for line in lines.stdout.splitlines()] == [
        e.message for e in events
    ]


def test_repair_plan_apply_and_undo(sample_root: Path, tmp_path: Path) -> None:
    (sample_root / "overlay2" / ORPHAN / "diff").mkdir(parents=True)
    before = tree_hash(sample_root)
    said: list[str] = []

    planned = repair_api.plan(str(sample_root), notify=said.append)
    assert tree_hash(sample_root) == before  # a plan changes nothing
    assert [a["path"] for a in planned.actions] == [f"overlay2/{ORPHAN}"]
    assert planned.dry_run and planned.errors_left == 0 and planned.status == EXIT_OK
    assert planned.as_dict()["dry_run"] is True

    applied = repair_api.apply(str(sample_root), notify=said.append, arguments=["repair"])
    assert applied.status == EXIT_REPAIRED and applied.applied is not None
    assert not (sample_root / "overlay2" / ORPHAN).exists()
    journal = Path(applied.applied.journal)
    assert journal.is_file() and applied.errors_left == 0

    undone = repair_api.undo(journal, notify=said.append)
    assert undone.status == EXIT_REPAIRED and undone.undone
    assert (sample_root / "overlay2" / ORPHAN / "diff").is_dir()
    assert said == planned.notes + applied.notes + undone.notes


def test_repair_refuses_a_quarantine_inside_root(sample_root: Path) -> None:
    with pytest.raises(UsageError, match="inside ROOT"):
        repair_api.plan(str(sample_root), quarantine=sample_root / "q")


def test_thin_verbs_return_typed_results(dm_master: Path) -> None:
    metadata = dm_master / "devicemapper" / "devicemapper" / "metadata"
    listed = thin_api.ls(metadata)
    assert listed.devices and listed.status == EXIT_OK and not listed.errors
    with thin_api.check(metadata) as checked:
        assert checked.failure is None and checked.status == EXIT_OK
    with thin_api.dump(metadata) as read:
        xml = b"".join(read.xml_chunks())
    assert xml.startswith(b"<superblock") and xml.count(b"<device ") == len(listed.devices)
    with pytest.raises(OperationalError, match="No such file"):
        thin_api.ls(metadata.with_name("nosuch"))
