"""TarSum (legacy ``graph/<id>/checksum``) against the vectors that moby's Go implementation
computed, the streaming reader on real tar variants, and --deep's comparison on a real Docker 1.8
aufs host.

The published vectors are from moby/moby ``pkg/tarsum/tarsum_test.go``: ``TestIteration``'s six
header-only tars (in two editions: as first published, hashing ``uname``/``gname``, and as
re-published after moby blanked them for Go 1.10), and ``TestTarSums``' 1 MiB ``sizedTar`` in
sha256 and the md5/sha1/sha224/sha384/sha512 variants. The inputs are written here with Python's
``tarfile`` (an independent writer), with the header values Go's writer was given: Go's zero
``time.Time`` reads back as mtime 0, a ``TypeReg`` header keeps ``'0'`` and ``sizedTar``'s unset
``Typeflag`` keeps ``'\\0'`` — the only reading that reproduces the published sums.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forensics.evidence import Evidence
from forensics.layers import LayerJob, layer_jobs, verify_layer
from forensics.layers.tarsum import TarSum, TarSumError, parse_label
from forensics.stores.host import read_host

V0, V1, DEV = 0, 1, 2
SLARTI = {"uid": 1000, "gid": 1000, "uname": "slartibartfast", "gname": "users"}
KEYS = {"SCHILY.xattr.user.key1": "value1", "SCHILY.xattr.user.key2": "value2"}
KEYS_UPPER = {"SCHILY.xattr.user.KEY1": "value1", "SCHILY.xattr.user.key2": "value2"}
NOT_CALCULATED = {"SCHILY.xattr.user.NOT": "CALCULATED"}

#: TestIteration: version, header, data, sum as first published, sum since uname/gname blanked
ITERATION: list[tuple[int, dict[str, Any], dict[str, str], bytes, str, str | None]] = [
    (V0, {"name": "file.txt"}, {}, b"",
     "626c4a2e9a467d65c33ae81f7f3dedd4de8ccaee72af73223c4bc4718cbc7bbd", None),
    (DEV, {"name": "file.txt"}, {}, b"",
     "6ffd43a1573a9913325b4918e124ee982a99c0f3cba90fc032a65f5e20bdd465", None),
    (DEV, {"name": "another.txt", **SLARTI}, {}, b"test",
     "b38166c059e11fb77bef30bf16fba7584446e80fcc156ff46d47e36c5305d8ef",
     "862964db95e0fa7e42836ae4caab3576ab1df8d275720a45bdd01a5a3730cc63"),
    (DEV, {"name": "xattrs.txt", **SLARTI}, KEYS, b"test",
     "4cc2e71ac5d31833ab2be9b4f7842a14ce595ec96a37af4ed08f87bc374228cd",
     "4b1ba03544b49d96a32bacc77f8113220bd2f6a77e7e6d1e7b33cd87117d88e7"),
    (DEV, {"name": "xattrs.txt", **SLARTI}, KEYS_UPPER, b"test",
     "65f4284fa32c0d4112dd93c3637697805866415b570587e4fd266af241503760",
     "410b602c898bd4e82e800050f89848fc2cf20fd52aa59c1ce29df76b878b84a6"),
    (V0, {"name": "xattrs.txt", **SLARTI}, NOT_CALCULATED, b"test",
     "c12bb6f1303a9ddbf4576c52da74973c00d14c109bcfa76b708d5da1154a07fa",
     "b1f97eab73abd7593c245e51070f9fbdb1824c6b00a0b7a3d7f0015cd05e9e86"),
]  # fmt: skip

#: TestTarSums: sizedTar{1, 1 MiB, zeros} under each hash
SIZED = {
    "sha256": "8bf12d7e67c51ee2e8306cba569398b1b9f419969521a12ffb9d8875e8836738",
    "md5": "0d7529ec7a8360155b48134b8e599f53",
    "sha1": "f1fee39c5925807ff75ef1925e7a23be444ba4df",
    "sha224": "6319390c0b061d639085d8748b14cd55f697cf9313805218b21cf61c",
    "sha384": "a578ce3ce29a2ae03b8ed7c26f47d0f75b4fc849557c62454be4b5ffd66ba021"
    "e713b48ce71e947b43aab57afd5a7636",
    "sha512": "e9bfb90ca5a4dfc93c46ee061a5cf9837de6d2fdf82544d6460d3147290aecfa"
    "bf7b5e415b9b6e72db9b8941f149d5d69fb17a394cbfaf2eac523bd9eae21855",
}
LABELS = {V0: "tarsum", V1: "tarsum.v1", DEV: "tarsum.dev"}


def make_tar(members: list[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for info, data in members:
            info.size = len(data) if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


def info(name: str, **fields: object) -> tarfile.TarInfo:
    """A header as Go's ``tar.Header{}`` literal gives it: zero mode, zero time, no names."""
    ti = tarfile.TarInfo(name)
    ti.mode, ti.mtime = 0, 0
    for key, value in fields.items():
        setattr(ti, key, value)
    return ti


