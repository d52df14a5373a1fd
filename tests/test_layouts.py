"""Layout detection from evidence: the containerd image store, stale stores, unknown roots."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from sample_paths import SamplePaths

from forensics.checks import run_checks
from forensics.evidence import Evidence
from forensics.stores import read_host


def _as_containerd_store(s: SamplePaths) -> None:
    """What the same host looks like with Docker's containerd image store: no image/<driver>
    and no overlay2/, containers naming the overlayfs snapshotter, rootfs/overlayfs/<cid>."""
    shutil.rmtree(s.path("image"))
    shutil.rmtree(s.path("overlay2"))
    for c in s.truth["inspect_containers"]:
        cid = c["Id"]
        config = s.path(f"containers/{cid}/config.v2.json")
        doc = json.loads(config.read_bytes())
        doc["Driver"] = "overlayfs"
        config.write_text(json.dumps(doc))
        s.path(f"rootfs/overlayfs/{cid}").mkdir(parents=True)


def test_containerd_store_is_said_plainly(cli, sample_root: Path, truth: dict[str, Any]) -> None:
    """dockerd's own containerd of this host kept no snapshot: each container said to be on
    the containerd store lacks its writable snapshot, and is reported so (that alone)."""
    _as_containerd_store(SamplePaths(sample_root, truth))
    result = cli("verify", sample_root, "--format", "json")
    assert result.code == 4, result.stdout
    doc = result.json()
    assert doc["layout"] == "containerd"
    checks = {f["check"] for f in doc["findings"]}
    assert "layout.containerd-store" in checks
    serious = [f for f in doc["findings"] if f["severity"] in ("error", "warning")]
    assert {f["check"] for f in serious} == {"containerd.docker-snapshot-missing"}
    assert {f["object_id"] for f in serious} == {c["Id"] for c in truth["inspect_containers"]}
    inventory = cli("inventory", sample_root, "--format", "json").json()
    assert {c["id"] for c in inventory["containers"]} == {
        c["Id"] for c in truth["inspect_containers"]
    }
    assert inventory["images"] == []
    assert any("containerd" in note for note in inventory["notes"])


def test_dockerds_own_containerd_state_is_not_the_containerd_store(
    cli, sample_master: Path
) -> None:
    assert (sample_master / "containerd" / "daemon").is_dir()
    assert cli("inventory", sample_master, "--format", "json").json()["layout"] == "modern"


def test_stale_store_is_noted_not_used(cli, corpus_roots: dict[str, Path]) -> None:
    doc = cli("verify", corpus_roots["overlay2.v2"], "--format", "json").json()
    assert doc["driver"] == "overlay2"
    stale = [f for f in doc["findings"] if f["check"] == "layout.stale-store"]
    assert [f["path"] for f in stale] == ["image/overlay"]


def test_a_directory_that_is_no_docker_root(cli, tmp_path: Path) -> None:
    """The library reads it as an unknown layout; the command line refuses it (exit 8)."""
    (tmp_path / "photos").mkdir()
    host = read_host(Evidence(tmp_path))
    assert host.layout == "unknown"
    assert [f.check for f in run_checks(host)] == ["layout.unknown-root"]
    result = cli("verify", tmp_path, "--format", "json")
    assert (result.code, result.stdout) == (8, "")
    assert "not a Docker root" in result.stderr


def test_layout_is_not_taken_from_the_first_entry(cli, sample_root: Path) -> None:
    """docker-explorer rejects a root whose first containers/ entry is not a container."""
    (sample_root / "containers" / ".trash").mkdir()
    (sample_root / "image" / "aufs").mkdir()  # an empty store of another driver
    doc = cli("verify", sample_root, "--format", "json").json()
    assert doc["layout"] == "modern" and doc["driver"] == "overlay2"
    assert doc["summary"]["error"] == 0
