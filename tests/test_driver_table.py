"""The driver table (:mod:`forensics.drivers`): its rows hold together, and no layout path of a
driver is spelled anywhere else in ``forensics/``.

The second test takes what to look for from the table itself (so a new row is held to the rule
at once): the directories of every row's paths, the names that follow a layer's name in them
(``/diff``, ``/lower``, …), the short link's ``l/``, the init layer's ``-init``, the thin pool's
own record names, containerd's plugin directories (a snapshotter's, its metadata database's, its
content store's) and the files in them. It searches every string literal of the package but
docstrings (prose that describes the layout for the reader) and fails on each one found outside
the table.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from forensics import drivers
from forensics.drivers import (
    AUFS,
    CONTAINERD_BLOBS,
    CONTAINERD_CONTENT,
    CONTAINERD_INGEST,
    CONTAINERD_META_DB,
    CONTAINERD_METADATA,
    CONTAINERD_SHA256_BLOBS,
    DEVICEMAPPER,
    DEVICEMAPPER_POOL,
    DRIVERS,
    INIT_SUFFIX,
    LINK_ENTRY,
    OVERLAY2,
    PREFERENCE,
    SNAPSHOTTER_DB,
    SNAPSHOTTERS,
    DriverLayout,
    Template,
    containerd_blob,
    init_name,
    is_init_name,
    layout_of,
    rw_name,
)

PACKAGE = Path(drivers.__file__).parent
ROWS = [*DRIVERS.values(), *SNAPSHOTTERS.values()]
#: containerd's plugin directories beside the snapshotters' (relative to a containerd root)
CONTAINERD_PLUGINS = (CONTAINERD_METADATA, CONTAINERD_CONTENT)
#: the paths of containerd's store that no row holds: its databases, its content store
CONTAINERD_PATHS = (
    CONTAINERD_META_DB,
    CONTAINERD_SHA256_BLOBS,
    CONTAINERD_INGEST,
    *(f"{row.home}/{SNAPSHOTTER_DB}" for row in SNAPSHOTTERS.values()),
)

#: the layer store's own ``diff`` file (``layerdb/sha256/<chain id>/diff``): no driver's
LAYERDB_DIFF = "the layer store's diff file, not a driver's"
#: (file under forensics/, what is spelled) → why it may be: kept short, each one justified
ALLOWED: dict[tuple[str, str], str] = {
    ("stores/imagestore.py", "/diff"): LAYERDB_DIFF,
    ("timeline.py", "/diff"): LAYERDB_DIFF,
    ("stores/dockerroot.py", "/diff"): LAYERDB_DIFF,
}
#: files not searched, and why
NOT_SEARCHED = {
    "drivers.py": "the table itself",
    "checks/catalog.py": "the checks' descriptions: prose for the reader, as a docstring is",
}


# -- the table ------------------------------------------------------------------------------------


def _templates(row: DriverLayout) -> list[Template]:
    """Every path template of a row that is relative to the root."""
    found = [row.layer, row.content, row.upper, row.work, row.committed, row.mount_point]
    found += [part.at for part in row.parts]
    if row.lower is not None:
        found.append(row.lower.file)
    if row.links is not None:
        found += [row.links.link, row.links.file]
    if row.thin is not None:
        found.append(row.thin.record)
    return [t for t in found if t is not None]


def _relative_templates(row: DriverLayout) -> list[Template]:
    """What a lower entry and a short link hold: relative to the driver's home, its layer."""
    found = [row.lower.entry] if row.lower is not None else []
    return found + ([row.links.target] if row.links is not None else [])


def _paths(row: DriverLayout) -> list[str]:
    """Every path of a row relative to the root, templates with a placeholder for the name."""
    paths = [t("<id>") for t in _templates(row)]
    paths += [row.home, row.evidence, *row.lists, *row.reads, *(m for m, _ in row.marks)]
    if row.links is not None:
        paths.append(row.links.directory)
    if row.thin is not None:
        thin = row.thin
        paths += [thin.records, thin.pool, thin.deviceset, thin.transaction, thin.pool_metadata]
        paths += [thin.pool_data]
    return paths


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_a_rows_paths_lie_in_its_home(row: DriverLayout) -> None:
    """A driver keeps everything under its home; a containerd snapshotter too, but for where
    dockerd mounts a container and what tells its data is there (relative to the Docker root)."""
    outside = {p for p in _paths(row) if p != row.home and not p.startswith(f"{row.home}/")}
    if row.reader == "containerd":
        assert row.mount_point is not None and row.evidence.startswith(drivers.DOCKERS_CONTAINERD)
        outside -= {row.mount_point("<id>"), row.evidence, *(m for m, _ in row.marks)}
    assert outside == set()


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_a_rows_layer_paths_hold_the_layers_name(row: DriverLayout) -> None:
    for template in _templates(row) + _relative_templates(row):
        assert template("abc").count("abc") == 1
        assert template.ident(template("abc")) == "abc"
    assert row.layer.directory  # one entry per layer in one directory
    assert row.layer.glob.endswith("/*")


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_a_row_says_where_a_layers_files_are(row: DriverLayout) -> None:
    """Plain files in a directory, or inside a thin device: one of the two."""
    assert (row.content is None) == (row.thin is not None)
    if row.holds == "diff":  # a diff needs whiteouts to mean anything, and a layer to sit on
        assert row.whiteouts is not None and row.upper is not None
    if row.diff in ("layers", "upper-on-root"):
        assert row.upper is not None
    if row.lower is not None and row.lower.by == "link":
        assert row.links is not None and row.lower.entry == LINK_ENTRY