def tarsum_of(data: bytes, version: int = V0, hash_name: str = "sha256", **kw: bool) -> TarSum:
    ts = TarSum(version, hash_name, **kw)
    ts.update(data)
    ts.close()
    return ts


@pytest.mark.parametrize("case", range(len(ITERATION)))
def test_iteration_vectors_of_docker_1x(case: int) -> None:
    """Docker 1.x hashed uname and gname: the vectors as first published."""
    version, header, xattrs, data, first, _ = ITERATION[case]
    tar = make_tar([(info(pax_headers=dict(xattrs), **header), data)])
    assert tarsum_of(tar, version).sum() == f"{LABELS[version]}+sha256:{first}"


@pytest.mark.parametrize("case", range(len(ITERATION)))
def test_iteration_vectors_since_names_are_blanked(case: int) -> None:
    version, header, xattrs, data, first, blanked = ITERATION[case]
    tar = make_tar([(info(pax_headers=dict(xattrs), **header), data)])
    expected = blanked or first  # no uname/gname in the header: both editions agree
    assert tarsum_of(tar, version, blank_names=True).sum() == f"{LABELS[version]}+sha256:{expected}"


@pytest.mark.parametrize("hash_name", sorted(SIZED))
def test_one_mebibyte_sized_tar(hash_name: str) -> None:
    member = info("/testdata0", mode=0o755, type=tarfile.AREGTYPE)  # Typeflag left unset
    tar = make_tar([(member, bytes(1024 * 1024))], tarfile.USTAR_FORMAT)
    assert tarsum_of(tar, V0, hash_name).sum() == f"tarsum+{hash_name}:{SIZED[hash_name]}"


def test_empty_tar_is_the_hash_of_nothing() -> None:
    """TestEmptyTar: two zero blocks, and no bytes at all, give the digest of an empty input;
    an extra payload is hashed before the (empty) list of member sums."""
    empty = "tarsum+sha256:" + hashlib.sha256().hexdigest()
    assert tarsum_of(bytes(1024)).sum() == empty
    assert tarsum_of(b"").sum() == empty
    assert tarsum_of(bytes(1024)).sum(b"{}") == "tarsum+sha256:" + hashlib.sha256(b"{}").hexdigest()


def test_payload_comes_before_the_sorted_member_sums() -> None:
    tar = make_tar([(info("b"), b"2"), (info("a"), b"1")])
    ts = tarsum_of(tar)
    sums = sorted(digest for _, digest in ts.sums)
    assert len(sums) == 2
    want = hashlib.sha256(b"JSON" + "".join(sums).encode()).hexdigest()
    assert ts.sum(b"JSON") == f"tarsum+sha256:{want}"


def layer_like(fmt: int) -> bytes:
    """Members of every kind a layer holds: directories, a file with a long name,
    a symlink with a long target, a hardlink, a device, a whiteout."""
    long_name = "usr/share/" + "d" * 90 + "/" + "f" * 60 + ".txt"
    return make_tar(
        [
            (info("usr/", type=tarfile.DIRTYPE, mode=0o755, mtime=1_400_000_000), b""),
            (info(long_name, mode=0o644, **SLARTI), b"x" * 5000),
            (info("usr/link", type=tarfile.SYMTYPE, linkname="/" + "t" * 120), b""),
            (info("usr/hard", type=tarfile.LNKTYPE, linkname=long_name), b""),
            (info("dev/null", type=tarfile.CHRTYPE, devmajor=1, devminor=3), b""),
            (info("etc/.wh.gone", mtime=1_500_000_000), b""),
            (info("bin/sh", mode=0o4755), bytes(range(256)) * 40),
        ],
        fmt,
    )


