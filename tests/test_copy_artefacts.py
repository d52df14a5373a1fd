"""Copy artefacts said once: a copy of the overlay2 sample made as a user makes one (``tar``
extracted under a umask, ``cp -r``) is reported as one ``layout.copy-artefact`` finding per
pattern at the Docker root, not file by file; a file changed in another way is still named."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLES, copy_tree

from forensics.layers.copy_artefacts import mode_mask

SAMPLE_TARBALL = SAMPLES / "modern-overlay2.tar.gz"
CHECK = "layout.copy-artefact"


def _deep(cli: Any, root: Path) -> dict[str, Any]:
    result = cli("verify", root, "--deep", "--format", "json", "--no-progress")
    assert result.code in (0, 4), result.stderr
    return result.json()


def _of(doc: dict[str, Any], check: str) -> list[dict[str, Any]]:
    return [f for f in doc["findings"] if f["check"] == check]


def _errors(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in doc["findings"] if f["severity"] == "error"]


def _extracted_under_umask(dest: Path, umask: str) -> Path:
    """The sample unpacked by tar under ``umask``, as a user does who does not ask tar to keep
    permissions (root must say so; any other user gets it by default). Xattrs are kept: the
    umask is the only artefact."""
    dest.mkdir()
    subprocess.run(
        [
            "sh",
            "-c",
            f'umask {umask} && tar --no-same-permissions --xattrs --xattrs-include="*" '
            f'--numeric-owner -xzf "$0" -C "$1"',
            str(SAMPLE_TARBALL),
            str(dest),
        ],
        check=True,
    )
    return dest / "docker"


def _mode_differences(exact: Path, copy: Path, content_dirs: list[str]) -> int:
    """Entries of the layers' directories whose permission bits differ between the two trees
    (symlinks have none that count), counted by walking them."""
    count = 0
    for rel in content_dirs:
        for top, dirs, files in os.walk(exact / rel):
            for name in (*dirs, *files):
                here = Path(top, name)
                mine = here.lstat()
                if stat.S_ISLNK(mine.st_mode):
                    continue
                theirs = (copy / here.relative_to(exact)).lstat()
                count += stat.S_IMODE(mine.st_mode) != stat.S_IMODE(theirs.st_mode)
    return count


@pytest.fixture(scope="module")
def umask_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _extracted_under_umask(tmp_path_factory.mktemp("umask027") / "copy", "027")


def test_a_copy_made_under_umask_027_is_one_finding(
    cli: Any, umask_copy: Path, sample_master: Path
) -> None:
    doc = _deep(cli, umask_copy)
    artefacts = _of(doc, CHECK)
    assert [(f["path"], f["damage"], f["severity"]) for f in artefacts] == [
        ("", "mode-mask", "warning")
    ]
    message = artefacts[0]["message"]
    assert "a umask of 027" in message
    dirs = [layer["content_dir"] for layer in doc["layers"]]
    touched = _mode_differences(sample_master, umask_copy, dirs)
    assert touched > 20
    assert f" on {touched} entries of " in message
    assert not _of(doc, "layer.file-mode-changed")
    assert len(_errors(doc)) <= 5
    assert all(layer["counts"]["mode-changed"] == 0 for layer in doc["layers"])
    assert all(layer["diff_id_matches"] for layer in doc["layers"])


def test_the_entries_explained_are_intact_in_the_database(
    cli: Any, umask_copy: Path, tmp_path: Path
) -> None:
    db = tmp_path / "case.db"
    result = cli("verify", umask_copy, "--deep", "--sqlite", db, "--no-progress")
    assert result.code == 0, result.stderr
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT status, detail FROM layer_files WHERE detail LIKE 'copy artefact%'"
        ).fetchall()
        statuses = {s for (s,) in conn.execute("SELECT DISTINCT status FROM layer_files")}
    assert rows and {status for status, _ in rows} == {"ok"}
    assert all("(mode-mask): mode 0" in detail for _, detail in rows)
    assert "mode-changed" not in statuses


def test_a_copy_made_with_cp_r_is_said_once(cli: Any, sample_master: Path, tmp_path: Path) -> None:
    """``cp -r`` keeps no xattr (the opaque mark), no setuid bit, and applies the umask."""
    copy = tmp_path / "docker"
    subprocess.run(["cp", "-r", str(sample_master), str(copy)], check=True)
    doc = _deep(cli, copy)
    lost = [f for f in _of(doc, CHECK) if f["damage"] == "xattrs-lost"]
    assert len(lost) == 1 and lost[0]["path"] == ""
    assert "trusted.overlay.opaque" in lost[0]["message"]
    assert all(f["path"] == "" for f in _of(doc, CHECK))
    assert len(_of(doc, CHECK)) <= 2
    assert not [f for f in doc["findings"] if f["path"].endswith(".wh..wh..opq")]
    assert len(_errors(doc)) <= 5


def test_one_odd_mode_in_an_exact_copy_is_an_error_naming_it(
    cli: Any, sample_root: Path, sample_master: Path
) -> None:
    victim = _a_layer_file(sample_root, 0o644)
    victim.chmod(0o600)
    doc = _deep(cli, sample_root)
    assert not _of(doc, CHECK)
    named = [f["path"] for f in _of(doc, "layer.file-mode-changed")]
    assert named == [str(victim.relative_to(sample_root))]


def test_one_setuid_bit_dropped_in_an_exact_copy_is_still_named(
    cli: Any, sample_root: Path
) -> None:
    """The sample's only setuid file losing that bit could be a mask of one bit that no other
    file keeps: one entry is no pattern."""
    victim = next(p for p in sample_root.glob("overlay2/*/diff/data/owned-by-1234"))
    assert victim.lstat().st_mode & stat.S_ISUID
    victim.chmod(0o750)
    doc = _deep(cli, sample_root)
    assert not _of(doc, CHECK)
    assert [f["path"] for f in _of(doc, "layer.file-mode-changed")] == [
        str(victim.relative_to(sample_root))
    ]


def test_an_odd_mode_in_a_masked_copy_is_still_named(
    cli: Any, umask_copy: Path, tmp_path: Path
) -> None:
    copy = copy_tree(umask_copy, tmp_path / "docker")
    victim = _a_layer_file(copy, 0o640)
    victim.chmod(0o646)  # world-writable: no mask adds a bit
    doc = _deep(cli, copy)
    assert [f["damage"] for f in _of(doc, CHECK)] == ["mode-mask"]
    assert [f["path"] for f in _of(doc, "layer.file-mode-changed")] == [
        str(victim.relative_to(copy))
    ]


def test_contents_are_still_checked_in_a_masked_copy(
    cli: Any, umask_copy: Path, tmp_path: Path
) -> None:
    copy = copy_tree(umask_copy, tmp_path / "docker")
    victim = _a_layer_file(copy, 0o640)
    data = bytearray(victim.read_bytes())
    data[0] ^= 0xFF
    victim.write_bytes(bytes(data))
    doc = _deep(cli, copy)
    assert [f["damage"] for f in _of(doc, CHECK)] == ["mode-mask"]
    assert [f["path"] for f in _of(doc, "layer.file-modified")] == [str(victim.relative_to(copy))]
    assert any(layer["diff_id_matches"] is False for layer in doc["layers"])


def test_a_lone_whiteout_gone_is_still_named(cli: Any, sample_root: Path) -> None:
    """Whiteouts are said as a copy artefact only when there are several and all are gone:
    the sample's one whiteout removed is a file un-hidden, by name."""
    whiteouts = [
        p
        for layer in _image_layer_dirs(sample_root)
        for p in layer.rglob("*")
        if p.is_char_device() and p.lstat().st_rdev == 0
    ]
    assert len(whiteouts) == 1
    whiteouts[0].unlink()
    doc = _deep(cli, sample_root)
    assert not _of(doc, CHECK)
    missing = [f["path"] for f in _of(doc, "layer.file-missing")]
    assert len(missing) == 1 and missing[0].endswith("/etc/.wh.motd")


