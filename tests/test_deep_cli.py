"""verify --deep and diff from the command line, on the real-daemon samples."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLES, copy_tree, unpack
from sample_paths import SamplePaths


def test_every_diff_id_recomputes(cli, driver_sample: tuple[Path, dict[str, Any]]) -> None:
    root, truth = driver_sample
    result = cli("verify", root, "--deep", "--format", "json")
    assert result.code == 0, result.stdout
    doc = result.json()
    recorded = {layer for i in truth["inspect_images"] for layer in i["RootFS"]["Layers"]}
    layers = doc["layers"]
    assert layers and all(layer["diff_id_matches"] for layer in layers)
    assert recorded <= {layer["diff_id"] for layer in layers}


def test_diff_equals_docker_diff(cli, driver_sample: tuple[Path, dict[str, Any]]) -> None:
    root, truth = driver_sample
    for container in truth["inspect_containers"]:
        name = container["Name"].lstrip("/")
        result = cli("diff", name, root)
        assert result.code == 0, result.stderr
        assert sorted(result.stdout.splitlines()) == sorted(truth["diff"][container["Id"]]), name


def test_tampered_file_is_named(
    cli, sample_root: Path, truth: dict[str, Any], tmp_path: Path
) -> None:
    s = SamplePaths(sample_root, truth)
    cache = s.cache_id(s.chain("sample/app:1.0")[0])
    target = s.path(f"overlay2/{cache}/diff/etc/passwd")
    data = bytearray(target.read_bytes())
    data[0] ^= 1
    target.write_bytes(bytes(data))
    out = tmp_path / "case.db"
    result = cli("verify", sample_root, "--deep", "--format", "json", "--sqlite", out)
    assert result.code == 4
    hits = [f for f in result.json()["findings"] if f["check"] == "layer.file-modified"]
    assert [h["path"] for h in hits] == [f"overlay2/{cache}/diff/etc/passwd"]
    assert hits[0]["object_id"] == s.chain("sample/app:1.0")[0]
    db = sqlite3.connect(out)
    rows = db.execute(
        "SELECT layer_id, status FROM layer_files WHERE path = '/etc/passwd' ORDER BY status"
    ).fetchall()
    assert (s.chain("sample/app:1.0")[0], "modified") in rows
    changes = db.execute("SELECT count(*) FROM container_changes").fetchone()[0]
    assert changes == sum(len(lines) for lines in truth["diff"].values())
    db.close()


def test_diff_of_unknown_container_is_a_usage_error(cli, sample_master: Path) -> None:
    result = cli("diff", "no-such-container", sample_master)
    assert result.code == 16 and "No such container: no-such-container" in result.stderr


def test_every_layer_check_is_in_the_catalogue() -> None:
    """The layer report names checks; the catalogue alone gives their severity."""
    from forensics.checks.catalog import CHECKS
    from forensics.layers import report

    kinds = report.LayerProblem.__doc__ or ""
    problems = {
        f"layer.{k}" for k in re.findall(r"``([a-z-]+)``", kinds) if k not in ("kind", "damage")
    }
    assert set(report._FILE_CHECKS.values()) <= set(CHECKS)
    assert problems and problems <= set(CHECKS)


# -- TarSum of legacy graph checksums, on the real Docker 1.8 aufs host ---------------------------

BUSYBOX = "df557f39d413a1408f5c28d8aab2892f927237ec22e903ef04b331305130ab38"


def tarsum_of_layer(root: Path, gid: str, version: int, with_json: bool) -> str:
    """The TarSum of the rebuilt layer, computed by our implementation (pinned to moby's Go
    vectors in tests/test_tarsum.py) — what a Docker 1.x push would have stored."""
    from forensics.evidence import Evidence
    from forensics.layers import layer_jobs, verify_layer
    from forensics.layers.tarsum import TarSum
    from forensics.stores.host import read_host

    (job,) = [j for j in layer_jobs(read_host(Evidence(root))) if j.layer_id == gid]
    ts = TarSum(version)
    verify_layer(job, sink=ts.update)
    ts.close()
    return ts.sum((root / "graph" / gid / "json").read_bytes() if with_json else None)


def legacy_copy(corpus_roots: dict[str, Path], tmp_path: Path) -> Path:
    return copy_tree(corpus_roots["aufs.v1"], tmp_path / "docker")


@pytest.mark.parametrize(("version", "with_json"), [(0, True), (1, False)])
def test_recorded_tarsum_verifies(
    cli, corpus_roots: dict[str, Path], tmp_path: Path, version: int, with_json: bool
) -> None:
    root = legacy_copy(corpus_roots, tmp_path)
    value = tarsum_of_layer(root, BUSYBOX, version, with_json)
    (root / "graph" / BUSYBOX / "checksum").write_text(value)
    out = tmp_path / "case.db"
    result = cli("verify", root, "--deep", "--format", "json", "--sqlite", out)
    assert result.code == 0, result.stdout
    doc = result.json()
    assert not [f for f in doc["findings"] if f["severity"] == "error"]
    (layer,) = [r for r in doc["layers"] if r["layer_id"] == BUSYBOX]
    assert layer["recorded_tarsum"] == layer["tarsum"] == value
    assert layer["tarsum_payload"] == ("json" if with_json else "none")
    db = sqlite3.connect(out)
    row = db.execute(
        "SELECT computed_tarsum, tarsum_payload FROM layer_checks WHERE layer_id = ?", (BUSYBOX,)
    ).fetchone()
    db.close()
    assert row == (value, layer["tarsum_payload"])


def test_tarsum_mismatch_names_the_checksum_file(
    cli, corpus_roots: dict[str, Path], tmp_path: Path
) -> None:
    root = legacy_copy(corpus_roots, tmp_path)
    value = tarsum_of_layer(root, BUSYBOX, 0, True)
    (root / "graph" / BUSYBOX / "checksum").write_text(value)
    target = root / "aufs" / "diff" / BUSYBOX / "etc" / "passwd"
    data = bytearray(target.read_bytes())
    data[-2] ^= 0x01
    target.write_bytes(bytes(data))
    result = cli("verify", root, "--deep", "--format", "json")
    assert result.code == 4, result.stdout
    findings = result.json()["findings"]
    (hit,) = [f for f in findings if f["check"] == "layer.tarsum-mismatch"]
    assert hit["severity"] == "error"
    assert hit["path"] == f"graph/{BUSYBOX}/checksum"
    assert hit["object_id"] == BUSYBOX and BUSYBOX in hit["message"] and value in hit["message"]
    modified = [f["path"] for f in findings if f["check"] == "layer.file-modified"]
    assert modified == [f"aufs/diff/{BUSYBOX}/etc/passwd"]


def test_plain_digest_checksum_is_not_a_tarsum(cli, corpus_roots: dict[str, Path]) -> None:
    """The corpus' checksum files are registry blob digests (sha256:…): nothing to recompute."""
    result = cli("verify", corpus_roots["aufs.v1"], "--deep", "--format", "json")
    assert result.code == 0
    assert all(layer["recorded_tarsum"] is None for layer in result.json()["layers"])