@pytest.mark.parametrize("version", [V0, V1, DEV])
def test_header_values_not_bytes_count(version: int) -> None:
    """The same members written as PAX (path/linkpath records), GNU (``L``/``K`` headers) and
    ustar (prefix field) have the same TarSum: the header as Go's reader presents it."""
    pax, gnu = layer_like(tarfile.PAX_FORMAT), layer_like(tarfile.GNU_FORMAT)
    assert pax != gnu
    assert tarsum_of(pax, version).sum() == tarsum_of(gnu, version).sum()
    short = [(info("usr/" + "p" * 120 + "/file", mode=0o600), b"data")]
    assert (
        tarsum_of(make_tar(short, tarfile.USTAR_FORMAT), version).sum()
        == tarsum_of(make_tar(short, tarfile.PAX_FORMAT), version).sum()
    )


def test_versions_differ_in_mtime_and_xattrs() -> None:
    a = make_tar([(info("f", mtime=1, pax_headers={"SCHILY.xattr.user.a": "1"}), b"x")])
    b = make_tar([(info("f", mtime=2, pax_headers={"SCHILY.xattr.user.a": "1"}), b"x")])
    c = make_tar([(info("f", mtime=1, pax_headers={"SCHILY.xattr.user.a": "2"}), b"x")])
    assert tarsum_of(a, V0).sum() != tarsum_of(b, V0).sum()  # v0 hashes the mtime
    assert tarsum_of(a, V0).sum() == tarsum_of(c, V0).sum()  # but no xattrs
    assert tarsum_of(a, V1).sum() == tarsum_of(b, V1).sum()  # v1: no mtime
    assert tarsum_of(a, V1).sum() != tarsum_of(c, V1).sum()  # but xattrs
    assert tarsum_of(a, V1).sum().split(":")[1] == tarsum_of(a, DEV).sum().split(":")[1]


def test_pax_mtime_is_floored_like_go() -> None:
    whole = make_tar([(info("f", mtime=-2), b"")], tarfile.GNU_FORMAT)
    fraction = make_tar([(info("f", pax_headers={"mtime": "-1.5"}), b"")])
    plain = make_tar([(info("f", pax_headers={"mtime": "-2"}), b"")])
    assert tarsum_of(fraction).sum() == tarsum_of(plain).sum() == tarsum_of(whole).sum()


@pytest.mark.parametrize("chunk", [1, 7, 511, 512, 513, 4096, 1 << 20])
def test_any_chunking_gives_the_same_sum(chunk: int) -> None:
    tar = layer_like(tarfile.PAX_FORMAT) + bytes(8192)  # record padding after the end
    whole = tarsum_of(tar, V1).sum()
    ts = TarSum(V1)
    for i in range(0, len(tar), chunk):
        ts.update(memoryview(tar)[i : i + chunk])
    ts.close()
    assert ts.sum() == whole
    assert len(ts.sums) == 7


def test_order_counts_only_for_duplicate_names() -> None:
    """Members are sorted by digest, so archive order does not matter; two members of one path
    keep their archive order (moby's collision fix): swapping them changes the sum."""
    a, b = (info("x"), b"first"), (info("y"), b"second")
    assert tarsum_of(make_tar([a, b])).sum() == tarsum_of(make_tar([b, a])).sum()
    one, two = (info("dup"), b"old"), (info("./dup"), b"new")
    forward = tarsum_of(make_tar([one, two, b]))
    backward = tarsum_of(make_tar([two, one, b]))
    assert sorted(d for _, d in forward.sums) == sorted(d for _, d in backward.sums)
    assert forward.sum() != backward.sum()


def test_damage_and_unsupported_members_are_errors() -> None:
    tar = bytearray(make_tar([(info("f"), b"data")]))
    bad = bytearray(tar)
    bad[0] ^= 1  # breaks the header checksum
    with pytest.raises(TarSumError) as err:
        tarsum_of(bytes(bad))
    assert err.value.kind == "damaged"
    with pytest.raises(TarSumError, match="ends inside a member"):
        tarsum_of(bytes(tar[:600]))
    sparse = bytearray(tar[:512])
    sparse[156:157] = b"S"
    sparse[148:156] = b" " * 8
    sparse[148:156] = f"{sum(sparse):06o}\0 ".encode()
    with pytest.raises(TarSumError) as err:
        tarsum_of(bytes(sparse) + bytes(1536))
    assert err.value.kind == "unsupported"
    ts = TarSum()
    with pytest.raises(TarSumError):
        ts.update(bytes(bad))
    ts.update(b"more")  # ignored after the error
    assert ts.error is not None


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("tarsum+sha256:" + "a" * 64, True),
        ("tarsum.v1+sha256:" + "0" * 64 + "\n", True),
        ("tarsum.dev+sha512:" + "f" * 128, True),
        ("sha256:" + "a" * 64, False),
        ("tarsum+sha256:" + "a" * 63, False),
        ("tarsum.v2+sha256:" + "a" * 64, False),
        ("tarsum+crc32:" + "a" * 8, False),
        ("", False),
    ],
)
def test_labels(text: str, ok: bool) -> None:
    label = parse_label(text)
    assert (label is not None) == ok
    if label is not None:
        assert str(label) == text.strip()


