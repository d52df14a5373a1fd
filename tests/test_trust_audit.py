"""The rules of trust held on the newer ways in: the files inside a thin device's filesystem,
a containerd store, a Docker root in an archive or a disk image. Each test is an attack that
once got through on one of them."""

from __future__ import annotations

import json

import fs_images as fi
import pytest
from click.testing import CliRunner

from forensics.cli.thin import thin

#: what a hostile name may carry that a terminal obeys: CSI and OSC as C1 controls, a
#: right-to-left override, BEL and a new line
UNSAFE = "\u009b31m\u202eevil\u009d0;x\u0007\n"
UNSAFE_CODES = set("\u009b\u009d\u202e\u0007")


@pytest.fixture(scope="module")
def hostile_names_pool(tmp_path_factory: pytest.TempPathFactory) -> fi.PoolFiles:
    """A pool whose device 1 holds an ext4 filesystem (mkfs.ext4 -d) with a file, a directory,
    a symlink target and an xattr name carrying terminal controls."""
    tmp = tmp_path_factory.mktemp("hostile-names")
    src = tmp / "src"
    src.mkdir()
    (src / f"file{UNSAFE}").write_text("x")
    (src / f"dir{UNSAFE}").mkdir()
    (src / f"dir{UNSAFE}" / "inner").write_text("y")
    (src / "link").symlink_to(f"/etc/{UNSAFE}")
    image = tmp / "ext4.img"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    fi.run("mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "nodiscard,root_owner=0:0", "-d", src,
           image)  # fmt: skip
    return fi.pool_of(tmp, [image])


def test_thin_files_escapes_terminal_controls_in_names_of_a_device(
    hostile_names_pool: fi.PoolFiles,
) -> None:
    """``thin files`` text prints names read from a device's filesystem: a C1 control, a bidi
    override, BEL or a new line in one is escaped as verify escapes it, one member a line."""
    pool = hostile_names_pool
    result = CliRunner().invoke(thin, ["files", str(pool.metadata), str(pool.data), "--dev", "1"])
    assert result.exit_code == 0, result.output
    raw = sorted({f"U+{ord(c):04X}" for c in result.stdout if c in UNSAFE_CODES})
    assert not raw, raw
    lines = result.stdout.splitlines()
    assert len(lines) == 6, lines  # /, lost+found, the file, the directory, inner, the link
    escaped = "\\u009b31m\\u202eevil\\u009d0;x\\x07\\x0a"
    assert sum(escaped in line for line in lines) == 4, lines
    as_json = CliRunner().invoke(
        thin, ["files", str(pool.metadata), str(pool.data), "--dev", "1", "--format", "json"]
    )
    paths = [m["path"] for m in json.loads(as_json.stdout)["files"]]
    assert f"/file{UNSAFE}" in paths  # the JSON keeps the name itself, escaped by the encoder
