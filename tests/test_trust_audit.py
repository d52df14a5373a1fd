"""The rules of trust held on the newer ways in: the files inside a thin device's filesystem,
a containerd store, a Docker root in an archive or a disk image. Each test is an attack that
once got through on one of them."""

from __future__ import annotations

import gzip
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import fs_images as fi
import pytest
from click.testing import CliRunner
from conftest import SAMPLES, run_cli
from sample_paths import CONTAINERD_META_DB, CONTAINERD_ROOT, SamplePaths

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


# -- an archive that ends early: never a clean report of what it happened to hold --------------


@pytest.fixture(scope="module")
def plain_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The overlay2 sample's archive, decompressed (the members as dockerd's files were)."""
    out = tmp_path_factory.mktemp("plain") / "root.tar"
    out.write_bytes(gzip.decompress((SAMPLES / "modern-overlay2.tar.gz").read_bytes()))
    return out


def _cut_inside(archive: Path, member_suffix: str, out: Path) -> Path:
    """``archive`` cut in the middle of the data of the first member whose name ends so."""
    with tarfile.open(archive) as tar:
        member = next(m for m in tar if m.name.endswith(member_suffix))
    with open(archive, "rb") as f:
        out.write_bytes(f.read(member.offset_data + member.size // 2))
    return out


def _cut_archives(plain_archive: Path, tmp_path: Path) -> list[Path]:
    inside = _cut_inside(plain_archive, "config.v2.json", tmp_path / "cut-in-config.tar")
    raw = plain_archive.read_bytes()
    compressed = gzip.compress(raw, 1)
    gz = tmp_path / "cut.tar.gz"
    gz.write_bytes(compressed[: len(compressed) * 6 // 10])
    return [inside, gz]


@pytest.mark.parametrize("verb", ["inventory", "timeline", "diff"])
def test_an_archive_cut_short_is_no_clean_report(
    plain_archive: Path, tmp_path: Path, truth: dict[str, Any], verb: str
) -> None:
    """An archive that ends before its end (cut inside a member, or its gzip stream cut short)
    holds part of the root: inventory, timeline and diff cannot name what is missing in their
    output, so they exit 8 in one line, as for a directory with parts that cannot be read —
    not 0 with a root that looks like another (``layout: legacy``, no images) or 16 with "no
    such container" for a container the archive lost."""
    cid = next(c["Id"] for c in truth["inspect_containers"] if c["Name"] == "/exited")
    for archive in _cut_archives(plain_archive, tmp_path):
        args = ["diff", cid, archive] if verb == "diff" else [verb, archive]
        result = run_cli(*args)
        assert result.code == 8, (archive.name, result.code, result.stderr)
        assert result.stdout == ""
        last = result.stderr.strip().splitlines()[-1]
        assert "this report would be incomplete" in last, result.stderr
        assert "cut short" in last or "ends inside" in last, last


def test_verify_names_the_cut_of_an_archive(plain_archive: Path, tmp_path: Path) -> None:
    """verify says, as a finding at the root, that the archive ends early: the errors that
    follow (a layer directory missing, the short links gone) are what it could not hold."""
    for archive in _cut_archives(plain_archive, tmp_path):
        result = run_cli("verify", "--format", "json", archive)
        assert result.code == 4, result.stderr
        at_root = [
            f
            for f in result.json()["findings"]
            if f["check"] == "layout.evidence-damaged" and f["path"] == ""
        ]
        assert len(at_root) == 1, result.stdout[:3000]
        assert "cut short" in at_root[0]["message"] or "ends inside" in at_root[0]["message"]


# -- a layer file made huge: read no further than the layer records ---------------------------


def test_a_layer_file_grown_sparse_is_not_read_past_its_recorded_size(
    sample_root: Path, truth: dict[str, Any]
) -> None:
    """A file of a layer grown to 4 GiB (sparse: nothing on disk, 4 GiB to read) is
    ``size-changed`` from its size alone: ``verify --deep`` reads no more of the layer than
    it records (a 16 TiB sparse file would otherwise take hours to read as zeros)."""
    s = SamplePaths(sample_root, truth)
    chain = s.chain("sample/bk:1.0")[-1]
    diff = sample_root / "overlay2" / s.cache_id(chain) / "diff"
    victim = diff / "bk" / "hello.txt"
    recorded = victim.stat().st_size
    os.truncate(victim, 4 << 30)
    result = run_cli("verify", "--deep", "--format", "json", sample_root)
    assert result.code == 4, result.stderr
    doc = result.json()
    (layer,) = [layer for layer in doc["layers"] if layer["layer_id"] == chain]
    assert layer["bytes_read"] <= layer["file_bytes"], layer
    changed = [f for f in doc["findings"] if f["check"] == "layer.file-size-changed"]
    assert (
        len(changed) == 1
        and f"{4 << 30} bytes on disk, {recorded} in the layer" in (changed[0]["message"])
    ), changed
    assert any(f["check"] == "layer.diff-id-mismatch" for f in doc["findings"])
