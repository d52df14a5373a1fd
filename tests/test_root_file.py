"""ROOT given as the evidence file itself: the overlay2 sample and a damaged copy of it, each
as a tar archive (gzip, zstd, xz under a collection prefix), a GPT disk with an ext4 root
filesystem on its second partition, its qcow2 and E01, and an xfs disk
(tests/evidence_files.py) — every command's JSON equal, byte for byte, to what the directory
gives (but ``root``, the path given, and ``evidence``, which says where the root was read);
``verify --deep`` and ``diff`` included; the evidence file unchanged; the same as a user
without privileges."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import disk_images as di
import evidence_files as ef
import pytest
import test_verify_damage as damage
from conftest import SAMPLES, Result, run_cli
from sample_paths import SamplePaths
from unprivileged import reachable_tmpdir, run_cli_unprivileged

SAMPLE_TAR = SAMPLES / "modern-overlay2.tar.gz"
#: kind of evidence file → (volume, path of the Docker root) that the locator must find
WHERE = {
    "tar.gz": ("archive", "/docker"),
    "tar.zst": ("archive", "/var/lib/docker"),
    "tar.xz": ("archive", "/host1/var/lib/docker"),
    "gpt-ext4": ("p2", "/var/lib/docker"),
    "qcow2": ("p2", "/var/lib/docker"),
    "e01": ("p2", "/var/lib/docker"),
    "xfs": ("p1", "/var/lib/docker"),
}
CONTAINER = {"tar.gz": "tar+gzip", "tar.zst": "tar+zstd", "tar.xz": "tar+xz", "gpt-ext4": "raw",
             "qcow2": "qcow", "e01": "ewf", "xfs": "raw"}  # fmt: skip
VARIANTS = ("sample", "damaged")
COMMANDS = {
    "inventory": ("inventory", "--format", "json"),
    "verify": ("verify", "--format", "json"),
    "verify-deep": ("verify", "--deep", "--format", "json"),
    "timeline": ("timeline", "--format", "jsonl"),
}


@dataclass
class Built:
    """The evidence files of one variant, and the directory they were made from."""

    directory: Path
    files: dict[str, Path]


def damage_copy(root: Path, truth: dict[str, Any]) -> None:
    """Damage of several kinds, each a finding of its own: a truncated config, a missing
    ``l/`` link, an edited image config, a NUL-filled hostconfig, an orphan driver directory,
    a layer file changed after the pull, and a container file made a symlink out of the
    root."""
    s = SamplePaths(root, truth)
    for fn in (damage.truncate_config, damage.remove_l_link, damage.edit_image_config,
               damage.nul_fill_hostconfig, damage.add_orphan_overlay2_dir):  # fmt: skip
        fn(s)
    base = s.cache_id(s.chain(damage.APP)[0])
    with open(root / "overlay2" / base / "diff/etc/passwd", "ab") as f:
        f.write(b"intruder:x:0:0::/:/bin/sh\n")
    hostconfig = root / "containers" / s.container_id("running") / "hostconfig.json"
    hostconfig.unlink()
    hostconfig.symlink_to("/etc/passwd")


def _build(directory: Path, work: Path, variant: str) -> dict[str, Path]:
    root_fs = ef.stage(directory, work / "rootfs")
    files: dict[str, Path] = {}
    if variant == "sample":  # the bundled archive as it is
        files["tar.gz"] = Path(shutil.copyfile(SAMPLE_TAR, work / SAMPLE_TAR.name))
    else:
        files["tar.gz"] = ef.tar_of(directory.parent, ["docker"], work / "root.tar.gz", "-z")
    # the members under var/lib/docker/, without entries for var/ and var/lib/
    files["tar.zst"] = ef.tar_of(root_fs, ["var/lib/docker"], work / "root.tar.zst", "--zstd")
    # a triage collection's layout: host1/var/lib/docker/… (symlink targets left as they are)
    files["tar.xz"] = ef.tar_of(
        root_fs, ["var/lib/docker"], work / "collection.tar.xz", "-J",
        "--transform=s,^var/,host1/var/,S",
    )  # fmt: skip
    disk = work / "disk"
    disk.mkdir()
    files["gpt-ext4"] = ef.gpt_ext4(root_fs, disk)
    files["qcow2"] = di.convert(files["gpt-ext4"], "qcow2", work / "disk.qcow2")
    files["e01"] = di.e01_of(files["gpt-ext4"], work / "disk")
    xfs = work / "xfs"
    xfs.mkdir()
    files["xfs"] = ef.gpt_xfs(root_fs, xfs)
    return files


@pytest.fixture(scope="session")
def built(sample_master: Path, truth: dict[str, Any]) -> Iterator[dict[str, Built]]:
    """Both variants' evidence files, made once, where a user without privileges reaches
    them."""
    with reachable_tmpdir() as top:
        out = {}
        for variant in VARIANTS:
            work = top / variant
            work.mkdir()
            directory = work / "docker"
            di.run("cp", "-a", sample_master, directory)  # xattrs, owners, times, links
            if variant == "damaged":
                damage_copy(directory, truth)
            out[variant] = Built(directory, _build(directory, work, variant))
            for path in out[variant].files.values():
                path.chmod(0o644)
        yield out


def digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _doc(result: Result, jsonl: bool = False) -> Any:
    if jsonl:
        return result.stdout
    doc = json.loads(result.stdout)
    doc.pop("root", None)
    doc.pop("evidence", None)
    return doc


_directory_outputs: dict[tuple[str, str], tuple[int, Any]] = {}


def directory_output(built: dict[str, Built], variant: str, command: str) -> tuple[int, Any]:
    key = (variant, command)
    if key not in _directory_outputs:
        result = run_cli(*COMMANDS[command], built[variant].directory)
        _directory_outputs[key] = (result.code, _doc(result, command == "timeline"))
    return _directory_outputs[key]


@pytest.mark.parametrize("kind", list(WHERE))
@pytest.mark.parametrize("variant", VARIANTS)
def test_outputs_equal_the_directory(built: dict[str, Built], variant: str, kind: str) -> None:
    path = built[variant].files[kind]
    before = digest(path)
    for command in COMMANDS:
        result = run_cli(*COMMANDS[command], path)
        volume, where = WHERE[kind]
        assert f"reading the Docker root {where}" in result.stderr, result.stderr
        expected_code, expected = directory_output(built, variant, command)
        assert (result.code, _doc(result, command == "timeline")) == (expected_code, expected)
        if command != "timeline":
            evidence = json.loads(result.stdout)["evidence"]
            assert evidence["file"] == str(path.resolve())
            assert (evidence["volume"], evidence["path"]) == (volume, where)
            assert evidence["container"] == CONTAINER[kind]
    assert digest(path) == before


def test_the_damaged_copy_is_reported(built: dict[str, Built]) -> None:
    """The damaged variant is not a copy of the clean one: its findings name the damage."""
    result = run_cli("verify", "--format", "json", built["damaged"].files["gpt-ext4"])
    assert result.code == 4
    checks = {f["check"] for f in result.json()["findings"]}
    assert {"container.config-damaged", "overlay2.link-dangling", "image.digest-mismatch",
            "container.hostconfig-damaged", "driver.orphan-dir"} <= checks  # fmt: skip


@pytest.mark.parametrize("kind", list(WHERE))
def test_as_a_user_without_privileges(built: dict[str, Built], kind: str) -> None:
    path = built["damaged"].files[kind]
    before = digest(path)
    result = run_cli_unprivileged("verify", "--deep", "--format", "json", path)
    expected_code, expected = directory_output(built, "damaged", "verify-deep")
    assert (result.code, _doc(result)) == (expected_code, expected), result.stderr
    assert digest(path) == before


def test_diff_of_a_container(built: dict[str, Built], truth: dict[str, Any]) -> None:
    cid = SamplePaths(built["sample"].directory, truth).container_id("exited")
    expected = run_cli("diff", cid, built["sample"].directory, "--format", "json")
    for kind in ("tar.gz", "qcow2"):
        result = run_cli("diff", cid, built["sample"].files[kind], "--format", "json")
        assert (result.code, _doc(result)) == (expected.code, expected.json())
        assert result.json()["evidence"]["volume"] == WHERE[kind][0]


def test_sqlite_records_the_evidence_file(built: dict[str, Built], tmp_path: Path) -> None:
    for kind in ("gpt-ext4", "e01", "tar.zst"):
        path = built["sample"].files[kind]
        out = tmp_path / f"{kind}.db"
        assert run_cli("verify", path, "--sqlite", out, "--format", "json").code == 0
        with sqlite3.connect(out) as db:
            db.row_factory = sqlite3.Row
            (run,) = db.execute("SELECT * FROM runs").fetchall()
        assert run["root"] == run["evidence_file"] == str(path.resolve())
        assert run["evidence_size"] == path.stat().st_size
        assert run["evidence_sha256"] == digest(path)
        assert (run["evidence_volume"], run["evidence_path"]) == WHERE[kind]
        if kind == "e01":
            md5 = hashlib.file_digest(open(built["sample"].files["gpt-ext4"], "rb"), "md5")
            assert run["evidence_stored_hash"] == f"md5:{md5.hexdigest()}"
            assert run["evidence_hash_verified"] == 1
        else:
            assert run["evidence_stored_hash"] is None


# -- locating ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_roots(built: dict[str, Built], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A disk whose two partitions each hold a root filesystem with a Docker root."""
    work = tmp_path_factory.mktemp("two")
    root_fs = ef.stage(built["sample"].directory, work / "rootfs")
    ext4 = di.ext4_of(root_fs, work / "root.ext4", 48 * di.MIB)
    parts = [(di.LINUX_FS, 48 * di.MIB, ext4), (di.LINUX_FS, 48 * di.MIB, ext4)]
    return di.disk_with(work / "two.raw", "gpt", parts, 100 * di.MIB)


