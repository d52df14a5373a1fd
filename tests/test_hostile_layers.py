"""Crafted layers: a tar-split that inflates to gigabytes of newlines or holds a million entries,
a member name of 1,500 components, a directory tree 100,000 levels deep. ``verify --deep`` and
``diff`` end with findings (exit 4) in bounded time and memory — measured in a child process —
never with a traceback, a RecursionError or a worker's failure."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import copy_tree
from deeptree import deep_trees
from peak import measure
from sample_paths import SamplePaths
from test_reassembly import disassemble, make_tar

#: peak memory that verify --deep / diff may use on these roots (the sample alone: ~60 MiB)
MEMORY_BOUND_MIB = 400
#: wall time allowed for one run (each takes a few seconds; before the bounds, minutes)
TIME_BOUND_S = 60
#: the sample image whose top layer gets the crafted tar-split or tree
TAG = "sample/app:1.0"
#: how deep the crafted tree goes: far beyond PATH_MAX, as in the report
DEPTH = 100_000


def run_bounded(*args: str | os.PathLike[str]) -> tuple[int, str, str, int, float]:
    """The console script in a child process (its own process group, with the workers it
    forks), killed after TIME_BOUND_S: exit code, stdout, stderr, peak RSS in MiB and seconds
    (measured as tests/peak.py says)."""
    exe = shutil.which("docker-forensics")
    assert exe
    env = {"DOCKER_FORENSICS_DEBUG": "1"}  # a traceback in full, if any
    run = measure([exe, "--no-progress", *args], timeout=TIME_BOUND_S, env=env)
    assert not run.killed, f"killed after {TIME_BOUND_S} s"
    return run.code, run.stdout, run.stderr, run.peak_mib, run.seconds


def verify_deep(root: Path) -> tuple[int, dict[str, Any], str, int]:
    code, out, err, peak, _ = run_bounded("verify", root, "--deep", "--format", "json")
    assert "Traceback" not in err and "internal error" not in err, err[-2000:]
    return code, json.loads(out), err, peak


def top_layer(root: Path, truth: dict[str, Any]) -> tuple[str, str, Path]:
    """The ChainID, layerdb directory and diff directory of the sample app's top layer."""
    s = SamplePaths(root, truth)
    chain = s.chain(TAG)[-1]
    return chain, s.layer_dir(chain), s.path(f"overlay2/{s.cache_id(chain)}/diff")


def layer_findings(doc: dict[str, Any], chain: str) -> list[dict[str, Any]]:
    return [f for f in doc["findings"] if f.get("object_id") == chain]


# -- tar-split streams beyond what their layer can need ------------------------------------------


