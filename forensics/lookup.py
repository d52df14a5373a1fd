"""A container named on the command line, found as the Docker daemon finds it.

``daemon.GetContainer`` tries, in order: the full id; the exact name, with or without its
leading ``/``; a unique id prefix of any length. An empty argument is refused before anything is
looked up. The messages are Docker's own, so that an examiner reads what ``docker`` would say.

A root read offline may hold what a daemon never does: two containers with the same name (the
daemon's name index keeps one). That is said as such instead of picking one.
"""

from __future__ import annotations

from forensics.model import Host


class ContainerNotFound(LookupError):
    """No container, or more than one, answers to the name given; the message says which."""


def resolve_container(host: Host, wanted: str) -> str:
    """The id of the container that ``wanted`` names on ``host`` (Docker's rules)."""
    if not wanted:
        raise ContainerNotFound("invalid container name or ID: value is empty")
    if wanted in host.containers:
        return wanted
    name = wanted.removeprefix("/")
    named = sorted(c.id for c in host.containers.values() if c.name == name)
    if len(named) == 1:
        return named[0]
    if named:
        short = ", ".join(cid[:12] for cid in named)
        raise ContainerNotFound(f"{len(named)} containers are named {name}: {short}")
    by_prefix = [cid for cid in host.containers if cid.startswith(wanted)]
    if len(by_prefix) == 1:
        return by_prefix[0]
    if by_prefix:
        raise ContainerNotFound(f"multiple IDs found with provided prefix: {wanted}")
    raise ContainerNotFound(f"No such container: {wanted}")
