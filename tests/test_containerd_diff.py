"""``diff`` of the containers of the containerd-store sample: Docker 29's (``containers/``, their
writable snapshot in namespace moby over ``<id>-init``) and containerd's own (a snapshot key,
in k8s.io), as ``docker diff`` prints them.

The truth file does not hold what ``docker diff`` printed (no Docker 29 ran), so the expected
lines are computed here from the snapshot directories by the overlayfs upper-dir rules, written
out plainly: each entry of the container's own ``fs/`` is a change — a 0:0 character device a
deletion (``D``) of what the layers below show, an entry the layers below do not show an
addition (``A``, with all below it), any other a change (``C``; a directory only when
something below it is listed)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from conftest import copy_tree
from sample_paths import CONTAINERD_ROOT
from test_containerd_verify import EXITED, SNAPSHOTS, writable_snapshot_missing

from forensics.containerd_model import ContainerdStore
from forensics.evidence import Evidence
from forensics.stores import read_host

#: (namespace, snapshot key) of each container with a snapshot, by the name ``diff`` takes
CONTAINERS = {
    "exited": ("moby", EXITED),
    "running": ("moby", "72566ba435cfb195cde367a262c045cf28534e370588f640129c6dda1bf02b87"),
    "created": ("moby", "c0c440a95104834eb4507c5e591188cf7a4d4c6f2f58750169badb5c9036ef06"),
    "k8s-app-running": ("k8s.io", "k8s-app-running"),
    "k8s.io/k8s-tiny-created": ("k8s.io", "k8s-tiny-created"),
}


def snapshot_dirs(store: ContainerdStore, ns: str, key: str) -> list[str]:
    """The ``fs/`` of the snapshot ``key`` and of each parent, top first, as the snapshotter's
    records name them."""
    sn = store.snapshotters["overlayfs"]
    out = []
    while key:
        record = store.namespaces[ns].snapshots[("overlayfs", key)]
        out.append(f"{SNAPSHOTS}/{sn.snapshots[record.name].id}/fs")
        key = record.parent
    return out


def _whiteout(path: Path) -> bool:
    st = path.lstat()
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def shown_below(lowers: list[Path], rel: str) -> bool:
    """Whether the merged view of ``lowers`` (top first) shows ``rel``."""
    parts = rel.split("/")
    for low in lowers:
        path = low / rel
        if os.path.lexists(path):
            return not _whiteout(path)
        for n in range(len(parts) - 1, 0, -1):  # an opaque or deleted parent hides the rest
            above = low.joinpath(*parts[:n])
            if os.path.lexists(above) and (_whiteout(above) or _opaque(above)):
                return False
    return False


def expected_changes(upper: Path, lowers: list[Path]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []

    def visit(rel: str) -> None:
        for name in sorted(os.listdir(upper / rel if rel else upper)):
            child = f"{rel}/{name}" if rel else name
            path = upper / child
            if _whiteout(path):
                if shown_below(lowers, child):
                    out.append({"kind": "D", "path": f"/{child}"})
                continue
            assert not (path.is_dir() and _opaque(path)), "the sample has no opaque upper dir"
            if not shown_below(lowers, child):
                out.append({"kind": "A", "path": f"/{child}"})
                if path.is_dir() and not path.is_symlink():
                    added(child)
                continue
            if path.is_dir() and not path.is_symlink():
                at = len(out)
                visit(child)
                if len(out) > at:
                    out.insert(at, {"kind": "C", "path": f"/{child}"})
            else:
                out.append({"kind": "C", "path": f"/{child}"})

    def added(rel: str) -> None:
        for name in sorted(os.listdir(upper / rel)):
            child = f"{rel}/{name}"
            if not _whiteout(upper / child):
                out.append({"kind": "A", "path": f"/{child}"})
                if (upper / child).is_dir() and not (upper / child).is_symlink():
                    added(child)

    visit("")
    return out


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_diff_is_what_the_upper_dir_says(cli, containerd_master: Path, name: str) -> None:
    ns, key = CONTAINERS[name]
    with Evidence(containerd_master) as ev:
        ctd = read_host(ev).containerd
    assert ctd is not None
    dirs = [containerd_master / d for d in snapshot_dirs(ctd.store, ns, key)]
    want = expected_changes(dirs[0], dirs[1:])
    result = cli("diff", name, containerd_master, "--format", "json")
    assert result.code == 0 and result.stderr == ""
    doc = result.json()
    assert doc["changes"] == want
    assert doc["problems"] == []
    assert doc["container"] == (key if ns == "moby" else f"{ns}/{key}")
    # the text form, and ROOT the containerd root alone for containerd's own containers
    text = cli("diff", name, containerd_master)
    assert text.stdout == "".join(f"{c['kind']} {c['path']}\n" for c in want)
    if ns != "moby":
        alone = cli("diff", name, containerd_master / CONTAINERD_ROOT, "--format", "json")
        assert alone.code == 0 and alone.json()["changes"] == want


def test_the_sample_has_every_kind_of_change(cli, containerd_master: Path) -> None:
    """So that the comparison above means something: additions, changes and deletions."""
    doc = cli("diff", "exited", containerd_master, "--format", "json").json()
    assert {c["kind"] for c in doc["changes"]} == {"A", "C", "D"}
    assert {"kind": "D", "path": "/data/original.txt"} in doc["changes"]


def test_diff_with_the_containerd_root_given_apart(
    cli, containerd_master: Path, tmp_path: Path
) -> None:
    copy_tree(containerd_master, tmp_path / "docker")
    shutil.move(tmp_path / "docker" / CONTAINERD_ROOT, tmp_path / "containerd")
    given = cli(
        "diff", "exited", tmp_path / "docker", "--containerd-root", tmp_path / "containerd",
        "--format", "json",
    )  # fmt: skip
    assert given.code == 0, given.stderr
    assert given.json() == cli("diff", "exited", containerd_master, "--format", "json").json()
    lost = cli("diff", "exited", tmp_path / "docker")
    assert lost.code == 8 and "--containerd-root" in lost.stderr


def test_verify_deep_lists_the_docker_containers_diffs(cli, containerd_master: Path) -> None:
    doc = cli("verify", containerd_master, "--deep", "--format", "json").json()
    exited = cli("diff", "exited", containerd_master).stdout.splitlines()
    assert doc["diffs"][EXITED] == exited
    assert set(doc["diffs"]) == {key for ns, key in CONTAINERS.values() if ns == "moby"}


def test_a_container_without_its_writable_snapshot(cli, containerd_root: Path) -> None:
    writable_snapshot_missing(containerd_root)
    result = cli("diff", "exited", containerd_root)
    assert result.code == 8 and result.stdout == ""
    assert "rw layer snapshot not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_container_whose_files_are_gone(cli, containerd_root: Path) -> None:
    with Evidence(containerd_root) as ev:
        ctd = read_host(ev).containerd
    assert ctd is not None
    upper = snapshot_dirs(ctd.store, "moby", EXITED)[0]
    shutil.rmtree(containerd_root / upper)
    result = cli("diff", "exited", containerd_root, "--format", "json")
    assert result.code == 4 and "Traceback" not in result.stderr
    assert [p for p, _ in result.json()["problems"]] == [upper]


def test_containers_that_cannot_be_compared(cli, containerd_master: Path) -> None:
    none = cli("diff", "k8s-no-snapshot", containerd_master)
    assert none.code == 8
    assert none.stderr == (
        "docker-forensics: container k8s.io/k8s-no-snapshot: it has no snapshot (no snapshot "
        "key): nothing to compare\n"
    )
    missing = cli("diff", "no-such-container", containerd_master)
    assert missing.code == 16 and "No such container: no-such-container" in missing.stderr
