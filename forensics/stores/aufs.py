"""The aufs driver: ``diff/<id>/`` (layer files), ``layers/<id>`` (parent ids, nearest first,
one per line; its existence is what the daemon calls "exists") and ``mnt/<id>/`` (its row in
:mod:`forensics.drivers`)."""

from __future__ import annotations

from forensics.drivers import DriverLayout
from forensics.evidence import Evidence, ReadFailure
from forensics.formats.ids import DRIVER_DIR_ID, id_problem
from forensics.model import DriverDir, Host, Problem
from forensics.progress import track

LAYERS_LIMIT = 1024 * 1024


def read_aufs(ev: Evidence, host: Host, layout: DriverLayout) -> None:
    assert layout.lower is not None
    lower, key = layout.lower.file, layout.lower.key
    diffs = ev.scandir_types(layout.layers)
    layers = ev.scandir_types(lower.directory)
    for name in track(sorted(set(diffs) | set(layers)), "driver dirs"):
        ddir = DriverDir(id=name, path=layout.layer(name), has_diff=diffs.get(name) == "dir")
        if name in layers:
            ddir.lower = _parents(ev, lower(name), ddir, key)
        else:
            ddir.problems[key] = Problem(lower(name), "missing", "no such file")
        host.driver_dirs[name] = ddir


def _parents(ev: Evidence, rel: str, ddir: DriverDir, key: str) -> list[str] | None:
    """The parent ids that ``layers/<id>`` lists; None with a problem recorded when it cannot
    be read or names something that is no layer id (each names a directory of the driver)."""
    try:
        text = ev.read_text(rel, LAYERS_LIMIT)
    except ReadFailure as failure:
        ddir.problems[key] = Problem(rel, failure.kind, failure.detail)
        return None
    parents = [line.strip() for line in text.splitlines() if line.strip()]
    for parent in parents:
        why = id_problem(parent, DRIVER_DIR_ID)
        if why is not None:
            ddir.problems[key] = Problem(rel, "bad-value", f"a parent is {why}")
            return None
    return parents
