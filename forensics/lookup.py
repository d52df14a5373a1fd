"""A container named on the command line, found as the docker CLI finds it.

dockerd's ``GetContainer`` tries, in this order: the full id; an exact name (with or without its
leading ``/``); a unique id prefix of any length. A name thus wins over an id prefix. The
messages are dockerd's own, so that a user of docker reads what they know.
"""

from __future__ import annotations

from forensics.errors import NotFound
from forensics.model import Host


class NoSuchContainer(NotFound, LookupError):
    """The argument names no container, or several: the message says which, in docker's
    words."""


def find_container(host: Host, wanted: str) -> str:
    """The full id of the container that ``wanted`` names. Raises NoSuchContainer."""
    if not wanted:
        raise NoSuchContainer("invalid container name or ID: value is empty")
    if wanted in host.containers:
        return wanted
    name = wanted.removeprefix("/")
    named = sorted(c.id for c in host.containers.values() if c.name == name)
    if len(named) == 1:
        return named[0]
    if named:  # dockerd never lets two containers share a name; a damaged root may
        raise NoSuchContainer(f"{len(named)} containers are named {name}: give the id")
    prefixed = [cid for cid in host.containers if cid.startswith(wanted)]
    if len(prefixed) == 1:
        return prefixed[0]
    if prefixed:
        raise NoSuchContainer(f"multiple IDs found with provided prefix: {wanted}")
    raise NoSuchContainer(f"No such container: {wanted}")
