"""The confined open: every path below ROOT is reached through directory descriptors held from
ROOT down (``openat`` + ``O_NOFOLLOW`` per component, or ``openat2`` with ``RESOLVE_BENEATH``),
never by a path resolved again; names that climb are refused before anything is opened."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from inotify_watch import Watch

from forensics import dirchain
from forensics.dirchain import CACHE_SIZE, DirChain, UnsafeName, WalkError
from forensics.evidence import Evidence, ReadFailure


@pytest.fixture(params=["openat2", "walk"])
def resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each test runs with openat2 (where the kernel has it) and with the component walk."""
    if request.param == "walk":
        monkeypatch.setattr(dirchain._openat2, "usable", False)
    elif not dirchain._openat2.usable:
        pytest.skip("this kernel has no openat2")
    yield request.param


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """ROOT with ``a/b/c/file``, and a decoy outside with the same names."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    for top, text in ((root, "inside"), (outside, "DECOY")):
        (top / "a" / "b" / "c").mkdir(parents=True)
        (top / "a" / "b" / "c" / "file").write_text(text)
    return root, outside


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize(
    "rel", ["../outside/a/b/c/file", "a/../../outside/a", "a/./b", "/etc/passwd", "a//b", "a\0"]
)
def test_names_that_climb_are_refused_before_any_open(tree: tuple[Path, Path], rel: str) -> None:
    root, outside = tree
    watch = Watch(outside, outside / "a")
    with Evidence(root) as ev:
        with pytest.raises(ReadFailure) as exc:
            ev.read_bytes(rel)
        assert exc.value.kind == "unsafe-path"
        assert ev.lstat(rel) is None and ev.readlink(rel) is None
        assert ev.listdir_or_empty(rel) == [] and ev.scandir_types(rel) == {}
        assert ev.read_plain_dir(rel, ("file",)) is None
        with pytest.raises(ReadFailure):
            ev.opendir(rel)
    opened = watch.events()
    watch.close()
    assert opened == []


def test_a_symlink_on_the_way_is_named_and_not_followed(
    tree: tuple[Path, Path], resolver: str
) -> None:
    root, outside = tree
    os.symlink(outside / "a" / "b", root / "a" / "link")
    with Evidence(root) as ev:
        assert ev.read_text("a/b/c/file") == "inside"
        with pytest.raises(ReadFailure) as exc:
            ev.read_bytes("a/link/c/file")
        assert exc.value.kind == "missing" and "a/link" in exc.value.detail
        assert "symlink" in exc.value.detail
        with pytest.raises(ReadFailure) as exc:
            ev.listdir("a/link")
        assert exc.value.kind == "symlink"
        assert ev.readlink("a/link") == str(outside / "a" / "b")
        assert ev.lstat("a/link/c") is None


def test_openat2_reaches_a_deep_directory_in_one_call(
    tree: tuple[Path, Path], resolver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = tree
    calls: list[str] = []
    real = dirchain._openat2.open_dir
    monkeypatch.setattr(
        dirchain._openat2, "open_dir", lambda fd, path: calls.append(path) or real(fd, path)
    )
    with Evidence(root) as ev:
        assert ev.read_text("a/b/c/file") == "inside"
    assert calls == (["a/b/c"] if resolver == "openat2" else [])


def test_walk_errors_say_which_component(tmp_path: Path, resolver: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("x")
    os.symlink("a", tmp_path / "s")
    chain = DirChain(os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY))
    try:
        for rel, where, reason in (
            ("a/x/y", "a/x", "missing"),
            ("s/x/y", "s", "symlink"),
            ("a/f/y", "a/f", "not-directory"),
        ):
            with pytest.raises(WalkError) as exc:
                chain.dir_fd(rel)
            assert (exc.value.where, exc.value.reason) == (where, reason)
        with pytest.raises(UnsafeName):
            chain.dir_fd("a/..")
    finally:
        chain.close()


def test_a_directory_swapped_after_it_was_reached_is_never_followed(
    tree: tuple[Path, Path], resolver: str
) -> None:
    """The directory held open stays the one that was reached (it is inside ROOT, wherever it is
    moved); a new reader meets the symlink and refuses it. The decoy is never opened."""
    root, outside = tree
    ev = Evidence(root)
    assert ev.read_text("a/b/c/file") == "inside"
    os.rename(root / "a", root / "a-away")
    os.symlink(outside / "a", root / "a")
    watch = Watch(outside / "a", outside / "a" / "b", outside / "a" / "b" / "c")
    try:
        assert ev.read_text("a/b/c/file") == "inside"
        with Evidence(root) as fresh, pytest.raises(ReadFailure) as exc:
            fresh.read_bytes("a/b/c/file")
        assert exc.value.kind == "missing" and "symlink" in exc.value.detail
        opened = watch.events()
    finally:
        watch.close()
        ev.close()
    assert opened == []


def test_descriptors_kept_open_are_bounded_and_released(tmp_path: Path, resolver: str) -> None:
    count = CACHE_SIZE * 3
    for n in range(count):
        (tmp_path / "many" / f"d{n}").mkdir(parents=True)
        (tmp_path / "many" / f"d{n}" / "f").write_text(str(n))
    before = _open_fds()
    ev = Evidence(tmp_path)
    for n in range(count):
        assert ev.read_text(f"many/d{n}/f") == str(n)
        assert _open_fds() - before <= CACHE_SIZE + 1  # ROOT and the cache
    ev.close()
    ev.close()  # idempotent
    assert _open_fds() == before


def test_open_regular_hands_over_the_checked_file(tmp_path: Path) -> None:
    (tmp_path / "pool").write_bytes(b"metadata")
    os.mkfifo(tmp_path / "fifo")
    with Evidence(tmp_path) as ev:
        fd, st = ev.open_regular("pool")
        try:
            with open(f"/proc/self/fd/{fd}", "rb") as again:
                assert again.read() == b"metadata" and st.st_size == 8
        finally:
            os.close(fd)
        with pytest.raises(ReadFailure) as exc:
            ev.open_regular("fifo")
        assert exc.value.kind == "not-regular"