def gzip_of_newlines(total: int, member: int = 64 << 20) -> bytes:
    """``total`` bytes of newlines as gzip members of ``member`` bytes each (10 GiB: 10 MB)."""
    return gzip.compress(b"\n" * member, 9, mtime=0) * (total // member)


def test_a_gzip_of_gigabytes_of_newlines_is_cut_at_the_layer_bound(
    sample_root: Path, truth: dict[str, Any]
) -> None:
    chain, layer_dir, _ = top_layer(sample_root, truth)
    bomb = gzip_of_newlines(10 << 30)
    assert len(bomb) < 16 << 20
    (sample_root / layer_dir / "tar-split.json.gz").write_bytes(bomb)
    code, doc, _, peak = verify_deep(sample_root)
    assert code == 4
    (hit,) = [f for f in layer_findings(doc, chain) if f["check"] == "layer.tar-split-damaged"]
    assert hit["damage"] == "too-large"
    assert "lines" in hit["message"] and "bytes recorded" in hit["message"]
    assert peak < MEMORY_BOUND_MIB


def test_a_million_entries_in_a_small_file_are_cut_at_the_layer_bound(
    sample_root: Path, truth: dict[str, Any]
) -> None:
    chain, layer_dir, _ = top_layer(sample_root, truth)
    line = b'{"type":1,"name":"a","payload":null,"position":0}\n'
    crafted = gzip.compress(line * 1_000_000, 9, mtime=0)
    assert len(crafted) < 200_000
    (sample_root / layer_dir / "tar-split.json.gz").write_bytes(crafted)
    code, doc, _, peak = verify_deep(sample_root)
    assert code == 4
    found = layer_findings(doc, chain)
    (hit,) = [f for f in found if f["check"] == "layer.tar-split-damaged"]
    assert hit["damage"] == "too-large"
    # one member per line, a few hundred thousand at most; each named problem is capped
    assert len([f for f in found if f["check"] == "layer.duplicate-path"]) <= 1001
    assert peak < MEMORY_BOUND_MIB
    others = [layer for layer in doc["layers"] if layer["layer_id"] != chain]
    assert others and all(layer["diff_id_matches"] for layer in others)


def test_without_a_recorded_size_the_fixed_cap_applies_and_is_named(
    sample_root: Path, truth: dict[str, Any]
) -> None:
    chain, layer_dir, _ = top_layer(sample_root, truth)
    (sample_root / layer_dir / "size").unlink()
    (sample_root / layer_dir / "tar-split.json.gz").write_bytes(gzip_of_newlines(2 << 30))
    code, doc, _, peak = verify_deep(sample_root)
    assert code == 4
    (hit,) = [f for f in layer_findings(doc, chain) if f["check"] == "layer.tar-split-damaged"]
    assert hit["damage"] == "too-large" and "no size recorded" in hit["message"]
    assert peak < MEMORY_BOUND_MIB


# -- paths deeper than recursion (and than Linux) allows -----------------------------------------


def test_a_name_of_1500_components_is_checked_not_a_worker_failure(
    sample_root: Path, truth: dict[str, Any]
) -> None:
    chain, layer_dir, diff = top_layer(sample_root, truth)
    name = "a/" * 1500 + "f"  # 3,001 bytes: within PATH_MAX, so a path Linux can hold
    tar = make_tar([(name, b"x\n", "file")])
    (sample_root / layer_dir / "tar-split.json.gz").write_bytes(disassemble(tar))
    code, doc, _, _ = verify_deep(sample_root)
    assert code == 4
    found = layer_findings(doc, chain)
    missing = [f for f in found if f["check"] == "layer.file-missing"]
    assert [f["path"] for f in missing] == [f"{diff.relative_to(sample_root)}/{name}"]
    assert not [f for f in found if f["check"] == "layer.check-failed"]
    others = [layer for layer in doc["layers"] if layer["layer_id"] != chain]
    assert others and all(layer["diff_id_matches"] for layer in others)


@pytest.fixture
def memory_root(sample_master: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the sample in a tmpfs (/dev/shm) when there is one: 200,000
    directories are made and removed in seconds there (a disk file system mounted with
    ``discard`` takes minutes); else in tmp_path."""
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(dir=shm)) if os.access(shm, os.W_OK) else tmp_path
    try:
        yield copy_tree(sample_master, base / "docker")
    finally:
        if base != tmp_path:
            shutil.rmtree(base)


def upper_of(root: Path, truth: dict[str, Any], name: str) -> Path:
    s = SamplePaths(root, truth)
    return s.path(f"overlay2/{s.mount_id(name)}/diff")


def test_a_tree_100000_deep_is_a_finding_in_bounded_memory(
    memory_root: Path, truth: dict[str, Any]
) -> None:
    chain, _, diff = top_layer(memory_root, truth)
    with deep_trees((diff, DEPTH, "d"), (upper_of(memory_root, truth, "exited"), DEPTH, "d")):
        code, doc, _, peak = verify_deep(memory_root)
    assert code == 4
    found = layer_findings(doc, chain)
    (deep,) = [f for f in found if f["check"] == "layer.path-too-deep"]
    assert deep["path"].startswith(f"{diff.relative_to(memory_root)}/d/d/d/")
    assert "…" in deep["path"] and len(deep["path"]) < 300
    assert "PATH_MAX" in deep["message"] and chain in deep["message"]
    # the rest of the layer is still checked: each listed level is an extra directory
    extras = [f for f in found if f["check"] == "layer.file-extra"]
    assert len(extras) == 2047  # "/d" … up to 4,095 bytes from the layer root
    container = SamplePaths(memory_root, truth).container_id("exited")
    (upper,) = [
        f
        for f in doc["findings"]
        if f["check"] == "layer.path-too-deep" and f.get("object_id") == container
    ]
    assert upper["object_type"] == "container"
    assert peak < MEMORY_BOUND_MIB


def test_diff_of_a_tree_100000_deep_is_a_problem_not_a_recursion_error(
    memory_root: Path, truth: dict[str, Any]
) -> None:
    upper = upper_of(memory_root, truth, "exited")
    with deep_trees((upper, DEPTH, "d")):
        code, out, err, peak, _ = run_bounded("diff", "exited", memory_root)
    assert "Traceback" not in err and "RecursionError" not in err, err[-2000:]
    assert code == 4
    (line,) = err.splitlines()
    assert line.startswith(f"docker-forensics: {upper.relative_to(memory_root)}/d/d/d/")
    assert "deeper than Linux allows" in line and "incomplete" in line
    lines = out.splitlines()
    assert "A /d" in lines and len(lines) == len(set(lines))
    added = [x for x in lines if re.fullmatch(r"A (/d)+", x)]
    assert len(added) == 2047  # up to /d/…/d of 4,094 bytes: with its NUL, within PATH_MAX
    assert max(len(x) - len("A ") for x in added) + 1 <= 4096
    expected = set(truth["diff"][SamplePaths(memory_root, truth).container_id("exited")])
    assert expected <= set(lines)
    assert peak < MEMORY_BOUND_MIB
