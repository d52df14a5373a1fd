"""repair: the plan and --dry-run on copies of the real-daemon sample, each with one kind of damage.

Also the helpers of the other repair tests (test_repair_*.py import them from here): running the
command in-process or as a process of its own, the damage, and a hash of a tree's state.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import click
import pytest
import test_verify_damage as damage
from conftest import Result, run_cli
from sample_paths import STORE, SamplePaths
from treehash import tree_hash

from forensics.cli.repair import repair

APP = "sample/app:1.0"
ORPHAN = "e" * 64
REMOVING = f"{STORE}/layerdb/sha256/{'a' * 64}-{'b' * 64}-removing"
WRITE_SET = f"{STORE}/layerdb/tmp/write-set-424242"
#: how a process of its own runs the command
BOOTSTRAP = "import sys; from forensics.cli import main; main(sys.argv[1:])"


# -- running the command -----------------------------------------------------------------------


def run_repair(*args: str | os.PathLike[str], env: dict[str, str] | None = None) -> Result:
    """``docker-forensics repair ARGS`` in this process, with the main command's handling of
    errors and exit codes (forensics.cli.main), without registering it on the global group."""
    out, err = io.TextIOWrapper(io.BytesIO(), "utf-8"), io.TextIOWrapper(io.BytesIO(), "utf-8")
    with redirect_stdout(out), redirect_stderr(err), _environ(env or {}):
        code = _main([str(a) for a in args])
    out.flush()
    err.flush()
    return Result(code, out.buffer.getvalue().decode(), err.buffer.getvalue().decode())  # type: ignore[attr-defined]


def _main(args: list[str]) -> int:
    try:
        status = repair.main(args=args, prog_name="docker-forensics repair", standalone_mode=False)
    except click.UsageError as exc:
        exc.show()
        return 16
    except click.ClickException as exc:
        click.echo(f"docker-forensics: {exc.format_message()}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return status if isinstance(status, int) else 0


@contextmanager
def _environ(extra: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def repair_process(
    *args: str | os.PathLike[str], env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``docker-forensics repair ARGS`` as a process of its own (not waited for)."""
    return subprocess.Popen(
        [sys.executable, "-c", BOOTSTRAP, "repair", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )


def verify(root: Path) -> list[dict[str, Any]]:
    from forensics.checks import run_checks
    from forensics.evidence import Evidence
    from forensics.stores import read_host

    return [f.as_dict() for f in run_checks(read_host(Evidence(root)))]


def errors(root: Path) -> set[tuple[str, str]]:
    return {(f["check"], f["path"]) for f in verify(root) if f["severity"] == "error"}


def state_hash(root: Path) -> str:
    """Every name, type, mode, owner, size, content and link target under ``root``, but no
    times: two runs that end in the same state, at different moments, hash the same."""
    h = hashlib.sha256()
    if not root.exists():
        return "absent"
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted([*dirnames, *filenames]):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            h.update(f"{rel}\0{st.st_mode:o} {st.st_size} {st.st_uid}:{st.st_gid}\0".encode())
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
            elif stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(path).encode())
    return h.hexdigest()


def quarantine_of(root: Path) -> Path:
    return root.parent / f"{root.name}.quarantine"


def only_run(root: Path) -> Path:
    (run,) = [p for p in quarantine_of(root).iterdir() if p.is_dir()]
    return run


# -- damage ------------------------------------------------------------------------------------


def remove_config(s: SamplePaths) -> str:
    rel = f"containers/{s.container_id('created')}/config.v2.json"
    s.path(rel).unlink()
    return rel


def orphan_with_link(s: SamplePaths) -> str:
    """An orphan overlay2 directory as a failed container create leaves it: diff/, link, and
    its l/ link."""
    s.path(f"overlay2/{ORPHAN}/diff").mkdir(parents=True)
    s.path(f"overlay2/{ORPHAN}/link").write_text("ORPHANLINKAAAAAAAAAAAAAAAA")
    os.symlink(f"../{ORPHAN}/diff", s.path("overlay2/l/ORPHANLINKAAAAAAAAAAAAAAAA"))
    return f"overlay2/{ORPHAN}"


