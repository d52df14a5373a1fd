"""``diff``: what a container's writable layer added, changed and deleted, as ``docker diff``."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forensics.api.root import (
    Notify,
    open_containerd_root,
    open_root,
    read_root,
    refuse_incomplete,
)
from forensics.errors import OperationalError
from forensics.exitstatus import EXIT_ERRORS, EXIT_OK
from forensics.lookup import NoSuchContainer, find_container
from forensics.model import Host

if TYPE_CHECKING:  # the layer readers load construct: imported when a diff is made
    from forensics.layers import DiffPlan, DiffResult

#: containerd's ``<namespace>/<id>`` (its namespace and identifier rules)
_NAMESPACED = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*/[A-Za-z0-9][A-Za-z0-9_.-]*")


def names_a_path(argument: str) -> bool:
    """Whether ``argument``, given where a container is named, is a path (ROOT given in
    CONTAINER's place): a container name never holds a ``/`` but its leading one, so an
    argument that does is a path — unless it names containerd's container as
    ``<namespace>/<id>`` and no such path exists."""
    if argument in (".", ".."):
        return True
    if "/" not in argument.removeprefix("/"):
        return False
    return os.path.lexists(argument) or not _NAMESPACED.fullmatch(argument)


def diff(
    root: str,
    container: str,
    containerd_root: str | None = None,
    *,
    pick: str | None = None,
    notify: Notify | None = None,
) -> DiffResult:
    """The changes of ``container`` (a full id, a name or a unique id prefix; on a containerd
    store also containerd's own container, as ``<namespace>/<id>`` or an id that one namespace
    alone has) of ROOT, with the directories that could not be compared in ``problems``.
    ``containerd_root``: the containerd root that goes with ROOT (as for ``verify``). Raises
    :class:`~forensics.lookup.NoSuchContainer` when ROOT holds no such container, and
    :class:`~forensics.errors.OperationalError` when its layers cannot be found. ``pick`` and
    ``notify``: as for :func:`~forensics.api.root.open_root` (ROOT an archive or disk image,
    said in the result's ``evidence``)."""
    ev = open_root(root, pick=pick, notify=notify)
    ctd = open_containerd_root(containerd_root)
    host = read_root(ev, ctd)
    refuse_incomplete(ev)
    from forensics.layers import container_diff

    plan = _plan(host, container)
    if isinstance(plan, str):
        raise OperationalError(plan)
    # a containerd store given apart holds the snapshots: its paths start at its own root
    source = ctd if ctd is not None and Path(plan.root).resolve() == ctd.root else ev
    result = container_diff(plan, source)
    if ev.origin is not None:
        result.evidence = ev.origin.as_dict()
    return result


def _plan(host: Host, wanted: str) -> DiffPlan | str:
    """Docker's container ``wanted``, else containerd's (its snapshot against its parent)."""
    from forensics.layers import diff_plan

    try:
        return diff_plan(host, find_container(host, wanted))
    except NoSuchContainer:
        if host.containerd is None:
            raise
    from forensics.layers.containerd_diff import containerd_container, snapshot_plan

    ns, cid = containerd_container(host.containerd, wanted)
    record = ns.containers[cid]
    shown = f"{ns.name}/{cid}"
    if not record.snapshot_key:
        return f"container {shown}: it has no snapshot (no snapshot key): nothing to compare"
    return snapshot_plan(host, ns, record.snapshotter, record.snapshot_key, shown)


def diff_document(result: DiffResult) -> dict[str, Any]:
    """The JSON document of ``result``: the container, its changes as ``docker diff`` lists
    them, the problems, and where the root was read when it is in an archive or disk image."""
    changes = [{"kind": c.kind, "path": c.path} for c in result.changes]
    doc: dict[str, Any] = {
        "container": result.container_id,
        "changes": changes,
        "problems": result.problems,
    }
    if result.evidence is not None:
        doc["evidence"] = result.evidence
    return doc


def diff_status(result: DiffResult) -> int:
    """0 when every directory could be compared, 4 when some could not."""
    return EXIT_ERRORS if result.problems else EXIT_OK
