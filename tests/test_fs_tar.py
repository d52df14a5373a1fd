"""A tar archive read in place as a tree (forensics.fs.tar): the real sample, recompressed by
the real tools, held against the directory tar itself unpacks; sparse members of every GNU
format; hostile archives made by GNU tar (``-P`` keeps ``..`` and ``/``, ``-r`` appends a
duplicate), cut short, and a decompression bomb."""

from __future__ import annotations

import gzip
import os
import resource
import shutil
import stat
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from conftest import SAMPLES
from tree_compare import compare

from forensics.fs import Refusal, walk
from forensics.fs.compressed import StreamLimits
from forensics.fs.tar import TarLimits, TarOpenError, TarTree, open_tar

SAMPLE = SAMPLES / "modern-overlay2.tar.gz"


def tar(*args: str | Path, cwd: Path | None = None) -> None:
    subprocess.run(["tar", *map(str, args)], check=True, cwd=cwd, capture_output=True)


def open_path(path: Path, **kwargs: object) -> TarTree:
    f = open(path, "rb")  # noqa: SIM115  (closed with the tree's stream by the test's end)
    return open_tar(f, os.fstat(f.fileno()).st_size, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def plain_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tar") / "sample.tar"
    out.write_bytes(gzip.decompress(SAMPLE.read_bytes()))
    return out


@pytest.fixture(scope="module")
def variants(plain_tar: Path) -> dict[str, Path]:
    """The sample as .tar, .tar.gz (as shipped), .tar.xz, .tar.zst, .tar.bz2 and a
    multi-frame zstd (pzstd-like: frames of 64 KiB, via zstd's --block-size? no: split and
    concatenated frames), each made by the real compressor."""
    found = {"tar": plain_tar, "gz": SAMPLE}
    for name, cmd in (("xz", ["xz", "-k", "-T1"]), ("zst", ["zstd", "-q", "-k"]),
                      ("bz2", ["bzip2", "-k"])):  # fmt: skip
        if shutil.which(cmd[0]) is None:
            continue
        subprocess.run([*cmd, str(plain_tar)], check=True)
        found[name] = plain_tar.with_name(f"{plain_tar.name}.{name}")
    if shutil.which("zstd"):
        raw = plain_tar.read_bytes()
        frames = plain_tar.with_name("frames.tar.zst")
        with open(frames, "wb") as out:
            for i in range(0, len(raw), 256 << 10):
                done = subprocess.run(["zstd", "-q", "-c"], input=raw[i : i + (256 << 10)],
                                      capture_output=True, check=True)  # fmt: skip
                out.write(done.stdout)
        found["zst-frames"] = frames
    return found


@pytest.mark.parametrize("kind", ["tar", "gz", "xz", "zst", "bz2", "zst-frames"])
def test_sample_equals_the_unpacked_directory(
    kind: str, variants: dict[str, Path], sample_master: Path
) -> None:
    if kind not in variants:
        pytest.skip(f"no {kind} compressor here")
    with open_path(variants[kind]) as tree:
        assert tree.problems == []
        count = compare(tree, sample_master, (b"docker",), xattrs=os.geteuid() == 0)
        assert count == 573
        assert tree.codec == {"tar": None, "gz": "gzip", "bz2": "bzip2"}.get(
            kind, kind.split("-")[0].replace("zst", "zstd")
        )


def test_overlay_marks_whiteouts_and_hardlinks_as_recorded(plain_tar: Path) -> None:
    with open_path(plain_tar) as tree:
        problems: list = []
        members = list(walk(tree, problems))
        whiteouts = [w for w in members if stat.S_ISCHR(w.stat.mode) and w.stat.rdev == 0]
        assert whiteouts, "the sample's whiteouts are 0/0 character devices"
        opaque = [w for w in members if b"trusted.overlay.opaque" in tree.xattrs(w.parts)]
        impure = [w for w in members if b"trusted.overlay.impure" in tree.xattrs(w.parts)]
        assert opaque or impure
        linked = [w for w in members if stat.S_ISREG(w.stat.mode) and w.stat.nlink == 2]
        assert len(linked) == 2 and linked[0].stat.ino == linked[1].stat.ino
        top = tree.lstat((b"docker",))
        assert not isinstance(top, Refusal)
        assert top.mtime_ns == 1795828483_025865089  # PAX time to the nanosecond


def test_reads_in_any_order_within_bounded_work(variants: dict[str, Path]) -> None:
    """Members read backwards: gzip restarts from its inflate copies (no spill), a one-frame
    zstd spills once, a many-frame zstd restarts at its frames."""
    expected: dict[bytes, bytes] = {}
    for kind in ("tar", "gz", "zst", "zst-frames"):
        if kind not in variants:
            continue
        limits = TarLimits(
            stream=StreamLimits(span=64 << 10, restart_distance=1 << 20, cache_blocks=1)
        )
        with open_path(variants[kind], tar_limits=limits) as tree:
            files = [w.parts for w in walk(tree, []) if stat.S_ISREG(w.stat.mode)]
            for parts in reversed(files):
                f = tree.open_file(parts)
                assert not isinstance(f, Refusal)
                data = f.read()
                assert expected.setdefault(b"/".join(parts), data) == data, (kind, parts)
            if kind == "gz":
                assert not tree.stream.spilled and tree.stream.restart_points > 10
            if kind == "zst":
                assert tree.stream.spilled
            if kind == "zst-frames":
                assert not tree.stream.spilled and tree.stream.restart_points > 5


# -- sparse members and the xattrs of libarchive --------------------------------------------------


@pytest.fixture(scope="module")
def sparse_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("sparse") / "sp"
    src.mkdir()
    with open(src / "holes", "wb") as f:
        for at in (0, 1 << 20, 3 << 20, (5 << 20) + 7):
            f.seek(at)
            f.write(os.urandom(5000))
        f.truncate(8 << 20)
    with open(src / "all-hole", "wb") as f:
        f.truncate(1 << 20)
    return src


@pytest.mark.parametrize(
    "options",
    [
        ["--format=gnu"],
        ["--format=posix", "--sparse-version=0.0"],
        ["--format=posix", "--sparse-version=0.1"],
        ["--format=posix", "--sparse-version=1.0"],
    ],
)
def test_sparse_members_of_every_gnu_format(sparse_source: Path, options: list[str]) -> None:
    archive = sparse_source.parent / f"sparse{'-'.join(options)}.tar"
    tar("-S", *options, "-cf", archive, "sp", cwd=sparse_source.parent)
    assert len(archive.read_bytes()) < 2 << 20  # the holes are not stored
    with open_path(archive) as tree:
        assert tree.problems == []
        times = "s" if options == ["--format=gnu"] else "ns"
        compare(tree, sparse_source, (b"sp",), xattrs=False, times=times)


def test_libarchive_xattrs(tmp_path: Path) -> None:
    if shutil.which("bsdtar") is None:
        pytest.skip("bsdtar (libarchive-tools) is not installed")
    src = tmp_path / "x"
    src.mkdir()
    (src / "f").write_bytes(b"data")
    os.setxattr(src / "f", "user.binary", b"\xff\x00\x01")
    os.setxattr(src / "f", "user.with space", b"text")
    archive = tmp_path / "x.tar"
    subprocess.run(["bsdtar", "--format=pax", "--xattrs", "-cf", archive, "x"], cwd=tmp_path,
                   check=True)  # fmt: skip
    assert b"LIBARCHIVE.xattr." in archive.read_bytes()
    with open_path(archive) as tree:
        assert tree.xattrs((b"x", b"f")) == {
            b"user.binary": b"\xff\x00\x01",
            b"user.with space": b"text",
        }


# -- what the archive does not have ---------------------------------------------------------------


def test_directories_implied_by_members(tmp_path: Path) -> None:
    src = tmp_path / "hostname/var/lib/docker/image"
    src.mkdir(parents=True)
    (src / "f").write_bytes(b"x")
    archive = tmp_path / "collection.tar.gz"
    tar("-czf", archive, "--no-recursion", "hostname/var/lib/docker/image/f", cwd=tmp_path)
    with open_path(archive) as tree:
        assert tree.implied((b"hostname", b"var", b"lib"))
        st = tree.lstat((b"hostname", b"var"))
        assert not isinstance(st, Refusal)
        assert (st.mode, st.uid, st.gid, st.mtime_ns) == (stat.S_IFDIR | 0o755, 0, 0, 0)
        assert not tree.implied((b"hostname", b"var", b"lib", b"docker", b"image", b"f"))
        assert [e.name for e in tree.listdir(()).entries] == [b"hostname"]  # type: ignore[union-attr]


# -- hostile archives -----------------------------------------------------------------------------


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """Made by GNU tar: ``-P`` keeps a name climbing with ``..`` and an absolute name; a
    symlink pointing out; ``-r`` appends a second member of a name already there."""
    work = tmp_path / "work"
    (work / "in").mkdir(parents=True)
    (tmp_path / "outside").write_bytes(b"outside\n")
    (tmp_path / "absolute").write_bytes(b"absolute\n")
    (work / "in/ok").write_bytes(b"first\n")
    (work / "in/out").symlink_to("../../../../etc/passwd")
    archive = tmp_path / "hostile.tar"
    tar("-cPf", archive, "in", "../outside", str(tmp_path / "absolute"), cwd=work)
    (work / "in/ok").write_bytes(b"second, appended\n")
    tar("-rPf", archive, "in/ok", cwd=work)
    return archive


def test_hostile_names_are_problems_never_paths(hostile: Path) -> None:
    with open_path(hostile) as tree:
        kinds = {(p.kind, p.path) for p in tree.problems}
        assert ("unsafe-name", (b"../outside",)) in kinds
        absolute = os.fsencode(hostile.parent / "absolute")
        assert ("absolute-name", (absolute,)) in kinds
        assert ("duplicate", (b"in", b"ok")) in kinds
        # the absolute member is read where tar would extract it, below the archive's root
        inside = tuple(absolute.lstrip(b"/").split(b"/"))
        f = tree.open_file(inside)
        assert not isinstance(f, Refusal) and f.read() == b"absolute\n"
        # the later member wins, as extraction leaves it
        f = tree.open_file((b"in", b"ok"))
        assert not isinstance(f, Refusal) and f.read() == b"second, appended\n"
        # a symlink out is a target, never followed
        assert tree.readlink((b"in", b"out")) == b"../../../../etc/passwd"
        refused = tree.open_file((b"in", b"out", b"x"))
        assert isinstance(refused, Refusal) and refused.kind == "unsafe-path"
        names = {b"/".join(w.parts) for w in walk(tree, [])}
        assert not any(b".." in n.split(b"/") for n in names)


def test_cut_short_archives_keep_what_they_hold(plain_tar: Path, tmp_path: Path) -> None:
    raw = plain_tar.read_bytes()
    with open_path(plain_tar) as whole:
        files = [w for w in walk(whole, []) if stat.S_ISREG(w.stat.mode) and w.stat.size > 4096]
        victim = files[len(files) // 2]
        node = whole._resolve(victim.parts)
        cut_at = node.offset + 100  # type: ignore[union-attr]
    for suffix, data in (("tar", raw[:cut_at]), ("tar.gz", gzip.compress(raw)[: cut_at // 3])):
        path = tmp_path / f"cut.{suffix}"
        path.write_bytes(data)
        with open_path(path) as tree:
            kinds = {p.kind for p in tree.problems}
            assert "cut-short" in kinds or "header" in kinds, tree.problems
            if suffix == "tar":
                refused = tree.open_file(victim.parts)
                assert isinstance(refused, Refusal) and refused.kind == "damaged"
            for w in walk(tree, []):
                f = tree.open_file(w.parts)
                if not isinstance(f, Refusal):
                    f.read()


def test_not_a_tar_archive(tmp_path: Path) -> None:
    path = tmp_path / "notes.gz"
    path.write_bytes(gzip.compress(b"just some text, " * 100))
    with pytest.raises(TarOpenError, match="not a tar archive"):
        open_path(path)


def bomb(tmp_path: Path, size: int) -> Path:
    """A tar member of ``size`` zero bytes, gzip-compressed: the header made by GNU tar from a
    sparse file, the zeros as a run of identical gzip members (valid gzip: members concatenate),
    so that the bomb is built in milliseconds."""
    big = tmp_path / "zeros"
    with open(big, "wb") as f:
        f.truncate(size)
    head = subprocess.run(f"tar -cf - -C {tmp_path} zeros | head -c 512", shell=True,
                          capture_output=True, check=True).stdout  # fmt: skip
    big.unlink()
    chunk = gzip.compress(bytes(1 << 20), 9)
    path = tmp_path / "bomb.tar.gz"
    with open(path, "wb") as f:
        f.write(gzip.compress(head))
        for _ in range(size >> 20):
            f.write(chunk)
    return path


def test_gzip_bomb_is_refused(tmp_path: Path) -> None:
    path = bomb(tmp_path, 64 << 20)
    limits = TarLimits(stream=StreamLimits(ratio_floor=8 << 20, max_ratio=100))
    with pytest.raises(TarOpenError, match="decompression bomb"):
        open_path(path, tar_limits=limits)


def test_gzip_bomb_at_the_default_caps_in_bounded_memory(tmp_path: Path) -> None:
    """1.5 GiB of zeros in 1.5 MB: refused at the default cap (1 GiB past a ratio of 100), in
    a child process whose peak memory is measured."""
    path = bomb(tmp_path, 1536 << 20)
    code = (
        "import os\n"
        "from forensics.fs.tar import open_tar, TarOpenError\n"
        f"f = open({str(path)!r}, 'rb')\n"
        "try:\n"
        "    open_tar(f, os.fstat(f.fileno()).st_size)\n"
        "except TarOpenError as exc:\n"
        "    print('refused:', exc)\n"
        # VmHWM: the peak of this process's own memory (ru_maxrss would carry over the
        # parent's peak across fork and exec)
        "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("refused:") and "decompression bomb" in lines[0]
    assert int(lines[1]) < 150_000, "peak memory over 150 MB"  # KiB


def test_gzip_restart_points_cost_about_40_kb(tmp_path: Path) -> None:
    """The figure the module's docstring gives: a copy of an inflate state mid-stream."""
    data = zlib.compress(os.urandom(1 << 20))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    copies = []
    d = zlib.decompressobj()
    d.decompress(data[: len(data) // 2], 1 << 16)
    for _ in range(2000):
        copies.append(d.copy())
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown / len(copies) < 60  # KiB per copy (maxrss may not grow if memory was free)


def test_a_chain_of_extension_headers_is_bounded(tmp_path: Path) -> None:
    """GNU long-name headers of 1 MiB each, one after another (GNU tar writes one per long
    name): past 4 MiB of headers for one member the index stops with a problem."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    tar("--format=gnu", "-cf", tmp_path / "one.tar", "f", cwd=src)
    header = (tmp_path / "one.tar").read_bytes()[:1024]
    long_name = bytearray(512)
    long_name[:13] = b"././@LongLink"
    long_name[124:136] = b"%011o\0" % (1 << 20)
    long_name[156:157] = b"L"
    long_name[257:265] = b"ustar  \0"
    long_name[148:156] = b" " * 8
    long_name[148:155] = b"%06o\0" % sum(long_name)
    chain = (bytes(long_name) + b"n" * (1 << 20)) * 6
    path = tmp_path / "chain.tar"
    path.write_bytes(header + chain + header + bytes(1024))
    with open_path(path) as tree:
        assert [p.kind for p in tree.problems] == ["header"]
        assert "more than 4 MiB" in tree.problems[0].detail
        assert tree.lstat((b"f",)) is not None