def test_the_drivers_table_and_preference() -> None:
    assert list(DRIVERS) == [r.name for r in DRIVERS.values()]
    assert PREFERENCE[:2] == ("overlay2", "fuse-overlayfs")
    assert set(PREFERENCE) == set(DRIVERS)
    assert layout_of("overlay2") is OVERLAY2 and layout_of("") is None
    assert layout_of(None) is None and layout_of("overlayfs") is None  # a snapshotter, no driver
    repairable = [r.name for r in DRIVERS.values() if r.repair]
    assert repairable == ["overlay2", "overlay", "aufs", "vfs", "devicemapper"]


def test_the_paths_the_rows_spell() -> None:
    """A few paths as the daemon writes them (moby ``daemon/graphdriver``; containerd
    ``snapshots/overlay``), through the rows."""
    name = "a" * 64
    assert OVERLAY2.content and OVERLAY2.links and OVERLAY2.lower
    assert OVERLAY2.content(name) == f"overlay2/{name}/diff"
    assert OVERLAY2.links.link("ABC") == "overlay2/l/ABC"
    assert OVERLAY2.links.target(name) == f"../{name}/diff"
    assert OVERLAY2.lower.file(name) == f"overlay2/{name}/lower"
    assert [p.at(name) for p in AUFS.parts] == [f"aufs/mnt/{name}", f"aufs/diff/{name}",
                                                f"aufs/layers/{name}"]  # fmt: skip
    assert DEVICEMAPPER.layer(name) == f"devicemapper/metadata/{name}"
    assert DEVICEMAPPER_POOL.pool_metadata == "devicemapper/devicemapper/metadata"
    assert DEVICEMAPPER.content is None and DEVICEMAPPER_POOL.rootfs == "rootfs"
    snapshotter = SNAPSHOTTERS["overlayfs"]
    assert snapshotter.content and snapshotter.work
    assert snapshotter.content("7") == "io.containerd.snapshotter.v1.overlayfs/snapshots/7/fs"
    assert snapshotter.work("7") == "io.containerd.snapshotter.v1.overlayfs/snapshots/7/work"


def test_the_paths_of_containerds_store() -> None:
    """Its metadata database and content store as containerd writes them (containerd
    ``metadata/db.go``, ``content/local/store.go``, ``snapshots/storage``)."""
    assert CONTAINERD_META_DB == "io.containerd.metadata.v1.bolt/meta.db"
    assert CONTAINERD_SHA256_BLOBS == "io.containerd.content.v1.content/blobs/sha256"
    assert CONTAINERD_BLOBS == "io.containerd.content.v1.content/blobs"
    assert CONTAINERD_INGEST == "io.containerd.content.v1.content/ingest"
    assert containerd_blob("sha256:ab") == "io.containerd.content.v1.content/blobs/sha256/ab"
    home = SNAPSHOTTERS["overlayfs"].home
    assert f"{home}/{SNAPSHOTTER_DB}" == "io.containerd.snapshotter.v1.overlayfs/metadata.db"


def test_init_names() -> None:
    assert init_name("abc") == "abc" + INIT_SUFFIX
    assert is_init_name(init_name("abc")) and not is_init_name("abc")
    assert rw_name(init_name("abc")) == "abc" and rw_name("abc") == "abc"


def test_a_template_holds_its_placeholder_once() -> None:
    with pytest.raises(ValueError):
        Template("overlay2/diff")
    with pytest.raises(ValueError):
        Template("x/{id}/{id}")
    assert Template("x/{id}/diff").ident("y/a/diff") is None
    target = Template("../{id}/diff")
    assert target.ident("../a/diff") == "a" and target.ident("../diff") is None


# -- nothing of it spelled elsewhere -------------------------------------------------------------

_PATH_CHAR = r"[A-Za-z0-9_.-]"