def test_an_exact_copy_has_no_artefact(cli: Any, sample_master: Path) -> None:
    assert not _of(_deep(cli, sample_master), CHECK)


@pytest.mark.parametrize(
    ("modes", "mask"),
    [
        ([(0o755, 0o750), (0o644, 0o640), (0o1777, 0o750), (0o600, 0o600)], 0o1027),
        ([(0o755, 0o755), (0o644, 0o600)], 0),  # one file chmod-ed: others keep its bits
        ([(0o4755, 0o755), (0o755, 0o755)], 0o4000),
        ([], 0),
    ],
)
def test_mode_mask(modes: list[tuple[int, int]], mask: int) -> None:
    assert mode_mask(modes) == mask


def _a_layer_file(root: Path, mode: int) -> Path:
    """A regular file of an image layer's diff (not a container's) with ``mode`` and some
    bytes."""
    for layer in _image_layer_dirs(root):
        for path in sorted(layer.rglob("*")):
            st = path.lstat()
            if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == mode and st.st_size:
                return path
    raise AssertionError(f"no layer file of mode {mode:o}")


def _image_layer_dirs(root: Path) -> list[Path]:
    """The diff directories of the image layers (those a tar-split describes)."""
    layerdb = root / "image" / "overlay2" / "layerdb" / "sha256"
    cache_ids = sorted(p.read_text().strip() for p in layerdb.glob("*/cache-id"))
    return [root / "overlay2" / cache_id / "diff" for cache_id in cache_ids]