def removing_leftover(s: SamplePaths) -> str:
    s.path(REMOVING).mkdir()
    for name, value in (("diff", "sha256:" + "c" * 64), ("size", "0"), ("cache-id", "d" * 64)):
        s.path(f"{REMOVING}/{name}").write_text(value)
    return REMOVING


def tmp_leftover(s: SamplePaths) -> str:
    s.path(WRITE_SET).mkdir(parents=True)
    s.path(f"{WRITE_SET}/diff").write_text("sha256:" + "c" * 64)
    return WRITE_SET


def hostconfig_damaged(s: SamplePaths) -> str:
    """The hostconfig.json of "anon-volume" filled with NULs: dockerd skips the container."""
    rel = f"containers/{s.container_id('anon-volume')}/hostconfig.json"
    s.path(rel).write_bytes(b"\0" * s.path(rel).stat().st_size)
    return rel


def empty_layer_dir(s: SamplePaths) -> str:
    """An empty layerdb directory, as an interrupted pull leaves it."""
    rel = f"{STORE}/layerdb/sha256/{'f' * 64}"
    s.path(rel).mkdir()
    return rel


def remove_link_file(s: SamplePaths) -> str:
    """A layer directory without its link file; its l/ symlink still names it."""
    rel = f"overlay2/{s.cache_id(s.chain(APP)[1])}/link"
    s.path(rel).unlink()
    return rel


def remove_link_file_and_symlink(s: SamplePaths) -> str:
    """A layer directory without link file nor l/ symlink: only the layer stacked on it still
    names its link, in its lower file."""
    rel = remove_link_file(s)
    cache = s.cache_id(s.chain(APP)[1])
    (link,) = [p for p in s.path("overlay2/l").iterdir() if os.readlink(p) == f"../{cache}/diff"]
    link.unlink()
    return rel


def config_tmp_leftover(s: SamplePaths) -> str:
    """What dockerd's atomic write of config.v2.json leaves when it is killed mid-write."""
    rel = f"containers/{s.container_id('created')}/.tmp-config.v2.json123456"
    s.path(rel).write_bytes(b'{"ID":')
    return rel


def flip_config_id(s: SamplePaths, name: str = "created") -> str:
    """The ID inside the config of container ``name`` changed in place (its digits reversed),
    as a bit flip leaves it: dockerd refuses to load the container from its directory."""
    cid = s.container_id(name)
    rel = f"containers/{cid}/config.v2.json"
    data = s.path(rel).read_bytes()
    s.path(rel).write_bytes(data.replace(f'"ID":"{cid}"'.encode(), f'"ID":"{cid[::-1]}"'.encode()))
    assert s.path(rel).read_bytes() != data
    return rel


#: each repairable damage: how it is made, the check it raises, the action that answers it
REPAIRABLE: list[tuple[Callable[[SamplePaths], str], str, str]] = [
    (damage.truncate_config, "container.config-damaged", "quarantine"),
    (remove_config, "container.config-missing", "quarantine"),
    (damage.remove_container_dir, "mount.container-missing", "quarantine"),
    (damage.add_orphan_overlay2_dir, "driver.orphan-dir", "quarantine"),
    (orphan_with_link, "driver.orphan-dir", "quarantine"),
    (damage.remove_l_link, "overlay2.link-dangling", "relink"),
    (removing_leftover, "layer.removing-leftover", "quarantine"),
    (tmp_leftover, "layer.tmp-leftover", "quarantine"),
    (damage.truncate_repositories, "repositories.damaged", "rewrite"),
    (damage.zero_repositories, "repositories.damaged", "rewrite"),
    (hostconfig_damaged, "container.hostconfig-damaged", "quarantine"),
    (empty_layer_dir, "layer.empty-dir", "quarantine"),
    (remove_link_file, "overlay2.link-missing", "create"),
    (damage.empty_link_file, "overlay2.link-damaged", "rewrite"),
    (config_tmp_leftover, "container.tmp-leftover", "quarantine"),
    (flip_config_id, "container.id-mismatch", "rewrite"),
]
REPAIRABLE_IDS = [d[0].__name__ for d in REPAIRABLE]