def _needles() -> dict[str, re.Pattern[str]]:
    """What a layout path is recognised by, from the table: a driver's directories (its home
    followed by ``/``, and every directory of two or more components of a row's paths), the
    entries that follow a layer's name (``/diff``, ``/link``, …), the short link's ``l/``, the
    init suffix, the thin pool's own records, containerd's plugin directories (a snapshotter's
    home among them, each a name alone) and its metadata database."""
    words: set[str] = set()
    for row in ROWS:
        words.add(f"{row.home}/")
    for path in [*(p for row in ROWS for p in _paths(row)), *CONTAINERD_PATHS]:
        parts = path.split("/")
        for end in range(2, len(parts) + 1):
            if not any(p.startswith("<") or p in ("..", "*") for p in parts[:end]):
                words.add("/".join(parts[:end]))
    for row in ROWS:
        for template in _templates(row) + _relative_templates(row):
            if template.suffix.startswith("/"):
                words.add("/" + template.suffix.split("/")[1])
    words.add(LINK_ENTRY.prefix)
    words |= set(DEVICEMAPPER_POOL.pool_records)
    words |= {*CONTAINERD_PLUGINS, *(row.home for row in SNAPSHOTTERS.values())}
    # what follows a plugin directory: the metadata database, the content store's entries
    words |= {"/" + p.split("/", 1)[1].split("/")[0] for p in CONTAINERD_PATHS}
    out = {w: re.compile(rf"(?<!{_PATH_CHAR}){re.escape(w)}(?!{_PATH_CHAR})") for w in words}
    out[INIT_SUFFIX] = re.compile(re.escape(INIT_SUFFIX))  # after a name: anywhere
    return out


def _literals(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string literal, f-strings with ``{}`` for what they format;
    docstrings and other bare strings aside."""
    bare = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    inner = {
        id(value)
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr)
        for value in node.values
    }
    out = []
    for node in ast.walk(tree):
        if id(node) in bare or id(node) in inner:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            out.append((node.lineno, text))
    return out


def _searched() -> list[Path]:
    skip = [PACKAGE / name for name in NOT_SEARCHED]
    return [
        p for p in sorted(PACKAGE.rglob("*.py")) if not any(p == s or s in p.parents for s in skip)
    ]


def layout_literals() -> list[str]:
    """Each layout path spelled outside the table and not allowed: ``file:line: needle in
    'literal'``."""
    needles = _needles()
    found = []
    for path in _searched():
        rel = path.relative_to(PACKAGE).as_posix()
        for line, text in _literals(ast.parse(path.read_text(), str(path))):
            for needle, pattern in needles.items():
                if pattern.search(text) and (rel, needle) not in ALLOWED:
                    found.append(f"forensics/{rel}:{line}: {needle!r} in {text!r}")
    return found


def test_no_layout_path_of_a_driver_outside_the_driver_table() -> None:
    assert layout_literals() == []


def test_the_search_finds_what_it_looks_for() -> None:
    """The needles catch the spellings the table replaced (so the test above can fail)."""
    needles = _needles()
    spelled = [
        'f"{base}/l/{link}"',
        '"overlay2/{}/diff"',
        '"aufs/diff/{}"',
        '"vfs/dir/{}"',
        'f"{rw}-init"',
        '"devicemapper/metadata/transaction-metadata"',
        'f"../{name}/diff"',
        '("deviceset-metadata", "transaction-metadata")',
        '"zfs/graph/{id}"',
        'f"{home}/snapshots/{id}/fs"',
        '"io.containerd.snapshotter.v1.overlayfs/snapshots/{}/fs"',
        '"io.containerd.content.v1.content/blobs/sha256"',
        'f"{PLUGIN}/blobs/{algorithm}/{hexpart}"',
        '"io.containerd.content.v1.content"',
        '"io.containerd.metadata.v1.bolt/meta.db"',
        'f"{root}/meta.db"',
        '"no io.containerd.metadata.v1.bolt/ in it"',
        '"io.containerd.snapshotter.v1.native"',
    ]
    for source in spelled:
        texts = [text for _, text in _literals(ast.parse(f"x = {source}"))]
        assert any(p.search(t) for t in texts for p in needles.values()), source
    fine_ones = ('"diff"', '"layers"', '"lower-id is {}"', '"graph"', '"overlay2.link-missing"',
                 '"meta.db but {}"', '"io.containerd.runc.v2"', '"blobs"')  # fmt: skip
    for fine in fine_ones:
        texts = [text for _, text in _literals(ast.parse(f"x = {fine}"))]
        assert not any(p.search(t) for t in texts for p in needles.values()), fine
    assert not _literals(ast.parse('def f():\n    """overlay2/<id>/diff"""\n'))


def test_what_is_allowed_is_still_there() -> None:
    """An allowance for a spelling that is gone is dropped with it."""
    needles = _needles()
    for rel, needle in ALLOWED:
        texts = [t for _, t in _literals(ast.parse((PACKAGE / rel).read_text()))]
        assert any(needles[needle].search(t) for t in texts), (rel, needle)
    for name in NOT_SEARCHED:
        assert (PACKAGE / name).exists(), name
