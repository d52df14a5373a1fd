"""Hostile evidence files given as ROOT: a truncated image, a partition table pointing past the
end, an LVM label that loops, an E01 with a damaged or missing part, tar members named ``../x``
or by an absolute path, a symlink pointing out of the root, a gzip bomb. Each is a finding or a
one-line error with exit status 4 or 8 — never a traceback —, read in bounded memory, and
nothing outside the file is read (a canary on the host that a followed symlink would reach is
never seen) or written (the file's sha256 unchanged)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import sqlite3
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import disk_images as di
import evidence_files as ef
import pytest
from conftest import SAMPLES, run_cli
from peak import measure
from test_fs_tar import bomb
from test_image import _gpt_patched

MIB = di.MIB
#: the most memory one run on a hostile file may take (the sample's own run takes ~70 MiB)
PEAK_MIB = 400


def digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify(path: Path, *args: str) -> tuple[int, str, str]:
    """``verify --format json`` of ``path``, its peak memory bounded; the file unchanged."""
    before = digest(path)
    exe = shutil.which("docker-forensics")
    command = [exe] if exe else [sys.executable, "-m", "forensics"]
    done = measure([*command, "verify", "--format", "json", str(path), *args], timeout=300)
    assert not done.killed
    assert done.peak_mib < PEAK_MIB, f"peak memory {done.peak_mib} MiB"
    assert digest(path) == before
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    assert done.code in (0, 4, 8), (done.code, done.stderr)
    if done.code == 8:
        assert not done.stdout
        assert len(done.stderr.strip().splitlines()) <= 2, done.stderr  # what, and the error
    return done.code, done.stdout, done.stderr


@pytest.fixture(scope="module")
def disk(sample_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("hostile")
    return ef.gpt_ext4(ef.stage(sample_master, work / "rootfs"), work)


def test_a_truncated_image(disk: Path, tmp_path: Path) -> None:
    for size in (6 * MIB, 12 * MIB):
        cut = tmp_path / f"cut-{size}.raw"
        with open(disk, "rb") as f:
            cut.write_bytes(f.read(size))
        code, stdout, stderr = verify(cut)
        assert "past the disk's end" in stderr
        if code == 4:  # what could not be read is named, each path once
            findings = json.loads(stdout)["findings"]
            damaged = [f for f in findings if f["check"] == "layout.evidence-damaged"]
            assert damaged and all("past the device's end" in f["message"] or "unable to read"
                                   in f["message"] for f in damaged)  # fmt: skip
        else:
            assert "no Docker root found" in stderr


def test_a_partition_table_pointing_past_the_end(disk: Path, tmp_path: Path) -> None:
    raw = disk.read_bytes()
    sectors = len(raw) // 512
    bad = tmp_path / "past.raw"
    bad.write_bytes(_gpt_patched(raw, 2, sectors + 100, sectors + 5000))
    code, _, stderr = verify(bad)
    assert code == 8
    assert "no filesystem that this tool reads" in stderr
    assert "p2: it starts at sector" in stderr and "past the disk's end" in stderr


def test_an_lvm_label_with_a_loop(sample_master: Path, tmp_path: Path) -> None:
    """The logical volume's extents start at the PV's own label: it would lead into itself."""
    root_fs = ef.stage(sample_master, tmp_path / "rootfs")
    ext4 = di.ext4_of(root_fs, tmp_path / "root.ext4", 48 * MIB)
    pv = di.lvm_pv(tmp_path / "loop.pv", ext4, pe_start=1)
    code, _, stderr = verify(pv)
    assert code == 8 and "a filesystem that this tool reads" in stderr
    assert "vg0/root: its LVM label" in stderr and "a loop" in stderr


def test_an_e01_damaged_or_cut(disk: Path, tmp_path: Path) -> None:
    e01 = di.e01_of(disk, tmp_path / "disk")
    data = e01.read_bytes()
    middle = len(data) // 2
    # a chunk damaged: libewf gives what it can; --sqlite checks the stored hash and says so
    damaged = tmp_path / "damaged.E01"
    damaged.write_bytes(data[:middle] + bytes(256) + data[middle + 256 :])
    out = tmp_path / "case.db"
    code, _, stderr = verify(damaged, "--sqlite", str(out))
    if code in (0, 4):
        assert "the media's hash differs from the one the image stores" in stderr
        with sqlite3.connect(out) as db:
            row = db.execute("SELECT evidence_hash_verified FROM runs").fetchone()
        assert row == (0,)
    # cut short: one line, or what could be read with the damage named
    cut = tmp_path / "cut.E01"
    cut.write_bytes(data[:middle])
    verify(cut)


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files on the host that a symlink followed out of an archive would reach: a container
    config and a repositories.json that would read as sound, with a name to look for."""
    where = tmp_path_factory.mktemp("canary")
    (where / "config.v2.json").write_text(json.dumps({"ID": "c" * 64, "Name": "/canary-seen"}))
    (where / "repositories.json").write_text('{"Repositories": {"canary-seen": {}}}')
    return where