# -- a real Docker 1.8 aufs host: the rebuilt layer's TarSum against graph/<id>/checksum ---------


def busybox_job(root: Path) -> LayerJob:
    host = read_host(Evidence(root))
    (job,) = [j for j in layer_jobs(host) if host.layers[j.layer_id].parent is None]
    return job


def test_rebuilt_stream_and_sink_agree(corpus_roots: dict[str, Path], tmp_path: Path) -> None:
    """TarSum fed by the reassembly equals TarSum over the rebuilt bytes read back as a tar
    by Python's tarfile (an independent reader) member by member."""
    root = corpus_roots["aufs.v1"]
    out = io.BytesIO()
    report = verify_layer(busybox_job(root), sink=out.write)
    assert report.ok and report.files_read > 0
    stream = out.getvalue()
    ours = tarsum_of(stream)
    theirs = []
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isreg() else None
            data = handle.read() if handle is not None else b""
            h = hashlib.sha256()
            for key, value in (
                ("name", member.name + ("/" if member.isdir() else "")),
                ("mode", str(member.mode)),
                ("uid", str(member.uid)),
                ("gid", str(member.gid)),
                ("size", str(member.size)),
                ("mtime", str(int(member.mtime))),
                ("typeflag", member.type.decode()),
                ("linkname", member.linkname),
                ("uname", member.uname),
                ("gname", member.gname),
                ("devmajor", str(member.devmajor)),
                ("devminor", str(member.devminor)),
            ):
                h.update((key + value).encode("utf-8", "surrogateescape"))
            h.update(data)
            theirs.append(h.hexdigest())
    assert sorted(theirs) == sorted(d for _, d in ours.sums)


@given(st.binary(max_size=4096), st.integers(min_value=1, max_value=700))
def test_arbitrary_bytes_give_a_sum_or_a_tarsum_error(data: bytes, chunk: int) -> None:
    ts = TarSum(V1)
    try:
        for i in range(0, len(data), chunk):
            ts.update(data[i : i + chunk])
        ts.close()
    except TarSumError:
        assert ts.error is not None
        return
    assert ts.sum().startswith("tarsum.v1+sha256:")


@given(st.lists(st.tuples(st.integers(0, 6143), st.integers(0, 255)), max_size=8))
def test_damaged_tars_give_a_sum_or_a_tarsum_error(edits: list[tuple[int, int]]) -> None:
    tar = bytearray(layer_like(tarfile.PAX_FORMAT)[:6144])
    for at, value in edits:
        tar[at] = value
    ts = TarSum(V0)
    try:
        ts.update(bytes(tar))
        ts.close()
    except TarSumError as exc:
        assert exc.kind in ("damaged", "unsupported")


def test_a_missing_file_breaks_the_tarsum(corpus_roots: dict[str, Path], tmp_path: Path) -> None:
    """A file gone from the layer leaves its data out of the rebuilt tar: the stream no longer
    reads as the tar that was pushed, and the layer fails its TarSum (beside file-missing)."""
    root = tmp_path / "docker"
    shutil.copytree(corpus_roots["aufs.v1"], root, symlinks=True)
    job = busybox_job(root)
    ts = TarSum(V0)
    verify_layer(job, sink=ts.update)
    ts.close()
    with_json = ts.sum((root / job.tar_split).parent.joinpath("json").read_bytes())
    gid = job.layer_id
    job = replace(
        job,
        tarsum=with_json,
        checksum=f"graph/{gid}/checksum",
        tarsum_payload=f"graph/{gid}/json",
    )
    clean = verify_layer(job)
    assert (clean.tarsum, clean.tarsum_payload, clean.problems) == (with_json, "json", [])
    (root / job.content_dir / "etc" / "group").unlink()
    report = verify_layer(job)
    checks = {i.check for i in report.issues()}
    assert {"layer.file-missing", "layer.tarsum-mismatch"} <= checks
    (problem,) = [p for p in report.problems if p.kind == "tarsum-mismatch"]
    assert problem.path == f"graph/{gid}/checksum" and with_json in problem.message