#: the actions that answer damage_many: a rewrite, a link file, a relink, 6 for each of two
#: broken containers, 5 for the dangling mount record, 2 for the orphan, 2 leftovers
ACTIONS_OF_DAMAGE_MANY = 24


def damage_many(s: SamplePaths) -> list[str]:
    """One of each kind of repairable damage, on different objects."""
    cid = s.container_id("with-volume")
    shutil.rmtree(s.path(f"containers/{cid}"))  # dangling mount record
    return [
        damage.truncate_config(s),  # "exited": a broken container, whole
        f"{STORE}/layerdb/mounts/{cid}",
        orphan_with_link(s),
        damage.remove_l_link(s),
        removing_leftover(s),
        tmp_leftover(s),
        damage.truncate_repositories(s),
        hostconfig_damaged(s),
        remove_link_file(s),
    ]


@pytest.fixture
def paths(sample_root: Path, truth: dict[str, Any]) -> SamplePaths:
    return SamplePaths(sample_root, truth)


def dry_run(root: Path) -> dict[str, Any]:
    """The plan; the exit status says whether errors remain that it does not fix (4) or not."""
    result = run_repair(root, "--dry-run", "--format", "json")
    assert result.code in (0, 4), result.stderr
    doc = result.json()
    assert result.code == (4 if doc["errors_left"] else 0), doc["errors_left"]
    return doc


# -- tests -------------------------------------------------------------------------------------


def test_clean_sample_has_nothing_to_do(sample_root: Path) -> None:
    doc = dry_run(sample_root)
    assert doc["actions"] == []
    buildkit = [s for s in doc["skipped"] if s["check"] == "driver.buildkit-dir"]
    assert len(buildkit) == 3 and all("never touched" in s["why"] for s in buildkit)
    result = run_repair(sample_root)
    assert result.code == 0, result.stderr
    assert not quarantine_of(sample_root).exists() or not any(
        p.is_dir() for p in quarantine_of(sample_root).iterdir()
    )


@pytest.mark.parametrize(("make", "check", "action"), REPAIRABLE, ids=REPAIRABLE_IDS)
def test_each_damage_is_planned(
    paths: SamplePaths, make: Callable[[SamplePaths], str], check: str, action: str
) -> None:
    path = make(paths)
    before = tree_hash(paths.root)
    doc = dry_run(paths.root)
    assert tree_hash(paths.root) == before, "--dry-run changed ROOT"
    assert not quarantine_of(paths.root).exists(), "--dry-run wrote a quarantine"
    answering = [a for a in doc["actions"] if check in a["checks"]]
    assert answering, doc
    assert {a["action"] for a in answering} == {action}
    for a in doc["actions"]:
        assert set(a) >= {"action", "path", "reason", "checks", "safety"}
        assert a["reason"] and a["safety"] and not a["path"].startswith("/")
    assert path in {a["path"] for a in doc["actions"]} or any(
        path.startswith(a["path"] + "/") for a in doc["actions"]
    )
    assert not [s for s in doc["skipped"] if s["check"] == check]


def test_broken_container_is_planned_whole_in_daemon_order(paths: SamplePaths) -> None:
    damage.truncate_config(paths)
    cid = paths.container_id("exited")
    mount = paths.mount_id("exited")
    rw_link, init_link = paths.link(mount), paths.link(f"{mount}-init")
    doc = dry_run(paths.root)
    assert [(a["action"], a["path"]) for a in doc["actions"]] == [
        ("quarantine", f"overlay2/{mount}"),
        ("quarantine", f"overlay2/l/{rw_link}"),
        ("quarantine", f"overlay2/{mount}-init"),
        ("quarantine", f"overlay2/l/{init_link}"),
        ("quarantine", f"{STORE}/layerdb/mounts/{cid}"),
        ("quarantine", f"containers/{cid}"),
    ]
    assert all(a["unit"] == f"container {cid}" for a in doc["actions"])
    assert all("container.config-damaged" in a["checks"] for a in doc["actions"])


