"""Shared fixtures: the real-daemon sample, the real corpus trees, and the CLI runner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus" / "docker-explorer"
LAYOUT_EXAMPLES = SHARED / "reference" / "layout_examples"
MODERN_SAMPLE = "modern-overlay2"
#: every sample written by a real dockerd, by storage driver
DRIVER_SAMPLES = {
    "overlay2": "modern-overlay2.tar.gz",
    "vfs": "modern-vfs.tar.xz",
    "overlay": "modern-overlay.tar.gz",
}

sys.path.insert(0, str(Path(__file__).parent))

# Fuzzing (tests/fuzz): a short seeded run by default, a long run on request:
#     DOCKER_FORENSICS_FUZZ_EXAMPLES=1000000 python -m pytest -q tests/fuzz -p no:cacheprovider
settings.register_profile(
    "ci", max_examples=300, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.register_profile(
    "long",
    max_examples=max(1, int(os.environ.get("DOCKER_FORENSICS_FUZZ_EXAMPLES", "") or 1)),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
settings.load_profile("long" if os.environ.get("DOCKER_FORENSICS_FUZZ_EXAMPLES") else "ci")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-dockerd",
        action="store_true",
        help="skip the slow tier that starts a real dockerd",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--no-dockerd"):
        return
    skip = pytest.mark.skip(reason="--no-dockerd given")
    for item in items:
        if "dockerd" in item.keywords:
            item.add_marker(skip)


def unpack(tarball: Path, dest: Path) -> Path:
    """Unpack a captured root with tar itself (device nodes, xattrs and modes kept)."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "tar",
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "-xf",
            str(tarball),
            "-C",
            str(dest),
        ],
        check=True,
    )
    return dest / "docker"


def copy_tree(src: Path, dest: Path) -> Path:
    subprocess.run(["cp", "-a", str(src), str(dest)], check=True)
    return dest


@pytest.fixture(scope="session")
def sample_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real-daemon sample, unpacked once per session. Never modify it: use ``sample_root``."""
    tarball = SAMPLES / f"{MODERN_SAMPLE}.tar.gz"
    assert tarball.is_file(), f"{tarball} is missing: run samples/make-real-sample.sh"
    return unpack(tarball, tmp_path_factory.mktemp("sample"))


@pytest.fixture
def sample_root(sample_master: Path, tmp_path: Path) -> Path:
    """A private copy of the real-daemon sample that a test may damage."""
    return copy_tree(sample_master, tmp_path / "docker")


@pytest.fixture(scope="session", params=sorted(DRIVER_SAMPLES))
def driver_sample(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    """Each real-daemon sample (one per storage driver), unpacked once, with its truth."""
    tarball = SAMPLES / DRIVER_SAMPLES[request.param]
    name = tarball.name.split(".tar")[0]
    root = unpack(tarball, tmp_path_factory.mktemp(name))
    return root, json.loads((SAMPLES / f"{name}.truth.json").read_text())


DM_SAMPLE = "legacy-1.8-devicemapper"


@pytest.fixture(scope="session")
def dm_truth() -> dict[str, Any]:
    """The truth file of the Docker 1.8 devicemapper sample."""
    return json.loads((SAMPLES / f"{DM_SAMPLE}.truth.json").read_text())


@pytest.fixture(scope="session")
def dm_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Docker 1.8 devicemapper sample, unpacked once. Never modify it: use ``dm_root``."""
    return unpack(SAMPLES / f"{DM_SAMPLE}.tar.gz", tmp_path_factory.mktemp(DM_SAMPLE))


@pytest.fixture
def dm_root(dm_master: Path, tmp_path: Path) -> Path:
    return copy_tree(dm_master, tmp_path / "docker")


MODERN_DM_SAMPLE = "modern-devicemapper"


@pytest.fixture(scope="session")
def modern_dm_truth() -> dict[str, Any]:
    """The truth file of the Docker 20.10 devicemapper sample (xfs devices)."""
    return json.loads((SAMPLES / f"{MODERN_DM_SAMPLE}.truth.json").read_text())


@pytest.fixture(scope="session")
def modern_dm_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Docker 20.10 devicemapper sample, unpacked once. Never modify it: use
    ``modern_dm_root``."""
    tarball = SAMPLES / f"{MODERN_DM_SAMPLE}.tar.gz"
    assert tarball.is_file(), (
        f"{tarball} is missing: run samples/make-modern-devicemapper-sample.py"
    )
    return unpack(tarball, tmp_path_factory.mktemp(MODERN_DM_SAMPLE))


@pytest.fixture
def modern_dm_root(modern_dm_master: Path, tmp_path: Path) -> Path:
    """A private copy of the Docker 20.10 devicemapper sample that a test may damage."""
    return copy_tree(modern_dm_master, tmp_path / "docker")


@pytest.fixture(scope="session")
def truth() -> dict[str, Any]:
    return json.loads((SAMPLES / f"{MODERN_SAMPLE}.truth.json").read_text())


@pytest.fixture(scope="session")
def corpus_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    assert CORPUS.is_dir(), f"{CORPUS} is missing (shared/ must lie beside the repository)"
    roots = {}
    for name in ("aufs.v1", "overlay2.v2"):
        roots[name] = unpack(CORPUS / f"{name}.tgz", tmp_path_factory.mktemp(name))
    return roots


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(*args: str | os.PathLike[str], env: dict[str, str] | None = None) -> Result:
    """Run the installed console script the way a user does."""
    exe = shutil.which("docker-forensics")
    cmd = [exe] if exe else [sys.executable, "-m", "forensics"]
    proc = subprocess.run(
        [*cmd, *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli() -> Iterator[Any]:
    yield run_cli


CONTAINERD_SAMPLE = "containerd-store"


@pytest.fixture(scope="session")
def containerd_truth() -> dict[str, Any]:
    """What ctr listed in the containerd-store sample, and the files Docker 29 would keep."""
    return json.loads((SAMPLES / f"{CONTAINERD_SAMPLE}.truth.json").read_text())


@pytest.fixture(scope="session")
def containerd_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The containerd-store sample (a Docker 29 root), unpacked once. Never modify it: use
    ``containerd_root``."""
    tarball = SAMPLES / f"{CONTAINERD_SAMPLE}.tar.xz"
    assert tarball.is_file(), f"{tarball} is missing: run samples/make-containerd-sample.py"
    return unpack(tarball, tmp_path_factory.mktemp(CONTAINERD_SAMPLE))


@pytest.fixture
def containerd_root(containerd_master: Path, tmp_path: Path) -> Path:
    """A private copy of the containerd-store sample that a test may damage."""
    return copy_tree(containerd_master, tmp_path / "docker")


@pytest.fixture(scope="session")
def containerd_garbage_master(
    containerd_master: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The sample after ``ctr images rm`` with containerd's collector paused: a copy with the
    garbage variant's files (its meta.db) laid over it. Never modify it."""
    dest = tmp_path_factory.mktemp(f"{CONTAINERD_SAMPLE}-garbage")
    copy_tree(containerd_master, dest / "docker")
    return unpack(SAMPLES / f"{CONTAINERD_SAMPLE}-garbage.tar.xz", dest)
