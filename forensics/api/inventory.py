"""``inventory``: what ROOT holds, read into the model (rendered by :mod:`forensics.inventory`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from forensics.api.root import (
    Notify,
    open_containerd_root,
    open_root,
    read_root,
    refuse_incomplete,
)
from forensics.heap import keep_until_exit
from forensics.lookup import find_container
from forensics.model import Container, Host


@dataclass
class Inventory:
    """The host read from ROOT, and the container that was asked for (if one was)."""

    host: Host
    container: Container | None = None
    #: where the root was read when ROOT is an archive or disk image (the ``evidence`` key)
    evidence: dict[str, Any] | None = None

    def document(
        self, reference: int | None = None, sections: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """The JSON document of the host (:func:`forensics.inventory.inventory_document`; of
        ``sections`` alone, when given), with, after its ``root``, the ``evidence`` key saying
        where in an archive or disk image the root was read (nothing added for a directory)."""
        from forensics.inventory import inventory_document

        doc = inventory_document(self.host, reference, sections)
        if self.evidence is None:
            return doc
        out: dict[str, Any] = {}
        for key, value in doc.items():
            out[key] = value
            if key == "root":
                out["evidence"] = self.evidence
        return out


def inventory(
    root: str,
    *,
    container: str | None = None,
    sections: frozenset[str] = frozenset(),
    tables: bool = False,
    long_lived: bool = False,
    containerd_root: str | None = None,
    pick: str | None = None,
    notify: Notify | None = None,
) -> Inventory:
    """Read what the inventory shows of ROOT (not the driver's own directories and links,
    nor BuildKit's databases: ``verify`` reads those); with ``container`` (a full id, a name
    or a unique id prefix, as docker takes them), find that container too
    (:class:`~forensics.lookup.NoSuchContainer` if ROOT holds none or several), without
    reading the layers (nor the image sizes they hold), which a container's view does not
    show. ``sections`` (of ``images``, ``containers``, ``volumes``; none: all): read only what
    those sections show (:func:`~forensics.stores.host.shown_sections`), for
    :func:`~forensics.inventory.inventory_document` and ``inventory_text`` given the same
    sections; ``tables``: only what the text tables print (``inventory_text``: no host
    config, no mount record, of a layer its size), not what the JSON records show.
    ``containerd_root``: the containerd root that goes with ROOT (else
    the one dockerd keeps under ROOT, or ROOT itself). ``long_lived``: the model lives as long
    as the process (a command's run), and the garbage collector is told to leave it alone.
    ``pick`` and ``notify``: as for :func:`~forensics.api.root.open_root` (ROOT an archive or
    disk image)."""
    from forensics.stores.host import CONTAINERS, shown_sections  # the readers: not for --help

    scope = shown_sections(sections, tables=tables) if container is None else CONTAINERS
    ev = open_root(root, pick=pick, notify=notify)
    host = read_root(ev, open_containerd_root(containerd_root), scope)
    refuse_incomplete(ev)
    if long_lived:
        keep_until_exit()
    evidence = ev.origin.as_dict() if ev.origin is not None else None
    if container is None:
        return Inventory(host, evidence=evidence)
    return Inventory(host, host.containers[find_container(host, container)], evidence)
