"""The slow tier: a real, private dockerd judges the same roots that we judge.

dockerd silently drops what it cannot load. On a damaged copy of the sample, the containers that
the daemon no longer lists must be exactly those that our verify names in error findings.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from dockerd_util import private_dockerd, require_dockerd
from sample_paths import STORE, SamplePaths

pytestmark = pytest.mark.dockerd


@pytest.fixture(autouse=True)
def _need_dockerd() -> None:
    require_dockerd()


def _daemon_containers(root: Path, tmp: Path) -> set[str]:
    with private_dockerd(root, tmp) as daemon:
        out = daemon.docker("ps", "-a", "--no-trunc", "--format", "{{.ID}}", check=True).stdout
    return set(out.split())


def _error_containers(cli, root: Path) -> set[str]:
    result = cli("verify", root, "--format", "json")
    ids = set()
    for f in result.json()["findings"]:
        if f["severity"] == "error" and f["object_type"] in ("container", "mount"):
            ids.add(f["object_id"])
    return ids


def test_daemon_loads_what_inventory_lists(cli, sample_root: Path, tmp_path: Path) -> None:
    ours = {c["id"] for c in cli("inventory", sample_root, "--format", "json").json()["containers"]}
    assert ours == _daemon_containers(sample_root, tmp_path / "d")


def test_what_the_daemon_drops_is_what_verify_names(
    cli, sample_root: Path, truth: dict[str, Any], tmp_path: Path
) -> None:
    s = SamplePaths(sample_root, truth)
    exited, created, volume = (s.container_id(n) for n in ("exited", "created", "with-volume"))
    config = s.path(f"containers/{exited}/config.v2.json")
    config.write_bytes(config.read_bytes()[:100])  # cut short, as by a power loss
    shutil.rmtree(s.path(f"{STORE}/layerdb/mounts/{created}"))  # mount record lost
    hostconfig = s.path(f"containers/{volume}/hostconfig.json")
    hostconfig.write_bytes(b"\0" * len(hostconfig.read_bytes()))  # NUL-filled
    everyone = {c["Id"] for c in truth["inspect_containers"]}

    named = _error_containers(cli, sample_root)
    loaded = _daemon_containers(sample_root, tmp_path / "d")
    assert everyone - loaded == {exited, created, volume}
    assert named == everyone - loaded


def _rewrite_json(path: Path, change: Any) -> None:
    doc = json.loads(path.read_bytes())
    change(doc)
    path.write_text(json.dumps(doc, separators=(",", ":")))


def test_the_daemon_drops_a_value_of_the_wrong_type(
    cli, sample_root: Path, truth: dict[str, Any], tmp_path: Path
) -> None:
    """dockerd's Go decoder refuses a config or hostconfig with a value of the wrong type and
    skips the container; values Go takes (a command as one string, a key in another case,
    null) it loads. verify names exactly the containers the daemon drops."""
    s = SamplePaths(sample_root, truth)
    exited, created, volume = (s.container_id(n) for n in ("exited", "created", "with-volume"))
    _rewrite_json(
        s.path(f"containers/{exited}/config.v2.json"), lambda d: d["State"].update(Pid="1")
    )
    _rewrite_json(s.path(f"containers/{created}/hostconfig.json"), lambda d: d.update(Memory="1g"))

    def odd(doc: dict[str, Any]) -> None:
        doc["Config"].update(Cmd="sleep 1", Labels=None)
        doc["State"].update(Error=None)
        doc["restartcount"] = doc.pop("RestartCount")

    _rewrite_json(s.path(f"containers/{volume}/config.v2.json"), odd)
    everyone = {c["Id"] for c in truth["inspect_containers"]}

    named = _error_containers(cli, sample_root)
    loaded = _daemon_containers(sample_root, tmp_path / "d")
    assert everyone - loaded == {exited, created}
    assert named == everyone - loaded


def test_daemon_refuses_what_verify_calls_fatal(cli, sample_root: Path, tmp_path: Path) -> None:
    """A zero-byte repositories.json stops dockerd from starting; verify says so."""
    (sample_root / STORE / "repositories.json").write_bytes(b"")
    result = cli("verify", sample_root, "--format", "json")
    assert result.code == 4
    assert any(f["check"] == "repositories.damaged" for f in result.json()["findings"])
    with pytest.raises(RuntimeError, match="exited during start-up"):
        with private_dockerd(sample_root, tmp_path / "d"):
            pass


def test_a_fresh_root_of_a_real_daemon(cli, tmp_path: Path) -> None:
    """A root that dockerd created and never used: a modern layout with nothing in it."""
    root = tmp_path / "fresh"
    with private_dockerd(root, tmp_path / "d") as daemon:
        assert daemon.docker("ps", "-a", "-q", check=True).stdout.strip() == ""
    doc = cli("verify", root, "--format", "json").json()
    assert doc["layout"] == "modern" and doc["driver"] == "overlay2"
    assert doc["summary"]["error"] == 0
    inventory = cli("inventory", root, "--format", "json").json()
    assert inventory["images"] == [] and inventory["containers"] == []