def test_several_roots_are_listed_with_the_way_to_pick_one(two_roots: Path) -> None:
    result = run_cli("inventory", two_roots, "--format", "json")
    assert result.code == 16 and not result.stdout
    assert "2 Docker roots; pick one with --path VOLUME:/PATH" in result.stderr
    assert "p1:/var/lib/docker" in result.stderr and "p2:/var/lib/docker" in result.stderr
    picked = run_cli("inventory", two_roots, "--format", "json", "--path", "p2:/var/lib/docker")
    assert picked.code == 0, picked.stderr
    assert picked.json()["evidence"]["volume"] == "p2"
    wrong = run_cli("inventory", two_roots, "--path", "p3:/var/lib/docker")
    assert wrong.code == 8 and "no Docker root at p3:/var/lib/docker" in wrong.stderr


def test_no_root_says_what_was_searched(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/hostname").write_text("host\n")
    archive = ef.tar_of(tmp_path, ["etc"], tmp_path / "no-docker.tar.gz", "-z")
    result = run_cli("verify", archive)
    assert result.code == 8 and not result.stdout
    assert "no Docker root found. Searched: archive: /, /var/lib/docker" in result.stderr


def test_path_needs_a_file(sample_root: Path) -> None:
    result = run_cli("verify", sample_root, "--path", "/var/lib/docker")
    assert result.code == 16 and "--path picks a Docker root inside" in result.stderr


def test_repair_refuses_a_file(built: dict[str, Built]) -> None:
    path = built["sample"].files["tar.gz"]
    for args in (("repair", path), ("repair", "--dry-run", path)):
        result = run_cli(*args)
        assert result.code == 8 and not result.stdout
        assert "read in place and never written" in result.stderr


def test_the_report_for_people_advises_repair_on_a_copy(built: dict[str, Built]) -> None:
    result = run_cli("verify", built["damaged"].files["tar.zst"])
    assert result.code == 4
    assert "repair --dry-run, run on a copy of the root unpacked from the file," in result.stdout
    assert "reading the Docker root /var/lib/docker of the archive" in result.stderr
