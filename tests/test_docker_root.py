"""Never a silent clean: a ROOT that is no Docker root, or that cannot be read whole, is an
operational error (exit 8) that says so, for every command that takes ROOT; a Docker root below
it is named. A root that dockerd has just initialised is a Docker root."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS, LAYOUT_EXAMPLES, copy_tree, run_cli, unpack
from dockerd_util import dockerd_available, private_dockerd
from inotify_watch import Watch
from sample_paths import SamplePaths
from unprivileged import reachable_tmpdir, run_cli_unprivileged

from forensics.stores.dockerroot import judge_root

#: a command line for each command that takes ROOT (ROOT last)
VERBS = {
    "inventory": ["inventory"],
    "verify": ["verify"],
    "verify --deep": ["verify", "--deep"],
    "timeline": ["timeline"],
    "diff": ["diff", "a" * 64],
    "repair --dry-run": ["repair", "--dry-run"],
}


def _no_docker_root(kind: str, base: Path) -> Path:
    """Directories that a careless ROOT may name and that dockerd did not write."""
    root = base / kind
    root.mkdir()
    if kind == "only-tmp":
        (root / "tmp").mkdir()
    elif kind == "docker-names-only":  # the names, empty, and nothing of dockerd's inside
        for name in ("containers", "image", "volumes", "network", "tmp", "overlay2"):
            (root / name).mkdir()
        (root / "containers" / "not-a-container").mkdir()
        (root / "image" / "overlay2").mkdir()
    elif kind == "etc-like":
        (root / "containers").mkdir()  # podman's /etc/containers
        (root / "containers" / "registries.conf").write_text("unqualified-search-registries=[]\n")
        (root / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    return root


@pytest.mark.parametrize("kind", ["empty", "only-tmp", "docker-names-only", "etc-like"])
@pytest.mark.parametrize("verb", sorted(VERBS))
def test_a_directory_that_is_no_docker_root_exits_8(kind: str, verb: str, tmp_path: Path) -> None:
    root = _no_docker_root(kind, tmp_path)
    result = run_cli(*VERBS[verb], root)
    assert result.code == 8, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"docker-forensics: {root}: not a Docker root (no image store, container, legacy graph, "
        "storage driver directory or volume database of Docker's)"
    ]


def test_etc_and_slash_are_no_docker_roots() -> None:
    for root in ("/etc", "/"):
        result = run_cli("verify", root)
        assert result.code == 8 and result.stdout == "", result.stderr
        assert f"docker-forensics: {root}: not a Docker root" in result.stderr


def test_the_docker_root_of_a_mounted_disk_is_named(sample_master: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    (disk / "var" / "lib").mkdir(parents=True)
    for name in ("etc", "home", "tmp"):
        (disk / name).mkdir()
    copy_tree(sample_master, disk / "var" / "lib" / "docker")
    for verb in sorted(VERBS):
        result = run_cli(*VERBS[verb], disk)
        assert result.code == 8, (verb, result.stderr)
        assert result.stderr.rstrip().endswith(f"; did you mean {disk}/var/lib/docker?")
    with_slash = run_cli("verify", f"{disk}/")
    assert with_slash.stderr.rstrip().endswith(f"; did you mean {disk}/var/lib/docker?")


def test_a_docker_root_anywhere_below_is_found(sample_master: Path, tmp_path: Path) -> None:
    """Not only where Docker keeps it by default: breadth first, a few levels down."""
    mount = tmp_path / "mnt"
    (mount / "srv" / "data").mkdir(parents=True)
    (mount / "lost+found").mkdir()
    copy_tree(sample_master, mount / "srv" / "data" / "docker-old")
    result = run_cli("inventory", mount)
    assert result.code == 8
    assert result.stderr.rstrip().endswith(f"; did you mean {mount}/srv/data/docker-old?")


def test_the_search_below_follows_no_symlink(sample_master: Path, tmp_path: Path) -> None:
    """A symlink below ROOT that leads to a Docker root elsewhere is not followed: nothing
    outside ROOT is opened, not even listed."""
    disk = tmp_path / "disk"
    (disk / "var" / "lib").mkdir(parents=True)
    (disk / "var" / "lib" / "docker").symlink_to(sample_master)
    (disk / "docker").symlink_to(sample_master)
    watch = Watch(sample_master, sample_master / "image", sample_master / "containers")
    try:
        result = run_cli("verify", disk)
        opened = watch.events()
    finally:
        watch.close()
    assert result.code == 8
    assert "did you mean" not in result.stderr
    assert opened == []


def test_the_search_below_is_bounded(tmp_path: Path) -> None:
    """A Docker root deeper than the search goes, or past the entries it lists, is not looked
    for (the search ends quickly on a whole disk)."""
    deep = tmp_path / "a" / "b" / "c" / "d" / "e"
    (deep / "image" / "overlay2" / "imagedb").mkdir(parents=True)
    result = run_cli("verify", tmp_path)
    assert result.code == 8 and "did you mean" not in result.stderr
    shallow = run_cli("verify", tmp_path / "a")
    assert shallow.stderr.rstrip().endswith(f"; did you mean {tmp_path}/a/b/c/d/e?")


@pytest.fixture(scope="module")
def known_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every Docker root the project has from real programs or composed from moby's source."""
    roots: dict[str, Path] = {}
    samples = Path(__file__).resolve().parents[1] / "samples"
    for tarball in sorted(samples.glob("*.tar.*")):
        name = tarball.name.split(".tar")[0]
        roots[name] = unpack(tarball, tmp_path_factory.mktemp(name))
    for name in ("aufs.v1", "overlay2.v2"):
        roots[name] = unpack(CORPUS / f"{name}.tgz", tmp_path_factory.mktemp(name))
    for example in sorted(p for p in LAYOUT_EXAMPLES.iterdir() if p.is_dir()):
        roots[example.name] = example
    return roots