def test_dry_run_of_every_damage_changes_no_byte(paths: SamplePaths) -> None:
    damage_many(paths)
    before = tree_hash(paths.root)
    listing = sorted(os.listdir(paths.root.parent))
    for fmt in ("json", "text"):
        result = run_repair(paths.root, "--dry-run", "--format", fmt)
        assert result.code == 0, result.stderr
    assert tree_hash(paths.root) == before
    assert sorted(os.listdir(paths.root.parent)) == listing
    doc = dry_run(paths.root)
    assert len(doc["actions"]) == ACTIONS_OF_DAMAGE_MANY
    text = run_repair(paths.root, "--dry-run").stdout
    assert f"{ACTIONS_OF_DAMAGE_MANY} actions planned" in text and "safe:" in text


def test_buildkit_and_unknown_dirs_are_left_alone_and_said(paths: SamplePaths) -> None:
    paths.path("overlay2/notalayerbutadirectoryx/diff").mkdir(parents=True)
    doc = dry_run(paths.root)
    assert doc["actions"] == []
    skipped = {s["path"]: s for s in doc["skipped"]}
    assert skipped["overlay2/notalayerbutadirectoryx"]["check"] == "driver.unknown-dir"
    assert "never touched" in skipped["overlay2/notalayerbutadirectoryx"]["why"]
    assert sum(s["check"] == "driver.buildkit-dir" for s in doc["skipped"]) == 3


def test_orphan_that_a_layer_stacks_on_is_left_alone(paths: SamplePaths) -> None:
    """A layer whose cache-id was lost looks like an orphan; its children's lower files still
    name its link, so it is not moved."""
    chain = paths.chain(APP)
    cache = paths.cache_id(chain[1])
    paths.path(f"{paths.layer_dir(chain[1])}/cache-id").write_text("f" * 64)
    found = {(f["check"], f["path"]) for f in verify(paths.root)}
    assert ("driver.orphan-dir", f"overlay2/{cache}") in found
    doc = dry_run(paths.root)
    assert f"overlay2/{cache}" not in {a["path"] for a in doc["actions"]}
    (skip,) = [s for s in doc["skipped"] if s["path"] == f"overlay2/{cache}"]
    assert "stacks on it" in skip["why"]


def test_orphans_wait_while_a_cache_id_cannot_be_read(paths: SamplePaths) -> None:
    orphan_with_link(paths)
    chain = paths.chain(APP)
    paths.path(f"{paths.layer_dir(chain[-1])}/cache-id").write_bytes(b"")
    doc = dry_run(paths.root)
    assert f"overlay2/{ORPHAN}" not in {a["path"] for a in doc["actions"]}
    (skip,) = [s for s in doc["skipped"] if s["path"] == f"overlay2/{ORPHAN}"]
    assert "ownership in doubt" in skip["why"]


@pytest.mark.parametrize("role", ["mount-id", "init-id"])
def test_a_torn_mount_id_keeps_the_containers_own_layer(paths: SamplePaths, role: str) -> None:
    """A mount-id torn to half its digits names no directory, but was meant to name one: the
    container's own read-write (or init) layer then looks like an orphan, and must wait."""
    cid = paths.container_id("exited")
    mount = paths.mount_id("exited")
    value = mount if role == "mount-id" else f"{mount}-init"
    paths.path(f"{STORE}/layerdb/mounts/{cid}/{role}").write_text(value[:32])
    orphan = f"overlay2/{value}"
    assert ("driver.orphan-dir", orphan) in {(f["check"], f["path"]) for f in verify(paths.root)}
    doc = dry_run(paths.root)
    assert not [a for a in doc["actions"] if a["path"].startswith("overlay2/")], doc["actions"]
    (skip,) = [s for s in doc["skipped"] if s["path"] == orphan]
    assert f"the {role} of mount record {cid[:12]} cannot be read" in skip["why"]


def test_a_torn_cache_id_keeps_orphans(paths: SamplePaths) -> None:
    cache = paths.cache_id(paths.chain(APP)[-1])
    paths.path(f"{paths.layer_dir(paths.chain(APP)[-1])}/cache-id").write_text(cache[:32])
    orphan_with_link(paths)
    doc = dry_run(paths.root)
    assert not [a for a in doc["actions"] if a["path"].startswith("overlay2/")], doc["actions"]
    assert any(
        s["path"] == f"overlay2/{ORPHAN}" and "cache-id of layer" in s["why"]
        for s in doc["skipped"]
    )


