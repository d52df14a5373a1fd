"""The overlay2 driver (and fuse-overlayfs, which keeps the same layout under its own home):
``<id>/{diff/,link,lower,work/,merged/,committed}`` and ``l/<LINK> → ../<id>/diff``, where
the rows of :mod:`forensics.drivers` say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import NamedTuple

from forensics.drivers import LINK_ENTRY, DriverLayout
from forensics.evidence import Evidence, ReadFailure
from forensics.formats.ids import LINK_ID, LOWER_ENTRY
from forensics.model import DriverDir, Host, Problem
from forensics.parallel import map_entries, submit
from forensics.progress import track
from forensics.stores.reading import bad_value, checked_id, plain_values, read_value


def start_overlay2(ev: Evidence, host: Host, layout: DriverLayout) -> Callable[[], None]:
    """Start reading the layer directories and links of ``layout`` into ``host`` (handed to
    the workers); the function returned finishes it."""
    assert layout.links is not None and layout.lower is not None
    base = layout.layers
    entries = ev.scandir_types(base)
    links = _start_links(ev, host, layout.links.directory)
    links_name = layout.links.directory.removeprefix(f"{base}/")
    names = [n for n in sorted(entries) if n != links_name and entries[n] == "dir"]
    strays = sorted(set(entries) - set(names) - {links_name})
    dirs = map_entries(ev, partial(_read_layer_dir_in, _dir_names(layout)), names)

    def finish() -> None:
        for name in strays:
            host.add_leftover("driver-stray", f"{base}/{name}")
        for link, target in links:
            host.links[link] = target
        for ddir in track(dirs, "driver dirs", total=len(names)):
            host.driver_dirs[ddir.id] = ddir

    return finish


def _start_links(ev: Evidence, host: Host, rel: str) -> Iterator[tuple[str, str | None]]:
    """Every ``l/<LINK>`` and its target (None when it is no symlink), being read. An ``l/``
    that cannot be listed is recorded in ``host.problems`` as ``overlay2-links``."""
    try:
        with ev.opendir(rel) as d:
            types = d.types
    except ReadFailure as failure:
        host.problems["overlay2-links"] = Problem(rel, failure.kind, failure.detail)
        return iter(())
    return submit(ev, partial(_read_links_in, rel), sorted(types.items()))


def _read_links_in(
    rel: str, ev: Evidence, items: Sequence[tuple[str, str]]
) -> list[tuple[str, str | None]]:
    """The targets of the links ``items`` (name, entry type) of directory ``rel``."""
    try:
        d = ev.open_listed(rel, dict(items))
    except ReadFailure:  # it was there when it was listed
        return [(name, None) for name, _ in items]
    with d:
        return [(name, d.readlink(name)) for name, _ in items]


class _DirNames(NamedTuple):
    """What a worker needs of the row, as plain strings: the directory of the layers, the
    value files of a layer directory (link, lower: both optional) and the roles their damage
    is recorded under, and the names probed in it (its diff and its committed marker)."""

    base: str
    link: str
    lower: str
    diff: str
    committed: str
    files: tuple[str, str]
    probes: tuple[str, str]
    link_key: str
    lower_key: str


def _dir_names(layout: DriverLayout) -> _DirNames:
    assert layout.links is not None and layout.lower is not None
    assert layout.content is not None and layout.committed is not None
    link, lower = layout.links.file.leaf, layout.lower.file.leaf
    diff, committed = layout.content.leaf, layout.committed.leaf
    return _DirNames(
        layout.layers,
        link,
        lower,
        diff,
        committed,
        (link, lower),
        (diff, committed),
        layout.links.key,
        layout.lower.key,
    )


def _read_layer_dir_in(names: _DirNames, ev: Evidence, name: str) -> DriverDir:
    return _read_layer_dir(ev, name, f"{names.base}/{name}", names)


def _read_layer_dir(ev: Evidence, name: str, rel: str, names: _DirNames) -> DriverDir:
    ddir = DriverDir(id=name, path=rel)
    if _read_plain_layer_dir(ev, ddir, names):
        return ddir
    try:
        with ev.opendir(rel) as d:
            ddir.has_diff = d.types.get(names.diff) == "dir"
            ddir.committed = names.committed in d.types
            link = read_value(d, names.link, ddir.problems, names.link_key, optional=True)
            lower = read_value(d, names.lower, ddir.problems, names.lower_key, optional=True)
    except ReadFailure as failure:
        ddir.problems["dir"] = Problem(rel, failure.kind, failure.detail)
        return ddir
    _fill_link_and_lower(ddir, link, lower, names)
    return ddir


def _read_plain_layer_dir(ev: Evidence, ddir: DriverDir, names: _DirNames) -> bool:
    """A healthy layer directory, read without listing it; False when anything is amiss (it
    is then read the careful way, which names the damage)."""
    found = ev.read_plain_dir(ddir.path, names.files, probe=names.probes)
    values = plain_values(found, ())
    if found is None or values is None:
        return False
    ddir.has_diff = found.kinds.get(names.diff) == "dir"
    ddir.committed = names.committed in found.kinds
    _fill_link_and_lower(ddir, values.get(names.link), values.get(names.lower), names)
    return True


def _fill_link_and_lower(
    ddir: DriverDir, link: str | None, lower: str | None, names: _DirNames
) -> None:
    """The ``link`` and ``lower`` values of a layer directory. Both name files under
    ``overlay2/`` (``l/<link>``): a link that is no link id, or a lower with an entry that is no
    ``l/<link id>``, is recorded as damage of its file and kept out of the model."""
    rel = f"{ddir.path}/{names.link}"
    ddir.link = checked_id(link, LINK_ID, ddir.problems, names.link_key, rel)
    ddir.lower = None
    if lower is None:
        return
    entries = lower.split(":")
    for entry in entries:
        if not LOWER_ENTRY.fullmatch(entry):
            detail = f"entry {entry[:80]!r} is not {LINK_ENTRY('<link id>')}"
            bad_value(ddir.problems, names.lower_key, f"{ddir.path}/{names.lower}", detail)
            return
    ddir.lower = entries
