"""``diff``: what a container's writable layer added, changed and deleted, as ``docker diff``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from forensics.api.root import open_root
from forensics.errors import OperationalError
from forensics.exitstatus import EXIT_ERRORS, EXIT_OK
from forensics.lookup import find_container
from forensics.stores import read_host

if TYPE_CHECKING:  # the layer readers load construct: imported when a diff is made
    from forensics.layers import DiffResult


def diff(root: str, container: str) -> DiffResult:
    """The changes of ``container`` (a full id, a name or a unique id prefix) of ROOT, with the
    directories that could not be compared in ``problems``. Raises
    :class:`~forensics.lookup.NoSuchContainer` when ROOT holds no such container, and
    :class:`~forensics.errors.OperationalError` when its layers cannot be found."""
    ev = open_root(root)
    host = read_host(ev)
    cid = find_container(host, container)
    from forensics.layers import container_diff, diff_plan

    plan = diff_plan(host, cid)
    if isinstance(plan, str):
        raise OperationalError(plan)
    return container_diff(plan)


def diff_status(result: DiffResult) -> int:
    """0 when every directory could be compared, 4 when some could not."""
    return EXIT_ERRORS if result.problems else EXIT_OK
