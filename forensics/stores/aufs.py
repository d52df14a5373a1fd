"""The aufs driver: ``diff/<id>/`` (layer files), ``layers/<id>`` (parent ids, nearest first,
one per line; its existence is what the daemon calls "exists") and ``mnt/<id>/``."""

from __future__ import annotations

from forensics.evidence import Evidence, ReadFailure
from forensics.formats.ids import DRIVER_DIR_ID, id_problem
from forensics.model import DriverDir, Host, Problem
from forensics.progress import track

LAYERS_LIMIT = 1024 * 1024


def read_aufs(ev: Evidence, host: Host, base: str = "aufs") -> None:
    diffs = ev.scandir_types(f"{base}/diff")
    layers = ev.scandir_types(f"{base}/layers")
    for name in track(sorted(set(diffs) | set(layers)), "driver dirs"):
        ddir = DriverDir(id=name, path=f"{base}/diff/{name}", has_diff=diffs.get(name) == "dir")
        if name in layers:
            ddir.lower = _parents(ev, f"{base}/layers/{name}", ddir)
        else:
            ddir.problems["layers"] = Problem(f"{base}/layers/{name}", "missing", "no such file")
        host.driver_dirs[name] = ddir


def _parents(ev: Evidence, rel: str, ddir: DriverDir) -> list[str] | None:
    """The parent ids that ``layers/<id>`` lists; None with a problem recorded when it cannot
    be read or names something that is no layer id (each names a directory of the driver)."""
    try:
        text = ev.read_text(rel, LAYERS_LIMIT)
    except ReadFailure as failure:
        ddir.problems["layers"] = Problem(rel, failure.kind, failure.detail)
        return None
    parents = [line.strip() for line in text.splitlines() if line.strip()]
    for parent in parents:
        why = id_problem(parent, DRIVER_DIR_ID)
        if why is not None:
            ddir.problems["layers"] = Problem(rel, "bad-value", f"a parent is {why}")
            return None
    return parents