def _sample_members() -> Iterator[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(SAMPLES / "modern-overlay2.tar.gz") as tar:
        for info in tar:
            f = tar.extractfile(info) if info.isfile() else None
            yield info, f.read() if f is not None else None


def _archive(path: Path, extra: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """The sample's archive with ``extra`` members after its own (gzip, PAX)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in [*_sample_members(), *extra]:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    path.write_bytes(gzip.compress(buf.getvalue(), 1))
    return path


def _member(name: str, data: bytes | None = None, link: str | None = None) -> tuple:
    info = tarfile.TarInfo(name)
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
    elif data is not None:
        info.size = len(data)
    else:
        info.type = tarfile.DIRTYPE
    return info, data


def test_members_that_climb_or_are_absolute(tmp_path: Path, canary: Path) -> None:
    """``../x`` is left out (as tar refuses it) and an absolute name is read relative to the
    archive's root (as tar extracts it): both said on stderr; the root reads as the sample."""
    escape = str(canary / "escaped").lstrip("/")
    archive = _archive(
        tmp_path / "names.tar.gz",
        [
            _member("../" * 8 + escape, b"out of the archive\n"),
            _member("docker/../../x", b"climbs\n"),
            _member(f"/{escape}", b"absolute\n"),
        ],
    )
    code, stdout, stderr = verify(archive)
    assert code == 0, stderr
    assert stderr.count("climbs with '..': left out, as tar refuses it") == 2
    assert "is read relative to the archive's root, as tar extracts it" in stderr
    assert not (canary / "escaped").exists()
    expected = run_cli("verify", "--format", "json", SAMPLES / "modern-overlay2.tar.gz")
    assert json.loads(stdout)["findings"] == expected.json()["findings"]


def test_symlinks_pointing_out_are_never_followed(tmp_path: Path, canary: Path) -> None:
    cid = "a" * 64
    archive = _archive(
        tmp_path / "links.tar.gz",
        [
            _member(f"docker/containers/{cid}", link=str(canary)),
            _member(f"docker/containers/{'b' * 64}", None),
            _member(
                f"docker/containers/{'b' * 64}/config.v2.json", link=str(canary / "config.v2.json")
            ),  # fmt: skip
            _member(
                "docker/image/overlay2/repositories.json",
                link="../../../../../../" + str(canary / "repositories.json"),
            ),  # fmt: skip
        ],
    )
    code, stdout, _ = verify(archive)
    assert code == 4
    assert "canary-seen" not in stdout
    by_path = {f["path"]: f for f in json.loads(stdout)["findings"]}
    assert "symlink (not followed)" in by_path["image/overlay2/repositories.json"]["message"]
    assert "symlink" in by_path[f"containers/{'b' * 64}/config.v2.json"]["message"]
    assert f"containers/{cid}" in by_path


def test_a_gzip_bomb(tmp_path: Path) -> None:
    """1.5 GiB of zeros in 1.5 MB: refused at the default cap, in one line and bounded memory."""
    code, _, stderr = verify(bomb(tmp_path, 1536 << 20))
    assert code == 8 and "a decompression bomb" in stderr