def test_buildkit_cache_ids_are_not_torn(paths: SamplePaths) -> None:
    """BuildKit writes 25-digit base-36 cache-ids: they are read, and orphans still go."""
    ids = [p.read_text() for p in paths.path(f"{STORE}/layerdb/sha256").glob("*/cache-id")]
    assert any(len(i) == 25 for i in ids), "the sample has BuildKit's layers"
    orphan_with_link(paths)
    assert f"overlay2/{ORPHAN}" in {a["path"] for a in dry_run(paths.root)["actions"]}


def test_driver_dir_shared_with_a_layer_keeps_the_container(paths: SamplePaths) -> None:
    """A mount-id that names an image layer's directory: the container is not removed."""
    damage.truncate_config(paths)
    cid = paths.container_id("exited")
    layer_dir = paths.cache_id(paths.chain(APP)[-1])
    paths.path(f"{STORE}/layerdb/mounts/{cid}/mount-id").write_text(layer_dir)
    doc = dry_run(paths.root)
    assert not [a for a in doc["actions"] if a["unit"] == f"container {cid}"]
    assert any("ownership in doubt" in s["why"] for s in doc["skipped"])


def test_repositories_keep_the_parseable_prefix(paths: SamplePaths) -> None:
    rel = f"{STORE}/repositories.json"
    data = paths.path(rel).read_bytes()
    cut = data.index(b'"sample/bk:1.0"') + 11
    paths.path(rel).write_bytes(data[:cut])
    (action,) = [a for a in dry_run(paths.root)["actions"] if a["action"] == "rewrite"]
    kept = action["details"]["kept"]
    app, busybox = paths.image_id(APP), paths.image_id("sample/busybox:base")
    assert kept["sample/app:1.0"]["image"] == app
    assert kept["sample/app:latest"] == {"image": app, "from": "damaged file"}
    assert set(kept) == {"sample/app:1.0", "sample/app:latest"}
    lost = " ".join(action["details"]["lost"])
    assert "cut off by the truncation: 'sample/bk:'" in lost
    assert paths.image_id("sample/bk:1.0")[7:19] in lost and busybox[7:19] in lost


def test_repositories_from_containers_when_nothing_parses(paths: SamplePaths) -> None:
    damage.zero_repositories(paths)
    (action,) = [a for a in dry_run(paths.root)["actions"] if a["action"] == "rewrite"]
    kept = action["details"]["kept"]
    assert list(kept) == ["sample/app:1.0"]
    assert kept["sample/app:1.0"]["from"].startswith("container ")
    lost = action["details"]["lost"]
    assert len(lost) == 2 and all("no evidence names them" in x for x in lost)


def test_repositories_drop_references_to_missing_images(paths: SamplePaths) -> None:
    rel = f"{STORE}/repositories.json"
    ghost = "sha256:" + "9" * 64
    doc = json.loads(paths.path(rel).read_bytes())
    doc["Repositories"]["gone/img"] = {"gone/img:1": ghost}
    paths.path(rel).write_text(json.dumps(doc)[:-3])
    (action,) = [a for a in dry_run(paths.root)["actions"] if a["action"] == "rewrite"]
    assert "gone/img:1" not in action["details"]["kept"]
    assert any("gone/img:1" in x and "does not exist" in x for x in action["details"]["lost"])


def test_repositories_salvage_reads_a_reference_as_go_does(paths: SamplePaths) -> None:
    """A reference holding a byte that is not UTF-8 is read as Go's decoder reads it (the byte
    replaced by U+FFFD), so it is named among what is lost rather than silently passed over."""
    rel = f"{STORE}/repositories.json"
    ghost = "sha256:" + "9" * 64
    data = paths.path(rel).read_bytes()
    pair = b'"gone/img:\xff1":"' + ghost.encode() + b'"'
    data = data.replace(b'"Repositories":{', b'"Repositories":{"gone/img":{' + pair + b"},", 1)
    paths.path(rel).write_bytes(data[:-3])
    (action,) = [a for a in dry_run(paths.root)["actions"] if a["action"] == "rewrite"]
    assert any("gone/img:\ufffd1" in x for x in action["details"]["lost"]), action["details"]