def test_devicemapper_layers_of_a_pool_outside_root_are_said_to_be_not_deep_checked(
    cli, tmp_path: Path
) -> None:
    """A direct-lvm host keeps its pool in block devices, not in ROOT: the legacy sample
    without its pool files."""
    root = unpack(SAMPLES / "legacy-1.8-devicemapper.tar.gz", tmp_path)
    for name in ("data", "metadata"):
        (root / "devicemapper" / "devicemapper" / name).unlink()
    result = cli("verify", root, "--deep", "--format", "json")
    doc = result.json()
    (hit,) = [f for f in doc["findings"] if f["check"] == "layer.not-deep-checked"]
    graph = [p for p in (root / "graph").iterdir() if len(p.name) == 64]
    assert hit["severity"] == "info" and hit["path"] == "devicemapper"
    assert "direct-lvm" in hit["message"]
    assert f"{len(graph)} layers not deep-checked" in hit["message"]
    assert doc["layers"] == []


# -- a layer whose check fails ---------------------------------------------------------------------


def test_a_layer_whose_check_raises_is_a_finding_and_the_others_are_checked(
    sample_root: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A bug in one layer's check (here: a RecursionError raised for two of the layers, one
    in each task of the forked workers) is a finding on that layer, never ``internal error:
    WorkerError``; with DOCKER_FORENSICS_DEBUG=1 its traceback is printed all the same."""
    from forensics import deep
    from forensics.evidence import Evidence
    from forensics.layers import plan_layers
    from forensics.stores.host import read_host

    ev = Evidence(sample_root)
    host = read_host(ev)
    jobs, _ = plan_layers(host)
    assert len(jobs) > 4  # two tasks of four layers: a helper process takes one of them
    victims = {jobs[0].layer_id, jobs[-1].layer_id}
    real = deep.verify_layer

    def buggy(job: Any, **kwargs: Any) -> Any:
        if job.layer_id in victims:
            raise RecursionError("maximum recursion depth exceeded")
        return real(job, **kwargs)

    monkeypatch.setattr(deep, "verify_layer", buggy)
    monkeypatch.setenv("DOCKER_FORENSICS_WORKERS", "2")
    result = deep.verify_deep(ev, host)
    hits = [f for f in result.findings if f.check == "layer.check-failed"]
    assert {h.object_id for h in hits} == victims
    assert all(h.severity == "error" and "RecursionError" in h.message for h in hits)
    matched = {r.layer_id for r in result.layers if r.diff_id_matches}
    assert matched == {j.layer_id for j in jobs} - victims
    assert "Traceback" not in capfd.readouterr().err
    monkeypatch.setenv("DOCKER_FORENSICS_DEBUG", "1")
    again = deep.verify_deep(ev, host)
    assert {f.object_id for f in again.findings if f.check == "layer.check-failed"} == victims
    assert capfd.readouterr().err.count("RecursionError: maximum recursion depth") == 2
