"""``inventory``: what ROOT holds, read into the model (rendered by :mod:`forensics.inventory`)."""

from __future__ import annotations

from dataclasses import dataclass

from forensics.api.root import open_containerd_root, open_root, read_root
from forensics.heap import keep_until_exit
from forensics.lookup import find_container
from forensics.model import Container, Host


@dataclass
class Inventory:
    """The host read from ROOT, and the container that was asked for (if one was)."""

    host: Host
    container: Container | None = None


def inventory(
    root: str,
    *,
    container: str | None = None,
    long_lived: bool = False,
    containerd_root: str | None = None,
) -> Inventory:
    """Read ROOT whole; with ``container`` (a full id, a name or a unique id prefix, as docker
    takes them), find that container too (:class:`~forensics.lookup.NoSuchContainer` if ROOT
    holds none or several). ``containerd_root``: the containerd root that goes with ROOT (else
    the one dockerd keeps under ROOT, or ROOT itself). ``long_lived``: the model lives as long
    as the process (a command's run), and the garbage collector is told to leave it alone."""
    host = read_root(open_root(root), open_containerd_root(containerd_root))
    if long_lived:
        keep_until_exit()
    if container is None:
        return Inventory(host)
    return Inventory(host, host.containers[find_container(host, container)])
