"""The rules of trust held on the newer ways in: the files inside a thin device's filesystem,
a containerd store, a Docker root in an archive or a disk image. Each test is an attack that
once got through on one of them."""

from __future__ import annotations

import json
from pathlib import Path

import fs_images as fi
import pytest
from click.testing import CliRunner
from conftest import run_cli
from sample_paths import CONTAINERD_META_DB, CONTAINERD_ROOT

from forensics.cli.thin import thin
from forensics.containerd_model import StoreProblem
from forensics.evidence import Evidence
from forensics.formats.boltwrite import encode_bolt
from forensics.stores.containerd import read_containerd_store
from forensics.stores.containerd.boltread import read_tree
from forensics.stores.containerd.content import read_document

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


# -- containerd: a digest read from meta.db names a blob file -----------------------------------


def _hostile_target(root: Path, digest: bytes) -> str:
    """The sample's meta.db written again with image ``moby``/``docker.io/sample/app:1.0``
    pointing at ``digest``; returns the image's name."""
    db = root / CONTAINERD_META_DB
    tree = read_tree(db.read_bytes())
    name = b"docker.io/sample/app:1.0"
    image = tree.root.bucket(b"v1", b"moby", b"images", name)
    assert image is not None
    image.buckets[b"target"].values[b"digest"] = digest
    db.write_bytes(encode_bolt(tree.root, txid=(tree.txid or 0) + 1).data)
    return name.decode()


class _Recording(Evidence):
    """An Evidence that notes every path it is asked to read."""

    asked: list[str]

    def read_bytes(self, rel: str, limit: int = 1 << 20) -> bytes:
        self.asked.append(rel)
        return super().read_bytes(rel, limit)


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:../../../../../../../../etc/passwd",
        "sha256:" + "0" * 63 + "/",
        "../../x",
        "sha256:" + "A" * 64,
    ],
)
def test_a_blob_digest_is_judged_before_it_names_a_file(
    containerd_master: Path, digest: str
) -> None:
    """A digest read from meta.db or an image document becomes ``blobs/<algorithm>/<hex>``: it
    is held to containerd's digest grammar before it is joined (as Docker's ids are), so a
    ``..`` in it never reaches a path, whatever the reader below would do with it."""
    with _Recording(containerd_master) as ev:
        ev.asked = []
        store = read_containerd_store(ev, CONTAINERD_ROOT)
        ev.asked.clear()
        problems: list[StoreProblem] = []
        assert read_document(ev, store, digest, problems) is None
    assert ev.asked == []
    assert [p.kind for p in problems] == ["bad-digest"], problems
    assert "not a digest" in problems[0].detail


def test_a_hostile_image_target_is_a_finding_never_a_read(
    containerd_root: Path, tmp_path: Path
) -> None:
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "passwd").write_text('{"schemaVersion": 2, "decoy": "seen"}')
    climb = "../" * (len(containerd_root.parts) + 6) + str(decoy / "passwd").lstrip("/")
    name = _hostile_target(containerd_root, f"sha256:{climb}".encode())
    result = run_cli("verify", "--format", "json", containerd_root)
    assert result.code == 4, result.stderr
    damaged = [f for f in result.json()["findings"] if f["check"] == "containerd.document-damaged"]
    assert damaged and all("not a digest" in f["message"] for f in damaged), damaged
    assert any(name in f["message"] for f in damaged)