def test_every_known_docker_root_is_one(known_roots: dict[str, Path]) -> None:
    assert len(known_roots) >= 10
    for name, root in known_roots.items():
        verdict = judge_root(root)
        assert verdict.usable, (name, verdict)


def test_a_root_that_lost_its_image_store_is_still_one(sample_root: Path) -> None:
    """Damage is for verify to report, not a reason to refuse the root."""
    shutil.rmtree(sample_root / "image")
    shutil.rmtree(sample_root / "overlay2")
    (sample_root / "volumes" / "metadata.db").unlink()
    (sample_root / "network" / "files" / "local-kv.db").unlink()
    shutil.rmtree(sample_root / "containerd")
    assert judge_root(sample_root).mark is not None  # the containers' configs remain
    assert run_cli("verify", sample_root).code == 4


@pytest.mark.dockerd
@pytest.mark.skipif(not dockerd_available(), reason="needs root and Debian's docker.io")
def test_a_root_that_dockerd_just_initialised_is_a_clean_docker_root(tmp_path: Path) -> None:
    with private_dockerd(tmp_path / "docker", tmp_path) as daemon:
        daemon.docker("info", check=True)
    root = tmp_path / "docker"
    for verb in ("inventory", "verify", "timeline"):
        result = run_cli(verb, root)
        assert result.code == 0, (verb, result.stderr)
        assert result.stderr == ""


# -- a root that cannot be read whole ----------------------------------------------------------


def _denied_copy(sample_master: Path, base: Path) -> Path:
    """A copy of the sample that anyone may read, as a root copied with ``cp -a`` by root and
    then opened up would be."""
    root = copy_tree(sample_master, base / "docker")
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    return root


def test_a_root_whose_stores_cannot_be_read_exits_8(sample_master: Path) -> None:
    """Docker keeps its directories 0700: read by another user, every store looks empty."""
    with reachable_tmpdir() as base:
        root = _denied_copy(sample_master, base)
        for name in ("containers", "image", "overlay2", "volumes"):
            (root / name).chmod(0)
        for verb in sorted(VERBS):
            result = run_cli_unprivileged(*VERBS[verb], root)
            assert result.code == 8, (verb, result.stdout, result.stderr)
            assert result.stdout == ""
            assert result.stderr.splitlines() == [
                f"docker-forensics: {root}: cannot read containers/, image/, overlay2/ and "
                "volumes/ (permission denied): this report would be incomplete; run as root, "
                "or on a copy you can read"
            ], verb


def test_one_unreadable_container_exits_8_and_is_named(
    sample_master: Path, truth: dict[str, Any]
) -> None:
    with reachable_tmpdir() as base:
        root = _denied_copy(sample_master, base)
        cid = SamplePaths(root, truth).container_id("exited")
        (root / "containers" / cid).chmod(0)
        assert run_cli_unprivileged("verify", root).code == 8
        result = run_cli_unprivileged("inventory", root, "--format", "json")
        assert result.code == 8 and result.stdout == ""
        assert f"cannot read containers/{cid}/ (permission denied)" in result.stderr


def test_one_unreadable_config_file_exits_8_and_is_named(
    sample_master: Path, truth: dict[str, Any]
) -> None:
    with reachable_tmpdir() as base:
        root = _denied_copy(sample_master, base)
        rel = f"containers/{SamplePaths(root, truth).container_id('running')}/config.v2.json"
        (root / rel).chmod(0)
        result = run_cli_unprivileged("timeline", root)
        assert result.code == 8
        assert f"cannot read {rel} (permission denied)" in result.stderr


def test_what_the_stores_never_read_may_be_unreadable(sample_master: Path) -> None:
    """A root that is its own file system has a lost+found of root's; dockerd's own swarm/,
    trust/ and runtimes/ are never read: none of them stops a run."""
    with reachable_tmpdir() as base:
        root = _denied_copy(sample_master, base)
        (root / "lost+found").mkdir()
        for name in ("lost+found", "swarm", "trust", "runtimes", "tmp"):
            (root / name).chmod(0)
        result = run_cli_unprivileged("verify", root)
        assert result.code == 0, result.stderr