def test_unsupported_layout_plans_nothing(tmp_path: Path) -> None:
    vfs_like = tmp_path / "docker"
    (vfs_like / "graph" / ("1" * 64)).mkdir(parents=True)
    doc = dry_run(vfs_like)
    assert doc["actions"] == []


def test_missing_root_is_operational_error(tmp_path: Path) -> None:
    result = run_repair(tmp_path / "nope", "--dry-run")
    assert result.code == 8 and "nope" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_usage_errors(paths: SamplePaths, tmp_path: Path) -> None:
    inside = run_repair(paths.root, "--quarantine", paths.root / "q")
    assert inside.code == 16 and "inside ROOT" in inside.stderr
    assert run_repair(paths.root, "--format", "xml").code == 16
    assert run_repair(paths.root, "--no-such-option").code == 16
    both = run_repair("--undo", tmp_path / "j", "--quarantine", tmp_path)
    assert both.code == 16
    assert not (paths.root / "q").exists()


def test_orphans_wait_while_a_buildkit_database_cannot_be_decoded(paths: SamplePaths) -> None:
    orphan = damage.add_orphan_overlay2_dir(paths)
    db = paths.path("buildkit/snapshots.db")
    with open(db, "r+b") as f:  # both meta pages gone: nothing says which snapshots exist
        f.write(b"\0" * 8192)
    doc = dry_run(paths.root)
    assert orphan not in {a["path"] for a in doc["actions"]}
    skipped = {s["path"]: s for s in doc["skipped"]}
    assert "buildkit/snapshots.db" in skipped[orphan]["why"]
    assert skipped["buildkit/snapshots.db"]["check"] == "buildkit.db-damaged"
    assert "never written" in skipped["buildkit/snapshots.db"]["why"]


def test_a_leftover_inside_a_container_moved_whole_goes_with_it(paths: SamplePaths) -> None:
    damage.truncate_config(paths)  # "exited": quarantined whole
    rel = f"containers/{paths.container_id('exited')}/.tmp-config.v2.json999"
    paths.path(rel).write_bytes(b"{")
    doc = dry_run(paths.root)
    assert rel not in {a["path"] for a in doc["actions"]}
    assert f"containers/{paths.container_id('exited')}" in {a["path"] for a in doc["actions"]}
    assert not [s for s in doc["skipped"] if s["path"] == rel]


def test_dry_run_exits_4_when_errors_remain_that_the_plan_does_not_fix(
    paths: SamplePaths,
) -> None:
    """As e2fsck -n: 0 when the plan fixes every error found (or there is nothing to do), 4
    when errors remain that it does not fix."""
    assert run_repair(paths.root, "--dry-run").code == 0  # nothing to do
    damage.truncate_config(paths)
    fixed = run_repair(paths.root, "--dry-run", "--format", "json")
    assert fixed.code == 0 and fixed.json()["errors_left"] == 0 and fixed.json()["actions"]
    damage.edit_image_config(paths)  # image.digest-mismatch: no repair for it
    left = run_repair(paths.root, "--dry-run", "--format", "json")
    assert left.code == 4, left.stderr
    doc = left.json()
    assert doc["errors_left"] == 1 and doc["actions"]
    assert any(s["check"] == "image.digest-mismatch" for s in doc["skipped"])
    text = run_repair(paths.root, "--dry-run")
    assert text.code == 4 and "errors the plan does not fix: 1" in text.stdout
    assert not quarantine_of(paths.root).exists()


def test_errors_left_counts_each_cause_once_as_verify_does(paths: SamplePaths) -> None:
    """A layer lost from the layer store breaks the images and child layers stacked on it: verify
    counts one error (the rest are its consequences); the dry run leaves it, and says 1, not
    one for every consequence."""
    layers = sorted((paths.root / STORE / "layerdb" / "sha256").iterdir())
    shutil.rmtree(layers[0])
    verified = run_cli("verify", paths.root, "--format", "json").json()
    causes = [f for f in verified["findings"] if f["severity"] == "error" and not f["caused_by"]]
    consequences = [f for f in verified["findings"] if f["caused_by"]]
    assert len(causes) == 1 and consequences
    doc = run_repair(paths.root, "--dry-run", "--format", "json").json()
    assert doc["errors_left"] == 1
